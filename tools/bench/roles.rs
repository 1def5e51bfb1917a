//! The measuring roles: `bench ROLE ARGS…`, started by the driver as fresh processes. Each
//! prints one JSON document on its standard output and exits 0, or says what failed on its
//! standard error and exits non-zero. Every role cleans up what it made before it returns.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use daemonic::__internal::cgroup::{self, Hierarchy};
use daemonic::Bus;
use daemonic::{Backend, Command, Family, Member, Placement};
use rustix::process::{Pid, Signal, kill_process};
use serde_json::json;

use crate::floor::Program;

type RoleResult = Result<serde_json::Value, String>;

/// Runs role `role` with `args`; its JSON report, or why it failed.
pub(crate) fn run(role: &str, mut args: impl Iterator<Item = String>) -> RoleResult {
    let mut next = |what: &str| args.next().ok_or_else(|| format!("{role}: missing {what}"));
    match role {
        "spawn" => {
            let variant = next("VARIANT")?;
            let n = next("N")?.parse().map_err(|e| format!("N: {e}"))?;
            let daemonic = PathBuf::from(next("DAEMONIC")?);
            spawn_latency(&variant, n, &daemonic)
        }
        "family" => {
            let backend = backend(&next("BACKEND")?)?;
            let n = next("N")?.parse().map_err(|e| format!("N: {e}"))?;
            family_teardown(backend, n)
        }
        "kill-loop" => kill_loop(next("N")?.parse().map_err(|e| format!("N: {e}"))?),
        "kill-floor" => kill_floor(next("N")?.parse().map_err(|e| format!("N: {e}"))?),
        "idle" => idle(next("N")?.parse().map_err(|e| format!("N: {e}"))?),
        other => Err(format!("unknown role {other:?}")),
    }
}

/// The roles' names, to tell a role from the driver's options.
pub(crate) const ROLES: [&str; 5] = ["spawn", "family", "kill-loop", "kill-floor", "idle"];

pub(crate) fn backend(name: &str) -> Result<Backend, String> {
    match name {
        "cgroupfs" => Ok(Backend::Cgroupfs),
        "systemd" => Ok(Backend::Systemd),
        other => Err(format!("unknown backend {other:?} (cgroupfs or systemd)")),
    }
}

/// A family of this benchmark on `backend`, with this process as its main member.
fn open_family(backend: Backend, name: &str) -> Result<Family, String> {
    let builder = Family::builder().name(name).backend(backend);
    let builder = if backend == Backend::Systemd { builder.bus(Bus::User) } else { builder };
    builder.open().map_err(|e| format!("open a {backend:?} family: {e}"))
}

/// Untimed spawns before the timed ones: page cache, dentries, the seccomp filters, D-Bus.
const WARMUP: usize = 5;

