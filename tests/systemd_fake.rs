//! The failure paths of the systemd backend's D-Bus client (`daemonic::__internal::systemd::Client`),
//! against a fake manager.
//!
//! A real systemd cannot be made, on demand, to fail a start job, leave a job unanswered, keep a
//! stale unit of the wanted name, report that name as in use, or vanish between two calls; the
//! fake here does each of these on cue. It serves `org.freedesktop.systemd1.Manager` (and, on
//! one unit object, `org.freedesktop.systemd1.Unit.ActiveState`) with zbus over a peer-to-peer
//! connection on a `UnixStream::pair()`, inside the test process: no bus daemon, no systemd,
//! nothing left behind. It records every call it receives, so the tests check what the client
//! did (reset and stop a stale unit, never stop a live one) as well as what it returned.
//! `tests/systemd_client.rs` runs the same client against a real `systemd --user`.
//!
//! The fake sends a job's `JobRemoved` *before* it answers the call that created the job: the
//! order a client that subscribed only after calling would miss.
//!
//! Every client call runs on a thread with a deadline, so a hang fails its test instead of
//! blocking the run.

// `#[zbus::interface]` adds a public trait of signal emitters, without docs.
#![allow(missing_docs)]

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use daemonic::__internal::spawn_in_scope;
use daemonic::__internal::systemd::{Bus, Client};
use daemonic::__internal::unit_name::{UnitName, UnitType};
use daemonic::{Command, ErrorKind, Stdio};
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue};

const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
/// The object of the one unit `GetUnit` finds.
const UNIT_PATH: &str = "/org/freedesktop/systemd1/unit/fake";
/// The clients' job timeout, unless a test sets its own.
const JOB_TIMEOUT: Duration = Duration::from_secs(1);
/// Longer than any client call in these tests should take.
const DEADLINE: Duration = Duration::from_secs(5);

