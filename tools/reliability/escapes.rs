//! Section "escapes": a daemon with `allow_children` tries to get processes out of its family
//! (`escape.py` does the trying). The report says what the kernel refused and whether what got
//! away from its parent was still caught by the family's end: every process the daemon made must
//! be dead within 100 ms of its family's end, and nothing of the family may remain.
//!
//! The family is opened by this program in the `escape-main` role (a library supervisor, as in
//! the endings section), whose one daemon runs the escape.
//!
//! The fork bomb runs under a tasks limit (`limits.rs`): a v1 pids cgroup that the bombing
//! daemon enters first (hybrid hosts), or `TasksMax=64` on the daemon itself, a resource
//! property of its own cgroup v2 given by daemonic.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use daemonic::Command;
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use crate::Env;
use crate::limits::{Mechanism, TASKS_LIMIT};
use crate::probe::{Watched, alive, leftovers, sweep, tail, wait_for_file, watch};
use crate::trial::LATE;
use crate::v1::V1Cgroup;

/// The escape script, written to the scratch directory at start.
pub(crate) const SCRIPT: &str = include_str!("escape.py");
/// The unprivileged user of the `move-cgroup` trial as a user (nobody).
const NOBODY: u32 = 65534;

/// One way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Escape {
    DoubleFork,
    Setsid,
    Daemon3,
    ForkBomb,
    MoveAsRoot,
    MoveContained,
    MoveAsUser,
}

impl Escape {
    /// The trials: each must leave nothing.
    pub(crate) const ALL: [Escape; 6] = [
        Escape::DoubleFork,
        Escape::Setsid,
        Escape::Daemon3,
        Escape::ForkBomb,
        Escape::MoveContained,
        Escape::MoveAsUser,
    ];
    /// Shown once per backend and not counted: the limit `contain` exists for (root may move
    /// any process to any cgroup, out of `cgroup.kill`'s reach).
    pub(crate) const LIMITS: [Escape; 1] = [Escape::MoveAsRoot];

    fn kind(self) -> &'static str {
        match self {
            Escape::DoubleFork => "double-fork",
            Escape::Setsid => "setsid",
            Escape::Daemon3 => "daemon3",
            Escape::ForkBomb => "fork-bomb",
            Escape::MoveAsRoot | Escape::MoveContained | Escape::MoveAsUser => "move-cgroup",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Escape::DoubleFork => "double fork",
            Escape::Setsid => "fork + setsid",
            Escape::Daemon3 => "daemon(3)",
            Escape::ForkBomb => "fork bomb under a tasks limit (64)",
            Escape::MoveAsRoot => "move into another cgroup, as root, without contain",
            Escape::MoveContained => "move into another cgroup, as root (daemon started with contain)",
            Escape::MoveAsUser => "move into another cgroup it owns, as nobody",
        }
    }

    fn letter(self) -> char {
        b"dsabmcu"[self as usize] as char
    }
}

/// What one escape trial saw.
#[derive(Debug, Default)]
pub(crate) struct EscapeOutcome {
    /// What the kernel answered to each step, in the script's words.
    pub(crate) said: BTreeMap<String, String>,
    /// Processes the daemon made that were watched.
    pub(crate) watched: usize,
    /// Of those, the ones dead within 100 ms of the family's end.
    pub(crate) caught: usize,
    /// Family end → the last of them dead.
    pub(crate) latency: Option<Duration>,
    /// Processes alive after the family's end (plus its grace of 100 ms).
    pub(crate) survivors: usize,
    /// Cgroups and units of the family left behind.
    pub(crate) leaked_cgroups: usize,
    pub(crate) leaked_units: usize,
    pub(crate) error: Option<String>,
}

impl crate::report::Trial for EscapeOutcome {
    fn leaks(&self) -> usize {
        self.survivors + self.leaked_cgroups + self.leaked_units
    }

    fn failed(&self) -> bool {
        self.leaks() > 0 || self.error.is_some()
    }
}

/// The `escape-main` role: opens a family, starts the escaping daemon, waits for a line on
/// standard input, then ends the family the ordinary way.
pub(crate) fn main(mut it: impl Iterator<Item = String>) -> Result<(), String> {
    let opt = crate::parse_pairs(&mut it)?;
    let get = |k: &str| opt.get(k).cloned().ok_or_else(|| format!("{k} is required"));
    let family = crate::open_family(&get("--backend")?, &get("--name")?, opt.get("--cgroup").map(String::as_str))?;
    let script_args = [get("--script")?, get("--kind")?, get("--report")?, get("--outside")?, get("--pids")?];
    let mut cmd = match opt.get("--as-user") {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), "--".into()]);
            c.arg(get("--python")?);
            c
        }
        None => Command::new(get("--python")?),
    };
    cmd.args(script_args).name("escaper").daemon(true).allow_children(true);
    cmd.contain(opt.contains_key("--contain"));
    if let Some(n) = opt.get("--tasks-max") {
        cmd.property(format!("TasksMax={n}"));
    }
    let escaper = family.spawn(&mut cmd).map_err(|e| format!("spawn the escaping daemon: {e}"))?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| format!("wait for the harness: {e}"))?;
    drop(escaper);
    family.shutdown().map_err(|e| format!("shut the family down: {e}"))
}

