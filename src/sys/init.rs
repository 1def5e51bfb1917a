//! The PID 1 of a contained member's PID namespace (`CLONE_NEWPID`): between the clone and
//! `execve` the child forks the program's process and stays behind as its init. Async-signal-
//! safe, like all of the child's code.

use std::ffi::{CStr, c_int};
use std::mem::MaybeUninit;

use super::abi::CLONE_PIDFD;

use super::fd::close_range;

/// The `comm` of a contained member's PID 1, as `ps` shows it.
const INIT_COMM: &CStr = c"daemonic-init";

/// In the PID 1 of a new PID namespace, just after the clone: forks the process that goes on to
/// run the program and returns `true` in it (or `false` when the fork failed, with errno set).
/// In PID 1 it never returns: it closes every descriptor but the new process's pidfd, reads
/// all signals from a signalfd (a namespace's init gets signals from outside only when it
/// blocks or handles them), forwards each to the program through the pidfd, reaps whatever
/// ends in the namespace, and exits with the program's status once the program has ended.
///
/// Async-signal-safe, like all of the child's code: system calls on the stack only.
pub(super) fn become_init() -> bool {
    // SAFETY: (whole block) raw system calls on stack memory in a process where nothing else
    // runs (a private copy of the parent's address space, see `child_exec`).
    unsafe {
        let mut all = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigfillset(all.as_mut_ptr());
        if libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), std::ptr::null_mut()) != 0 {
            return false;
        }
        let mut pidfd: c_int = -1;
        let pid = libc::syscall(
            libc::SYS_clone,
            (CLONE_PIDFD | libc::SIGCHLD as u64) as libc::c_ulong,
            0usize,
            &raw mut pidfd,
            0usize,
            0usize,
        );
        if pid < 0 {
            return false;
        }
        if pid == 0 {
            // The program's process: `child_exec` goes on (and resets the signal mask).
            return true;
        }
        // PID 1 from here on. The program's process reports its own start (the report pipe's
        // write end is close-on-exec there); this copy, stdio and the rest are closed so that
        // pipes see their end when the program's side closes them.
        if pidfd > 0 {
            close_range(0, (pidfd - 1) as libc::c_uint, 0);
        }
        close_range((pidfd + 1) as libc::c_uint, libc::c_uint::MAX, 0);
        libc::prctl(libc::PR_SET_NAME, INIT_COMM.as_ptr());
        let sfd = libc::signalfd(-1, all.as_ptr(), libc::SFD_CLOEXEC);
        if sfd < 0 {
            libc::syscall(libc::SYS_pidfd_send_signal, pidfd, libc::SIGKILL, std::ptr::null::<libc::siginfo_t>(), 0u32);
            libc::_exit(127);
        }
        loop {
            let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
            let size = size_of::<libc::signalfd_siginfo>();
            let n = libc::read(sfd, info.as_mut_ptr().cast(), size);
            if n != size as isize {
                continue; // EINTR cannot happen with everything blocked; a short read never does
            }
            let signo = info.assume_init_ref().ssi_signo as c_int;
            if signo != libc::SIGCHLD {
                libc::syscall(libc::SYS_pidfd_send_signal, pidfd, signo, std::ptr::null::<libc::siginfo_t>(), 0u32);
                continue;
            }
            // Reap everything that ended (orphans of the namespace come to PID 1 too).
            loop {
                let mut si = MaybeUninit::<libc::siginfo_t>::zeroed();
                if libc::waitid(libc::P_ALL, 0, si.as_mut_ptr(), libc::WEXITED | libc::WNOHANG) != 0 {
                    break;
                }
                let si = si.assume_init_ref();
                let ended = si.si_pid();
                if ended == 0 {
                    break;
                }
                if ended as libc::c_long == pid {
                    let code = match si.si_code {
                        libc::CLD_EXITED => si.si_status(),
                        _ => 128 + si.si_status(),
                    };
                    libc::_exit(code & 0xff);
                }
            }
        }
    }
}