/// What the fake does on one `StartTransientUnit`.
#[derive(Clone, Copy, Debug)]
enum OnStart {
    /// Answers a new job, and sends `JobRemoved` with this result for it.
    Finish(&'static str),
    /// Answers a new job; sends `JobRemoved` with result "failed" for another job first, then
    /// with this result for ours.
    FinishAfterOther(&'static str),
    /// Answers a new job that never ends.
    Hang,
    /// Answers the error `org.freedesktop.systemd1.UnitExists`.
    Exists,
}

/// The fake's script and what it saw.
#[derive(Default)]
struct State {
    /// The answers to successive `StartTransientUnit` calls; the last one repeats.
    starts: Vec<OnStart>,
    /// The `ActiveState` of the unit `GetUnit` finds; `None`: no unit is loaded.
    active_state: Option<&'static str>,
    /// The result of every stop job.
    stop_result: &'static str,
    /// Every call, as "Method unit".
    calls: Vec<String>,
    /// The `PIDs` property of every start.
    pids: Vec<Vec<u32>>,
    next_job: u32,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The manager's errors that the client tells apart.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.systemd1")]
enum SystemdError {
    #[zbus(error)]
    ZBus(zbus::Error),
    UnitExists(String),
    NoSuchUnit(String),
}

/// The fake `org.freedesktop.systemd1.Manager`.
struct Manager(Arc<Mutex<State>>);

impl Manager {
    /// Records the call; the state, locked, to decide the answer.
    fn record(&self, call: String) -> MutexGuard<'_, State> {
        let mut state = lock(&self.0);
        state.calls.push(call);
        state
    }

    fn no_such_unit(name: &str) -> SystemdError {
        SystemdError::NoSuchUnit(format!("Unit {name} not loaded."))
    }
}

fn new_job(state: &mut State) -> (u32, OwnedObjectPath) {
    state.next_job += 1;
    let id = state.next_job;
    (id, OwnedObjectPath::try_from(format!("{MANAGER_PATH}/job/{id}")).expect("job path"))
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    /// `Subscribe()`.
    fn subscribe(&self) {
        drop(self.record("Subscribe".to_string()));
    }

    /// `StartTransientUnit(name, mode, properties, aux)`: as the script says.
    async fn start_transient_unit(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        name: String,
        _mode: String,
        properties: Vec<(String, OwnedValue)>,
        _aux: Vec<(String, Vec<(String, OwnedValue)>)>,
    ) -> Result<OwnedObjectPath, SystemdError> {
        let (on_start, (id, job), other) = {
            let mut state = self.record(format!("StartTransientUnit {name}"));
            let pids = properties
                .iter()
                .find(|(key, _)| key == "PIDs")
                .map(|(_, value)| Vec::<u32>::try_from(value.try_clone().expect("no fds")).expect("PIDs is au"))
                .unwrap_or_default();
            state.pids.push(pids);
            let seen = state.calls.iter().filter(|c| c.starts_with("StartTransientUnit ")).count();
            let on_start = *state.starts.get(seen - 1).or(state.starts.last()).expect("a start answer");
            (on_start, new_job(&mut state), new_job(&mut state))
        };
        match on_start {
            OnStart::Exists => return Err(SystemdError::UnitExists(format!("Unit {name} was already loaded."))),
            OnStart::Hang => {}
            OnStart::Finish(result) => {
                Self::job_removed(&emitter, id, job.as_ref(), &name, result).await?;
            }
            OnStart::FinishAfterOther(result) => {
                Self::job_removed(&emitter, other.0, other.1.as_ref(), "other.scope", "failed").await?;
                Self::job_removed(&emitter, id, job.as_ref(), &name, result).await?;
            }
        }
        Ok(job)
    }

    /// `StopUnit(name, mode)`: a job that ends with the stop result; `NoSuchUnit` when no unit is
    /// loaded.
    async fn stop_unit(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        name: String,
        _mode: String,
    ) -> Result<OwnedObjectPath, SystemdError> {
        let (id, job, result) = {
            let mut state = self.record(format!("StopUnit {name}"));
            if state.active_state.is_none() {
                return Err(Self::no_such_unit(&name));
            }
            let (id, job) = new_job(&mut state);
            (id, job, state.stop_result)
        };
        Self::job_removed(&emitter, id, job.as_ref(), &name, result).await?;
        Ok(job)
    }

    /// `KillUnit(name, whom, signal)`: nothing; `NoSuchUnit` when no unit is loaded.
    fn kill_unit(&self, name: String, _whom: String, _signal: i32) -> Result<(), SystemdError> {
        let state = self.record(format!("KillUnit {name}"));
        if state.active_state.is_none() { Err(Self::no_such_unit(&name)) } else { Ok(()) }
    }

    /// `ResetFailedUnit(name)`: nothing; `NoSuchUnit` when no unit is loaded.
    fn reset_failed_unit(&self, name: String) -> Result<(), SystemdError> {
        let state = self.record(format!("ResetFailedUnit {name}"));
        if state.active_state.is_none() { Err(Self::no_such_unit(&name)) } else { Ok(()) }
    }

    /// `GetUnit(name)`: the one unit object, or `NoSuchUnit`.
    fn get_unit(&self, name: String) -> Result<OwnedObjectPath, SystemdError> {
        let state = self.record(format!("GetUnit {name}"));
        match state.active_state {
            Some(_) => Ok(OwnedObjectPath::try_from(UNIT_PATH).expect("unit path")),
            None => Err(Self::no_such_unit(&name)),
        }
    }

    /// `JobRemoved(id, job, unit, result)`.
    #[zbus(signal)]
    async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

/// The fake `org.freedesktop.systemd1.Unit` of the unit `GetUnit` finds.
struct Unit(Arc<Mutex<State>>);

#[zbus::interface(name = "org.freedesktop.systemd1.Unit")]
impl Unit {
    /// `ActiveState`, as the script says.
    #[zbus(property)]
    fn active_state(&self) -> String {
        lock(&self.0).active_state.unwrap_or("inactive").to_string()
    }
}

/// A fake manager served on one end of a socket pair; the client is on the other.
struct Fake {
    state: Arc<Mutex<State>>,
    server: Option<zbus::Connection>,
}

impl Fake {
    /// A fake that answers the starts with `starts` and whose existing unit, if any, is in
    /// `active_state`; stop jobs end with "done". Returns it with a client connected to it,
    /// whose job timeout is [`JOB_TIMEOUT`].
    fn start(starts: &[OnStart], active_state: Option<&'static str>) -> (Fake, Client) {
        let state = Arc::new(Mutex::new(State {
            starts: starts.to_vec(),
            active_state,
            stop_result: "done",
            ..State::default()
        }));
        let (server_end, client_end) = UnixStream::pair().expect("socket pair");
        let server = zbus::connection::Builder::async_io_unix_stream(server_end)
            .server(zbus::Guid::generate())
            .expect("server guid")
            .p2p()
            .serve_at(MANAGER_PATH, Manager(state.clone()))
            .expect("serve the manager")
            .serve_at(UNIT_PATH, Unit(state.clone()))
            .expect("serve the unit")
            .build();
        let client = zbus::connection::Builder::async_io_unix_stream(client_end).p2p().build();
        let (server, client) = zbus::block_on(futures_lite::future::zip(server, client));
        let server = server.expect("fake manager's connection");
        let client = client.expect("client's connection");
        let mut client = within("Client::with_connection", move || Client::with_connection(client, Bus::User))
            .0
            .expect("a client of the fake manager");
        // A missed JobRemoved then fails as "no answer" in a second, not at the deadline.
        client.set_job_timeout(JOB_TIMEOUT);
        (Fake { state, server: Some(server) }, client)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The calls the fake received. Never `Subscribe`: a job's `JobRemoved` comes to the client
    /// that asked for the job without it, and one subscriber makes a real manager send every
    /// unit's signals.
    fn calls(&self) -> Vec<String> {
        let calls = self.state().calls.clone();
        assert!(!calls.iter().any(|c| c == "Subscribe"), "the client subscribed: {calls:?}");
        calls
    }

    /// Closes the fake's end of the connection, as a manager or bus that went away.
    fn close(&mut self) {
        if let Some(server) = self.server.take() {
            zbus::block_on(server.close()).expect("close the fake manager's connection");
        }
    }
}

/// Runs `f` on a thread; returns its value and how long it took, and fails the test when it
/// takes longer than [`DEADLINE`] (the thread is left behind; the test process ends soon).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> (T, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(value) => (value, started.elapsed()),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not return within {DEADLINE:?}"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// Starts `unit` with no properties, within the deadline; gives the client back.
fn start(client: Client, unit: &UnitName) -> (Client, daemonic::Result<()>, Duration) {
    let unit = unit.clone();
    let ((client, result), took) = within("start_transient", move || {
        let result = client.start_transient(&unit, &[]);
        (client, result)
    });
    (client, result, took)
}

fn unit(test: &str) -> UnitName {
    UnitName::new(&["daemonic-fake", test], UnitType::Scope).expect("unit name")
}

#[test]
fn a_failed_start_job_is_an_error_naming_unit_and_result() {
    let (fake, client) = Fake::start(&[OnStart::Finish("failed")], None);
    let unit = unit("job-failed");
    let (_, result, _) = start(client, &unit);
    let err = result.expect_err("a failed job must not count as started");
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Os, "{text}");
    assert!(text.contains(unit.as_str()), "the error names the unit: {text}");
    assert!(text.contains("result \"failed\""), "the error gives the job's result: {text}");
    assert_eq!(fake.calls(), [format!("StartTransientUnit {unit}")]);
}

#[test]
fn an_unanswered_start_job_times_out() {
    let (_fake, mut client) = Fake::start(&[OnStart::Hang], None);
    client.set_job_timeout(Duration::from_millis(200));
    let unit = unit("timeout");
    let (_, result, took) = start(client, &unit);
    let err = result.expect_err("a job that never ends must not count as started");
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Os, "{text}");
    assert!(text.contains(unit.as_str()), "the error names the unit: {text}");
    assert!(text.contains("did not finish its start job within 0.2 s"), "the error says what timed out: {text}");
    assert!(text.contains("DAEMONIC_JOB_TIMEOUT"), "the error says how to wait longer: {text}");
    assert!(took >= Duration::from_millis(200), "gave up after {took:?}, before the timeout");
    assert!(took < Duration::from_secs(1), "gave up only after {took:?}");
}

#[test]
fn a_stale_unit_is_reset_stopped_and_the_start_retried_once() {
    let (fake, client) = Fake::start(&[OnStart::Exists, OnStart::Finish("done")], Some("failed"));
    let unit = unit("stale");
    let (_, result, _) = start(client, &unit);
    result.expect("the retried start succeeds");
    assert_eq!(
        fake.calls(),
        [
            format!("StartTransientUnit {unit}"),
            format!("GetUnit {unit}"),
            format!("ResetFailedUnit {unit}"),
            format!("StopUnit {unit}"),
            format!("StartTransientUnit {unit}"),
        ]
    );
}

#[test]
fn a_unit_in_use_is_never_stopped() {
    let (fake, client) = Fake::start(&[OnStart::Exists, OnStart::Finish("done")], Some("active"));
    let unit = unit("in-use");
    let (_, result, _) = start(client, &unit);
    let err = result.expect_err("a live unit of the same name must not be taken over");
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{text}");
    assert!(text.contains(unit.as_str()), "the error names the unit: {text}");
    assert!(text.contains("active"), "the error says the unit is active: {text}");
    let calls = fake.calls();
    for forbidden in ["StopUnit", "KillUnit", "ResetFailedUnit"] {
        assert!(!calls.iter().any(|c| c.starts_with(forbidden)), "{forbidden} on a live unit: {calls:?}");
    }
    assert_eq!(calls.iter().filter(|c| c.starts_with("StartTransientUnit")).count(), 1, "no retry: {calls:?}");
}

#[test]
fn a_unit_that_exists_twice_is_a_clear_error() {
    let (fake, client) = Fake::start(&[OnStart::Exists, OnStart::Exists], Some("failed"));
    let unit = unit("exists-twice");
    let (_, result, _) = start(client, &unit);
    let err = result.expect_err("the start cannot succeed");
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{text}");
    assert!(text.contains(unit.as_str()), "the error names the unit: {text}");
    assert!(text.contains("could not be reset"), "the error says the reset did not help: {text}");
    let calls = fake.calls();
    assert_eq!(calls.iter().filter(|c| c.starts_with("StartTransientUnit")).count(), 2, "one retry: {calls:?}");
}

#[test]
fn only_the_own_jobs_result_counts() {
    let (fake, client) = Fake::start(&[OnStart::FinishAfterOther("done")], None);
    let unit = unit("matched");
    let (_, result, _) = start(client, &unit);
    result.expect("another job's failure is not ours");
    assert_eq!(fake.calls(), [format!("StartTransientUnit {unit}")]);
}

#[test]
fn a_failed_scope_leaves_no_child_and_no_unit() {
    let (fake, client) = Fake::start(&[OnStart::Finish("failed")], None);
    let unit = unit("spawn");
    let scope = unit.clone();
    let (result, _) = within("spawn_in_scope", move || {
        let mut cmd = Command::new("/bin/sleep");
        cmd.arg("30").stdin(Stdio::Null).stdout(Stdio::Null).stderr(Stdio::Null);
        match spawn_in_scope(&client, &scope, "daemonic fake test", &mut cmd, &[]) {
            Ok(member) => {
                let _ = member.kill();
                let _ = member.wait();
                Err(member.pid())
            }
            Err(e) => Ok(e),
        }
    });
    let err = result.unwrap_or_else(|pid| panic!("spawn_in_scope started pid {pid} although its job failed"));
    let text = err.to_string();
    assert!(text.contains(unit.as_str()) && text.contains("result \"failed\""), "{text}");

    let pids = fake.state().pids.clone();
    assert_eq!(pids.len(), 1, "one start with one PIDs property: {pids:?}");
    assert_eq!(pids[0].len(), 1, "the scope's PIDs: {pids:?}");
    let pid = pids[0][0];
    let proc_dir = format!("/proc/{pid}");
    if Path::new(&proc_dir).exists() {
        let status = std::fs::read_to_string(format!("{proc_dir}/status")).unwrap_or_default();
        let state = status.lines().find(|l| l.starts_with("State:")).unwrap_or("State: gone").to_string();
        // Leave nothing behind, then fail.
        if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
        }
        panic!("the child {pid} outlived the failed start ({state})");
    }
    let calls = fake.calls();
    assert!(calls.contains(&format!("StopUnit {unit}")), "the unit is stopped after the failure: {calls:?}");
}

#[test]
fn a_manager_gone_mid_family_is_an_error_not_a_hang() {
    let (mut fake, client) = Fake::start(&[OnStart::Finish("done")], None);
    let first = unit("gone-first");
    let (client, result, _) = start(client, &first);
    result.expect("the first start succeeds");
    fake.close();
    let second = unit("gone-second");
    let (_, result, took) = start(client, &second);
    let err = result.expect_err("no manager, no unit");
    let text = err.to_string();
    assert!(text.contains(second.as_str()), "the error names the unit: {text}");
    assert!(took < Duration::from_secs(1), "took {took:?} to notice the manager was gone");
    assert_eq!(err.kind(), ErrorKind::BackendUnavailable, "a manager that went away: {text}");
}

#[test]
fn a_failed_stop_job_is_an_error_naming_unit_and_result() {
    let (fake, client) = Fake::start(&[OnStart::Finish("done")], Some("active"));
    fake.state().stop_result = "failed";
    let unit = unit("stop-failed");
    let name = unit.to_string();
    let (result, _) = within("stop_and_wait", move || client.stop_and_wait(&name));
    let err = result.expect_err("a failed stop job must not count as stopped");
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Os, "{text}");
    assert!(text.contains(unit.as_str()) && text.contains("result \"failed\""), "{text}");
}

#[test]
fn a_unit_that_is_not_loaded_counts_as_stopped_but_cannot_be_killed() {
    let (fake, client) = Fake::start(&[OnStart::Finish("done")], None);
    let unit = unit("not-loaded");
    let name = unit.to_string();
    let ((exists, stop, stop_and_wait, kill), _) = within("stop, stop_and_wait, kill, exists", move || {
        (client.exists(&name), client.stop(&name), client.stop_and_wait(&name), client.kill(&name, "all", 9))
    });
    assert!(!exists, "exists() of a unit that is not loaded");
    stop.expect("stop() of a unit that is not loaded");
    stop_and_wait.expect("stop_and_wait() of a unit that is not loaded");
    let err = kill.expect_err("kill() of a unit that is not loaded");
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Os, "{text}");
    assert!(text.contains(unit.as_str()) && text.contains("NoSuchUnit"), "{text}");
    assert!(fake.calls().contains(&format!("KillUnit {unit}")));
}
