//! The transition scripts, one per checked transition, each its own file
//! under `src/lua/`, with the shared prelude `common.lua` prepended at
//! compile time. (`create` checks nothing, so it is a plain `SET ... PX`.)
//!
//! A transition sends `EVALSHA`; when the server does not have the script
//! (`NOSCRIPT`: first use, a restart, a failover, a new cluster node) it is
//! sent once more as `EVAL` with the source, which runs it and caches it on
//! that server. Not `SCRIPT LOAD`: on a cluster redis-rs sends that to every
//! node and fails if any one is down, and `EVAL` is routed by the login's
//! key, so it always reaches the one node that needs the script.

use redis::{Cmd, ErrorKind, RedisResult, Script, ServerErrorKind};
use std::future::Future;

macro_rules! lua {
    ($file:literal) => {
        concat!(
            include_str!("lua/common.lua"),
            "\n-- ---- ",
            $file,
            " ----\n",
            include_str!(concat!("lua/", $file))
        )
    };
}

/// Source texts, exposed for tests that check the scripts' shape.
pub(crate) const SCAN: &str = lua!("scan.lua");
pub(crate) const APPROVE: &str = lua!("approve.lua");
pub(crate) const DENY: &str = lua!("deny.lua");
pub(crate) const CANCEL: &str = lua!("cancel.lua");
pub(crate) const REDEEM: &str = lua!("redeem.lua");
pub(crate) const REVOKE_SID: &str = lua!("revoke_sid.lua");
/// Logout of one session (and its `session.revoked` event): not a login
/// transition, no prelude.
pub(crate) const REVOKE: &str = include_str!("lua/revoke.lua");
/// Moving a login's hints to the instance that opens a wait on it
/// (route.rs); not a transition, no prelude.
pub(crate) const WATCH: &str = include_str!("lua/watch.lua");
/// Not a login transition: no prelude.
pub(crate) const TAKE_GRANT: &str = include_str!("lua/take_grant.lua");

/// One script: its source and SHA-1 (hex).
pub(crate) struct Lua {
    src: &'static str,
    sha: String,
}

impl Lua {
    fn new(src: &'static str) -> Self {
        Self {
            src,
            sha: Script::new(src).get_hash().to_string(),
        }
    }

    /// `EVALSHA <sha> <numkeys> <keys…> <args…>`.
    pub fn evalsha(&self, keys: &[&str], args: &[&str]) -> Cmd {
        Self::cmd("EVALSHA", &self.sha, keys, args)
    }

    /// Sends `EVALSHA` through `send`, and on `NOSCRIPT` once more as
    /// `EVAL` (see the module docs): the one place that fallback lives.
    /// `send` runs a command, plainly or with `WAIT` behind it.
    pub async fn run_with<T, F, Fut>(&self, keys: &[&str], args: &[&str], send: F) -> RedisResult<T>
    where
        F: Fn(Cmd) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        match send(self.evalsha(keys, args)).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                send(self.eval(keys, args)).await
            }
            reply => reply,
        }
    }

    /// `EVAL <source> <numkeys> <keys…> <args…>`, the `NOSCRIPT` fallback.
    pub fn eval(&self, keys: &[&str], args: &[&str]) -> Cmd {
        Self::cmd("EVAL", self.src, keys, args)
    }

    fn cmd(verb: &str, body: &str, keys: &[&str], args: &[&str]) -> Cmd {
        let len = |v: &[&str]| v.iter().map(|s| s.len()).sum::<usize>();
        let mut cmd = Cmd::with_capacity(
            3 + keys.len() + args.len(),
            verb.len() + body.len() + 4 + len(keys) + len(args),
        );
        cmd.arg(verb).arg(body).arg(keys.len()).arg(keys).arg(args);
        cmd
    }
}

/// The transition scripts.
pub(crate) struct Scripts {
    pub scan: Lua,
    pub approve: Lua,
    pub deny: Lua,
    pub cancel: Lua,
    pub redeem: Lua,
    pub revoke_sid: Lua,
    pub revoke: Lua,
    pub take_grant: Lua,
    pub watch: Lua,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            scan: Lua::new(SCAN),
            approve: Lua::new(APPROVE),
            deny: Lua::new(DENY),
            cancel: Lua::new(CANCEL),
            redeem: Lua::new(REDEEM),
            revoke_sid: Lua::new(REVOKE_SID),
            revoke: Lua::new(REVOKE),
            take_grant: Lua::new(TAKE_GRANT),
            watch: Lua::new(WATCH),
        }
    }
}
