//! The whole CLI as an unprivileged user in a delegated cgroup (cgroupfs backend), and what
//! that user may see and do of another user's family.
//!
//! Each test creates, as root, a system user of its own (`daemonic-t<pid>-<n>`) and a cgroup
//! below the test's own one, chowned to that user the way systemd's `Delegate=yes` does (the
//! directory, `cgroup.procs`, `cgroup.threads`, `cgroup.subtree_control`). Every command of the
//! user starts as root in a shell that moves itself into the delegated cgroup (an unprivileged
//! process may only move between cgroups whose common ancestor's `cgroup.procs` it may write)
//! and then drops to the user with `setpriv`. A guard undoes it all, even when a test fails:
//! `cgroup.kill` of the delegated cgroup, its directories removed, the user deleted.
//!
//! One test also starts the user's own `systemd --user` manager and session bus
//! (`scripts/user-manager start --as USER`) and runs families of transient scopes in it.
//!
//! Needs root (to create the user); without it, or without a writable cgroup v2, `useradd` or
//! `setpriv`, the tests are ignored, with the reason, and fail with `CI=true`.

mod common;
mod harness;

/// The backend the common helpers assume; the one test of the user's own systemd manager passes
/// `--backend systemd --user` itself.
const BACKEND: common::Backend = common::Backend::Cgroupfs;

fn main() -> std::process::ExitCode {
    harness::main()
}

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use serde_json::Value;

const NOT_ALLOWED: &str = "daemonic processes are not allowed to have children";

/// `useradd` and `userdel` lock `/etc/passwd`; the tests of this binary take turns.
static PASSWD: Mutex<()> = Mutex::new(());
static USERS: AtomicU32 = AtomicU32::new(1);

/// A test user with a delegated cgroup, removed with everything in it when dropped.
struct Delegated {
    user: String,
    uid: u32,
    gid: u32,
    /// The delegated cgroup's directory.
    dir: PathBuf,
    /// A directory the user owns, for the scripts' files.
    files: tempfile::TempDir,
    /// Where the binary is for the user (the cargo one, or a copy when that is unreachable).
    bin: String,
    _copy: Option<tempfile::TempDir>,
}

/// Whether every directory above `path` can be searched, and `path` run, by any user.
fn reachable_by_others(path: &Path) -> bool {
    let exec = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
    exec(path) && path.ancestors().skip(1).all(exec)
}

fn tool_exists(name: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| Path::new(d).join(name).exists())
}

/// A test user with a delegated cgroup; ends the test as ignored (failed with `CI=true`) where
/// this host cannot make one.
fn delegated() -> Delegated {
    require_cgroup();
    if !rustix::process::geteuid().is_root() {
        skip("creating a test user and delegating a cgroup to it needs root");
    }
    for tool in ["useradd", "userdel", "setpriv"] {
        if !tool_exists(tool) {
            skip(&format!("`{tool}` is not installed"));
        }
    }
    Delegated::create()
}

