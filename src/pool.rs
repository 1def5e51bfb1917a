//! A small process pool: N non-daemonic worker processes running a registered function over a
//! sequence of inputs (Python's `Pool.map`, results in input order).
//!
//! Each worker is this program started again (see [`crate::runtime::target`]), answering one task at a
//! time over its channel until the channel ends. The parent hands a worker its next input as
//! soon as it answers, so slow inputs do not hold the others up. A panic in the function is
//! caught in the worker, which goes on serving; `map` then fails with the panic's message once
//! the tasks already running have answered. A worker that died (killed, or a panic where panics
//! abort) is taken out and the others go on; it is not replaced.
//!
//! Unlike CPython's workers, these are non-daemonic, so a daemon started with `allow_children`
//! may use a pool: its workers are confined to its cgroup subtree and die with it.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use rustix::event::{PollFd, PollFlags};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::process::{Spec, implicit_family, parent_in, start_in};
use crate::runtime::family::Family;
use crate::runtime::member::Member;
use crate::runtime::target::{self, Assignment, Inbox, Reply, Target, Task};

/// N worker processes that run registered functions (Python's `multiprocessing.Pool`).
///
/// ```no_run
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// daemonic::target!(square);
///
/// fn main() -> daemonic::Result<()> {
///     daemonic::init();
///     let pool = daemonic::Pool::new(4)?;
///     assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
///     pool.close()
/// }
/// ```
#[derive(Debug)]
pub struct Pool {
    workers: Mutex<Vec<Worker>>,
}

#[derive(Debug)]
struct Worker {
    member: Member,
    /// `None` once closed, or after the worker was lost.
    channel: Option<OwnedFd>,
    inbox: Inbox,
}