/// A cgroup2 directory outside any family, that the mover may write.
struct Outside {
    path: PathBuf,
}

impl Outside {
    fn create(env: &Env, token: &str, owner: Option<u32>) -> Result<Outside, String> {
        let h = daemonic::__internal::cgroup::Hierarchy::host().map_err(|e| e.to_string())?;
        let own = h.cgroup_of(0).map_err(|e| e.to_string())?;
        // Not named with the token: it is not the family's, and the sweep must leave it alone.
        let path = own.join(format!("daemonic-reliability-outside-{}", &token[1..]));
        debug_assert!(path.starts_with(&env.cgroup2));
        std::fs::create_dir(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let outside = Outside { path };
        if let Some(uid) = owner {
            // What systemd's Delegate= does for a user: the directory and its procs files.
            for p in [outside.path.clone(), outside.path.join("cgroup.procs"), outside.path.join("cgroup.threads")] {
                std::os::unix::fs::chown(&p, Some(uid), Some(uid))
                    .map_err(|e| format!("chown {}: {e}", p.display()))?;
            }
        }
        Ok(outside)
    }

    fn procs(&self) -> Vec<u32> {
        procs_of(&self.path)
    }

    fn remove(self) -> Result<(), String> {
        if !self.procs().is_empty() {
            let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        }
        crate::probe::remove_cgroup(&self.path)
    }
}

/// Runs one escape trial.
pub(crate) fn run(env: &Env, escape: Escape, backend: &str, index: usize) -> EscapeOutcome {
    let token = format!("r{}{}x{}n{index}e", env.run_id, &backend[..1], escape.letter());
    let dir = env.scratch.join(&token);
    let mut out = EscapeOutcome::default();
    let as_user = (escape == Escape::MoveAsUser).then_some(NOBODY);
    let setup = || -> Result<(Outside, TasksLimit), String> {
        let pids = if escape == Escape::ForkBomb {
            match env.limits.get(backend, "pids").map_err(|e| format!("the fork bomb cannot run here: {e}"))? {
                Mechanism::V1 => TasksLimit::V1(V1Cgroup::pids(&token, TASKS_LIMIT)?),
                Mechanism::V2 { base } => TasksLimit::V2 { base },
            }
        } else {
            TasksLimit::None
        };
        let rest = || -> Result<Outside, String> {
            std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            // The unprivileged escaper writes its report here.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
            Outside::create(env, &token, as_user)
        };
        match rest() {
            Ok(outside) => Ok((outside, pids)),
            Err(e) => {
                if let TasksLimit::V1(p) = pids {
                    let _ = p.remove();
                }
                Err(e)
            }
        }
    };
    let (outside, pids) = match setup() {
        Ok(x) => x,
        Err(e) => {
            out.error = Some(e);
            let _ = std::fs::remove_dir_all(&dir);
            return out;
        }
    };
    if let Err(e) = run_in(env, escape, backend, &token, &dir, &outside, &pids, as_user, &mut out) {
        out.error.get_or_insert(e);
    }
    sweep(env, &token, backend);
    if let Err(e) = outside.remove() {
        out.error.get_or_insert(e);
    }
    if let TasksLimit::V1(p) = pids {
        if let Err(e) = p.remove() {
            out.error.get_or_insert(e);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// The fork bomb's tasks limit.
enum TasksLimit {
    /// Not the fork bomb.
    None,
    /// A v1 pids cgroup the bombing daemon enters.
    V1(V1Cgroup),
    /// `TasksMax=` on the daemon's own cgroup v2, its family below `base` on cgroupfs.
    V2 { base: Option<PathBuf> },
}

#[allow(clippy::too_many_arguments)]
fn run_in(
    env: &Env,
    escape: Escape,
    backend: &str,
    token: &str,
    dir: &Path,
    outside: &Outside,
    pids: &TasksLimit,
    as_user: Option<u32>,
    out: &mut EscapeOutcome,
) -> Result<(), String> {
    let report = dir.join("report.json");
    let mut cmd = std::process::Command::new(&env.me);
    cmd.arg("escape-main");
    cmd.args(["--backend", backend, "--name", token, "--kind", escape.kind()]);
    cmd.arg("--script").arg(env.scratch.join("escape.py"));
    cmd.arg("--report").arg(&report);
    cmd.arg("--outside").arg(&outside.path);
    // The script's PIDS_CGROUP: the v1 cgroup to enter, or `own:MOUNT`, its own cgroup v2.
    match pids {
        TasksLimit::None => cmd.arg("--pids").arg(""),
        TasksLimit::V1(p) => cmd.arg("--pids").arg(p.path()),
        TasksLimit::V2 { base } => {
            if let Some(b) = base {
                cmd.arg("--cgroup").arg(b);
            }
            cmd.args(["--tasks-max", &TASKS_LIMIT.to_string()]);
            cmd.arg("--pids").arg(format!("own:{}", env.cgroup2.display()))
        }
    };
    cmd.arg("--python").arg(&env.python);
    if let Some(uid) = as_user {
        cmd.args(["--as-user", &uid.to_string()]);
    }
    if escape == Escape::MoveContained {
        cmd.args(["--contain", "1"]);
    }
    let stderr_path = dir.join("stderr");
    let stderr = std::fs::File::create(&stderr_path).map_err(|e| format!("create {}: {e}", stderr_path.display()))?;
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(stderr).env("DAEMONIC_LOG", "quiet");
    let mut child = cmd.spawn().map_err(|e| format!("start escape-main: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let pidfd = pidfd_open(Pid::from_raw(child.id() as i32).expect("child pid"), PidfdFlags::empty())
        .map_err(|e| format!("pidfd_open of escape-main: {e}"))?;
    let mut main = Watched { what: "escape-main".into(), pidfd, died: None };

    let result = (|| -> Result<(), String> {
        let text = wait_for_file(&report, &mut main, Duration::from_secs(15))
            .map_err(|e| format!("the escaping daemon wrote no report: {e}"))?;
        let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("parse the report: {e}"))?;
        for (k, v) in doc["said"].as_object().into_iter().flatten() {
            out.said.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
        let mut watched = Vec::new();
        for p in doc["pids"].as_array().into_iter().flatten() {
            let pid = p.as_u64().unwrap_or(0) as u32;
            let w = Watched::open(format!("process {pid}"), pid, "")?;
            // Ours: in the family's cgroup or in the outside one (a moved process).
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let outside_name = outside.path.file_name().unwrap_or_default().to_string_lossy();
            if !(cgroup.contains(token) || cgroup.contains(&*outside_name)) {
                return Err(format!("process {pid} of the report is in neither the family nor {outside_name}"));
            }
            watched.push(w);
        }
        out.watched = watched.len();
        writeln!(stdin, "return").map_err(|e| format!("tell escape-main to return: {e}"))?;
        watch(&mut [&mut main], Instant::now() + Duration::from_secs(15));
        let end = main.died.ok_or("escape-main did not end")?;
        {
            let mut set: Vec<&mut Watched> = watched.iter_mut().collect();
            watch(&mut set, end + Duration::from_secs(2));
        }
        let last = watched.iter().map(|w| w.died).collect::<Option<Vec<_>>>().and_then(|v| v.into_iter().max());
        out.latency = last.map(|l| l.saturating_duration_since(end));
        out.survivors = watched.iter().filter(|w| w.died.is_none_or(|t| t > end + LATE)).count();
        out.caught = watched.len() - out.survivors;
        // Whatever the report did not list: the bomb's tasks, anything that reached the outside,
        // once the family's grace has passed. (Exited tasks leave a cgroup's procs at their exit,
        // zombies included.) The bomb's cgroup: the v1 one, or the daemon's own (gone with the
        // family unless something of it survives).
        let listed: Vec<u32> =
            doc["pids"].as_array().into_iter().flatten().filter_map(|p| p.as_u64()).map(|p| p as u32).collect();
        let bomb_cgroup = match pids {
            TasksLimit::None => None,
            TasksLimit::V1(p) => Some(p.path().to_path_buf()),
            TasksLimit::V2 { .. } => doc["cgroup"].as_str().map(PathBuf::from),
        };
        let others = || {
            let mut others: Vec<u32> = outside.procs();
            if let Some(p) = &bomb_cgroup {
                others.extend(procs_of(p));
            }
            others.retain(|p| !listed.contains(p));
            others.sort_unstable();
            others.dedup();
            others
        };
        let mut left = others();
        while !left.is_empty() && Instant::now() < end + LATE {
            std::thread::sleep(Duration::from_millis(2));
            left = others();
        }
        out.survivors += left.len();
        for w in &watched {
            if alive(&w.pidfd) {
                let _ = pidfd_send_signal(&w.pidfd, Signal::KILL);
            }
        }
        Ok(())
    })();
    drop(stdin);
    watch(&mut [&mut main], Instant::now() + Duration::from_secs(15));
    if main.died.is_none() {
        let _ = pidfd_send_signal(&main.pidfd, Signal::KILL);
    }
    let status = child.wait().map_err(|e| format!("wait for escape-main: {e}"))?;
    if result.is_ok() && !status.success() {
        out.error = Some(format!("escape-main ended with {status}"));
    }
    (out.leaked_cgroups, out.leaked_units) = leftovers(env, token, backend, Duration::from_secs(5));
    if let Err(e) = result {
        return Err(format!("{e} (stderr: {})", tail(&dir.join("stderr"), 3)));
    }
    Ok(())
}

/// The processes a cgroup (v1 or v2) lists.
fn procs_of(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}
