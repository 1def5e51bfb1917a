//! Gathering [`Facts`]: looking at the host and probing the kernel for real.

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

use crate::cli::doctor::*;

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

#[cfg(test)]
mod tests {
    use crate::cli::doctor::probes::*;

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
}
