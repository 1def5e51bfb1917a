//! C5 under PID reuse: no signal daemonic sends ever reaches a process that is not a member.
//!
//! The test runs in a fresh PID namespace (`unshare --pid --fork --mount-proc`) whose
//! `pid_max` (per namespace since Linux 6.14) is [`PID_MAX`]: after the first pass the kernel
//! hands out PIDs from 300 to `PID_MAX` again and again, so every PID is reused within a few
//! hundred process creations. Inside, this test binary runs again in three roles:
//!
//! - **init** (PID 1): sets `pid_max`, starts the worker and reaps whatever is reparented to it.
//!   When it exits, the kernel kills anything left in the namespace.
//! - **worker**: runs `daemonic run` families round after round, each ending another way
//!   (the main member's end kills its daemons, a stop timeout with SIGTERM then `cgroup.kill`,
//!   `daemonic kill`, SIGTERM / SIGINT / SIGHUP forwarded to the main member), while a thread
//!   churns *decoys*: `sh` processes started outside every family that trap every catchable
//!   signal and write it to a log. Decoys take over the PIDs members had just before; on request
//!   one is placed exactly at a given PID through `/proc/sys/kernel/ns_last_pid`.
//! - **lib**: a program using the library, started by the worker: members are ended with
//!   `Member::terminate` and `Member::kill`, and their handles are used again after a decoy
//!   took their PID (after a normal join, and after the PID was reaped behind daemonic's back
//!   with `waitpid`, the one way a PID can be freed while a handle still exists); at the end,
//!   daemons with a stop timeout, one ignoring SIGTERM, are retired by `Family::shutdown`.
//!
//! At the end: no decoy got a signal (the trap log is empty and every decoy exited 0 when its
//! stdin closed, so not even SIGKILL reached one), PIDs wrapped, decoys reused PIDs of members
//! that had ended, and nothing is left: the namespace has no process but init and the worker,
//! and no cgroup directory of the test's families remains.
//!
//! Before Linux 6.14, `pid_max` is one value for the whole machine. The test then runs only on a
//! machine given to the tests, which says so with `DAEMONIC_TEST_GLOBAL_PID_MAX=1` (scripts/vm's
//! hosts do): it lowers the global `pid_max` for its run and restores it. Elsewhere it is
//! ignored, with the reason.
//!
//! A second test builds one case of reuse exactly: an orphan of the family that `daemonic run`
//! reaps with its main member's PID must not be taken for the main member.

mod common;
mod harness;

/// The backend of this test crate (the cgroupfs backend is enough for PID reuse).
const BACKEND: common::Backend = common::Backend::Cgroupfs;

fn main() -> std::process::ExitCode {
    harness::main()
}

use common::*;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};

/// The namespace's `pid_max`: after the first pass PIDs cycle through 300..PID_MAX (the kernel
/// wraps to `RESERVED_PIDS`, 300).
const PID_MAX: i32 = 520;
/// The kernel's `RESERVED_PIDS`, where allocation starts again after a wrap.
const RESERVED_PIDS: i32 = 300;
/// How long the worker runs CLI rounds, and the lib role its loop, on this machine.
const CHURN_SECS: u64 = 25;
/// The churn's length for this run, in seconds, passed from the test to its roles.
const ENV_CHURN: &str = "DAEMONIC_PIDREUSE_CHURN_SECS";
/// Decoys alive at once.
const DECOY_POOL: usize = 16;

const ENV_ROLE: &str = "DAEMONIC_PIDREUSE_ROLE";
const ENV_DIR: &str = "DAEMONIC_PIDREUSE_DIR";
const ENV_TAG: &str = "DAEMONIC_PIDREUSE_TAG";
const TEST: &str = "pid_reuse_never_signals_a_non_member";

/// The churn's length in a role: what the test passed, else [`CHURN_SECS`].
fn churn_secs() -> u64 {
    std::env::var(ENV_CHURN).ok().and_then(|v| v.parse().ok()).unwrap_or(CHURN_SECS)
}

