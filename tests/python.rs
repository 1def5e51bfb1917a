//! The Python package (`python/`): its own tests (`python/tests/test_daemonic.py`: the seed's
//! programs with the start method changed, SIGKILL of a parent with a tracker, a Manager and a
//! pool, the kernel's rules for daemons, CPython's Process API, the server) under every CPython
//! 3.9+ on this machine on the cgroupfs backend, and under one of them on the systemd backend
//! when a manager answers; and CPython's own multiprocessing suite for the start method.
//!
//! The package is the checkout's: the extension module is built here (`cargo build -p
//! daemonic-python`; `DAEMONIC_PYTHON_EXT` names one built already) and installed with
//! `python/daemonic/*.py` and `daemonic_mp.pth` into a new venv of each interpreter, as pip
//! installs the wheel, so what runs is what is committed. Without an interpreter of
//! 3.9 or later the test is ignored, with the reason (failed with `CI=true`).

mod common;
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The backend the shared helpers assume.
const BACKEND: common::Backend = common::Backend::Cgroupfs;

fn main() -> std::process::ExitCode {
    harness::main()
}

/// The checkout's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every CPython 3.9 or later found here: Debian's `/usr/bin/python3` and pyenv's versions
/// (the real interpreters, not pyenv's forking shim), each with its `major.minor`.
fn interpreters() -> Vec<(String, PathBuf)> {
    let mut candidates = vec![PathBuf::from("/usr/bin/python3")];
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")));
    if let Some(versions) = pyenv.map(|p| p.join("versions"))
        && let Ok(entries) = std::fs::read_dir(versions)
    {
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin/python3")).collect();
        dirs.sort();
        candidates.extend(dirs);
    }
    let mut found = Vec::new();
    for python in candidates.into_iter().filter(|p| p.is_file()) {
        let out = Command::new(&python)
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2], sys.version_info >= (3, 9))"])
            .output();
        let Ok(out) = out else { continue };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some((version, "True")) = text.trim().split_once(' ') {
            found.push((format!("{version} ({})", python.display()), python));
        }
    }
    found
}

