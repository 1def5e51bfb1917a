//! # The cost of daemonic's guarantees: spawn and teardown
//!
//! `cargo bench --bench spawn` (harness-less, about two minutes, asserts correctness but never
//! speed) prints four sections from one run, with the machine (kernel, CPUs, cgroup mode, load).
//! Sections 3 and 4 need a systemd user manager on the session bus (for example
//! `eval "$(scripts/user-manager start)"`, then `scripts/user-manager stop`); without one they
//! say so and are skipped.
//!
//! **1. Spawn + wait of `/bin/true`, per member.** Every daemonic member gets its own cgroup
//! directory (mkdir, `clone3(CLONE_INTO_CGROUP)`, a start-report pipe, a `pid` xattr, rmdir when
//! it is reaped). That is compared with what a plain program pays for the same child:
//! - `std::process::Command::status()` (std uses `posix_spawn`, i.e. `clone(CLONE_VM|CLONE_VFORK)`),
//! - a real `fork()` + `execv()` + `waitpid()` through libc: **the baseline of the target**;
//!
//! and the library is measured three ways: the default placement (Auto, which is clone3 on
//! Linux >= 5.7), the `Placement::Fork` fallback (clone, then the child writes `cgroup.procs`),
//! and a daemonic member (two seccomp no-fork filters installed before `execve`). All five run
//! in the same process, in the same cgroup (the family's main member), interleaved in chunks of
//! [`CHUNK`] so that machine noise hits them alike: [`WARMUP`] warm-up runs, then
//! [`ITERATIONS`] timed runs each. Printed: mean, median and p99 in microseconds, and per
//! member the parent's CPU time and minor page faults (copy-on-write after the fork) and the
//! CPU time of the family's guardian (another process, on another core, but work the library
//! causes). Between chunks the guardian is let go idle, so its backlog never lands on the next
//! variant.
//!
//! Target: **library spawn+wait <= 1.3x plain fork+exec+wait** (compared on the median).
//!
//! **2. Teardown of 1000 sleeping daemons.** A family with 1000 daemonic `/bin/sleep 1000`
//! members (sleep never forks, so the seccomp filter does not disturb it); once all sleep and
//! the guardian is idle, two figures: (a) the issue's figure, from "the family ends" to "all
//! daemons reaped": one `cgroup.kill` on the `.daemons` directory, wait for `populated 0`, reap
//! every member (what `Family::shutdown()` does first), timed step by step in its own runs; and
//! (b) the whole `Family::shutdown()`, which also waits for the guardian to remove the 1000
//! directories and the family and to exit. Spawning the daemons is not counted. For comparison, CPython's exit handler done natively on 1000
//! plain children: SIGTERM each, then wait each (CPython's order: terminate all, then join all),
//! and the strictly serial signal-then-wait per child. [`TEARDOWN_REPS`] runs each; the median
//! is judged.
//!
//! Target: **1000 daemons reaped <= 100 ms** after the family ends (figure (a)).
//!
//! **3. Spawn + wait of `/bin/true` in a transient scope, per member.** `systemd::spawn_in_scope`
//! over one D-Bus connection (a gated child, `StartTransientUnit` with its PID, the job awaited,
//! the child released) against `systemd-run --user --scope --collect /bin/true`.
//!
//! **4. Many members, each in its own transient scope.**
//!
//! (a) *Which kill is atomic and faster.* N `/bin/sleep 1000` members, each the only process of
//! its own scope, all in one slice (`Slice=daemonic-bench_kill_<pid>.slice`, which lives in
//! `daemonic.slice`), started one by one over one connection (not counted). Each mechanism gets
//! its own runs with the N scopes made anew, [`BULK_REPS`] runs each, mechanisms interleaved;
//! timed from the kill until every member is reaped:
//! - `1` into `cgroup.kill` of the slice's cgroup directory (the parent of a member's cgroup);
//! - `KillUnit(scope, "all", SIGKILL)` for each scope: N D-Bus calls;
//! - `StopUnit` of the slice, until its job is done.
//!
//! Printed: median and min–max ms, and whether the kill is atomic. Only `cgroup.kill` is: one
//! write, the kernel kills the whole subtree, and a fork racing with it dies too. systemd 252
//! answers `KillUnit` and a stop by reading each scope's `cgroup.procs`, calling `kill()` per
//! PID and reading it again (seen with strace); a slice's stop is a stop job per scope sending
//! its `KillSignal=` (SIGTERM, then SIGCONT). N is [`BULK_SMALL`], and also [`BULK_LARGE`] when
//! its setup fits in [`BULK_SETUP_BUDGET`]: a scope costs the manager more to start the more
//! scopes its slice holds, so the large runs are planned from the first one's real setup time
//! (fewer runs, or `cgroup.kill` only, are said). Also printed per N: the setup time and, with
//! the test manager (`DAEMONIC_TEST_MANAGER_PID`), the manager's CPU time per member; how the
//! members ended; the states of the slice's units right after (do failed units stay behind?);
//! the time until systemd has unloaded every scope.
//!
//! (b) *[`BULK_START`] members started at once*, the same scoped sleepers in
//! `daemonic-bench_start_<pid>.slice`: from one connection sequentially, from 2, 4 and 8 threads
//! with a connection each, and from 4 threads sharing the one connection; the total and
//! per-member ms until all run, median of [`BULK_REPS`] runs. It runs before (a), because after
//! (a)'s slices of 1000 scopes the manager stays slower to start scopes.
//!
//! At the end both slices are stopped (and `daemonic.slice` if this run created it and it is
//! empty), and no `daemonic-bench*` unit may remain loaded.
//!
//! Needs a writable cgroup v2 directory (root on a unified or hybrid host, or a delegated
//! cgroup) and must not run inside a daemonic family; prints why and exits without measuring
//! otherwise. Every family is shut down and every child reaped before the program ends; that
//! nothing is left behind is checked at the end.

// The libc fork+exec baseline needs `fork`, `execv` and `_exit`, which only exist as unsafe FFI.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio as StdStdio;
use std::time::{Duration, Instant};

use daemonic::cgroup::{self, Hierarchy};
use daemonic::{Command, Family, Member, Placement};
use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};

/// Timed spawns per variant.
const ITERATIONS: usize = 2000;
/// Untimed spawns per variant before timing.
const WARMUP: usize = 200;
/// Consecutive spawns of one variant before the next variant's turn.
const CHUNK: usize = 100;
/// Daemons (and plain children) in the teardown comparison.
const DAEMONS: usize = 1000;
/// Repetitions of each teardown measurement.
const TEARDOWN_REPS: usize = 3;
/// Target: library spawn+wait over plain fork+exec+wait (medians).
const SPAWN_TARGET_RATIO: f64 = 1.3;
/// Target: `Family::shutdown()` of [`DAEMONS`] daemons.
const TEARDOWN_TARGET: Duration = Duration::from_millis(100);
/// The family name, so this benchmark's cgroups are recognisable: `daemonic-spawn-bench-<pid>.family`.
const FAMILY_NAME: &str = "spawn-bench";

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    if let Err(e) = run() {
        eprintln!("spawn benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    let hierarchy = match Hierarchy::host() {
        Ok(h) => h,
        Err(e) => {
            println!("spawn benchmark skipped: {e}");
            return Ok(());
        }
    };
    let own = hierarchy.cgroup_of(0)?;
    if let Some(id) = daemonic::current_process()?.family {
        println!("spawn benchmark skipped: it runs inside daemonic family {id}; run it outside any family");
        return Ok(());
    }
    if !cgroup::writable(&own) {
        println!("spawn benchmark skipped: this process's cgroup {} is not writable", own.display());
        return Ok(());
    }
    let started = Instant::now();
    print_machine(&hierarchy, &own);

    let mut families = Vec::new();
    let spawn_rows = bench_spawn(&mut families)?;
    print_spawn(&spawn_rows);

    let teardown = bench_teardown(&mut families)?;
    print_teardown(&teardown);

    bench_scopes()?;
    bench_bulk()?;

    check_leftovers(&hierarchy, &families)?;
    println!("done in {:.1} s; load average now {}", started.elapsed().as_secs_f64(), load_average());
    Ok(())
}

