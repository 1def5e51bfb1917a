//! The guardian: one small process per family that ends daemons when their owner's live part
//! has ended, whatever happened to the process that started the family (C4, C10).
//!
//! It is a re-execution of the current binary (`/proc/self/exe`), recognised before `main` by an
//! `.init_array` hook in [`crate::sys`], so it works in any program that links daemonic without
//! that program's cooperation, and it never runs Rust code in a forked copy of a multithreaded
//! parent. It lives outside the family's tree (in the cgroup of the process that created the
//! family), in its own session, and ignores SIGINT, SIGTERM and SIGHUP: only SIGKILL stops it.
//!
//! It sleeps in `poll` on an inotify descriptor. Each directory of the family is watched twice:
//! the directory for new sub-cgroups and attribute changes, its `cgroup.events` for `populated`
//! flips. On any event it looks at that one directory again:
//! - a member that has ended (its directory is unpopulated and has run, or is gone) and has a
//!   `.daemons` sibling: the retirement of those daemons starts (see [`crate::retire`]);
//! - a `.daemons` directory being retired that is now empty: it and its owner are removed;
//! - an ended member without daemons: its directory is removed.
//!
//! When the main member is done, a last `cgroup.kill` on the family takes anything left, the
//! family's directories are removed, and the guardian exits 0.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

use crate::cgroup;
use crate::command::{Placement, Prepared, Stdio};
use crate::error::{Error, Result};
use crate::layout::{self, Node};
use crate::retire::Retirement;
use crate::spawn::{self, Request, Spawned};
use crate::sys;

/// Environment variable present in a guardian's environment.
pub(crate) const MARKER: &str = "DAEMONIC_GUARDIAN";
/// A guardian's `argv[0]`.
pub(crate) const ARGV0: &str = "daemonic-guardian";

/// Starts the guardian of the family in `family_dir` whose main member is `main_dir`.
pub(crate) fn start(family_dir: &Path, main_dir: &Path) -> Result<Spawned> {
    sys::guardian_hook_anchor();
    let c = |s: &std::ffi::OsStr| std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(s)).ok();
    let invalid = || Error::new(crate::ErrorKind::InvalidInput, "a cgroup path contains a NUL byte");
    let mut envp: Vec<_> = std::env::vars_os()
        .filter(|(k, _)| k != MARKER)
        .filter_map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            c(&kv)
        })
        .collect();
    envp.push(c(&OsString::from(format!("{MARKER}=1"))).ok_or_else(invalid)?);
    let prepared = Prepared {
        program: c"/proc/self/exe".to_owned(),
        argv: vec![
            c(ARGV0.as_ref()).ok_or_else(invalid)?,
            c(family_dir.as_os_str()).ok_or_else(invalid)?,
            c(main_dir.as_os_str()).ok_or_else(invalid)?,
        ],
        envp: Some(envp),
        cwd: Some(c"/".to_owned()),
    };
    spawn::spawn(&Request {
        prepared: &prepared,
        stdio: [&Stdio::Null, &Stdio::Null, &Stdio::Inherit],
        cgroup: None,
        filters: &[],
        placement: Placement::Auto,
        new_session: true,
    })
    .map_err(|e| Error::new(e.kind(), format!("failed to start the guardian of {}: {e}", family_dir.display())))
}

/// The guardian's whole life; called from the `.init_array` hook.
pub(crate) fn run_and_exit(args: Vec<OsString>) -> ! {
    sys::close_descriptors_from(3);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        sys::ignore_signal(sig);
    }
    let code = match args.as_slice() {
        [_, family, main] => match Guardian::new(PathBuf::from(family), PathBuf::from(main)).and_then(Guardian::run) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("daemonic guardian of {}: error: {e}", Path::new(family).display());
                1
            }
        },
        _ => {
            eprintln!("daemonic guardian: expected FAMILY_DIR MAIN_DIR");
            2
        }
    };
    std::process::exit(code)
}

struct Guardian {
    family: PathBuf,
    main: PathBuf,
    inotify: OwnedFd,
    /// Watch descriptor → the directory it concerns (both of a directory's watches).
    watches: HashMap<i32, PathBuf>,
    /// Directory → its watch descriptors, to drop them when the directory is removed.
    watched: HashMap<PathBuf, Vec<i32>>,
    retiring: HashMap<PathBuf, Retirement>,
    queue: BTreeSet<PathBuf>,
    done: bool,
    /// Some directory could not be watched: rescan periodically.
    degraded: bool,
}

/// How long the guardian lets events gather after a wake-up; added to its reaction time.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(5);

/// How often a degraded guardian looks at the whole family.
const RESCAN: std::time::Duration = std::time::Duration::from_millis(100);

impl Guardian {
    fn new(family: PathBuf, main: PathBuf) -> Result<Guardian> {
        let inotify = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
            .map_err(|e| Error::os("create an inotify instance", e.into()))?;
        Ok(Guardian {
            family,
            main,
            inotify,
            watches: HashMap::new(),
            watched: HashMap::new(),
            retiring: HashMap::new(),
            queue: BTreeSet::new(),
            done: false,
            degraded: false,
        })
    }

