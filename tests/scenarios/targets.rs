// Rust functions as processes (`Process`, `JoinHandle`, `parent_process`, `Pool`), shared by
// tests/targets.rs (cgroupfs) and tests/targets_systemd.rs (systemd), each of which defines
// `BACKEND` and `mod common`.
//
// These test binaries have their own `main` (harness = false, with libtest-mimic for filters and
// parallel trials): a target runs in this binary started again, and `daemonic::init()` must be
// the first thing in `main`. The whole binary is one family; after the trials it is shut down
// and nothing of it may remain.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use daemonic::{ErrorKind, Family, Pool, Process, current_process, parent_process};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use serde::{Deserialize, Serialize};

/// How long any one wait in these tests may take before the test fails.
const LIMIT: Duration = Duration::from_secs(30);
/// Set to run this binary as a program that never called `daemonic::init()`.
const ENV_NO_INIT: &str = "DAEMONIC_TEST_NO_INIT";

// ----------------------------------------------------------------------------------------------
// The targets
// ----------------------------------------------------------------------------------------------

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn describe(word: String, n: i32, list: Vec<String>, flag: Option<bool>, pair: (u8, char), x: f64) -> String {
    format!("{word}/{n}/{}/{flag:?}/{pair:?}/{x}", list.join(","))
}

fn reverse(bytes: Vec<u8>) -> Vec<u8> {
    bytes.into_iter().rev().collect()
}

/// What a target sees of itself and of its parent.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Seen {
    pid: u32,
    name: String,
    daemon: bool,
    family: Option<String>,
    parent: Option<(u32, String, bool)>,
}

fn whoami() -> Seen {
    let me = current_process().expect("read own cgroup");
    Seen {
        pid: std::process::id(),
        name: me.name,
        daemon: me.daemon,
        family: me.family,
        parent: parent_process().map(|p| (p.pid(), p.name().to_string(), p.is_alive())),
    }
}

fn boom(word: String) -> u32 {
    panic!("boom: {word}");
}

fn exit_with(code: i32) {
    std::process::exit(code);
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Tries to start a child target (its daemon flag inherited, or the one given); the outcome as
/// text.
fn start_child(daemon: Option<bool>) -> Result<u64, String> {
    let mut child = Process::with_args(add, (20, 22));
    if let Some(daemon) = daemon {
        child.daemon(daemon);
    }
    let child = child.start().map_err(|e| format!("{:?}: {e}", e.kind()))?;
    child.wait().map_err(|e| e.to_string())
}

/// Writes `ready <pid>` into `dir/ready`, waits for its parent to end, then writes `dir/ended`.
fn watch_parent(dir: String) {
    let parent = parent_process().expect("a target has a parent");
    let dir = PathBuf::from(dir);
    std::fs::write(dir.join("ready"), format!("{}", std::process::id())).expect("write ready");
    let ended = parent.join(Some(LIMIT)).expect("poll the parent");
    let sentinel = parent.sentinel();
    let mut fds = [rustix::event::PollFd::new(&sentinel, rustix::event::PollFlags::IN)];
    let sentinel_ready = rustix::event::poll(&mut fds, None).expect("poll") == 1;
    std::fs::write(dir.join("ended"), format!("{ended} {sentinel_ready} {}", parent.is_alive())).expect("write ended");
}

/// Starts `watch_parent` as its (non-daemonic) child, then sleeps until it is killed.
fn middle(dir: String) {
    let _watcher = Process::with_args(watch_parent, (dir,)).start().expect("start the watcher");
    std::thread::sleep(LIMIT);
}

fn square(x: u64) -> u64 {
    x * x
}

/// Slower for small inputs, so that answers arrive out of order.
fn slow_square(x: u64) -> (u64, u32) {
    std::thread::sleep(Duration::from_millis(30u64.saturating_sub(x)));
    (x * x, std::process::id())
}

fn square_unless_three(x: u64) -> u64 {
    assert_ne!(x, 3, "three is not allowed");
    x * x
}

/// Uses a pool inside the target: a daemon needs `allow_children` for it.
fn pool_inside() -> Result<Vec<u64>, String> {
    let pool = Pool::new(2).map_err(|e| e.to_string())?;
    pool.map(square, 1..=4).map_err(|e| e.to_string())
}

daemonic::target!(
    add,
    describe,
    reverse,
    whoami,
    boom,
    exit_with,
    sleep_ms,
    start_child,
    watch_parent,
    middle,
    square,
    slow_square,
    square_unless_three,
    pool_inside,
);

/// Never registered.
fn not_registered() -> u8 {
    7
}

// ----------------------------------------------------------------------------------------------
// The tests
// ----------------------------------------------------------------------------------------------

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(what().into()) }
}

