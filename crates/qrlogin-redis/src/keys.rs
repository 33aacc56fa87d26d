//! The Redis key layout.
//!
//! Every key of one login shares the hash tag `{<login id>}`, so on Redis
//! Cluster they live in one slot and a transition script (notably redeem,
//! which writes the login and creates the session) touches one slot only.
//! Secrets never appear in keys or values: only their SHA-256, in hex.
//!
//! | key | type | holds | Redis TTL |
//! |---|---|---|---|
//! | `qrl:{<id>}:rec` | string | JSON object of strings: state, version, secret (hash hex), created, expires, purge, ip, ua, net, match?, mreq?, uid?, uname? | until `purge` |
//! | `qrl:{<id>}:session:<token hash hex>` | string | JSON `{"uid","uname","exp"}` | `session_ms` |
//! | `qrl:{<id>}:sid` | string | JSON `{"h","uid","created","exp","ip","ua"}` of the session this login made (what the phone lists), or the tombstone `{"revoked":true}` | `session_ms`; tombstone: the login's life |
//! | `qrl:{u:<sha256 of user id, hex>}:sessions` | sorted set | login ids (sids) that may have a session of this user, by a prune-after bound | the newest bound |
//! | `qrl:mtok:<token hash hex>` | string | JSON `{"id","name","exp"}` | the token's ttl |
//! | `qrl:grant:{<kind>:<hash hex>}` | string | JSON `{"v","exp","used"}` (a protocol face's code, token, request) | until `exp` |
//! | `qrl:events` | stream | security events (webhooks), field `e`: JSON `{"id","t","at","lid","uid"?,"un"?,"ip"?,"ua"?,"cid"?}`; group `qrl-webhooks`; only written with webhooks on (see `events`) | none; `MAXLEN ~ 500000`, entries deleted when acknowledged |
//!
//! Wake-up hints are published on the channel in the record's `w` field:
//! the instance that waits on the login (see `route`).
//!
//! The names differ from the earlier hash layout (`:login`, `:sess:`) on
//! purpose: after an upgrade, an old key is simply not found (a login in
//! flight must be restarted, an old session signs in again) instead of
//! failing with `WRONGTYPE`.

#[cfg(test)]
use qrlogin_core::SessionToken;
use qrlogin_core::{LoginId, SecretHash, SessionRef};

/// The one pub/sub channel every transition script published its hint on
/// before hints were routed to the instances that wait (issue 13). Still
/// subscribed on one Redis and Sentinel, so that during a rolling upgrade
/// an older instance's transitions still wake this one's browsers; nothing
/// publishes on it any more.
pub const HINT_CHANNEL: &str = "qrl:hints";

/// The key holding one login (a JSON string).
pub fn login_key(id: &LoginId) -> String {
    format!("qrl:{{{id}}}:rec")
}

/// The key holding one web session (a JSON string); under its login's hash tag (the token
/// carries its login id) so redeem creates it in the login's slot. Built from a
/// [`SessionRef`] (login id and token hash), so a JWT session's `sid` finds it too.
pub fn session_key(session: &SessionRef) -> String {
    format!(
        "qrl:{{{}}}:session:{}",
        session.login_id(),
        session.hash().to_hex()
    )
}

/// The string naming the session a login made (or its tombstone): under
/// the login's hash tag, so redeem writes it with the session in one step.
pub fn sid_key(id: &LoginId) -> String {
    format!("qrl:{{{id}}}:sid")
}

/// A user's session index: under its own hash tag (the SHA-256 of the user
/// id, so any id is a safe tag), so every operation on it touches one slot.
pub fn user_sessions_key(user_id: &str) -> String {
    format!(
        "qrl:{{u:{}}}:sessions",
        SecretHash::of(user_id.as_bytes()).to_hex()
    )
}

/// The string holding one grant, under its own hash tag (each grant
/// operation touches one key, so one slot).
pub fn grant_key(key: &qrlogin_core::GrantKey) -> String {
    format!("qrl:grant:{{{}:{}}}", key.kind.as_str(), key.hex())
}

/// The string holding a demo phone-app token's user.
pub fn mobile_token_key(hash: &SecretHash) -> String {
    format!("qrl:mtok:{}", hash.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_login_hash_tag() {
        let id = LoginId::random();
        let token = SessionToken::new_for(id);
        let tag = format!("{{{id}}}");
        assert_eq!(login_key(&id), format!("qrl:{tag}:rec"));
        let sk = session_key(&token.session_ref());
        assert_eq!(
            sk,
            format!("qrl:{tag}:session:{}", token.session_ref().hash().to_hex())
        );
        assert!(sk.starts_with(&format!("qrl:{tag}:session:")));
        assert!(sk.ends_with(&token.hash().to_hex()));
        assert!(!sk.contains(&token.expose()[23..]));
    }
}
