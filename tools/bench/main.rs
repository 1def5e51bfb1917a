//! `bench`: daemonic against its peers, from one command. Run through `scripts/bench`, which
//! builds this program and `daemonic` in release mode and starts a systemd user manager when
//! none runs.
//!
//! ```text
//! bench [--quick] --daemonic PATH [--python PATH] [--python-package DIR] [--out DIR]
//! bench ROLE ARGS…          (one measurement in a fresh process; see roles.rs)
//! ```
//!
//! Four sections, every comparison measured in the same run, the variants taking turns so that
//! noise on the machine hits them alike:
//!
//! 1. **spawn + wait** of one child, per child: plain fork+exec (the floor), clone3 into a fresh
//!    cgroup (the floor with a cgroup), daemonic's library on both backends and its CLI,
//!    `systemd-run --user --scope`, and Python's `multiprocessing.Process(daemon=True)` with the
//!    fork, forkserver and spawn start methods and daemonic's own (the package of `python/`);
//! 2. **teardown**: from "the family ends" to "all N daemons reaped", N = 10 … 5000: daemonic on
//!    both backends, Python's exit handler, and a loop that kills and reaps PIDs one by one;
//! 3. **scaling**: the cost of one spawn as the family grows to 5000 members;
//! 4. **footprint**: RSS and CPU of `daemonic run` and of its guardian with 0, 100 and 1000 idle
//!    members.
//!
//! Each figure is the median over repeated runs (each run a fresh process) with the runs'
//! min–max. The tables go to standard output and to `DIR/benchmarks.md`, the chart to
//! `DIR/benchmarks.svg`. The exit status is 1 when a measurement failed or something was left
//! behind, 2 when it could not run; a missed target is reported, not an error.

mod chart;
mod floor;
#[path = "../host.rs"]
mod host;
mod proc;
mod report;
mod roles;
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How much to measure.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) quick: bool,
    /// Rounds of the spawn section; every variant runs once per round, in a fresh process.
    pub(crate) spawn_rounds: usize,
    /// Teardown sizes.
    pub(crate) sizes: Vec<usize>,
    /// Repetitions of each teardown measurement, for a size.
    pub(crate) teardown_reps: fn(usize) -> usize,
    /// The largest family the systemd backend is torn down at.
    pub(crate) systemd_max: usize,
    /// Idle members of the footprint section, and how often each is measured.
    pub(crate) idle: Vec<usize>,
    pub(crate) idle_reps: usize,
    /// How long the idle CPU is watched.
    pub(crate) idle_window: Duration,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                spawn_rounds: 3,
                sizes: vec![10, 100, 1000, 5000],
                teardown_reps: |n| if n >= 5000 { 1 } else { 2 },
                systemd_max: 1000,
                idle: vec![0, 100, 1000],
                idle_reps: 1,
                idle_window: Duration::from_secs(2),
            }
        } else {
            Plan {
                quick,
                spawn_rounds: 10,
                sizes: vec![10, 100, 1000, 5000],
                teardown_reps: |n| if n >= 5000 { 3 } else { 5 },
                systemd_max: 5000,
                idle: vec![0, 100, 1000],
                idle_reps: 3,
                idle_window: Duration::from_secs(5),
            }
        }
    }
}

/// One way to spawn and wait for a child.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpawnVariant {
    /// The role's variant, or `py-METHOD` for Python.
    pub(crate) key: &'static str,
    pub(crate) label: &'static str,
    /// Timed spawns per run (quick, long).
    per_run: (usize, usize),
    pub(crate) daemonic: bool,
}