/// `n` timed spawn+waits of `/bin/true` (Python's variants are in peers.py), in nanoseconds.
/// `{"ns": [every timed spawn+wait], "service_ns": {"manager": ns, …}}`: the CPU time per timed
/// spawn of the user manager and dbus-daemon (see [`crate::Services`]), of this process
/// ("caller": the library's own work, the child before `execve` not included) and of the
/// family's guardian ("guardian"), for the variants that have one.
fn spawn_latency(variant: &str, n: usize, daemonic: &Path) -> RoleResult {
    let program = Program::new("/bin/true");
    let check = |what: &str, code: std::io::Result<i32>| match code {
        Ok(0) => Ok(()),
        Ok(c) => Err(format!("{what}: /bin/true exited with {c}")),
        Err(e) => Err(format!("{what}: {e}")),
    };
    let command = |program: &Path, args: &[&str]| {
        let mut c = std::process::Command::new(program);
        c.args(args).stdin(Stdio::null());
        c
    };
    // The family's guardian, when the variant opens a family.
    let mut guardian: Option<u32> = None;
    // One spawn+wait of the variant; the family (when it needs one) is opened once, untimed.
    let mut once: Box<dyn FnMut() -> Result<(), String>> = match variant {
        "fork-exec" => Box::new(|| check("fork+exec", program.fork_exec_wait())),
        "std-command" => {
            let mut cmd = std::process::Command::new("/bin/true");
            Box::new(move || check("std Command::status", cmd.status().map(|s| s.code().unwrap_or(-1))))
        }
        "clone3-cgroup" => {
            let floor = FloorCgroup::create()?;
            let program = Program::new("/bin/true");
            Box::new(move || check("clone3 into a cgroup", program.clone3_cgroup_wait(&floor.child)))
        }
        "lib-member" | "lib-fork" | "lib-daemon" | "lib-systemd" | "cli-spawn" => {
            let backend = if variant == "lib-systemd" { Backend::Systemd } else { Backend::Cgroupfs };
            let family = open_family(backend, "bench")?;
            guardian = cgroup::attr(family.cgroup(), "guardian").and_then(|p| p.trim().parse().ok());
            let daemon = !matches!(variant, "lib-member" | "lib-fork");
            let placement = if variant == "lib-fork" { Placement::Fork } else { Placement::Auto };
            match variant {
                "cli-spawn" => {
                    let mut spawn = command(daemonic, &["spawn", "--quiet", "--", "/bin/true"]);
                    Box::new(move || {
                        let _keep_open = &family;
                        check("daemonic spawn", spawn.status().map(|s| s.code().unwrap_or(-1)))
                    })
                }
                _ => Box::new(move || {
                    let member = family
                        .spawn(Command::new("/bin/true").daemon(daemon).placement(placement))
                        .map_err(|e| format!("spawn /bin/true: {e}"))?;
                    check("Member::wait", member.wait().map_err(std::io::Error::other))?;
                    // Forget the ended member, as Python's active_children() does.
                    family.active_children();
                    Ok(())
                }),
            }
        }
        "cli-run" | "cli-run-systemd" => {
            // The user manager on systemd, as `systemd-run --user` beside it.
            let backend: &[&str] = if variant == "cli-run" { &["cgroupfs"] } else { &["systemd", "--user"] };
            let args = [&["run", "--quiet", "--backend"], backend, &["--", "/bin/true"]].concat();
            let mut run = command(daemonic, &args);
            Box::new(move || check("daemonic run", run.status().map(|s| s.code().unwrap_or(-1))))
        }
        "systemd-run" => {
            let mut run =
                command(Path::new("systemd-run"), &["--user", "--scope", "--collect", "--quiet", "/bin/true"]);
            Box::new(move || check("systemd-run --user --scope", run.status().map(|s| s.code().unwrap_or(-1))))
        }
        other => return Err(format!("unknown spawn variant {other:?}")),
    };
    for _ in 0..WARMUP {
        once()?;
    }
    let mut services = crate::Services::find();
    services.0.push(("caller", std::process::id()));
    if let Some(pid) = guardian {
        services.0.push(("guardian", pid));
    }
    let before = services.cpu();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        once()?;
        samples.push(start.elapsed().as_nanos() as u64);
    }
    let mut service_ns = serde_json::Map::new();
    for ((&(service, _), before), after) in services.0.iter().zip(before).zip(services.cpu()) {
        if let (Some(b), Some(a)) = (before, after) {
            service_ns.insert(service.into(), json!(a.saturating_sub(b) / n as u64));
        }
    }
    Ok(json!({ "ns": samples, "service_ns": service_ns }))
}

/// A cgroup `daemonic-bench-floor-<pid>` below this process's own, for the clone3 floor; its
/// child `c` is made and removed by every spawn. Removed on drop.
struct FloorCgroup {
    parent: PathBuf,
    child: PathBuf,
}

