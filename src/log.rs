//! daemonic's own messages on stderr, by level: `-q` (errors only), the default (warnings), `-v`
//! (what was decided and why). `DAEMONIC_LOG=quiet|warn|info` sets the level for programs using
//! the library.

use std::fmt::Display;
use std::sync::atomic::{AtomicU8, Ordering};

/// 0 quiet, 1 warnings, 2 info; `u8::MAX` until read from the environment.
static LEVEL: AtomicU8 = AtomicU8::new(u8::MAX);

/// How much daemonic says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Errors only.
    Quiet = 0,
    /// Warnings (the default).
    Warn = 1,
    /// Decisions and their reasons.
    Info = 2,
}

/// Sets the level for the rest of the process.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

fn level() -> u8 {
    match LEVEL.load(Ordering::Relaxed) {
        u8::MAX => {
            let l = match std::env::var("DAEMONIC_LOG").as_deref() {
                Ok("quiet") => Level::Quiet,
                Ok("info") => Level::Info,
                _ => Level::Warn,
            };
            set_level(l);
            l as u8
        }
        l => l,
    }
}

/// A decision worth knowing with `-v`.
pub(crate) fn info(msg: impl Display) {
    if level() >= Level::Info as u8 {
        eprintln!("daemonic: {msg}");
    }
}

/// Something went wrong that daemonic worked around.
pub(crate) fn warn(msg: impl Display) {
    if level() >= Level::Warn as u8 {
        eprintln!("daemonic: warning: {msg}");
    }
}
