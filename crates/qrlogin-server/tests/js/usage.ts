// How a site uses the SDK, type-checked against qrlogin.d.ts by
// `tsc --noEmit` (scripts/test). Never run.
import QrLoginDefault, { QrLogin, QrLoginElement } from '../../assets/sdk/qrlogin.js';
import type { LoginResult, MountOptions, QrLoginHandle, QrLoginError } from '../../assets/sdk/qrlogin.js';

const options: MountOptions = {
  onLogin(result: LoginResult) {
    const id: string = result.user.id;
    const token: string = result.token;
    console.log(id, token, result.expiresIn.toFixed(0));
  },
  onError(e: QrLoginError) {
    console.warn(e.code, e.message);
  },
  onState(state) {
    if (state === 'scanned') console.log('scanned');
  },
  locale: 'de',
  theme: 'dark',
  maxRefreshes: 3,
  server: 'https://site.example/auth/qr/',
};

const el = document.getElementById('login');
if (el) {
  const handle: QrLoginHandle = QrLogin.mount(el, options);
  handle.setLocale('en');
  handle.refresh();
  void handle.cancel();
  console.log(handle.state, QrLogin.version, QrLoginDefault === QrLogin);
  handle.destroy();
}

QrLogin.strings.fr = { title: 'Connexion avec votre téléphone' };

const tag = document.createElement('qr-login');
const typed: QrLoginElement = tag;
typed.addEventListener('qrlogin:login', (ev) => console.log(ev.detail.user.name));

// @ts-expect-error a theme the SDK does not know
QrLogin.mount(document.body, { theme: 'sepia' });
