//! A process pool inside a daemon: the case CPython refuses.
//!
//! ```python
//! def square(x):
//!     return x * x
//!
//! def task():
//!     with Pool(4) as pool:
//!         print(f'pool results: {pool.map(square, range(10))}')
//!
//! if __name__ == '__main__':
//!     process = Process(target=task, daemon=True)
//!     process.start()
//!     process.join()
//! ```
//!
//! In Python the daemon fails with `AssertionError: daemonic processes are not allowed to have
//! children`: its pool's workers would be orphaned when it is terminated. Here the daemon is
//! started with `allow_children`, so its workers are confined to its cgroup subtree: when the
//! daemon's family ends, one `cgroup.kill` takes the daemon and every worker together.
//!
//! Prints `pool results: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]`.

use daemonic::{Pool, Process};

/// Runs in the pool's workers.
fn square(x: u64) -> u64 {
    x * x
}

/// Runs in the daemon: a pool of four non-daemonic workers, results in input order.
fn task() {
    let pool = Pool::new(4).expect("start the pool's workers");
    let results = pool.map(square, 0..10).expect("map square over the pool");
    println!("pool results: {results:?}");
    pool.close().expect("close the pool");
}
daemonic::target!(square, task);

fn main() -> daemonic::Result<()> {
    daemonic::init();
    let process = Process::new(task).daemon(true).allow_children(true).start()?;
    process.join(None)?;
    Ok(())
}
