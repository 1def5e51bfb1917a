//! Checks of what ships to distributions: the unit files in `units/` and the packages that
//! `scripts/build-packages` builds (`target/debian/daemonic_<version>-*.deb`,
//! `target/generate-rpm/daemonic-<version>-*.rpm`; packaging/README.md describes both).
//!
//! - `units_verify`: `systemd-analyze verify` accepts every unit file in `units/`.
//! - `deb_contents`, `rpm_contents`: the built packages hold every expected path.
//! - `deb_installs_runs_and_removes`: as root, only with `CI=true` or `DAEMONIC_TEST_PACKAGES=1`,
//!   installs the .deb with dpkg, runs a family through the installed binary, removes the
//!   package and checks that nothing of it is left.
//!
//! What is missing (a tool, the packages, root) fails the test when `CI=true` and otherwise
//! ends it as ignored, with what is missing as the reason (tests/harness).
//!
//! Tests of one file run in parallel threads. These do not interfere: none of them writes below
//! `target/` (the packages are built beforehand by `scripts/build-packages`, never here); the
//! contents tests only read the package files (`dpkg-deb -c`, `rpm -qlp` take no lock and touch
//! no installed state); `units_verify` works on copies in its own temporary directories. Only
//! the install test changes the system (dpkg database, /usr), and no other test looks there.
//! It refuses to run when daemonic is already installed (it would otherwise remove someone's
//! installation), and a drop guard kills its family and purges the package on every exit,
//! panics included.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod harness;

fn main() -> std::process::ExitCode {
    harness::main()
}

const VERSION: &str = env!("CARGO_PKG_VERSION");
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// The binary cargo built for these tests; stands in for /usr/bin/daemonic in `units_verify`.
const BUILT_BINARY: &str = env!("CARGO_BIN_EXE_daemonic");
const INSTALLED_BINARY: &str = "/usr/bin/daemonic";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn root() -> PathBuf {
    PathBuf::from(MANIFEST_DIR)
}

/// Cargo's target directory, as scripts/build-packages and the packaging tools use it.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir), // join keeps an absolute path as is
        _ => root().join("target"),
    }
}

/// The executable `name` from PATH (or /usr/bin, /usr/sbin, /sbin: dpkg lives in sbin
/// directories that a non-login PATH may lack).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the command and panics with its output unless it succeeds; returns its stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Files in `dir` whose names end with `suffix`, sorted; empty when the directory is missing.
fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// The newest file in `dir` whose name starts with `prefix` and ends with `suffix`.
fn newest(dir: &Path, prefix: &str, suffix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix)))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
}

/// The .deb of this crate version, built by scripts/build-packages.
fn deb_file() -> Option<PathBuf> {
    newest(&target_dir().join("debian"), &format!("daemonic_{VERSION}-"), ".deb")
}

/// The .rpm of this crate version, built by scripts/build-packages.
fn rpm_file() -> Option<PathBuf> {
    newest(&target_dir().join("generate-rpm"), &format!("daemonic-{VERSION}-"), ".rpm")
}

