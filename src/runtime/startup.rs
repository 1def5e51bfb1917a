//! What a process that daemonic started does before `main`, decided here and run by the
//! `.init_array` hook of [`crate::sys`] (a mechanism that knows neither guardians nor targets):
//! - started as a guardian (its marker in the environment, `argv[0]` the guardian's): runs the
//!   guardian and never returns ([`crate::runtime::guardian`]);
//! - started to run a Rust target (`DAEMONIC_TARGET=<fd>`): takes the variable out of the
//!   environment, so that nothing the target starts inherits it, and notes the descriptor for
//!   [`init`] ([`crate::runtime::target`]);
//! - otherwise nothing.

use crate::{runtime::guardian, runtime::target, sys};

sys::startup_hook!(dispatch);

fn dispatch(start: &sys::Startup) {
    if let Some(value) = start.take_env(target::ENV) {
        target::note_channel(&value);
    }
    if std::env::var_os(guardian::MARKER).is_none() {
        return;
    }
    let args = start.args();
    if args.first().is_some_and(|a| a == guardian::ARGV0) {
        guardian::run_and_exit(args)
    }
}

/// Call at the top of `main` in every program that starts [`Process`](crate::Process)es or
/// a [`Pool`](crate::Pool).
///
/// In a process started to run a target, it runs the target and exits: with code 0 after the
/// function returned, [`EXIT_PANICKED`](crate::EXIT_PANICKED) after it panicked, [`EXIT_NO_TARGET`](crate::EXIT_NO_TARGET) when it could not
/// be run. Before exiting, the process's own family part ends as any other would: its
/// non-daemonic children are waited for and its daemons killed. Everywhere else it returns at
/// once, and it must have been called before a process can start targets.
///
/// Code before `init()` runs in every target process too, so nothing should come before it.
/// With an async runtime, call it in a plain `fn main` before the runtime is built (not inside
/// `#[tokio::main]`), so that a target does not run inside a runtime it never asked for.
pub fn init() {
    anchor();
    target::serve_if_started()
}
