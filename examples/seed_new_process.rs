//! Port of the seed's "Example of Checking if a Process is a Daemon".
//!
//! ```python
//! def task():
//!     process = current_process()
//!     print(f'Daemon process: {process.daemon}')
//!
//! if __name__ == '__main__':
//!     process = Process(target=task)
//!     process.start()
//! ```
//!
//! Prints `Daemon process: False`: the new process inherits the flag of the main process. The
//! main process does not join it; as in Python, a non-daemonic child is waited for when the
//! program exits.

mod common;

use common::py;
use daemonic::{Process, current_process};

/// Function to be executed in a new process.
fn task() {
    // get the current process
    let process = current_process().expect("read this process's cgroup");
    // report if daemon process
    println!("Daemon process: {}", py(process.daemon));
}
daemonic::target!(task);

fn main() -> daemonic::Result<()> {
    daemonic::init();
    // create a new process with a default value for "daemon"
    let process = Process::new(task);
    // start the new process
    process.start()?;
    Ok(())
}
