//! Assessing [`Facts`]: a pure function from what was found to [`Check`]s.

use std::path::Path;

use crate::backend::Backend;
use crate::backend::systemd::Bus;
use crate::cgroup::Hierarchy;

use crate::cli::doctor::*;

/// The backend `daemonic run` would take without `--backend` (as `supervise::choose_backend`
/// and `Backend::resolve` decide it), or why it cannot tell.
pub(crate) fn resolve(f: &Facts) -> Result<Resolved, String> {
    let bus = f.settings.bus;
    let answers = manager(f, bus).is_ok();
    let backend = f.settings.backend.clone()?;
    Ok(match backend {
        Backend::Cgroupfs => Resolved { bus: None, why: "cgroupfs, as DAEMONIC_BACKEND asks".into() },
        Backend::Systemd => {
            Resolved { bus: Some(bus), why: format!("systemd on the {bus} manager, as DAEMONIC_BACKEND asks") }
        }
        Backend::Auto if f.settings.explicit_base => {
            Resolved { bus: None, why: "auto → cgroupfs, as DAEMONIC_CGROUP gives a base cgroup".into() }
        }
        Backend::Auto if f.settings.delegated_unit.is_some() => Resolved {
            bus: None,
            why: format!(
                "auto → cgroupfs, as this process runs in {}, a unit delegated to it (Delegate=yes)",
                f.settings.delegated_unit.as_deref().unwrap_or_default()
            ),
        },
        Backend::Auto if answers => {
            Resolved { bus: Some(bus), why: format!("auto → systemd, as the {bus} manager answers") }
        }
        Backend::Auto => {
            Resolved { bus: None, why: format!("auto → cgroupfs, as no systemd manager answers on the {bus} bus") }
        }
    })
}

fn manager(f: &Facts, bus: Bus) -> &Result<Option<String>, String> {
    match bus {
        Bus::User => &f.user_manager,
        Bus::System => &f.system_manager,
    }
}

/// The checks, in report order.
pub(crate) fn assess(f: &Facts) -> Vec<Check> {
    let resolved = resolve(f);
    // With no valid DAEMONIC_BACKEND, judge the requirements of cgroupfs.
    let systemd = resolved.as_ref().ok().and_then(|r| r.bus);
    let cgroupfs = systemd.is_none();
    let mut checks = vec![mount_check(f), mode_check(f), controllers_check(f), own_check(f)];
    checks.extend(base_checks(f, cgroupfs));
    checks.extend(placement_checks(&f.probes, cgroupfs));
    checks.push(probe_check(
        "pidfd",
        &f.probes.pidfd,
        true,
        "a kernel ≥ 5.3 (5.4 for waitid(P_PIDFD)); in a container, allow pidfd_open and pidfd_send_signal in its \
         seccomp profile",
    ));
    checks.push(probe_check("cgroup.kill", &f.probes.kill, true, "a kernel ≥ 5.14, which has cgroup.kill"));
    checks.push(probe_check(
        "cgroup.events",
        &f.probes.events,
        true,
        "a kernel with cgroup v2 (≥ 4.5 has cgroup.events; daemonic needs ≥ 5.14 anyway)",
    ));
    checks.push(probe_check(
        "user.* xattrs on cgroups",
        &f.probes.xattrs,
        true,
        "a kernel ≥ 5.7, which allows user.* extended attributes on cgroupfs",
    ));
    checks.push(seccomp_check(f));
    checks.push(Check::info(
        "kernel",
        match &f.kernel {
            Some(k) => format!("Linux {k} (the features above are probed, not inferred from the version)"),
            None => "unknown (/proc/sys/kernel/osrelease is unreadable)".into(),
        },
    ));
    checks.push(manager_check(f, Bus::User, systemd == Some(Bus::User)));
    checks.push(manager_check(f, Bus::System, systemd == Some(Bus::System)));
    checks.push(default_backend_check(f, &resolved));
    checks.push(Check::info(
        "journald",
        if f.journal_socket {
            format!("{JOURNAL_SOCKET} exists: daemonic's log events go to the journal too (journalctl shows them)")
        } else {
            format!("{JOURNAL_SOCKET} does not exist: daemonic logs to stderr only")
        },
    ));
    checks.push(Check::info(
        "NOTIFY_SOCKET",
        match &f.notify_socket {
            Some(s) => format!("set to {s}: `daemonic run` will send READY=1 and STATUS= lines there"),
            None => "not set: not started as a Type=notify service (nothing to notify)".into(),
        },
    ));
    checks
}

fn mount_check(f: &Facts) -> Check {
    match &f.mounts.cgroup2 {
        Some(m) => Check::ok("cgroup2 mount", format!("{} (found in /proc/self/mountinfo)", m.display())),
        None => Check::lacking(
            true,
            "cgroup2 mount",
            "no cgroup2 filesystem in /proc/self/mountinfo",
            "boot with systemd.unified_cgroup_hierarchy=1, or mount it: mkdir -p /sys/fs/cgroup/unified && \
             mount -t cgroup2 none /sys/fs/cgroup/unified",
        ),
    }
}

