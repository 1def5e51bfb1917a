//! The calling process's family: where members are spawned, and how a family ends.
//!
//! A process that already is a member (it runs under `daemonic run`, or was spawned by daemonic)
//! joins its own family: its children go below its own cgroup. A plain program creates a new
//! family under its own cgroup (or the one it is given), starts the family's guardian, and moves
//! itself into the family as its main member, so that everything it forks is counted in the
//! family's live part.
//!
//! `shutdown` (also run on drop) is CPython's exit handler done in the order the seed describes:
//! wait for the non-daemonic children, then end the daemons atomically (C4, C7). A process that
//! dies without shutting down loses nothing: the guardian does the same from outside.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::backend::Backend;
use crate::backend::members::{Members, NewMember};
use crate::backend::systemd::Bus;
use crate::cgroup::layout::{self, Kind, Position};
use crate::cgroup::retire::Retirement;
use crate::cgroup::{self, Hierarchy};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::founding::{FamilyOptions, Founder};
use crate::runtime::member::{Inner, Member};
use crate::spawn::command::{Command, Placement};
use crate::spawn::seccomp;
use crate::spawn::{self, Request, Spawned};

/// How many `Family` handles of this process are not shut down yet.
static OPEN_HANDLES: AtomicUsize = AtomicUsize::new(0);

/// The family this process created and moved into, if any; the last handle to shut down
/// leaves it.
static ROOT: Mutex<Option<Root>> = Mutex::new(None);

/// The daemons this process started, through any of its handles, until they are reaped: what a
/// process that is not its member's own process ends when it shuts down.
static OWN_DAEMONS: Mutex<Roster> = Mutex::new(Roster::new());

/// The members a handle (or the process, for its daemons) remembers until they are reaped.
///
/// Reaped members are forgotten, so that their pidfds do not pile up in a long-lived family, but
/// only once the list has doubled since the last pruning: a pruning at every spawn made spawning
/// O(N) in the family's size, and worse, it locked every member's status, writing to pages that
/// the fork just before had made copy-on-write, one page fault each.
#[derive(Debug)]
struct Roster {
    members: Vec<Arc<Inner>>,
    prune_at: usize,
}

impl Roster {
    const FIRST_PRUNE: usize = 64;

    const fn new() -> Roster {
        Roster { members: Vec::new(), prune_at: Roster::FIRST_PRUNE }
    }

    /// Adds `member`, first forgetting the reaped ones if the list has grown enough (amortized
    /// O(1) per member).
    fn push(&mut self, member: Arc<Inner>) {
        if self.members.len() >= self.prune_at {
            self.members.retain(|c| !c.is_reaped());
            self.prune_at = (2 * self.members.len()).max(Roster::FIRST_PRUNE);
        }
        self.members.push(member);
    }
}

/// The calling process as a member: name, daemon flag and family (Python's `current_process()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The process ID.
    pub pid: u32,
    /// The member's name; `MainProcess` outside any family, as in Python.
    pub name: String,
    /// Whether the process is daemonic. A process not started by daemonic is not (C2).
    pub daemon: bool,
    /// The family's id (`name-N`), if the process is in one.
    pub family: Option<String>,
    /// The process's cgroup directory.
    pub cgroup: PathBuf,
}

/// The calling process as daemonic sees it, read from its cgroup (C8).
pub fn current_process() -> Result<ProcessInfo> {
    let h = Hierarchy::host()?;
    let cgroup = h.cgroup_of(0)?;
    let pid = std::process::id();
    Ok(match Position::of_cgroup(&cgroup) {
        Some(p) => ProcessInfo { pid, name: p.name, daemon: p.daemon, family: Some(p.family_id), cgroup },
        None => ProcessInfo { pid, name: "MainProcess".into(), daemon: false, family: None, cgroup },
    })
}

/// The path [`choose_base`] checks: `explicit`, else `DAEMONIC_CGROUP` (absolute below the
/// cgroup2 mount, or relative to it), else the caller's own cgroup; and whether it was given.
pub(crate) fn base_candidate(h: &Hierarchy, explicit: Option<&Path>) -> Result<(PathBuf, bool)> {
    let from_env = std::env::var_os("DAEMONIC_CGROUP").filter(|v| !v.is_empty()).map(PathBuf::from);
    Ok(match explicit.map(Path::to_path_buf).or(from_env) {
        Some(p) if p.starts_with(h.mount()) => (p, true),
        Some(p) => (h.join(&p.to_string_lossy()), true),
        None => (h.cgroup_of(0)?, false),
    })
}

