//! Resource limits for the two rows that need them: the OOM ending (64 MiB of memory for the main
//! member) and the fork bomb (64 tasks for the bombing daemon).
//!
//! How a row gets its limit is asked of the host once at start, per backend and controller:
//!
//! 1. The host has a v1 hierarchy with the controller (a hybrid host): a v1 cgroup with the limit
//!    that the limited process moves itself into (`v1.rs`); its v2 placement stays daemonic's.
//! 2. Otherwise cgroup v2, through daemonic's own resource properties, so that the limit sits on
//!    the member's own cgroup and the product's property feature is measured under stress too:
//!    `daemonic run -p MemoryMax=64M` for the main member under `run`,
//!    `Command::property("TasksMax=64")` for the bombing daemon. The controller must reach the
//!    member's cgroup:
//!    - cgroupfs: the families of these rows are made below a base cgroup this run creates
//!      directly below the cgroup2 root and removes at the end (what a service with `Delegate=`
//!      whose main process sits in a leaf hands down). The controller must be in the base's
//!      `cgroup.controllers` (the root hands it down); it is enabled in the base's
//!      `cgroup.subtree_control`, and daemonic enables it inside the family.
//!    - systemd: the test user manager must have the controller (`cgroup.controllers` of its
//!      root cgroup, `systemctl --user show -P ControlGroup`); without it systemd would accept
//!      `MemoryMax=`/`TasksMax=` and enforce nothing.
//! 3. Otherwise the row cannot run: each of its trials fails with the reason.
//!
//! The library's main member is the program that opens the family, and
//! [`daemonic::FamilyBuilder`] has no resource property for it: that member limits its own
//! cgroup right after opening, with [`daemonic::__internal::properties::apply_in_dirs`] on cgroupfs (what
//! `run -p` does for its main member) and `systemctl --user set-property --runtime` of its scope
//! on systemd (what `run -p` asks of the manager at the scope's start). Every limited member
//! checks that the limit is in its cgroup's interface file before it starts (`member.rs`).
//!
//! Memory and swap: daemonic has no `MemorySwapMax=`, and with swap on, `memory.max` alone moves
//! the member's pages to swap instead of calling the OOM killer. On cgroupfs the base this run
//! made gets `memory.swap.max` 0 (it holds for everything below it); on systemd the OOM row
//! refuses to run on a host with swap.
//!
//! "The OOM killer did it", per trial: on v1 the harness's own memory cgroup outlives the member
//! and its `oom_kill` count is read at the end. On v2 the limited cgroup is the member's own,
//! which daemonic removes as the family ends, so it cannot be read afterwards, and reading its
//! `memory.events` while it exists would race with that removal. Instead each trial opens the
//! kernel's log (`/dev/kmsg`, which gives every reader its own position) at its start, seeked to
//! the end, and after the family has ended looks for the OOM killer's line naming the main
//! member's PID: `Killed process <PID> (` (printed for every kill, not rate-limited) or
//! `oom-kill:…,pid=<PID>,` (part of the rate-limited report). Other trials' lines, even of
//! trials running at the same time, name other PIDs. Reading `/dev/kmsg` needs root (or
//! `CAP_SYSLOG`), as the harness runs anyway.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::v1;

/// The memory limit of the OOM ending: small enough to be hit in a few milliseconds, large
/// enough to start a process.
pub(crate) const MEMORY_LIMIT: u64 = 64 << 20;
/// [`MEMORY_LIMIT`] as a `MemoryMax=` value.
pub(crate) const MEMORY_MAX: &str = "64M";
/// The fork bomb's tasks limit.
pub(crate) const TASKS_LIMIT: u32 = 64;

/// How one backend's rows get one controller's limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mechanism {
    /// A v1 cgroup of the harness, entered by the limited process.
    V1,
    /// A resource property of the member's own cgroup v2; on cgroupfs, the family is made below
    /// `base`.
    V2 { base: Option<PathBuf> },
}

