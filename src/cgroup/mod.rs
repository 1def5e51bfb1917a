//! **Layer `cgroup`**, above `sys` and the base (`error`, `log`, `status`): the cgroup v2
//! filesystem (this file), what a path says ([`layout`]), unit-name escaping ([`unit_name`]),
//! resource properties ([`properties`]), the retirement of daemons (`retire`: SIGTERM grace,
//! then `cgroup.kill`) and a family's bell (`bell`: a guardian watching only the main member
//! learns of a new member). It knows nothing of processes started, backends or families at run time.
//!
//! The cgroup v2 filesystem, as daemonic uses it.
//!
//! Kernel behaviour handled here:
//! - the cgroup2 mount is found in `/proc/self/mountinfo` (it is `/sys/fs/cgroup` on unified
//!   hosts, `/sys/fs/cgroup/unified` on hybrid ones) and a process's cgroup in
//!   `/proc/<pid>/cgroup` (`0::/path`); neither is hard-coded;
//! - `cgroup.events` says `populated 0|1` for a whole subtree and wakes `poll(POLLPRI)` and
//!   inotify `IN_MODIFY` watchers when that flips: this is how the end of a family's live part is
//!   seen without polling;
//! - one write of `1` to `cgroup.kill` (Linux 5.14) SIGKILLs every process of a subtree at once,
//!   including processes that double-forked or called setsid;
//! - a cgroup holding only zombies counts as unpopulated and can be removed with `rmdir`;
//! - `user.*` extended attributes (Linux 5.7) carry daemonic's per-member settings, so the
//!   truth about a member lives on its cgroup and survives the death of its supervisor.
//!
//! Every function takes the directory it acts on, so the whole module works on any root,
//! including a temporary directory in unit tests.

pub(crate) mod bell;
pub mod layout;
pub mod properties;
pub(crate) mod retire;
pub mod unit_name;

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags, XattrFlags};

use crate::error::{Error, ErrorKind, Result};

/// Prefix of daemonic's extended attributes on cgroup directories.
pub(crate) const XATTR_PREFIX: &str = "user.daemonic.";

/// A cgroup v2 hierarchy: where cgroup2 is mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    mount: PathBuf,
}

impl Hierarchy {
    /// The cgroup2 hierarchy of this host, from `/proc/self/mountinfo`, read once per process
    /// when found (the systemd backend asks at every spawn, and the file is long).
    pub fn host() -> Result<Hierarchy> {
        static MOUNT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        if let Some(mount) = MOUNT.get() {
            return Ok(Hierarchy { mount: mount.clone() });
        }
        let text = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::io("read", Path::new("/proc/self/mountinfo"), e))?;
        let found = mount_from_mountinfo(&text).map(|mount| MOUNT.get_or_init(|| mount).clone());
        found.map(|mount| Hierarchy { mount }).ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                "no cgroup2 filesystem is mounted (see /proc/self/mountinfo); daemonic needs cgroup v2, \
                 unified or hybrid (mount -t cgroup2 none /sys/fs/cgroup/unified)",
            )
        })
    }

    /// A hierarchy rooted at `mount`, for tests on a temporary directory.
    pub fn at(mount: impl Into<PathBuf>) -> Hierarchy {
        Hierarchy { mount: mount.into() }
    }

    /// The mount point.
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// The directory of the cgroup that process `pid` (0 for the caller) is in.
    pub fn cgroup_of(&self, pid: u32) -> Result<PathBuf> {
        let file =
            if pid == 0 { PathBuf::from("/proc/self/cgroup") } else { PathBuf::from(format!("/proc/{pid}/cgroup")) };
        let text = fs::read_to_string(&file).map_err(|e| Error::io("read", &file, e))?;
        let rel = unified_path(&text).ok_or_else(|| {
            Error::new(ErrorKind::Unsupported, format!("{} has no cgroup v2 entry (0::/...)", file.display()))
        })?;
        Ok(self.join(rel))
    }

    /// The absolute directory of a path relative to the hierarchy's root (`/a/b`).
    pub fn join(&self, rel: &str) -> PathBuf {
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() { self.mount.clone() } else { self.mount.join(rel) }
    }

    /// The path of `dir` relative to the root, as `/proc/<pid>/cgroup` shows it.
    pub fn relative(&self, dir: &Path) -> Option<String> {
        let rest = dir.strip_prefix(&self.mount).ok()?;
        Some(format!("/{}", rest.display()))
    }
}

