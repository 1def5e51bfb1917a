//! Rust functions as processes, the way Python's *spawn* start method does it.
//!
//! A [`Process`](crate::Process) runs a registered Rust function in a new member of the family.
//! The new process is this program again: `/proc/self/exe`, started with the parent's own
//! arguments. Nothing of the parent runs in it after the clone but the async-signal-safe code
//! that leads to `execve`, so a multithreaded parent (locks held by other threads, a tokio
//! runtime) cannot leave it in a broken state. [`init`](crate::init), called at the top of `main`, recognises
//! such a process, runs the function it was started for and exits; in any other process it
//! returns at once.
//!
//! How the two sides talk: a Unix socket pair. The child inherits its end under the number given
//! in `DAEMONIC_TARGET` (which the `.init_array` hook in [`crate::sys`] removes from the
//! environment before `main`, so nothing the target starts inherits it). Every message is a
//! frame: a little-endian `u32` length and a [postcard] body. The parent sends one [`Assignment`];
//! the child answers with one [`Reply`] (or, as a pool worker, one per [`Task`] until the end of
//! the stream). Arguments and return values are postcard-encoded by the target's own types,
//! inside those frames.
//!
//! Targets are registered with [`target!`](crate::target!), which adds an entry to a
//! link-time list ([`inventory`]); the key is the function's [`std::any::type_name`], which both
//! sides compute from the same binary.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::ThreadId;

use rustix::event::{PollFd, PollFlags};
use rustix::net::{RecvFlags, SendFlags};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::sys;

/// The environment variable that tells a re-executed program which descriptor is its channel.
pub(crate) const ENV: &str = "DAEMONIC_TARGET";

/// Exit code of a target process whose function panicked (Python's code after an exception).
pub const EXIT_PANICKED: i32 = 1;

/// Exit code of a target process that could not run its function at all: its channel was not
/// usable, or the function it was sent is not registered in this program.
pub const EXIT_NO_TARGET: i32 = 2;

/// Set by [`init`](crate::init); a process that never called it cannot start targets (its child would run
/// `main` again instead of the target).
static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// A Rust function that can run in a process of its own: a plain function item (not a closure
/// and not a function pointer, which have no name to find them by) with up to six arguments,
/// whose arguments and return value serde can carry.
///
/// Implemented for every such function; register it with [`target!`](crate::target!).
pub trait Target<Args>: Copy + Send + Sync + 'static {
    /// What the function returns.
    type Output;
    /// Calls the function with its arguments as a tuple.
    fn call(self, args: Args) -> Self::Output;
}

macro_rules! impl_target {
    ($($arg:ident),*) => {
        impl<Func, Out, $($arg,)*> Target<($($arg,)*)> for Func
        where
            Func: Fn($($arg),*) -> Out + Copy + Send + Sync + 'static,
        {
            type Output = Out;
            #[allow(non_snake_case, clippy::unused_unit)]
            fn call(self, ($($arg,)*): ($($arg,)*)) -> Out {
                self($($arg),*)
            }
        }
    };
}

impl_target!();
impl_target!(A1);
impl_target!(A1, A2);
impl_target!(A1, A2, A3);
impl_target!(A1, A2, A3, A4);
impl_target!(A1, A2, A3, A4, A5);
impl_target!(A1, A2, A3, A4, A5, A6);

/// One registered target: how to name it and how to call it on encoded arguments.
#[doc(hidden)]
pub struct Registration {
    /// The function's type name, the key both sides compute.
    pub name: fn() -> &'static str,
    /// Decodes the arguments, calls the function and encodes what it returned.
    pub call: fn(&[u8]) -> std::result::Result<Vec<u8>, String>,
}

inventory::collect!(Registration);

/// What [`target!`](crate::target!) expands to needs these; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::target::Registration;
    pub use inventory;

    use crate::runtime::target::Target;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// The key of `f`: its type name.
    pub fn name_of<F>(_: &F) -> &'static str {
        std::any::type_name::<F>()
    }

    /// Decodes `args`, calls `f` and encodes its result.
    pub fn call<F, A>(f: F, args: &[u8]) -> Result<Vec<u8>, String>
    where
        F: Target<A>,
        A: DeserializeOwned,
        F::Output: Serialize,
    {
        let args: A = postcard::from_bytes(args).map_err(|e| format!("cannot decode the arguments: {e}"))?;
        let out = f.call(args);
        postcard::to_stdvec(&out).map_err(|e| format!("cannot encode the return value: {e}"))
    }
}

