//! **Layer `cli`**, the top: the `daemonic` binary's commands, over the library's public API
//! and the runtime, with `doctor` (what this host supports).
//!
//! The `daemonic` command line: argument parsing, the `spawn`, `ps`, `is-daemon` and `kill`
//! subcommands, and the mapping of errors to exit codes.
//!
//! Errors print one line, `error: …` (clap's usage errors too, shortened to their first
//! paragraph), except a daemon's attempt to spawn, which prints CPython's words alone:
//! `daemonic processes are not allowed to have children`.
//!
//! Exit codes: a command's own status where it runs a program (`run`: the main member's code,
//! or 128+N when signal N killed it); 0 success; 1 failure (including a daemon that tries to
//! spawn, and `is-daemon` for a non-daemon); 2 bad usage or input; 126 a program that cannot be
//! executed; 127 a program that does not exist.

mod doctor;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::backend::Backend;
use crate::backend::members::{Members, NewMember};
use crate::backend::systemd::Bus;
use crate::cgroup::Hierarchy;
use crate::cgroup::layout::{self, Position};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::family::{check_contain, filters_for, member_kind};
use crate::runtime::inspect::{self, FamilyInfo};
use crate::runtime::supervise::{RunOptions, run};
use crate::spawn::command::Command;
use crate::sys;

/// Python's daemon processes, enforced by the kernel.
#[derive(Debug, Parser)]
#[command(name = "daemonic", version, about, long_about = None)]
pub struct Cli {
    /// Say more: what was decided and done (which backend and why, each spawn and exit).
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    verbose: bool,
    /// Say nothing but errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run PROGRAM as the main member of a new family; exit when the family has ended.
    Run(RunArgs),
    /// From inside a member: become PROGRAM as a new member, child of the caller.
    Spawn(SpawnArgs),
    /// List running families and their members; another user's family is one line, its details
    /// hidden (root sees every family in full).
    Ps {
        /// Print JSON: {"families":[{"id","name","owner","hidden","cgroup","guardian","members":[{"name","pid","daemon","kind","state","cgroup","unit","start_time"}]}]}
        /// ("unit", the member's scope, only on the systemd backend; another user's family is
        /// "hidden": true, with "cgroup" and "guardian" null and no members, except for root).
        #[arg(long)]
        json: bool,
    },
    /// Print whether the calling process is daemonic; exit 0 when it is, 1 when not.
    IsDaemon,
    /// Kill a whole family (members of both kinds) at once and remove its cgroups; only your own
    /// families (root: any).
    Kill {
        /// The family's id (as `daemonic ps` shows it) or its name, when unique.
        family: String,
    },
    /// Check this host (cgroup v2, delegation, kernel features, systemd managers) and explain
    /// what works, what is missing and how to fix it; exit 0 when `daemonic run` can work here
    /// on its default backend, 1 when not.
    Doctor,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The family's name (default: PROGRAM's file name).
    #[arg(long)]
    name: Option<OsString>,
    /// Where the family's cgroups come from: cgroupfs (directories below a delegated cgroup),
    /// systemd (a transient scope per member), or auto (systemd when a manager answers).
    #[arg(long, env = "DAEMONIC_BACKEND", default_value = "auto", value_parser = parse_backend)]
    backend: Backend,
    /// systemd backend: use the calling user's manager (the default for non-root callers).
    #[arg(long, conflicts_with = "system")]
    user: bool,
    /// systemd backend: use the system manager (the default for root).
    #[arg(long)]
    system: bool,
    /// A resource property of the main member, as `systemd-run -p` (TasksMax=, MemoryMax=,
    /// CPUWeight=): its unit's on systemd, its cgroup's pids.max, memory.max, cpu.weight on
    /// cgroupfs (where the base hands the controller down); repeatable.
    #[arg(short = 'p', long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// cgroupfs backend: the cgroup to create the family under (default: the caller's own cgroup).
    #[arg(long, env = "DAEMONIC_CGROUP", value_name = "PATH")]
    cgroup: Option<PathBuf>,
    /// Send SIGTERM to daemons and wait this long before SIGKILL (default: immediate SIGKILL).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    stop_timeout: Option<Duration>,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM")]
    command: Vec<OsString>,
}

