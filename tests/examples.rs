//! The examples (`cargo run --example NAME`) print what the Python originals print.
//!
//! Each example is run as a program, as a user would, on the cgroupfs backend and then on the
//! systemd backend of the test user manager (`scripts/user-manager`; ignored without
//! it, a failure when `CI=true`). `cargo test` builds the examples before it runs this; the
//! binaries are in `target/<profile>/examples/`.

mod common;
mod harness;

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `tests/common` asks every test crate for its backend; the runs below choose theirs per run.
const BACKEND: common::Backend = common::Backend::Cgroupfs;

fn main() -> std::process::ExitCode {
    harness::main()
}

const LIMIT: Duration = Duration::from_secs(60);

/// What a run of an example printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

fn example(name: &str) -> PathBuf {
    let path = common::bin_dir().join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds the examples (or run `cargo build --examples`)",
        path.display()
    );
    path
}

/// The backends to run on: both, so the test is ignored (failed with `CI=true`) unless a
/// writable cgroup v2 and a systemd manager are there.
fn backends() -> [common::Backend; 2] {
    common::require_cgroup();
    common::require_manager();
    [common::Backend::Cgroupfs, common::Backend::Systemd]
}

/// The command that runs example `name` on `backend`, in a clean daemonic environment.
fn command(name: &str, backend: common::Backend) -> Command {
    let mut cmd = Command::new(example(name));
    for var in
        ["DAEMONIC_CGROUP", "DAEMONIC_PLACEMENT", "DAEMONIC_BUS", "DAEMONIC_LOG", "RUST_BACKTRACE", "NOTIFY_SOCKET"]
    {
        cmd.env_remove(var);
    }
    cmd.env("DAEMONIC_BACKEND", backend.name());
    if backend == common::Backend::Systemd {
        cmd.env("DAEMONIC_BUS", common::test_bus().as_str());
    }
    cmd
}

/// Starts example `name` on `backend` with its output piped.
fn start(name: &str, backend: common::Backend) -> (Child, JoinHandle<String>, JoinHandle<String>) {
    let mut child = command(name, backend)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start example {name}: {e}"));
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    (child, out, err)
}

/// Waits for the example (killing it by PID after the limit) and for the end of its output,
/// which comes only when every process holding the pipe has ended.
fn finish(name: &str, mut child: Child, out: JoinHandle<String>, err: JoinHandle<String>) -> Run {
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("example {name} still ran after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run { code: status.code(), stdout: out.join().expect("stdout"), stderr: err.join().expect("stderr") }
}

fn run(name: &str, backend: common::Backend) -> Run {
    let (child, out, err) = start(name, backend);
    let run = finish(name, child, out, err);
    assert_nothing_left(name, backend);
    run
}

/// C10: the example's family (named after the program) is gone, units included.
fn assert_nothing_left(name: &str, backend: common::Backend) {
    let gone = common::wait_until(Duration::from_secs(5), || {
        common::family_dirs(name).is_empty()
            && (backend != common::Backend::Systemd || common::family_units(name).is_empty())
    });
    assert!(gone, "{name} on {backend:?} left {:?} {:?}", common::family_dirs(name), common::family_units(name));
}

fn assert_prints(name: &str, expected: &[&str]) {
    for backend in backends() {
        let run = run(name, backend);
        assert_eq!(run.code, Some(0), "{name} on {backend:?}: stderr: {}", run.stderr);
        assert_eq!(run.lines(), expected, "{name} on {backend:?}: stderr: {}", run.stderr);
        assert!(run.stderr.is_empty(), "{name} on {backend:?} wrote to stderr: {}", run.stderr);
    }
}

#[harness::test]
fn seed_current_process() {
    assert_prints("seed_current_process", &["Daemon process: False"]);
}

#[harness::test]
fn seed_new_process() {
    assert_prints("seed_new_process", &["Daemon process: False"]);
}

#[harness::test]
fn seed_daemon_arg() {
    assert_prints("seed_daemon_arg", &["Daemon process: True"]);
}

#[harness::test]
fn seed_daemon_property() {
    assert_prints("seed_daemon_property", &["Daemon process: True"]);
}

#[harness::test]
fn seed_daemon_child() {
    for backend in backends() {
        let run = run("seed_daemon_child", backend);
        assert_eq!(run.code, Some(0), "the main process ends normally, as in Python: {}", run.stderr);
        assert_eq!(run.lines(), ["Daemon process 1: True"], "{backend:?}; task2 never runs");
        assert!(
            run.stderr.contains("\ndaemonic processes are not allowed to have children\n"),
            "{backend:?}: the daemon reports the error: {}",
            run.stderr
        );
    }
}

#[harness::test]
fn seed_terminated_abruptly() {
    for backend in backends() {
        let run = run("seed_terminated_abruptly", backend);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let lines = run.lines();
        assert_eq!(lines.first(), Some(&"Daemon process: True"), "{backend:?}: {lines:?}\n{}", run.stderr);
        // The daemon's 31st tick falls a few ms after the main process's 3 s (the interpreter
        // starts after the main process began to sleep), so on a busy machine it can land
        // between "Main process exiting..." and the kill of the exit handler, as it can in
        // Python: at most that one line may follow, and it must be the next number.
        let exiting = lines.iter().position(|l| *l == "Main process exiting...");
        let exiting = exiting.unwrap_or_else(|| panic!("{backend:?}: no exit message: {lines:?}"));
        let after = &lines[exiting + 1..];
        let counted: Vec<&str> = lines[1..exiting].iter().chain(after).copied().collect();
        let expected: Vec<String> = (0..counted.len()).map(|i| i.to_string()).collect();
        assert_eq!(counted, expected, "{backend:?}: the counter runs from 0 without gaps: {lines:?}");
        assert!(after.len() <= 1, "{backend:?}: the daemon ran on after the exit message: {lines:?}");
        if !after.is_empty() {
            eprintln!("{backend:?}: one counter line landed between the exit message and the kill: {after:?}");
        }
        // 3 s at one line per 100 ms: the seed saw 0 to 28.
        assert!((20..=35).contains(&counted.len()), "{backend:?}: {} counter lines", counted.len());

        // What Python cannot do: SIGKILL the main process and the daemon still dies, at once.
        // (In the same test: both runs are the same family name.) The kill comes once the
        // daemon runs: its first line, read as it comes.
        let mut child = command("seed_terminated_abruptly", backend)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the example");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = rx.recv_timeout(common::scaled(Duration::from_secs(5)));
        let killed = Instant::now();
        child.kill().expect("SIGKILL the example's main process (our child, by PID)");
        let _ = child.wait();
        // The daemon holds the stdout pipe; its end means the daemon has died.
        reader.join().expect("stdout");
        let daemon_gone = killed.elapsed();
        let lines: Vec<String> = first.iter().cloned().chain(rx.try_iter()).collect();
        assert_eq!(lines.first().map(String::as_str), Some("Daemon process: True"), "{backend:?}: {lines:?}");
        assert!(!lines.iter().any(|l| l == "Main process exiting..."), "{backend:?}: {lines:?}");
        assert!(
            daemon_gone < common::scaled(Duration::from_secs(2)),
            "{backend:?}: the daemon outlived its parent by {daemon_gone:?}"
        );
        assert_nothing_left("seed_terminated_abruptly", backend);
    }
}

#[harness::test]
fn pool_in_daemon() {
    assert_prints("pool_in_daemon", &["pool results: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"]);
}
