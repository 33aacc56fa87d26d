//! The transition scripts, one per checked transition, each its own file
//! under `src/lua/`, with the shared prelude `common.lua` prepended at
//! compile time. (`create` checks nothing, so it is a plain `SET ... PX`.) `redis::Script` sends `EVALSHA` and falls back to loading the
//! script when Redis does not have it (first use, or after a restart).

use redis::Script;

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

/// The loaded scripts (each carries its SHA-1 for `EVALSHA`).
pub(crate) struct Scripts {
    pub scan: Script,
    pub approve: Script,
    pub deny: Script,
    pub cancel: Script,
    pub redeem: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            scan: Script::new(SCAN),
            approve: Script::new(APPROVE),
            deny: Script::new(DENY),
            cancel: Script::new(CANCEL),
            redeem: Script::new(REDEEM),
        }
    }
}