/// The mount point of the first cgroup2 filesystem in a mountinfo text.
pub(crate) fn mount_from_mountinfo(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let mount = left.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_mountinfo(mount)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The v2 path in a `/proc/<pid>/cgroup` text (`0::/path`).
pub(crate) fn unified_path(text: &str) -> Option<&str> {
    text.lines().find_map(|line| line.strip_prefix("0::"))
}

/// Whether `populated 1` appears in a `cgroup.events` text.
pub(crate) fn parse_populated(events: &str) -> Option<bool> {
    events.lines().find_map(|line| match line.split_once(' ')? {
        ("populated", v) => Some(v.trim() == "1"),
        _ => None,
    })
}

/// Creates the cgroup directory `dir`. `Ok(false)` when it already exists.
pub fn create(dir: &Path) -> Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io("create cgroup", dir, e)),
    }
}

/// Removes the empty cgroup `dir`. Gone already is fine; still populated is `EBUSY`.
pub fn remove(dir: &Path) -> io::Result<()> {
    match fs::remove_dir(dir) {
        Err(e) if gone(&e) => Ok(()),
        other => other,
    }
}

/// Removes `dir` and every cgroup below it, deepest first. Errors other than "gone" stop it.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    remove(dir)
}

/// How many directories `dir` holds, itself included.
pub(crate) fn count_dirs(dir: &Path) -> usize {
    1 + subdirs(dir).map(|subs| subs.iter().map(|s| count_dirs(s)).sum()).unwrap_or(0)
}

/// Opens the directory `dir` for `clone3(CLONE_INTO_CGROUP)`.
pub(crate) fn open_dir(dir: &Path) -> Result<OwnedFd> {
    rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io("open cgroup", dir, e.into()))
}

/// Opens `dir/cgroup.procs` for writing, for the fork fallback and for moving processes.
pub(crate) fn open_procs(dir: &Path) -> Result<OwnedFd> {
    let file = dir.join("cgroup.procs");
    rustix::fs::open(&file, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io("open", &file, e.into()))
}

/// Reads the interface file `dir/name`.
pub fn read(dir: &Path, name: &str) -> Result<String> {
    let file = dir.join(name);
    fs::read_to_string(&file).map_err(|e| Error::io("read", &file, e))
}

/// Writes `value` to the interface file `dir/name`.
pub fn write(dir: &Path, name: &str, value: &str) -> Result<()> {
    let file = dir.join(name);
    fs::write(&file, value).map_err(|e| Error::io(&format!("write {value:?} to"), &file, e))
}

/// SIGKILLs every process in the subtree of `dir` at once (`cgroup.kill`).
pub fn kill(dir: &Path) -> Result<()> {
    match write(dir, "cgroup.kill", "1") {
        Err(e) if e.os_error().is_some_and(gone) && !dir.exists() => Ok(()),
        other => other,
    }
}

/// Moves the calling process into the cgroup `dir`.
pub fn enter(dir: &Path) -> Result<()> {
    write(dir, "cgroup.procs", "0")
}

/// Freezes (`true`) or thaws the subtree of `dir` (`cgroup.freeze`).
pub fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })
}

