//! `daemonic doctor`: checks the host and explains, line by line, what works, what is missing
//! and how to fix it.
//!
//! Work is split in two. [`gather`] looks at the host and probes the kernel for real: it reads
//! `/proc/self/mountinfo` and `/proc/self/cgroup`, creates a temporary cgroup
//! `daemonic-doctor-<pid>` under the base cgroup `daemonic run` would use, starts `/bin/true`
//! into it with `clone3(CLONE_INTO_CGROUP)` through the crate's spawn machinery, kills a
//! `sleep` there with `cgroup.kill`, installs the no-fork seccomp filter in a child, and asks
//! the user and system buses whether a systemd manager answers. The temporary cgroup is
//! removed on every path (its guard kills what may be left in it and removes it on drop).
//! [`assess`] then turns these [`Facts`] into [`Check`]s, a pure function that unit tests feed
//! with made-up hosts.
//!
//! A check is `missing` only when the default backend needs it (the one `daemonic run` picks
//! without `--backend`: `DAEMONIC_BACKEND`, else `auto`, which takes systemd when the caller's
//! manager answers and cgroupfs otherwise); what only another backend needs is a `warning`.
//! So the default backend works here exactly when no check is `missing`.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::process::{PidfdFlags, Signal, WaitIdStatus, pidfd_open, pidfd_send_signal};

use crate::backend::Backend;
use crate::backend::systemd::{Bus, Client};
use crate::cgroup::layout::Position;
use crate::cgroup::{self, Hierarchy};
use crate::error::{Error, ErrorKind};
use crate::spawn::command::{Command, Placement, Stdio};
use crate::spawn::{self, Request};

/// How long a systemd manager may take to answer.
const MANAGER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a probe process may take to end after it was released or killed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The journal's native socket.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// Prefix of the temporary cgroup's name.
pub(crate) const TEMP_PREFIX: &str = "daemonic-doctor-";
/// How to get a delegated cgroup, for the fix lines.
const DELEGATE_FIX: &str = "run daemonic in a delegated cgroup: `systemd-run --user -p Delegate=yes --scope \
                            daemonic run …`, or Delegate=yes in its service unit; or give a writable cgroup with \
                            --cgroup PATH or DAEMONIC_CGROUP";

/// The fix of a probe that could not run.
const NOT_RUN_FIX: &str = "fix what kept it from being checked (said above), then run daemonic doctor again";

/// The verdict of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Works.
    Ok,
    /// Needed by the default backend and not there: the default backend cannot work.
    Missing,
    /// Not there, or not checked, but the default backend does not need it.
    Warning,
    /// A fact worth knowing; nothing to fix.
    Info,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Padded here, as `{:<8}` is not passed through by `f.write_str`.
        f.pad(match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Warning => "warning",
            Status::Info => "info",
        })
    }
}

/// One line of the report: a status, what was checked, what was found, and for what is not
/// `ok` or `info` how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Check {
    /// The verdict.
    pub status: Status,
    /// What was checked, e.g. `cgroup2 mount`.
    pub topic: &'static str,
    /// What was found.
    pub found: String,
    /// How to fix it; `None` for `ok` and `info`.
    pub fix: Option<String>,
}

impl Check {
    fn ok(topic: &'static str, found: impl Into<String>) -> Check {
        Check { status: Status::Ok, topic, found: found.into(), fix: None }
    }

    fn info(topic: &'static str, found: impl Into<String>) -> Check {
        Check { status: Status::Info, topic, found: found.into(), fix: None }
    }

    /// `missing` when `required`, else `warning`.
    fn lacking(required: bool, topic: &'static str, found: impl Into<String>, fix: impl Into<String>) -> Check {
        let status = if required { Status::Missing } else { Status::Warning };
        Check { status, topic, found: found.into(), fix: Some(fix.into()) }
    }
}

/// The outcome of a probe of a kernel feature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// It worked; what was seen.
    Works(String),
    /// It was tried and failed; why.
    Fails(String),
    /// It could not be tried; why.
    NotRun(String),
}

/// The cgroup hierarchies mounted on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mounts {
    /// The cgroup2 mount point, if any.
    pub cgroup2: Option<PathBuf>,
    /// The mount points of cgroup v1 hierarchies.
    pub v1: Vec<PathBuf>,
}

/// How cgroups are mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// cgroup2 only.
    Unified,
    /// cgroup2 beside cgroup v1 hierarchies.
    Hybrid,
    /// cgroup v1 only.
    Legacy,
    /// No cgroup filesystem at all.
    Absent,
}

impl Mounts {
    /// The cgroup mounts of a `/proc/self/mountinfo` text.
    pub(crate) fn parse(mountinfo: &str) -> Mounts {
        let v1 = mountinfo
            .lines()
            .filter_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                let mount = left.split_whitespace().nth(4)?;
                (right.split_whitespace().next()? == "cgroup").then(|| PathBuf::from(mount))
            })
            .collect();
        Mounts { cgroup2: cgroup::mount_from_mountinfo(mountinfo), v1 }
    }

    /// The hierarchy mode these mounts make.
    pub(crate) fn mode(&self) -> Mode {
        match (self.cgroup2.is_some(), self.v1.is_empty()) {
            (true, true) => Mode::Unified,
            (true, false) => Mode::Hybrid,
            (false, false) => Mode::Legacy,
            (false, true) => Mode::Absent,
        }
    }
}

/// Why the base cgroup cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BaseProblem {
    /// It is not a cgroup v2 directory.
    NotCgroup,
    /// The caller may not create cgroups in it.
    NotWritable,
}

/// The base cgroup families would be created under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Base {
    /// Its directory.
    pub path: PathBuf,
    /// Whether it comes from `DAEMONIC_CGROUP` (else it is the caller's own cgroup).
    pub given: bool,
    /// `family::choose_base`'s verdict: usable, or why not.
    pub usable: Result<(), BaseProblem>,
    /// The owners of the directory and of its `cgroup.procs`, when they could be read.
    pub owners: Option<(u32, u32)>,
}

/// The controllers of the v2 hierarchy's root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Controllers {
    /// `cgroup.controllers`: available.
    pub available: Option<String>,
    /// `cgroup.subtree_control`: enabled for the root's children.
    pub enabled: Option<String>,
}

/// The kernel features, as probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Probes {
    /// `clone3(CLONE_INTO_CGROUP)` into a temporary cgroup.
    pub clone3: Probe,
    /// The fallback, `clone` plus a write to `cgroup.procs`; probed only when clone3 fails.
    pub fork: Option<Probe>,
    /// `pidfd_open` of the caller.
    pub pidfd: Probe,
    /// `cgroup.kill`.
    pub kill: Probe,
    /// `cgroup.events` and its `populated` key.
    pub events: Probe,
    /// `user.*` extended attributes on a cgroup.
    pub xattrs: Probe,
    /// Installing the no-fork seccomp filter.
    pub seccomp: Probe,
}

