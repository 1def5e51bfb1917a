//! The main member of a trial's family: `reliability member …`.
//!
//! Started either by `daemonic run` (it then joins the family `run` made) or directly by the
//! harness (it then creates the family and is its supervisor and main member at once, as a
//! program using the library is). It gives the family a fixed shape:
//!
//! - daemon `plain`: `sleep`, the ordinary daemon;
//! - daemon `escaper` with `allow_children`: a shell that double-forks a `setsid` sleeper and
//!   backgrounds another, the descendants `cgroup.kill` has to catch;
//! - non-daemonic child `worker` (this program again, one process): sleeps a little, then
//!   writes a marker file; it must be waited for (C7), never killed, so its marker proves it
//!   finished.
//!
//! It writes their PIDs to the ready file, then reads actions from standard input, one per line:
//! `return`, `panic`, `abort`, `exit`, `oom`. Signals come from the harness, not from here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use daemonic::Command;

/// What the member was told on its command line.
pub(crate) struct Args {
    pub(crate) backend: String,
    pub(crate) name: String,
    pub(crate) ready: PathBuf,
    pub(crate) marker: PathBuf,
    pub(crate) memcg: Option<PathBuf>,
    pub(crate) worker_ms: u64,
}

impl Args {
    pub(crate) fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
        let (mut backend, mut name, mut ready, mut marker, mut memcg, mut worker_ms) =
            (None, None, None, None, None, 300);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--backend" => backend = Some(value()?),
                "--name" => name = Some(value()?),
                "--ready" => ready = Some(PathBuf::from(value()?)),
                "--marker" => marker = Some(PathBuf::from(value()?)),
                "--memcg" => memcg = Some(PathBuf::from(value()?)),
                "--worker-ms" => worker_ms = value()?.parse().map_err(|e| format!("--worker-ms: {e}"))?,
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        Ok(Args {
            backend: backend.ok_or("--backend is required")?,
            name: name.ok_or("--name is required")?,
            ready: ready.ok_or("--ready is required")?,
            marker: marker.ok_or("--marker is required")?,
            memcg,
            worker_ms,
        })
    }
}

/// Runs the member; returns only for the `return` action (the family is shut down first).
pub(crate) fn main(args: Args) -> Result<(), String> {
    let family = crate::open_family(&args.backend, &args.name)?;

    let plain = family
        .spawn(Command::new("sleep").arg("1000").name("plain").daemon(true))
        .map_err(|e| format!("spawn daemon plain: {e}"))?;
    // A double fork into a new session and a plain background child: both must die with it.
    let escaper = family
        .spawn(
            Command::new("sh")
                .args(["-c", "(setsid sleep 1000 &); sleep 1000 & exec sleep 1000"])
                .name("escaper")
                .daemon(true)
                .allow_children(true),
        )
        .map_err(|e| format!("spawn daemon escaper: {e}"))?;
    // One process (this program again), so that killing it ends the worker's live part.
    let me = std::env::current_exe().map_err(|e| format!("find this program: {e}"))?;
    let worker = family
        .spawn(Command::new(me).arg("worker").arg(args.worker_ms.to_string()).arg(&args.marker).name("worker"))
        .map_err(|e| format!("spawn worker: {e}"))?;

    let ready = serde_json::json!({
        "main": std::process::id(),
        "daemons": [plain.pid(), escaper.pid()],
        "worker": worker.pid(),
        "family": family.id(),
    });
    write_atomically(&args.ready, ready.to_string().as_bytes())?;

    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) => return Err("standard input closed before an action came".into()),
        Ok(_) => {}
        Err(e) => return Err(format!("read an action: {e}")),
    }
    match line.trim() {
        "return" => {
            // What a program does at the end of main: the family's drop (here explicit, to
            // see its error) joins the worker and kills the daemons.
            drop((plain, escaper, worker));
            family.shutdown().map_err(|e| format!("shut the family down: {e}"))
        }
        "panic" => panic!("reliability: the main member panics (unwind)"),
        "abort" => {
            // What `panic = "abort"` does: the panic hook runs, then abort(); no destructor.
            let hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                hook(info);
                std::process::abort();
            }));
            panic!("reliability: the main member panics (abort)");
        }
        "exit" => std::process::exit(3),
        "oom" => eat_memory(args.memcg.as_deref().ok_or("oom needs --memcg")?),
        other => Err(format!("unknown action {other:?}")),
    }
}

/// The worker: sleeps `ms` milliseconds, then creates `marker`.
pub(crate) fn worker(mut it: impl Iterator<Item = String>) -> Result<(), String> {
    let ms: u64 = it.next().ok_or("worker MS MARKER")?.parse().map_err(|e| format!("worker MS: {e}"))?;
    let marker = PathBuf::from(it.next().ok_or("worker MS MARKER")?);
    std::thread::sleep(Duration::from_millis(ms));
    std::fs::write(&marker, "").map_err(|e| format!("create {}: {e}", marker.display()))
}

/// Moves this process into the memory cgroup `memcg` (which has a limit) and allocates until
/// the OOM killer ends it.
fn eat_memory(memcg: &Path) -> ! {
    let procs = memcg.join("cgroup.procs");
    if let Err(e) = std::fs::write(&procs, "0") {
        eprintln!("reliability member: cannot enter {}: {e}", procs.display());
        std::process::exit(70);
    }
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Non-zero bytes: every page is really touched.
        hoard.push(vec![0x5a; 1 << 20]);
        if hoard.len() > 64 * 1024 {
            // 64 GiB later the limit did not hold: say so rather than take the machine.
            eprintln!("reliability member: the memory limit in {} did not stop me", memcg.display());
            std::process::exit(71);
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    f.write_all(bytes).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename {} to {}: {e}", tmp.display(), path.display()))
}