#[harness::test]
fn pid_reuse_never_signals_a_non_member() {
    match std::env::var(ENV_ROLE).as_deref() {
        Ok("init") => return init(),
        Ok("worker") => return worker(),
        Ok("lib") => return lib(),
        _ => {}
    }
    require_cgroup();
    // Before Linux 6.14 pid_max is one global sysctl: writing it in the namespace shrinks the
    // whole machine's, which only a machine given to the tests allows. (No fallback that spawns
    // until a global counter of millions wraps.)
    if !may_set_pid_max() {
        skip(&format!(
            "pid_max is per PID namespace only since Linux 6.14; on an older kernel set {GLOBAL_PID_MAX_ENV}=1 where \
             this test may lower the machine's pid_max for its run"
        ));
    }
    let host_pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").expect("read pid_max");
    require_pid_namespace();
    // The forward-INT rounds need SIGINT to reach the main member's `trap`. A background job of
    // a shell without job control (`cmd &` in a script) starts with SIGINT ignored, and an
    // ignored signal stays ignored in every program started from it, the shell's trap included:
    // those rounds would time out. Say so instead.
    assert_eq!(
        status_mask("/proc/self/status", "SigIgn") & (1 << (libc::SIGINT - 1)),
        0,
        "this test runs with SIGINT ignored (started as a background job of a script?), which its \
         members would inherit; run it in the foreground, or with SIGINT set back to its default"
    );
    let dir = tempdir();
    let tag = format!("pr{}", std::process::id());
    // The PID counter must wrap at least twice during the churn. How often it wraps depends on
    // how fast processes are made: on a host where fork+exec is 26 times slower (debian-12
    // under TCG) 25 s gave one wrap. The churn is scaled by the host's slowness, at most 4-fold
    // (100 s), so that the proof stays the same and the run stays bounded.
    let churn = (CHURN_SECS as f64 * slowness().min(4.0)).ceil() as u64;
    let started = Instant::now();
    // --kill-child: should this test be killed, the namespace's init dies with unshare, and
    // the kernel kills everything in the namespace.
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child", "--"])
        .arg(std::env::current_exe().expect("own test binary"))
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(ENV_ROLE, "init")
        .env(ENV_DIR, dir.path())
        .env(ENV_TAG, &tag)
        .env(ENV_CHURN, churn.to_string())
        .env("PATH", path_with_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start unshare");
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let err_t = std::thread::spawn(move || std::io::read_to_string(err).unwrap_or_default());
    let timeout = Duration::from_secs(churn + 60);
    let ok = wait_until(timeout, || matches!(child.try_wait(), Ok(Some(_))));
    if !ok {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait for unshare");
    let (stdout, stderr) = (out_t.join().unwrap_or_default(), err_t.join().unwrap_or_default());
    let elapsed = started.elapsed();
    let figures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("pid-reuse:")).collect();
    let _ = writeln!(std::io::stderr(), "{}\npid-reuse: run time {elapsed:.1?}", figures.join("\n"));
    let host_now = std::fs::read_to_string("/proc/sys/kernel/pid_max").expect("read pid_max");
    if host_now != host_pid_max {
        let _ = std::fs::write("/proc/sys/kernel/pid_max", host_pid_max.trim());
    }
    if pid_max_per_namespace() {
        assert_eq!(host_now, host_pid_max, "the host's pid_max changed (restored)");
    }
    // Whatever happened inside, no cgroup directory of the test's families may remain.
    let prefix = format!("daemonic-{tag}-");
    let mut left = Vec::new();
    wait_until(Duration::from_secs(5), || {
        left = cgroup_dirs_where(&|n| n.starts_with(&prefix));
        left.is_empty()
    });
    // After a failure (init killed, guardians with it) remove them, or they stay on the host.
    for d in &left {
        remove_cgroup_tree(d);
    }
    assert!(ok, "timed out after {timeout:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert!(
        status.success(),
        "the namespace ended with {status:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    assert!(left.is_empty(), "cgroup directories left behind (C10): {left:?}");
}

/// `daemonic run` reaps every process orphaned in its family (it is a child subreaper), and
/// the main member's PID is free for reuse once it was reaped. An orphan that then gets that
/// PID and is killed must not be taken for the main member: `run` exits with the main
/// member's own status.
///
/// Built exactly in a fresh PID namespace, where nothing else forks: a daemon with children
/// allowed waits until the main member is reaped; a subshell of it sets `ns_last_pid` so that
/// its child gets the main member's PID, and exits, orphaning that child. The daemon and the
/// orphan ignore SIGTERM, so both are SIGKILLed (`cgroup.kill`) when the stop timeout expires
/// (3 s: the daemon must have built the case by then, even on a loaded machine).
#[harness::test]
fn run_exits_with_its_main_members_status_when_an_orphan_reuses_its_pid() {
    require_cgroup();
    require_pid_namespace();
    let dir = tempdir();
    let d = dir.path().display().to_string();
    let name = family_name("reaped-main");
    let daemon = r#"
        trap '' TERM
        read -r M < "$D/main"
        : > "$D/ready"
        while [ -e "/proc/$M" ]; do :; done
        ( echo $((M - 1)) > /proc/sys/kernel/ns_last_pid; sh -c 'echo $$ > "$D/orphan"; exec sleep 30' & )
        exec sleep 30
    "#;
    let main = r#"
        echo $$ > "$D/main"
        daemonic spawn --daemon --allow-children --stop-timeout 3 --name d -- sh -c "$DAEMON" &
        while [ ! -e "$D/ready" ]; do sleep 0.01; done
        exit 0
    "#;
    // `sh` is the namespace's PID 1, so that `run` is a subreaper like anywhere else; the
    // namespace ends (--kill-child) should the test kill `unshare`.
    let ns = [
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        "--",
        "sh",
        "-c",
        "\"$@\"; st=$?; exit $st",
        "ns-init",
    ];
    let out = daemonic_via(&ns, ["run", "--backend", "cgroupfs", "--name", &name, "--", "sh", "-c", main, "main"])
        .env("D", &d)
        .env("DAEMON", daemon)
        .timeout(20.0)
        .run();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default().trim().to_string();
    let (main_pid, orphan_pid) = (read("main"), read("orphan"));
    let left = cgroup_dirs_where(&|n| is_family_dir_of(n, &name));
    for d in &left {
        remove_cgroup_tree(d);
    }
    assert!(
        !main_pid.is_empty() && orphan_pid == main_pid,
        "the orphan got PID {orphan_pid:?}, not the main member's {main_pid:?}: the scenario was not built\n{}",
        out.dump()
    );
    out.assert_code(0);
    assert!(!out.stderr.contains("was killed"), "{}", out.dump());
    assert!(left.is_empty(), "cgroup directories left behind (C10): {left:?}");
}

/// Ends the test as ignored (failed with `CI=true`) unless `unshare --pid --fork --mount-proc`
/// works here (it needs root).
fn require_pid_namespace() {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        skip(&format!("`unshare --pid --fork --mount-proc` does not work here ({probe:?})"));
    }
}

/// Kills whatever runs in `dir` (a family of this test) and removes it, deepest first.
fn remove_cgroup_tree(dir: &Path) {
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    let _ = wait_until(Duration::from_secs(2), || {
        std::fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|e| e.contains("populated 0"))
    });
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Whether the kernel (its release, from `/proc/sys/kernel/osrelease`) is 6.14 or newer.
/// Set to 1 on a machine given to the tests, where pid_reuse may lower the global `pid_max`
/// (kernels before 6.14) for its run.
const GLOBAL_PID_MAX_ENV: &str = "DAEMONIC_TEST_GLOBAL_PID_MAX";

/// Whether the test may write `pid_max` in its namespace: its own since Linux 6.14, the
/// machine's before, which only [`GLOBAL_PID_MAX_ENV`] allows.
fn may_set_pid_max() -> bool {
    pid_max_per_namespace() || std::env::var(GLOBAL_PID_MAX_ENV).as_deref() == Ok("1")
}

fn pid_max_per_namespace() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut nums = release.trim().split(['.', '-']).map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    (major, minor) >= (6, 14)
}

