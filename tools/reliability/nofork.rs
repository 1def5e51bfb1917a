//! Section "no-fork policy": a daemon (without `allow_children`) tries every way to create a
//! process, from C (`nofork.c`: fork, vfork, clone, clone3, posix_spawn, system), from a shell
//! (a pipeline), from Python (`nofork.py`: os.fork, subprocess, os.posix_spawn) and from Rust
//! (`std::process::Command`); each must be refused. Threads must keep working: pthreads,
//! Python threads and a thread pool, a Rust thread pool and a tokio runtime.
//!
//! The probes run one after another as daemons of one family opened by this program in the
//! `nofork-main` role; each writes `NAME: verdict` lines to a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use daemonic::Command;

use crate::Env;
use crate::probe::{leftovers, sweep};

pub(crate) const C_SOURCE: &str = include_str!("nofork.c");
pub(crate) const PY_SOURCE: &str = include_str!("nofork.py");

/// The probes, by the name of their output file.
const PROBES: [&str; 4] = ["c", "shell", "python", "rust"];

/// What one trial saw: each line's verdict, by `probe / name`.
#[derive(Debug, Default)]
pub(crate) struct NoForkOutcome {
    pub(crate) verdicts: BTreeMap<String, String>,
    pub(crate) leaked_cgroups: usize,
    pub(crate) leaked_units: usize,
    pub(crate) error: Option<String>,
}

impl NoForkOutcome {
    /// Verdicts that break the policy: a process made, or threads broken.
    pub(crate) fn wrong(&self) -> Vec<String> {
        self.verdicts.iter().filter(|(k, v)| !verdict_ok(k, v)).map(|(k, v)| format!("{k}: {v}")).collect()
    }
}

impl crate::report::Trial for NoForkOutcome {
    fn leaks(&self) -> usize {
        self.leaked_cgroups + self.leaked_units
    }

    fn failed(&self) -> bool {
        self.leaks() > 0 || self.error.is_some() || !self.wrong().is_empty() || self.verdicts.len() < 16
    }
}

/// Whether a line's verdict is what the policy wants: threads work, everything else is refused.
pub(crate) fn verdict_ok(name: &str, verdict: &str) -> bool {
    let thread_like = ["thread", "Thread", "tokio"].iter().any(|w| name.contains(w));
    if thread_like { verdict == "works" } else { verdict.starts_with("refused") }
}

