//! The re-executed scenario children of the library tests (`tests/library.rs`,
//! `tests/library_systemd.rs`).
//!
//! Creating a [`daemonic::Family`] moves the calling *process* into a cgroup, and the test
//! harness runs tests as threads of one process. So every scenario that creates a family runs in
//! a child process: the test binary re-executed with `--exact <test> --nocapture
//! --test-threads=1` and `DAEMONIC_TEST_CHILD=<scenario>` in its environment. The test function
//! checks [`child_scenario`] first and, when it is set, runs the scenario body instead of the
//! parent side. The parent starts the child with [`Child::start`], reads the `@key=value` lines
//! the child prints with [`report`], and checks the cgroup tree and the process table.
//!
//! - [`super::require_cgroup`]: skip loudly (locally) or fail (in CI) without a writable cgroup v2.
//! - [`Child::assert_no_leftovers`]: C10, no family directory and no marked process remains.
//! - Markers: every child gets a unique family name and a unique marker string; python commands
//!   carry the marker in their `-c` text and re-executed test binaries in a `--skip` argument,
//!   so `/proc/*/cmdline` scans find exactly one test's processes. Nothing is killed by name.

use std::ffi::OsString;
use std::fmt::Display;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::{ENV_PYTHON, now_ns, python, unique, wait_until};

/// Environment variable naming the scenario a re-executed test binary runs.
pub const ENV_SCENARIO: &str = "DAEMONIC_TEST_CHILD";
/// Environment variable with the child's unique family name.
pub const ENV_FAMILY: &str = "DAEMONIC_TEST_FAMILY";
/// Environment variable with the child's unique marker string.
pub const ENV_MARKER: &str = "DAEMONIC_TEST_MARKER";
/// Environment variable with a scratch directory the parent owns (and removes).
pub const ENV_TMP: &str = "DAEMONIC_TEST_TMP";
/// Environment variable with the name of the test whose scenario the child runs.
pub const ENV_TEST: &str = "DAEMONIC_TEST_NAME";

/// Names of the subdirectories of `dir`, sorted (empty when `dir` is gone).
pub fn subdir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// The child side of a re-executed scenario
// ---------------------------------------------------------------------------------------------

/// The scenario this process runs when it is a re-executed child, else `None`.
pub fn child_scenario() -> Option<String> {
    std::env::var(ENV_SCENARIO).ok().filter(|s| !s.is_empty())
}

fn child_env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("a scenario child needs {key} in its environment"))
}

/// The child's unique family name.
pub fn child_family() -> String {
    child_env(ENV_FAMILY)
}

/// The child's unique marker.
pub fn child_marker() -> String {
    child_env(ENV_MARKER)
}

/// The child's scratch directory (owned by the parent test).
pub fn child_tmp() -> PathBuf {
    PathBuf::from(child_env(ENV_TMP))
}

/// The name of the test this child runs (for re-executing it once more as a member).
pub fn child_test() -> String {
    child_env(ENV_TEST)
}

/// Prints `@key=value` for the parent to read (stdout is a file; lines are flushed at once).
pub fn report(key: &str, value: impl Display) {
    println!("@{key}={value}");
}

/// Arguments that make the test binary run exactly `test` and carry `marker` (as a `--skip`
/// filter that matches no test) so that the process can be found by its command line.
pub fn harness_args(test: &str, marker: &str) -> Vec<String> {
    ["--exact", test, "--nocapture", "--test-threads=1", "--include-ignored", "--skip", marker]
        .map(str::to_string)
        .to_vec()
}

/// A daemonic command that re-executes this test binary to run `scenario` of this test as a
/// member (e.g. a daemon that tries to spawn through the library). It inherits this process's
/// environment, the family name, marker and scratch directory included.
pub fn self_command(scenario: &str) -> daemonic::Command {
    let exe = std::env::current_exe().expect("the path of the test binary");
    let mut cmd = daemonic::Command::new(exe);
    cmd.args(harness_args(&child_test(), &child_marker())).env(ENV_SCENARIO, scenario);
    cmd
}

// ---------------------------------------------------------------------------------------------
// The parent side
// ---------------------------------------------------------------------------------------------

