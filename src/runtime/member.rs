//! A running member: Python's `Process` after `start()`.
//!
//! The handle is pidfd-first (C5): waiting, polling and signalling go through the pidfd taken at
//! spawn, so a recycled PID can never be hit. `kill` goes further and SIGKILLs the member's
//! whole cgroup with `cgroup.kill`, taking everything it forked. Exit statuses follow Python's
//! convention (C9): the exit code, or minus the signal number. Waiting twice returns the
//! remembered status. Dropping a `Member` neither waits nor kills: the family does that.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Signal, pidfd_send_signal};

use crate::cgroup;
use crate::error::{Error, Result};

/// The shared state of one member, held by its [`Member`] handles and its [`Family`](crate::Family).
#[derive(Debug)]
pub(crate) struct Inner {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub name: String,
    pub daemon: bool,
    /// A helper of its owner ([`Command::helper`](crate::Command::helper)).
    pub helper: bool,
    pub dir: PathBuf,
    /// The family's name and id, for the log (empty outside a family).
    pub family_name: String,
    pub family_id: String,
    /// Python-convention status once reaped.
    pub status: Mutex<Option<i32>>,
}

/// A running (or finished) member of a family.
#[derive(Debug)]
pub struct Member {
    pub(crate) inner: Arc<Inner>,
    /// The write end of the member's standard input, when it was [`Stdio::Piped`](crate::Stdio::Piped).
    pub stdin: Option<File>,
    /// The read end of the member's standard output, when piped.
    pub stdout: Option<File>,
    /// The read end of the member's standard error, when piped.
    pub stderr: Option<File>,
}

impl Member {
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Member {
        Member { inner, stdin: None, stdout: None, stderr: None }
    }

    /// The process ID (informational: all operations use the pidfd).
    pub fn pid(&self) -> u32 {
        self.inner.pid as u32
    }

    /// The member's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the member is daemonic. Fixed at spawn; there is no setter (C1).
    pub fn daemon(&self) -> bool {
        self.inner.daemon
    }

    /// Whether the member is a helper of the process that started it
    /// ([`Command::helper`](crate::Command::helper)).
    pub fn helper(&self) -> bool {
        self.inner.helper
    }

    /// The member's cgroup directory.
    pub fn cgroup(&self) -> &Path {
        &self.inner.dir
    }

    /// A descriptor that becomes readable when the member ends: its pidfd (Python's `sentinel`).
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.inner.pidfd.as_fd()
    }

    /// The exit status if the member has ended (Python's `exitcode`): the exit code, or minus the
    /// number of the signal that killed it. `None` while it runs.
    pub fn exitcode(&self) -> Option<i32> {
        self.inner.try_reap().ok().flatten()
    }

    /// Whether the member is still running.
    pub fn is_alive(&self) -> bool {
        self.exitcode().is_none()
    }

    /// Waits for the member to end, at most `timeout` (Python's `join`). Returns the status, or
    /// `None` when the timeout passed first.
    pub fn join(&self, timeout: Option<Duration>) -> Result<Option<i32>> {
        self.inner.join(timeout)
    }

    /// Waits for the member to end and returns its status (std's `wait`).
    pub fn wait(&self) -> Result<i32> {
        Ok(self.inner.join(None)?.expect("a wait without timeout ends with a status"))
    }

    /// Sends SIGTERM to the member process through its pidfd (Python's `terminate`).
    pub fn terminate(&self) -> Result<()> {
        self.inner.signal(Signal::TERM)
    }

    /// SIGKILLs the member and everything in its cgroup at once (`cgroup.kill`), including
    /// everything it forked and its non-daemonic children. Its daemons follow when its family
    /// node empties, as after any other end.
    pub fn kill(&self) -> Result<()> {
        if self.exitcode().is_some() && !cgroup::populated(&self.inner.dir)? {
            return Ok(());
        }
        cgroup::kill(&self.inner.dir)
    }

    /// Waits for the member and releases its handle (Python's `close` requires it to have ended;
    /// this waits instead).
    pub fn close(self) -> Result<i32> {
        self.wait()
    }
}

