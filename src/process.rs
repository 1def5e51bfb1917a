//! Python's `multiprocessing.Process(target=…)`: a Rust function in a member of its own.
//!
//! [`Process`] is the builder (Python's object before `start()`), [`JoinHandle`] the running
//! process with Python's verbs and the function's return value, [`parent_process`] the handle
//! a target has on the process that started it. How the function gets into the new process is
//! in [`crate::runtime::target`].
//!
//! Without a family of its own, `start()` uses the *implicit family*: the one
//! [`Family::new`] joins or creates, opened at the first start and shut down when the program
//! exits (an `atexit` handler), which is what Python's exit handler does: non-daemonic children
//! are waited for, then the daemons are killed. A program that dies without exiting (a signal,
//! an abort) is covered by the family's guardian.

use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::runtime::family::Family;
use crate::runtime::member::Member;
use crate::runtime::target::{self, Assignment, Inbox, Parent, Reply, Target};
use crate::{Command, sys};

/// A Rust function to run in a new process: Python's `Process(target=…, args=…)` before
/// `start()`.
///
/// Like [`Command`], the settings are made through `&mut self`, so a flag can be set after
/// construction (Python's `process.daemon = True`), and one `Process` can be started many
/// times. What is fixed at start stays fixed: the running [`JoinHandle`] has no setter (C1).
///
/// ```no_run
/// use daemonic::{Process, current_process};
///
/// fn task() {
///     println!("daemon: {}", current_process().expect("own cgroup").daemon);
/// }
/// daemonic::target!(task);
///
/// fn main() -> daemonic::Result<()> {
///     daemonic::init();
///     let mut process = Process::new(task);
///     process.daemon(true);
///     process.start()?.join(None)?;
///     Ok(())
/// }
/// ```
pub struct Process<R> {
    target: &'static str,
    args: std::result::Result<Vec<u8>, String>,
    name: Option<String>,
    daemon: Option<bool>,
    allow_children: bool,
    stop_timeout: Option<Duration>,
    output: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("target", &self.target)
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("allow_children", &self.allow_children)
            .finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned> Process<R> {
    /// A process that will run `target()`, a function without arguments.
    pub fn new<F>(target: F) -> Process<R>
    where
        F: Target<(), Output = R>,
    {
        Process::with_args(target, ())
    }

    /// A process that will run `target` with `args`, a tuple: `(7,)` for one argument.
    pub fn with_args<F, A>(target: F, args: A) -> Process<R>
    where
        F: Target<A, Output = R>,
        A: Serialize,
    {
        let _ = target;
        let name = std::any::type_name::<F>();
        Process {
            target: name,
            args: postcard::to_stdvec(&args).map_err(|e| format!("cannot encode the arguments of {name}: {e}")),
            name: None,
            daemon: None,
            allow_children: false,
            stop_timeout: None,
            output: PhantomData,
        }
    }

    /// The member's name (default: the function's name), with the rules of [`Command::name`].
    pub fn name(&mut self, name: impl Into<String>) -> &mut Self {
        self.name = Some(name.into());
        self
    }

    /// Whether the process is daemonic. Unset, it inherits the calling process's flag (C1).
    pub fn daemon(&mut self, daemon: bool) -> &mut Self {
        self.daemon = Some(daemon);
        self
    }

    /// Lets a daemonic process have children (see [`Command::allow_children`]): they stay in
    /// its cgroup and die with it.
    pub fn allow_children(&mut self, allow: bool) -> &mut Self {
        self.allow_children = allow;
        self
    }

    /// For a daemon: SIGTERM first and SIGKILL after `timeout` when its family ends.
    pub fn stop_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.stop_timeout = Some(timeout);
        self
    }

