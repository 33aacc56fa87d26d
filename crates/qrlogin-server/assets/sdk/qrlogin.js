// qrlogin browser SDK: "Log in with your phone" on any page, in one call.
//
//   import { QrLogin } from '/auth/qr/_qrlogin/sdk/qrlogin.js';
//   QrLogin.mount(document.getElementById('login'), {
//     onLogin(result) { location.href = '/account'; },   // after redeem
//     onError(err) { console.warn(err.code, err.message); },
//     locale: 'de', theme: 'auto',
//   });
//
// or <qr-login locale="de"></qr-login> with a `qrlogin:login` event.
//
// Per login it makes the same requests a hand-written page would: create,
// the QR image, one event stream (or long-polls when streams do not get
// through), redeem. Same origin as qrlogin (through your reverse proxy):
// the browser secret is an HttpOnly SameSite=Strict cookie.
// No dependencies, no inline styles or scripts (works under a strict CSP).

const VERSION = '1.0.0';

/** Strings per locale; add your own: `QrLogin.strings.fr = {...}` (missing keys fall back to English). */
const strings = {
  en: {
    title: 'Log in with your phone',
    lead: 'Scan this code with the {site} app, then confirm on your phone.',
    qr_alt: 'QR code to log in with the {site} app on your phone',
    qr_alt_nosite: 'QR code to log in with your phone',
    or_open: 'or open:',
    copy: 'Copy link',
    copied: 'Copied',
    loading: 'Preparing a login code…',
    waiting: 'Waiting for your phone to scan the code…',
    scanned: 'Scanned — confirm on your phone',
    scanned_by: 'Scanned by {name} — confirm on your phone',
    pick_number: 'Pick this number on your phone:',
    approved: 'Approved on your phone — logging you in…',
    logged_in: 'Logged in as {name}',
    denied: 'The login was denied on the phone.',
    cancelled: 'The login was cancelled.',
    expired: 'The code has expired.',
    expired_renewing: 'The code expired — here is a new one.',
    paused: 'The code has expired. A new one appears when you come back to this tab.',
    new_code: 'Show a new code',
    cancel: 'Cancel',
    expires_in: 'Code expires in {time}',
    rate_limited: 'Too many attempts. Trying again in {seconds} s…',
    unavailable: 'The login service is temporarily unavailable. Retrying…',
    offline: 'Cannot reach the server. Retrying…',
    failed: 'Could not complete the login. Please try a new code.',
    qr_failed: 'Could not load the QR image; use the link below.',
  },
  de: {
    title: 'Mit dem Handy anmelden',
    lead: 'Scannen Sie diesen Code mit der {site}-App und bestätigen Sie auf dem Handy.',
    qr_alt: 'QR-Code zum Anmelden mit der {site}-App auf Ihrem Handy',
    qr_alt_nosite: 'QR-Code zum Anmelden mit Ihrem Handy',
    or_open: 'oder öffnen:',
    copy: 'Link kopieren',
    copied: 'Kopiert',
    loading: 'Anmeldecode wird vorbereitet…',
    waiting: 'Warten, bis Ihr Handy den Code scannt…',
    scanned: 'Gescannt — bitte auf dem Handy bestätigen',
    scanned_by: 'Gescannt von {name} — bitte auf dem Handy bestätigen',
    pick_number: 'Wählen Sie diese Zahl auf Ihrem Handy:',
    approved: 'Auf dem Handy bestätigt — Sie werden angemeldet…',
    logged_in: 'Angemeldet als {name}',
    denied: 'Die Anmeldung wurde auf dem Handy abgelehnt.',
    cancelled: 'Die Anmeldung wurde abgebrochen.',
    expired: 'Der Code ist abgelaufen.',
    expired_renewing: 'Der Code ist abgelaufen — hier ist ein neuer.',
    paused: 'Der Code ist abgelaufen. Ein neuer erscheint, wenn Sie zu diesem Tab zurückkehren.',
    new_code: 'Neuen Code anzeigen',
    cancel: 'Abbrechen',
    expires_in: 'Code läuft ab in {time}',
    rate_limited: 'Zu viele Versuche. Neuer Versuch in {seconds} s…',
    unavailable: 'Der Anmeldedienst ist vorübergehend nicht erreichbar. Neuer Versuch…',
    offline: 'Server nicht erreichbar. Neuer Versuch…',
    failed: 'Die Anmeldung konnte nicht abgeschlossen werden. Bitte einen neuen Code verwenden.',
    qr_failed: 'Das QR-Bild konnte nicht geladen werden; nutzen Sie den Link darunter.',
  },
};

