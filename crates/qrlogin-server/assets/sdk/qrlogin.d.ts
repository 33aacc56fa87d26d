// Types of the qrlogin browser SDK (qrlogin.js).

/** A login as the page gets it, after redeem. */
export interface LoginResult {
  user: { id: string; name: string };
  /** The web session (opaque token, or a JWT with --session-format jwt); also set as the qrl_session cookie. */
  token: string;
  tokenType: 'Bearer';
  /** Seconds the session lives. */
  expiresIn: number;
}

export interface QrLoginError {
  /** `network`, `redeem_failed`, or the API's error code (e.g. `rate_limited`). */
  code: string;
  message: string;
}

export type LoginState =
  | 'idle' | 'creating' | 'pending' | 'scanned' | 'approved' | 'logged-in'
  | 'denied' | 'cancelled' | 'expired' | 'consumed';

/** One locale's strings; `{site}`, `{name}`, `{time}`, `{seconds}` are filled in; without a `site` option, `KEY_nosite` (e.g. `qr_alt_nosite`) is used where English has one. */
export type Strings = Record<string, string>;

export interface MountOptions {
  /** Called once the login is redeemed (the session cookie is set by then). */
  onLogin?: (result: LoginResult) => void;
  onError?: (error: QrLoginError) => void;
  /** Every state the widget moves through (for analytics or your own UI). */
  onState?: (state: LoginState, data: Record<string, unknown>) => void;
  /** `en`, `de`, or any locale added to `QrLogin.strings`. Default: the browser's languages, else `en`. */
  locale?: string;
  /** Default `auto` (prefers-color-scheme). */
  theme?: 'light' | 'dark' | 'auto';
  /** The qrlogin public URL. Default: where this module was loaded from. */
  server?: string;
  /** The site's name in texts ("Scan this code with the {site} app"). */
  site?: string;
  /** Automatic new codes after expiry before "Show a new code" (default 5). */
  maxRefreshes?: number;
  /** How long a new event stream may stay silent before long-polling instead (ms, default 5000). */
  sseFirstEventMs?: number;
  /** After the first event, how long the stream may go without an event or a `ping` keep-alive before long-polling instead (ms, default 35000). */
  sseSilenceMs?: number;
  /** Stream errors in a row before long-polling instead (default 3). */
  sseMaxErrors?: number;
  /** `poll` skips Server-Sent Events. Default: SSE first. */
  transport?: 'sse' | 'poll';
  /** Add the widget's stylesheet (qrlogin.css beside this module) to the page (default true). */
  css?: boolean;
}

export interface QrLoginHandle {
  destroy(): void;
  /** A new code now (resets the automatic-refresh count). */
  refresh(): void;
  cancel(): Promise<void>;
  setLocale(locale: string): void;
  readonly state: LoginState;
}

export declare const QrLogin: {
  readonly version: string;
  /** The locale table: add or change entries before mounting. */
  strings: Record<string, Strings>;
  mount(element: Element, options?: MountOptions): QrLoginHandle;
};

/** `<qr-login server locale theme site max-refreshes>`. */
export declare class QrLoginElement extends HTMLElement {
  handle: QrLoginHandle | null;
}

declare global {
  interface HTMLElementTagNameMap {
    'qr-login': QrLoginElement;
  }
  interface HTMLElementEventMap {
    'qrlogin:login': CustomEvent<LoginResult>;
    'qrlogin:error': CustomEvent<QrLoginError>;
    'qrlogin:state': CustomEvent<{ state: LoginState; data: Record<string, unknown> }>;
  }
}

export default QrLogin;
