//! The systemd backend: every member a transient scope, in a slice of its own when it can have
//! members of its own.
//!
//! The tree is the one of the cgroupfs backend, made of units (see [`crate::cgroup::layout`]): a
//! member's slice is its live part, its processes are in a scope inside it, its daemons in a
//! sibling `.daemons` slice. A daemon that may not have children is a lone scope there. A
//! member is placed in three steps, alike for a child of the library (held at a gate until its
//! scope exists, so its first instruction already runs there) and for the calling process
//! itself (`daemonic spawn`, [`crate::FamilyBuilder::open`]): `StartTransientUnit` of the scope with
//! `PIDs=[pid]` and `Slice=` the member's slice (systemd creates that slice and any missing
//! parent slice), then daemonic's attributes on the member's cgroup (the slice's, or the lone
//! scope's), then the process goes on. On an error, what was started is stopped again and a
//! gated child ends before it ran anything.
//!
//! From then on the runtime is the cgroupfs one: `populated` of the members' cgroups,
//! `cgroup.kill` and the guardian. Only removal differs: the guardian stops a finished member's
//! slice over D-Bus instead of removing a directory, and scopes are collected by systemd itself
//! (`CollectMode=inactive-or-failed`, so a failed one too).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use zbus::zvariant::Value;

pub(crate) use crate::backend::systemd::client;
use crate::backend::systemd::{Bus, Client, connection, resource_property};
use crate::cgroup::layout::{self, Kind, MAIN_NAME, Style};
use crate::cgroup::properties::Property;
use crate::cgroup::retire::label_member;
use crate::cgroup::unit_name::UnitName;
use crate::cgroup::{self, Hierarchy};
use crate::error::{Error, ErrorKind, Result};
use crate::spawn::{self, Request, Spawned};

/// The connection of a new member of the family in `family_dir` to the family's manager.
///
/// A family's members connect one at a time: each takes an exclusive `flock` of the family's
/// cgroup directory for its handshake with the bus. The system bus gives a connection 5 s to
/// authenticate and lets 64 do so at once; 200 members spawned together on a slow host (a VM
/// under emulation, fork and exec 30 times slower) all missed that, retried, and not one got
/// through in 13 minutes, while in turn they get through at the pace of one handshake each. A
/// lock that cannot be taken (the directory is gone) is not waited for.
pub(crate) fn family_client(family_dir: &Path) -> Result<Arc<Client>> {
    use rustix::fs::{FlockOperation, Mode, OFlags};
    connection(family_bus(family_dir), || {
        rustix::fs::open(family_dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .ok()
            .filter(|dir| rustix::fs::flock(dir, FlockOperation::LockExclusive).is_ok())
    })
}

/// The manager of the family of units in `family_dir`, as recorded at its start.
pub(crate) fn family_bus(family_dir: &Path) -> Bus {
    cgroup::attr(family_dir, layout::ATTR_BUS).and_then(|b| Bus::parse(&b)).unwrap_or_else(Bus::default_for_caller)
}

/// What daemonic knows of a new member.
pub(crate) struct Spec<'a> {
    pub family_name: &'a str,
    pub name: &'a str,
    pub kind: Kind,
    pub stop_timeout: Option<Duration>,
    pub allow_children: bool,
    pub properties: &'a [Property],
}

impl Spec<'_> {
    /// The scope's `Description=`: `daemonic daemon "logger" of family "web"`.
    fn description(&self) -> String {
        format!("daemonic {} \"{}\" of family \"{}\"", self.kind.as_str(), self.name, self.family_name)
    }

    /// Whether the member is a lone scope, without a slice: a daemon that may not have children
    /// can have no members either.
    fn lone(&self) -> bool {
        self.kind == Kind::Daemon && !self.allow_children
    }

    /// The transient slices created with the member's scope, with their descriptions: its own
    /// slice (unless it is a lone scope), and its parent when that does not exist yet.
    fn slices(&self, slice: &str, parent: &Path, new_parent: bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !self.lone() {
            out.push((slice.to_string(), format!("{} and its children", self.description())));
        }
        if new_parent && let Some(p) = parent.file_name().and_then(|n| n.to_str()) {
            let what = match self.kind {
                Kind::Daemon => format!("daemons of a member of daemonic family \"{}\"", self.family_name),
                Kind::Helper => format!("helpers of a member of daemonic family \"{}\"", self.family_name),
                Kind::Member => format!("daemonic family \"{}\"", self.family_name),
            };
            out.push((p.to_string(), what));
        }
        out
    }
}

