//! Shared helpers for the `daemonic` integration tests, one module for every test binary.
//!
//! - [`scenario`]: the library tests' re-executed children (a family moves a whole process,
//!   so each scenario that opens one runs in a copy of the test binary).
//! - [`daemonic`]: a fluent runner for the binary that always kills what it started on timeout.
//! - [`require_cgroup`], [`require_manager`]: end a test as ignored, with the reason (failed in
//!   CI), when this host has no writable cgroup v2 or no systemd manager answering.
//! - [`assert_no_leftovers`]: C10, no family cgroup directory and no marked process remains.
//! - [`marker`]: unique strings to tag the processes a test starts, so tests never confuse
//!   each other's processes (and never kill anything by name).

#![allow(dead_code)]

pub mod scenario;

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;

/// The backend a test crate's scenarios run on (each crate that uses these helpers defines
/// `const BACKEND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Directories below the test's own cgroup.
    Cgroupfs,
    /// Transient units of the test user manager (`scripts/user-manager`), on its session bus.
    Systemd,
}

impl Backend {
    /// The value of `--backend`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cgroupfs => "cgroupfs",
            Backend::Systemd => "systemd",
        }
    }
}

/// The backend of this test crate.
pub fn backend() -> Backend {
    crate::BACKEND
}

/// A cgroup path as the cgroupfs backend would name it, whichever backend made it: on systemd,
/// each slice becomes its last level unescaped with `-N` for `_N` (`daemonic-web_42.family.slice`
/// becomes `daemonic-web-42.family`), a slice's own scope is dropped (it is its member's
/// processes), and a lone daemon's scope is read like a slice. So one assertion on paths holds
/// for both backends.
pub fn logical(cg: &str) -> String {
    let level = |comp: &str, parent: &str| -> Option<String> {
        let stem = match comp.strip_suffix(".scope") {
            Some(stem) if parent.strip_suffix(".slice") == Some(stem) => return Some(String::new()),
            Some(stem) => stem,
            None => comp.strip_suffix(".slice")?,
        };
        let last = daemonic::__internal::unit_name::unescape(stem.rsplit('-').next()?)?;
        for kind in [".family", ".member", ".daemon", ".member.daemons", ".daemon.daemons"] {
            if let Some(body) = last.strip_suffix(kind)
                && let Some((name, n)) = body.rsplit_once('_')
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
            {
                let prefix = if kind == ".family" { "daemonic-" } else { "" };
                return Some(format!("{prefix}{name}-{n}{kind}"));
            }
        }
        None
    };
    let comps: Vec<&str> = cg.split('/').collect();
    comps
        .iter()
        .enumerate()
        .map(|(i, c)| level(c, if i > 0 { comps[i - 1] } else { "" }).unwrap_or_else(|| c.to_string()))
        .filter(|c| !c.is_empty())
        .fold(String::new(), |acc, c| acc + "/" + &c)
        .replacen("/", if cg.starts_with('/') { "/" } else { "" }, 1)
}

/// Path of the `daemonic` binary built by cargo for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_daemonic")
}

/// Directory of the binary, prepended to `PATH` so scripts can call `daemonic`.
pub fn bin_dir() -> PathBuf {
    Path::new(bin()).parent().expect("the daemonic binary has a parent directory").to_path_buf()
}

/// Environment variable with the path of the real python interpreter, for re-executed children.
pub const ENV_PYTHON: &str = "DAEMONIC_TEST_PYTHON";

/// The real python3 interpreter (not a pyenv shim: a shim forks, which a daemon cannot do).
pub fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        // A re-executed scenario child gets it from its parent, so that it never runs the
        // shim from inside a family.
        if let Some(p) = std::env::var(ENV_PYTHON).ok().filter(|p| !p.is_empty()) {
            return p;
        }
        let out = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output();
        match out {
            Ok(o) if o.status.success() => {
                let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
                if p.is_empty() { "/usr/bin/python3".to_string() } else { p }
            }
            _ => "/usr/bin/python3".to_string(),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Unique names and markers
// ---------------------------------------------------------------------------------------------

static COUNTER: AtomicU32 = AtomicU32::new(1);

fn run_salt() -> u32 {
    static SALT: OnceLock<u32> = OnceLock::new();
    *SALT.get_or_init(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_micros() % 10_000).unwrap_or(0))
}

