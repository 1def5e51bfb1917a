//! How a family is laid out as cgroup directories, and how a cgroup path is read back.
//!
//! ```text
//! <base>/daemonic-web-4242.family/            the family "web" (id web-4242): cgroup.kill here ends it all
//!        main-1.member/                       the main member, its forked descendants and ...
//!            worker-7.member/                 ... its non-daemonic children, each a member in turn
//!        main-1.member.daemons/               the main member's daemonic children
//!            logger-3.daemon/                 one daemonic child
//!        main-1.member.helpers/               the main member's helpers
//!            tracker-4.helper/                one helper (a resource tracker, a server)
//! ```
//!
//! The *live part* of a member is its own directory: the member, everything it forked, and its
//! non-daemonic children with their own subtrees. Its daemons are in the sibling `.daemons`
//! directory, outside the live part. So the moment of C4, "the member and all of its
//! non-daemonic descendants have ended", is exactly `populated 0` on the member's directory,
//! announced by the kernel, and the kill of C5 is one write to the sibling's `cgroup.kill`.
//! A member's kind is in its directory's suffix, so `/proc/<pid>/cgroup`, `ps -o cgroup` and
//! `systemd-cgls` show who is a daemon (C8).
//!
//! A *helper* is a process the member's children talk to, such as Python's resource tracker or
//! a `Manager`'s server: it is in neither the live part (it would keep it alive: a tracker waits
//! for the pipe every child holds, so a live part with a tracker in it never ends) nor the
//! daemons (it must outlive them, to clean up what they leave, such as `/dev/shm` segments).
//! When the live part has ended, the daemons are killed first; once they are gone the helpers
//! get SIGTERM and their stop timeout to end by themselves, then `cgroup.kill`.
//!
//! Only one directory is created per member (about 50 µs of mkdir here): the `.daemons`
//! sibling appears with a member's first daemonic child.
//!
//! With the systemd backend the same tree is made of units ([`Style::Units`]): each level is a
//! slice whose name carries the levels above it (systemd's rule: `a-b.slice` lives in
//! `a.slice`), the member's processes are in a scope inside its slice, and within a level the
//! sequence number follows `_` so that no `-` needs escaping. A daemon that may not have
//! children can have no members either, so it needs no level: it is a lone scope in its owner's
//! `.daemons` slice (a slice and a scope cost the manager about twice one scope). A daemon
//! started with `allow_children` is a slice and a scope like a member:
//!
//! ```text
//! daemonic.slice/
//!   daemonic-web_4242.family.slice/                                   family "web"
//!     daemonic-web_4242.family-main_1.member.slice/                   the main member's live part
//!       daemonic-web_4242.family-main_1.member.scope                  ... its processes
//!       daemonic-web_4242.family-main_1.member-worker_7.member.slice  a non-daemonic child
//!     daemonic-web_4242.family-main_1.member.daemons.slice/           the main member's daemons
//!       daemonic-web_4242.family-main_1.member.daemons-logger_3.daemon.scope   a daemon
//!       daemonic-web_4242.family-main_1.member.daemons-pool_4.daemon.slice/    one with allow_children
//!         daemonic-web_4242.family-main_1.member.daemons-pool_4.daemon.scope
//! ```
//!
//! The cgroup directories are the unit names, so a path is read the same way for both styles.
//! A scope is a member's directory when it is not its slice's own (`X.scope` in `X.slice`).

use std::path::{Path, PathBuf};

use crate::cgroup;
use crate::cgroup::unit_name::{self, UnitName};
use crate::error::{Error, ErrorKind, Result};

