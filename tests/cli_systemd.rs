//! The CLI scenarios of `tests/scenarios/cli.rs` on the systemd backend, against the real
//! `systemd --user` manager that `scripts/user-manager` starts (`.ci/run` does), followed by what
//! only this backend has: unit names and descriptions, resource properties, `systemctl stop`
//! of a member's scope or a family's slice, `daemonic kill` without a guardian, the choice of
//! backend.
//!
//! Without that manager the tests say SKIPPED loudly, and fail when `CI=true`.

mod common;

/// The backend the shared scenarios run on.
const BACKEND: common::Backend = common::Backend::Systemd;

include!("scenarios/cli.rs");
