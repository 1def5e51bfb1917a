// The library scenarios shared by both backends: included by tests/library.rs (cgroupfs) and
// tests/library_systemd.rs (systemd), each of which defines `BACKEND`, `mod common` and `mod harness`.
use std::time::{Duration, Instant};

use daemonic::{Command, ErrorKind, Family, Member, Placement, Stdio, current_process};
use common::scenario::{Child, End, child_family, child_marker, child_scenario, child_tmp, report, self_command};
use common::{pid_alive_with, python, require_cgroup};

const CHILD_TIMEOUT: Duration = Duration::from_secs(30);
const NOT_ALLOWED: &str = "daemonic processes are not allowed to have children";

/// Sleeps 60 s (killed long before).
const SLEEPER_PY: &str = "import time\ntime.sleep(60 * S)";

/// Prints the calling process's v2 cgroup path as `@<argv[1]>=<path>`.
const CGROUP_PY: &str = r#"
import sys
line = [l for l in open("/proc/self/cgroup").read().splitlines() if l.startswith("0::")][0]
print("@%s=%s" % (sys.argv[1], line[3:]), flush=True)
"#;

/// Tries every way of making a process and a thread; reports each as `@<what>_<argv[1]>=...`.
const FORK_RULES_PY: &str = r#"
import ctypes, os, subprocess, sys, threading
tag = sys.argv[1]
def say(what, value):
    print("@%s_%s=%s" % (what, tag, value), flush=True)
try:
    pid = os.fork()
except OSError as e:
    say("fork", "%s:%d" % (type(e).__name__, e.errno))
else:
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    say("fork", "forked")
try:
    pid = os.posix_spawn("/bin/true", ["true"], dict(os.environ))
except OSError as e:
    say("posix_spawn", "%s:%d" % (type(e).__name__, e.errno))
else:
    os.waitpid(pid, 0)
    say("posix_spawn", "spawned")
try:
    subprocess.run(["/bin/true"], check=True)
except OSError as e:
    say("subprocess", "%s:%d" % (type(e).__name__, e.errno))
else:
    say("subprocess", "ran")
