//! The OpenAPI document, generated from the handlers' annotations so it
//! cannot drift from the code; served at `/openapi.json`.
//!
//! Two modifiers add what the annotations cannot say once per handler:
//! [`SecuritySchemes`] (how each side authenticates) and [`FrontDoor`]
//! (the answers the front-door middleware may give on any route, the
//! `Retry-After` header of 429 and 503, and the shape of a login id).
//! `tests/schemathesis.rs` runs Schemathesis against the served document
//! and the real binary: every status and body must match it.

use crate::error::ErrorBody;
use crate::routes::{admin, browser, ops, phone, session, sessions};
use axum::Json;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, AuthorizationCode, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes,
    SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// The credentials: the phone's token, the browser secret (a bearer with
/// header binding, else the login-scoped `qrl_bs` cookie), the web
/// session (bearer or the `qrl_session` cookie) and an OAuth client's
/// HTTP Basic credentials.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(what))
                    .build(),
            )
        };
        let cookie = |name: &str, what: &str| {
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(name, what)))
        };
        components.add_security_scheme(
            "mobile_token",
            bearer("the phone app's credential, checked by --mobile-verifier"),
        );
        // OAuth 2.0 itself (userinfo's access token), so the document names
        // the token endpoint as the one that mints credentials (its 400s
        // for an unknown code are RFC 6749 §5.2's answers, not a refusal of
        // well-formed data). The device grant has no OpenAPI flow.
        components.add_security_scheme(
            "access_token",
            SecurityScheme::OAuth2(OAuth2::with_description(
                [Flow::AuthorizationCode(AuthorizationCode::new(
                    "/oauth2/authorize",
                    "/oauth2/token",
                    Scopes::from_iter([
                        ("openid", "sign in (the ID token's sub)"),
                        ("profile", "the name claim"),
                        ("offline_access", "a refresh token"),
                    ]),
                ))],
                "an access token from the OpenID Provider's token endpoint (userinfo); \
                 also from the device grant (RFC 8628)",
            )),
        );
        components.add_security_scheme(
            "browser_secret",
            bearer("the login's browser_secret (header binding: POST /v1/logins with {\"binding\":\"header\"})"),
        );
        components.add_security_scheme(
            "browser_cookie",
            cookie(
                "qrl_bs",
                "the login's browser secret, set by POST /v1/logins (cookie binding)",
            ),
        );
        components.add_security_scheme(
            "session_token",
            bearer("the web session token (or JWT) from redeem"),
        );
        components.add_security_scheme(
            "admin_token",
            bearer("the site backend's token, the content of --admin-token-file"),
        );
        components.add_security_scheme(
            "session_cookie",
            cookie("qrl_session", "the web session cookie set by redeem"),
        );
        // An OAuth client's own credentials (RFC 6749 §2.3.1
        // client_secret_basic). Optional where it is declared: the same
        // endpoints take client_secret_post (in the form) and public
        // clients (client_id only).
        components.add_security_scheme(
            "client_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "an OAuth client's client_id and secret (client_secret_basic, RFC 6749 §2.3.1)",
                    ))
                    .build(),
            ),
        );
    }
}

/// What every route may answer because of the front door
/// (`routes/guard.rs`) and the extractors, whatever its handler does: 400
/// (an unreadable body), 408 (a body that did not arrive in time), 413 (a
/// body over `--max-body`), 429 (the per-address limit of every request),
/// and 403 for POST and DELETE (a cross-site request carrying cookies).
/// Every 429 and 503 carries `Retry-After`. Path `id`s are 22 base64url
/// characters.
struct FrontDoor;

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

