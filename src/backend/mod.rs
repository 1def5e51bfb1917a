//! **Layer `backend`**, above `spawn`: where a family's cgroups come from, cgroupfs directories
//! or systemd units ([`systemd`]: the D-Bus client, and `systemd::units`, a member placed in its
//! transient scope), and what undoes them (`dismantle`).
//!
//! Where a family's cgroups come from.
//!
//! Both backends only decide *where* the cgroups are and who creates them; placement, events,
//! the kill and cleanup work on cgroupfs for both. `Cgroupfs` creates directories itself below a
//! delegated cgroup (the embedded default: no daemon, no D-Bus). `Systemd` makes each member a
//! transient scope, in a slice of its own unless it is a daemon that may not have children, over
//! D-Bus (`units.rs`). `Auto` takes cgroupfs inside a service delegated to the caller, else
//! systemd when a manager answers on the caller's bus, cgroupfs otherwise, and says why.

pub(crate) mod cgroupfs;
pub(crate) mod members;
pub mod systemd;

use std::fmt;
use std::str::FromStr;

use crate::backend::systemd::Bus;
use crate::error::{Error, ErrorKind, Result};

/// A backend choice, as given on the command line or in `DAEMONIC_BACKEND`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// systemd when a manager answers, else cgroupfs.
    #[default]
    Auto,
    /// Directories below a delegated cgroup v2.
    Cgroupfs,
    /// Transient systemd scopes.
    Systemd,
}

/// The backend a family will use, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// `None` for cgroupfs; the manager's bus for systemd.
    pub bus: Option<Bus>,
    /// One line for the log: what was picked and why.
    pub reason: String,
}

impl Backend {
    /// The backend from `DAEMONIC_BACKEND`, `Auto` when unset.
    pub fn from_env() -> Result<Backend> {
        match std::env::var("DAEMONIC_BACKEND") {
            Ok(v) if !v.is_empty() => v.parse(),
            _ => Ok(Backend::Auto),
        }
    }

    /// Decides the backend. `bus` overrides the default manager (the user manager for non-root
    /// callers, the system manager for root). `Systemd` fails when that manager does not answer;
    /// `Auto` then falls back to cgroupfs. Inside a unit delegated to the caller (a service with
    /// `Delegate=yes`) whose cgroup it may write, `Auto` takes cgroupfs, so that the family stays
    /// in the service and its limits, `systemctl status` and `systemctl stop` cover it.
    pub fn resolve(self, bus: Option<Bus>) -> Result<Choice> {
        let bus = bus.unwrap_or_else(Bus::default_for_caller);
        match self {
            Backend::Cgroupfs => Ok(Choice { bus: None, reason: "backend cgroupfs: as requested".into() }),
            Backend::Systemd => {
                crate::backend::systemd::client(bus)?;
                Ok(Choice { bus: Some(bus), reason: format!("backend systemd: as requested, on the {bus} manager") })
            }
            Backend::Auto => match own_delegated_unit() {
                Some(unit) => Ok(delegated(&unit)),
                None => Backend::auto_by_manager(bus),
            },
        }
    }

    /// `Auto` outside a unit marked delegated in the tree: systemd when the manager on `bus`
    /// answers, unless that manager says the caller's unit is delegated to it (a user manager
    /// marks no cgroup).
    fn auto_by_manager(bus: Bus) -> Result<Choice> {
        match crate::backend::systemd::client(bus) {
            Ok(client) => match client.caller_delegated_unit() {
                Some(unit) if writable_own_cgroup().is_some() => Ok(delegated(&unit)),
                _ => Ok(Choice { bus: Some(bus), reason: format!("backend auto: systemd, the {bus} manager answers") }),
            },
            Err(e) => Ok(Choice { bus: None, reason: format!("backend auto: cgroupfs, as {e}") }),
        }
    }
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Backend> {
        match s {
            "auto" => Ok(Backend::Auto),
            "cgroupfs" => Ok(Backend::Cgroupfs),
            "systemd" => Ok(Backend::Systemd),
            other => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("invalid backend {other:?}: expected auto, cgroupfs or systemd"),
            )),
        }
    }
}

/// `Auto`'s choice inside `unit`, a unit delegated to the caller.
fn delegated(unit: &str) -> Choice {
    let reason = format!(
        "backend auto: cgroupfs, as this process runs in {unit}, delegated to it (Delegate=yes): the family stays inside it"
    );
    Choice { bus: None, reason }
}

/// The name of the unit the calling process runs in, when the tree marks it delegated
/// (`user.delegate`, `trusted.delegate`) and the caller may write its own cgroup.
fn own_delegated_unit() -> Option<String> {
    let (mount, own) = writable_own_cgroup()?;
    let unit = crate::cgroup::delegated_unit(&mount, &own)?;
    Some(unit.file_name()?.to_string_lossy().into_owned())
}

/// The unit delegated to the caller that it runs in, as `Auto` finds it: marked in the tree,
/// or said so by the manager on `bus` (connected to here).
pub(crate) fn caller_delegated_unit(bus: Bus) -> Option<String> {
    own_delegated_unit().or_else(|| {
        let unit = crate::backend::systemd::client(bus).ok()?.caller_delegated_unit()?;
        writable_own_cgroup().map(|_| unit)
    })
}

/// The cgroup2 mount and the caller's own cgroup, when the caller may create cgroups in it.
fn writable_own_cgroup() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let h = crate::cgroup::Hierarchy::host().ok()?;
    let own = h.cgroup_of(0).ok()?;
    rustix::fs::access(&own, rustix::fs::Access::WRITE_OK).ok()?;
    Some((h.mount().to_path_buf(), own))
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::Cgroupfs => "cgroupfs",
            Backend::Systemd => "systemd",
        })
    }
}

/// Removes a family's whole tree once it has no process left: directories (cgroupfs), or its
/// slice stopped over D-Bus (systemd). A tree that is gone already (its guardian removed it) is
/// done: in particular its manager is not asked, for the bus is read from the family's slice,
/// and the caller's own default may be a manager that does not even run.
pub(crate) fn dismantle(dir: &std::path::Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    match crate::cgroup::layout::Style::of_dir(dir) {
        crate::cgroup::layout::Style::Dirs => crate::cgroup::remove_tree(dir).map_err(|e| Error::io("remove", dir, e)),
        crate::cgroup::layout::Style::Units => {
            crate::backend::systemd::units::stop_dir(dir, crate::backend::systemd::units::family_bus(dir))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!("auto".parse::<Backend>().expect("auto"), Backend::Auto);
        assert_eq!("systemd".parse::<Backend>().expect("systemd"), Backend::Systemd);
        assert!(
            "docker".parse::<Backend>().expect_err("bad").to_string().contains("expected auto, cgroupfs or systemd")
        );
        let c = Backend::Cgroupfs.resolve(None).expect("cgroupfs needs nothing");
        assert_eq!(c.bus, None);
    }
}
