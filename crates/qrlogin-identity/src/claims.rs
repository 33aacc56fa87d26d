//! Which claims of a token (or an introspection or userinfo answer) name
//! the user. Identity providers disagree: Auth0 and Keycloak put the stable
//! id in `sub`, Cognito sometimes in `username`, Firebase in `user_id`; the
//! display name is `name`, `preferred_username` or nothing at all.

use qrlogin_core::User;
use serde_json::{Map, Value};

/// `--mobile-user-id-claim` and `--mobile-user-name-claim`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// The stable user id (default `sub`). Must be a non-empty string or a
    /// number; a token without it identifies no user and is refused.
    pub id_claim: String,
    /// The display name (default `name`), falling back to
    /// `preferred_username`, `username`, then the id.
    pub name_claim: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            id_claim: "sub".into(),
            name_claim: "name".into(),
        }
    }
}

/// The longest id or name taken from a token; longer values are refused
/// (ids) or cut (names), so a provider's oddity cannot bloat every record.
const MAX_CLAIM_LEN: usize = 256;

impl ClaimMapping {
    /// The user the claims describe, or `None` when the id claim is missing,
    /// empty, too long or not a string or number.
    pub fn user(&self, claims: &Map<String, Value>) -> Option<User> {
        let id = match claims.get(&self.id_claim)? {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_CLAIM_LEN => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let name = [self.name_claim.as_str(), "preferred_username", "username"]
            .iter()
            .find_map(|k| match claims.get(*k) {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim()),
                _ => None,
            })
            .map(|s| s.chars().take(MAX_CLAIM_LEN).collect())
            .unwrap_or_else(|| id.clone());
        Some(User { id, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(v: Value) -> Option<User> {
        ClaimMapping::default().user(v.as_object().unwrap())
    }

    #[test]
    fn id_from_sub_and_name_with_fallbacks() {
        let u = user(json!({"sub": "u1", "name": "Una"})).unwrap();
        assert_eq!((u.id.as_str(), u.name.as_str()), ("u1", "Una"));
        let u = user(json!({"sub": "u1", "preferred_username": "una"})).unwrap();
        assert_eq!(u.name, "una");
        let u = user(json!({"sub": "u1", "name": "  "})).unwrap();
        assert_eq!(u.name, "u1");
        let u = user(json!({"sub": 42})).unwrap();
        assert_eq!((u.id.as_str(), u.name.as_str()), ("42", "42"));
    }

    #[test]
    fn no_usable_id_is_no_user() {
        assert_eq!(user(json!({"name": "x"})), None);
        assert_eq!(user(json!({"sub": ""})), None);
        assert_eq!(user(json!({"sub": ["a"]})), None);
        assert_eq!(user(json!({"sub": "x".repeat(300)})), None);
    }

    #[test]
    fn other_claims_can_be_chosen() {
        let m = ClaimMapping {
            id_claim: "user_id".into(),
            name_claim: "nickname".into(),
        };
        let u = m
            .user(
                json!({"sub": "s", "user_id": "fb1", "nickname": "Fi"})
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!((u.id.as_str(), u.name.as_str()), ("fb1", "Fi"));
    }
}
