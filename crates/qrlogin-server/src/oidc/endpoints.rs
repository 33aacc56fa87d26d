//! The provider's other endpoints: discovery (OpenID Connect Discovery
//! 1.0), userinfo (Core §5.3), token revocation (RFC 7009) and
//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).

use super::authorize::{oidc_of, redirect, with_query};
use super::token::{parse_form, revoke_sid, session_alive};
use super::{authenticate, html_page, no_store, Grant, OAuthError};
use crate::app::AppState;
use crate::error::ApiError;
use crate::routes::extract::bearer;
use axum::extract::{RawQuery, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use qrlogin_core::{GrantKey, GrantKind};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `GET /.well-known/openid-configuration`
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "oidc", responses((status = 200, description = "OpenID Connect Discovery 1.0 metadata", content_type = "application/json"), (status = 404, description = "no OpenID Provider here (no --oidc-clients)", body = crate::error::ErrorBody)))]
pub async fn discovery(AxState(app): AxState<AppState>) -> Result<Response, ApiError> {
    let oidc = oidc_of(&app)?;
    let i = &oidc.issuer;
    let base = &app.public_url;
    let mut doc = json!({
        "issuer": i,
        "authorization_endpoint": format!("{base}/oauth2/authorize"),
        "token_endpoint": format!("{base}/oauth2/token"),
        "userinfo_endpoint": format!("{base}/oauth2/userinfo"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{base}/oauth2/revoke"),
        "end_session_endpoint": format!("{base}/oauth2/logout"),
        "device_authorization_endpoint": format!("{base}/oauth2/device_authorization"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "offline_access"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "acr", "sid", "name"],
        "prompt_values_supported": ["login", "none"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
    });
    if let Some(acr) = &oidc.acr {
        doc["acr_values_supported"] = json!([acr]);
    }
    let mut resp = Json(doc).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    Ok(resp)
}

/// The error codes of a protected resource (RFC 6750 §3.1) that userinfo
/// answers: no token at all, or one that is unknown, expired or revoked.
#[derive(Serialize, Clone, Copy, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BearerErrorCode {
    InvalidRequest,
    InvalidToken,
}

/// The body of userinfo's 401; the challenge itself is the
/// `WWW-Authenticate: Bearer` header (RFC 6750 §3).
#[derive(Serialize, utoipa::ToSchema)]
pub struct BearerErrorBody {
    pub error: BearerErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<&'static str>,
}

/// A 401 with its challenge (RFC 6750 §3). Without a token the challenge
/// carries no error code (§3.1: a request without credentials is not an
/// error to report), only the body says what was missing.
fn unauthorized(error: BearerErrorCode) -> Response {
    let (challenge, description) = match error {
        BearerErrorCode::InvalidRequest => ("Bearer", None),
        BearerErrorCode::InvalidToken => (
            "Bearer error=\"invalid_token\"",
            Some("the access token is unknown, expired or revoked"),
        ),
    };
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        Json(BearerErrorBody {
            error,
            error_description: description,
        }),
    )
        .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    no_store(resp)
}

fn invalid_token() -> Response {
    unauthorized(BearerErrorCode::InvalidToken)
}

