//! Turning Redis replies into domain values.

use qrlogin_core::{
    BrowserContext, LoginId, LoginRecord, SecretHash, State, StoreError, TransitionError, User,
};
use std::collections::HashMap;

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn field<'a>(m: &'a HashMap<String, String>, name: &str) -> Result<&'a str, StoreError> {
    m.get(name)
        .map(String::as_str)
        .ok_or_else(|| corrupt(format!("login field `{name}` missing")))
}

fn number(m: &HashMap<String, String>, name: &str) -> Result<u64, StoreError> {
    field(m, name)?
        .parse()
        .map_err(|_| corrupt(format!("login field `{name}` is not a number")))
}

/// A login hash (from `HGETALL` or a script's `ok` reply) as a record.
pub(crate) fn login(id: LoginId, m: &HashMap<String, String>) -> Result<LoginRecord, StoreError> {
    let state: State = field(m, "state")?
        .parse()
        .map_err(|_| corrupt("login field `state` unknown"))?;
    let secret_hash = SecretHash::from_hex(field(m, "secret")?)
        .ok_or_else(|| corrupt("login field `secret` is not a hash"))?;
    let match_code = match m.get("match") {
        None => None,
        Some(s) => Some(
            s.parse::<u8>()
                .map_err(|_| corrupt("login field `match` is not a code"))?,
        ),
    };
    let user = m.get("uid").map(|uid| User {
        id: uid.clone(),
        name: m.get("uname").cloned().unwrap_or_default(),
    });
    Ok(LoginRecord {
        id,
        state,
        version: number(m, "version")?,
        secret_hash,
        created_at_ms: number(m, "created")?,
        expires_at_ms: number(m, "expires")?,
        browser: BrowserContext {
            ip: field(m, "ip")?.to_owned(),
            user_agent: field(m, "ua")?.to_owned(),
        },
        match_code,
        match_required: m.get("mreq").is_some_and(|v| v == "1"),
        user,
    })
}

/// A script reply, checked: `Ok(rest)` for `ok`, else the transition error
/// it names.
pub(crate) fn outcome(mut reply: Vec<String>) -> Result<Vec<String>, TransitionError> {
    if reply.is_empty() {
        return Err(corrupt("empty script reply").into());
    }
    let rest = reply.split_off(1);
    match reply[0].as_str() {
        "ok" => Ok(rest),
        "not_found" => Err(TransitionError::NotFound),
        "expired" => Err(TransitionError::Expired),
        "wrong_user" => Err(TransitionError::WrongUser),
        "wrong_match" => Err(TransitionError::WrongMatchCode),
        "wrong_state" => {
            let state = rest
                .first()
                .and_then(|s| s.parse::<State>().ok())
                .ok_or_else(|| corrupt("wrong_state reply without a state"))?;
            Err(TransitionError::WrongState(state))
        }
        "corrupt" => Err(corrupt(rest.first().cloned().unwrap_or_default()).into()),
        other => Err(corrupt(format!("unknown script reply `{other}`")).into()),
    }
}

/// Field/value pairs as a map.
pub(crate) fn pairs(flat: Vec<String>) -> Result<HashMap<String, String>, StoreError> {
    let mut m = HashMap::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    loop {
        match (it.next(), it.next()) {
            (Some(k), Some(v)) => {
                m.insert(k, v);
            }
            (None, _) => return Ok(m),
            (Some(_), None) => return Err(corrupt("odd number of hash fields")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn outcomes_map_to_transition_errors() {
        assert_eq!(outcome(s(&["ok", "a", "b"])), Ok(s(&["a", "b"])));
        assert_eq!(outcome(s(&["not_found"])), Err(TransitionError::NotFound));
        assert_eq!(outcome(s(&["expired"])), Err(TransitionError::Expired));
        assert_eq!(outcome(s(&["wrong_user"])), Err(TransitionError::WrongUser));
        assert_eq!(
            outcome(s(&["wrong_state", "denied"])),
            Err(TransitionError::WrongState(State::Denied))
        );
        assert!(matches!(
            outcome(s(&["wrong_state", "nonsense"])),
            Err(TransitionError::Store(StoreError::Corrupt(_)))
        ));
        assert!(matches!(
            outcome(s(&[])),
            Err(TransitionError::Store(StoreError::Corrupt(_)))
        ));
        assert!(matches!(
            outcome(s(&["what"])),
            Err(TransitionError::Store(StoreError::Corrupt(_)))
        ));
    }

    #[test]
    fn malformed_records_are_corrupt_not_panics() {
        let id = LoginId::random();
        assert!(login(id, &HashMap::new()).is_err());
        let m = pairs(s(&[
            "state", "pending", "version", "x", "secret", "00", "created", "1", "expires", "2",
            "ip", "", "ua", "",
        ]))
        .unwrap();
        assert!(matches!(login(id, &m), Err(StoreError::Corrupt(_))));
        assert!(pairs(s(&["odd"])).is_err());
    }
}