impl Delegated {
    fn create() -> Delegated {
        let user = format!("daemonic-t{}-{}", std::process::id(), USERS.fetch_add(1, Ordering::SeqCst));
        {
            let _lock = PASSWD.lock().unwrap_or_else(|e| e.into_inner());
            let out = Command::new("useradd")
                .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", &user])
                .stdin(Stdio::null())
                .output()
                .expect("run useradd");
            assert!(out.status.success(), "useradd {user}: {}", String::from_utf8_lossy(&out.stderr));
        }
        // From here on, the guard removes the user even when a later step fails.
        let mut d = Delegated {
            uid: 0,
            gid: 0,
            dir: PathBuf::new(),
            files: tempdir(),
            bin: bin().to_string(),
            _copy: None,
            user,
        };
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, &d.user]).output().expect("run id");
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("id {flag} {}", d.user))
        };
        d.uid = id("-u");
        d.gid = id("-g");
        let own = cgroup_of("self").expect("the test's own cgroup");
        let parent = cgroup_dir(&own).expect("the test's own cgroup directory");
        d.dir =
            parent.join(format!("daemonic-test-deleg-{}-{}", std::process::id(), d.user.rsplit('-').next().unwrap()));
        std::fs::create_dir(&d.dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.dir.display()));
        // What systemd's Delegate=yes hands over: the directory and these three files.
        for p in [
            d.dir.clone(),
            d.dir.join("cgroup.procs"),
            d.dir.join("cgroup.threads"),
            d.dir.join("cgroup.subtree_control"),
        ] {
            std::os::unix::fs::chown(&p, Some(d.uid), Some(d.gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
        }
        std::os::unix::fs::chown(d.files.path(), Some(d.uid), Some(d.gid)).expect("chown the files directory");
        if !reachable_by_others(Path::new(bin())) {
            let copy = tempdir();
            std::fs::set_permissions(copy.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod copy dir");
            let to = copy.path().join("daemonic");
            std::fs::copy(bin(), &to).expect("copy the binary");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod the copy");
            d.bin = to.to_str().expect("utf-8 temp path").to_string();
            d._copy = Some(copy);
        }
        d
    }

    fn procs(&self) -> String {
        self.dir.join("cgroup.procs").to_str().expect("utf-8 cgroup path").to_string()
    }

    fn files(&self) -> String {
        self.files.path().to_str().expect("utf-8 temp path").to_string()
    }

    /// `daemonic ARGS` as the user, started in the delegated cgroup.
    fn daemonic<I, S>(&self, args: I) -> Daemonic
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        // `daemonic_via` puts the cargo binary first in "$@"; the user runs `self.bin` instead.
        let script = format!(
            "echo $$ > '{}' && shift && exec setpriv --reuid={} --regid={} --clear-groups --inh-caps=-all -- '{}' \"$@\"",
            self.procs(),
            self.uid,
            self.gid,
            self.bin
        );
        let dir = Path::new(&self.bin).parent().expect("binary dir").to_str().expect("utf-8").to_string();
        daemonic_via(&["sh", "-c", &script, "sh"], args)
            .env("PATH", format!("{dir}:/usr/local/bin:/usr/bin:/bin"))
            .env("HOME", "/")
            .env("USER", &self.user)
            // The test's own session (a user manager of root's, in CI) is not the user's.
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("XDG_RUNTIME_DIR")
    }

    /// `sh -c SCRIPT` as the user (not moved into any cgroup): what a plain process of it may do.
    fn sh(&self, script: &str) -> std::process::Output {
        let (uid, gid) = (format!("--reuid={}", self.uid), format!("--regid={}", self.gid));
        Command::new("setpriv")
            .args([&uid, &gid, "--clear-groups", "--inh-caps=-all", "--", "sh", "-c", script])
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .output()
            .expect("run setpriv")
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() && self.dir.exists() {
            // Everything the user started is below this cgroup, which the test created.
            let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
            let events = self.dir.join("cgroup.events");
            let empty = wait_until(Duration::from_secs(5), || {
                std::fs::read_to_string(&events).map_or(true, |e| e.contains("populated 0"))
            });
            if !empty {
                eprintln!("warning: {} still has processes 5 s after cgroup.kill", self.dir.display());
            }
            remove_cgroup_tree(&self.dir);
        }
        let _lock = PASSWD.lock().unwrap_or_else(|e| e.into_inner());
        let ok = wait_until(Duration::from_secs(5), || {
            Command::new("userdel").arg(&self.user).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
        });
        if !ok {
            eprintln!("warning: could not remove the test user {}", self.user);
        }
    }
}

/// Removes the cgroup `dir` and every cgroup below it, deepest first (retrying while the kernel
/// finishes removing exited processes).
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let ok = wait_until(Duration::from_secs(2), || std::fs::remove_dir(dir).is_ok() || !dir.exists());
    if !ok {
        eprintln!("warning: could not remove test cgroup {}", dir.display());
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("ps --json is not JSON: {e}\n{}", out.dump()))
}

