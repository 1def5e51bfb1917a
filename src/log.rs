//! daemonic's log: what happens to a family, as `tracing` events with journal fields.
//!
//! Every event about a family carries `DAEMONIC_EVENT` (what happened: [`Event`]),
//! `DAEMONIC_FAMILY` (the family's name) and `DAEMONIC_FAMILY_ID`; events about a member add
//! `DAEMONIC_MEMBER`, `DAEMONIC_DAEMON` (`true`/`false`) and `DAEMONIC_PID`, and an exit adds
//! `DAEMONIC_EXITCODE` (Python's convention: the exit code, or minus the signal). So
//! `journalctl DAEMONIC_FAMILY=web` tells the whole life of the families named `web`.
//!
//! [`init`] installs daemonic's subscriber; the command line and the guardian call it, and a
//! program using the library may (or install its own subscriber: the events are ordinary
//! `tracing` events, their fields named in lower case).
//! - When standard error is the journal (`JOURNAL_STREAM` names it, as in a systemd service),
//!   events go to the journal only, with their fields.
//! - Otherwise, when the journal's socket answers, they go to the journal and, as readable
//!   lines, to standard error.
//! - Otherwise standard error alone.
//!
//! Levels: standard error shows warnings (`-q`: errors only, `-v`: what was decided and done).
//! The journal always gets a family's whole life (info), and debug events with `-v`: `-q`
//! quiets the terminal, not the record. `DAEMONIC_LOG` (`quiet`, `warn`, `info`, `debug`) sets
//! the level where no option does.

use std::fmt::{Display, Write as _};
use std::io::Write as _;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Level as TLevel, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterFn, LevelFilter};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// The environment variable that sets the level.
pub const ENV: &str = "DAEMONIC_LOG";

/// How much daemonic says on standard error; the journal gets at least the family's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Errors only.
    Quiet = 0,
    /// Warnings (the default).
    Warn = 1,
    /// What was decided and done.
    Info = 2,
    /// Everything.
    Debug = 3,
}

impl Level {
    /// The level `DAEMONIC_LOG` asks for, if it names one.
    pub fn from_env() -> Option<Level> {
        match std::env::var(ENV).ok()?.as_str() {
            "quiet" => Some(Level::Quiet),
            "warn" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }

    /// The word `DAEMONIC_LOG` takes for this level.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Quiet => "quiet",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    fn stderr_filter(self) -> LevelFilter {
        match self {
            Level::Quiet => LevelFilter::ERROR,
            Level::Warn => LevelFilter::WARN,
            Level::Info => LevelFilter::INFO,
            Level::Debug => LevelFilter::DEBUG,
        }
    }

    fn journal_filter(self) -> LevelFilter {
        match self {
            Level::Quiet | Level::Warn => LevelFilter::INFO,
            Level::Info | Level::Debug => LevelFilter::DEBUG,
        }
    }
}

/// Where [`init`] sends events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The journal only: standard error is the journal.
    Journal,
    /// The journal, and readable lines on standard error.
    JournalAndStderr,
    /// Readable lines on standard error.
    Stderr,
    /// Another subscriber was installed before; daemonic's events go there.
    Other,
}

/// The level [`init`] chose, for the guardians this process starts; `u8::MAX` before `init`.
static LEVEL: AtomicU8 = AtomicU8::new(u8::MAX);

/// The level of this process: the one given to [`init`], else `DAEMONIC_LOG`, else warnings.
pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => Level::Quiet,
        1 => Level::Warn,
        2 => Level::Info,
        3 => Level::Debug,
        _ => Level::from_env().unwrap_or(Level::Warn),
    }
}

/// Installs daemonic's subscriber as the global default, at `level` (or `DAEMONIC_LOG`'s, or
/// warnings), with `role` as the prefix of lines on standard error (`daemonic`, `daemonic
/// guardian`). Does nothing but report [`Destination::Other`] when a global subscriber exists.
pub fn init(level: Option<Level>, role: &'static str) -> Destination {
    let level = level.or_else(Level::from_env).unwrap_or(Level::Warn);
    LEVEL.store(level as u8, Ordering::Relaxed);
    let journal = tracing_journald::layer().ok().map(|j| j.with_field_prefix(None));
    let to_journal_only = journal.is_some() && stderr_is_journal();
    let destination = match (&journal, to_journal_only) {
        (Some(_), true) => Destination::Journal,
        (Some(_), false) => Destination::JournalAndStderr,
        (None, _) => Destination::Stderr,
    };
    let journal = journal.map(|j| j.with_filter(ours_or_warnings(level.journal_filter())));
    let stderr = (!to_journal_only).then(|| StderrLines { role }.with_filter(ours_or_warnings(level.stderr_filter())));
    let subscriber = tracing_subscriber::registry().with(journal).with(stderr);
    match tracing::subscriber::set_global_default(subscriber) {
        Ok(()) => destination,
        Err(_) => Destination::Other,
    }
}

