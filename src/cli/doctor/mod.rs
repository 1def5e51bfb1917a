//! `daemonic doctor`: checks the host and explains, line by line, what works, what is missing
//! and how to fix it.
//!
//! Work is split in two. [`gather`] looks at the host and probes the kernel for real: it reads
//! `/proc/self/mountinfo` and `/proc/self/cgroup`, creates a temporary cgroup
//! `daemonic-doctor-<pid>` under the base cgroup `daemonic run` would use, starts `/bin/true`
//! into it with `clone3(CLONE_INTO_CGROUP)` through the crate's spawn machinery, kills a
//! `sleep` there with `cgroup.kill`, installs the no-fork seccomp filter in a child, and asks
//! the user and system buses whether a systemd manager answers. The temporary cgroup is
//! removed on every path (its guard kills what may be left in it and removes it on drop).
//! [`assess()`] then turns these [`Facts`] into [`Check`]s, a pure function that unit tests feed
//! with made-up hosts.
//!
//! A check is `missing` only when the default backend needs it (the one `daemonic run` picks
//! without `--backend`: `DAEMONIC_BACKEND`, else `auto`, which takes systemd when the caller's
//! manager answers and cgroupfs otherwise); what only another backend needs is a `warning`.
//! So the default backend works here exactly when no check is `missing`.

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::backend::Backend;
use crate::backend::systemd::Bus;
use crate::cgroup::{self};

mod assess;
mod probes;

pub(crate) use assess::{assess, resolve};
pub(crate) use probes::gather;
/// How long a systemd manager may take to answer.
const MANAGER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a probe process may take to end after it was released or killed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The journal's native socket.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// Prefix of the temporary cgroup's name.
pub(crate) const TEMP_PREFIX: &str = "daemonic-doctor-";
/// How to get a delegated cgroup, for the fix lines.
const DELEGATE_FIX: &str = "run daemonic in a delegated cgroup: `systemd-run --user -p Delegate=yes --scope \
                            daemonic run …`, or Delegate=yes in its service unit; or give a writable cgroup with \
                            --cgroup PATH or DAEMONIC_CGROUP";

/// The fix of a probe that could not run.
const NOT_RUN_FIX: &str = "fix what kept it from being checked (said above), then run daemonic doctor again";

/// The verdict of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Works.
    Ok,
    /// Needed by the default backend and not there: the default backend cannot work.
    Missing,
    /// Not there, or not checked, but the default backend does not need it.
    Warning,
    /// A fact worth knowing; nothing to fix.
    Info,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Padded here, as `{:<8}` is not passed through by `f.write_str`.
        f.pad(match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Warning => "warning",
            Status::Info => "info",
        })
    }
}

/// One line of the report: a status, what was checked, what was found, and for what is not
/// `ok` or `info` how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Check {
    /// The verdict.
    pub status: Status,
    /// What was checked, e.g. `cgroup2 mount`.
    pub topic: &'static str,
    /// What was found.
    pub found: String,
    /// How to fix it; `None` for `ok` and `info`.
    pub fix: Option<String>,
}

impl Check {
    fn ok(topic: &'static str, found: impl Into<String>) -> Check {
        Check { status: Status::Ok, topic, found: found.into(), fix: None }
    }

    fn info(topic: &'static str, found: impl Into<String>) -> Check {
        Check { status: Status::Info, topic, found: found.into(), fix: None }
    }

    /// `missing` when `required`, else `warning`.
    fn lacking(required: bool, topic: &'static str, found: impl Into<String>, fix: impl Into<String>) -> Check {
        let status = if required { Status::Missing } else { Status::Warning };
        Check { status, topic, found: found.into(), fix: Some(fix.into()) }
    }
}

/// The outcome of a probe of a kernel feature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// It worked; what was seen.
    Works(String),
    /// It was tried and failed; why.
    Fails(String),
    /// It could not be tried; why.
    NotRun(String),
}

/// The cgroup hierarchies mounted on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mounts {
    /// The cgroup2 mount point, if any.
    pub cgroup2: Option<PathBuf>,
    /// The mount points of cgroup v1 hierarchies.
    pub v1: Vec<PathBuf>,
}