/// Whether any process is in the subtree of `dir`. A missing directory is unpopulated.
pub fn populated(dir: &Path) -> Result<bool> {
    let file = dir.join("cgroup.events");
    let mut text = [0u8; 128];
    let read = rustix::fs::open(&file, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .and_then(|fd| rustix::io::read(&fd, &mut text));
    match read {
        Ok(n) => parse_populated(&String::from_utf8_lossy(&text[..n]))
            .ok_or_else(|| Error::new(ErrorKind::Os, format!("{} has no \"populated\" line", file.display()))),
        Err(e) if gone(&e.into()) => Ok(false),
        Err(e) => Err(Error::io("read", &file, e.into())),
    }
}

/// Whether an error says the cgroup no longer exists: `ENOENT` when opening a file of a
/// removed cgroup, `ENODEV` when using a file opened before the removal.
pub(crate) fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// The PIDs in `dir` itself (not its descendants).
pub fn procs(dir: &Path) -> Result<Vec<i32>> {
    let file = dir.join("cgroup.procs");
    let mut text = String::new();
    match fs::File::open(&file).and_then(|mut f| f.read_to_string(&mut text)) {
        Ok(_) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if gone(&e) => Ok(Vec::new()),
        Err(e) => Err(Error::io("read", &file, e)),
    }
}

/// The PIDs in the whole subtree of `dir`.
pub fn procs_recursive(dir: &Path) -> Result<Vec<i32>> {
    let mut all = procs(dir)?;
    for sub in subdirs(dir)? {
        all.extend(procs_recursive(&sub)?);
    }
    Ok(all)
}

/// The child cgroups of `dir`.
pub fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if gone(&e) => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Sets daemonic's attribute `key` on `dir`.
pub fn set_attr(dir: &Path, key: &str, value: &str) -> Result<()> {
    let name = format!("{XATTR_PREFIX}{key}");
    rustix::fs::setxattr(dir, name.as_str(), value.as_bytes(), XattrFlags::empty())
        .map_err(|e| Error::io(&format!("set attribute {name} on"), dir, e.into()))
}

/// Reads daemonic's attribute `key` of `dir`; `None` when it is not set or `dir` is gone.
pub fn attr(dir: &Path, key: &str) -> Option<String> {
    let name = format!("{XATTR_PREFIX}{key}");
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::getxattr(dir, name.as_str(), &mut buf[..]).ok()?;
    buf.truncate(n);
    String::from_utf8(buf).ok()
}

/// The unit (a `.service` or `.scope` directory) that `dir` is in, when systemd delegated it
/// (`Delegate=yes`): the nearest unit at or above `dir`, below `mount`, if it carries systemd's
/// `user.delegate` (systemd 251 and later) or `trusted.delegate` attribute (readable by root).
/// A process in such a unit owns its subtree: a family made there stays inside the unit.
pub fn delegated_unit(mount: &Path, dir: &Path) -> Option<PathBuf> {
    let unit = dir
        .ancestors()
        .take_while(|d| d.starts_with(mount) && *d != mount)
        .find(|d| d.extension().is_some_and(|e| e == "service" || e == "scope"))?;
    let flag = |name: &str| {
        let mut buf = [0u8; 8];
        rustix::fs::getxattr(unit, name, &mut buf[..]).is_ok_and(|n| &buf[..n] == b"1")
    };
    (flag("user.delegate") || flag("trusted.delegate")).then(|| unit.to_path_buf())
}

/// Waits until the subtree of `dir` is empty, or `timeout` passes. Returns whether it is empty.
///
/// Sleeps in `poll(POLLPRI)` on `cgroup.events`, which the kernel wakes when `populated`
/// changes, and reads it again at least every 100 ms in case the cgroup was removed meanwhile.
pub fn wait_unpopulated(dir: &Path, timeout: Option<Duration>) -> Result<bool> {
    let file = dir.join("cgroup.events");
    let events = match rustix::fs::open(&file, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(true),
        Err(e) => return Err(Error::io("open", &file, e.into())),
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let mut text = [0u8; 128];
        let n = match rustix::io::pread(&events, &mut text, 0) {
            Ok(n) => n,
            // The cgroup was removed while we waited: nothing can be in it.
            Err(rustix::io::Errno::NODEV | rustix::io::Errno::NOENT) => return Ok(true),
            Err(e) => return Err(Error::io("read", &file, e.into())),
        };
        if parse_populated(&String::from_utf8_lossy(&text[..n])) == Some(false) {
            return Ok(true);
        }
        let left = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(false),
            },
            None => None,
        };
        // A cgroup removed while we wait (a guardian removes a daemon's directory as soon as it
        // is empty) may never wake the poll: its removal cancels the pending notification. So
        // look again now and then; a read of a removed cgroup's file says so (ENODEV).
        let left = Some(left.map_or(RECHECK, |l| l.min(RECHECK)));
        poll_pri(events.as_fd(), left).map_err(|e| Error::io("wait for events of", &file, e))?;
    }
}

/// How long [`wait_unpopulated`] sleeps at most before it reads `cgroup.events` again.
const RECHECK: Duration = Duration::from_millis(100);

