//! `reliability`: daemonic's promise, measured. Run through `scripts/reliability`, which builds
//! this program and `daemonic` in release mode and starts a systemd user manager when none runs.
//!
//! ```text
//! reliability [--quick] [--trials N] [--jobs J] [--backends cgroupfs,systemd]
//!             [--rows TEXT[,TEXT…]] --daemonic PATH [--out FILE]
//! reliability member …        (the main member of one trial's family; see member.rs)
//! ```
//!
//! Section "endings": every way a supervising parent can end, for both supervisors (`daemonic
//! run` with the main member under it, and a program that uses the library and is its family's
//! main member), on each backend, N trials each (20 with `--quick`, 500 by default). Each trial
//! is measured by `trial.rs`. The table goes to standard output and to `--out`; the last line
//! is `reliability: N trials, L leaked`, and the exit status is 1 when anything leaked or
//! failed.
//!
//! `--rows` runs only the rows whose label, as the failures name them (`cgroupfs / library / OOM
//! killer on main`, `systemd / fork bomb under a tasks limit (64)`, `cgroupfs / restart`,
//! `systemd / no-fork`, `cgroupfs / load`), contains one of the texts (ignoring case).
//!
//! The OOM ending and the fork bomb need resource limits: `limits.rs` says how they get them on
//! each host.

mod escapes;
#[path = "../host.rs"]
mod host;
mod limits;
mod load;
mod member;
mod nofork;
mod probe;
mod report;
mod restart;
mod trial;
mod v1;

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use daemonic::Backend;
use report::Trial;

/// Who supervises the family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Supervisor {
    /// `daemonic run` with the main member under it.
    Cli,
    /// A program using the library: supervisor and main member at once.
    Library,
}

impl Supervisor {
    const ALL: [Supervisor; 2] = [Supervisor::Cli, Supervisor::Library];

    fn letter(self) -> char {
        match self {
            Supervisor::Cli => 'c',
            Supervisor::Library => 'l',
        }
    }

    fn label(self) -> &'static str {
        match self {
            Supervisor::Cli => "daemonic run",
            Supervisor::Library => "library",
        }
    }
}

/// How the supervising parent ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Ending {
    Return,
    PanicUnwind,
    PanicAbort,
    Exit,
    Term,
    Int,
    Hup,
    Kill,
    KillBoth,
    Oom,
}

impl Ending {
    const ALL: [Ending; 10] = [
        Ending::Return,
        Ending::PanicUnwind,
        Ending::PanicAbort,
        Ending::Exit,
        Ending::Term,
        Ending::Int,
        Ending::Hup,
        Ending::Kill,
        Ending::KillBoth,
        Ending::Oom,
    ];

    fn letter(self) -> char {
        b"rpaxtihkbo"[self as usize] as char
    }

    /// What happens, for the table; for the CLI the main member does what the library's
    /// program does, and the signals go to `daemonic run`.
    fn label(self, sup: Supervisor) -> &'static str {
        match (self, sup) {
            (Ending::Return, _) => "main returns",
            (Ending::PanicUnwind, _) => "main panics (unwind)",
            (Ending::PanicAbort, _) => "main panics (abort)",
            (Ending::Exit, _) => "main calls exit(3)",
            (Ending::Term, _) => "SIGTERM to the supervisor",
            (Ending::Int, _) => "SIGINT to the supervisor",
            (Ending::Hup, _) => "SIGHUP to the supervisor",
            (Ending::Kill, Supervisor::Cli) => "SIGKILL of `run`, main goes on",
            (Ending::Kill, Supervisor::Library) => "SIGKILL of the supervisor",
            (Ending::KillBoth, Supervisor::Cli) => "SIGKILL of `run` and main",
            (Ending::KillBoth, Supervisor::Library) => "SIGKILL of it and its worker",
            (Ending::Oom, _) => "OOM killer on main",
        }
    }
}

/// What every trial needs to know.
pub(crate) struct Env {
    pub(crate) run_id: u32,
    pub(crate) scratch: PathBuf,
    pub(crate) daemonic: PathBuf,
    pub(crate) me: PathBuf,
    pub cgroup2: PathBuf,
    pub(crate) systemctl_user: bool,
    /// A python3 every user may run (the escapes run one as nobody).
    pub(crate) python: PathBuf,
    /// How the OOM ending and the fork bomb get their limits on each backend.
    pub(crate) limits: limits::Limits,
}