/// The family objects of `ps --json` whose name is `name`.
fn families_named<'a>(ps: &'a Value, name: &str) -> Vec<&'a Value> {
    ps["families"].as_array().expect("families array").iter().filter(|f| f["name"] == name).collect()
}

/// The PID of `sleep <marker>`, once it runs (the scripts that start it carry the marker too).
fn wait_sleep(marker: &str) -> u32 {
    let mut pid = None;
    let ok = wait_until(Duration::from_secs(10), || {
        pid = marked_processes(marker).iter().find(|(_, cmd)| cmd.starts_with("sleep ")).map(|(p, _)| *p);
        pid.is_some()
    });
    assert!(ok, "no `sleep {marker}` after 10 s");
    pid.expect("found")
}

/// `daemonic ps --json` (as the user when `user` is given), once `ready` holds for it.
fn ps_json_when(user: Option<&Delegated>, ready: impl Fn(&Value) -> bool) -> (Value, Output) {
    let mut last = None;
    let ok = wait_until(Duration::from_secs(10), || {
        let out = match user {
            Some(u) => u.daemonic(["ps", "--json"]),
            None => daemonic(["ps", "--json"]),
        }
        .timeout(10.0)
        .run();
        out.assert_code(0);
        let value = json(&out);
        let done = ready(&value);
        last = Some((value, out));
        done
    });
    let (value, out) = last.expect("ps ran");
    assert!(ok, "ps --json never showed what was expected\n{}", out.dump());
    (value, out)
}

/// Whether the family named `name` in `ps` lists `pids` as running members.
fn runs(ps: &Value, name: &str, pids: &[u32]) -> bool {
    families_named(ps, name).iter().any(|f| {
        let members = f["members"].as_array().cloned().unwrap_or_default();
        pids.iter().all(|pid| members.iter().any(|m| m["pid"] == *pid && m["state"] == "running"))
    })
}