/// The base cgroup under which a new family goes: `explicit`, else `DAEMONIC_CGROUP`, else the
/// caller's own cgroup. Checked to be a writable cgroup v2 directory.
pub(crate) fn choose_base(h: &Hierarchy, explicit: Option<&Path>) -> Result<PathBuf> {
    let (base, given) = base_candidate(h, explicit)?;
    if explicit.is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "the cgroup base (--cgroup) is empty; give a cgroup path such as /my.slice, or leave it out",
        ));
    }
    // `..` and symbolic links could lead out of the cgroup2 mount (into a v1 hierarchy on a
    // hybrid host, or any directory holding a file named cgroup.procs): the real path decides.
    let base = match std::fs::canonicalize(&base) {
        Ok(real) => {
            let mount = std::fs::canonicalize(h.mount()).unwrap_or_else(|_| h.mount().to_path_buf());
            if !real.starts_with(&mount) {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{} is {}, outside the cgroup2 mount {}; the cgroup base must be a cgroup v2 directory",
                        base.display(),
                        real.display(),
                        mount.display()
                    ),
                ));
            }
            real
        }
        Err(_) => base,
    };
    if !base.join("cgroup.procs").exists() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is not a cgroup v2 directory (a cgroup path is read below the cgroup2 mount {})",
                base.display(),
                h.mount().display()
            ),
        ));
    }
    if !cgroup::writable(&base) {
        let whose = if given { "the given cgroup" } else { "this process's own cgroup" };
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "cannot create cgroups in {} ({whose}): permission denied. daemonic needs a delegated cgroup: \
                 run it with `systemd-run --user -p Delegate=yes --scope daemonic …`, or set Delegate=yes in its \
                 service unit, or give a writable cgroup with --cgroup PATH or DAEMONIC_CGROUP",
                base.display()
            ),
        ));
    }
    Ok(base)
}

/// The no-fork filters for a new member: none unless it is a daemon that may not have children.
/// Checks a request for a contained member (see [`Command::contain`]) before anything exists:
/// it must be a member that may have children, and the caller must be able to create a PID
/// namespace.
pub(crate) fn check_contain(contain: bool, daemon: bool, allow_children: bool) -> Result<()> {
    if !contain {
        return Ok(());
    }
    if daemon && !allow_children {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "contain applies to members that may have children (non-daemonic members, or daemons with \
             allow_children); this daemon cannot have any",
        ));
    }
    if !has_cap_sys_admin() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "a contained member runs in a PID namespace of its own, and creating one needs CAP_SYS_ADMIN \
             (run as root), which this process does not have",
        ));
    }
    Ok(())
}

/// Whether the calling process has `CAP_SYS_ADMIN` in its effective set (`CapEff` of
/// `/proc/self/status`).
fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim().to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// What a new member is: a helper when asked (never also a daemon), else a daemon or not as
/// asked, else as daemonic as the calling process (C1).
pub(crate) fn member_kind(helper: bool, daemon: Option<bool>, caller_daemon: bool) -> Result<Kind> {
    match (helper, daemon) {
        (true, Some(true)) => Err(Error::new(
            ErrorKind::InvalidInput,
            "a member cannot be both a helper and a daemon: a helper outlives its owner's daemons",
        )),
        (true, _) => Ok(Kind::Helper),
        (false, d) => Ok(if d.unwrap_or(caller_daemon) { Kind::Daemon } else { Kind::Member }),
    }
}

pub(crate) fn filters_for(daemon: bool, allow_children: bool) -> Result<&'static [Vec<libc::sock_filter>]> {
    if daemon && !allow_children { no_fork_filters() } else { Ok(&[]) }
}

/// The no-fork filters of this architecture, built once.
pub(crate) fn no_fork_filters() -> Result<&'static [Vec<libc::sock_filter>]> {
    static FILTERS: OnceLock<Vec<Vec<libc::sock_filter>>> = OnceLock::new();
    if let Some(f) = FILTERS.get() {
        return Ok(f);
    }
    let built = seccomp::no_fork_filters(seccomp::native_arch()?)?;
    Ok(FILTERS.get_or_init(|| built))
}

/// Options for [`Family::builder`].
#[derive(Clone, Debug, Default)]
pub struct FamilyBuilder {
    name: Option<String>,
    cgroup: Option<PathBuf>,
    stop_timeout: Option<Duration>,
    backend: Option<Backend>,
    bus: Option<Bus>,
}