fn path_with_bin() -> std::ffi::OsString {
    let mut p = bin_dir().into_os_string();
    p.push(":");
    p.push(std::env::var_os("PATH").unwrap_or_default());
    p
}

fn env_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(ENV_DIR).expect("DAEMONIC_PIDREUSE_DIR is set"))
}

fn env_tag() -> String {
    std::env::var(ENV_TAG).expect("DAEMONIC_PIDREUSE_TAG is set")
}

fn reexec(role: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("own test binary"));
    c.args(["--exact", TEST, "--nocapture", "--test-threads=1"]).env(ENV_ROLE, role);
    c
}

// =============================================================================================
// init: PID 1 of the namespace
// =============================================================================================

fn init() {
    assert_eq!(std::process::id(), 1, "the init role runs as PID 1 of a new PID namespace");
    assert!(may_set_pid_max(), "never write a global pid_max unless {GLOBAL_PID_MAX_ENV}=1");
    std::fs::write("/proc/sys/kernel/pid_max", PID_MAX.to_string()).expect("set pid_max in the new PID namespace");
    let got: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").expect("read pid_max").trim().parse().unwrap();
    assert_eq!(got, PID_MAX, "pid_max of the namespace (the machine's before Linux 6.14)");
    let worker = reexec("worker").spawn().expect("start the worker");
    let worker_pid = worker.id() as i32;
    // Reap everything: the worker, and whatever is orphaned in the namespace.
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid.as_raw_nonzero().get() == worker_pid => {
                match (status.exit_status(), status.terminating_signal()) {
                    (Some(0), _) => break,
                    (Some(code), _) => panic!("the worker failed with exit code {code} (its panic is above)"),
                    (None, sig) => panic!(
                        "the worker was killed by signal {sig:?}: one meant for a member reached the worker, \
                         a non-member too"
                    ),
                }
            }
            Ok(_) => {}
            Err(e) => panic!("wait in init: {e}"),
        }
    }
    drop(worker); // reaped above (dropping a Child neither waits nor kills)
}

