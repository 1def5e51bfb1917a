//! Tests that need a real `systemd --user` manager on a session bus: the ground the systemd
//! backend (transient scopes over D-Bus) stands on.
//!
//! Start one with `eval "$(scripts/user-manager start)"` (it sets `XDG_RUNTIME_DIR`,
//! `DBUS_SESSION_BUS_ADDRESS` and `DAEMONIC_TEST_USER_MANAGER=1`) and stop it with
//! `eval "$(scripts/user-manager stop)"`; `.ci/run` does both. Without a manager these tests
//! skip loudly, and fail when `CI=true`.
//!
//! Every unit name is unique (`daemonic-test-<pid>-<n>-<nanos>`), every unit a test starts is
//! stopped again, and nothing is ever killed by name: only the PIDs the tests started.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;
mod harness;

/// The backend of the helpers in `common`.
const BACKEND: common::Backend = common::Backend::Systemd;

fn main() -> std::process::ExitCode {
    harness::main()
}

/// How long any single `systemctl`/`systemd-run`/`busctl` call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A unit name no other test (or test run) uses.
fn unique_unit() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("daemonic-test-{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

struct Output {
    ok: bool,
    status: String,
    stdout: String,
    stderr: String,
}

/// Waits up to `limit` for `child` to end; on timeout kills and reaps it (by its PID) and
/// returns `None`.
fn wait_or_kill(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs `prog args`, killing it (by its PID) if it takes longer than [`CALL_TIMEOUT`].
fn run(prog: &str, args: &[&str]) -> Output {
    let shown = format!("{prog} {}", args.join(" "));
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let readers = [child.stdout.take().map(reader), child.stderr.take().map(reader)];
    let status = wait_or_kill(&mut child, CALL_TIMEOUT)
        .unwrap_or_else(|| panic!("{shown} did not finish within {CALL_TIMEOUT:?}"));
    let [out, err] = readers.map(|r| r.map(|h| h.join().unwrap_or_default()).unwrap_or_default());
    Output { ok: status.success(), status: status.to_string(), stdout: out, stderr: err }
}

fn reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Runs a command that must succeed and returns its stdout.
fn run_ok(prog: &str, args: &[&str]) -> String {
    let o = run(prog, args);
    assert!(o.ok, "{prog} {} failed ({}):\nstdout: {}\nstderr: {}", args.join(" "), o.status, o.stdout, o.stderr);
    o.stdout
}

/// Names of the units `systemctl --user list-units --all PATTERN` lists.
fn listed_units(pattern: &str) -> Vec<String> {
    run_ok("systemctl", &[common::bus_flag(), "list-units", "--all", "--no-legend", "--plain", "--no-pager", pattern])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Polls `cond` every 10 ms for at most `limit`; true when it held.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The cgroup2 path (`0::` line) of a `/proc/<pid>/cgroup` text.
fn cgroup2_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

/// Where cgroup2 is mounted, from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2").then(|| pre.split_whitespace().nth(4).map(str::to_string))?
    })
}

/// Stops the unit and kills the child (by PID) if a test ends early.
struct ScopeGuard {
    unit: String,
    child: Option<Child>,
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        let _ = Command::new("systemctl")
            .args([common::bus_flag(), "stop", "--no-block", &self.unit])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[harness::test]
fn manager_answers_on_the_session_bus() {
    common::require_manager();
    let state = run("systemctl", &[common::bus_flag(), "is-system-running"]);
    let state = state.stdout.trim();
    assert!(matches!(state, "running" | "degraded"), "systemctl --user is-system-running: {state:?}");

    // The D-Bus API the backend uses, through the bus daemon (not systemd's private socket).
    let out = run_ok(
        "busctl",
        &[
            common::bus_flag(),
            "call",
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "GetUnit",
            "s",
            "init.scope",
        ],
    );
    assert_eq!(out.trim(), "o \"/org/freedesktop/systemd1/unit/init_2escope\"", "GetUnit init.scope");
}

#[harness::test]
fn a_transient_scope_holds_its_process() {
    common::require_manager();
    let unit = unique_unit();
    let scope = format!("{unit}.scope");
    let _guard = ScopeGuard { unit: scope.clone(), child: None };
    let out = run_ok(
        "systemd-run",
        &[
            common::bus_flag(),
            "--scope",
            "--quiet",
            "--collect",
            "--unit",
            &unit,
            "/bin/sh",
            "-c",
            "cat /proc/self/cgroup",
        ],
    );
    let path = cgroup2_path(&out).unwrap_or_else(|| panic!("no 0:: line in {out:?}"));
    assert!(path.ends_with(&format!("/{scope}")), "the scope's process is in {path}, not in {scope}");
    if let Ok(base) = std::env::var("DAEMONIC_TEST_MANAGER_CGROUP") {
        assert!(path.starts_with(&format!("{base}/")), "scope {path} is not below the manager's cgroup {base}");
    }
}

#[harness::test]
fn a_stopped_scope_leaves_nothing() {
    common::require_manager();
    let unit = unique_unit();
    let scope = format!("{unit}.scope");
    // systemd-run --scope execs the command in place: the child *is* the sleeping process.
    let child = Command::new("systemd-run")
        .args([common::bus_flag(), "--scope", "--quiet", "--collect", "--unit", &unit, "sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn systemd-run");
    let pid = child.id();
    let mut guard = ScopeGuard { unit: scope.clone(), child: Some(child) };

    let listed = wait_for(Duration::from_secs(5), || {
        let c = guard.child.as_mut().expect("the child");
        if let Some(st) = c.try_wait().expect("try_wait") {
            let mut err = String::new();
            let _ = c.stderr.take().map(|mut e| e.read_to_string(&mut err));
            panic!("systemd-run --user --scope --unit {unit} sleep 30 exited early ({st}): {err}");
        }
        listed_units("daemonic-test-*").contains(&scope)
    });
    assert!(listed, "{scope} never appeared in systemctl --user list-units 'daemonic-test-*'");
    let active = run_ok("systemctl", &[common::bus_flag(), "show", "--property=ActiveState", "--value", &scope]);
    assert_eq!(active.trim(), "active", "{scope} ActiveState");

    // The sleeping process is in the scope's cgroup; remember that directory.
    let mut cg = String::new();
    assert!(
        wait_for(Duration::from_secs(5), || {
            cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            cgroup2_path(&cg).is_some_and(|p| p.ends_with(&format!("/{scope}")))
        }),
        "process {pid} never landed in {scope}: {cg}"
    );
    let rel = cgroup2_path(&cg).expect("0:: line").to_string();
    let dir = cgroup2_mount().map(|m| format!("{m}{rel}"));
    if let Some(d) = &dir {
        assert!(std::path::Path::new(d).is_dir(), "the scope's cgroup {d} does not exist");
    }

    run_ok("systemctl", &[common::bus_flag(), "stop", &scope]);

    let mut child = guard.child.take().expect("the child");
    let status = wait_or_kill(&mut child, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the scope's process {pid} survived systemctl --user stop {scope} by 5 s"));
    assert!(!status.success(), "sleep 30 ended normally ({status}), not by the stop");

    let gone = wait_for(Duration::from_secs(5), || !listed_units("daemonic-test-*").contains(&scope));
    assert!(gone, "{scope} is still listed after systemctl --user stop");
    if let Some(d) = &dir {
        let removed = wait_for(Duration::from_secs(5), || !std::path::Path::new(d).exists());
        assert!(removed, "the scope's cgroup {d} is still there after the stop");
    }
    drop(guard);
}