impl FamilyBuilder {
    /// The family's name when a new one is created (default: the program's file name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The cgroup under which a new family is created (default: `DAEMONIC_CGROUP`, else the
    /// process's own cgroup). An absolute path below the cgroup2 mount, or a path relative to it.
    pub fn cgroup(mut self, path: impl Into<PathBuf>) -> Self {
        self.cgroup = Some(path.into());
        self
    }

    /// The default stop timeout of the family's daemons (see [`Command::stop_timeout`]).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = Some(timeout);
        self
    }

    /// The backend of a new family (default: `DAEMONIC_BACKEND`, else [`Backend::Auto`]).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// The systemd manager of a new family on the systemd backend (default: the user manager
    /// for non-root callers, the system manager for root).
    pub fn bus(mut self, bus: Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Joins the calling process's family, or creates one and moves the process into it.
    pub fn open(self) -> Result<Family> {
        let h = Hierarchy::host()?;
        let own = h.cgroup_of(0)?;
        if let Some(position) = Position::of_cgroup(&own) {
            return Ok(Family::with(position));
        }
        let name = match self.name {
            Some(n) => n,
            None => crate::spawn::command::default_name(std::env::current_exe().unwrap_or_default().as_os_str()),
        };
        let backend = match self.backend {
            Some(b) => b,
            None => Backend::from_env()?,
        };
        let explicit_base = self.cgroup.is_some() || std::env::var_os("DAEMONIC_CGROUP").is_some_and(|v| !v.is_empty());
        let backend = if backend == Backend::Auto && explicit_base { Backend::Cgroupfs } else { backend };
        let bus = backend.resolve(self.bus)?.bus;
        if let (Some(_), Some(base)) = (bus, &self.cgroup) {
            return Err(cgroup_with_systemd(base));
        }
        let founder = Founder::new(bus, None, || choose_base(&h, self.cgroup.as_deref()))?;
        let options = FamilyOptions { name: &name, stop_timeout: self.stop_timeout, properties: &[] };
        let (main_dir, guardian) = founder.open(&options, &own)?;
        let position = Position::of_cgroup(&main_dir).expect("a family's main member has a position");
        log_opened(&position, founder.backend_name());
        *ROOT.lock().unwrap_or_else(|p| p.into_inner()) = Some(Root { original: own, guardian });
        Ok(Family::with(position))
    }
}

/// Logs a family that the calling process opened and now is the main member of.
fn log_opened(position: &Position, backend: &str) {
    let family = crate::log::FamilyRef { name: &position.family_name, id: &position.family_id };
    crate::log::family_started(family, backend, &position.family_dir);
    let pid = std::process::id();
    crate::log::spawned(crate::log::MemberRef { family, name: &position.name, daemon: false, pid });
}

/// The error for a cgroup base given with the systemd backend.
pub(crate) fn cgroup_with_systemd(base: &Path) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!(
            "a cgroup base ({}, from --cgroup or DAEMONIC_CGROUP) applies to the cgroupfs backend; the systemd \
             backend puts families in daemonic.slice of its manager",
            base.display()
        ),
    )
}

/// What a family created by this process needs to end it.
#[derive(Debug)]
struct Root {
    /// Where this process was before it entered the family.
    original: PathBuf,
    guardian: Spawned,
}

impl std::fmt::Debug for Spawned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawned").field("pid", &self.pid).finish_non_exhaustive()
    }
}

/// The calling process's family: spawns members and ends them as Python's exit handler would,
/// in the contract's order.
///
/// ```no_run
/// use daemonic::{Command, Family};
///
/// let family = Family::new()?;
/// let logger = family.spawn(Command::new("logger-daemon").daemon(true))?;
/// let worker = family.spawn(Command::new("worker").arg("--once"))?;
/// assert!(logger.daemon() && !worker.daemon());
/// worker.join(None)?;
/// family.shutdown()?; // waits for non-daemonic children, then kills the daemons at once
/// # Ok::<(), daemonic::Error>(())
/// ```
#[derive(Debug)]
pub struct Family {
    position: Position,
    children: Mutex<Roster>,
    closed: AtomicBool,
}

impl Family {
    /// Joins or creates the calling process's family with default options.
    pub fn new() -> Result<Family> {
        FamilyBuilder::default().open()
    }

    /// Options for joining or creating a family.
    pub fn builder() -> FamilyBuilder {
        FamilyBuilder::default()
    }

    fn with(position: Position) -> Family {
        OPEN_HANDLES.fetch_add(1, Ordering::AcqRel);
        Family { position, children: Mutex::new(Roster::new()), closed: AtomicBool::new(false) }
    }

