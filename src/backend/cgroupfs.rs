//! The cgroupfs backend's members: directories daemonic creates and labels itself below the
//! owner's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cgroup;
use crate::cgroup::layout::{self, Position};
use crate::cgroup::properties::{self, Property};
use crate::cgroup::retire::label_daemon;
use crate::error::Result;
use crate::spawn::{self, Request, Spawned};

/// Creates a member directory below `parent`, unique by a sequence number.
fn create_member_dir(parent: &Path, name: &str, daemon: bool, mut seq: u64) -> Result<PathBuf> {
    loop {
        let dir = parent.join(layout::member_dir_name(name, seq, daemon));
        if cgroup::create(&dir)? {
            return Ok(dir);
        }
        seq = layout::next_seq();
    }
}

/// A new member's cgroup directory: created below its owner (in the owner's `.daemons`
/// directory for a daemon) and labelled, with nothing in it yet.
pub(crate) struct MemberDir {
    pub dir: PathBuf,
    container: PathBuf,
    /// Whether creating this member also created the owner's `.daemons` directory.
    new_container: bool,
}

impl MemberDir {
    /// Creates the directory of a member named `name` whose parent is `owner`; on error nothing
    /// of it remains.
    pub(crate) fn create(
        owner: &Position,
        name: &str,
        daemon: bool,
        seq: u64,
        stop_timeout: Option<Duration>,
        allow_children: bool,
    ) -> Result<MemberDir> {
        let container = layout::daemons_dir(&owner.member_dir);
        let new_container = daemon && cgroup::create(&container)?;
        let parent = if daemon { container.as_path() } else { owner.member_dir.as_path() };
        let dir = create_member_dir(parent, name, daemon, seq).inspect_err(|_| {
            if new_container {
                let _ = cgroup::remove(&container);
            }
        })?;
        let made = MemberDir { dir, container, new_container };
        if daemon && let Err(e) = label_daemon(&made.dir, &made.container, stop_timeout, allow_children) {
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

/// Moves the calling process into the member directory `dir` of the family in `family_dir`,
/// after its resource properties, and labels `dir` with its PID. On error the caller moves it
/// back and removes what it made.
pub(crate) fn enter(family_dir: &Path, dir: &Path, limits: &[Property]) -> Result<()> {
    properties::apply_in_dirs(family_dir, dir, limits)?;
    cgroup::enter(dir)?;
    cgroup::set_attr(dir, layout::ATTR_PID, &std::process::id().to_string())
}