/// What `daemonic run` is told by its environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// `DAEMONIC_BACKEND`, `auto` when unset; the error when it is invalid.
    pub backend: Result<Backend, String>,
    /// Whether `DAEMONIC_CGROUP` gives a base (then `auto` is cgroupfs).
    pub explicit_base: bool,
    /// The delegated unit (`Delegate=yes`) the caller runs in, when it may write its cgroup
    /// (then `auto` is cgroupfs).
    pub delegated_unit: Option<String>,
    /// The manager `auto` and `systemd` would ask.
    pub bus: Bus,
    /// Whether `DAEMONIC_BUS` chose it (else the caller's uid did).
    pub bus_from_env: bool,
}

/// Everything [`gather`] found out about the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Facts {
    /// The caller's effective uid.
    pub euid: u32,
    /// The cgroup mounts.
    pub mounts: Mounts,
    /// The v2 hierarchy's controllers.
    pub controllers: Controllers,
    /// The caller's own cgroup directory, or why it is unknown.
    pub own: Result<PathBuf, String>,
    /// The caller's family membership, as its cgroup says (`member main of family web-1`).
    pub membership: Option<String>,
    /// The base cgroup; `None` without a cgroup2 mount or an own cgroup.
    pub base: Option<Base>,
    /// The kernel features.
    pub probes: Probes,
    /// The kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: Option<String>,
    /// `Seccomp:` of `/proc/self/status`: 0 none, 1 strict, 2 filtered.
    pub seccomp_mode: Option<u32>,
    /// Whether a manager answers on the user and the system bus: its version if it could be
    /// read, or why it did not answer.
    pub user_manager: Result<Option<String>, String>,
    /// See `user_manager`.
    pub system_manager: Result<Option<String>, String>,
    /// What `daemonic run` is told by its environment.
    pub settings: Settings,
    /// Whether the journal's socket exists.
    pub journal_socket: bool,
    /// `NOTIFY_SOCKET`, if set.
    pub notify_socket: Option<String>,
}

/// The backend `daemonic run` would take without `--backend`, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// `None` for cgroupfs; the manager's bus for systemd.
    pub bus: Option<Bus>,
    /// One line: what and why.
    pub why: String,
}

/// Runs every check and writes the report to `out`. Returns whether the default backend can
/// work on this host.
pub(crate) fn run(out: &mut impl Write) -> io::Result<bool> {
    let facts = gather();
    let checks = assess(&facts);
    render(&checks, out)?;
    writeln!(out, "\n{}", result_line(&checks, resolve(&facts).ok().as_ref()))?;
    Ok(works(&checks))
}

/// Whether the default backend works: no check is `missing`.
pub(crate) fn works(checks: &[Check]) -> bool {
    !checks.iter().any(|c| c.status == Status::Missing)
}

/// The last line of the report: whether the default backend (`resolved`) works.
pub(crate) fn result_line(checks: &[Check], resolved: Option<&Resolved>) -> String {
    let which = match resolved {
        Some(r) => format!("the default backend ({})", r.why),
        None => "the default backend".to_string(),
    };
    match checks.iter().filter(|c| c.status == Status::Missing).count() {
        0 => format!("result: {which} works here; `daemonic run` can start families."),
        1 => format!("result: {which} cannot work here: 1 check is missing (see its fix: line)."),
        n => format!("result: {which} cannot work here: {n} checks are missing (see their fix: lines)."),
    }
}

/// Writes one line per check, and an indented `fix:` line under each that has a fix.
pub(crate) fn render(checks: &[Check], out: &mut impl Write) -> io::Result<()> {
    for c in checks {
        writeln!(out, "{:<8} {}: {}", c.status, c.topic, c.found)?;
        if let Some(fix) = &c.fix {
            writeln!(out, "{:<8} fix: {fix}", "")?;
        }
    }
    Ok(())
}

// =============================================================================================
// Gathering: looking at the host and probing the kernel
// =============================================================================================

/// Looks at the host and probes the kernel. Nothing it creates remains.
pub(crate) fn gather() -> Facts {
    // The buses first: their answers may take a while and come in on threads meanwhile.
    let user = ask_manager(Bus::User);
    let system = ask_manager(Bus::System);
    let mounts = match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => Mounts::parse(&text),
        Err(_) => Mounts::default(),
    };
    let hierarchy = mounts.cgroup2.clone().map(Hierarchy::at);
    let own = match &hierarchy {
        Some(h) => h.cgroup_of(0).map_err(|e| e.to_string()),
        None => Err("no cgroup2 mount".to_string()),
    };
    let base = hierarchy.as_ref().and_then(|h| find_base(h).ok());
    let probes = probe_kernel(hierarchy.as_ref(), base.as_ref());
    Facts {
        euid: rustix::process::geteuid().as_raw(),
        controllers: controllers(mounts.cgroup2.as_deref()),
        membership: own.as_ref().ok().and_then(|dir| Position::of_cgroup(dir)).map(|p| {
            let kind = if p.daemon { "daemon" } else { "member" };
            format!("{kind} {} of family {}", p.name, p.family_id)
        }),
        mounts,
        own,
        base,
        probes,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
        seccomp_mode: seccomp_mode(),
        user_manager: user(),
        system_manager: system(),
        settings: Settings {
            backend: Backend::from_env().map_err(|e| e.to_string()),
            explicit_base: std::env::var_os("DAEMONIC_CGROUP").is_some_and(|v| !v.is_empty()),
            delegated_unit: crate::backend::caller_delegated_unit(Bus::default_for_caller()),
            bus: Bus::default_for_caller(),
            bus_from_env: std::env::var("DAEMONIC_BUS").ok().as_deref().and_then(Bus::parse).is_some(),
        },
        journal_socket: Path::new(JOURNAL_SOCKET).exists(),
        notify_socket: std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty()),
    }
}

/// The controllers of the hierarchy mounted at `mount`.
fn controllers(mount: Option<&Path>) -> Controllers {
    let read =
        |name: &str| mount.and_then(|m| std::fs::read_to_string(m.join(name)).ok()).map(|s| s.trim().to_string());
    Controllers { available: read("cgroup.controllers"), enabled: read("cgroup.subtree_control") }
}

/// The base cgroup `daemonic run` would use without `--cgroup`: its candidate path (as
/// `family::choose_base` computes it) and `choose_base`'s verdict on it.
fn find_base(h: &Hierarchy) -> crate::Result<Base> {
    let (candidate, given) = crate::runtime::family::base_candidate(h, None)?;
    let usable = match crate::runtime::family::choose_base(h, None) {
        Ok(_) => Ok(()),
        // `choose_base` says InvalidInput for a path that is not a cgroup directory, and
        // Unsupported for one the caller may not write.
        Err(e) if e.kind() == ErrorKind::InvalidInput => Err(BaseProblem::NotCgroup),
        Err(_) => Err(BaseProblem::NotWritable),
    };
    let owner = |p: &Path| std::fs::metadata(p).ok().map(|m| m.uid());
    let owners = owner(&candidate).zip(owner(&candidate.join("cgroup.procs")));
    Ok(Base { path: candidate, given, usable, owners })
}

