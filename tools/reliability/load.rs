//! Section "load": 2011 members alive at once, three levels deep under the main member, daemons
//! and non-daemons mixed, started and torn down repeatedly under `daemonic run`:
//!
//! ```text
//! main (load-node 0) ── 10 × load-node 1 ── 10 × load-node 2 ── 9 × load-leaf, 9 × daemon sleep
//!                                        └─ 10 × daemon sleep
//! ```
//!
//! 1 + 10 + (100 + 100) + 100 × 18 = 2011 members. Leaves wait on a FIFO the harness holds open
//! (one `read`, no polling); when the harness closes it, every leaf reads end of file and exits,
//! each node joins its non-daemonic children and ends, killing its daemons, and `run` exits.
//! Measured: the time until all are alive, the RSS and the CPU of `daemonic run` and of the
//! guardian while the 2011 idle members run, the teardown, and what is left.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use daemonic::{Command, Family};
use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use crate::Env;
use crate::probe::{self, Watched, alive, cgroups_of, leftovers, sweep, tail, watch};

/// Members of one round: 1 + 10 + 200 + 1800.
pub(crate) const MEMBERS: usize = 2011;
/// How long a round may take to start or to end.
const LIMIT: Duration = Duration::from_secs(180);

/// What one round saw.
#[derive(Debug, Default)]
pub(crate) struct LoadOutcome {
    /// `daemonic run` started → all members alive.
    pub(crate) start: Option<Duration>,
    /// The most processes seen in the family at once.
    pub(crate) peak: usize,
    /// VmRSS of `daemonic run` and of the guardian with every member idle, in KiB.
    pub(crate) rss_run_kib: u64,
    pub(crate) rss_guardian_kib: u64,
    /// CPU of each over 2 s of idleness, in percent of one core.
    pub(crate) cpu_run: f64,
    pub(crate) cpu_guardian: f64,
    /// The FIFO closed → `daemonic run` exited.
    pub(crate) teardown: Option<Duration>,
    pub(crate) status: Option<i32>,
    pub(crate) leaked_processes: usize,
    pub(crate) leaked_cgroups: usize,
    pub(crate) leaked_units: usize,
    pub(crate) error: Option<String>,
}

impl crate::report::Trial for LoadOutcome {
    fn leaks(&self) -> usize {
        self.leaked_processes + self.leaked_cgroups + self.leaked_units
    }

    fn failed(&self) -> bool {
        self.leaks() > 0 || self.error.is_some() || self.status != Some(0) || self.peak < MEMBERS
    }
}

/// The `load-node LEVEL FIFO` role: spawns its level's children, joins the non-daemonic ones,
/// ends (its daemons are killed at its family handle's shutdown).
pub(crate) fn node(mut it: impl Iterator<Item = String>) -> Result<(), String> {
    let level: u32 = it.next().ok_or("load-node LEVEL FIFO")?.parse().map_err(|e| format!("LEVEL: {e}"))?;
    let fifo = PathBuf::from(it.next().ok_or("load-node LEVEL FIFO")?);
    let family = Family::new().map_err(|e| format!("join the family: {e}"))?;
    let me = std::env::current_exe().map_err(|e| format!("find this program: {e}"))?;
    let node = |level: u32, i: usize| {
        let mut c = Command::new(&me);
        c.arg("load-node").arg(level.to_string()).arg(&fifo).name(format!("node{level}-{i}"));
        c
    };
    let daemon = |i: usize| {
        let mut c = Command::new("sleep");
        c.arg("100000").name(format!("d{}-{i}", level + 1)).daemon(true);
        c
    };
    let (mut cmds, mut waited) = (Vec::new(), Vec::new());
    match level {
        0 => cmds.extend((0..10).map(|i| node(1, i))),
        1 => {
            cmds.extend((0..10).map(|i| node(2, i)));
            cmds.extend((0..10).map(daemon));
        }
        _ => {
            cmds.extend((0..9).map(|i| {
                let mut c = Command::new(&me);
                c.arg("load-leaf").arg(&fifo).name(format!("leaf-{i}"));
                c
            }));
            cmds.extend((0..9).map(daemon));
        }
    }
    let mut members = Vec::new();
    for mut c in cmds {
        c.stdin(daemonic::Stdio::Null);
        let m = family.spawn(&mut c).map_err(|e| format!("level {level}: spawn {:?}: {e}", c.get_program()))?;
        if !m.daemon() {
            waited.push(members.len());
        }
        members.push(m);
    }
    for i in waited {
        let code = members[i].wait().map_err(|e| format!("level {level}: wait for {}: {e}", members[i].name()))?;
        if code != 0 {
            return Err(format!("level {level}: {} ended with {code}", members[i].name()));
        }
    }
    drop(members);
    family.shutdown().map_err(|e| format!("level {level}: shut down: {e}"))
}

/// The `load-leaf FIFO` role: one blocking read of the FIFO, whose end of file lets it go.
pub(crate) fn leaf(mut it: impl Iterator<Item = String>) -> Result<(), String> {
    let fifo = PathBuf::from(it.next().ok_or("load-leaf FIFO")?);
    // Non-blocking open (a FIFO's open for reading waits for a writer otherwise), then a
    // blocking read: it returns end of file once no writer holds the FIFO open.
    let mut f = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .map_err(|e| format!("open {}: {e}", fifo.display()))?;
    let flags = fcntl_getfl(&f).map_err(|e| format!("fcntl: {e}"))?;
    fcntl_setfl(&f, flags - OFlags::NONBLOCK).map_err(|e| format!("fcntl: {e}"))?;
    let mut byte = [0u8; 1];
    let _ = f.read(&mut byte);
    Ok(())
}