/// A member placed in its scope.
#[derive(Debug)]
pub(crate) struct Placed {
    /// The member's directory, its live part: its slice, or its lone scope.
    pub dir: PathBuf,
    /// The member's unit: its slice, or its lone scope.
    pub unit: String,
    /// The parent slice this placement brought into being: a new family's slice, or the owner's
    /// `.daemons` slice for its first daemon. Stopping it takes the member's unit with it.
    new_parent: Option<String>,
}

impl Placed {
    /// Stops what the placement started and waits for it (a slice's stop takes what is in it).
    pub(crate) fn undo(&self, client: &Client) {
        let _ = client.stop_and_wait(self.new_parent.as_deref().unwrap_or(&self.unit));
    }
}

/// Puts process `pid`, which must not run the member's program yet, into a new scope for the
/// member `spec` below the slice directory `parent` (a new family's slice when `parent` is a
/// relative path: its unit name alone), and labels the member's slice. A name in use gets the
/// next sequence number. On error, `before_undo` runs (it must stop `pid` from being in the
/// scope: end a gated child, or move the caller back), then everything started here is stopped,
/// unless `before_undo` says `pid` is still there (a caller that could not move back, whom the
/// stop would kill).
pub(crate) fn place(
    client: &Client,
    parent: &Path,
    spec: &Spec<'_>,
    pid: u32,
    mut seq: u64,
    before_undo: &mut dyn FnMut() -> bool,
) -> Result<Placed> {
    let new_family = Style::of_dir(parent) == Style::Units && !parent.is_absolute();
    let parent_unit = parent.file_name().map(|c| c.to_string_lossy().into_owned());
    let mut tries = 0;
    // A member's first daemons race to bring its `.daemons` slice into being: the one whose aux
    // unit loses gets UnitExists and goes on without creating it.
    let mut container_taken = false;
    let (unit, scope, new_parent) = loop {
        let new_parent = new_family || (spec.kind != Kind::Member && !container_taken && !parent.exists());
        // The member's unit, and the slice its scope goes into.
        let (unit, scope, slice) = if spec.lone() {
            let scope = layout::daemon_scope(parent, spec.name, seq)?;
            (scope.clone(), scope, parent_unit.clone().unwrap_or_default())
        } else {
            let slice = layout::member_unit(parent, spec.name, seq, spec.kind)?;
            let scope = layout::scope_in(&slice)?;
            (slice.clone(), scope, slice.to_string())
        };
        let mut props: Vec<(&str, Value<'_>)> = vec![
            ("Description", Value::from(spec.description())),
            ("PIDs", Value::from(vec![pid])),
            ("CollectMode", Value::from("inactive-or-failed")),
            ("Slice", Value::from(slice.clone())),
        ];
        props.extend(spec.properties.iter().map(resource_property));
        let slices = spec.slices(&slice, parent, new_parent);
        let slice_props: Vec<[(&str, Value<'_>); 1]> =
            slices.iter().map(|(_, d)| [("Description", Value::from(d.as_str()))]).collect();
        let aux: Vec<(&str, &[(&str, Value<'_>)])> =
            slices.iter().zip(&slice_props).map(|((n, _), p)| (n.as_str(), &p[..])).collect();
        let new_parent = if new_parent { parent_unit.clone() } else { None };
        match client.start_transient_with(&scope, &props, &aux) {
            Ok(()) => break (unit, scope, new_parent),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && tries < 16 => {
                tries += 1;
                if new_parent.is_some() && !new_family {
                    container_taken = true;
                } else {
                    seq = layout::next_seq();
                }
            }
            Err(e) => {
                let placed = Placed { dir: PathBuf::new(), unit: unit.to_string(), new_parent };
                return Err(undo_placement(client, placed, pid, before_undo, e));
            }
        }
    };
    let placed = Placed { dir: PathBuf::new(), unit: unit.to_string(), new_parent };
    match label(&placed.unit, &scope, spec, pid) {
        Ok(dir) => Ok(Placed { dir, ..placed }),
        Err(e) => Err(undo_placement(client, placed, pid, before_undo, e)),
    }
}

/// Undoes a placement that failed with `e`, as [`place`] says, and returns the error to report.
fn undo_placement(client: &Client, placed: Placed, pid: u32, before_undo: &mut dyn FnMut() -> bool, e: Error) -> Error {
    if before_undo() {
        placed.undo(client);
        e
    } else {
        e.context(format!("process {pid} could not leave unit {}, which is left running with it", placed.unit))
    }
}

/// Finds the member's directory systemd made for `pid` (the cgroup of `unit`, the member's slice
/// or its lone scope) and writes daemonic's attributes on it.
fn label(unit: &str, scope: &UnitName, spec: &Spec<'_>, pid: u32) -> Result<PathBuf> {
    let cg = Hierarchy::host()?.cgroup_of(pid)?;
    let dir = if unit == scope.as_str() { cg.clone() } else { cg.parent().map(Path::to_path_buf).unwrap_or_default() };
    if cg.file_name().and_then(|n| n.to_str()) != Some(scope.as_str())
        || dir.file_name().and_then(|n| n.to_str()) != Some(unit)
    {
        return Err(Error::new(
            ErrorKind::Os,
            format!("systemd started unit {scope}, but process {pid} is in cgroup {}, not in {unit}", cg.display()),
        ));
    }
    cgroup::set_attr(&dir, layout::ATTR_PID, &pid.to_string())?;
    let container = dir.parent().unwrap_or(Path::new("/"));
    label_member(&dir, container, spec.kind, spec.stop_timeout, spec.allow_children)?;
    Ok(dir)
}

/// Starts the program of `req` as a new member: created held at a gate, placed, then let go.
pub(crate) fn start(
    client: &Client,
    parent: &Path,
    spec: &Spec<'_>,
    req: &Request<'_>,
    seq: u64,
) -> Result<(Spawned, Placed)> {
    let started = spawn::start(req, true)?;
    let pid = started.pid as u32;
    let mut held = Some(started);
    let placed = place(client, parent, spec, pid, seq, &mut || {
        if let Some(s) = held.take() {
            s.abort();
        }
        true
    })?;
    match held.take().expect("held until placed").release() {
        Ok(spawned) => Ok((spawned, placed)),
        Err(e) => {
            placed.undo(client);
            Err(e)
        }
    }
}

/// A family slice not loaded yet: `<parent>-<name>_<n>.family.slice`, starting at this PID.
pub(crate) fn new_family_unit(client: &Client, parent: Option<&Path>, name: &str) -> Result<UnitName> {
    layout::validate_name("family", name)?;
    layout::check_family_units(parent, name)?;
    let mut n = u64::from(std::process::id());
    loop {
        let unit = layout::family_unit(parent, name, n)?;
        if !client.exists(unit.as_str()) {
            return Ok(unit);
        }
        n += 1_000_000;
    }
}

/// Settings of a new family of units.
pub(crate) struct FamilySpec<'a> {
    pub bus: Bus,
    pub name: &'a str,
    pub stop_timeout: Option<Duration>,
    /// The slice of the member that starts this family, for a nested family.
    pub parent: Option<&'a Path>,
    /// Resource properties of the main member.
    pub properties: &'a [Property],
}

pub(crate) fn main_spec<'a>(f: &FamilySpec<'a>) -> Spec<'a> {
    Spec {
        family_name: f.name,
        name: MAIN_NAME,
        kind: Kind::Member,
        stop_timeout: None,
        allow_children: false,
        properties: f.properties,
    }
}

pub(crate) fn label_family(dir: &Path, f: &FamilySpec<'_>) -> Result<()> {
    cgroup::set_attr(dir, layout::ATTR_BUS, f.bus.as_str())?;
    if let Some(t) = f.stop_timeout {
        cgroup::set_attr(dir, layout::ATTR_STOP_TIMEOUT, &t.as_millis().to_string())?;
    }
    Ok(())
}

/// The `N` of `…-<name>_<N>.family.slice`.
pub(crate) fn id_number(unit: &UnitName) -> &str {
    let stem = unit.as_str().trim_end_matches(".family.slice");
    stem.rsplit_once('_').map_or("0", |(_, n)| n)
}

/// Stops the unit of a family directory (a slice, and everything in it) and waits.
pub(crate) fn stop_dir(dir: &Path, bus: Bus) -> Result<()> {
    let unit = layout::unit_of(dir)
        .ok_or_else(|| Error::new(ErrorKind::InvalidInput, format!("{} is not a systemd unit", dir.display())))?;
    client(bus)?.stop_and_wait(unit)
}
