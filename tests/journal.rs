//! daemonic in production: its events in a real journal, read back with `journalctl`, and
//! `daemonic run` as a `Type=notify` service (a real notify socket, then a real `systemd --user`
//! service with `Delegate=yes`).
//!
//! Needs a running `systemd-journald` (`eval "$(scripts/journald start)"`, before the user
//! manager) and, for the service tests, the test user manager (`scripts/user-manager`); `.ci/run`
//! starts both. Without them the tests are ignored, with the reason, and fail when `CI=true`.

mod common;
mod harness;

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The backend of the helpers in `common` (the systemd backend is asked for explicitly here).
const BACKEND: common::Backend = common::Backend::Cgroupfs;

fn main() -> std::process::ExitCode {
    harness::main()
}

/// One journal entry's fields.
type Entry = BTreeMap<String, String>;

/// Ends the test as ignored (failed with `CI=true`) unless it can run here: a writable cgroup
/// v2 and a running journald. A journald runs when its socket accepts a connection (a stale
/// socket file left by a stopped journald refuses it) and `journalctl` works.
fn require_journal() {
    require_cgroup();
    let socket = "/run/systemd/journal/socket";
    let answers = std::os::unix::net::UnixDatagram::unbound().and_then(|s| s.connect(socket));
    if let Err(e) = answers {
        skip(&format!("no systemd-journald answers on {socket} ({e}): run eval \"$(scripts/journald start)\""));
    }
    if !Command::new("journalctl").arg("--version").output().is_ok_and(|o| o.status.success()) {
        skip("journalctl does not run");
    }
}

/// A family name never used before, even in an earlier run against the same persistent journal.
fn unique_name(test: &str) -> String {
    format!("{test}-{}-{}", std::process::id(), now_ns() % 1_000_000_000)
}

/// The journal's entries matching `filter` (`FIELD=VALUE`), oldest first.
fn journal(filter: &str) -> Vec<Entry> {
    let out = Command::new("journalctl")
        .args(["--no-pager", "-o", "json", filter])
        .stdin(Stdio::null())
        .output()
        .expect("run journalctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            v.as_object()
                .expect("an entry is an object")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect()
        })
        .collect()
}

/// The entries of family `name` once its `family-ended` event is in (at most 10 s).
fn family_life(name: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let ended = wait_until(Duration::from_secs(10), || {
        entries = journal(&format!("DAEMONIC_FAMILY={name}"));
        entries.iter().any(|e| field(e, "DAEMONIC_EVENT") == "family-ended")
    });
    assert!(ended, "no family-ended event of {name} in the journal; found:\n{}", show(&entries));
    entries
}

fn field<'a>(e: &'a Entry, key: &str) -> &'a str {
    e.get(key).map_or("", String::as_str)
}

fn show(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| format!("  {} {}: {}", field(e, "SYSLOG_IDENTIFIER"), field(e, "DAEMONIC_EVENT"), field(e, "MESSAGE")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The one entry with these field values; panics with the whole life when there is not exactly one.
fn one<'a>(entries: &'a [Entry], want: &[(&str, &str)]) -> &'a Entry {
    let found: Vec<&Entry> = entries.iter().filter(|e| want.iter().all(|(k, v)| field(e, k) == *v)).collect();
    assert_eq!(found.len(), 1, "expected one entry with {want:?}, found {}:\n{}", found.len(), show(entries));
    found[0]
}

