//! One trial of "every way a supervising parent can end": start a family, end its supervisor
//! one way, and watch, through pidfds, when each process dies and what is left afterwards.
//!
//! Times come from `poll` on pidfds (readable once the process has exited), so they measure
//! death, not reaping. The family has ended when its main member and its non-daemonic worker
//! have both died; the daemons' latency is from that moment to the death of the last daemon.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{ChildStdin, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use crate::probe::{self, Watched, alive, cgroups_of, sweep, tail, units_of, wait_for_file, watch};

use crate::limits::{KernelLog, MEMORY_MAX, Mechanism};
use crate::v1::V1Cgroup;
use crate::{Ending, Env, Supervisor};

/// How long a trial may take at each step before it counts as failed.
const STEP: Duration = Duration::from_secs(15);
/// A daemon that outlives its family by more than this is a leak (the bound).
pub(crate) const LATE: Duration = Duration::from_millis(100);

/// What one trial saw.
#[derive(Default, Debug)]
pub(crate) struct Outcome {
    /// Family end → last daemon dead; `None` when it could not be measured.
    pub(crate) latency: Option<Duration>,
    /// A daemon died before the family ended (killed too early: C4 says after).
    pub(crate) early: bool,
    /// Processes of the family alive after the family was cleaned up.
    pub(crate) leaked_processes: usize,
    /// Cgroup directories of the family left behind.
    pub(crate) leaked_cgroups: usize,
    /// Transient units of the family left behind (systemd backend).
    pub(crate) leaked_units: usize,
    /// The non-daemonic worker did not finish its work (it was killed: C7 broken).
    pub(crate) worker_killed: bool,
    /// The supervisor's status differed from the expected one.
    pub(crate) wrong_status: Option<String>,
    /// The OOM ending was not done by the OOM killer.
    pub(crate) not_oom: bool,
    /// The OOM ending was seen done by the OOM killer (v1: the memory cgroup's `oom_kill`; v2:
    /// the kernel's log names the main member).
    pub(crate) oom_confirmed: bool,
    /// Anything else that went wrong, in words.
    pub(crate) error: Option<String>,
}

impl crate::report::Trial for Outcome {
    /// Leaks as the final line counts them: processes, cgroups, units and late daemons.
    fn leaks(&self) -> usize {
        self.leaked_processes
            + self.leaked_cgroups
            + self.leaked_units
            + usize::from(self.latency.is_some_and(|l| l > LATE))
    }

    /// Whether anything at all went wrong.
    fn failed(&self) -> bool {
        self.leaks() > 0
            || self.early
            || self.worker_killed
            || self.wrong_status.is_some()
            || self.not_oom
            || self.error.is_some()
    }
}