/// The user's own family: daemons and non-daemons, `is-daemon`, the no-children rule, `ps` and
/// `ps --json` with every detail, the daemon killed when the main member ends, nothing left.
#[harness::test]
fn own_family_works_for_an_unprivileged_user() {
    let u = delegated();
    let name = family_name("unpriv-own");
    let (bg, worker) = (marker(300), marker(300));
    let files = u.files();
    let script = format!(
        r#"daemonic is-daemon; echo main-is-daemon=$?
daemonic spawn --daemon -- daemonic is-daemon; echo daemon-is-daemon=$?
daemonic spawn --daemon -- sh -c "exec daemonic spawn -- echo child-ran 2>{files}/err"; echo refused=$?
daemonic spawn --daemon --name bg -- sleep {bg} &
daemonic spawn --no-daemon --name worker -- sh -c 'sleep {worker} & while [ ! -e {files}/go ]; do sleep 0.02; done; echo done > {files}/worker; kill $!' &
echo started
while [ ! -e {files}/go ]; do sleep 0.02; done"#
    );
    let mut run = u.daemonic(run_sh(&name, &script, &marker(0))).timeout(60.0).spawn();
    run.wait_stdout("started", Duration::from_secs(20));
    let bg_pid = wait_sleep(&bg);
    wait_sleep(&worker);
    let (value, out) = ps_json_when(Some(&u), |ps| {
        families_named(ps, &name).iter().any(|f| {
            let members = f["members"].as_array().cloned().unwrap_or_default();
            ["main", "bg", "worker"].iter().all(|n| members.iter().any(|m| m["name"] == *n && m["state"] == "running"))
        })
    });

    // The family is the user's own: created below the delegated cgroup, owned by the user.
    let dirs = family_dirs(&name);
    assert_eq!(dirs.len(), 1, "one family dir of {name}: {dirs:?}");
    assert!(dirs[0].starts_with(&u.dir), "{} is not below the delegated cgroup {}", dirs[0].display(), u.dir.display());
    assert_eq!(std::fs::metadata(&dirs[0]).expect("stat family dir").uid(), u.uid, "the family dir's owner");

    let ps = u.daemonic(["ps"]).timeout(10.0).run();
    ps.assert_code(0);
    let own: Vec<&str> = ps.lines().into_iter().filter(|l| l.starts_with(&format!("{name}-"))).collect();
    let bg_line = own.iter().find(|l| l.contains(&bg_pid.to_string())).unwrap_or_else(|| panic!("{}", ps.dump()));
    assert!(bg_line.contains("true") && bg_line.contains("running") && bg_line.contains(".daemon"), "{}", ps.dump());
    for member in ["main", "bg", "worker"] {
        assert!(own.iter().any(|l| l.split_whitespace().nth(1) == Some(member)), "{member} in\n{}", ps.dump());
    }

    let fams = families_named(&value, &name);
    assert_eq!(fams.len(), 1, "{}", out.dump());
    assert_eq!(fams[0]["owner"], u.uid, "{}", out.dump());
    let members = fams[0]["members"].as_array().expect("members");
    let bg_member = members.iter().find(|m| m["name"] == "bg").unwrap_or_else(|| panic!("{}", out.dump()));
    assert_eq!(bg_member["pid"], bg_pid, "{}", out.dump());
    assert_eq!(bg_member["daemon"], true);
    assert_eq!(bg_member["state"], "running");
    assert!(bg_member["cgroup"].as_str().is_some_and(|c| c.contains(".daemon")), "{}", out.dump());

    std::fs::write(u.files.path().join("go"), "").expect("write go");
    let out = run.wait();
    out.assert_code(0);
    let lines = out.lines();
    assert!(lines.contains(&"main-is-daemon=1"), "{}", out.dump());
    assert!(lines.contains(&"true") && lines.contains(&"daemon-is-daemon=0"), "{}", out.dump());
    assert!(lines.contains(&"refused=1"), "a daemon's spawn must exit 1\n{}", out.dump());
    let err = std::fs::read_to_string(u.files.path().join("err")).unwrap_or_default();
    assert_eq!(err.trim(), NOT_ALLOWED, "stderr of spawn inside a daemon\n{}", out.dump());
    assert!(!out.stdout.contains("child-ran"), "{}", out.dump());
    assert_eq!(std::fs::read_to_string(u.files.path().join("worker")).unwrap_or_default().trim(), "done");
    // The daemon was running until the end and is gone with the family (C4, C10).
    assert_no_leftovers(&name, &[&bg, &worker]);
    let left: Vec<_> = std::fs::read_dir(&u.dir).expect("read deleg").flatten().filter(|e| e.path().is_dir()).collect();
    assert!(left.is_empty(), "cgroups left in the delegated cgroup: {left:?}");
}

/// `daemonic kill` of the user's own family ends it all: `run` exits 137, nothing is left.
#[harness::test]
fn unprivileged_user_kills_its_own_family() {
    let u = delegated();
    let name = family_name("unpriv-kill");
    let (daemon, main) = (marker(300), marker(300));
    let script = format!("daemonic spawn --daemon -- sleep {daemon} & exec sleep {main}");
    let run = u.daemonic(run_sh(&name, &script, &marker(0))).timeout(60.0).spawn();
    wait_sleep(&daemon);
    wait_sleep(&main);
    let out = u.daemonic(["kill", &name]).timeout(20.0).run();
    out.assert_code(0);
    assert!(out.stderr.contains("killed family"), "{}", out.dump());
    let out = run.wait();
    out.assert_code(137);
    assert_no_leftovers(&name, &[&daemon, &main]);
}

