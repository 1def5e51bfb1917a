//! The guardian: one small process per family that ends daemons when their owner's live part
//! has ended, whatever happened to the process that started the family (C4, C10).
//!
//! It is a re-execution of the current binary (`/proc/self/exe`), recognised before `main` by an
//! `.init_array` hook in [`crate::sys`], so it works in any program that links daemonic without
//! that program's cooperation, and it never runs Rust code in a forked copy of a multithreaded
//! parent. It lives outside the family's tree (in the cgroup of the process that created the
//! family), in its own session, and ignores SIGINT, SIGTERM and SIGHUP: only SIGKILL stops it.
//!
//! It starts *light* (see [`crate::cgroup::bell`]): while the family has no member but its main
//! one, it sleeps in `poll(POLLPRI)` on the main member's `cgroup.events` and on the family's
//! bell, which whoever creates the family's first other member rings. Then, or from the start
//! when there is no bell, it watches *in full*: it sleeps in `poll` on an inotify descriptor,
//! and each directory of the family is watched twice: the directory for new sub-cgroups and
//! attribute changes, its `cgroup.events` for `populated` flips. On any event it looks at that
//! one directory again (at once when the look may kill or stop something; looks that only
//! tidy up wait a few milliseconds in a burst of events, see [`COALESCE`]):
//! - a member that has ended (its directory is unpopulated and has run, or is gone) and has a
//!   `.daemons` sibling: the retirement of those daemons starts (see [`crate::cgroup::retire`]);
//! - an ended member without daemons but with a `.helpers` sibling: the helpers get SIGTERM,
//!   and SIGKILL after their stop timeout (they end only after the daemons, to clean up after
//!   them);
//! - a `.daemons` or `.helpers` directory being retired that is now empty: it is removed and
//!   its owner looked at again;
//! - an ended member with neither: its directory is removed.
//!
//! When the main member is done, a last `cgroup.kill` on the family takes anything left, the
//! family's directories are removed, and the guardian exits 0.
//!
//! On the systemd backend the directories are slices, and "removed" means stopped over D-Bus
//! (the family's slice last, waiting for its job, so no unit of the family remains when the
//! guardian exits). A unit someone else stops (`systemctl stop`) has its cgroup removed by
//! systemd, and a removed cgroup gets no event of its own (kernfs sends none), but the
//! `rmdir` is seen by the watch on its parent (`IN_DELETE`): the guardian looks at that
//! directory again, and a member whose unit was stopped has ended. So the guardian needs no
//! signal from the manager, and does not subscribe to them (a subscriber makes the manager send
//! every unit's signals, a cost on each spawn).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::mem::MaybeUninit;
use std::ops::Bound;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};
use rustix::fs::FileType;
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

use crate::backend::systemd::{Bus, Client};
use crate::cgroup::layout::{self, Node};
use crate::cgroup::retire::Retirement;
use crate::cgroup::{self, bell};
use crate::error::{Error, Result};
use crate::spawn::command::{Prepared, Stdio};
use crate::spawn::{self, Request, Spawned};
use crate::{log, sys};

/// Environment variable present in a guardian's environment.
pub(crate) const MARKER: &str = "DAEMONIC_GUARDIAN";
/// A guardian's `argv[0]`.
pub(crate) const ARGV0: &str = "daemonic-guardian";

/// A family that was just created, with its guardian running.
pub(crate) struct NewFamily {
    pub id: String,
    pub dir: PathBuf,
    pub main_dir: PathBuf,
    pub guardian: Spawned,
}

impl NewFamily {
    /// Ends the guardian at once (SIGKILL) and reaps it, for a family being undone.
    pub(crate) fn end_guardian(&self) {
        let _ = rustix::process::pidfd_send_signal(&self.guardian.pidfd, rustix::process::Signal::KILL);
        let _ = spawn::reap(&self.guardian.pidfd, "the guardian");
    }
}

/// How a guardian is started when the running program is not one that links daemonic (a Python
/// interpreter with daemonic's extension module): that program and its first arguments, to
/// which the family's directory, its main member's and the bus are added. Set once, by
/// [`set_launcher`], before the first family is created.
static LAUNCHER: std::sync::OnceLock<(std::ffi::CString, Vec<std::ffi::CString>)> = std::sync::OnceLock::new();

