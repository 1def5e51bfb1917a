//! The builder for a new member, shaped like [`std::process::Command`].
//!
//! Besides std's verbs it carries what a member is: its `name`, its `daemon` flag (unset means
//! "inherit from the calling process", C1), `allow_children` and `stop_timeout`. The flag lives
//! only here: the running [`Member`](crate::Member) has a getter and no setter, so a member's
//! kind cannot change after spawn.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cgroup::layout;
use crate::error::{Error, ErrorKind, Result};

/// Where a member's standard stream comes from or goes to.
#[derive(Debug, Default)]
pub enum Stdio {
    /// The parent's stream.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A new pipe; the other end is on the [`Member`](crate::Member).
    Piped,
    /// This descriptor.
    Fd(OwnedFd),
}

impl From<File> for Stdio {
    fn from(f: File) -> Stdio {
        Stdio::Fd(f.into())
    }
}

impl From<OwnedFd> for Stdio {
    fn from(fd: OwnedFd) -> Stdio {
        Stdio::Fd(fd)
    }
}

/// How the child is put into its cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// `clone3(CLONE_INTO_CGROUP)`, falling back to [`Placement::Fork`] when the kernel or a
    /// seccomp policy refuses clone3.
    #[default]
    Auto,
    /// Always `clone3(CLONE_INTO_CGROUP)`.
    Clone3,
    /// `clone`, then the child moves itself by writing `cgroup.procs` before it executes.
    Fork,
}

impl Placement {
    /// The placement named by `DAEMONIC_PLACEMENT` (`auto`, `clone3`, `fork`), else `Auto`.
    pub fn from_env() -> Result<Placement> {
        match std::env::var("DAEMONIC_PLACEMENT").as_deref() {
            Err(_) | Ok("") | Ok("auto") => Ok(Placement::Auto),
            Ok("clone3") => Ok(Placement::Clone3),
            Ok("fork") => Ok(Placement::Fork),
            Ok(other) => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("invalid DAEMONIC_PLACEMENT {other:?}: expected auto, clone3 or fork"),
            )),
        }
    }
}

/// A member to be spawned: program, arguments, environment, directory, standard streams, and
/// daemonic's own settings.
///
/// Besides its standard streams, the program inherits the caller's descriptors numbered below
/// 1024 that are not close-on-exec (as std's `Command` passes them all). Descriptors from 1024
/// up are never inherited: daemonic keeps each member's pidfd there, so that starting a member
/// does not copy and close the pidfds of all the others (a family of 5000 costs the same per
/// spawn as a family of 10). A standard stream may come from any descriptor.
///
/// ```
/// use daemonic::Command;
/// use std::time::Duration;
///
/// let mut logger = Command::new("logger-daemon");
/// logger.arg("--verbose").name("logger").daemon(true).stop_timeout(Duration::from_secs(2));
/// assert_eq!(logger.get_daemon(), Some(true));
/// ```
#[derive(Debug)]
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    env: BTreeMap<OsString, Option<OsString>>,
    env_clear: bool,
    cwd: Option<PathBuf>,
    pub(crate) stdin: Stdio,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
    name: Option<String>,
    daemon: Option<bool>,
    helper: bool,
    allow_children: bool,
    contain: bool,
    stop_timeout: Option<Duration>,
    placement: Placement,
    properties: Vec<String>,
    /// `argv[0]` when it is not the program (a Rust target's process shows its program's name).
    arg0: Option<OsString>,
    /// A descriptor the program inherits (a Rust target's channel); see [`Request::keep`](crate::spawn::Request).
    keep: Option<OwnedFd>,
}