/// Joins with the test's limit; fails instead of hanging.
fn joined<R: serde::de::DeserializeOwned>(p: &daemonic::JoinHandle<R>) -> Result<i32, Failed> {
    match p.join(Some(LIMIT))? {
        Some(code) => Ok(code),
        None => {
            let _ = p.kill();
            Err(format!("{} (pid {}) still ran after {LIMIT:?}", p.name(), p.pid()).into())
        }
    }
}

fn arguments_and_values_cross() -> Result<(), Failed> {
    let p = Process::with_args(add, (40, 2)).start()?;
    joined(&p)?;
    check(p.exitcode() == Some(0), || format!("exitcode {:?}", p.exitcode()))?;
    assert_eq!(p.wait()?, 42);

    let list = vec!["a".to_string(), "b".to_string()];
    let p = Process::with_args(describe, ("w".to_string(), -3, list, Some(true), (9, 'é'), 0.5)).start()?;
    joined(&p)?;
    assert_eq!(p.wait()?, "w/-3/a,b/Some(true)/(9, 'é')/0.5");
    Ok(())
}

/// 8 MiB each way: more than the socket holds, so the parent must read while the child writes.
fn large_values_cross() -> Result<(), Failed> {
    let bytes: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
    let p = Process::with_args(reverse, (bytes.clone(),)).start()?;
    joined(&p)?;
    let back = p.wait()?;
    check(back.len() == bytes.len() && back.iter().rev().eq(bytes.iter()), || "the bytes came back wrong".into())
}

fn a_panic_is_an_error_with_its_message() -> Result<(), Failed> {
    let p = Process::with_args(boom, ("kaput".to_string(),)).start()?;
    check(joined(&p)? == 1, || format!("exitcode {:?}, expected 1", p.exitcode()))?;
    let e = p.wait().expect_err("a panic is an error");
    check(e.kind() == ErrorKind::TargetPanicked, || format!("kind {:?}", e.kind()))?;
    check(e.to_string().contains("panicked: boom: kaput"), || format!("message: {e}"))?;
    check(e.to_string().contains("boom"), || format!("names the target: {e}"))
}

fn an_exit_without_value_is_an_error() -> Result<(), Failed> {
    let p = Process::with_args(exit_with, (3,)).start()?;
    check(joined(&p)? == 3, || format!("exitcode {:?}", p.exitcode()))?;
    let e = p.wait().expect_err("no value");
    check(e.kind() == ErrorKind::TargetFailed, || format!("kind {:?}", e.kind()))?;
    check(e.to_string().contains("exited with code 3 before its function returned"), || format!("message: {e}"))
}

fn a_killed_target_reports_the_signal() -> Result<(), Failed> {
    let p = Process::with_args(sleep_ms, (60_000,)).start()?;
    check(p.is_alive(), || "alive after start".into())?;
    check(p.join(Some(Duration::from_millis(50)))?.is_none(), || "join timed out while it runs".into())?;
    p.kill()?;
    check(joined(&p)? == -9, || format!("exitcode {:?}", p.exitcode()))?;
    check(!p.is_alive(), || "dead after kill".into())?;
    let e = p.wait().expect_err("killed");
    check(e.to_string().contains("was killed by SIGKILL"), || format!("message: {e}"))?;

    let p = Process::with_args(sleep_ms, (60_000,)).start()?;
    p.terminate()?;
    check(joined(&p)? == -15, || format!("terminate: exitcode {:?}", p.exitcode()))?;
    Ok(())
}

