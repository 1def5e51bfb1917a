//! The library scenarios of `tests/scenarios/library.rs` on the systemd backend: each
//! re-executed child opens its family with `DAEMONIC_BACKEND=systemd` on the test user manager
//! that `scripts/user-manager` starts (`.ci/run` does). Without that manager the tests are
//! ignored, with the reason, and fail when `CI=true`.

mod common;
mod harness;
mod support;

/// The backend the shared scenarios run on.
const BACKEND: common::Backend = common::Backend::Systemd;

fn main() -> std::process::ExitCode {
    harness::main()
}

include!("scenarios/library.rs");