/// Starts guardians as `program ARGS... FAMILY_DIR MAIN_DIR [BUS]` instead of re-executing the
/// current binary; that program must call [`run_and_exit`] with those last arguments. Fails
/// when a launcher was set already, or an argument holds a NUL byte.
pub fn set_launcher(program: &Path, args: &[OsString]) -> Result<()> {
    let c = |s: &std::ffi::OsStr| {
        std::ffi::CString::new(s.as_bytes())
            .map_err(|_| Error::new(crate::ErrorKind::InvalidInput, "a guardian argument contains a NUL byte"))
    };
    let program = c(program.as_os_str())?;
    let args = args.iter().map(|a| c(a)).collect::<Result<Vec<_>>>()?;
    LAUNCHER
        .set((program, args))
        .map_err(|_| Error::new(crate::ErrorKind::InvalidInput, "the guardian's launcher is set already"))
}

/// Starts the guardian of the family in `family_dir` whose main member is `main_dir`; `bus` is
/// the manager of a family of units. It starts in the caller's cgroup, or in `cgroup`.
pub(crate) fn start(family_dir: &Path, main_dir: &Path, bus: Option<Bus>, cgroup: Option<&Path>) -> Result<Spawned> {
    let c = |s: &std::ffi::OsStr| std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(s)).ok();
    let invalid = || Error::new(crate::ErrorKind::InvalidInput, "a cgroup path contains a NUL byte");
    let launcher = LAUNCHER.get();
    let mut envp: Vec<_> = std::env::vars_os()
        .filter(|(k, _)| k != MARKER && k != log::ENV)
        .filter_map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            c(&kv)
        })
        .collect();
    if launcher.is_none() {
        envp.push(c(&OsString::from(format!("{MARKER}=1"))).ok_or_else(invalid)?);
    }
    // The guardian logs at the level of the process that started it (`-v`, `-q`).
    envp.push(c(&OsString::from(format!("{}={}", log::ENV, log::level().as_str()))).ok_or_else(invalid)?);
    let (program, mut argv) = match launcher {
        Some((program, args)) => (program.clone(), [vec![program.clone()], args.clone()].concat()),
        None => (c"/proc/self/exe".to_owned(), vec![c(ARGV0.as_ref()).ok_or_else(invalid)?]),
    };
    argv.push(c(family_dir.as_os_str()).ok_or_else(invalid)?);
    argv.push(c(main_dir.as_os_str()).ok_or_else(invalid)?);
    if let Some(bus) = bus {
        argv.push(c(bus.as_str().as_ref()).ok_or_else(invalid)?);
    }
    let prepared = Prepared { program, argv, envp: Some(envp), cwd: Some(c"/".to_owned()) };
    // The bell, bound before the guardian or any member exists, is its standard input.
    let stdin = bell::bind(family_dir).map_or(Stdio::Null, |b| Stdio::Fd(b.into()));
    spawn::spawn(&Request {
        cgroup,
        new_session: true,
        ..Request::new(&prepared, [&stdin, &Stdio::Null, &Stdio::Inherit])
    })
    .map_err(|e| e.context(format!("failed to start the guardian of {}", family_dir.display())))
}

/// The guardian's whole life; called from the `.init_array` hook, or by a launcher's program
/// (see [`set_launcher`]) with `[argv0, FAMILY_DIR, MAIN_DIR, (BUS)]`.
pub fn run_and_exit(args: Vec<OsString>) -> ! {
    sys::close_descriptors_from(3);
    let bell = take_bell();
    log::init(None, "daemonic guardian");
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        sys::ignore_signal(sig);
    }
    let (family, main, bus) = match args.as_slice() {
        [_, family, main] => (family, main, None),
        [_, family, main, bus] if bus.to_str().and_then(Bus::parse).is_some() => {
            (family, main, bus.to_str().and_then(Bus::parse))
        }
        _ => {
            log::error("expected FAMILY_DIR MAIN_DIR [user|system]");
            std::process::exit(2)
        }
    };
    let code = match Guardian::new(PathBuf::from(family), PathBuf::from(main), bus).and_then(|g| g.run(bell)) {
        Ok(()) => 0,
        Err(e) => {
            log::error(format!("of {}: {e}", Path::new(family).display()));
            1
        }
    };
    std::process::exit(code)
}