/// Every path a package must hold, from the source tree: the man pages and docs that exist in
/// docs/ are expected, so a page added there and missing from a (stale) package is caught.
/// `zsh_dir`: Debian's and Fedora's directories for zsh completions differ.
fn expected_paths(zsh_dir: &str) -> BTreeSet<String> {
    let mut paths: BTreeSet<String> = [
        "/usr/bin/daemonic",
        "/usr/share/bash-completion/completions/daemonic",
        "/usr/share/fish/vendor_completions.d/daemonic.fish",
        "/usr/lib/systemd/system/daemonic.slice",
        "/usr/lib/systemd/user/daemonic.slice",
        "/usr/share/doc/daemonic/README.md",
        "/usr/share/doc/daemonic/examples/daemonic-example.service",
        "/usr/share/doc/daemonic/examples/user/daemonic-example.service",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    paths.insert(format!("{zsh_dir}/_daemonic"));
    let pages = files_with_suffix(&root().join("docs/man"), ".1");
    assert!(pages.iter().any(|p| p == "daemonic.1"), "docs/man/daemonic.1 is missing (found {pages:?})");
    for page in pages {
        paths.insert(format!("/usr/share/man/man1/{page}.gz"));
    }
    for doc in files_with_suffix(&root().join("docs"), ".md") {
        paths.insert(format!("/usr/share/doc/daemonic/{doc}"));
    }
    paths
}

/// Checks a package's file list against the expected paths: all present, man pages gzipped and
/// no man page the source tree no longer has.
fn check_listing(kind: &str, package: &Path, listed: &BTreeSet<String>, expected: &BTreeSet<String>) {
    let missing: Vec<&String> = expected.difference(listed).collect();
    assert!(
        missing.is_empty(),
        "{kind} {} lacks {missing:?}\n(it holds {listed:#?})\nRebuild it with scripts/build-packages.",
        package.display()
    );
    let stray_man: Vec<&String> = listed
        .iter()
        .filter(|p| p.starts_with("/usr/share/man/") && !p.ends_with('/'))
        .filter(|p| !expected.contains(*p))
        .collect();
    assert!(
        stray_man.is_empty(),
        "{kind} {} holds man pages that are not (gzipped) in docs/man: {stray_man:?}",
        package.display()
    );
}

/// The package file for a contents test and the tool that reads it; ends the test as ignored
/// (failed with `CI=true`) when either is missing.
fn package_or_skip(kind: &str, file: Option<PathBuf>, tool: &str) -> (PathBuf, PathBuf) {
    let Some(tool_path) = which(tool) else {
        harness::skip(&format!("`{tool}` is not installed (Debian: apt-get install {})", tool_package(tool)));
    };
    let Some(file) = file else {
        harness::skip(&format!(
            "no {kind} of daemonic {VERSION} in {}: run scripts/build-packages first",
            target_dir().display()
        ));
    };
    (file, tool_path)
}

fn tool_package(tool: &str) -> &'static str {
    match tool {
        "rpm" => "rpm",
        "systemd-analyze" => "systemd",
        _ => "dpkg",
    }
}

// ---------------------------------------------------------------------------------------------
// systemd-analyze verify
// ---------------------------------------------------------------------------------------------

/// Runs `systemd-analyze [--user] verify` on `unit` and returns the lines of its output that
/// concern it (name or path). systemd-analyze exits 0 even for unknown keys or unparsable values
/// ("Unknown key ..., ignoring"), so the exit status alone proves little: any such line is an
/// error here. Lines about other units (dependencies on the host) are printed, not judged.
///
/// `man`: also check that every `Documentation=man:` page exists (`man` must be installed).
/// `runtime`: XDG_RUNTIME_DIR for --user, which needs one even to verify.
fn verify(analyze: &Path, unit: &Path, user: bool, man: bool, runtime: &Path) -> Result<(), String> {
    let mut cmd = Command::new(analyze);
    if user {
        cmd.arg("--user").env("XDG_RUNTIME_DIR", runtime);
    }
    cmd.arg("verify").arg(format!("--man={}", if man { "yes" } else { "no" })).arg(unit);
    // Colours and a pager would only get in the way of reading the output.
    cmd.env("SYSTEMD_COLORS", "0").env("SYSTEMD_PAGER", "cat");
    let out = run(&mut cmd);
    let name = unit.file_name().unwrap().to_string_lossy().into_owned();
    let path = unit.to_string_lossy().into_owned();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let (ours, others): (Vec<&str>, Vec<&str>) =
        all.lines().filter(|l| !l.trim().is_empty()).partition(|l| l.contains(&name) || l.contains(&path));
    for line in &others {
        let _ = writeln!(std::io::stderr(), "note: systemd-analyze verify {name}: {line}");
    }
    if !out.status.success() || !ours.is_empty() {
        return Err(format!(
            "systemd-analyze{} verify {} ({}):\n{}",
            if user { " --user" } else { "" },
            unit.display(),
            out.status,
            all.trim_end()
        ));
    }
    Ok(())
}

/// Unit files below `dir`: (path, is a user unit). A unit is a user unit when it lies below a
/// directory named `user` (units/user/, units/examples/user/), as in the installed layout.
fn unit_files(dir: &Path, user: bool, found: &mut Vec<(PathBuf, bool)>) {
    const KINDS: [&str; 9] = ["service", "slice", "socket", "timer", "target", "path", "mount", "scope", "automount"];
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            unit_files(&path, user || entry.file_name() == "user", found);
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| KINDS.contains(&e)) {
            found.push((path, user));
        }
    }
}

