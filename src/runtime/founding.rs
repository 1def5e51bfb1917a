//! Founding a family: its directories (cgroupfs) or units (systemd), its main member and its
//! guardian, with nothing left behind when any step fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backend::dismantle;
use crate::backend::systemd::Client;
use crate::backend::systemd::units::{self, FamilySpec};
use crate::cgroup;
use crate::cgroup::layout;
use crate::error::Result;
use crate::runtime::guardian::{self, NewFamily};
use crate::spawn::{self, Request, Spawned};

/// Creates `<base>/daemonic-<name>-<N>.family/main-1.member`, records the family's default stop
/// timeout and starts its guardian. Nothing is left behind on error.
pub(crate) fn start_family(base: &Path, name: &str, stop_timeout: Option<Duration>) -> Result<NewFamily> {
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
    let main_dir = dir.join(layout::member_dir_name(layout::MAIN_NAME, 1, false));
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
pub(crate) fn start_units_family(
    client: &Client,
    f: &FamilySpec<'_>,
    req: &Request<'_>,
) -> Result<(NewFamily, Spawned)> {
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
pub(crate) fn open_units_family(client: &Client, f: &FamilySpec<'_>, own: &Path) -> Result<(PathBuf, Spawned)> {
    let unit = units::new_family_unit(client, f.parent, f.name)?;
    let spec = units::main_spec(f);
    let holder = spawn::hold()
        .map_err(|e| e.context(format!("cannot keep cgroup {} populated while the process moves", own.display())))?;
    let placed = units::place(client, Path::new(unit.as_str()), &spec, std::process::id(), 1, &mut || {
        cgroup::enter(own).is_ok()
    });
    let placed = match placed {
        Ok(p) => p,
        Err(e) => {
            holder.abort();
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
    holder.abort();
    result
}