#[derive(Debug, Args)]
struct SpawnArgs {
    /// Make the new member daemonic.
    #[arg(long, conflicts_with = "no_daemon")]
    daemon: bool,
    /// Make the new member non-daemonic.
    #[arg(long)]
    no_daemon: bool,
    /// Make the new member a helper of the caller (a server its children talk to): not waited
    /// for, stopped (SIGTERM, then SIGKILL after its stop timeout) only after the caller's
    /// daemons are gone.
    #[arg(long, conflicts_with = "daemon")]
    helper: bool,
    /// The member's name (default: PROGRAM's file name).
    #[arg(long)]
    name: Option<OsString>,
    /// Let a daemonic member have children, confined to its cgroup.
    #[arg(long)]
    allow_children: bool,
    /// Run the member in a PID namespace of its own, so that none of its descendants can
    /// outlive it, even one that moves itself to another cgroup (needs root).
    #[arg(long)]
    contain: bool,
    /// For a daemon: SIGTERM and this long before SIGKILL when its family ends; for a helper,
    /// how long it has after SIGTERM (default 1).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    stop_timeout: Option<Duration>,
    /// A resource property of the new member, as `systemd-run -p` (TasksMax=, MemoryMax=,
    /// CPUWeight=): its unit's on systemd, its cgroup's on cgroupfs (a daemon, or a member of a
    /// main member's family dir; the controller must reach the family); repeatable.
    #[arg(short = 'p', long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM")]
    command: Vec<OsString>,
}

fn parse_backend(s: &str) -> std::result::Result<Backend, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

/// Seconds as a non-negative decimal number, at most one day.
fn parse_seconds(s: &str) -> std::result::Result<Duration, String> {
    let secs: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} must be zero or a positive number of seconds"));
    }
    if secs > 86_400.0 {
        return Err(format!("{s:?} is more than a day (86400 s)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The exit code for an error.
pub fn exit_code(e: &Error) -> u8 {
    match e.kind() {
        ErrorKind::InvalidInput => 2,
        ErrorKind::ProgramNotExecutable => 126,
        ErrorKind::ProgramNotFound => 127,
        _ => 1,
    }
}

/// A name given on the command line, which must be UTF-8 (it becomes a cgroup directory and a
/// unit name); [`layout::validate_name`] checks the rest.
fn utf8_name(what: &str, name: Option<OsString>) -> Result<Option<String>> {
    name.map(|n| {
        n.into_string().map_err(|n| {
            Error::new(ErrorKind::InvalidInput, format!("invalid {what} name {n:?}: it is not valid UTF-8"))
        })
    })
    .transpose()
}

/// A usage error of clap (unknown option, missing PROGRAM, a value its parser refused) as one
/// line, like every other error: clap's message without its usage and help paragraphs, and where
/// to read more. Exit code 2. `--help` and `--version` print as clap prints them, exit 0.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind as Kind;
    match e.kind() {
        Kind::DisplayHelp | Kind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Kind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let subcommands: Vec<_> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
            eprintln!("error: a subcommand is required: one of {} (see `daemonic --help`)", subcommands.join(", "));
            return ExitCode::from(2);
        }
        _ => {}
    }
    // Errors about a value have no usage paragraph; the subcommand is then the first word of the
    // command line that names one.
    let cmd = <Cli as clap::CommandFactory>::command();
    let sub = std::env::args_os()
        .skip(1)
        .find_map(|a| cmd.get_subcommands().find(|c| a == c.get_name()).map(|c| format!("daemonic {}", c.get_name())));
    eprintln!("error: {}", one_line(&e.render().to_string(), sub.as_deref().unwrap_or("daemonic")));
    ExitCode::from(2)
}

/// Joins the lines of a clap error message up to its "Usage:" paragraph, and points at the help
/// of the (sub)command that usage names, else of `command`.
fn one_line(text: &str, command: &str) -> String {
    let mut words = Vec::new();
    let mut command = command.to_string();
    for line in text.lines().map(str::trim) {
        if let Some(usage) = line.strip_prefix("Usage:") {
            let named: Vec<_> = usage.split_whitespace().take_while(|w| !w.starts_with(['[', '<', '-'])).collect();
            if !named.is_empty() {
                command = named.join(" ");
            }
            break;
        }
        if line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            words.push(line);
        }
    }
    let message = words.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    format!("{message} (see `{command} --help`)")
}