impl Inner {
    /// Whether the process was reaped (its status is known).
    pub(crate) fn is_reaped(&self) -> bool {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Reaps the process if it has ended; remembers and returns its status.
    pub(crate) fn try_reap(&self) -> Result<Option<i32>> {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if status.is_some() {
            return Ok(*status);
        }
        let got = crate::spawn::wait_pidfd(self.pidfd.as_fd(), false)
            .map_err(|e| Error::os(format!("wait for member {} (pid {})", self.name, self.pid), e))?;
        if let Some(st) = got {
            let Some(code) = crate::status::exitcode(&st) else { return Ok(None) };
            *status = Some(code);
            if !self.family_name.is_empty() {
                let family = crate::log::FamilyRef { name: &self.family_name, id: &self.family_id };
                crate::log::exited(
                    crate::log::MemberRef { family, name: &self.name, daemon: self.daemon, pid: self.pid as u32 },
                    code,
                );
            }
            // The member's directory is left to the family's guardian, which removes it once
            // nothing runs in it any more (and retires its daemons first); see guardian.rs for
            // why nobody else removes directories.
        }
        Ok(*status)
    }

    pub(crate) fn join(&self, timeout: Option<Duration>) -> Result<Option<i32>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(Some(status));
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => Some(left),
                    None => return Ok(None),
                },
                None => None,
            };
            let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
            crate::sys::poll(&mut fds, left)
                .map_err(|e| Error::os(format!("wait for member {} (pid {})", self.name, self.pid), e))?;
        }
    }

    pub(crate) fn signal(&self, sig: Signal) -> Result<()> {
        if self.is_reaped() {
            return Ok(());
        }
        match pidfd_send_signal(&self.pidfd, sig) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(Error::os(format!("signal member {} (pid {})", self.name, self.pid), e.into())),
        }
    }
}

/// Starts `cmd` as the only process of a new transient scope `unit`, the way the systemd
/// backend places a member: the child is created held at a gate (it runs nothing of its own),
/// the scope is started with its PID, and only once the start job is done is the child let go
/// to execute its program. On any error the child is ended and reaped and the unit is stopped,
/// so nothing half-created remains. `properties` come after daemonic's own (`Description`,
/// `PIDs`, `CollectMode`), e.g. `Slice` or resource limits.
pub fn spawn_in_scope(
    client: &crate::backend::systemd::Client,
    unit: &crate::cgroup::unit_name::UnitName,
    description: &str,
    cmd: &mut crate::Command,
    properties: &[(&str, zbus::zvariant::Value<'_>)],
) -> Result<crate::Member> {
    let prepared = cmd.prepare()?;
    let started =
        crate::spawn::start(&crate::spawn::Request::new(&prepared, [&cmd.stdin, &cmd.stdout, &cmd.stderr]), true)?;
    let pid = started.pid as u32;
    let mut props: Vec<(&str, zbus::zvariant::Value<'_>)> = vec![
        ("Description", zbus::zvariant::Value::from(description)),
        ("PIDs", zbus::zvariant::Value::from(vec![pid])),
        ("CollectMode", zbus::zvariant::Value::from("inactive-or-failed")),
    ];
    props.extend(properties.iter().map(|(k, v)| (*k, v.try_clone().expect("properties hold no file descriptors"))));
    if let Err(e) = client.start_transient(unit, &props) {
        started.abort();
        let _ = client.stop(unit.as_str());
        return Err(e);
    }
    // Read while the child is held: it is in the scope now and cannot have ended.
    let dir = match crate::cgroup::Hierarchy::host().and_then(|h| h.cgroup_of(pid)) {
        Ok(dir) => dir,
        Err(e) => {
            started.abort();
            let _ = client.stop(unit.as_str());
            return Err(e);
        }
    };
    let spawned = match started.release() {
        Ok(s) => s,
        Err(e) => {
            let _ = client.stop(unit.as_str());
            return Err(e);
        }
    };
    let inner = std::sync::Arc::new(Inner {
        pid: spawned.pid,
        pidfd: spawned.pidfd,
        name: unit.to_string(),
        daemon: false,
        helper: false,
        dir,
        family_name: String::new(),
        family_id: String::new(),
        status: std::sync::Mutex::new(None),
    });
    Ok(crate::Member { inner, stdin: spawned.stdin, stdout: spawned.stdout, stderr: spawned.stderr })
}
