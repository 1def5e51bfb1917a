//! `daemonic run`: start a family around one program and stay until the family has ended.
//!
//! The supervisor creates the family, starts its guardian, then the main member with
//! `clone3(CLONE_INTO_CGROUP)`. It blocks SIGCHLD, SIGTERM, SIGINT and SIGHUP and reads them
//! from a signalfd: the three stop signals are forwarded to the main member through its pidfd
//! (except those the kernel sent for a terminal, which the member got already), and SIGCHLD reaps.
//! The supervisor is a child subreaper, so processes orphaned inside the family are reaped here
//! rather than by PID 1 while it runs. It exits when both the main member and the guardian have
//! ended, the guardian having waited for the non-daemonic descendants, killed the daemons and
//! removed the cgroups. If the supervisor is SIGKILLed, the guardian does all of that anyway.
//! When it reaps the main member it tells the guardian through the family's bell, whose own
//! news of that end may come later (see [`crate::cgroup::bell`]).

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, Signal, WaitOptions, pidfd_send_signal, wait};

use crate::backend::dismantle;
use crate::backend::systemd::Bus;
use crate::backend::{Backend, Choice};
use crate::cgroup::layout::{self, Position, Style};
use crate::cgroup::retire::Retirement;
use crate::cgroup::{self, Hierarchy, bell};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::family::{cgroup_with_systemd, choose_base};
use crate::runtime::founding::{FamilyOptions, Founder};
use crate::runtime::notify::Notifier;
use crate::spawn::Request;
use crate::spawn::command::{Command, Placement, Stdio, default_name};
use crate::{backend::systemd::units, cgroup::properties, log, status, sys};

/// What `daemonic run` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The family's name (default: the program's file name).
    pub name: Option<String>,
    /// The backend.
    pub backend: Backend,
    /// The systemd manager for the systemd backend (default: by the caller's uid).
    pub bus: Option<Bus>,
    /// Resource properties of the main member (`KEY=VALUE`).
    pub properties: Vec<String>,
    /// The cgroup to create the family under.
    pub cgroup: Option<PathBuf>,
    /// The default stop timeout of the family's daemons.
    pub stop_timeout: Option<Duration>,
    /// The main member's program.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
}

/// Runs a family to its end. Returns the main member's status in the shell's convention: its
/// exit code, or 128 + the signal that killed it (C9).
pub fn run(opts: &RunOptions) -> Result<i32> {
    // First of all, before any thread exists (the D-Bus connection starts some): a signal
    // directed at the process goes to any thread that does not block it, and the signalfd would
    // never see it.
    let signals = sys::signalfd(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
        .map_err(|e| Error::os("set up signal handling", e))?;
    // What can be checked without the host comes first, so that bad input is reported as such
    // (exit 2 in the CLI) whatever the host lacks, and before anything exists.
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => default_name(&opts.program),
    };
    layout::validate_name("family", &name)?;
    let properties = opts.properties.iter().map(|p| properties::parse(p)).collect::<Result<Vec<_>>>()?;
    let h = Hierarchy::host()?;
    let own = Position::of_cgroup(&h.cgroup_of(0)?);
    let parent_slice = own.as_ref().map(|p| p.member_dir.as_path());
    if opts.backend == Backend::Systemd {
        // Before the manager is asked anything: a name whose units would be too long is bad
        // input, whether a manager answers or not.
        layout::check_family_units(parent_slice, &name)?;
    }
    let choice = choose_backend(opts, own.as_ref())?;
    log::info(&choice.reason);
    if let (Some(_), Some(base)) = (choice.bus, &opts.cgroup) {
        return Err(cgroup_with_systemd(base));
    }
    if choice.bus.is_some() {
        layout::check_family_units(parent_slice, &name)?;
    }
    let mut cmd = Command::new(&opts.program);
    cmd.args(&opts.args);
    if std::env::var_os(log::ENV).is_none() && log::level() != log::Level::Warn {
        // `-v` and `-q` reach the daemonic commands the family runs (`daemonic spawn`).
        cmd.env(log::ENV, log::level().as_str());
    }
    let prepared = cmd.prepare()?;
    let placement = Placement::from_env()?;
    let founder = Founder::new(choice.bus, parent_slice, || choose_base(&h, opts.cgroup.as_deref()))?;

    rustix::process::set_child_subreaper(Some(Pid::from_raw(std::process::id() as i32).expect("own pid")))
        .map_err(|e| Error::os("become a child subreaper", e.into()))?;

    let request = Request { placement, ..Request::with_all(&prepared, &Stdio::Inherit) };
    let options = FamilyOptions { name: &name, stop_timeout: opts.stop_timeout, properties: &properties };
    let (family, main) = founder.start(&options, &request)?;

    let family_ref = log::FamilyRef { name: &name, id: &family.id };
    let main_ref = log::MemberRef { family: family_ref, name: layout::MAIN_NAME, daemon: false, pid: main.pid as u32 };
    log::family_started(family_ref, founder.backend_name(), &family.dir);
    log::spawned(main_ref);

    let mut notifier = Notifier::new(&h, &family.dir, &family.id);
    if let Some(n) = &mut notifier {
        n.ready();
    }

    let mut main_status: Option<i32> = None;
    let mut forwarded: Option<i32> = None;
    let mut guardian_status: Option<i32> = None;
    while main_status.is_none() || guardian_status.is_none() {
        let timeout = notifier.as_ref().and_then(Notifier::timeout);
        let mut fds = vec![PollFd::new(&signals, PollFlags::IN)];
        if let Some(n) = &notifier {
            fds.push(PollFd::from_borrowed_fd(n.fd(), PollFlags::IN));
        }
        sys::poll(&mut fds, timeout).map_err(|e| Error::os("wait for signals", e))?;
        drop(fds);
        while let Some((sig, from_terminal)) =
            sys::read_signal(signals.as_fd()).map_err(|e| Error::os("read signals", e))?
        {
            if sig == libc::SIGCHLD {
                let was_running = main_status.is_none();
                reap_children(main.pid, family.guardian.pid, &mut main_status, &mut guardian_status)?;
                if let (true, Some(status)) = (was_running, main_status) {
                    log::exited(main_ref, status);
                    if let Some(n) = &mut notifier {
                        n.stopping(status);
                    }
                    if guardian_status.is_none() {
                        // The guardian's own news of it may come up to 10 ms late (see
                        // `bell::ring_main_ended`).
                        bell::ring_main_ended(&family.dir);
                    }
                }
            } else if main_status.is_none() && !from_terminal {
                if let Some(s) = Signal::from_named_raw(sig) {
                    let _ = pidfd_send_signal(&main.pidfd, s);
                    forwarded = Some(sig);
                }
            }
        }
        if let Some(n) = &mut notifier {
            n.update();
        }
    }
    if guardian_status != Some(0) || family.dir.exists() {
        log::warn(format!("the guardian of {} ended with status {guardian_status:?}; cleaning up here", family.id));
        clean_up_without_guardian(&family.dir, &family.main_dir)?;
    }
    let status = main_status.expect("loop ends with a status");
    if status < 0 && forwarded != Some(-status) {
        // Not a signal daemonic passed on: someone stopped the member from outside
        // (`systemctl stop` of its scope or of the family's slice, `kill`, the OOM killer).
        log::warn(format!(
            "the main member of family {} (pid {}) was killed by {} from outside daemonic",
            family.id,
            main.pid,
            status::signal_name(-status)
        ));
    }
    Ok(status::shell_status(status))
}

