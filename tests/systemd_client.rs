//! The D-Bus client of the systemd backend against a real `systemd --user` manager.
//!
//! Needs a manager that answers on the bus under test (`common::test_bus`: the user manager of
//! the session bus, e.g. the one `scripts/user-manager start` runs, or with
//! `DAEMONIC_TEST_BUS=system` the system manager). Without one these tests are ignored, with
//! the reason, and fail when `CI=true`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use daemonic::__internal::systemd::Client;
use daemonic::__internal::unit_name::{UnitName, UnitType};
use zbus::zvariant::Value;

mod common;
mod harness;

/// The backend of the helpers in `common`.
const BACKEND: common::Backend = common::Backend::Systemd;

fn main() -> std::process::ExitCode {
    harness::main()
}

/// A sleeping child that is killed and reaped whatever happens to the test.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(Command::new("sleep").arg("30").stdin(Stdio::null()).spawn().expect("start sleep"))
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    fn cgroup(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/cgroup", self.pid()))
            .expect("read cgroup")
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            .expect("v2 entry")
    }
    /// Waits up to `limit` for the child to end; returns whether it did.
    fn ended_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.0.try_wait().expect("try_wait").is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn unique(tag: &str) -> UnitName {
    UnitName::new(&["daemonic", "test", &format!("{tag}{}", std::process::id())], UnitType::Scope).expect("name")
}

fn scope_properties(description: &str, pid: u32) -> Vec<(&'static str, Value<'static>)> {
    vec![
        ("Description", Value::from(description.to_string())),
        ("PIDs", Value::from(vec![pid])),
        ("CollectMode", Value::from("inactive-or-failed")),
    ]
}

#[harness::test]
fn a_transient_scope_holds_its_process_and_stops_with_it() {
    common::require_manager();
    let client = Client::connect(common::test_bus()).expect("connect to the user manager");
    let unit = unique("client");
    let mut child = Sleeper::start();
    client.start_transient(&unit, &scope_properties("daemonic test scope", child.pid())).expect("start scope");
    assert!(child.cgroup().ends_with(&format!("/{unit}")), "{} is not in {unit}", child.cgroup());
    assert!(client.exists(unit.as_str()), "{unit} is loaded");
    client.stop(unit.as_str()).expect("stop");
    assert!(child.ended_within(Duration::from_secs(5)), "stopping {unit} ended its process");
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.exists(unit.as_str()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!client.exists(unit.as_str()), "{unit} was collected");
}

/// A unit of the same name that is in use belongs to someone else: the start is refused and that
/// unit's process goes on. (The reset and retry of a stale, failed unit is tested against the
/// fake manager in `tests/systemd_fake.rs`: a real one cannot be made to keep a failed scope on
/// demand.)
#[harness::test]
fn a_unit_in_use_is_never_reset() {
    common::require_manager();
    let client = Client::connect(common::test_bus()).expect("connect");
    let unit = unique("inuse");
    let mut old = Sleeper::start();
    client.start_transient(&unit, &scope_properties("in use", old.pid())).expect("first start");
    let new = Sleeper::start();
    let e = client.start_transient(&unit, &scope_properties("second", new.pid())).expect_err("refused");
    assert_eq!(e.kind(), daemonic::ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains(unit.as_str()) && e.to_string().contains("active"), "{e}");
    assert!(!old.ended_within(Duration::from_millis(300)), "the unit in use was stopped");
    assert!(old.cgroup().ends_with(&format!("/{unit}")), "the first process is still in {unit}");
    assert!(!new.cgroup().ends_with(&format!("/{unit}")), "the second process was not moved");
    client.stop(unit.as_str()).expect("stop");
    assert!(old.ended_within(Duration::from_secs(5)), "stopping {unit} ended its process");
}

#[harness::test]
fn a_failed_start_names_the_unit() {
    common::require_manager();
    let client = Client::connect(common::test_bus()).expect("connect");
    let unit = unique("nopid");
    // PID 0x7fff_fff0 does not exist: systemd refuses the scope.
    let e = client.start_transient(&unit, &scope_properties("no such process", 0x7fff_fff0)).expect_err("refused");
    assert!(e.to_string().contains(unit.as_str()), "{e}");
    assert!(!client.exists(unit.as_str()), "nothing half-created");
}

#[harness::test]
fn a_gated_child_runs_only_inside_its_scope() {
    common::require_manager();
    let client = Client::connect(common::test_bus()).expect("connect");
    let unit = unique("gated");
    let mut cmd = daemonic::Command::new("/bin/sh");
    cmd.args(["-c", "cat /proc/self/cgroup"]).stdout(daemonic::Stdio::Piped);
    let mut member =
        daemonic::__internal::spawn_in_scope(&client, &unit, "daemonic gated test", &mut cmd, &[]).expect("spawn");
    let mut out = String::new();
    std::io::Read::read_to_string(member.stdout.as_mut().expect("piped"), &mut out).expect("read");
    assert_eq!(member.wait().expect("wait"), 0);
    let v2 = out.lines().find_map(|l| l.strip_prefix("0::")).expect("v2 line");
    assert!(v2.ends_with(&format!("/{unit}")), "the program's first look at its cgroup: {v2}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.exists(unit.as_str()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!client.exists(unit.as_str()), "{unit} was collected after its process ended");
}

#[harness::test]
fn a_refused_scope_leaves_no_process_and_no_unit() {
    common::require_manager();
    let client = Client::connect(common::test_bus()).expect("connect");
    let unit = unique("refused");
    let marker = format!("/tmp/daemonic-refused-{}", std::process::id());
    let mut cmd = daemonic::Command::new("/bin/sh");
    cmd.args(["-c", &format!("touch {marker}")]);
    // An unknown property makes systemd refuse the unit.
    let e = daemonic::__internal::spawn_in_scope(
        &client,
        &unit,
        "refused",
        &mut cmd,
        &[("NoSuchProperty", Value::from(1u32))],
    )
    .expect_err("refused");
    assert!(e.to_string().contains(unit.as_str()), "{e}");
    assert!(!std::path::Path::new(&marker).exists(), "the held child never ran its program");
    assert!(!client.exists(unit.as_str()), "no unit remains");
}

#[harness::test]
fn resource_properties_reach_the_unit() {
    common::require_manager();
    let client = Client::connect(common::test_bus()).expect("connect");
    let unit = unique("props");
    let props: Vec<(&str, Value<'static>)> = ["TasksMax=100", "MemoryMax=512M", "CPUWeight=200"]
        .iter()
        .map(|a| {
            daemonic::__internal::systemd::resource_property(
                &daemonic::__internal::properties::parse(a).expect("valid"),
            )
        })
        .collect();
    let mut cmd = daemonic::Command::new("sleep");
    cmd.arg("30");
    let member = daemonic::__internal::spawn_in_scope(&client, &unit, "props", &mut cmd, &props).expect("spawn");
    let shown = Command::new("systemctl")
        .arg(common::bus_flag())
        .args(["show", unit.as_str(), "-p", "TasksMax", "-p", "MemoryMax", "-p", "CPUWeight"])
        .output()
        .expect("systemctl show");
    let text = String::from_utf8_lossy(&shown.stdout);
    member.terminate().expect("terminate");
    member.wait().expect("wait");
    client.stop(unit.as_str()).expect("stop");
    for expected in ["TasksMax=100", "MemoryMax=536870912", "CPUWeight=200"] {
        assert!(text.lines().any(|l| l == expected), "{expected} missing from:\n{text}");
    }
}
