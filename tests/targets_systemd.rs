//! Rust functions as processes on the systemd backend: the scenarios of
//! `tests/scenarios/targets.rs` in a family of transient units of the test user manager that
//! `scripts/user-manager` starts (`.ci/run` does). Without it the tests are ignored, with the reason, and
//! fail when `CI=true`.

mod common;
mod harness;

/// The backend the shared scenarios run on.
const BACKEND: common::Backend = common::Backend::Systemd;

include!("scenarios/targets.rs");