    fn run(mut self) -> Result<()> {
        let family = self.family.clone();
        self.watch_tree(&family);
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        loop {
            while let Some(dir) = self.queue.pop_first() {
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
            let timeout = self
                .retiring
                .values()
                .filter_map(Retirement::next_deadline)
                .min()
                .map(|d| d.saturating_duration_since(Instant::now()));
            let timeout = if self.degraded { Some(timeout.map_or(RESCAN, |t| t.min(RESCAN))) } else { timeout };
            let mut fds = [PollFd::new(&self.inotify, PollFlags::IN)];
            if cgroup::poll(&mut fds, timeout).map_err(|e| Error::os("wait for cgroup events", e))? > 0 {
                // A member's start and end come as a burst of events (new directory, its PID,
                // populated 1, populated 0); gathering them for a moment lets one look at each
                // directory serve the whole burst.
                std::thread::sleep(COALESCE);
            }
            self.read_events(&mut buf)?;
            if self.degraded {
                self.watch_tree(&family);
            }
        }
        cgroup::kill(&self.family)?;
        cgroup::wait_unpopulated(&self.family, None)?;
        cgroup::remove_tree(&self.family).map_err(|e| Error::io("remove", &self.family, e))
    }

    fn read_events(&mut self, buf: &mut [MaybeUninit<u8>]) -> Result<()> {
        let mut events: Vec<(i32, ReadFlags, Option<OsString>)> = Vec::new();
        let mut reader = inotify::Reader::new(self.inotify.as_fd(), buf);
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
            if flags.contains(ReadFlags::CREATE | ReadFlags::ISDIR)
                && let Some(name) = name
            {
                created.push(dir.join(name));
            }
            self.queue.insert(dir);
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
        let flags = WatchFlags::CREATE | WatchFlags::ATTRIB | WatchFlags::ONLYDIR;
        let events = dir.join("cgroup.events");
        for (path, flags) in [(dir, flags), (events.as_path(), WatchFlags::MODIFY)] {
            match inotify::add_watch(&self.inotify, path, flags) {
                Ok(wd) => {
                    if self.watches.insert(wd, dir.to_path_buf()).is_none() {
                        self.watched.entry(dir.to_path_buf()).or_default().push(wd);
                    }
                }
                Err(rustix::io::Errno::NOENT) => return,
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
            eprintln!(
                "daemonic guardian: warning: {why}; looking at the whole family every {} ms instead",
                RESCAN.as_millis()
            );
            self.degraded = true;
        }
    }

    /// Whether the member in `dir` has ended: unpopulated after it ran, or gone. Most looks
    /// find it populated, so that is asked first (one open, read, close).
    fn ended(dir: &Path) -> bool {
        matches!(cgroup::populated(dir), Ok(false)) && (cgroup::attr(dir, layout::ATTR_PID).is_some() || !dir.exists())
    }

    fn evaluate(&mut self, dir: &Path) {
        let Some(node) = Node::of_dir(dir) else { return };
        match node {
            Node::Member { .. } => {
                if !Self::ended(dir) {
                    return;
                }
                let daemons = layout::daemons_dir(dir);
                if daemons.exists() {
                    if !self.retiring.contains_key(&daemons) {
                        match Retirement::start(&daemons, &self.family) {
                            Ok(r) => {
                                self.retiring.insert(daemons.clone(), r);
                            }
                            Err(e) => report(Err(e)),
                        }
                        self.queue.insert(daemons);
                    }
                    return;
                }
                self.remove(dir);
            }
            Node::Daemons { owner } => {
                let owner_dir = dir.with_file_name(owner);
                if self.retiring.contains_key(dir) {
                    if matches!(cgroup::populated(dir), Ok(false)) {
                        self.retiring.remove(dir);
                        self.remove(dir);
                        self.remove(&owner_dir);
                    }
                } else if Self::ended(&owner_dir) {
                    self.queue.insert(owner_dir);
                }
            }
            Node::Family { .. } => {}
        }
    }

    /// Removes `dir` and everything below it, deepest first, dropping their watches.
    ///
    /// The guardian is the only remover of a family's directories: removing a cgroup produces
    /// no inotify event (kernfs sends none) and cancels a pending `cgroup.events`
    /// notification, so a directory removed by anyone else would leave the guardian blind to
    /// the end of that member.
    fn remove(&mut self, dir: &Path) {
        if let Err(e) = self.remove_tree(dir) {
            eprintln!("daemonic guardian: warning: failed to remove {}: {e}", dir.display());
        }
        if dir == self.main {
            self.done = true;
        }
    }

    fn remove_tree(&mut self, dir: &Path) -> std::io::Result<()> {
        for sub in cgroup::subdirs(dir).map_err(std::io::Error::from)? {
            self.remove_tree(&sub)?;
        }
        for wd in self.watched.remove(dir).unwrap_or_default() {
            self.watches.remove(&wd);
            let _ = inotify::remove_watch(&self.inotify, wd);
        }
        self.retiring.remove(dir);
        cgroup::remove(dir)
    }
}

fn report(r: Result<()>) {
    if let Err(e) = r {
        eprintln!("daemonic guardian: warning: {e}");
    }
}