/// Runs one trial.
pub(crate) fn run(env: &Env, sup: Supervisor, ending: Ending, backend: &str, index: usize) -> Outcome {
    let token = format!("r{}{}{}{}n{index}e", env.run_id, &backend[..1], sup.letter(), ending.letter());
    let dir = env.scratch.join(&token);
    let mut out = Outcome::default();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        out.error = Some(format!("create {}: {e}", dir.display()));
        return out;
    }
    let mut limit = if ending == Ending::Oom {
        let limit = env.limits.get(backend, "memory").and_then(|m| match m {
            Mechanism::V1 => V1Cgroup::memory(&token).map(MemoryLimit::V1),
            Mechanism::V2 { base } => KernelLog::open().map(|log| MemoryLimit::V2 { base, log }),
        });
        match limit {
            Ok(l) => l,
            Err(e) => {
                out.error = Some(format!("the OOM ending cannot run here: {e}"));
                let _ = std::fs::remove_dir_all(&dir);
                return out;
            }
        }
    } else {
        MemoryLimit::None
    };
    let result = run_in(env, sup, ending, backend, &token, &dir, &mut limit, &mut out);
    if let Err(e) = result {
        out.error.get_or_insert(e);
    }
    // Whatever happened, the trial leaves nothing: what is still there was counted above and is
    // now removed, by the cgroups this trial's family made.
    sweep(env, &token, backend);
    if let MemoryLimit::V1(m) = limit {
        if m.oom_killed() {
            out.oom_confirmed = true;
        } else {
            out.not_oom = true;
        }
        if let Err(e) = m.remove() {
            out.error.get_or_insert(e);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// The memory limit of an OOM trial (see `limits.rs`).
enum MemoryLimit {
    /// Not an OOM trial.
    None,
    /// A v1 memory cgroup the main member enters before it eats.
    V1(V1Cgroup),
    /// `MemoryMax=` on the main member's own cgroup v2, its family below `base` on cgroupfs;
    /// the kernel's log, opened before the trial, tells whether the OOM killer ended it.
    V2 { base: Option<std::path::PathBuf>, log: KernelLog },
}

#[allow(clippy::too_many_arguments)]
fn run_in(
    env: &Env,
    sup: Supervisor,
    ending: Ending,
    backend: &str,
    token: &str,
    dir: &Path,
    limit: &mut MemoryLimit,
    out: &mut Outcome,
) -> Result<(), String> {
    let ready = dir.join("ready");
    let marker = dir.join("worker-done");
    let mut member_args: Vec<String> = vec![
        "member".into(),
        "--backend".into(),
        backend.into(),
        "--name".into(),
        token.into(),
        "--ready".into(),
        ready.display().to_string(),
        "--marker".into(),
        marker.display().to_string(),
    ];
    let mut run_args: Vec<String> = Vec::new();
    match &*limit {
        MemoryLimit::None => {}
        MemoryLimit::V1(m) => member_args.extend(["--memcg".into(), m.path().display().to_string()]),
        MemoryLimit::V2 { base, .. } => {
            // Under `run`, the main member is started with the limit; the library's main member
            // sets it on its own cgroup (no property of FamilyBuilder gives it one). Whoever
            // creates the family creates it below the base that hands the controller down.
            let family_args = match sup {
                Supervisor::Cli => {
                    run_args.extend(["-p".into(), format!("MemoryMax={MEMORY_MAX}")]);
                    &mut run_args
                }
                Supervisor::Library => {
                    member_args.extend(["--set-memory-max".into(), MEMORY_MAX.into()]);
                    &mut member_args
                }
            };
            if let Some(b) = base {
                family_args.extend(["--cgroup".into(), b.display().to_string()]);
            }
            member_args.extend(["--memory-max".into(), MEMORY_MAX.into()]);
        }
    }
    let mut cmd = match sup {
        Supervisor::Cli => {
            let mut c = std::process::Command::new(&env.daemonic);
            c.args(["-q", "run", "--backend", backend, "--name", token]);
            if backend == "systemd" {
                c.arg("--user");
            }
            c.args(&run_args);
            c.arg("--").arg(&env.me).args(&member_args);
            c
        }
        Supervisor::Library => {
            let mut c = std::process::Command::new(&env.me);
            c.args(&member_args);
            c
        }
    };
    let stderr_path = dir.join("stderr");
    let stderr = File::create(&stderr_path).map_err(|e| format!("create {}: {e}", stderr_path.display()))?;
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(stderr);
    cmd.env("DAEMONIC_LOG", "quiet");
    let mut child = cmd.spawn().map_err(|e| format!("start the supervisor: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let sup_pidfd = pidfd_open(Pid::from_raw(child.id() as i32).expect("child pid"), PidfdFlags::empty())
        .map_err(|e| format!("pidfd_open of the supervisor: {e}"))?;
    let mut supervisor = Watched { what: "supervisor".into(), pidfd: sup_pidfd, died: None };

    let log = match limit {
        MemoryLimit::V2 { log, .. } => Some(log),
        _ => None,
    };
    let outcome = drive(env, sup, ending, token, &ready, &mut stdin, &mut supervisor, log, out);
    drop(stdin);
    // The supervisor must end on its own; if it does not, that is a failure, and it is ended.
    let deadline = Instant::now() + STEP;
    watch(&mut [&mut supervisor], deadline);
    if supervisor.died.is_none() {
        let _ = pidfd_send_signal(&supervisor.pidfd, Signal::KILL);
        out.error.get_or_insert_with(|| "the supervisor did not exit".into());
    }
    let status = child.wait().map_err(|e| format!("wait for the supervisor: {e}"))?;
    if out.wrong_status.is_none() {
        let got = describe_status(status);
        let want = expected_status(sup, ending);
        if !want.contains(&got.as_str()) {
            out.wrong_status = Some(format!("{got}, expected {}", want.join(" or ")));
        }
    }
    if let Err(e) = outcome {
        return Err(format!("{e} (supervisor stderr: {})", tail(&stderr_path, 3)));
    }
    Ok(())
}

/// From "family ready" to "everything of it gone".
#[allow(clippy::too_many_arguments)]
fn drive(
    env: &Env,
    sup: Supervisor,
    ending: Ending,
    token: &str,
    ready: &Path,
    stdin: &mut ChildStdin,
    supervisor: &mut Watched,
    log: Option<&mut KernelLog>,
    out: &mut Outcome,
) -> Result<(), String> {
    let text = wait_for_file(ready, supervisor, STEP)?;
    let info: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("parse {}: {e}", ready.display()))?;
    let pid = |key: &str| info[key].as_u64().map(|p| p as u32).ok_or_else(|| format!("ready file lacks {key}"));
    let main_pid = pid("main")?;
    let mut main = Watched::open("main member", main_pid, token)?;
    let mut worker = Watched::open("worker", pid("worker")?, token)?;
    let mut daemons = Vec::new();
    for (i, p) in info["daemons"].as_array().ok_or("ready file lacks daemons")?.iter().enumerate() {
        daemons.push(Watched::open(format!("daemon {i}"), p.as_u64().unwrap_or(0) as u32, token)?);
    }
    let mut guardian = probe::guardian(env, token)?;

    let say = |stdin: &mut ChildStdin, what: &str| -> Result<(), String> {
        writeln!(stdin, "{what}").and_then(|()| stdin.flush()).map_err(|e| format!("tell the member {what:?}: {e}"))
    };
    let signal = |w: &Watched, sig: Signal| -> Result<(), String> {
        pidfd_send_signal(&w.pidfd, sig).map_err(|e| format!("send {sig:?} to the {}: {e}", w.what))
    };
    let t0 = Instant::now();
    match ending {
        Ending::Return => say(stdin, "return")?,
        Ending::PanicUnwind => say(stdin, "panic")?,
        Ending::PanicAbort => say(stdin, "abort")?,
        Ending::Exit => say(stdin, "exit")?,
        Ending::Oom => say(stdin, "oom")?,
        Ending::Term => signal(supervisor, Signal::TERM)?,
        Ending::Int => signal(supervisor, Signal::INT)?,
        Ending::Hup => signal(supervisor, Signal::HUP)?,
        Ending::Kill => {
            signal(supervisor, Signal::KILL)?;
            if sup == Supervisor::Cli {
                // `run` is gone; its main member goes on and must be ended for the family to
                // end: its daemons must wait for that, then die.
                say(stdin, "return")?;
            }
        }
        Ending::KillBoth => {
            signal(supervisor, Signal::KILL)?;
            match sup {
                Supervisor::Cli => signal(&main, Signal::KILL)?,
                // The library's supervisor is its main member: its non-daemonic child goes too.
                Supervisor::Library => signal(&worker, Signal::KILL)?,
            }
        }
    }

    let deadline = Instant::now() + STEP;
    {
        let mut set: Vec<&mut Watched> = vec![&mut main, &mut worker];
        set.extend(daemons.iter_mut());
        watch(&mut set, deadline);
    }
    let family_end = main.died.zip(worker.died).map(|(a, b)| a.max(b));
    let daemons_end = daemons.iter().map(|d| d.died).collect::<Option<Vec<_>>>().map(|v| v.into_iter().max());
    match (family_end, daemons_end) {
        (Some(f), Some(Some(d))) => {
            out.latency = Some(d.saturating_duration_since(f));
            // A main member that ends by returning (or unwinding) ends its daemons itself, as
            // Python's exit handler does, before its own exit: too early is only before the
            // ending began or before the non-daemonic worker was done.
            let not_before = worker.died.map_or(t0, |w| w.max(t0));
            out.early = daemons.iter().any(|w| w.died.is_some_and(|t| t < not_before));
        }
        (None, _) => return Err("the family's non-daemonic members did not end".into()),
        (Some(_), _) => {} // counted below as leaked processes
    }
    // On cgroup v2 the main member's cgroup is gone with its family: the kernel's log says
    // whether the OOM killer ended it.
    if let (Some(log), Some(_)) = (log, main.died) {
        match log.oom_killed(main_pid, Duration::from_secs(2)) {
            Ok(true) => out.oom_confirmed = true,
            Ok(false) => out.not_oom = true,
            Err(e) => {
                out.error.get_or_insert(e);
            }
        }
    }
    // The worker finished its work unless this ending kills it on purpose.
    let worker_may_die = sup == Supervisor::Library && ending == Ending::KillBoth;
    if !worker_may_die && !ready.with_file_name("worker-done").exists() {
        out.worker_killed = true;
    }

    // Cleanup: the guardian removes the cgroups (and stops the units), then exits.
    watch(&mut [&mut guardian], Instant::now() + STEP);
    let mut leaked = daemons.iter().filter(|d| alive(&d.pidfd)).count();
    leaked += usize::from(alive(&main.pidfd)) + usize::from(alive(&worker.pidfd));
    if alive(&guardian.pidfd) {
        leaked += 1;
        let _ = pidfd_send_signal(&guardian.pidfd, Signal::KILL);
    }
    for w in daemons.iter().chain([&main, &worker]) {
        if alive(&w.pidfd) {
            let _ = pidfd_send_signal(&w.pidfd, Signal::KILL);
        }
    }
    out.leaked_processes = leaked;
    out.leaked_cgroups = cgroups_of(&env.cgroup2, token).len();
    out.leaked_units = if env.systemctl_user { units_of(token).len() } else { 0 };
    Ok(())
}

/// How `std` describes a status: `exit N` or `signal N`.
fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => format!("{status}"),
    }
}

/// What the supervisor's status must be after each ending (C9: the CLI reports the main
/// member's end in the shell's convention; a library program ends as its own process does).
fn expected_status(sup: Supervisor, ending: Ending) -> Vec<&'static str> {
    match (sup, ending) {
        (_, Ending::Return) => vec!["exit 0"],
        (_, Ending::PanicUnwind) => vec!["exit 101"],
        (_, Ending::Exit) => vec!["exit 3"],
        (_, Ending::Kill | Ending::KillBoth) => vec!["signal 9"],
        (Supervisor::Cli, Ending::PanicAbort) => vec!["exit 134"],
        (Supervisor::Cli, Ending::Term) => vec!["exit 143"],
        (Supervisor::Cli, Ending::Int) => vec!["exit 130"],
        (Supervisor::Cli, Ending::Hup) => vec!["exit 129"],
        (Supervisor::Cli, Ending::Oom) => vec!["exit 137"],
        (Supervisor::Library, Ending::PanicAbort) => vec!["signal 6"],
        (Supervisor::Library, Ending::Term) => vec!["signal 15"],
        (Supervisor::Library, Ending::Int) => vec!["signal 2"],
        (Supervisor::Library, Ending::Hup) => vec!["signal 1"],
        (Supervisor::Library, Ending::Oom) => vec!["signal 9"],
    }
}