/// Makes member directory and unit names unique within this process.
static NEXT_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A new sequence number for a member's directory or unit.
pub(crate) fn next_seq() -> u64 {
    NEXT_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Suffix of a family's directory.
pub const FAMILY_SUFFIX: &str = ".family";
/// Prefix of a family's directory.
pub const FAMILY_PREFIX: &str = "daemonic-";
/// Suffix of a non-daemonic member's directory.
pub const MEMBER_SUFFIX: &str = ".member";
/// Suffix of a daemonic member's directory.
pub const DAEMON_SUFFIX: &str = ".daemon";
/// Suffix of the directory that holds a member's daemonic children.
pub const DAEMONS_SUFFIX: &str = ".daemons";
/// Suffix of a helper's directory.
pub const HELPER_SUFFIX: &str = ".helper";
/// Suffix of the directory that holds a member's helpers.
pub const HELPERS_SUFFIX: &str = ".helpers";
/// Name of a family's main member.
pub const MAIN_NAME: &str = "main";
/// Longest accepted name, in bytes.
pub const MAX_NAME: usize = 64;

/// Attribute: the member's PID, set once it runs in its directory.
pub(crate) const ATTR_PID: &str = "pid";
/// Attribute: stop timeout of a daemon (or a family's default), in milliseconds.
pub(crate) const ATTR_STOP_TIMEOUT: &str = "stop_timeout_ms";
/// Attribute: set on a `.daemons` directory once one of its daemons has a stop timeout, so that
/// the common case (none has) is retired with one `cgroup.kill` and no listing.
pub(crate) const ATTR_GRACEFUL: &str = "graceful";
/// Attribute: set on a daemon that may have children.
pub(crate) const ATTR_ALLOW_CHILDREN: &str = "allow_children";
/// Attribute: the PID of the guardian watching a family.
pub(crate) const ATTR_GUARDIAN: &str = "guardian";
/// Attribute: how the guardian watches a family, `light` (its main member only; see
/// [`crate::cgroup::bell`]) or `full`.
pub(crate) const ATTR_WATCH: &str = "watch";
/// Attribute: which manager a family of units belongs to (`user` or `system`).
pub(crate) const ATTR_BUS: &str = "bus";

/// What a member is to the member that started it (its owner).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A non-daemonic member: part of its owner's live part, waited for.
    Member,
    /// A daemonic member: ended when its owner's live part has ended.
    Daemon,
    /// A helper of its owner (a server or a resource tracker that its owner's children talk
    /// to): not part of the live part, so never waited for, and ended only after its owner's
    /// daemons, so that it can still clean up after them.
    Helper,
}

impl Kind {
    /// The suffix of a member directory of this kind.
    pub fn suffix(self) -> &'static str {
        match self {
            Kind::Member => MEMBER_SUFFIX,
            Kind::Daemon => DAEMON_SUFFIX,
            Kind::Helper => HELPER_SUFFIX,
        }
    }

    /// `member`, `daemon` or `helper`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Member => "member",
            Kind::Daemon => "daemon",
            Kind::Helper => "helper",
        }
    }

    /// Whether members of this kind are daemonic.
    pub fn is_daemon(self) -> bool {
        self == Kind::Daemon
    }

    /// The kind whose suffix ends `s`, and `s` without it.
    fn strip(s: &str) -> Option<(&str, Kind)> {
        [Kind::Member, Kind::Daemon, Kind::Helper].into_iter().find_map(|k| Some((s.strip_suffix(k.suffix())?, k)))
    }
}

/// The slice all top-level families of the systemd backend go into.
pub const ROOT_SLICE_STEM: &str = "daemonic";
/// Suffix of a family's level in a unit name.
const FAMILY_UNIT_SUFFIX: &str = ".family";
const SLICE: &str = ".slice";
const SCOPE: &str = ".scope";

/// How a family's cgroups are named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Directories daemonic makes itself (the cgroupfs backend).
    Dirs,
    /// systemd slices and scopes (the systemd backend).
    Units,
}

impl Style {
    /// The style of a directory of a family, from its name.
    pub fn of_dir(dir: &Path) -> Style {
        let slice = dir.as_os_str().as_encoded_bytes().ends_with(SLICE.as_bytes());
        if slice || is_scope(dir) { Style::Units } else { Style::Dirs }
    }
}

/// The slice of a new family of units: below `parent` (the slice of the member that starts a
/// nested family), else below `daemonic.slice`.
pub fn family_unit(parent: Option<&Path>, name: &str, n: u64) -> Result<UnitName> {
    let stem = parent.and_then(slice_stem).unwrap_or(ROOT_SLICE_STEM);
    UnitName::checked(format!("{stem}-{}_{n}{FAMILY_UNIT_SUFFIX}{SLICE}", unit_name::escape(name)))
}

