//! Installing a prepared seccomp program.

use std::io;

/// Installs a classic-BPF seccomp program on the calling thread.
///
/// Tries without `PR_SET_NO_NEW_PRIVS` first, so that a privileged daemon keeps the ability to
/// run set-user-ID programs; sets it and retries when the kernel demands it (`EACCES`).
/// Async-signal-safe: two system calls on caller-provided memory.
pub(crate) fn install_filter(filter: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: `prog` points to `filter`, which outlives both calls; the kernel copies it.
    unsafe {
        let set = |prog: &libc::sock_fprog| {
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, prog as *const libc::sock_fprog)
        };
        if set(&prog) == 0 {
            return Ok(());
        }
        if *libc::__errno_location() != libc::EACCES {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || set(&prog) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
