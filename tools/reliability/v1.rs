//! Limits from cgroup v1 controllers, on hybrid hosts: a memory cgroup with a small limit for the
//! OOM ending, a pids cgroup with a small `pids.max` for the fork bomb.
//!
//! A process of the family moves itself into it. On a hybrid host these controllers are v1
//! hierarchies (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/pids`): moving a process there changes
//! nothing of its cgroup v2 placement, so it stays where daemonic put it. Where the host has no
//! v1 hierarchy with the controller, the limit sits on the member's own cgroup v2 instead, set
//! by daemonic's resource properties (`limits.rs` chooses).

use std::path::{Path, PathBuf};

use crate::limits::MEMORY_LIMIT;

/// A v1 cgroup this run created (and removes).
pub(crate) struct V1Cgroup {
    path: PathBuf,
}

impl V1Cgroup {
    /// Creates `daemonic-reliability-<token>` below this process's own cgroup of the v1
    /// hierarchy that has `controller`.
    fn create(controller: &str, token: &str) -> Result<V1Cgroup, String> {
        let (mount, own) = hierarchy(controller)
            .ok_or_else(|| format!("there is no v1 hierarchy with the {controller} controller"))?;
        let path = mount.join(own.trim_start_matches('/')).join(format!("daemonic-reliability-{token}"));
        std::fs::create_dir(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        Ok(V1Cgroup { path })
    }

    /// A memory cgroup limited to 64 MiB, swap included.
    pub(crate) fn memory(token: &str) -> Result<V1Cgroup, String> {
        let cg = V1Cgroup::create("memory", token)?;
        cg.write("memory.limit_in_bytes", &MEMORY_LIMIT.to_string())?;
        // With swap accounting, swap must be limited too, or the limit only moves pages to swap.
        if cg.path.join("memory.memsw.limit_in_bytes").exists() {
            cg.write("memory.memsw.limit_in_bytes", &MEMORY_LIMIT.to_string())?;
        }
        Ok(cg)
    }

    /// A pids cgroup that holds at most `max` tasks.
    pub(crate) fn pids(token: &str, max: u32) -> Result<V1Cgroup, String> {
        let cg = V1Cgroup::create("pids", token)?;
        cg.write("pids.max", &max.to_string())?;
        Ok(cg)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn write(&self, file: &str, value: &str) -> Result<(), String> {
        let p = self.path.join(file);
        std::fs::write(&p, value).map_err(|e| format!("write {value:?} to {}: {e}", p.display()))
    }

    /// Whether the kernel's OOM killer killed a process in it (`oom_kill` of
    /// `memory.oom_control`, kernel ≥ 4.13).
    pub(crate) fn oom_killed(&self) -> bool {
        let text = std::fs::read_to_string(self.path.join("memory.oom_control")).unwrap_or_default();
        text.lines().filter_map(|l| l.strip_prefix("oom_kill ")).any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
    }

    /// Removes it; the killed member leaves it at its exit, which may take a moment.
    pub(crate) fn remove(self) -> Result<(), String> {
        crate::probe::remove_cgroup(&self.path)
    }
}

/// The mount point of the v1 hierarchy with `controller`, and this process's cgroup in it.
pub(crate) fn hierarchy(controller: &str) -> Option<(PathBuf, String)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split_whitespace();
        let (fstype, _source, options) = (r.next()?, r.next()?, r.next()?);
        (fstype == "cgroup" && options.split(',').any(|o| o == controller))
            .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap_or_default()))
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == controller).then(|| path.to_string())
    })?;
    Some((mount, own))
}