/// `daemonic doctor` as the user, inside the delegated cgroup: the default backend can work.
#[harness::test]
fn doctor_passes_for_an_unprivileged_user_in_a_delegated_cgroup() {
    let u = delegated();
    let out = u.daemonic(["doctor"]).timeout(30.0).run();
    assert_eq!(out.code, Some(0), "doctor as uid {} in {}\n{}", u.uid, u.dir.display(), out.dump());
    let line = |check: &str| {
        out.lines()
            .into_iter()
            .find(|l| l.split_whitespace().nth(1) == Some(check))
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert!(line("base").starts_with("ok") && line("base").contains(&u.dir.display().to_string()), "{}", out.dump());
    let delegation = line("delegation:");
    assert!(delegation.starts_with("ok") && delegation.contains(&format!("uid {}", u.uid)), "{}", out.dump());
    for check in ["clone3(CLONE_INTO_CGROUP):", "cgroup.kill:", "cgroup.events:", "seccomp:"] {
        assert!(line(check).starts_with("ok"), "{check}\n{}", out.dump());
    }
    assert!(out.stdout.contains("`daemonic run` can start families"), "{}", out.dump());
}

/// Another user's family (root's here): the user cannot kill it with daemonic (a clear
/// one-line error, exit 1, the family intact), cannot signal its members or write its
/// `cgroup.kill` (the kernel refuses), and sees it in `ps` only as a line saying whose it is.
#[harness::test]
fn another_users_family_is_hidden_and_out_of_reach() {
    let u = delegated();
    let rootfam = family_name("rootfam");
    let (r_daemon, r_main) = (marker(300), marker(300));
    let script = format!("daemonic spawn --daemon -- sleep {r_daemon} & exec sleep {r_main}");
    let root_run = daemonic(run_sh(&rootfam, &script, &marker(0))).timeout(120.0).spawn();
    let r_daemon_pid = wait_sleep(&r_daemon);
    let r_main_pid = wait_sleep(&r_main);
    let userfam = family_name("userfam");
    let u_main = marker(300);
    let user_run = u.daemonic(["run", "--name", &userfam, "--", "sleep", &u_main]).timeout(120.0).spawn();
    let u_main_pid = wait_sleep(&u_main);

    // Root sees both families with every detail, and whose they are.
    let (value, out) =
        ps_json_when(None, |ps| runs(ps, &rootfam, &[r_main_pid, r_daemon_pid]) && runs(ps, &userfam, &[u_main_pid]));
    let root_fam = families_named(&value, &rootfam);
    assert_eq!(root_fam.len(), 1, "{}", out.dump());
    let id = root_fam[0]["id"].as_str().expect("id").to_string();
    let cgroup = root_fam[0]["cgroup"].as_str().expect("cgroup").to_string();
    assert_eq!(root_fam[0]["owner"], 0);
    assert!(out.stdout.contains(&format!("\"pid\": {r_main_pid},")), "{}", out.dump());
    let user_fam = families_named(&value, &userfam);
    assert_eq!(user_fam.len(), 1, "{}", out.dump());
    assert_eq!(user_fam[0]["owner"], u.uid);
    assert!(out.stdout.contains(&format!("\"pid\": {u_main_pid},")), "{}", out.dump());

    // daemonic kill, by name and by id: refused before anything is written, one clear line.
    for key in [rootfam.as_str(), id.as_str()] {
        let out = u.daemonic(["kill", key]).timeout(20.0).run();
        out.assert_code(1);
        let errors = out.error_lines();
        assert_eq!(errors.len(), 1, "{}", out.dump());
        assert_eq!(out.stderr.lines().count(), 1, "one line only\n{}", out.dump());
        let want = format!("error: cannot kill family {id}: it belongs to uid 0 (you are uid {})", u.uid);
        assert_eq!(errors[0], want, "{}", out.dump());
    }
    // The kernel's own refusals: a signal to a member, a write to the family's cgroup.kill.
    let out = u.sh(&format!("kill -TERM {r_main_pid}"));
    assert!(!out.status.success(), "kill -TERM of root's member as uid {} succeeded", u.uid);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not permitted"), "{out:?}");
    let kill_file = cgroup_dir(&cgroup).expect("family dir").join("cgroup.kill");
    let out = u.sh(&format!("echo 1 > '{}'", kill_file.display()));
    assert!(!out.status.success(), "write to {} as uid {} succeeded", kill_file.display(), u.uid);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
    assert!(pid_alive_with(r_main_pid, &r_main) && pid_alive_with(r_daemon_pid, &r_daemon), "root's family was hurt");
    assert_eq!(family_dirs(&rootfam).len(), 1, "root's family dir must remain");

    // ps as the user: its own family in full, root's as one line that says whose it is.
    let out = u.daemonic(["ps"]).timeout(10.0).run();
    out.assert_code(0);
    let lines: Vec<&str> = out.lines().into_iter().filter(|l| l.starts_with(&id)).collect();
    assert_eq!(lines.len(), 1, "root's family is one line\n{}", out.dump());
    assert!(lines[0].contains("owned by uid 0; details hidden"), "{}", out.dump());
    for pid in [r_main_pid, r_daemon_pid] {
        assert!(!has_number(lines[0], pid), "pid {pid} shown in {:?}\n{}", lines[0], out.dump());
    }
    for secret in [cgroup.as_str(), "main-1.member"] {
        assert!(!lines[0].contains(secret), "{secret} shown in {:?}\n{}", lines[0], out.dump());
    }
    assert!(
        out.lines().iter().any(|l| l.starts_with(&format!("{userfam}-")) && has_number(l, u_main_pid)),
        "the user's own family in full\n{}",
        out.dump()
    );
    let out = u.daemonic(["ps", "--json"]).timeout(10.0).run();
    out.assert_code(0);
    let value = json(&out);
    let hidden = families_named(&value, &rootfam);
    assert_eq!(hidden.len(), 1, "{}", out.dump());
    assert_eq!(hidden[0]["id"], id.as_str());
    assert_eq!(hidden[0]["owner"], 0);
    assert_eq!(hidden[0]["hidden"], true);
    assert_eq!(hidden[0]["members"], Value::Array(vec![]), "{}", out.dump());
    assert_eq!(hidden[0]["cgroup"], Value::Null, "{}", out.dump());
    assert_eq!(hidden[0]["guardian"], Value::Null, "{}", out.dump());
    // Whole numbers only: a PID's digits may begin another number (a start time).
    for pid in [r_main_pid, r_daemon_pid] {
        assert!(!has_number(&out.stdout, pid), "root's pid {pid} shown\n{}", out.dump());
    }
    assert!(!out.stdout.contains(&cgroup), "root's cgroup {cgroup} shown\n{}", out.dump());
    let mine = families_named(&value, &userfam);
    assert_eq!(mine.len(), 1, "{}", out.dump());
    assert_eq!(mine[0]["hidden"], false);
    assert_eq!(mine[0]["members"][0]["pid"], u_main_pid, "{}", out.dump());

    // Each ends its own.
    let out = u.daemonic(["kill", &userfam]).timeout(20.0).run();
    out.assert_code(0);
    user_run.wait().assert_code(137);
    assert_no_leftovers(&userfam, &[&u_main]);
    let out = daemonic(["kill", &id]).timeout(20.0).run();
    out.assert_code(0);
    root_run.wait().assert_code(137);
    assert_no_leftovers(&rootfam, &[&r_daemon, &r_main]);
}

/// The user's own `systemd --user` manager and session bus (`scripts/user-manager start --as`),
/// stopped by PID when dropped.
struct UserManager {
    runtime_dir: String,
    bus: String,
}

impl UserManager {
    fn start(u: &Delegated) -> UserManager {
        let systemd = ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"].iter().any(|p| Path::new(p).exists());
        for (ok, what) in [
            (systemd, "systemd (/lib/systemd/systemd)"),
            (tool_exists("dbus-daemon"), "dbus-daemon"),
            (tool_exists("systemd-run"), "systemd-run"),
            (tool_exists("systemctl"), "systemctl"),
            (tool_exists("busctl"), "busctl"),
        ] {
            if !ok {
                skip(&format!("{what} is not installed (needed for the user's own systemd manager)"));
            }
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/user-manager");
        let out = Command::new(script)
            .args(["start", "--as", &u.user])
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/user-manager start");
        let text = String::from_utf8_lossy(&out.stdout);
        let var = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .map(str::to_string)
                .unwrap_or_default()
        };
        let m = UserManager { runtime_dir: var("XDG_RUNTIME_DIR"), bus: var("DBUS_SESSION_BUS_ADDRESS") };
        assert!(
            out.status.success() && !m.runtime_dir.is_empty() && !m.bus.is_empty(),
            "scripts/user-manager start --as {} failed:\n{text}\n{}",
            u.user,
            String::from_utf8_lossy(&out.stderr)
        );
        m
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        if self.runtime_dir.is_empty() {
            return;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/user-manager");
        let out = Command::new(script).args(["stop", &self.runtime_dir]).stdin(Stdio::null()).output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("warning: scripts/user-manager stop {} failed: {out:?}", self.runtime_dir);
        }
    }
}

impl Delegated {
    /// `daemonic ARGS` as the user, as a transient `Delegate=yes` service of its own manager
    /// (`systemd-run --user --wait --pipe`): the way a user starts something inside the tree its
    /// manager owns, where the manager may move the processes of new scopes.
    fn daemonic_service<I, S>(&self, m: &UserManager, args: I) -> Daemonic
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let dir = Path::new(&self.bin).parent().expect("binary dir").to_str().expect("utf-8").to_string();
        let script = format!(
            "shift && exec setpriv --reuid={} --regid={} --clear-groups --inh-caps=-all -- env HOME=/ \
             XDG_RUNTIME_DIR='{}' DBUS_SESSION_BUS_ADDRESS='{}' systemd-run --user --wait --pipe --quiet \
             -p Delegate=yes -E PATH='{dir}:/usr/bin:/bin' -- '{}' \"$@\"",
            self.uid, self.gid, m.runtime_dir, m.bus, self.bin
        );
        daemonic_via(&["sh", "-c", &script, "sh"], args)
    }

    /// `daemonic ARGS` as the user in its delegated cgroup, with its manager's bus.
    fn daemonic_with_bus<I, S>(&self, m: &UserManager, args: I) -> Daemonic
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.daemonic(args).env("XDG_RUNTIME_DIR", &m.runtime_dir).env("DBUS_SESSION_BUS_ADDRESS", &m.bus)
    }
}