    /// The family's id (`name-N`).
    pub fn id(&self) -> &str {
        &self.position.family_id
    }

    /// The family's name.
    pub fn family_name(&self) -> &str {
        &self.position.family_name
    }

    /// The family's cgroup directory.
    pub fn cgroup(&self) -> &Path {
        &self.position.family_dir
    }

    /// The calling process's member name in this family.
    pub(crate) fn member_name(&self) -> &str {
        &self.position.name
    }

    /// Whether the calling process is a daemonic member.
    pub fn daemon(&self) -> bool {
        self.position.daemon
    }

    /// Starts a member as a child of the calling process.
    ///
    /// Fails with [`ErrorKind::DaemonChildren`] in a daemonic process (unless it was started with
    /// `allow_children`). Checks the program before creating anything, and leaves nothing behind
    /// when it fails.
    pub fn spawn(&self, cmd: &mut Command) -> Result<Member> {
        let (kind, name) = self.admit(cmd)?;
        let daemon = kind.is_daemon();
        check_contain(cmd.get_contain(), daemon, cmd.get_allow_children())?;
        let prepared = cmd.prepare()?;
        let filters = filters_for(daemon, cmd.get_allow_children())?;
        let placement = match cmd.get_placement() {
            Placement::Auto => Placement::from_env()?,
            p => p,
        };
        let properties = cmd.checked_properties()?;
        let request = Request {
            filters,
            placement,
            keep: cmd.inherited_fd(),
            contain: cmd.get_contain(),
            ..Request::new(&prepared, [&cmd.stdin, &cmd.stdout, &cmd.stderr])
        };
        let member = NewMember {
            owner: &self.position,
            name: &name,
            kind,
            stop_timeout: cmd.get_stop_timeout(),
            allow_children: cmd.get_allow_children(),
            properties: &properties,
            seq: layout::next_seq(),
        };
        let (spawned, dir) = Members::of(&self.position)?.start(&member, &request)?;
        Ok(self.adopt(spawned, name, kind, dir))
    }

