//! Bad input: every argument of every subcommand given malformed values, run through the real
//! binary on the cgroupfs backend. Each invocation must end with an exit code from the README's
//! table ("Exit codes of the CLI itself"), exactly one line on stderr starting `error: `, no
//! panic, and nothing created: no new cgroup directory that the invocation could have made, no
//! process left, and the program never ran (its marker is on neither stdout nor in `/proc`).
//!
//! Other engineers' tests may create and remove families on the same host at the same time, so
//! the cgroup tree is compared before and after each invocation but only directories this test
//! could have made count: those whose name contains this run's tag (every case names its family
//! with it where the name is not itself the subject) or starts like a family made from a
//! malformed name (`daemonic-.`, `daemonic--`).
//!
//! A NUL byte cannot be passed in argv (execve ends each argument at the first NUL); the library's
//! `validate_name` refusing it is a unit test in `src/layout.rs` (and the property test in
//! `tests/names.rs` checks no accepted name contains one); here a name with `\x01` stands in.
//!
//! A host without cgroup2 is simulated honestly: the binary runs in a private mount namespace
//! (`unshare -m`) where the cgroup2 mount, found in /proc/self/mountinfo like daemonic finds it,
//! has been unmounted. No bus is a session bus address naming a socket that does not exist and an
//! empty `XDG_RUNTIME_DIR`.

mod common;
mod harness;

/// The backend these tests run on.
const BACKEND: common::Backend = common::Backend::Cgroupfs;

fn main() -> std::process::ExitCode {
    harness::main()
}

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use common::*;

/// Exit codes of the README's table.
const FAILURE: i32 = 1;
const USAGE: i32 = 2;
const NOT_EXECUTABLE: i32 = 126;
const NOT_FOUND: i32 = 127;

/// A tag unique to this test process, in every family name given in a case that must fail (the
/// few things made on purpose, by the tests of what is accepted, are named otherwise).
fn tag() -> String {
    format!("badin{}", std::process::id())
}

/// Every directory below the cgroup2 mount.
fn snapshot() -> BTreeSet<PathBuf> {
    cgroup_dirs_where(&|_| true).into_iter().collect()
}

/// Directories in `after` and not in `before` that this test could have made.
fn created(before: &BTreeSet<PathBuf>, after: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    let tag = tag();
    after
        .difference(before)
        .filter(|p| {
            let name = p.file_name().map(OsStr::as_bytes).unwrap_or_default();
            let lossy = String::from_utf8_lossy(name);
            lossy.contains(&tag) || lossy.starts_with("daemonic-.") || lossy.starts_with("daemonic--")
        })
        .cloned()
        .collect()
}

/// Runs one malformed invocation and checks everything the issue asks for.
fn expect_error(what: &str, run: Daemonic, code: i32, mentions: &[&str], marker: &str) -> Output {
    let before = snapshot();
    let out = run.timeout(15.0).run();
    let context = format!("case: {what}\n{}", out.dump());
    assert_eq!(out.code, Some(code), "wrong exit code\n{context}");
    assert!(!out.stderr.contains("panicked"), "the binary panicked\n{context}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr must be exactly one line\n{context}");
    assert!(lines[0].starts_with("error: "), "the line must start with `error: `\n{context}");
    let lower = lines[0].to_lowercase();
    assert!(
        mentions.is_empty() || mentions.iter().any(|m| lower.contains(&m.to_lowercase())),
        "the error should mention one of {mentions:?}\n{context}"
    );
    assert!(!out.stdout.contains(marker), "the program ran\n{context}");
    let left = marked_processes(marker);
    assert!(left.is_empty(), "processes left: {left:?}\n{context}");
    let made = created(&before, &snapshot());
    assert!(made.is_empty(), "cgroups created: {made:?}\n{context}");
    out
}

/// `args` with `OsString`s, for the cases with non-UTF-8 bytes.
fn os(args: &[&[u8]]) -> Vec<OsString> {
    args.iter().map(|a| OsStr::from_bytes(a).to_os_string()).collect()
}

/// The program every case would run if daemonic accepted it: prints a marker.
fn program(marker: &str) -> [String; 2] {
    ["echo".into(), format!("ran-{marker}")]
}

