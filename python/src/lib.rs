//! `daemonic._native`: what daemonic's Python package needs from the Rust library.
//!
//! The package's start method forks its children from a server of its own (as CPython's
//! `forkserver` does), so a child exists before its member does: [`place`] makes an existing,
//! held process a member of the calling process's family, on either backend. The rest is the
//! family itself ([`ensure_family`]), the guardian hosted by the Python interpreter
//! ([`set_guardian_launcher`], [`guardian_main`]) and a daemon's no-fork filter for strict mode.
//!
//! No unsafe code here: the library's own `sys` layer does the system calls.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use daemonic::__internal::bindings;
use daemonic::{Command, ErrorKind, Family};
use pyo3::exceptions::{PyOSError, PyPermissionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

/// The family of this process, joined or created once.
static FAMILY: OnceLock<Family> = OnceLock::new();

/// daemonic's error as a Python exception: `ValueError` for bad input, `PermissionError` for a
/// daemon that may not have children, `OSError` for the system, else `RuntimeError`; the
/// message is daemonic's whole one, causes included.
fn to_py(e: daemonic::Error) -> PyErr {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::InvalidInput => PyValueError::new_err(msg),
        ErrorKind::DaemonChildren => PyPermissionError::new_err(msg),
        ErrorKind::Os => PyOSError::new_err(msg),
        _ => PyRuntimeError::new_err(msg),
    }
}

/// The family of the calling process: joined when the process is a member of one, else created
/// with the name `name` (the process becomes its main member and a guardian starts). Returns
/// the family's id.
#[pyfunction]
fn ensure_family(py: Python<'_>, name: &str) -> PyResult<String> {
    if let Some(f) = FAMILY.get() {
        return Ok(f.id().to_string());
    }
    let family = py.detach(|| Family::builder().name(name).open()).map_err(to_py)?;
    let family = FAMILY.get_or_init(|| family);
    Ok(family.id().to_string())
}

/// Where the calling process stands: `None` outside any family, else a dict with `family`
/// (the id), `name` (the member's), `daemon` and `cgroup`.
#[pyfunction]
fn position(py: Python<'_>) -> PyResult<Option<Py<pyo3::types::PyDict>>> {
    let info = daemonic::current_process().map_err(to_py)?;
    let Some(family) = info.family else { return Ok(None) };
    let d = pyo3::types::PyDict::new(py);
    d.set_item("family", family)?;
    d.set_item("name", info.name)?;
    d.set_item("daemon", info.daemon)?;
    d.set_item("cgroup", info.cgroup.display().to_string())?;
    Ok(Some(d.unbind()))
}

/// Makes the held process `pid` (forked, waiting for its work) a member of this process's
/// family: `kind` is `member`, `daemon` or `helper`. On error the process is killed first, and
/// nothing of the member remains. Returns the member's cgroup directory.
#[pyfunction]
#[pyo3(signature = (pid, name, kind, allow_children=false, stop_timeout=None))]
fn place(
    py: Python<'_>,
    pid: u32,
    name: &str,
    kind: &str,
    allow_children: bool,
    stop_timeout: Option<f64>,
) -> PyResult<String> {
    let family = FAMILY.get().ok_or_else(|| PyRuntimeError::new_err("place() before ensure_family()"))?;
    let mut cmd = Command::new(name);
    cmd.name(name).allow_children(allow_children);
    match kind {
        "member" => cmd.daemon(false),
        "daemon" => cmd.daemon(true),
        "helper" => cmd.helper(true),
        other => return Err(PyValueError::new_err(format!("unknown member kind {other:?}"))),
    };
    if let Some(secs) = stop_timeout {
        let t = Duration::try_from_secs_f64(secs)
            .map_err(|_| PyValueError::new_err(format!("invalid stop timeout {secs} s")))?;
        cmd.stop_timeout(t);
    }
    let pid_t = Pid::from_raw(pid as i32).ok_or_else(|| PyValueError::new_err(format!("invalid pid {pid}")))?;
    // On error: SIGKILL, and wait until it is gone. The process is held (it waits for its work),
    // so its PID is still its own; it is not ours to wait for (the server forked it): its pidfd
    // says when it has ended.
    let mut abandon = || {
        let Ok(pidfd) = pidfd_open(pid_t, PidfdFlags::empty()) else { return false };
        if pidfd_send_signal(&pidfd, Signal::KILL).is_err() {
            return false;
        }
        let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
        let timeout = rustix::event::Timespec { tv_sec: 5, tv_nsec: 0 };
        matches!(rustix::event::poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
    };
    let dir: PathBuf = py.detach(|| family.place(pid, &cmd, &mut abandon)).map_err(to_py)?;
    Ok(dir.display().to_string())
}

/// Installs a daemon's no-fork seccomp filter in the calling process (strict mode, C3).
#[pyfunction]
fn install_no_fork_filter() -> PyResult<()> {
    bindings::install_no_fork_filter().map_err(to_py)
}

/// Starts guardians as `program ARGS... FAMILY_DIR MAIN_DIR [BUS]`; that program calls
/// [`guardian_main`] with the last ones.
#[pyfunction]
fn set_guardian_launcher(program: PathBuf, args: Vec<OsString>) -> PyResult<()> {
    bindings::set_guardian_launcher(&program, &args).map_err(to_py)
}

/// The guardian's whole life, in this process: `args` are `FAMILY_DIR MAIN_DIR [BUS]`. Never
/// returns.
#[pyfunction]
fn guardian_main(args: Vec<OsString>) -> PyResult<()> {
    let mut argv = vec![OsString::from("daemonic-guardian")];
    argv.extend(args);
    bindings::guardian_main(argv)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ensure_family, m)?)?;
    m.add_function(wrap_pyfunction!(position, m)?)?;
    m.add_function(wrap_pyfunction!(place, m)?)?;
    m.add_function(wrap_pyfunction!(install_no_fork_filter, m)?)?;
    m.add_function(wrap_pyfunction!(set_guardian_launcher, m)?)?;
    m.add_function(wrap_pyfunction!(guardian_main, m)?)?;
    Ok(())
}