/// A string unique to this call, this process and this run: `<tag>-<pid>-<salt>-<n>`.
/// Valid as a daemonic family name when `tag` is (letters, digits, `-`).
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{tag}-{}-{}-{n}", std::process::id(), run_salt())
}

/// A family name unique to this test and this test process: `<test>-p<pid>`.
pub fn family_name(test: &str) -> String {
    format!("{test}-p{}", std::process::id())
}

/// A unique numeric marker usable as a `sleep` argument: `<secs>.0000<pid:7><salt:4><n:5>`.
/// The fractional part is far below a millisecond, so `sleep <marker>` sleeps `secs` seconds
/// (scaled by the host's [`slowness`], as the bounds that tell such a sleeper from a prompt end
/// are), and the string is unique, so `/proc/*/cmdline` scans find exactly this test's
/// processes.
pub fn marker(secs: u32) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let secs = (f64::from(secs) * slowness()).ceil() as u64;
    format!("{secs}.0000{:07}{:04}{:05}", std::process::id(), run_salt(), n)
}

/// Nanoseconds since the epoch (same clock as `date +%s%N` and python's `time.time_ns()`).
pub fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("system clock after 1970").as_nanos()
}

// ---------------------------------------------------------------------------------------------
// cgroup v2 discovery
// ---------------------------------------------------------------------------------------------

/// Mount point of the cgroup2 hierarchy, from `/proc/self/mountinfo` (never hard-coded).
pub fn cgroup2_mount() -> Option<PathBuf> {
    static MOUNT: OnceLock<Option<PathBuf>> = OnceLock::new();
    MOUNT.get_or_init(|| daemonic::__internal::cgroup::Hierarchy::host().ok().map(|h| h.mount().to_path_buf())).clone()
}

/// The v2 cgroup path (`0::/path`) of a process, as written in `/proc/<pid>/cgroup`.
pub fn cgroup_of(pid: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(|s| s.to_string())
}

/// The directory of the calling process's own v2 cgroup.
pub fn own_cgroup_dir() -> Option<PathBuf> {
    cgroup_dir(&cgroup_of("self")?)
}

/// The filesystem directory of a v2 cgroup path.
pub fn cgroup_dir(cgpath: &str) -> Option<PathBuf> {
    let mount = cgroup2_mount()?;
    Some(mount.join(cgpath.trim_start_matches('/')))
}

