//! Descriptors: the high range members' pidfds live in, closing ranges, adopting a socket.

use std::ffi::c_int;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// `CLOSE_RANGE_UNSHARE` (Linux 5.9).
pub(super) const CLOSE_RANGE_UNSHARE: libc::c_uint = 1 << 1;

/// The first descriptor number that a new process never inherits (unless it is one of its
/// standard streams or [`ChildSpec::keep`](super::ChildSpec::keep)). The members' pidfds are moved up here
/// ([`raise_descriptor`]), so that a process with thousands of members does not pay for copying
/// them at every clone and closing them again at every exec: a child that shares the table
/// copies only the descriptors below this number. 1024 is also `FD_SETSIZE` and the usual soft
/// limit, below which programs keep the descriptors they mean to pass on.
pub(crate) const HIGH_DESCRIPTORS: c_int = 1024;

/// `close_range(2)` (Linux 5.9): closes descriptors `first..=last` (with `CLOSE_RANGE_UNSHARE`
/// in `flags`, after giving the process a table of its own). The crate's one call of it.
/// Async-signal-safe: one system call. Returns whether it succeeded.
///
/// # Safety
/// Descriptors in the range that something still owns (an `OwnedFd`, a `File`) are closed
/// under it: the caller makes sure nothing in the process uses them afterwards (a child about
/// to execute, a freshly executed process, or a number no process can hold).
pub(super) unsafe fn close_range(first: libc::c_uint, last: libc::c_uint, flags: libc::c_uint) -> bool {
    // SAFETY: the system call itself only closes descriptors; the caller answers for them.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) == 0 }
}

/// In a child that copied the whole table: closes every descriptor from [`HIGH_DESCRIPTORS`]
/// up but the (at most two) in `except`. Async-signal-safe: system calls on stack values only.
///
/// # Safety
/// As [`close_range`]: only in a child about to execute, whose table is its own.
pub(super) unsafe fn close_high_descriptors(except: [c_int; 2]) -> bool {
    let [a, b] = except;
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    let mut from = HIGH_DESCRIPTORS as libc::c_uint;
    for keep in [a, b] {
        if keep < HIGH_DESCRIPTORS || (keep as libc::c_uint) < from {
            continue;
        }
        let keep = keep as libc::c_uint;
        // SAFETY: close_range only closes descriptors of this (private) table; `keep > from`
        // is checked, so the range is valid.
        if keep > from && !unsafe { close_range(from, keep - 1, 0) } {
            return false;
        }
        from = keep + 1;
    }
    // SAFETY: as above; `from` is at most `c_int::MAX + 1`, below `c_uint::MAX`.
    unsafe { close_range(from, libc::c_uint::MAX, 0) }
}

/// Whether `close_range(2)` exists here (Linux 5.9, with `CLOSE_RANGE_UNSHARE`): asked once,
/// by closing the one descriptor number no process can hold.
pub(crate) fn close_range_works() -> bool {
    // SAFETY: descriptor u32::MAX is above any RLIMIT_NOFILE, so this closes nothing.
    unsafe { close_range(libc::c_uint::MAX, libc::c_uint::MAX, 0) }
}

/// Moves `fd` to the lowest free number from [`HIGH_DESCRIPTORS`] up, close-on-exec. Where the
/// soft `RLIMIT_NOFILE` is too low (EINVAL) or that range is full (EMFILE), returns it as it
/// was: the descriptor works the same, only cloning gets slower.
pub(crate) fn raise_descriptor(fd: OwnedFd) -> OwnedFd {
    if fd.as_raw_fd() >= HIGH_DESCRIPTORS {
        return fd;
    }
    // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor for the same open file.
    let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, HIGH_DESCRIPTORS) };
    if high < 0 {
        return fd;
    }
    // SAFETY: the kernel just returned `high`, a fresh descriptor nobody else owns.
    unsafe { OwnedFd::from_raw_fd(high) }
}

/// Grows this process's descriptor table past [`HIGH_DESCRIPTORS`] now, before it starts
/// threads of its own: the kernel grows a table that threads share only after an RCU grace
/// period (`expand_fdtable` calls `synchronize_rcu`), 10.6 ms measured here in `daemonic run`
/// on systemd, whose first pidfd was raised once the D-Bus connection's threads existed. A
/// table never shrinks, so this is paid once, and without the wait while single-threaded.
pub(crate) fn reserve_high_descriptors() {
    if let Ok(null) = std::fs::File::open("/dev/null") {
        drop(raise_descriptor(OwnedFd::from(null)));
    }
}

/// Closes every descriptor from `first` up, so a guardian holds none of its creator's pipes.
pub(crate) fn close_descriptors_from(first: c_int) {
    // SAFETY: close_range only closes descriptors; nothing in this process uses them afterwards
    // (it is called first thing in a freshly executed guardian).
    unsafe { close_range(first as libc::c_uint, libc::c_uint::MAX, 0) };
}

/// A descriptor number this process was given by its parent (read from the environment before
/// `main`), until [`take_inherited_socket`] hands it out; -1 when there is none (or it was
/// taken), `i32::MAX` when what was given was not a descriptor number.
static INHERITED_SOCKET: AtomicI32 = AtomicI32::new(-1);

/// Notes the descriptor number `given` (a number of 3 or above; anything else is remembered as
/// invalid) for [`take_inherited_socket`].
pub(crate) fn note_inherited_socket(given: Option<RawFd>) {
    INHERITED_SOCKET.store(given.filter(|fd| *fd >= 3).unwrap_or(i32::MAX), Ordering::SeqCst);
}

/// The socket noted by [`note_inherited_socket`], once, as an owned descriptor: `None` when
/// none was noted (and on every later call), an error when the number is not an open socket.
pub(crate) fn take_inherited_socket() -> Option<io::Result<OwnedFd>> {
    let fd = INHERITED_SOCKET.swap(-1, Ordering::SeqCst);
    if fd < 0 {
        return None;
    }
    Some(adopt_socket(fd))
}

/// Descriptor `fd` as an owned socket, once checked to be an open socket. Only
/// [`take_inherited_socket`] calls it, with a number it hands out once.
fn adopt_socket(fd: RawFd) -> io::Result<OwnedFd> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "it is not an open socket");
    if fd == i32::MAX {
        return Err(invalid());
    }
    // SAFETY: fstat only writes the structure; a closed or foreign number just fails.
    let is_socket = unsafe {
        let mut st = MaybeUninit::<libc::stat>::uninit();
        libc::fstat(fd, st.as_mut_ptr()) == 0 && (st.assume_init().st_mode & libc::S_IFMT) == libc::S_IFSOCK
    };
    if !is_socket {
        return Err(invalid());
    }
    // SAFETY: the number names an open socket that nothing in this process owns (it came from
    // the parent through the environment), and take_inherited_socket's swap hands it out once,
    // so the descriptor made here is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `poll(2)` for at most `timeout` (forever when `None`), retrying on `EINTR` with the time
/// that is left. Returns how many descriptors are ready.
pub(crate) fn poll(fds: &mut [rustix::event::PollFd<'_>], timeout: Option<std::time::Duration>) -> io::Result<usize> {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let ts = left.map(|t| rustix::event::Timespec { tv_sec: t.as_secs() as i64, tv_nsec: t.subsec_nanos() as _ });
        match rustix::event::poll(fds, ts.as_ref()) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