libc = ctypes.CDLL(None, use_errno=True)
r = libc.syscall(435, None, ctypes.c_size_t(0))  # clone3(NULL, 0): EINVAL if allowed, ENOSYS if filtered
say("clone3", "%d:%d" % (r, ctypes.get_errno()))
out = []
threads = [threading.Thread(target=lambda i=i: out.append(i)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
say("threads", len(out))
"#;

/// A python program with the scenario's marker in its command line.
fn py(script: &str) -> Command {
    let mut cmd = Command::new(python());
    // `S`: the host's slowness, by which the scripts' long sleeps are scaled as the tests'
    // bounds are.
    cmd.arg("-c").arg(format!("S = {}\n{script}\n#{}", common::slowness(), child_marker()));
    cmd
}

/// Opens a new family named after the child's unique family name.
fn open_family() -> Family {
    Family::builder().name(child_family()).open().expect("open the scenario's family")
}

fn spawn(family: &Family, cmd: &mut Command) -> Member {
    family.spawn(cmd).unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()))
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// The last component of a cgroup path.
fn leaf(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

// =============================================================================================
// 1. current_process (C2, C8)
// =============================================================================================

#[harness::test]
fn current_process_outside_and_inside_a_family() {
    if let Some(s) = child_scenario() {
        assert_eq!(s, "inside");
        let before = current_process().expect("current_process before the family");
        report("before_name", &before.name);
        let family = open_family();
        let info = current_process().expect("current_process in the family");
        report("name", &info.name);
        report("daemon", info.daemon);
        report("family", info.family.as_deref().unwrap_or("<none>"));
        report("family_id", family.id());
        report("cgroup", info.cgroup.display());
        report("own_cgroup", common::own_cgroup_dir().expect("own cgroup").display());
        // The leftover checks can see a live family: its directory, and its guardian (the only
        // process whose command line names the family).
        report("family_dirs_open", common::family_dirs(&child_family()).len());
        // A process's command line reads empty for a moment after its exec (until the kernel
        // has set up the new image's arguments), so the guardian may show a moment late.
        let guardian_seen = common::wait_until(common::scaled(std::time::Duration::from_secs(2)), || {
            !common::guardians_of(&child_family()).is_empty()
        });
        report("guardians_open", if guardian_seen { common::guardians_of(&child_family()).len() } else { 0 });
        family.shutdown().expect("shutdown");
        let after = current_process().expect("current_process after shutdown");
        report("after_name", &after.name);
        report("after_family", after.family.as_deref().unwrap_or("<none>"));
        return;
    }
    require_cgroup();
    // C2: this process was not started by daemonic.
    let me = current_process().expect("current_process outside a family");
    assert_eq!(me.name, "MainProcess");
    assert!(!me.daemon);
    assert_eq!(me.family, None);
    assert_eq!(me.pid, std::process::id());
    assert_eq!(Some(me.cgroup), common::own_cgroup_dir());

    let mut child = Child::start("inside", "cur");
    child.expect_success(CHILD_TIMEOUT);
    assert_eq!(child.expect_value("before_name"), "MainProcess");
    assert_eq!(child.expect_value("name"), "main", "{}", child.dump());
    assert_eq!(child.expect_value("daemon"), "false");
    let fam = child.expect_value("family");
    assert!(fam.starts_with(&format!("{}-", child.family)), "family id {fam:?} of {:?}", child.family);
    assert_eq!(fam, child.expect_value("family_id"));
    assert_eq!(child.expect_value("cgroup"), child.expect_value("own_cgroup"));
    assert!(
        common::logical(&child.expect_value("cgroup")).ends_with(&format!("/daemonic-{fam}.family/main-1.member")),
        "{}",
        child.dump()
    );
    assert_eq!(child.expect_value("family_dirs_open"), "1", "{}", child.dump());
    assert_eq!(child.expect_value("guardians_open"), "1", "{}", child.dump());
    // Shutdown moved the process back out of the family.
    assert_eq!(child.expect_value("after_name"), "MainProcess");
    assert_eq!(child.expect_value("after_family"), "<none>");
    child.assert_no_leftovers();
}

// =============================================================================================
// 2. The daemon flag: chosen at spawn, inherited by default, visible in the cgroup path (C1, C8)
// =============================================================================================

#[harness::test]
fn daemon_flag_is_chosen_at_spawn_and_visible_in_the_cgroup_path() {
    if let Some(s) = child_scenario() {
        match s.as_str() {
            "outer" => {
                let family = open_family();
                // The plain member's output comes through a pipe (Stdio::Piped), the others' through
                // the inherited stdout.
                let mut plain = spawn(&family, py(CGROUP_PY).arg("plain_seen").name("plain").stdout(Stdio::Piped));
                let mut piped = String::new();
                std::io::Read::read_to_string(&mut plain.stdout.take().expect("a piped stdout"), &mut piped)
                    .expect("read the member's stdout");
                print!("{piped}");
                let daemon = spawn(&family, py(CGROUP_PY).arg("daemon_seen").name("watcher").daemon(true));
                // One at a time: both write to the inherited stdout, and two lines written at once
                // came out spliced in CI ("…watcher-2.daemon@explicit_seen=…").
                daemon.wait().expect("wait for the daemon");
                let explicit = spawn(&family, py(CGROUP_PY).arg("explicit_seen").name("explicit").daemon(false));
                for (tag, m) in [("plain", &plain), ("daemon", &daemon), ("explicit", &explicit)] {
                    report(&format!("{tag}_flag"), m.daemon());
                    report(&format!("{tag}_name"), m.name());
                    report(&format!("{tag}_dir"), m.cgroup().display());
                    report(&format!("{tag}_exit"), m.wait().expect("wait"));
                }
                // A daemon that may have children spawns with the default flag: inherited.
                let inner = spawn(&family, self_command("inherit").name("inner").daemon(true).allow_children(true));
                report("inner_exit", inner.wait().expect("wait for the inner daemon"));
            }
            "inherit" => {
                let me = current_process().expect("current_process in a daemon");
                report("inner_daemon", me.daemon);
                report("inner_name", &me.name);
                let family = Family::new().expect("a daemon joins its family");
                report("inner_family_daemon", family.daemon());
                let kid = spawn(&family, py(CGROUP_PY).arg("inherited_seen").name("kid"));
                report("inherited_flag", kid.daemon());
                report("inherited_dir", kid.cgroup().display());
                report("inherited_exit", kid.wait().expect("wait"));
            }
            other => panic!("unknown scenario {other}"),
        }
        return;
    }
    require_cgroup();
    let mut child = Child::start("outer", "flag");
    child.expect_success(CHILD_TIMEOUT);
    let mount = common::cgroup2_mount().expect("cgroup2 mount");
    let dump = child.dump();
    for (tag, daemon, name) in [("plain", false, "plain"), ("daemon", true, "watcher"), ("explicit", false, "explicit")]
    {
        assert_eq!(child.expect_value(&format!("{tag}_flag")), daemon.to_string(), "{tag}: Member::daemon()\n{dump}");
        assert_eq!(child.expect_value(&format!("{tag}_name")), name);
        assert_eq!(child.expect_value(&format!("{tag}_exit")), "0", "{tag}\n{dump}");
        // What the child itself sees in /proc/self/cgroup (C8) ...
        let seen_raw = child.expect_value(&format!("{tag}_seen"));
        let seen = common::logical(&seen_raw);
        let suffix = if daemon { ".daemon" } else { ".member" };
        assert!(leaf(&seen).starts_with(&format!("{name}-")), "{tag}: {seen}");
        assert!(leaf(&seen).ends_with(suffix), "{tag}: the child sees {seen}, expected a {suffix} leaf\n{dump}");
        assert!(seen.contains(&format!("/daemonic-{}-", child.family)), "{tag}: {seen}");
        // ... is the directory Member::cgroup() names.
        let dir = child.expect_value(&format!("{tag}_dir"));
        let seen_dir = mount.join(seen_raw.trim_start_matches('/'));
        assert_eq!(common::logical(&dir), common::logical(&seen_dir.to_string_lossy()), "{tag}");
    }
    // C1: by default the flag is inherited from the spawning process (here a daemon).
    assert_eq!(child.expect_value("inner_exit"), "0", "{dump}");
    assert_eq!(child.expect_value("inner_daemon"), "true", "{dump}");
    assert_eq!(child.expect_value("inner_name"), "inner");
    assert_eq!(child.expect_value("inner_family_daemon"), "true");
    assert_eq!(child.expect_value("inherited_flag"), "true", "a daemon's child must inherit the flag (C1)\n{dump}");
    assert_eq!(child.expect_value("inherited_exit"), "0", "{dump}");
    let seen = common::logical(&child.expect_value("inherited_seen"));
    assert!(leaf(&seen).ends_with(".daemon"), "inherited child sees {seen}\n{dump}");
    child.assert_no_leftovers();
}

// =============================================================================================
// 3. Daemons cannot have children (C3)
// =============================================================================================

#[harness::test]
fn daemons_are_not_allowed_to_have_children() {
    if let Some(s) = child_scenario() {
        match s.as_str() {
            "outer" => {
                let family = open_family();
                let refuser = spawn(&family, self_command("refuse").name("refuser").daemon(true));
                report("refuser_exit", refuser.wait().expect("wait for the refuser"));
                for (tag, daemon, allow) in [("daemon", true, false), ("allowed", true, true), ("plain", false, false)]
                {
                    let mut cmd = py(FORK_RULES_PY);
                    cmd.arg(tag).name(format!("rules-{tag}")).daemon(daemon).allow_children(allow);
                    let m = spawn(&family, &mut cmd);
                    report(&format!("rules_exit_{tag}"), m.wait().expect("wait"));
                }
            }
            "refuse" => {
                let me = current_process().expect("current_process in a daemon");
                report("refuser_daemon", me.daemon);
                let family = Family::new().expect("a daemon joins its family");
                let mut default = Command::new("true");
                let mut nondaemon = Command::new("true");
                nondaemon.daemon(false);
                let mut daemon = Command::new("true");
                daemon.daemon(true);
                for (tag, cmd) in [("default", &mut default), ("nondaemon", &mut nondaemon), ("daemon", &mut daemon)] {
                    match family.spawn(cmd) {
                        Err(e) => {
                            report(&format!("refused_{tag}"), &e);
                            report(&format!("refused_kind_{tag}"), format!("{:?}", e.kind()));
                        }
                        Ok(m) => {
                            report(&format!("refused_{tag}"), format!("spawned pid {}", m.pid()));
                            let _ = m.kill();
                        }
                    }
                }
                // The kernel refuses too, whatever library is used.
                match std::process::Command::new("/bin/true").status() {
                    Err(e) => report("std_spawn", format!("error {:?}", e.raw_os_error())),
                    Ok(st) => report("std_spawn", format!("ran: {st}")),
                }
            }
            other => panic!("unknown scenario {other}"),
        }
        return;
    }
    require_cgroup();
    let mut child = Child::start("outer", "c3");
    child.expect_success(CHILD_TIMEOUT);
    let dump = child.dump();
    assert_eq!(child.expect_value("refuser_exit"), "0", "{dump}");
    assert_eq!(child.expect_value("refuser_daemon"), "true");
    for tag in ["default", "nondaemon", "daemon"] {
        assert_eq!(child.expect_value(&format!("refused_{tag}")), NOT_ALLOWED, "spawn {tag} from a daemon\n{dump}");
        assert_eq!(child.expect_value(&format!("refused_kind_{tag}")), "DaemonChildren");
    }
    assert_eq!(child.expect_value("std_spawn"), "error Some(1)", "std::process::Command in a daemon: EPERM\n{dump}");
    // A daemon: fork, posix_spawn, subprocess fail with EPERM, clone3 with ENOSYS; threads work.
    for tag in ["daemon", "allowed", "plain"] {
        assert_eq!(child.expect_value(&format!("rules_exit_{tag}")), "0", "{tag}\n{dump}");
        assert_eq!(child.expect_value(&format!("threads_{tag}")), "4", "{tag}: threads\n{dump}");
    }
    assert_eq!(child.expect_value("fork_daemon"), "PermissionError:1", "os.fork() in a daemon\n{dump}");
    assert_eq!(child.expect_value("posix_spawn_daemon"), "PermissionError:1", "os.posix_spawn in a daemon\n{dump}");
    assert_eq!(child.expect_value("subprocess_daemon"), "PermissionError:1", "subprocess in a daemon\n{dump}");
    assert_eq!(child.expect_value("clone3_daemon"), "-1:38", "clone3 in a daemon: ENOSYS\n{dump}");
    // allow_children (and a plain member): everything works; clone3(NULL, 0) reaches the kernel.
    for tag in ["allowed", "plain"] {
        assert_eq!(child.expect_value(&format!("fork_{tag}")), "forked", "{tag}\n{dump}");
        assert_eq!(child.expect_value(&format!("posix_spawn_{tag}")), "spawned", "{tag}\n{dump}");
        assert_eq!(child.expect_value(&format!("subprocess_{tag}")), "ran", "{tag}\n{dump}");
        assert_eq!(child.expect_value(&format!("clone3_{tag}")), "-1:22", "{tag}: clone3 EINVAL\n{dump}");
    }
    child.assert_no_leftovers();
}

// =============================================================================================
// 4. Daemons die however their parent ends (C4, C7 ordering)
// =============================================================================================

/// A non-daemonic worker: sleeps 1 s, then writes the time it ends (ns) to argv[1].
const WORKER_PY: &str = "import sys, time\ntime.sleep(1)\nopen(sys.argv[1], 'w').write(str(time.time_ns()))";

/// The child side of every C4 scenario: `<how>` or `<how>+worker`.
fn c4_child(scenario: &str) {
    let (how, worker) = match scenario.strip_suffix("+worker") {
        Some(how) => (how, true),
        None => (scenario, false),
    };
    let family = open_family();
    let daemon = spawn(&family, py(SLEEPER_PY).name("sleeper").daemon(true));
    report("daemon_pid", daemon.pid());
    // The parent may end right after "ready", so the child checks that its daemon runs. spawn
    // returns once the kernel is past the point of no return of execve, a moment before it has
    // set up the new program's arguments, which /proc/PID/cmdline shows.
    let runs = common::wait_until(Duration::from_secs(2), || pid_alive_with(daemon.pid(), &child_marker()));
    assert!(runs, "the daemon runs before its parent ends");
    let _worker = worker.then(|| {
        let w = spawn(&family, py(WORKER_PY).arg(child_tmp().join("worker.end")).name("worker"));
        report("worker_pid", w.pid());
        w
    });
    report("ready", 1);
    match how {
        "return" => return,
        "panic" => panic!("deliberate panic while a daemon runs"),
        "exit" => std::process::exit(3),
        "sigterm" => rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM)
            .expect("send SIGTERM to myself"),
        "sigint" => rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::INT)
            .expect("send SIGINT to myself"),
        "sigkill" => {}
        other => panic!("unknown scenario {other}"),
    }
    // Wait for the signal (from ourselves or from the parent test).
    std::thread::sleep(Duration::from_secs(20));
    std::process::exit(97);
}

/// The parent side: runs `scenario` of `test`, checks how the child ended and when its daemon died.
fn c4_parent(scenario: &str, expected: End) {
    require_cgroup();
    let worker = scenario.ends_with("+worker");
    let mut child = Child::start(scenario, "c4");
    child.wait_value("ready", Duration::from_secs(10));
    let daemon_pid: u32 = child.expect_value("daemon_pid").parse().expect("daemon pid");
    if scenario.starts_with("sigkill") {
        assert!(pid_alive_with(daemon_pid, &child.marker), "the daemon runs before its parent ends\n{}", child.dump());
        child.kill();
    }
    let end = child.wait(CHILD_TIMEOUT);
    assert_eq!(end, expected, "{}", child.dump());
    let (_, ended_ns) = child.ended.expect("end time");
    let worker_end = child.path("worker.end");
    if worker {
        // C7/C4 ordering: the parent is gone, its non-daemonic child still runs, so its daemon lives.
        assert!(!worker_end.exists(), "the worker ended too early for this check\n{}", child.dump());
        assert!(
            pid_alive_with(daemon_pid, &child.marker),
            "{scenario}: the daemon died with its parent although a non-daemonic child still runs (C4)\n{}",
            child.dump()
        );
    }
    let mut dead_ns = 0;
    let died = common::wait_until(Duration::from_secs(5), || {
        dead_ns = common::now_ns();
        !pid_alive_with(daemon_pid, &child.marker)
    });
    assert!(died, "{scenario}: the daemon {daemon_pid} still runs 5 s after its parent ended (C4)\n{}", child.dump());
    let (reference, what) = if worker {
        let text = std::fs::read_to_string(&worker_end).expect("the worker wrote its end time");
        let worker_ns: u128 = text.trim().parse().expect("a timestamp");
        assert!(dead_ns >= worker_ns, "{scenario}: the daemon died before the non-daemonic worker ended (C4, C7)");
        (worker_ns.max(ended_ns), "the worker (last of the live part) ended")
    } else {
        (ended_ns, "its parent ended")
    };
    let delay = Duration::from_nanos(u64::try_from(dead_ns.saturating_sub(reference)).expect("small delay"));
    eprintln!("C4 {scenario}: the daemon was dead {} ms after {what}", ms(delay));
    assert!(delay < common::scaled(Duration::from_secs(1)), "{scenario}: the daemon died {delay:?} after {what} (C4)");
    if matches!(scenario, "return" | "panic") {
        // shutdown() (run by Drop) waits until the guardian has removed everything.
        assert_eq!(common::leftovers(&child.family, &[&child.marker, &child.family]), Vec::<String>::new());
    }
    let cleanup = child.assert_no_leftovers();
    eprintln!("C4 {scenario}: nothing left {} ms after the check started", ms(cleanup));
}