/// daemonic's own events up to `max`; other crates' (zbus's) only from warnings up.
fn ours_or_warnings(max: LevelFilter) -> FilterFn<impl Fn(&Metadata<'_>) -> bool> {
    FilterFn::new(move |meta: &Metadata<'_>| {
        let limit = if meta.target().starts_with("daemonic") { max } else { max.min(LevelFilter::WARN) };
        *meta.level() <= limit
    })
    .with_max_level_hint(max)
}

/// Whether standard error is the journal's stream: `JOURNAL_STREAM` is `DEVICE:INODE` of the
/// stream systemd connected, and a service's stderr still being that socket is the proof.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    match rustix::fs::fstat(std::io::stderr().as_fd()) {
        Ok(st) => st.st_dev == dev && st.st_ino == ino,
        Err(_) => false,
    }
}

/// Readable lines on standard error: `daemonic: warning: message`.
struct StderrLines {
    role: &'static str,
}

impl<S: Subscriber> Layer<S> for StderrLines {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let tag = match *event.metadata().level() {
            TLevel::ERROR => "error: ",
            TLevel::WARN => "warning: ",
            _ => "",
        };
        let mut line = String::with_capacity(message.0.len() + 32);
        let _ = writeln!(line, "{}: {tag}{}", self.role, message.0);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// The `message` field of an event.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }
}

/// What happened, the value of `DAEMONIC_EVENT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A family was created (its main member is about to run).
    FamilyStarted,
    /// A member was started.
    Spawned,
    /// A member's process ended; the event carries its exit code.
    Exited,
    /// A member and its non-daemonic descendants have all ended (seen by the guardian).
    Ended,
    /// A member's daemons were ended; the event carries their count.
    DaemonsKilled,
    /// A member's helpers are being stopped, after its daemons; the event carries their count.
    HelpersStopped,
    /// The family's last process ended and its cgroups were removed.
    FamilyEnded,
}

impl Event {
    /// The field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::FamilyStarted => "family-started",
            Event::Spawned => "spawned",
            Event::Exited => "exited",
            Event::Ended => "ended",
            Event::DaemonsKilled => "daemons-killed",
            Event::HelpersStopped => "helpers-stopped",
            Event::FamilyEnded => "family-ended",
        }
    }
}

/// The family an event is about.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FamilyRef<'a> {
    pub name: &'a str,
    pub id: &'a str,
}

/// The member an event is about.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MemberRef<'a> {
    pub family: FamilyRef<'a>,
    pub name: &'a str,
    pub daemon: bool,
    /// 0 when unknown.
    pub pid: u32,
}

/// A family was created, on `backend`, in `cgroup`.
pub(crate) fn family_started(f: FamilyRef<'_>, backend: &str, cgroup: &std::path::Path) {
    tracing::info!(
        daemonic_event = Event::FamilyStarted.as_str(),
        daemonic_family = f.name,
        daemonic_family_id = f.id,
        daemonic_backend = backend,
        daemonic_cgroup = %cgroup.display(),
        "family {} started ({} backend, {})",
        f.id,
        backend,
        cgroup.display()
    );
}

/// An info event about member `$m` (a [`MemberRef`]) with all its fields, then `$rest`: more
/// fields and the message.
macro_rules! member_event {
    ($event:expr, $m:expr, $($rest:tt)+) => {{
        let m: MemberRef<'_> = $m;
        tracing::info!(
            daemonic_event = $event.as_str(),
            daemonic_family = m.family.name,
            daemonic_family_id = m.family.id,
            daemonic_member = m.name,
            daemonic_daemon = m.daemon,
            daemonic_pid = m.pid,
            $($rest)+
        )
    }};
}