/// The bell the founder handed over as standard input (see [`bell`]), if it did; standard
/// input becomes `/dev/null`.
fn take_bell() -> Option<UnixDatagram> {
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let is_socket = rustix::fs::fstat(fd).is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Socket);
    if !is_socket {
        return None;
    }
    let bell = fd.try_clone_to_owned().ok()?;
    if let Ok(null) = File::open("/dev/null") {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
    Some(UnixDatagram::from(bell))
}

struct Guardian {
    family: PathBuf,
    /// The family's name and id, for the log.
    family_name: String,
    family_id: String,
    started: Instant,
    /// How many of the family's directories (slices) were removed, for the log.
    removed: usize,
    /// Members whose end was logged, until their directory is removed.
    logged: HashSet<PathBuf>,
    /// The PIDs of members seen running, for the log: systemd may have removed a lone daemon's
    /// scope, and its attribute with it, by the time the guardian logs its end.
    pids: HashMap<PathBuf, u32>,
    /// Directories of units this guardian stopped that systemd has not removed yet: a stop is
    /// only queued when `StopUnit` returns, and a look at such a directory would take it for a
    /// new end. Ordered by path, so that a stopped subtree is one range.
    stopping: BTreeSet<PathBuf>,
    main: PathBuf,
    /// Created when the full watch starts: a light guardian has none (see [`bell`]).
    inotify: Option<OwnedFd>,
    /// Watch descriptor → the directory it concerns (both of a directory's watches).
    watches: HashMap<i32, PathBuf>,
    /// Directory → its watch descriptors, to drop them when the directory is removed. Ordered
    /// by path, so that a directory's subtree is one range (see [`Guardian::below`]).
    watched: BTreeMap<PathBuf, Vec<i32>>,
    retiring: HashMap<PathBuf, Retirement>,
    queue: BTreeSet<PathBuf>,
    done: bool,
    /// Some directory could not be watched: rescan periodically.
    degraded: bool,
    /// The manager of a family of units.
    units: Option<Client>,
}

/// How long the look at a directory whose end cannot end anything may wait, in a burst: the
/// removal of an ended member without daemons or helpers, a new member's first look. Members
/// started or ended one after another then cost one look per directory per gathering, not one
/// per event. Looks that may kill or stop something (see [`Guardian::urgent`]) never wait.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(5);

/// Wake-ups closer together than this are a burst (members starting or ending one after
/// another), worth gathering; a lone event, such as the end of a family, is handled at once.
const BURST: std::time::Duration = std::time::Duration::from_millis(20);

/// How soon a light guardian looks again at a main member that is not populated and not
/// labelled yet (it may have ended before its starter labelled it, and labelling wakes no
/// `poll`), doubling up to [`RELOOK_MAX`].
const RELOOK_MIN: std::time::Duration = std::time::Duration::from_millis(1);
const RELOOK_MAX: std::time::Duration = std::time::Duration::from_millis(64);

/// How often a degraded guardian looks at the whole family.
const RESCAN: std::time::Duration = std::time::Duration::from_millis(100);

impl Guardian {
    fn new(family: PathBuf, main: PathBuf, bus: Option<Bus>) -> Result<Guardian> {
        let units = bus.map(Client::connect).transpose()?;
        let (family_id, family_name) = match Node::of_dir(&family) {
            Some(Node::Family { id, name }) => (id, name),
            _ => {
                let name = family.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                (name.clone(), name)
            }
        };
        Ok(Guardian {
            family_name,
            family_id,
            started: Instant::now(),
            removed: 0,
            logged: Default::default(),
            pids: HashMap::new(),
            stopping: Default::default(),
            family,
            main,
            inotify: None,
            watches: HashMap::new(),
            watched: BTreeMap::new(),
            retiring: HashMap::new(),
            queue: BTreeSet::new(),
            done: false,
            degraded: false,
            units,
        })
    }