#[harness::test]
fn c4_parent_returns() {
    if let Some(s) = child_scenario() {
        return c4_child(&s);
    }
    c4_parent("return", End::Code(0));
}

#[harness::test]
fn c4_parent_panics() {
    if let Some(s) = child_scenario() {
        return c4_child(&s);
    }
    c4_parent("panic", End::Code(101));
}

#[harness::test]
fn c4_parent_calls_exit() {
    if let Some(s) = child_scenario() {
        return c4_child(&s);
    }
    c4_parent("exit", End::Code(3));
}

#[harness::test]
fn c4_parent_calls_exit_while_a_worker_runs() {
    if let Some(s) = child_scenario() {
        return c4_child(&s);
    }
    c4_parent("exit+worker", End::Code(3));
}

#[harness::test]
fn c4_parent_dies_of_sigterm() {
    if let Some(s) = child_scenario() {
        return c4_child(&s);
    }
    c4_parent("sigterm", End::Signal(15));
}

#[harness::test]
fn c4_parent_dies_of_sigint() {
    if let Some(s) = child_scenario() {
        return c4_child(&s);
    }
    c4_parent("sigint", End::Signal(2));
}

#[harness::test]
fn c4_parent_is_sigkilled() {
    if let Some(s) = child_scenario() {
        return c4_child(&s);
    }
    c4_parent("sigkill", End::Signal(9));
}

#[harness::test]
fn c4_parent_is_sigkilled_while_a_worker_runs() {
    if let Some(s) = child_scenario() {
        return c4_child(&s);
    }
    c4_parent("sigkill+worker", End::Signal(9));
}

// =============================================================================================
// 5. kill() takes the whole subtree (C5)
// =============================================================================================

/// Forks a child and a double-forked, setsid'd grandchild; records `tag pid` lines in argv[1].
const FORKER_PY: &str = r#"
import os, sys, time
path = sys.argv[1]
def rec(tag):
    with open(path, "a") as f:
        f.write("%s %d\n" % (tag, os.getpid()))
if os.fork() == 0:
    rec("child")
    time.sleep(60 * S)
    os._exit(0)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        rec("grandchild")
        time.sleep(60 * S)
        os._exit(0)
    os._exit(0)
rec("member")
time.sleep(60 * S)
"#;

#[harness::test]
fn kill_takes_forked_and_setsid_descendants() {
    if let Some(s) = child_scenario() {
        assert_eq!(s, "forker");
        let marker = child_marker();
        let family = open_family();
        let pids = child_tmp().join("pids");
        let m = spawn(&family, py(FORKER_PY).arg(&pids).name("forker"));
        let recorded = common::wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&pids).is_ok_and(|t| t.lines().count() == 3)
        });
        assert!(recorded, "the forker did not record 3 processes: {:?}", std::fs::read_to_string(&pids));
        let text = std::fs::read_to_string(&pids).expect("pids");
        report("pids", text.replace('\n', ","));
        let three = common::wait_until(Duration::from_secs(5), || common::marked_processes(&marker).len() == 3);
        assert!(three, "expected member, child and grandchild: {:?}", common::marked_processes(&marker));
        let t0 = Instant::now();
        m.kill().expect("kill the member's cgroup");
        report("exit", m.wait().expect("wait"));
        let gone = common::wait_until(Duration::from_secs(3), || common::marked_processes(&marker).is_empty());
        report("all_gone", gone);
        report("gone_ms", ms(t0.elapsed()));
        report("survivors", format!("{:?}", common::marked_processes(&marker)));

        // A daemon with allow_children forks the same way; the end of the family (one
        // cgroup.kill of the daemons) takes its whole subtree too.
        let dpids = child_tmp().join("daemon-pids");
        let d = spawn(&family, py(FORKER_PY).arg(&dpids).name("forking-daemon").daemon(true).allow_children(true));
        let recorded = common::wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&dpids).is_ok_and(|t| t.lines().count() == 3)
        });
        assert!(recorded, "the forking daemon did not record 3 processes: {:?}", std::fs::read_to_string(&dpids));
        let three = common::wait_until(Duration::from_secs(5), || common::marked_processes(&marker).len() == 3);
        assert!(three, "expected daemon, child and grandchild: {:?}", common::marked_processes(&marker));
        let t0 = Instant::now();
        family.shutdown().expect("shutdown");
        report("daemon_exit", format!("{:?}", d.exitcode()));
        report("daemon_tree_gone", common::marked_processes(&marker).is_empty());
        report("daemon_tree_ms", ms(t0.elapsed()));
        return;
    }
    require_cgroup();
    let mut child = Child::start("forker", "c5");
    child.expect_success(CHILD_TIMEOUT);
    let dump = child.dump();
    assert_eq!(child.expect_value("exit"), "-9", "{dump}");
    assert_eq!(child.expect_value("all_gone"), "true", "descendants escaped kill() (C5)\n{dump}");
    eprintln!("C5: member, child and setsid grandchild gone {} ms after kill()", child.expect_value("gone_ms"));
    assert_eq!(child.expect_value("daemon_exit"), "Some(-9)", "{dump}");
    assert_eq!(
        child.expect_value("daemon_tree_gone"),
        "true",
        "an allow_children daemon's descendants survived shutdown() (C3, C5)\n{dump}"
    );
    eprintln!("C5: shutdown() took a forking daemon's subtree in {} ms", child.expect_value("daemon_tree_ms"));
    child.assert_no_leftovers();
}

// =============================================================================================
// 6. stop_timeout: SIGTERM first, cgroup.kill after the timeout (C6)
// =============================================================================================

/// Ignores SIGTERM but appends the time it got one to argv[1]; writes argv[2] once ready.
const STUBBORN_PY: &str = r#"
import signal, sys, time
term, ready = sys.argv[1], sys.argv[2]
def on_term(signum, frame):
    with open(term, "a") as f:
        f.write("%d\n" % time.time_ns())
signal.signal(signal.SIGTERM, on_term)
open(ready, "w").write("ready")
while True:
    time.sleep(0.01)
"#;

fn c6_child(scenario: &str) {
    let term = child_tmp().join("term");
    let ready = child_tmp().join("ready");
    let family = match scenario {
        "family_grace" => Family::builder()
            .name(child_family())
            .stop_timeout(Duration::from_secs(1))
            .open()
            .expect("open a family with a stop timeout"),
        _ => open_family(),
    };
    let mut cmd = py(STUBBORN_PY);
    cmd.arg(&term).arg(&ready).name("stubborn").daemon(true);
    if matches!(scenario, "grace" | "guardian_grace") {
        cmd.stop_timeout(Duration::from_secs(1));
    }
    let daemon = spawn(&family, &mut cmd);
    report("daemon_pid", daemon.pid());
    let up = common::wait_until(Duration::from_secs(10), || ready.exists());
    assert!(up, "the stubborn daemon did not start");
    if scenario == "guardian_grace" {
        report("exiting_ns", common::now_ns());
        std::process::exit(0); // no drop: the guardian does the retirement
    }
    let t0 = common::now_ns();
    let start = Instant::now();
    family.shutdown().expect("shutdown");
    report("shutdown_ms", ms(start.elapsed()));
    report("daemon_exit", format!("{:?}", daemon.exitcode()));
    let terms = common::scenario::read_lines(&term);
    report("terms", terms.len());
    if let Some(first) = terms.first() {
        let at: u128 = first.parse().expect("a timestamp");
        report("term_after_ms", format!("{:.1}", (at.saturating_sub(t0)) as f64 / 1e6));
    }
}

fn c6_secs(child: &Child) -> f64 {
    child.expect_value("shutdown_ms").parse::<f64>().expect("milliseconds") / 1000.0
}