fn probe_cgroup() -> Result<PathBuf, String> {
    let mount = cgroup2_mount().ok_or("no cgroup2 mount in /proc/self/mountinfo")?;
    let own = cgroup_of("self").ok_or("no `0::` line in /proc/self/cgroup")?;
    let dir = mount.join(own.trim_start_matches('/'));
    let probe =
        dir.join(format!("daemonic-test-probe-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst)));
    std::fs::create_dir(&probe).map_err(|e| format!("mkdir {}: {e}", probe.display()))?;
    std::fs::remove_dir(&probe).map_err(|e| format!("rmdir {}: {e}", probe.display()))?;
    Ok(dir)
}

/// Why the tests cannot create cgroups here, if they cannot (probed once): the probe makes and
/// removes a directory under the test's own cgroup.
pub fn cgroup_problem() -> Option<String> {
    static RESULT: OnceLock<Option<String>> = OnceLock::new();
    RESULT.get_or_init(|| probe_cgroup().err().map(|e| format!("no writable cgroup v2 is available: {e}"))).clone()
}

/// Why this crate's backend cannot run here, if it cannot: no writable cgroup v2, or (systemd
/// backend) no manager answering on the bus under test.
pub fn backend_problem() -> Option<String> {
    cgroup_problem().or_else(|| match backend() {
        Backend::Systemd => manager_problem(),
        Backend::Cgroupfs => None,
    })
}

/// Ends the calling test as ignored (failed with `CI=true`) unless this crate's backend can run
/// here: a writable cgroup v2 and, for the systemd backend, a manager that answers.
pub fn require_cgroup() {
    if let Some(why) = backend_problem() {
        skip(&why);
    }
}

/// Ends the calling test as ignored, saying why (failed with `CI=true`).
pub use crate::harness::skip;

// ---------------------------------------------------------------------------------------------
// The systemd manager under test
// ---------------------------------------------------------------------------------------------

/// The manager the systemd tests use: `DAEMONIC_TEST_BUS=system` for the system manager (PID 1;
/// root only), otherwise the user manager of the session bus (`DBUS_SESSION_BUS_ADDRESS`, or
/// `$XDG_RUNTIME_DIR/bus`), which is what `scripts/user-manager start` provides.
pub fn test_bus() -> daemonic::Bus {
    match std::env::var("DAEMONIC_TEST_BUS").as_deref() {
        Ok("system") => daemonic::Bus::System,
        Ok("user") | Ok("") | Err(_) => daemonic::Bus::User,
        Ok(other) => panic!("DAEMONIC_TEST_BUS={other:?}: expected `user` or `system`"),
    }
}

/// Why no systemd manager can be used here, if none can (asked once): the manager of
/// [`test_bus`] must answer a call for its version on that bus.
pub fn manager_problem() -> Option<String> {
    static RESULT: OnceLock<Option<String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let bus = test_bus();
            let fix = match bus {
                daemonic::Bus::User => {
                    "start one with eval \"$(scripts/user-manager start)\", or set DAEMONIC_TEST_BUS=system as root"
                }
                daemonic::Bus::System => "boot with systemd as PID 1, or use DAEMONIC_TEST_BUS=user",
            };
            match daemonic::__internal::systemd::Client::connect(bus) {
                Ok(client) => match client.version() {
                    Some(_) => None,
                    None => Some(format!("the {} systemd manager does not answer on its bus ({fix})", bus.as_str())),
                },
                Err(e) => Some(format!("{e} ({fix})")),
            }
        })
        .clone()
}

/// Ends the calling test as ignored (failed with `CI=true`) unless the manager under test
/// answers.
pub fn require_manager() {
    if let Some(why) = manager_problem() {
        skip(&why);
    }
}

/// The option that selects the manager under test in systemctl, systemd-run and busctl.
pub fn bus_flag() -> &'static str {
    match test_bus() {
        daemonic::Bus::User => "--user",
        daemonic::Bus::System => "--system",
    }
}

/// `systemctl` for the manager under test (`--user` or `--system`).
pub fn systemctl() -> Command {
    let mut cmd = Command::new("systemctl");
    cmd.arg(bus_flag()).stdin(Stdio::null());
    cmd
}

// ---------------------------------------------------------------------------------------------
// Leftover detection (C10)
// ---------------------------------------------------------------------------------------------

fn walk_dirs(dir: &Path, found: &mut dyn FnMut(&Path, &str)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        found(&path, &name);
        walk_dirs(&path, found);
    }
}

/// Every directory under the cgroup2 mount whose name satisfies `pred`.
pub fn cgroup_dirs_where(pred: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let Some(mount) = cgroup2_mount() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk_dirs(&mount, &mut |p, n| {
        if pred(n) {
            out.push(p.to_path_buf());
        }
    });
    out
}

/// Is `dirname` the directory of a family named `name` (`daemonic-<name>-<N>.family`), or its
/// slice on systemd (`…-<escaped name>_<N>.family.slice`)?
pub fn is_family_dir_of(dirname: &str, name: &str) -> bool {
    if dirname.ends_with(".slice") {
        let l = logical(dirname);
        return !l.ends_with(".slice") && is_family_dir_of(l.trim_start_matches('/'), name);
    }
    let Some(rest) = dirname.strip_prefix(&format!("daemonic-{name}-")) else {
        return false;
    };
    let Some(num) = rest.strip_suffix(".family") else {
        return false;
    };
    !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit())
}

