//! Creating a process in its cgroup and the child's code until `execve` (async-signal-safe).

use std::ffi::{CStr, c_char, c_int};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(target_arch = "x86_64")]
use super::abi::KernelSigaction;
use super::abi::{CLONE_INTO_CGROUP, CLONE_NEWPID, CLONE_PIDFD, CloneArgs, SHARE_TABLE};
use super::fd::{CLOSE_RANGE_UNSHARE, HIGH_DESCRIPTORS, close_high_descriptors, close_range};
use super::init::become_init;
use super::seccomp::install_filter;
#[cfg(target_arch = "x86_64")]
use super::stack::{ChildStack, clone3_on_stack};

/// What the parent prepared for the child. Everything here is built before the clone; the
/// child only reads it.
pub(crate) struct ChildSpec<'a> {
    /// Absolute or relative path of the program, already resolved against `PATH`.
    pub program: &'a CStr,
    /// NULL-terminated argument vector.
    pub argv: &'a [*const c_char],
    /// NULL-terminated environment; `None` passes the process's `environ` as it is at the clone.
    pub envp: Option<&'a [*const c_char]>,
    /// Descriptors to install as 0, 1 and 2; `None` keeps the parent's.
    pub stdio: [Option<RawFd>; 3],
    /// Working directory to change to.
    pub cwd: Option<&'a CStr>,
    /// Seccomp programs to install, in order, just before `execve`.
    pub filters: &'a [Vec<libc::sock_filter>],
    /// Start a new session (`setsid`), leaving the terminal's process group.
    pub new_session: bool,
    /// Close-on-exec pipe on which the child reports a failure as `[stage, errno]`.
    ///
    /// `None` (only with `share_table` and [`CgroupEntry::Clone3`], where [`SHARED_MEMORY`]):
    /// the child is cloned with `CLONE_VM` too. It runs on a stack of its own in the caller's
    /// memory, which the caller, held in the clone, does not touch meanwhile, and leaves a
    /// failure there instead of in a pipe. No address space is copied, so no page of the
    /// caller is made copy-on-write: the clone costs the same however large the caller is,
    /// and the caller takes no page faults afterwards. The child runs with every signal
    /// blocked until it has set each caught signal back to its default, so that no handler
    /// of the caller ever runs on the caller's memory from the child.
    pub report: Option<RawFd>,
    /// A pipe `(read end, write end)` the child waits on before anything else: it closes its
    /// copy of the write end, then one byte lets it go on and end of file makes it exit. Used
    /// to hold a child until systemd has put it into its scope.
    pub gate: Option<(RawFd, RawFd)>,
    /// A close-on-exec descriptor (3 or above) that the program inherits under the same number:
    /// the channel of a process that runs a Rust target (see [`crate::runtime::target`]).
    pub keep: Option<RawFd>,
    /// Start in a new PID namespace. The cloned process becomes its PID 1: it forks the process
    /// that goes on to run the program, then only forwards signals to it and reaps, and exits
    /// with its status (a death by signal N becomes exit code 128 + N: a namespace's init cannot
    /// die by a signal of its own). When it exits, the kernel kills every process left in the
    /// namespace, wherever in the cgroup tree they moved: nothing the member starts outlives it.
    pub contain: bool,
    /// Clone with `CLONE_FILES | CLONE_VFORK`; the child's first act is
    /// `close_range(HIGH_DESCRIPTORS, ~0, CLOSE_RANGE_UNSHARE)`, which gives it a table of its
    /// own holding only the descriptors below [`HIGH_DESCRIPTORS`], and the caller waits in the
    /// clone until the child has executed (or exited), so it cannot close a descriptor the child
    /// still needs. The caller sets it only when every descriptor the child uses (`report`,
    /// `stdio`, `keep`, the fallback's `cgroup.procs`) is below [`HIGH_DESCRIPTORS`], there is no
    /// `gate` and no `contain` (both hold the child before `execve`), and `close_range` exists.
    /// Without it the child is a plain copy and closes its descriptors from
    /// [`HIGH_DESCRIPTORS`] up (but `report` and `keep`) before `execve`, so that what a member
    /// inherits does not depend on the path taken.
    pub share_table: bool,
}

unsafe extern "C" {
    /// The C library's environment. Read only in a child just after the clone, where nothing
    /// else runs; Rust 2024 makes changing it (`set_var`) the caller's unsafe promise that no
    /// other thread reads it meanwhile, which is what std's own `Command` relies on too.
    static environ: *const *const c_char;
}

/// Whether [`clone_child`] can start a child in the caller's memory ([`ChildSpec::report`] `None`):
/// where the clone trampoline exists.
pub(crate) const SHARED_MEMORY: bool = cfg!(target_arch = "x86_64");