// =============================================================================================
// Decoys
// =============================================================================================

/// Every catchable signal but SIGSTOP/SIGKILL (which a trap cannot take; SIGKILL shows in the
/// decoy's exit status).
const TRAPPED: &str = "1 2 3 4 5 6 7 8 10 11 12 13 14 15 16 17 18 20 21 22 23 24 25 26 27 28 29 30 31";

struct Decoy {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: i32,
}

/// What the decoy thread found, shared with the worker.
#[derive(Default)]
struct Book {
    /// Incremented on every registration of ended members.
    epoch: u64,
    /// Ended members' PIDs and the epoch at which they were first registered.
    ended: HashMap<i32, u64>,
    /// Member PID registrations (a PID counts again when a new member had it).
    member_spawns: u64,
    /// Decoys: PID and the epoch when their spawn began.
    decoys: Vec<(i32, u64)>,
    /// Decoys placed on purpose at a member's PID.
    placed: u64,
    /// Placements that missed the PID (something else took it first).
    missed: u64,
    /// Wraps of the namespace's PID counter seen.
    wraps: u64,
    /// Decoys that did not end with exit code 0 when their stdin closed.
    bad_ends: Vec<String>,
    /// Every PID seen (members and decoys).
    seen: HashSet<i32>,
}

impl Book {
    fn register_ended(&mut self, pids: impl IntoIterator<Item = i32>) {
        for p in pids {
            self.member_spawns += 1;
            self.seen.insert(p);
            self.ended.entry(p).or_insert(self.epoch);
        }
        self.epoch += 1;
    }
}

fn decoy_script(log: &Path) -> String {
    let mut s = String::new();
    for sig in TRAPPED.split(' ') {
        s += &format!("trap 'echo \"$$ {sig}\" >> {}' {sig}\n", log.display());
    }
    s += "while read -r _; do :; done\n";
    s
}

struct Decoys {
    script: String,
    live: VecDeque<Decoy>,
    book: Arc<Mutex<Book>>,
    last_pid: Option<i32>,
}

