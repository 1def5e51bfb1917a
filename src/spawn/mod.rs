//! **Layer `spawn`**, above `cgroup`: what to start ([`command`]: `Command`, its placement and
//! stdio), the no-fork policy ([`seccomp`]) and starting one process in one cgroup (this file).
//!
//! Starting one process in one cgroup, race-free.
//!
//! `clone3(CLONE_INTO_CGROUP | CLONE_PIDFD)` (Linux 5.7) puts the child into its cgroup before
//! it runs and hands back a pidfd in the same call. Where clone3 is refused (an old kernel, or a
//! container's seccomp policy answering ENOSYS or EPERM) the fallback is `clone(CLONE_PIDFD)`
//! followed by a write of `0` to the target's `cgroup.procs` in the child, before it executes
//! anything of the program; the refusal is remembered for the life of the process. A failure in
//! the child (joining the cgroup, the seccomp filter, `execve`) comes back over a close-on-exec
//! pipe, as std does, or, for a child that shares the caller's memory until `execve` (the
//! common case, see [`sys::ChildSpec::report`]), in that memory; so a bad program is a clean
//! error and no half-started member remains.

pub(crate) mod command;
pub(crate) mod seccomp;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{WaitId, WaitIdOptions, WaitIdStatus, waitid};

use crate::cgroup;
use crate::error::{Error, ErrorKind, Result};
use crate::spawn::command::{Placement, Prepared, Stdio};
use crate::sys::{self, ChildSpec, Stage};

/// Set once clone3 into a cgroup was refused; later spawns go straight to the fallback.
static CLONE3_REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether a child may share the descriptor table until it has copied the low part
/// ([`ChildSpec::share_table`]); asked once.
fn can_share_table() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(sys::close_range_works)
}

/// A process just started.
pub(crate) struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
}

/// A created process and how to learn how its start went.
type Attempt = (i32, OwnedFd, Report);

/// How a started process's start went, or where to read it.
enum Report {
    /// The read end of the report pipe: end of file once the child has executed its program.
    Pipe(OwnedFd),
    /// Known at the clone: `None` when the child executed its program.
    Known(Option<(Stage, io::Error)>),
}

/// What to start and how.
#[derive(Clone, Copy)]
pub(crate) struct Request<'a> {
    pub prepared: &'a Prepared,
    pub stdio: [&'a Stdio; 3],
    /// The cgroup directory to start in; `None` stays in the caller's cgroup.
    pub cgroup: Option<&'a Path>,
    pub filters: &'a [Vec<libc::sock_filter>],
    pub placement: Placement,
    pub new_session: bool,
    /// A close-on-exec descriptor (3 or above) the program inherits under the same number.
    pub keep: Option<RawFd>,
    /// Start in a PID namespace of its own (see [`ChildSpec::contain`]).
    pub contain: bool,
}

impl<'a> Request<'a> {
    /// The one way to make a request: `prepared` with `stdio`, in the caller's cgroup, no
    /// filter, the automatic placement, the caller's session, nothing kept, not contained. A
    /// caller sets what differs with struct update syntax (`Request { cgroup, ..Request::new(…) }`).
    pub(crate) fn new(prepared: &'a Prepared, stdio: [&'a Stdio; 3]) -> Request<'a> {
        Request {
            prepared,
            stdio,
            cgroup: None,
            filters: &[],
            placement: Placement::Auto,
            new_session: false,
            keep: None,
            contain: false,
        }
    }

    /// A request with all three standard streams `stdio`.
    pub(crate) fn with_all(prepared: &'a Prepared, stdio: &'a Stdio) -> Request<'a> {
        Request::new(prepared, [stdio, stdio, stdio])
    }
}

/// Starts `req`. On error nothing runs any more (a child that failed was reaped).
pub(crate) fn spawn(req: &Request<'_>) -> Result<Spawned> {
    start(req, false)?.release()
}

/// A process created by [`start`] whose start report has not been read yet; with a gate, it
/// is held before running anything until [`Started::release`].
pub(crate) struct Started {
    pub pid: i32,
    pub pidfd: OwnedFd,
    report: Report,
    gate: Option<OwnedFd>,
    ends: [Option<File>; 3],
    program: String,
    cgroup: Option<std::path::PathBuf>,
    cwd: Option<String>,
}

impl Started {
    /// Lets a gated child go on, then waits until it has executed its program (or failed to).
    pub(crate) fn release(mut self) -> Result<Spawned> {
        if let Some(gate) = self.gate.take() {
            rustix::io::write(&gate, &[1]).map_err(|e| Error::os(format!("release {}", self.program), e.into()))?;
        }
        let failure = match self.report {
            Report::Pipe(pipe) => {
                sys::read_report(pipe.as_fd()).map_err(|e| Error::os("read the child's start report", e))?
            }
            Report::Known(failure) => failure,
        };
        if let Some((stage, err)) = failure {
            // The child exits at once after reporting; reap it so nothing is left.
            let _ = wait_pidfd(self.pidfd.as_fd(), true);
            return Err(child_error(&self.program, self.cgroup.as_deref(), self.cwd.as_deref(), stage, err));
        }
        let [stdin, stdout, stderr] = self.ends;
        Ok(Spawned { pid: self.pid, pidfd: self.pidfd, stdin, stdout, stderr })
    }