/// `GET|POST /oauth2/userinfo`
#[utoipa::path(method(get, post), path = "/oauth2/userinfo", tag = "oidc", security(("access_token" = [])), responses((status = 200, description = "{sub, name?}", content_type = "application/json"), (status = 401, description = "RFC 6750 §3: no access token (invalid_request) or a bad one (invalid_token)", body = BearerErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`, with `error=\"invalid_token\"` for a bad token"))), (status = 404, description = "no OpenID Provider here (no --oidc-clients)", body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub async fn userinfo(
    AxState(app): AxState<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    oidc_of(&app)?;
    let Some(token) = bearer(&headers) else {
        return Ok(unauthorized(BearerErrorCode::InvalidRequest));
    };
    let now = app.now_ms();
    let Some(json) = app
        .store
        .grant(&GrantKey::of_secret(GrantKind::AccessToken, token), now)
        .await?
    else {
        return Ok(invalid_token());
    };
    let g = Grant::from_json(&json).map_err(|_| ApiError::Internal)?;
    match session_alive(&app, &g.sid).await {
        Ok(true) => {}
        Ok(false) => return Ok(invalid_token()),
        Err(_) => return Err(ApiError::StoreUnavailable),
    }
    let mut body = json!({"sub": g.sub});
    if g.scope.split(' ').any(|s| s == "profile") {
        body["name"] = json!(g.name);
    }
    Ok(no_store(Json(body).into_response()))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct RevokeForm {
    /// Required (RFC 7009 §2.1); an `Option` so that its absence is an
    /// OAuth `invalid_request`.
    #[schema(required = true)]
    pub token: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// `POST /oauth2/revoke` — always 200 for a token the client may revoke or
/// that is unknown (RFC 7009 §2.2). Revoking a refresh token ends its OP
/// session too, and so every access token of that sign-in (§2.1's SHOULD).
#[utoipa::path(post, path = "/oauth2/revoke", tag = "oidc", security((), ("client_basic" = [])), request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"), responses((status = 200, description = "revoked, or unknown (RFC 7009 §2.2)"), (status = 400, body = crate::oidc::error::OAuthErrorBody), (status = 401, description = "invalid_client (with `WWW-Authenticate: Basic` when Basic was sent)", body = crate::oidc::error::OAuthErrorBody), (status = 500, description = "server_error: a stored grant that cannot be read", body = crate::oidc::error::OAuthErrorBody), (status = 503, body = crate::oidc::error::OAuthErrorBody)))]
pub async fn revoke(
    AxState(app): AxState<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if app.oidc.is_none() {
        return crate::error::ApiError::NoRoute.into_response();
    }
    let r = async {
        let oidc = app
            .oidc
            .as_ref()
            .ok_or_else(|| OAuthError::invalid_request("no OpenID Provider here"))?;
        let form: RevokeForm = parse_form(&headers, &body)?;
        let client = authenticate(
            oidc,
            &headers,
            form.client_id.as_deref(),
            form.client_secret.as_deref(),
        )
        .await?;
        let token = form
            .token
            .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        let now = app.now_ms();
        for kind in [GrantKind::RefreshToken, GrantKind::AccessToken] {
            let key = GrantKey::of_secret(kind, &token);
            if let Some(json) = app.store.grant(&key, now).await? {
                let g = Grant::from_json(&json)?;
                if g.client_id != client.id {
                    // Not this client's: say nothing (RFC 7009 §2.1).
                    break;
                }
                app.store.delete_grant(&key).await?;
                if kind == GrantKind::RefreshToken {
                    revoke_sid(&app, &g.sid).await;
                }
                break;
            }
        }
        Ok::<_, OAuthError>(())
    }
    .await;
    match r {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => e.into_response(),
    }
}

/// RP-initiated logout's parameters (RP-Initiated Logout 1.0 §2), in the
/// query of a GET or the form body of a POST.
#[derive(Deserialize, Default, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogoutForm {
    pub id_token_hint: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub client_id: Option<String>,
}

