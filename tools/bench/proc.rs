//! What `/proc` says about a process, and about the machine.

use std::time::{Duration, Instant};

/// The state letter and command name of `pid` (`/proc/<pid>/stat`).
pub(crate) fn state(pid: u32) -> Option<(char, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (left, right) = text.rsplit_once(')')?;
    let comm = left.split_once('(')?.1.to_string();
    Some((right.trim_start().chars().next()?, comm))
}

/// CPU time used by all threads of process `pid` so far (`/proc/<pid>/task/*/schedstat`, ns):
/// the guardian and `daemonic run` of a systemd family have a thread for the bus.
pub(crate) fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// The PID of the process behind a well-known name on the session bus, asked with `busctl`;
/// `org.freedesktop.DBus` answers with the bus daemon's own.
pub(crate) fn bus_name_pid(name: &str) -> Option<u32> {
    let out = std::process::Command::new("busctl")
        .args(["--user", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus"])
        .args(["GetConnectionUnixProcessID", "s", name])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    // "u 1234"
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1)?.parse().ok()
}

/// VmRSS of `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// Waits (at most 5 s) until `pid` sleeps and has used no CPU for 5 ms; whether it did.
pub(crate) fn settle(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = cpu_ns(pid);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        let now = cpu_ns(pid);
        if now.is_some() && now == last && state(pid).is_some_and(|(s, _)| s == 'S') {
            return true;
        }
        last = now;
    }
    false
}

/// The first line a command prints, or "" when it cannot run.
pub(crate) fn first_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&text).lines().next().unwrap_or_default().trim().to_string()
        })
        .unwrap_or_default()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".into())
}

/// The machine a run was measured on.
pub(crate) struct Machine {
    pub(crate) kernel: String,
    pub(crate) cpus: usize,
    pub(crate) cpu_model: String,
    pub(crate) memory: String,
    pub(crate) cgroup_mode: String,
    pub(crate) systemd: String,
    pub(crate) python: String,
    pub(crate) load: String,
}

impl Machine {
    pub(crate) fn read(python: &str) -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
                })
            })
            .unwrap_or_else(|| "?".into());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.split_whitespace().next()?.parse::<u64>().ok()
            })
            .map_or_else(|| "?".into(), |kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0));
        Machine {
            kernel: format!("{} {}", read("/proc/sys/kernel/ostype"), read("/proc/sys/kernel/osrelease")),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            memory,
            cgroup_mode: crate::host::cgroup_mode(),
            systemd: first_line("systemctl", &["--version"]),
            python: first_line(python, &["--version"]),
            load: load_average(),
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn load_average() -> String {
    read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