    fn run(mut self, bell: Option<UnixDatagram>) -> Result<()> {
        let ended_light = match &bell {
            Some(bell) => self.watch_light(bell)?,
            None => false,
        };
        if !ended_light {
            self.watch_full(bell.as_ref())?;
        }
        drop(bell);
        // The kernel's release of an inotify instance that held watches waits for an SRCU grace
        // period (8-17 ms here): let a thread wait for it while the family is taken down.
        let released = self.inotify.take().map(|fd| std::thread::spawn(move || drop(fd)));
        cgroup::kill(&self.family)?;
        cgroup::wait_unpopulated(&self.family, None)?;
        let left = cgroup::count_dirs(&self.family);
        match &self.units {
            Some(client) => {
                let unit = self.family.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                client.stop_and_wait(unit)?;
            }
            None => cgroup::remove_tree(&self.family).map_err(|e| Error::io("remove", &self.family, e))?,
        }
        let family = log::FamilyRef { name: &self.family_name, id: &self.family_id };
        log::family_ended(family, self.removed + left, self.started.elapsed());
        if let Some(released) = released {
            let _ = released.join();
        }
        Ok(())
    }

    /// The light watch (see [`bell`]): only the main member's `cgroup.events`, with
    /// `poll(POLLPRI)`, and the bell. Returns `true` when the family ended so: its main member
    /// ended and nothing else was ever created in it. Returns `false` when the bell rang (or
    /// something else is in the family), having marked the family watched in full: the whole
    /// tree must be watched from now on.
    fn watch_light(&mut self, bell: &UnixDatagram) -> Result<bool> {
        let main = self.main.clone();
        let Ok(events) = File::open(main.join("cgroup.events")) else {
            return Ok(self.go_full());
        };
        let mut relook = RELOOK_MIN;
        loop {
            // Read first: `poll` wakes for a change after this descriptor's last read, so a flip
            // between the looks below and the `poll` is not missed.
            let _ = rustix::io::pread(&events, &mut [0u8; 128], 0);
            if bell::rang(bell).member {
                return Ok(self.go_full());
            }
            if self.ended(&main) {
                // A member created after the look at the bell rang it first: look again, then
                // at the tree, which holds anything created before the bell existed.
                if bell::rang(bell).member || !self.only_main() {
                    return Ok(self.go_full());
                }
                self.log_ended(&main);
                return Ok(true);
            }
            let labelled = self.pids.contains_key(&main);
            let mut fds = [PollFd::new(&events, PollFlags::PRI), PollFd::new(bell, PollFlags::IN)];
            sys::poll(&mut fds, (!labelled).then_some(relook))
                .map_err(|e| Error::os("wait for the main member's end", e))?;
            if !labelled {
                relook = (relook * 2).min(RELOOK_MAX);
            }
        }
    }

    /// Marks the family watched in full; always `false`, for [`Guardian::watch_light`].
    fn go_full(&self) -> bool {
        report(bell::go_full(&self.family));
        false
    }

    /// Whether the family holds nothing but its main member's directory, which has no
    /// directory below it.
    fn only_main(&self) -> bool {
        let family = cgroup::subdirs(&self.family).unwrap_or_default();
        family.len() == 1 && family[0] == self.main && cgroup::subdirs(&self.main).is_ok_and(|s| s.is_empty())
    }

    /// The full watch: every directory of the family, until its main member is done; and the
    /// bell, for the news that the main member has ended.
    fn watch_full(&mut self, bell: Option<&UnixDatagram>) -> Result<()> {
        let inotify = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
            .map_err(|e| Error::os("create an inotify instance", e.into()))?;
        self.inotify = Some(inotify);
        let family = self.family.clone();
        self.watch_tree(&family);
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        let mut last_wake: Option<Instant> = None;
        let mut in_burst = false;
        // Looks put off in a burst, and when they are due.
        let mut later: BTreeSet<PathBuf> = BTreeSet::new();
        let mut later_due: Option<Instant> = None;
        loop {
            if later_due.is_some_and(|due| due <= Instant::now()) {
                // The burst's looks are due: all of them now, none put off again.
                self.queue.append(&mut later);
                later_due = None;
                in_burst = false;
            }
            while let Some(dir) = self.queue.pop_first() {
                if in_burst && !self.urgent(&dir) {
                    later.insert(dir);
                    later_due.get_or_insert_with(|| Instant::now() + COALESCE);
                    continue;
                }
                self.evaluate(&dir);
            }
            if self.done {
                break;
            }
            let now = Instant::now();
            for r in self.retiring.values_mut() {
                if r.next_deadline().is_some_and(|d| d <= now) {
                    report(r.tick(now));
                }
            }
            let deadline = self.retiring.values().filter_map(Retirement::next_deadline).chain(later_due).min();
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let timeout = if self.degraded { Some(timeout.map_or(RESCAN, |t| t.min(RESCAN))) } else { timeout };
            let mut fds = vec![PollFd::new(self.inotify(), PollFlags::IN)];
            if let Some(bell) = bell {
                fds.push(PollFd::new(bell, PollFlags::IN));
            }
            let woken = sys::poll(&mut fds, timeout).map_err(|e| Error::os("wait for cgroup events", e))?;
            drop(fds);
            if bell.is_some_and(|b| bell::rang(b).look) {
                self.queue.insert(self.main.clone());
            }
            if woken > 0 {
                let now = Instant::now();
                in_burst = last_wake.is_some_and(|t| now.duration_since(t) < BURST);
                last_wake = Some(now);
            }
            self.read_events(&mut buf)?;
            if self.degraded {
                self.watch_tree(&family);
            }
        }
        Ok(())
    }

