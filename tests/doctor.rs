//! `daemonic doctor` on the real host: its lines name what `/proc/self/mountinfo` and
//! `/proc/self/cgroup` say, its exit code follows the default backend, and its temporary cgroup
//! never remains.
//!
//! Self-contained (no shared helpers): each test runs the built binary with a deadline and
//! only ever kills the process it started.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod harness;

fn main() -> std::process::ExitCode {
    harness::main()
}

/// The environment variables that change what `daemonic run` would do; cleared for a run of
/// the defaults.
const SETTINGS: [&str; 5] =
    ["DAEMONIC_BACKEND", "DAEMONIC_CGROUP", "DAEMONIC_BUS", "DAEMONIC_PLACEMENT", "DAEMONIC_LOG"];

/// What a run of `daemonic doctor` printed and how it ended.
struct Report {
    pid: u32,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Report {
    /// The line of `topic`, e.g. `cgroup2 mount`, without its status word.
    fn line(&self, topic: &str) -> (&str, &str) {
        let wanted = format!("{topic}: ");
        self.stdout
            .lines()
            .find_map(|l| {
                let (status, rest) = l.split_once(' ')?;
                (!status.is_empty() && rest.trim_start().starts_with(&wanted)).then_some((status, l))
            })
            .unwrap_or_else(|| panic!("no {topic:?} line\n{}", self.dump()))
    }

    /// The `fix:` line right after the line of `topic`.
    fn fix(&self, topic: &str) -> &str {
        let (_, line) = self.line(topic);
        let mut lines = self.stdout.lines().skip_while(|l| *l != line).skip(1);
        let next = lines.next().unwrap_or_default();
        next.trim_start()
            .strip_prefix("fix: ")
            .unwrap_or_else(|| panic!("no fix: line after {line:?}\n{}", self.dump()))
    }

    fn dump(&self) -> String {
        format!("exit code: {:?}\n--- stdout ---\n{}--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs `prefix… daemonic doctor` with the settings cleared and `env` set, for at most 30 s.
fn doctor(prefix: &[&str], env: &[(&str, &str)]) -> Report {
    let bin = env!("CARGO_BIN_EXE_daemonic");
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.arg("doctor").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for k in SETTINGS {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("start daemonic doctor");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for daemonic doctor") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("daemonic doctor (pid {}) ran for more than 30 s", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().expect("piped").read_to_string(&mut stdout).expect("read stdout");
    child.stderr.take().expect("piped").read_to_string(&mut stderr).expect("read stderr");
    Report { pid: child.id(), code: status.code(), stdout, stderr }
}

/// The cgroup2 mount point and whether cgroup v1 hierarchies are mounted too, read here
/// independently of daemonic.
fn mounts() -> (Option<PathBuf>, bool) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    let mut cgroup2 = None;
    let mut v1 = false;
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let mount = left.split_whitespace().nth(4).unwrap_or_default();
        match right.split_whitespace().next() {
            Some("cgroup2") if cgroup2.is_none() => cgroup2 = Some(PathBuf::from(mount)),
            Some("cgroup") => v1 = true,
            _ => {}
        }
    }
    (cgroup2, v1)
}

/// This process's own cgroup directory.
fn own_cgroup(mount: &Path) -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
    let rel = text.lines().find_map(|l| l.strip_prefix("0::")).expect("a 0:: line in /proc/self/cgroup");
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() { mount.to_path_buf() } else { mount.join(rel) }
}

/// Whether this process can create a cgroup under its own, as the tests of the other crates check.
fn own_cgroup_writable(mount: &Path) -> Result<(), String> {
    let probe = own_cgroup(mount).join(format!("daemonic-test-doctor-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).map_err(|e| format!("mkdir {}: {e}", probe.display()))?;
    std::fs::remove_dir(&probe).map_err(|e| format!("rmdir {}: {e}", probe.display()))
}

/// Every cgroup directory below `dir` whose name starts with `prefix`.
fn dirs_named(dir: &Path, prefix: &str, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                found.push(path.clone());
            }
            dirs_named(&path, prefix, found);
        }
    }
}

/// Every line is a status word and a topic, or a `fix:` line right under a `missing` or
/// `warning` line (and only there), or the blank line and the `result:` line at the end.
fn assert_well_formed(r: &Report) {
    let mut previous = "";
    for line in r.stdout.lines() {
        if line.is_empty() || line.starts_with("result: ") {
            continue;
        }
        let fix_expected = previous == "missing" || previous == "warning";
        if let Some(fix) = line.strip_prefix("         fix: ") {
            assert!(fix_expected && !fix.is_empty(), "a fix: line where none belongs: {line:?}\n{}", r.dump());
            previous = "fix";
            continue;
        }
        assert!(!fix_expected, "no fix: line under a {previous} line, before {line:?}\n{}", r.dump());
        let status = line.split_whitespace().next().unwrap_or_default();
        assert!(["ok", "missing", "warning", "info"].contains(&status), "bad status in {line:?}\n{}", r.dump());
        assert!(line[8..].starts_with(' ') && line[9..].contains(": "), "bad line {line:?}\n{}", r.dump());
        previous = status;
    }
    assert!(!matches!(previous, "missing" | "warning"), "the last check has no fix: line\n{}", r.dump());
    let last = r.stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("result: the default backend"), "no result line at the end\n{}", r.dump());
}