fn mode_check(f: &Facts) -> Check {
    let v1 = || {
        let names: Vec<String> = f
            .mounts
            .v1
            .iter()
            .map(|p| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned()))
            .collect();
        names.join(", ")
    };
    let mount = f.mounts.cgroup2.as_deref().map(|m| m.display().to_string()).unwrap_or_default();
    Check::info(
        "hierarchy",
        match f.mounts.mode() {
            Mode::Unified => format!("unified: cgroup2 alone, at {mount}"),
            Mode::Hybrid => format!("hybrid: cgroup2 at {mount}, beside cgroup v1 hierarchies ({})", v1()),
            Mode::Legacy => format!("legacy: cgroup v1 only ({}), no cgroup2", v1()),
            Mode::Absent => "no cgroup filesystem mounted".into(),
        },
    )
}

fn controllers_check(f: &Facts) -> Check {
    let words = |s: &Option<String>| match s.as_deref() {
        Some("") => "none".to_string(),
        Some(s) => s.to_string(),
        None => "unknown".to_string(),
    };
    let found = match f.mounts.cgroup2 {
        Some(_) => format!(
            "available in the v2 hierarchy: {}; enabled below its root (cgroup.subtree_control): {} (daemonic \
             needs none)",
            words(&f.controllers.available),
            words(&f.controllers.enabled)
        ),
        None => "none: no cgroup2 mount".to_string(),
    };
    Check::info("controllers", found)
}

fn own_check(f: &Facts) -> Check {
    match &f.own {
        Ok(dir) => {
            let member = f.membership.as_ref().map(|m| format!("; this process is {m}")).unwrap_or_default();
            let rel = f.mounts.cgroup2.as_deref().map(|m| Hierarchy::at(m).relative(dir)).unwrap_or_default();
            let rel = match rel.as_deref() {
                Some("/") => "/ (the root of the hierarchy) in /proc/self/cgroup, ".to_string(),
                Some(rel) => format!("{rel} in /proc/self/cgroup, "),
                None => String::new(),
            };
            Check::info("own cgroup", format!("{rel}the directory {}{member}", dir.display()))
        }
        Err(e) => Check::lacking(
            true,
            "own cgroup",
            format!("unknown: {e}"),
            "mount cgroup2 (see above); /proc/self/cgroup must have a 0:: line",
        ),
    }
}

/// The base cgroup and whether it is delegated.
fn base_checks(f: &Facts, required: bool) -> Vec<Check> {
    let Some(b) = &f.base else {
        return vec![Check::lacking(
            required,
            "base cgroup",
            "none: no cgroup2 mount or no own cgroup",
            "mount cgroup2 (see cgroup2 mount)",
        )];
    };
    let whence = if b.given { "from DAEMONIC_CGROUP" } else { "this process's own cgroup" };
    let path = b.path.display();
    let base = match b.usable {
        Ok(()) => Check::ok(
            "base cgroup",
            format!("{path} ({whence}) is writable: families go to {path}/daemonic-NAME-N.family"),
        ),
        Err(BaseProblem::NotCgroup) => Check::lacking(
            required,
            "base cgroup",
            format!(
                "{path} ({whence}) is not a cgroup v2 directory (cgroup paths are read below the cgroup2 mount {})",
                f.mounts.cgroup2.as_deref().unwrap_or(Path::new("?")).display()
            ),
            if b.given {
                "point DAEMONIC_CGROUP at an existing cgroup directory below the cgroup2 mount (or a path relative to \
                 it), or unset it"
            } else {
                "mount cgroup2 (see above)"
            },
        ),
        Err(BaseProblem::NotWritable) => Check::lacking(
            required,
            "base cgroup",
            format!("{path} ({whence}) is not writable for uid {}: no cgroup can be created there", f.euid),
            if f.euid == 0 {
                "make the cgroup filesystem writable (a container?) or give DAEMONIC_CGROUP"
            } else {
                DELEGATE_FIX
            },
        ),
    };
    let mut checks = vec![base];
    if b.usable != Err(BaseProblem::NotCgroup) {
        checks.push(delegation_check(f, b, required));
    }
    checks
}

fn delegation_check(f: &Facts, b: &Base, required: bool) -> Check {
    let writable = b.usable.is_ok();
    let path = b.path.display();
    match (f.euid, b.owners, writable) {
        (0, _, true) => Check::ok("delegation", "not needed: root may write any cgroup"),
        (0, _, false) => Check::lacking(
            required,
            "delegation",
            format!("even root cannot write {path}: the cgroup filesystem is read-only here"),
            "mount cgroup2 read-write in this container (e.g. a private cgroup namespace), or give a writable \
             DAEMONIC_CGROUP",
        ),
        (uid, Some((dir, procs)), _) if dir == uid && procs == uid => Check::ok(
            "delegation",
            format!("{path} and its cgroup.procs belong to uid {uid}, as systemd's Delegate=yes makes them"),
        ),
        (uid, _, true) => Check::ok("delegation", format!("{path} is writable for uid {uid}, though not owned by it")),
        (uid, owners, false) => Check::lacking(
            required,
            "delegation",
            match owners {
                Some((dir, _)) => format!("{path} belongs to uid {dir}, not to uid {uid}: not delegated"),
                None => format!("{path} is not delegated to uid {uid}"),
            },
            DELEGATE_FIX,
        ),
    }
}