const DEFAULTS = {
  maxRefreshes: 5,
  // The server sends the login's state as soon as a stream opens; a stream
  // that shows nothing for this long is being held back (a buffering proxy):
  // long-poll instead.
  sseFirstEventMs: 5000,
  // After that, every event and every keep-alive (`ping`, every 15 s) re-arms
  // this bound: a stream that goes quiet for longer has stalled somewhere.
  sseSilenceMs: 35000,
  sseMaxErrors: 3,
  pollWaitS: 25,
  theme: 'auto',
  css: true,
  site: '',
};

const EVENTS = ['pending', 'scanned', 'approved', 'denied', 'cancelled', 'expired', 'consumed'];

/** The qrlogin this module was served by: `{public}/` from `{public}/_qrlogin/sdk/qrlogin.js`. */
function defaultServer() {
  try { return new URL('../../', import.meta.url).href; } catch (e) { return '/'; }
}

function fill(text, vars) {
  return String(text).replace(/\{(\w+)\}/g, (m, k) => (vars && k in vars ? String(vars[k]) : m));
}

function pickLocale(wanted) {
  const tries = [wanted, ...(typeof navigator !== 'undefined' ? (navigator.languages || [navigator.language]) : [])];
  for (const t of tries) {
    if (!t) continue;
    const l = String(t).toLowerCase();
    if (strings[l]) return l;
    const short = l.split('-')[0];
    if (strings[short]) return short;
  }
  return 'en';
}

let cssAdded = false;
function addCss(href) {
  if (cssAdded || typeof document === 'undefined') return;
  cssAdded = true;
  if (document.querySelector('link[data-qrlogin-css]')) return;
  const link = document.createElement('link');
  link.rel = 'stylesheet';
  link.href = href;
  link.setAttribute('data-qrlogin-css', '');
  document.head.appendChild(link);
}

function h(tag, cls, attrs) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (attrs) for (const k of Object.keys(attrs)) el.setAttribute(k, attrs[k]);
  return el;
}

function countdown(ms) {
  let s = Math.max(0, Math.ceil(ms / 1000));
  const m = Math.floor(s / 60);
  s %= 60;
  return m + ':' + (s < 10 ? '0' : '') + s;
}