/// Malformed names, each given to `run --name` and `spawn --name`.
fn bad_names() -> Vec<(String, Vec<u8>)> {
    let t = tag();
    vec![
        ("slash".into(), format!("a/{t}").into_bytes()),
        ("dot-dot".into(), b"..".to_vec()),
        ("dot".into(), b".".to_vec()),
        ("empty".into(), Vec::new()),
        ("climbs".into(), format!("../{t}").into_bytes()),
        ("ends in ..".into(), format!("{t}/..").into_bytes()),
        ("control character (NUL cannot be in argv)".into(), format!("a\x01{t}").into_bytes()),
        ("10,000 characters".into(), format!("{t}{}", "x".repeat(10_000 - t.len())).into_bytes()),
        ("non-UTF-8".into(), [t.as_bytes(), b"\xff\xfe"].concat()),
        ("space".into(), format!("a {t}").into_bytes()),
        ("leading dash".into(), format!("-{t}").into_bytes()),
    ]
}

#[harness::test]
fn names() {
    require_cgroup();
    for (what, name) in bad_names() {
        for sub in ["run", "spawn"] {
            let m = marker(0);
            let [p, a] = program(&m);
            // `--name=…`, so that a name starting with `-` is not taken for an option.
            let flag = [b"--name=", &name[..]].concat();
            let args = os(&[sub.as_bytes(), &flag, b"--", p.as_bytes(), a.as_bytes()]);
            // Input is checked before the host: even `spawn` outside a family says "bad name".
            expect_error(&format!("{sub} --name {what}"), daemonic(&args), USAGE, &["name"], &m);
        }
    }
}

#[harness::test]
fn stop_timeouts() {
    require_cgroup();
    let t = tag();
    for value in ["-1", "-0.5", "NaN", "nan", "inf", "-inf", "1e30", "86401", "garbage", "", "1s", "0x10"] {
        for sub in ["run", "spawn"] {
            let m = marker(0);
            let [p, a] = program(&m);
            let flag = format!("--stop-timeout={value}");
            let args = [sub, "--name", &t, &flag, "--", &p, &a];
            let out = expect_error(&format!("{sub} {flag}"), daemonic(args), USAGE, &["stop-timeout"], &m);
            assert!(out.stderr.contains(&format!("daemonic {sub} --help")), "{}", out.dump());
        }
    }
    // A negative number as a separate word is taken for an option by clap: still one line, 2.
    let m = marker(0);
    let [p, a] = program(&m);
    expect_error("run --stop-timeout -1", daemonic(["run", "--stop-timeout", "-1", "--", &p, &a]), USAGE, &[], &m);
}

/// Values at the edges that are not errors: the shortest and longest stop timeouts, and the
/// environment variables set but empty, which mean unset (as in the library).
#[harness::test]
fn accepted_values() {
    require_cgroup();
    // Not this test's tag: the other tests, running meanwhile, would take it for theirs.
    let name = format!("okvalues{}", std::process::id());
    let own = cgroup_of("self").expect("own cgroup");
    let runs = [
        daemonic(["run", "--name", &name, "--stop-timeout", "0", "--", "true"]),
        daemonic(["run", "--name", &name, "--stop-timeout=86400", "--", "true"]),
        daemonic(["run", "--name", &name, "--", "true"]).env("DAEMONIC_CGROUP", ""),
        // auto then; the explicit base keeps it on cgroupfs even where a manager answers.
        daemonic(["run", "--name", &name, "--cgroup", &own, "--", "true"]).env("DAEMONIC_BACKEND", ""),
    ];
    for run in runs {
        let out = run.timeout(15.0).run();
        out.assert_code(0);
        assert_eq!(out.stderr, "", "{}", out.dump());
        assert_no_leftovers(&name, &[]);
    }
}

#[harness::test]
fn properties() {
    require_cgroup();
    let t = tag();
    let bad = [
        ("no =", "TasksMax", "property"),
        ("no key", "=10", "property"),
        ("unknown key", "Foo=1", "unknown key"),
        ("lower-case key", "tasksmax=10", "unknown key"),
        ("empty value", "TasksMax=", "TasksMax"),
        ("not a count", "TasksMax=abc", "TasksMax"),
        ("negative", "TasksMax=-1", "TasksMax"),
        ("not a size", "MemoryMax=lots", "MemoryMax"),
        ("weight 0", "CPUWeight=0", "CPUWeight"),
        ("weight too big", "CPUWeight=10001", "CPUWeight"),
    ];
    for (what, value, mention) in bad {
        for sub in ["run", "spawn"] {
            let m = marker(0);
            let [p, a] = program(&m);
            let args = [sub, "--name", &t, "-p", value, "--", &p, &a];
            expect_error(&format!("{sub} -p {what}"), daemonic(args), USAGE, &[mention], &m);
        }
    }
    // A valid property needs a family to apply to, which a process outside one does not have.
    let m = marker(0);
    let [p, a] = program(&m);
    let out = daemonic(["spawn", "--name", &t, "-p", "TasksMax=10", "--", &p, &a]);
    expect_error("spawn -p outside a family", out, FAILURE, &["member of a family"], &m);
}