/// `Seccomp:` of `/proc/self/status`.
fn seccomp_mode() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Seccomp:")).and_then(|v| v.trim().parse().ok())
}

/// Starts asking the manager on `bus`, on a thread; the returned function waits for the answer
/// for at most [`MANAGER_TIMEOUT`] from now.
fn ask_manager(bus: Bus) -> impl FnOnce() -> Result<Option<String>, String> {
    let (tx, rx) = mpsc::channel();
    let started = std::time::Instant::now();
    let thread = std::thread::Builder::new().name(format!("doctor-{bus}-bus")).spawn(move || {
        let answer = Client::connect(bus).map(|client| client.version()).map_err(|e| e.to_string());
        let _ = tx.send(answer);
    });
    move || {
        if let Err(e) = thread {
            return Err(format!("failed to start a thread to ask the {bus} manager: {e}"));
        }
        let left = MANAGER_TIMEOUT.saturating_sub(started.elapsed());
        rx.recv_timeout(left)
            .unwrap_or_else(|_| Err(format!("the {bus} bus gave no answer within {} s", MANAGER_TIMEOUT.as_secs())))
    }
}

/// Probes the kernel features, in a temporary cgroup under `base` when it is usable.
fn probe_kernel(h: Option<&Hierarchy>, base: Option<&Base>) -> Probes {
    let pidfd = probe_pidfd();
    let seccomp = probe_seccomp();
    let usable = match (h, base) {
        (Some(h), Some(b)) => match b.usable {
            Ok(()) => Ok((h, b.path.as_path())),
            Err(_) => Err("it needs a usable base cgroup (see base cgroup)".to_string()),
        },
        _ => Err("needs a cgroup2 mount and a base cgroup".to_string()),
    };
    let (h, base_dir) = match usable {
        Ok(found) => found,
        Err(why) => {
            let (kill, events) = files_only(h, base);
            return Probes {
                clone3: Probe::NotRun(why.clone()),
                fork: None,
                pidfd,
                kill,
                events,
                xattrs: Probe::NotRun(why),
                seccomp,
            };
        }
    };
    let temp = match TempCgroup::create(base_dir) {
        Ok(t) => t,
        Err(e) => {
            let why = format!("cannot create a cgroup under the base: {e}");
            return Probes {
                clone3: Probe::Fails(why.clone()),
                fork: Some(Probe::Fails(why.clone())),
                pidfd,
                kill: Probe::NotRun(why.clone()),
                events: Probe::NotRun(why.clone()),
                xattrs: Probe::NotRun(why),
                seccomp,
            };
        }
    };
    let clone3 = probe_clone3(h, &temp.dir);
    let fork = match clone3 {
        Probe::Works(_) => None,
        _ => Some(probe_fork(&temp.dir)),
    };
    let placement = if matches!(clone3, Probe::Works(_)) { Placement::Clone3 } else { Placement::Fork };
    let (kill, events) = probe_kill_and_events(&temp.dir, placement);
    let xattrs = probe_xattrs(&temp.dir);
    drop(temp);
    Probes { clone3, fork, pidfd, kill, events, xattrs, seccomp }
}

/// Without a temporary cgroup: whether `cgroup.kill` and `cgroup.events` are at least present
/// in the base. The root cgroup has neither, whatever the kernel; any other cgroup v2 has both
/// on Linux ≥ 5.14.
fn files_only(h: Option<&Hierarchy>, base: Option<&Base>) -> (Probe, Probe) {
    let look = |name: &str| match (h, base) {
        (Some(h), Some(b)) if b.usable != Err(BaseProblem::NotCgroup) => {
            let file = b.path.join(name);
            if file.exists() {
                Probe::Works(format!("{} is present (not exercised: no temporary cgroup)", file.display()))
            } else if b.path == h.mount() {
                Probe::NotRun(format!(
                    "the base {} is the root cgroup, which has no {name}, and no temporary cgroup could be made \
                     under it",
                    b.path.display()
                ))
            } else {
                Probe::Fails(format!("{} does not exist", file.display()))
            }
        }
        _ => Probe::NotRun("it needs a usable base cgroup (see base cgroup)".to_string()),
    };
    (look("cgroup.kill"), look("cgroup.events"))
}

/// A cgroup `daemonic-doctor-<pid>[-n]` that is emptied and removed when dropped.
struct TempCgroup {
    dir: PathBuf,
}

impl TempCgroup {
    fn create(base: &Path) -> crate::Result<TempCgroup> {
        let pid = std::process::id();
        for n in 0..100 {
            let name = if n == 0 { format!("{TEMP_PREFIX}{pid}") } else { format!("{TEMP_PREFIX}{pid}-{n}") };
            let dir = base.join(name);
            if cgroup::create(&dir)? {
                return Ok(TempCgroup { dir });
            }
        }
        Err(Error::new(ErrorKind::AlreadyExists, format!("{TEMP_PREFIX}{pid}-0..99 all exist in {}", base.display())))
    }
}

impl Drop for TempCgroup {
    fn drop(&mut self) {
        if self.dir.join("cgroup.kill").exists() {
            let _ = cgroup::kill(&self.dir);
        }
        let _ = cgroup::wait_unpopulated(&self.dir, Some(PROBE_TIMEOUT));
        if let Err(e) = cgroup::remove_tree(&self.dir) {
            crate::log::warn(format!("failed to remove the temporary cgroup {}: {e}", self.dir.display()));
        }
    }
}

/// A child of a probe: SIGKILLed and reaped on drop unless it was waited for.
struct ProbeChild {
    pidfd: Option<OwnedFd>,
}

impl ProbeChild {
    /// Waits at most `timeout` for the child to end, and reaps it.
    fn wait(&mut self, timeout: Duration) -> Result<WaitIdStatus, String> {
        let Some(pidfd) = self.pidfd.as_ref() else { return Err("the probe process was already reaped".into()) };
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match crate::sys::poll(&mut fds, Some(timeout)) {
            Ok(0) => return Err(format!("the probe process was still running after {} s", timeout.as_secs())),
            Ok(_) => {}
            Err(e) => return Err(format!("failed to wait for the probe process: {e}")),
        }
        let status = crate::spawn::wait_pidfd(pidfd.as_fd(), true);
        self.pidfd = None;
        match status {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err("the probe process had no status".into()),
            Err(e) => Err(format!("failed to reap the probe process: {e}")),
        }
    }
}