/// What [`Limits::probe`] decided, for each backend and controller asked for.
pub(crate) struct Limits {
    choices: Vec<(String, &'static str, Result<Mechanism, String>)>,
    /// The cgroupfs base below the cgroup2 root this run made (removed on drop).
    base: Option<PathBuf>,
}

impl Limits {
    /// Decides, for each (backend, controller) of `needed`, how its limit is set; makes the
    /// cgroupfs base where one is needed.
    pub(crate) fn probe(cgroup2: &Path, run_id: u32, needed: &[(String, &'static str)]) -> Limits {
        let mut limits = Limits { choices: Vec::new(), base: None };
        let swap = swap_total();
        for (backend, controller) in needed {
            if limits.choices.iter().any(|(b, c, _)| b == backend && c == controller) {
                continue;
            }
            let choice = if v1::hierarchy(controller).is_some() {
                Ok(Mechanism::V1)
            } else if backend == "systemd" {
                manager_has(cgroup2, controller).and_then(|()| match (*controller, swap) {
                    ("memory", Some(kib)) if kib > 0 => Err(format!(
                        "needs a memory limit that holds: this host has {} MiB of swap, daemonic has no \
                         MemorySwapMax=, and MemoryMax= alone would move the member's pages to swap instead of \
                         calling the OOM killer",
                        kib / 1024
                    )),
                    _ => Ok(Mechanism::V2 { base: None }),
                })
            } else {
                limits.base_with(cgroup2, run_id, controller).map(|b| Mechanism::V2 { base: Some(b) })
            };
            limits.choices.push((backend.clone(), controller, choice));
        }
        limits
    }

    /// How `backend`'s rows limit `controller`, or why they cannot.
    pub(crate) fn get(&self, backend: &str, controller: &str) -> Result<Mechanism, String> {
        self.choices
            .iter()
            .find(|(b, c, _)| b == backend && *c == controller)
            .map(|(_, _, r)| r.clone())
            .unwrap_or_else(|| Err(format!("no limit for the {controller} controller on {backend} was probed")))
    }

    /// One line per choice, for the report.
    pub(crate) fn describe(&self) -> Vec<String> {
        self.choices
            .iter()
            .map(|(backend, controller, r)| {
                let (row, property) = match *controller {
                    "memory" => ("the OOM ending", format!("MemoryMax={MEMORY_MAX}")),
                    _ => ("the fork bomb", format!("TasksMax={TASKS_LIMIT}")),
                };
                let how = match r {
                    Ok(Mechanism::V1) => format!("a cgroup of the v1 {controller} hierarchy that the process enters"),
                    Ok(Mechanism::V2 { base: Some(b) }) => format!(
                        "`{property}` on the member's own cgroup v2 (the family below {}, which hands {controller} \
                         down)",
                        b.display()
                    ),
                    Ok(Mechanism::V2 { base: None }) => format!("`{property}` on the member's scope"),
                    Err(e) => format!("cannot run: {e}"),
                };
                format!("{backend}, {row}: {how}")
            })
            .collect()
    }

    /// The cgroupfs base, made at the first call, with `controller` enabled for its children.
    fn base_with(&mut self, cgroup2: &Path, run_id: u32, controller: &str) -> Result<PathBuf, String> {
        let why = |what: String| {
            format!("needs the {controller} controller: there is no v1 {controller} hierarchy, and {what}")
        };
        let dir = match &self.base {
            Some(d) => d.clone(),
            None => {
                if !rustix::process::geteuid().is_root() {
                    return Err(why(format!(
                        "only root can make a base below the cgroup2 root {} that hands it down",
                        cgroup2.display()
                    )));
                }
                let dir = cgroup2.join(format!("daemonic-reliability-{run_id}.limits"));
                std::fs::create_dir(&dir).map_err(|e| why(format!("creating {} failed: {e}", dir.display())))?;
                self.base = Some(dir.clone());
                if swap_total().is_some_and(|kib| kib > 0) && dir.join("memory.swap.max").exists() {
                    // The one swap limit daemonic cannot set (no MemorySwapMax=): the base's holds
                    // for every family below it.
                    let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                }
                dir
            }
        };
        let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        if !available.split_whitespace().any(|c| c == controller) {
            return Err(why(format!(
                "the cgroup2 root {} does not hand it down (cgroup.controllers of {}: {:?})",
                cgroup2.display(),
                dir.display(),
                available.trim()
            )));
        }
        if controller == "memory" && swap_total().is_some_and(|kib| kib > 0) {
            let swap_max = std::fs::read_to_string(dir.join("memory.swap.max")).unwrap_or_default();
            if swap_max.trim() != "0" {
                return Err(why(format!(
                    "this host has swap, and memory.swap.max of {} is {:?}, not 0: MemoryMax= alone would move the \
                     member's pages to swap",
                    dir.display(),
                    swap_max.trim()
                )));
            }
        }
        let file = dir.join("cgroup.subtree_control");
        std::fs::write(&file, format!("+{controller}"))
            .map_err(|e| why(format!("enabling it in {} failed: {e}", file.display())))?;
        Ok(dir)
    }
}

impl Drop for Limits {
    /// Removes the base: what a failed trial left in it is killed, then every directory goes,
    /// deepest first.
    fn drop(&mut self) {
        let Some(base) = self.base.take() else { return };
        let _ = std::fs::write(base.join("cgroup.kill"), "1");
        for _ in 0..250 {
            let mut dirs = Vec::new();
            let mut stack = vec![base.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
                dirs.push(d);
            }
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in &dirs {
                let _ = std::fs::remove_dir(d);
            }
            if !base.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("reliability: could not remove {}", base.display());
    }
}

/// Whether the test user manager can give its units `controller`: `cgroup.controllers` of its
/// root cgroup.
fn manager_has(cgroup2: &Path, controller: &str) -> Result<(), String> {
    let why =
        |what: String| format!("needs the {controller} controller: there is no v1 {controller} hierarchy, and {what}");
    let out = std::process::Command::new("systemctl")
        .args(["--user", "show", "-P", "ControlGroup"])
        .output()
        .map_err(|e| why(format!("`systemctl --user show -P ControlGroup` did not run: {e}")))?;
    let cg = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !cg.starts_with('/') {
        return Err(why(format!(
            "the user manager did not tell its cgroup (`systemctl --user show -P ControlGroup`: {:?} {})",
            cg,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let dir = cgroup2.join(cg.trim_start_matches('/'));
    let available = std::fs::read_to_string(dir.join("cgroup.controllers"))
        .map_err(|e| why(format!("the user manager's cgroup {} cannot be read: {e}", dir.display())))?;
    if available.split_whitespace().any(|c| c == controller) {
        Ok(())
    } else {
        Err(why(format!(
            "the user manager's cgroup {} does not have it (cgroup.controllers: {:?}), so systemd would not enforce \
             the limit (a manager started in a cgroup below one that holds processes, as scripts/user-manager's \
             private one often is, gets no controllers: point DBUS_SESSION_BUS_ADDRESS at a user manager with \
             delegated controllers, such as user@UID.service's)",
            dir.display(),
            available.trim()
        )))
    }
}

/// `SwapTotal` of `/proc/meminfo` in KiB.
fn swap_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| l.strip_prefix("SwapTotal:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// The kernel's log from the moment it was opened on: how a trial on cgroup v2 learns that the
/// OOM killer killed its main member (see the module's documentation).
pub(crate) struct KernelLog {
    file: File,
}

impl KernelLog {
    /// Opens `/dev/kmsg` (non-blocking) at its end: only what the kernel logs from now on is read.
    pub(crate) fn open() -> Result<KernelLog, String> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .map_err(|e| format!("open /dev/kmsg (to see the OOM killer's line; needs root or CAP_SYSLOG): {e}"))?;
        file.seek(SeekFrom::End(0)).map_err(|e| format!("seek to the end of /dev/kmsg: {e}"))?;
        Ok(KernelLog { file })
    }

    /// Whether the kernel logged, since [`KernelLog::open`], that the OOM killer killed `pid`.
    /// The line is written before the victim can die, so it is there once the death was seen;
    /// `grace` is only a margin.
    pub(crate) fn oom_killed(&mut self, pid: u32, grace: Duration) -> Result<bool, String> {
        let killed = format!("Killed process {pid} (");
        let summary = format!(",pid={pid},");
        let deadline = Instant::now() + grace;
        // One record per read; the longest is a little over 1 KiB (with its dictionary lines).
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    let record = String::from_utf8_lossy(&buf[..n]);
                    let message = record.split_once(';').map_or(&*record, |(_, m)| m);
                    if message.contains(&killed) || (message.contains("oom-kill:") && message.contains(&summary)) {
                        return Ok(true);
                    }
                    continue;
                }
                // Records overwritten before they were read: the next read goes on after them.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("read /dev/kmsg: {e}")),
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