/// Checks, before anything is created, that the units a new family of the systemd backend
/// needs at once fit systemd's 255 bytes: its slice, its main member's slice (and scope) and the
/// main member's daemons slice. Escaping can make a name four times longer (`-` is `\x2d`), so a
/// valid name of 64 characters can still be too long. The family's number is this process's id,
/// as [`family_unit`] is first tried with; a daemon's own unit is checked when it is spawned.
pub fn check_family_units(parent: Option<&Path>, name: &str) -> Result<()> {
    check_units_of(parent, name).map_err(|e| {
        Error::new(ErrorKind::InvalidInput, format!("family name {name:?} is too long for the systemd backend: {e}"))
    })
}

fn check_units_of(parent: Option<&Path>, name: &str) -> Result<()> {
    let family = family_unit(parent, name, u64::from(std::process::id()))?;
    let family_dir = Path::new(family.as_str());
    let main = family_dir.join(member_unit(family_dir, MAIN_NAME, 1, Kind::Member)?.as_str());
    for container in [daemons_dir(&main), helpers_dir(&main)] {
        let name = container.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        UnitName::checked(name.to_string())?;
    }
    Ok(())
}

/// The slice of a new member below the slice directory `parent` (its owner's slice, or the
/// owner's `.daemons` or `.helpers` slice).
pub fn member_unit(parent: &Path, name: &str, seq: u64, kind: Kind) -> Result<UnitName> {
    let stem = slice_stem(parent).ok_or_else(|| {
        Error::new(ErrorKind::InvalidInput, format!("{} is not a slice of a daemonic family", parent.display()))
    })?;
    UnitName::checked(format!("{stem}-{}_{seq}{}{SLICE}", unit_name::escape(name), kind.suffix()))
}

/// The lone scope of a daemon that may not have children, in the `.daemons` slice directory
/// `parent`: `<parent's stem>-<name>_<seq>.daemon.scope`.
pub fn daemon_scope(parent: &Path, name: &str, seq: u64) -> Result<UnitName> {
    scope_in(&member_unit(parent, name, seq, Kind::Daemon)?)
}

/// The scope of the member's processes in its slice unit `slice` ([`scope_of`] as a unit name).
pub fn scope_in(slice: &UnitName) -> Result<UnitName> {
    UnitName::checked(scope_of(Path::new(slice.as_str())).expect("a slice has a scope"))
}

/// The scope that holds the processes of the member whose slice is `member_dir`.
pub fn scope_of(member_dir: &Path) -> Option<String> {
    slice_stem(member_dir).map(|stem| format!("{stem}{SCOPE}"))
}

/// The unit that holds the member's own processes: the scope in its slice, or the member's own
/// unit when it is a lone scope; `None` on cgroupfs.
pub fn own_unit(member_dir: &Path) -> Option<String> {
    if is_scope(member_dir) { unit_of(member_dir).map(str::to_string) } else { scope_of(member_dir) }
}

/// Whether `dir` is a scope's: a lone daemon's, or a member's processes in its slice.
pub fn is_scope(dir: &Path) -> bool {
    dir.as_os_str().as_encoded_bytes().ends_with(SCOPE.as_bytes())
}

/// The cgroup directory of the member's own processes (see [`own_unit`]).
pub fn own_cgroup(member_dir: &Path) -> PathBuf {
    match scope_of(member_dir) {
        Some(scope) => member_dir.join(scope),
        None => member_dir.to_path_buf(),
    }
}

/// The unit a directory of the systemd backend is (its name), if it is one.
pub fn unit_of(dir: &Path) -> Option<&str> {
    let name = dir.file_name()?.to_str()?;
    (name.ends_with(SLICE) || name.ends_with(SCOPE)).then_some(name)
}

fn slice_stem(dir: &Path) -> Option<&str> {
    dir.file_name()?.to_str()?.strip_suffix(SLICE)
}