impl Drop for ProbeChild {
    fn drop(&mut self) {
        if let Some(pidfd) = self.pidfd.take() {
            let _ = pidfd_send_signal(&pidfd, Signal::KILL);
            let _ = crate::spawn::wait_pidfd(pidfd.as_fd(), true);
        }
    }
}

/// "exited with code 3", "was killed by SIGKILL".
fn describe_status(s: &WaitIdStatus) -> String {
    crate::status::exitcode(s).map_or_else(|| "ended".into(), crate::status::describe)
}

/// A request to start `prepared` with null stdio.
fn request<'a>(
    prepared: &'a crate::spawn::command::Prepared,
    cgroup: Option<&'a Path>,
    filters: &'a [Vec<libc::sock_filter>],
    placement: Placement,
) -> Request<'a> {
    Request { cgroup, filters, placement, ..Request::with_all(prepared, &Stdio::Null) }
}

/// Starts `/bin/true` with `clone3(CLONE_INTO_CGROUP)` into `dir`, held before it runs; checks
/// that it is in `dir` already, then lets it run and waits for it.
fn probe_clone3(h: &Hierarchy, dir: &Path) -> Probe {
    let prepared = match Command::new("/bin/true").prepare() {
        Ok(p) => p,
        Err(e) => return Probe::NotRun(e.to_string()),
    };
    let started = match spawn::start(&request(&prepared, Some(dir), &[], Placement::Clone3), true) {
        Ok(s) => s,
        Err(e) => return Probe::Fails(e.to_string()),
    };
    let placed = h.cgroup_of(started.pid as u32);
    if placed.as_deref().ok() != Some(dir) {
        started.abort();
        let seen = placed.map_or_else(|e| e.to_string(), |p| format!("it was in {}", p.display()));
        return Probe::Fails(format!("a process cloned into {} did not start there: {seen}", dir.display()));
    }
    let spawned = match started.release() {
        Ok(s) => s,
        Err(e) => return Probe::Fails(format!("the process cloned into the cgroup failed: {e}")),
    };
    let mut child = ProbeChild { pidfd: Some(spawned.pidfd) };
    match child.wait(PROBE_TIMEOUT) {
        Ok(s) if s.exit_status() == Some(0) => Probe::Works(format!(
            "/bin/true was cloned straight into {} (checked in /proc/PID/cgroup before it ran) and exited 0",
            dir.display()
        )),
        Ok(s) => Probe::Fails(format!("/bin/true cloned into {} {}", dir.display(), describe_status(&s))),
        Err(e) => Probe::Fails(e),
    }
}

/// Starts `/bin/true` into `dir` with the fallback placement (`clone`, then a write to
/// `cgroup.procs` in the child) and waits for it.
fn probe_fork(dir: &Path) -> Probe {
    let prepared = match Command::new("/bin/true").prepare() {
        Ok(p) => p,
        Err(e) => return Probe::NotRun(e.to_string()),
    };
    let spawned = match spawn::spawn(&request(&prepared, Some(dir), &[], Placement::Fork)) {
        Ok(s) => s,
        Err(e) => return Probe::Fails(e.to_string()),
    };
    match (ProbeChild { pidfd: Some(spawned.pidfd) }).wait(PROBE_TIMEOUT) {
        Ok(s) if s.exit_status() == Some(0) => {
            Probe::Works(format!("/bin/true moved itself into {} through cgroup.procs and exited 0", dir.display()))
        }
        Ok(s) => Probe::Fails(format!("/bin/true placed in {} {}", dir.display(), describe_status(&s))),
        Err(e) => Probe::Fails(e),
    }
}

/// Starts `sleep` in `dir`, sees `populated 1`, writes `cgroup.kill`, sees the process die of
/// SIGKILL and `populated 0`. Returns the probes of `cgroup.kill` and of `cgroup.events`.
fn probe_kill_and_events(dir: &Path, placement: Placement) -> (Probe, Probe) {
    // Without a process to kill, at least look for the files.
    let not_run = |why: String| {
        let look = |name: &str| {
            let file = dir.join(name);
            if file.exists() {
                Probe::Works(format!("{} is present (not exercised: {why})", file.display()))
            } else {
                Probe::Fails(format!("{} does not exist", file.display()))
            }
        };
        (look("cgroup.kill"), look("cgroup.events"))
    };
    let mut sleep = Command::new("sleep");
    sleep.arg("30");
    let prepared = match sleep.prepare() {
        Ok(p) => p,
        Err(e) => return not_run(format!("no probe process: {e}")),
    };
    let spawned = match spawn::spawn(&request(&prepared, Some(dir), &[], placement)) {
        Ok(s) => s,
        Err(e) => return not_run(format!("no probe process: {e}")),
    };
    let mut child = ProbeChild { pidfd: Some(spawned.pidfd) };
    let busy = cgroup::populated(dir);
    let kill = match cgroup::kill(dir) {
        Err(e) => Probe::Fails(e.to_string()),
        Ok(()) => match child.wait(PROBE_TIMEOUT) {
            Ok(s) if s.terminating_signal() == Some(libc::SIGKILL) => {
                Probe::Works(format!("one write to {} SIGKILLed the probe process", dir.join("cgroup.kill").display()))
            }
            Ok(s) => Probe::Fails(format!("after a write to cgroup.kill the probe process {}", describe_status(&s))),
            Err(e) => Probe::Fails(format!("after a write to cgroup.kill {e}")),
        },
    };
    drop(child);
    let idle = cgroup::wait_unpopulated(dir, Some(PROBE_TIMEOUT));
    let events = match (busy, idle) {
        (Ok(true), Ok(true)) => Probe::Works(format!(
            "{} said populated 1 while the probe process ran and woke poll() with populated 0 when it ended",
            dir.join("cgroup.events").display()
        )),
        (Ok(false), _) => Probe::Fails("populated 0 while a process ran in the cgroup".into()),
        (_, Ok(false)) => Probe::Fails(format!("still populated {} s after the probe ended", PROBE_TIMEOUT.as_secs())),
        (Err(e), _) | (_, Err(e)) => Probe::Fails(e.to_string()),
    };
    (kill, events)
}

/// Sets and reads back a `user.daemonic.*` attribute on `dir`.
fn probe_xattrs(dir: &Path) -> Probe {
    if let Err(e) = cgroup::set_attr(dir, "doctor", "1") {
        return Probe::Fails(e.to_string());
    }
    match cgroup::attr(dir, "doctor") {
        Some(v) if v == "1" => {
            Probe::Works(format!("{}doctor was set on {} and read back", cgroup::XATTR_PREFIX, dir.display()))
        }
        other => Probe::Fails(format!("{}doctor read back as {other:?}, not \"1\"", cgroup::XATTR_PREFIX)),
    }
}