/// Records one outcome under `key` of the section `rows` picks; says at once when it failed.
/// Returns how many trials are done.
fn store<K: Ord, T: Trial>(
    results: &Mutex<Results>,
    label: &str,
    index: usize,
    outcome: T,
    rows: impl FnOnce(&mut Results) -> &mut BTreeMap<K, Vec<T>>,
    key: K,
) -> usize {
    if outcome.failed() {
        eprintln!("reliability: FAILED {label} #{index}: {outcome:?}");
    }
    let mut r = results.lock().unwrap_or_else(|p| p.into_inner());
    rows(&mut r).entry(key).or_default().push(outcome);
    r.done()
}

/// `--flag value` pairs, as the roles that open a family take them.
pub(crate) fn parse_pairs(it: &mut impl Iterator<Item = String>) -> Result<BTreeMap<String, String>, String> {
    let mut opt = BTreeMap::new();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        opt.insert(flag, value);
    }
    Ok(opt)
}

/// Opens (creates) a trial's family on `backend`, the test user manager for systemd, below
/// `cgroup` when given (cgroupfs); the calling process becomes its main member.
pub(crate) fn open_family(backend: &str, name: &str, cgroup: Option<&str>) -> Result<daemonic::Family, String> {
    let backend = parse_backend(backend)?;
    let mut builder = daemonic::Family::builder().name(name).backend(backend);
    if let Some(c) = cgroup {
        builder = builder.cgroup(c);
    }
    if backend == Backend::Systemd {
        builder = builder.bus(daemonic::Bus::User);
    }
    builder.open().map_err(|e| format!("open the family: {e}"))
}

pub(crate) fn parse_backend(s: &str) -> Result<Backend, String> {
    match s {
        "cgroupfs" => Ok(Backend::Cgroupfs),
        "systemd" => Ok(Backend::Systemd),
        other => Err(format!("unknown backend {other:?} (cgroupfs or systemd)")),
    }
}

pub(crate) struct Options {
    trials: usize,
    load_rounds: usize,
    quick: bool,
    jobs: usize,
    backends: Vec<String>,
    /// Texts of which a row's label must contain one (ignoring case); empty: every row.
    rows: Vec<String>,
    daemonic: Option<PathBuf>,
    out: Option<PathBuf>,
}

impl Options {
    /// Whether the row labelled `label` is run.
    fn wants(&self, label: &str) -> bool {
        let label = label.to_lowercase();
        self.rows.is_empty() || self.rows.iter().any(|r| label.contains(&r.to_lowercase()))
    }
}