/// Where the new process goes.
#[derive(Clone, Copy)]
pub(crate) enum CgroupEntry<'a> {
    /// `clone3(CLONE_INTO_CGROUP)`: the child starts in the cgroup of this directory.
    Clone3(BorrowedFd<'a>),
    /// `clone`, then the child writes `0` to this open `cgroup.procs` before it executes.
    Fork(BorrowedFd<'a>),
    /// Stay in the parent's cgroup.
    Inherit,
}

impl CgroupEntry<'_> {
    /// The `cgroup.procs` descriptor the child writes to, for the fallback.
    pub(crate) fn procs(&self) -> Option<RawFd> {
        match self {
            CgroupEntry::Fork(fd) => Some(fd.as_raw_fd()),
            _ => None,
        }
    }
}

/// The step of the child's setup that failed, reported through [`ChildSpec::report`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stage {
    Gate = 8,
    Contain = 9,
    Descriptors = 10,
    JoinCgroup = 1,
    Signals = 2,
    Stdio = 3,
    Chdir = 4,
    Session = 5,
    Seccomp = 6,
    Exec = 7,
}

impl Stage {
    fn from_u32(v: u32) -> Option<Stage> {
        [
            Stage::Gate,
            Stage::Contain,
            Stage::Descriptors,
            Stage::JoinCgroup,
            Stage::Signals,
            Stage::Stdio,
            Stage::Chdir,
            Stage::Session,
            Stage::Seccomp,
            Stage::Exec,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }
}

/// How far a new process got, as [`clone_child`] can tell.
pub(crate) enum Start {
    /// Unknown yet: the child reports on [`ChildSpec::report`] (end of file: it executed).
    Pending,
    /// The child, which shared the caller's memory, has executed its program.
    Executed,
    /// The child, which shared the caller's memory, failed at this step and exited; it is not
    /// reaped yet.
    Failed(Stage, io::Error),
}

/// Creates a process that runs `spec`. Returns its PID, a pidfd for it, and how far it got.
///
/// With a report pipe the caller closes its write end, then reads it to learn whether
/// `execve` worked.
pub(crate) fn clone_child(spec: &ChildSpec<'_>, placement: CgroupEntry<'_>) -> io::Result<(i32, OwnedFd, Start)> {
    let mut pidfd: c_int = -1;
    let newpid = if spec.contain { CLONE_NEWPID } else { 0 };
    let share = if spec.share_table { SHARE_TABLE } else { 0 };
    let Some(report) = spec.report else {
        let CgroupEntry::Clone3(dir) = placement else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a child in shared memory needs clone3"));
        };
        if !SHARED_MEMORY || !spec.share_table || spec.gate.is_some() || spec.contain {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a child in shared memory must not wait"));
        }
        return clone_shared(spec, dir);
    };
    let pid = match placement {
        CgroupEntry::Clone3(dir) => {
            let args = CloneArgs {
                flags: CLONE_PIDFD | CLONE_INTO_CGROUP | newpid | share,
                pidfd: &raw mut pidfd as u64,
                exit_signal: libc::SIGCHLD as u64,
                cgroup: dir.as_raw_fd() as u64,
                ..CloneArgs::default()
            };
            // SAFETY: clone3 without CLONE_VM duplicates the address space like fork; `args`
            // outlives the call and its size is passed exactly. In the child (return 0) we only
            // call `child_exec`, which never returns and is async-signal-safe. With
            // CLONE_FILES it unshares the table before it touches a descriptor (`share_table`).
            unsafe { libc::syscall(libc::SYS_clone3, &raw const args, size_of::<CloneArgs>()) }
        }
        CgroupEntry::Fork(_) | CgroupEntry::Inherit => {
            // SAFETY: raw clone with CLONE_PIDFD | SIGCHLD and no stack is a fork that also
            // stores a pidfd through the third argument (parent_tid on x86_64 and aarch64).
            // The child only calls `child_exec`, which never returns.
            unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    (CLONE_PIDFD | newpid | share | libc::SIGCHLD as u64) as libc::c_ulong,
                    0usize,
                    &raw mut pidfd,
                    0usize,
                    0usize,
                )
            }
        }
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let procs = match placement {
            CgroupEntry::Fork(procs) => Some(procs.as_raw_fd()),
            _ => None,
        };
        child_exec(spec, procs, Reporter::Pipe(report));
    }
    // SAFETY: the kernel returned a fresh descriptor for the child in `pidfd`; we own it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok((pid as i32, pidfd, Start::Pending))
}