/// `pidfd_open` of the caller.
fn probe_pidfd() -> Probe {
    match pidfd_open(rustix::process::getpid(), PidfdFlags::empty()) {
        Ok(_) => Probe::Works("pidfd_open of this process works".into()),
        Err(e) => Probe::Fails(format!("pidfd_open of this process failed: {e}")),
    }
}

/// Builds the no-fork filter and runs `/bin/true` under it.
fn probe_seccomp() -> Probe {
    let filters = match crate::runtime::family::no_fork_filters() {
        Ok(f) => f,
        Err(e) => return Probe::Fails(e.to_string()),
    };
    let prepared = match Command::new("/bin/true").prepare() {
        Ok(p) => p,
        Err(e) => return Probe::NotRun(e.to_string()),
    };
    let spawned = match spawn::spawn(&request(&prepared, None, filters, Placement::Auto)) {
        Ok(s) => s,
        Err(e) => return Probe::Fails(e.to_string()),
    };
    match (ProbeChild { pidfd: Some(spawned.pidfd) }).wait(PROBE_TIMEOUT) {
        Ok(s) if s.exit_status() == Some(0) => Probe::Works(format!(
            "the no-fork filter ({} BPF programs) was installed in a child and /bin/true ran under it",
            filters.len()
        )),
        Ok(s) => Probe::Fails(format!("/bin/true under the no-fork filter {}", describe_status(&s))),
        Err(e) => Probe::Fails(e),
    }
}

// =============================================================================================
// Assessing: from facts to checks
// =============================================================================================

/// The backend `daemonic run` would take without `--backend` (as `supervise::choose_backend`
/// and `Backend::resolve` decide it), or why it cannot tell.
pub(crate) fn resolve(f: &Facts) -> Result<Resolved, String> {
    let bus = f.settings.bus;
    let answers = manager(f, bus).is_ok();
    let backend = f.settings.backend.clone()?;
    Ok(match backend {
        Backend::Cgroupfs => Resolved { bus: None, why: "cgroupfs, as DAEMONIC_BACKEND asks".into() },
        Backend::Systemd => {
            Resolved { bus: Some(bus), why: format!("systemd on the {bus} manager, as DAEMONIC_BACKEND asks") }
        }
        Backend::Auto if f.settings.explicit_base => {
            Resolved { bus: None, why: "auto → cgroupfs, as DAEMONIC_CGROUP gives a base cgroup".into() }
        }
        Backend::Auto if f.settings.delegated_unit.is_some() => Resolved {
            bus: None,
            why: format!(
                "auto → cgroupfs, as this process runs in {}, a unit delegated to it (Delegate=yes)",
                f.settings.delegated_unit.as_deref().unwrap_or_default()
            ),
        },
        Backend::Auto if answers => {
            Resolved { bus: Some(bus), why: format!("auto → systemd, as the {bus} manager answers") }
        }
        Backend::Auto => {
            Resolved { bus: None, why: format!("auto → cgroupfs, as no systemd manager answers on the {bus} bus") }
        }
    })
}

fn manager(f: &Facts, bus: Bus) -> &Result<Option<String>, String> {
    match bus {
        Bus::User => &f.user_manager,
        Bus::System => &f.system_manager,
    }
}

/// The checks, in report order.
pub(crate) fn assess(f: &Facts) -> Vec<Check> {
    let resolved = resolve(f);
    // With no valid DAEMONIC_BACKEND, judge the requirements of cgroupfs.
    let systemd = resolved.as_ref().ok().and_then(|r| r.bus);
    let cgroupfs = systemd.is_none();
    let mut checks = vec![mount_check(f), mode_check(f), controllers_check(f), own_check(f)];
    checks.extend(base_checks(f, cgroupfs));
    checks.extend(placement_checks(&f.probes, cgroupfs));
    checks.push(probe_check(
        "pidfd",
        &f.probes.pidfd,
        true,
        "a kernel ≥ 5.3 (5.4 for waitid(P_PIDFD)); in a container, allow pidfd_open and pidfd_send_signal in its \
         seccomp profile",
    ));
    checks.push(probe_check("cgroup.kill", &f.probes.kill, true, "a kernel ≥ 5.14, which has cgroup.kill"));
    checks.push(probe_check(
        "cgroup.events",
        &f.probes.events,
        true,
        "a kernel with cgroup v2 (≥ 4.5 has cgroup.events; daemonic needs ≥ 5.14 anyway)",
    ));
    checks.push(probe_check(
        "user.* xattrs on cgroups",
        &f.probes.xattrs,
        true,
        "a kernel ≥ 5.7, which allows user.* extended attributes on cgroupfs",
    ));
    checks.push(seccomp_check(f));
    checks.push(Check::info(
        "kernel",
        match &f.kernel {
            Some(k) => format!("Linux {k} (the features above are probed, not inferred from the version)"),
            None => "unknown (/proc/sys/kernel/osrelease is unreadable)".into(),
        },
    ));
    checks.push(manager_check(f, Bus::User, systemd == Some(Bus::User)));
    checks.push(manager_check(f, Bus::System, systemd == Some(Bus::System)));
    checks.push(default_backend_check(f, &resolved));
    checks.push(Check::info(
        "journald",
        if f.journal_socket {
            format!("{JOURNAL_SOCKET} exists: daemonic's log events go to the journal too (journalctl shows them)")
        } else {
            format!("{JOURNAL_SOCKET} does not exist: daemonic logs to stderr only")
        },
    ));
    checks.push(Check::info(
        "NOTIFY_SOCKET",
        match &f.notify_socket {
            Some(s) => format!("set to {s}: `daemonic run` will send READY=1 and STATUS= lines there"),
            None => "not set: not started as a Type=notify service (nothing to notify)".into(),
        },
    ));
    checks
}

fn mount_check(f: &Facts) -> Check {
    match &f.mounts.cgroup2 {
        Some(m) => Check::ok("cgroup2 mount", format!("{} (found in /proc/self/mountinfo)", m.display())),
        None => Check::lacking(
            true,
            "cgroup2 mount",
            "no cgroup2 filesystem in /proc/self/mountinfo",
            "boot with systemd.unified_cgroup_hierarchy=1, or mount it: mkdir -p /sys/fs/cgroup/unified && \
             mount -t cgroup2 none /sys/fs/cgroup/unified",
        ),
    }
}

fn mode_check(f: &Facts) -> Check {
    let v1 = || {
        let names: Vec<String> = f
            .mounts
            .v1
            .iter()
            .map(|p| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned()))
            .collect();
        names.join(", ")
    };
    let mount = f.mounts.cgroup2.as_deref().map(|m| m.display().to_string()).unwrap_or_default();
    Check::info(
        "hierarchy",
        match f.mounts.mode() {
            Mode::Unified => format!("unified: cgroup2 alone, at {mount}"),
            Mode::Hybrid => format!("hybrid: cgroup2 at {mount}, beside cgroup v1 hierarchies ({})", v1()),
            Mode::Legacy => format!("legacy: cgroup v1 only ({}), no cgroup2", v1()),
            Mode::Absent => "no cgroup filesystem mounted".into(),
        },
    )
}