/// `poll` for `POLLPRI` on one descriptor, retrying on `EINTR`.
pub(crate) fn poll_pri(fd: impl AsFd, timeout: Option<Duration>) -> io::Result<bool> {
    let mut fds = [PollFd::new(&fd, PollFlags::PRI)];
    Ok(crate::sys::poll(&mut fds, timeout)? > 0)
}

/// Whether the calling user may create and populate cgroups below `dir`.
pub fn writable(dir: &Path) -> bool {
    use rustix::fs::{Access, access};
    access(dir, Access::WRITE_OK | Access::EXEC_OK).is_ok()
        && access(dir.join("cgroup.procs"), Access::WRITE_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn the_nearest_unit_decides_whether_a_cgroup_is_delegated() {
        // user.* attributes need a filesystem that keeps them: a tmpfs before Linux 6.6 does
        // not, so the test's directory is in the target directory then.
        let mut root = tempfile::tempdir().expect("tempdir");
        if rustix::fs::setxattr(root.path(), "user.probe", b"1", XattrFlags::empty()).is_err() {
            let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
            fs::create_dir_all(&target).expect("mkdir target");
            root = tempfile::tempdir_in(target).expect("tempdir in target");
        }
        let mount = root.path();
        let user = mount.join("user.slice/user-1000.slice/user@1000.service");
        let app = user.join("app.slice/web.service");
        let leaf = app.join("main");
        fs::create_dir_all(&leaf).expect("mkdir");
        // user@.service is delegated to the user manager, not to the services below it.
        rustix::fs::setxattr(&user, "user.delegate", b"1", XattrFlags::empty()).expect("setxattr");
        assert_eq!(delegated_unit(mount, &user), Some(user.clone()));
        assert_eq!(delegated_unit(mount, &leaf), None, "web.service is the nearest unit, and not delegated");
        rustix::fs::setxattr(&app, "user.delegate", b"1", XattrFlags::empty()).expect("setxattr");
        assert_eq!(delegated_unit(mount, &leaf), Some(app.clone()), "a sub-cgroup of a delegated service");
        rustix::fs::setxattr(&app, "user.delegate", b"0", XattrFlags::empty()).expect("setxattr");
        assert_eq!(delegated_unit(mount, &app), None);
        assert_eq!(delegated_unit(mount, mount), None);
    }

    #[test]
    fn finds_cgroup2_on_hybrid_and_unified_hosts() {
        assert_eq!(mount_from_mountinfo(HYBRID), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(mount_from_mountinfo(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(mount_from_mountinfo("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"), None);
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        let line = "41 31 0:38 / /tmp/with\\040space rw - cgroup2 cgroup2 rw\n";
        assert_eq!(mount_from_mountinfo(line), Some(PathBuf::from("/tmp/with space")));
    }

    #[test]
    fn reads_unified_entry_of_proc_cgroup() {
        let text = "9:name=systemd:/\n4:memory:/x\n0::/user.slice/a.scope\n";
        assert_eq!(unified_path(text), Some("/user.slice/a.scope"));
        assert_eq!(unified_path("4:memory:/x\n"), None);
    }

    #[test]
    fn parses_populated() {
        assert_eq!(parse_populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(parse_populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(parse_populated("frozen 0\n"), None);
    }

    #[test]
    fn hierarchy_paths_round_trip() {
        let h = Hierarchy::at("/sys/fs/cgroup/unified");
        assert_eq!(h.join("/"), PathBuf::from("/sys/fs/cgroup/unified"));
        let dir = h.join("/a/b");
        assert_eq!(dir, PathBuf::from("/sys/fs/cgroup/unified/a/b"));
        assert_eq!(h.relative(&dir).as_deref(), Some("/a/b"));
    }

    #[test]
    fn fs_operations_on_a_temporary_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("fam");
        assert!(create(&dir).expect("create"));
        assert!(!create(&dir).expect("create again"));
        fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 0\n").expect("events");
        assert!(populated(&dir).expect("populated"));
        fs::write(dir.join("cgroup.procs"), "12\n34\n").expect("procs");
        assert_eq!(procs(&dir).expect("procs"), vec![12, 34]);
        create(&dir.join("sub")).expect("sub");
        assert_eq!(subdirs(&dir).expect("subdirs"), vec![dir.join("sub")]);
        assert!(!populated(&root.path().join("missing")).expect("missing is unpopulated"));
    }
}
