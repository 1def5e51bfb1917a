//! Resource properties of a member (`--property KEY=VALUE`, as `systemd-run -p`), checked before
//! anything is created.
//!
//! The syntax is systemd's (`systemd.resource-control(5)`): `TasksMax=` a count, a percentage
//! of the kernel's limit or `infinity`; `MemoryMax=` bytes with an optional `K`, `M`, `G` or `T`
//! (powers of 1024), a percentage of physical memory or `infinity`; `CPUWeight=` 1 to 10000.
//! Each becomes the D-Bus property systemd expects (`TasksMax`/`TasksMaxScale`, `MemoryMax`/
//! `MemoryMaxScale`, `CPUWeight`), so a bad value is an error here and never a half-created unit.
//!
//! On the cgroupfs backend, [`apply_in_dirs`] writes the same limits to the cgroup v2 interface
//! files of the member's own directory (`pids.max`, `memory.max`, `cpu.weight`), as systemd
//! would to a scope's, before the member's first process runs in it.

use std::fmt;
use std::path::Path;

use crate::cgroup;
use crate::cgroup::layout;
use crate::error::{Error, ErrorKind, Result};

/// A checked resource property, in the form systemd's D-Bus API takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Property {
    /// `TasksMax` (t): at most this many tasks (processes and threads); `u64::MAX` is infinity.
    TasksMax(u64),
    /// `TasksMaxScale` (u): a share of the kernel's limit, scaled to 2³².
    TasksMaxScale(u32),
    /// `MemoryMax` (t): bytes; `u64::MAX` is infinity.
    MemoryMax(u64),
    /// `MemoryMaxScale` (u): a share of physical memory, scaled to 2³².
    MemoryMaxScale(u32),
    /// `CPUWeight` (t): 1 to 10000.
    CpuWeight(u64),
}

impl Property {
    /// The D-Bus property name.
    pub fn key(&self) -> &'static str {
        match self {
            Property::TasksMax(_) => "TasksMax",
            Property::TasksMaxScale(_) => "TasksMaxScale",
            Property::MemoryMax(_) => "MemoryMax",
            Property::MemoryMaxScale(_) => "MemoryMaxScale",
            Property::CpuWeight(_) => "CPUWeight",
        }
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Property::TasksMax(v) | Property::MemoryMax(v) | Property::CpuWeight(v) => write!(f, "{}={v}", self.key()),
            Property::TasksMaxScale(v) | Property::MemoryMaxScale(v) => write!(f, "{}={v}", self.key()),
        }
    }
}

impl Property {
    /// The cgroup v2 controller that enforces it.
    pub fn controller(&self) -> &'static str {
        match self {
            Property::TasksMax(_) | Property::TasksMaxScale(_) => "pids",
            Property::MemoryMax(_) | Property::MemoryMaxScale(_) => "memory",
            Property::CpuWeight(_) => "cpu",
        }
    }

    /// The interface file and the value to write to it, as systemd computes them: a share of
    /// the kernel's task limit (the lower of `pid_max` and `threads-max`) or of physical memory
    /// (`MemTotal`), `max` for infinity.
    fn cgroup_file(&self) -> Result<(&'static str, String)> {
        let max_or = |v: u64| if v == u64::MAX { "max".to_string() } else { v.to_string() };
        let share = |total: u64, scale: u32| (u128::from(total) * u128::from(scale) / (1u128 << 32)) as u64;
        Ok(match *self {
            Property::TasksMax(n) => ("pids.max", max_or(n)),
            Property::TasksMaxScale(s) => ("pids.max", share(kernel_task_limit()?, s).max(1).to_string()),
            Property::MemoryMax(b) => ("memory.max", max_or(b)),
            Property::MemoryMaxScale(s) => ("memory.max", share(physical_memory()?, s).to_string()),
            Property::CpuWeight(w) => ("cpu.weight", w.to_string()),
        })
    }
}