impl Decoys {
    fn spawn(&mut self) -> i32 {
        let epoch = self.book.lock().unwrap().epoch;
        let mut child = Command::new("sh")
            .args(["-c", &self.script, "pid-reuse-decoy"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a decoy");
        let pid = child.id() as i32;
        let stdin = child.stdin.take();
        self.live.push_back(Decoy { child, stdin, pid });
        let mut b = self.book.lock().unwrap();
        b.decoys.push((pid, epoch));
        b.seen.insert(pid);
        pid
    }

    fn end_oldest(&mut self) {
        if let Some(mut d) = self.live.pop_front() {
            drop(d.stdin.take());
            let st = d.child.wait().expect("wait for a decoy");
            if st.code() != Some(0) {
                self.book.lock().unwrap().bad_ends.push(format!(
                    "decoy pid {} ended with code {:?} signal {:?}",
                    d.pid,
                    st.code(),
                    st.signal()
                ));
            }
        }
    }

    /// Samples the namespace's last PID; a big step down is a wrap.
    fn sample(&mut self) {
        let Some(now) = read_last_pid() else { return };
        if let Some(prev) = self.last_pid
            && now < prev
            && prev - now > (PID_MAX - RESERVED_PIDS) / 2
        {
            self.book.lock().unwrap().wraps += 1;
        }
        self.last_pid = Some(now);
    }

    /// Starts a decoy exactly at `pid` (through `ns_last_pid`); a few tries, as other processes
    /// fork meanwhile.
    fn place(&mut self, pid: i32) -> Option<i32> {
        for _ in 0..8 {
            if std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
                return None;
            }
            let got = self.spawn();
            if self.live.len() > DECOY_POOL {
                self.end_oldest();
            }
            if got == pid {
                self.last_pid = None; // not a wrap
                return Some(got);
            }
            if std::fs::metadata(format!("/proc/{pid}")).is_ok() {
                // Someone else holds it now; wait for it to go.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.last_pid = None;
        None
    }
}

fn read_last_pid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid").ok()?.trim().parse().ok()
}

enum Request {
    /// Place a decoy at this PID and answer with the decoy's PID (if it got it).
    Place(i32, mpsc::Sender<Option<i32>>),
}

/// The decoy thread: churns decoys until `stop`, serves placements, then ends every decoy.
fn decoy_thread(
    mut decoys: Decoys,
    requests: mpsc::Receiver<Request>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            match requests.recv_timeout(Duration::from_millis(4)) {
                Ok(Request::Place(pid, reply)) => {
                    let got = decoys.place(pid);
                    {
                        let mut b = decoys.book.lock().unwrap();
                        if got.is_some() { b.placed += 1 } else { b.missed += 1 }
                    }
                    let _ = reply.send(got);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            decoys.sample();
            decoys.spawn();
            if decoys.live.len() > DECOY_POOL {
                decoys.end_oldest();
            }
        }
        while !decoys.live.is_empty() {
            decoys.end_oldest();
        }
    })
}

// =============================================================================================
// worker: CLI rounds, decoys, the lib role, the final checks
// =============================================================================================

fn worker() {
    let dir = env_dir();
    let tag = env_tag();
    let log = dir.join("decoy-signals.log");
    std::fs::write(&log, "").expect("create the decoy log");
    let book = Arc::new(Mutex::new(Book::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (req_tx, req_rx) = mpsc::channel();
    let decoys = Decoys { script: decoy_script(&log), live: VecDeque::new(), book: book.clone(), last_pid: None };
    self_check(&log);
    let decoy_t = decoy_thread(decoys, req_rx, stop.clone());

    // The lib role runs at the same time, in a family of its own.
    let lib_t = {
        let book = book.clone();
        let req_tx = req_tx.clone();
        let tag = tag.clone();
        std::thread::spawn(move || drive_lib(&tag, book, req_tx))
    };

    let deadline = Instant::now() + Duration::from_secs(churn_secs());
    let mut rounds: HashMap<&'static str, u32> = HashMap::new();
    let mut n = 0u32;
    while Instant::now() < deadline {
        let kind = KINDS[n as usize % KINDS.len()];
        cli_round(&dir, &format!("{tag}-c{n}"), kind, &book, &req_tx);
        *rounds.entry(kind).or_default() += 1;
        n += 1;
    }
    let lib_figures = lib_t.join().expect("the lib driver thread");
    stop.store(true, Ordering::Release);
    drop(req_tx);
    decoy_t.join().expect("the decoy thread");

    // Nothing is left in the namespace but init and this worker (guardians included).
    let me = std::process::id() as i32;
    let mut others = Vec::new();
    let clean = wait_until(Duration::from_secs(5), || {
        others = namespace_processes().into_iter().filter(|(p, _)| *p != 1 && *p != me).collect();
        others.is_empty()
    });
    assert!(clean, "processes left in the PID namespace: {others:?}");
    let prefix = format!("daemonic-{tag}-");
    let mut dirs = Vec::new();
    let clean = wait_until(Duration::from_secs(5), || {
        dirs = cgroup_dirs_where(&|n| n.starts_with(&prefix));
        dirs.is_empty()
    });
    assert!(clean, "cgroup directories left behind (C10): {dirs:?}");

    let signals = std::fs::read_to_string(&log).expect("read the decoy log");
    let b = book.lock().unwrap();
    let reused = b.decoys.iter().filter(|(pid, epoch)| b.ended.get(pid).is_some_and(|e| e < epoch)).count();
    let reused_pids: HashSet<i32> =
        b.decoys.iter().filter(|(pid, epoch)| b.ended.get(pid).is_some_and(|e| e < epoch)).map(|(p, _)| *p).collect();
    let max_seen = b.seen.iter().max().copied().unwrap_or(0);
    let mut kinds: Vec<_> = rounds.iter().map(|(k, v)| format!("{k} {v}")).collect();
    kinds.sort();
    println!("pid-reuse: pid_max {PID_MAX} in the namespace; highest PID seen {max_seen}, {} distinct", b.seen.len());
    println!("pid-reuse: CLI rounds {n} ({})", kinds.join(", "));
    println!("pid-reuse: library: {lib_figures}");
    println!(
        "pid-reuse: member processes recorded {} (members and what they forked), decoys started {}",
        b.member_spawns,
        b.decoys.len()
    );
    println!("pid-reuse: PID counter wrapped {} times", b.wraps);
    println!(
        "pid-reuse: decoys that got the PID of a member that had ended: {reused} ({} distinct PIDs), {} of them placed on purpose ({} placements missed)",
        reused_pids.len(),
        b.placed,
        b.missed
    );
    println!("pid-reuse: signals to decoys: {}", signals.lines().count() + b.bad_ends.len());

    assert!(signals.is_empty(), "decoys (non-members) got signals (pid signal):\n{signals}");
    assert!(b.bad_ends.is_empty(), "decoys did not end cleanly: {:?}", b.bad_ends);
    assert!(b.wraps >= 2, "the PID counter wrapped only {} times", b.wraps);
    assert!(max_seen < PID_MAX, "a PID {max_seen} beyond pid_max {PID_MAX}");
    assert!(reused > 0, "no decoy ever got a member's PID: PID reuse was not exercised");
    assert!(b.placed > 0, "no decoy could be placed at a member's PID");
}

/// The detector works: a decoy records a signal in the log (sent by the PID of our own child,
/// not reaped yet, so the PID is its own), and a SIGKILLed decoy does not end with code 0.
fn self_check(log: &Path) {
    let script = decoy_script(log);
    let start = || {
        let child = Command::new("sh").args(["-c", &script, "pid-reuse-decoy"]).stdin(Stdio::piped()).spawn();
        child.expect("start a decoy")
    };
    let mut d = start();
    let pid = Pid::from_child(&d);
    std::thread::sleep(Duration::from_millis(100)); // let it set its traps
    rustix::process::kill_process(pid, Signal::USR1).expect("signal our own decoy");
    let text = wait_for_file(log, Duration::from_secs(5));
    assert_eq!(text.trim(), format!("{} 10", pid.as_raw_nonzero()), "the decoy's trap log");
    drop(d.stdin.take());
    assert!(d.wait().expect("wait for the decoy").success(), "a decoy ends with 0 when its stdin closes");
    let mut d = start();
    rustix::process::kill_process(Pid::from_child(&d), Signal::KILL).expect("SIGKILL our own decoy");
    assert_eq!(d.wait().expect("wait for the decoy").signal(), Some(9));
    std::fs::write(log, "").expect("empty the decoy log");
}

/// `(pid, cmdline)` of every process in this PID namespace (`/proc` is its own).
fn namespace_processes() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        out.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
    }
    out
}

/// The ways a `daemonic run` round ends.
const KINDS: [&str; 6] = ["parent-end", "stop-timeout", "kill", "forward-TERM", "forward-INT", "forward-HUP"];

/// Writes each PID to `$F`; forks short-lived `/bin/true`s whose PIDs decoys then take over.
const CHURN: &str =
    r#"churn() { i=0; while [ $i -lt "$1" ]; do /bin/true & echo $! >> "$F"; wait $!; i=$((i+1)); done; }"#;

fn cli_round(dir: &Path, name: &str, kind: &str, book: &Arc<Mutex<Book>>, req: &mpsc::Sender<Request>) {
    let pids = dir.join(format!("{name}.pids"));
    let f = pids.display().to_string();
    let daemons = r#"
        daemonic spawn --daemon --name d1 -- sh -c 'echo $$ >> "$F"; exec sleep 30' &
        daemonic spawn --daemon --name d2 -- sh -c 'echo $$ >> "$F"; trap "" TERM; exec sleep 30' &
        daemonic spawn --daemon --allow-children --name d3 -- sh -c "$CHURN"'; echo $$ >> "$F"; trap "" TERM; while :; do churn 5; sleep 0.01; done' &
        daemonic spawn --no-daemon --name w -- sh -c "$CHURN"'; echo $$ >> "$F"; churn 10' &
    "#;
    let (script, stop_timeout, expect) = match kind {
        "parent-end" => (format!("{CHURN}\necho $$ >> \"$F\"\n{daemons}\nchurn 10; sleep 0.05; exit 0"), None, 0),
        "stop-timeout" => {
            (format!("{CHURN}\necho $$ >> \"$F\"\n{daemons}\nchurn 10; sleep 0.05; exit 0"), Some("0.2"), 0)
        }
        "kill" => (format!("{CHURN}\necho $$ >> \"$F\"\n{daemons}\necho ready\nwhile :; do churn 5; done"), None, 137),
        _ => (
            format!(
                "{CHURN}\ntrap 'exit 3' TERM INT HUP\necho $$ >> \"$F\"\n{daemons}\necho ready\nwhile :; do churn 5; done"
            ),
            None,
            3,
        ),
    };
    let mut args: Vec<String> = vec!["run".into(), "--backend".into(), "cgroupfs".into(), "--name".into(), name.into()];
    if let Some(t) = stop_timeout {
        args.extend(["--stop-timeout".into(), t.into()]);
    }
    args.extend(["--".into(), "sh".into(), "-c".into(), script, "pid-reuse-main".into()]);
    let mut running = daemonic(&args).env("F", &f).env("CHURN", CHURN).timeout(20.0).spawn();
    match kind {
        "kill" => {
            running.wait_stdout("ready", Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(30));
            daemonic(["kill", name]).timeout(10.0).run().assert_code(0);
        }
        "forward-TERM" | "forward-INT" | "forward-HUP" => {
            running.wait_stdout("ready", Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(30));
            let sig = match kind {
                "forward-TERM" => Signal::TERM,
                "forward-INT" => Signal::INT,
                _ => Signal::HUP,
            };
            running.signal(sig); // `daemonic run`, not reaped yet: its PID is its own
        }
        _ => {}
    }
    let out = running.wait();
    out.assert_code(expect);
    let recorded: Vec<i32> =
        std::fs::read_to_string(&pids).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert!(!recorded.is_empty(), "round {name} recorded no PIDs\n{}", out.dump());
    let _ = std::fs::remove_file(&pids);
    // The family is over: all of these have ended. Put a decoy on the main member's PID.
    let main_pid = recorded[0];
    book.lock().unwrap().register_ended(recorded);
    let (tx, rx) = mpsc::channel();
    if req.send(Request::Place(main_pid, tx)).is_ok() {
        let _ = rx.recv_timeout(Duration::from_secs(5));
    }
}

// =============================================================================================
// lib: the library's Member::terminate / kill and stop timeouts
// =============================================================================================

/// Runs the lib role and answers its requests; returns its figures line.
fn drive_lib(tag: &str, book: Arc<Mutex<Book>>, req: mpsc::Sender<Request>) -> String {
    let mut child = reexec("lib")
        .env(ENV_TAG, tag)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the lib role");
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut figures = String::new();
    for line in stdout.lines() {
        let line = line.expect("read the lib role");
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("@ended"), Some(pid)) => book.lock().unwrap().register_ended([pid.parse::<i32>().unwrap()]),
            (Some("@place"), Some(pid)) => {
                let pid: i32 = pid.parse().unwrap();
                book.lock().unwrap().register_ended([pid]);
                let (tx, rx) = mpsc::channel();
                req.send(Request::Place(pid, tx)).expect("the decoy thread runs");
                let got = rx.recv_timeout(Duration::from_secs(10)).ok().flatten();
                writeln!(stdin, "{}", got.unwrap_or(0)).expect("answer the lib role");
            }
            (Some("@figures"), _) => figures = line.trim_start_matches("@figures").trim().to_string(),
            _ => println!("{line}"),
        }
    }
    let st = child.wait().expect("wait for the lib role");
    assert!(st.success(), "the lib role failed: {st:?}");
    figures
}