impl FloorCgroup {
    fn create() -> Result<FloorCgroup, String> {
        let own =
            Hierarchy::host().and_then(|h| h.cgroup_of(0)).map_err(|e| format!("find this process's cgroup: {e}"))?;
        let parent = own.join(format!("daemonic-bench-floor-{}", std::process::id()));
        std::fs::create_dir(&parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
        Ok(FloorCgroup { child: parent.join("c"), parent })
    }
}

impl Drop for FloorCgroup {
    fn drop(&mut self) {
        let _ = cgroup::remove(&self.child);
        if let Err(e) = cgroup::remove(&self.parent) {
            eprintln!("bench: remove {}: {e}", self.parent.display());
        }
    }
}

/// A family with `n` daemonic `/bin/sleep 1000` members. Reports the time of every spawn (how
/// spawning scales with the family's size), then ends the family the way its main member's
/// exit does, timed in two steps: "the family ends" → all daemons reaped (one `cgroup.kill`
/// of the `.daemons` directory, `populated 0`, each daemon waited for: the first steps of
/// `Family::shutdown`), then the rest of `Family::shutdown` (the guardian removes every
/// cgroup or unit and exits).
fn family_teardown(backend: Backend, n: usize) -> RoleResult {
    raise_fd_limit(n)?;
    let family = open_family(backend, "bench")?;
    let mut spawn_ns = Vec::with_capacity(n);
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let member = family
            .spawn(Command::new("/bin/sleep").arg("1000").daemon(true))
            .map_err(|e| format!("spawn daemon {} of {n}: {e}", members.len() + 1))?;
        spawn_ns.push(start.elapsed().as_nanos() as u64);
        members.push(member);
    }
    wait_all_sleeping(members.iter().map(Member::pid))?;
    let container = daemons_dir(&members)?;
    settle_guardian(&family);

    let start = Instant::now();
    cgroup::kill(&container).map_err(|e| format!("cgroup.kill {}: {e}", container.display()))?;
    cgroup::wait_unpopulated(&container, None).map_err(|e| format!("wait for {}: {e}", container.display()))?;
    for m in &members {
        m.wait().map_err(|e| format!("wait for daemon {}: {e}", m.pid()))?;
    }
    let reaped = start.elapsed();
    family.shutdown().map_err(|e| format!("shut the family down: {e}"))?;
    let shutdown = start.elapsed();
    if let Some(m) = members.iter().find(|m| m.exitcode() != Some(-libc::SIGKILL)) {
        return Err(format!("daemon {} ended with {:?}, not SIGKILL", m.pid(), m.exitcode()));
    }
    Ok(
        json!({ "spawn_ns": spawn_ns, "reaped_ns": reaped.as_nanos() as u64, "shutdown_ns": shutdown.as_nanos() as u64 }),
    )
}

/// The `.daemons` directory holding every member's cgroup (a `*.daemons` or `*.daemons.slice`
/// ancestor, on either backend).
fn daemons_dir(members: &[Member]) -> Result<PathBuf, String> {
    let of = |m: &Member| {
        m.cgroup()
            .ancestors()
            .find(|d| {
                d.file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.ends_with(".daemons") || f.ends_with(".daemons.slice"))
            })
            .map(Path::to_path_buf)
    };
    let first = members.first().and_then(of).ok_or("no daemons directory found")?;
    match members.iter().find(|m| of(m).as_ref() != Some(&first)) {
        Some(m) => Err(format!("daemon {} is in {}, not below {}", m.pid(), m.cgroup().display(), first.display())),
        None => Ok(first),
    }
}

/// `n` plain `/bin/sleep 1000` children, then the naive supervisor's teardown: SIGKILL one PID,
/// wait for it, next.
fn kill_loop(n: usize) -> RoleResult {
    let mut children = Children::sleepers(n)?;
    let start = Instant::now();
    for c in &mut children.0 {
        kill_process(Pid::from_child(c), Signal::KILL).map_err(|e| format!("kill {}: {e}", c.id()))?;
        c.wait().map_err(|e| format!("wait for {}: {e}", c.id()))?;
    }
    let took = start.elapsed();
    children.0.clear();
    Ok(json!({ "took_ns": took.as_nanos() as u64 }))
}

