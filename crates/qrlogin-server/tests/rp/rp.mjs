// A real relying party for qrlogin's tests: panva's openid-client (v6)
// runs the authorization code flow against a running qrlogin, with the
// browser step in headless Chromium (playwright-core, Debian's
// /usr/bin/chromium, never a downloaded browser) and the phone step over
// HTTP. Run by ../oidc_rp.rs.
//
//   node rp.mjs --issuer http://127.0.0.1:PORT --client-id web \
//     --client-secret S --redirect-uri http://127.0.0.1:9/cb \
//     [--client-name "Example Shop"] [--match] [--device-client-id tv]
//
// --match: number matching is on (qrlogin --match-code always): the page
// must show the 2-digit code (#match-code), which the phone picks among its
// three choices when it approves. --client-name: the page's title must name
// the client. --device-client-id: afterwards the device flow (RFC 8628) for
// that public client: openid-client starts it, Chromium opens the
// verification URI (the /device page), types the user code and must land
// on the login's confirm page /m/{id}; the phone approves that login and
// openid-client polls to the tokens and validates the ID token.
//
// openid-client discovers the issuer, builds the authorization URL (PKCE
// S256, state, nonce, scope "openid profile"), Chromium opens it and shows
// the QR, the "phone" signs in and scans and approves, the page goes on by
// itself to the redirect URI (caught here, never reached), and
// openid-client redeems the code: it validates the RFC 9207 `iss` and
// `state` of the response, the PKCE verifier, and the ID token (ES256 on
// the issuer's JWKS, iss, aud, nonce, exp), then calls userinfo.
//
// Prints one line of JSON to stdout and exits 0:
//   {"claims": {…}, "userinfo": {…}, "console_errors": […]}
// or prints the error to stderr and exits 1. Everything is bounded: the
// whole run by --timeout-ms (30 s), each step by its own smaller bound.

import { parseArgs } from 'node:util';

import * as client from 'openid-client';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    issuer: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string' },
    username: { type: 'string', default: 'alice' },
    password: { type: 'string', default: 'wonderland' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    'timeout-ms': { type: 'string', default: '30000' },
    'client-name': { type: 'string' },
    match: { type: 'boolean', default: false },
    'device-client-id': { type: 'string' },
  },
});
for (const k of ['issuer', 'client-id', 'client-secret', 'redirect-uri']) {
  if (!args[k]) {
    console.error(
      'usage: node rp.mjs --issuer URL --client-id ID --client-secret S --redirect-uri URL ' +
        '[--username U --password P --chromium PATH --timeout-ms N]',
    );
    process.exit(2);
  }
}
const issuer = args.issuer.replace(/\/+$/, '');
const redirectUri = args['redirect-uri'];
const totalMs = Number(args['timeout-ms']);
// One step (a page wait, one HTTP call) never takes more than this.
const STEP_MS = Math.min(15000, totalMs);

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let browser;

function fail(err) {
  console.error(`rp.mjs: ${err && err.stack ? err.stack : err}`);
  if (err && err.cause) console.error('cause:', err.cause);
  // Kill Chromium without waiting for a graceful close (it might hang).
  try {
    browser?.close().catch(() => {});
  } catch {
    // ignore
  }
  process.exit(1);
}

const overall = setTimeout(() => fail(new Error(`the whole run took longer than ${totalMs} ms`)), totalMs);

/** A JSON request to qrlogin's phone API; the answer's JSON on 2xx. */
async function phoneCall(path, body, token) {
  const headers = { 'content-type': 'application/json', accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(`${issuer}${path}`, {
    method: 'POST',
    headers,
    body: JSON.stringify(body),
    redirect: 'manual',
    signal: AbortSignal.timeout(STEP_MS),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`POST ${path}: ${r.status} ${text}`);
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`POST ${path}: not JSON: ${text}`);
  }
}