    /// The inotify instance of the full watch.
    fn inotify(&self) -> &OwnedFd {
        self.inotify.as_ref().expect("the full watch has an inotify instance")
    }

    /// The member in `dir`, for the log.
    fn member_ref<'a>(&'a self, dir: &Path, name: &'a str, daemon: bool) -> log::MemberRef<'a> {
        let pid = self.pids.get(dir).copied();
        let pid = pid.or_else(|| cgroup::attr(dir, layout::ATTR_PID).and_then(|p| p.parse().ok())).unwrap_or(0);
        log::MemberRef { family: log::FamilyRef { name: &self.family_name, id: &self.family_id }, name, daemon, pid }
    }

    fn read_events(&mut self, buf: &mut [MaybeUninit<u8>]) -> Result<()> {
        let mut events: Vec<(i32, ReadFlags, Option<OsString>)> = Vec::new();
        let mut reader = inotify::Reader::new(self.inotify().as_fd(), buf);
        loop {
            match reader.next() {
                Ok(e) => events.push((
                    e.wd(),
                    e.events(),
                    e.file_name().map(|n| std::ffi::OsStr::from_bytes(n.to_bytes()).to_owned()),
                )),
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(Error::os("read inotify events", e.into())),
            }
        }
        let mut created = Vec::new();
        let mut deleted = Vec::new();
        let mut rescan = false;
        for (wd, flags, name) in events {
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                rescan = true;
                continue;
            }
            let Some(dir) = self.watches.get(&wd).cloned() else { continue };
            if flags.contains(ReadFlags::IGNORED) {
                self.watches.remove(&wd);
                if let Some(wds) = self.watched.get_mut(&dir) {
                    wds.retain(|w| *w != wd);
                }
            }
            if flags.contains(ReadFlags::ISDIR)
                && let Some(name) = name
            {
                if flags.contains(ReadFlags::CREATE) {
                    created.push(dir.join(name));
                } else if flags.contains(ReadFlags::DELETE) {
                    deleted.push(dir.join(name));
                }
            }
            self.queue.insert(dir);
        }
        for dir in deleted {
            self.deleted(dir);
        }
        if rescan {
            let family = self.family.clone();
            self.watch_tree(&family);
        }
        for dir in created {
            self.watch_tree(&dir);
        }
        Ok(())
    }

    /// Watches `dir` and everything below it, and queues them all for a look.
    ///
    /// A watch that cannot be added (the inotify limits `max_user_watches`, a permission) does
    /// not stop the guardian: it warns once and falls back to looking at the whole family every
    /// [`RESCAN`], which is slower to react but still ends every daemon.
    fn watch_tree(&mut self, dir: &Path) {
        // A family nested in one of our members (a member ran `daemonic run`) has a guardian of
        // its own, which must stay the only remover of its directories: not ours to watch.
        if dir != self.family && matches!(Node::of_dir(dir), Some(Node::Family { .. })) {
            return;
        }
        let flags = WatchFlags::CREATE | WatchFlags::DELETE | WatchFlags::ATTRIB | WatchFlags::ONLYDIR;
        let events = dir.join("cgroup.events");
        for (path, flags) in [(dir, flags), (events.as_path(), WatchFlags::MODIFY)] {
            match inotify::add_watch(self.inotify(), path, flags) {
                Ok(wd) => {
                    if self.watches.insert(wd, dir.to_path_buf()).is_none() {
                        self.watched.entry(dir.to_path_buf()).or_default().push(wd);
                    }
                }
                Err(rustix::io::Errno::NOENT) => {
                    if path == dir {
                        self.vanished(dir);
                    }
                    return;
                }
                Err(e) => self.degrade(&Error::io("watch", path, e.into())),
            }
        }
        match cgroup::subdirs(dir) {
            Ok(subs) => subs.iter().for_each(|sub| self.watch_tree(sub)),
            Err(e) => self.degrade(&e),
        }
        self.queue.insert(dir.to_path_buf());
    }

    fn degrade(&mut self, why: &Error) {
        if !self.degraded {
            log::warn(format!("{why}; looking at the whole family every {} ms instead", RESCAN.as_millis()));
            self.degraded = true;
        }
    }

    /// Whether the member in `dir` has ended: unpopulated after it ran, or gone.
    ///
    /// The order matters: "has run" (the `pid` attribute, written once the member's process is in
    /// the directory) must be read before `populated`. Read the other way round, a look that
    /// found the directory still empty, then the attribute just written, took a member that had
    /// only just started for one that had ended, and the guardian killed a running family.
    fn ended(&mut self, dir: &Path) -> bool {
        let pid = cgroup::attr(dir, layout::ATTR_PID);
        if let Some(pid) = pid.as_deref().and_then(|p| p.parse().ok()) {
            self.pids.insert(dir.to_path_buf(), pid);
        }
        let ran = pid.is_some() || !dir.exists();
        ran && matches!(cgroup::populated(dir), Ok(false))
    }

    /// Whether a look at `dir` may end something (kill a member's daemons, stop its helpers,
    /// end the family), so that it must not wait for a burst to pass: the main member, a
    /// member with daemons or helpers, a container being retired. Everything when the guardian
    /// is degraded and cannot tell.
    fn urgent(&self, dir: &Path) -> bool {
        if self.degraded || dir == self.main {
            return true;
        }
        match Node::of_dir(dir) {
            Some(Node::Member { .. }) => {
                self.watched.contains_key(&layout::daemons_dir(dir))
                    || self.watched.contains_key(&layout::helpers_dir(dir))
            }
            Some(Node::Daemons { .. } | Node::Helpers { .. }) => self.retiring.contains_key(dir),
            _ => false,
        }
    }

    fn evaluate(&mut self, dir: &Path) {
        let Some(node) = Node::of_dir(dir) else { return };
        if self.stopping.contains(dir) {
            return;
        }
        match node {
            Node::Member { name, kind, .. } => {
                if !self.ended(dir) {
                    return;
                }
                let daemon = kind.is_daemon();
                // The daemons first, then the helpers, which may clean up after them; the owner
                // is looked at again when each container is gone.
                let daemons = layout::daemons_dir(dir);
                if self.present(&daemons) {
                    self.retire(dir, &daemons, |g, count, r| {
                        log::daemons_killed(g.member_ref(dir, &name, daemon), count, r.is_graceful())
                    });
                    return;
                }
                let helpers = layout::helpers_dir(dir);
                if self.present(&helpers) {
                    self.retire(dir, &helpers, |g, count, _| {
                        log::helpers_stopped(g.member_ref(dir, &name, daemon), count)
                    });
                    return;
                }
                // A daemon being retired with its siblings is counted in their event. A member
                // whose directory is gone is logged when it was seen running (a lone daemon's
                // scope collected by systemd, a slice someone stopped); a spawn that failed is not.
                let retired = dir.parent().is_some_and(|p| self.retiring.contains_key(p));
                if !retired && (dir.exists() || self.pids.contains_key(dir)) {
                    self.log_ended(dir);
                }
                self.remove(dir);
            }
            Node::Daemons { owner } | Node::Helpers { owner } => {
                let owner_dir = dir.with_file_name(owner);
                if self.retiring.contains_key(dir) {
                    if matches!(cgroup::populated(dir), Ok(false)) {
                        self.retiring.remove(dir);
                        self.remove(dir);
                        self.queue.insert(owner_dir);
                    }
                } else if self.ended(&owner_dir) {
                    self.queue.insert(owner_dir);
                }
            }
            Node::Family { .. } => {}
        }
    }

    /// Starts retiring the container `members` (`.daemons`, `.helpers`) of the ended member in
    /// `owner`, once: `announce` logs it with the count of members in it.
    fn retire(&mut self, owner: &Path, members: &Path, announce: impl FnOnce(&Self, usize, &Retirement)) {
        if self.retiring.contains_key(members) {
            return;
        }
        let count = count_members(members);
        self.log_ended(owner);
        match Retirement::start(members, &self.family) {
            Ok(r) => {
                announce(self, count, &r);
                self.retiring.insert(members.to_path_buf(), r);
            }
            Err(e) => report(Err(e)),
        }
        self.queue.insert(members.to_path_buf());
    }

    /// Whether the container `dir` (`.daemons`, `.helpers`) is there and not being removed.
    fn present(&self, dir: &Path) -> bool {
        !self.stopping.contains(dir) && dir.exists()
    }

    /// Removes `dir` and everything below it, deepest first, dropping their watches.
    ///
    /// On cgroupfs the guardian is the only remover of a family's directories. Removing a
    /// cgroup cancels its pending `cgroup.events` notification and sends no event to the
    /// removed directory's own watches; only the `IN_DELETE` on its parent's watch says so
    /// (see [`Guardian::deleted`]).
    fn remove(&mut self, dir: &Path) {
        self.log_ended_below(dir);
        if let Err(e) = self.remove_tree(dir) {
            log::warn(format!("failed to remove {}: {e}", dir.display()));
        }
        if dir == self.main {
            self.done = true;
        }
    }

    /// Logs the end of the member in `dir`, once.
    fn log_ended(&mut self, dir: &Path) {
        if let Some(Node::Member { name, kind, .. }) = Node::of_dir(dir)
            && self.logged.insert(dir.to_path_buf())
        {
            log::ended(self.member_ref(dir, &name, kind.is_daemon()));
        }
    }

    /// Logs the end of the non-daemonic members in `dir`'s tree not logged yet: they ended with
    /// it, but their own look may come only after the tree is gone (events of one burst are
    /// looked at in path order, the owner's `.daemons` directory before a nested member).
    /// Daemons below a `.daemons` directory are counted in their owner's event instead.
    fn log_ended_below(&mut self, dir: &Path) {
        let is_daemons = |p: &Path| matches!(Node::of_dir(p), Some(Node::Daemons { .. }));
        let below: Vec<PathBuf> = self
            .below(dir)
            .filter(|d| *d != dir)
            .filter(|d| !d.ancestors().take_while(|a| a.starts_with(dir)).any(is_daemons))
            .cloned()
            .collect();
        for d in below {
            self.log_ended(&d);
        }
    }

    fn remove_tree(&mut self, dir: &Path) -> std::io::Result<()> {
        // Removing (stopping) a directory takes everything below it; forget their watches first.
        let below: Vec<PathBuf> = self.below(dir).cloned().collect();
        for d in &below {
            self.forget(d);
        }
        // `dir` too when it was never watched (a PID remembered for the log).
        self.forget(dir);
        if !dir.exists() {
            // Removed by someone else already (a unit someone stopped).
            return Ok(());
        }
        if let Some(client) = &self.units {
            let unit = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            // A lone daemon's scope, empty, is collected by systemd itself: asking would only
            // cost the manager a job.
            if !layout::is_scope(dir) {
                client.stop(unit).map_err(|e| std::io::Error::other(e.to_string()))?;
            }
            self.stopping.extend(below);
            self.stopping.insert(dir.to_path_buf());
            self.removed += 1;
            return Ok(());
        }
        for sub in cgroup::subdirs(dir).map_err(std::io::Error::from)? {
            self.remove_tree(&sub)?;
        }
        cgroup::remove(dir)?;
        self.removed += 1;
        Ok(())
    }

    /// The watched directories in the subtree of `dir`, `dir` included (see [`subtree`]).
    fn below<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = &'a PathBuf> + 'a {
        subtree(&self.watched, dir)
    }

    /// A directory of the family was removed (`IN_DELETE` on its parent's watch). The removal
    /// of a unit this guardian stopped ends its stop; one it still watched was removed by
    /// someone else, and is looked at again: a member whose unit someone stopped has ended.
    /// (The guardian's own removals of directories on cgroupfs come after their watches are
    /// dropped, so they are neither.)
    fn deleted(&mut self, dir: PathBuf) {
        let stopped: Vec<PathBuf> = subtree(&self.stopping, &dir).cloned().collect();
        for d in &stopped {
            self.stopping.remove(d);
        }
        if stopped.is_empty() && self.watched.contains_key(&dir) {
            self.queue.insert(dir);
        }
    }

    /// A directory gone before the guardian could watch it. A lone daemon's scope can come and
    /// go between two looks (created, its short run, collected by systemd): its end is logged,
    /// without its PID, which went with the scope.
    fn vanished(&mut self, dir: &Path) {
        let retired = dir.parent().is_some_and(|p| self.retiring.contains_key(p));
        // On cgroupfs only a spawn that failed removes its directory itself: nothing ran there.
        let lone = layout::is_scope(dir);
        if lone && !retired && !self.stopping.contains(dir) && matches!(Node::of_dir(dir), Some(Node::Member { .. })) {
            self.log_ended(dir);
            self.logged.remove(dir);
        }
    }

    /// Forgets `dir`, which is about to be removed: its watches and any retirement of it. The
    /// watches themselves go with the directory (the kernel drops a removed inode's watches and
    /// says so with `IN_IGNORED`, which finds no directory here any more): removing them first
    /// would cost two calls per member of a family that ends.
    fn forget(&mut self, dir: &Path) {
        self.logged.remove(dir);
        self.pids.remove(dir);
        for wd in self.watched.remove(dir).unwrap_or_default() {
            self.watches.remove(&wd);
        }
        self.retiring.remove(dir);
    }
}