/// The kernel's floor under daemonic's teardown: `n` plain `/bin/sleep 1000` children moved into
/// one fresh cgroup (untimed), then one `cgroup.kill`, `populated 0`, each child reaped, with
/// no daemonic code involved.
fn kill_floor(n: usize) -> RoleResult {
    let floor = FloorCgroup::create()?;
    let mut children = Children::sleepers(n)?;
    for pid in children.0.iter().map(std::process::Child::id) {
        cgroup::write(&floor.parent, "cgroup.procs", &pid.to_string())
            .map_err(|e| format!("move {pid} into {}: {e}", floor.parent.display()))?;
    }
    // The kernel sends at most one `cgroup.events` notification per cgroup every 10 ms: right
    // after the moves, "populated 0" would wait out that window. The families of the `family`
    // role are settled before their kill, so let this one settle too.
    wait_all_sleeping(children.0.iter().map(std::process::Child::id))?;
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    cgroup::kill(&floor.parent).map_err(|e| format!("cgroup.kill {}: {e}", floor.parent.display()))?;
    cgroup::wait_unpopulated(&floor.parent, None).map_err(|e| format!("wait for {}: {e}", floor.parent.display()))?;
    for c in &mut children.0 {
        c.wait().map_err(|e| format!("wait for {}: {e}", c.id()))?;
    }
    let took = start.elapsed();
    children.0.clear();
    Ok(json!({ "took_ns": took.as_nanos() as u64 }))
}

/// Plain children, SIGKILLed and reaped if the role fails half-way.
struct Children(Vec<std::process::Child>);

impl Children {
    /// `n` plain `/bin/sleep 1000` children, each in its sleep.
    fn sleepers(n: usize) -> Result<Children, String> {
        raise_fd_limit(n)?;
        let mut children = Children(Vec::with_capacity(n));
        for _ in 0..n {
            let child = std::process::Command::new("/bin/sleep")
                .arg("1000")
                .stdin(Stdio::null())
                .spawn()
                .map_err(|e| format!("start /bin/sleep: {e}"))?;
            children.0.push(child);
        }
        wait_all_sleeping(children.0.iter().map(std::process::Child::id))?;
        Ok(children)
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The main member under `daemonic run`: `n` daemonic `/bin/sleep 1000` members, then the line
/// `ready <family cgroup>` and an idle wait for the end of standard input; the members are
/// killed when it returns.
fn idle(n: usize) -> RoleResult {
    raise_fd_limit(n)?;
    let family = Family::new().map_err(|e| format!("join the family of daemonic run: {e}"))?;
    let members = (0..n)
        .map(|_| family.spawn(Command::new("/bin/sleep").arg("1000").daemon(true)))
        .collect::<Result<Vec<Member>, _>>()
        .map_err(|e| format!("spawn an idle daemon: {e}"))?;
    wait_all_sleeping(members.iter().map(Member::pid))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", family.cgroup().display())
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    // Blocks in read(2): no polling while the driver measures.
    let mut line = String::new();
    while std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("stdin: {e}"))? > 0 {}
    family.shutdown().map_err(|e| format!("shut the family down: {e}"))?;
    // Nothing more to say: the driver stopped reading after the ready line.
    Ok(serde_json::Value::Null)
}

/// Lets this process hold `n` children's descriptors (a pidfd each) and more.
fn raise_fd_limit(n: usize) -> Result<(), String> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let want = (n as u64) * 2 + 256;
    if limit.current.is_some_and(|c| c < want) {
        limit.current = Some(limit.maximum.map_or(want, |max| want.min(max)));
        setrlimit(Resource::Nofile, limit).map_err(|e| format!("raise RLIMIT_NOFILE to {want}: {e}"))?;
    }
    Ok(())
}

/// Waits (at most 60 s) until every process in `pids` is `sleep`, in interruptible sleep.
fn wait_all_sleeping(pids: impl Iterator<Item = u32>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for pid in pids {
        loop {
            match crate::proc::state(pid) {
                Some(('S', comm)) if comm == "sleep" => break,
                s if Instant::now() > deadline => {
                    return Err(format!("process {pid} did not become a sleeping `sleep`: {s:?}"));
                }
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
    Ok(())
}

/// Waits until the family's guardian has handled every event so far (its CPU time stops).
fn settle_guardian(family: &Family) {
    if let Some(pid) = cgroup::attr(family.cgroup(), "guardian").and_then(|g| g.trim().parse().ok()) {
        crate::proc::settle(pid);
    }
}