fn controllers_check(f: &Facts) -> Check {
    let words = |s: &Option<String>| match s.as_deref() {
        Some("") => "none".to_string(),
        Some(s) => s.to_string(),
        None => "unknown".to_string(),
    };
    let found = match f.mounts.cgroup2 {
        Some(_) => format!(
            "available in the v2 hierarchy: {}; enabled below its root (cgroup.subtree_control): {} (daemonic \
             needs none)",
            words(&f.controllers.available),
            words(&f.controllers.enabled)
        ),
        None => "none: no cgroup2 mount".to_string(),
    };
    Check::info("controllers", found)
}

fn own_check(f: &Facts) -> Check {
    match &f.own {
        Ok(dir) => {
            let member = f.membership.as_ref().map(|m| format!("; this process is {m}")).unwrap_or_default();
            let rel = f.mounts.cgroup2.as_deref().map(|m| Hierarchy::at(m).relative(dir)).unwrap_or_default();
            let rel = match rel.as_deref() {
                Some("/") => "/ (the root of the hierarchy) in /proc/self/cgroup, ".to_string(),
                Some(rel) => format!("{rel} in /proc/self/cgroup, "),
                None => String::new(),
            };
            Check::info("own cgroup", format!("{rel}the directory {}{member}", dir.display()))
        }
        Err(e) => Check::lacking(
            true,
            "own cgroup",
            format!("unknown: {e}"),
            "mount cgroup2 (see above); /proc/self/cgroup must have a 0:: line",
        ),
    }
}

/// The base cgroup and whether it is delegated.
fn base_checks(f: &Facts, required: bool) -> Vec<Check> {
    let Some(b) = &f.base else {
        return vec![Check::lacking(
            required,
            "base cgroup",
            "none: no cgroup2 mount or no own cgroup",
            "mount cgroup2 (see cgroup2 mount)",
        )];
    };
    let whence = if b.given { "from DAEMONIC_CGROUP" } else { "this process's own cgroup" };
    let path = b.path.display();
    let base = match b.usable {
        Ok(()) => Check::ok(
            "base cgroup",
            format!("{path} ({whence}) is writable: families go to {path}/daemonic-NAME-N.family"),
        ),
        Err(BaseProblem::NotCgroup) => Check::lacking(
            required,
            "base cgroup",
            format!(
                "{path} ({whence}) is not a cgroup v2 directory (cgroup paths are read below the cgroup2 mount {})",
                f.mounts.cgroup2.as_deref().unwrap_or(Path::new("?")).display()
            ),
            if b.given {
                "point DAEMONIC_CGROUP at an existing cgroup directory below the cgroup2 mount (or a path relative to \
                 it), or unset it"
            } else {
                "mount cgroup2 (see above)"
            },
        ),
        Err(BaseProblem::NotWritable) => Check::lacking(
            required,
            "base cgroup",
            format!("{path} ({whence}) is not writable for uid {}: no cgroup can be created there", f.euid),
            if f.euid == 0 {
                "make the cgroup filesystem writable (a container?) or give DAEMONIC_CGROUP"
            } else {
                DELEGATE_FIX
            },
        ),
    };
    let mut checks = vec![base];
    if b.usable != Err(BaseProblem::NotCgroup) {
        checks.push(delegation_check(f, b, required));
    }
    checks
}

fn delegation_check(f: &Facts, b: &Base, required: bool) -> Check {
    let writable = b.usable.is_ok();
    let path = b.path.display();
    match (f.euid, b.owners, writable) {
        (0, _, true) => Check::ok("delegation", "not needed: root may write any cgroup"),
        (0, _, false) => Check::lacking(
            required,
            "delegation",
            format!("even root cannot write {path}: the cgroup filesystem is read-only here"),
            "mount cgroup2 read-write in this container (e.g. a private cgroup namespace), or give a writable \
             DAEMONIC_CGROUP",
        ),
        (uid, Some((dir, procs)), _) if dir == uid && procs == uid => Check::ok(
            "delegation",
            format!("{path} and its cgroup.procs belong to uid {uid}, as systemd's Delegate=yes makes them"),
        ),
        (uid, _, true) => Check::ok("delegation", format!("{path} is writable for uid {uid}, though not owned by it")),
        (uid, owners, false) => Check::lacking(
            required,
            "delegation",
            match owners {
                Some((dir, _)) => format!("{path} belongs to uid {dir}, not to uid {uid}: not delegated"),
                None => format!("{path} is not delegated to uid {uid}"),
            },
            DELEGATE_FIX,
        ),
    }
}

/// clone3 into a cgroup, and the fallback when clone3 is refused.
fn placement_checks(p: &Probes, required: bool) -> Vec<Check> {
    const TOPIC: &str = "clone3(CLONE_INTO_CGROUP)";
    const FIX: &str = "a kernel ≥ 5.7; in a container, allow clone3 in its seccomp profile";
    let fallback = || match &p.fork {
        Some(Probe::Works(how)) => Some(how.clone()),
        _ => None,
    };
    match (&p.clone3, fallback()) {
        (Probe::Works(how), _) => vec![Check::ok(TOPIC, how.clone())],
        (Probe::NotRun(why), _) => vec![Check::lacking(false, TOPIC, format!("not checked: {why}"), NOT_RUN_FIX)],
        (Probe::Fails(why), Some(how)) => vec![
            Check::lacking(false, TOPIC, format!("refused: {why}"), FIX),
            Check::ok("fallback placement", format!("{how}; daemonic uses it where clone3 is refused")),
        ],
        (Probe::Fails(why), None) => {
            let fork = match &p.fork {
                Some(Probe::Fails(e) | Probe::NotRun(e)) => e.clone(),
                _ => "not tried".into(),
            };
            vec![Check::lacking(
                required,
                TOPIC,
                format!("refused: {why}; the fallback (clone + cgroup.procs) failed too: {fork}"),
                FIX,
            )]
        }
    }
}

/// A check from a probe: `ok`, `missing`/`warning` when it failed, `warning` when not run.
fn probe_check(topic: &'static str, probe: &Probe, required: bool, fix: &str) -> Check {
    match probe {
        Probe::Works(how) => Check::ok(topic, how.clone()),
        Probe::Fails(why) => Check::lacking(required, topic, why.clone(), fix),
        Probe::NotRun(why) => Check::lacking(false, topic, format!("not checked: {why}"), NOT_RUN_FIX),
    }
}

