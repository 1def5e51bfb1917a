//! Where a family's cgroups come from.
//!
//! Both backends only decide *where* the cgroups are and who creates them; placement, events,
//! the kill and cleanup work on cgroupfs for both. `Cgroupfs` creates directories itself below a
//! delegated cgroup (the embedded default: no daemon, no D-Bus). `Systemd` will make each member
//! a transient scope over D-Bus; it is not part of this build yet.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ErrorKind, Result};

/// A backend choice, as given on the command line or in `DAEMONIC_BACKEND`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// The best backend available: cgroupfs in this build.
    #[default]
    Auto,
    /// Directories below a delegated cgroup v2.
    Cgroupfs,
    /// Transient systemd scopes (not built yet).
    Systemd,
}

impl Backend {
    /// The backend that will actually be used, or why the requested one cannot be.
    pub fn resolve(self) -> Result<Backend> {
        match self {
            Backend::Auto | Backend::Cgroupfs => Ok(Backend::Cgroupfs),
            Backend::Systemd => Err(Error::new(
                ErrorKind::BackendUnavailable,
                "the systemd backend is not built yet; use --backend cgroupfs (or auto)",
            )),
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

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::Cgroupfs => "cgroupfs",
            Backend::Systemd => "systemd",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves() {
        assert_eq!("auto".parse::<Backend>().expect("auto").resolve().expect("resolves"), Backend::Cgroupfs);
        assert_eq!(
            "systemd".parse::<Backend>().expect("systemd").resolve().expect_err("not built").kind(),
            ErrorKind::BackendUnavailable
        );
        assert!(
            "docker".parse::<Backend>().expect_err("bad").to_string().contains("expected auto, cgroupfs or systemd")
        );
    }
}