#[harness::test]
fn stop_timeout_sends_sigterm_then_kills() {
    if let Some(s) = child_scenario() {
        return c6_child(&s);
    }
    require_cgroup();
    let mut child = Child::start("grace", "c6");
    child.expect_success(CHILD_TIMEOUT);
    let secs = c6_secs(&child);
    eprintln!(
        "C6: with stop_timeout(1s) shutdown took {secs:.3} s; SIGTERM after {:?} ms",
        child.value("term_after_ms")
    );
    assert_eq!(child.expect_value("terms"), "1", "the daemon got no SIGTERM (C6)\n{}", child.dump());
    assert!((0.7..3.0).contains(&secs), "shutdown took {secs} s with a 1 s stop timeout (C6)\n{}", child.dump());
    assert_eq!(child.expect_value("daemon_exit"), "Some(-9)", "{}", child.dump());
    child.assert_no_leftovers();
}

#[harness::test]
fn family_stop_timeout_is_the_default_of_its_daemons() {
    if let Some(s) = child_scenario() {
        return c6_child(&s);
    }
    require_cgroup();
    let mut child = Child::start("family_grace", "c6f");
    child.expect_success(CHILD_TIMEOUT);
    let secs = c6_secs(&child);
    eprintln!("C6: with the family's stop_timeout(1s) shutdown took {secs:.3} s");
    assert_eq!(child.expect_value("terms"), "1", "the daemon got no SIGTERM (C6)\n{}", child.dump());
    assert!((0.7..3.0).contains(&secs), "shutdown took {secs} s with a 1 s stop timeout (C6)\n{}", child.dump());
    child.assert_no_leftovers();
}

#[harness::test]
fn without_stop_timeout_daemons_die_at_once_without_sigterm() {
    if let Some(s) = child_scenario() {
        return c6_child(&s);
    }
    require_cgroup();
    let mut child = Child::start("nograce", "c6n");
    child.expect_success(CHILD_TIMEOUT);
    let secs = c6_secs(&child);
    eprintln!("C6: without stop_timeout shutdown took {secs:.3} s");
    assert_eq!(child.expect_value("terms"), "0", "a daemon without stop timeout got SIGTERM\n{}", child.dump());
    // Below the 0.7 s that the test with a 1 s stop timeout requires at least: no stop timeout
    // was waited for (the daemon got no SIGTERM and died by SIGKILL, checked here too).
    let bound = common::scaled_ms(700.0) / 1000.0;
    assert!(secs < bound, "shutdown took {secs} s without a stop timeout (bound {bound:.2} s)\n{}", child.dump());
    assert_eq!(child.expect_value("daemon_exit"), "Some(-9)", "{}", child.dump());
    child.assert_no_leftovers();
}

#[harness::test]
fn stop_timeout_is_honoured_by_the_guardian_after_exit() {
    if let Some(s) = child_scenario() {
        return c6_child(&s);
    }
    require_cgroup();
    let mut child = Child::start("guardian_grace", "c6g");
    child.expect_success(CHILD_TIMEOUT);
    let daemon_pid: u32 = child.expect_value("daemon_pid").parse().expect("pid");
    let (ended, _) = child.ended.expect("end time");
    let died = common::wait_until(Duration::from_secs(5), || !pid_alive_with(daemon_pid, &child.marker));
    let after = ended.elapsed();
    assert!(died, "the daemon outlived its parent's exit by 5 s\n{}", child.dump());
    eprintln!("C6: after exit() the guardian ended the stubborn daemon {} ms later", ms(after));
    assert_eq!(common::scenario::read_lines(&child.path("term")).len(), 1, "no SIGTERM from the guardian (C6)");
    assert!(after >= Duration::from_millis(700), "the daemon died {after:?} after exit: no grace (C6)");
    assert!(after < common::scaled(Duration::from_secs(3)), "the daemon died {after:?} after exit");
    child.assert_no_leftovers();
}

// =============================================================================================
// Helpers: not waited for, ended after the daemons
// =============================================================================================

/// Python's resource tracker in miniature: ignores SIGINT and SIGTERM as CPython's does, says
/// it is ready in argv[1].ready, reads its stdin until every writer has closed it, then writes
/// the time (ns) to argv[1] and exits.
const TRACKER_PY: &str = "import signal, sys, time\n\
    signal.signal(signal.SIGINT, signal.SIG_IGN)\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
    open(sys.argv[1] + '.ready', 'w').write('1')\n\
    sys.stdin.buffer.read()\nopen(sys.argv[1], 'w').write(str(time.time_ns()))";

/// The case that made helpers necessary: a tracker whose pipe the parent and its daemon both
/// hold. As a non-daemonic member it would keep the parent's live part alive after a SIGKILL
/// (it waits for its pipe, the pipe for the daemon, the daemon for the live part): nothing
/// would ever end. As a helper, the daemon dies once the parent is gone, then the tracker sees
/// end of file and ends by itself, and nothing of the family is left.
#[harness::test]
fn a_tracker_helper_does_not_keep_a_sigkilled_parents_daemons_alive() {
    if let Some(s) = child_scenario() {
        assert_eq!(s, "tracker");
        let family = open_family();
        let (read, write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("a pipe for the tracker");
        let eof = child_tmp().join("tracker.eof");
        let mut tracker = py(TRACKER_PY);
        tracker.arg(&eof).name("tracker").helper(true).stdin(Stdio::Fd(read));
        let tracker = spawn(&family, &mut tracker);
        let write2 = write.try_clone().expect("dup the pipe");
        let daemon = spawn(&family, py(SLEEPER_PY).name("sleeper").daemon(true).stdout(Stdio::Fd(write2)));
        assert!(tracker.helper() && !tracker.daemon(), "a helper is not a daemon");
        report("daemon_pid", daemon.pid());
        report("tracker_pid", tracker.pid());
        let runs = common::wait_until(Duration::from_secs(2), || pid_alive_with(daemon.pid(), &child_marker()));
        assert!(runs, "the daemon runs before its parent is killed");
        common::wait_for_file(&child_tmp().join("tracker.eof.ready"), common::scaled(Duration::from_secs(5)));
        report("ready", 1);
        // The parent keeps the pipe's write end, as every Python process keeps the tracker's.
        let _keep = write;
        std::thread::sleep(Duration::from_secs(30));
        std::process::exit(97);
    }
    require_cgroup();
    let mut child = Child::start("tracker", "helper");
    child.wait_value("ready", Duration::from_secs(10));
    let daemon_pid: u32 = child.expect_value("daemon_pid").parse().expect("daemon pid");
    let tracker_pid: u32 = child.expect_value("tracker_pid").parse().expect("tracker pid");
    child.kill();
    assert_eq!(child.wait(CHILD_TIMEOUT), End::Signal(9), "{}", child.dump());
    let (_, killed_ns) = child.ended.expect("end time");
    let died = common::wait_until(common::scaled(Duration::from_secs(2)), || !pid_alive_with(daemon_pid, &child.marker));
    assert!(died, "the daemon outlived its SIGKILLed parent: the tracker kept the family alive\n{}", child.dump());
    let eof = child.path("tracker.eof");
    let text = common::wait_for_file(&eof, common::scaled(Duration::from_secs(3)));
    let eof_ns: u128 = text.trim().parse().expect("a timestamp");
    assert!(eof_ns > killed_ns, "the tracker saw end of file before its parent was killed\n{}", child.dump());
    let gone = common::wait_until(common::scaled(Duration::from_secs(2)), || !pid_alive_with(tracker_pid, &child.marker));
    assert!(gone, "the tracker still runs after it saw end of file\n{}", child.dump());
    eprintln!("helper: the tracker saw end of file {:.1} ms after its parent's SIGKILL", common::ms_between(killed_ns, eof_ns));
    child.assert_no_leftovers();
}

/// `Family::place`, for bindings whose children are forked by a server of their own: an
/// existing process becomes a daemon of the caller (it is in the daemon's cgroup, and dies when
/// the caller is SIGKILLed); a member that cannot be made (a helper that is also a daemon) is
/// refused, and the process is ended first, through the caller's `abandon`.
#[harness::test]
fn an_existing_process_is_placed_as_a_member() {
    if let Some(s) = child_scenario() {
        assert_eq!(s, "place");
        let family = open_family();
        let sleeper = |tag: &str| {
            std::process::Command::new(python())
                .arg("-c")
                .arg(format!("import time\ntime.sleep(60)\n#{} {tag}", child_marker()))
                .spawn()
                .expect("start a process to place")
        };
        let mut refused = sleeper("refused");
        let mut abandoned = false;
        let mut cmd = Command::new("x");
        cmd.name("both").helper(true).daemon(true);
        let e = family
            .place(refused.id(), &cmd, &mut || {
                abandoned = refused.kill().is_ok() && refused.wait().is_ok();
                abandoned
            })
            .expect_err("a helper that is a daemon");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(abandoned, "the refused process was not ended through abandon");
        let mut placed = sleeper("placed");
        let pid = placed.id();
        let dir = family
            .place(pid, Command::new("x").name("placed").daemon(true), &mut || placed.kill().is_ok())
            .unwrap_or_else(|e| panic!("place {pid}: {e}"));
        report("daemon_pid", pid);
        report("dir", dir.display());
        report("ready", 1);
        std::thread::sleep(Duration::from_secs(30));
        std::process::exit(97);
    }
    require_cgroup();
    let mut child = Child::start("place", "place");
    child.wait_value("ready", Duration::from_secs(10));
    let pid: u32 = child.expect_value("daemon_pid").parse().expect("pid");
    let dir = child.expect_value("dir");
    let leaf_dir = leaf(&dir).to_string();
    let cg = common::cgroup_of(&pid.to_string()).unwrap_or_default();
    assert!(
        cg.ends_with(&leaf_dir) || cg.contains(&format!("{leaf_dir}/")),
        "process {pid} is in {cg}, not in its daemon's cgroup {dir}\n{}",
        child.dump()
    );
    assert!(leaf_dir.contains("placed") && leaf_dir.contains(".daemon"), "not a daemon named placed: {dir}");
    child.kill();
    let died = common::wait_until(common::scaled(Duration::from_secs(2)), || !pid_alive_with(pid, &child.marker));
    assert!(died, "the placed daemon outlived its SIGKILLed owner\n{}", child.dump());
    child.assert_no_leftovers();
}

// =============================================================================================
// 7. shutdown() waits for non-daemonic children (C7)
// =============================================================================================

#[harness::test]
fn shutdown_waits_for_non_daemonic_children() {
    if let Some(s) = child_scenario() {
        assert_eq!(s, "wait");
        let family = open_family();
        let worker = spawn(&family, py("import time\ntime.sleep(1)").name("worker"));
        let daemon = spawn(&family, py(SLEEPER_PY).name("sleeper").daemon(true));
        let start = Instant::now();
        family.shutdown().expect("shutdown");
        report("shutdown_ms", ms(start.elapsed()));
        report("worker_exit", format!("{:?}", worker.exitcode()));
        report("daemon_exit", format!("{:?}", daemon.exitcode()));
        return;
    }
    require_cgroup();
    let mut child = Child::start("wait", "c7");
    child.expect_success(CHILD_TIMEOUT);
    let secs = c6_secs(&child);
    eprintln!("C7: shutdown waited {secs:.3} s for a 1 s worker");
    assert!(secs >= 0.9, "shutdown returned after {secs} s, before its 1 s worker ended (C7)\n{}", child.dump());
    assert!(secs < common::scaled_ms(5000.0) / 1000.0, "shutdown took {secs} s\n{}", child.dump());
    assert_eq!(child.expect_value("worker_exit"), "Some(0)", "the worker must end normally (C7)\n{}", child.dump());
    assert_eq!(child.expect_value("daemon_exit"), "Some(-9)", "{}", child.dump());
    child.assert_no_leftovers();
}

// =============================================================================================
// 8. Exit status and the handle's operations (C9)
// =============================================================================================

/// Whether the member's sentinel is readable within `timeout`.
fn sentinel_ready(m: &Member, timeout: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let fd = m.sentinel();
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let ts = Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: i64::from(timeout.subsec_nanos()) as _ };
    let n = poll(&mut fds, Some(&ts)).expect("poll the sentinel");
    n > 0 && fds[0].revents().contains(PollFlags::IN)
}