    /// What a new member described by `cmd` is and is called, once this family may start it:
    /// not shut down, and the calling process may have children.
    fn admit(&self, cmd: &Command) -> Result<(Kind, String)> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::InvalidInput, format!("family {} is shut down", self.id())));
        }
        if !self.position.allows_children() {
            return Err(Error::daemon_children());
        }
        let kind = member_kind(cmd.get_helper(), cmd.get_daemon(), self.position.daemon)?;
        Ok((kind, cmd.effective_name()?))
    }

    /// Makes the existing process `pid` a new member, as [`Family::spawn`] makes a new process
    /// one: for bindings whose children are forked by a server of their own (the Python start
    /// method), so that the process exists before its member does. Only what `cmd` says the
    /// member is counts (its name, daemon or helper, `allow_children`, stop timeout and
    /// properties); its program is not run. `pid` must not do the member's work before this
    /// returns (its starter holds it). On error `abandon` runs first: it must end `pid` (or
    /// take it out of the member) and say whether it did; then nothing of the member remains.
    /// Returns the member's cgroup directory. The member is not one of this handle's children
    /// ([`Family::active_children`], [`Family::shutdown`]): its starter waits for it.
    #[doc(hidden)]
    pub fn place(&self, pid: u32, cmd: &Command, abandon: &mut dyn FnMut() -> bool) -> Result<PathBuf> {
        let refuse = |e: Error, abandon: &mut dyn FnMut() -> bool| {
            abandon();
            Err(e)
        };
        let checked = self.admit(cmd).and_then(|(kind, name)| Ok((kind, name, cmd.checked_properties()?)));
        let (kind, name, properties) = match checked {
            Ok(c) => c,
            Err(e) => return refuse(e, abandon),
        };
        let member = NewMember {
            owner: &self.position,
            name: &name,
            kind,
            stop_timeout: cmd.get_stop_timeout(),
            allow_children: cmd.get_allow_children(),
            properties: &properties,
            seq: layout::next_seq(),
        };
        let members = match Members::of(&self.position) {
            Ok(m) => m,
            Err(e) => return refuse(e, abandon),
        };
        let dir = members.place_process(&member, pid, abandon)?;
        let family = crate::log::FamilyRef { name: &self.position.family_name, id: &self.position.family_id };
        crate::log::spawned(crate::log::MemberRef { family, name: &name, daemon: kind.is_daemon(), pid });
        Ok(dir)
    }

    /// Makes a handle for a member just started, and remembers it for [`Family::shutdown`].
    fn adopt(&self, spawned: Spawned, name: String, kind: Kind, dir: PathBuf) -> Member {
        let inner = Arc::new(Inner {
            pid: spawned.pid,
            pidfd: spawned.pidfd,
            name,
            daemon: kind.is_daemon(),
            helper: kind == Kind::Helper,
            dir,
            family_name: self.position.family_name.clone(),
            family_id: self.position.family_id.clone(),
            status: Mutex::new(None),
        });
        let family = crate::log::FamilyRef { name: &inner.family_name, id: &inner.family_id };
        crate::log::spawned(crate::log::MemberRef {
            family,
            name: &inner.name,
            daemon: inner.daemon,
            pid: inner.pid as u32,
        });
        self.lock_children().push(Arc::clone(&inner));
        if inner.daemon {
            OWN_DAEMONS.lock().unwrap_or_else(|p| p.into_inner()).push(Arc::clone(&inner));
        }
        Member { inner, stdin: spawned.stdin, stdout: spawned.stdout, stderr: spawned.stderr }
    }

    /// Whether the calling process is the member's own process (the one whose PID the member's
    /// directory records), not a process it forked that joined the family from its cgroup.
    fn is_members_own_process(&self) -> bool {
        cgroup::attr(&self.position.member_dir, layout::ATTR_PID).and_then(|p| p.parse::<u32>().ok())
            == Some(std::process::id())
    }

    fn lock_children(&self) -> std::sync::MutexGuard<'_, Roster> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The members spawned through this family that are still running (Python's
    /// `active_children()`); those that ended are reaped and forgotten.
    pub fn active_children(&self) -> Vec<Member> {
        let mut children = self.lock_children();
        children.members.retain(|c| matches!(c.try_reap(), Ok(None)));
        children.members.iter().map(|c| Member::from_inner(Arc::clone(c))).collect()
    }

    /// Ends the family's part that belongs to this process: waits for every non-daemonic child
    /// spawned through this handle, then, if no other `Family` handle of this process is still
    /// open, ends the process's daemons at once (SIGTERM first for those with a stop timeout):
    /// in the member's own process, every daemon of the member (one `cgroup.kill` of its
    /// `.daemons` directory); in a process the member forked that joined the family from the
    /// member's cgroup, only the daemons this process started, one by one, for the others are
    /// not its own (the guardian ends them when the member ends). For a family this process
    /// created, it then leaves the family and waits until the guardian has removed it. Calling
    /// it again does nothing.
    pub fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let children: Vec<Arc<Inner>> = self.lock_children().members.clone();
        // Helpers are not waited for: they end after the daemons, when the guardian stops them.
        for child in children.iter().filter(|c| !c.daemon && !c.helper) {
            child.join(None)?;
        }
        // The daemons belong to the process, not to one handle: only the last handle open in
        // this process ends them.
        if OPEN_HANDLES.fetch_sub(1, Ordering::AcqRel) > 1 {
            return Ok(());
        }
        let own = std::mem::take(&mut OWN_DAEMONS.lock().unwrap_or_else(|p| p.into_inner()).members);
        if self.is_members_own_process() {
            let container = layout::daemons_dir(&self.position.member_dir);
            if container.exists() {
                Retirement::start(&container, &self.position.family_dir)?.finish()?;
            }
        } else {
            // A process the member forked (a helper that joined the family) shares the member's
            // `.daemons` directory with the member's own process and its other helpers: a kill
            // of that directory would end daemons that are not this process's (C4). It ends
            // the daemons it started, one by one, and leaves the rest to their starters and to
            // the guardian, which ends them all once the member's live part is empty.
            let family_dir = &self.position.family_dir;
            let started: Vec<Retirement> = own
                .iter()
                .filter(|d| d.dir.exists())
                .map(|d| Retirement::of_daemon(&d.dir, family_dir))
                .collect::<Result<_>>()?;
            for r in started {
                r.finish()?;
            }
        }
        for child in own.iter().chain(children.iter().filter(|c| c.daemon)) {
            child.join(None)?;
        }
        self.lock_children().members.clear();
        let root = ROOT.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(root) = root {
            cgroup::enter(&root.original).map_err(|e| {
                e.context(format!(
                    "cannot leave family {}: the process cannot go back to its cgroup before it",
                    self.id()
                ))
            })?;
            spawn::reap(&root.guardian.pidfd, "the guardian")?;
        }
        Ok(())
    }
}

impl Drop for Family {
    /// Runs [`Family::shutdown`]; an error is printed to stderr, as a drop cannot return it.
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("daemonic: error: shutting down family {}: {e}", self.id());
        }
    }
}