/// The command line as clap parses it here: `DAEMONIC_BACKEND` and `DAEMONIC_CGROUP` set but
/// empty mean unset, as they do for the library ([`Backend::from_env`],
/// `family::base_candidate`), instead of clap's "a value is required for '--cgroup'" about an
/// option nobody typed. The options themselves given empty are still refused.
fn command() -> clap::Command {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    for (arg, var) in [("backend", "DAEMONIC_BACKEND"), ("cgroup", "DAEMONIC_CGROUP")] {
        if std::env::var_os(var).is_some_and(|v| v.is_empty()) {
            cmd = cmd.mut_subcommand("run", |run| run.mut_arg(arg, |a| a.env(None)));
        }
    }
    cmd
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let parsed = command().try_get_matches().and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let level = if cli.verbose {
        Some(crate::log::Level::Info)
    } else if cli.quiet {
        Some(crate::log::Level::Quiet)
    } else {
        None
    };
    crate::log::init(level, "daemonic");
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) if e.kind() == ErrorKind::DaemonChildren => {
            // CPython's words alone, so that scripts can match the line exactly (C3).
            eprintln!("{e}");
            ExitCode::from(exit_code(&e))
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Cmd::Run(a) => {
            let mut command = a.command.into_iter();
            let opts = RunOptions {
                name: utf8_name("family", a.name)?,
                backend: a.backend,
                bus: if a.user {
                    Some(Bus::User)
                } else if a.system {
                    Some(Bus::System)
                } else {
                    None
                },
                properties: a.properties,
                cgroup: a.cgroup,
                stop_timeout: a.stop_timeout,
                program: command.next().expect("clap requires PROGRAM"),
                args: command.collect(),
            };
            run(&opts).map(|status| status.clamp(0, 255) as u8)
        }
        Cmd::Spawn(a) => spawn_command(a).map(|never| match never {}),
        Cmd::Ps { json } => ps(json).map(|()| 0),
        Cmd::IsDaemon => {
            let me = crate::current_process()?;
            println!("{}", me.daemon);
            Ok(if me.daemon { 0 } else { 1 })
        }
        Cmd::Kill { family } => {
            check_family_key(&family)?;
            let h = Hierarchy::host()?;
            let killed = inspect::kill(&h, &family)?;
            eprintln!("killed family {} ({} members)", killed.id, killed.members.len());
            Ok(0)
        }
        Cmd::Doctor => crate::cli::doctor::run(&mut std::io::stdout().lock())
            .map(|works| if works { 0 } else { 1 })
            .map_err(|e| Error::os("write the doctor's report", e)),
    }
}