/// Compiles the C probe into the scratch directory.
pub(crate) fn build_c_probe(scratch: &Path) -> Result<PathBuf, String> {
    let src = scratch.join("nofork.c");
    let bin = scratch.join("nofork");
    std::fs::write(&src, C_SOURCE).map_err(|e| format!("write {}: {e}", src.display()))?;
    std::fs::write(scratch.join("nofork.py"), PY_SOURCE).map_err(|e| format!("write nofork.py: {e}"))?;
    let out = std::process::Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .map_err(|e| format!("run cc (the C compiler; Debian: apt-get install gcc): {e}"))?;
    if !out.status.success() {
        return Err(format!("cc {}: {}", src.display(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(bin)
}

/// The `nofork-main` role: runs each probe as a daemon, one after another, and shuts down.
pub(crate) fn main(mut it: impl Iterator<Item = String>) -> Result<(), String> {
    let opt = crate::parse_pairs(&mut it)?;
    let get = |k: &str| opt.get(k).cloned().ok_or_else(|| format!("{k} is required"));
    let family = crate::open_family(&get("--backend")?, &get("--name")?, None)?;
    let dir = PathBuf::from(get("--dir")?);
    let me = std::env::current_exe().map_err(|e| format!("find this program: {e}"))?;
    for probe in PROBES {
        let out = dir.join(probe);
        let mut cmd = match probe {
            "c" => Command::new(dir.parent().unwrap_or(&dir).join("nofork")),
            "python" => {
                let mut c = Command::new(get("--python")?);
                c.arg(dir.parent().unwrap_or(&dir).join("nofork.py"));
                c
            }
            "shell" => {
                let mut c = Command::new("sh");
                // The pipeline needs two processes; the output says whether `a` got through.
                c.args(["-c", "exec >\"$0\" 2>&1; echo a | cat; echo \"pipeline status $?\""]);
                c
            }
            _ => {
                let mut c = Command::new(&me);
                c.arg("nofork-rust");
                c
            }
        };
        cmd.arg(&out).name(format!("probe-{probe}")).daemon(true).stdin(daemonic::Stdio::Null);
        let member = family.spawn(&mut cmd).map_err(|e| format!("spawn the {probe} probe: {e}"))?;
        member.join(Some(Duration::from_secs(30))).map_err(|e| format!("wait for the {probe} probe: {e}"))?;
    }
    family.shutdown().map_err(|e| format!("shut the family down: {e}"))
}

/// The `nofork-rust` role: `std::process::Command`, a thread pool and a tokio runtime.
pub(crate) fn rust_probe(mut it: impl Iterator<Item = String>) -> Result<(), String> {
    let out = PathBuf::from(it.next().ok_or("nofork-rust OUT")?);
    let mut text = String::new();
    match std::process::Command::new("/bin/true").stdin(Stdio::null()).status() {
        Ok(_) => text.push_str("std::process::Command: allowed\n"),
        Err(e) => text.push_str(&format!("std::process::Command: refused {}\n", errno_name(&e))),
    }
    // A pool of 4 threads fed through a channel.
    let (tx, rx) = mpsc::channel::<u64>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let (done_tx, done_rx) = mpsc::channel::<u64>();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let rx = rx.clone();
            let done = done_tx.clone();
            std::thread::Builder::new().spawn(move || {
                while let Ok(x) = rx.lock().map_err(|_| ()).and_then(|r| r.recv().map_err(|_| ())) {
                    let _ = done.send(x * x);
                }
            })
        })
        .collect();
    drop(done_tx);
    let made = workers.iter().filter(|w| w.is_ok()).count();
    for x in 0..64 {
        let _ = tx.send(x);
    }
    drop(tx);
    let sum: u64 = done_rx.iter().sum();
    let ok = made == 4 && sum == (0..64u64).map(|x| x * x).sum::<u64>();
    text.push_str(&format!("std thread pool (4): {}\n", if ok { "works" } else { "broken" }));
    for w in workers.into_iter().flatten() {
        let _ = w.join();
    }
    // A multi-threaded tokio runtime: tasks on its workers and one on its blocking pool.
    let verdict = match tokio::runtime::Builder::new_multi_thread().worker_threads(4).build() {
        Ok(rt) => {
            let got = rt.block_on(async {
                let tasks: Vec<_> = (0..100u64).map(|i| tokio::spawn(async move { i * 2 })).collect();
                let mut sum = 0;
                for t in tasks {
                    sum += t.await.unwrap_or(0);
                }
                sum + tokio::task::spawn_blocking(|| 1u64).await.unwrap_or(0)
            });
            if got == (0..100u64).map(|i| i * 2).sum::<u64>() + 1 { "works".to_string() } else { "broken".into() }
        }
        Err(e) => format!("broken ({e})"),
    };
    text.push_str(&format!("tokio runtime (4 workers): {verdict}\n"));
    std::fs::write(&out, text).map_err(|e| format!("write {}: {e}", out.display()))
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::ENOSYS) => "ENOSYS".into(),
        Some(libc::EAGAIN) => "EAGAIN".into(),
        _ => e.to_string(),
    }
}

/// Runs one trial.
pub(crate) fn run(env: &Env, backend: &str, index: usize) -> NoForkOutcome {
    let token = format!("r{}{}fn{index}e", env.run_id, &backend[..1]);
    let dir = env.scratch.join(&token);
    let mut out = NoForkOutcome::default();
    if let Err(e) = run_in(env, backend, &token, &dir, &mut out) {
        out.error = Some(e);
    }
    sweep(env, &token, backend);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn run_in(env: &Env, backend: &str, token: &str, dir: &Path, out: &mut NoForkOutcome) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let status = std::process::Command::new(&env.me)
        .arg("nofork-main")
        .args(["--backend", backend, "--name", token])
        .arg("--dir")
        .arg(dir)
        .arg("--python")
        .arg(&env.python)
        .env("DAEMONIC_LOG", "quiet")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).map_err(|e| format!("create stderr: {e}"))?)
        .status()
        .map_err(|e| format!("start nofork-main: {e}"))?;
    if !status.success() {
        let tail = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
        return Err(format!("nofork-main ended with {status}: {}", tail.lines().last().unwrap_or_default()));
    }
    for probe in PROBES {
        let text = std::fs::read_to_string(dir.join(probe)).map_err(|e| format!("read the {probe} probe: {e}"))?;
        if probe == "shell" {
            // No line `a`: the pipeline's processes were never made; the shell says why.
            let verdict = if text.lines().any(|l| l == "a") {
                "allowed".to_string()
            } else {
                // The shell names itself by its $0, the output file.
                let why = text.lines().next().unwrap_or_default().replace(&dir.join(probe).display().to_string(), "sh");
                format!("refused ({})", why.trim())
            };
            out.verdicts.insert("shell / echo a | cat".into(), verdict);
            continue;
        }
        for line in text.lines() {
            if let Some((name, verdict)) = line.split_once(": ") {
                out.verdicts.insert(format!("{probe} / {name}"), verdict.to_string());
            }
        }
    }
    (out.leaked_cgroups, out.leaked_units) = leftovers(env, token, backend, Duration::from_secs(5));
    Ok(())
}