async function main() {
  // ---- the relying party: discovery and the authorization URL ------------
  const config = await client.discovery(
    new URL(issuer),
    args['client-id'],
    {
      client_secret: args['client-secret'],
      redirect_uris: [redirectUri],
      response_types: ['code'],
      // qrlogin signs ID tokens with ES256: demand exactly that.
      id_token_signed_response_alg: 'ES256',
    },
    client.ClientSecretBasic(args['client-secret']),
    { execute: [client.allowInsecureRequests], timeout: STEP_MS / 1000 },
  );
  const meta = config.serverMetadata();
  if (meta.issuer !== issuer) throw new Error(`discovered issuer ${meta.issuer}, asked for ${issuer}`);
  if (!meta.authorization_response_iss_parameter_supported) {
    throw new Error('discovery does not announce authorization_response_iss_parameter_supported');
  }
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid profile',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  });

  // ---- the browser -------------------------------------------------------
  browser = await chromium.launch({
    executablePath: args.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: STEP_MS,
  });
  const context = await browser.newContext({ serviceWorkers: 'block' });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.setDefaultNavigationTimeout(STEP_MS);
  const consoleErrors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') {
      const loc = m.location();
      consoleErrors.push(`${m.text()}${loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`);
    }
  });
  page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));

  // The redirect URI's origin is never reached: the first request to it
  // (the page's own navigation, or the redirect that /continue answers) is
  // taken here. A direct navigation is fulfilled with a small page; the
  // target of a redirect is not routed by Playwright (only the first URL of
  // a chain is), so it is caught from the request events as well.
  const cbOrigin = new URL(redirectUri).origin;
  let resolveBack;
  const back = new Promise((resolve) => {
    resolveBack = resolve;
  });
  page.on('request', (req) => {
    if (req.isNavigationRequest() && req.url().startsWith(redirectUri)) resolveBack(req.url());
  });
  await page.route(`${cbOrigin}/**`, async (route) => {
    const url = route.request().url();
    if (url.startsWith(redirectUri)) resolveBack(url);
    await route.fulfill({
      status: 200,
      contentType: 'text/html; charset=utf-8',
      body: '<!doctype html><title>back at the client</title><p>back at the client</p>',
    });
  });

  const resp = await page.goto(authUrl.href, { waitUntil: 'domcontentloaded' });
  if (!resp || resp.status() !== 200) {
    throw new Error(`GET ${authUrl.href}: ${resp ? resp.status() : 'no response'}`);
  }

  // ---- the QR: the login exists ------------------------------------------
  const qr = page.locator('#qr[data-login-id]');
  await qr.waitFor({ state: 'attached', timeout: STEP_MS });
  const loginId = await qr.getAttribute('data-login-id');
  const link = await page.locator('#qr-link').getAttribute('href');
  if (!loginId) throw new Error('#qr has an empty data-login-id');
  if (!link || !link.endsWith(`/m/${loginId}`)) {
    throw new Error(`#qr-link is ${JSON.stringify(link)}, expected …/m/${loginId}`);
  }

  // ---- the phone ---------------------------------------------------------
  const session = await phoneCall('/v1/mobile/session', { username: args.username, password: args.password });
  if (!session.token) throw new Error(`no token from /v1/mobile/session: ${JSON.stringify(session)}`);
  const title = (await page.locator('#authorize-title').textContent()) || '';
  if (args['client-name'] && !title.includes(args['client-name'])) {
    throw new Error(`#authorize-title is ${JSON.stringify(title)}, expected it to name ${args['client-name']}`);
  }
  // With number matching on, the page shows the code as it shows the QR.
  const matchCode = ((await page.locator('#match-code').textContent()) || '').trim();
  const matchShown = await page.locator('#match-box').isVisible();
  if (args.match && (!/^[0-9]{2}$/.test(matchCode) || !matchShown)) {
    throw new Error(`number matching is on but the page shows ${JSON.stringify(matchCode)} (visible: ${matchShown})`);
  }
  const scanned = await phoneCall(`/v1/mobile/logins/${encodeURIComponent(loginId)}/scan`, {}, session.token);
  if (scanned.state !== 'scanned') throw new Error(`scan answered ${JSON.stringify(scanned)}`);
  const decision = {};
  if (args.match) {
    if (!(scanned.match_choices || []).includes(matchCode)) {
      throw new Error(`the phone's choices ${JSON.stringify(scanned.match_choices)} lack the page's ${matchCode}`);
    }
    decision.match_code = matchCode;
  }
  const approved = await phoneCall(`/v1/mobile/logins/${encodeURIComponent(loginId)}/approve`, decision, session.token);
  if (approved.state !== 'approved') throw new Error(`approve answered ${JSON.stringify(approved)}`);

  // ---- back at the client: the page navigated there by itself -------------
  const backUrl = await Promise.race([
    back,
    new Promise((_, reject) =>
      setTimeout(
        () => reject(new Error(`the page did not go to ${redirectUri} (it is at ${page.url()})`)),
        STEP_MS,
      ).unref(),
    ),
  ]);
  const got = new URL(backUrl);
  if (got.searchParams.get('error')) {
    throw new Error(`the authorization response is an error: ${backUrl}`);
  }

  // ---- the relying party: code → tokens, ID token and iss validated --------
  const tokens = await client.authorizationCodeGrant(config, got, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  if (!claims) throw new Error('no ID token claims');
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);

  // ---- the device flow, the user code typed on the /device page ----------
  let device = null;
  if (args['device-client-id']) {
    const deviceConfig = await client.discovery(
      new URL(issuer),
      args['device-client-id'],
      { id_token_signed_response_alg: 'ES256' },
      client.None(),
      { execute: [client.allowInsecureRequests], timeout: STEP_MS / 1000 },
    );
    const started = await client.initiateDeviceAuthorization(deviceConfig, { scope: 'openid profile' });
    if (started.verification_uri !== `${issuer}/device`) {
      throw new Error(`verification_uri is ${started.verification_uri}`);
    }
    const phonePage = await context.newPage();
    phonePage.setDefaultTimeout(STEP_MS);
    phonePage.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`/device: ${m.text()}`);
    });
    phonePage.on('pageerror', (e) => consoleErrors.push(`/device uncaught: ${e.message}`));
    const dr = await phonePage.goto(started.verification_uri, { waitUntil: 'domcontentloaded' });
    if (!dr || dr.status() !== 200) throw new Error(`GET /device: ${dr ? dr.status() : 'no response'}`);
    // Typed as a person would: lower case, without the dash.
    await phonePage.locator('#user-code').fill(started.user_code.replace('-', '').toLowerCase());
    await phonePage.locator('#device-submit').click();
    await phonePage.waitForURL(/\/m\/[^/?#]+$/, { timeout: STEP_MS });
    const landed = phonePage.url();
    if (landed !== started.verification_uri_complete) {
      throw new Error(`/device went to ${landed}, the device's QR names ${started.verification_uri_complete}`);
    }
    const deviceLogin = new URL(landed).pathname.split('/').pop();
    const dscan = await phoneCall(`/v1/mobile/logins/${encodeURIComponent(deviceLogin)}/scan`, {}, session.token);
    if (dscan.state !== 'scanned') throw new Error(`device scan answered ${JSON.stringify(dscan)}`);
    const ddecision = {};
    if (args.match) {
      if (!started.match_code || !(dscan.match_choices || []).includes(started.match_code)) {
        throw new Error(`device match_code ${started.match_code} not among ${JSON.stringify(dscan.match_choices)}`);
      }
      ddecision.match_code = started.match_code;
    }
    const dok = await phoneCall(`/v1/mobile/logins/${encodeURIComponent(deviceLogin)}/approve`, ddecision, session.token);
    if (dok.state !== 'approved') throw new Error(`device approve answered ${JSON.stringify(dok)}`);
    const dtokens = await client.pollDeviceAuthorizationGrant(deviceConfig, started);
    const dclaims = dtokens.claims();
    if (!dclaims) throw new Error('no ID token claims from the device flow');
    device = {
      claims: dclaims,
      landed,
      client_name: dscan.client && dscan.client.name,
      match_code: started.match_code || null,
      refresh_token: dtokens.refresh_token || null,
    };
    await phonePage.waitForTimeout(200);
  }

  // Let the page settle a moment so late console errors are seen too.
  await page.waitForTimeout(200);
  await browser.close();
  browser = undefined;
  clearTimeout(overall);
  process.stdout.write(
    `${JSON.stringify({ claims, userinfo, title, match_code: matchCode || null, device, console_errors: consoleErrors })}\n`,
  );
  process.exit(0);
}

main().catch(fail);