fn the_target_knows_itself_and_its_parent() -> Result<(), Failed> {
    let family = current_process()?.family;
    check(parent_process().is_none(), || "the test's main process has no parent process".into())?;

    let p = Process::new(whoami).start()?;
    joined(&p)?;
    let pid = p.pid();
    check(p.name() == "whoami" && !p.daemon(), || format!("handle: {} {}", p.name(), p.daemon()))?;
    let seen = p.wait()?;
    let me = std::process::id();
    assert_eq!(
        seen,
        Seen { pid, name: "whoami".into(), daemon: false, family: family.clone(), parent: Some((me, "main".into(), true)) }
    );

    let mut builder = Process::new(whoami);
    builder.name("lookout").daemon(true);
    let p = builder.start()?;
    joined(&p)?;
    let seen = p.wait()?;
    check(seen.name == "lookout" && seen.daemon && seen.family == family, || format!("{seen:?}"))?;
    Ok(())
}

fn parent_process_is_ready_when_the_parent_dies() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_string_lossy().into_owned();
    let middle = Process::with_args(middle, (path,)).start()?;
    let ready = wait_for(&dir.path().join("ready"))?;
    let watcher: u32 = ready.trim().parse()?;
    check(!dir.path().join("ended").exists(), || "the watcher saw its parent end too early".into())?;
    // SIGTERM to the middle process alone (not its cgroup): the watcher, its non-daemonic
    // child, keeps running and must see the end of its parent.
    let killed = Instant::now();
    middle.terminate()?;
    let ended = wait_for(&dir.path().join("ended"))?;
    let noticed = killed.elapsed();
    check(ended == "true true false", || format!("watcher wrote {ended:?}"))?;
    check(joined(&middle)? == -15, || format!("middle: {:?}", middle.exitcode()))?;
    check(noticed < common::scaled(Duration::from_secs(5)), || format!("noticed after {noticed:?}"))?;
    check(
        common::wait_until(LIMIT, || !Path::new(&format!("/proc/{watcher}")).exists()),
        || format!("watcher {watcher} still runs"),
    )
}

fn wait_for(path: &Path) -> Result<String, Failed> {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.is_empty()
        {
            return Ok(text);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!("{} did not appear", path.display()).into())
}

fn a_daemon_cannot_start_a_target() -> Result<(), Failed> {
    let p = Process::with_args(start_child, (None,)).daemon(true).name("refused").start()?;
    joined(&p)?;
    let outcome = p.wait()?;
    check(outcome == Err("DaemonChildren: daemonic processes are not allowed to have children".into()), || {
        format!("{outcome:?}")
    })?;

    let mut allowed = Process::with_args(start_child, (None,));
    allowed.daemon(true).allow_children(true).name("allowed");
    let p = allowed.start()?;
    joined(&p)?;
    assert_eq!(p.wait()?, Ok(42));

    let p = Process::with_args(start_child, (None,)).name("plain").start()?;
    joined(&p)?;
    assert_eq!(p.wait()?, Ok(42), "a non-daemonic target starts its own");
    Ok(())
}