#[harness::test]
fn cgroup_bases() {
    require_cgroup();
    let t = tag();
    let mount = cgroup2_mount().expect("cgroup2 mount");
    let dir = tempdir();
    let file = write_file(dir.path(), "a-file", "", 0o644);
    // Looks like a cgroup (it has a cgroup.procs) but is outside the cgroup2 mount.
    let fake = dir.path().join("fake");
    std::fs::create_dir(&fake).expect("mkdir fake");
    write_file(&fake, "cgroup.procs", "", 0o644);
    let up = "../".repeat(mount.components().count() - 1);
    let fake_rel = format!("{up}{}", fake.display().to_string().trim_start_matches('/'));
    let fake_abs = format!("{}/{fake_rel}", mount.display());
    let nonexistent = format!("/{t}-nonexistent");
    let cases: Vec<(&str, &str, &[&str])> = vec![
        ("nonexistent", &nonexistent, &["not a cgroup v2 directory"]),
        ("a file, not a directory", "cgroup.procs", &["not a cgroup v2 directory"]),
        ("a file outside the mount", &file, &["not a cgroup v2 directory"]),
        ("relative", "relative/path", &["not a cgroup v2 directory"]),
        ("climbs out of the mount (relative)", &fake_rel, &["outside the cgroup2 mount"]),
        ("climbs out of the mount (absolute)", &fake_abs, &["outside the cgroup2 mount"]),
        ("empty", "", &["--cgroup"]),
    ];
    for (what, base, mentions) in cases {
        let m = marker(0);
        let [p, a] = program(&m);
        expect_error(
            &format!("run --cgroup {what}"),
            daemonic(["run", "--name", &t, "--cgroup", base, "--", &p, &a]),
            USAGE,
            mentions,
            &m,
        );
        if base.is_empty() {
            continue; // DAEMONIC_CGROUP= means unset: see `accepted_values`.
        }
        let m = marker(0);
        let [p, a] = program(&m);
        expect_error(
            &format!("DAEMONIC_CGROUP={what}"),
            daemonic(["run", "--name", &t, "--", &p, &a]).env("DAEMONIC_CGROUP", base),
            USAGE,
            mentions,
            &m,
        );
    }
    let left: Vec<_> = std::fs::read_dir(&fake).expect("read fake").flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, [OsString::from("cgroup.procs")], "daemonic wrote outside the cgroup2 mount");
    // A v1 hierarchy (hybrid hosts) is outside the cgroup2 mount too.
    if let Some(v1) = v1_hierarchy() {
        let before: Vec<_> = std::fs::read_dir(&v1).expect("read v1").flatten().map(|e| e.path()).collect();
        let m = marker(0);
        let [p, a] = program(&m);
        let base = v1.to_str().expect("utf-8 v1 path");
        expect_error(
            "run --cgroup a v1 hierarchy",
            daemonic([
                "run",
                "--name",
                &t,
                "--cgroup",
                &format!("{}/{up}{}", mount.display(), &base[1..]),
                "--",
                &p,
                &a,
            ]),
            USAGE,
            &["outside the cgroup2 mount"],
            &m,
        );
        let after: Vec<_> = std::fs::read_dir(&v1).expect("read v1").flatten().map(|e| e.path()).collect();
        let new: Vec<_> = after.iter().filter(|p| !before.contains(p) && p.to_string_lossy().contains(&t)).collect();
        assert!(new.is_empty(), "created in the v1 hierarchy: {new:?}");
    }
}

/// The mount point of a cgroup v1 hierarchy, if this host is hybrid.
fn v1_hierarchy() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mount = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup").then(|| PathBuf::from(mount))
    })
}