/// The keys of `map` in the subtree of `dir`, `dir` included: one range of the path-ordered map,
/// because paths compare component by component, so a path's descendants sort right after it
/// and before its next sibling (`a/b/c` < `a/b.daemons`). Ending a member costs no walk over the
/// whole family.
fn subtree<'a, M: PathOrdered>(map: &'a M, dir: &'a Path) -> impl Iterator<Item = &'a PathBuf> + 'a {
    map.from(dir).take_while(move |d| d.starts_with(dir))
}

/// A path-ordered set or map's paths from one on.
trait PathOrdered {
    fn from<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = &'a PathBuf> + 'a;
}

impl<V> PathOrdered for BTreeMap<PathBuf, V> {
    fn from<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = &'a PathBuf> + 'a {
        self.range::<Path, _>((Bound::Included(dir), Bound::Unbounded)).map(|(d, _)| d)
    }
}

impl PathOrdered for BTreeSet<PathBuf> {
    fn from<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = &'a PathBuf> + 'a {
        self.range::<Path, _>((Bound::Included(dir), Bound::Unbounded))
    }
}

/// How many members the container `dir` holds.
fn count_members(dir: &Path) -> usize {
    cgroup::subdirs(dir)
        .map(|d| d.iter().filter(|d| matches!(Node::of_dir(d), Some(Node::Member { .. }))).count())
        .unwrap_or(0)
}