#[harness::test]
fn exit_status_follows_pythons_convention() {
    if let Some(s) = child_scenario() {
        assert_eq!(s, "status");
        let family = open_family();
        // An exit code.
        let seven = spawn(&family, Command::new("sh").args(["-c", "exit 7"]).name("seven"));
        assert!(sentinel_ready(&seven, Duration::from_secs(10)), "the sentinel of an ended member is readable");
        assert_eq!(seven.wait().expect("wait"), 7);
        assert_eq!(seven.wait().expect("wait again"), 7, "waiting twice gives the same status");
        assert_eq!(seven.join(None).expect("join"), Some(7));
        assert_eq!(seven.join(Some(Duration::from_millis(1))).expect("join"), Some(7));
        assert_eq!(seven.exitcode(), Some(7));
        assert!(!seven.is_alive());
        report("seven", 7);

        // terminate(): SIGTERM, -15; join with a timeout; is_alive; the sentinel.
        let t = spawn(&family, py(SLEEPER_PY).name("terminated"));
        assert!(t.is_alive(), "a sleeping member is alive");
        assert_eq!(t.exitcode(), None);
        let start = Instant::now();
        assert_eq!(t.join(Some(Duration::from_millis(150))).expect("join"), None, "join times out on a live member");
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(140) && waited < common::scaled(Duration::from_secs(2)), "join waited {waited:?}");
        assert!(!sentinel_ready(&t, Duration::ZERO), "the sentinel of a live member is not readable");
        t.terminate().expect("terminate");
        assert!(sentinel_ready(&t, Duration::from_secs(10)), "the sentinel becomes readable when the member ends");
        assert_eq!(t.wait().expect("wait"), -15);
        assert_eq!(t.exitcode(), Some(-15));
        assert!(!t.is_alive());
        assert_eq!(t.join(None).expect("join again"), Some(-15));
        t.terminate().expect("terminate an ended member is a no-op");
        report("terminated", -15);

        // kill(): cgroup.kill, -9.
        let k = spawn(&family, py(SLEEPER_PY).name("killed"));
        k.kill().expect("kill");
        assert_eq!(k.wait().expect("wait"), -9);
        assert_eq!(k.exitcode(), Some(-9));
        k.kill().expect("kill an ended member is a no-op");
        report("killed", -9);

        // A member that dies of another signal, and close().
        let segv = spawn(&family, Command::new("sh").args(["-c", "kill -SEGV $$"]).name("segv"));
        assert_eq!(segv.wait().expect("wait"), -11);
        let four = spawn(&family, Command::new("sh").args(["-c", "exit 4"]).name("four"));
        assert_eq!(four.close().expect("close"), 4);
        // A daemon's status too.
        let d = spawn(&family, Command::new(python()).args(["-c", "import sys; sys.exit(5)"]).daemon(true));
        assert_eq!(d.wait().expect("wait"), 5);
        report("done", 1);
        return;
    }
    require_cgroup();
    let mut child = Child::start("status", "c9");
    child.expect_success(CHILD_TIMEOUT);
    assert_eq!(child.expect_value("done"), "1", "{}", child.dump());
    child.assert_no_leftovers();
}

// =============================================================================================
// 9. Many members, nothing left behind (C10)
// =============================================================================================

#[harness::test]
fn two_hundred_members_leave_nothing_behind() {
    if let Some(s) = child_scenario() {
        assert_eq!(s, "many");
        let family = open_family();
        let start = Instant::now();
        let mut daemons = Vec::new();
        let mut trues = Vec::new();
        for i in 0..100 {
            daemons.push(spawn(&family, py(SLEEPER_PY).name(format!("d{i}")).daemon(true)));
            trues.push(spawn(&family, Command::new("true").name(format!("t{i}"))));
        }
        report("spawn_ms", ms(start.elapsed()));
        report("active", family.active_children().len());
        let start = Instant::now();
        family.shutdown().expect("shutdown");
        report("shutdown_ms", ms(start.elapsed()));
        let codes = |ms: &[Member]| {
            let mut v: Vec<Option<i32>> = ms.iter().map(Member::exitcode).collect();
            v.dedup();
            format!("{v:?}")
        };
        report("daemon_codes", codes(&daemons));
        report("true_codes", codes(&trues));
        return;
    }
    require_cgroup();
    let mut child = Child::start("many", "c10");
    child.expect_success(Duration::from_secs(120));
    let spawn_ms = child.expect_value("spawn_ms");
    let shutdown_ms = child.expect_value("shutdown_ms");
    let (ended, _) = child.ended.expect("end");
    let cleanup = child.assert_no_leftovers();
    eprintln!(
        "C10: 200 members spawned in {spawn_ms} ms, shutdown took {shutdown_ms} ms, \
         nothing left {} ms after the parent exited (checked for {} ms)",
        ms(ended.elapsed()),
        ms(cleanup)
    );
    assert_eq!(child.expect_value("daemon_codes"), "[Some(-9)]", "{}", child.dump());
    assert_eq!(child.expect_value("true_codes"), "[Some(0)]", "{}", child.dump());
}

// =============================================================================================
// 10. Both placements work (clone3 into the cgroup, and the fork fallback)
// =============================================================================================

/// Reports its cgroup and what os.fork() does, then exits 3.
const PLACED_PY: &str = r#"
import os, sys
tag = sys.argv[1]
line = [l for l in open("/proc/self/cgroup").read().splitlines() if l.startswith("0::")][0]
print("@cgroup_%s=%s" % (tag, line[3:]), flush=True)
try:
    os.fork()
    print("@fork_%s=forked" % tag, flush=True)
except OSError as e:
    print("@fork_%s=%s:%d" % (tag, type(e).__name__, e.errno), flush=True)
sys.exit(3)
"#;