/// The first three fields of `/proc/loadavg`: other work on the machine skews every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------------------------
// Machine
// ---------------------------------------------------------------------------------------------

fn print_machine(h: &Hierarchy, own: &Path) {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "?".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mode = if h.mount() == Path::new("/sys/fs/cgroup") { "unified" } else { "hybrid" };
    println!("daemonic spawn benchmark");
    println!("  kernel   {} {} (uname -sr)", read("/proc/sys/kernel/ostype"), read("/proc/sys/kernel/osrelease"));
    println!("  cpus     {nproc} (nproc), {cpu}");
    println!("  cgroup   {mode}: cgroup2 at {}, bench started in {}", h.mount().display(), own.display());
    println!("  load     {} (1, 5, 15 min averages at start)", load_average());
    if let Some(p) = std::env::var_os("DAEMONIC_PLACEMENT") {
        println!("  note     DAEMONIC_PLACEMENT={} changes the default placement", p.to_string_lossy());
    }
    println!();
}

// ---------------------------------------------------------------------------------------------
// 1. Spawn + wait
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    StdCommand,
    ForkExec,
    Library,
    LibraryFork,
    LibraryDaemon,
}

impl Variant {
    const ALL: [Variant; 5] =
        [Variant::StdCommand, Variant::ForkExec, Variant::Library, Variant::LibraryFork, Variant::LibraryDaemon];

    fn label(self) -> &'static str {
        match self {
            Variant::StdCommand => "std Command::status (posix_spawn)",
            Variant::ForkExec => "libc fork + execv + waitpid",
            Variant::Library => "daemonic spawn+wait (default: clone3)",
            Variant::LibraryFork => "daemonic Placement::Fork (fallback)",
            Variant::LibraryDaemon => "daemonic daemon (seccomp, clone3)",
        }
    }

    fn is_library(self) -> bool {
        matches!(self, Variant::Library | Variant::LibraryFork | Variant::LibraryDaemon)
    }
}

/// `/bin/true` as C strings, made before any fork so the child only calls `execv` and `_exit`.
struct ForkExec {
    program: CString,
}

impl ForkExec {
    fn new() -> ForkExec {
        ForkExec { program: CString::new("/bin/true").expect("no NUL") }
    }