/// `GET|POST /oauth2/logout` ([`LogoutForm`]): ends the OP session named
/// by the hint's `sid` and redirects only to a URI registered for that
/// client.
#[utoipa::path(get, path = "/oauth2/logout", tag = "oidc", params(LogoutForm), responses((status = 200, description = "signed out (a page)", content_type = "text/html"), (status = 303, description = "to the registered post_logout_redirect_uri"), (status = 400, description = "unregistered redirect (a page)", content_type = "text/html"), (status = 404, description = "no OpenID Provider here (no --oidc-clients)", body = crate::error::ErrorBody)))]
pub async fn logout(
    AxState(app): AxState<AppState>,
    method: Method,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let oidc = oidc_of(&app)?;
    let raw: Vec<u8> = if method == Method::POST {
        body.to_vec()
    } else {
        query.unwrap_or_default().into_bytes()
    };
    let mut p = std::collections::HashMap::new();
    for (k, v) in url::form_urlencoded::parse(&raw) {
        p.insert(k.into_owned(), v.into_owned());
    }
    let hint = p.get("id_token_hint").and_then(|t| hint_claims(oidc, t));
    let client_id = match (&hint, p.get("client_id")) {
        (Some(h), Some(c)) if &h.aud != c => {
            return Ok(html_page(
                &app,
                StatusCode::BAD_REQUEST,
                "Logout refused",
                "client_id and id_token_hint disagree.",
            ))
        }
        (Some(h), _) => Some(h.aud.clone()),
        (None, c) => c.cloned(),
    };
    if let Some(h) = &hint {
        revoke_sid(&app, &h.sid).await;
        metrics::counter!("qrlogin_oidc_logouts_total").increment(1);
    }
    match p.get("post_logout_redirect_uri") {
        None => Ok(html_page(
            &app,
            StatusCode::OK,
            "You are signed out",
            "You can close this page.",
        )),
        Some(uri) => {
            let registered = client_id
                .as_deref()
                .and_then(|c| oidc.clients.get(c))
                .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|u| u == uri));
            if !registered {
                return Ok(html_page(&app, StatusCode::BAD_REQUEST,
                    "Logout redirect refused",
                    "post_logout_redirect_uri is not registered for this application (an id_token_hint or client_id names it).",
                ));
            }
            let url = match p.get("state") {
                Some(s) => with_query(uri, &[("state", s)]),
                None => uri.clone(),
            };
            Ok(redirect(&url))
        }
    }
}

/// `POST /oauth2/logout` in `/openapi.json`: the same parameters as a form
/// body (RP-Initiated Logout 1.0 §2 allows both methods; all optional, so
/// the body is too) and the same answers. Only the document's: [`logout`] serves both methods, and one
/// `#[utoipa::path]` cannot give a POST a body without giving the GET one.
#[utoipa::path(post, path = "/oauth2/logout", tag = "oidc", request_body(content = Option<LogoutForm>, description = "optional: every parameter is (RP-Initiated Logout 1.0 §2)", content_type = "application/x-www-form-urlencoded"), responses((status = 200, description = "signed out (a page)", content_type = "text/html"), (status = 303, description = "to the registered post_logout_redirect_uri"), (status = 400, description = "unregistered redirect (a page)", content_type = "text/html"), (status = 404, description = "no OpenID Provider here (no --oidc-clients)", body = crate::error::ErrorBody)))]
#[allow(dead_code)] // the route is `logout`'s; this fn exists for its annotation
pub(crate) async fn logout_by_form() {}

struct Hint {
    aud: String,
    sid: String,
}

/// The `aud` and `sid` of an ID token we signed (expired ones too: a hint
/// names a session, it authorises nothing).
fn hint_claims(oidc: &super::Oidc, token: &str) -> Option<Hint> {
    if token.len() > 8192 {
        return None;
    }
    let header = jsonwebtoken::decode_header(token).ok()?;
    if header.alg != crate::keys::ALGORITHM || header.kid.as_deref() != Some(oidc.key.kid()) {
        return None;
    }
    let mut v = jsonwebtoken::Validation::new(crate::keys::ALGORITHM);
    v.validate_exp = false;
    v.validate_aud = false;
    v.set_issuer(&[&oidc.issuer]);
    v.set_required_spec_claims(&["iss", "aud"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(token, oidc.key.decoding(), &v).ok()?;
    Some(Hint {
        aud: data.claims.get("aud")?.as_str()?.to_string(),
        sid: data.claims.get("sid")?.as_str()?.to_string(),
    })
}