/// Checks a family or member name: 1 to 64 of `A-Z a-z 0-9 _ . : @ + -`, not starting with
/// `.` or `-`, without `..`. Everything else, `/` and NUL included, is refused, so a name can
/// never address another directory.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let bad = |why: String| {
        let shown: String = name.chars().take(40).flat_map(char::escape_debug).collect();
        let more = if name.chars().count() > 40 { "…" } else { "" };
        Err(Error::new(ErrorKind::InvalidInput, format!("invalid {what} name \"{shown}{more}\": {why}")))
    };
    if name.is_empty() {
        return bad("it is empty".into());
    }
    if name.len() > MAX_NAME {
        return bad(format!("it is {} bytes long; the limit is {MAX_NAME}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "_.:@+-".contains(*c))) {
        return bad(format!(
            "{c:?} is not allowed; use letters, digits and _ . : @ + - (so the name is a safe cgroup directory name)"
        ));
    }
    if name.starts_with(['.', '-']) {
        return bad("it may not start with '.' or '-'".into());
    }
    if name.contains("..") {
        return bad("it may not contain \"..\"".into());
    }
    Ok(())
}

/// Directory name of a family with id `id`.
pub fn family_dir_name(id: &str) -> String {
    format!("{FAMILY_PREFIX}{id}{FAMILY_SUFFIX}")
}

/// Directory name of a member.
pub fn member_dir_name(name: &str, seq: u64, kind: Kind) -> String {
    format!("{name}-{seq}{}", kind.suffix())
}

/// The directory that holds the daemonic children of the member in `member_dir`.
pub fn daemons_dir(member_dir: &Path) -> PathBuf {
    sibling(member_dir, DAEMONS_SUFFIX)
}

/// The directory that holds the helpers of the member in `member_dir`.
pub fn helpers_dir(member_dir: &Path) -> PathBuf {
    sibling(member_dir, HELPERS_SUFFIX)
}

/// Where the owner in `member_dir` keeps its members of `kind`: its own directory for
/// non-daemonic members, a sibling directory for daemons and for helpers.
pub fn container_of(member_dir: &Path, kind: Kind) -> PathBuf {
    match kind {
        Kind::Member => member_dir.to_path_buf(),
        Kind::Daemon => daemons_dir(member_dir),
        Kind::Helper => helpers_dir(member_dir),
    }
}

fn sibling(member_dir: &Path, suffix: &str) -> PathBuf {
    if let Some(stem) = slice_stem(member_dir) {
        return member_dir.with_file_name(format!("{stem}{suffix}{SLICE}"));
    }
    let mut name = member_dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    member_dir.with_file_name(name)
}

/// What one directory of a family is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A family: its id and name.
    Family {
        /// `name-N`, unique on the host.
        id: String,
        /// The name given at start.
        name: String,
    },
    /// A member.
    Member {
        /// The member's name.
        name: String,
        /// The number that makes the directory unique.
        seq: u64,
        /// What it is to its owner.
        kind: Kind,
    },
    /// The daemonic children of the member whose directory is named `owner`.
    Daemons {
        /// The owner's directory name.
        owner: String,
    },
    /// The helpers of the member whose directory is named `owner`.
    Helpers {
        /// The owner's directory name.
        owner: String,
    },
}

impl Node {
    /// What the directory `dir` is, from its last component; `None` for one daemonic did not make.
    /// A scope is a (lone) daemon unless it is the processes of the slice it is in.
    pub fn of_dir(dir: &Path) -> Option<Node> {
        let name = dir.file_name()?.to_str()?;
        if let Some(stem) = name.strip_suffix(SCOPE) {
            let own = dir.parent().and_then(slice_stem) == Some(stem);
            return match Node::parse_slice(stem)? {
                daemon @ Node::Member { kind: Kind::Daemon, .. } if !own => Some(daemon),
                _ => None,
            };
        }
        Node::parse(name)
    }

    /// Reads one directory name; `None` for directories daemonic did not make, and for the
    /// scopes of the systemd backend (a scope alone is not enough to tell: see [`Node::of_dir`]).
    pub fn parse(component: &str) -> Option<Node> {
        if let Some(stem) = component.strip_suffix(SLICE) {
            return Node::parse_slice(stem);
        }
        if let Some(id) = component.strip_prefix(FAMILY_PREFIX).and_then(|s| s.strip_suffix(FAMILY_SUFFIX)) {
            let (name, n) = id.rsplit_once('-')?;
            n.parse::<u64>().ok()?;
            return Some(Node::Family { id: id.to_string(), name: name.to_string() });
        }
        if let Some((owner, container)) = Node::strip_container(component) {
            return match Node::parse(owner)? {
                Node::Member { .. } => Some(container(owner.to_string())),
                _ => None,
            };
        }
        let (stem, kind) = Kind::strip(component)?;
        let (name, seq) = stem.rsplit_once('-')?;
        Some(Node::Member { name: name.to_string(), seq: seq.parse().ok()?, kind })
    }