fn lib() {
    let tag = env_tag();
    let name = format!("{tag}-lib");
    let family = daemonic::Family::builder()
        .name(name.as_str())
        .backend(daemonic::Backend::Cgroupfs)
        .open()
        .expect("open the lib family");
    let mut input = BufReader::new(std::io::stdin());
    let mut place = |pid: u32| -> bool {
        println!("@place {pid}");
        let mut line = String::new();
        input.read_line(&mut line).expect("read the worker's answer");
        line.trim().parse::<u32>().ok() == Some(pid)
    };
    let sleeper = |daemon: bool| {
        let mut c = daemonic::Command::new("sleep");
        c.arg("30").daemon(daemon).stdout(daemonic::Stdio::Null);
        c
    };
    let (mut terminated, mut killed, mut stale_after_join, mut stale_after_reap, mut placed) = (0, 0, 0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(churn_secs() - 2);
    let mut i = 0u32;
    while Instant::now() < deadline {
        // Member::terminate on a running member: SIGTERM through its pidfd.
        let m = family.spawn(sleeper(false).name(format!("t{i}"))).expect("spawn");
        m.terminate().expect("terminate");
        assert_eq!(m.join(Some(Duration::from_secs(10))).expect("join"), Some(-15));
        println!("@ended {}", m.pid());
        terminated += 1;
        // Member::kill on a running member: cgroup.kill of its cgroup.
        let m = family.spawn(sleeper(false).name(format!("k{i}"))).expect("spawn");
        m.kill().expect("kill");
        assert_eq!(m.join(Some(Duration::from_secs(10))).expect("join"), Some(-9));
        println!("@ended {}", m.pid());
        killed += 1;
        // A handle used again after its member was joined and a decoy took the PID.
        if i % 2 == 0 {
            let m = family.spawn(daemonic::Command::new("/bin/true").name(format!("j{i}"))).expect("spawn");
            assert_eq!(m.join(Some(Duration::from_secs(10))).expect("join"), Some(0));
            if place(m.pid()) {
                placed += 1;
            }
            m.terminate().expect("terminate after join");
            let _ = m.kill();
            assert_eq!(m.exitcode(), Some(0));
            stale_after_join += 1;
        }
        i += 1;
    }
    // The worst case: a PID freed while its handle lives, reaped behind daemonic's back (as a
    // program's own `waitpid(-1)` would), and taken by a decoy; then every handle method.
    // Done last: a member reaped elsewhere cannot be joined by the family any more.
    let mut stale = Vec::new();
    for k in 0..20 {
        let m = family.spawn(sleeper(false).name(format!("r{k}"))).expect("spawn");
        let pid = Pid::from_raw(m.pid() as i32).expect("pid");
        m.kill().expect("kill");
        let reaped = rustix::process::waitpid(Some(pid), WaitOptions::empty()).expect("waitpid");
        assert!(reaped.is_some_and(|(_, st)| st.terminating_signal() == Some(9)), "{reaped:?}");
        if place(m.pid()) {
            placed += 1;
        }
        let _ = m.terminate();
        let _ = m.kill();
        let _ = m.is_alive();
        let _ = m.join(Some(Duration::from_millis(10)));
        stale_after_reap += 1;
        stale.push(m);
    }
    // Daemons with a stop timeout retired by shutdown: SIGTERM through pidfds, then cgroup.kill
    // for the one that ignores it.
    for k in 0..4 {
        let mut c = daemonic::Command::new("sh");
        c.args(["-c", "trap '' TERM; exec sleep 30"]).daemon(true).name(format!("st{k}"));
        c.stop_timeout(Duration::from_millis(200));
        let d = family.spawn(&mut c).expect("spawn a daemon");
        let mut c = sleeper(true);
        c.name(format!("sd{k}")).stop_timeout(Duration::from_millis(200));
        let d2 = family.spawn(&mut c).expect("spawn a daemon");
        println!("@ended {}", d.pid());
        println!("@ended {}", d2.pid());
    }
    println!(
        "@figures {terminated} terminated, {killed} killed, {stale_after_join} handles used after join, \
         {stale_after_reap} after an outside waitpid, {placed} decoys placed at their PIDs"
    );
    // The family cannot join the members reaped elsewhere: leave it to the guardian, which ends
    // the daemons (SIGTERM, then cgroup.kill) and removes the cgroups when this process ends.
    drop(stale);
    std::mem::forget(family);
    std::process::exit(0);
}