pub(crate) const SPAWN_VARIANTS: [SpawnVariant; 17] = [
    SpawnVariant { key: "fork-exec", label: "fork + exec + wait (the floor)", per_run: (100, 200), daemonic: false },
    SpawnVariant {
        key: "std-command",
        label: "std::process::Command::status (posix_spawn)",
        per_run: (100, 200),
        daemonic: false,
    },
    SpawnVariant {
        key: "clone3-cgroup",
        label: "clone3 into a fresh cgroup (the floor with a cgroup)",
        per_run: (100, 200),
        daemonic: false,
    },
    SpawnVariant {
        key: "lib-member",
        label: "daemonic cgroupfs, library: member",
        per_run: (100, 200),
        daemonic: true,
    },
    SpawnVariant {
        key: "lib-fork",
        label: "daemonic cgroupfs, library: member, fork fallback (no clone3)",
        per_run: (100, 200),
        daemonic: true,
    },
    SpawnVariant {
        key: "lib-daemon",
        label: "daemonic cgroupfs, library: daemon",
        per_run: (100, 200),
        daemonic: true,
    },
    SpawnVariant {
        key: "cli-spawn",
        label: "daemonic cgroupfs, CLI: daemonic spawn",
        per_run: (30, 60),
        daemonic: true,
    },
    SpawnVariant {
        key: "cli-run",
        label: "daemonic cgroupfs, CLI: daemonic run (a family each)",
        per_run: (20, 40),
        daemonic: true,
    },
    SpawnVariant {
        key: "cli-run-systemd",
        label: "daemonic systemd, CLI: daemonic run (a family each)",
        per_run: (10, 20),
        daemonic: true,
    },
    SpawnVariant { key: "lib-systemd", label: "daemonic systemd, library: daemon", per_run: (30, 60), daemonic: true },
    SpawnVariant { key: "systemd-run", label: "systemd-run --user --scope", per_run: (10, 20), daemonic: false },
    SpawnVariant {
        key: "py-fork",
        label: "Python multiprocessing, fork (daemon=True)",
        per_run: (50, 100),
        daemonic: false,
    },
    SpawnVariant {
        key: "py-forkserver",
        label: "Python multiprocessing, forkserver (daemon=True)",
        per_run: (20, 40),
        daemonic: false,
    },
    SpawnVariant {
        key: "py-spawn",
        label: "Python multiprocessing, spawn (daemon=True)",
        per_run: (5, 10),
        daemonic: false,
    },
    SpawnVariant {
        key: "py-daemonic",
        label: "Python multiprocessing, daemonic (daemon=True)",
        per_run: (50, 100),
        daemonic: true,
    },
    SpawnVariant {
        key: "py-fork-ballast",
        label: "Python multiprocessing, fork, parent holding 200 MiB",
        per_run: (20, 40),
        daemonic: false,
    },
    SpawnVariant {
        key: "py-daemonic-ballast",
        label: "Python multiprocessing, daemonic, parent holding 200 MiB",
        per_run: (20, 40),
        daemonic: true,
    },
];