    /// fork, execv `/bin/true` in the child, waitpid in the parent; the exit status.
    fn run(&self) -> BenchResult<i32> {
        let argv: [*const libc::c_char; 2] = [self.program.as_ptr(), std::ptr::null()];
        // SAFETY: fork has no memory-safety preconditions. The child (return value 0) runs only
        // the block below, which calls nothing but the async-signal-safe execv and _exit on
        // C strings and an argv array prepared before the fork, so it is sound even if another
        // thread held a lock at the moment of the fork.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: `argv` is NULL-terminated and points to a live NUL-terminated string; execv
            // and _exit are async-signal-safe; _exit never returns, so no Rust code of the parent
            // (destructors, atexit handlers) runs in the child.
            unsafe {
                libc::execv(self.program.as_ptr(), argv.as_ptr());
                libc::_exit(127)
            }
        }
        if pid < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let pid = Pid::from_raw(pid).expect("fork returned a positive PID");
        loop {
            match waitpid(Some(pid), WaitOptions::empty()) {
                Ok(Some((_, status))) => return Ok(status.exit_status().unwrap_or(-1)),
                Ok(None) => continue,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Spawns and waits one `/bin/true` the way `variant` does; the time it took.
fn spawn_once(variant: Variant, family: &Family, fork_exec: &ForkExec) -> BenchResult<Duration> {
    let start = Instant::now();
    let code = match variant {
        Variant::StdCommand => std::process::Command::new("/bin/true").status()?.code().unwrap_or(-1),
        Variant::ForkExec => fork_exec.run()?,
        Variant::Library => family.spawn(&mut Command::new("/bin/true"))?.wait()?,
        Variant::LibraryFork => family.spawn(Command::new("/bin/true").placement(Placement::Fork))?.wait()?,
        Variant::LibraryDaemon => family.spawn(Command::new("/bin/true").daemon(true))?.wait()?,
    };
    let took = start.elapsed();
    if code != 0 {
        return Err(format!("{}: /bin/true exited with {code}", variant.label()).into());
    }
    Ok(took)
}

/// Summary of one variant: wall time in microseconds, and what one member costs besides.
struct Row {
    variant: Variant,
    mean: f64,
    median: f64,
    p99: f64,
    /// Per member: CPU time of the benchmark process (the parent), µs.
    parent_cpu: Option<f64>,
    /// Per member: minor page faults of the parent (copy-on-write after the fork, mostly).
    parent_faults: Option<f64>,
    /// Per member: CPU time of the family's guardian, µs.
    guardian_cpu: Option<f64>,
}

/// Cumulative counters read around each chunk; `None` where unreadable.
#[derive(Clone, Copy, Default)]
struct Counters {
    parent_cpu_ns: Option<u64>,
    parent_faults: Option<u64>,
    guardian_cpu_ns: Option<u64>,
}

impl Counters {
    fn read(guardian: Option<i32>) -> Counters {
        let me = std::process::id() as i32;
        Counters {
            parent_cpu_ns: cpu_ns(me),
            parent_faults: minor_faults(me),
            guardian_cpu_ns: guardian.and_then(cpu_ns),
        }
    }

    /// Adds `after - before` to `self`; a counter missing on either side stays missing.
    fn add_delta(&mut self, before: Counters, after: Counters) {
        let add = |acc: Option<u64>, b: Option<u64>, a: Option<u64>| Some(acc? + a?.saturating_sub(b?));
        self.parent_cpu_ns = add(self.parent_cpu_ns, before.parent_cpu_ns, after.parent_cpu_ns);
        self.parent_faults = add(self.parent_faults, before.parent_faults, after.parent_faults);
        self.guardian_cpu_ns = add(self.guardian_cpu_ns, before.guardian_cpu_ns, after.guardian_cpu_ns);
    }
}

fn bench_spawn(families: &mut Vec<PathBuf>) -> BenchResult<Vec<Row>> {
    let family = Family::builder().name(FAMILY_NAME).open()?;
    families.push(family.cgroup().to_path_buf());
    let guardian = guardian_pid(&family);
    let fork_exec = ForkExec::new();

    let mut samples: Vec<Vec<u64>> = vec![Vec::with_capacity(ITERATIONS); Variant::ALL.len()];
    let zero = Counters { parent_cpu_ns: Some(0), parent_faults: Some(0), guardian_cpu_ns: guardian.map(|_| 0) };
    let mut costs = [zero; Variant::ALL.len()];

    // Warm-up: page cache, the seccomp filters (built once), the cgroup and dentry caches.
    for variant in Variant::ALL {
        for _ in 0..WARMUP {
            spawn_once(variant, &family, &fork_exec)?;
        }
        prune(&family);
    }

    // Timed: the variants take turns, CHUNK spawns at a time.
    for _round in 0..ITERATIONS / CHUNK {
        for (i, variant) in Variant::ALL.into_iter().enumerate() {
            // The guardian handles each member's cgroup events asynchronously; let it finish the
            // previous chunk's work so that it does not count against this one.
            let settled = guardian.is_none_or(settle);
            let before = Counters::read(guardian);
            for _ in 0..CHUNK {
                samples[i].push(spawn_once(variant, &family, &fork_exec)?.as_nanos() as u64);
            }
            let settled = settled && guardian.is_none_or(settle);
            let after = Counters::read(guardian);
            costs[i].add_delta(before, after);
            if !settled {
                costs[i].guardian_cpu_ns = None;
            }
            // The family keeps a handle (and a pidfd) per member until it is pruned; pruning
            // keeps the descriptor table, which every fork copies, the same size for all.
            prune(&family);
        }
    }
    family.shutdown()?;
    if family.cgroup().exists() {
        return Err(format!("{} still exists after shutdown", family.cgroup().display()).into());
    }

    let per_member = |v: Option<u64>, scale: f64| v.map(|v| v as f64 / scale / ITERATIONS as f64);
    Ok(Variant::ALL
        .into_iter()
        .zip(samples.iter_mut())
        .zip(costs)
        .map(|((variant, s), c)| {
            let (mean, median, p99) = summary(s);
            Row {
                variant,
                mean,
                median,
                p99,
                parent_cpu: per_member(c.parent_cpu_ns, 1000.0),
                parent_faults: per_member(c.parent_faults, 1.0),
                guardian_cpu: per_member(c.guardian_cpu_ns, 1000.0),
            }
        })
        .collect())
}

/// Forgets the family's finished members (Python's `active_children()` does the same).
fn prune(family: &Family) {
    let live = family.active_children();
    assert!(live.is_empty(), "{} members still running after their wait", live.len());
}

/// Mean, median and p99 (nearest rank) in microseconds.
fn summary(ns: &mut [u64]) -> (f64, f64, f64) {
    ns.sort_unstable();
    let us = |v: u64| v as f64 / 1000.0;
    let mean = ns.iter().map(|&v| v as f64).sum::<f64>() / ns.len() as f64 / 1000.0;
    let rank = |q: f64| ns[((q * ns.len() as f64).ceil() as usize).clamp(1, ns.len()) - 1];
    let median =
        if ns.len() % 2 == 0 { (us(ns[ns.len() / 2 - 1]) + us(ns[ns.len() / 2])) / 2.0 } else { us(rank(0.5)) };
    (mean, median, us(rank(0.99)))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn print_spawn(rows: &[Row]) {
    let base = rows.iter().find(|r| r.variant == Variant::ForkExec).expect("the baseline was measured");
    let lib = rows.iter().find(|r| r.variant == Variant::Library).expect("the library was measured");
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    println!(
        "1. spawn + wait of /bin/true, per member: {ITERATIONS} runs each after {WARMUP} warm-up, variants interleaved in chunks of {CHUNK}"
    );
    println!(
        "   {:<38} {:>8} {:>9} {:>8}  {:>7} {:>7} {:>8}  vs fork+exec (median; target <= {SPAWN_TARGET_RATIO}x)",
        "variant", "mean µs", "median µs", "p99 µs", "cpu µs", "faults", "guard µs"
    );
    for r in rows {
        let ratio = r.median / base.median;
        let mut cmp = format!("{ratio:.2}x");
        if r.variant.is_library() {
            let _ = write!(cmp, "  {}", verdict(ratio <= SPAWN_TARGET_RATIO));
        } else if r.variant == Variant::ForkExec {
            cmp.push_str("  (baseline)");
        }
        println!(
            "   {:<38} {:>8.1} {:>9.1} {:>8.1}  {:>7} {:>7} {:>8}  {cmp}",
            r.variant.label(),
            r.mean,
            r.median,
            r.p99,
            opt(r.parent_cpu),
            opt(r.parent_faults),
            opt(r.guardian_cpu),
        );
    }
    println!(
        "   => spawn+wait: {:.1} µs vs {:.1} µs for plain fork+exec = {:.2}x (means: {:.2}x); target <= {SPAWN_TARGET_RATIO}x: {}",
        lib.median,
        base.median,
        lib.median / base.median,
        lib.mean / base.mean,
        verdict(lib.median / base.median <= SPAWN_TARGET_RATIO)
    );
    println!(
        "   (per member: cpu = CPU time of this process, the parent; faults = its minor page faults; guard = CPU time"
    );
    println!("    of the family's guardian, which handles every member's cgroup events on the side)");
    println!();
}

// ---------------------------------------------------------------------------------------------
// 2. Teardown
// ---------------------------------------------------------------------------------------------

struct Teardown {
    /// `Family::shutdown()` with DAEMONS sleeping daemons, per repetition.
    shutdown: Vec<Duration>,
    /// Spawning the DAEMONS daemons (not part of the figure), per repetition.
    spawn: Vec<Duration>,
    /// One `cgroup.kill` on the `.daemons` directory, `populated 0`, every daemon reaped.
    reaped: Vec<Duration>,
    /// The rest of `shutdown()` after that: directories removed, guardian gone.
    rest_of_shutdown: Vec<Duration>,
    /// SIGTERM to each of DAEMONS plain children, then wait for each (CPython's order).
    term_all_then_wait: Vec<Duration>,
    /// SIGTERM and wait, one child at a time.
    term_wait_each: Vec<Duration>,
}

fn bench_teardown(families: &mut Vec<PathBuf>) -> BenchResult<Teardown> {
    let mut t = Teardown {
        shutdown: Vec::new(),
        spawn: Vec::new(),
        reaped: Vec::new(),
        rest_of_shutdown: Vec::new(),
        term_all_then_wait: Vec::new(),
        term_wait_each: Vec::new(),
    };
    for _ in 0..TEARDOWN_REPS {
        let (spawn, shutdown) = daemonic_teardown(families, false)?;
        t.spawn.push(spawn);
        t.shutdown.push(shutdown[0]);
    }
    for _ in 0..TEARDOWN_REPS {
        let (_, split) = daemonic_teardown(families, true)?;
        t.reaped.push(split[0]);
        t.rest_of_shutdown.push(split[1]);
    }
    for _ in 0..TEARDOWN_REPS {
        t.term_all_then_wait.push(plain_teardown(false)?);
        t.term_wait_each.push(plain_teardown(true)?);
    }
    Ok(t)
}

/// One family of DAEMONS sleeping daemons, shut down. Returns the spawn time and the shutdown
/// time, or with `split` the time of a bare `cgroup.kill` until unpopulated and then of the
/// remaining `shutdown()`.
fn daemonic_teardown(families: &mut Vec<PathBuf>, split: bool) -> BenchResult<(Duration, Vec<Duration>)> {
    let family = Family::builder().name(FAMILY_NAME).open()?;
    families.push(family.cgroup().to_path_buf());
    let start = Instant::now();
    let members = (0..DAEMONS)
        .map(|_| family.spawn(Command::new("/bin/sleep").arg("1000").daemon(true)))
        .collect::<Result<Vec<Member>, _>>()?;
    let spawn = start.elapsed();
    wait_all_sleeping(members.iter().map(Member::pid))?;
    if let Some(g) = guardian_pid(&family) {
        settle(g);
    }

    let mut took = Vec::new();
    let container = daemonic::layout::daemons_dir(&daemonic::current_process()?.cgroup);
    let start = Instant::now();
    if split {
        cgroup::kill(&container)?;
        cgroup::wait_unpopulated(&container, None)?;
        for m in &members {
            m.wait()?;
        }
        took.push(start.elapsed());
    }
    let start = Instant::now();
    family.shutdown()?;
    took.push(start.elapsed());

    for m in &members {
        if m.exitcode() != Some(-libc::SIGKILL) {
            return Err(format!("daemon {} ended with {:?}, expected SIGKILL", m.pid(), m.exitcode()).into());
        }
    }
    if family.cgroup().exists() {
        return Err(format!("{} still exists after shutdown", family.cgroup().display()).into());
    }
    Ok((spawn, took))
}

/// Plain children that are SIGKILLed and reaped if the benchmark fails half-way.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// DAEMONS plain `/bin/sleep 1000` children ended with SIGTERM, as CPython's exit handler does
/// (terminate every daemonic child, then join each), or with `serial` one at a time.
fn plain_teardown(serial: bool) -> BenchResult<Duration> {
    let mut children = Children(Vec::with_capacity(DAEMONS));
    for _ in 0..DAEMONS {
        children.0.push(std::process::Command::new("/bin/sleep").arg("1000").stdin(StdStdio::null()).spawn()?);
    }
    wait_all_sleeping(children.0.iter().map(std::process::Child::id))?;

    let term = |c: &std::process::Child| kill_process(Pid::from_child(c), Signal::TERM);
    let start = Instant::now();
    let mut statuses = Vec::with_capacity(DAEMONS);
    if serial {
        for c in &mut children.0 {
            term(c)?;
            statuses.push(c.wait()?);
        }
    } else {
        for c in &children.0 {
            term(c)?;
        }
        for c in &mut children.0 {
            statuses.push(c.wait()?);
        }
    }
    let took = start.elapsed();
    children.0.clear();
    if let Some(s) = statuses.iter().find(|s| s.signal() != Some(libc::SIGTERM)) {
        return Err(format!("a plain child ended with {s}, expected SIGTERM").into());
    }
    Ok(took)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort_unstable();
    v[v.len() / 2]
}

fn print_teardown(t: &Teardown) {
    let list = |v: &[Duration]| v.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(" / ");
    println!(
        "2. teardown: time from \"family ends\" to \"{DAEMONS} sleeping daemons reaped\" ({TEARDOWN_REPS} runs each, ms)"
    );
    println!("   {:<56} {:>9}  runs ms", "method", "median ms");
    let shutdown = median(&t.shutdown);
    let reaped = median(&t.reaped);
    println!(
        "   {:<56} {:>9}  {}   target <= {} ms: {}",
        "daemonic: 1 cgroup.kill until all daemons reaped",
        ms(reaped),
        list(&t.reaped),
        TEARDOWN_TARGET.as_millis(),
        verdict(reaped <= TEARDOWN_TARGET)
    );
    println!(
        "   {:<56} {:>9}  {}",
        "  then: guardian removes the directories and exits",
        ms(median(&t.rest_of_shutdown)),
        list(&t.rest_of_shutdown)
    );
    println!("   {:<56} {:>9}  {}", "daemonic Family::shutdown(), all of it", ms(shutdown), list(&t.shutdown));
    println!(
        "   {:<56} {:>9}  {}",
        "plain children: SIGTERM all, then wait all (CPython)",
        ms(median(&t.term_all_then_wait)),
        list(&t.term_all_then_wait)
    );
    println!(
        "   {:<56} {:>9}  {}",
        "plain children: SIGTERM + wait, one at a time",
        ms(median(&t.term_wait_each)),
        list(&t.term_wait_each)
    );
    println!(
        "   => teardown: {DAEMONS} daemons reaped {} ms after the family ended; target <= {} ms: {}; \
         with every cgroup removed {} ms   (spawning them took {} ms, not counted)",
        ms(reaped),
        TEARDOWN_TARGET.as_millis(),
        verdict(reaped <= TEARDOWN_TARGET),
        ms(shutdown),
        list(&t.spawn)
    );
    println!();
}

// ---------------------------------------------------------------------------------------------
// Processes and leftovers
// ---------------------------------------------------------------------------------------------

/// The PID of the family's guardian, from the family directory's attribute.
fn guardian_pid(family: &Family) -> Option<i32> {
    cgroup::attr(family.cgroup(), "guardian")?.trim().parse().ok()
}

/// CPU time consumed by `pid` so far, in nanoseconds (`/proc/<pid>/schedstat`).
fn cpu_ns(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?.split_whitespace().next()?.parse().ok()
}

/// Minor page faults of `pid` so far (`/proc/<pid>/stat`, field 10).
fn minor_faults(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text.rsplit_once(')')?.1.split_whitespace().nth(7)?.parse().ok()
}

/// The state letter and command name of `pid`, from `/proc/<pid>/stat`.
fn state(pid: u32) -> Option<(char, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (left, right) = text.rsplit_once(')')?;
    let comm = left.split_once('(')?.1.to_string();
    Some((right.trim_start().chars().next()?, comm))
}

/// Waits (at most 2 s) until the process `pid` sleeps and has used no CPU for 2 ms.
/// Returns whether it settled.
fn settle(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = cpu_ns(pid);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
        let now = cpu_ns(pid);
        let sleeping = state(pid as u32).is_some_and(|(s, _)| s == 'S');
        if now.is_some() && now == last && sleeping {
            return true;
        }
        last = now;
    }
    false
}

/// Waits (at most 10 s) until every process in `pids` is `sleep`, in interruptible sleep.
fn wait_all_sleeping(pids: impl Iterator<Item = u32>) -> BenchResult<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    for pid in pids {
        loop {
            match state(pid) {
                Some(('S', comm)) if comm == "sleep" => break,
                _ if Instant::now() > deadline => {
                    return Err(format!("process {pid} did not become a sleeping `sleep`: {:?}", state(pid)).into());
                }
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
    Ok(())
}

/// Checks that no family directory of this run remains, and that this process has no child
/// left (no sleep, no guardian). Other `daemonic-*.family` directories are reported.
fn check_leftovers(h: &Hierarchy, families: &[PathBuf]) -> BenchResult<()> {
    let ours: Vec<&PathBuf> = families.iter().filter(|d| d.exists()).collect();
    let me = std::process::id().to_string();
    let children: Vec<String> = std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = text.rsplit_once(')')?.1.split_whitespace().nth(1)?.to_string();
            (ppid == me).then(|| format!("{pid} {:?}", state(pid).map(|(_, c)| c).unwrap_or_default()))
        })
        .collect();
    let foreign: Vec<String> = std::fs::read_dir(h.mount())?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("daemonic-") && n.ends_with(".family"))
        .collect();
    println!(
        "leftovers: {} of this run's {} family cgroups remain, {} child processes remain{}",
        ours.len(),
        families.len(),
        children.len(),
        if foreign.is_empty() {
            String::new()
        } else {
            format!(" (other daemonic-*.family dirs under {}: {})", h.mount().display(), foreign.join(", "))
        }
    );
    if !ours.is_empty() || !children.is_empty() {
        return Err(format!("left behind: cgroups {ours:?}, processes {children:?}").into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. systemd scopes
// ---------------------------------------------------------------------------------------------

/// The systemd backend's member spawn, three ways, in one family of units that this process
/// opens (it becomes the family's main member, in its own scope):
/// - the library: `Family::spawn` + `wait` of `/bin/true` (gated child, `StartTransientUnit`
///   of its scope with `JobRemoved` filtered to that unit, attributes on its slice, release),
///   over the process's one D-Bus connection;
/// - the CLI: `daemonic spawn -- /bin/true` run from the family (a new process that connects to
///   the bus, moves itself into a new scope and executes the program), timed from fork to exit;
/// - `systemd-run --user --scope --collect --quiet /bin/true`, the same job done by systemd's tool.
///
/// Needs a user manager on the session bus (for example `eval "$(scripts/user-manager start)"`);
/// says so and skips otherwise.
fn bench_scopes() -> BenchResult<()> {
    use daemonic::Backend;
    use daemonic::systemd::Bus;
    const MEMBERS: usize = 200;
    const RUNS: usize = 50;
    println!("3. spawn + wait of /bin/true, one member = one transient systemd scope (user manager)");
    let family = match Family::builder().name("bench-scopes").backend(Backend::Systemd).bus(Bus::User).open() {
        Ok(f) => f,
        Err(e) => {
            println!("   skipped: {e}\n");
            return Ok(());
        }
    };
    let mut library = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS + 20 {
        let start = Instant::now();
        let member = family.spawn(Command::new("/bin/true").name("t"))?;
        member.wait()?;
        if i >= 20 {
            library.push(start.elapsed().as_nanos() as u64);
        }
    }
    let daemonic_bin = env!("CARGO_BIN_EXE_daemonic");
    let mut cli = Vec::with_capacity(RUNS);
    let mut theirs = Vec::with_capacity(RUNS);
    // Interleaved, so that load on the machine hits both alike.
    for i in 0..RUNS + 5 {
        let start = Instant::now();
        let status = std::process::Command::new(daemonic_bin).args(["spawn", "--", "/bin/true"]).status()?;
        if !status.success() {
            return Err(format!("daemonic spawn failed: {status}").into());
        }
        let ours = start.elapsed().as_nanos() as u64;
        let start = Instant::now();
        let status = std::process::Command::new("systemd-run")
            .args(["--user", "--scope", "--collect", "--quiet", "/bin/true"])
            .status()?;
        if !status.success() {
            return Err(format!("systemd-run --user --scope failed: {status}").into());
        }
        if i >= 5 {
            cli.push(ours);
            theirs.push(start.elapsed().as_nanos() as u64);
        }
    }
    family.shutdown()?;
    let (mean_l, med_l, p99_l) = summary(&mut library);
    let (mean_c, med_c, p99_c) = summary(&mut cli);
    let (mean_t, med_t, p99_t) = summary(&mut theirs);
    println!("   {:<44} {:>9} {:>9} {:>9}", "variant", "mean ms", "median ms", "p99 ms");
    let row = |what: String, mean: f64, med: f64, p99: f64, note: String| {
        println!("   {what:<44} {:>9.2} {:>9.2} {:>9.2}   {note}", mean / 1000.0, med / 1000.0, p99 / 1000.0);
    };
    row(
        format!("library Family::spawn+wait ({MEMBERS} runs)"),
        mean_l,
        med_l,
        p99_l,
        format!("target <= 5 ms: {}", verdict(med_l / 1000.0 <= 5.0)),
    );
    row(
        format!("CLI daemonic spawn ({RUNS} runs)"),
        mean_c,
        med_c,
        p99_c,
        format!("target no slower than systemd-run: {}", verdict(med_c <= med_t)),
    );
    row(format!("systemd-run --user --scope ({RUNS} runs)"), mean_t, med_t, p99_t, String::new());
    println!(
        "   => library {:.1}x, CLI {:.1}x faster than systemd-run --scope (medians)\n",
        med_t / med_l,
        med_t / med_c
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. systemd scopes in bulk: killing many, starting many at once
// ---------------------------------------------------------------------------------------------

/// Members per slice in 4(a).
const BULK_SMALL: usize = 100;
/// The larger slice of 4(a), measured only when its projected setup stays within [`BULK_SETUP_BUDGET`].
const BULK_LARGE: usize = 1000;
/// Setup (spawning the scoped sleepers of every run of one size) that [`BULK_LARGE`] may take.
const BULK_SETUP_BUDGET: Duration = Duration::from_secs(30);
/// Runs per kill mechanism and per start variant; the median is printed.
const BULK_REPS: usize = 3;
/// Members started at once in 4(b).
const BULK_START: usize = 100;
/// How long systemd may take to unload the scopes of one run before it counts as a leftover.
const UNLOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A slice of this benchmark, `daemonic-bench_<what>_<pid>.slice` (inside `daemonic.slice`),
/// and the names of the scopes placed in it.
struct BenchSlice {
    level: String,
    unit: daemonic::unit_name::UnitName,
}

impl BenchSlice {
    fn new(what: &str) -> BenchResult<BenchSlice> {
        use daemonic::unit_name::{UnitName, UnitType};
        let level = format!("bench_{what}_{}", std::process::id());
        let unit = UnitName::new(&["daemonic", &level], UnitType::Slice)?;
        Ok(BenchSlice { level, unit })
    }

    /// `daemonic-bench_<what>_<pid>-<tag>_<i>.scope`.
    fn scope(&self, tag: &str, i: usize) -> BenchResult<daemonic::unit_name::UnitName> {
        use daemonic::unit_name::{UnitName, UnitType};
        Ok(UnitName::new(&["daemonic", &self.level, &format!("{tag}_{i}")], UnitType::Scope)?)
    }

    /// The pattern matching the slice and its scopes, for `systemctl --user list-units`.
    fn pattern(&self) -> String {
        format!("daemonic-{}*", self.level)
    }
}

/// The scoped sleepers of one run: their scope names and members (scope `i` holds member `i`).
struct Sleepers {
    units: Vec<String>,
    members: Vec<Member>,
    /// The manager's CPU time while they were started, when known ([`manager_cpu`]).
    manager_cpu: Option<Duration>,
}

/// Spawns `n` members `/bin/sleep 1000`, each the only process of its own transient scope in
/// `slice`. With one client, one after the other on this thread; with more, from one thread
/// per client at once (scope `i` from client `i % clients.len()`). Returns the time until every
/// member runs (`spawn_in_scope` returns once the program is executed).
fn spawn_sleepers(
    clients: &[&daemonic::systemd::Client],
    slice: &BenchSlice,
    tag: &str,
    n: usize,
) -> BenchResult<(Duration, Sleepers)> {
    use daemonic::systemd::{Client, spawn_in_scope};
    use daemonic::unit_name::UnitName;
    use zbus::zvariant::Value;
    let names = (0..n).map(|i| slice.scope(tag, i)).collect::<BenchResult<Vec<UnitName>>>()?;
    let spawn_one = |client: &Client, unit: &UnitName| {
        spawn_in_scope(
            client,
            unit,
            "daemonic benchmark sleeper",
            Command::new("/bin/sleep").arg("1000"),
            &[("Slice", Value::from(slice.unit.as_str()))],
        )
    };
    let cpu = manager_cpu();
    let start = Instant::now();
    let members: Vec<Member> = if clients.len() == 1 {
        names.iter().map(|u| spawn_one(clients[0], u)).collect::<Result<_, _>>()?
    } else {
        let threads = clients.len();
        let per_thread: Vec<daemonic::Result<Vec<(usize, Member)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = clients
                .iter()
                .enumerate()
                .map(|(t, &client)| {
                    let (names, spawn_one) = (&names, &spawn_one);
                    s.spawn(move || {
                        names
                            .iter()
                            .enumerate()
                            .skip(t)
                            .step_by(threads)
                            .map(|(i, u)| spawn_one(client, u).map(|m| (i, m)))
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a spawning thread panicked")).collect()
        });
        let mut all = Vec::with_capacity(n);
        for part in per_thread {
            all.extend(part?);
        }
        all.sort_unstable_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, m)| m).collect()
    };
    let took = start.elapsed();
    let manager_cpu = manager_cpu_since(cpu);
    let units = names.iter().map(|u| u.as_str().to_string()).collect();
    Ok((took, Sleepers { units, members, manager_cpu }))
}

/// The cgroup directory of the slice holding every member: the parent of each member's scope.
fn slice_dir(members: &[Member]) -> BenchResult<PathBuf> {
    let parent = |m: &Member| m.cgroup().parent().map(Path::to_path_buf);
    let dir = members.first().and_then(parent).ok_or("no member to find the slice's cgroup from")?;
    if let Some(m) = members.iter().find(|m| parent(m).as_ref() != Some(&dir)) {
        return Err(format!("member {} is in {}, not below {}", m.pid(), m.cgroup().display(), dir.display()).into());
    }
    Ok(dir)
}

/// Waits until none of `units` is loaded any more (systemd collected them), at most
/// [`UNLOAD_TIMEOUT`] after `since`; the time from `since`, or `None` when some remain.
/// Units never come back, so each is asked about until it is gone, one at a time: one D-Bus
/// call per 2 ms while one is loaded, which keeps the manager's load from the asking small.
fn wait_unloaded(client: &daemonic::systemd::Client, units: &[String], since: Instant) -> Option<Duration> {
    let mut left: Vec<&String> = units.iter().collect();
    loop {
        while left.last().is_some_and(|u| !client.exists(u)) {
            left.pop();
        }
        if left.is_empty() {
            return Some(since.elapsed());
        }
        if since.elapsed() > UNLOAD_TIMEOUT {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// CPU time used so far by the test user manager (`DAEMONIC_TEST_MANAGER_PID`, exported by
/// `scripts/user-manager start`); `None` for any other manager.
fn manager_cpu() -> Option<Duration> {
    let pid = std::env::var("DAEMONIC_TEST_MANAGER_PID").ok()?.parse().ok()?;
    cpu_ns(pid).map(Duration::from_nanos)
}

/// The manager's CPU time since `before` (see [`manager_cpu`]).
fn manager_cpu_since(before: Option<Duration>) -> Option<Duration> {
    Some(manager_cpu()?.saturating_sub(before?))
}

/// `systemctl --user list-units --all` for `pattern`: (unit, "active/sub") per loaded unit, or
/// why it could not be asked.
fn list_units(pattern: &str) -> Result<Vec<(String, String)>, String> {
    let out = std::process::Command::new("systemctl")
        .args(["--user", "list-units", "--all", "--plain", "--no-legend", "--no-pager", pattern])
        .stdin(StdStdio::null())
        .output()
        .map_err(|e| format!("systemctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "systemctl --user list-units: {}, {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (unit, _load, active, sub) = (w.next()?, w.next()?, w.next()?, w.next()?);
            Some((unit.to_string(), format!("{active}/{sub}")))
        })
        .collect())
}

/// "3 × text, 1 × other" from counts.
fn counts<K: std::fmt::Display>(m: &BTreeMap<K, usize>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter().map(|(k, n)| format!("{n} × {k}")).collect::<Vec<_>>().join(", ")
}

/// A member's Python-convention status as words: `SIGKILL`, `SIGTERM`, `exit 0`.
fn status_words(code: i32) -> String {
    match code {
        c if c == -libc::SIGKILL => "SIGKILL".into(),
        c if c == -libc::SIGTERM => "SIGTERM".into(),
        c if c < 0 => format!("signal {}", -c),
        c => format!("exit {c}"),
    }
}

/// "min–max" in milliseconds.
fn spread(v: &[Duration]) -> String {
    let (min, max) = (v.iter().min().copied().unwrap_or_default(), v.iter().max().copied().unwrap_or_default());
    format!("{}–{}", ms(min), ms(max))
}

/// How 4(a) ends the sleepers of one slice.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KillHow {
    /// `1` into `cgroup.kill` of the slice's cgroup directory.
    CgroupKill,
    /// `KillUnit(scope, "all", SIGKILL)`, once per scope.
    KillUnit,
    /// `StopUnit(slice)`, waiting for its job.
    StopSlice,
}

impl KillHow {
    const ALL: [KillHow; 3] = [KillHow::CgroupKill, KillHow::KillUnit, KillHow::StopSlice];

    fn label(self) -> &'static str {
        match self {
            KillHow::CgroupKill => "cgroup.kill of the slice (1 write)",
            KillHow::KillUnit => "KillUnit(scope, all, SIGKILL) × N",
            KillHow::StopSlice => "StopUnit(slice), job done",
        }
    }

    fn atomic(self) -> &'static str {
        match self {
            KillHow::CgroupKill => "yes: one write, the kernel kills the subtree; a racing fork dies too",
            KillHow::KillUnit => "no: N calls; per scope systemd reads cgroup.procs, kill()s PID by PID",
            KillHow::StopSlice => "no: a stop job per scope, KillSignal= (SIGTERM) PID by PID",
        }
    }
}

/// One timed kill of a slice of N scoped sleepers.
struct KillRun {
    /// Spawning the N scoped sleepers, one after the other over one connection (not counted).
    setup: Duration,
    /// The manager's CPU time during the setup, when known.
    setup_manager_cpu: Option<Duration>,
    /// From the kill until every sleeper is reaped (and, for the slice stop, its job done).
    took: Duration,
    /// From the kill until systemd has unloaded every scope (not counted); `None`: not in time.
    unloaded: Option<Duration>,
    /// The manager's CPU time from the kill until every scope was unloaded, when known.
    kill_manager_cpu: Option<Duration>,
    /// How the sleepers ended (status, minus the signal) and how many of them.
    statuses: BTreeMap<i32, usize>,
    /// The slice's units right after the last sleeper was reaped: "type active/sub" and how many.
    states: BTreeMap<String, usize>,
}

/// Starts `n` scoped sleepers in `slice`, ends them the way `how` says, and waits until systemd
/// has unloaded their scopes.
fn kill_run(
    client: &daemonic::systemd::Client,
    slice: &BenchSlice,
    how: KillHow,
    n: usize,
    tag: &str,
) -> BenchResult<KillRun> {
    let (setup, sleepers) = spawn_sleepers(&[client], slice, tag, n)?;
    wait_all_sleeping(sleepers.members.iter().map(Member::pid))?;
    let dir = slice_dir(&sleepers.members)?;

    let cpu = manager_cpu();
    let start = Instant::now();
    match how {
        KillHow::CgroupKill => cgroup::kill(&dir)?,
        KillHow::KillUnit => {
            for unit in &sleepers.units {
                client.kill(unit, "all", libc::SIGKILL)?;
            }
        }
        KillHow::StopSlice => client.stop_and_wait(slice.unit.as_str())?,
    }
    let mut statuses = BTreeMap::new();
    for m in &sleepers.members {
        *statuses.entry(m.wait()?).or_insert(0) += 1;
    }
    let took = start.elapsed();

    let mut states = BTreeMap::new();
    match list_units(&slice.pattern()) {
        Ok(units) => {
            for (unit, state) in units {
                let kind = unit.rsplit_once('.').map_or("?", |(_, k)| k).to_string();
                *states.entry(format!("{kind} {state}")).or_insert(0) += 1;
            }
        }
        Err(e) => {
            states.insert(format!("? ({e})"), 1);
        }
    }
    let unloaded = wait_unloaded(client, &sleepers.units, start);
    let kill_manager_cpu = manager_cpu_since(cpu);
    Ok(KillRun { setup, setup_manager_cpu: sleepers.manager_cpu, took, unloaded, kill_manager_cpu, statuses, states })
}

/// 4: many members, each in its own transient scope: (a) which kill of a whole slice is faster
/// and atomic, (b) how fast 100 of them start when started at once. Needs the user manager,
/// as section 3; skips otherwise. Stops every unit it created and checks that none is left.
fn bench_bulk() -> BenchResult<()> {
    use daemonic::systemd::{Bus, Client};
    println!("4. many members, each in its own transient scope (user manager)");
    let client = match Client::connect(Bus::User) {
        Ok(c) => c,
        Err(e) => {
            println!("   skipped: {e}\n");
            return Ok(());
        }
    };
    let parent_was_loaded = client.exists("daemonic.slice");
    let kill_slice = BenchSlice::new("kill")?;
    let start_slice = BenchSlice::new("start")?;

    // (b) runs first: after the slices of 1000 scopes of (a), the manager stays slower to
    // start scopes (about 1.5x its CPU time per scope here), although they are all unloaded.
    let mut parent_dir = None;
    let result =
        bulk_start(&client, &start_slice, &mut parent_dir).and_then(|b| Ok((bulk_kill(&client, &kill_slice)?, b)));

    // Whatever happened, stop both slices (with any scope and sleeper still in them).
    let mut stop_errors = Vec::new();
    for slice in [&kill_slice, &start_slice] {
        if let Err(e) = client.stop_and_wait(slice.unit.as_str()) {
            stop_errors.push(e.to_string());
        }
    }
    // `daemonic.slice` came with our slices: stop it too if this run created it and it is empty.
    if !parent_was_loaded
        && parent_dir.as_deref().is_some_and(|d| cgroup::subdirs(d).is_ok_and(|s| s.is_empty()))
        && let Err(e) = client.stop_and_wait("daemonic.slice")
    {
        stop_errors.push(e.to_string());
    }
    let (a, b) = result?;
    if !stop_errors.is_empty() {
        return Err(stop_errors.join("; ").into());
    }
    print!("{a}{b}");

    // Nothing of ours may remain loaded (section 3's scopes included); systemd collects
    // stopped units asynchronously, so give it a moment.
    let deadline = Instant::now() + UNLOAD_TIMEOUT;
    loop {
        match list_units("daemonic-bench*") {
            Ok(units) if units.is_empty() => {
                println!("   leftovers: no daemonic-bench* unit loaded (systemctl --user list-units --all)\n");
                return Ok(());
            }
            Ok(units) if Instant::now() > deadline => {
                return Err(format!("units left loaded: {units:?}").into());
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                for slice in [&kill_slice, &start_slice] {
                    if client.exists(slice.unit.as_str()) {
                        return Err(format!("{} is still loaded", slice.unit).into());
                    }
                }
                println!("   leftovers: our slices are unloaded; could not list units ({e})\n");
                return Ok(());
            }
        }
    }
}

/// "12.3 ms" of manager CPU per member, or "?" when unknown.
fn per_member_cpu(cpu: &[Option<Duration>], n: usize) -> String {
    let known: Option<Vec<Duration>> = cpu.iter().copied().collect();
    match known {
        Some(v) if !v.is_empty() => format!("{:.2} ms", median(&v).as_secs_f64() * 1000.0 / n as f64),
        _ => "?".into(),
    }
}

/// 4(a): [`BULK_SMALL`] (and, when its setup is affordable, [`BULK_LARGE`]) scoped sleepers in
/// one slice, ended by each mechanism in turn, [`BULK_REPS`] runs each (fewer for the large
/// slice when its setup would overrun [`BULK_SETUP_BUDGET`]).
fn bulk_kill(client: &daemonic::systemd::Client, slice: &BenchSlice) -> BenchResult<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "   (a) which kill is atomic and faster: N `/bin/sleep 1000`, each in its own scope, all in {};",
        slice.unit
    );
    let _ = writeln!(
        out,
        "       from the kill until every sleeper is reaped (median of {BULK_REPS} runs, mechanisms interleaved, the N scopes made anew per run)"
    );
    let mut sizes: Vec<(usize, Vec<Vec<KillRun>>)> = Vec::new();
    let mut notes = Vec::new();
    for n in [BULK_SMALL, BULK_LARGE] {
        let mut reps = BULK_REPS;
        if n == BULK_LARGE {
            // Linear projection from the small slice: a lower bound (see below).
            let small: Vec<Duration> = sizes[0].1.iter().flatten().map(|r| r.setup).collect();
            let one = median(&small) * (BULK_LARGE / BULK_SMALL) as u32;
            if one * KillHow::ALL.len() as u32 > BULK_SETUP_BUDGET {
                notes.push(format!(
                    "N = {BULK_LARGE} skipped: one run of each mechanism would spend ~{:.0} s setting up (projected), over {} s",
                    (one * KillHow::ALL.len() as u32).as_secs_f64(),
                    BULK_SETUP_BUDGET.as_secs()
                ));
                break;
            }
        }
        let mut runs: Vec<Vec<KillRun>> = KillHow::ALL.iter().map(|_| Vec::new()).collect();
        'reps: for rep in 0..BULK_REPS {
            for (k, how) in KillHow::ALL.into_iter().enumerate() {
                if rep >= reps {
                    break 'reps;
                }
                let run = kill_run(client, slice, how, n, &format!("n{n}_r{rep}_k{k}"))?;
                if n == BULK_LARGE && rep == 0 && k == 0 {
                    // Starting a scope costs the manager more the more scopes its slice holds,
                    // so the projection undershoots: plan the runs from the real setup time.
                    // One run of each mechanism may overrun the budget by half; beyond that,
                    // this first run (cgroup.kill) is the only one.
                    let fit = (BULK_SETUP_BUDGET.as_secs_f64() / run.setup.as_secs_f64()) as usize;
                    reps = if run.setup * 2 > BULK_SETUP_BUDGET {
                        0
                    } else {
                        (fit / KillHow::ALL.len()).clamp(1, BULK_REPS)
                    };
                    if reps < BULK_REPS {
                        let what = match reps {
                            0 => "only cgroup.kill measured".to_string(),
                            r => format!("{r} run(s) each, not {BULK_REPS}"),
                        };
                        notes.push(format!(
                            "N = {n}: {what}: setting up {n} scopes took {:.1} s, {fit} setup(s) fit in the {} s budget",
                            run.setup.as_secs_f64(),
                            BULK_SETUP_BUDGET.as_secs()
                        ));
                    }
                }
                runs[k].push(run);
            }
        }
        sizes.push((n, runs));
    }
    let _ = writeln!(
        out,
        "       {:<36} {:>5} {:>4} {:>10} {:>14}  atomic",
        "mechanism", "N", "runs", "median ms", "min–max ms"
    );
    for (n, runs) in &sizes {
        for (how, r) in KillHow::ALL.into_iter().zip(runs).filter(|(_, r)| !r.is_empty()) {
            let took: Vec<Duration> = r.iter().map(|r| r.took).collect();
            let _ = writeln!(
                out,
                "       {:<36} {:>5} {:>4} {:>10} {:>14}  {}",
                how.label(),
                n,
                r.len(),
                ms(median(&took)),
                spread(&took),
                how.atomic()
            );
        }
    }
    for note in &notes {
        let _ = writeln!(out, "       {note}");
    }
    for (n, runs) in &sizes {
        let setups: Vec<Duration> = runs.iter().flatten().map(|r| r.setup).collect();
        let setup_cpu: Vec<Option<Duration>> = runs.iter().flatten().map(|r| r.setup_manager_cpu).collect();
        let _ = writeln!(
            out,
            "       N = {n}: setting up (N scopes started one by one over one connection; not counted) took {} ms median \
             = {:.2} ms per member, manager CPU {} per member; {:.1} s for all {} runs",
            ms(median(&setups)),
            median(&setups).as_secs_f64() * 1000.0 / *n as f64,
            per_member_cpu(&setup_cpu, *n),
            setups.iter().sum::<Duration>().as_secs_f64(),
            setups.len()
        );
        for (how, r) in KillHow::ALL.into_iter().zip(runs).filter(|(_, r)| !r.is_empty()) {
            let mut statuses = BTreeMap::new();
            let mut states = BTreeMap::new();
            for run in r {
                for (code, k) in &run.statuses {
                    *statuses.entry(status_words(*code)).or_insert(0) += k;
                }
                for (state, k) in &run.states {
                    *states.entry(state.clone()).or_insert(0) += k;
                }
            }
            let unloaded: Vec<Duration> = r.iter().filter_map(|r| r.unloaded).collect();
            let unload = if unloaded.len() == r.len() {
                format!("{} ms", ms(median(&unloaded)))
            } else {
                format!("NOT within {} s in {} of {} runs", UNLOAD_TIMEOUT.as_secs(), r.len() - unloaded.len(), r.len())
            };
            let kill_cpu: Vec<Option<Duration>> = r.iter().map(|r| r.kill_manager_cpu).collect();
            let _ = writeln!(
                out,
                "         {:<34} sleepers ended by {}; units right after (all runs): {}",
                how.label(),
                counts(&statuses),
                counts(&states)
            );
            let _ = writeln!(
                out,
                "         {:<34} every scope unloaded {unload} after the kill; manager CPU until then {} per member",
                "",
                per_member_cpu(&kill_cpu, *n)
            );
        }
    }
    let _ = writeln!(out);
    Ok(out)
}

/// 4(b): [`BULK_START`] scoped sleepers started at once, from several threads with a
/// connection each or sharing one, against one connection sequentially.
fn bulk_start(
    client: &daemonic::systemd::Client,
    slice: &BenchSlice,
    parent_dir: &mut Option<PathBuf>,
) -> BenchResult<String> {
    use daemonic::systemd::{Bus, Client};
    let mut out = String::new();
    // (threads, whether they share the one connection)
    const VARIANTS: [(usize, bool); 5] = [(1, true), (2, false), (4, false), (8, false), (4, true)];
    let mut connect = Vec::new();
    let mut own = Vec::new();
    for _ in 0..8 {
        let start = Instant::now();
        own.push(Client::connect(Bus::User)?);
        connect.push(start.elapsed());
    }
    let mut took: Vec<Vec<Duration>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    let mut cpu: Vec<Vec<Option<Duration>>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    for rep in 0..BULK_REPS {
        for (v, &(threads, shared)) in VARIANTS.iter().enumerate() {
            let clients: Vec<&Client> = if shared { vec![client; threads] } else { own[..threads].iter().collect() };
            let (t, sleepers) = spawn_sleepers(&clients, slice, &format!("t{threads}_{v}_r{rep}"), BULK_START)?;
            took[v].push(t);
            cpu[v].push(sleepers.manager_cpu);
            wait_all_sleeping(sleepers.members.iter().map(Member::pid))?;
            let dir = slice_dir(&sleepers.members)?;
            if parent_dir.is_none() {
                *parent_dir = dir.parent().map(Path::to_path_buf);
            }
            let end = Instant::now();
            cgroup::kill(&dir)?;
            for m in &sleepers.members {
                m.wait()?;
            }
            if wait_unloaded(client, &sleepers.units, end).is_none() {
                return Err(format!("the scopes of {} were not unloaded in time", slice.unit).into());
            }
        }
    }
    let _ = writeln!(
        out,
        "   (b) {BULK_START} members started at once, each in its own scope in {} (median of {BULK_REPS} runs, variants interleaved)",
        slice.unit
    );
    let _ = writeln!(
        out,
        "       {:<38} {:>9} {:>14} {:>10} {:>12}",
        "started by", "total ms", "min–max ms", "ms/member", "manager CPU"
    );
    for (v, &(threads, shared)) in VARIANTS.iter().enumerate() {
        let label = match (threads, shared) {
            (1, _) => "1 thread, 1 connection (sequential)".to_string(),
            (n, true) => format!("{n} threads sharing 1 connection"),
            (n, false) => format!("{n} threads, a connection each"),
        };
        let med = median(&took[v]);
        let _ = writeln!(
            out,
            "       {:<38} {:>9} {:>14} {:>10.2} {:>12}",
            label,
            ms(med),
            spread(&took[v]),
            med.as_secs_f64() * 1000.0 / BULK_START as f64,
            per_member_cpu(&cpu[v], BULK_START)
        );
    }
    let _ = writeln!(
        out,
        "       (manager CPU per member; connecting a client, not counted: median {} ms; the machine has {} CPUs)",
        ms(median(&connect)),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(out)
}