/// The life of a family that runs a daemon and a worker that exits with 3, on `backend`: every
/// step is an entry with the family's fields, in order. The main member waits until the daemon
/// runs its program: a main member that ends while its daemon is still being placed ends that
/// daemon before it ever logs its start (rightly so: C2).
fn family_life_is_in_the_journal(backend: &str) {
    let name = unique_name("jlife");
    let marker = marker(60);
    let script = format!(
        "daemonic spawn --daemon --name logger -- sleep {marker} & logger=$!; echo logger=$logger\n\
         daemonic spawn --name worker -- sh -c 'exit 3'; echo worker=$?\n\
         until [ \"$(cat /proc/$logger/comm)\" = sleep ]; do sleep 0.01; done\n\
         exit 5"
    );
    let mut run = daemonic(["run", "--backend", backend, "--name", &name, "--", "sh", "-c", &script]);
    if backend == "systemd" {
        run = run.env("DAEMONIC_BACKEND", "systemd").env("DAEMONIC_BUS", test_bus().as_str());
    }
    let out = run.run();
    out.assert_code(5);
    assert!(out.lines().contains(&"worker=3"), "{}", out.dump());
    let logger_pid = out.lines().iter().find_map(|l| l.strip_prefix("logger=")).expect("logger's pid").to_string();

    let life = family_life(&name);
    let id = field(&life[0], "DAEMONIC_FAMILY_ID").to_string();
    assert!(!id.is_empty(), "{}", show(&life));
    for e in &life {
        assert_eq!(field(e, "DAEMONIC_FAMILY_ID"), id, "one family, one id:\n{}", show(&life));
        assert!(!field(e, "MESSAGE").is_empty());
    }
    let started = one(&life, &[("DAEMONIC_EVENT", "family-started")]);
    assert_eq!(field(started, "DAEMONIC_BACKEND"), backend);
    let main = one(&life, &[("DAEMONIC_EVENT", "spawned"), ("DAEMONIC_MEMBER", "main")]);
    assert_eq!(field(main, "DAEMONIC_DAEMON"), "false");
    let main_pid = field(main, "DAEMONIC_PID");
    let logger = one(&life, &[("DAEMONIC_EVENT", "spawned"), ("DAEMONIC_MEMBER", "logger")]);
    assert_eq!(field(logger, "DAEMONIC_DAEMON"), "true");
    assert_eq!(field(logger, "DAEMONIC_PID"), logger_pid, "the daemon's real PID");
    one(&life, &[("DAEMONIC_EVENT", "spawned"), ("DAEMONIC_MEMBER", "worker"), ("DAEMONIC_DAEMON", "false")]);
    one(&life, &[("DAEMONIC_EVENT", "ended"), ("DAEMONIC_MEMBER", "worker")]);
    let exited = one(&life, &[("DAEMONIC_EVENT", "exited"), ("DAEMONIC_MEMBER", "main")]);
    assert_eq!(field(exited, "DAEMONIC_EXITCODE"), "5");
    assert_eq!(field(exited, "DAEMONIC_PID"), main_pid);
    let killed = one(&life, &[("DAEMONIC_EVENT", "daemons-killed"), ("DAEMONIC_MEMBER", "main")]);
    assert_eq!(field(killed, "DAEMONIC_DAEMONS"), "1");
    // The guardian logs under its own name; the family ends with its cleanup.
    assert_eq!(field(killed, "SYSLOG_IDENTIFIER"), "daemonic-guardian");
    let last = life.last().expect("entries");
    assert!(
        ["family-ended", "exited"].contains(&field(last, "DAEMONIC_EVENT")),
        "the life ends with the cleanup (and the supervisor's exit):\n{}",
        show(&life)
    );
    let order: Vec<&str> = life.iter().map(|e| field(e, "DAEMONIC_EVENT")).collect();
    let pos = |ev: &str| order.iter().position(|e| *e == ev).expect("event present");
    assert!(pos("family-started") < pos("spawned"), "{order:?}");
    assert!(pos("daemons-killed") < pos("family-ended"), "{order:?}");
    assert_no_leftovers(&name, &[&marker]);
    if backend == "systemd" {
        assert!(family_units(&name).is_empty(), "units left: {:?}", family_units(&name));
    }
}

#[harness::test]
fn family_life_is_in_the_journal_on_cgroupfs() {
    require_journal();
    family_life_is_in_the_journal("cgroupfs");
}

#[harness::test]
fn family_life_is_in_the_journal_on_systemd() {
    require_journal();
    require_manager();
    family_life_is_in_the_journal("systemd");
}

/// `-q` keeps standard error quiet, yet the journal still tells the family's life.
#[harness::test]
fn quiet_stderr_still_logs_to_the_journal() {
    require_journal();
    let name = unique_name("jquiet");
    let out = daemonic(["-q", "run", "--backend", "cgroupfs", "--name", &name, "--", "true"]).run();
    out.assert_code(0);
    assert_eq!(out.stderr, "", "{}", out.dump());
    let life = family_life(&name);
    one(&life, &[("DAEMONIC_EVENT", "family-started")]);
    // And -v says on stderr what it did, as readable lines without the fields' names.
    let name = unique_name("jverbose");
    let out = daemonic(["-v", "run", "--backend", "cgroupfs", "--name", &name, "--", "true"]).run();
    out.assert_code(0);
    assert!(out.stderr.lines().any(|l| l.starts_with("daemonic: member main of family ")), "{}", out.dump());
    assert!(!out.stderr.contains("daemonic_family"), "{}", out.dump());
}

// ---------------------------------------------------------------------------------------------
// sd_notify
// ---------------------------------------------------------------------------------------------