/// Applies `properties` to a new member's own cgroup `member_dir`, below the family's directory
/// `family_dir`, on the cgroupfs backend. Each controller is enabled in `cgroup.subtree_control`
/// of the family's own directories on the way down (never above the family: those belong to
/// whoever delegated the base), then the limit is written. Fails, naming the controller and the
/// directory, where the base does not hand the controller down, or where the member's parent is
/// a member's own directory, which holds processes (cgroup v2 gives controllers only to
/// children of cgroups without processes): nothing is enabled then.
pub fn apply_in_dirs(family_dir: &Path, member_dir: &Path, properties: &[Property]) -> Result<()> {
    let Ok(below) = member_dir.strip_prefix(family_dir) else {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not below the family's directory {}", member_dir.display(), family_dir.display()),
        ));
    };
    // The directories whose subtree_control must pass the controller on: the family's, then
    // each level down to the member's parent.
    let mut owners = vec![family_dir.to_path_buf()];
    let mut dir = family_dir.to_path_buf();
    let levels: Vec<_> = below.components().collect();
    for level in &levels[..levels.len().saturating_sub(1)] {
        dir.push(level);
        owners.push(dir.clone());
    }
    // A member's own directory holds its processes (its non-daemonic children are directories
    // below it), and cgroup v2 lets no cgroup with processes hand controllers down: even a
    // threaded one (pids) it accepts turns the children into cgroups no process may enter. Only
    // the family's directory and `.daemons` directories never hold processes.
    let holder = owners.iter().skip(1).find(|o| !o.to_string_lossy().ends_with(layout::DAEMONS_SUFFIX));
    if let (Some(holder), Some(p)) = (holder, properties.first()) {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "{} cannot be applied on cgroupfs to {}: its parent {} has processes of its own, and cgroup v2 \
                 gives controllers only to the children of a cgroup without processes (a member's non-daemonic \
                 children live in its own cgroup on cgroupfs; use the systemd backend, or give the limit to the \
                 parent)",
                p.key(),
                member_dir.display(),
                holder.display()
            ),
        ));
    }
    if properties.is_empty() {
        return Ok(());
    }
    let available = cgroup::read(family_dir, "cgroup.controllers").unwrap_or_default();
    for p in properties {
        let controller = p.controller();
        if !available.split_whitespace().any(|c| c == controller) {
            let base = family_dir.parent().unwrap_or(family_dir);
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{} needs the {controller} controller, which {} does not hand down to the family (its \
                     cgroup.subtree_control lacks {controller}; daemonic enables controllers only inside the \
                     family): enable it there, or give the service Delegate={controller}",
                    p.key(),
                    base.display()
                ),
            ));
        }
        for owner in &owners {
            let enabled = cgroup::read(owner, "cgroup.subtree_control").unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == controller) {
                cgroup::write(owner, "cgroup.subtree_control", &format!("+{controller}"))?;
            }
        }
        let (file, value) = p.cgroup_file()?;
        cgroup::write(member_dir, file, &value)?;
    }
    Ok(())
}

/// The kernel's limit on tasks, which `TasksMax=N%` is a share of (as systemd reads it).
fn kernel_task_limit() -> Result<u64> {
    let read = |file: &str| -> Result<u64> {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io("read", Path::new(file), e))?;
        text.trim().parse().map_err(|_| Error::new(ErrorKind::Os, format!("{file} holds {text:?}, not a number")))
    };
    Ok(read("/proc/sys/kernel/pid_max")?.min(read("/proc/sys/kernel/threads-max")?))
}

/// Physical memory in bytes, which `MemoryMax=N%` is a share of.
fn physical_memory() -> Result<u64> {
    let file = Path::new("/proc/meminfo");
    let text = std::fs::read_to_string(file).map_err(|e| Error::io("read", file, e))?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| Error::new(ErrorKind::Os, "/proc/meminfo has no MemTotal line"))
}

/// The keys `--property` accepts.
pub const KEYS: &[&str] = &["TasksMax", "MemoryMax", "CPUWeight"];

