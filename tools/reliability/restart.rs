//! Section "restart safety": `daemonic ps` and `daemonic kill` on a family whose supervisor was
//! SIGKILLed. The truth lives in the cgroup tree (member directories and their `user.*`
//! attributes), so a new `daemonic` process must see the family as it was and end it whole.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use crate::Env;
use crate::probe::{Watched, alive, leftovers, ps_family, sweep, watch};

/// What one restart trial saw.
#[derive(Debug, Default)]
pub(crate) struct RestartOutcome {
    /// `ps --json` after the SIGKILL listed the family with the same members and PIDs.
    pub(crate) ps_ok: bool,
    /// `daemonic kill` → every member dead.
    pub(crate) kill_latency: Option<Duration>,
    pub(crate) leaked_processes: usize,
    pub(crate) leaked_cgroups: usize,
    pub(crate) leaked_units: usize,
    pub(crate) error: Option<String>,
}

impl crate::report::Trial for RestartOutcome {
    fn leaks(&self) -> usize {
        self.leaked_processes + self.leaked_cgroups + self.leaked_units
    }

    fn failed(&self) -> bool {
        self.leaks() > 0 || !self.ps_ok || self.kill_latency.is_none() || self.error.is_some()
    }
}

/// A member as `ps --json` lists it: (name, pid, daemon, state).
type Listed = (String, u32, bool, String);

/// The members `ps --json` lists for the family `token`, and its guardian's PID.
fn members(env: &Env, token: &str) -> Result<(Vec<Listed>, u32), String> {
    let Some(family) = ps_family(env, token)? else {
        return Ok((Vec::new(), 0));
    };
    let guardian = family["guardian"].as_u64().unwrap_or(0) as u32;
    let mut list: Vec<Listed> = family["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["pid"].as_u64().unwrap_or(0) as u32,
                m["daemon"].as_bool().unwrap_or(false),
                m["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    list.sort();
    Ok((list, guardian))
}

pub(crate) fn run(env: &Env, backend: &str, index: usize) -> RestartOutcome {
    let token = format!("r{}{}kn{index}e", env.run_id, &backend[..1]);
    let mut out = RestartOutcome::default();
    if let Err(e) = run_in(env, backend, &token, &mut out) {
        out.error = Some(e);
    }
    sweep(env, &token, backend);
    out
}

fn run_in(env: &Env, backend: &str, token: &str, out: &mut RestartOutcome) -> Result<(), String> {
    let d = env.daemonic.display().to_string();
    let script = format!(
        "{d} spawn --daemon --name logger -- sleep 1000 & {d} spawn --no-daemon --name worker -- sleep 1000 & \
         exec sleep 1000"
    );
    let mut cmd = std::process::Command::new(&env.daemonic);
    cmd.args(["-q", "run", "--backend", backend, "--name", token]);
    if backend == "systemd" {
        cmd.arg("--user");
    }
    cmd.args(["--", "sh", "-c", &script]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| format!("start daemonic run: {e}"))?;
    let run_pidfd = pidfd_open(Pid::from_raw(child.id() as i32).expect("pid"), PidfdFlags::empty())
        .map_err(|e| format!("pidfd_open of run: {e}"))?;
    let mut supervisor = Watched { what: "daemonic run".into(), pidfd: run_pidfd, died: None };

    let result = (|| -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let (before, guardian) = loop {
            let (m, g) = members(env, token)?;
            if m.len() == 3 && m.iter().all(|(_, pid, _, state)| *pid > 0 && state == "running") {
                break (m, g);
            }
            if Instant::now() > deadline {
                return Err(format!("the family did not show 3 running members: {m:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut watched = Vec::new();
        for (name, pid, _, _) in &before {
            watched.push(Watched::open(name.clone(), *pid, token)?);
        }
        let mut guardian = Watched::open("guardian", guardian, "")?;
        pidfd_send_signal(&supervisor.pidfd, Signal::KILL).map_err(|e| format!("SIGKILL run: {e}"))?;
        watch(&mut [&mut supervisor], Instant::now() + Duration::from_secs(5));
        let (after, _) = members(env, token)?;
        out.ps_ok = after == before;
        if !out.ps_ok {
            return Err(format!("ps after the SIGKILL of run: {after:?}, before: {before:?}"));
        }
        let killed_at = Instant::now();
        let kill = std::process::Command::new(&env.daemonic)
            .args(["kill", token])
            .output()
            .map_err(|e| format!("run daemonic kill: {e}"))?;
        if !kill.status.success() {
            return Err(format!("daemonic kill {token}: {}", String::from_utf8_lossy(&kill.stderr).trim()));
        }
        {
            let mut set: Vec<&mut Watched> = watched.iter_mut().collect();
            watch(&mut set, killed_at + Duration::from_secs(5));
        }
        let last = watched.iter().map(|w| w.died).collect::<Option<Vec<_>>>().and_then(|v| v.into_iter().max());
        out.kill_latency = last.map(|t| t.saturating_duration_since(killed_at));
        out.leaked_processes = watched.iter().filter(|w| alive(&w.pidfd)).count();
        watch(&mut [&mut guardian], Instant::now() + Duration::from_secs(5));
        if alive(&guardian.pidfd) {
            out.leaked_processes += 1;
            let _ = pidfd_send_signal(&guardian.pidfd, Signal::KILL);
        }
        for w in &watched {
            let _ = pidfd_send_signal(&w.pidfd, Signal::KILL);
        }
        Ok(())
    })();
    if supervisor.died.is_none() {
        let _ = pidfd_send_signal(&supervisor.pidfd, Signal::KILL);
    }
    let _ = child.wait();
    (out.leaked_cgroups, out.leaked_units) = leftovers(env, token, backend, Duration::from_secs(5));
    result
}