/// Family directories of the family named `name`, anywhere under the cgroup2 mount.
pub fn family_dirs(name: &str) -> Vec<PathBuf> {
    cgroup_dirs_where(&|n| is_family_dir_of(n, name))
}

/// Live processes whose command line contains `marker` (zombies have an empty cmdline).
pub fn marked_processes(marker: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    let needle = marker.as_bytes();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if !needle.is_empty() && cmdline.windows(needle.len()).any(|w| w == needle) {
            let shown: String = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            out.push((pid, shown.trim_end().to_string()));
        }
    }
    out
}

/// What the processes carrying `marker` are doing, for a failure message: one line per kind
/// (the first two words of the command line, the state, the kernel function it waits in) with
/// how many there are.
pub fn describe_marked_processes(marker: &str) -> String {
    let mut kinds: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for (pid, cmdline) in marked_processes(marker) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, r)| r.split(' ').next().unwrap_or("?")).unwrap_or("?");
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        let what: Vec<&str> = cmdline.split(' ').take(2).collect();
        *kinds.entry(format!("{} (state {state}, waits in {wchan:?})", what.join(" "))).or_default() += 1;
    }
    kinds.iter().map(|(k, n)| format!("{n:4} x {k}\n")).collect()
}

/// Does the process `pid` still exist and carry `marker` in its cmdline? (PID-reuse safe.)
pub fn pid_alive_with(pid: u32, marker: &str) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(c) => !marker.is_empty() && c.windows(marker.len()).any(|w| w == marker.as_bytes()),
        Err(_) => false,
    }
}

/// Is `pid` an existing, non-zombie process?
pub fn pid_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // state is the first field after the ")" that closes comm
            let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start().chars().next());
            !matches!(state, Some(Some('Z')) | Some(Some('X')) | None)
        }
        Err(_) => false,
    }
}

/// What is left of a family right now: its cgroup dirs, processes carrying one of `markers`,
/// and processes whose command line names one of its cgroup dirs.
pub fn leftovers(name: &str, markers: &[&str]) -> Vec<String> {
    let mut left: Vec<String> = family_dirs(name).into_iter().map(|p| format!("cgroup dir {}", p.display())).collect();
    for m in markers {
        for (pid, cmd) in marked_processes(m) {
            left.push(format!("process {pid}: {cmd}"));
        }
    }
    for (pid, cmd) in guardians_of(name) {
        left.push(format!("process {pid}: {cmd}"));
    }
    if backend() == Backend::Systemd {
        left.extend(family_units(name).into_iter().map(|u| format!("unit {u}")));
    }
    left
}

/// Helpers of the family (its guardian): processes that name its cgroup dir on their command line.
pub fn guardians_of(name: &str) -> Vec<(u32, String)> {
    marked_processes(".family")
        .into_iter()
        .filter(|(_, cmd)| cmd.split(['/', ' ']).any(|part| is_family_dir_of(part, name)))
        .collect()
}

/// Units of the test user manager that belong to the family `name` (its slice and everything
/// named below it), loaded in any state, failed ones included.
pub fn family_units(name: &str) -> Vec<String> {
    let Ok(out) = systemctl()
        .args(["list-units", "--all", "--plain", "--no-legend", "--no-pager", "daemonic-*"])
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|unit| {
            let slice = unit.strip_suffix(".scope").map_or(unit.to_string(), |s| format!("{s}.slice"));
            family_slice_prefix_of(&slice, name)
        })
        .map(str::to_string)
        .collect()
}