#[harness::test]
fn reports_this_host_line_by_line_and_leaves_nothing() {
    let (Some(mount), v1) = mounts() else {
        harness::skip("no cgroup2 mount");
    };
    let r = doctor(&[], &[]);
    assert_well_formed(&r);

    let (status, line) = r.line("cgroup2 mount");
    assert_eq!(status, "ok", "{}", r.dump());
    assert!(line.contains(&format!(": {} (found in /proc/self/mountinfo)", mount.display())), "{}", r.dump());

    let mode = if v1 { "hybrid" } else { "unified" };
    let (_, line) = r.line("hierarchy");
    assert!(line.contains(&format!("hierarchy: {mode}: ")), "expected {mode}\n{}", r.dump());
    if line.contains("hierarchy: hybrid") {
        assert_ne!(mount, Path::new("/sys/fs/cgroup"), "hybrid with cgroup2 at /sys/fs/cgroup\n{}", r.dump());
    }
    let own = own_cgroup(&mount);
    assert!(r.line("own cgroup").1.ends_with(&format!("the directory {}", own.display())), "{}", r.dump());

    if let Err(why) = own_cgroup_writable(&mount) {
        harness::skip(&why);
    }
    assert_eq!(r.code, Some(0), "{}", r.dump());
    assert!(!r.stdout.contains("\nmissing "), "{}", r.dump());
    assert!(r.line("base cgroup").1.contains(&format!("{} (this process's own cgroup) is writable", own.display())));
    for topic in
        ["base cgroup", "delegation", "pidfd", "cgroup.kill", "cgroup.events", "user.* xattrs on cgroups", "seccomp"]
    {
        assert_eq!(r.line(topic).0, "ok", "{topic}\n{}", r.dump());
    }
    // The probes ran in a temporary cgroup under the base, named after the doctor's PID...
    let temp = own.join(format!("daemonic-doctor-{}", r.pid));
    assert!(r.line("cgroup.kill").1.contains(&temp.display().to_string()), "{}", r.dump());
    // ... which is gone, with anything else of that run.
    let mut left = Vec::new();
    dirs_named(&mount, &format!("daemonic-doctor-{}", r.pid), &mut left);
    assert!(left.is_empty() && !temp.exists(), "left behind: {left:?}\n{}", r.dump());
}

#[harness::test]
fn a_missing_base_cgroup_is_missing_with_a_fix_and_exit_1() {
    let (Some(mount), _) = mounts() else {
        harness::skip("no cgroup2 mount");
    };
    let name = format!("daemonic-test-no-such-cgroup-{}", std::process::id());
    let r = doctor(&[], &[("DAEMONIC_CGROUP", &name)]);
    assert_well_formed(&r);
    assert_eq!(r.code, Some(1), "{}", r.dump());
    let (status, line) = r.line("base cgroup");
    assert_eq!(status, "missing", "{}", r.dump());
    let path = mount.join(&name);
    assert!(
        line.contains(&format!("{} (from DAEMONIC_CGROUP) is not a cgroup v2 directory", path.display())),
        "{}",
        r.dump()
    );
    assert!(r.fix("base cgroup").contains("DAEMONIC_CGROUP"), "{}", r.dump());
    // A given base makes auto take cgroupfs, as `daemonic run` does.
    assert!(r.line("default backend").1.contains("auto → cgroupfs, as DAEMONIC_CGROUP gives a base"), "{}", r.dump());
    // The kernel probes that need a cgroup say why they did not run; they are not what fails.
    assert_eq!(r.line("clone3(CLONE_INTO_CGROUP)").0, "warning", "{}", r.dump());
    assert!(r.stdout.contains("result: the default backend (auto → cgroupfs"), "{}", r.dump());
    assert!(r.stdout.contains("cannot work here: 1 check is missing"), "{}", r.dump());
    assert!(!path.exists());
}

