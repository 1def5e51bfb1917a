//! No polling loop on the cgroupfs backend: the scenario of `tests/scenarios/idle.rs`, alone in
//! its binary (see there why).

mod common;

/// The backend the scenario runs on.
const BACKEND: common::Backend = common::Backend::Cgroupfs;

include!("scenarios/idle.rs");