/// The backend of a new family. Nested in a family, it must be that family's: a family of
/// units cannot live in a member's directory, nor a family of directories in a member's scope.
fn choose_backend(opts: &RunOptions, own: Option<&Position>) -> Result<Choice> {
    let Some(own) = own else {
        if opts.backend == Backend::Auto && opts.cgroup.is_some() {
            let reason = "backend auto: cgroupfs, as a cgroup base was given (--cgroup, DAEMONIC_CGROUP)".into();
            return Ok(Choice { bus: None, reason });
        }
        return opts.backend.resolve(opts.bus);
    };
    let style = own.style();
    let inherited = match style {
        Style::Dirs => Choice { bus: None, reason: format!("backend cgroupfs: the one of family {}", own.family_id) },
        Style::Units => {
            let bus = units::family_bus(&own.family_dir);
            Choice { bus: Some(bus), reason: format!("backend systemd: the one of family {}", own.family_id) }
        }
    };
    match (opts.backend, style) {
        (Backend::Auto, _) | (Backend::Cgroupfs, Style::Dirs) | (Backend::Systemd, Style::Units) => Ok(inherited),
        (requested, _) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "this process is a member of family {} on the {} backend, and a nested family must use the same \
                 backend (not {requested})",
                own.family_id,
                if style == Style::Units { "systemd" } else { "cgroupfs" }
            ),
        )),
    }
}

/// Reaps every child that has ended; records the statuses of the main member and the guardian.
fn reap_children(
    main: i32,
    guardian: i32,
    main_status: &mut Option<i32>,
    guardian_status: &mut Option<i32>,
) -> Result<()> {
    loop {
        match wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                let Some(code) = status::exitcode(&status) else { continue };
                // Only the first process reaped with the main member's (or the guardian's) PID
                // is it. Once reaped, its PID is free, and an orphan of the family may get it and
                // be reaped here too (a killed daemon's child): its status is not the member's.
                let pid = pid.as_raw_nonzero().get();
                if pid == main && main_status.is_none() {
                    *main_status = Some(code);
                } else if pid == guardian && guardian_status.is_none() {
                    *guardian_status = Some(code);
                }
            }
            Ok(None) | Err(rustix::io::Errno::CHILD) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::os("reap children", e.into())),
        }
    }
}

/// What the guardian would have done, for the case where it died.
fn clean_up_without_guardian(family: &std::path::Path, main: &std::path::Path) -> Result<()> {
    cgroup::wait_unpopulated(main, None)?;
    for container in [layout::daemons_dir(main), layout::helpers_dir(main)] {
        if container.exists() {
            Retirement::start(&container, family)?.finish()?;
        }
    }
    cgroup::kill(family)?;
    cgroup::wait_unpopulated(family, None)?;
    dismantle(family)
}