    /// `s` without a container's suffix (`.daemons`, `.helpers`), and the container's node.
    fn strip_container(s: &str) -> Option<(&str, ContainerNode)> {
        if let Some(owner) = s.strip_suffix(DAEMONS_SUFFIX) {
            return Some((owner, |owner| Node::Daemons { owner }));
        }
        Some((s.strip_suffix(HELPERS_SUFFIX)?, |owner| Node::Helpers { owner }))
    }

    /// Reads the name of a slice without `.slice`: its last level, unescaped, in the grammar
    /// of [`Node::parse`] with `_` before the number.
    fn parse_slice(stem: &str) -> Option<Node> {
        let level = unit_name::unescape(stem.rsplit('-').next()?)?;
        if let Some((owner, container)) = Node::strip_container(&level) {
            return match Node::parse_level(owner)? {
                Node::Member { .. } => {
                    let owner_stem = Node::strip_container(stem)?.0;
                    Some(container(format!("{owner_stem}{SLICE}")))
                }
                _ => None,
            };
        }
        Node::parse_level(&level)
    }

    fn parse_level(level: &str) -> Option<Node> {
        let number = |s: &str| -> Option<(String, u64)> {
            let (name, n) = s.rsplit_once('_')?;
            Some((name.to_string(), n.parse().ok()?))
        };
        if let Some(id) = level.strip_suffix(FAMILY_UNIT_SUFFIX) {
            let (name, n) = number(id)?;
            return Some(Node::Family { id: format!("{name}-{n}"), name });
        }
        let (stem, kind) = Kind::strip(level)?;
        let (name, seq) = number(stem)?;
        Some(Node::Member { name, seq, kind })
    }
}

/// Makes a container's node from its owner's directory name.
type ContainerNode = fn(String) -> Node;

/// Where a process stands in a family, read from its cgroup path alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The family's directory.
    pub family_dir: PathBuf,
    /// The family's id (`name-N`).
    pub family_id: String,
    /// The family's name.
    pub family_name: String,
    /// The member's directory.
    pub member_dir: PathBuf,
    /// The member's name.
    pub name: String,
    /// Whether the member is daemonic.
    pub daemon: bool,
    /// What the member is to its owner.
    pub kind: Kind,
}

impl Position {
    /// The member and family a cgroup directory belongs to: the innermost member directory on
    /// the path and the innermost family above it. `None` outside any family.
    pub fn of_cgroup(dir: &Path) -> Option<Position> {
        let mut member: Option<(PathBuf, String, Kind)> = None;
        let mut cur = Some(dir);
        while let Some(d) = cur {
            match Node::of_dir(d) {
                Some(Node::Member { name, kind, .. }) if member.is_none() => {
                    member = Some((d.to_path_buf(), name, kind));
                }
                Some(Node::Family { id, name }) => {
                    let (member_dir, mname, kind) = member?;
                    return Some(Position {
                        family_dir: d.to_path_buf(),
                        family_id: id,
                        family_name: name,
                        member_dir,
                        name: mname,
                        daemon: kind.is_daemon(),
                        kind,
                    });
                }
                _ => {}
            }
            cur = d.parent();
        }
        None
    }

    /// How this member's family is named.
    pub fn style(&self) -> Style {
        Style::of_dir(&self.member_dir)
    }

    /// Whether this daemonic member was started with `allow_children`.
    pub fn allows_children(&self) -> bool {
        !self.daemon || cgroup::attr(&self.member_dir, ATTR_ALLOW_CHILDREN).is_some()
    }
}

#[cfg(test)]
mod tests {
    use crate::cgroup::layout::*;

