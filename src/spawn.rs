//! Starting one process in one cgroup, race-free.
//!
//! `clone3(CLONE_INTO_CGROUP | CLONE_PIDFD)` (Linux 5.7) puts the child into its cgroup before
//! it runs and hands back a pidfd in the same call. Where clone3 is refused (an old kernel, or a
//! container's seccomp policy answering ENOSYS or EPERM) the fallback is `clone(CLONE_PIDFD)`
//! followed by a write of `0` to the target's `cgroup.procs` in the child, before it executes
//! anything of the program; the refusal is remembered for the life of the process. A failure in
//! the child (joining the cgroup, the seccomp filter, `execve`) comes back over a close-on-exec
//! pipe, as std does, so a bad program is a clean error and no half-started member remains.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{WaitId, WaitIdOptions, waitid};

use crate::cgroup;
use crate::command::{Placement, Prepared, Stdio};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, ChildSpec, Stage};

/// Set once clone3 into a cgroup was refused; later spawns go straight to the fallback.
static CLONE3_REFUSED: AtomicBool = AtomicBool::new(false);

/// A process just started.
pub(crate) struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
}

/// A started process and, when its setup failed, the step and the reason.
type Attempt = (i32, OwnedFd, Option<(Stage, io::Error)>);

/// What to start and how.
pub(crate) struct Request<'a> {
    pub prepared: &'a Prepared,
    pub stdio: [&'a Stdio; 3],
    /// The cgroup directory to start in; `None` stays in the caller's cgroup.
    pub cgroup: Option<&'a Path>,
    pub filters: &'a [Vec<libc::sock_filter>],
    pub placement: Placement,
    pub new_session: bool,
}

/// Starts `req`. On error nothing runs any more (a child that failed was reaped).
pub(crate) fn spawn(req: &Request<'_>) -> Result<Spawned> {
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

    let attempt = |placement: sys::Placement<'_>| -> Result<Attempt> {
        let (report_r, report_w) = pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::os("create a pipe", e.into()))?;
        let spec = ChildSpec {
            program: &req.prepared.program,
            argv: &argv,
            envp: envp.as_deref(),
            stdio: child_fds,
            cwd: req.prepared.cwd.as_deref(),
            filters: req.filters,
            new_session: req.new_session,
            report: report_w.as_raw_fd(),
        };
        let (pid, pidfd) = sys::spawn(&spec, placement).map_err(|e| Error::os("create a process", e))?;
        drop(report_w);
        let failure = sys::read_report(report_r.as_fd()).map_err(|e| Error::os("read the child's start report", e))?;
        if failure.is_some() {
            // The child exits at once after reporting; reap it so nothing is left.
            let _ = waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
        }
        Ok((pid, pidfd, failure))
    };

    let result = match (&dir_fd, use_clone3) {
        (None, _) => attempt(sys::Placement::Inherit),
        (Some(fd), true) => match attempt(sys::Placement::Clone3(fd.as_fd())) {
            Err(e) if req.placement == Placement::Auto && clone3_refused(&e) => {
                CLONE3_REFUSED.store(true, Ordering::Relaxed);
                let dir = req.cgroup.expect("a cgroup was given");
                procs_fd = Some(cgroup::open_procs(dir)?);
                attempt(sys::Placement::Fork(procs_fd.as_ref().expect("just opened").as_fd()))
            }
            other => other,
        },
        (Some(_), false) => {
            let dir = req.cgroup.expect("a cgroup was given");
            procs_fd = Some(cgroup::open_procs(dir)?);
            attempt(sys::Placement::Fork(procs_fd.as_ref().expect("just opened").as_fd()))
        }
    };
    drop(procs_fd);
    drop(keep);
    let (pid, pidfd, failure) = result.map_err(|e| match req.cgroup {
        Some(dir) => Error::new(e.kind(), format!("{e} (starting {} in {})", program_name(req), dir.display())),
        None => e,
    })?;
    if let Some((stage, err)) = failure {
        return Err(child_error(req, stage, err));
    }
    let [stdin, stdout, stderr] = parent_ends;
    Ok(Spawned { pid, pidfd, stdin, stdout, stderr })
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

fn child_error(req: &Request<'_>, stage: Stage, err: io::Error) -> Error {
    let program = program_name(req);
    match stage {
        Stage::Exec => {
            let kind = match err.raw_os_error() {
                Some(libc::ENOENT) => ErrorKind::ProgramNotFound,
                Some(libc::EACCES | libc::ENOEXEC | libc::EISDIR) => ErrorKind::ProgramNotExecutable,
                _ => ErrorKind::Os,
            };
            Error::io("run program", Path::new(&program), err).with_kind(kind)
        }
        Stage::JoinCgroup => Error::io(
            &format!("move the new process of {program} into the cgroup"),
            req.cgroup.unwrap_or(Path::new("?")),
            err,
        ),
        Stage::Chdir => Error::os(
            format!(
                "change to directory {} for {program}",
                req.prepared.cwd.as_deref().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default()
            ),
            err,
        ),
        Stage::Seccomp => Error::os(format!("install the no-fork seccomp filter for {program}"), err),
        Stage::Stdio => Error::os(format!("set up standard streams for {program}"), err),
        Stage::Signals => Error::os(format!("reset signals for {program}"), err),
        Stage::Session => Error::os(format!("start a new session for {program}"), err),
    }
}
