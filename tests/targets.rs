//! Rust functions as processes on the cgroupfs backend: the scenarios of
//! `tests/scenarios/targets.rs`, in a test binary with its own `main` (a target runs in this
//! binary started again, so `daemonic::init()` comes first).

mod common;
mod harness;

/// The backend the shared scenarios run on.
const BACKEND: common::Backend = common::Backend::Cgroupfs;

include!("scenarios/targets.rs");