fn front_door(op: &mut Operation, unsafe_method: bool) {
    let responses = &mut op.responses.responses;
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description));
    };
    add("400", "malformed id, query, header or body");
    add(
        "408",
        "request_timeout: the request body did not arrive within 10 s",
    );
    add("413", "payload_too_large: the body is over --max-body");
    add(
        "429",
        "rate_limited: this address sent more than its --rate-limit allows",
    );
    if unsafe_method {
        add(
            "403",
            "forbidden: a cross-site request carrying cookies (foreign Origin or Sec-Fetch-Site)",
        );
    }
    for (status, response) in responses.iter_mut() {
        if let ("429" | "503", RefOr::T(r)) = (status.as_str(), response) {
            r.headers.insert(
                "Retry-After".into(),
                HeaderBuilder::new()
                    .schema(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1)),
                    )
                    .description(Some("seconds to wait before trying again"))
                    .build(),
            );
        }
    }
    // An optional body is absent or the object, never JSON `null` (utoipa
    // writes `Option<T>` as "null or T").
    if let Some(body) = &mut op.request_body {
        for content in body.content.values_mut() {
            if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
                let not_null: Vec<_> = one_of
                    .items
                    .iter()
                    .filter(|s| !matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null)))
                    .cloned()
                    .collect();
                if let [only] = &not_null[..] {
                    content.schema = Some(only.clone());
                }
            }
        }
    }
    for p in op.parameters.iter_mut().flatten() {
        if (p.name == "id" || p.name == "sid") && matches!(p.parameter_in, ParameterIn::Path) {
            p.schema = Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(22))
                    .max_length(Some(22))
                    // 128 bits: 21 characters and a last one whose low
                    // four bits are zero (the only spelling LoginId takes).
                    .pattern(Some("^[A-Za-z0-9_-]{21}[AQgw]$"))
                    .into(),
            );
        }
    }
}

impl Modify for FrontDoor {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        for item in api.paths.paths.values_mut() {
            for (op, unsafe_method) in [
                (&mut item.get, false),
                (&mut item.head, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.patch, true),
                (&mut item.delete, true),
            ] {
                if let Some(op) = op {
                    front_door(op, unsafe_method);
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "qrlogin", description = "Scan a QR code with your phone to log in.\n\nWeb sessions (`--session-format`): `opaque` (default) tokens that only `GET /v1/session` checks, or `jwt`: ES256 JWTs (claims iss, sub, name, iat, exp, sid, jti, and aud with `--jwt-audience`; key from `--jwt-key-file`) that anyone can verify with the keys at `/.well-known/jwks.json`.\n\nBrowser calls without the right browser secret answer 404, like an unknown login (never 401): a caller without the secret cannot tell the two apart."),
    paths(
        browser::create, browser::status, browser::events, browser::redeem, browser::cancel,
        browser::qr_svg, browser::qr_png,
        phone::sign_in, phone::scan, phone::approve, phone::deny,
        sessions::list, sessions::revoke_one, sessions::revoke_all, admin::revoke_all,
        session::whoami, session::logout, session::jwks,
        ops::healthz, ops::readyz, ops::metrics,
        crate::oidc::endpoints::discovery, crate::oidc::authorize::authorize,
        crate::oidc::authorize::start, crate::oidc::authorize::continue_login,
        crate::oidc::token::token, crate::oidc::endpoints::userinfo,
        crate::oidc::endpoints::revoke, crate::oidc::endpoints::logout,
        crate::oidc::endpoints::logout_by_form,
        crate::oidc::device::device_authorization, crate::oidc::device::lookup,
        crate::oidc::device::device_page,
    ),
    components(schemas(ErrorBody, crate::oidc::error::OAuthErrorBody, crate::oidc::error::OAuthErrorCode, crate::oidc::endpoints::BearerErrorBody, qrlogin_core::State, qrlogin_core::User, session::JwkSetDoc, session::JwkDoc)),
    modifiers(&SecuritySchemes, &FrontDoor)
)]
pub struct ApiDoc;

/// Whether `path` belongs to the OpenID Provider face (tag `oidc`, and its
/// `/device` page), which exists only with `--oidc-clients`.
fn oidc_path(path: &str) -> bool {
    path.starts_with("/oauth2/")
        || path == "/.well-known/openid-configuration"
        || path.starts_with("/v1/device/")
        || path == "/device"
        || path == "/v1/logins/{id}/continue"
}

/// `GET /openapi.json`. Its `servers` entry is the public URL, so the
/// paths (relative to it) are right under any `--public-url` path. It
/// documents what this instance serves: without `--oidc-clients` the
/// OpenID Provider's paths (which then answer 404) are left out.
pub async fn openapi_json(
    axum::extract::State(app): axum::extract::State<crate::AppState>,
) -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.servers = Some(vec![utoipa::openapi::Server::new(app.public_url())]);
    if app.oidc.is_none() {
        doc.paths.paths.retain(|path, _| !oidc_path(path));
    }
    if app.admin_token.is_none() {
        doc.paths
            .paths
            .retain(|path, _| !path.starts_with("/v1/admin/"));
    }
    Json(doc)
}
