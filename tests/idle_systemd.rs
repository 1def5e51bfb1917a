//! No polling loop on the systemd backend: the scenario of `tests/scenarios/idle.rs` in a family
//! of transient units of the test user manager that `scripts/user-manager` starts (`.ci/run`
//! does), alone in its binary so that no other test's units wake the guardian. Without the
//! manager the test is ignored, with the reason, and fails when `CI=true`.

mod common;
mod harness;

/// The backend the scenario runs on.
const BACKEND: common::Backend = common::Backend::Systemd;

fn main() -> std::process::ExitCode {
    harness::main()
}

include!("scenarios/idle.rs");