fn seccomp_check(f: &Facts) -> Check {
    let mut check = probe_check(
        "seccomp",
        &f.probes.seccomp,
        true,
        "a kernel with CONFIG_SECCOMP_FILTER; in a container, allow seccomp() in its profile",
    );
    let mode = match f.seccomp_mode {
        Some(0) => " (this process itself runs without a filter)",
        Some(1) => " (this process itself runs in strict seccomp mode)",
        Some(_) => " (this process itself runs under a seccomp filter already, e.g. a container's)",
        None => "",
    };
    check.found.push_str(mode);
    check
}

fn manager_check(f: &Facts, bus: Bus, required: bool) -> Check {
    let (topic, flag, bus_name) = match bus {
        Bus::User => ("systemd user manager", "--user", "session bus"),
        Bus::System => ("systemd system manager", "--system", "system bus"),
    };
    let auto_asks = f.settings.bus == bus && !f.settings.explicit_base && f.settings.delegated_unit.is_none();
    let auto = if auto_asks { ", and auto takes it" } else { "" };
    match manager(f, bus) {
        Ok(version) => {
            let version = version.as_ref().map(|v| format!(" (systemd {v})")).unwrap_or_default();
            Check::ok(topic, format!("answers on the {bus_name}{version}: --backend systemd {flag} works{auto}"))
        }
        Err(e) => Check::lacking(
            required,
            topic,
            format!("no answer, so --backend systemd {flag} cannot work: {e}"),
            match bus {
                Bus::User => {
                    "run a user session (`loginctl enable-linger USER` for one without a login) with \
                     DBUS_SESSION_BUS_ADDRESS set; or use the cgroupfs backend"
                }
                Bus::System => {
                    "boot with systemd as PID 1 (its bus at /run/dbus/system_bus_socket); or use the cgroupfs backend"
                }
            },
        ),
    }
}