    /// Ends a gated child before it ran anything, and reaps it.
    pub(crate) fn abort(mut self) {
        self.gate = None; // end of file at the gate: the child exits
        let _ = wait_pidfd(self.pidfd.as_fd(), true);
    }
}

/// The one wait on a child's pidfd: reaps the child once it has ended and returns its status;
/// with `block`, waits until it ends, else returns `None` while it runs. Retries on `EINTR`.
pub(crate) fn wait_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<WaitIdStatus>> {
    let options = if block { WaitIdOptions::EXITED } else { WaitIdOptions::EXITED | WaitIdOptions::NOHANG };
    loop {
        match waitid(WaitId::PidFd(pidfd), options) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// Waits for a child that has a pidfd to end and reaps it; `what` names it in the error. A
/// child reaped already (`ECHILD`) is done.
pub(crate) fn reap(pidfd: &impl AsFd, what: &str) -> Result<()> {
    match wait_pidfd(pidfd.as_fd(), true) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(()),
        Err(e) => Err(Error::os(format!("wait for {what}"), e)),
    }
}

/// A process that runs nothing, held at a gate in the caller's cgroup until [`Started::abort`]:
/// it keeps that cgroup populated while the caller is away from it (systemd collects an empty
/// scope). It ends by itself when the caller dies (the gate's write end closes).
pub(crate) fn hold() -> Result<Started> {
    let prepared = Prepared {
        program: c"/proc/self/exe".to_owned(),
        argv: vec![c"daemonic-holder".to_owned()],
        envp: Some(Vec::new()),
        cwd: None,
    };
    start(&Request::with_all(&prepared, &Stdio::Null), true)
}

/// Creates the process of `req`, held at a gate when `gated`, and returns before it executes.
pub(crate) fn start(req: &Request<'_>, gated: bool) -> Result<Started> {
    let mut keep: Vec<OwnedFd> = Vec::new();
    let mut parent_ends: [Option<File>; 3] = [None, None, None];
    let mut child_fds: [Option<RawFd>; 3] = [None, None, None];
    for (i, stdio) in req.stdio.iter().enumerate() {
        child_fds[i] = match stdio {
            Stdio::Inherit => None,
            Stdio::Null => {
                let null = File::options()
                    .read(i == 0)
                    .write(i != 0)
                    .open("/dev/null")
                    .map_err(|e| Error::io("open", Path::new("/dev/null"), e))?;
                let fd: OwnedFd = null.into();
                let raw = fd.as_raw_fd();
                keep.push(fd);
                Some(raw)
            }
            Stdio::Piped => {
                let (r, w) = pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::os("create a pipe", e.into()))?;
                let (ours, theirs) = if i == 0 { (w, r) } else { (r, w) };
                parent_ends[i] = Some(File::from(ours));
                let raw = theirs.as_raw_fd();
                keep.push(theirs);
                Some(raw)
            }
            Stdio::Fd(fd) => Some(fd.as_raw_fd()),
        };
    }

    let argv: Vec<*const libc::c_char> =
        req.prepared.argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp: Option<Vec<*const libc::c_char>> = req
        .prepared
        .envp
        .as_ref()
        .map(|envp| envp.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect());

    let dir_fd = req.cgroup.map(cgroup::open_dir).transpose()?;
    let use_clone3 = match req.placement {
        Placement::Clone3 => true,
        Placement::Fork => false,
        Placement::Auto => !CLONE3_REFUSED.load(Ordering::Relaxed),
    };
    let mut procs_fd = None;

    let gate = if gated {
        Some(pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::os("create a pipe", e.into()))?)
    } else {
        None
    };
    let attempt = |placement: sys::CgroupEntry<'_>| -> Result<Attempt> {
        let low = |fd: Option<RawFd>| fd.is_none_or(|fd| fd < sys::HIGH_DESCRIPTORS);
        let used = [req.keep, placement.procs()];
        let share_table =
            gate.is_none() && !req.contain && used.into_iter().chain(child_fds).all(low) && can_share_table();
        // A child that shares the table may share the memory too, and then needs no pipe.
        let shared_memory = share_table && sys::SHARED_MEMORY && matches!(placement, sys::CgroupEntry::Clone3(_));
        let pipe = if shared_memory {
            None
        } else {
            Some(pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::os("create a pipe", e.into()))?)
        };
        // The child uses the write end: with a shared table it must be low too.
        let share_table = share_table && low(pipe.as_ref().map(|(_, w)| w.as_raw_fd()));
        let spec = ChildSpec {
            program: &req.prepared.program,
            argv: &argv,
            envp: envp.as_deref(),
            stdio: child_fds,
            cwd: req.prepared.cwd.as_deref(),
            filters: req.filters,
            new_session: req.new_session,
            report: pipe.as_ref().map(|(_, w)| w.as_raw_fd()),
            gate: gate.as_ref().map(|(r, w)| (r.as_raw_fd(), w.as_raw_fd())),
            keep: req.keep,
            contain: req.contain,
            share_table,
        };
        let (pid, pidfd, start) = sys::clone_child(&spec, placement).map_err(|e| Error::os("create a process", e))?;
        let report = match (start, pipe) {
            (sys::Start::Pending, Some((r, _))) => Report::Pipe(r),
            (sys::Start::Failed(stage, err), _) => Report::Known(Some((stage, err))),
            _ => Report::Known(None),
        };
        // Kept out of the part of the table that children copy.
        Ok((pid, sys::raise_descriptor(pidfd), report))
    };

    let result = match (&dir_fd, use_clone3) {
        (None, _) => attempt(sys::CgroupEntry::Inherit),
        (Some(fd), true) => match attempt(sys::CgroupEntry::Clone3(fd.as_fd())) {
            Err(e) if req.placement == Placement::Auto && clone3_refused(&e) => {
                CLONE3_REFUSED.store(true, Ordering::Relaxed);
                let dir = req.cgroup.expect("a cgroup was given");
                procs_fd = Some(cgroup::open_procs(dir)?);
                attempt(sys::CgroupEntry::Fork(procs_fd.as_ref().expect("just opened").as_fd()))
            }
            other => other,
        },
        (Some(_), false) => {
            let dir = req.cgroup.expect("a cgroup was given");
            procs_fd = Some(cgroup::open_procs(dir)?);
            attempt(sys::CgroupEntry::Fork(procs_fd.as_ref().expect("just opened").as_fd()))
        }
    };
    drop(procs_fd);
    drop(keep);
    let (pid, pidfd, report) = result.map_err(|e| match req.cgroup {
        Some(dir) => e.detail(format!("starting {} in {}", program_name(req), dir.display())),
        None => e,
    })?;
    Ok(Started {
        pid,
        pidfd,
        report,
        gate: gate.map(|(_, w)| w),
        ends: parent_ends,
        program: program_name(req),
        cgroup: req.cgroup.map(Path::to_path_buf),
        cwd: req.prepared.cwd.as_deref().map(|c| c.to_string_lossy().into_owned()),
    })
}

