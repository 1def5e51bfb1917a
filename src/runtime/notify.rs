//! `daemonic run` as a `Type=notify` service: `READY=1` once the main member runs, `STATUS=`
//! lines with the family's member counts while it lives, `STOPPING=1` when the main member has
//! ended and the family is winding down.
//!
//! Counts come from the cgroup tree, like `daemonic ps`: an inotify watch on every directory of
//! the family wakes the supervisor when a member's directory appears or goes. A burst of spawns
//! is folded into one update at most every [`THROTTLE`]; an idle family costs nothing. All of it
//! exists only when `NOTIFY_SOCKET` is set.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use sd_notify::NotifyState;

use crate::cgroup::Hierarchy;
use crate::log;
use crate::runtime::inspect;

/// Shortest interval between two `STATUS=` updates.
pub(crate) const THROTTLE: Duration = Duration::from_millis(200);

/// Members of a family by kind, as the service manager's status shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Running non-daemonic members, the main member included.
    pub members: usize,
    /// Running daemons.
    pub daemons: usize,
}

impl Counts {
    fn of(h: &Hierarchy, family_dir: &Path) -> Counts {
        let mut counts = Counts::default();
        for m in inspect::members_of(h, family_dir).iter().filter(|m| m.state == "running") {
            if m.daemon {
                counts.daemons += 1;
            } else {
                counts.members += 1;
            }
        }
        counts
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// The text of `STATUS=` while the main member runs.
pub(crate) fn running_status(family_id: &str, c: Counts) -> String {
    format!("family {family_id}: {} running, {}", plural(c.members, "member"), plural(c.daemons, "daemon"))
}

/// The text of `STATUS=` after the main member ended with `exitcode`.
pub(crate) fn stopping_status(family_id: &str, exitcode: i32, c: Counts) -> String {
    format!(
        "family {family_id}: main member {}; waiting for {} before ending {}",
        crate::status::describe(exitcode),
        plural(c.members, "member"),
        plural(c.daemons, "daemon")
    )
}

/// The link to the service manager of a `daemonic run` started with `NOTIFY_SOCKET`.
pub(crate) struct Notifier {
    h: Hierarchy,
    family_dir: PathBuf,
    family_id: String,
    inotify: OwnedFd,
    /// The main member's exit code, once it has ended.
    main_exit: Option<i32>,
    last_status: String,
    last_sent: Option<Instant>,
    /// The tree changed since the last update.
    dirty: bool,
}

impl Notifier {
    /// `None` when daemonic does not run under a service manager that listens (no
    /// `NOTIFY_SOCKET`), or when the family cannot be watched (said as a warning; the service
    /// then gets `READY=1` and no counts).
    pub(crate) fn new(h: &Hierarchy, family_dir: &Path, family_id: &str) -> Option<Notifier> {
        std::env::var_os("NOTIFY_SOCKET")?;
        let inotify = match inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(e) => {
                log::warn(format!("cannot watch family {family_id} for the service's status: {e}"));
                let _ = sd_notify::notify(&[NotifyState::Ready]);
                return None;
            }
        };
        Some(Notifier {
            h: h.clone(),
            family_dir: family_dir.to_path_buf(),
            family_id: family_id.to_string(),
            inotify,
            main_exit: None,
            last_status: String::new(),
            last_sent: None,
            dirty: true,
        })
    }

    /// The main member runs: the service is ready.
    pub(crate) fn ready(&mut self) {
        let counts = self.rescan();
        let status = running_status(&self.family_id, counts);
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)], status.clone());
    }

    /// The main member ended with `exitcode`: the service is stopping.
    pub(crate) fn stopping(&mut self, exitcode: i32) {
        self.main_exit = Some(exitcode);
        let counts = self.rescan();
        let status = stopping_status(&self.family_id, exitcode, counts);
        self.send(&[NotifyState::Stopping, NotifyState::Status(&status)], status.clone());
    }

    /// The descriptor that becomes readable when the family's tree changes.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// How long the caller may sleep before [`Notifier::update`] has something to do: `None`
    /// (until the tree changes) when nothing is pending.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        if !self.dirty {
            return None;
        }
        Some(self.last_sent.map_or(Duration::ZERO, |t| THROTTLE.saturating_sub(t.elapsed())))
    }

    /// Takes in the tree's changes and, when due, sends the new counts.
    pub(crate) fn update(&mut self) {
        self.drain();
        if self.timeout() != Some(Duration::ZERO) {
            return;
        }
        let counts = self.rescan();
        let status = match self.main_exit {
            None => running_status(&self.family_id, counts),
            Some(code) => stopping_status(&self.family_id, code, counts),
        };
        if status != self.last_status {
            self.send(&[NotifyState::Status(&status)], status.clone());
        } else {
            self.last_sent = Some(Instant::now());
        }
    }

    fn drain(&mut self) {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.inotify, &mut buf);
        while let Ok(event) = reader.next() {
            if !event.events().contains(ReadFlags::IGNORED) {
                self.dirty = true;
            }
        }
    }

    /// Watches every directory of the family (new ones included) and counts its members.
    fn rescan(&mut self) -> Counts {
        self.dirty = false;
        let mut stack = vec![self.family_dir.clone()];
        while let Some(dir) = stack.pop() {
            // ATTRIB: a member counts as running once its directory carries its PID, an
            // extended attribute set just after the directory's creation was reported.
            let flags = WatchFlags::CREATE | WatchFlags::DELETE | WatchFlags::ATTRIB | WatchFlags::ONLYDIR;
            let _ = inotify::add_watch(&self.inotify, &dir, flags);
            if let Ok(subdirs) = crate::cgroup::subdirs(&dir) {
                stack.extend(subdirs);
            }
        }
        // A process can end without its directory going: `cgroup.events` of every member would
        // tell, at a watch per member. The update after the guardian removes the directory is
        // the one that counts.
        Counts::of(&self.h, &self.family_dir)
    }

    fn send(&mut self, states: &[NotifyState<'_>], status: String) {
        if let Err(e) = sd_notify::notify(states) {
            log::warn(format!("failed to notify the service manager (NOTIFY_SOCKET): {e}"));
        }
        self.last_status = status;
        self.last_sent = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::notify::*;

    #[test]
    fn statuses_count_members_and_daemons() {
        let c = Counts { members: 1, daemons: 2 };
        assert_eq!(running_status("web-42", c), "family web-42: 1 member running, 2 daemons");
        assert_eq!(
            stopping_status("web-42", -15, Counts { members: 0, daemons: 1 }),
            "family web-42: main member was killed by SIGTERM; waiting for 0 members before ending 1 daemon"
        );
        assert_eq!(
            stopping_status("web-42", 3, Counts { members: 2, daemons: 0 }),
            "family web-42: main member exited with code 3; waiting for 2 members before ending 0 daemons"
        );
    }
}
