//! Port of the seed's "Example of Daemon Process Terminated Abruptly".
//!
//! ```python
//! def task():
//!     process = current_process()
//!     print(f'Daemon process: {process.daemon}')
//!     for i in range(1000):
//!         print(i, flush=True)
//!         sleep(0.1)
//!
//! if __name__ == '__main__':
//!     process = Process(target=task, daemon=True)
//!     process.start()
//!     sleep(3)
//!     print('Main process exiting...')
//! ```
//!
//! Prints `Daemon process: True`, the counter for about three seconds (0 to 28 or 29), then
//! `Main process exiting...` last: when `main` returns, the exit handler kills the daemon at once
//! with `cgroup.kill`. Kill the program with SIGKILL instead and the family's guardian does the
//! same, which Python cannot.

mod common;

use std::thread::sleep;
use std::time::Duration;

use common::py;
use daemonic::{Process, current_process};

/// Function to be executed in a new process.
fn task() {
    // get the current process
    let process = current_process().expect("read this process's cgroup");
    // report if daemon process
    println!("Daemon process: {}", py(process.daemon));
    // loop for a while
    for i in 0..1000 {
        println!("{i}");
        // block for a moment
        sleep(Duration::from_millis(100));
    }
}
daemonic::target!(task);

fn main() -> daemonic::Result<()> {
    daemonic::init();
    // create a new daemon process and start it
    Process::new(task).daemon(true).start()?;
    // block for a moment to let the daemon process run
    sleep(Duration::from_secs(3));
    // prepare the user
    println!("Main process exiting...");
    Ok(())
}