/// Registers functions as targets that a [`Process`](crate::Process) or a
/// [`Pool`](crate::Pool) can run in a new process.
///
/// Put it next to the functions (at module level, anywhere in the program) and call
/// [`init`](crate::init) at the top of `main`:
///
/// ```no_run
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// daemonic::target!(square);
///
/// fn main() -> Result<(), daemonic::Error> {
///     daemonic::init();
///     let p = daemonic::Process::with_args(square, (7,)).start()?;
///     assert_eq!(p.wait()?, 49);
///     Ok(())
/// }
/// ```
#[macro_export]
macro_rules! target {
    ($($function:path),+ $(,)?) => {
        $(
            const _: () = {
                fn name() -> &'static str {
                    $crate::__private::name_of(&$function)
                }
                fn call(args: &[u8]) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    $crate::__private::call($function, args)
                }
                $crate::__private::inventory::submit! {
                    $crate::__private::Registration { name, call }
                }
            };
        )+
    };
}

/// The registration of the target named `name`.
fn find(name: &str) -> Option<&'static Registration> {
    inventory::iter::<Registration>.into_iter().find(|r| (r.name)() == name)
}

/// Checks that the target `name` can be started from this process.
pub(crate) fn checked_name_of(name: &'static str) -> Result<&'static str> {
    if !INIT_CALLED.load(Ordering::Acquire) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "cannot start {name}: daemonic::init() was not called. A target runs in this program started \
                 again, and init() at the top of main is where that copy finds its function instead of running \
                 main a second time"
            ),
        ));
    }
    if find(name).is_none() {
        return Err(Error::new(ErrorKind::InvalidInput, unregistered(name)));
    }
    Ok(name)
}

fn unregistered(name: &str) -> String {
    if name.contains("{{closure}}") || name.starts_with("fn(") || name.starts_with("fn ") {
        format!(
            "{name} cannot be a target: only a function item registered with daemonic::target! can run in a new process"
        )
    } else {
        format!("{name} is not a registered target: add `daemonic::target!({})` next to the function", short_name(name))
    }
}

/// The last segment of a type name, without generic arguments: `app::jobs::square` → `square`.
pub(crate) fn short_name(name: &str) -> &str {
    let plain = name.split('<').next().unwrap_or(name);
    plain.rsplit("::").next().unwrap_or(plain)
}

/// The first message on a channel, from the parent.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Assignment {
    /// Run one target once, then exit.
    Call { target: String, args: Vec<u8>, parent: Parent },
    /// Be a pool worker: run [`Task`]s until the end of the stream.
    Worker { parent: Parent },
}

/// Who started the process, for [`parent_process`](crate::parent_process).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct Parent {
    pub pid: u32,
    pub name: String,
}

/// One call for a pool worker.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Task {
    pub target: String,
    pub args: Vec<u8>,
}

/// The outcome of one call.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) enum Reply {
    /// The function returned; its value, encoded.
    Value(Vec<u8>),
    /// The function panicked with this message.
    Panicked(String),
    /// The function could not be called: not registered here, or its arguments did not decode.
    Failed(String),
}

/// Frames larger than this are refused rather than allocated.
const MAX_FRAME: usize = 1 << 30;

/// `msg` as a frame: its length (little-endian `u32`) and its postcard encoding.
pub(crate) fn frame<T: Serialize>(msg: &T) -> io::Result<Vec<u8>> {
    let body = postcard::to_stdvec(msg).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a message of {} bytes is too large", body.len()),
        ));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Sends all of `buf`, waiting while the socket is full. No SIGPIPE: a peer that is gone is an
