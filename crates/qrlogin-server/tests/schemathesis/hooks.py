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
phone token), QRL_ADMIN_TOKEN (the --admin-token-file content).
"""

import os
import random

import requests
import schemathesis

BASE = os.environ["QRL_BASE"]
MOBILE = os.environ["QRL_MOBILE_TOKEN"]
ADMIN = os.environ["QRL_ADMIN_TOKEN"]
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


@schemathesis.hook
def map_case(context, case):
    """Points most cases with a login id at a real login."""
    path = case.operation.path
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
        return None

    def set(self, case, data, context):
        if data is not None:
            case.headers = {**(case.headers or {}), **_bearer(data)}


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Two answers that are right although a check cannot know it.

    * Browser calls without the right secret answer 404 on purpose: an
      unknown login and someone else's look the same (docs/SECURITY.md §2,
      row 5). A probe without credentials getting that 404 is the design.
    * A phone call on a login that expired meanwhile answers 410 `gone`
      (the server runs with a 5 s TTL so that event streams end): valid
      data, refused because of the time, not the data.
    """
    code = getattr(failure, "code", None)
    if code == "ST401" and case.operation.path.startswith("/v1/logins/{id}"):
        return "404" not in failure.message and "Not Found" not in failure.message
    if code == "ST202" and response is not None and response.status_code == 410:
        return False
    return True