/// Whether some prefix of the slice `slice` is a family slice of `name`.
fn family_slice_prefix_of(slice: &str, name: &str) -> bool {
    let stem = slice.trim_end_matches(".slice");
    stem.match_indices('-')
        .map(|(i, _)| &stem[..i])
        .chain(std::iter::once(stem))
        .any(|p| is_family_dir_of(&format!("{p}.slice"), name))
}

/// C10: nothing of the family `name` remains (no `daemonic-<name>-*.family` dir anywhere under
/// the cgroup2 mount, no process whose cmdline contains one of `markers`). Allows up to 2 s for
/// asynchronous cleanup and prints how long it took when that was not immediate.
pub fn assert_no_leftovers(name: &str, markers: &[&str]) -> Duration {
    assert_no_leftovers_within(name, markers, Duration::from_secs(2))
}

/// Like [`assert_no_leftovers`] with an explicit grace period (scaled by the host's
/// [`slowness`]). Returns how long the cleanup took from the first look.
pub fn assert_no_leftovers_within(name: &str, markers: &[&str], grace: Duration) -> Duration {
    let start = Instant::now();
    let first = leftovers(name, markers);
    if first.is_empty() {
        return start.elapsed();
    }
    let mut last = first.clone();
    let clean = wait_until(grace, || {
        last = leftovers(name, markers);
        last.is_empty()
    });
    if clean {
        eprintln!("note: family {name}: leftovers disappeared only after {:?}: {first:?}", start.elapsed());
        return start.elapsed();
    }
    panic!("family {name} left things behind after {:?} (C10):\n  {}", start.elapsed(), last.join("\n  "));
}

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

/// How much slower than the machine the bounds were written on this host is (at least 1): the
/// median time to fork, exec and reap `/bin/true`, measured once per test binary, over
/// [`REFERENCE_FORK_EXEC`]. A VM under emulation measures 20–30. `DAEMONIC_TEST_SLOWNESS`
/// overrides it.
pub fn slowness() -> f64 {
    static FACTOR: OnceLock<f64> = OnceLock::new();
    *FACTOR.get_or_init(|| {
        if let Some(f) = std::env::var("DAEMONIC_TEST_SLOWNESS").ok().and_then(|v| v.parse::<f64>().ok()) {
            return f.max(1.0);
        }
        let mut times: Vec<Duration> = (0..15)
            .filter_map(|_| {
                let start = Instant::now();
                let status = Command::new("/bin/true").stdin(Stdio::null()).status().ok()?;
                status.success().then(|| start.elapsed())
            })
            .collect();
        times.sort();
        let Some(median) = times.get(times.len() / 2) else { return 1.0 };
        let factor = (median.as_secs_f64() / REFERENCE_FORK_EXEC.as_secs_f64()).max(1.0);
        if factor > 1.5 {
            eprintln!("note: fork+exec takes {median:?} here: time bounds are scaled by {factor:.1}");
        }
        factor
    })
}

/// Fork, exec and reap of `/bin/true` from a test binary on the machines the bounds were
/// written on (0.4–0.7 ms measured), with room for a loaded machine.
pub const REFERENCE_FORK_EXEC: Duration = Duration::from_millis(1);

/// `d` on this host: multiplied by [`slowness`].
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(slowness())
}

/// A latency bound of `ms` milliseconds on the machines it was written on, on this host (times
/// [`slowness`]): how long a kill, a wake-up or a shutdown may take.
pub fn scaled_ms(ms: f64) -> f64 {
    ms * slowness()
}

/// Polls `cond` every 2 ms until it holds (true) or `timeout` (scaled by the host's
/// [`slowness`]) passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + scaled(timeout);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits for `path` to exist and be non-empty; returns its content, panics on timeout.
pub fn wait_for_file(path: &Path, timeout: Duration) -> String {
    let mut content = String::new();
    let ok = wait_until(timeout, || match std::fs::read_to_string(path) {
        Ok(c) if !c.is_empty() => {
            content = c;
            true
        }
        _ => false,
    });
    assert!(ok, "timed out after {timeout:?} waiting for {}", path.display());
    content
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// Writes `content` to `dir/name` with the given mode; returns the path as a String.
pub fn write_file(dir: &Path, name: &str, content: &str, mode: u32) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    path.to_str().expect("utf-8 temp path").to_string()
}

