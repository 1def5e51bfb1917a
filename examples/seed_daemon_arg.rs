//! Port of the seed's "Example of Creating a Daemon Process" (the `daemon` argument).
//!
//! ```python
//! def task():
//!     process = current_process()
//!     print(f'Daemon process: {process.daemon}')
//!
//! if __name__ == '__main__':
//!     process = Process(target=task, daemon=True)
//!     process.start()
//!     process.join()
//! ```
//!
//! Prints `Daemon process: True`.

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
    // create a new daemon process and start it
    let process = Process::new(task).daemon(true).start()?;
    // wait for the new process to finish
    process.join(None)?;
    Ok(())
}
