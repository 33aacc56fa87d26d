"""A minimal website that signs its users in with qrlogin (the OpenID
Provider face): "Sign in with your phone" via the authorization code flow
with PKCE, using Authlib's Flask OAuth client.

Routes:
  /          "Logged in as <name>" or a sign-in link
  /login     redirects to qrlogin's /oauth2/authorize (QR page)
  /callback  qrlogin sends the browser back here with ?code=&state=&iss=
  /logout    forgets the user here and ends the qrlogin session (RP-initiated logout)

Settings (environment):
  QRLOGIN_URL          qrlogin's issuer URL          (default http://127.0.0.1:8080)
  QRLOGIN_CLIENT_ID    this site's client_id          (default flask-demo)
  QRLOGIN_CLIENT_SECRET  the secret whose hash is in clients.json (required)
  APP_URL              where this site is reached     (default http://127.0.0.1:5000)
  FLASK_SECRET_KEY     signs Flask's session cookie   (default: random per start)

See README.md for the commands.
"""

import os
import secrets
from html import escape
from urllib.parse import urlencode, urlsplit

from authlib.integrations.flask_client import OAuth, OAuthError
from flask import Flask, abort, redirect, request, session, url_for

QRLOGIN_URL = os.environ.get("QRLOGIN_URL", "http://127.0.0.1:8080").rstrip("/")
CLIENT_ID = os.environ.get("QRLOGIN_CLIENT_ID", "flask-demo")
CLIENT_SECRET = os.environ.get("QRLOGIN_CLIENT_SECRET")
APP_URL = os.environ.get("APP_URL", "http://127.0.0.1:5000").rstrip("/")
# Must be exactly one of the client's redirect_uris in clients.json.
REDIRECT_URI = APP_URL + "/callback"
# Must be one of its post_logout_redirect_uris.
AFTER_LOGOUT = APP_URL + "/"

if not CLIENT_SECRET:
    raise SystemExit("set QRLOGIN_CLIENT_SECRET (the secret whose hash is in clients.json)")

app = Flask(__name__)
app.secret_key = os.environ.get("FLASK_SECRET_KEY") or secrets.token_hex(32)
app.config.update(
    # qrlogin on the same host sets its own cookies (cookies ignore ports):
    # a name of our own, so nothing clashes.
    SESSION_COOKIE_NAME="flask_demo_session",
    SESSION_COOKIE_HTTPONLY=True,
    SESSION_COOKIE_SAMESITE="Lax",
    SESSION_COOKIE_SECURE=APP_URL.startswith("https://"),
)

oauth = OAuth(app)
oauth.register(
    name="qrlogin",
    client_id=CLIENT_ID,
    client_secret=CLIENT_SECRET,
    server_metadata_url=QRLOGIN_URL + "/.well-known/openid-configuration",
    # Authlib adds state and nonce itself; with code_challenge_method it also
    # makes a PKCE verifier, keeps it in the session and sends it at /callback.
    client_kwargs={"scope": "openid profile", "code_challenge_method": "S256"},
)


@app.before_request
def canonical_host():
    # The state, nonce and PKCE verifier live in this site's session cookie,
    # which the browser only sends back to the host it was set on: keep
    # everyone on APP_URL's host (127.0.0.1 and localhost are two hosts).
    want = urlsplit(APP_URL).netloc
    if request.host != want:
        return redirect(APP_URL + request.full_path.rstrip("?"), code=302)
    return None


def page(body):
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<title>Flask demo</title>"
        "<body style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
        f"<h1>Flask demo</h1>{body}</body></html>"
    )


@app.get("/")
def index():
    user = session.get("user")
    if user:
        name = user.get("name") or user["sub"]
        return page(
            f"<p>Logged in as {escape(name)}</p>"
            f"<p><small>sub {escape(user['sub'])}, via {escape(', '.join(user.get('amr', [])))}</small></p>"
            f"<p><a href='{url_for('logout')}'>Log out</a></p>"
        )
    return page(f"<p>You are not signed in.</p><p><a href='{url_for('login')}'>Sign in with your phone</a></p>")


@app.get("/login")
def login():
    # Stores state, nonce and the PKCE verifier in the session, then
    # redirects to qrlogin's authorization endpoint (the QR page).
    return oauth.qrlogin.authorize_redirect(REDIRECT_URI)


@app.get("/callback")
def callback():
    # RFC 9207: the response names its issuer; it must be ours (mix-up defence).
    issuer = oauth.qrlogin.load_server_metadata()["issuer"]
    if request.args.get("iss", issuer) != issuer:
        abort(400, "the authorization response came from another issuer")
    try:
        # Checks state, sends code + PKCE verifier (client_secret_basic), and
        # validates the ID token: signature (ES256, qrlogin's JWKS), iss, aud,
        # exp, nonce.
        token = oauth.qrlogin.authorize_access_token()
    except OAuthError as e:
        return page(f"<p>Sign-in failed: {escape(e.error or '')} {escape(e.description or '')}</p>"
                    f"<p><a href='{url_for('index')}'>Back</a></p>"), 400
    claims = token["userinfo"]  # the validated ID token claims
    session.clear()
    session["user"] = {"sub": claims["sub"], "name": claims.get("name"), "amr": claims.get("amr", [])}
    session["id_token"] = token["id_token"]
    return redirect(url_for("index"))


@app.get("/logout")
def logout():
    id_token = session.get("id_token")
    session.clear()
    end = oauth.qrlogin.load_server_metadata().get("end_session_endpoint")
    if not end or not id_token:
        return redirect(url_for("index"))
    # Ends the qrlogin session too (it revokes this sign-in's tokens), then
    # qrlogin sends the browser back to AFTER_LOGOUT.
    query = urlencode({"id_token_hint": id_token, "post_logout_redirect_uri": AFTER_LOGOUT, "client_id": CLIENT_ID})
    return redirect(f"{end}?{query}")


if __name__ == "__main__":
    u = urlsplit(APP_URL)
    app.run(host=u.hostname, port=u.port or 5000, debug=False)