async function call(method, url, body, signal) {
  const opts = { method, credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  if (signal) opts.signal = signal;
  const res = await fetch(url, opts);
  const text = await res.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
  return { status: res.status, data, headers: res.headers };
}

function retryAfterMs(r, fallback) {
  const n = parseInt((r && r.headers && r.headers.get('Retry-After')) || '', 10);
  return Number.isFinite(n) && n >= 0 ? Math.min(n, 120) * 1000 : fallback;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One mounted widget. */
class Widget {
  constructor(root, options) {
    this.o = Object.assign({}, DEFAULTS);
    for (const [k, v] of Object.entries(options || {})) if (v !== undefined) this.o[k] = v;
    this.server = String(this.o.server || defaultServer()).replace(/\/?$/, '/');
    this.locale = pickLocale(this.o.locale);
    this.root = root;
    this.login = null;       // the login being shown
    this.gen = 0;            // bumps with every new login; stale work checks it
    this.refreshes = 0;      // automatic refreshes since the last scan or click
    this.pausedRefresh = false;
    this.destroyed = false;
    this.state = 'idle';
    if (this.o.css) addCss(new URL('qrlogin.css', import.meta.url).href);
    this.build();
    this.onVisible = () => {
      if (!document.hidden && this.pausedRefresh && !this.destroyed) {
        this.pausedRefresh = false;
        this.refreshes++;
        this.start();
      }
    };
    document.addEventListener('visibilitychange', this.onVisible);
    this.timer = setInterval(() => this.tick(), 1000);
    this.start();
  }

  t(key, vars) {
    const table = strings[this.locale] || strings.en;
    // Without a site name, a text that names the site has a variant that
    // does not (never "with the  app").
    if (!this.o.site && (key + '_nosite') in strings.en) key += '_nosite';
    const text = key in table ? table[key] : strings.en[key];
    return fill(text, Object.assign({ site: this.o.site || '' }, vars));
  }

  build() {
    const r = this.root;
    r.classList.add('qrl');
    r.setAttribute('data-qrl-theme', this.o.theme || 'auto');
    while (r.firstChild) r.removeChild(r.firstChild);
    const el = (this.el = {});
    el.box = h('div', 'qrl-qr-box');
    el.qr = h('img', 'qrl-qr', { width: '240', height: '240' });
    el.overlay = h('div', 'qrl-overlay');
    el.overlay.hidden = true;
    el.box.append(el.qr, el.overlay);
    el.linkRow = h('div', 'qrl-link-row');
    el.orOpen = h('span', 'qrl-muted');
    el.link = h('a', 'qrl-link', { target: '_blank', rel: 'noopener' });
    el.copy = h('button', 'qrl-copy qrl-secondary', { type: 'button' });
    el.linkRow.append(el.orOpen, el.link, el.copy);
    el.matchBox = h('div', 'qrl-match');
    el.matchLabel = h('span', 'qrl-match-label');
    el.code = h('span', 'qrl-code');
    el.matchBox.append(el.matchLabel, el.code);
    el.matchBox.hidden = true;
    el.status = h('p', 'qrl-status', { role: 'status', 'aria-live': 'polite' });
    el.expiry = h('p', 'qrl-expiry', { 'aria-live': 'off' });
    el.actions = h('div', 'qrl-actions');
    el.newCode = h('button', 'qrl-new', { type: 'button' });
    el.cancel = h('button', 'qrl-cancel qrl-secondary', { type: 'button' });
    el.actions.append(el.newCode, el.cancel);
    r.append(el.box, el.linkRow, el.matchBox, el.status, el.expiry, el.actions);
    el.qr.addEventListener('load', () => {
      if (this.login && this.state === 'pending') this.overlay('');
    });
    el.qr.addEventListener('error', () => {
      if (this.login) this.status(this.t('qr_failed'), 'warn');
    });
    el.copy.addEventListener('click', () => this.copyLink());
    el.newCode.addEventListener('click', () => { this.refreshes = 0; this.start(); });
    el.cancel.addEventListener('click', () => this.cancel());
    this.texts();
  }

  /** Texts that do not depend on the state. */
  texts() {
    const el = this.el;
    el.qr.alt = this.t('qr_alt');
    el.orOpen.textContent = this.t('or_open');
    el.copy.textContent = this.t('copy');
    el.matchLabel.textContent = this.t('pick_number');
    el.newCode.textContent = this.t('new_code');
    el.cancel.textContent = this.t('cancel');
    this.root.setAttribute('lang', this.locale);
  }

  setLocale(locale) {
    this.locale = pickLocale(locale);
    this.texts();
    if (this.lastStatus) this.status(this.t(this.lastStatus.key, this.lastStatus.vars), this.lastStatus.kind, this.lastStatus.key, this.lastStatus.vars);
    this.tick();
  }

  status(text, kind, key, vars) {
    this.el.status.textContent = text;
    this.el.status.className = 'qrl-status' + (kind ? ' qrl-' + kind : '');
    this.lastStatus = key ? { key, vars, kind } : null;
  }

  say(key, kind, vars) { this.status(this.t(key, vars), kind, key, vars); }

  overlay(text) {
    this.el.overlay.textContent = text || '';
    this.el.overlay.hidden = !text;
    this.el.box.classList.toggle('qrl-dim', !!text);
  }

  emit(state, data) {
    this.state = state;
    this.root.setAttribute('data-qrl-state', state);
    if (typeof this.o.onState === 'function') this.o.onState(state, data || {});
  }

  fail(code, message) {
    if (typeof this.o.onError === 'function') this.o.onError({ code, message });
  }

  leave() {
    const l = this.login;
    if (l) {
      l.done = true;
      if (l.es) { l.es.close(); l.es = null; }
      if (l.abort) { l.abort.abort(); l.abort = null; }
      if (l.watchdog) { clearTimeout(l.watchdog); l.watchdog = null; }
    }
    this.login = null;
  }

  /** Asks for a new code, ending the current one. */
  async start() {
    if (this.destroyed) return;
    this.leave();
    const gen = ++this.gen;
    const el = this.el;
    el.newCode.hidden = true;
    el.cancel.hidden = true;
    el.matchBox.hidden = true;
    el.linkRow.hidden = true;
    el.expiry.textContent = '';
    this.overlay('…');
    if (!this.lastStatus || this.lastStatus.key !== 'expired_renewing') this.say('loading');
    this.emit('creating');
    let r;
    try {
      r = await call('POST', new URL('v1/logins', this.server), { binding: 'cookie' });
    } catch (e) {
      if (gen !== this.gen) return;
      this.say('offline', 'warn');
      this.fail('network', String(e && e.message || e));
      this.retry(gen, 5000);
      return;
    }
    if (gen !== this.gen) return;
    if (r.status === 201 && r.data && r.data.login_id) {
      this.show(r.data);
    } else if (r.status === 429) {
      const wait = retryAfterMs(r, 5000);
      this.say('rate_limited', 'warn', { seconds: Math.ceil(wait / 1000) });
      this.retry(gen, wait);
    } else if (r.status >= 500) {
      this.say('unavailable', 'warn');
      this.retry(gen, 5000);
    } else {
      this.offerNew('failed', 'bad');
      this.fail((r.data && r.data.error) || 'http_' + r.status, (r.data && r.data.message) || '');
    }
  }

  retry(gen, ms) {
    setTimeout(() => { if (gen === this.gen && !this.destroyed) this.start(); }, ms);
  }

  show(d) {
    const login = {
      id: d.login_id,
      gen: this.gen,
      events: new URL(d.events, this.server).href,
      statusUrl: new URL(d.status, this.server).href,
      redeemUrl: new URL(d.status + '/redeem', this.server).href,
      state: 'pending',
      version: -1,
      deadline: Date.now() + (Number(d.expires_in) > 0 ? Number(d.expires_in) : 120) * 1000,
      done: false,
    };
    this.login = login;
    const el = this.el;
    el.qr.src = new URL(d.qr_svg, this.server).href;
    el.link.href = d.qr_payload;
    el.link.textContent = d.qr_payload;
    el.linkRow.hidden = false;
    this.number(d.match_code);
    el.cancel.hidden = false;
    if (this.lastStatus && this.lastStatus.key === 'expired_renewing') { /* keep saying why */ } else this.say('waiting');
    this.emit('pending', d);
    this.tick();
    this.watch(login);
  }

  number(code) {
    if (code) {
      this.el.code.textContent = String(code);
      this.el.matchBox.hidden = false;
    } else {
      this.el.code.textContent = '';
      this.el.matchBox.hidden = true;
    }
  }

  // ---- watching: SSE first, long-poll when streams do not get through ----

  watch(login) {
    if (this.o.transport === 'poll' || typeof window.EventSource !== 'function') { this.poll(login); return; }
    let es;
    try { es = new EventSource(login.events); } catch (e) { this.poll(login); return; }
    login.es = es;
    this.root.setAttribute('data-qrl-transport', 'sse');
    let errors = 0;
    const toPoll = () => {
      if (login.es) { login.es.close(); login.es = null; }
      if (login.watchdog) { clearTimeout(login.watchdog); login.watchdog = null; }
      if (!login.done && login === this.login) this.poll(login);
    };
    // One timer per stream, re-armed by whatever arrives: the first event
    // must come within sseFirstEventMs (silence means a buffering proxy);
    // after that an event or the server's `ping` keep-alive within
    // sseSilenceMs (a stream that stalls later, or a reconnect that never
    // hears from the server again, also ends in long-polling).
    const arm = (ms) => {
      if (login.watchdog) clearTimeout(login.watchdog);
      login.watchdog = setTimeout(toPoll, ms);
    };
    arm(this.o.sseFirstEventMs);
    const alive = () => {
      if (login !== this.login || login.done) return false;
      arm(this.o.sseSilenceMs);
      return true;
    };
    es.addEventListener('ping', alive);
    const onEvent = (ev) => {
      if (!alive()) return;
      errors = 0;
      let data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      if (!data || typeof data !== 'object') return;
      if (!data.state) data.state = ev.type;
      this.apply(login, data);
    };
    EVENTS.forEach((name) => es.addEventListener(name, onEvent));
    es.onopen = () => { errors = 0; };
    es.onerror = () => {
      if (login !== this.login || login.done) { es.close(); return; }
      errors++;
      // The browser reconnects by itself (sending Last-Event-ID); a closed
      // stream or repeated failures mean long-polling instead.
      if (es.readyState === 2 || errors >= this.o.sseMaxErrors) toPoll();
    };
  }

  async poll(login) {
    this.root.setAttribute('data-qrl-transport', 'poll');
    let failures = 0;
    while (login === this.login && !login.done) {
      const url = new URL(login.statusUrl);
      url.searchParams.set('wait', String(this.o.pollWaitS));
      url.searchParams.set('since', login.state);
      const ctrl = new AbortController();
      login.abort = ctrl;
      let r;
      try {
        r = await call('GET', url.href, undefined, ctrl.signal);
      } catch (e) {
        r = null;
      }
      if (login !== this.login || login.done) return;
      if (r && r.status === 200 && r.data) {
        failures = 0;
        this.apply(login, r.data);
      } else if (r && r.status === 404) {
        this.expired(login);
        return;
      } else if (r && r.status === 429) {
        await sleep(retryAfterMs(r, 5000));
      } else {
        failures++;
        await sleep(Math.min(30000, 1000 * 2 ** Math.min(failures, 5)) * (0.75 + Math.random() * 0.5));
      }
    }
  }

  apply(login, data) {
    if (login !== this.login || login.done) return;
    const v = Number(data.version);
    if (data.version != null && Number.isFinite(v)) {
      if (v < login.version) return;
      login.version = v;
    }
    if (Number(data.expires_in) > 0) login.deadline = Date.now() + Number(data.expires_in) * 1000;
    const state = data.state;
    if (!state) return;
    login.state = state;
    switch (state) {
      case 'pending':
        break;
      case 'scanned': {
        this.refreshes = 0;
        this.overlay('✓');
        if (data.match_code) this.number(data.match_code);
        const name = data.user && (data.user.name || data.user.id);
        if (name) this.say('scanned_by', 'warn', { name }); else this.say('scanned', 'warn');
        this.emit('scanned', data);
        break;
      }
      case 'approved':
        this.finish(login);
        this.redeem(login);
        break;
      case 'denied':
      case 'cancelled':
        this.finish(login);
        this.offerNew(state, 'bad');
        this.emit(state, data);
        break;
      case 'expired':
        this.expired(login);
        break;
      case 'consumed':
        this.finish(login);
        this.offerNew('failed', 'bad');
        this.emit('consumed', data);
        break;
      default:
        break;
    }
  }

  finish(login) {
    login.done = true;
    if (login.es) { login.es.close(); login.es = null; }
    if (login.abort) { login.abort.abort(); login.abort = null; }
    if (login.watchdog) { clearTimeout(login.watchdog); login.watchdog = null; }
    this.el.expiry.textContent = '';
  }

  offerNew(key, kind) {
    this.say(key, kind);
    this.overlay('');
    this.el.box.classList.add('qrl-dim');
    this.el.linkRow.hidden = true;
    this.el.matchBox.hidden = true;
    this.el.cancel.hidden = true;
    this.el.newCode.hidden = false;
    this.el.expiry.textContent = '';
  }

  /** The code ran out: a new one, unless the tab is hidden or N refreshes were made. */
  expired(login) {
    if (login !== this.login) return;
    this.finish(login);
    this.emit('expired');
    if (this.refreshes >= this.o.maxRefreshes) {
      this.offerNew('expired', '');
      return;
    }
    if (typeof document !== 'undefined' && document.hidden) {
      this.pausedRefresh = true;
      this.offerNew('paused', '');
      this.el.newCode.hidden = true;
      return;
    }
    this.refreshes++;
    this.say('expired_renewing');
    this.start();
  }

  async redeem(login) {
    this.say('approved', 'ok');
    this.overlay('✓');
    this.el.cancel.hidden = true;
    this.emit('approved');
    for (let attempt = 0; attempt < 5; attempt++) {
      let r;
      try {
        r = await call('POST', login.redeemUrl);
      } catch (e) {
        r = null;
      }
      if (this.destroyed || login !== this.login) return;
      if (r && r.status === 200 && r.data && r.data.user) {
        const result = { user: r.data.user, token: r.data.token, tokenType: r.data.token_type, expiresIn: r.data.expires_in };
        this.say('logged_in', 'ok', { name: r.data.user.name || r.data.user.id });
        this.emit('logged-in', result);
        if (typeof this.o.onLogin === 'function') this.o.onLogin(result);
        return;
      }
      if (r && r.status !== 429 && r.status < 500) break;
      await sleep(r ? retryAfterMs(r, 2000) : 2000);
    }
    this.offerNew('failed', 'bad');
    this.fail('redeem_failed', 'the approved login could not be redeemed');
  }

  async cancel() {
    const login = this.login;
    if (!login || login.done) return;
    this.el.cancel.disabled = true;
    try {
      await call('DELETE', login.statusUrl);
    } catch (e) { /* the stream or poll will tell */ }
    this.el.cancel.disabled = false;
    this.apply(login, { state: 'cancelled' });
  }

  tick() {
    const login = this.login;
    if (!login || login.done) return;
    const left = login.deadline - Date.now();
    this.el.expiry.textContent = left > 0 ? this.t('expires_in', { time: countdown(left) }) : '';
    // The server says `expired` itself; this only covers a lost message.
    if (left < -2000) this.expired(login);
  }

  copyLink() {
    const text = this.el.link.textContent;
    if (!text) return;
    const done = () => {
      this.el.copy.textContent = this.t('copied');
      setTimeout(() => { this.el.copy.textContent = this.t('copy'); }, 1500);
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, () => this.selectLink());
    } else {
      this.selectLink();
    }
  }

  selectLink() {
    const range = document.createRange();
    range.selectNodeContents(this.el.link);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  destroy() {
    this.destroyed = true;
    this.gen++;
    this.leave();
    clearInterval(this.timer);
    document.removeEventListener('visibilitychange', this.onVisible);
    while (this.root.firstChild) this.root.removeChild(this.root.firstChild);
  }
}

/** The SDK. */
export const QrLogin = {
  version: VERSION,
  strings,
  /**
   * Shows a login QR in `element` and runs the whole login.
   * @returns {{ destroy(): void, refresh(): void, cancel(): Promise<void>, setLocale(l: string): void, readonly state: string }}
   */
  mount(element, options) {
    if (!element || element.nodeType !== 1) throw new TypeError('QrLogin.mount needs an element');
    const w = new Widget(element, options);
    return {
      destroy: () => w.destroy(),
      refresh: () => { w.refreshes = 0; w.start(); },
      cancel: () => w.cancel(),
      setLocale: (l) => w.setLocale(l),
      get state() { return w.state; },
    };
  },
};

/** `<qr-login server locale theme max-refreshes site>`: dispatches `qrlogin:login`, `qrlogin:error`, `qrlogin:state`. */
export class QrLoginElement extends (typeof HTMLElement === 'function' ? HTMLElement : Object) {
  static get observedAttributes() { return ['locale']; }
  connectedCallback() {
    const a = (n) => this.getAttribute(n);
    const max = parseInt(a('max-refreshes') || '', 10);
    this.handle = QrLogin.mount(this, {
      server: a('server') || undefined,
      locale: a('locale') || undefined,
      theme: a('theme') || undefined,
      site: a('site') || undefined,
      maxRefreshes: Number.isFinite(max) ? max : undefined,
      onLogin: (r) => this.dispatchEvent(new CustomEvent('qrlogin:login', { detail: r, bubbles: true })),
      onError: (e) => this.dispatchEvent(new CustomEvent('qrlogin:error', { detail: e, bubbles: true })),
      onState: (s, d) => this.dispatchEvent(new CustomEvent('qrlogin:state', { detail: { state: s, data: d }, bubbles: true })),
    });
  }
  attributeChangedCallback(name, old, value) {
    if (name === 'locale' && this.handle && value) this.handle.setLocale(value);
  }
  disconnectedCallback() {
    if (this.handle) this.handle.destroy();
    this.handle = null;
  }
}

if (typeof customElements !== 'undefined' && !customElements.get('qr-login')) {
  customElements.define('qr-login', QrLoginElement);
}

export default QrLogin;