fn missing_registration_and_init_are_errors() -> Result<(), Failed> {
    let e = Process::new(not_registered).start().expect_err("not registered");
    check(e.kind() == ErrorKind::InvalidInput, || format!("{:?}", e.kind()))?;
    check(e.to_string().contains("is not a registered target: add `daemonic::target!(not_registered)`"), || {
        format!("{e}")
    })?;
    let e = Process::new(|| 5u8).start().expect_err("a closure");
    check(e.to_string().contains("only a function item registered with daemonic::target!"), || format!("{e}"))?;

    // A program that never called init(): a clear error, and no process is started.
    let out = std::process::Command::new(std::env::current_exe()?).env(ENV_NO_INIT, "1").output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(out.status.code() == Some(3), || format!("no-init run: {:?} {stderr}", out.status))?;
    check(stderr.contains("daemonic::init() was not called"), || format!("no-init run said: {stderr}"))?;

    // A channel number that is not a channel: exit code 2 and a message, never a second run of
    // main (which would print the libtest header on stdout).
    for value in ["99", "banana", "1"] {
        let out = std::process::Command::new(std::env::current_exe()?).env("DAEMONIC_TARGET", value).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        check(out.status.code() == Some(daemonic::EXIT_NO_TARGET), || format!("{value}: {:?} {stderr}", out.status))?;
        check(stderr.contains("DAEMONIC_TARGET does not name this process's channel"), || format!("{value}: {stderr}"))?;
        check(out.stdout.is_empty(), || format!("{value}: main ran: {}", String::from_utf8_lossy(&out.stdout)))?;
    }
    Ok(())
}

fn targets_start_from_many_threads() -> Result<(), Failed> {
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            std::thread::spawn(move || -> Result<Vec<u64>, String> {
                (0..4u64)
                    .map(|i| {
                        let p = Process::with_args(add, (t * 100, i)).start().map_err(|e| e.to_string())?;
                        p.wait().map_err(|e| e.to_string())
                    })
                    .collect()
            })
        })
        .collect();
    for (t, thread) in threads.into_iter().enumerate() {
        let got = thread.join().map_err(|_| "a thread panicked")??;
        let t = t as u64;
        assert_eq!(got, (0..4).map(|i| t * 100 + i).collect::<Vec<_>>());
    }
    Ok(())
}

fn a_pool_maps_in_order() -> Result<(), Failed> {
    let pool = Pool::new(3)?;
    check(pool.processes() == 3, || "3 workers".into())?;
    let results = pool.map(slow_square, 0..30)?;
    assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), (0..30).map(|x| x * x).collect::<Vec<_>>());
    let mut used: Vec<u32> = results.iter().map(|r| r.1).collect();
    used.sort_unstable();
    used.dedup();
    let mut pids = pool.pids();
    pids.sort_unstable();
    check(used == pids, || format!("work done by {used:?}, workers {pids:?}"))?;
    assert_eq!(pool.map(square, Vec::<u64>::new())?, Vec::<u64>::new());

    // A panic fails the map with its message; the pool goes on working.
    let e = pool.map(square_unless_three, 0..8).expect_err("input 3 panics");
    check(e.kind() == ErrorKind::TargetPanicked, || format!("{:?}", e.kind()))?;
    check(e.to_string().contains("on input 3") && e.to_string().contains("three is not allowed"), || format!("{e}"))?;
    assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);

    let workers = pool.pids();
    pool.close()?;
    for pid in workers {
        check(!Path::new(&format!("/proc/{pid}")).exists(), || format!("worker {pid} survived close"))?;
    }
    let e = Pool::new(0).expect_err("no workers");
    check(e.to_string().contains("at least one worker"), || format!("{e}"))
}

fn a_daemon_may_use_a_pool_with_allow_children() -> Result<(), Failed> {
    let p = Process::new(pool_inside).daemon(true).start()?;
    joined(&p)?;
    let refused = p.wait()?;
    check(refused == Err("daemonic processes are not allowed to have children".into()), || format!("{refused:?}"))?;

    let p = Process::new(pool_inside).daemon(true).allow_children(true).start()?;
    joined(&p)?;
    assert_eq!(p.wait()?, Ok(vec![1, 4, 9, 16]));
    Ok(())
}

fn a_sentinel_is_pollable() -> Result<(), Failed> {
    let p = Process::with_args(sleep_ms, (100,)).start()?;
    let sentinel = p.sentinel();
    let mut fds = [rustix::event::PollFd::new(&sentinel, rustix::event::PollFlags::IN)];
    let n = rustix::event::poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 30, tv_nsec: 0 }))?;
    check(n == 1, || "the sentinel became readable".into())?;
    check(joined(&p)? == 0, || "exit 0".into())?;
    assert_eq!(p.wait()?, 100);
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// main
// ----------------------------------------------------------------------------------------------