#[harness::test]
fn fork_and_clone3_placements_both_work() {
    if let Some(s) = child_scenario() {
        assert_eq!(s, "placements");
        let family = open_family();
        for (tag, placement) in [("fork", Placement::Fork), ("clone3", Placement::Clone3)] {
            let d = spawn(&family, py(PLACED_PY).arg(tag).name(format!("d-{tag}")).daemon(true).placement(placement));
            report(&format!("daemon_flag_{tag}"), d.daemon());
            report(&format!("daemon_dir_{tag}"), d.cgroup().display());
            report(&format!("daemon_exit_{tag}"), d.wait().expect("wait"));
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "exit 5"]).name(format!("p-{tag}")).placement(placement);
            let p = spawn(&family, &mut cmd);
            report(&format!("plain_exit_{tag}"), p.wait().expect("wait"));
        }
        return;
    }
    require_cgroup();
    let mut child = Child::start("placements", "place");
    child.expect_success(CHILD_TIMEOUT);
    let mount = common::cgroup2_mount().expect("mount");
    let dump = child.dump();
    for tag in ["fork", "clone3"] {
        assert_eq!(child.expect_value(&format!("daemon_flag_{tag}")), "true", "{tag}");
        assert_eq!(child.expect_value(&format!("daemon_exit_{tag}")), "3", "{tag}\n{dump}");
        assert_eq!(child.expect_value(&format!("plain_exit_{tag}")), "5", "{tag}\n{dump}");
        let seen_raw = child.expect_value(&format!("cgroup_{tag}"));
        let seen = common::logical(&seen_raw);
        assert!(leaf(&seen).starts_with(&format!("d-{tag}-")) && leaf(&seen).ends_with(".daemon"), "{tag}: {seen}");
        let dir = child.expect_value(&format!("daemon_dir_{tag}"));
        assert_eq!(
            common::logical(&dir),
            common::logical(&mount.join(seen_raw.trim_start_matches('/')).to_string_lossy()),
            "{tag}: placed where Member::cgroup says"
        );
        assert_eq!(child.expect_value(&format!("fork_{tag}")), "PermissionError:1", "{tag}: seccomp\n{dump}");
    }
    child.assert_no_leftovers();
}

// =============================================================================================
// 11. Bad input is refused and leaves nothing behind
// =============================================================================================

fn expect_refused(family: &Family, what: &str, cmd: &mut Command, kind: ErrorKind, needle: &str) {
    let e = family.spawn(cmd).expect_err(what);
    assert_eq!(e.kind(), kind, "{what}: {e}");
    assert!(e.to_string().contains(needle), "{what}: the message {:?} should name {needle:?}", e.to_string());
    report(&format!("refused_{what}"), &e);
    assert_only_main(family, what);
}

fn assert_only_main(family: &Family, what: &str) {
    let dirs: Vec<String> = common::scenario::subdir_names(family.cgroup())
        .iter()
        .map(|d| common::logical(d))
        .filter(|d| !d.is_empty())
        .collect();
    assert_eq!(dirs, ["main-1.member"], "after {what}: stray directories in {}", family.cgroup().display());
}

#[harness::test]
fn bad_input_is_refused_and_leaves_nothing_behind() {
    if let Some(s) = child_scenario() {
        match s.as_str() {
            "spawn" => bad_spawns(),
            "cgroup" => bad_cgroups(),
            other => panic!("unknown scenario {other}"),
        }
        return;
    }
    require_cgroup();
    for scenario in ["spawn", "cgroup"] {
        let mut child = Child::start(scenario, "bad");
        child.expect_success(CHILD_TIMEOUT);
        assert_eq!(child.expect_value("done"), "1", "{}", child.dump());
        eprintln!(
            "bad input ({scenario}):\n{}",
            child.stdout().lines().filter(|l| l.starts_with("@refused")).collect::<Vec<_>>().join("\n")
        );
        child.assert_no_leftovers();
    }
}

fn bad_spawns() {
    let family = open_family();
    assert_only_main(&family, "opening the family");
    let tmp = child_tmp();
    let missing = format!("no-such-program-{}", child_marker());
    for daemon in [false, true] {
        let d = if daemon { "daemon" } else { "plain" };
        expect_refused(
            &family,
            &format!("missing_{d}"),
            Command::new(&missing).daemon(daemon),
            ErrorKind::ProgramNotFound,
            &missing,
        );
        let abs = tmp.join("nonexistent/prog");
        let shown = abs.display().to_string();
        expect_refused(
            &family,
            &format!("missing_path_{d}"),
            Command::new(&abs).daemon(daemon),
            ErrorKind::ProgramNotFound,
            &shown,
        );
        let data = tmp.join("data.txt");
        std::fs::write(&data, "not a program\n").expect("write a data file");
        let shown = data.display().to_string();
        expect_refused(
            &family,
            &format!("not_executable_{d}"),
            Command::new(&data).daemon(daemon),
            ErrorKind::ProgramNotExecutable,
            &shown,
        );
        let shown = tmp.display().to_string();
        expect_refused(
            &family,
            &format!("directory_{d}"),
            Command::new(&tmp).daemon(daemon),
            ErrorKind::ProgramNotExecutable,
            &shown,
        );
        for (what, name) in [
            ("slash", "a/b".to_string()),
            ("dotdot", "..".to_string()),
            ("dotdot_inside", "a..b".to_string()),
            ("nul", "x\0y".to_string()),
            ("empty", String::new()),
            ("long", "x".repeat(10_000)),
        ] {
            expect_refused(
                &family,
                &format!("name_{what}_{d}"),
                Command::new("true").name(name).daemon(daemon),
                ErrorKind::InvalidInput,
                "name",
            );
        }
        expect_refused(
            &family,
            &format!("nul_arg_{d}"),
            Command::new("true").arg("a\0b").daemon(daemon),
            ErrorKind::InvalidInput,
            "NUL",
        );
        // The program passes every check but execve fails: not a format the kernel runs ...
        let text = common::write_file(&tmp, "plain-text", "just words, no #! line\n", 0o755);
        expect_refused(
            &family,
            &format!("exec_format_{d}"),
            Command::new(&text).daemon(daemon),
            ErrorKind::ProgramNotExecutable,
            &text,
        );
        // ... or a working directory that does not exist (the child fails before execve) ...
        let nowhere = tmp.join("no-such-directory");
        expect_refused(
            &family,
            &format!("missing_cwd_{d}"),
            Command::new("true").current_dir(&nowhere).daemon(daemon),
            ErrorKind::Os,
            &nowhere.display().to_string(),
        );
        // ... or a missing interpreter: the member
        // directory was created, and must be gone again.
        let script = common::write_file(&tmp, "bad-interpreter", "#!/nonexistent/interpreter\n", 0o755);
        let e = family.spawn(Command::new(&script).daemon(daemon)).expect_err("a script with a missing interpreter");
        report(&format!("refused_exec_{d}"), &e);
        assert!(e.to_string().contains("bad-interpreter"), "{e}");
        if daemon {
            // The first daemon creates main-1.member.daemons; a failed spawn must not leave it.
            assert_only_main(&family, "a failed daemon exec");
        } else {
            assert_only_main(&family, "a failed exec");
        }
    }
    // The family still works, and an ended member's directory goes away.
    let ok = spawn(&family, Command::new("true").name("fine"));
    assert_eq!(ok.wait().expect("wait"), 0);
    assert_only_main(&family, "a member that ended");
    family.shutdown().expect("shutdown");
    assert!(common::family_dirs(&child_family()).is_empty(), "the family is gone after shutdown");
    // A family that was shut down spawns nothing.
    let e = family.spawn(&mut Command::new("true")).expect_err("spawn after shutdown");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    report("refused_after_shutdown", &e);
    assert!(common::family_dirs(&child_family()).is_empty(), "a spawn after shutdown created a directory");
    report("done", 1);
}

fn bad_cgroups() {
    let name = child_family();
    let mount = common::cgroup2_mount().expect("mount");
    let tmp = child_tmp();
    let cases: Vec<(&str, std::path::PathBuf, String)> = vec![
        ("tmpdir", tmp.clone(), tmp.display().to_string()),
        (
            "missing_relative",
            format!("no-such-cgroup-{}", child_marker()).into(),
            format!("no-such-cgroup-{}", child_marker()),
        ),
        ("missing_absolute", mount.join(format!("no-such-{}", child_marker())), format!("no-such-{}", child_marker())),
        ("a_file", mount.join("cgroup.procs"), "cgroup.procs".to_string()),
    ];
    for (what, path, needle) in cases {
        let e = Family::builder().name(&name).cgroup(&path).open().expect_err(what);
        report(&format!("refused_cgroup_{what}"), &e);
        assert!(e.to_string().contains(&needle), "{what}: {e} should name {needle}");
        assert!(matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Unsupported), "{what}: {:?}", e.kind());
        assert!(common::family_dirs(&name).is_empty(), "{what}: a family directory was left");
        let me = current_process().expect("current_process");
        assert_eq!(me.family, None, "{what}: the process was moved into a family");
    }
    for (what, bad) in [("slash", "a/b"), ("dotdot", ".."), ("nul", "a\0b"), ("empty", "")] {
        let e = Family::builder().name(bad).open().expect_err(what);
        report(&format!("refused_family_name_{what}"), &e);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}");
        assert_eq!(current_process().expect("current_process").family, None, "{what}");
    }
    let long = "x".repeat(10_000);
    let e = Family::builder().name(&long).open().expect_err("a 10,000-character family name");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    report("done", 1);
}

// =============================================================================================
// 12. active_children()
// =============================================================================================

/// Runs until the file `argv[1]` exists.
const UNTIL_PY: &str = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.01)";

