//! # Rust functions as processes: start + join of a target, against Python
//!
//! `cargo bench --bench targets` (harness-less, about a minute) prints one table from one run:
//! the time from "create the process object" to "join returned" for a function that does
//! nothing, per process, median / p90 / p99 in milliseconds:
//!
//! - daemonic `Process::new(noop).start()?.wait()?`: this binary started again (`/proc/self/exe`),
//!   in a cgroup of its own, the request and the reply over a socket pair; non-daemonic and
//!   daemonic (the daemon also gets the seccomp no-fork filter);
//! - Python's `multiprocessing.Process(target=noop)`, `start()`, `join()`, with the *fork* start
//!   method (a fork of the interpreter: no exec, no import) and the *spawn* start method (a new
//!   interpreter that imports the main module: what daemonic does, in Python).
//!
//! The Python figures are timed inside Python with `time.perf_counter_ns()`, one interpreter per
//! chunk (its own start-up is not counted). The four variants run interleaved in chunks, so that
//! noise on this machine hits them alike. The family is on the backend `DAEMONIC_BACKEND` names
//! (cgroupfs by default here). The machine, kernel and load are printed with the figures.
//! Nothing here asserts a speed; a wrong result (a value, a leftover) fails the run.

use std::process::Command;
use std::time::{Duration, Instant};

use daemonic::{Family, Process};

/// Runs per chunk, per variant (Python spawn: [`SPAWN_PER_CHUNK`]).
const PER_CHUNK: usize = 25;
/// Python spawn costs tens of milliseconds each: fewer runs.
const SPAWN_PER_CHUNK: usize = 4;
/// Chunks of every variant.
const CHUNKS: usize = 8;

fn noop() {}

fn answer() -> u64 {
    42
}

daemonic::target!(noop, answer);

const PYTHON: &str = r#"
import json, multiprocessing, sys, time

def noop():
    pass

if __name__ == '__main__':
    ctx = multiprocessing.get_context(sys.argv[1])
    n = int(sys.argv[2])
    p = ctx.Process(target=noop)
    p.start()
    p.join()  # warm-up: the first start imports and sets up more
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        out.append(time.perf_counter_ns() - t)
        assert p.exitcode == 0
    print(json.dumps(out))
"#;

fn main() {
    daemonic::init();
    if let Err(e) = run() {
        eprintln!("bench targets: error: {e}");
        std::process::exit(1);
    }
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn run() -> BenchResult<()> {
    let python = real_python()?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("mp_bench.py");
    std::fs::write(&script, PYTHON)?;

    let family = Family::builder().name("bench-targets").open()?;
    print_machine(&family, &python);

    // Warm-up, and a check that values come back.
    for _ in 0..10 {
        assert_eq!(Process::new(answer).start_in(&family)?.wait()?, 42);
    }

    let mut plain = Vec::new();
    let mut daemon = Vec::new();
    let mut fork = Vec::new();
    let mut spawn = Vec::new();
    for _ in 0..CHUNKS {
        for _ in 0..PER_CHUNK {
            plain.push(time_target(&family, false)?);
        }
        for _ in 0..PER_CHUNK {
            daemon.push(time_target(&family, true)?);
        }
        fork.extend(python_chunk(&python, &script, "fork", PER_CHUNK)?);
        spawn.extend(python_chunk(&python, &script, "spawn", SPAWN_PER_CHUNK)?);
    }

    println!();
    println!("start + join of a target that does nothing, per process (ms):");
    println!("  {:<56} {:>8} {:>8} {:>8} {:>6}", "variant", "median", "p90", "p99", "runs");
    let rows = [
        ("daemonic Process, non-daemonic (re-exec of this binary)", &mut plain),
        ("daemonic Process, daemonic (+ seccomp no-fork filter)", &mut daemon),
        ("Python multiprocessing.Process, fork start method", &mut fork),
        ("Python multiprocessing.Process, spawn start method", &mut spawn),
    ];
    let mut medians = Vec::new();
    for (name, samples) in rows {
        samples.sort_unstable();
        let (p50, p90, p99) = (pct(samples, 50.0), pct(samples, 90.0), pct(samples, 99.0));
        medians.push(p50);
        println!("  {name:<56} {:>8.2} {:>8.2} {:>8.2} {:>6}", ms(p50), ms(p90), ms(p99), samples.len());
    }
    println!(
        "daemonic (non-daemonic) against Python: {:.2}x the time of fork, {:.2}x the time of spawn \
         ({:.1}x faster than spawn)",
        ms(medians[0]) / ms(medians[2]),
        ms(medians[0]) / ms(medians[3]),
        ms(medians[3]) / ms(medians[0]),
    );

    family.shutdown()?;
    let gone = !family.cgroup().exists();
    println!("family removed after the run: {}", if gone { "yes" } else { "NO" });
    if !gone {
        return Err(format!("{} remains", family.cgroup().display()).into());
    }
    Ok(())
}

fn time_target(family: &Family, daemon: bool) -> BenchResult<Duration> {
    let t = Instant::now();
    Process::new(noop).daemon(daemon).start_in(family)?.wait()?;
    Ok(t.elapsed())
}

fn python_chunk(python: &str, script: &std::path::Path, method: &str, n: usize) -> BenchResult<Vec<Duration>> {
    let out = Command::new(python).arg(script).args([method, &n.to_string()]).output()?;
    if !out.status.success() {
        return Err(format!("python {method}: {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let list = text.trim().trim_start_matches('[').trim_end_matches(']');
    list.split(',').map(|v| Ok(Duration::from_nanos(v.trim().parse::<u64>()?))).collect::<BenchResult<Vec<_>>>()
}

/// The interpreter itself (`python3` may be a pyenv shim script).
fn real_python() -> BenchResult<String> {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output()?;
    let path = String::from_utf8(out.stdout)?.trim().to_string();
    if !out.status.success() || path.is_empty() {
        return Err("python3 is needed for the comparison".into());
    }
    Ok(path)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_machine(family: &Family, python: &str) {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default().trim().to_string();
    let version = Command::new(python)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("machine: {cpus} CPUs, kernel {}, load average {}", read("/proc/sys/kernel/osrelease"), {
        let l = read("/proc/loadavg");
        l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    });
    let backend = if family.cgroup().to_string_lossy().ends_with(".slice") { "systemd" } else { "cgroupfs" };
    println!("family: {} ({backend}); {version} at {python}", family.cgroup().display());
    let exe = std::env::current_exe().ok().and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| m.len());
    println!("this binary, started again for every target: {:.1} MiB", exe as f64 / (1024.0 * 1024.0));
}