/// A signal mask (`SigBlk`, `SigIgn`, …) of a `/proc/…/status` file; bit N-1 is signal N.
pub fn status_mask(status: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(status).unwrap_or_else(|e| panic!("read {status}: {e}"));
    let prefix = format!("{key}:");
    let value = text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {key} in {status}"));
    u64::from_str_radix(value.trim(), 16).unwrap_or_else(|e| panic!("{key} in {status}: {value:?}: {e}"))
}

/// Parses a file of one integer (ns timestamp) per line; ignores partial/garbage lines.
pub fn read_timestamps(path: &Path) -> Vec<u128> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| l.trim().parse::<u128>().ok()).collect()
}

/// Milliseconds from `a` to `b` (negative when `b` is earlier), for ns timestamps.
pub fn ms_between(a: u128, b: u128) -> f64 {
    (b as f64 - a as f64) / 1e6
}

// ---------------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------------

/// Result of one run of the binary.
#[derive(Debug, Clone)]
pub struct Output {
    /// Everything written to stdout (by the binary and everything that inherited the pipe).
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// Exit code, when the process exited normally.
    pub code: Option<i32>,
    /// Signal number, when the process was killed by a signal.
    pub signal: Option<i32>,
    /// Wall time from spawn to exit.
    pub duration: Duration,
    /// Time from exit until every writer of stdout/stderr was gone (EOF on both pipes);
    /// `None` when some process still held the pipes after the grace period.
    pub eof_delay: Option<Duration>,
    /// The command line, for messages.
    pub cmdline: String,
}

impl Output {
    /// The exit code; panics (with the whole output) when the process died by a signal.
    pub fn code(&self) -> i32 {
        match self.code {
            Some(c) => c,
            None => panic!("process died by signal {:?}\n{}", self.signal, self.dump()),
        }
    }

    /// Stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Lines of stderr that start with `error:`.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.starts_with("error:")).collect()
    }

    /// A readable description for assertion messages.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "command: {}", self.cmdline);
        let _ = writeln!(
            s,
            "exit: code={:?} signal={:?} after {:?}; pipes closed {:?} after exit",
            self.code, self.signal, self.duration, self.eof_delay
        );
        let _ = writeln!(s, "--- stdout ---\n{}", self.stdout);
        let _ = writeln!(s, "--- stderr ---\n{}", self.stderr);
        s
    }

    /// Asserts exit code `code`, with the output in the message.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit status\n{}", self.dump());
        self
    }
}

/// Builder for one invocation of the binary; see [`daemonic`].
pub struct Daemonic {
    cmd: Command,
    cmdline: String,
    timeout: Duration,
    eof_grace: Duration,
    family: Option<String>,
}

/// Starts building an invocation of the `daemonic` binary with `args`.
///
/// `PATH` gets the binary's directory first (scripts can call `daemonic`), the
/// `DAEMONIC_*` variables of the outer environment are removed, stdin is `/dev/null`,
/// stdout and stderr are captured. Default timeout 20 s.
pub fn daemonic<I, S>(args: I) -> Daemonic
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    daemonic_via(&[], args)
}