#[harness::test]
fn an_unwritable_base_cgroup_says_how_to_delegate() {
    let (Some(mount), _) = mounts() else { harness::skip("no cgroup2 mount") };
    if !rustix::process::geteuid().is_root() {
        harness::skip("needs root to run the binary as uid 65534");
    }
    let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"].into_iter().find(|p| Path::new(p).exists()) else {
        harness::skip("setpriv is not installed");
    };
    let nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"];
    let r = doctor(&nobody, &[("DAEMONIC_BACKEND", "cgroupfs")]);
    assert_well_formed(&r);
    assert_eq!(r.code, Some(1), "{}", r.dump());
    let own = own_cgroup(&mount);
    let (status, line) = r.line("base cgroup");
    assert_eq!(status, "missing", "{}", r.dump());
    assert!(line.contains(&format!("{} (this process's own cgroup) is not writable for uid 65534", own.display())));
    let (status, line) = r.line("delegation");
    assert_eq!(status, "missing", "{}", r.dump());
    assert!(line.contains("not to uid 65534: not delegated"), "{}", r.dump());
    assert!(r.fix("delegation").contains("systemd-run --user -p Delegate=yes --scope"), "{}", r.dump());
    assert!(r.line("default backend").1.contains("cgroupfs, as DAEMONIC_BACKEND asks"), "{}", r.dump());
}

#[harness::test]
fn an_invalid_backend_setting_is_missing() {
    let r = doctor(&[], &[("DAEMONIC_BACKEND", "docker")]);
    assert_well_formed(&r);
    assert_eq!(r.code, Some(1), "{}", r.dump());
    let (status, line) = r.line("default backend");
    assert_eq!(status, "missing", "{}", r.dump());
    assert!(line.contains("invalid backend \"docker\""), "{}", r.dump());
    assert!(r.fix("default backend").contains("auto, cgroupfs or systemd"), "{}", r.dump());
}

/// On the manager under test (the session bus's user manager, e.g. `eval "$(scripts/user-manager
/// start)"`, or the system manager with `DAEMONIC_TEST_BUS=system`), the systemd backend is
/// reported to work, with the manager's version.
#[harness::test]
fn the_manager_under_test_answers() {
    let system = std::env::var("DAEMONIC_TEST_BUS").as_deref() == Ok("system");
    let (bus, name, bus_name) = match system {
        true => (daemonic::Bus::System, "system", "system bus"),
        false => (daemonic::Bus::User, "user", "session bus"),
    };
    match daemonic::__internal::systemd::Client::connect(bus).map(|c| c.version()) {
        Ok(Some(_)) => {}
        Ok(None) => harness::skip(&format!("the systemd {name} manager does not answer")),
        Err(e) => harness::skip(&format!("no systemd {name} manager answers ({e})")),
    }
    let r = doctor(&[], &[("DAEMONIC_BACKEND", "systemd"), ("DAEMONIC_BUS", name)]);
    assert_well_formed(&r);
    let (status, line) = r.line(&format!("systemd {name} manager"));
    assert_eq!(status, "ok", "{}", r.dump());
    assert!(line.contains(&format!("answers on the {bus_name} (systemd ")), "{}", r.dump());
    assert!(line.contains(&format!("--backend systemd --{name} works")), "{}", r.dump());
    assert!(r.line("default backend").1.contains(&format!("systemd on the {name} manager")), "{}", r.dump());
    assert!(r.line("default backend").1.contains("chosen by DAEMONIC_BUS"), "{}", r.dump());
    assert_eq!(r.code, Some(0), "{}", r.dump());
}

#[harness::test]
fn help_explains_the_exit_code() {
    let out = Command::new(env!("CARGO_BIN_EXE_daemonic")).args(["doctor", "--help"]).output().expect("run --help");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("what is missing and how to fix it") && text.contains("1 when not"), "{text}");
}
