//! The cgroupfs backend's members: directories daemonic creates and labels itself below the
//! owner's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cgroup;
use crate::cgroup::layout::{self, Kind, Position};
use crate::cgroup::properties::{self, Property};
use crate::cgroup::retire::label_member;
use crate::error::Result;
use crate::spawn::{self, Request, Spawned};

/// Creates a member directory below `parent`, unique by a sequence number.
fn create_member_dir(parent: &Path, name: &str, kind: Kind, mut seq: u64) -> Result<PathBuf> {
    loop {
        let dir = parent.join(layout::member_dir_name(name, seq, kind));
        if cgroup::create(&dir)? {
            return Ok(dir);
        }
        seq = layout::next_seq();
    }
}

/// A new member's cgroup directory: created below its owner (in the owner's `.daemons` or
/// `.helpers` directory for a daemon or a helper) and labelled, with nothing in it yet.
pub(crate) struct MemberDir {
    pub dir: PathBuf,
    container: PathBuf,
    /// Whether creating this member also created the owner's `.daemons` or `.helpers` directory.
    new_container: bool,
}

impl MemberDir {
    /// Creates the directory of a member named `name` whose parent is `owner`; on error nothing
    /// of it remains.
    pub(crate) fn create(
        owner: &Position,
        name: &str,
        kind: Kind,
        seq: u64,
        stop_timeout: Option<Duration>,
        allow_children: bool,
    ) -> Result<MemberDir> {
        let container = layout::container_of(&owner.member_dir, kind);
        let new_container = kind != Kind::Member && cgroup::create(&container)?;
        let dir = create_member_dir(&container, name, kind, seq).inspect_err(|_| {
            if new_container {
                let _ = cgroup::remove(&container);
            }
        })?;
        let made = MemberDir { dir, container, new_container };
        if let Err(e) = label_member(&made.dir, &made.container, kind, stop_timeout, allow_children) {
            made.discard();
            return Err(e);
        }
        Ok(made)
    }

    /// Removes what [`MemberDir::create`] made, for a member that could not be started.
    pub(crate) fn discard(&self) {
        let _ = cgroup::remove(&self.dir);
        if self.new_container {
            let _ = cgroup::remove(&self.container);
        }
    }
}

/// Starts `req` in the member directory `dir` of the family in `family_dir`, after its resource
/// properties, and labels `dir` with the PID (the guardian treats a member directory as "has
/// run" once it carries one). On error the caller removes what it made.
pub(crate) fn start_in(family_dir: &Path, dir: &Path, limits: &[Property], req: &Request<'_>) -> Result<Spawned> {
    properties::apply_in_dirs(family_dir, dir, limits)?;
    let spawned = spawn::spawn(&Request { cgroup: Some(dir), ..*req })?;
    let _ = cgroup::set_attr(dir, layout::ATTR_PID, &spawned.pid.to_string());
    Ok(spawned)
}

/// Moves process `pid` into the member directory `dir` of the family in `family_dir`, after its
/// resource properties, and labels `dir` with its PID. On error the caller removes what it made.
pub(crate) fn move_into(family_dir: &Path, dir: &Path, limits: &[Property], pid: u32) -> Result<()> {
    properties::apply_in_dirs(family_dir, dir, limits)?;
    cgroup::write(dir, "cgroup.procs", &pid.to_string())
        .map_err(|e| e.context(format!("failed to move process {pid} into {}", dir.display())))?;
    cgroup::set_attr(dir, layout::ATTR_PID, &pid.to_string())
}

/// Moves the calling process into the member directory `dir` of the family in `family_dir`,
/// after its resource properties, and labels `dir` with its PID. On error the caller moves it
/// back and removes what it made.
pub(crate) fn enter(family_dir: &Path, dir: &Path, limits: &[Property]) -> Result<()> {
    properties::apply_in_dirs(family_dir, dir, limits)?;
    cgroup::enter(dir)?;
    cgroup::set_attr(dir, layout::ATTR_PID, &std::process::id().to_string())
}