/// A base cgroup that exists but that the caller cannot write: the binary runs as uid 65534.
#[harness::test]
fn unwritable_cgroup() {
    require_cgroup();
    let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"].into_iter().find(|p| Path::new(p).exists()) else {
        skip("setpriv is not installed");
    };
    let nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"];
    let probe = daemonic_via(&nobody, ["--help"]).timeout(10.0).run();
    if probe.code != Some(0) {
        skip(&format!("uid 65534 cannot run {}", bin()));
    }
    let t = tag();
    let own_dir = cgroup_dir(&cgroup_of("self").expect("own cgroup")).expect("own cgroup dir");
    // Not named with the tag (other tests would take it for theirs); a family made in it would be.
    let base = CgroupDirGuard::create(&own_dir, &format!("daemonic-test-readonly-{}", std::process::id()));
    for args in [vec!["run", "--name", &t], vec!["run", "--name", &t, "--cgroup", base.as_str()]] {
        let m = marker(0);
        let [p, a] = program(&m);
        let mut args = args.clone();
        args.extend(["--", &p, &a]);
        expect_error(&format!("uid 65534: {args:?}"), daemonic_via(&nobody, &args), FAILURE, &["Delegate=yes"], &m);
    }
    assert!(base.children().is_empty(), "something was created in {}", base.as_str());
}

#[harness::test]
fn backends() {
    require_cgroup();
    let t = tag();
    for value in ["garbage", "", "SYSTEMD", "cgroupfs,systemd"] {
        let m = marker(0);
        let [p, a] = program(&m);
        let flag = format!("--backend={value}");
        expect_error(&flag, daemonic(["run", "--name", &t, &flag, "--", &p, &a]), USAGE, &["backend"], &m);
        let m = marker(0);
        let [p, a] = program(&m);
        if !value.is_empty() {
            // DAEMONIC_BACKEND= means unset: see `accepted_values`.
            expect_error(
                &format!("DAEMONIC_BACKEND={value}"),
                daemonic(["run", "--name", &t, "--", &p, &a]).env("DAEMONIC_BACKEND", value),
                USAGE,
                &["backend"],
                &m,
            );
        }
    }
}