/// How cgroups are mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// cgroup2 only.
    Unified,
    /// cgroup2 beside cgroup v1 hierarchies.
    Hybrid,
    /// cgroup v1 only.
    Legacy,
    /// No cgroup filesystem at all.
    Absent,
}

impl Mounts {
    /// The cgroup mounts of a `/proc/self/mountinfo` text.
    pub(crate) fn parse(mountinfo: &str) -> Mounts {
        let v1 = mountinfo
            .lines()
            .filter_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                let mount = left.split_whitespace().nth(4)?;
                (right.split_whitespace().next()? == "cgroup").then(|| PathBuf::from(mount))
            })
            .collect();
        Mounts { cgroup2: cgroup::mount_from_mountinfo(mountinfo), v1 }
    }

    /// The hierarchy mode these mounts make.
    pub(crate) fn mode(&self) -> Mode {
        match (self.cgroup2.is_some(), self.v1.is_empty()) {
            (true, true) => Mode::Unified,
            (true, false) => Mode::Hybrid,
            (false, false) => Mode::Legacy,
            (false, true) => Mode::Absent,
        }
    }
}

/// Why the base cgroup cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BaseProblem {
    /// It is not a cgroup v2 directory.
    NotCgroup,
    /// The caller may not create cgroups in it.
    NotWritable,
}

/// The base cgroup families would be created under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Base {
    /// Its directory.
    pub path: PathBuf,
    /// Whether it comes from `DAEMONIC_CGROUP` (else it is the caller's own cgroup).
    pub given: bool,
    /// `family::choose_base`'s verdict: usable, or why not.
    pub usable: Result<(), BaseProblem>,
    /// The owners of the directory and of its `cgroup.procs`, when they could be read.
    pub owners: Option<(u32, u32)>,
}

/// The controllers of the v2 hierarchy's root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Controllers {
    /// `cgroup.controllers`: available.
    pub available: Option<String>,
    /// `cgroup.subtree_control`: enabled for the root's children.
    pub enabled: Option<String>,
}

/// The kernel features, as probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Probes {
    /// `clone3(CLONE_INTO_CGROUP)` into a temporary cgroup.
    pub clone3: Probe,
    /// The fallback, `clone` plus a write to `cgroup.procs`; probed only when clone3 fails.
    pub fork: Option<Probe>,
    /// `pidfd_open` of the caller.
    pub pidfd: Probe,
    /// `cgroup.kill`.
    pub kill: Probe,
    /// `cgroup.events` and its `populated` key.
    pub events: Probe,
    /// `user.*` extended attributes on a cgroup.
    pub xattrs: Probe,
    /// Installing the no-fork seccomp filter.
    pub seccomp: Probe,
}

/// What `daemonic run` is told by its environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// `DAEMONIC_BACKEND`, `auto` when unset; the error when it is invalid.
    pub backend: Result<Backend, String>,
    /// Whether `DAEMONIC_CGROUP` gives a base (then `auto` is cgroupfs).
    pub explicit_base: bool,
    /// The delegated unit (`Delegate=yes`) the caller runs in, when it may write its cgroup
    /// (then `auto` is cgroupfs).
    pub delegated_unit: Option<String>,
    /// The manager `auto` and `systemd` would ask.
    pub bus: Bus,
    /// Whether `DAEMONIC_BUS` chose it (else the caller's uid did).
    pub bus_from_env: bool,
}

/// Everything [`gather`] found out about the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Facts {
    /// The caller's effective uid.
    pub euid: u32,
    /// The cgroup mounts.
    pub mounts: Mounts,
    /// The v2 hierarchy's controllers.
    pub controllers: Controllers,
    /// The caller's own cgroup directory, or why it is unknown.
    pub own: Result<PathBuf, String>,
    /// The caller's family membership, as its cgroup says (`member main of family web-1`).
    pub membership: Option<String>,
    /// The base cgroup; `None` without a cgroup2 mount or an own cgroup.
    pub base: Option<Base>,
    /// The kernel features.
    pub probes: Probes,
    /// The kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: Option<String>,
    /// `Seccomp:` of `/proc/self/status`: 0 none, 1 strict, 2 filtered.
    pub seccomp_mode: Option<u32>,
    /// Whether a manager answers on the user and the system bus: its version if it could be
    /// read, or why it did not answer.
    pub user_manager: Result<Option<String>, String>,
    /// See `user_manager`.
    pub system_manager: Result<Option<String>, String>,
    /// What `daemonic run` is told by its environment.
    pub settings: Settings,
    /// Whether the journal's socket exists.
    pub journal_socket: bool,
    /// `NOTIFY_SOCKET`, if set.
    pub notify_socket: Option<String>,
}

