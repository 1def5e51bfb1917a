//! The man pages in `docs/man/` and the shell completions in `packaging/completions/` are
//! generated from the clap definitions of the command line. This test generates them again and
//! fails when what is committed differs, so that a changed option never ships with stale docs.
//!
//! To regenerate after changing the command line: `DAEMONIC_BLESS=1 cargo test --test generated`
//! (or `scripts/generate-docs`), then review and commit the diff.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

/// Sections the clap definitions cannot express, appended to `daemonic(1)`.
const MAIN_EXTRA: &str = r#".SH "EXIT STATUS"
.TP
\fBrun\fR
The main member's exit code, or 128+\fIN\fR when signal \fIN\fR killed it.
.TP
0
Success.
.TP
1
Failure: daemonic could not do it here (no cgroup2 mounted, a base cgroup the caller cannot
write, no systemd manager to reach, no such family, \fBspawn\fR outside a family), including
a daemon's attempt to spawn (which prints CPython's words,
\fBdaemonic processes are not allowed to have children\fR), \fBis-daemon\fR for a
non-daemonic caller and \fBdoctor\fR when the default backend cannot work.
.TP
2
Bad usage or input, checked before the host: a missing or unknown argument, a malformed name
(empty, \fB.\fR, \fB..\fR, with \fB/\fR, a control character or non-UTF-8, over 64 bytes, or
too long for systemd once escaped), a stop timeout that is not 0 to 86400 seconds, a bad
\fB\-p\fR, a \fB\-\-cgroup\fR that is not a cgroup v2 directory below the cgroup2 mount, an
ambiguous family; nothing was created.
.TP
126
PROGRAM exists but cannot be executed.
.TP
127
PROGRAM does not exist.
.SH ENVIRONMENT
.TP
\fBDAEMONIC_BACKEND\fR
The backend of \fBrun\fR: cgroupfs, systemd or auto (as \fB\-\-backend\fR); set but empty, it
is ignored.
.TP
\fBDAEMONIC_BUS\fR
The systemd manager of the systemd backend: user or system.
.TP
\fBDAEMONIC_CGROUP\fR
cgroupfs backend: the cgroup to create families under (as \fB\-\-cgroup\fR); set but
empty, it is ignored.
.TP
\fBDAEMONIC_JOB_TIMEOUT\fR
systemd backend: how many seconds the manager may take to start or stop a member's unit before
daemonic gives up (default 90, systemd's \fBDefaultTimeoutStartSec=\fR).
.TP
\fBDAEMONIC_LOG\fR
quiet, warn, info or debug: how much daemonic logs (\fB\-q\fR and \fB\-v\fR override it).
Standard error shows warnings by default; the journal always gets the family's life.
.TP
\fBNOTIFY_SOCKET\fR
Set by systemd for \fBType=notify\fR services: \fBrun\fR sends READY=1 once the main member
runs, STATUS= lines with the family's member counts, and STOPPING=1 when the main member has
ended.
.TP
\fBJOURNAL_STREAM\fR
When it names standard error, daemonic logs to the journal only, with the fields
DAEMONIC_EVENT, DAEMONIC_FAMILY, DAEMONIC_FAMILY_ID, DAEMONIC_MEMBER, DAEMONIC_DAEMON,
DAEMONIC_PID and DAEMONIC_EXITCODE; \fBjournalctl DAEMONIC_FAMILY=\fR\fIname\fR tells a
family's whole life.
.SH FILES
.TP
\fI/usr/lib/systemd/system/daemonic.slice\fR, \fI/usr/lib/systemd/user/daemonic.slice\fR
The slice under which the systemd backend creates its families.
.TP
\fI/usr/share/doc/daemonic/\fR
The user guide and example units for running a service under \fBdaemonic run\fR.
.SH "SEE ALSO"
\fBdaemonic\-run\fR(1), \fBdaemonic\-spawn\fR(1), \fBdaemonic\-ps\fR(1), \fBdaemonic\-kill\fR(1),
\fBdaemonic\-is\-daemon\fR(1), \fBdaemonic\-doctor\fR(1), \fBsystemd.resource\-control\fR(5),
\fBjournalctl\fR(1)
"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every generated file: its path in the repository and its content.
fn generate() -> Vec<(PathBuf, Vec<u8>)> {
    let mut cmd = daemonic::cli::Cli::command();
    cmd.build();
    let mut files = Vec::new();

    let mut page = Vec::new();
    man_page(cmd.clone()).render(&mut page).expect("render daemonic(1)");
    page.extend_from_slice(MAIN_EXTRA.as_bytes());
    files.push((repo().join("docs/man/daemonic.1"), page));

    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("daemonic-{}", sub.get_name());
        let sub = sub.clone().display_name(&name).bin_name(format!("daemonic {}", sub.get_name()));
        let mut page = Vec::new();
        man_page(sub).render(&mut page).expect("render a subcommand's page");
        page.extend_from_slice(b".SH \"SEE ALSO\"\n\\fBdaemonic\\fR(1)\n");
        files.push((repo().join(format!("docs/man/{name}.1")), page));
    }

    for (shell, file) in [(Shell::Bash, "daemonic.bash"), (Shell::Zsh, "_daemonic"), (Shell::Fish, "daemonic.fish")] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "daemonic", &mut script);
        files.push((repo().join("packaging/completions").join(file), script));
    }
    files
}

