//! Port of the seed's "Example of Creating a Daemon Process from a Daemon Process".
//!
//! ```python
//! def task2():
//!     process = current_process()
//!     print(f'Daemon process 2: {process.daemon}')
//!
//! def task():
//!     process = current_process()
//!     print(f'Daemon process 1: {process.daemon}')
//!     new_process = Process(target=task2)
//!     new_process.start()
//!
//! if __name__ == '__main__':
//!     process = Process(target=task, daemon=True)
//!     process.start()
//!     process.join()
//! ```
//!
//! Prints `Daemon process 1: True`, then the daemon fails with the error
//! `daemonic processes are not allowed to have children` (Python's AssertionError; here a panic
//! in the daemon, which exits with code 1). `task2` never runs. In Python the rule is an assert;
//! here the kernel enforces it too (a seccomp filter), so even a raw fork() fails.

mod common;

use common::py;
use daemonic::{Process, current_process};

/// Function to be executed by the second daemon process.
fn task2() {
    // get the current process
    let process = current_process().expect("read this process's cgroup");
    // report if daemon process
    println!("Daemon process 2: {}", py(process.daemon));
}

/// Function to be executed in a new process.
fn task() {
    // get the current process
    let process = current_process().expect("read this process's cgroup");
    // report if daemon process
    println!("Daemon process 1: {}", py(process.daemon));
    // create a new process and start it: refused in a daemon
    let new_process = Process::new(task2);
    if let Err(e) = new_process.start() {
        panic!("{e}");
    }
}
daemonic::target!(task, task2);

fn main() -> daemonic::Result<()> {
    daemonic::init();
    // create a new daemon process and start it
    let process = Process::new(task).daemon(true).start()?;
    // block for a moment to let the daemon process run
    process.join(None)?;
    Ok(())
}