/// The backend `daemonic run` would take without `--backend`, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// `None` for cgroupfs; the manager's bus for systemd.
    pub bus: Option<Bus>,
    /// One line: what and why.
    pub why: String,
}

/// Runs every check and writes the report to `out`. Returns whether the default backend can
/// work on this host.
pub(crate) fn run(out: &mut impl Write) -> io::Result<bool> {
    let facts = gather();
    let checks = assess(&facts);
    render(&checks, out)?;
    writeln!(out, "\n{}", result_line(&checks, resolve(&facts).ok().as_ref()))?;
    Ok(works(&checks))
}

/// Whether the default backend works: no check is `missing`.
pub(crate) fn works(checks: &[Check]) -> bool {
    !checks.iter().any(|c| c.status == Status::Missing)
}

/// The last line of the report: whether the default backend (`resolved`) works.
pub(crate) fn result_line(checks: &[Check], resolved: Option<&Resolved>) -> String {
    let which = match resolved {
        Some(r) => format!("the default backend ({})", r.why),
        None => "the default backend".to_string(),
    };
    match checks.iter().filter(|c| c.status == Status::Missing).count() {
        0 => format!("result: {which} works here; `daemonic run` can start families."),
        1 => format!("result: {which} cannot work here: 1 check is missing (see its fix: line)."),
        n => format!("result: {which} cannot work here: {n} checks are missing (see their fix: lines)."),
    }
}