/// The date in the pages' headers: fixed, so that a page changes only when the CLI does. Bump
/// it with a release.
const DATE: &str = "2026-11-22";

/// A page with a fixed header.
fn man_page(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .date(DATE)
        .source(format!("daemonic {}", env!("CARGO_PKG_VERSION")))
        .manual("daemonic manual")
}

#[test]
fn man_pages_and_completions_match_the_command_line() {
    let bless = std::env::var_os("DAEMONIC_BLESS").is_some_and(|v| v == "1");
    let files = generate();
    let mut stale = Vec::new();
    for (path, content) in &files {
        if std::fs::read(path).ok().as_deref() == Some(content.as_slice()) {
            continue;
        }
        if bless {
            std::fs::create_dir_all(path.parent().expect("a directory")).expect("create the directory");
            std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            eprintln!("regenerated {}", path.display());
        } else {
            stale.push(path.strip_prefix(repo()).unwrap_or(path).display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "generated files differ from the command line's definitions: {stale:?}; \
         run `DAEMONIC_BLESS=1 cargo test --test generated` and commit the result"
    );
    // No page may be left over from a subcommand that no longer exists.
    let expected: Vec<&Path> = files.iter().map(|(p, _)| p.as_path()).collect();
    for entry in std::fs::read_dir(repo().join("docs/man")).expect("docs/man") {
        let path = entry.expect("an entry").path();
        assert!(expected.contains(&path.as_path()), "{} is not generated by anything; remove it", path.display());
    }
}

#[test]
fn every_subcommand_has_a_page_with_its_options() {
    for (path, content) in generate() {
        let text = String::from_utf8(content).expect("UTF-8");
        if path.extension().is_some_and(|e| e == "1") {
            assert!(text.contains(".SH NAME"), "{}", path.display());
            assert!(text.contains(".SH SYNOPSIS"), "{}", path.display());
        }
        if path.ends_with("daemonic-run.1") {
            for option in ["backend", "stop\\-timeout", "cgroup", "property"] {
                assert!(text.contains(option), "daemonic-run(1) lacks --{option}");
            }
        }
    }
}

/// A test binary built with `harness = false` compiles `#[test]` functions out without a word,
/// so a `#[test]` in one of them would be a test that silently never runs. Every such binary
/// (Cargo.toml) and the scenario files they include must mark tests `#[harness::test]`.
#[test]
fn no_plain_test_attribute_where_libtest_does_not_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("read Cargo.toml");
    let mut without_libtest: Vec<PathBuf> = manifest
        .split("[[test]]")
        .skip(1)
        .filter(|entry| entry.contains("harness = false"))
        .filter_map(|entry| entry.lines().find_map(|l| l.strip_prefix("name = ")))
        .map(|name| root.join("tests").join(format!("{}.rs", name.trim_matches('"'))))
        .collect();
    assert!(without_libtest.len() >= 10, "the [[test]] entries were not read: {without_libtest:?}");
    for entry in std::fs::read_dir(root.join("tests/scenarios")).expect("read tests/scenarios") {
        without_libtest.push(entry.expect("an entry").path());
    }
    for path in without_libtest {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let plain = text.lines().position(|l| l.trim() == "#[test]");
        assert!(
            plain.is_none(),
            "{}:{}: #[test] does not run here; use #[harness::test]",
            path.display(),
            plain.unwrap_or(0) + 1
        );
    }
}
