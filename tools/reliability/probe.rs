//! Watching processes and finding what is left of a family: pidfds polled for death times, the
//! cgroup2 tree searched by a trial's token, the test user manager's units, and the sweep that
//! removes a failed trial's leftovers through the cgroups its family made.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

use crate::Env;

/// A process watched through its pidfd, and when it was seen dead.
pub(crate) struct Watched {
    pub(crate) what: String,
    pub(crate) pidfd: OwnedFd,
    pub(crate) died: Option<Instant>,
}

impl Watched {
    pub(crate) fn open(what: impl Into<String>, pid: u32, token: &str) -> Result<Watched, String> {
        let what = what.into();
        let raw = Pid::from_raw(pid as i32).ok_or_else(|| format!("{what}: bad pid {pid}"))?;
        let pidfd = pidfd_open(raw, PidfdFlags::empty()).map_err(|e| format!("pidfd_open({pid}) of {what}: {e}"))?;
        // The pidfd names the process for good; make sure it is the one we were told about (a
        // member of this trial's family), not a stranger that took a recycled PID.
        if !token.is_empty() {
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if !cgroup.contains(token) && alive(&pidfd) {
                return Err(format!("{what} (pid {pid}) is not in the trial's family: {}", cgroup.trim()));
            }
        }
        Ok(Watched { what, pidfd, died: None })
    }
}

pub(crate) fn alive(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    !matches!(poll(&mut fds, Some(&rustix::event::Timespec::default())), Ok(n) if n > 0)
}

/// Polls until every process in `set` has died or `until` passes; records the times.
pub(crate) fn watch(set: &mut [&mut Watched], until: Instant) {
    loop {
        let pending: Vec<usize> = (0..set.len()).filter(|&i| set[i].died.is_none()).collect();
        if pending.is_empty() {
            return;
        }
        let now = Instant::now();
        if now >= until {
            return;
        }
        let mut fds: Vec<PollFd> = pending.iter().map(|&i| PollFd::new(&set[i].pidfd, PollFlags::IN)).collect();
        let left = until - now;
        let timeout = rustix::event::Timespec { tv_sec: left.as_secs() as i64, tv_nsec: left.subsec_nanos() as i64 };
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {
                let at = Instant::now();
                let fired: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
                drop(fds);
                for (k, &i) in pending.iter().enumerate() {
                    if fired[k] {
                        set[i].died = Some(at);
                    }
                }
            }
            Err(_) => return,
        }
    }
}

/// Directories anywhere in the cgroup2 tree whose name holds the trial's token.
pub(crate) fn cgroups_of(root: &Path, token: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if e.file_name().to_string_lossy().contains(token) {
                found.push(path.clone());
            }
            if depth < 16 {
                stack.push((path, depth + 1));
            }
        }
    }
    found
}

/// Units of the test user manager whose name holds the token.
pub(crate) fn units_of(token: &str) -> Vec<String> {
    let out = std::process::Command::new("systemctl")
        .args(["--user", "list-units", "--all", "--plain", "--no-legend"])
        .arg(format!("daemonic-{token}*"))
        .output();
    match out {
        Ok(o) => {
            String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.trim().is_empty()).map(String::from).collect()
        }
        Err(_) => Vec::new(),
    }
}

/// Removes whatever of the trial's family is still there: `cgroup.kill` on its directories
/// (deepest last, so the kill reaches everything first), then `rmdir` deepest first, and the
/// units are stopped.
pub(crate) fn sweep(env: &Env, token: &str, backend: &str) {
    let mut dirs = cgroups_of(&env.cgroup2, token);
    if dirs.is_empty() && (backend != "systemd" || units_of(token).is_empty()) {
        return;
    }
    dirs.sort_by_key(|d| d.components().count());
    for d in &dirs {
        let _ = std::fs::write(d.join("cgroup.kill"), "1");
    }
    if backend == "systemd" {
        let _ = std::process::Command::new("systemctl")
            .args(["--user", "stop"])
            .arg(format!("daemonic-{token}*"))
            .stderr(Stdio::null())
            .status();
    }
    for _ in 0..100 {
        let mut left = cgroups_of(&env.cgroup2, token);
        if left.is_empty() {
            return;
        }
        left.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in &left {
            let _ = std::fs::remove_dir(d);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The family named `token` as `daemonic ps --json` lists it, `None` when it lists none.
pub(crate) fn ps_family(env: &Env, token: &str) -> Result<Option<serde_json::Value>, String> {
    let out = std::process::Command::new(&env.daemonic)
        .args(["ps", "--json"])
        .output()
        .map_err(|e| format!("run daemonic ps: {e}"))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("parse daemonic ps --json: {e}"))?;
    Ok(doc["families"].as_array().into_iter().flatten().find(|f| f["name"] == token).cloned())
}

/// The guardian of the family `token`, by `daemonic ps --json`, checked to be a guardian.
pub(crate) fn guardian(env: &Env, token: &str) -> Result<Watched, String> {
    let family = ps_family(env, token)?.ok_or_else(|| format!("daemonic ps does not list family {token}"))?;
    let pid = family["guardian"].as_u64().ok_or("daemonic ps lists no guardian")? as u32;
    let w = Watched::open("guardian", pid, "")?;
    let argv0 = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if alive(&w.pidfd) && !argv0.starts_with(b"daemonic-guardian") {
        return Err(format!("pid {pid} from ps is not a guardian"));
    }
    Ok(w)
}

/// Waits up to `grace` for the family's cgroups to go (its guardian removes them after the
/// end), then counts what is left: cgroup directories, and units on the systemd backend.
pub(crate) fn leftovers(env: &Env, token: &str, backend: &str, grace: Duration) -> (usize, usize) {
    let deadline = Instant::now() + grace;
    while !cgroups_of(&env.cgroup2, token).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let units = if backend == "systemd" { units_of(token).len() } else { 0 };
    (cgroups_of(&env.cgroup2, token).len(), units)
}

/// Waits until `path` exists (and returns its text) while `watched` lives; an error once it
/// died or `limit` passed.
pub(crate) fn wait_for_file(path: &Path, watched: &mut Watched, limit: Duration) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Ok(text);
        }
        watch(&mut [&mut *watched], Instant::now() + Duration::from_millis(2));
        if watched.died.is_some() {
            return Err(format!("the {} exited before {} appeared", watched.what, path.display()));
        }
        if Instant::now() > deadline {
            return Err(format!("{} did not appear in time", path.display()));
        }
    }
}

/// The last `n` lines of a file (a trial's captured stderr), joined for an error message.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(n).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// The PID a pidfd refers to (`Pid:` of its fdinfo).
pub(crate) fn pid_of(w: &Watched) -> u32 {
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", w.pidfd.as_raw_fd())).unwrap_or_default();
    info.lines().find_map(|l| l.strip_prefix("Pid:")).and_then(|p| p.trim().parse().ok()).unwrap_or(0)
}

/// Removes a cgroup directory this run created (v1 or v2), waiting up to 5 s for the processes
/// that were killed in it to leave; a directory already gone counts as removed.
pub(crate) fn remove_cgroup(dir: &Path) -> Result<(), String> {
    let mut last = None;
    for _ in 0..250 {
        match daemonic::__internal::cgroup::remove(dir) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("remove {}: {}", dir.display(), last.map(|e| e.to_string()).unwrap_or_default()))
}
