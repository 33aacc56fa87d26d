//! The webhook body of an event, in the Standard Webhooks payload shape:
//! `{"type", "timestamp" (RFC 3339), "data"}`. `place` (with
//! `--geoip-db`) and `risk` (from the scan on) are null when unknown.

use crate::routes::browser::rfc3339;
use crate::routes::phone::describe_agent;
use qrlogin_core::{Event, EventKind};
use serde_json::{json, Value};

/// The JSON body of `event`.
pub fn body(event: &Event) -> Value {
    let user = event
        .user
        .as_ref()
        .map(|u| json!({ "id": u.id, "name": u.name }));
    let browser = event.user_agent.as_deref().map(|ua| {
        let (name, os) = describe_agent(ua);
        json!({ "name": name, "os": os, "user_agent": ua })
    });
    let mut data = json!({
        "login_id": event.login_id.to_string(),
        "user": user,
    });
    if event.kind != EventKind::SessionRevoked {
        data["ip"] = json!(event.ip);
        data["browser"] = json!(browser);
        data["place"] = json!(event.place);
        data["risk"] = json!(event.risk);
        data["client_id"] = json!(event.client_id);
    }
    json!({
        "type": event.kind.as_str(),
        "timestamp": rfc3339(event.at_ms),
        "data": data,
    })
}
