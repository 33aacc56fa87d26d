// The demo site's login page (/): the browser SDK does the whole login; this
// page only decides what to show before and after. It is the SDK's example:
// query parameters pass straight to QrLogin.mount (?locale=de&theme=dark&
// max_refreshes=2&transport=poll&sse_silence_ms=3000).
const cfg = JSON.parse(document.querySelector('meta[name="qrlogin-config"]').content);
const { QrLogin } = await import(cfg.base + '/_qrlogin/sdk/qrlogin.js');

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const texts = {
  en: { title: 'Log in with your phone', lead: 'Open the {site} app on your phone, scan this code, then confirm on the phone.' },
  de: { title: 'Mit dem Handy anmelden', lead: 'Öffnen Sie die {site}-App auf Ihrem Handy, scannen Sie diesen Code und bestätigen Sie dort.' },
};
let locale = params.get('locale') || (navigator.language || 'en').slice(0, 2);
if (!texts[locale]) locale = 'en';
let widget = null;

function pageTexts() {
  const t = texts[locale] || texts.en;
  $('login-title').textContent = t.title;
  $('login-lead').textContent = t.lead.replace('{site}', cfg.site);
  document.documentElement.lang = locale;
  $('locale').value = locale;
}

function mount() {
  $('done-view').hidden = true;
  $('login-view').hidden = false;
  if (widget) widget.destroy();
  const max = parseInt(params.get('max_refreshes') || '', 10);
  const silence = parseInt(params.get('sse_silence_ms') || '', 10);
  widget = QrLogin.mount($('qr-login'), {
    server: location.origin + cfg.base + '/',
    site: cfg.site,
    locale,
    theme: params.get('theme') || 'auto',
    maxRefreshes: Number.isFinite(max) ? max : undefined,
    sseSilenceMs: Number.isFinite(silence) ? silence : undefined,
    transport: params.get('transport') || undefined,
    css: false, // linked in the page's head already
    onLogin: (r) => showLoggedIn(r.user, Date.now() + r.expiresIn * 1000),
    onError: (e) => console.info('qrlogin:', e.code, e.message),
  });
}

function showLoggedIn(user, until) {
  if (widget) { widget.destroy(); widget = null; }
  $('login-view').hidden = true;
  $('done-view').hidden = false;
  $('logged-in').textContent = 'Logged in as ' + (user.name || user.id);
  const info = [];
  if (user.id && user.id !== user.name) info.push('User id: ' + user.id);
  if (until && Number.isFinite(until)) info.push('Session valid until ' + new Date(until).toLocaleString());
  $('session-info').textContent = info.join(' · ');
  $('logout').disabled = false;
  $('welcome').focus();
}

$('locale').addEventListener('change', () => {
  locale = $('locale').value;
  pageTexts();
  if (widget) widget.setLocale(locale);
});

$('logout').addEventListener('click', async () => {
  $('logout').disabled = true;
  try {
    await fetch(cfg.base + '/v1/session/logout', { method: 'POST', credentials: 'same-origin' });
  } finally {
    mount();
  }
});

pageTexts();
// Already logged in (a reload)? Then say so instead of showing a code.
try {
  const r = await fetch(cfg.base + '/v1/session', { credentials: 'same-origin', cache: 'no-store' });
  if (r.ok) {
    const d = await r.json();
    showLoggedIn(d.user, Date.parse(d.expires_at));
  } else {
    mount();
  }
} catch (e) {
  mount();
}