/// `EPIPE` error. With `until`, a pidfd, the wait also ends (with an error) when that process
/// has ended, so a child that never reads cannot hold the sender.
pub(crate) fn send_all(fd: BorrowedFd<'_>, mut buf: &[u8], until: Option<BorrowedFd<'_>>) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::net::send(fd, buf, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                let mut fds = vec![PollFd::new(&fd, PollFlags::OUT)];
                if let Some(pidfd) = &until {
                    fds.push(PollFd::new(pidfd, PollFlags::IN));
                }
                crate::sys::poll(&mut fds, None)?;
                if fds.get(1).is_some_and(|p| p.revents().contains(PollFlags::IN)) {
                    return Err(io::Error::other("it ended"));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Bytes received but not yet made into a message.
#[derive(Default, Debug)]
pub(crate) struct Inbox {
    buf: Vec<u8>,
}

impl Inbox {
    /// Reads what `fd` has without waiting; returns whether the stream has ended.
    pub(crate) fn fill(&mut self, fd: BorrowedFd<'_>) -> io::Result<bool> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match rustix::net::recv(fd, &mut buf, RecvFlags::DONTWAIT) {
                Ok((0, _)) => return Ok(true),
                Ok((n, _)) => self.buf.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return Ok(false),
                // A peer that died with unread data in its socket resets it.
                Err(rustix::io::Errno::CONNRESET) => return Ok(true),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Receives the next whole message, waiting for it; `None` at the end of the stream before a
    /// message starts. Bytes of later messages stay in the inbox.
    pub(crate) fn recv<T: DeserializeOwned>(&mut self, fd: BorrowedFd<'_>) -> io::Result<Option<T>> {
        loop {
            if let Some(msg) = self.take()? {
                return Ok(Some(msg));
            }
            let mut buf = [0u8; 64 * 1024];
            match rustix::net::recv(fd, &mut buf, RecvFlags::empty()) {
                Ok((0, _)) if self.buf.is_empty() => return Ok(None),
                Ok((0, _)) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended inside a message"));
                }
                Ok((n, _)) => self.buf.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    crate::sys::poll(&mut [PollFd::new(&fd, PollFlags::IN)], None)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The first whole message, if one has arrived.
    pub(crate) fn take<T: DeserializeOwned>(&mut self) -> io::Result<Option<T>> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a message claims {len} bytes")));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let msg =
            postcard::from_bytes(&self.buf[4..4 + len]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
        self.buf.drain(..4 + len);
        msg.map(Some)
    }
}

/// Notes the value of [`ENV`], taken out of the environment before `main`: the number of the
/// channel descriptor this process was started with to run a Rust target.
pub(crate) fn note_channel(value: &std::ffi::OsStr) {
    sys::note_inherited_socket(value.to_str().and_then(|v| v.parse::<i32>().ok()));
}

/// [`crate::init`] after the hook is anchored: in a process started to run a target, runs it
/// and exits; everywhere else returns at once.
pub(crate) fn serve_if_started() {
    INIT_CALLED.store(true, Ordering::Release);
    let Some(channel) = sys::take_inherited_socket() else {
        return;
    };
    let code = match channel {
        Ok(fd) => serve(fd),
        Err(e) => {
            eprintln!("daemonic: error: {ENV} does not name this process's channel from its parent: {e}");
            EXIT_NO_TARGET
        }
    };
    std::process::exit(code)
}

/// The child's side: receives the request, runs it, answers, and returns the exit code.
fn serve(fd: OwnedFd) -> i32 {
    // Kept for the life of the process, where the panic hook can reach it too.
    let fd = CHANNEL.get_or_init(|| fd);
    // The channel is this process's alone: nothing it starts inherits it.
    if let Err(e) = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC) {
        eprintln!("daemonic: error: cannot set up the channel from the parent: {e}");
        return EXIT_NO_TARGET;
    }
    let mut inbox = Inbox::default();
    let request = match inbox.recv::<Assignment>(fd.as_fd()) {
        Ok(Some(r)) => r,
        Ok(None) => {
            eprintln!("daemonic: error: this process was started to run a target, but its parent sent none");
            return EXIT_NO_TARGET;
        }
        Err(e) => {
            eprintln!("daemonic: error: cannot read the target from the parent: {e}");
            return EXIT_NO_TARGET;
        }
    };
    let _ = TARGET_THREAD.set(std::thread::current().id());
    install_panic_hook();
    match request {
        Assignment::Call { target, args, parent } => {
            crate::process::set_parent(parent);
            let reply = run(&target, &args);
            let code = exit_code(&reply);
            if let Reply::Failed(msg) = &reply {
                eprintln!("daemonic: error: {msg}");
            }
            // A parent that stopped listening (its handle was dropped) does not change the outcome.
            let _ = frame(&reply).and_then(|f| send_all(fd.as_fd(), &f, None));
            code
        }
        Assignment::Worker { parent } => {
            crate::process::set_parent(parent);
            loop {
                let task = match inbox.recv::<Task>(fd.as_fd()) {
                    Ok(Some(task)) => task,
                    Ok(None) => return 0,
                    Err(e) => {
                        eprintln!("daemonic: error: pool worker cannot read its next task: {e}");
                        return EXIT_NO_TARGET;
                    }
                };
                let reply = run(&task.target, &task.args);
                if frame(&reply).and_then(|f| send_all(fd.as_fd(), &f, None)).is_err() {
                    return 0; // the pool is gone
                }
            }
        }
    }
}

/// The exit code for an outcome.
fn exit_code(reply: &Reply) -> i32 {
    match reply {
        Reply::Value(_) => 0,
        Reply::Panicked(_) => EXIT_PANICKED,
        Reply::Failed(_) => EXIT_NO_TARGET,
    }
}

/// Runs the target `name` on encoded `args`, catching a panic.
fn run(name: &str, args: &[u8]) -> Reply {
    let Some(registration) = find(name) else {
        return Reply::Failed(format!(
            "{name} is not a registered target in this program ({}); was it registered with daemonic::target!?",
            std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "?".into())
        ));
    };
    *lock(&PANIC_MESSAGE) = None;
    match catch_unwind(AssertUnwindSafe(|| (registration.call)(args))) {
        Ok(Ok(value)) => Reply::Value(value),
        Ok(Err(why)) => Reply::Failed(format!("cannot call {name}: {why}")),
        Err(payload) => {
            let message = lock(&PANIC_MESSAGE).take().unwrap_or_else(|| payload_message(payload.as_ref()).into());
            Reply::Panicked(message)
        }
    }
}

/// The thread that runs targets in this process (the main thread).
static TARGET_THREAD: OnceLock<ThreadId> = OnceLock::new();
/// This process's channel to its parent, when it runs targets.
static CHANNEL: OnceLock<OwnedFd> = OnceLock::new();
/// The message of the last panic on the target thread, recorded by the hook.
static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn payload_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "a panic with a non-string payload"
    }
}

/// Wraps the panic hook: a panic on the target thread is recorded for the reply (the previous
/// hook still prints it). Where panics abort, the process cannot reply after the panic, so the
/// hook sends the reply itself.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if TARGET_THREAD.get() == Some(&std::thread::current().id()) {
            let message = payload_message(info.payload()).to_string();
            if cfg!(panic = "abort")
                && let Some(fd) = CHANNEL.get()
            {
                let _ = frame(&Reply::Panicked(message.clone())).and_then(|f| send_all(fd.as_fd(), &f, None));
            }
            *lock(&PANIC_MESSAGE) = Some(message);
        }
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use crate::runtime::target::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let reply = Reply::Value(vec![1, 2, 3]);
        let bytes = frame(&reply).expect("frame");
        let mut inbox = Inbox::default();
        for b in &bytes[..bytes.len() - 1] {
            inbox.buf.push(*b);
            assert!(inbox.take::<Reply>().expect("partial").is_none());
        }
        inbox.buf.push(bytes[bytes.len() - 1]);
        match inbox.take::<Reply>().expect("whole") {
            Some(Reply::Value(v)) => assert_eq!(v, vec![1, 2, 3]),
            other => panic!("{other:?}"),
        }
        assert!(inbox.buf.is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 3000, failure_persistence: None, ..Default::default()
        })]

        /// Whatever arrives on a channel, reading it is an error or messages, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            // As they come, and as the body of a frame whose length is right.
            let mut framed = (bytes.len() as u32).to_le_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            for (kind, buf) in (0..3).flat_map(|k| [(k, bytes.clone()), (k, framed.clone())]) {
                let mut inbox = Inbox { buf };
                loop {
                    let more = match kind {
                        0 => matches!(inbox.take::<Assignment>(), Ok(Some(_))),
                        1 => matches!(inbox.take::<Task>(), Ok(Some(_))),
                        _ => matches!(inbox.take::<Reply>(), Ok(Some(_))),
                    };
                    if !more {
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut inbox = Inbox { buf: (u32::MAX).to_le_bytes().to_vec() };
        assert!(inbox.take::<Reply>().is_err());
    }

    #[test]
    fn short_names_drop_paths_and_generics() {
        assert_eq!(short_name("app::jobs::square"), "square");
        assert_eq!(short_name("app::sum<u64>"), "sum");
        assert_eq!(short_name("task"), "task");
    }

    #[test]
    fn an_unknown_target_is_a_failure_not_a_run() {
        match run("no::such::target", &[]) {
            Reply::Failed(msg) => {
                assert!(msg.contains("no::such::target is not a registered target in this program"), "{msg}");
                assert_eq!(exit_code(&Reply::Failed(msg)), EXIT_NO_TARGET);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(exit_code(&Reply::Panicked(String::new())), EXIT_PANICKED);
    }

    #[test]
    fn closures_are_named_as_such() {
        let name = std::any::type_name::<fn(u8)>();
        assert!(unregistered(name).contains("only a function item"), "{}", unregistered(name));
        assert!(unregistered("app::task").contains("daemonic::target!(task)"));
    }
}
