"""Schemathesis hooks for qrlogin (tests/schemathesis.rs runs them).

Random ids and credentials only ever reach the 400, 401 and 404 answers.
So, for most generated cases, the case is pointed at a real login made
just before it (pending, scanned or approved; header binding, so its
browser_secret is the bearer), and the phone and session calls get a real
phone token or a fresh web session: the 200s, 409s and their bodies are
checked against the document too. Credentials go through an auth provider,
so Schemathesis knows they are real and probes what happens without them.
Schemathesis re-validates a case after a hook changed it, so a negative
case stays negative or is counted as the positive one it became.

Set by the Rust test: QRL_BASE (the server), QRL_MOBILE_TOKEN (a demo
phone token), QRL_ADMIN_TOKEN (the --admin-token-file content; absent in
the OpenID Provider run), and for that run QRL_CLIENT_ID and
QRL_CLIENT_SECRET (a confidential client of --oidc-clients).

In the OpenID Provider run the OAuth calls get that client's credentials
(client_secret_basic), and most token, revocation, userinfo, logout and
user-code cases real material from a device flow run here: the device
authorizes, the phone scans and approves over the phone API, the device
redeems its code.
"""

import base64
import os
import random
import secrets
import urllib.parse

import requests
import schemathesis

BASE = os.environ["QRL_BASE"]
MOBILE = os.environ["QRL_MOBILE_TOKEN"]
ADMIN = os.environ.get("QRL_ADMIN_TOKEN")
CLIENT_ID = os.environ.get("QRL_CLIENT_ID")
CLIENT_SECRET = os.environ.get("QRL_CLIENT_SECRET")
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# Registered for CLIENT_ID in tests/schemathesis.rs.
REDIRECT_URI = "http://127.0.0.1:9/cb"
POST_LOGOUT_URI = "http://127.0.0.1:9/bye"
HTTP = requests.Session()
# Browser secrets of the logins made here, by login id.
SECRETS = {}


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def _login(state):
    """A fresh login in `state` (pending, scanned or approved); its id."""
    v = HTTP.post(f"{BASE}/v1/logins", json={"binding": "header"}, timeout=10).json()
    login_id = v["login_id"]
    SECRETS[login_id] = v["browser_secret"]
    if state in ("scanned", "approved"):
        HTTP.post(f"{BASE}/v1/mobile/logins/{login_id}/scan", headers=_bearer(MOBILE), timeout=10)
    if state == "approved":
        HTTP.post(f"{BASE}/v1/mobile/logins/{login_id}/approve", headers=_bearer(MOBILE), timeout=10)
    return login_id


def _session():
    """A fresh web session token."""
    login_id = _login("approved")
    r = HTTP.post(f"{BASE}/v1/logins/{login_id}/redeem", headers=_bearer(SECRETS[login_id]), timeout=10)
    return r.json()["token"]


def _client_auth():
    q = urllib.parse.quote
    return (q(CLIENT_ID, safe=""), q(CLIENT_SECRET, safe=""))


def _device(approve):
    """A device authorization of CLIENT_ID, approved by the phone or left
    pending; its answer (device_code, user_code, ...)."""
    r = HTTP.post(
        f"{BASE}/oauth2/device_authorization",
        data={"scope": "openid profile offline_access"},
        auth=_client_auth(),
        timeout=10,
    )
    v = r.json()
    if approve:
        login_id = v["device_code"].split(".")[0]
        HTTP.post(f"{BASE}/v1/mobile/logins/{login_id}/scan", headers=_bearer(MOBILE), timeout=10)
        HTTP.post(f"{BASE}/v1/mobile/logins/{login_id}/approve", headers=_bearer(MOBILE), timeout=10)
    return v


def _tokens():
    """Fresh tokens from a whole device flow: access_token, refresh_token,
    id_token."""
    code = _device(approve=True)["device_code"]
    r = HTTP.post(
        f"{BASE}/oauth2/token",
        data={"grant_type": DEVICE_GRANT, "device_code": code},
        auth=_client_auth(),
        timeout=10,
    )
    return r.json()


def _without_client(body):
    """A form without posted client credentials (the Basic header carries
    them; both at once is refused as it should be)."""
    body = dict(body) if isinstance(body, dict) else {}
    body.pop("client_id", None)
    body.pop("client_secret", None)
    return body


def _oidc_case(case):
    """Real material for most OpenID Provider cases; False if not one."""
    path, method = case.operation.path, case.operation.method.upper()
    if path == "/oauth2/token":
        pick = random.choice(["device", "refresh", "pending"])
        if pick == "device":
            form = {"grant_type": DEVICE_GRANT, "device_code": _device(approve=True)["device_code"]}
        elif pick == "refresh":
            form = {"grant_type": "refresh_token", "refresh_token": _tokens()["refresh_token"]}
        else:
            form = {"grant_type": DEVICE_GRANT, "device_code": _device(approve=False)["device_code"]}
        case.body = {**_without_client(case.body), **form}
    elif path == "/oauth2/revoke":
        t = _tokens()
        case.body = {**_without_client(case.body), "token": t[random.choice(["access_token", "refresh_token"])]}
    elif path == "/oauth2/device_authorization":
        case.body = _without_client(case.body)
    elif path == "/v1/device/lookup":
        case.body = {"user_code": _device(approve=False)["user_code"]}
    elif path == "/oauth2/logout":
        params = {
            "id_token_hint": _tokens()["id_token"],
            "post_logout_redirect_uri": POST_LOGOUT_URI,
            "state": secrets.token_urlsafe(8),
        }
        if method == "POST":
            case.body = params
        else:
            case.query = params
    elif path == "/oauth2/authorize":
        case.query = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile",
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
        }
    elif path == "/oauth2/authorize/login":
        query = urllib.parse.urlencode(
            {
                "response_type": "code",
                "client_id": CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "scope": "openid",
                "state": secrets.token_urlsafe(8),
            }
        )
        case.body = {"query": f"?{query}"}
    else:
        return False
    return True


