//! Port of the seed's "Example of Checking if the Current Process is Daemon".
//!
//! ```python
//! from multiprocessing import current_process
//! process = current_process()
//! print(f'Daemon process: {process.daemon}')
//! ```
//!
//! Prints `Daemon process: False`: a program not started by daemonic is not a daemon (C2).

mod common;

use common::py;
use daemonic::current_process;

fn main() -> daemonic::Result<()> {
    daemonic::init();
    // get the current process
    let process = current_process()?;
    // report if daemon process
    println!("Daemon process: {}", py(process.daemon));
    Ok(())
}
