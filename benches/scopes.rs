//! # systemd's own ways to end and to start many scopes
//!
//! `cargo bench --bench scopes` (harness-less, about a minute; asserts correctness but never
//! speed) measures what daemonic's systemd backend chose between. It needs a systemd user
//! manager on the session bus (for example `eval "$(scripts/user-manager start)"`, then
//! `scripts/user-manager stop`); without one it says so and measures nothing. Spawn latency,
//! teardown and footprint against the peers are `scripts/bench` (`tools/bench/`,
//! `docs/benchmarks.md`).
//!
//! **(a) Which kill is atomic and faster.** N `/bin/sleep 1000` members, each the only process of
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
//! **(b) [`BULK_START`] members started at once**, the same scoped sleepers in
//! `daemonic-bench_start_<pid>.slice`: from one connection sequentially, from 2, 4 and 8 threads
//! with a connection each, and from 4 threads sharing the one connection; the total and
//! per-member ms until all run, median of [`BULK_REPS`] runs. It runs before (a), because after
//! (a)'s slices of 1000 scopes the manager stays slower to start scopes.
//!
//! At the end both slices are stopped (and `daemonic.slice` if this run created it and it is
//! empty), no `daemonic-bench*` unit may remain loaded, and no child process of this benchmark
//! may remain.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio as StdStdio;
use std::time::{Duration, Instant};

use daemonic::__internal::cgroup;
use daemonic::{Command, Member};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    if let Err(e) = run() {
        eprintln!("scopes benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    if let Some(id) = daemonic::current_process()?.family {
        println!("scopes benchmark skipped: it runs inside daemonic family {id}; run it outside any family");
        return Ok(());
    }
    let started = Instant::now();
    print_machine();
    bench_bulk()?;
    check_children()?;
    println!("done in {:.1} s; load average now {}", started.elapsed().as_secs_f64(), load_average());
    Ok(())
}

/// The first three fields of `/proc/loadavg`: other work on the machine skews every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn print_machine() {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("daemonic scopes benchmark");
    println!("  kernel   {} {} (uname -sr)", read("/proc/sys/kernel/ostype"), read("/proc/sys/kernel/osrelease"));
    println!("  cpus     {nproc} (nproc)");
    println!("  load     {} (1, 5, 15 min averages at start)", load_average());
    println!();
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// CPU time consumed by `pid` so far, in nanoseconds (`/proc/<pid>/schedstat`).
fn cpu_ns(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?.split_whitespace().next()?.parse().ok()
}

/// The state letter and command name of `pid`, from `/proc/<pid>/stat`.
fn state(pid: u32) -> Option<(char, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (left, right) = text.rsplit_once(')')?;
    let comm = left.split_once('(')?.1.to_string();
    Some((right.trim_start().chars().next()?, comm))
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

/// Checks that this process has no child left (no sleeper).
fn check_children() -> BenchResult<()> {
    let me = std::process::id().to_string();
    let children: Vec<String> = std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = text.rsplit_once(')')?.1.split_whitespace().nth(1)?.to_string();
            (ppid == me).then(|| format!("{pid} {:?}", state(pid).map(|(_, c)| c).unwrap_or_default()))
        })
        .collect();
    println!("leftovers: {} child processes remain", children.len());
    if !children.is_empty() {
        return Err(format!("left behind: processes {children:?}").into());
    }
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
    unit: daemonic::__internal::unit_name::UnitName,
}

impl BenchSlice {
    fn new(what: &str) -> BenchResult<BenchSlice> {
        use daemonic::__internal::unit_name::{UnitName, UnitType};
        let level = format!("bench_{what}_{}", std::process::id());
        let unit = UnitName::new(&["daemonic", &level], UnitType::Slice)?;
        Ok(BenchSlice { level, unit })
    }

    /// `daemonic-bench_<what>_<pid>-<tag>_<i>.scope`.
    fn scope(&self, tag: &str, i: usize) -> BenchResult<daemonic::__internal::unit_name::UnitName> {
        use daemonic::__internal::unit_name::{UnitName, UnitType};
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
    clients: &[&daemonic::__internal::systemd::Client],
    slice: &BenchSlice,
    tag: &str,
    n: usize,
) -> BenchResult<(Duration, Sleepers)> {
    use daemonic::__internal::spawn_in_scope;
    use daemonic::__internal::systemd::Client;
    use daemonic::__internal::unit_name::UnitName;
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
fn wait_unloaded(client: &daemonic::__internal::systemd::Client, units: &[String], since: Instant) -> Option<Duration> {
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
    client: &daemonic::__internal::systemd::Client,
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
    use daemonic::__internal::systemd::{Bus, Client};
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
fn bulk_kill(client: &daemonic::__internal::systemd::Client, slice: &BenchSlice) -> BenchResult<String> {
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
    client: &daemonic::__internal::systemd::Client,
    slice: &BenchSlice,
    parent_dir: &mut Option<PathBuf>,
) -> BenchResult<String> {
    use daemonic::__internal::systemd::{Bus, Client};
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