/// Like [`daemonic`], but runs the binary through a wrapper command line `prefix`
/// (e.g. `["setpriv", "--reuid=65534", "--"]`).
pub fn daemonic_via<I, S>(prefix: &[&str], args: I) -> Daemonic
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
    let mut cmd = match prefix.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    cmd.args(&args);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut new_path = bin_dir().into_os_string();
    new_path.push(":");
    new_path.push(path);
    cmd.env("PATH", new_path);
    for var in ["DAEMONIC_CGROUP", "DAEMONIC_PLACEMENT", "DAEMONIC_BUS", "DAEMONIC_LOG"] {
        cmd.env_remove(var);
    }
    cmd.env("DAEMONIC_BACKEND", backend().name());
    if backend() == Backend::Systemd {
        cmd.env("DAEMONIC_BUS", test_bus().as_str());
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let family = family_of_args(&args);
    let cmdline = prefix
        .iter()
        .map(|p| p.to_string())
        .chain(std::iter::once("daemonic".to_string()))
        .chain(args.iter().map(|a| {
            let s = a.to_string_lossy();
            if s.len() > 200 {
                format!("{}...({} chars)", s.chars().take(200).collect::<String>(), s.len())
            } else {
                s.into_owned()
            }
        }))
        .collect::<Vec<_>>()
        .join(" ");
    Daemonic {
        cmd,
        cmdline,
        timeout: scaled(Duration::from_secs(20)),
        eof_grace: scaled(Duration::from_secs(2)),
        family,
    }
}

/// The `--name` of a `run` invocation (for best-effort cleanup on timeout).
fn family_of_args(args: &[OsString]) -> Option<String> {
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    if args.first().map(String::as_str) != Some("run") {
        return None;
    }
    let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let opts = &args[..end];
    for (i, a) in opts.iter().enumerate() {
        if a == "--name" {
            return opts.get(i + 1).cloned();
        }
        if let Some(v) = a.strip_prefix("--name=") {
            return Some(v.to_string());
        }
    }
    None
}

impl Daemonic {
    /// Kill the child (and the family, best effort) and fail after `secs` seconds (scaled by
    /// the host's [`slowness`]).
    pub fn timeout(mut self, secs: f64) -> Self {
        self.timeout = scaled(Duration::from_secs_f64(secs));
        self
    }

    /// How long to wait, after exit, for every inheritor of stdout/stderr to close them (scaled
    /// by the host's [`slowness`]).
    pub fn eof_grace(mut self, secs: f64) -> Self {
        self.eof_grace = scaled(Duration::from_secs_f64(secs));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, val: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, val);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// Gives access to the underlying command (e.g. to change uid).
    pub fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// Runs to completion (or timeout, which kills the child and panics).
    pub fn run(self) -> Output {
        self.spawn().wait()
    }

    /// Starts the binary and returns a handle.
    pub fn spawn(mut self) -> Running {
        let start = Instant::now();
        let mut child = self.cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", self.cmdline));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let out_pipe = child.stdout.take().expect("stdout is piped");
        let err_pipe = child.stderr.take().expect("stderr is piped");
        let readers = vec![reader(out_pipe, stdout.clone()), reader(err_pipe, stderr.clone())];
        Running {
            child,
            start,
            timeout: self.timeout,
            eof_grace: self.eof_grace,
            stdout,
            stderr,
            readers,
            cmdline: self.cmdline,
            family: self.family,
            status: None,
        }
    }
}

fn reader(mut pipe: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.lock().expect("output buffer lock").extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    })
}

/// A running invocation. Dropping it kills the child if it still runs.
pub struct Running {
    child: Child,
    start: Instant,
    timeout: Duration,
    eof_grace: Duration,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    cmdline: String,
    family: Option<String>,
    status: Option<(ExitStatus, Duration)>,
}