#[harness::test]
fn active_children_lists_running_members_only() {
    if let Some(s) = child_scenario() {
        assert_eq!(s, "active");
        let family = open_family();
        let pids = |f: &Family| {
            let mut v: Vec<u32> = f.active_children().iter().map(Member::pid).collect();
            v.sort_unstable();
            v
        };
        assert!(family.active_children().is_empty());
        // The short one ends when told (a file appears), not after a fixed time: on a loaded
        // machine the next two spawns can take longer than any short sleep.
        let gate = child_tmp().join("short-may-end");
        let short = spawn(&family, py(UNTIL_PY).arg(&gate).name("short"));
        let daemon = spawn(&family, py(SLEEPER_PY).name("daemon").daemon(true));
        let long = spawn(&family, py(SLEEPER_PY).name("long"));
        let mut all = vec![short.pid(), daemon.pid(), long.pid()];
        all.sort_unstable();
        assert_eq!(pids(&family), all, "all three run");
        let names: Vec<String> = family.active_children().iter().map(|m| m.name().to_string()).collect();
        report("names", names.join(","));
        // The short one ends by itself; active_children() drops it (without anyone waiting on it).
        std::fs::write(&gate, "").expect("open the gate");
        let dropped = common::wait_until(Duration::from_secs(10), || !pids(&family).contains(&short.pid()));
        assert!(dropped, "an ended member is still listed");
        assert_eq!(short.exitcode(), Some(0), "the handle still knows the status");
        let mut rest = vec![daemon.pid(), long.pid()];
        rest.sort_unstable();
        assert_eq!(pids(&family), rest);
        long.kill().expect("kill");
        assert_eq!(long.wait().expect("wait"), -9);
        assert_eq!(pids(&family), vec![daemon.pid()], "a killed member is dropped");
        assert!(family.active_children().iter().all(Member::daemon));
        family.shutdown().expect("shutdown");
        assert!(family.active_children().is_empty(), "nothing is active after shutdown");
        report("done", 1);
        return;
    }
    require_cgroup();
    let mut child = Child::start("active", "act");
    child.expect_success(CHILD_TIMEOUT);
    assert_eq!(child.expect_value("done"), "1", "{}", child.dump());
    let mut names: Vec<String> = child.expect_value("names").split(',').map(str::to_string).collect();
    names.sort();
    assert_eq!(names, ["daemon", "long", "short"]);
    child.assert_no_leftovers();
}

// =============================================================================================
// 13. A member's own daemons die when that member ends (C4 below the family's root)
// =============================================================================================

#[harness::test]
fn a_members_daemons_die_when_the_member_ends() {
    if let Some(s) = child_scenario() {
        match s.as_str() {
            "outer" => {
                let family = open_family();
                for how in ["killed", "exit"] {
                    let ready = child_tmp().join(format!("nested-{how}.daemon-pid"));
                    let mut cmd = self_command("nested");
                    cmd.name(format!("nested-{how}")).env("NESTED_HOW", how).env("NESTED_READY", &ready);
                    let nested = spawn(&family, &mut cmd);
                    let up = common::wait_until(Duration::from_secs(10), || {
                        std::fs::read_to_string(&ready).is_ok_and(|t| t.ends_with('\n'))
                    });
                    assert!(up, "{how}: the nested member did not start its daemon");
                    let daemon_pid: u32 = std::fs::read_to_string(&ready).expect("pid").trim().parse().expect("a pid");
                    if how == "killed" {
                        nested.kill().expect("kill the nested member");
                    }
                    report(&format!("nested_exit_{how}"), nested.wait().expect("wait"));
                    let ended = Instant::now();
                    let died =
                        common::wait_until(Duration::from_secs(2), || !pid_alive_with(daemon_pid, &child_marker()));
                    report(&format!("nested_daemon_died_{how}"), died);
                    report(&format!("nested_daemon_ms_{how}"), ms(ended.elapsed()));
                    if !died {
                        // Contract broken: end the stray daemons ourselves (cgroup.kill of their
                        // directory in our own family) so the failure is quick and leaves nothing.
                        let main = current_process().expect("current_process").cgroup;
                        for name in common::scenario::subdir_names(&main) {
                            if name.starts_with(&format!("nested-{how}-")) && name.ends_with(".member.daemons") {
                                let dir = main.join(&name);
                                report(&format!("stray_{how}"), dir.display());
                                std::fs::write(dir.join("cgroup.kill"), "1").expect("kill the stray daemons");
                            }
                        }
                    }
                }
                family.shutdown().expect("shutdown");
            }
            "nested" => {
                let me = current_process().expect("current_process");
                assert!(!me.daemon && me.name.starts_with("nested-"), "{me:?}");
                let family = Family::new().expect("a member joins its family");
                let d = spawn(&family, py(SLEEPER_PY).name("nested-daemon").daemon(true));
                let ready = std::env::var("NESTED_READY").expect("NESTED_READY");
                std::fs::write(&ready, format!("{}\n", d.pid())).expect("write the daemon's pid");
                if std::env::var("NESTED_HOW").as_deref() == Ok("exit") {
                    std::process::exit(4); // no shutdown: the guardian must end the daemon
                }
                std::thread::sleep(Duration::from_secs(20));
                std::process::exit(97);
            }
            other => panic!("unknown scenario {other}"),
        }
        return;
    }
    require_cgroup();
    let mut child = Child::start("outer", "nest");
    child.expect_success(CHILD_TIMEOUT);
    let dump = child.dump();
    for (how, code) in [("killed", "-9"), ("exit", "4")] {
        assert_eq!(child.expect_value(&format!("nested_exit_{how}")), code, "{how}\n{dump}");
        assert_eq!(
            child.expect_value(&format!("nested_daemon_died_{how}")),
            "true",
            "{how}: a nested member's daemon outlived it (C4)\n{dump}"
        );
        let ms: f64 = child.expect_value(&format!("nested_daemon_ms_{how}")).parse().expect("ms");
        eprintln!("C4 nested ({how}): the member's daemon was dead {ms} ms after the member ended");
        assert!(ms < common::scaled_ms(1000.0), "{how}: the nested daemon died {ms} ms after its parent member");
    }
    child.assert_no_leftovers();
}

// =============================================================================================
// 14. A second handle on the same family
// =============================================================================================

/// `Family::new()` called again in a process that created a family returns a joined handle
/// for the same family. The daemons belong to the process, so dropping the second handle must
/// not end the daemons spawned through the first one while the process keeps running (C4);
/// only the last handle to shut down ends them.
#[harness::test]
fn dropping_a_second_handle_keeps_the_first_handles_daemons() {
    if let Some(s) = child_scenario() {
        assert_eq!(s, "second");
        let family = open_family();
        let d = spawn(&family, py(SLEEPER_PY).name("d").daemon(true));
        {
            let second = Family::new().expect("a second handle");
            report("same_family", second.id() == family.id());
        }
        std::thread::sleep(Duration::from_millis(300));
        report("alive", d.is_alive());
        report("exit", format!("{:?}", d.exitcode()));
        return;
    }
    require_cgroup();
    let mut child = Child::start("second", "second");
    child.expect_success(CHILD_TIMEOUT);
    assert_eq!(child.expect_value("same_family"), "true", "{}", child.dump());
    assert_eq!(
        child.expect_value("alive"),
        "true",
        "the daemon died when a second handle was dropped (exit {})\n{}",
        child.expect_value("exit"),
        child.dump()
    );
    child.assert_no_leftovers();
}

// =============================================================================================
// 15. A helper process in a member's cgroup
// =============================================================================================

/// A plain program that a member runs (forked, not spawned by daemonic) lives in the member's
/// cgroup, so `Family::new()` there joins the member's family as that member. When it shuts
/// down (at its exit), it must end only the daemons it started itself, never the daemons the
/// member's own process started: those live until the member ends (C4). On systemd a target
/// test's daemons were SIGKILLed this way by a child the test binary ran to check an error.
#[harness::test]
fn a_helper_process_ends_only_its_own_daemons() {
    if let Some(s) = child_scenario() {
        match s.as_str() {
            "member" => {
                let family = open_family();
                let d = spawn(&family, py(SLEEPER_PY).name("d").daemon(true));
                let exe = std::env::current_exe().expect("the path of the test binary");
                let status = std::process::Command::new(exe)
                    .args(common::scenario::harness_args(&common::scenario::child_test(), &child_marker()))
                    .env(common::scenario::ENV_SCENARIO, "helper")
                    .status()
                    .expect("run the helper");
                report("helper_exit", status.code().unwrap_or(-1));
                std::thread::sleep(Duration::from_millis(300));
                report("alive", d.is_alive());
                report("exit", format!("{:?}", d.exitcode()));
                family.shutdown().expect("shutdown");
                report("dead_after_shutdown", !d.is_alive());
            }
            "helper" => {
                let family = Family::new().expect("a helper joins the member's family");
                report("helper_member", current_process().expect("current_process").name);
                let h = spawn(&family, py(SLEEPER_PY).name("h").daemon(true));
                family.shutdown().expect("the helper's shutdown");
                report("helper_daemon_ended", h.exitcode().map_or("running".to_string(), |c| c.to_string()));
            }
            other => panic!("unknown scenario {other}"),
        }
        return;
    }
    require_cgroup();
    let mut child = Child::start("member", "helper");
    child.expect_success(CHILD_TIMEOUT);
    let dump = child.dump();
    assert_eq!(child.expect_value("helper_exit"), "0", "{dump}");
    assert_eq!(child.expect_value("helper_member"), "main", "{dump}");
    assert_eq!(child.expect_value("helper_daemon_ended"), "-9", "the helper's own daemon: {dump}");
    assert_eq!(
        child.expect_value("alive"),
        "true",
        "the member's daemon died when a helper process in its cgroup shut down (exit {})\n{dump}",
        child.expect_value("exit")
    );
    assert_eq!(child.expect_value("dead_after_shutdown"), "true", "{dump}");
    child.assert_no_leftovers();
}

