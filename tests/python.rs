//! The Python package (`python/`): its own tests (`python/tests/test_daemonic.py`: the seed's
//! programs with the start method changed, SIGKILL of a parent with a tracker, a Manager and a
//! pool, the kernel's rules for daemons, CPython's Process API) under every CPython 3.9+ on
//! this machine, on the cgroupfs backend.
//!
//! The package is the checkout's: the extension module is built here (`cargo build -p
//! daemonic-python`) and put beside `python/daemonic/*.py` in a temporary directory on
//! `PYTHONPATH`, so what runs is what is committed, without pip (`DAEMONIC_PYTHON_EXT` names a
//! module built already). Without an interpreter of
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

/// Lays out the package, the extension module beside its modules, in a new temporary directory.
fn package() -> tempfile::TempDir {
    let so = extension();
    let dir = tempdir();
    let pkg = dir.path().join("daemonic");
    std::fs::create_dir(&pkg).expect("mkdir daemonic");
    for entry in std::fs::read_dir(root().join("python/daemonic")).expect("python/daemonic").flatten() {
        if entry.path().extension().is_some_and(|e| e == "py") {
            std::fs::copy(entry.path(), pkg.join(entry.file_name())).expect("copy a module");
        }
    }
    std::fs::copy(&so, pkg.join("_native.abi3.so")).expect("copy the extension module");
    dir
}

#[harness::test]
fn python_package_tests_pass_under_every_cpython() {
    require_cgroup();
    let pythons = interpreters();
    if pythons.is_empty() {
        skip("no CPython 3.9 or later here (/usr/bin/python3, pyenv's versions)");
    }
    let pkg = package();
    let mut failed = Vec::new();
    for (version, python) in &pythons {
        let start = std::time::Instant::now();
        let out = Command::new(python)
            .current_dir(root().join("python/tests"))
            .args(["-m", "unittest", "-v", "test_daemonic"])
            .env("PYTHONPATH", pkg.path())
            .env("DAEMONIC_BACKEND", "cgroupfs")
            .env("DAEMONIC_TEST_SLOWNESS", format!("{:.2}", slowness()))
            .env_remove("PYTHONSTARTUP")
            .output()
            .expect("run python -m unittest");
        let err = String::from_utf8_lossy(&out.stderr);
        let summary = err.lines().rev().find(|l| l.starts_with("Ran ")).unwrap_or("no summary").to_string();
        let result = err.lines().last().unwrap_or("").to_string();
        eprintln!("python {version}: {summary}: {result} in {:.1} s", start.elapsed().as_secs_f64());
        if !out.status.success() {
            eprintln!("{err}");
            failed.push(version.clone());
        }
    }
    assert!(failed.is_empty(), "the Python package's tests failed under {failed:?}");
    assert_no_leftovers("seed_terminated_abruptly", &[]);
}
