//! One error type for the whole crate.
//!
//! Every error says what failed, on what, and why: the operation and its target are in the
//! message, the operating system's reason is the source. The CLI prints `error: {error}` and
//! maps [`ErrorKind`] to its exit code.

use std::fmt;
use std::io;
use std::path::Path;

/// The words CPython uses when a daemonic process tries to start a child.
pub const DAEMON_CHILDREN: &str = "daemonic processes are not allowed to have children";

/// What kind of failure an [`Error`] is, for callers that want to react to some of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A daemonic process tried to spawn a child (C3).
    DaemonChildren,
    /// A name, path or value given by the caller is not acceptable.
    InvalidInput,
    /// The program to run does not exist.
    ProgramNotFound,
    /// The program exists but could not be executed (permissions, format).
    ProgramNotExecutable,
    /// The calling process is not a member of any family.
    NotInFamily,
    /// No family matches a name or id.
    NoSuchFamily,
    /// The family belongs to another user: the caller may not kill it or see its details.
    PermissionDenied,
    /// The host lacks something daemonic needs (cgroup2, a writable cgroup, a kernel feature).
    Unsupported,
    /// The chosen backend is not available (not built, or its manager does not answer).
    BackendUnavailable,
    /// Something of that name exists already and is in use.
    AlreadyExists,
    /// A Rust target running in its own process panicked; the message is the panic's.
    TargetPanicked,
    /// A Rust target's process ended without returning a value, or could not run it.
    TargetFailed,
    /// An operating-system call failed.
    Os,
}

/// A failure of a daemonic operation.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Cause>,
}

/// What an [`Error`] was caused by: an OS error, or another library's error (D-Bus, seccomp
/// compilation, JSON), kept whole so that `source()` reaches it.
#[derive(Debug)]
enum Cause {
    Io(io::Error),
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// `Result` with daemonic's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a complete message and no OS cause.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }

    /// The error a daemonic process gets when it tries to spawn.
    pub fn daemon_children() -> Self {
        Error::new(ErrorKind::DaemonChildren, DAEMON_CHILDREN)
    }

    /// "failed to {op} {path}: {source}".
    pub fn io(op: &str, path: &Path, source: io::Error) -> Self {
        Error {
            kind: ErrorKind::Os,
            message: format!("failed to {op} {}", path.display()),
            source: Some(Cause::Io(source)),
        }
    }

    /// "failed to {what}: {source}", for calls that have no path.
    pub fn os(what: impl Into<String>, source: io::Error) -> Self {
        Error { kind: ErrorKind::Os, message: format!("failed to {}", what.into()), source: Some(Cause::Io(source)) }
    }

    /// "{message}: {cause}", keeping `cause` (another library's error) as the source.
    pub(crate) fn caused_by(
        kind: ErrorKind,
        message: impl Into<String>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error { kind, message: message.into(), source: Some(Cause::Other(cause.into())) }
    }

    /// Puts `what` (what was being done) before the message, keeping the kind and the cause.
    pub(crate) fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// Adds `detail` in parentheses after the message (before the cause), keeping the kind and
    /// the cause.
    pub(crate) fn detail(mut self, detail: impl std::fmt::Display) -> Self {
        self.message = format!("{} ({detail})", self.message);
        self
    }

    /// Replaces the kind, keeping the message and the cause.
    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The OS error behind this one, if any.
    pub fn os_error(&self) -> Option<&io::Error> {
        match &self.source {
            Some(Cause::Io(e)) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match &self.source {
            Some(Cause::Io(e)) => write!(f, ": {}", describe(e))?,
            Some(Cause::Other(e)) => write!(f, ": {e}")?,
            None => {}
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            Some(Cause::Io(e)) => Some(e),
            Some(Cause::Other(e)) => Some(e.as_ref()),
            None => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = e.os_error().map_or(io::ErrorKind::Other, io::Error::kind);
        io::Error::new(kind, e.to_string())
    }
}

/// `io::Error`'s Display adds " (os error N)"; keep the words, which is what people read.
fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_operation_target_and_reason() {
        let e = Error::io(
            "write \"1\" to",
            Path::new("/sys/fs/cgroup/x/cgroup.kill"),
            io::Error::from_raw_os_error(libc::EACCES),
        );
        assert_eq!(e.to_string(), "failed to write \"1\" to /sys/fs/cgroup/x/cgroup.kill: Permission denied");
        assert_eq!(e.kind(), ErrorKind::Os);
    }

    #[test]
    fn context_and_detail_keep_the_cause() {
        let e = Error::os("create a process", io::Error::from_raw_os_error(libc::EAGAIN))
            .detail("starting sleep in /sys/fs/cgroup/f")
            .context("failed to start the guardian of f");
        assert_eq!(
            e.to_string(),
            "failed to start the guardian of f: failed to create a process (starting sleep in /sys/fs/cgroup/f): \
             Resource temporarily unavailable"
        );
        assert_eq!(e.os_error().and_then(io::Error::raw_os_error), Some(libc::EAGAIN));
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn another_librarys_error_is_the_source() {
        let cause = io::Error::other("the bus went away");
        let e = Error::caused_by(ErrorKind::BackendUnavailable, "cannot reach the manager", Box::new(cause));
        assert_eq!(e.to_string(), "cannot reach the manager: the bus went away");
        assert!(e.os_error().is_none());
        assert_eq!(std::error::Error::source(&e).map(ToString::to_string).as_deref(), Some("the bus went away"));
    }

    #[test]
    fn daemon_children_uses_cpython_words() {
        assert_eq!(Error::daemon_children().to_string(), "daemonic processes are not allowed to have children");
    }
}
