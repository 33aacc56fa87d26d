//! The OpenAPI document, generated from the handlers' annotations so it
//! cannot drift from the code; served at `/openapi.json`.

use crate::error::ErrorBody;
use crate::routes::{browser, ops, phone, session};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct MobileTokenScheme;

impl Modify for MobileTokenScheme {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "mobile_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "qrlogin", description = "Scan a QR code with your phone to log in.\n\nWeb sessions (`--session-format`): `opaque` (default) tokens that only `GET /v1/session` checks, or `jwt`: ES256 JWTs (claims iss, sub, name, iat, exp, sid, jti, and aud with `--jwt-audience`; key from `--jwt-key-file`) that anyone can verify with the keys at `/.well-known/jwks.json`."),
    paths(
        browser::create, browser::status, browser::events, browser::redeem, browser::cancel,
        browser::qr_svg, browser::qr_png,
        phone::sign_in, phone::scan, phone::approve, phone::deny,
        session::whoami, session::logout, session::jwks,
        ops::healthz, ops::readyz, ops::metrics,
    ),
    components(schemas(ErrorBody, qrlogin_core::State, qrlogin_core::User, session::JwkSetDoc, session::JwkDoc)),
    modifiers(&MobileTokenScheme)
)]
pub struct ApiDoc;

/// `GET /openapi.json`. Its `servers` entry is the public URL, so the
/// paths (relative to it) are right under any `--public-url` path.
pub async fn openapi_json(
    axum::extract::State(app): axum::extract::State<crate::AppState>,
) -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.servers = Some(vec![utoipa::openapi::Server::new(app.public_url())]);
    Json(doc)
}