    /// The function's full name, which is how the new process finds it.
    pub fn target(&self) -> &'static str {
        self.target
    }

    /// Starts the process in the [implicit family](implicit_family): the one [`Family::new`]
    /// joins or creates, shut down when the program exits, as Python's exit handler does.
    pub fn start(&self) -> Result<JoinHandle<R>> {
        self.start_in(implicit_family()?)
    }

    /// Starts the process as a member of `family`.
    pub fn start_in(&self, family: &Family) -> Result<JoinHandle<R>> {
        let target = target::checked_name_of(self.target)?;
        let args = self.args.clone().map_err(|e| Error::new(ErrorKind::InvalidInput, e))?;
        let spec = Spec {
            name: match &self.name {
                Some(name) => name.clone(),
                None => default_name(target),
            },
            daemon: self.daemon,
            allow_children: self.allow_children,
            stop_timeout: self.stop_timeout,
        };
        let assignment = Assignment::Call { target: target.to_string(), args, parent: parent_in(family) };
        let (member, channel) = start_in(family, &spec, &assignment)?;
        Ok(JoinHandle {
            member,
            target,
            channel: Mutex::new(Channel { fd: Some(Arc::new(channel)), inbox: Inbox::default(), reply: None }),
            output: PhantomData,
        })
    }
}

/// A member name from a target's name: its function name, made valid.
pub(crate) fn default_name(target: &str) -> String {
    crate::spawn::command::default_name(target::short_name(target).as_ref())
}

/// What a target process is, besides its function.
pub(crate) struct Spec {
    pub name: String,
    pub daemon: Option<bool>,
    pub allow_children: bool,
    pub stop_timeout: Option<Duration>,
}

/// Starts this program again as a member of `family`, sends it `assignment` and returns it with
/// the parent's end of its channel. Nothing is left when it fails.
pub(crate) fn start_in(family: &Family, spec: &Spec, assignment: &Assignment) -> Result<(Member, OwnedFd)> {
    let (ours, theirs) = rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)
        .map_err(|e| Error::os("create the channel for a new process", e.into()))?;
    // The child's end keeps its number across exec; stay clear of 0, 1 and 2, which the child
    // may have set up as its standard streams.
    let theirs = rustix::io::fcntl_dupfd_cloexec(&theirs, 3)
        .map_err(|e| Error::os("create the channel for a new process", e.into()))?;
    let exe = || std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let mut cmd = Command::new("/proc/self/exe");
    let mut args = std::env::args_os();
    cmd.arg0(args.next().unwrap_or_else(|| exe().into_os_string()))
        .args(args)
        .env(target::ENV, rustix::fd::AsRawFd::as_raw_fd(&theirs).to_string())
        .name(spec.name.clone())
        // As in Python's children: two processes reading one terminal is never what was meant.
        .stdin(crate::Stdio::Null)
        .allow_children(spec.allow_children)
        .keep_fd(theirs);
    if let Some(daemon) = spec.daemon {
        cmd.daemon(daemon);
    }
    if let Some(timeout) = spec.stop_timeout {
        cmd.stop_timeout(timeout);
    }
    let member = family.spawn(&mut cmd).map_err(|e| match e.kind() {
        ErrorKind::DaemonChildren => e,
        _ => e.context(format!("cannot start {} again for {}", exe().display(), spec.name)),
    })?;
    drop(cmd); // closes our copy of the child's end: the channel ends when the child does
    let sent = target::frame(assignment).and_then(|f| target::send_all(ours.as_fd(), &f, Some(member.sentinel())));
    if let Err(e) = sent {
        let _ = member.kill();
        let status = member.wait().map(crate::status::describe).unwrap_or_else(|e| e.to_string());
        return Err(Error::new(
            ErrorKind::Os,
            format!(
                "process {} (pid {}) {status} before it took its task ({e}); is daemonic::init() the first thing \
                 in main?",
                member.name(),
                member.pid()
            ),
        ));
    }
    Ok((member, ours))
}

/// The caller, a member of `family`, as the parent of a new process.
pub(crate) fn parent_in(family: &Family) -> Parent {
    Parent { pid: std::process::id(), name: family.member_name().to_string() }
}

/// The channel of a running target process and what arrived on it.
#[derive(Debug)]
struct Channel {
    /// `None` once the stream has ended; shared so that a join can wait on it without holding
    /// the lock.
    fd: Option<Arc<OwnedFd>>,
    inbox: Inbox,
    reply: Option<Reply>,
}