/// Writes one line per check, and an indented `fix:` line under each that has a fix.
pub(crate) fn render(checks: &[Check], out: &mut impl Write) -> io::Result<()> {
    for c in checks {
        writeln!(out, "{:<8} {}: {}", c.status, c.topic, c.found)?;
        if let Some(fix) = &c.fix {
            writeln!(out, "{:<8} fix: {fix}", "")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cli::doctor::assess::*;
    use crate::cli::doctor::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const UNIFIED: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    const LEGACY: &str = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";

    fn worked(s: &str) -> Probe {
        Probe::Works(s.into())
    }

    /// A unified host where everything works, as root, with no manager answering.
    fn healthy() -> Facts {
        let base = PathBuf::from("/sys/fs/cgroup/user.slice/x.scope");
        Facts {
            euid: 0,
            mounts: Mounts::parse(UNIFIED),
            controllers: Controllers { available: Some("cpu memory pids".into()), enabled: Some("".into()) },
            own: Ok(base.clone()),
            membership: None,
            base: Some(Base { path: base, given: false, usable: Ok(()), owners: Some((0, 0)) }),
            probes: Probes {
                clone3: worked("cloned"),
                fork: None,
                pidfd: worked("pidfd"),
                kill: worked("killed"),
                events: worked("events"),
                xattrs: worked("xattrs"),
                seccomp: worked("seccomp"),
            },
            kernel: Some("6.18.0".into()),
            seccomp_mode: Some(0),
            user_manager: Err("cannot reach the user's systemd manager".into()),
            system_manager: Err("cannot reach the system's systemd manager".into()),
            settings: Settings {
                backend: Ok(Backend::Auto),
                explicit_base: false,
                delegated_unit: None,
                bus: Bus::System,
                bus_from_env: false,
            },
            journal_socket: false,
            notify_socket: None,
        }
    }

    fn find<'a>(checks: &'a [Check], topic: &str) -> &'a Check {
        checks.iter().find(|c| c.topic == topic).unwrap_or_else(|| panic!("no {topic} check in {checks:#?}"))
    }

    fn missing(checks: &[Check]) -> Vec<&'static str> {
        checks.iter().filter(|c| c.status == Status::Missing).map(|c| c.topic).collect()
    }

    #[test]
    fn hierarchy_modes_come_from_mountinfo() {
        let hybrid = Mounts::parse(HYBRID);
        assert_eq!(hybrid.cgroup2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(hybrid.v1, [PathBuf::from("/sys/fs/cgroup/memory"), PathBuf::from("/sys/fs/cgroup/systemd")]);
        assert_eq!(hybrid.mode(), Mode::Hybrid);
        assert_eq!(Mounts::parse(UNIFIED).mode(), Mode::Unified);
        assert_eq!(Mounts::parse(LEGACY).mode(), Mode::Legacy);
        assert_eq!(Mounts::parse("").mode(), Mode::Absent);
    }

    #[test]
    fn a_healthy_host_has_nothing_missing() {
        let checks = assess(&healthy());
        assert_eq!(missing(&checks), Vec::<&str>::new());
        assert_eq!(find(&checks, "cgroup2 mount").found, "/sys/fs/cgroup (found in /proc/self/mountinfo)");
        assert!(find(&checks, "hierarchy").found.starts_with("unified"));
        assert!(find(&checks, "default backend").found.contains("auto → cgroupfs"));
        // No manager is needed by cgroupfs: a warning with a fix, not missing.
        let system = find(&checks, "systemd system manager");
        assert_eq!(system.status, Status::Warning);
        assert!(system.fix.is_some());
        assert!(checks.iter().all(|c| (c.fix.is_some()) == matches!(c.status, Status::Missing | Status::Warning)));
    }

    #[test]
    fn auto_in_a_delegated_unit_is_cgroupfs_even_where_a_manager_answers() {
        let mut f = healthy();
        f.system_manager = Ok(Some("252".into()));
        f.settings.delegated_unit = Some("web.service".into());
        let resolved = resolve(&f).expect("valid settings");
        assert_eq!(resolved.bus, None);
        assert!(resolved.why.contains("web.service, a unit delegated to it"), "{}", resolved.why);
        assert!(!manager_check(&f, Bus::System, false).found.contains("auto takes it"));
        f.settings.delegated_unit = None;
        assert_eq!(resolve(&f).expect("valid settings").bus, Some(Bus::System));
        assert!(
            manager_check(&f, Bus::System, false).found.contains("--backend systemd --system works, and auto takes it")
        );
    }

    #[test]
    fn a_missing_base_is_missing_with_a_fix() {
        let mut f = healthy();
        f.settings.explicit_base = true;
        f.base = Some(Base {
            path: "/sys/fs/cgroup/nope".into(),
            given: true,
            usable: Err(BaseProblem::NotCgroup),
            owners: None,
        });
        f.probes.clone3 = Probe::NotRun("needs a usable base cgroup".into());
        let checks = assess(&f);
        assert_eq!(missing(&checks), ["base cgroup"]);
        assert!(find(&checks, "base cgroup").fix.as_deref().is_some_and(|fix| fix.contains("DAEMONIC_CGROUP")));
        assert_eq!(find(&checks, "clone3(CLONE_INTO_CGROUP)").status, Status::Warning);
    }

    #[test]
    fn an_undelegated_cgroup_says_how_to_delegate() {
        let mut f = healthy();
        f.euid = 1000;
        if let Some(b) = f.base.as_mut() {
            b.usable = Err(BaseProblem::NotWritable);
        }
        let checks = assess(&f);
        assert_eq!(missing(&checks), ["base cgroup", "delegation"]);
        let delegation = find(&checks, "delegation");
        assert!(delegation.found.contains("belongs to uid 0, not to uid 1000"), "{delegation:?}");
        assert!(delegation.fix.as_deref().is_some_and(|fix| fix.contains("Delegate=yes")));
    }

    #[test]
    fn a_delegated_cgroup_is_ok() {
        let mut f = healthy();
        f.euid = 1000;
        if let Some(b) = f.base.as_mut() {
            b.owners = Some((1000, 1000));
        }
        let checks = assess(&f);
        assert_eq!(find(&checks, "delegation").status, Status::Ok);
        assert!(find(&checks, "delegation").found.contains("Delegate=yes"));
    }

    #[test]
    fn refused_clone3_with_a_working_fallback_is_a_warning() {
        let mut f = healthy();
        f.probes.clone3 = Probe::Fails("failed to create a process: Function not implemented".into());
        f.probes.fork = Some(worked("moved"));
        let checks = assess(&f);
        assert_eq!(missing(&checks), Vec::<&str>::new());
        assert_eq!(find(&checks, "clone3(CLONE_INTO_CGROUP)").status, Status::Warning);
        assert_eq!(find(&checks, "fallback placement").status, Status::Ok);
        f.probes.fork = Some(Probe::Fails("EPERM".into()));
        assert_eq!(missing(&assess(&f)), ["clone3(CLONE_INTO_CGROUP)"]);
    }

    #[test]
    fn systemd_as_default_needs_its_manager_not_the_base() {
        let mut f = healthy();
        f.user_manager = Ok(Some("252".into()));
        f.settings.bus = Bus::User;
        if let Some(b) = f.base.as_mut() {
            b.usable = Err(BaseProblem::NotWritable);
        }
        let checks = assess(&f);
        assert_eq!(missing(&checks), Vec::<&str>::new());
        assert_eq!(find(&checks, "base cgroup").status, Status::Warning);
        assert!(find(&checks, "default backend").found.contains("auto → systemd"));
        let user = find(&checks, "systemd user manager");
        assert_eq!(user.status, Status::Ok);
        assert!(user.found.contains("(systemd 252)") && user.found.contains("auto takes it"), "{user:?}");

        f.settings.backend = Ok(Backend::Systemd);
        f.user_manager = Err("gone".into());
        assert_eq!(missing(&assess(&f)), ["systemd user manager"]);
    }

    #[test]
    fn no_cgroup2_and_bad_settings_are_missing() {
        let mut f = healthy();
        f.mounts = Mounts::parse(LEGACY);
        f.own = Err("no cgroup2 mount".into());
        f.base = None;
        let checks = assess(&f);
        assert!(find(&checks, "hierarchy").found.starts_with("legacy"));
        assert_eq!(missing(&checks), ["cgroup2 mount", "own cgroup", "base cgroup"]);

        let mut f = healthy();
        f.settings.backend = Err("invalid backend \"docker\"".into());
        assert_eq!(missing(&assess(&f)), ["default backend"]);
    }

    #[test]
    fn failed_kernel_features_are_missing() {
        let mut f = healthy();
        f.probes.kill = Probe::Fails("no cgroup.kill".into());
        f.probes.seccomp = Probe::Fails("EINVAL".into());
        let checks = assess(&f);
        assert_eq!(missing(&checks), ["cgroup.kill", "seccomp"]);
        assert!(find(&checks, "cgroup.kill").fix.as_deref().is_some_and(|fix| fix.contains("5.14")));
        assert!(find(&checks, "seccomp").found.contains("without a filter"));
    }

    #[test]
    fn the_result_line_counts_what_is_missing() {
        let f = healthy();
        let resolved = resolve(&f).expect("valid settings");
        let mut checks = assess(&f);
        assert!(works(&checks));
        assert_eq!(
            result_line(&checks, Some(&resolved)),
            "result: the default backend (auto → cgroupfs, as no systemd manager answers on the system bus) works \
             here; `daemonic run` can start families."
        );
        checks.push(Check::lacking(true, "cgroup.kill", "absent", "a newer kernel"));
        checks.push(Check::lacking(true, "seccomp", "absent", "a newer kernel"));
        assert!(!works(&checks));
        assert!(result_line(&checks, None).ends_with("cannot work here: 2 checks are missing (see their fix: lines)."));
    }

    #[test]
    fn renders_status_topic_and_indented_fix() {
        let checks = [
            Check::ok("cgroup2 mount", "/sys/fs/cgroup"),
            Check::lacking(true, "cgroup.kill", "absent", "a newer kernel"),
        ];
        let mut out = Vec::new();
        render(&checks, &mut out).expect("render");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "ok       cgroup2 mount: /sys/fs/cgroup\nmissing  cgroup.kill: absent\n         fix: a newer kernel\n"
        );
    }
}