#[harness::test]
fn units_verify() {
    let Some(analyze) = which("systemd-analyze") else {
        harness::skip("systemd-analyze is not installed (Debian: apt-get install systemd)");
    };
    let mut units = Vec::new();
    unit_files(&root().join("units"), false, &mut units);
    let rel: Vec<String> =
        units.iter().map(|(p, _)| p.strip_prefix(root()).unwrap().to_string_lossy().into_owned()).collect();
    for must in [
        "units/daemonic.slice",
        "units/user/daemonic.slice",
        "units/examples/daemonic-example.service",
        "units/examples/user/daemonic-example.service",
    ] {
        assert!(rel.iter().any(|r| r == must), "{must} is missing (found {rel:?})");
    }

    // systemd-analyze verify checks that ExecStart= binaries exist, and /usr/bin/daemonic only
    // exists once the package is installed. So each unit is verified as a copy, under its own
    // name in a directory of its own, with /usr/bin/daemonic replaced by the binary cargo built
    // for this test; everything else is verified as written. --man=no: the units' man: pages
    // come with the package too. deb_installs_runs_and_removes verifies the installed files
    // again, unmodified and with the man pages.
    let tmp = tempfile::tempdir().expect("tempdir");
    let runtime = tmp.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    let mut failures = Vec::new();
    for (i, (path, user)) in units.iter().enumerate() {
        let content = std::fs::read_to_string(path).unwrap();
        let dir = tmp.path().join(format!("unit-{i}"));
        std::fs::create_dir(&dir).unwrap();
        let copy = dir.join(path.file_name().unwrap());
        std::fs::write(&copy, content.replace(INSTALLED_BINARY, BUILT_BINARY)).unwrap();
        match verify(&analyze, &copy, *user, false, &runtime) {
            Ok(()) => println!("ok: {}{}", if *user { "(user) " } else { "" }, path.display()),
            Err(e) => failures.push(format!("{}:\n{e}", path.display())),
        }
    }

    // The check itself must be able to fail: a unit with a bad value (which systemd-analyze
    // only warns about, with exit status 0) has to be reported.
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    let bad_unit = bad.join("daemonic-selftest.slice");
    std::fs::write(&bad_unit, "[Unit]\nDescription=self-test\n\n[Slice]\nCPUWeight=lots\n").unwrap();
    assert!(
        verify(&analyze, &bad_unit, false, false, &runtime).is_err(),
        "systemd-analyze verify did not report CPUWeight=lots: the check would miss real errors"
    );

    assert!(failures.is_empty(), "systemd-analyze verify found problems:\n\n{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// Package contents
// ---------------------------------------------------------------------------------------------

#[harness::test]
fn deb_contents() {
    let (deb, dpkg_deb) = package_or_skip(".deb", deb_file(), "dpkg-deb");
    println!("checking {}", deb.display());
    // Lines like `-rwxr-xr-x 0/0 4093624 2026-11-22 00:00 ./usr/bin/daemonic`.
    let listing = run_ok(Command::new(&dpkg_deb).arg("-c").arg(&deb));
    let mut listed = BTreeSet::new();
    let mut modes = std::collections::BTreeMap::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(mode), Some(path)) = (fields.first(), fields.get(5)) else { continue };
        let path = path.trim_start_matches('.').to_string();
        modes.insert(path.clone(), mode.to_string());
        listed.insert(path);
    }
    let mut expected = expected_paths("/usr/share/zsh/vendor-completions");
    // Debian policy: every package has a copyright file (generated by cargo-deb).
    expected.insert("/usr/share/doc/daemonic/copyright".into());
    check_listing(".deb", &deb, &listed, &expected);
    assert_eq!(modes.get(INSTALLED_BINARY).map(String::as_str), Some("-rwxr-xr-x"), "mode of {INSTALLED_BINARY}");

    let field = |name: &str| run_ok(Command::new(&dpkg_deb).arg("-f").arg(&deb).arg(name)).trim().to_string();
    assert_eq!(field("Package"), "daemonic");
    let version = field("Version");
    assert!(version.starts_with(&format!("{VERSION}-")), "Version: {version}, crate {VERSION}");
    // depends = "$auto": computed from the binary's shared libraries.
    let depends = field("Depends");
    assert!(depends.contains("libc6"), "Depends should be computed from the binary (libc6): {depends:?}");
}