/// The extension module: `DAEMONIC_PYTHON_EXT` when set (scripts/vm-suite builds it on the host,
/// as a guest has no cargo), else built now.
fn extension() -> PathBuf {
    if let Some(so) = std::env::var_os("DAEMONIC_PYTHON_EXT").filter(|v| !v.is_empty()) {
        return PathBuf::from(so);
    }
    let out = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["build", "-p", "daemonic-python", "--message-format=json-render-diagnostics"])
        .output()
        .expect("run cargo build -p daemonic-python");
    assert!(out.status.success(), "cargo build -p daemonic-python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "_native")
        .flat_map(|v| v["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "so"))
        .expect("cargo build named the extension module's .so")
}

/// A new virtual environment of `python` with the package installed as pip installs the wheel
/// (its modules and extension module in `site-packages/daemonic`, `daemonic_mp.pth` and its
/// startup module beside), so that every interpreter of it, an isolated (`-I`) or a spawned
/// one too, knows the start methods. Returns the directory and its interpreter.
fn install(python: &Path, so: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    let venv = dir.path().join("venv");
    let made = Command::new(python).args(["-m", "venv", "--without-pip"]).arg(&venv).output().expect("run venv");
    assert!(made.status.success(), "{} -m venv failed: {}", python.display(), String::from_utf8_lossy(&made.stderr));
    let vpython = venv.join("bin/python");
    let out = Command::new(&vpython)
        .args(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        .output()
        .expect("ask the venv for its site-packages");
    let site = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let pkg = site.join("daemonic");
    std::fs::create_dir_all(&pkg).expect("mkdir daemonic");
    for entry in std::fs::read_dir(root().join("python/daemonic")).expect("python/daemonic").flatten() {
        if entry.path().extension().is_some_and(|e| e == "py") {
            std::fs::copy(entry.path(), pkg.join(entry.file_name())).expect("copy a module");
        }
    }
    std::fs::copy(so, pkg.join("_native.abi3.so")).expect("copy the extension module");
    for file in ["_daemonic_mp_startup.py", "daemonic_mp.pth"] {
        std::fs::copy(root().join("python").join(file), site.join(file)).expect("copy the startup hook");
    }
    (dir, vpython)
}

/// One `python -m unittest -v MODULE` in python/tests, with the interpreter of a venv that has
/// the package.
fn unittest(python: &Path, module: &str, envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(python);
    cmd.current_dir(root().join("python/tests"))
        .args(["-m", "unittest", "-v", module])
        .env_remove("PYTHONPATH")
        .env("DAEMONIC_BACKEND", "cgroupfs")
        .env("DAEMONIC_TEST_SLOWNESS", format!("{:.2}", slowness()))
        .env_remove("PYTHONSTARTUP");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run python -m unittest")
}

/// Keeps a run's whole output in `target/tmp/python/NAME.log` (each test's line, its skip
/// reason, any traceback), and says where.
fn keep_log(name: &str, out: &std::process::Output) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{}.log", name.replace([' ', '/', '(', ')'], "_")));
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    let _ = std::fs::write(&path, text);
    path
}

/// unittest's counts from its output: (run, skipped, failures + errors), and the reasons of the
/// skips with how many tests each.
fn counts(stderr: &str) -> (usize, usize, usize, std::collections::BTreeMap<String, usize>) {
    let number = |text: &str, key: &str| -> usize {
        text.split(['(', ')', ',', ' ']).find_map(|w| w.strip_prefix(key)?.parse().ok()).unwrap_or(0)
    };
    let ran = stderr.lines().find_map(|l| l.strip_prefix("Ran ")?.split(' ').next()?.parse().ok()).unwrap_or(0);
    let last = stderr.lines().rev().find(|l| l.starts_with("OK") || l.starts_with("FAILED")).unwrap_or("");
    let bad =
        number(last, "failures=") + number(last, "errors=") + usize::from(!last.starts_with("OK") && last.is_empty());
    let mut reasons = std::collections::BTreeMap::new();
    for l in stderr.lines() {
        if let Some((_, why)) = l.split_once(" ... skipped ") {
            *reasons.entry(why.trim_matches('\'').to_string()).or_insert(0) += 1;
        }
    }
    (ran, number(last, "skipped="), bad, reasons)
}

#[harness::test]
fn python_package_tests_pass_under_every_cpython() {
    require_cgroup();
    let pythons = interpreters();
    if pythons.is_empty() {
        skip("no CPython 3.9 or later here (/usr/bin/python3, pyenv's versions)");
    }
    let so = extension();
    let mut failed = Vec::new();
    for (version, python) in &pythons {
        if !package_tests(version, python, &so, &[]) {
            failed.push(version.clone());
        }
    }
    assert!(failed.is_empty(), "the Python package's tests failed under {failed:?}");
    assert_no_leftovers("seed_terminated_abruptly", &[]);
}

/// The same tests on the systemd backend (each child a scope), under one interpreter: the
/// machine's `python3`, else the first CPython 3.9+ found.
#[harness::test]
fn python_package_tests_pass_on_the_systemd_backend() {
    require_manager();
    let Some((version, python)) = interpreters().into_iter().next() else {
        skip("no CPython 3.9 or later here (/usr/bin/python3, pyenv's versions)");
    };
    let envs = [("DAEMONIC_BACKEND", "systemd"), ("DAEMONIC_BUS", test_bus().as_str())];
    let passed = package_tests(&format!("{version}, systemd"), &python, &extension(), &envs);
    assert!(passed, "the Python package's tests failed on the systemd backend (see above)");
}

/// Runs `python/tests/test_daemonic.py` under `python` (in a venv with the package) with
/// `envs`, keeps its log, prints its summary (and its output when it failed, labelled `label`);
/// whether it passed.
fn package_tests(label: &str, python: &Path, so: &Path, envs: &[(&str, &str)]) -> bool {
    let (_venv, python) = install(python, so);
    let start = std::time::Instant::now();
    let out = unittest(&python, "test_daemonic", envs);
    let log = keep_log(&format!("test_daemonic-{label}"), &out);
    let err = String::from_utf8_lossy(&out.stderr);
    let summary = err.lines().rev().find(|l| l.starts_with("Ran ")).unwrap_or("no summary");
    let result = err.lines().last().unwrap_or("");
    eprintln!("python {label}: {summary}: {result} in {:.1} s ({})", start.elapsed().as_secs_f64(), log.display());
    if !out.status.success() {
        eprintln!("{err}");
    }
    out.status.success()
}

/// CPython's own multiprocessing tests (`test._test_multiprocessing`, which pyenv's builds and
/// Debian's `libpython3-testsuite` ship) for the start method `daemonic`, through
/// `python/tests/test_cpython_multiprocessing.py`: the `processes`, `manager` and `threads`
/// tests and the untyped ones, each type apart from 3.12 on (before, they install together).
/// No failure and no error; the skips are printed with their reasons.
#[harness::test]
fn cpython_multiprocessing_suite_passes_for_daemonic() {
    require_cgroup();
    let pythons: Vec<_> = interpreters()
        .into_iter()
        .filter(|(_, python)| {
            Command::new(python)
                .args(["-c", "import test._test_multiprocessing"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if pythons.is_empty() {
        skip("no CPython 3.9 or later with its test package (test._test_multiprocessing) here");
    }
    let so = extension();
    let mut failed = Vec::new();
    for (version, python) in &pythons {
        let (_venv, python) = install(python, &so);
        let split = Command::new(&python)
            .args(["-c", "import sys; print(sys.version_info >= (3, 12))"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "True");
        let types: &[&str] = if split { &["processes", "manager", "threads", "misc"] } else { &["all"] };
        for kind in types {
            let start = std::time::Instant::now();
            let out = unittest(&python, "test_cpython_multiprocessing", &[("DAEMONIC_CPYTHON_TYPE", kind)]);
            let log = keep_log(&format!("cpython-{version}-{kind}"), &out);
            let err = String::from_utf8_lossy(&out.stderr);
            let (ran, skipped, bad, reasons) = counts(&err);
            eprintln!(
                "CPython suite, python {version}, {kind}: {ran} run, {skipped} skipped, {bad} failed or errors, {:.0} s ({})",
                start.elapsed().as_secs_f64(),
                log.display()
            );
            for (why, n) in &reasons {
                eprintln!("    skipped {n}: {why}");
            }
            if !out.status.success() || bad > 0 || ran == 0 {
                let failures: Vec<&str> =
                    err.lines().filter(|l| l.starts_with("FAIL:") || l.starts_with("ERROR:")).collect();
                eprintln!("{}", failures.join("\n"));
                eprintln!(
                    "{}",
                    err.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
                );
                failed.push(format!("{version} {kind}"));
            }
        }
    }
    assert!(failed.is_empty(), "CPython's multiprocessing tests failed for daemonic under {failed:?}");
}