fn default_backend_check(f: &Facts, resolved: &Result<Resolved, String>) -> Check {
    match resolved {
        Ok(r) => {
            let caller = if f.euid == 0 { "root" } else { "a non-root caller" };
            let asks_systemd = match f.settings.backend {
                Ok(Backend::Auto) => !f.settings.explicit_base && f.settings.delegated_unit.is_none(),
                Ok(Backend::Systemd) => true,
                _ => false,
            };
            let bus = if !asks_systemd {
                return Check::info("default backend", format!("`daemonic run` takes {}", r.why));
            } else if f.settings.bus_from_env {
                format!("the {} bus is chosen by DAEMONIC_BUS", f.settings.bus)
            } else {
                format!(
                    "the {} bus is the one {caller} uses; --user, --system or DAEMONIC_BUS change it",
                    f.settings.bus
                )
            };
            Check::info("default backend", format!("`daemonic run` takes {} ({bus})", r.why))
        }
        Err(e) => Check::lacking(
            true,
            "default backend",
            e.clone(),
            "set DAEMONIC_BACKEND to auto, cgroupfs or systemd, or unset it",
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::doctor::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const UNIFIED: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    const LEGACY: &str = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";

    fn worked(s: &str) -> Probe {
        Probe::Works(s.into())
    }

    /// A unified host where everything works, as root, with no manager answering.
    fn healthy() -> Facts {
        let base = PathBuf::from("/sys/fs/cgroup/user.slice/x.scope");
        Facts {
            euid: 0,
            mounts: Mounts::parse(UNIFIED),
            controllers: Controllers { available: Some("cpu memory pids".into()), enabled: Some("".into()) },
            own: Ok(base.clone()),
            membership: None,
            base: Some(Base { path: base, given: false, usable: Ok(()), owners: Some((0, 0)) }),
            probes: Probes {
                clone3: worked("cloned"),
                fork: None,
                pidfd: worked("pidfd"),
                kill: worked("killed"),
                events: worked("events"),
                xattrs: worked("xattrs"),
                seccomp: worked("seccomp"),
            },
            kernel: Some("6.18.0".into()),
            seccomp_mode: Some(0),
            user_manager: Err("cannot reach the user's systemd manager".into()),
            system_manager: Err("cannot reach the system's systemd manager".into()),
            settings: Settings {
                backend: Ok(Backend::Auto),
                explicit_base: false,
                delegated_unit: None,
                bus: Bus::System,
                bus_from_env: false,
            },
            journal_socket: false,
            notify_socket: None,
        }
    }

    fn find<'a>(checks: &'a [Check], topic: &str) -> &'a Check {
        checks.iter().find(|c| c.topic == topic).unwrap_or_else(|| panic!("no {topic} check in {checks:#?}"))
    }

    fn missing(checks: &[Check]) -> Vec<&'static str> {
        checks.iter().filter(|c| c.status == Status::Missing).map(|c| c.topic).collect()
    }

    #[test]
    fn hierarchy_modes_come_from_mountinfo() {
        let hybrid = Mounts::parse(HYBRID);
        assert_eq!(hybrid.cgroup2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(hybrid.v1, [PathBuf::from("/sys/fs/cgroup/memory"), PathBuf::from("/sys/fs/cgroup/systemd")]);
        assert_eq!(hybrid.mode(), Mode::Hybrid);
        assert_eq!(Mounts::parse(UNIFIED).mode(), Mode::Unified);
        assert_eq!(Mounts::parse(LEGACY).mode(), Mode::Legacy);
        assert_eq!(Mounts::parse("").mode(), Mode::Absent);
    }

    #[test]
    fn a_healthy_host_has_nothing_missing() {
        let checks = assess(&healthy());
        assert_eq!(missing(&checks), Vec::<&str>::new());
        assert_eq!(find(&checks, "cgroup2 mount").found, "/sys/fs/cgroup (found in /proc/self/mountinfo)");
        assert!(find(&checks, "hierarchy").found.starts_with("unified"));
        assert!(find(&checks, "default backend").found.contains("auto → cgroupfs"));
        // No manager is needed by cgroupfs: a warning with a fix, not missing.
        let system = find(&checks, "systemd system manager");
        assert_eq!(system.status, Status::Warning);
        assert!(system.fix.is_some());
        assert!(checks.iter().all(|c| (c.fix.is_some()) == matches!(c.status, Status::Missing | Status::Warning)));
    }

    #[test]
    fn auto_in_a_delegated_unit_is_cgroupfs_even_where_a_manager_answers() {
        let mut f = healthy();
        f.system_manager = Ok(Some("252".into()));
        f.settings.delegated_unit = Some("web.service".into());
        let resolved = resolve(&f).expect("valid settings");
        assert_eq!(resolved.bus, None);
        assert!(resolved.why.contains("web.service, a unit delegated to it"), "{}", resolved.why);
        assert!(!manager_check(&f, Bus::System, false).found.contains("auto takes it"));
        f.settings.delegated_unit = None;
        assert_eq!(resolve(&f).expect("valid settings").bus, Some(Bus::System));
        assert!(
            manager_check(&f, Bus::System, false).found.contains("--backend systemd --system works, and auto takes it")
        );
    }

    #[test]
    fn a_missing_base_is_missing_with_a_fix() {
        let mut f = healthy();
        f.settings.explicit_base = true;
        f.base = Some(Base {
            path: "/sys/fs/cgroup/nope".into(),
            given: true,
            usable: Err(BaseProblem::NotCgroup),
            owners: None,
        });
        f.probes.clone3 = Probe::NotRun("needs a usable base cgroup".into());
        let checks = assess(&f);
        assert_eq!(missing(&checks), ["base cgroup"]);
        assert!(find(&checks, "base cgroup").fix.as_deref().is_some_and(|fix| fix.contains("DAEMONIC_CGROUP")));
        assert_eq!(find(&checks, "clone3(CLONE_INTO_CGROUP)").status, Status::Warning);
    }

    #[test]
    fn an_undelegated_cgroup_says_how_to_delegate() {
        let mut f = healthy();
        f.euid = 1000;
        if let Some(b) = f.base.as_mut() {
            b.usable = Err(BaseProblem::NotWritable);
        }
        let checks = assess(&f);
        assert_eq!(missing(&checks), ["base cgroup", "delegation"]);
        let delegation = find(&checks, "delegation");
        assert!(delegation.found.contains("belongs to uid 0, not to uid 1000"), "{delegation:?}");
        assert!(delegation.fix.as_deref().is_some_and(|fix| fix.contains("Delegate=yes")));
    }

    #[test]
    fn a_delegated_cgroup_is_ok() {
        let mut f = healthy();
        f.euid = 1000;
        if let Some(b) = f.base.as_mut() {
            b.owners = Some((1000, 1000));
        }
        let checks = assess(&f);
        assert_eq!(find(&checks, "delegation").status, Status::Ok);
        assert!(find(&checks, "delegation").found.contains("Delegate=yes"));
    }

    #[test]
    fn refused_clone3_with_a_working_fallback_is_a_warning() {
        let mut f = healthy();
        f.probes.clone3 = Probe::Fails("failed to create a process: Function not implemented".into());
        f.probes.fork = Some(worked("moved"));
        let checks = assess(&f);
        assert_eq!(missing(&checks), Vec::<&str>::new());
        assert_eq!(find(&checks, "clone3(CLONE_INTO_CGROUP)").status, Status::Warning);
        assert_eq!(find(&checks, "fallback placement").status, Status::Ok);
        f.probes.fork = Some(Probe::Fails("EPERM".into()));
        assert_eq!(missing(&assess(&f)), ["clone3(CLONE_INTO_CGROUP)"]);
    }

    #[test]
    fn systemd_as_default_needs_its_manager_not_the_base() {
        let mut f = healthy();
        f.user_manager = Ok(Some("252".into()));
        f.settings.bus = Bus::User;
        if let Some(b) = f.base.as_mut() {
            b.usable = Err(BaseProblem::NotWritable);
        }
        let checks = assess(&f);
        assert_eq!(missing(&checks), Vec::<&str>::new());
        assert_eq!(find(&checks, "base cgroup").status, Status::Warning);
        assert!(find(&checks, "default backend").found.contains("auto → systemd"));
        let user = find(&checks, "systemd user manager");
        assert_eq!(user.status, Status::Ok);
        assert!(user.found.contains("(systemd 252)") && user.found.contains("auto takes it"), "{user:?}");

        f.settings.backend = Ok(Backend::Systemd);
        f.user_manager = Err("gone".into());
        assert_eq!(missing(&assess(&f)), ["systemd user manager"]);
    }

    #[test]
    fn no_cgroup2_and_bad_settings_are_missing() {
        let mut f = healthy();
        f.mounts = Mounts::parse(LEGACY);
        f.own = Err("no cgroup2 mount".into());
        f.base = None;
        let checks = assess(&f);
        assert!(find(&checks, "hierarchy").found.starts_with("legacy"));
        assert_eq!(missing(&checks), ["cgroup2 mount", "own cgroup", "base cgroup"]);

        let mut f = healthy();
        f.settings.backend = Err("invalid backend \"docker\"".into());
        assert_eq!(missing(&assess(&f)), ["default backend"]);
    }

    #[test]
    fn failed_kernel_features_are_missing() {
        let mut f = healthy();
        f.probes.kill = Probe::Fails("no cgroup.kill".into());
        f.probes.seccomp = Probe::Fails("EINVAL".into());
        let checks = assess(&f);
        assert_eq!(missing(&checks), ["cgroup.kill", "seccomp"]);
        assert!(find(&checks, "cgroup.kill").fix.as_deref().is_some_and(|fix| fix.contains("5.14")));
        assert!(find(&checks, "seccomp").found.contains("without a filter"));
    }

    #[test]
    fn temp_cgroup_is_removed_even_while_populated() {
        let Ok(h) = Hierarchy::host() else { return };
        let Ok(own) = h.cgroup_of(0) else { return };
        if !cgroup::writable(&own) {
            return; // no writable cgroup v2 here: nothing to test
        }
        let Ok(temp) = TempCgroup::create(&own) else { return };
        let dir = temp.dir.clone();
        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        let prepared = sleep.prepare().expect("sleep is installed");
        let spawned = spawn::spawn(&request(&prepared, Some(&dir), &[], Placement::Auto)).expect("start sleep");
        assert_eq!(cgroup::populated(&dir).ok(), Some(true));
        drop(temp);
        assert!(!dir.exists(), "{} remains", dir.display());
        let status = (ProbeChild { pidfd: Some(spawned.pidfd) }).wait(PROBE_TIMEOUT).expect("reap");
        assert_eq!(status.terminating_signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn the_result_line_counts_what_is_missing() {
        let f = healthy();
        let resolved = resolve(&f).expect("valid settings");
        let mut checks = assess(&f);
        assert!(works(&checks));
        assert_eq!(
            result_line(&checks, Some(&resolved)),
            "result: the default backend (auto → cgroupfs, as no systemd manager answers on the system bus) works \
             here; `daemonic run` can start families."
        );
        checks.push(Check::lacking(true, "cgroup.kill", "absent", "a newer kernel"));
        checks.push(Check::lacking(true, "seccomp", "absent", "a newer kernel"));
        assert!(!works(&checks));
        assert!(result_line(&checks, None).ends_with("cannot work here: 2 checks are missing (see their fix: lines)."));
    }

    #[test]
    fn renders_status_topic_and_indented_fix() {
        let checks = [
            Check::ok("cgroup2 mount", "/sys/fs/cgroup"),
            Check::lacking(true, "cgroup.kill", "absent", "a newer kernel"),
        ];
        let mut out = Vec::new();
        render(&checks, &mut out).expect("render");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "ok       cgroup2 mount: /sys/fs/cgroup\nmissing  cgroup.kill: absent\n         fix: a newer kernel\n"
        );
    }
}