impl Pool {
    /// Starts `processes` workers in the implicit family (see [`crate::Process::start`]).
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::in_family(implicit_family()?, processes)
    }

    /// Starts `processes` workers as members of `family`.
    pub fn in_family(family: &Family, processes: usize) -> Result<Pool> {
        if processes == 0 {
            return Err(Error::new(ErrorKind::InvalidInput, "a pool needs at least one worker process"));
        }
        let parent = parent_in(family);
        let mut workers = Vec::with_capacity(processes);
        for i in 1..=processes {
            let spec = Spec {
                name: format!("pool-worker-{i}"),
                daemon: Some(false),
                allow_children: false,
                stop_timeout: None,
            };
            match start_in(family, &spec, &Assignment::Worker { parent: parent.clone() }) {
                Ok((member, channel)) => {
                    workers.push(Worker { member, channel: Some(channel), inbox: Inbox::default() })
                }
                Err(e) => {
                    let pool = Pool { workers: Mutex::new(workers) };
                    let _ = pool.close();
                    return Err(e);
                }
            }
        }
        Ok(Pool { workers: Mutex::new(workers) })
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.lock().len()
    }

    /// The worker processes.
    pub fn pids(&self) -> Vec<u32> {
        self.lock().iter().map(|w| w.member.pid()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Worker>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `target(input)` for every input on the workers and returns the results in input
    /// order. The first failure (a panic, a lost worker) is returned once the tasks already
    /// running have answered; the pool stays usable after a panic.
    pub fn map<F, A, R>(&self, target: F, inputs: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        F: Target<(A,), Output = R>,
        A: Serialize,
        R: DeserializeOwned,
    {
        let _ = target;
        let name = target::checked_name_of(std::any::type_name::<F>())?;
        let tasks = inputs
            .into_iter()
            .map(|input| {
                let args = postcard::to_stdvec(&(input,)).map_err(|e| {
                    Error::caused_by(ErrorKind::InvalidInput, format!("cannot encode an input of {name}"), e)
                })?;
                target::frame(&Task { target: name.to_string(), args }).map_err(|e| {
                    Error::caused_by(ErrorKind::InvalidInput, format!("cannot encode an input of {name}"), e)
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut workers = self.lock();
        let mut results: Vec<Option<R>> = (0..tasks.len()).map(|_| None).collect();
        // The task each worker is running.
        let mut running: Vec<Option<usize>> = vec![None; workers.len()];
        let mut next = 0;
        let mut failure: Option<Error> = None;
        loop {
            // Hand out work to idle workers, unless something failed already.
            for (w, worker) in workers.iter_mut().enumerate() {
                if running[w].is_some() || next >= tasks.len() || failure.is_some() {
                    continue;
                }
                if worker.channel.is_some() && worker.member.exitcode().is_some() {
                    worker.channel = None; // it ended between two maps
                }
                let Some(channel) = &worker.channel else { continue };
                match target::send_all(channel.as_fd(), &tasks[next], None) {
                    Ok(()) => {
                        running[w] = Some(next);
                        next += 1;
                    }
                    Err(e) => failure = Some(lost(worker, next, &e.to_string())),
                }
            }
            if running.iter().all(Option::is_none) {
                if next < tasks.len() && failure.is_none() {
                    failure = Some(Error::new(ErrorKind::TargetFailed, "every worker of the pool has ended"));
                }
                break;
            }
            // Wait for any busy worker to answer.
            let busy: Vec<usize> = (0..workers.len()).filter(|w| running[*w].is_some()).collect();
            let ready: Vec<bool> = {
                let mut fds: Vec<PollFd<'_>> = busy
                    .iter()
                    .map(|w| {
                        PollFd::new(workers[*w].channel.as_ref().expect("a busy worker has a channel"), PollFlags::IN)
                    })
                    .collect();
                crate::sys::poll(&mut fds, None).map_err(|e| Error::os("wait for the pool's workers", e))?;
                fds.iter().map(|fd| !fd.revents().is_empty()).collect()
            };
            for (w, _) in busy.into_iter().zip(ready).filter(|(_, r)| *r) {
                let index = running[w].take().expect("busy");
                let worker = &mut workers[w];
                let channel = worker.channel.as_ref().expect("a busy worker has a channel");
                let outcome = match worker.inbox.recv::<Reply>(channel.as_fd()) {
                    Ok(Some(Reply::Value(bytes))) => postcard::from_bytes::<R>(&bytes).map_err(|e| {
                        Error::caused_by(
                            ErrorKind::TargetFailed,
                            format!("cannot decode the value {name} returned for input {index}"),
                            e,
                        )
                    }),
                    Ok(Some(Reply::Panicked(message))) => {
                        // Built with panic = "abort" (the parent is the same binary), the
                        // worker replied from its panic hook and is dying: it serves no more.
                        if cfg!(panic = "abort") {
                            worker.channel = None;
                            let _ = worker.member.join(Some(std::time::Duration::from_secs(1)));
                        }
                        Err(Error::new(
                            ErrorKind::TargetPanicked,
                            format!(
                                "{name} panicked on input {index} (worker {}, pid {}): {message}",
                                worker.member.name(),
                                worker.member.pid()
                            ),
                        ))
                    }
                    Ok(Some(Reply::Failed(message))) => Err(Error::new(ErrorKind::TargetFailed, message)),
                    Ok(None) => Err(lost(worker, index, "it ended")),
                    Err(e) => Err(lost(worker, index, &e.to_string())),
                };
                match outcome {
                    Ok(value) => results[index] = Some(value),
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(results.into_iter().map(|r| r.expect("every task answered")).collect())
    }

    /// Ends the workers once they are idle (the end of their channels) and waits for them.
    pub fn close(self) -> Result<()> {
        self.end()
    }

    /// Kills the workers at once, whatever they are doing (Python's `terminate`), and reaps them.
    pub fn terminate(self) -> Result<()> {
        for worker in self.lock().iter() {
            worker.member.kill()?;
        }
        self.end()
    }

    fn end(&self) -> Result<()> {
        let mut workers = std::mem::take(&mut *self.lock());
        for worker in &mut workers {
            worker.channel = None;
        }
        for worker in &workers {
            worker.member.join(None)?;
        }
        Ok(())
    }
}

impl Drop for Pool {
    /// Closes the pool: the workers end once idle and are waited for.
    fn drop(&mut self) {
        if let Err(e) = self.end() {
            eprintln!("daemonic: error: closing a pool: {e}");
        }
    }
}

/// The error for a worker that went away while running input `index`; the worker is closed.
fn lost(worker: &mut Worker, index: usize, why: &str) -> Error {
    worker.channel = None;
    let status = match worker.member.join(Some(std::time::Duration::from_secs(1))) {
        Ok(Some(code)) => crate::status::describe(code),
        _ => "stopped answering".into(),
    };
    Error::new(
        ErrorKind::TargetFailed,
        format!(
            "pool worker {} (pid {}) {status} while running input {index} ({why})",
            worker.member.name(),
            worker.member.pid()
        ),
    )
}