impl Channel {
    /// Takes in what has arrived, without waiting.
    fn collect(&mut self) -> Result<()> {
        let Some(fd) = &self.fd else { return Ok(()) };
        let ended = self.inbox.fill(fd.as_fd()).map_err(|e| Error::os("read from a target process", e))?;
        if self.reply.is_none() {
            self.reply = self.inbox.take().map_err(|e| Error::os("read from a target process", e))?;
        }
        if ended || self.reply.is_some() {
            self.fd = None;
        }
        Ok(())
    }
}

/// A target running in its own process: Python's `Process` after `start()`, plus what the
/// function returns.
///
/// Waiting, polling and signals go through the member's pidfd, as for every [`Member`].
/// Dropping the handle neither waits nor kills; the family does that.
#[derive(Debug)]
pub struct JoinHandle<R> {
    member: Member,
    target: &'static str,
    channel: Mutex<Channel>,
    output: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> JoinHandle<R> {
    /// The process ID (informational: all operations use the pidfd).
    pub fn pid(&self) -> u32 {
        self.member.pid()
    }

    /// The member's name.
    pub fn name(&self) -> &str {
        self.member.name()
    }

    /// Whether the process is daemonic; fixed at start (C1).
    pub fn daemon(&self) -> bool {
        self.member.daemon()
    }

    /// The function it runs.
    pub fn target(&self) -> &'static str {
        self.target
    }

    /// The member's cgroup directory.
    pub fn cgroup(&self) -> &Path {
        self.member.cgroup()
    }

    /// A descriptor that becomes readable when the process ends (Python's `sentinel`).
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.member.sentinel()
    }

    /// The member underneath.
    pub fn member(&self) -> &Member {
        &self.member
    }

    fn channel(&self) -> std::sync::MutexGuard<'_, Channel> {
        self.channel.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The exit status once the process has ended (Python's `exitcode`): 0 after the function
    /// returned, 1 after it panicked, minus the signal number after a signal.
    pub fn exitcode(&self) -> Option<i32> {
        // Read what arrived, so that a large return value never holds the process up.
        let _ = self.channel().collect();
        self.member.exitcode()
    }

    /// Whether the process is still running.
    pub fn is_alive(&self) -> bool {
        self.exitcode().is_none()
    }

    /// Sends SIGTERM through the pidfd (Python's `terminate`).
    pub fn terminate(&self) -> Result<()> {
        self.member.terminate()
    }

    /// SIGKILLs the process and everything in its cgroup at once (Python's `kill`, made
    /// complete with `cgroup.kill`).
    pub fn kill(&self) -> Result<()> {
        self.member.kill()
    }

    /// Waits for the process to end, at most `timeout` (Python's `join`), taking in its return
    /// value meanwhile. Returns the exit status, or `None` when the timeout passed first.
    pub fn join(&self, timeout: Option<Duration>) -> Result<Option<i32>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let fd = {
                let mut channel = self.channel();
                channel.collect()?;
                if let Some(code) = self.member.exitcode() {
                    // Everything it sent before it ended is in the socket by now.
                    channel.collect()?;
                    channel.fd = None;
                    return Ok(Some(code));
                }
                channel.fd.clone()
            };
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => Some(left),
                    None => return Ok(None),
                },
                None => None,
            };
            let pidfd = self.member.sentinel();
            let mut fds = vec![PollFd::new(&pidfd, PollFlags::IN)];
            if let Some(fd) = &fd {
                fds.push(PollFd::new(fd.as_ref(), PollFlags::IN));
            }
            sys::poll(&mut fds, left).map_err(|e| Error::os(format!("wait for process {}", self.name()), e))?;
        }
    }

    /// Waits for the process and returns what its function returned. A panic is an error of
    /// kind [`ErrorKind::TargetPanicked`] carrying the panic's message; a process that ended
    /// without returning (killed, `exit()`ed) is [`ErrorKind::TargetFailed`].
    pub fn wait(self) -> Result<R> {
        let code = self.join(None)?.expect("a join without timeout ends with a status");
        let reply = self.channel().reply.take();
        let who = format!("{} (process {}, pid {})", self.target, self.name(), self.pid());
        match reply {
            Some(Reply::Value(bytes)) => postcard::from_bytes(&bytes).map_err(|e| {
                Error::caused_by(ErrorKind::TargetFailed, format!("cannot decode the value returned by {who}"), e)
            }),
            Some(Reply::Panicked(message)) => {
                Err(Error::new(ErrorKind::TargetPanicked, format!("{who} panicked: {message}")))
            }
            Some(Reply::Failed(message)) => Err(Error::new(ErrorKind::TargetFailed, message)),
            None => Err(Error::new(
                ErrorKind::TargetFailed,
                format!("{who} {} before its function returned", crate::status::describe(code)),
            )),
        }
    }
}

