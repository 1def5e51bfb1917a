//! Reading families back from the cgroup tree: `daemonic ps` and `daemonic kill`.
//!
//! Nothing here asks a supervisor: the truth is the cgroup tree (directory names and daemonic's
//! `user.*` attributes), so families are listed and killed the same whether their `daemonic run`
//! is alive or was SIGKILLed.
//!
//! A family belongs to the user that owns its directory: the cgroupfs backend creates it as the
//! user that runs `daemonic`, a systemd manager as its own user (a user manager's families are
//! its user's, the system manager's are root's). Root may kill any family; anyone else only
//! their own ([`kill`] refuses the others before writing anything), and `daemonic ps` shows
//! another user's family as one line without its members ([`FamilyInfo::visible_to`]).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cgroup::layout::{self, Node};
use crate::cgroup::{self, Hierarchy};
use crate::error::{Error, ErrorKind, Result};

/// How deep below the cgroup2 root families are looked for.
const MAX_DEPTH: usize = 64;

/// A family found on this host.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FamilyInfo {
    /// `name-N`.
    pub id: String,
    /// The family's name.
    pub name: String,
    /// The family's cgroup, relative to the cgroup2 root.
    pub cgroup: String,
    /// The uid owning the family's directory: the user whose family it is.
    pub owner: u32,
    /// PID of the family's guardian, as recorded at start.
    pub guardian: Option<u32>,
    /// The members, in tree order.
    pub members: Vec<MemberInfo>,
}

/// One member of a family.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MemberInfo {
    /// The member's name.
    pub name: String,
    /// Its PID, once it ran.
    pub pid: Option<u32>,
    /// Whether it is daemonic.
    pub daemon: bool,
    /// What it is to the member that started it: `member`, `daemon` or `helper`.
    pub kind: String,
    /// `starting` (its directory exists, its process is not in it yet), `running` or `exited`.
    pub state: String,
    /// Its cgroup, relative to the cgroup2 root.
    pub cgroup: String,
    /// Its scope, on the systemd backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// When it started, in seconds since the Unix epoch.
    pub start_time: Option<u64>,
}

impl FamilyInfo {
    /// Whether user `uid` may see this family's details and kill it: root, or its owner.
    pub fn visible_to(&self, uid: u32) -> bool {
        uid == 0 || uid == self.owner
    }

    /// The error for user `uid` trying to kill this family of another user.
    fn not_yours(&self, uid: u32) -> Error {
        Error::new(
            ErrorKind::PermissionDenied,
            format!("cannot kill family {}: it belongs to uid {} (you are uid {uid})", self.id, self.owner),
        )
    }
}