/// Processes in the cgroup tree at `dir`.
fn count_procs(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        n += std::fs::read_to_string(d.join("cgroup.procs")).map(|s| s.lines().count()).unwrap_or(0);
        if let Ok(entries) = std::fs::read_dir(&d) {
            stack.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
    }
    n
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted from the state (field 3) here.
    let get = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

pub(crate) fn run(env: &Env, backend: &str, index: usize) -> LoadOutcome {
    let token = format!("r{}{}ln{index}e", env.run_id, &backend[..1]);
    let dir = env.scratch.join(&token);
    let mut out = LoadOutcome::default();
    if let Err(e) = run_in(env, backend, &token, &dir, &mut out) {
        out.error = Some(e);
    }
    sweep(env, &token, backend);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn run_in(env: &Env, backend: &str, token: &str, dir: &Path, out: &mut LoadOutcome) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let fifo = dir.join("go");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600))
        .map_err(|e| format!("mkfifo {}: {e}", fifo.display()))?;
    // Held open for writing (and reading, so that the open does not wait) until teardown.
    let holder =
        File::options().read(true).write(true).open(&fifo).map_err(|e| format!("open {}: {e}", fifo.display()))?;

    let mut cmd = std::process::Command::new(&env.daemonic);
    cmd.args(["-q", "run", "--backend", backend, "--name", token]);
    if backend == "systemd" {
        cmd.arg("--user");
    }
    cmd.arg("--").arg(&env.me).arg("load-node").arg("0").arg(&fifo);
    let stderr_path = dir.join("stderr");
    let stderr = File::create(&stderr_path).map_err(|e| format!("create {}: {e}", stderr_path.display()))?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).env("DAEMONIC_LOG", "quiet");
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("start daemonic run: {e}"))?;
    let run_pid = child.id();
    let pidfd = pidfd_open(Pid::from_raw(run_pid as i32).expect("pid"), PidfdFlags::empty())
        .map_err(|e| format!("pidfd_open of run: {e}"))?;
    let mut run = Watched { what: "daemonic run".into(), pidfd, died: None };

    let result = (|| -> Result<(), String> {
        // The family's directory (or slice) appears first; then count until all are alive.
        let family_dir = loop {
            if let Some(d) = cgroups_of(&env.cgroup2, token).into_iter().min_by_key(|d| d.components().count()) {
                break d;
            }
            if started.elapsed() > LIMIT || !alive(&run.pidfd) {
                return Err("the family did not appear".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        loop {
            let n = count_procs(&family_dir);
            out.peak = out.peak.max(n);
            if n >= MEMBERS {
                out.start = Some(started.elapsed());
                break;
            }
            if started.elapsed() > LIMIT || !alive(&run.pidfd) {
                return Err(format!("only {n} of {MEMBERS} members came up"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Idle: let the last spawns settle, then two seconds of nothing.
        std::thread::sleep(Duration::from_millis(500));
        let mut guardian = probe::guardian(env, token)?;
        let guardian_pid = probe::pid_of(&guardian);
        let ticks = |pid| cpu_ticks(pid);
        let (r0, g0) = (ticks(run_pid), ticks(guardian_pid));
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        let (r1, g1) = (ticks(run_pid), ticks(guardian_pid));
        let secs = t0.elapsed().as_secs_f64();
        let hz = rustix::param::clock_ticks_per_second() as f64;
        out.cpu_run = (r1 - r0) as f64 / hz / secs * 100.0;
        out.cpu_guardian = (g1 - g0) as f64 / hz / secs * 100.0;
        out.rss_run_kib = rss_kib(run_pid);
        out.rss_guardian_kib = rss_kib(guardian_pid);
        out.peak = out.peak.max(count_procs(&family_dir));

        let released = Instant::now();
        drop(holder);
        watch(&mut [&mut run], released + LIMIT);
        let ended = run.died.ok_or("daemonic run did not end after the release")?;
        out.teardown = Some(ended - released);
        watch(&mut [&mut guardian], Instant::now() + Duration::from_secs(30));
        if alive(&guardian.pidfd) {
            out.leaked_processes += 1;
            let _ = pidfd_send_signal(&guardian.pidfd, Signal::KILL);
        }
        Ok(())
    })();
    if run.died.is_none() {
        let _ = pidfd_send_signal(&run.pidfd, Signal::KILL);
    }
    let status = child.wait().map_err(|e| format!("wait for run: {e}"))?;
    out.status = status.code();
    (out.leaked_cgroups, out.leaked_units) = leftovers(env, token, backend, Duration::from_secs(30));
    // The shallowest directory left holds every process left.
    let left = cgroups_of(&env.cgroup2, token);
    out.leaked_processes += left.iter().map(|d| count_procs(d)).max().unwrap_or(0);
    if let Err(e) = result {
        return Err(format!("{e} (stderr: {})", tail(&stderr_path, 2)));
    }
    Ok(())
}

/// Per backend: the rounds.
pub(crate) type LoadRows = BTreeMap<String, Vec<LoadOutcome>>;