/// The datagrams a notify socket received within `timeout` after the last one.
fn notifications(socket: &UnixDatagram, until: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while !until(&got) && Instant::now() < deadline {
        socket.set_read_timeout(Some(Duration::from_millis(200))).expect("set a timeout");
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

/// `daemonic run` with `NOTIFY_SOCKET`: `READY=1` while the main member runs (not before, not at
/// its end), `STATUS=` lines that count members and daemons as they come, `STOPPING=1` once the
/// main member has ended.
#[harness::test]
fn notify_socket_gets_ready_status_and_stopping() {
    require_cgroup();
    let dir = tempdir();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).expect("bind a notify socket");
    let name = family_name("notify");
    let marker = marker(60);
    let go = dir.path().join("go");
    let script = format!(
        "while [ ! -e {go} ]; do sleep 0.01; done\n\
         daemonic spawn --daemon --name d -- sleep {marker} &\n\
         daemonic spawn --name w -- sleep 0.6\n\
         echo done",
        go = go.display()
    );
    let running = daemonic(["run", "--backend", "cgroupfs", "--name", &name, "--", "sh", "-c", &script])
        .env("NOTIFY_SOCKET", &path)
        .spawn();

    let first = notifications(&socket, |got| !got.is_empty());
    assert!(!first.is_empty(), "no notification at all");
    assert!(first[0].lines().any(|l| l == "READY=1"), "READY=1 first: {first:?}");
    assert!(first[0].contains("STATUS=family "), "{first:?}");
    assert!(first[0].contains("1 member running, 0 daemons"), "{first:?}");
    // READY came while the main member waits for us: it runs, and has not ended.
    assert!(!go.exists());
    std::fs::write(&go, "").expect("release the main member");

    let rest = notifications(&socket, |got| got.iter().any(|m| m.contains("STOPPING=1")));
    let all = [first, rest].concat();
    assert!(all.iter().any(|m| m.contains("2 members running, 1 daemon")), "the counts follow the family: {all:?}");
    let stopping = all.iter().find(|m| m.contains("STOPPING=1")).expect("STOPPING=1");
    assert!(stopping.contains("main member exited with code 0"), "{stopping}");
    assert_eq!(all.iter().filter(|m| m.contains("READY=1")).count(), 1, "{all:?}");
    let out = running.wait();
    out.assert_code(0);
    assert_no_leftovers(&name, &[&marker]);
}

/// The recommended production setup, for real: `daemonic run` as a `Type=notify` service with
/// `Delegate=yes` in the test user manager. The service is active only once READY=1 came,
/// shows the family's counts as its status, logs its events to the journal with the family's
/// fields (and, its stderr being the journal, no duplicate plain lines), and ends cleanly.
#[harness::test]
fn type_notify_service_with_delegate() {
    require_journal();
    require_manager();
    let name = unique_name("jsvc");
    let unit = format!("daemonic-test-{name}.service");
    let dir = tempdir();
    let go = dir.path().join("go");
    let marker = marker(60);
    let script = format!(
        "{bin} spawn --daemon --name d -- sleep {marker} &\n\
         while [ ! -e {go} ]; do sleep 0.01; done\n\
         exit 0",
        bin = bin(),
        go = go.display()
    );
    let start = Instant::now();
    let out = Command::new("systemd-run")
        .arg(format!("--{}", test_bus().as_str()))
        .args(["--quiet", "--collect", "-p", "Type=notify", "-p", "Delegate=yes", "-p", "KillMode=mixed"])
        .arg(format!("--unit={unit}"))
        .args([bin(), "-v", "run", "--backend", "cgroupfs", "--name", &name, "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("run systemd-run");
    let _stop = UnitGuard(unit.clone());
    assert!(out.status.success(), "systemd-run: {}", String::from_utf8_lossy(&out.stderr));
    // systemd-run returns once the start job is done: for Type=notify, once READY=1 came.
    let show = |prop: &str| {
        let out = systemctl().args(["show", "--value", "-p", prop, &unit]).output().expect("systemctl show");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(show("ActiveState"), "active", "after {:?}", start.elapsed());
    let counted = wait_until(Duration::from_secs(5), || show("StatusText").contains("1 member running, 1 daemon"));
    assert!(counted, "StatusText: {:?}", show("StatusText"));
    std::fs::write(&go, "").expect("release the main member");
    let gone = wait_until(Duration::from_secs(10), || {
        let state = show("ActiveState");
        state == "inactive" || state.is_empty() || show("LoadState") == "not-found"
    });
    assert!(gone, "the service did not end: {}", show("ActiveState"));

    let life = family_life(&name);
    one(&life, &[("DAEMONIC_EVENT", "daemons-killed"), ("DAEMONIC_DAEMONS", "1")]);
    one(&life, &[("DAEMONIC_EVENT", "exited"), ("DAEMONIC_EXITCODE", "0")]);
    // stderr was the journal (JOURNAL_STREAM): no plain copy of the events from the stream.
    let unit_field = match test_bus() {
        daemonic::Bus::User => "_SYSTEMD_USER_UNIT",
        daemonic::Bus::System => "_SYSTEMD_UNIT",
    };
    let plain = journal(&format!("{unit_field}={unit}"))
        .into_iter()
        .filter(|e| field(e, "_TRANSPORT") == "stdout" && field(e, "MESSAGE").starts_with("daemonic"))
        .count();
    assert_eq!(plain, 0, "events were logged twice, as plain lines too");
    assert_no_leftovers(&name, &[&marker]);
}

/// Stops and collects a test unit whatever happened to the test.
struct UnitGuard(String);

impl Drop for UnitGuard {
    fn drop(&mut self) {
        for args in [["stop", self.0.as_str()], ["reset-failed", self.0.as_str()]] {
            let _ = systemctl().args(args).stderr(Stdio::null()).status();
        }
    }
}