impl Running {
    /// PID of the `daemonic` process we started.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stdout captured so far.
    pub fn stdout_now(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().expect("stdout lock")).into_owned()
    }

    /// Stderr captured so far.
    pub fn stderr_now(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).into_owned()
    }

    /// Waits until stdout contains `needle`; panics with the output so far on timeout.
    pub fn wait_stdout(&mut self, needle: &str, timeout: Duration) {
        let ok = wait_until(timeout, || self.stdout_now().contains(needle));
        if !ok {
            let exited = self.child.try_wait().ok().flatten();
            panic!(
                "timed out after {timeout:?} waiting for {needle:?} on stdout of {} \
                 (exited: {exited:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.cmdline,
                self.stdout_now(),
                self.stderr_now()
            );
        }
    }

    /// Has the process exited (it is reaped then)?
    pub fn try_exited(&mut self) -> bool {
        if self.status.is_some() {
            return true;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.status = Some((st, self.start.elapsed()));
                true
            }
            _ => false,
        }
    }

    /// Sends `sig` to the process we started (only while it is not reaped, so its PID
    /// cannot have been reused).
    pub fn signal(&mut self, sig: rustix::process::Signal) {
        assert!(!self.try_exited(), "{} already exited; cannot signal it", self.cmdline);
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), sig)
            .unwrap_or_else(|e| panic!("kill({}, {sig:?}): {e}", self.child.id()));
    }

    /// SIGKILLs the process we started (not its family).
    pub fn kill(&mut self) {
        self.signal(rustix::process::Signal::KILL);
    }

    /// Waits for exit (killing and failing on timeout), then for EOF on the pipes.
    pub fn wait(mut self) -> Output {
        let deadline = self.start + self.timeout;
        while !self.try_exited() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let family = self.family.clone();
                if let Some(f) = &family {
                    kill_family_best_effort(f);
                }
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "TIMEOUT after {:?}: killed {} (pid {}){}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.timeout,
                    self.cmdline,
                    self.child.id(),
                    family.map(|f| format!(" and ran `daemonic kill {f}`")).unwrap_or_default(),
                    self.stdout_now(),
                    self.stderr_now()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let (status, duration) = self.status.expect("status recorded by try_exited");
        let exit_at = self.start + duration;
        let eof_deadline = Instant::now() + self.eof_grace;
        let mut eof_delay = None;
        loop {
            if self.readers.iter().all(|r| r.is_finished()) {
                eof_delay = Some(exit_at.elapsed());
                break;
            }
            if Instant::now() >= eof_deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // The readers that are finished are joined; others are detached (a leftover process
        // still holds the pipe, which the leftover checks will report).
        for r in std::mem::take(&mut self.readers) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
        Output {
            stdout: self.stdout_now(),
            stderr: self.stderr_now(),
            code: status.code(),
            signal: status.signal(),
            duration,
            eof_delay,
            cmdline: self.cmdline.clone(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.try_exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if let Some(f) = &self.family {
                kill_family_best_effort(f);
            }
        }
    }
}

/// `daemonic kill <family>` with a short timeout; errors ignored (cleanup after a failure).
pub fn kill_family_best_effort(family: &str) {
    let Ok(mut child) = Command::new(bin())
        .args(["kill", family])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return;
    };
    let ok = wait_until(Duration::from_secs(5), || matches!(child.try_wait(), Ok(Some(_))));
    if !ok {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Convenience: `["run", "--name", name, "--", "sh", "-c", script, "sh-<marker>"]`
/// (the last word becomes `$0` of the script, so the main shell carries the marker).
pub fn run_sh(name: &str, script: &str, marker: &str) -> Vec<String> {
    vec![
        "run".into(),
        "--name".into(),
        name.into(),
        "--".into(),
        "sh".into(),
        "-c".into(),
        script.into(),
        format!("sh-{marker}"),
    ]
}

/// A test-made cgroup directory, removed (best effort, retrying up to 2 s) when dropped.
pub struct CgroupDirGuard {
    /// The directory.
    pub path: PathBuf,
}

impl CgroupDirGuard {
    /// Creates `parent/name` as a new cgroup.
    pub fn create(parent: &Path, name: &str) -> CgroupDirGuard {
        let path = parent.join(name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        CgroupDirGuard { path }
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        self.path.to_str().expect("utf-8 cgroup path")
    }

    /// Subdirectories (child cgroups) currently inside.
    pub fn children(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.path)
            .map(|it| it.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

impl Drop for CgroupDirGuard {
    fn drop(&mut self) {
        let ok = wait_until(Duration::from_secs(2), || std::fs::remove_dir(&self.path).is_ok() || !self.path.exists());
        if !ok {
            eprintln!("warning: could not remove test cgroup {}", self.path.display());
        }
    }
}
