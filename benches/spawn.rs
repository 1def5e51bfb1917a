//! # The cost of daemonic's guarantees: spawn and teardown
//!
//! `cargo bench --bench spawn` (harness-less, under two minutes, asserts correctness but never
//! speed) prints two tables from one run, with the machine (kernel, CPUs, cgroup mode, load).
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
//! Needs a writable cgroup v2 directory (root on a unified or hybrid host, or a delegated
//! cgroup) and must not run inside a daemonic family; prints why and exits without measuring
//! otherwise. Every family is shut down and every child reaped before the program ends; that
//! nothing is left behind is checked at the end.

// The libc fork+exec baseline needs `fork`, `execv` and `_exit`, which only exist as unsafe FFI.
#![allow(unsafe_code)]

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

/// Spawns through a transient scope per member, over one D-Bus connection (the systemd
/// backend's placement: a gated child, `StartTransientUnit` with its PID, `JobRemoved`, release)
/// against `systemd-run --user --scope`. Needs a user manager on the session bus (for example
/// `eval "$(scripts/user-manager start)"`); says so and skips otherwise.
fn bench_scopes() -> BenchResult<()> {
    use daemonic::systemd::{Bus, Client};
    use daemonic::unit_name::{UnitName, UnitType};
    const SCOPES: usize = 200;
    const RUNS: usize = 50;
    println!("3. spawn + wait of /bin/true in a transient systemd scope, per member (user manager)");
    let client = match Client::connect(Bus::User) {
        Ok(c) => c,
        Err(e) => {
            println!("   skipped: {e}\n");
            return Ok(());
        }
    };
    let mut ours = Vec::with_capacity(SCOPES);
    for i in 0..SCOPES + 20 {
        let unit = UnitName::new(&["daemonic", "bench", &format!("{}x{i}", std::process::id())], UnitType::Scope)?;
        let start = Instant::now();
        let member = daemonic::systemd::spawn_in_scope(
            &client,
            &unit,
            "daemonic benchmark",
            &mut Command::new("/bin/true"),
            &[],
        )?;
        member.wait()?;
        if i >= 20 {
            ours.push(start.elapsed().as_nanos() as u64);
        }
    }
    let mut theirs = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        let status = std::process::Command::new("systemd-run")
            .args(["--user", "--scope", "--collect", "--quiet", "/bin/true"])
            .status()?;
        if !status.success() {
            return Err(format!("systemd-run --user --scope failed: {status}").into());
        }
        theirs.push(start.elapsed().as_nanos() as u64);
    }
    let (mean_o, med_o, p99_o) = summary(&mut ours);
    let (mean_t, med_t, p99_t) = summary(&mut theirs);
    println!("   {:<44} {:>9} {:>9} {:>9}", "variant", "mean ms", "median ms", "p99 ms");
    println!(
        "   {:<44} {:>9.2} {:>9.2} {:>9.2}   target <= 5 ms: {}",
        format!("daemonic scope, gated child ({SCOPES} runs)"),
        mean_o / 1000.0,
        med_o / 1000.0,
        p99_o / 1000.0,
        verdict(med_o / 1000.0 <= 5.0)
    );
    println!(
        "   {:<44} {:>9.2} {:>9.2} {:>9.2}",
        format!("systemd-run --user --scope ({RUNS} runs)"),
        mean_t / 1000.0,
        med_t / 1000.0,
        p99_t / 1000.0
    );
    println!("   => {:.1}x faster than systemd-run --scope (medians)\n", med_t / med_o);
    Ok(())
}