fn program_name(req: &Request<'_>) -> String {
    req.prepared.program.to_string_lossy().into_owned()
}

/// Errors of clone3 that mean "not here", not "this request is wrong".
fn clone3_refused(e: &Error) -> bool {
    e.os_error().and_then(io::Error::raw_os_error).is_some_and(|errno| {
        matches!(errno, libc::ENOSYS | libc::EPERM | libc::E2BIG | libc::EINVAL | libc::EOPNOTSUPP)
    })
}

/// The error for a failed `execve` of `program`: not found, not executable, or another reason.
pub(crate) fn exec_error(program: &Path, err: io::Error) -> Error {
    let kind = match err.raw_os_error() {
        Some(libc::ENOENT) => ErrorKind::ProgramNotFound,
        Some(libc::EACCES | libc::ENOEXEC | libc::EISDIR) => ErrorKind::ProgramNotExecutable,
        _ => ErrorKind::Os,
    };
    Error::io("run program", program, err).with_kind(kind)
}

fn child_error(program: &str, cgroup: Option<&Path>, cwd: Option<&str>, stage: Stage, err: io::Error) -> Error {
    match stage {
        Stage::Exec => exec_error(Path::new(program), err),
        Stage::JoinCgroup => Error::io(
            &format!("move the new process of {program} into the cgroup"),
            cgroup.unwrap_or(Path::new("?")),
            err,
        ),
        Stage::Chdir => Error::os(format!("change to directory {} for {program}", cwd.unwrap_or("?")), err),
        Stage::Gate => Error::os(format!("start {program}: it was not released"), err),
        Stage::Contain => Error::os(format!("start {program} in a PID namespace of its own"), err),
        Stage::Seccomp => Error::os(format!("install the no-fork seccomp filter for {program}"), err),
        Stage::Stdio => Error::os(format!("set up standard streams for {program}"), err),
        Stage::Signals => Error::os(format!("reset signals for {program}"), err),
        Stage::Descriptors => Error::os(format!("set up the descriptor table of {program}"), err),
        Stage::Session => Error::os(format!("start a new session for {program}"), err),
    }
}