/// The systemd backend with the user's own manager: a family of transient scopes owned by the
/// user (its daemon killed when the main member ends, the no-children rule), listed in full to
/// the user and to root, killed by the user, nothing left (no unit, no cgroup, no process).
#[harness::test]
fn users_own_systemd_manager_runs_and_kills_its_families() {
    let u = delegated();
    let m = UserManager::start(&u);
    let files = u.files();
    let name = family_name("unpriv-sd");
    let bg = marker(300);
    let script = format!(
        r#"daemonic spawn --daemon --name bg -- sleep {bg} &
daemonic spawn --daemon -- daemonic is-daemon; echo daemon-is-daemon=$?
daemonic spawn --daemon -- sh -c "exec daemonic spawn -- echo child-ran"; echo refused=$?
while [ ! -e {files}/go ]; do sleep 0.02; done"#
    );
    let args = |name: &str, script: &str| -> Vec<String> {
        let mut a = run_sh(name, script, &marker(0));
        a.splice(1..1, ["--backend".to_string(), "systemd".into(), "--user".into()]);
        a
    };
    let run = u.daemonic_service(&m, args(&name, &script)).timeout(60.0).spawn();
    let bg_pid = wait_sleep(&bg);
    let (value, out) = ps_json_when(Some(&u), |ps| runs(ps, &name, &[bg_pid]));
    let fam = families_named(&value, &name)[0];
    assert_eq!(fam["owner"], u.uid, "{}", out.dump());
    assert_eq!(fam["hidden"], false);
    let bg_member = fam["members"].as_array().expect("members").iter().find(|m| m["pid"] == bg_pid).cloned();
    let unit = bg_member.as_ref().and_then(|m| m["unit"].as_str()).unwrap_or_default().to_string();
    assert!(unit.ends_with(".daemon.scope"), "the daemon's scope in\n{}", out.dump());
    let (root_view, out) = ps_json_when(None, |ps| runs(ps, &name, &[bg_pid]));
    assert_eq!(families_named(&root_view, &name)[0]["owner"], u.uid, "root sees whose it is\n{}", out.dump());
    let units = u.sh(&format!(
        "XDG_RUNTIME_DIR='{}' DBUS_SESSION_BUS_ADDRESS='{}' systemctl --user list-units --plain --no-legend '{unit}'",
        m.runtime_dir, m.bus
    ));
    assert!(String::from_utf8_lossy(&units.stdout).contains(&unit), "{unit} in the user's manager: {units:?}");

    std::fs::write(u.files.path().join("go"), "").expect("write go");
    let out = run.wait();
    out.assert_code(0);
    let lines = out.lines();
    assert!(lines.contains(&"true") && lines.contains(&"daemon-is-daemon=0"), "{}", out.dump());
    assert!(lines.contains(&"refused=1") && out.stderr.contains(NOT_ALLOWED), "{}", out.dump());
    assert!(!out.stdout.contains("child-ran"), "{}", out.dump());
    assert_no_leftovers(&name, &[&bg]);

    // From a cgroup outside the manager's tree (the delegated one), the manager cannot move the
    // scope's process: a clear error that says where to run, exit 1, nothing left.
    let name = family_name("unpriv-sdout");
    let out = u.daemonic_with_bus(&m, ["run", "--backend", "systemd", "--user", "--name", &name, "--", "true"]).run();
    out.assert_code(1);
    let errors = out.error_lines();
    assert!(
        errors.len() == 1
            && errors[0].contains("result \"failed\"")
            && errors[0].contains("systemd-run --user -p Delegate=yes"),
        "{}",
        out.dump()
    );
    assert_no_leftovers(&name, &[]);

    // daemonic kill by the user, with its bus: the units are stopped, run exits 137.
    let name = family_name("unpriv-sdkill");
    let (daemon, main) = (marker(300), marker(300));
    let script = format!("daemonic spawn --daemon -- sleep {daemon} & exec sleep {main}");
    let run = u.daemonic_service(&m, args(&name, &script)).timeout(60.0).spawn();
    let (d_pid, m_pid) = (wait_sleep(&daemon), wait_sleep(&main));
    ps_json_when(Some(&u), |ps| runs(ps, &name, &[d_pid, m_pid]));
    let out = u.daemonic_with_bus(&m, ["kill", &name]).timeout(20.0).run();
    out.assert_code(0);
    run.wait().assert_code(137);
    assert_no_leftovers(&name, &[&daemon, &main]);
    let units = u.sh(&format!(
        "XDG_RUNTIME_DIR='{}' DBUS_SESSION_BUS_ADDRESS='{}' systemctl --user list-units --all --plain --no-legend 'daemonic-*'",
        m.runtime_dir, m.bus
    ));
    let left = String::from_utf8_lossy(&units.stdout).to_string();
    assert!(!left.contains("unpriv-sd"), "units left in the user's manager:\n{left}");
}

/// Whether `text` has `n` as a whole number (not as part of a longer run of digits).
fn has_number(text: &str, n: u32) -> bool {
    let n = n.to_string();
    text.split(|c: char| !c.is_ascii_digit()).any(|t| t == n)
}