#[harness::test]
fn rpm_contents() {
    let (rpm_path, rpm) = package_or_skip(".rpm", rpm_file(), "rpm");
    println!("checking {}", rpm_path.display());
    // One line per file: mode and path (rpm -qlp alone gives the paths).
    let listing =
        run_ok(Command::new(&rpm).args(["-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\\n]"]).arg(&rpm_path));
    let mut listed = BTreeSet::new();
    let mut modes = std::collections::BTreeMap::new();
    for line in listing.lines() {
        let Some((mode, path)) = line.split_once(' ') else { continue };
        modes.insert(path.to_string(), mode.to_string());
        listed.insert(path.to_string());
    }
    // The plain listing the brief of this test names, and the one operators run: same paths.
    let plain: BTreeSet<String> =
        run_ok(Command::new(&rpm).arg("-qlp").arg(&rpm_path)).lines().map(String::from).collect();
    assert_eq!(plain, listed, "rpm -qlp and the --qf listing differ");

    let expected = expected_paths("/usr/share/zsh/site-functions");
    check_listing(".rpm", &rpm_path, &listed, &expected);
    assert_eq!(modes.get(INSTALLED_BINARY).map(String::as_str), Some("-rwxr-xr-x"), "mode of {INSTALLED_BINARY}");

    let version = run_ok(Command::new(&rpm).args(["-qp", "--qf", "%{NAME} %{VERSION}"]).arg(&rpm_path));
    assert_eq!(version, format!("daemonic {VERSION}"));
    let requires = run_ok(Command::new(&rpm).arg("-qRp").arg(&rpm_path));
    assert!(requires.contains("libc.so.6"), "Requires should be computed from the binary (libc.so.6):\n{requires}");
    let docs = run_ok(Command::new(&rpm).arg("-qdp").arg(&rpm_path));
    assert!(docs.contains("/usr/share/doc/daemonic/README.md"), "README.md is not marked as documentation:\n{docs}");
}

// ---------------------------------------------------------------------------------------------
// Install, run, remove
// ---------------------------------------------------------------------------------------------

const FAMILY: &str = "pkgtest";

/// Whether dpkg considers daemonic installed (also half-installed or unpacked states).
fn dpkg_has_daemonic(dpkg_query: &Path) -> bool {
    let out = run(Command::new(dpkg_query).args(["-W", "-f=${Status}", "daemonic"]));
    out.status.success() && !text(&out.stdout).contains("not-installed")
}

/// Removes what the install test put on the system, on every exit: the family (if it still
/// runs) and the package (purged). Does nothing once the test has removed the package itself.
struct InstalledPackage {
    dpkg: PathBuf,
    dpkg_query: PathBuf,
}

impl Drop for InstalledPackage {
    fn drop(&mut self) {
        if Path::new(INSTALLED_BINARY).exists() {
            // SIGKILLs the whole family at once (one cgroup.kill) and removes its cgroups.
            let _ = Command::new(INSTALLED_BINARY)
                .args(["-q", "kill", FAMILY])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if dpkg_has_daemonic(&self.dpkg_query) {
            let out = Command::new(&self.dpkg).args(["--purge", "daemonic"]).stdin(Stdio::null()).output();
            let _ = writeln!(std::io::stderr(), "cleanup: dpkg --purge daemonic: {out:?}");
        }
    }
}

/// The cgroup2 mount point, from /proc/self/mountinfo (never assumed).
fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        before.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// Directories below `dir` (at most `depth` levels) whose names contain `needle`.
fn find_dirs(dir: &Path, needle: &str, depth: usize, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if entry.file_name().to_string_lossy().contains(needle) {
            found.push(entry.path());
        }
        if depth > 1 {
            find_dirs(&entry.path(), needle, depth - 1, found);
        }
    }
}

/// Processes whose executable is the installed binary (the guardian is a re-execution of it).
fn processes_of_installed_binary() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name.parse::<u32>() == Ok(std::process::id()) {
            continue;
        }
        if let Ok(exe) = std::fs::read_link(entry.path().join("exe")) {
            let exe = exe.to_string_lossy().into_owned();
            if exe == INSTALLED_BINARY || exe == format!("{INSTALLED_BINARY} (deleted)") {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                found.push(format!("{name}: {}", text(&cmdline).replace('\0', " ")));
            }
        }
    }
    found
}

/// True while process `pid` exists and is not a zombie.
fn alive(pid: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
}

