//! Ending a member's daemons (C4, C5, C6), and after them its helpers.
//!
//! A daemon without a stop timeout is killed at once. A daemon with one gets SIGTERM on every
//! process of its cgroup, then `cgroup.kill` when its timeout expires; when the last timeout has
//! run out, one more `cgroup.kill` on the whole `.daemons` directory takes anything left.
//!
//! SIGTERM has no cgroup-wide interface, so it goes process by process without ever signalling
//! by PID number (C5): the PIDs are read from `cgroup.procs`, a pidfd is opened for each, and the
//! PIDs are read again; a pidfd is used only when its PID is still in the cgroup. A process that
//! held the PID when its pidfd was opened and still holds it is the one in the cgroup, so a
//! recycled PID can only be found dead (the signal then fails with ESRCH), never a stranger.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use crate::cgroup;
use crate::cgroup::layout::{self, Kind, Node};
use crate::error::Result;

/// The retirement of one `.daemons` directory (or of one daemon), possibly waiting on stop
/// timeouts.
#[derive(Debug)]
pub(crate) struct Retirement {
    /// The `.daemons` directory, or the one daemon's directory.
    container: PathBuf,
    /// Daemon directories that got SIGTERM, with the moment they get SIGKILL.
    pending: Vec<(PathBuf, Instant)>,
}

/// How long a helper has to end by itself after SIGTERM, unless it was given a stop timeout.
pub const HELPER_STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// Labels a new member's directory in `container` with its settings before it runs. A daemon:
/// its stop timeout (which also marks its `.daemons` directory as needing a graceful
/// retirement) and `allow_children`. A helper: its stop timeout, [`HELPER_STOP_TIMEOUT`]
/// unless given, for a helper always gets SIGTERM first. A non-daemonic member has no label.
pub(crate) fn label_member(
    dir: &Path,
    container: &Path,
    kind: Kind,
    stop_timeout: Option<Duration>,
    allow_children: bool,
) -> Result<()> {
    match kind {
        Kind::Member => Ok(()),
        Kind::Daemon => label_daemon(dir, container, stop_timeout, allow_children),
        Kind::Helper => label_daemon(dir, container, Some(stop_timeout.unwrap_or(HELPER_STOP_TIMEOUT)), false),
    }
}

fn label_daemon(dir: &Path, container: &Path, stop_timeout: Option<Duration>, allow_children: bool) -> Result<()> {
    if let Some(t) = stop_timeout {
        cgroup::set_attr(dir, layout::ATTR_STOP_TIMEOUT, &t.as_millis().to_string())?;
        if !t.is_zero() {
            cgroup::set_attr(container, layout::ATTR_GRACEFUL, "1")?;
        }
    }
    if allow_children {
        cgroup::set_attr(dir, layout::ATTR_ALLOW_CHILDREN, "1")?;
    }
    Ok(())
}

/// A daemon's stop timeout: its own attribute, else the family's default, else none.
pub(crate) fn stop_timeout(daemon_dir: &Path, family_dir: &Path) -> Duration {
    [daemon_dir, family_dir]
        .into_iter()
        .find_map(|d| cgroup::attr(d, layout::ATTR_STOP_TIMEOUT)?.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_millis)
}

impl Retirement {
    /// Whether some daemons got SIGTERM and wait for their stop timeouts.
    pub(crate) fn is_graceful(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Starts ending the daemons in `container`: kills those without a stop timeout and sends
    /// SIGTERM to the others.
    pub(crate) fn start(container: &Path, family_dir: &Path) -> Result<Retirement> {
        let now = Instant::now();
        let mut pending = Vec::new();
        let graceful =
            cgroup::attr(container, layout::ATTR_GRACEFUL).is_some() || !stop_timeout(family_dir, family_dir).is_zero();
        if !graceful {
            cgroup::kill(container)?;
            return Ok(Retirement { container: container.to_path_buf(), pending });
        }
        for dir in cgroup::subdirs(container)? {
            let is_member = matches!(Node::of_dir(&dir), Some(Node::Member { .. }));
            let timeout = if is_member { stop_timeout(&dir, family_dir) } else { Duration::ZERO };
            if timeout.is_zero() {
                cgroup::kill(&dir)?;
            } else {
                signal_all(&dir, Signal::TERM)?;
                pending.push((dir, now + timeout));
            }
        }
        let mut r = Retirement { container: container.to_path_buf(), pending };
        r.tick(now)?;
        Ok(r)
    }

    /// Starts ending the one daemon in `dir` alone, not its siblings: kills it, or sends SIGTERM
    /// to it when it has a stop timeout (its own, else the family's default).
    pub(crate) fn of_daemon(dir: &Path, family_dir: &Path) -> Result<Retirement> {
        let timeout = stop_timeout(dir, family_dir);
        let mut pending = Vec::new();
        if timeout.is_zero() {
            cgroup::kill(dir)?;
        } else {
            match signal_all(dir, Signal::TERM) {
                Ok(_) => pending.push((dir.to_path_buf(), Instant::now() + timeout)),
                // Ended and removed by the guardian meanwhile: nothing left to end.
                Err(_) if !dir.exists() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Retirement { container: dir.to_path_buf(), pending })
    }

    /// When the next stop timeout expires.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|(_, at)| *at).min()
    }

    /// Kills the daemons whose timeout has expired; once none is pending, kills the whole
    /// directory.
    pub(crate) fn tick(&mut self, now: Instant) -> Result<()> {
        let mut result = Ok(());
        self.pending.retain(|(dir, at)| {
            if *at > now {
                return true;
            }
            if let Err(e) = cgroup::kill(dir) {
                result = Err(e);
            }
            false
        });
        result?;
        if self.pending.is_empty() {
            cgroup::kill(&self.container)?;
        }
        Ok(())
    }

    /// Runs the retirement to its end in the calling thread.
    pub(crate) fn finish(mut self) -> Result<()> {
        loop {
            let left = self.next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
            if cgroup::wait_unpopulated(&self.container, left)? {
                return Ok(());
            }
            self.tick(Instant::now())?;
        }
    }
}

/// Sends `sig` to every process in the subtree of `dir`, through pidfds (see the module doc).
/// Returns how many processes got it.
pub(crate) fn signal_all(dir: &Path, sig: Signal) -> Result<usize> {
    let opened: Vec<_> = cgroup::procs_recursive(dir)?
        .into_iter()
        .filter_map(|pid| {
            let fd = pidfd_open(Pid::from_raw(pid)?, PidfdFlags::empty()).ok()?;
            Some((pid, fd))
        })
        .collect();
    let still_here: HashSet<i32> = cgroup::procs_recursive(dir)?.into_iter().collect();
    let mut sent = 0;
    for (pid, fd) in opened {
        if still_here.contains(&pid) && pidfd_send_signal(&fd, sig).is_ok() {
            sent += 1;
        }
    }
    Ok(sent)
}
