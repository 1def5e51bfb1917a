//! Integration tests of the `daemonic` library against the contract (C1–C10, DESIGN.md §1).
//!
//! A family moves the process that creates it into a cgroup, so every scenario that creates one
//! runs in a re-executed copy of this test binary (see `tests/common/scenario.rs`): each test
//! function first checks whether it is such a child and then runs the scenario body; otherwise
//! it is the parent side, which starts the child, reads the `@key=value` lines it reports and
//! checks the cgroup tree and the process table. Every child has its own family name and marker,
//! so the tests run in parallel.
//!
//! Daemons cannot fork, so daemons here are programs of the real python interpreter (the pyenv
//! `python3` shim is a forking shell script) or this test binary itself.

mod common;
mod harness;

/// The backend the shared scenarios run on.
const BACKEND: common::Backend = common::Backend::Cgroupfs;

fn main() -> std::process::ExitCode {
    harness::main()
}

include!("scenarios/library.rs");
