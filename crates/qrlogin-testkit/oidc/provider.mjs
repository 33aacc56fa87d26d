// A real OpenID provider for qrlogin's tests: panva's oidc-provider (the
// certified Node OP) on 127.0.0.1, started and killed by the Rust spawner in
// ../src/oidc_provider.rs. Tests need a provider whose discovery, JWKS,
// introspection and userinfo answer exactly as a production OP does, so
// everything outside /__test/ is served by oidc-provider itself, unchanged.
//
//   node provider.mjs --port P --state-dir DIR
//
// The /__test/ routes are harness controls, not part of the OP: minting
// tokens for a given subject through the provider's own models (no browser
// login), signing arbitrary JWTs with its keys (refusal tests), rotating the
// keys, counting JWKS fetches (cache tests). They exist only in this script.
//
// The signing keys live in DIR/keys.json so that a restart (same port, same
// DIR) serves the same keys, as a real OP does after a crash. Tokens, grants
// and the account names live in memory only and are gone after a restart.

import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

const CLIENT_ID = 'qrlogin';
const CLIENT_SECRET = 'qrlogin-secret';
const AUDIENCE = 'https://qrlogin.test/api';
const JWKS_PATH = '/jwks';
const SIGNING_ALGS = ['RS256', 'ES256'];
// Exit status when the port is taken: the spawner picks another one.
const EXIT_ADDR_IN_USE = 98;

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'state-dir': { type: 'string' },
  },
});
const port = Number(args.port);
if (!Number.isInteger(port) || port <= 0 || port > 65535 || !args['state-dir']) {
  console.error('usage: node provider.mjs --port P --state-dir DIR');
  process.exit(2);
}
const stateDir = args['state-dir'];
const keysPath = path.join(stateDir, 'keys.json');
const issuer = `http://127.0.0.1:${port}`;

// ---- signing keys ----------------------------------------------------------

