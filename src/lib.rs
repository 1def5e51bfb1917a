//! # daemonic
//!
//! Python's daemon processes, enforced by the kernel. Every member of a family runs in its own
//! cgroup v2, tagged daemon or non-daemon in its path. When a process and all of its
//! non-daemonic descendants have ended, its daemons are killed at once with `cgroup.kill`,
//! however the process ended, SIGKILL included; daemons cannot create processes (seccomp).
//!
//! ```no_run
//! use daemonic::{Command, Family, current_process};
//!
//! let family = Family::new()?;                       // join or create this process's family
//! assert!(!current_process()?.daemon);               // a plain program is not a daemon (C2)
//! let mut cmd = Command::new("python3");
//! cmd.args(["-c", "import time; time.sleep(60)"]).name("logger").daemon(true);
//! let logger = family.spawn(&mut cmd)?;              // a daemon in its own cgroup
//! println!("{} is a daemon: {}", logger.name(), logger.daemon());
//! family.shutdown()?;                                // non-daemons joined, daemons killed
//! # Ok::<(), daemonic::Error>(())
//! ```
//!
//! Python's vocabulary maps as follows: `Process(target, name, daemon)` is [`Command`] with
//! [`Command::name`] and [`Command::daemon`]; `start()` is [`Family::spawn`]; the handle
//! [`Member`] has `pid`, `name`, `daemon`, `join(timeout)`, `is_alive`, `terminate`, `kill`,
//! `exitcode`, `sentinel` and `close`; `current_process()` is [`current_process`] and
//! `active_children()` is [`Family::active_children`].
//!
//! A Rust function runs in a process of its own the way Python's *spawn* start method does it:
//! register it with [`target!`], call [`init`] first thing in `main`, and start a [`Process`]
//! (its [`JoinHandle`] returns the function's value); [`parent_process`] is the target's handle
//! on its parent, and [`Pool`] maps a function over inputs on N worker processes.
//!
//! ```no_run
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! daemonic::target!(square);
//!
//! fn main() -> daemonic::Result<()> {
//!     daemonic::init();
//!     let p = daemonic::Process::with_args(square, (7,)).daemon(true).start()?;
//!     assert_eq!(p.wait()?, 49);
//!     Ok(())
//! }
//! ```
//!
//! The crate is layered; each layer imports only from the layers below it
//! (docs/architecture.md): the base (`error`, [`log`], `status`), `sys` (the only unsafe code),
//! `cgroup` (the cgroup filesystem, the family's layout, properties), `spawn` (`Command`,
//! seccomp, starting a process in a cgroup), `backend` (cgroupfs directories or systemd units),
//! `runtime` (families, members, the guardian, `daemonic run`, `ps`), the API at the root
//! ([`Process`], [`Pool`]) and [`cli`] on top. Only the API, [`log`] (for a program that logs
//! as daemonic does) and [`cli::main`] are public.

mod error;
pub mod log;
mod status;

mod sys;

mod cgroup;

mod spawn;

mod backend;

mod runtime;

mod pool;
mod process;

pub mod cli;

pub use backend::Backend;
pub use backend::systemd::Bus;
pub use error::{DAEMON_CHILDREN, Error, ErrorKind, Result};
pub use pool::Pool;
pub use process::{JoinHandle, ParentProcess, Process, implicit_family, parent_process};
pub use runtime::family::{Family, FamilyBuilder, ProcessInfo, current_process};
pub use runtime::member::Member;
pub use runtime::supervise::{RunOptions, run};
#[doc(hidden)]
pub use runtime::target::__private;
pub use spawn::command::{Command, Placement, Stdio};

/// What daemonic's own tests, benchmarks and tools reach below the public API: the cgroup
/// filesystem, the layout of a family's directories, unit names, resource properties and the
/// D-Bus client. Not a stable interface: it changes with the internals.
#[doc(hidden)]
pub mod __internal {
    pub use crate::runtime::member::spawn_in_scope;

    /// What bindings for another language need: a guardian started by their own program, and
    /// the no-fork filter installed in a process they forked themselves.
    pub mod bindings {
        pub use crate::runtime::guardian::{run_and_exit as guardian_main, set_launcher as set_guardian_launcher};

        /// Installs the no-fork seccomp filter of a daemon (C3) in the calling process, for
        /// good: from now on fork, vfork and clone without `CLONE_THREAD` fail with EPERM.
        pub fn install_no_fork_filter() -> crate::Result<()> {
            for f in crate::runtime::family::no_fork_filters()? {
                crate::sys::install_filter(f).map_err(|e| crate::Error::os("install the no-fork seccomp filter", e))?;
            }
            Ok(())
        }
    }

    pub mod cgroup {
        pub use crate::cgroup::*;
    }
    pub mod layout {
        pub use crate::cgroup::layout::*;
    }
    pub mod properties {
        pub use crate::cgroup::properties::*;
    }
    pub mod unit_name {
        pub use crate::cgroup::unit_name::*;
    }
    pub mod systemd {
        pub use crate::backend::systemd::*;
    }
}
pub use runtime::startup::init;
pub use runtime::target::{EXIT_NO_TARGET, EXIT_PANICKED, Target};