    #[test]
    fn names_are_checked() {
        for good in ["web", "worker_1", "a.b", "x:y@z+1-2", "A"] {
            assert!(validate_name("member", good).is_ok(), "{good}");
        }
        let long = "x".repeat(10_000);
        for (bad, why) in [
            ("", "empty"),
            ("a/b", "'/'"),
            ("..", "start"),
            ("a..b", "\"..\""),
            (".hidden", "start"),
            ("-x", "start"),
            ("nul\0", "'\\0'"),
            ("sp ace", "' '"),
            (long.as_str(), "10000 bytes"),
        ] {
            let e = validate_name("member", bad).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn directory_names_parse_back() {
        assert_eq!(
            Node::parse(&member_dir_name("log-x", 3, Kind::Daemon)),
            Some(Node::Member { name: "log-x".into(), seq: 3, kind: Kind::Daemon })
        );
        assert_eq!(
            Node::parse(&member_dir_name("w", 12, Kind::Member)),
            Some(Node::Member { name: "w".into(), seq: 12, kind: Kind::Member })
        );
        assert_eq!(
            Node::parse(&family_dir_name("web-42")),
            Some(Node::Family { id: "web-42".into(), name: "web".into() })
        );
        assert_eq!(Node::parse("main-1.member.daemons"), Some(Node::Daemons { owner: "main-1.member".into() }));
        assert_eq!(Node::parse("main-1.member.helpers"), Some(Node::Helpers { owner: "main-1.member".into() }));
        assert_eq!(
            Node::parse(&member_dir_name("tracker", 5, Kind::Helper)),
            Some(Node::Member { name: "tracker".into(), seq: 5, kind: Kind::Helper })
        );
        for other in ["cgroup.procs", "user.slice", "x.daemons", "daemonic-web.family", "a-b.member"] {
            assert_eq!(Node::parse(other), None, "{other}");
        }
    }

    #[test]
    fn unit_names_parse_back() {
        let fam = PathBuf::from("/cg/daemonic.slice").join(family_unit(None, "web", 42).expect("family").as_str());
        assert_eq!(fam.file_name().unwrap(), "daemonic-web_42.family.slice");
        assert_eq!(Node::of_dir(&fam), Some(Node::Family { id: "web-42".into(), name: "web".into() }));
        let main = fam.join(member_unit(&fam, MAIN_NAME, 1, Kind::Member).expect("main").as_str());
        assert_eq!(main.file_name().unwrap(), "daemonic-web_42.family-main_1.member.slice");
        assert_eq!(scope_of(&main).as_deref(), Some("daemonic-web_42.family-main_1.member.scope"));
        let daemons = daemons_dir(&main);
        assert_eq!(daemons.file_name().unwrap(), "daemonic-web_42.family-main_1.member.daemons.slice");
        assert_eq!(
            Node::of_dir(&daemons),
            Some(Node::Daemons { owner: "daemonic-web_42.family-main_1.member.slice".into() })
        );
        let helpers = helpers_dir(&main);
        assert_eq!(helpers.file_name().unwrap(), "daemonic-web_42.family-main_1.member.helpers.slice");
        assert_eq!(
            Node::of_dir(&helpers),
            Some(Node::Helpers { owner: "daemonic-web_42.family-main_1.member.slice".into() })
        );
        let tracker = helpers.join(member_unit(&helpers, "tracker", 6, Kind::Helper).expect("helper").as_str());
        assert_eq!(tracker.file_name().unwrap(), "daemonic-web_42.family-main_1.member.helpers-tracker_6.helper.slice");
        assert_eq!(Node::of_dir(&tracker), Some(Node::Member { name: "tracker".into(), seq: 6, kind: Kind::Helper }));
        let p = Position::of_cgroup(&tracker.join(scope_of(&tracker).expect("scope"))).expect("position of a helper");
        assert_eq!((p.name.as_str(), p.kind, p.daemon), ("tracker", Kind::Helper, false));
        let log = daemons.join(member_unit(&daemons, "log-x", 3, Kind::Daemon).expect("daemon").as_str());
        assert_eq!(log.file_name().unwrap(), "daemonic-web_42.family-main_1.member.daemons-log\\x2dx_3.daemon.slice");
        assert_eq!(Node::of_dir(&log), Some(Node::Member { name: "log-x".into(), seq: 3, kind: Kind::Daemon }));
        let scope = log.join(scope_of(&log).expect("scope"));
        let p = Position::of_cgroup(&scope).expect("position");
        assert_eq!((p.family_id.as_str(), p.name.as_str(), p.daemon), ("web-42", "log-x", true));
        assert_eq!((p.member_dir.as_path(), p.style()), (log.as_path(), Style::Units));
        // A daemon without children of its own is a lone scope in the `.daemons` slice; the scope
        // of a member's slice is not a member.
        let lone = daemons.join(daemon_scope(&daemons, "log-x", 4).expect("lone daemon").as_str());
        assert_eq!(lone.file_name().unwrap(), "daemonic-web_42.family-main_1.member.daemons-log\\x2dx_4.daemon.scope");
        assert_eq!(Node::of_dir(&lone), Some(Node::Member { name: "log-x".into(), seq: 4, kind: Kind::Daemon }));
        assert_eq!((own_unit(&lone), own_cgroup(&lone)), (unit_of(&lone).map(str::to_string), lone.clone()));
        let p = Position::of_cgroup(&lone).expect("position of a lone daemon");
        assert_eq!(
            (p.name.as_str(), p.daemon, p.member_dir.as_path(), p.style()),
            ("log-x", true, lone.as_path(), Style::Units)
        );
        assert_eq!(Node::of_dir(&scope), None, "a daemon's scope in its own slice");
        assert_eq!(Node::of_dir(&main.join(scope_of(&main).expect("scope"))), None, "a member's scope");
        assert_eq!((own_unit(&main), own_cgroup(&main)), (scope_of(&main), main.join(scope_of(&main).unwrap())));
        let nested = family_unit(Some(&main), "sub", 9).expect("nested");
        assert_eq!(nested.as_str(), "daemonic-web_42.family-main_1.member-sub_9.family.slice");
        for other in ["user.slice", "daemonic.slice", "app-x_1.slice", "init.scope", "x_1.member.scope"] {
            assert_eq!(Node::parse(other), None, "{other}");
        }
        let long = "n".repeat(MAX_NAME);
        let deep =
            (0..3).try_fold(main.clone(), |d, i| member_unit(&d, &long, i, Kind::Member).map(|u| d.join(u.as_str())));
        assert!(deep.expect_err("too long").to_string().contains("systemd allows 255"));
    }

    #[test]
    fn family_units_are_checked_whole_before_anything_exists() {
        // Fits as a family slice, but not with the main member's slices below it.
        let name = format!("a{}", "+".repeat(54));
        validate_name("family", &name).expect("a valid name");
        family_unit(None, &name, u64::from(std::process::id())).expect("the family slice alone fits");
        let e = check_family_units(None, &name).expect_err("the main member's units do not fit");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("too long for the systemd backend"), "{e}");
        assert!(e.to_string().contains("systemd allows 255"), "{e}");
        check_family_units(None, &"n".repeat(MAX_NAME)).expect("64 plain characters fit");
    }

    #[test]
    fn daemons_and_helpers_dirs_are_siblings() {
        let main = Path::new("/cg/f/main-1.member");
        assert_eq!(daemons_dir(main), PathBuf::from("/cg/f/main-1.member.daemons"));
        assert_eq!(helpers_dir(main), PathBuf::from("/cg/f/main-1.member.helpers"));
        assert_eq!(container_of(main, Kind::Daemon), daemons_dir(main));
        assert_eq!(container_of(main, Kind::Helper), helpers_dir(main));
        assert_eq!(container_of(main, Kind::Member), main);
    }

    #[test]
    fn positions_are_read_from_paths() {
        let p = Position::of_cgroup(Path::new("/cg/daemonic-web-7.family/main-1.member.daemons/log-2.daemon"))
            .expect("position");
        assert_eq!(
            (p.family_id.as_str(), p.family_name.as_str(), p.name.as_str(), p.daemon),
            ("web-7", "web", "log", true)
        );
        let p = Position::of_cgroup(Path::new("/cg/daemonic-web-7.family/main-1.member/w-3.member")).expect("position");
        assert_eq!((p.name.as_str(), p.daemon), ("w", false));
        assert_eq!(p.member_dir, PathBuf::from("/cg/daemonic-web-7.family/main-1.member/w-3.member"));
        // A nested family belongs to the innermost member.
        let p =
            Position::of_cgroup(Path::new("/cg/daemonic-a-1.family/main-1.member/daemonic-b-2.family/main-1.member"))
                .expect("nested");
        assert_eq!(p.family_id, "b-2");
        assert_eq!(Position::of_cgroup(Path::new("/cg/user.slice")), None);
        assert_eq!(Position::of_cgroup(Path::new("/cg/daemonic-a-1.family")), None);
    }
}