/// `--backend systemd` with no bus to reach: a session bus address naming no socket and an empty
/// runtime directory.
#[harness::test]
fn no_bus() {
    require_cgroup();
    let t = tag();
    let runtime = tempdir();
    let address = format!("unix:path={}/no-bus-here", runtime.path().display());
    let no_bus = |args: &[&str]| {
        daemonic(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env("DAEMONIC_BACKEND", "systemd")
    };
    let m = marker(0);
    let [p, a] = program(&m);
    let out = expect_error(
        "--backend systemd --user, no bus",
        no_bus(&["run", "--backend", "systemd", "--user", "--name", &t, "--", &p, &a]),
        FAILURE,
        &["cannot reach"],
        &m,
    );
    assert!(out.stderr.contains("no-bus-here"), "the error should name the address\n{}", out.dump());
    // Bad input is still bad input (exit 2) when no manager answers, the too-long unit name of
    // a valid name included: it is checked before the manager is asked anything.
    // 64 characters, most of them escaped to four bytes each (`+` is `\x2b`).
    let long = format!("{t}{}", "+".repeat(64 - t.len()));
    for (what, name, mention) in [("a/b", format!("a/{t}"), "name"), ("units too long", long, "255")] {
        let m = marker(0);
        let [p, a] = program(&m);
        let args = ["run", "--backend", "systemd", "--user", "--name", &name, "--", &p, &a];
        expect_error(&format!("no bus, {what}"), no_bus(&args), USAGE, &[mention], &m);
    }
    let left: Vec<_> = std::fs::read_dir(runtime.path()).expect("read runtime dir").flatten().collect();
    assert!(left.is_empty(), "something was created in XDG_RUNTIME_DIR: {left:?}");
}

#[harness::test]
fn programs() {
    require_cgroup();
    let t = tag();
    let dir = tempdir();
    let not_executable = write_file(dir.path(), "not-executable", "#!/bin/sh\necho ran\n", 0o644);
    let a_dir = dir.path().to_str().expect("utf-8").to_string();
    let nowhere = format!("/nonexistent/{t}");
    let not_in_path = format!("{t}-not-in-path");
    let cases: Vec<(&str, Vec<&str>, i32, &str)> = vec![
        ("missing PROGRAM", vec![], USAGE, "<PROGRAM>"),
        ("missing PROGRAM after --", vec!["--"], USAGE, "<PROGRAM>"),
        ("no such file", vec!["--", &nowhere], NOT_FOUND, &nowhere),
        ("not in PATH", vec!["--", &not_in_path], NOT_FOUND, "not found in PATH"),
        ("not executable", vec!["--", &not_executable], NOT_EXECUTABLE, &not_executable),
        ("a directory", vec!["--", &a_dir], NOT_EXECUTABLE, &a_dir),
        ("empty", vec!["--", ""], USAGE, "no program given"),
    ];
    for (what, rest, code, mention) in cases {
        let m = marker(0);
        let mut args = vec!["run", "--name", &t];
        args.extend(rest.iter().copied());
        expect_error(&format!("run: {what}"), daemonic(&args), code, &[mention], &m);
    }
    // `spawn` without PROGRAM is a usage error before it looks for its family.
    for args in [vec!["spawn"], vec!["spawn", "--daemon", "--"]] {
        expect_error(&format!("{args:?}"), daemonic(&args), USAGE, &["<PROGRAM>"], &marker(0));
    }
}

#[harness::test]
fn spawn_outside_a_family() {
    require_cgroup();
    let m = marker(0);
    let [p, a] = program(&m);
    for flags in [vec![], vec!["--daemon"], vec!["--no-daemon", "--stop-timeout", "1"]] {
        let mut args = vec!["spawn"];
        args.extend(flags);
        args.extend(["--", &p, &a]);
        expect_error(&format!("{args:?}"), daemonic(&args), FAILURE, &["member of a family"], &m);
    }
}

#[harness::test]
fn kill_family() {
    require_cgroup();
    let t = tag();
    let unknown = format!("{t}-unknown");
    let cases: Vec<(&str, Vec<OsString>, i32, &[&str])> = vec![
        ("no family", os(&[b"kill"]), USAGE, &["<FAMILY>"]),
        ("unknown", os(&[b"kill", unknown.as_bytes()]), FAILURE, &["no family"]),
        ("empty", os(&[b"kill", b""]), USAGE, &["name"]),
        ("slash", os(&[b"kill", format!("a/{t}").as_bytes()]), USAGE, &["name"]),
        ("dot-dot", os(&[b"kill", b".."]), USAGE, &["name"]),
        ("10,000 characters", os(&[b"kill", "k".repeat(10_000).as_bytes()]), USAGE, &["name"]),
        ("non-UTF-8", os(&[b"kill", b"\xff\xfe"]), USAGE, &["UTF-8"]),
        ("two families", os(&[b"kill", b"a", b"b"]), USAGE, &["unexpected argument"]),
    ];
    for (what, args, code, mentions) in cases {
        expect_error(&format!("kill: {what}"), daemonic(&args), code, mentions, &marker(0));
    }
}

/// Two running families of one name: `kill NAME` is ambiguous, refused, and kills nothing.
#[harness::test]
fn kill_ambiguous_family() {
    require_cgroup();
    // Not this test's tag: the other tests, running meanwhile, would take the twins for theirs.
    let name = format!("twins{}", std::process::id());
    let m = marker(60);
    let mut twins: Vec<Running> =
        (0..2).map(|_| daemonic(["run", "--name", &name, "--", "sleep", &m]).timeout(30.0).spawn()).collect();
    assert!(wait_until(std::time::Duration::from_secs(10), || family_dirs(&name).len() == 2), "two families start");
    let sleeping = || marked_processes(&m).into_iter().filter(|(_, cmd)| cmd.starts_with("sleep")).count();
    assert!(wait_until(std::time::Duration::from_secs(10), || sleeping() == 2), "both sleep");
    let out = daemonic(["kill", &name]).timeout(15.0).run();
    let ids: Vec<String> = family_dirs(&name)
        .iter()
        .filter_map(|d| d.file_name()?.to_str()?.strip_prefix("daemonic-")?.strip_suffix(".family").map(str::to_string))
        .collect();
    let alive = sleeping();
    for id in &ids {
        daemonic(["kill", id]).timeout(15.0).run().assert_code(0);
    }
    for twin in twins.drain(..) {
        twin.wait();
    }
    assert_eq!(out.code, Some(USAGE), "{}", out.dump());
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.dump());
    assert!(out.stderr.starts_with("error: 2 families are named"), "{}", out.dump());
    assert!(ids.iter().all(|id| out.stderr.contains(id.as_str())), "the error lists the ids {ids:?}\n{}", out.dump());
    assert_eq!(alive, 2, "an ambiguous kill killed something");
    assert_no_leftovers(&name, &[&m]);
}