/// One way to end a family of N daemons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Teardown {
    /// daemonic: `cgroup.kill`, `populated 0`, every daemon reaped.
    Reaped(&'static str),
    /// daemonic: the whole `Family::shutdown`, every cgroup (unit) removed, the guardian gone.
    Shutdown(&'static str),
    /// Python's exit handler: SIGTERM each daemon, then join each.
    Python,
    /// SIGKILL and reap one PID at a time.
    KillLoop,
    /// The kernel's floor: one `cgroup.kill` of plain processes in one cgroup, each reaped.
    KernelFloor,
}

impl Teardown {
    pub(crate) fn label(self) -> String {
        match self {
            Teardown::Reaped(b) => format!("daemonic {b}: all daemons reaped"),
            Teardown::Shutdown(b) => format!("daemonic {b}: and every cgroup removed"),
            Teardown::Python => "Python's exit handler (terminate all, join each)".into(),
            Teardown::KillLoop => "kill + waitpid, one PID at a time".into(),
            Teardown::KernelFloor => "the kernel's floor: cgroup.kill of N plain processes, each reaped".into(),
        }
    }
}

/// Backend, idle members, process ("daemonic run" or "guardian").
pub(crate) type FootprintKey = (&'static str, usize, &'static str);

/// One process's VmRSS in KiB and the CPU time it used over the idle window, in ns.
pub(crate) type Footprint = (u64, u64);

/// Everything measured, raw.
#[derive(Default)]
pub(crate) struct Results {
    /// Per spawn variant (key), per run: the samples in nanoseconds.
    pub(crate) spawn: BTreeMap<&'static str, Vec<Vec<u64>>>,
    /// Per teardown method and N, per run: nanoseconds.
    pub(crate) teardown: BTreeMap<(Teardown, usize), Vec<u64>>,
    /// Per backend, per run of the largest family: every spawn's nanoseconds, in order.
    pub(crate) scaling: BTreeMap<&'static str, Vec<Vec<u64>>>,
    /// Per backend, idle members and process: what each run saw.
    pub(crate) footprint: BTreeMap<FootprintKey, Vec<Footprint>>,
    /// Per spawn variant and process ([`Services::NAMES`]), per run: the process's CPU time per
    /// spawn, in nanoseconds.
    pub(crate) service_cpu: BTreeMap<(&'static str, &'static str), Vec<u64>>,
    /// What failed, by what was being measured.
    pub(crate) failures: Vec<(String, String)>,
}

/// Processes whose CPU time a spawn role charges to its spawns: the user manager and the session
/// bus's daemon, found here; the role adds itself ("caller") and its family's guardian.
pub(crate) struct Services(pub(crate) Vec<(&'static str, u32)>);

impl Services {
    pub(crate) const NAMES: [&'static str; 4] = ["manager", "dbus-daemon", "caller", "guardian"];
    /// The order of the columns in the document.
    pub(crate) const NAMES_SHOWN: [&'static str; 4] = ["caller", "guardian", "manager", "dbus-daemon"];

    /// The test manager's processes when `scripts/user-manager` started it (its exports), else
    /// whoever owns `org.freedesktop.systemd1` and the bus itself.
    pub(crate) fn find() -> Services {
        let from_env = |var: &str| std::env::var(var).ok().and_then(|v| v.parse().ok());
        let manager = from_env("DAEMONIC_TEST_MANAGER_PID").or_else(|| proc::bus_name_pid("org.freedesktop.systemd1"));
        let bus = from_env("DAEMONIC_TEST_DBUS_PID").or_else(|| proc::bus_name_pid("org.freedesktop.DBus"));
        Services(
            [(Services::NAMES[0], manager), (Services::NAMES[1], bus)]
                .into_iter()
                .filter_map(|(n, p)| Some((n, p?)))
                .collect(),
        )
    }

    /// Every service's CPU time so far.
    pub(crate) fn cpu(&self) -> Vec<Option<u64>> {
        self.0.iter().map(|&(_, pid)| proc::cpu_ns(pid)).collect()
    }
}

/// Where things are.
pub(crate) struct Env {
    pub(crate) me: PathBuf,
    pub(crate) daemonic: PathBuf,
    pub(crate) python: PathBuf,
    pub(crate) peers_py: PathBuf,
    /// The directory that holds the `daemonic` Python package (its modules and extension).
    pub(crate) python_package: Option<PathBuf>,
}

impl Env {
    /// The interpreter running `peers.py ARGS`: with the package on its path, and Python's
    /// defaults for what it caches (an inherited `PYTHONDONTWRITEBYTECODE` would make every
    /// `spawn` child compile `peers.py` again).
    fn peers(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.python);
        cmd.arg(&self.peers_py).args(args).env_remove("PYTHONDONTWRITEBYTECODE").env_remove("PYTHONPATH");
        if let Some(dir) = &self.python_package {
            cmd.env("PYTHONPATH", dir);
        }
        cmd
    }
}

struct Options {
    quick: bool,
    daemonic: Option<PathBuf>,
    python: Option<PathBuf>,
    python_package: Option<PathBuf>,
    out: PathBuf,
}

fn parse_options(mut it: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o =
        Options { quick: false, daemonic: None, python: None, python_package: None, out: PathBuf::from("docs") };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => o.quick = true,
            "--daemonic" => o.daemonic = Some(PathBuf::from(value()?)),
            "--python" => o.python = Some(PathBuf::from(value()?)),
            "--python-package" => o.python_package = Some(PathBuf::from(value()?)),
            "--out" => o.out = PathBuf::from(value()?),
            other => {
                return Err(format!(
                    "unknown option {other:?} (--quick, --daemonic PATH, --python PATH, --python-package DIR, --out DIR)"
                ));
            }
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if let Some(role) = args.peek().cloned().filter(|r| roles::ROLES.contains(&r.as_str())) {
        args.next();
        return match roles::run(&role, args) {
            Ok(report) => {
                if !report.is_null() {
                    println!("{report}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench {role}: {e}");
                ExitCode::from(70)
            }
        };
    }
    match parse_options(args).and_then(bench) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn bench(o: Options) -> Result<bool, String> {
    let started = Instant::now();
    let hierarchy = daemonic::__internal::cgroup::Hierarchy::host().map_err(|e| e.to_string())?;
    let own = hierarchy.cgroup_of(0).map_err(|e| e.to_string())?;
    if daemonic::current_process().map_err(|e| e.to_string())?.family.is_some() {
        return Err("this runs inside a daemonic family; run it outside any family".into());
    }
    if !daemonic::__internal::cgroup::writable(&own) {
        return Err(format!(
            "this process's cgroup {} is not writable (run as root, or in a delegated cgroup)",
            own.display()
        ));
    }
    let scratch = tempfile::Builder::new()
        .prefix("daemonic-bench.")
        .tempdir()
        .map_err(|e| format!("create a scratch directory: {e}"))?;
    let peers_py = scratch.path().join("peers.py");
    std::fs::write(&peers_py, include_str!("peers.py")).map_err(|e| format!("write {}: {e}", peers_py.display()))?;
    let env = Env {
        me: std::env::current_exe().map_err(|e| format!("find this program: {e}"))?,
        daemonic: o.daemonic.clone().ok_or("--daemonic PATH is required")?,
        python: match o.python.clone() {
            Some(p) => p,
            None => find_python()?,
        },
        peers_py,
        python_package: o.python_package.clone(),
    };
    let plan = Plan::new(o.quick);
    let machine = proc::Machine::read(&env.python.to_string_lossy());
    eprintln!(
        "bench: {} mode on {} ({} CPUs, {}), load {}",
        if plan.quick { "quick" } else { "long" },
        machine.kernel,
        machine.cpus,
        machine.cgroup_mode,
        machine.load
    );

    let mut results = Results::default();
    spawn_section(&env, &plan, &mut results);
    teardown_section(&env, &plan, &mut results);
    footprint_section(&env, &plan, &mut results);
    let leftovers = leftovers(&hierarchy);
    for l in &leftovers {
        results.failures.push(("leftovers".into(), l.clone()));
    }

    let report = report::Report::new(&plan, &machine, &results, started.elapsed());
    let markdown = report.markdown();
    print!("{markdown}");
    std::fs::create_dir_all(&o.out).map_err(|e| format!("create {}: {e}", o.out.display()))?;
    let md = o.out.join("benchmarks.md");
    let svg = o.out.join("benchmarks.svg");
    std::fs::write(&md, &markdown).map_err(|e| format!("write {}: {e}", md.display()))?;
    chart::draw(&svg, &report.charts()).map_err(|e| format!("draw {}: {e}", svg.display()))?;
    eprintln!("bench: wrote {} and {} in {:.0} s", md.display(), svg.display(), started.elapsed().as_secs_f64());
    if !results.failures.is_empty() {
        eprintln!("bench: {} measurement(s) failed; see the table", results.failures.len());
    }
    Ok(results.failures.is_empty())
}

/// Runs this program again in `role`; its JSON report.
fn role(env: &Env, args: &[String]) -> Result<Value, String> {
    json_of(std::process::Command::new(&env.me).args(args), &format!("bench {}", args.join(" ")))
}

/// Runs `cmd` and parses its standard output as JSON; a failure names `what` and the tail of
/// its standard error.
fn json_of(cmd: &mut std::process::Command, what: &str) -> Result<Value, String> {
    let out = cmd.stdin(std::process::Stdio::null()).output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        return Err(format!("{what}: {}: {}", out.status, tail.into_iter().rev().collect::<Vec<_>>().join(" / ")));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{what}: unreadable report: {e}"))
}

fn nanos(v: &Value) -> Result<Vec<u64>, String> {
    v.as_array().ok_or("not a list")?.iter().map(|x| x.as_u64().ok_or_else(|| format!("not a number: {x}"))).collect()
}

fn spawn_section(env: &Env, plan: &Plan, results: &mut Results) {
    eprintln!("bench: 1. spawn + wait, {} rounds of {} variants", plan.spawn_rounds, SPAWN_VARIANTS.len());
    for round in 0..plan.spawn_rounds {
        for v in SPAWN_VARIANTS {
            let n = if plan.quick { v.per_run.0 } else { v.per_run.1 };
            // peers.py reports the list of samples; a role, `{"ns": [...], "service_ns": {...}}`.
            let got = match v.key.strip_prefix("py-") {
                Some(method) if method.starts_with("daemonic") && env.python_package.is_none() => {
                    Err("no --python-package DIR: the daemonic package is not there to import".into())
                }
                Some(method) => {
                    json_of(&mut env.peers(&["spawn", method, &n.to_string()]), &format!("peers.py spawn {method}"))
                }
                None => role(
                    env,
                    &["spawn".into(), v.key.into(), n.to_string(), env.daemonic.to_string_lossy().into_owned()],
                )
                .and_then(|j| {
                    let per_service = j.get("service_ns").and_then(Value::as_object).into_iter().flatten();
                    for (service, ns) in per_service {
                        if let (Some(service), Some(ns)) = (Services::NAMES.iter().find(|s| *s == service), ns.as_u64())
                        {
                            results.service_cpu.entry((v.key, service)).or_default().push(ns);
                        }
                    }
                    j.get("ns").cloned().ok_or_else(|| "no \"ns\" in the report".to_string())
                }),
            };
            match got.and_then(|j| nanos(&j)) {
                Ok(ns) => results.spawn.entry(v.key).or_default().push(ns),
                Err(e) => results.failures.push((format!("spawn {} (round {})", v.label, round + 1), e)),
            }
        }
        eprintln!("bench:    round {} of {} done", round + 1, plan.spawn_rounds);
    }
}

fn teardown_section(env: &Env, plan: &Plan, results: &mut Results) {
    eprintln!("bench: 2. teardown and 3. scaling, N = {:?}", plan.sizes);
    let largest = plan.sizes.iter().copied().max().unwrap_or(0);
    for &n in &plan.sizes {
        for rep in 0..(plan.teardown_reps)(n) {
            for backend in ["cgroupfs", "systemd"] {
                if backend == "systemd" && n > plan.systemd_max {
                    continue;
                }
                match role(env, &["family".into(), backend.into(), n.to_string()]) {
                    Ok(j) => {
                        let get = |k: &str| j[k].as_u64();
                        if let (Some(r), Some(s)) = (get("reaped_ns"), get("shutdown_ns")) {
                            results.teardown.entry((Teardown::Reaped(backend), n)).or_default().push(r);
                            results.teardown.entry((Teardown::Shutdown(backend), n)).or_default().push(s);
                        }
                        let limit = if backend == "systemd" { plan.systemd_max.min(largest) } else { largest };
                        if n == limit
                            && let Ok(ns) = nanos(&j["spawn_ns"])
                        {
                            results.scaling.entry(backend).or_default().push(ns);
                        }
                    }
                    Err(e) => {
                        results.failures.push((format!("teardown daemonic {backend}, N = {n}, run {}", rep + 1), e))
                    }
                }
            }
            let python = json_of(&mut env.peers(&["teardown", &n.to_string()]), "peers.py teardown");
            let kill_loop = role(env, &["kill-loop".into(), n.to_string()]);
            let floor = role(env, &["kill-floor".into(), n.to_string()]);
            for (method, got) in
                [(Teardown::Python, python), (Teardown::KillLoop, kill_loop), (Teardown::KernelFloor, floor)]
            {
                match got.and_then(|j| j["took_ns"].as_u64().ok_or_else(|| "no took_ns".into())) {
                    Ok(ns) => results.teardown.entry((method, n)).or_default().push(ns),
                    Err(e) => {
                        results.failures.push((format!("teardown {}, N = {n}, run {}", method.label(), rep + 1), e))
                    }
                }
            }
        }
        eprintln!("bench:    N = {n} done");
    }
}

fn footprint_section(env: &Env, plan: &Plan, results: &mut Results) {
    eprintln!("bench: 4. footprint with {:?} idle members", plan.idle);
    for rep in 0..plan.idle_reps {
        for &n in &plan.idle {
            for backend in ["cgroupfs", "systemd"] {
                match footprint(env, backend, n, plan.idle_window) {
                    Ok(seen) => {
                        for (process, rss, cpu) in seen {
                            results.footprint.entry((backend, n, process)).or_default().push((rss, cpu));
                        }
                    }
                    Err(e) => results.failures.push((format!("footprint {backend}, {n} members, run {}", rep + 1), e)),
                }
            }
        }
    }
}

/// `daemonic run` with `n` idle daemons under its main member: the RSS (KiB) and the CPU time
/// (ns) over `window` of `daemonic run` and of the guardian.
fn footprint(env: &Env, backend: &str, n: usize, window: Duration) -> Result<Vec<(&'static str, u64, u64)>, String> {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut cmd = std::process::Command::new(&env.daemonic);
    cmd.args(["run", "--quiet", "--name", "bench", "--backend", backend]);
    if backend == "systemd" {
        cmd.arg("--user");
    }
    cmd.arg("--").arg(&env.me).args(["idle", &n.to_string()]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("start daemonic run: {e}"))?;
    let measured = (|| -> Result<Vec<(&'static str, u64, u64)>, String> {
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        std::io::BufReader::new(stdout).read_line(&mut line).map_err(|e| format!("read the ready line: {e}"))?;
        let family =
            line.trim().strip_prefix("ready ").ok_or_else(|| format!("the main member said {line:?}, not ready"))?;
        let guardian: u32 = daemonic::__internal::cgroup::attr(Path::new(family), "guardian")
            .and_then(|g| g.trim().parse().ok())
            .ok_or_else(|| format!("{family} names no guardian"))?;
        let pids = [("daemonic run", child.id()), ("guardian", guardian)];
        for (_, pid) in pids {
            proc::settle(pid);
        }
        let before: Vec<Option<u64>> = pids.iter().map(|(_, p)| proc::cpu_ns(*p)).collect();
        std::thread::sleep(window);
        let mut seen = Vec::new();
        for ((what, pid), b) in pids.into_iter().zip(before) {
            let cpu = proc::cpu_ns(pid).zip(b).map(|(a, b)| a - b).ok_or_else(|| format!("{what} {pid} ended"))?;
            let rss = proc::rss_kib(pid).ok_or_else(|| format!("{what} {pid} ended"))?;
            seen.push((what, rss, cpu));
        }
        Ok(seen)
    })();
    drop(child.stdin.take());
    let status = child.wait().map_err(|e| format!("wait for daemonic run: {e}"))?;
    let seen = measured?;
    if !status.success() {
        return Err(format!("daemonic run ended with {status}"));
    }
    Ok(seen)
}

/// Cgroups and units this run made that are still there.
fn leftovers(h: &daemonic::__internal::cgroup::Hierarchy) -> Vec<String> {
    let me = std::process::id();
    let mut left = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        left.clear();
        let mut stack = vec![h.mount().to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("daemonic-bench") {
                    left.push(format!("cgroup {}", e.path().display()));
                } else {
                    stack.push(e.path());
                }
            }
        }
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let units = std::process::Command::new("systemctl")
        .args(["--user", "list-units", "--all", "--plain", "--no-legend", "--no-pager", "daemonic-bench*"])
        .output();
    if let Ok(out) = units {
        left.extend(String::from_utf8_lossy(&out.stdout).lines().map(|l| format!("unit {l}")));
    }
    let children = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|t| t.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(me)
        });
    left.extend(children.map(|pid| format!("process {pid} {:?}", proc::state(pid).map(|s| s.1).unwrap_or_default())));
    left
}

/// The system's Python 3 (multiprocessing's behaviour is the interpreter's, not a virtualenv's).
fn find_python() -> Result<PathBuf, String> {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| "no python3 in /usr/bin or /usr/local/bin (give one with --python PATH)".into())
}