/// clone3 into a cgroup, and the fallback when clone3 is refused.
fn placement_checks(p: &Probes, required: bool) -> Vec<Check> {
    const TOPIC: &str = "clone3(CLONE_INTO_CGROUP)";
    const FIX: &str = "a kernel ≥ 5.7; in a container, allow clone3 in its seccomp profile";
    let fallback = || match &p.fork {
        Some(Probe::Works(how)) => Some(how.clone()),
        _ => None,
    };
    match (&p.clone3, fallback()) {
        (Probe::Works(how), _) => vec![Check::ok(TOPIC, how.clone())],
        (Probe::NotRun(why), _) => vec![Check::lacking(false, TOPIC, format!("not checked: {why}"), NOT_RUN_FIX)],
        (Probe::Fails(why), Some(how)) => vec![
            Check::lacking(false, TOPIC, format!("refused: {why}"), FIX),
            Check::ok("fallback placement", format!("{how}; daemonic uses it where clone3 is refused")),
        ],
        (Probe::Fails(why), None) => {
            let fork = match &p.fork {
                Some(Probe::Fails(e) | Probe::NotRun(e)) => e.clone(),
                _ => "not tried".into(),
            };
            vec![Check::lacking(
                required,
                TOPIC,
                format!("refused: {why}; the fallback (clone + cgroup.procs) failed too: {fork}"),
                FIX,
            )]
        }
    }
}

/// A check from a probe: `ok`, `missing`/`warning` when it failed, `warning` when not run.
fn probe_check(topic: &'static str, probe: &Probe, required: bool, fix: &str) -> Check {
    match probe {
        Probe::Works(how) => Check::ok(topic, how.clone()),
        Probe::Fails(why) => Check::lacking(required, topic, why.clone(), fix),
        Probe::NotRun(why) => Check::lacking(false, topic, format!("not checked: {why}"), NOT_RUN_FIX),
    }
}

fn seccomp_check(f: &Facts) -> Check {
    let mut check = probe_check(
        "seccomp",
        &f.probes.seccomp,
        true,
        "a kernel with CONFIG_SECCOMP_FILTER; in a container, allow seccomp() in its profile",
    );
    let mode = match f.seccomp_mode {
        Some(0) => " (this process itself runs without a filter)",
        Some(1) => " (this process itself runs in strict seccomp mode)",
        Some(_) => " (this process itself runs under a seccomp filter already, e.g. a container's)",
        None => "",
    };
    check.found.push_str(mode);
    check
}

pub(super) fn manager_check(f: &Facts, bus: Bus, required: bool) -> Check {
    let (topic, flag, bus_name) = match bus {
        Bus::User => ("systemd user manager", "--user", "session bus"),
        Bus::System => ("systemd system manager", "--system", "system bus"),
    };
    let auto_asks = f.settings.bus == bus && !f.settings.explicit_base && f.settings.delegated_unit.is_none();
    let auto = if auto_asks { ", and auto takes it" } else { "" };
    match manager(f, bus) {
        Ok(version) => {
            let version = version.as_ref().map(|v| format!(" (systemd {v})")).unwrap_or_default();
            Check::ok(topic, format!("answers on the {bus_name}{version}: --backend systemd {flag} works{auto}"))
        }
        Err(e) => Check::lacking(
            required,
            topic,
            format!("no answer, so --backend systemd {flag} cannot work: {e}"),
            match bus {
                Bus::User => {
                    "run a user session (`loginctl enable-linger USER` for one without a login) with \
                     DBUS_SESSION_BUS_ADDRESS set; or use the cgroupfs backend"
                }
                Bus::System => {
                    "boot with systemd as PID 1 (its bus at /run/dbus/system_bus_socket); or use the cgroupfs backend"
                }
            },
        ),
    }
}

fn default_backend_check(f: &Facts, resolved: &Result<Resolved, String>) -> Check {
    match resolved {
        Ok(r) => {
            let caller = if f.euid == 0 { "root" } else { "a non-root caller" };
            let asks_systemd = match f.settings.backend {
                Ok(Backend::Auto) => !f.settings.explicit_base && f.settings.delegated_unit.is_none(),
                Ok(Backend::Systemd) => true,
                _ => false,
            };
            let bus = if !asks_systemd {
                return Check::info("default backend", format!("`daemonic run` takes {}", r.why));
            } else if f.settings.bus_from_env {
                format!("the {} bus is chosen by DAEMONIC_BUS", f.settings.bus)
            } else {
                format!(
                    "the {} bus is the one {caller} uses; --user, --system or DAEMONIC_BUS change it",
                    f.settings.bus
                )
            };
            Check::info("default backend", format!("`daemonic run` takes {} ({bus})", r.why))
        }
        Err(e) => Check::lacking(
            true,
            "default backend",
            e.clone(),
            "set DAEMONIC_BACKEND to auto, cgroupfs or systemd, or unset it",
        ),
    }
}
