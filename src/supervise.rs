//! `daemonic run`: start a family around one program and stay until the family has ended.
//!
//! The supervisor creates the family, starts its guardian, then the main member with
//! `clone3(CLONE_INTO_CGROUP)`. It blocks SIGCHLD, SIGTERM, SIGINT and SIGHUP and reads them
//! from a signalfd: the three stop signals are forwarded to the main member through its pidfd
//! (except those the kernel sent for a terminal, which the member got already), and SIGCHLD reaps.
//! The supervisor is a child subreaper, so processes orphaned inside the family are reaped here
//! rather than by PID 1 while it runs. It exits when both the main member and the guardian have
//! ended, the guardian having waited for the non-daemonic descendants, killed the daemons and
//! removed the cgroups. If the supervisor is SIGKILLed, the guardian does all of that anyway.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, Signal, WaitOptions, pidfd_send_signal, wait};

use crate::backend::Backend;
use crate::cgroup::{self, Hierarchy};
use crate::command::{Command, Placement, Stdio, default_name};
use crate::error::{Error, Result};
use crate::family::{choose_base, start_family};
use crate::layout;
use crate::retire::Retirement;
use crate::spawn::{self, Request};
use crate::sys;

/// What `daemonic run` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The family's name (default: the program's file name).
    pub name: Option<String>,
    /// The backend.
    pub backend: Backend,
    /// The cgroup to create the family under.
    pub cgroup: Option<PathBuf>,
    /// The default stop timeout of the family's daemons.
    pub stop_timeout: Option<Duration>,
    /// The main member's program.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
}

/// Runs a family to its end. Returns the main member's status in the shell's convention: its
/// exit code, or 128 + the signal that killed it (C9).
pub fn run(opts: &RunOptions) -> Result<i32> {
    opts.backend.resolve()?;
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => default_name(&opts.program),
    };
    layout::validate_name("family", &name)?;
    let mut cmd = Command::new(&opts.program);
    cmd.args(&opts.args);
    let prepared = cmd.prepare()?;
    let placement = Placement::from_env()?;
    let h = Hierarchy::host()?;
    let base = choose_base(&h, opts.cgroup.as_deref())?;

    let signals = sys::signalfd(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
        .map_err(|e| Error::os("set up signal handling", e))?;
    rustix::process::set_child_subreaper(Some(Pid::from_raw(std::process::id() as i32).expect("own pid")))
        .map_err(|e| Error::os("become a child subreaper", e.into()))?;

    let family = start_family(&base, &name, opts.stop_timeout)?;
    let main = spawn::spawn(&Request {
        prepared: &prepared,
        stdio: [&Stdio::Inherit, &Stdio::Inherit, &Stdio::Inherit],
        cgroup: Some(&family.main_dir),
        filters: &[],
        placement,
        new_session: false,
    });
    let main = match main {
        Ok(m) => m,
        Err(e) => {
            family.abandon();
            return Err(e);
        }
    };
    let _ = cgroup::set_attr(&family.main_dir, layout::ATTR_PID, &main.pid.to_string());

    let mut main_status: Option<i32> = None;
    let mut guardian_status: Option<i32> = None;
    while main_status.is_none() || guardian_status.is_none() {
        let mut fds = [PollFd::new(&signals, PollFlags::IN)];
        cgroup::poll(&mut fds, None).map_err(|e| Error::os("wait for signals", e))?;
        while let Some((sig, from_terminal)) =
            sys::read_signal(signals.as_fd()).map_err(|e| Error::os("read signals", e))?
        {
            if sig == libc::SIGCHLD {
                reap_children(main.pid, family.guardian.pid, &mut main_status, &mut guardian_status)?;
            } else if main_status.is_none() && !from_terminal {
                if let Some(sig) = Signal::from_named_raw(sig) {
                    let _ = pidfd_send_signal(&main.pidfd, sig);
                }
            }
        }
    }
    if guardian_status != Some(0) || family.dir.exists() {
        eprintln!(
            "daemonic: warning: the guardian of {} ended with status {guardian_status:?}; cleaning up here",
            family.id
        );
        clean_up_without_guardian(&family.dir, &family.main_dir)?;
    }
    Ok(shell_status(main_status.expect("loop ends with a status")))
}

/// Reaps every child that has ended; records the statuses of the main member and the guardian.
fn reap_children(
    main: i32,
    guardian: i32,
    main_status: &mut Option<i32>,
    guardian_status: &mut Option<i32>,
) -> Result<()> {
    loop {
        match wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                let code = match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => code,
                    (None, Some(sig)) => -sig,
                    (None, None) => continue,
                };
                if pid.as_raw_nonzero().get() == main {
                    *main_status = Some(code);
                } else if pid.as_raw_nonzero().get() == guardian {
                    *guardian_status = Some(code);
                }
            }
            Ok(None) | Err(rustix::io::Errno::CHILD) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::os("reap children", e.into())),
        }
    }
}

/// What the guardian would have done, for the case where it died.
fn clean_up_without_guardian(family: &std::path::Path, main: &std::path::Path) -> Result<()> {
    cgroup::wait_unpopulated(main, None)?;
    let daemons = layout::daemons_dir(main);
    if daemons.exists() {
        Retirement::start(&daemons, family)?.finish()?;
    }
    cgroup::kill(family)?;
    cgroup::wait_unpopulated(family, None)?;
    cgroup::remove_tree(family).map_err(|e| Error::io("remove", family, e))
}

/// Python's status (code, or minus the signal) in the shell's convention.
pub(crate) fn shell_status(python: i32) -> i32 {
    if python < 0 { 128 - python } else { python }
}

#[cfg(test)]
mod tests {
    #[test]
    fn statuses_follow_the_shell() {
        assert_eq!(super::shell_status(0), 0);
        assert_eq!(super::shell_status(7), 7);
        assert_eq!(super::shell_status(-9), 137);
        assert_eq!(super::shell_status(-15), 143);
    }
}
