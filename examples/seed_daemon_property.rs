//! Port of the seed's "Example of Configuring a Process to be a Daemon" (the `daemon`
//! property, set after construction and before `start()`).
//!
//! ```python
//! def task():
//!     process = current_process()
//!     print(f'Daemon process: {process.daemon}')
//!
//! if __name__ == '__main__':
//!     process = Process(target=task)
//!     process.daemon = True
//!     process.start()
//!     process.join()
//! ```
//!
//! Prints `Daemon process: True`. The flag lives on the builder; the running handle has no
//! setter, so it cannot change once the process runs (C1).

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
    // create a new process
    let mut process = Process::new(task);
    // configure the process to be a daemon process
    process.daemon(true);
    // start the new process
    let process = process.start()?;
    // block for a moment to let the daemon process run
    process.join(None)?;
    Ok(())
}