/// Polls `check` every 50 ms until it returns Some or `timeout` passes.
fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// From `daemonic ps --json`: the PID of the running daemon "sleeper" of family FAMILY, once
/// the main member and it both run.
fn running_sleeper() -> Option<u64> {
    let out = run(Command::new(INSTALLED_BINARY).args(["ps", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let family = json["families"].as_array()?.iter().find(|f| f["name"] == FAMILY)?;
    let members = family["members"].as_array()?;
    let running = |name: &str| members.iter().find(|m| m["name"] == name && m["state"] == "running");
    let main = running("main")?;
    assert_eq!(main["daemon"], false, "the main member is not daemonic: {family}");
    let sleeper = running("sleeper")?;
    assert_eq!(sleeper["daemon"], true, "the sleeper was spawned with --daemon: {family}");
    sleeper["pid"].as_u64()
}

#[harness::test]
fn deb_installs_runs_and_removes() {
    if !in_ci() && std::env::var("DAEMONIC_TEST_PACKAGES").as_deref() != Ok("1") {
        harness::skip("installs the .deb system-wide; set DAEMONIC_TEST_PACKAGES=1 (as root) to run it");
    }
    if !rustix::process::geteuid().is_root() {
        harness::skip("dpkg -i needs root");
    }
    let (Some(dpkg), Some(dpkg_query)) = (which("dpkg"), which("dpkg-query")) else {
        harness::skip("dpkg is not installed: this test needs a Debian-based system");
    };
    let Some(deb) = deb_file() else {
        harness::skip(&format!(
            "no .deb of daemonic {VERSION} in {}: run scripts/build-packages first",
            target_dir().display()
        ));
    };
    assert!(
        !dpkg_has_daemonic(&dpkg_query),
        "daemonic is already installed on this system; this test installs and removes it, so it refuses to \
         touch an existing installation (remove it with `dpkg -r daemonic` to run the test)"
    );
    assert!(!Path::new(INSTALLED_BINARY).exists(), "{INSTALLED_BINARY} exists but belongs to no package");

    // From here on every exit (panics included) kills the family and purges the package.
    let _guard = InstalledPackage { dpkg: dpkg.clone(), dpkg_query: dpkg_query.clone() };
    println!("dpkg -i {}", deb.display());
    run_ok(Command::new(&dpkg).arg("-i").arg(&deb));
    assert!(dpkg_has_daemonic(&dpkg_query), "dpkg -i succeeded but daemonic is not installed");
    let files: Vec<String> = run_ok(Command::new(&dpkg).args(["-L", "daemonic"])).lines().map(String::from).collect();
    // Whether each listed path was a directory while installed, decided before removal.
    let was_dir: Vec<(String, bool)> = files.iter().map(|f| (f.clone(), Path::new(f).is_dir())).collect();
    for must in [INSTALLED_BINARY, "/usr/lib/systemd/system/daemonic.slice", "/usr/share/man/man1/daemonic.1.gz"] {
        assert!(files.iter().any(|f| f == must), "dpkg -L daemonic lacks {must}:\n{files:#?}");
    }

    // The installed binary runs and is this version.
    let version = run_ok(Command::new(INSTALLED_BINARY).arg("--version"));
    assert!(
        version.split_whitespace().any(|w| w == VERSION),
        "{INSTALLED_BINARY} --version: {version:?}, crate {VERSION}"
    );
    // Man pages are installed gzipped, as man-db and distributions expect.
    let page = std::fs::read("/usr/share/man/man1/daemonic.1.gz").expect("read the installed man page");
    assert!(page.starts_with(&[0x1f, 0x8b]), "/usr/share/man/man1/daemonic.1.gz is not gzip");

    // The installed units verify as they are, with the real /usr/bin/daemonic, and (when man is
    // installed) with their Documentation=man: pages resolved against the installed ones.
    if let Some(analyze) = which("systemd-analyze") {
        let man = which("man").is_some();
        let runtime = tempfile::tempdir().expect("tempdir");
        for (unit, user) in [
            ("/usr/lib/systemd/system/daemonic.slice", false),
            ("/usr/lib/systemd/user/daemonic.slice", true),
            ("/usr/share/doc/daemonic/examples/daemonic-example.service", false),
            ("/usr/share/doc/daemonic/examples/user/daemonic-example.service", true),
        ] {
            if let Err(e) = verify(&analyze, Path::new(unit), user, man, runtime.path()) {
                panic!("the installed unit does not verify:\n{e}");
            }
        }
        println!("installed units verify (man pages checked: {man})");
    } else {
        let _ = writeln!(std::io::stderr(), "note: systemd-analyze missing, installed units not verified");
    }

    // A family through the installed binary: the main member (a shell) spawns a daemon that
    // would sleep 60 s, waits until the test has seen it run, then ends. The daemon must be
    // killed at once, `daemonic run` must exit 0 long before 60 s, and nothing of the family
    // may remain: no process, no cgroup.
    let tmp = tempfile::tempdir().expect("tempdir");
    let go = tmp.path().join("go");
    let script = format!(
        "{INSTALLED_BINARY} spawn --daemon --name sleeper -- /bin/sleep 60 &\n\
         i=0; while [ ! -e '{go}' ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n\
         echo \"main is-daemon: $({INSTALLED_BINARY} is-daemon)\"\n\
         echo main-done\n",
        go = go.display()
    );
    let started = Instant::now();
    let mut child = Command::new(INSTALLED_BINARY)
        .args(["run", "--backend", "cgroupfs", "--name", FAMILY, "--", "/bin/sh", "-c", &script])
        .env_remove("DAEMONIC_BACKEND")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemonic run");
    let sleeper = wait_for(Duration::from_secs(20), running_sleeper);
    std::fs::write(&go, b"").unwrap();
    let Some(sleeper) = sleeper else {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "daemonic ps --json never showed the family {FAMILY} with a running daemon \"sleeper\"\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    };
    let cgroup = std::fs::read_to_string(format!("/proc/{sleeper}/cgroup")).unwrap_or_default();
    assert!(cgroup.trim_end().ends_with(".daemon"), "the sleeper (pid {sleeper}) is not in a daemon cgroup: {cgroup}");

    let ended = wait_for(Duration::from_secs(30), || child.try_wait().expect("wait for daemonic run"));
    let Some(status) = ended else {
        let _ = child.kill();
        panic!("daemonic run did not end within 30 s of its main member's end (the daemon sleeps 60 s)");
    };
    let elapsed = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    println!("daemonic run: {status} after {elapsed:.1?}\nstdout:\n{stdout}stderr:\n{stderr}");
    assert!(status.success(), "daemonic run failed: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("main is-daemon: false") && stdout.contains("main-done"), "unexpected output:\n{stdout}");
    assert!(elapsed < Duration::from_secs(40), "daemonic run took {elapsed:?}: the daemon was not killed");
    assert!(
        wait_for(Duration::from_secs(5), || (!alive(sleeper)).then_some(())).is_some(),
        "the daemon (pid {sleeper}) still runs after its family ended"
    );
    let mount = cgroup2_mount().expect("no cgroup2 mount in /proc/self/mountinfo");
    let left = wait_for(Duration::from_secs(10), || {
        let mut dirs = Vec::new();
        find_dirs(&mount, FAMILY, 16, &mut dirs);
        dirs.is_empty().then_some(())
    });
    if left.is_none() {
        let mut dirs = Vec::new();
        find_dirs(&mount, FAMILY, 16, &mut dirs);
        panic!("cgroups of the family remain under {}: {dirs:?}", mount.display());
    }
    let procs = wait_for(Duration::from_secs(10), || processes_of_installed_binary().is_empty().then_some(()));
    assert!(procs.is_some(), "processes of {INSTALLED_BINARY} still run: {:?}", processes_of_installed_binary());

    // Removal: every file the package installed is gone; a directory may stay only when
    // another package owns it too (dpkg -S) or something else put files in it.
    println!("dpkg -r daemonic");
    run_ok(Command::new(&dpkg).args(["-r", "daemonic"]));
    let mut left = Vec::new();
    for (path, dir) in &was_dir {
        let p = Path::new(path);
        if !p.exists() && p.symlink_metadata().is_err() {
            continue;
        }
        if *dir {
            let owned_by_others = run(Command::new(&dpkg).args(["-S", path])).status.success();
            let non_empty = std::fs::read_dir(p).map(|mut d| d.next().is_some()).unwrap_or(true);
            if owned_by_others || non_empty {
                continue;
            }
        }
        left.push(path.clone());
    }
    assert!(left.is_empty(), "dpkg -r daemonic left these behind: {left:?}");
    let status = run(Command::new(&dpkg).args(["-s", "daemonic"]));
    let said = format!("{}{}", text(&status.stdout), text(&status.stderr));
    assert!(
        (!status.status.success() && said.contains("not installed"))
            || said.contains("Status: deinstall ok not-installed"),
        "dpkg -s daemonic after removal:\n{said}"
    );
    assert!(!dpkg_has_daemonic(&dpkg_query), "dpkg still lists daemonic as installed");
    println!("removed; dpkg -s daemonic: {}", said.trim());
}