/** A fresh private signing JWK for `alg`, its kid the RFC 7638 thumbprint. */
async function generateSigningKey(alg) {
  const { privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  jwk.kid = await jose.calculateJwkThumbprint(jwk);
  jwk.alg = alg;
  jwk.use = 'sig';
  return jwk;
}

async function generateSigningKeys() {
  return Promise.all(SIGNING_ALGS.map(generateSigningKey));
}

/** Writes the keys atomically (rename), so a kill mid-write leaves the old file. */
function persistKeys(keys) {
  const tmp = `${keysPath}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ keys }, null, 2), { mode: 0o600 });
  fs.renameSync(tmp, keysPath);
}

async function loadOrCreateKeys() {
  if (fs.existsSync(keysPath)) {
    return JSON.parse(fs.readFileSync(keysPath, 'utf8')).keys;
  }
  const keys = await generateSigningKeys();
  persistKeys(keys);
  return keys;
}

/** The current key of `alg`: the first one listed (new keys go first). */
function currentKey(alg) {
  return keys.find((k) => k.alg === alg);
}

function publicJwk(jwk) {
  const {
    d, p, q, dp, dq, qi, ...pub
  } = jwk;
  return pub;
}

// ---- accounts --------------------------------------------------------------

/** accountId → {name, preferred_username}, as registered by /__test/token. */
const accounts = new Map();

function account(id) {
  const known = accounts.get(id) ?? {};
  return {
    sub: id,
    name: known.name ?? id,
    preferred_username: known.preferred_username ?? id,
  };
}

// ---- token store -----------------------------------------------------------

// oidc-provider's own memory adapter keeps one store per Provider instance
// (and at most 1000 entries); /__test/rotate builds a new instance, and the
// tokens minted before must stay valid, as they do at a real OP whose keys
// rotate. So all instances share this store: the adapter interface of
// oidc-provider (upsert, find, findByUid, findByUserCode, consume, destroy,
// revokeByGrantId) over process memory, gone with the process.

/** `${model}:${id}` → {payload, expiresAt (ms)}. */
const stored = new Map();
/** grantId → the keys of the tokens issued under it. */
const grantMembers = new Map();
/** Secondary indexes: session uid → id, user code → id. */
const sessionUids = new Map();
const userCodes = new Map();

class SharedMemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    stored.set(key, { payload, expiresAt });
    if (this.model !== 'Grant' && payload.grantId) {
      if (!grantMembers.has(payload.grantId)) grantMembers.set(payload.grantId, new Set());
      grantMembers.get(payload.grantId).add(key);
    }
    if (this.model === 'Session' && payload.uid) sessionUids.set(payload.uid, id);
    if (payload.userCode) userCodes.set(payload.userCode, id);
  }

  async find(id) {
    const key = this.key(id);
    const entry = stored.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      stored.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    const id = sessionUids.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = userCodes.get(userCode);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const entry = stored.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    stored.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const key of grantMembers.get(grantId) ?? []) {
      stored.delete(key);
    }
    grantMembers.delete(grantId);
  }
}

// ---- the provider ----------------------------------------------------------

/** What the one resource server's access tokens look like: RFC 9068 JWTs. */
function resourceServerInfo(alg = 'RS256') {
  return {
    scope: 'openid profile api',
    audience: AUDIENCE,
    accessTokenFormat: 'jwt',
    accessTokenTTL: 3600,
    jwt: { sign: { alg } },
  };
}

/** Only our own client may introspect or revoke our own client's tokens. */
function sameClientPolicy(_ctx, client, token) {
  return client.clientId === CLIENT_ID && token.clientId === CLIENT_ID;
}

function buildProvider(jwks) {
  const provider = new Provider(issuer, {
    adapter: SharedMemoryAdapter,
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: jwks },
    cookies: { keys: ['qrlogin-test-cookie-key'] },
    routes: { jwks: JWKS_PATH },
    scopes: ['openid', 'profile', 'api'],
    claims: { openid: ['sub'], profile: ['name', 'preferred_username'] },
    // Like Keycloak's default profile mappers (and an Auth0 action): the
    // user's display name travels in the access token itself, so JWT
    // access tokens and introspection answers carry `name` and
    // `preferred_username` besides `sub`.
    async extraTokenClaims(_ctx, token) {
      if (!token.accountId) return undefined;
      const { name, preferred_username } = account(token.accountId);
      return { name, preferred_username };
    },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return account(id);
        },
      };
    },
    features: {
      // Nobody logs in through a browser here: tokens come from /__test/token.
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true, allowedPolicy: sameClientPolicy },
      revocation: { enabled: true, allowedPolicy: sameClientPolicy },
      userinfo: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => false,
        async getResourceServerInfo(_ctx, resourceIndicator) {
          if (resourceIndicator === AUDIENCE) {
            return resourceServerInfo();
          }
          throw new errors.InvalidTarget();
        },
      },
    },
    ttl: {
      AccessToken: 3600,
      ClientCredentials: 3600,
      Grant: 14 * 24 * 3600,
      IdToken: 3600,
      Interaction: 3600,
      Session: 14 * 24 * 3600,
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  return provider;
}

let keys = await loadOrCreateKeys();
// Swapped (with the keys) by /__test/rotate; the token store is shared by
// all instances (SharedMemoryAdapter), so tokens minted before stay valid.
let provider = buildProvider(keys);
let providerCallback = provider.callback();
let jwksRequests = 0;

// ---- /__test/ controls -----------------------------------------------------

class BadRequest extends Error {}

function need(condition, message) {
  if (!condition) throw new BadRequest(message);
}

async function mint(body) {
  const {
    sub, name, preferred_username: preferredUsername,
    format = 'jwt', alg = 'RS256', scope = 'openid profile', expires_in: expiresIn = 3600,
  } = body;
  need(typeof sub === 'string' && sub !== '', '"sub" must be a non-empty string');
  need(format === 'jwt' || format === 'opaque', '"format" must be "jwt" or "opaque"');
  need(SIGNING_ALGS.includes(alg), `"alg" must be one of ${SIGNING_ALGS.join(', ')}`);
  need(typeof scope === 'string' && scope !== '', '"scope" must be a non-empty string');
  need(Number.isInteger(expiresIn) && expiresIn > 0, '"expires_in" must be a positive integer (use /__test/sign for expired tokens)');
  need(name === undefined || typeof name === 'string', '"name" must be a string');
  need(preferredUsername === undefined || typeof preferredUsername === 'string', '"preferred_username" must be a string');

  const known = accounts.get(sub) ?? {};
  accounts.set(sub, {
    name: name ?? known.name,
    preferred_username: preferredUsername ?? known.preferred_username,
  });

  // What an authorization-code flow would have left behind: a Grant of this
  // account to our client (introspection and userinfo look it up), then an
  // AccessToken bound to it. A JWT token is for the resource server (its
  // audience), an opaque one has no audience so userinfo accepts it.
  const client = await provider.Client.find(CLIENT_ID);
  const grant = new provider.Grant({ accountId: sub, clientId: CLIENT_ID });
  if (format === 'jwt') {
    grant.addResourceScope(AUDIENCE, scope);
  } else {
    grant.addOIDCScope(scope);
  }
  const grantId = await grant.save();

  const token = new provider.AccessToken({
    accountId: sub,
    client,
    grantId,
    gty: 'authorization_code',
    scope,
    expiresIn,
    ...(format === 'jwt'
      ? { resourceServer: new provider.ResourceServer(AUDIENCE, resourceServerInfo(alg)) }
      : {}),
  });
  const accessToken = await token.save();
  return { access_token: accessToken, token_type: 'Bearer', expires_in: expiresIn };
}

/** Revokes through the provider's own revocation endpoint, as a client would. */
async function revoke(body) {
  need(typeof body.token === 'string' && body.token !== '', '"token" must be a non-empty string');
  const response = await fetch(`${issuer}/token/revocation`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token: body.token }),
  });
  if (!response.ok) {
    throw new BadRequest(`revocation endpoint answered ${response.status}: ${await response.text()}`);
  }
  return { revoked: true };
}

/**
 * Signs `claims` verbatim (nothing added) with the current key of the
 * header's alg. Header defaults: alg RS256, kid the key's, typ at+jwt; a
 * header member set to null is left out.
 */
async function sign(body) {
  const header = { alg: 'RS256', typ: 'at+jwt', ...(body.header ?? {}) };
  need(typeof body.claims === 'object' && body.claims !== null, '"claims" must be an object');
  need(SIGNING_ALGS.includes(header.alg), `header "alg" must be one of ${SIGNING_ALGS.join(', ')}`);
  const jwk = currentKey(header.alg);
  if (!('kid' in header)) header.kid = jwk.kid;
  for (const [member, value] of Object.entries(header)) {
    if (value === null) delete header[member];
  }
  const key = await jose.importJWK(jwk, header.alg);
  const jwt = await new jose.CompactSign(new TextEncoder().encode(JSON.stringify(body.claims)))
    .setProtectedHeader(header)
    .sign(key);
  return { jwt };
}

async function rotate(body) {
  need(typeof body.keep_old === 'boolean', '"keep_old" must be a boolean');
  const fresh = await generateSigningKeys();
  const next = body.keep_old ? [...fresh, ...keys] : fresh;
  persistKeys(next);
  const nextProvider = buildProvider(next);
  keys = next;
  provider = nextProvider;
  providerCallback = nextProvider.callback();
  return { kids: keys.map((k) => k.kid) };
}

function publicKeyFor(query) {
  const alg = query.get('alg') ?? 'RS256';
  need(SIGNING_ALGS.includes(alg), `"alg" must be one of ${SIGNING_ALGS.join(', ')}`);
  return publicJwk(currentKey(alg));
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  if (text === '') return {};
  try {
    const value = JSON.parse(text);
    need(typeof value === 'object' && value !== null && !Array.isArray(value), 'the body must be a JSON object');
    return value;
  } catch (e) {
    if (e instanceof BadRequest) throw e;
    throw new BadRequest(`the body is not JSON: ${e.message}`);
  }
}

const routes = {
  'POST /__test/token': async (req) => mint(await readJson(req)),
  'POST /__test/revoke': async (req) => revoke(await readJson(req)),
  'POST /__test/sign': async (req) => sign(await readJson(req)),
  'POST /__test/rotate': async (req) => rotate(await readJson(req)),
  'GET /__test/stats': async () => ({ jwks_requests: jwksRequests }),
  'GET /__test/public_jwk': async (_req, url) => publicKeyFor(url.searchParams),
};

async function testControl(req, res, url) {
  const route = routes[`${req.method} ${url.pathname}`];
  let status = 200;
  let body;
  if (!route) {
    status = 404;
    body = { error: `no test control ${req.method} ${url.pathname}` };
  } else {
    try {
      body = await route(req, url);
    } catch (e) {
      status = e instanceof BadRequest ? 400 : 500;
      body = { error: e.message };
      if (status === 500) console.error(e);
    }
  }
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

// ---- the HTTP server -------------------------------------------------------

const server = http.createServer((req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname.startsWith('/__test/')) {
    testControl(req, res, url);
    return;
  }
  if (url.pathname === JWKS_PATH) {
    jwksRequests += 1;
  }
  providerCallback(req, res);
});

server.on('error', (e) => {
  console.error(`listen on ${issuer}: ${e.message}`);
  process.exit(e.code === 'EADDRINUSE' ? EXIT_ADDR_IN_USE : 1);
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