// =============================================================================================
// Contained members: a PID namespace of their own
// =============================================================================================

#[harness::test]
fn contained_members_keep_the_contract_and_take_their_descendants_along() {
    if let Some(s) = child_scenario() {
        assert_eq!(s, "contain");
        let family = open_family();
        // Statuses: a code stays a code; a program killed by signal N ends its init with
        // 128 + N; the member's kill (cgroup.kill) ends the init itself, -9.
        let seven = spawn(&family, Command::new("sh").args(["-c", "exit 7"]).name("seven").contain(true));
        assert_eq!(seven.wait().expect("wait"), 7);
        let t = spawn(&family, py(SLEEPER_PY).name("terminated").contain(true));
        std::thread::sleep(Duration::from_millis(200));
        t.terminate().expect("terminate");
        assert_eq!(t.wait().expect("wait"), 128 + 15, "SIGTERM reaches the program through its init");
        let k = spawn(&family, py(SLEEPER_PY).name("killed").contain(true));
        k.kill().expect("kill");
        assert_eq!(k.wait().expect("wait"), -9);
        report("statuses", 1);

        // The program sees itself as PID 2 of its namespace, under its init.
        let pid = spawn(
            &family,
            Command::new("sh").args(["-c", "[ $$ = 2 ] && [ $PPID = 1 ]"]).name("pidns").contain(true),
        );
        assert_eq!(pid.wait().expect("wait"), 0, "the program is PID 2, its parent the init");

        // When the program ends, whatever it left running ends with it: here a background
        // sleep of a daemon with allow_children, while the family goes on. The daemon waits
        // until the test has seen the sleep (a file it removes), then exits.
        let sleep = common::marker(300);
        let seen = child_tmp().join("sleep-seen");
        std::fs::write(&seen, "").expect("create the gate file");
        let gate = seen.display();
        let d = spawn(
            &family,
            Command::new("sh")
                .args(["-c", &format!("sleep {sleep} & while [ -e {gate} ]; do sleep 0.05; done; exit 0")])
                .name("leaver")
                .daemon(true)
                .allow_children(true)
                .contain(true),
        );
        let sleeping = || common::marked_processes(&sleep).into_iter().any(|(_, cmd)| cmd.starts_with("sleep "));
        assert!(common::wait_until(Duration::from_secs(5), sleeping), "the daemon's background sleep should run");
        std::fs::remove_file(&seen).expect("open the gate");
        assert_eq!(d.wait().expect("wait"), 0);
        assert!(
            common::wait_until(Duration::from_secs(1), || common::marked_processes(&sleep).is_empty()),
            "the background sleep outlived its contained daemon: {:?}",
            common::marked_processes(&sleep)
        );
        report("descendants", 1);

        // Refused before anything exists: a daemon that may not have children.
        let err = family
            .spawn(Command::new("sleep").arg("1").daemon(true).contain(true))
            .expect_err("contain without allow_children");
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("contain applies to members that may have children"), "{err}");
        report("done", 1);
        return;
    }
    require_cgroup();
    if !rustix::process::geteuid().is_root() {
        common::skip("contained members need root (a PID namespace)");
    }
    let mut child = Child::start("contain", "contain");
    child.expect_success(CHILD_TIMEOUT);
    assert_eq!(child.expect_value("done"), "1", "{}", child.dump());
    child.assert_no_leftovers();
}

// =============================================================================================
// 16. Inherited descriptors
// =============================================================================================

/// Reports whether descriptors `$1` and `$2` are open in the shell, as `@fds_<tag>=<a>,<b>`.
const FDS_SH: &str = r#"a=no; b=no; [ -e /proc/self/fd/$2 ] && a=yes; [ -e /proc/self/fd/$3 ] && b=yes; echo "@fds_$1=$a,$b""#;

/// `fd` again under the lowest free number from `min` up, without close-on-exec.
fn inheritable_from(fd: &std::fs::File, min: i32) -> std::os::fd::OwnedFd {
    use rustix::io::{FdFlags, fcntl_dupfd_cloexec, fcntl_setfd};
    let dup = fcntl_dupfd_cloexec(fd, min).unwrap_or_else(|e| panic!("dup from {min}: {e}"));
    fcntl_setfd(&dup, FdFlags::empty()).expect("clear close-on-exec");
    dup
}

#[harness::test]
fn members_inherit_open_descriptors_below_1024_only() {
    use std::os::fd::AsRawFd;
    if let Some(s) = child_scenario() {
        assert_eq!(s, "descriptors");
        let mut limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        limit.current = Some(limit.maximum.map_or(4096, |max| max.min(4096)));
        rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).expect("raise RLIMIT_NOFILE to 4096");
        let null = std::fs::File::open("/dev/null").expect("open /dev/null");
        let low = inheritable_from(&null, 700);
        let high = inheritable_from(&null, 1500);
        let (low_n, high_n) = (low.as_raw_fd().to_string(), high.as_raw_fd().to_string());
        let family = open_family();
        let check = |tag: &str, cmd: &mut Command| {
            let m = spawn(&family, cmd.args(["-c", FDS_SH, "sh", tag, &low_n, &high_n]).name(tag));
            assert_eq!(m.wait().expect("wait"), 0, "{tag}");
            m
        };
        // The usual path (the child shares the table until it has copied the low part of it).
        let plain = check("plain", &mut Command::new("sh"));
        report("sentinel", plain.sentinel().as_raw_fd());
        // A standard stream from 1024 up takes the other path (a full copy, then a close of the
        // high part); what the program inherits must be the same.
        let out = rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 2000).expect("dup stdout to 2000 up");
        check("high_stdout", Command::new("sh").stdout(Stdio::Fd(out)));
        if rustix::process::geteuid().is_root() {
            check("contained", Command::new("sh").contain(true));
        }
        report("done", 1);
        return;
    }
    require_cgroup();
    let mut child = Child::start("descriptors", "fds");
    child.expect_success(CHILD_TIMEOUT);
    let dump = child.dump();
    assert_eq!(child.expect_value("done"), "1", "{dump}");
    let mut tags = vec!["plain", "high_stdout"];
    if rustix::process::geteuid().is_root() {
        tags.push("contained");
    }
    for tag in tags {
        assert_eq!(child.expect_value(&format!("fds_{tag}")), "yes,no", "{tag}: 700 inherited, 1500 not\n{dump}");
    }
    let sentinel: i32 = child.expect_value("sentinel").parse().expect("a number");
    assert!(sentinel >= 1024, "a member's pidfd is kept from 1024 up: {sentinel}\n{dump}");
    child.assert_no_leftovers();
}

// =============================================================================================
// Signals across a spawn: the member starts clean, the caller keeps its own
// =============================================================================================

/// Prints `@signals_<tag>=<SigBlk>,<SigIgn>` of the shell itself, with builtins only (a daemon
/// cannot fork).
const SIGNALS_SH: &str = r#"b=; i=; while read -r k v; do case $k in SigBlk:) b=$v;; SigIgn:) i=$v;; esac; done < /proc/self/status; echo "@signals_$1=$b,$i""#;

/// The calling thread's blocked signals, as `/proc/thread-self/status` shows them.
fn own_blocked_signals() -> String {
    format!("{:016x}", common::status_mask("/proc/thread-self/status", "SigBlk"))
}

/// A spawn blocks every signal in the caller while the child shares its memory (so that no
/// handler of the caller's runs in the child); afterwards the caller's mask must be what it
/// was, and the program must start with nothing blocked and SIGPIPE no longer ignored, on
/// every path: the usual one, a daemon's (with its seccomp filter) and the fork fallback.
#[harness::test]
fn a_spawn_leaves_the_callers_signal_mask_and_gives_the_member_a_clean_one() {
    if let Some(s) = child_scenario() {
        assert_eq!(s, "signals");
        let family = open_family();
        report("caller_before", own_blocked_signals());
        for (tag, daemon, placement) in
            [("plain", false, Placement::Auto), ("daemon", true, Placement::Auto), ("fork", false, Placement::Fork)]
        {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", SIGNALS_SH, "sh", tag]).name(tag).daemon(daemon).placement(placement);
            let m = spawn(&family, &mut cmd);
            assert_eq!(m.wait().expect("wait"), 0, "{tag}");
            report(&format!("caller_after_{tag}"), own_blocked_signals());
        }
        report("done", 1);
        return;
    }
    require_cgroup();
    let mut child = Child::start("signals", "sigs");
    child.expect_success(CHILD_TIMEOUT);
    let dump = child.dump();
    assert_eq!(child.expect_value("done"), "1", "{dump}");
    let before = child.expect_value("caller_before");
    for tag in ["plain", "daemon", "fork"] {
        assert_eq!(child.expect_value(&format!("caller_after_{tag}")), before, "{tag}: the caller's mask\n{dump}");
        let seen = child.expect_value(&format!("signals_{tag}"));
        let (blocked, ignored) = seen.split_once(',').unwrap_or_else(|| panic!("{tag}: {seen}\n{dump}"));
        assert_eq!(u64::from_str_radix(blocked, 16), Ok(0), "{tag}: the member's blocked signals\n{dump}");
        let ignored = u64::from_str_radix(ignored, 16).expect("SigIgn is hex");
        assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "{tag}: SIGPIPE is not ignored in the member\n{dump}");
    }
    child.assert_no_leftovers();
}