fn parse_options(mut it: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        trials: 500,
        load_rounds: 0,
        quick: false,
        jobs: 2,
        backends: vec![],
        rows: vec![],
        daemonic: None,
        out: None,
    };
    let mut trials = None;
    let mut load_rounds = None;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => o.quick = true,
            "--trials" => trials = Some(value()?.parse().map_err(|e| format!("--trials: {e}"))?),
            "--load-rounds" => load_rounds = Some(value()?.parse().map_err(|e| format!("--load-rounds: {e}"))?),
            "--jobs" => o.jobs = value()?.parse().map_err(|e| format!("--jobs: {e}"))?,
            "--backends" => o.backends = value()?.split(',').map(String::from).collect(),
            "--rows" => o.rows = value()?.split(',').filter(|r| !r.is_empty()).map(String::from).collect(),
            "--daemonic" => o.daemonic = Some(PathBuf::from(value()?)),
            "--out" => o.out = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    o.trials = trials.unwrap_or(if o.quick { 20 } else { 500 });
    o.load_rounds = load_rounds.unwrap_or(if o.quick { 2 } else { 10 });
    if o.backends.is_empty() {
        o.backends = vec!["cgroupfs".into(), "systemd".into()];
    }
    for b in &o.backends {
        parse_backend(b)?;
    }
    if o.jobs == 0 || o.trials == 0 {
        return Err("--jobs and --trials must be at least 1".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let role = args.peek().cloned();
    let roles = ["member", "worker", "escape-main", "nofork-main", "nofork-rust", "load-node", "load-leaf"];
    if let Some(role) = role.as_deref().filter(|r| roles.contains(r)) {
        args.next();
        let result = match role {
            "load-node" => load::node(args),
            "load-leaf" => load::leaf(args),
            "member" => member::Args::parse(args).and_then(member::main),
            "worker" => member::worker(args),
            "nofork-main" => nofork::main(args),
            "nofork-rust" => nofork::rust_probe(args),
            _ => escapes::main(args),
        };
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("reliability {role}: {e}");
                ExitCode::from(70)
            }
        };
    }
    match parse_options(args).and_then(harness) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("reliability: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Key of a table row.
pub(crate) type Row = (String, Supervisor, Ending);

/// One trial to run.
enum Job {
    Ending(Row),
    Escape(String, escapes::Escape),
    /// A limit shown once, outside the counts.
    Limit(String, escapes::Escape),
    Restart(String),
    NoFork(String),
}

impl Job {
    /// The row's label, as `--rows` matches it and a failure names it.
    fn label(&self) -> String {
        match self {
            Job::Ending((backend, sup, ending)) => format!("{backend} / {} / {}", sup.label(), ending.label(*sup)),
            Job::Escape(backend, escape) | Job::Limit(backend, escape) => format!("{backend} / {}", escape.label()),
            Job::Restart(backend) => format!("{backend} / restart"),
            Job::NoFork(backend) => format!("{backend} / no-fork"),
        }
    }
}

/// Everything measured, by section and row.
#[derive(Default)]
pub(crate) struct Results {
    pub(crate) endings: BTreeMap<Row, Vec<trial::Outcome>>,
    pub(crate) escapes: BTreeMap<(String, escapes::Escape), Vec<escapes::EscapeOutcome>>,
    pub(crate) limits: BTreeMap<(String, escapes::Escape), Vec<escapes::EscapeOutcome>>,
    pub(crate) restarts: BTreeMap<String, Vec<restart::RestartOutcome>>,
    pub(crate) nofork: BTreeMap<String, Vec<nofork::NoForkOutcome>>,
    pub(crate) load: load::LoadRows,
    /// How the OOM ending and the fork bomb got their resource limits, one line per backend and
    /// controller.
    pub(crate) resource_limits: Vec<String>,
}

impl Results {
    fn done(&self) -> usize {
        self.endings.values().map(Vec::len).sum::<usize>()
            + self.escapes.values().map(Vec::len).sum::<usize>()
            + self.restarts.values().map(Vec::len).sum::<usize>()
            + self.nofork.values().map(Vec::len).sum::<usize>()
    }
}

fn harness(mut o: Options) -> Result<bool, String> {
    let cgroup2 = daemonic::__internal::cgroup::Hierarchy::host().map_err(|e| e.to_string())?.mount().to_path_buf();
    let scratch = tempfile::Builder::new()
        .prefix("daemonic-reliability.")
        .tempdir()
        .map_err(|e| format!("create a scratch directory: {e}"))?;
    // Readable by every user: the unprivileged escaper runs the script and writes its report
    // below it.
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", scratch.path().display()))?;
    nofork::build_c_probe(scratch.path())?;
    let script = scratch.path().join("escape.py");
    std::fs::write(&script, escapes::SCRIPT).map_err(|e| format!("write {}: {e}", script.display()))?;

    // Trials interleaved: every row gets its n-th trial before any row its (n+1)-th, so a slow
    // phase of the machine spreads over all rows.
    let mut queue = VecDeque::new();
    for b in &o.backends {
        for limit in escapes::Escape::LIMITS {
            queue.push_back((Job::Limit(b.clone(), limit), 0));
        }
    }
    for i in 0..o.trials {
        for b in &o.backends {
            for sup in Supervisor::ALL {
                for ending in Ending::ALL {
                    queue.push_back((Job::Ending((b.clone(), sup, ending)), i));
                }
            }
            for escape in escapes::Escape::ALL {
                queue.push_back((Job::Escape(b.clone(), escape), i));
            }
            queue.push_back((Job::Restart(b.clone()), i));
            queue.push_back((Job::NoFork(b.clone()), i));
        }
    }
    queue.retain(|(job, _)| o.wants(&job.label()));
    let load_backends: Vec<String> = o.backends.iter().filter(|b| o.wants(&format!("{b} / load"))).cloned().collect();
    if load_backends.is_empty() {
        o.load_rounds = 0;
    }
    if queue.is_empty() && o.load_rounds == 0 {
        return Err(format!("--rows {} selects no row", o.rows.join(",")));
    }
    // The limits the selected rows need, decided before any trial (see limits.rs).
    let mut needed = Vec::new();
    for (job, _) in &queue {
        match job {
            Job::Ending((b, _, Ending::Oom)) => needed.push((b.clone(), "memory")),
            Job::Escape(b, escapes::Escape::ForkBomb) => needed.push((b.clone(), "pids")),
            _ => {}
        }
    }
    let run_id = std::process::id();
    let env = Env {
        run_id,
        scratch: scratch.path().to_path_buf(),
        daemonic: o.daemonic.clone().ok_or("--daemonic PATH is required")?,
        me: std::env::current_exe().map_err(|e| format!("find this program: {e}"))?,
        limits: limits::Limits::probe(&cgroup2, run_id, &needed),
        cgroup2,
        systemctl_user: o.backends.iter().any(|b| b == "systemd"),
        python: find_python()?,
    };
    for line in env.limits.describe() {
        eprintln!("reliability: limits: {line}");
    }
    let total = queue.len();
    eprintln!(
        "reliability: {total} trials ({} per row), {} at a time, daemonic {}",
        o.trials,
        o.jobs,
        env.daemonic.display()
    );
    let queue = Mutex::new(queue);
    let results = Mutex::new(Results::default());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..o.jobs {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                    let Some((job, i)) = next else { break };
                    let label = job.label();
                    let done = match job {
                        Job::Ending((backend, sup, ending)) => {
                            let o = trial::run(&env, sup, ending, &backend, i);
                            store(&results, &label, i, o, |r| &mut r.endings, (backend, sup, ending))
                        }
                        Job::Escape(backend, escape) => {
                            let o = escapes::run(&env, escape, &backend, i);
                            store(&results, &label, i, o, |r| &mut r.escapes, (backend, escape))
                        }
                        Job::Restart(backend) => {
                            let o = restart::run(&env, &backend, i);
                            store(&results, &label, i, o, |r| &mut r.restarts, backend)
                        }
                        Job::NoFork(backend) => {
                            let o = nofork::run(&env, &backend, i);
                            store(&results, &label, i, o, |r| &mut r.nofork, backend)
                        }
                        Job::Limit(backend, escape) => {
                            // Expected to fail: not reported as a failure, and not counted.
                            let o = escapes::run(&env, escape, &backend, i);
                            let mut r = results.lock().unwrap_or_else(|p| p.into_inner());
                            r.limits.entry((backend, escape)).or_default().push(o);
                            r.done()
                        }
                    };
                    if done % 100 == 0 {
                        eprintln!("reliability: {done}/{total} trials, {:.0} s", started.elapsed().as_secs_f64());
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.resource_limits = env.limits.describe();
    // Load rounds one at a time, alone on the machine: they measure footprint and idle CPU.
    for i in 0..o.load_rounds {
        for backend in &load_backends {
            let outcome = load::run(&env, backend, i);
            eprintln!(
                "reliability: load {backend} round {i}: {} members up in {:.1} s, teardown {:.2} s{}",
                outcome.peak,
                outcome.start.map_or(f64::NAN, |d| d.as_secs_f64()),
                outcome.teardown.map_or(f64::NAN, |d| d.as_secs_f64()),
                if outcome.failed() { format!(" FAILED: {outcome:?}") } else { String::new() }
            );
            results.load.entry(backend.clone()).or_default().push(outcome);
        }
    }
    let report = report::Report::new(&o, &results, started.elapsed());
    let text = report.markdown();
    if let Some(out) = &o.out {
        std::fs::write(out, &text).map_err(|e| format!("write {}: {e}", out.display()))?;
        eprintln!("reliability: wrote {}", out.display());
    }
    // The table, whose last line is `reliability: N trials, L leaked`.
    print!("{text}");
    Ok(report.leaked == 0 && report.failed == 0)
}

/// A python3 that every user can run: the system's (a pyenv interpreter under /root is not
/// reachable for nobody), else the one on PATH.
fn find_python() -> Result<PathBuf, String> {
    for candidate in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if std::fs::metadata(candidate).is_ok_and(|m| m.permissions().mode() & 0o001 != 0) {
            return Ok(PathBuf::from(candidate));
        }
    }
    Err("no python3 in /usr/bin or /usr/local/bin that every user may run (Debian: apt-get install python3)".into())
}
