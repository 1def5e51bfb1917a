//! A family's bell: how a guardian that watches only its main member learns that the family is
//! about to get another one.
//!
//! Watching a family costs an inotify instance, and the kernel's release of an inotify instance
//! that held watches waits for an SRCU grace period (`fsnotify_destroy_group` flushes the mark
//! reaper, which calls `synchronize_srcu`): 8–17 ms measured here, paid by whoever closes it
//! last, which is the guardian at its exit and so `daemonic run` waiting for it. A family that
//! never gets a member besides its main one (`daemonic run -- a-program`) needs no watch:
//! `poll(POLLPRI)` on the main member's `cgroup.events` sees its end.
//!
//! So a guardian starts *light*: its family's directory carries the attribute `watch=light`,
//! and the guardian holds a datagram socket bound to an abstract name derived from the family
//! directory's inode (the bell). Whoever creates a member in the family first reads the
//! attribute and, while it says `light`, rings the bell before creating anything. The guardian
//! then sets `watch=full` and starts watching the whole tree (which also finds what was created
//! meanwhile).
//!
//! The founder binds the bell and sets the attribute before the guardian or the main member
//! exist, and hands the bound socket to the guardian: a ring sent before the guardian looks is
//! queued, not lost. A ring that finds no socket (the guardian died) is no error.
//!
//! The bell stays open in the full watch, for the other ring: the process that saw the main
//! member end (`daemonic run`) says so at once ([`ring_main_ended`]), since the kernel's own
//! notification may come up to 10 ms late.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;

use crate::cgroup::{self, layout};
use crate::error::Result;

/// The value of [`layout::ATTR_WATCH`] while the guardian watches only the main member.
pub(crate) const LIGHT: &str = "light";
/// The value of [`layout::ATTR_WATCH`] once the guardian watches the whole family.
pub(crate) const FULL: &str = "full";

/// The bell's abstract socket address: unique per cgroup directory for the boot (kernfs inode
/// numbers are not reused while the directory exists, and are 64 bits).
fn address(family_dir: &Path) -> io::Result<SocketAddr> {
    let meta = std::fs::metadata(family_dir)?;
    let name = format!("daemonic/bell/{:x}:{:x}", meta.dev(), meta.ino());
    SocketAddr::from_abstract_name(name.as_bytes())
}

/// Binds the bell of the family in `family_dir` and marks the family light. `None` when the
/// bell cannot be bound (its name taken by someone else, no Unix sockets): the family's
/// guardian then watches it in full from the start, which is correct, only slower to end.
pub(crate) fn bind(family_dir: &Path) -> Option<UnixDatagram> {
    let sock = address(family_dir).and_then(|addr| UnixDatagram::bind_addr(&addr)).ok()?;
    sock.set_nonblocking(true).ok()?;
    cgroup::set_attr(family_dir, layout::ATTR_WATCH, LIGHT).ok()?;
    Some(sock)
}

/// Before a new member is created in the family in `family_dir`: rings its bell while its
/// guardian watches only the main member. Costs one attribute read once the family is
/// watched in full.
pub(crate) fn ring_before_member(family_dir: &Path) {
    if cgroup::attr(family_dir, layout::ATTR_WATCH).as_deref() == Some(LIGHT) {
        ring(family_dir, MEMBER);
    }
}

/// After the main member of the family in `family_dir` has ended, from the process that saw
/// it end (`daemonic run`, its parent): the guardian looks at it now. The kernel sends
/// `cgroup.events` notifications at most once per 10 ms per file (`cgroup_file_notify`; in
/// whole jiffies: 12 ms at HZ=250), so the guardian's own event of a main member that ran
/// shorter than that comes only when that time is over.
pub(crate) fn ring_main_ended(family_dir: &Path) {
    ring(family_dir, LOOK);
}

/// A ring's message: a member is about to be created.
const MEMBER: u8 = b'm';
/// A ring's message: look at the main member now.
const LOOK: u8 = b'l';

fn ring(family_dir: &Path, what: u8) {
    // Refused: no guardian listens (it died). Would block: the bell has rung already and the
    // guardian has not looked yet. Neither needs another ring.
    let _ = address(family_dir).and_then(|addr| UnixDatagram::unbound()?.send_to_addr(&[what], &addr));
}

/// What rang since the last look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rang {
    /// A member is about to be created: the whole family must be watched.
    pub member: bool,
    /// The main member has ended: look at it now.
    pub look: bool,
}

/// What rang since the last call; empties the bell.
pub(crate) fn rang(bell: &UnixDatagram) -> Rang {
    let mut buf = [0u8; 16];
    let mut rang = Rang::default();
    while let Ok(n) = bell.recv(&mut buf) {
        match buf[..n].first() {
            Some(&LOOK) => rang.look = true,
            // Anything else too: a ring this version does not know asks for the safe side.
            _ => rang.member = true,
        }
    }
    rang
}

/// Marks the family in `family_dir` as watched in full: no one rings any more.
pub(crate) fn go_full(family_dir: &Path) -> Result<()> {
    cgroup::set_attr(family_dir, layout::ATTR_WATCH, FULL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_bell_hears_a_ring_sent_before_anyone_listens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = address(dir.path()).expect("address");
        let bell = UnixDatagram::bind_addr(&addr).expect("bind");
        bell.set_nonblocking(true).expect("nonblocking");
        assert_eq!(rang(&bell), Rang::default());
        UnixDatagram::unbound().expect("socket").send_to_addr(&[MEMBER], &addr).expect("ring");
        UnixDatagram::unbound().expect("socket").send_to_addr(&[MEMBER], &addr).expect("ring");
        assert_eq!(rang(&bell), Rang { member: true, look: false }, "two rings queued");
        assert_eq!(rang(&bell), Rang::default(), "and emptied");
        UnixDatagram::unbound().expect("socket").send_to_addr(&[LOOK], &addr).expect("ring");
        assert_eq!(rang(&bell), Rang { member: false, look: true });
        drop(bell);
        // No bell any more: a ring is refused, which `ring` ignores.
        assert!(UnixDatagram::unbound().expect("socket").send_to_addr(b"m", &addr).is_err());
    }

    #[test]
    fn two_directories_have_two_bells() {
        let (a, b) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
        let (a, b) = (address(a.path()).expect("a"), address(b.path()).expect("b"));
        assert_ne!(a.as_abstract_name(), b.as_abstract_name());
    }
}