impl Command {
    /// A member that will run `program`, found on `PATH` when it has no `/`.
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: BTreeMap::new(),
            env_clear: false,
            cwd: None,
            stdin: Stdio::Inherit,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            name: None,
            daemon: None,
            helper: false,
            allow_children: false,
            contain: false,
            stop_timeout: None,
            placement: Placement::Auto,
            properties: Vec::new(),
            arg0: None,
            keep: None,
        }
    }

    /// Adds a resource property of the member, in the syntax of `systemd.resource-control(5)` as
    /// `systemd-run -p` takes it: `TasksMax=` (a count, a percentage or `infinity`),
    /// `MemoryMax=` (bytes with `K`, `M`, `G` or `T`, a percentage or `infinity`), `CPUWeight=`
    /// (1 to 10000). It is set on its unit (systemd), or in
    /// its own cgroup's `pids.max`, `memory.max`, `cpu.weight` (cgroupfs, where the family's base
    /// hands the controller down; a non-daemonic member's parent must not hold processes). The
    /// value is checked when the member is spawned, before anything is created.
    pub fn property(&mut self, assignment: impl Into<String>) -> &mut Command {
        self.properties.push(assignment.into());
        self
    }

    /// The resource properties, checked.
    pub(crate) fn checked_properties(&self) -> Result<Vec<crate::cgroup::properties::Property>> {
        self.properties.iter().map(|p| crate::cgroup::properties::parse(p)).collect()
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the member.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.env.insert(key.as_ref().to_owned(), Some(value.as_ref().to_owned()));
        self
    }

    /// Sets several environment variables.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// Removes an environment variable from what the member inherits.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.env.insert(key.as_ref().to_owned(), None);
        self
    }

    /// Starts the member with an empty environment plus what [`Command::env`] adds.
    pub fn env_clear(&mut self) -> &mut Command {
        self.env.clear();
        self.env_clear = true;
        self
    }

    /// The member's working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// The member's standard input.
    pub fn stdin(&mut self, s: impl Into<Stdio>) -> &mut Command {
        self.stdin = s.into();
        self
    }

    /// The member's standard output.
    pub fn stdout(&mut self, s: impl Into<Stdio>) -> &mut Command {
        self.stdout = s.into();
        self
    }

    /// The member's standard error.
    pub fn stderr(&mut self, s: impl Into<Stdio>) -> &mut Command {
        self.stderr = s.into();
        self
    }

    /// The member's name (default: the program's file name): 1 to 64 of `A-Z a-z 0-9 _ . : @ + -`,
    /// not starting with `.` or `-`, without `..` (anything else is refused at spawn).
    pub fn name(&mut self, name: impl Into<String>) -> &mut Command {
        self.name = Some(name.into());
        self
    }

    /// Whether the member is daemonic. Unset, it inherits the calling process's flag.
    pub fn daemon(&mut self, daemon: bool) -> &mut Command {
        self.daemon = Some(daemon);
        self
    }

    /// Makes the member a *helper* of the calling process: a server or a resource tracker that
    /// the caller's children talk to. A helper is not part of the caller's live part (nothing
    /// waits for it: a family does not stay alive because a tracker still waits for its pipe),
    /// and it is not a daemon (it may have children). When the caller and its non-daemonic
    /// descendants have ended, the caller's daemons are killed first; once they are gone, the
    /// helpers get SIGTERM, then SIGKILL after their stop timeout (1 s unless set), so that a
    /// helper can still clean up after the daemons. A member cannot be a helper and a daemon.
    pub fn helper(&mut self, helper: bool) -> &mut Command {
        self.helper = helper;
        self
    }

    /// Lets a daemonic member have children (no seccomp filter). Its descendants stay in its
    /// cgroup and die with it.
    pub fn allow_children(&mut self, allow: bool) -> &mut Command {
        self.allow_children = allow;
        self
    }

    /// Runs the member in a PID namespace of its own, so that nothing it starts can outlive it:
    /// when its program ends, or is killed with its family, the kernel kills every process of
    /// the namespace, also one that moved itself to another cgroup (which root may always do,
    /// and which `cgroup.kill` of the member's cgroup then cannot reach).
    ///
    /// The member's PID is then that of a small init (`daemonic-init` in `ps`) that forwards
    /// every signal to the program and reaps; the program sees itself as PID 2 and its parent
    /// as PID 1, and a program killed by signal N ends the member with exit code 128 + N (an
    /// init cannot die by its own signal). Needs `CAP_SYS_ADMIN` (root). For members that may
    /// have children: non-daemonic ones, or daemons with [`Command::allow_children`].
    pub fn contain(&mut self, contain: bool) -> &mut Command {
        self.contain = contain;
        self
    }

    /// For a daemonic member: when its family ends, SIGTERM first and SIGKILL after `timeout`
    /// instead of an immediate SIGKILL. Overrides the family's default. For a helper: how long
    /// it has after SIGTERM (1 s unless set).
    pub fn stop_timeout(&mut self, timeout: Duration) -> &mut Command {
        self.stop_timeout = Some(timeout);
        self
    }

    /// How the child is placed into its cgroup (mostly for tests of the fallback).
    pub fn placement(&mut self, placement: Placement) -> &mut Command {
        self.placement = placement;
        self
    }

    /// Sets `argv[0]`, which is the program by default.
    pub(crate) fn arg0(&mut self, arg0: impl AsRef<OsStr>) -> &mut Command {
        self.arg0 = Some(arg0.as_ref().to_owned());
        self
    }

    /// Passes `fd` (close-on-exec, numbered 3 or above) to the program under the same number.
    pub(crate) fn keep_fd(&mut self, fd: OwnedFd) -> &mut Command {
        self.keep = Some(fd);
        self
    }

    /// The number of the descriptor passed with [`Command::keep_fd`].
    pub(crate) fn inherited_fd(&self) -> Option<std::os::fd::RawFd> {
        self.keep.as_ref().map(std::os::fd::AsRawFd::as_raw_fd)
    }

    /// The program.
    pub fn get_program(&self) -> &OsStr {
        &self.program
    }

    /// The arguments.
    pub fn get_args(&self) -> impl Iterator<Item = &OsStr> {
        self.args.iter().map(OsString::as_os_str)
    }

    /// The daemon flag, `None` when inherited.
    pub fn get_daemon(&self) -> Option<bool> {
        self.daemon
    }

    /// Whether the member is a helper of the calling process.
    pub fn get_helper(&self) -> bool {
        self.helper
    }

    /// Whether a daemonic member may have children.
    pub fn get_allow_children(&self) -> bool {
        self.allow_children
    }

    /// Whether the member runs in a PID namespace of its own.
    pub fn get_contain(&self) -> bool {
        self.contain
    }

    /// The stop timeout, if set.
    pub fn get_stop_timeout(&self) -> Option<Duration> {
        self.stop_timeout
    }

    /// The placement.
    pub fn get_placement(&self) -> Placement {
        self.placement
    }

    /// The member's name: the one given, else the program's file name made into a valid name.
    pub fn effective_name(&self) -> Result<String> {
        match &self.name {
            Some(name) => {
                layout::validate_name("member", name)?;
                Ok(name.clone())
            }
            None => Ok(default_name(&self.program)),
        }
    }

    /// The environment the member will get.
    pub(crate) fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut out: BTreeMap<OsString, OsString> =
            if self.env_clear { BTreeMap::new() } else { std::env::vars_os().collect() };
        for (k, v) in &self.env {
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        out.into_iter().collect()
    }

    /// Everything `execve` needs, checked before any cgroup is created.
    pub(crate) fn prepare(&self) -> Result<Prepared> {
        // An unchanged environment is passed as it is (`environ`), without copying it per spawn.
        let inherit = !self.env_clear && self.env.is_empty();
        let env = if inherit { Vec::new() } else { self.environment() };
        let path_var = if inherit {
            std::env::var_os("PATH")
        } else {
            env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone())
        };
        let program = resolve_program(&self.program, path_var.as_deref())?;
        let cstr = |s: &OsStr, what: &str| {
            CString::new(s.as_bytes()).map_err(|_| {
                Error::new(ErrorKind::InvalidInput, format!("{what} {:?} contains a NUL byte", s.to_string_lossy()))
            })
        };
        let argv = std::iter::once(self.arg0.as_deref().unwrap_or(&self.program))
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|a| cstr(a, "argument"))
            .collect::<Result<Vec<_>>>()?;
        let envp = if inherit {
            None
        } else {
            let pairs = env.iter().map(|(k, v)| {
                let mut kv = k.clone();
                kv.push("=");
                kv.push(v);
                cstr(&kv, "environment entry")
            });
            Some(pairs.collect::<Result<Vec<_>>>()?)
        };
        let cwd = self.cwd.as_deref().map(|d| cstr(d.as_os_str(), "directory")).transpose()?;
        Ok(Prepared { program: cstr(program.as_os_str(), "program")?, argv, envp, cwd })
    }
}