/// Parses `KEY=VALUE`.
pub fn parse(assignment: &str) -> Result<Property> {
    let bad = |why: String| Err(Error::new(ErrorKind::InvalidInput, format!("invalid property {assignment:?}: {why}")));
    let Some((key, value)) = assignment.split_once('=') else {
        return bad("expected KEY=VALUE".into());
    };
    let value = value.trim();
    match key.trim() {
        "TasksMax" => match value {
            "infinity" => Ok(Property::TasksMax(u64::MAX)),
            v if v.ends_with('%') => percent(v).map(Property::TasksMaxScale).or_else(&bad),
            v => match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(Property::TasksMax(n)),
                _ => bad("TasksMax takes a count of at least 1, a percentage or \"infinity\"".into()),
            },
        },
        "MemoryMax" => match value {
            "infinity" => Ok(Property::MemoryMax(u64::MAX)),
            v if v.ends_with('%') => percent(v).map(Property::MemoryMaxScale).or_else(&bad),
            v => bytes(v).map(Property::MemoryMax).or_else(&bad),
        },
        "CPUWeight" => match value.parse::<u64>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(Property::CpuWeight(n)),
            _ => bad("CPUWeight takes a whole number from 1 to 10000".into()),
        },
        other => bad(format!("unknown key {other:?}; supported: {}", KEYS.join(", "))),
    }
}

/// `N%` (0 to 100, up to two decimals) scaled to 2³², as systemd stores it.
fn percent(v: &str) -> std::result::Result<u32, String> {
    let n: f64 = v.trim_end_matches('%').parse().map_err(|_| format!("{v:?} is not a percentage"))?;
    if !(0.0..=100.0).contains(&n) || !n.is_finite() {
        return Err(format!("{v:?} is not between 0% and 100%"));
    }
    Ok(((n / 100.0) * f64::from(u32::MAX)).round() as u32)
}

/// Bytes with an optional binary suffix (`K`, `M`, `G`, `T`).
fn bytes(v: &str) -> std::result::Result<u64, String> {
    let (digits, shift) = match v.char_indices().last() {
        Some((i, 'K')) => (&v[..i], 10),
        Some((i, 'M')) => (&v[..i], 20),
        Some((i, 'G')) => (&v[..i], 30),
        Some((i, 'T')) => (&v[..i], 40),
        _ => (v, 0),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{v:?} is not a size (bytes, or a number with K, M, G or T)"))?;
    n.checked_mul(1u64 << shift).filter(|b| *b < u64::MAX).ok_or_else(|| format!("{v:?} is too large"))
}

#[cfg(test)]
mod tests {
    use crate::cgroup::properties::*;

    #[test]
    fn accepts_systemds_syntax() {
        assert_eq!(parse("TasksMax=100").expect("tasks"), Property::TasksMax(100));
        assert_eq!(parse("TasksMax=infinity").expect("inf"), Property::TasksMax(u64::MAX));
        assert_eq!(parse("TasksMax=50%").expect("pct"), Property::TasksMaxScale(2_147_483_648));
        assert_eq!(parse("MemoryMax=512M").expect("mem"), Property::MemoryMax(512 << 20));
        assert_eq!(parse("MemoryMax=4096").expect("bytes"), Property::MemoryMax(4096));
        assert_eq!(parse("MemoryMax=2G").expect("gib"), Property::MemoryMax(2 << 30));
        assert_eq!(parse("MemoryMax=100%").expect("all"), Property::MemoryMaxScale(u32::MAX));
        assert_eq!(parse("CPUWeight=100").expect("cpu"), Property::CpuWeight(100));
        assert_eq!(parse("CPUWeight=100").expect("cpu").to_string(), "CPUWeight=100");
    }

    #[test]
    fn refuses_everything_else_with_a_reason() {
        for (bad, why) in [
            ("TasksMax", "expected KEY=VALUE"),
            ("TasksMax=0", "at least 1"),
            ("TasksMax=-5", "at least 1"),
            ("TasksMax=150%", "between 0% and 100%"),
            ("MemoryMax=lots", "not a size"),
            ("MemoryMax=99999999999T", "too large"),
            ("MemoryMax=1.5G", "not a size"),
            ("CPUWeight=0", "1 to 10000"),
            ("CPUWeight=10001", "1 to 10000"),
            ("Nice=5", "unknown key \"Nice\"; supported: TasksMax, MemoryMax, CPUWeight"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }
}