/// A re-executed copy of the test binary running one scenario, with its stdout and stderr in
/// files (a pipe would be held open by daemons and guardians). Killed and reaped on drop if it
/// is still running: it is our own child, so signalling its PID is safe.
pub struct Child {
    child: std::process::Child,
    /// The unique family name the child uses.
    pub family: String,
    /// The unique marker of the child's processes.
    pub marker: String,
    /// Scratch directory shared with the child (removed on drop).
    pub tmp: tempfile::TempDir,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    /// When the child was started.
    pub started: Instant,
    status: Option<ExitStatus>,
    /// When the parent saw the child end (`Instant`, and epoch nanoseconds).
    pub ended: Option<(Instant, u128)>,
    what: String,
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl Child {
    /// Starts `scenario` of the calling test.
    pub fn start(scenario: &str, tag: &str) -> Child {
        let test = crate::harness::current_test();
        Child::start_test(&test, scenario, tag, &[])
    }

    /// Starts `scenario` of `test` with extra environment variables.
    pub fn start_test(test: &str, scenario: &str, tag: &str, envs: &[(&str, &str)]) -> Child {
        Child::start_via(&[], test, scenario, tag, envs)
    }

    /// Starts `scenario` of `test` through a launcher: `launcher` (a program and its arguments,
    /// e.g. `systemd-run --scope --`) runs the test binary, which must end up as the launcher's
    /// process (an exec, as `systemd-run --scope` does), so that [`Child::pid`] stays the test's.
    pub fn start_via(launcher: &[&str], test: &str, scenario: &str, tag: &str, envs: &[(&str, &str)]) -> Child {
        let family = unique(&format!("lib-{tag}"));
        let marker = format!("marker-{}", unique(tag));
        let tmp = tempfile::Builder::new().prefix("daemonic-libtest-").tempdir().expect("create a scratch directory");
        let stdout_path = tmp.path().join("child.stdout");
        let stderr_path = tmp.path().join("child.stderr");
        let stdout = std::fs::File::create(&stdout_path).expect("create the child's stdout file");
        let stderr = std::fs::File::create(&stderr_path).expect("create the child's stderr file");
        let exe = std::env::current_exe().expect("the path of the test binary");
        let mut cmd = match launcher {
            [] => std::process::Command::new(&exe),
            [program, args @ ..] => {
                let mut cmd = std::process::Command::new(program);
                cmd.args(args).arg(&exe);
                cmd
            }
        };
        if crate::BACKEND == super::Backend::Systemd {
            cmd.env("DAEMONIC_BUS", super::test_bus().as_str());
        }
        cmd.args(harness_args(test, &marker))
            .env(ENV_SCENARIO, scenario)
            .env(ENV_FAMILY, &family)
            .env(ENV_MARKER, &marker)
            .env(ENV_PYTHON, python())
            .env(ENV_TMP, tmp.path())
            .env(ENV_TEST, test)
            .env("RUST_BACKTRACE", "0")
            .env("DAEMONIC_BACKEND", crate::BACKEND.name())
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("re-execute {} for {scenario}: {e}", exe.display()));
        Child {
            child,
            family,
            marker,
            tmp,
            stdout_path,
            stderr_path,
            started: Instant::now(),
            status: None,
            ended: None,
            what: format!("{test} / scenario {scenario}"),
        }
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the child (and its members, which inherit the file) wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The child's output, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "--- {} (pid {}, status {:?}) ---\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.what,
            self.pid(),
            self.status,
            self.stdout(),
            self.stderr()
        )
    }

    /// The last value reported as `@key=value`, if any.
    pub fn value(&self, key: &str) -> Option<String> {
        value_in(&self.stdout(), key)
    }

    /// The last value reported for `key`; panics with the child's output when there is none.
    pub fn expect_value(&self, key: &str) -> String {
        self.value(key).unwrap_or_else(|| panic!("the child reported no @{key}=\n{}", self.dump()))
    }

    /// Waits until the child reports `key` (panics when it ends first or `timeout`, scaled by
    /// the host's slowness, passes).
    pub fn wait_value(&mut self, key: &str, timeout: Duration) -> String {
        let timeout = super::scaled(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.value(key) {
                return v;
            }
            if self.poll_end().is_some() {
                if let Some(v) = self.value(key) {
                    return v;
                }
                panic!("the child ended without reporting @{key}=\n{}", self.dump());
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!("the child did not report @{key}= within {timeout:?}\n{}", self.dump());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn poll_end(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(st)) = self.child.try_wait()
        {
            self.status = Some(st);
            self.ended = Some((Instant::now(), now_ns()));
        }
        self.status
    }

    /// Waits for the child to end (at most `timeout`, then it is killed and the test fails).
    pub fn wait(&mut self, timeout: Duration) -> End {
        let ok = wait_until(timeout, || self.poll_end().is_some());
        if !ok {
            self.kill();
            panic!("scenario child did not end within {timeout:?}\n{}", self.dump());
        }
        let st = self.status.expect("the child's status is known");
        match (st.code(), st.signal()) {
            (Some(c), _) => End::Code(c),
            (None, Some(s)) => End::Signal(s),
            (None, None) => panic!("unexpected wait status {st:?}"),
        }
    }

    /// Waits for the child and asserts it ended as `expected`.
    pub fn expect_end(&mut self, expected: End, timeout: Duration) {
        let end = self.wait(timeout);
        assert_eq!(end, expected, "the scenario child ended unexpectedly\n{}", self.dump());
    }

    /// Waits for the child and asserts a clean exit (code 0: the scenario's assertions held).
    pub fn expect_success(&mut self, timeout: Duration) {
        self.expect_end(End::Code(0), timeout);
    }

    /// SIGKILLs the child (our own child, by its PID) if it still runs, and reaps it.
    pub fn kill(&mut self) {
        if self.poll_end().is_none() {
            let _ = self.child.kill();
            if let Ok(st) = self.child.wait() {
                self.status = Some(st);
                self.ended = Some((Instant::now(), now_ns()));
            }
        }
    }

    /// C10 for this child: no directory of its family, no process with its marker or with its
    /// family name in the command line (a guardian). Returns how long the cleanup took.
    pub fn assert_no_leftovers(&self) -> Duration {
        super::assert_no_leftovers_within(&self.family, &[&self.marker, &self.family], Duration::from_secs(3))
    }

    /// A path in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last value of `@key=` in `text`: the rest of a line that starts with it, or where it
/// follows a space (libtest prints `test <name> ... ` without a newline before the test runs).
pub fn value_in(text: &str, key: &str) -> Option<String> {
    let prefix = format!("@{key}=");
    text.lines().rev().find_map(|l| {
        let at = l.find(&prefix)?;
        (at == 0 || l[..at].ends_with(' ')).then(|| l[at + prefix.len()..].to_string())
    })
}

/// The non-empty lines of a file (none when it does not exist).
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Converts a path to an `OsString` (for command arguments).
pub fn os(p: &Path) -> OsString {
    p.as_os_str().to_owned()
}