@schemathesis.hook
def map_case(context, case):
    """Points most cases with a login id at a real login, and most
    OpenID Provider cases at real codes and tokens."""
    path = case.operation.path
    if CLIENT_ID and random.random() < 0.75 and _oidc_case(case):
        return case
    if "{sid}" in path and random.random() < 0.75:
        # A live session of the phone's user, so DELETE can answer 204.
        token = _session()
        case.path_parameters = {**(case.path_parameters or {}), "sid": token.split(".")[0]}
        return case
    if "{id}" not in path or random.random() < 0.25:
        return case
    states = ["pending", "scanned"] if path.startswith("/v1/mobile/") else ["pending", "scanned", "approved"]
    case.path_parameters = {**(case.path_parameters or {}), "id": _login(random.choice(states))}
    return case


@schemathesis.auth(refresh_interval=None, retry_on=[])
class Credentials:
    """The credential each side really has, or none (left as generated)."""

    def get(self, case, context):
        path = case.operation.path
        if path.startswith("/v1/mobile/logins/") or path.startswith("/v1/mobile/sessions"):
            return MOBILE
        if path.startswith("/v1/admin/"):
            return ADMIN
        if path.startswith("/v1/logins/{id}"):
            return SECRETS.get((case.path_parameters or {}).get("id"))
        if path.startswith("/v1/session"):
            return _session()
        if CLIENT_ID and path in ("/oauth2/token", "/oauth2/revoke", "/oauth2/device_authorization"):
            return ("basic", _client_auth())
        if CLIENT_ID and path == "/oauth2/userinfo":
            return _tokens()["access_token"]
        return None

    def set(self, case, data, context):
        if isinstance(data, tuple):
            user, password = data[1]
            raw = base64.b64encode(f"{user}:{password}".encode()).decode()
            case.headers = {**(case.headers or {}), "Authorization": f"Basic {raw}"}
        elif data is not None:
            case.headers = {**(case.headers or {}), **_bearer(data)}


OAUTH_FORMS = ("/oauth2/token", "/oauth2/revoke", "/oauth2/device_authorization")
# RFC 6749 §5.2 / RFC 8628 §3.5 answers about what a well-formed request
# names (its code, grant, client or login), not about its form.
OAUTH_NAMING_ERRORS = (
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "authorization_pending",
    "slow_down",
    "access_denied",
    "expired_token",
)


def _oauth_refusal(case, response):
    """Whether a 400 is an OpenID Provider refusal of what a request names
    (see filter_failure)."""
    path = case.operation.path
    # Schemathesis keeps headers as lists, under names of either case.
    ctype = next((v for k, v in response.headers.items() if k.lower() == "content-type"), "")
    if isinstance(ctype, list):
        ctype = ctype[0] if ctype else ""
    if path in OAUTH_FORMS:
        try:
            body = response.json()
        except ValueError:
            return False
        if not (isinstance(body, dict) and "error_description" in body):
            return False
        if body.get("error") == "invalid_request":
            # Only the conditional requirements a schema does not state
            # (a grant's own parameter, one client authentication), and a
            # parameter sent twice, which RFC 6749 §3.2 forbids even for
            # the unknown ones the form may carry (Schemathesis encodes an
            # extra array property as a repeated key). A form refused as
            # unreadable stays a failure.
            why = body["error_description"]
            return any(w in why for w in ("is missing", "differs", "one client authentication", "is repeated"))
        return body.get("error") in OAUTH_NAMING_ERRORS
    if path in ("/oauth2/logout", "/oauth2/authorize"):
        return ctype.startswith("text/html")
    if path == "/oauth2/authorize/login":
        # The body is the authorization request's query string: one that
        # names an unknown client or redirect URI is refused (a page), any
        # other refusal carries the `redirect` back to the client.
        try:
            return "error" in response.json()
        except ValueError:
            return False
    return False


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Two answers that are right although a check cannot know it.

    * Browser calls without the right secret answer 404 on purpose: an
      unknown login and someone else's look the same (docs/SECURITY.md §2,
      row 5). A probe without credentials getting that 404 is the design.
    * A phone call on a login that expired meanwhile answers 410 `gone`
      (the server runs with a 5 s TTL so that event streams end): valid
      data, refused because of the time, not the data.
    * The OpenID Provider's 400s for well-formed requests that name the
      wrong thing (an unknown code or client, a client_id that is not the
      Basic one, an unregistered redirect URI): RFC 6749 §5.2 and §4.1.2.1
      and RP-Initiated Logout §2 make them 400, and no schema can say which
      values are registered. Only those answers, in their documented shape.
    """
    code = getattr(failure, "code", None)
    if code == "ST202" and response is not None and response.status_code == 400 and _oauth_refusal(case, response):
        return False
    if code == "ST401" and case.operation.path.startswith("/v1/logins/{id}"):
        return "404" not in failure.message and "Not Found" not in failure.message
    if code == "ST202" and response is not None and response.status_code == 410:
        return False
    return True