/// One test function.
type Test = fn() -> Result<(), Failed>;

fn no_init_mode() -> ExitCode {
    match Process::with_args(add, (1, 2)).start() {
        Ok(_) => {
            eprintln!("started a process without init()");
            ExitCode::from(4)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(3)
        }
    }
}

fn main() -> ExitCode {
    if std::env::var_os(ENV_NO_INIT).is_some() {
        return no_init_mode();
    }
    daemonic::init();

    let args = Arguments::from_args();
    let tests: &[(&str, Test)] = &[
        ("arguments_and_values_cross", arguments_and_values_cross),
        ("large_values_cross", large_values_cross),
        ("a_panic_is_an_error_with_its_message", a_panic_is_an_error_with_its_message),
        ("an_exit_without_value_is_an_error", an_exit_without_value_is_an_error),
        ("a_killed_target_reports_the_signal", a_killed_target_reports_the_signal),
        ("the_target_knows_itself_and_its_parent", the_target_knows_itself_and_its_parent),
        ("parent_process_is_ready_when_the_parent_dies", parent_process_is_ready_when_the_parent_dies),
        ("a_daemon_cannot_start_a_target", a_daemon_cannot_start_a_target),
        ("missing_registration_and_init_are_errors", missing_registration_and_init_are_errors),
        ("targets_start_from_many_threads", targets_start_from_many_threads),
        ("a_pool_maps_in_order", a_pool_maps_in_order),
        ("a_daemon_may_use_a_pool_with_allow_children", a_daemon_may_use_a_pool_with_allow_children),
        ("a_sentinel_is_pollable", a_sentinel_is_pollable),
    ];
    let trials: Vec<Trial> = tests.iter().map(|&(name, f)| Trial::test(name, f)).collect();
    if args.list {
        return libtest_mimic::run(&args, trials).exit_code();
    }
    // Without a cgroup (or a manager) to run on, every trial is ignored with the reason, or
    // fails with `CI=true`.
    if let Some(why) = common::backend_problem() {
        let in_ci = std::env::var("CI").as_deref() == Ok("true");
        let trials = tests
            .iter()
            .map(|&(name, _)| {
                let why = why.clone();
                Trial::ignorable_test(name, move || match in_ci {
                    true => Err(format!("CI=true, so this test may not be skipped, but it cannot run: {why}").into()),
                    false => Ok(Completion::ignored_with(why)),
                })
            })
            .collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }

    // The whole binary is one family, on the backend under test.
    let name = format!("targets-{}-{}", common::backend().name(), std::process::id());
    let mut builder = Family::builder().name(&name);
    builder = match common::backend() {
        common::Backend::Cgroupfs => builder.backend(daemonic::Backend::Cgroupfs),
        common::Backend::Systemd => builder.backend(daemonic::Backend::Systemd).bus(common::test_bus()),
    };
    let family = match builder.open() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot open the test family {name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let conclusion = libtest_mimic::run(&args, trials);

    // End the family (the explicit handle, then the implicit one the trials used) and check
    // that nothing of it remains (C10).
    let ended = family.shutdown().and_then(|()| daemonic::implicit_family()?.shutdown());
    if let Err(e) = ended {
        eprintln!("ending the test family {name}: {e}");
        return ExitCode::FAILURE;
    }
    let left = common::wait_until(Duration::from_secs(5), || {
        common::family_dirs(&name).is_empty()
            && (common::backend() != common::Backend::Systemd || common::family_units(&name).is_empty())
    });
    if !left {
        eprintln!(
            "left behind by family {name}: {:?} {:?}",
            common::family_dirs(&name),
            common::family_units(&name)
        );
        return ExitCode::FAILURE;
    }
    conclusion.exit_code()
}
