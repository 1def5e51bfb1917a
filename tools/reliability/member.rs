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
//!
//! For `oom` it has a memory limit (`limits.rs`): `--memcg PATH`, a v1 memory cgroup it enters
//! before it eats; or `--memory-max SIZE`, the limit of its own cgroup v2, set by `daemonic run
//! -p MemoryMax=` or, with `--set-memory-max SIZE`, by itself right after opening the family. It
//! checks that its cgroup has that limit before it writes the ready file: it never eats memory
//! without a limit that holds.

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
    /// The `MemoryMax=` its own cgroup v2 must have (checked before it is ready).
    pub(crate) memory_max: Option<String>,
    /// The `MemoryMax=` it sets on its own cgroup itself (the library's main member).
    pub(crate) set_memory_max: Option<String>,
    /// The base of a new family (cgroupfs).
    pub(crate) cgroup: Option<String>,
    pub(crate) worker_ms: u64,
}

impl Args {
    pub(crate) fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
        let (mut backend, mut name, mut ready, mut marker, mut memcg, mut worker_ms) =
            (None, None, None, None, None, 300);
        let (mut memory_max, mut set_memory_max, mut cgroup) = (None, None, None);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--backend" => backend = Some(value()?),
                "--name" => name = Some(value()?),
                "--ready" => ready = Some(PathBuf::from(value()?)),
                "--marker" => marker = Some(PathBuf::from(value()?)),
                "--memcg" => memcg = Some(PathBuf::from(value()?)),
                "--memory-max" => memory_max = Some(value()?),
                "--set-memory-max" => set_memory_max = Some(value()?),
                "--cgroup" => cgroup = Some(value()?),
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
            memory_max,
            set_memory_max,
            cgroup,
            worker_ms,
        })
    }
}

/// Runs the member; returns only for the `return` action (the family is shut down first).
pub(crate) fn main(args: Args) -> Result<(), String> {
    let family = crate::open_family(&args.backend, &args.name, args.cgroup.as_deref())?;
    if let Some(max) = &args.set_memory_max {
        limit_own_memory(&family, &args.backend, max)?;
    }
    if let Some(max) = &args.memory_max {
        check_own_memory(max)?;
    }

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
        "oom" => match (&args.memcg, &args.memory_max) {
            (Some(memcg), _) => eat_memory(Some(memcg)),
            (None, Some(_)) => eat_memory(None),
            (None, None) => Err("oom needs --memcg or --memory-max".into()),
        },
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

/// Sets `MemoryMax=max` on this process's own cgroup, the family's main member's: what `daemonic
/// run -p` does for its main member, done here because [`daemonic::FamilyBuilder`] has no
/// property for the process that opens the family. cgroupfs: daemonic's own
/// [`daemonic::__internal::properties::apply_in_dirs`]; systemd: the scope's property, set at run time.
fn limit_own_memory(family: &daemonic::Family, backend: &str, max: &str) -> Result<(), String> {
    let assignment = format!("MemoryMax={max}");
    let own = own_cgroup()?;
    if backend == "systemd" {
        let unit = own.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !unit.ends_with(".scope") {
            return Err(format!("the main member's cgroup {} is not a scope", own.display()));
        }
        let out = std::process::Command::new("systemctl")
            .args(["--user", "set-property", "--runtime", &unit, &assignment])
            .output()
            .map_err(|e| format!("run systemctl --user set-property: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "systemctl --user set-property --runtime {unit} {assignment}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        return Ok(());
    }
    let property = daemonic::__internal::properties::parse(&assignment).map_err(|e| e.to_string())?;
    daemonic::__internal::properties::apply_in_dirs(family.cgroup(), &own, &[property])
        .map_err(|e| format!("set {assignment} on {}: {e}", own.display()))
}

/// Waits (at most 5 s: the manager applies a property it was given at run time in its own
/// time) until this process's own cgroup v2 has `memory.max` equal to `max`.
fn check_own_memory(max: &str) -> Result<(), String> {
    let want = match daemonic::__internal::properties::parse(&format!("MemoryMax={max}")).map_err(|e| e.to_string())? {
        daemonic::__internal::properties::Property::MemoryMax(bytes) => bytes.to_string(),
        other => return Err(format!("{other} is not a size")),
    };
    let file = own_cgroup()?.join("memory.max");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = std::fs::read_to_string(&file).map(|s| s.trim().to_string());
        match got {
            Ok(v) if v == want => return Ok(()),
            _ if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(v) => return Err(format!("{} is {v:?}, not the MemoryMax= asked for ({want})", file.display())),
            Err(e) => return Err(format!("read {} (MemoryMax= did not reach the member): {e}", file.display())),
        }
    }
}

/// This process's own cgroup v2 directory.
fn own_cgroup() -> Result<PathBuf, String> {
    let h = daemonic::__internal::cgroup::Hierarchy::host().map_err(|e| e.to_string())?;
    h.cgroup_of(0).map_err(|e| e.to_string())
}

/// Allocates until the OOM killer ends this process: in its own cgroup, whose limit was checked
/// at start, or first moved into the v1 memory cgroup `memcg`.
fn eat_memory(memcg: Option<&Path>) -> ! {
    if let Some(memcg) = memcg {
        let procs = memcg.join("cgroup.procs");
        if let Err(e) = std::fs::write(&procs, "0") {
            eprintln!("reliability member: cannot enter {}: {e}", procs.display());
            std::process::exit(70);
        }
    }
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Non-zero bytes: every page is really touched.
        hoard.push(vec![0x5a; 1 << 20]);
        if hoard.len() as u64 > 16 * (crate::limits::MEMORY_LIMIT >> 20) {
            // 16 times the limit later it did not hold: say so rather than take the machine.
            eprintln!(
                "reliability member: the memory limit of {} MiB did not stop me",
                crate::limits::MEMORY_LIMIT >> 20
            );
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
