//! The seam between the runtime and the backends for a family's members: a new member gets
//! its cgroup directory (cgroupfs) or its transient scope (systemd) here, whichever the
//! family's own directories say it uses. Nothing above this module branches on the backend to
//! start a member.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::cgroupfs::{self, MemberDir};
use crate::backend::systemd::Client;
use crate::backend::systemd::units::{self, Placed};
use crate::cgroup::layout::{self, Kind, Position, Style};
use crate::cgroup::properties::Property;
use crate::cgroup::{self, bell};
use crate::error::{Error, Result};
use crate::spawn::{Request, Spawned};

/// What a new member is, on either backend.
pub(crate) struct NewMember<'a> {
    /// The member that starts it (its parent in the family).
    pub owner: &'a Position,
    pub name: &'a str,
    pub kind: Kind,
    pub stop_timeout: Option<Duration>,
    pub allow_children: bool,
    /// Checked resource properties for the member's own cgroup.
    pub properties: &'a [Property],
    /// A sequence number that makes its name unique (the next free one is taken when in use).
    pub seq: u64,
}

impl NewMember<'_> {
    fn unit_spec(&self) -> units::Spec<'_> {
        units::Spec {
            family_name: &self.owner.family_name,
            name: self.name,
            kind: self.kind,
            stop_timeout: self.stop_timeout,
            allow_children: self.allow_children,
            properties: self.properties,
        }
    }

    /// The directory (or slice) the member goes below: the owner's, or its `.daemons` or
    /// `.helpers`.
    fn parent(&self) -> PathBuf {
        layout::container_of(&self.owner.member_dir, self.kind)
    }
}

/// The backend of a family, as its directories say.
pub(crate) enum Members {
    /// Directories daemonic creates itself.
    Dirs,
    /// Transient units of the family's manager, over this connection.
    Units(Arc<Client>),
}

/// A calling process placed into a new member, with what undoes it.
pub(crate) struct PlacedCaller {
    /// The member's directory.
    pub dir: PathBuf,
    undo: Undo,
}

enum Undo {
    Dir(MemberDir),
    Unit(Arc<Client>, Placed),
}

impl PlacedCaller {
    /// Undoes the placement after a later failure: the process goes back to `own`, then its
    /// member's directory or units are removed. A unit the process could not leave is not
    /// stopped (that would end the process before it can report): the error says so. Returns
    /// the error to report.
    pub(crate) fn undo(&self, own: &Path, e: Error) -> Error {
        let back = cgroup::enter(own);
        match (&self.undo, back) {
            (Undo::Dir(made), _) => made.discard(),
            (Undo::Unit(client, placed), Ok(())) => placed.undo(client),
            (Undo::Unit(_, placed), Err(back)) => {
                return e.context(format!(
                    "the process could not go back to {} ({back}), so unit {} is left running with it",
                    own.display(),
                    placed.unit
                ));
            }
        }
        e
    }
}

impl Members {
    /// The backend of the family `owner` belongs to (a connection to its manager for units).
    pub(crate) fn of(owner: &Position) -> Result<Members> {
        Ok(match owner.style() {
            Style::Dirs => Members::Dirs,
            Style::Units => Members::Units(units::family_client(&owner.family_dir)?),
        })
    }

    /// Starts `req` as the new member `m`: its directory or scope first, the process in it
    /// (held until it is placed, on systemd). Nothing of it remains on error. Returns the
    /// process and the member's directory.
    pub(crate) fn start(&self, m: &NewMember<'_>, req: &Request<'_>) -> Result<(Spawned, PathBuf)> {
        bell::ring_before_member(&m.owner.family_dir);
        match self {
            Members::Units(client) => {
                let (spawned, placed) = units::start(client, &m.parent(), &m.unit_spec(), req, m.seq)?;
                Ok((spawned, placed.dir))
            }
            Members::Dirs => {
                let made = MemberDir::create(m.owner, m.name, m.kind, m.seq, m.stop_timeout, m.allow_children)?;
                match cgroupfs::start_in(&m.owner.family_dir, &made.dir, m.properties, req) {
                    Ok(spawned) => Ok((spawned, made.dir)),
                    Err(e) => {
                        made.discard();
                        Err(e)
                    }
                }
            }
        }
    }

    /// Moves process `pid`, which must not run the member's work yet (its starter holds it),
    /// into the new member `m`, and labels the member with it. On error `before_undo` runs
    /// first (it must end `pid` or take it out of the member; it says whether it did), then
    /// nothing of the member remains. Returns the member's directory.
    pub(crate) fn place_process(
        &self,
        m: &NewMember<'_>,
        pid: u32,
        before_undo: &mut dyn FnMut() -> bool,
    ) -> Result<PathBuf> {
        bell::ring_before_member(&m.owner.family_dir);
        match self {
            Members::Units(client) => {
                Ok(units::place(client, &m.parent(), &m.unit_spec(), pid, m.seq, before_undo)?.dir)
            }
            Members::Dirs => {
                let made = MemberDir::create(m.owner, m.name, m.kind, m.seq, m.stop_timeout, m.allow_children)?;
                match cgroupfs::move_into(&m.owner.family_dir, &made.dir, m.properties, pid) {
                    Ok(()) => Ok(made.dir.clone()),
                    Err(e) => {
                        if before_undo() {
                            made.discard();
                        }
                        Err(e)
                    }
                }
            }
        }
    }

    /// Moves the calling process, now in `own`, into the new member `m` (`daemonic spawn`,
    /// which then executes the program itself). On error the process is back in `own` and
    /// nothing of the member remains.
    pub(crate) fn place_caller(&self, m: &NewMember<'_>, own: &Path) -> Result<PlacedCaller> {
        let pid = std::process::id();
        bell::ring_before_member(&m.owner.family_dir);
        match self {
            Members::Units(client) => {
                let placed =
                    units::place(client, &m.parent(), &m.unit_spec(), pid, m.seq, &mut || cgroup::enter(own).is_ok())?;
                Ok(PlacedCaller { dir: placed.dir.clone(), undo: Undo::Unit(Arc::clone(client), placed) })
            }
            Members::Dirs => {
                let made = MemberDir::create(m.owner, m.name, m.kind, m.seq, m.stop_timeout, m.allow_children)?;
                let placed = PlacedCaller { dir: made.dir.clone(), undo: Undo::Dir(made) };
                match cgroupfs::enter(&m.owner.family_dir, &placed.dir, m.properties) {
                    Ok(()) => Ok(placed),
                    Err(e) => Err(placed.undo(own, e)),
                }
            }
        }
    }
}