/// The process that started this one, as a target sees it (Python's `parent_process()`).
#[derive(Debug)]
pub struct ParentProcess {
    pid: u32,
    name: String,
    /// Readable once the parent has ended: its pidfd, or an empty pipe whose writer is gone when
    /// the parent had ended before this process looked.
    sentinel: OwnedFd,
}

impl ParentProcess {
    /// The parent's process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The parent's member name (`main` for a family's main member).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A descriptor that becomes readable when the parent ends, for `poll` or an event loop.
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.sentinel.as_fd()
    }

    /// Whether the parent is still running.
    pub fn is_alive(&self) -> bool {
        !matches!(self.join(Some(Duration::ZERO)), Ok(true))
    }

    /// Waits at most `timeout` for the parent to end; returns whether it has.
    pub fn join(&self, timeout: Option<Duration>) -> Result<bool> {
        let mut fds = [PollFd::new(&self.sentinel, PollFlags::IN)];
        let ready =
            sys::poll(&mut fds, timeout).map_err(|e| Error::os(format!("wait for parent pid {}", self.pid), e))?;
        Ok(ready > 0)
    }
}

static PARENT: OnceLock<ParentProcess> = OnceLock::new();

/// Records the parent of this target process. The pidfd is taken before checking that the
/// parent is still ours: if it is, the pidfd names it (a parent cannot be reaped and its PID
/// reused while we are its child); if not, it has ended already.
pub(crate) fn set_parent(parent: Parent) {
    let pidfd = rustix::process::Pid::from_raw(parent.pid as i32)
        .and_then(|pid| rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok())
        .filter(|_| rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32) == Some(parent.pid));
    let sentinel = match pidfd {
        Some(fd) => fd,
        None => match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
            Ok((read, _write)) => read,
            Err(_) => return,
        },
    };
    let _ = PARENT.set(ParentProcess { pid: parent.pid, name: parent.name, sentinel });
}

/// The process that started this one, in a process that runs a target; `None` elsewhere, as
/// for Python's main process.
pub fn parent_process() -> Option<&'static ParentProcess> {
    PARENT.get()
}

/// The implicit family, once opened.
static IMPLICIT: Mutex<Option<&'static Family>> = Mutex::new(None);

/// The family that [`Process::start`] and [`crate::Pool::new`] use: [`Family::new`]'s, opened
/// the first time and shut down when the program exits.
pub fn implicit_family() -> Result<&'static Family> {
    let mut slot = IMPLICIT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(family) = *slot {
        return Ok(family);
    }
    let family: &'static Family = Box::leak(Box::new(Family::new()?));
    sys::at_exit(end_implicit_family).map_err(|e| Error::os("register the implicit family's exit handler", e))?;
    *slot = Some(family);
    Ok(family)
}

/// The exit handler: Python's `_exit_function` in the contract's order.
extern "C" fn end_implicit_family() {
    let family = *IMPLICIT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(family) = family {
        // A panic must not cross into the C library's exit().
        let outcome = std::panic::catch_unwind(|| family.shutdown());
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("daemonic: error: ending family {} at exit: {e}", family.id()),
            Err(_) => eprintln!("daemonic: error: ending family {} at exit panicked", family.id()),
        }
    }
}
