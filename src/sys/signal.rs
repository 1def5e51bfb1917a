//! Signals: blocked and read from a signalfd (the supervisor), or ignored (the guardian).

use std::ffi::c_int;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Blocks `signals` for the calling thread and returns a signalfd that reads them.
pub(crate) fn signalfd(signals: &[c_int]) -> io::Result<OwnedFd> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises `set`; sigaddset and pthread_sigmask only read and write
    // it; signalfd returns a new descriptor that we take ownership of on success.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for &s in signals {
            libc::sigaddset(set.as_mut_ptr(), s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let fd = libc::signalfd(-1, set.as_ptr(), libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Reads one pending signal from a signalfd made by [`signalfd`]: its number and whether the
/// kernel sent it (a terminal's Ctrl-C, which the whole foreground group gets anyway).
/// `None` when none is pending.
pub(crate) fn read_signal(fd: BorrowedFd<'_>) -> io::Result<Option<(c_int, bool)>> {
    let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
    let size = size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is a writable buffer of exactly `size` bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) };
    }
    if n as usize != size {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read from signalfd"));
    }
    // SAFETY: the kernel filled the whole structure.
    let info = unsafe { info.assume_init() };
    Ok(Some((info.ssi_signo as c_int, info.ssi_code == libc::SI_KERNEL)))
}

/// Sets `signal` to be ignored in this process (the guardian survives terminal and stop signals).
pub(crate) fn ignore_signal(signal: c_int) {
    // SAFETY: installing SIG_IGN has no memory-safety requirements.
    unsafe { libc::signal(signal, libc::SIG_IGN) };
}