#[harness::test]
fn other_usage_errors() {
    require_cgroup();
    let t = tag();
    let m = marker(0);
    let [p, a] = program(&m);
    let cases: Vec<(&str, Vec<&str>, &[&str])> = vec![
        ("no subcommand", vec![], &["subcommand is required"]),
        ("unknown subcommand", vec!["bogus"], &["unrecognized subcommand"]),
        ("unknown option", vec!["run", "--bogus", "--", &p, &a], &["--bogus"]),
        ("unknown option before PROGRAM", vec!["run", "--stop-timout", "5", &p, &a], &["--stop-timout"]),
        ("unknown spawn option", vec!["spawn", "--demon", &p, &a], &["--demon"]),
        ("-v and -q", vec!["-v", "-q", "ps"], &["cannot be used with"]),
        ("--user and --system", vec!["run", "--name", &t, "--user", "--system", "--", &p, &a], &["--system"]),
        ("--daemon and --no-daemon", vec!["spawn", "--daemon", "--no-daemon", "--", &p, &a], &["--no-daemon"]),
        ("--name without a value", vec!["run", "--name"], &["--name"]),
        ("ps with an argument", vec!["ps", "extra"], &["unexpected argument"]),
        ("is-daemon with an argument", vec!["is-daemon", "extra"], &["unexpected argument"]),
        ("doctor with an argument", vec!["doctor", "extra"], &["unexpected argument"]),
    ];
    for (what, args, mentions) in cases {
        expect_error(what, daemonic(&args), USAGE, mentions, &m);
    }
}

/// A host without cgroup2: every subcommand that needs it says so in one line, exit 1; bad
/// input is still reported as bad input (exit 2), as it is checked first.
#[harness::test]
fn no_cgroup2() {
    require_cgroup();
    // In a private mount namespace (`unshare -m`, which makes mounts private), unmount every
    // cgroup2 mount, then run the binary there. Nothing outside the namespace changes.
    let script = r#"while grep -q ' - cgroup2 ' /proc/self/mountinfo; do
        umount "$(grep ' - cgroup2 ' /proc/self/mountinfo | head -n1 | cut -d' ' -f5)" || exit 99
    done
    exec "$@""#;
    let prefix = ["unshare", "-m", "--", "sh", "-c", script, "sh"];
    let probe = daemonic_via(&prefix, ["--version"]).timeout(10.0).run();
    if probe.code != Some(0) {
        skip(&format!("cannot unmount cgroup2 in a mount namespace:\n{}", probe.dump()));
    }
    let t = tag();
    let m = marker(0);
    let [p, a] = program(&m);
    let missing: &[&str] = &["no cgroup2 filesystem is mounted"];
    let cases: Vec<(Vec<&str>, i32, &[&str])> = vec![
        (vec!["run", "--name", &t, "--", &p, &a], FAILURE, missing),
        (vec!["spawn", "--", &p, &a], FAILURE, missing),
        (vec!["ps"], FAILURE, missing),
        (vec!["kill", &t], FAILURE, missing),
        (vec!["is-daemon"], FAILURE, missing),
        (vec!["run", "--name", "a/b", "--", &p, &a], USAGE, &["name"]),
        (vec!["run", "--name", &t, "-p", "Foo=1", "--", &p, &a], USAGE, &["unknown key"]),
        (vec!["spawn", "--name", "..", "--", &p, &a], USAGE, &["name"]),
        (vec!["kill", "a/b"], USAGE, &["name"]),
    ];
    for (args, code, mentions) in cases {
        expect_error(&format!("no cgroup2: {args:?}"), daemonic_via(&prefix, &args), code, mentions, &m);
    }
    // `doctor` explains rather than fails with one line: exit 1, no panic, the reason on stdout.
    let out = daemonic_via(&prefix, ["doctor"]).timeout(20.0).run();
    assert_eq!(out.code, Some(FAILURE), "{}", out.dump());
    assert!(!out.stderr.contains("panicked"), "{}", out.dump());
    assert!(out.stdout.contains("cgroup2") || out.stdout.contains("cgroup v2"), "{}", out.dump());
}