/// The C strings of a prepared command.
pub(crate) struct Prepared {
    pub program: CString,
    pub argv: Vec<CString>,
    /// The environment; `None` passes the process's own.
    pub envp: Option<Vec<CString>>,
    pub cwd: Option<CString>,
}

/// A valid member name from a program path: its file name, with other characters replaced.
pub(crate) fn default_name(program: &OsStr) -> String {
    let base = Path::new(program).file_name().unwrap_or(program).to_string_lossy();
    let mut name: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_.:@+-".contains(c) { c } else { '_' })
        .take(layout::MAX_NAME)
        .collect();
    while name.starts_with(['.', '-']) {
        name.replace_range(..1, "_");
    }
    while name.contains("..") {
        name = name.replace("..", "._");
    }
    if name.is_empty() { "process".into() } else { name }
}

/// Finds `program` the way `execvp` does, so that "not found" and "not executable" are reported
/// before anything is created.
pub(crate) fn resolve_program(program: &OsStr, path: Option<&OsStr>) -> Result<PathBuf> {
    use rustix::fs::{Access, access};
    let shown = program.to_string_lossy();
    if program.is_empty() {
        return Err(Error::new(ErrorKind::InvalidInput, "no program given"));
    }
    let check = |candidate: &Path| -> Result<()> {
        let meta = std::fs::metadata(candidate).map_err(|e| {
            let kind =
                if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::ProgramNotFound } else { ErrorKind::Os };
            Error::io("run program", candidate, e).with_kind(kind)
        })?;
        if meta.is_dir() || access(candidate, Access::EXEC_OK).is_err() {
            return Err(Error::new(
                ErrorKind::ProgramNotExecutable,
                format!("failed to run program {}: it is not an executable file", candidate.display()),
            ));
        }
        Ok(())
    };
    if program.as_bytes().contains(&b'/') {
        let p = PathBuf::from(program);
        check(&p)?;
        return Ok(p);
    }
    let path = path.map(OsStr::to_owned).unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    let mut not_executable = None;
    for dir in std::env::split_paths(&path) {
        let candidate = if dir.as_os_str().is_empty() { PathBuf::from(program) } else { dir.join(program) };
        match check(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == ErrorKind::ProgramNotExecutable => not_executable = Some(e),
            Err(_) => {}
        }
    }
    Err(not_executable.unwrap_or_else(|| {
        Error::new(ErrorKind::ProgramNotFound, format!("failed to run program {shown}: not found in PATH"))
    }))
}

