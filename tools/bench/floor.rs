//! The floors daemonic is compared with: a plain `fork` + `execv` + `waitpid`, and the same with
//! the child started in a fresh cgroup by `clone3(CLONE_INTO_CGROUP)` (mkdir before, rmdir after).
//! Both are raw system calls, so this is the one module of the benchmark with unsafe code.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use rustix::process::{Pid, WaitOptions, waitpid};

/// `clone3`'s argument block (linux/sched.h, `struct clone_args`, CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// A program to start, as C strings made before any fork, so that the child only calls the
/// async-signal-safe `execv` and `_exit`.
pub(crate) struct Program {
    path: CString,
}

impl Program {
    pub(crate) fn new(path: &str) -> Program {
        Program { path: CString::new(path).expect("a program path has no NUL") }
    }

    /// fork, `execv` in the child, `waitpid` in the parent: the exit code.
    pub(crate) fn fork_exec_wait(&self) -> io::Result<i32> {
        let argv: [*const libc::c_char; 2] = [self.path.as_ptr(), std::ptr::null()];
        // SAFETY: fork has no memory-safety preconditions. The child (0) only runs `exec_child`,
        // which calls the async-signal-safe execv and _exit on data prepared before the fork,
        // so it is sound even if another thread held a lock at the moment of the fork.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            exec_child(&self.path, &argv);
        }
        wait(pid)
    }

    /// mkdir `dir`, `clone3(CLONE_INTO_CGROUP)` into it, `execv` in the child, `waitpid`, rmdir:
    /// the exit code.
    pub(crate) fn clone3_cgroup_wait(&self, dir: &Path) -> io::Result<i32> {
        std::fs::create_dir(dir)?;
        let result = self.clone3_into(dir);
        std::fs::remove_dir(dir)?;
        result
    }

    fn clone3_into(&self, dir: &Path) -> io::Result<i32> {
        let cgroup = std::fs::File::open(dir)?;
        let argv: [*const libc::c_char; 2] = [self.path.as_ptr(), std::ptr::null()];
        let args = CloneArgs {
            flags: CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: cgroup.as_raw_fd() as u64,
            ..CloneArgs::default()
        };
        // SAFETY: clone3 without CLONE_VM duplicates the address space like fork; `args` outlives
        // the call and its size is passed exactly. The child (0) only runs `exec_child`.
        let pid = unsafe { libc::syscall(libc::SYS_clone3, &raw const args, size_of::<CloneArgs>()) };
        if pid == 0 {
            exec_child(&self.path, &argv);
        }
        wait(pid as libc::pid_t)
    }
}

/// The child's side: `execv`, or `_exit(127)` when it fails. Never returns.
fn exec_child(path: &CString, argv: &[*const libc::c_char; 2]) -> ! {
    // SAFETY: `argv` is NULL-terminated and points to a live NUL-terminated string; execv and
    // _exit are async-signal-safe; _exit never returns, so no destructor or atexit handler of
    // the parent runs in the child.
    unsafe {
        libc::execv(path.as_ptr(), argv.as_ptr());
        libc::_exit(127)
    }
}

/// The parent's side: the exit code of `pid` (from a fork-like call), or the call's error.
fn wait(pid: libc::pid_t) -> io::Result<i32> {
    let Some(pid) = Pid::from_raw(pid) else { return Err(io::Error::last_os_error()) };
    loop {
        match waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => return Ok(status.exit_status().unwrap_or(-1)),
            Ok(None) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
