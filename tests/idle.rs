//! No polling loop on the cgroupfs backend: the scenario of `tests/scenarios/idle.rs`, alone in
//! its binary (see there why).

mod common;
mod harness;

/// The backend the scenario runs on.
const BACKEND: common::Backend = common::Backend::Cgroupfs;

fn main() -> std::process::ExitCode {
    harness::main()
}

include!("scenarios/idle.rs");
