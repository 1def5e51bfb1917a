//! Founding a family: its directories (cgroupfs) or units (systemd), its main member and its
//! guardian, with nothing left behind when any step fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::systemd::units::{self, FamilySpec};
use crate::backend::systemd::{Bus, Client};
use crate::backend::{cgroupfs, dismantle};
use crate::cgroup;
use crate::cgroup::layout;
use crate::cgroup::properties::Property;
use crate::error::Result;
use crate::runtime::guardian::{self, NewFamily};
use crate::spawn::{self, Request, Spawned};

/// Where a new family goes, on which backend: the one place that branches on it to found a
/// family (`daemonic run` and [`crate::FamilyBuilder::open`] alike).
pub(crate) enum Founder {
    /// Directories below `base`.
    Dirs { base: PathBuf },
    /// Units of the manager on `bus`; a nested family's slice goes below `parent`, the slice
    /// of the member that starts it.
    Units { client: Arc<Client>, bus: Bus, parent: Option<PathBuf> },
}

/// What a new family is called and how it ends.
pub(crate) struct FamilyOptions<'a> {
    pub name: &'a str,
    pub stop_timeout: Option<Duration>,
    /// Resource properties of the main member.
    pub properties: &'a [Property],
}

impl Founder {
    /// A founder on the manager of `bus` (`Some`), else below the base `base` returns.
    pub(crate) fn new(
        bus: Option<Bus>,
        parent: Option<&Path>,
        base: impl FnOnce() -> Result<PathBuf>,
    ) -> Result<Founder> {
        Ok(match bus {
            Some(bus) => Founder::Units { client: units::client(bus)?, bus, parent: parent.map(Path::to_path_buf) },
            None => Founder::Dirs { base: base()? },
        })
    }

    /// The backend's name, for the log.
    pub(crate) fn backend_name(&self) -> &'static str {
        match self {
            Founder::Dirs { .. } => "cgroupfs",
            Founder::Units { .. } => "systemd",
        }
    }

    fn unit_spec<'a>(&'a self, bus: Bus, parent: Option<&'a Path>, o: &FamilyOptions<'a>) -> FamilySpec<'a> {
        FamilySpec { bus, name: o.name, stop_timeout: o.stop_timeout, parent, properties: o.properties }
    }

    /// `daemonic run`: a new family whose main member is started from `req`. Nothing is left
    /// on error.
    pub(crate) fn start(&self, o: &FamilyOptions<'_>, req: &Request<'_>) -> Result<(NewFamily, Spawned)> {
        match self {
            Founder::Units { client, bus, parent } => {
                start_units_family(client, &self.unit_spec(*bus, parent.as_deref(), o), req)
            }
            Founder::Dirs { base } => {
                let family = start_family(base, o.name, o.stop_timeout)?;
                match cgroupfs::start_in(&family.dir, &family.main_dir, o.properties, req) {
                    Ok(main) => Ok((family, main)),
                    Err(e) => {
                        abandon(family);
                        Err(e)
                    }
                }
            }
        }
    }

    /// [`crate::FamilyBuilder::open`]: the calling process, now in `own`, becomes the main
    /// member of a new family. Returns the main member's directory and the guardian; on error
    /// the process is back in `own` and nothing of the family remains.
    pub(crate) fn open(&self, o: &FamilyOptions<'_>, own: &Path) -> Result<(PathBuf, Spawned)> {
        match self {
            Founder::Units { client, bus, parent } => {
                open_units_family(client, &self.unit_spec(*bus, parent.as_deref(), o), own)
            }
            Founder::Dirs { base } => {
                let new = start_family(base, o.name, o.stop_timeout)?;
                match cgroupfs::enter(&new.dir, &new.main_dir, o.properties) {
                    Ok(()) => Ok((new.main_dir.clone(), new.guardian)),
                    Err(e) => {
                        let _ = cgroup::enter(own);
                        abandon(new);
                        Err(e)
                    }
                }
            }
        }
    }
}

/// Creates `<base>/daemonic-<name>-<N>.family/main-1.member`, records the family's default stop
/// timeout and starts its guardian. Nothing is left behind on error.
fn start_family(base: &Path, name: &str, stop_timeout: Option<Duration>) -> Result<NewFamily> {
    layout::validate_name("family", name)?;
    let mut n = u64::from(std::process::id());
    let (id, dir) = loop {
        let id = format!("{name}-{n}");
        let dir = base.join(layout::family_dir_name(&id));
        if cgroup::create(&dir)? {
            break (id, dir);
        }
        n += 1_000_000;
    };
    let main_dir = dir.join(layout::member_dir_name(layout::MAIN_NAME, 1, layout::Kind::Member));
    let made = cgroup::create(&main_dir).and_then(|_| match stop_timeout {
        Some(t) => cgroup::set_attr(&dir, layout::ATTR_STOP_TIMEOUT, &t.as_millis().to_string()),
        None => Ok(()),
    });
    // The guardian is this binary started again: the hook that runs it must be linked.
    crate::runtime::startup::anchor();
    let guardian = made.and_then(|()| guardian::start(&dir, &main_dir, None, None));
    let guardian = match guardian {
        Ok(g) => g,
        Err(e) => {
            let _ = cgroup::remove_tree(&dir);
            return Err(e);
        }
    };
    let _ = cgroup::set_attr(&dir, layout::ATTR_GUARDIAN, &guardian.pid.to_string());
    Ok(NewFamily { id, dir, main_dir, guardian })
}