fn report(r: Result<()>) {
    if let Err(e) = r {
        log::warn(e);
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::guardian::*;

    #[test]
    fn a_subtree_is_one_range_of_the_path_ordered_map() {
        let dirs = [
            "/f/main-1.member",
            "/f/main-1.member/w-2.member",
            "/f/main-1.member/w-2.member/x-9.member",
            "/f/main-1.member.daemons",
            "/f/main-1.member.daemons/d-3.daemon",
            "/f/main-10.member",
            "/f/main-1.memberz",
            "/f",
        ];
        let map: BTreeMap<PathBuf, ()> = dirs.iter().map(|d| (PathBuf::from(d), ())).collect();
        let got = |dir: &str| subtree(&map, Path::new(dir)).map(|p| p.display().to_string()).collect::<Vec<_>>();
        assert_eq!(
            got("/f/main-1.member"),
            ["/f/main-1.member", "/f/main-1.member/w-2.member", "/f/main-1.member/w-2.member/x-9.member"]
        );
        assert_eq!(
            got("/f/main-1.member.daemons"),
            ["/f/main-1.member.daemons", "/f/main-1.member.daemons/d-3.daemon"]
        );
        assert_eq!(got("/f").len(), dirs.len());
        assert!(got("/f/absent").is_empty());
    }
}