#[cfg(test)]
mod tests {
    use crate::spawn::command::*;

    #[test]
    fn default_names_are_valid() {
        for program in ["/usr/bin/python3", "my prog", "..", ".hidden", "-x", "", "a/b/c..d"] {
            let name = default_name(OsStr::new(program));
            layout::validate_name("member", &name).unwrap_or_else(|e| panic!("{program:?} -> {name:?}: {e}"));
        }
        assert_eq!(default_name(OsStr::new("/usr/bin/python3")), "python3");
    }

    #[test]
    fn programs_are_resolved_on_path() {
        let sh = resolve_program(OsStr::new("sh"), Some(OsStr::new("/nonexistent:/bin:/usr/bin"))).expect("sh");
        assert!(sh.ends_with("sh"));
        let e = resolve_program(OsStr::new("no-such-program-xyz"), Some(OsStr::new("/bin"))).expect_err("missing");
        assert_eq!(e.kind(), ErrorKind::ProgramNotFound);
        assert!(e.to_string().contains("no-such-program-xyz"), "{e}");
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("data");
        std::fs::write(&plain, "not a program").expect("write");
        let e = resolve_program(plain.as_os_str(), None).expect_err("not executable");
        assert_eq!(e.kind(), ErrorKind::ProgramNotExecutable);
        let e = resolve_program(OsStr::new("/nonexistent/prog"), None).expect_err("missing path");
        assert_eq!(e.kind(), ErrorKind::ProgramNotFound);
        assert!(e.to_string().contains("/nonexistent/prog"), "{e}");
    }

    #[test]
    fn environment_is_composed() {
        let mut c = Command::new("x");
        c.env_clear().env("A", "1").env("B", "2").env_remove("B");
        assert_eq!(c.environment(), vec![(OsString::from("A"), OsString::from("1"))]);
    }

    #[test]
    fn nul_in_arguments_is_refused() {
        let mut c = Command::new("/bin/true");
        c.arg("a\0b");
        let e = c.prepare().err().expect("NUL refused");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