/// The effective uid of the calling process.
pub fn caller_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Every family under the cgroup2 root, nested ones included.
pub fn families(h: &Hierarchy) -> Result<Vec<FamilyInfo>> {
    let mut out = Vec::new();
    walk(h.mount(), 0, &mut |dir| {
        if let Some(Node::Family { id, name }) = Node::of_dir(dir) {
            out.push(describe(h, dir, id, name)?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// The family whose id is `key`, or the only family named `key`.
pub fn find(h: &Hierarchy, key: &str) -> Result<FamilyInfo> {
    let all = families(h)?;
    if let Some(f) = all.iter().find(|f| f.id == key) {
        return Ok(f.clone());
    }
    let named: Vec<_> = all.into_iter().filter(|f| f.name == key).collect();
    match named.len() {
        1 => Ok(named.into_iter().next().expect("one")),
        0 => Err(Error::new(ErrorKind::NoSuchFamily, format!("no family with id or name {key:?} (see `daemonic ps`)"))),
        _ => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} families are named {key:?}; give one of the ids: {}",
                named.len(),
                named.iter().map(|f| f.id.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// The family `key` names for user `uid` to kill: by id, or by name among the caller's own
/// families first (another user's family of the same name does not make it ambiguous). A family
/// of another user is refused with [`ErrorKind::PermissionDenied`], unless `uid` is root.
pub fn find_for(h: &Hierarchy, key: &str, uid: u32) -> Result<FamilyInfo> {
    if uid == 0 {
        return find(h, key);
    }
    let all = families(h)?;
    if let Some(f) = all.iter().find(|f| f.id == key) {
        return if f.visible_to(uid) { Ok(f.clone()) } else { Err(f.not_yours(uid)) };
    }
    let (mine, theirs): (Vec<_>, Vec<_>) = all.into_iter().filter(|f| f.name == key).partition(|f| f.visible_to(uid));
    match (mine.len(), theirs.as_slice()) {
        (1, _) => Ok(mine.into_iter().next().expect("one")),
        (0, []) => {
            Err(Error::new(ErrorKind::NoSuchFamily, format!("no family with id or name {key:?} (see `daemonic ps`)")))
        }
        (0, [one]) => Err(one.not_yours(uid)),
        (0, many) => {
            let mut uids: Vec<u32> = many.iter().map(|f| f.owner).collect();
            uids.sort_unstable();
            uids.dedup();
            let owners: Vec<String> = uids.iter().map(u32::to_string).collect();
            Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "cannot kill family {key}: the {} families of that name belong to other users (uid {}; you are uid {uid})",
                    many.len(),
                    owners.join(", ")
                ),
            ))
        }
        (n, _) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{n} of your families are named {key:?}; give one of the ids: {}",
                mine.iter().map(|f| f.id.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// Kills every process of the family at once and waits until they are gone and the family's
/// cgroups are removed (its units stopped, on systemd): by its guardian when it runs (it must be
/// the one to remove them, see `guardian.rs`), else here. A family of another user is refused
/// (unless the caller is root) before anything is written.
pub fn kill(h: &Hierarchy, key: &str) -> Result<FamilyInfo> {
    let uid = caller_uid();
    let family = find_for(h, key, uid)?;
    let dir = h.join(&family.cgroup);
    cgroup::kill(&dir).map_err(|e| match e.os_error().and_then(std::io::Error::raw_os_error) {
        // Owned by the caller, yet not writable: a delegation that did not hand over the files.
        Some(libc::EACCES | libc::EPERM) => Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "cannot kill family {}: {} is not writable for uid {uid} (the family's directory belongs to uid {})",
                family.id,
                dir.join("cgroup.kill").display(),
                family.owner
            ),
        ),
        _ => e,
    })?;
    if !cgroup::wait_unpopulated(&dir, Some(Duration::from_secs(10)))? {
        return Err(Error::new(
            ErrorKind::Os,
            format!("family {} still has processes 10 s after cgroup.kill", family.id),
        ));
    }
    if guardian_running(&family, &dir) {
        // Removal has no event to wait on; this bounded wait is the only polling in daemonic.
        let deadline = Instant::now() + Duration::from_secs(5);
        while dir.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    crate::backend::dismantle(&dir)?;
    Ok(family)
}

/// Whether the process recorded as the family's guardian is a guardian of this very family
/// (read from its command line; nothing is signalled).
fn guardian_running(family: &FamilyInfo, dir: &Path) -> bool {
    let Some(pid) = family.guardian else { return false };
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let mut args = cmdline.split(|b| *b == 0);
    args.next() == Some(crate::runtime::guardian::ARGV0.as_bytes())
        && args.next() == Some(dir.as_os_str().as_encoded_bytes())
}

fn walk(dir: &Path, depth: usize, visit: &mut dyn FnMut(&Path) -> Result<()>) -> Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    visit(dir)?;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(_) => return Ok(()), // vanished or unreadable: nothing of ours to list there
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&entry.path(), depth + 1, visit)?;
        }
    }
    Ok(())
}

fn describe(h: &Hierarchy, dir: &Path, id: String, name: String) -> Result<FamilyInfo> {
    Ok(FamilyInfo {
        id,
        name,
        cgroup: h.relative(dir).unwrap_or_default(),
        owner: fs::metadata(dir).map_or(0, |m| m.uid()),
        guardian: cgroup::attr(dir, layout::ATTR_GUARDIAN).and_then(|p| p.parse().ok()),
        members: members_of(h, dir),
    })
}

/// The members of the family in `dir`, in tree order, without those of nested families.
pub(crate) fn members_of(h: &Hierarchy, dir: &Path) -> Vec<MemberInfo> {
    let mut members = Vec::new();
    collect_members(h, dir, &mut members);
    members
}

/// The members below `dir`, not descending into nested families.
fn collect_members(h: &Hierarchy, dir: &Path, out: &mut Vec<MemberInfo>) {
    let Ok(subdirs) = cgroup::subdirs(dir) else { return };
    for sub in subdirs {
        match Node::of_dir(&sub) {
            Some(Node::Member { name, kind, .. }) => {
                let pid: Option<u32> = cgroup::attr(&sub, layout::ATTR_PID).and_then(|p| p.parse().ok());
                // On systemd the member's own processes are in its scope: inside its slice, or the
                // member's directory itself for a lone daemon.
                let unit = layout::own_unit(&sub);
                let own = layout::own_cgroup(&sub);
                let running = pid.is_some_and(|p| cgroup::procs(&own).is_ok_and(|procs| procs.contains(&(p as i32))));
                out.push(MemberInfo {
                    name,
                    pid,
                    daemon: kind.is_daemon(),
                    kind: kind.as_str().into(),
                    state: match (pid, running) {
                        (None, _) => "starting",
                        (Some(_), true) => "running",
                        (Some(_), false) => "exited",
                    }
                    .into(),
                    cgroup: h.relative(&sub).unwrap_or_default(),
                    unit,
                    start_time: if running { pid.and_then(start_time) } else { None },
                });
                collect_members(h, &sub, out);
            }
            Some(Node::Daemons { .. } | Node::Helpers { .. }) => collect_members(h, &sub, out),
            _ => {}
        }
    }
}

/// When process `pid` started, in seconds since the epoch (`/proc/<pid>/stat` field 22).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let ticks: u64 = after_comm.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 =
        fs::read_to_string("/proc/stat").ok()?.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    let hz = rustix::param::clock_ticks_per_second();
    Some(boot + ticks / hz)
}

/// `2026-11-21T22:01:05Z` for seconds since the epoch.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use crate::runtime::inspect::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_795_300_000), "2026-11-21T22:26:40Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn families_are_found_on_a_temporary_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let h = Hierarchy::at(root.path());
        let fam = root.path().join("svc").join(layout::family_dir_name("web-42"));
        let main = fam.join(layout::member_dir_name("main", 1, layout::Kind::Member));
        let daemon = layout::daemons_dir(&main).join(layout::member_dir_name("log", 2, layout::Kind::Daemon));
        fs::create_dir_all(&main).expect("main");
        fs::create_dir_all(&daemon).expect("daemon");
        let found = families(&h).expect("families");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "web-42");
        assert_eq!(found[0].cgroup, "/svc/daemonic-web-42.family");
        let kinds: Vec<_> = found[0].members.iter().map(|m| (m.name.as_str(), m.daemon, m.state.as_str())).collect();
        assert_eq!(kinds, vec![("main", false, "starting"), ("log", true, "starting")]);
        assert_eq!(find(&h, "web").expect("by name").id, "web-42");
        assert_eq!(find(&h, "nope").expect_err("missing").kind(), ErrorKind::NoSuchFamily);
    }

    #[test]
    fn another_users_family_is_refused_and_names_prefer_ones_own() {
        if !rustix::process::geteuid().is_root() {
            return; // chown needs root
        }
        let root = tempfile::tempdir().expect("tempdir");
        let h = Hierarchy::at(root.path());
        let make = |id: &str, uid: u32| {
            let fam = root.path().join(layout::family_dir_name(id));
            fs::create_dir_all(fam.join(layout::member_dir_name("main", 1, layout::Kind::Member))).expect("mkdir");
            std::os::unix::fs::chown(&fam, Some(uid), None).expect("chown");
        };
        make("web-1", 0);
        make("web-2", 4242);
        make("db-3", 0);
        let all = families(&h).expect("families");
        assert_eq!(all.iter().find(|f| f.id == "web-2").map(|f| f.owner), Some(4242));
        // Root sees both webs: ambiguous by name, either by id.
        assert_eq!(find_for(&h, "web", 0).expect_err("two").kind(), ErrorKind::InvalidInput);
        assert_eq!(find_for(&h, "web-1", 0).expect("root kills any").id, "web-1");
        // uid 4242: its own web, not root's; root's db refused by name and by id.
        assert_eq!(find_for(&h, "web", 4242).expect("own first").id, "web-2");
        for key in ["db", "db-3", "web-1"] {
            let e = find_for(&h, key, 4242).expect_err("not its own");
            assert_eq!(e.kind(), ErrorKind::PermissionDenied);
            let id = if key == "db" { "db-3" } else { key };
            assert_eq!(e.to_string(), format!("cannot kill family {id}: it belongs to uid 0 (you are uid 4242)"));
        }
        // Another user: both webs are someone else's.
        let e = find_for(&h, "web", 7).expect_err("not its own");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("belong to other users (uid 0, 4242; you are uid 7)"), "{e}");
        assert_eq!(find_for(&h, "nope", 7).expect_err("missing").kind(), ErrorKind::NoSuchFamily);
    }
}
