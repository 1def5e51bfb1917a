//! The integration tests' harness: libtest-mimic runs every function marked `#[harness::test]`,
//! so that a test that cannot run on this host is reported as **ignored, with its reason**, and
//! never counted as passed (libtest's `#[test]` can only be ignored at compile time).
//!
//! - A test that lacks something (no writable cgroup, no systemd manager answering on its bus,
//!   no journald, not root, …) calls [`skip`] with what is missing: the test ends there and is
//!   reported `ignored, <why>`. With `CI=true` the same call fails the test instead: CI must run
//!   everything.
//! - Each binary that uses it has `harness = false` in Cargo.toml and `fn main() -> ExitCode
//!   { harness::main() }`; filters, `--exact`, `--list`, `--ignored`, `--test-threads` work as
//!   with libtest (a re-executed test binary runs one test with `--exact NAME`).
//! - Unlike libtest, nothing is captured: what a test prints shows at once.

#![allow(dead_code)]

use std::cell::RefCell;
use std::process::ExitCode;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

#[allow(unused_imports)]
pub use daemonic_test_macros::test;

/// A test function, registered by `#[harness::test]`.
pub struct Test {
    module: &'static str,
    name: &'static str,
    run: fn(),
}

impl Test {
    /// Used by `#[harness::test]`: the function `run`, named `name`, in `module` (its
    /// `module_path!()`, crate name first).
    pub const fn new(module: &'static str, name: &'static str, run: fn()) -> Test {
        Test { module, name, run }
    }

    /// The name libtest would give it: the module path without the crate, then the function.
    fn full_name(&self) -> String {
        match self.module.split_once("::") {
            Some((_crate, path)) => format!("{path}::{}", self.name),
            None => self.name.to_string(),
        }
    }
}

inventory::collect!(Test);

/// The payload of a skip's unwinding: what the test lacked.
struct Skip(String);

thread_local! {
    static CURRENT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Ends the calling test as *ignored*, giving `why` (what this host lacks) as the reason; with
/// `CI=true`, fails it instead, since CI provides everything the tests need.
pub fn skip(why: &str) -> ! {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true, so this test may not be skipped, but it cannot run: {why}");
    }
    std::panic::panic_any(Skip(why.to_string()))
}

/// The name of the test the calling thread runs (as `--exact` takes it).
pub fn current_test() -> String {
    CURRENT.with(|c| c.borrow().clone()).expect("called from a test of the harness")
}

/// Runs this binary's tests and returns the process's exit code.
pub fn main() -> ExitCode {
    let args = Arguments::from_args();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // A skip is not a failure: say nothing, the outcome line gives the reason.
        if !info.payload().is::<Skip>() {
            default_hook(info);
        }
    }));
    let mut tests: Vec<&Test> = inventory::iter::<Test>.into_iter().collect();
    tests.sort_by_key(|t| t.full_name());
    let trials = tests
        .into_iter()
        .map(|t| {
            let (name, run) = (t.full_name(), t.run);
            Trial::ignorable_test(name.clone(), move || run_one(name, run))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

fn run_one(name: String, run: fn()) -> Result<Completion, Failed> {
    CURRENT.with(|c| *c.borrow_mut() = Some(name));
    let outcome = std::panic::catch_unwind(run);
    CURRENT.with(|c| *c.borrow_mut() = None);
    match outcome {
        Ok(()) => Ok(Completion::Completed),
        Err(payload) => match payload.downcast::<Skip>() {
            Ok(skip) => Ok(Completion::ignored_with(skip.0)),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("the test panicked");
                Err(message.into())
            }
        },
    }
}