/// Undoes [`start_family`] when the main member could not be placed: stops the guardian and
/// removes the (empty) directories.
pub(crate) fn abandon(new: NewFamily) {
    new.end_guardian();
    let _ = dismantle(&new.dir);
}

/// `daemonic run` on systemd: the family's main member is started from `req`, held until its
/// scope, the family's slices and the guardian exist. Nothing is left on error.
fn start_units_family(client: &Client, f: &FamilySpec<'_>, req: &Request<'_>) -> Result<(NewFamily, Spawned)> {
    let unit = units::new_family_unit(client, f.parent, f.name)?;
    let family_rel = PathBuf::from(unit.as_str());
    let spec = units::main_spec(f);
    let started = spawn::start(req, true)?;
    let pid = started.pid as u32;
    let mut held = Some(started);
    let mut abort = || {
        if let Some(s) = held.take() {
            s.abort();
        }
    };
    let placed = units::place(client, &family_rel, &spec, pid, 1, &mut || {
        abort();
        true
    })?;
    let family_dir = placed.dir.parent().map(Path::to_path_buf).unwrap_or_default();
    // The guardian is this binary started again: the hook that runs it must be linked.
    crate::runtime::startup::anchor();
    let guardian =
        units::label_family(&family_dir, f).and_then(|()| guardian::start(&family_dir, &placed.dir, Some(f.bus), None));
    let guardian = match guardian {
        Ok(g) => g,
        Err(e) => {
            abort();
            placed.undo(client);
            return Err(e);
        }
    };
    let _ = cgroup::set_attr(&family_dir, layout::ATTR_GUARDIAN, &guardian.pid.to_string());
    let new = NewFamily {
        id: format!("{}-{}", f.name, units::id_number(&unit)),
        dir: family_dir,
        main_dir: placed.dir.clone(),
        guardian,
    };
    match held.take().expect("held until the family exists").release() {
        Ok(main) => Ok((new, main)),
        Err(e) => {
            new.end_guardian();
            placed.undo(client);
            Err(e)
        }
    }
}

/// [`crate::FamilyBuilder::open`] on systemd: the calling process becomes the main member of a new
/// family; its guardian is started in `own`, the process's cgroup before. Nothing is left on
/// error, and the process is back in `own`.
///
/// `own` may be a scope of which the process is the only member (`systemd-run --scope`):
/// systemd collects a scope once its cgroup is empty, and the guardian could not start in it,
/// nor could the process go back. A held process keeps `own` populated from before the move
/// until the guardian is in it.
fn open_units_family(client: &Client, f: &FamilySpec<'_>, own: &Path) -> Result<(PathBuf, Spawned)> {
    let unit = units::new_family_unit(client, f.parent, f.name)?;
    let spec = units::main_spec(f);
    // Only a process that is alone in `own` empties it by moving. A holder that cannot be
    // started (EAGAIN under pids.max) is done without: the move may then still succeed, as it
    // did before holders existed, or fail with the guardian's error.
    let me = std::process::id() as i32;
    let alone = cgroup::procs(own).map(|pids| pids.iter().all(|&p| p == me)).unwrap_or(true);
    let holder = if alone {
        spawn::hold()
            .inspect_err(|e| crate::log::info(format!("no process keeps {} populated: {e}", own.display())))
            .ok()
    } else {
        None
    };
    let end_holder = |holder: Option<spawn::Started>| {
        if let Some(h) = holder {
            h.abort();
        }
    };
    let placed = units::place(client, Path::new(unit.as_str()), &spec, std::process::id(), 1, &mut || {
        cgroup::enter(own).is_ok()
    });
    let placed = match placed {
        Ok(p) => p,
        Err(e) => {
            end_holder(holder);
            return Err(e);
        }
    };
    let family_dir = placed.dir.parent().map(Path::to_path_buf).unwrap_or_default();
    // The guardian is this binary started again: the hook that runs it must be linked.
    crate::runtime::startup::anchor();
    let guardian = units::label_family(&family_dir, f)
        .and_then(|()| guardian::start(&family_dir, &placed.dir, Some(f.bus), Some(own)));
    let result = match guardian {
        Ok(g) => {
            let _ = cgroup::set_attr(&family_dir, layout::ATTR_GUARDIAN, &g.pid.to_string());
            Ok((placed.dir, g))
        }
        Err(e) => match cgroup::enter(own) {
            Ok(()) => {
                placed.undo(client);
                Err(e)
            }
            // Stopping the family would end this process: it stays, and says so.
            Err(back) => Err(e.context(format!(
                "the process could not go back to {} ({back}), so family unit {} is left running with it",
                own.display(),
                placed.unit
            ))),
        },
    };
    end_holder(holder);
    result
}