/// Where the child's code reports a failure before it exits.
#[derive(Clone, Copy)]
enum Reporter<'a> {
    /// `[stage, errno]` on this close-on-exec pipe.
    Pipe(RawFd),
    /// `stage << 32 | errno` in the caller's memory ([`ChildSpec::report`] `None`).
    Memory(&'a AtomicU64),
}

/// What a child in shared memory gets: its spec, and where it leaves a failure (0: none).
struct Shared<'a, 'b> {
    spec: &'a ChildSpec<'b>,
    failure: AtomicU64,
}

/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_INTO_CGROUP | CLONE_PIDFD)` on this
/// thread's child stack (see [`ChildSpec::report`]).
#[cfg(target_arch = "x86_64")]
fn clone_shared(spec: &ChildSpec<'_>, dir: BorrowedFd<'_>) -> io::Result<(i32, OwnedFd, Start)> {
    let stack = ChildStack::take()?;
    let shared = Shared { spec, failure: AtomicU64::new(0) };
    let mut pidfd: c_int = -1;
    let args = CloneArgs {
        flags: CLONE_PIDFD | CLONE_INTO_CGROUP | SHARE_TABLE | libc::CLONE_VM as u64,
        pidfd: &raw mut pidfd as u64,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.low as u64,
        stack_size: ChildStack::SIZE as u64,
        cgroup: dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // Every signal, the C library's internal ones too (as glibc's posix_spawn does): the raw
    // call, since pthread_sigmask leaves those two unblocked.
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: rt_sigprocmask reads `all` and writes `old`, both 8 bytes (the kernel's sigset).
    if unsafe { libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &raw const all, &raw mut old, 8) } != 0 {
        let e = io::Error::last_os_error();
        stack.give_back();
        return Err(e);
    }
    // SAFETY: `args` and `shared` live in this frame, which stays put while the child runs: with
    // CLONE_VFORK the kernel holds this thread in the call until the child has executed its
    // program or exited, and only then does the child stop using `shared`, `spec` and the
    // stack. The stack is this thread's alone (`ChildStack`), mapped and `SIZE` bytes long.
    // The child runs `shared_child`, which never returns and is async-signal-safe; every
    // signal is blocked in it until it has reset the caught ones.
    let pid = unsafe { clone3_on_stack(&args, shared_child, (&raw const shared).cast_mut().cast()) };
    // SAFETY: as above; `old` is the mask this thread had.
    unsafe {
        libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &raw const old, std::ptr::null_mut::<u64>(), 8)
    };
    stack.give_back();
    if pid < 0 {
        return Err(io::Error::from_raw_os_error(-pid as i32));
    }
    // SAFETY: the kernel returned a fresh descriptor for the child in `pidfd`; we own it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let start = match shared.failure.load(Ordering::Acquire) {
        0 => Start::Executed,
        code => {
            let (stage, err) = failure((code >> 32) as u32, code as u32 as i32);
            Start::Failed(stage, err)
        }
    };
    Ok((pid as i32, pidfd, start))
}

#[cfg(not(target_arch = "x86_64"))]
fn clone_shared(_: &ChildSpec<'_>, _: BorrowedFd<'_>) -> io::Result<(i32, OwnedFd, Start)> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// The child in shared memory: resets every caught signal to its default (they are all blocked
/// still), then goes on as any child.
#[cfg(target_arch = "x86_64")]
extern "C" fn shared_child(arg: *mut libc::c_void) -> ! {
    // SAFETY: `arg` is the `Shared` of `clone_shared`, whose frame stays put while this child
    // runs (the caller is held in clone3 by CLONE_VFORK).
    let shared = unsafe { &*arg.cast::<Shared<'_, '_>>() };
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        let mut action = KernelSigaction::default();
        // SAFETY: rt_sigaction only fills `action`, on this stack; the kernel's struct layout
        // and 8-byte mask are those of `KernelSigaction`. This table is the child's own copy
        // (no CLONE_SIGHAND), so a change does not reach the caller.
        unsafe {
            if libc::syscall(libc::SYS_rt_sigaction, signal, std::ptr::null::<KernelSigaction>(), &raw mut action, 8)
                != 0
                || action.handler == libc::SIG_DFL
                || action.handler == libc::SIG_IGN
            {
                continue;
            }
            let default = KernelSigaction::default();
            if libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                &raw const default,
                std::ptr::null_mut::<KernelSigaction>(),
                8,
            ) != 0
            {
                fail(Reporter::Memory(&shared.failure), Stage::Signals);
            }
        }
    }
    child_exec(shared.spec, None, Reporter::Memory(&shared.failure))
}

/// Reports `stage` with the current errno, then exits with 127. Async-signal-safe.
fn fail(reporter: Reporter<'_>, stage: Stage) -> ! {
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    match reporter {
        Reporter::Pipe(fd) => {
            let msg = [(stage as u32).to_ne_bytes(), (errno as u32).to_ne_bytes()];
            // SAFETY: write(2) is async-signal-safe; `msg` is on our stack.
            unsafe { libc::write(fd, msg.as_ptr().cast(), 8) };
        }
        Reporter::Memory(failure) => {
            failure.store(u64::from(stage as u32) << 32 | u64::from(errno as u32), Ordering::Release)
        }
    }
    // SAFETY: _exit(2) is async-signal-safe and runs no destructor or atexit handler of the
    // caller's.
    unsafe { libc::_exit(127) }
}

/// Runs in the child: join the cgroup (fallback), reset signals, install stdio, chdir, setsid,
/// seccomp, execve. Only raw system calls on prepared data; on failure, report and `_exit(127)`.
fn child_exec(spec: &ChildSpec<'_>, procs: Option<RawFd>, reporter: Reporter<'_>) -> ! {
    let fail = |stage: Stage| -> ! { fail(reporter, stage) };
    // SAFETY: (whole block) every call below is an async-signal-safe system call wrapper whose
    // pointer arguments point to data the parent prepared before the clone and that stays
    // valid: this address space is a private copy, or (`Reporter::Memory`) the caller's, which
    // the caller, held in the clone, leaves alone until this process has executed or exited.
    unsafe {
        // First of all, a table of our own: until then every close or dup2 would act on the
        // caller's descriptors (the caller is held in the clone meanwhile).
        if spec.share_table && !close_range(HIGH_DESCRIPTORS as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_UNSHARE) {
            fail(Stage::Descriptors);
        }
        if let Some((gate, ours)) = spec.gate {
            libc::close(ours);
            let mut go = 0u8;
            loop {
                let n = libc::read(gate, (&raw mut go).cast(), 1);
                if n == 1 {
                    break;
                }
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                fail(Stage::Gate);
            }
        }
        if let Some(fd) = procs
            && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
        {
            fail(Stage::JoinCgroup);
        }
        if spec.contain && !become_init() {
            fail(Stage::Contain);
        }
        let mut empty = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(empty.as_mut_ptr());
        if libc::pthread_sigmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut()) != 0 {
            fail(Stage::Signals);
        }
        // Rust programs ignore SIGPIPE; an exec'd program expects the default.
        if libc::signal(libc::SIGPIPE, libc::SIG_DFL) == libc::SIG_ERR {
            fail(Stage::Signals);
        }
        for (target, source) in spec.stdio.iter().enumerate() {
            if let Some(source) = *source {
                let target = target as c_int;
                let ok = if source == target {
                    libc::fcntl(source, libc::F_SETFD, 0) == 0
                } else {
                    libc::dup2(source, target) == target
                };
                if !ok {
                    fail(Stage::Stdio);
                }
            }
        }
        if let Some(fd) = spec.keep
            && libc::fcntl(fd, libc::F_SETFD, 0) != 0
        {
            fail(Stage::Stdio);
        }
        if let Some(cwd) = spec.cwd
            && libc::chdir(cwd.as_ptr()) != 0
        {
            fail(Stage::Chdir);
        }
        if spec.new_session && libc::setsid() < 0 {
            fail(Stage::Session);
        }
        if !spec.share_table && !close_high_descriptors([spec.report.unwrap_or(-1), spec.keep.unwrap_or(-1)]) {
            fail(Stage::Descriptors);
        }
        for filter in spec.filters {
            if install_filter(filter).is_err() {
                fail(Stage::Seccomp);
            }
        }
        let envp = match spec.envp {
            Some(envp) => envp.as_ptr(),
            None => environ,
        };
        libc::execve(spec.program.as_ptr(), spec.argv.as_ptr(), envp);
        fail(Stage::Exec)
    }
}

/// Reads the child's failure report: `None` when `execve` succeeded (the pipe closed empty).
pub(crate) fn read_report(report: BorrowedFd<'_>) -> io::Result<Option<(Stage, io::Error)>> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(report, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    if got == 0 {
        return Ok(None);
    }
    let stage = u32::from_ne_bytes(buf[..4].try_into().expect("4 bytes"));
    let errno = i32::from_ne_bytes(buf[4..].try_into().expect("4 bytes"));
    Ok(Some(failure(stage, errno)))
}

/// A child's failure from its report, `stage` and `errno` as [`fail`] sent them.
fn failure(stage: u32, errno: i32) -> (Stage, io::Error) {
    (Stage::from_u32(stage).unwrap_or(Stage::Exec), io::Error::from_raw_os_error(errno))
}