/// A member was started.
pub(crate) fn spawned(m: MemberRef<'_>) {
    member_event!(Event::Spawned, m, "{} {} of family {} started, pid {}", kind(m.daemon), m.name, m.family.id, m.pid);
}

/// A member's process ended with `exitcode` (Python's convention).
pub(crate) fn exited(m: MemberRef<'_>, exitcode: i32) {
    member_event!(
        Event::Exited,
        m,
        daemonic_exitcode = exitcode,
        "{} {} of family {} (pid {}) {}",
        kind(m.daemon),
        m.name,
        m.family.id,
        m.pid,
        crate::status::describe(exitcode)
    );
}

/// A member and its non-daemonic descendants have ended.
pub(crate) fn ended(m: MemberRef<'_>) {
    member_event!(
        Event::Ended,
        m,
        "{} {} of family {} ({}) and its non-daemonic descendants have ended",
        kind(m.daemon),
        m.name,
        m.family.id,
        if m.pid == 0 { "pid unknown".to_string() } else { format!("pid {}", m.pid) }
    );
}

/// The `count` daemons of `owner` are being ended (`graceful`: SIGTERM first).
pub(crate) fn daemons_killed(owner: MemberRef<'_>, count: usize, graceful: bool) {
    member_event!(
        Event::DaemonsKilled,
        owner,
        daemonic_daemons = count,
        "{} {} of family {} has ended: {} its {count} daemon{}",
        kind(owner.daemon),
        owner.name,
        owner.family.id,
        if graceful { "stopping (SIGTERM, then SIGKILL after the stop timeout)" } else { "killing (cgroup.kill)" },
        if count == 1 { "" } else { "s" }
    );
}

/// The `count` helpers of `owner` are being stopped: SIGTERM, then SIGKILL after their stop
/// timeouts (its daemons are gone).
pub(crate) fn helpers_stopped(owner: MemberRef<'_>, count: usize) {
    member_event!(
        Event::HelpersStopped,
        owner,
        daemonic_helpers = count,
        "{} {} of family {} has ended and its daemons are gone: stopping its {count} helper{} \
         (SIGTERM, then SIGKILL after the stop timeout)",
        kind(owner.daemon),
        owner.name,
        owner.family.id,
        if count == 1 { "" } else { "s" }
    );
}

/// The family has ended and `removed` cgroups (or units) were removed.
pub(crate) fn family_ended(f: FamilyRef<'_>, removed: usize, lifetime: std::time::Duration) {
    tracing::info!(
        daemonic_event = Event::FamilyEnded.as_str(),
        daemonic_family = f.name,
        daemonic_family_id = f.id,
        daemonic_cgroups_removed = removed,
        "family {} has ended; its {removed} cgroups are removed (guardian ran {:.1} s)",
        f.id,
        lifetime.as_secs_f64()
    );
}

fn kind(daemon: bool) -> &'static str {
    if daemon { "daemon" } else { "member" }
}

/// A decision worth knowing with `-v`.
pub(crate) fn info(msg: impl Display) {
    tracing::info!("{msg}");
}

/// Something went wrong that daemonic worked around.
pub(crate) fn warn(msg: impl Display) {
    tracing::warn!("{msg}");
}

/// Something failed.
pub(crate) fn error(msg: impl Display) {
    tracing::error!("{msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_always_gets_the_family_life() {
        assert_eq!(Level::Warn.stderr_filter(), LevelFilter::WARN);
        assert_eq!(Level::Warn.journal_filter(), LevelFilter::INFO);
        assert_eq!(Level::Quiet.stderr_filter(), LevelFilter::ERROR);
        assert_eq!(Level::Quiet.journal_filter(), LevelFilter::INFO, "-q quiets the terminal, not the record");
        assert_eq!(Level::Info.journal_filter(), LevelFilter::DEBUG);
    }

    #[test]
    fn events_have_stable_names() {
        let all = [
            Event::FamilyStarted,
            Event::Spawned,
            Event::Exited,
            Event::Ended,
            Event::DaemonsKilled,
            Event::FamilyEnded,
        ];
        let names: Vec<_> = all.iter().map(|e| e.as_str()).collect();
        assert_eq!(names, ["family-started", "spawned", "exited", "ended", "daemons-killed", "family-ended"]);
    }
}