/// What `daemonic kill` accepts: a family's id (`<name>-<N>`) or name. Anything else (empty,
/// `/`, `..`, a control character) is refused as bad input rather than looked for.
fn check_family_key(key: &str) -> Result<()> {
    let name = match key.rsplit_once('-') {
        Some((name, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => key,
    };
    layout::validate_name("family", name)
}

/// `daemonic spawn`: this process becomes the new member. Returns only on error.
fn spawn_command(a: SpawnArgs) -> Result<std::convert::Infallible> {
    // Bad input first, before the host is looked at (exit 2 wherever this runs).
    let given_name = utf8_name("member", a.name)?;
    if let Some(n) = &given_name {
        layout::validate_name("member", n)?;
    }
    let properties = a.properties.iter().map(|p| crate::cgroup::properties::parse(p)).collect::<Result<Vec<_>>>()?;
    let h = Hierarchy::host()?;
    let own = h.cgroup_of(0)?;
    let me = Position::of_cgroup(&own).ok_or_else(|| {
        Error::new(
            ErrorKind::NotInFamily,
            "daemonic spawn must be called by a member of a family, and this process is in none; \
             start the calling program under `daemonic run`",
        )
    })?;
    if !me.allows_children() {
        return Err(Error::daemon_children());
    }
    let given = if a.daemon {
        Some(true)
    } else if a.no_daemon {
        Some(false)
    } else {
        None
    };
    let kind = member_kind(a.helper, given, me.daemon)?;
    let daemon = kind.is_daemon();
    let mut args = a.command.into_iter();
    let program = args.next().expect("clap requires PROGRAM");
    let mut cmd = Command::new(&program);
    cmd.args(args);
    if let Some(n) = given_name {
        cmd.name(n);
    }
    let name = cmd.effective_name()?;
    check_contain(a.contain, daemon, a.allow_children)?;
    let prepared = cmd.prepare()?;
    let filters = filters_for(daemon, a.allow_children)?;
    let seq = u64::from(std::process::id());
    let member = NewMember {
        owner: &me,
        name: &name,
        kind,
        stop_timeout: a.stop_timeout,
        allow_children: a.allow_children,
        properties: &properties,
        seq,
    };
    let placed = Members::of(&me)?.place_caller(&member, &own)?;
    let undo = |e: Error| placed.undo(&own, e);
    for f in filters {
        sys::install_filter(f).map_err(|e| undo(Error::os("install the no-fork seccomp filter", e)))?;
    }
    let family = crate::log::FamilyRef { name: &me.family_name, id: &me.family_id };
    crate::log::spawned(crate::log::MemberRef { family, name: &name, daemon, pid: std::process::id() });
    if a.contain {
        // A PID namespace can only be made for a new process: this one stays as the member's
        // process, with the namespace's init as its child and the program under that.
        let code = run_contained(&prepared).map_err(&undo)?;
        std::process::exit(code);
    }
    let program_path =
        PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(prepared.program.as_bytes()));
    let err = std::process::Command::new(&program_path).arg0(&program).args(cmd.get_args()).exec();
    Err(undo(crate::spawn::exec_error(&program_path, err)))
}

/// `daemonic spawn --contain`: starts the program in a PID namespace of its own (in this
/// process's cgroup, which is the new member's), forwards the stop signals to it, and returns
/// its exit code once it has ended.
fn run_contained(prepared: &crate::spawn::command::Prepared) -> Result<i32> {
    use rustix::event::{PollFd, PollFlags};
    use rustix::process::pidfd_send_signal;
    use std::os::fd::AsFd;
    const FORWARDED: [i32; 6] =
        [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];
    let signals = sys::signalfd(&FORWARDED).map_err(|e| Error::os("set up signal handling", e))?;
    let child = crate::spawn::spawn(&crate::spawn::Request {
        contain: true,
        ..crate::spawn::Request::with_all(prepared, &crate::Stdio::Inherit)
    })?;
    loop {
        let mut fds = [PollFd::new(&signals, PollFlags::IN), PollFd::new(&child.pidfd, PollFlags::IN)];
        sys::poll(&mut fds, None).map_err(|e| Error::os("wait for the contained program", e))?;
        while let Some((signo, _)) = sys::read_signal(signals.as_fd()).map_err(|e| Error::os("read signals", e))? {
            if let Some(sig) = rustix::process::Signal::from_named_raw(signo) {
                let _ = pidfd_send_signal(&child.pidfd, sig);
            }
        }
        let ended = crate::spawn::wait_pidfd(child.pidfd.as_fd(), false)
            .map_err(|e| Error::os("wait for the contained program", e))?;
        if let Some(status) = ended {
            return Ok(crate::status::exitcode(&status).map_or(1, crate::status::shell_status));
        }
    }
}

fn ps(json: bool) -> Result<()> {
    let h = Hierarchy::host()?;
    let families = inspect::families(&h)?;
    let uid = inspect::caller_uid();
    if json {
        /// A family as `ps --json` prints it: another user's without its cgroup, guardian and
        /// members (root sees every family in full).
        #[derive(serde::Serialize)]
        struct Family<'a> {
            id: &'a str,
            name: &'a str,
            owner: u32,
            hidden: bool,
            cgroup: Option<&'a str>,
            guardian: Option<u32>,
            members: &'a [inspect::MemberInfo],
        }
        #[derive(serde::Serialize)]
        struct Out<'a> {
            families: Vec<Family<'a>>,
        }
        let shown = families
            .iter()
            .map(|f: &FamilyInfo| {
                let visible = f.visible_to(uid);
                Family {
                    id: &f.id,
                    name: &f.name,
                    owner: f.owner,
                    hidden: !visible,
                    cgroup: visible.then_some(f.cgroup.as_str()),
                    guardian: f.guardian.filter(|_| visible),
                    members: if visible { &f.members } else { &[] },
                }
            })
            .collect();
        let text = serde_json::to_string_pretty(&Out { families: shown })
            .map_err(|e| Error::caused_by(ErrorKind::Os, "failed to write JSON", e))?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "{:<24} {:<16} {:>8} {:<6} {:<8} {:<20} UNIT/CGROUP",
        "FAMILY", "MEMBER", "PID", "DAEMON", "STATE", "STARTED"
    );
    for f in &families {
        if !f.visible_to(uid) {
            println!(
                "{:<24} {:<16} {:>8} {:<6} {:<8} {:<20} (owned by uid {}; details hidden)",
                f.id, "-", "-", "-", "-", "-", f.owner
            );
            continue;
        }
        for m in &f.members {
            println!(
                "{:<24} {:<16} {:>8} {:<6} {:<8} {:<20} {}",
                f.id,
                m.name,
                m.pid.map_or("-".into(), |p| p.to_string()),
                m.daemon,
                m.state,
                m.start_time.map_or("-".into(), inspect::format_utc),
                m.unit.as_ref().unwrap_or(&m.cgroup)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_are_validated() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        for bad in ["-1", "abc", "inf", "NaN", "1e9", ""] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_errors_are_one_line() {
        for args in [
            &["daemonic", "run"][..],
            &["daemonic", "run", "--stop-timeout", "-1", "--", "true"],
            &["daemonic", "run", "--backend", "x", "--", "true"],
            &["daemonic", "kill"],
            &["daemonic", "bogus"],
            &["daemonic", "ps", "extra"],
        ] {
            let e = Cli::try_parse_from(args).expect_err("a usage error");
            let line = one_line(&e.render().to_string(), "daemonic x");
            assert!(!line.contains('\n'), "{args:?}: {line:?}");
            assert!(!line.starts_with("error:"), "{args:?}: {line:?}");
            assert!(line.ends_with("--help`)"), "{args:?}: {line:?}");
        }
        let e = Cli::try_parse_from(["daemonic", "run"]).expect_err("missing PROGRAM");
        assert_eq!(
            one_line(&e.render().to_string(), "daemonic x"),
            "the following required arguments were not provided: <PROGRAM>... (see `daemonic run --help`)"
        );
    }

    #[test]
    fn family_keys_are_checked() {
        for good in ["web", "web-42", &format!("{}-1234567", "x".repeat(64))] {
            check_family_key(good).expect(good);
        }
        for bad in ["", ".", "..", "a/b", "../x-1", "a\u{1}b", &"x".repeat(10_000)] {
            assert_eq!(check_family_key(bad).expect_err(bad).kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn run_takes_program_arguments_verbatim() {
        let cli =
            Cli::try_parse_from(["daemonic", "run", "--name", "web", "--", "sh", "-c", "exit 3"]).expect("parses");
        let Cmd::Run(a) = cli.command else { panic!("run expected") };
        assert_eq!(a.command, ["sh", "-c", "exit 3"].map(OsString::from));
        assert_eq!(a.name.as_deref(), Some(std::ffi::OsStr::new("web")));
        // Without `--`, everything after PROGRAM is still its own.
        let cli = Cli::try_parse_from(["daemonic", "run", "sh", "-c", "exit 3", "--name", "x"]).expect("parses");
        let Cmd::Run(a) = cli.command else { panic!("run expected") };
        assert_eq!(a.command, ["sh", "-c", "exit 3", "--name", "x"].map(OsString::from));
        assert_eq!(a.name, None);
        // A misspelt option is an error, not a program named `--stop-timout`.
        let e = Cli::try_parse_from(["daemonic", "run", "--stop-timout", "5", "sleep", "1"]).expect_err("unknown");
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        let e = Cli::try_parse_from(["daemonic", "spawn", "--daemon", "--no-daemon", "--", "x"]).expect_err("conflict");
        assert!(e.to_string().contains("cannot be used with"));
    }
}
