//! systemd's service manager over D-Bus: transient units and their jobs.
//!
//! The manager's methods are declared as a zbus proxy (no hand-written messages). zbus 5 is
//! used through its async API, driven from daemonic's synchronous code with `zbus::block_on`,
//! so that waiting for a job can race a timer.
//!
//! A job is done right, as systemd's own tools do it: listen for `JobRemoved` *before* calling
//! `StartTransientUnit` (a fast job would otherwise finish unseen), match the job path it
//! returns, wait with a timeout, and turn any result but `done` into an error that names the
//! unit and the result. A unit of the same name left over from an earlier run is reset
//! (`ResetFailedUnit`, `StopUnit`) and the start retried once.
//!
//! daemonic never calls `Subscribe`, as `systemd-run` does not: the manager sends a job's
//! `JobRemoved` to every client that asked for that job anyway (it tracks them), while one
//! subscriber anywhere makes it send every unit's `UnitNew`, `PropertiesChanged` and
//! `UnitRemoved` to the bus, which cost the user manager about 0.2 ms and dbus-daemon 0.3 ms more
//! per scope here (measured with a scratch client: docs/systemd-backend.md).

pub(crate) mod units;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use zbus::zvariant::{OwnedObjectPath, Value};

use crate::cgroup::unit_name::UnitName;
use crate::error::{Error, ErrorKind, Result};

/// `org.freedesktop.systemd1.Manager`, as far as daemonic uses it.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
pub(crate) trait Manager {
    /// `StartTransientUnit(name, mode, properties, aux)`: creates and starts a unit; returns the job.
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Value<'_>)],
        aux: &[(&str, &[(&str, Value<'_>)])],
    ) -> zbus::Result<OwnedObjectPath>;

    /// `StopUnit(name, mode)`: returns the job.
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// `KillUnit(name, whom, signal)`.
    fn kill_unit(&self, name: &str, whom: &str, signal: i32) -> zbus::Result<()>;

    /// `ResetFailedUnit(name)`: forgets a failed unit.
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;

    /// `GetUnit(name)`: the unit's object, if it is loaded.
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;

    /// `GetUnitByPID(pid)`: the object of the unit process `pid` runs in (0: the caller).
    #[zbus(name = "GetUnitByPID")]
    fn get_unit_by_pid(&self, pid: u32) -> zbus::Result<OwnedObjectPath>;

    /// The manager's version (`252.38-1~deb12u1`).
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;

    /// Sent when a job has finished, with its result (`done`, `failed`, `canceled`, `timeout`,
    /// `dependency`, `skipped`, or a later addition).
    #[zbus(signal)]
    fn job_removed(&self, id: u32, job: OwnedObjectPath, unit: String, result: String) -> zbus::Result<()>;
}

/// Which manager to talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bus {
    /// The calling user's manager (session bus).
    User,
    /// The system manager (system bus).
    System,
}

impl Bus {
    /// `DAEMONIC_BUS` (`user` or `system`) when set, else the user manager for non-root
    /// callers and the system manager for root.
    pub fn default_for_caller() -> Bus {
        if let Some(bus) = std::env::var("DAEMONIC_BUS").ok().as_deref().and_then(Bus::parse) {
            return bus;
        }
        if rustix::process::geteuid().is_root() { Bus::System } else { Bus::User }
    }

    /// `user` or `system`, as recorded on a family.
    pub fn as_str(self) -> &'static str {
        match self {
            Bus::User => "user",
            Bus::System => "system",
        }
    }

    /// Reads [`Bus::as_str`] back.
    pub fn parse(s: &str) -> Option<Bus> {
        match s {
            "user" => Some(Bus::User),
            "system" => Some(Bus::System),
            _ => None,
        }
    }
}

impl std::fmt::Display for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `org.freedesktop.systemd1.Unit`, for a unit's state.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Unit {
    /// `active`, `inactive`, `failed`, `activating`, `deactivating`, ...
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
}

/// One connection per manager for the life of the process (connecting costs about 1 ms).
static CLIENTS: Mutex<Vec<(Bus, Arc<Client>)>> = Mutex::new(Vec::new());

/// The process's connection to the manager on `bus`, made on first use.
pub(crate) fn client(bus: Bus) -> Result<Arc<Client>> {
    connection(bus, || ())
}

/// The process's connection to `bus`; when there is none yet, it is made while holding what
/// `turn` returns (a process that is connected already does not wait for its turn).
pub(crate) fn connection<T>(bus: Bus, turn: impl FnOnce() -> T) -> Result<Arc<Client>> {
    let mut clients = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, c)) = clients.iter().find(|(b, _)| *b == bus) {
        return Ok(Arc::clone(c));
    }
    let _turn = turn();
    // The connection starts threads: after them, growing the descriptor table would wait.
    crate::sys::reserve_high_descriptors();
    let c = Arc::new(Client::connect(bus)?);
    clients.push((bus, Arc::clone(&c)));
    Ok(c)
}

/// A connection to one manager.
pub struct Client {
    manager: ManagerProxy<'static>,
    bus: Bus,
    job_timeout: Duration,
}

/// How long a unit's start or stop job may take by default: systemd's own
/// `DefaultTimeoutStartSec=`. A manager that is merely slow (a loaded or emulated machine, a
/// long queue of jobs) answers well within it; `systemd-run` waits without a limit.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(90);

/// The environment variable that sets another job timeout, in seconds.
pub const JOB_TIMEOUT_ENV: &str = "DAEMONIC_JOB_TIMEOUT";

/// The job timeout of [`JOB_TIMEOUT_ENV`], or [`JOB_TIMEOUT`] when it is unset or empty.
fn job_timeout_from_env() -> Result<Duration> {
    let Some(value) = std::env::var_os(JOB_TIMEOUT_ENV).filter(|v| !v.is_empty()) else {
        return Ok(JOB_TIMEOUT);
    };
    value
        .to_str()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("{JOB_TIMEOUT_ENV}={}: expected a positive number of seconds", value.to_string_lossy()),
            )
        })
}

impl Client {
    /// Connects to the manager on `bus`. A bus that drops the connection while it is busy is
    /// tried again for as long as a job may take; one that is not there at all fails at once.
    ///
    /// The system bus lets 64 connections authenticate at once and each for 5 s at most: 200
    /// members spawned together on a slow host (a VM under emulation) exceed both, and clients
    /// that all retry on the same beat keep each other from ever getting through (none of the
    /// 200 did in 13 minutes). So the pauses grow to 2 s and each is drawn at random from its
    /// upper half, which spreads the retries out until they fit.
    pub fn connect(bus: Bus) -> Result<Client> {
        let deadline = Instant::now() + job_timeout_from_env()?;
        let mut pause = Duration::from_millis(5);
        zbus::block_on(async {
            loop {
                match open(bus).await {
                    Ok(conn) => return Client::on(conn, bus).await,
                    Err(e) if dropped_while_busy(&e) && Instant::now() + pause < deadline => {
                        std::thread::sleep(jittered(pause));
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                    Err(e) => return Err(unavailable(bus, e)),
                }
            }
        })
    }

    /// A client on an established connection, e.g. a private connection to a test manager.
    #[doc(hidden)]
    pub fn with_connection(conn: zbus::Connection, bus: Bus) -> Result<Client> {
        zbus::block_on(Client::on(conn, bus))
    }

    async fn on(conn: zbus::Connection, bus: Bus) -> Result<Client> {
        // No property cache: it would subscribe to PropertiesChanged, one more queue to fill.
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(|e| unavailable(bus, e))?;
        Ok(Client { manager, bus, job_timeout: job_timeout_from_env()? })
    }

    /// How long a start or stop job may take before it counts as failed (default [`JOB_TIMEOUT`],
    /// or [`JOB_TIMEOUT_ENV`]).
    pub fn set_job_timeout(&mut self, timeout: Duration) {
        self.job_timeout = timeout;
    }

    /// Which bus this client is on.
    pub fn bus(&self) -> Bus {
        self.bus
    }

    /// Creates and starts the transient unit `name` with `properties` and waits until its job
    /// is done. A stale unit of the same name is reset and the start retried once.
    pub fn start_transient(&self, name: &UnitName, properties: &[(&str, Value<'_>)]) -> Result<()> {
        self.start_transient_with(name, properties, &[])
    }

    /// [`Client::start_transient`] that also creates the transient units `aux` (e.g. the slice
    /// the unit goes into, with its own description) in the same call.
    pub fn start_transient_with(
        &self,
        name: &UnitName,
        properties: &[(&str, Value<'_>)],
        aux: &[(&str, &[(&str, Value<'_>)])],
    ) -> Result<()> {
        zbus::block_on(async {
            match self.start_once(name, properties, aux).await {
                Err(StartError::Exists) => {
                    // Only a leftover is reset; a unit in use belongs to someone else.
                    let state = self.active_state(name.as_str()).await;
                    if !matches!(state.as_deref(), Some("inactive" | "failed") | None) {
                        return Err(Error::new(
                            ErrorKind::AlreadyExists,
                            format!(
                                "failed to start unit {name}: a unit of that name is {}",
                                state.unwrap_or_default()
                            ),
                        ));
                    }
                    let _ = self.manager.reset_failed_unit(name.as_str()).await;
                    // Listen before stopping, as for starting.
                    if let Ok(mut removed) = self.job_removals(name.as_str()).await
                        && let Ok(job) = self.manager.stop_unit(name.as_str(), "replace").await
                    {
                        let _ = job_result(&mut removed, &job, self.job_timeout).await;
                    }
                    match self.start_once(name, properties, aux).await {
                        Err(StartError::Exists) => Err(Error::new(
                            ErrorKind::AlreadyExists,
                            format!("failed to start unit {name}: a unit of that name exists and could not be reset"),
                        )),
                        Err(StartError::Other(e)) => Err(e),
                        Ok(()) => Ok(()),
                    }
                }
                Err(StartError::Other(e)) => Err(e),
                Ok(()) => Ok(()),
            }
        })
    }

    async fn start_once(
        &self,
        name: &UnitName,
        properties: &[(&str, Value<'_>)],
        aux: &[(&str, &[(&str, Value<'_>)])],
    ) -> Result<(), StartError> {
        // Listen before starting: the job may be gone before the call returns.
        let mut removed = self.job_removals(name.as_str()).await.map_err(|e| StartError::Other(call_error(name, e)))?;
        let job = match self.manager.start_transient_unit(name.as_str(), "fail", properties, aux).await {
            Ok(job) => job,
            Err(zbus::Error::MethodError(err, _, _)) if err.as_str() == "org.freedesktop.systemd1.UnitExists" => {
                return Err(StartError::Exists);
            }
            Err(e) => return Err(StartError::Other(call_error(name, e))),
        };
        match job_result(&mut removed, &job, self.job_timeout).await {
            Some(result) if result == "done" => Ok(()),
            Some(result) => Err(StartError::Other(Error::new(
                ErrorKind::Os,
                format!(
                    "failed to start unit {name}: its start job ended with result \"{result}\"{}",
                    if result == "failed" { scope_hint(name.as_str()) } else { "" }
                ),
            ))),
            None => Err(StartError::Other(Error::new(
                ErrorKind::Os,
                format!(
                    "failed to start unit {name}: the manager did not finish its start job within {:.1} s \
                     ({JOB_TIMEOUT_ENV}=SECS waits longer)",
                    self.job_timeout.as_secs_f64()
                ),
            ))),
        }
    }

    /// Stops the unit `name` (without waiting) and forgets it if it failed.
    pub fn stop(&self, name: &str) -> Result<()> {
        zbus::block_on(async {
            let _ = self.manager.reset_failed_unit(name).await;
            match self.manager.stop_unit(name, "replace").await {
                Ok(_) => Ok(()),
                Err(zbus::Error::MethodError(err, _, _)) if err.as_str() == "org.freedesktop.systemd1.NoSuchUnit" => {
                    Ok(())
                }
                Err(e) => Err(unit_error("stop", name, e)),
            }
        })
    }

    /// Stops the unit `name` and waits until its stop job is done; forgets it if it failed.
    /// A unit that is not loaded counts as stopped.
    pub fn stop_and_wait(&self, name: &str) -> Result<()> {
        zbus::block_on(async {
            let _ = self.manager.reset_failed_unit(name).await;
            let mut removed = self.job_removals(name).await.map_err(|e| unit_error("stop", name, e))?;
            let job = match self.manager.stop_unit(name, "replace").await {
                Ok(job) => job,
                Err(zbus::Error::MethodError(err, _, _)) if err.as_str() == "org.freedesktop.systemd1.NoSuchUnit" => {
                    return Ok(());
                }
                Err(e) => return Err(unit_error("stop", name, e)),
            };
            let result = job_result(&mut removed, &job, self.job_timeout).await;
            let _ = self.manager.reset_failed_unit(name).await;
            match result.as_deref() {
                Some("done") => Ok(()),
                Some(other) => Err(Error::new(
                    ErrorKind::Os,
                    format!("failed to stop unit {name}: its stop job ended with result \"{other}\""),
                )),
                None => Err(Error::new(
                    ErrorKind::Os,
                    format!(
                        "failed to stop unit {name}: the manager did not finish its stop job within {:.1} s \
                         ({JOB_TIMEOUT_ENV}=SECS waits longer)",
                        self.job_timeout.as_secs_f64()
                    ),
                )),
            }
        })
    }

    /// Sends `signal` to the processes of unit `name` (`whom`: `all`, `main` or `control`).
    pub fn kill(&self, name: &str, whom: &str, signal: i32) -> Result<()> {
        zbus::block_on(self.manager.kill_unit(name, whom, signal)).map_err(|e| unit_error("kill", name, e))
    }

    /// The manager's version, or `None` when it cannot be read.
    pub fn version(&self) -> Option<String> {
        zbus::block_on(self.manager.version()).ok()
    }

    /// The unit the calling process runs in, when the manager delegated its cgroup to it
    /// (`Delegate=yes`, a service or a scope); `None` when it did not, or cannot say.
    pub fn caller_delegated_unit(&self) -> Option<String> {
        zbus::block_on(async {
            let path = self.manager.get_unit_by_pid(std::process::id()).await.ok()?;
            let props: zbus::fdo::PropertiesProxy<'_> = self.object(path).await?;
            let unit = zbus::names::InterfaceName::from_static_str("org.freedesktop.systemd1.Unit").ok()?;
            let id: String = props.get(unit, "Id").await.ok()?.try_into().ok()?;
            for kind in ["org.freedesktop.systemd1.Service", "org.freedesktop.systemd1.Scope"] {
                let iface = zbus::names::InterfaceName::from_static_str(kind).ok()?;
                if let Ok(value) = props.get(iface, "Delegate").await {
                    return bool::try_from(value).ok()?.then_some(id);
                }
            }
            None
        })
    }

    /// A proxy of type `P` for the manager's object at `path`, without a property cache (it
    /// would subscribe to `PropertiesChanged`).
    async fn object<'p, P>(&self, path: OwnedObjectPath) -> Option<P>
    where
        P: From<zbus::Proxy<'p>> + zbus::proxy::Defaults,
    {
        zbus::proxy::Builder::new(self.manager.inner().connection())
            .destination("org.freedesktop.systemd1")
            .ok()?
            .path(path)
            .ok()?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .ok()
    }

    /// Whether a unit of that name is loaded.
    pub fn exists(&self, name: &str) -> bool {
        zbus::block_on(self.manager.get_unit(name)).is_ok()
    }

    /// `JobRemoved` signals of the unit `name` only, from a match rule of daemonic's own rather
    /// than the proxy's signal stream, which asks the bus for the manager's unique name
    /// (`GetNameOwner`) each time one is made: a round trip per job for nothing, as the bus
    /// itself checks the sender of a rule with a well-known name.
    ///
    /// The rule filters on the unit name (`arg2`): a stream that is not read while a call is
    /// awaited holds at most the few signals of this unit, where an unfiltered one fills its
    /// queue (64) with other units' jobs on a busy manager, and a full queue stops zbus from
    /// reading the reply of that very call.
    async fn job_removals(&self, name: &str) -> zbus::Result<JobRemovals> {
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender("org.freedesktop.systemd1")?
            .path("/org/freedesktop/systemd1")?
            .interface("org.freedesktop.systemd1.Manager")?
            .member("JobRemoved")?
            .arg(2, name)?
            .build();
        let conn = self.manager.inner().connection();
        Ok(JobRemovals(zbus::MessageStream::for_match_rule(rule, conn, None).await?))
    }

    /// The unit's `ActiveState`, or `None` when it is not loaded.
    async fn active_state(&self, name: &str) -> Option<String> {
        let unit: UnitProxy<'_> = self.object(self.manager.get_unit(name).await.ok()?).await?;
        unit.active_state().await.ok()
    }
}

/// Why a scope of a non-root caller's manager usually fails: the manager moves the scope's
/// process from the caller's cgroup, which it may do only when it can write their common
/// ancestor (a `systemd --user` asks the system manager otherwise, where there is one).
fn scope_hint(unit: &str) -> &'static str {
    if unit.ends_with(".scope") && !rustix::process::geteuid().is_root() {
        " (a user's manager can move a process into a scope only from a cgroup of its own tree: run daemonic \
         inside it, e.g. `systemd-run --user -p Delegate=yes --wait --pipe daemonic run …`)"
    } else {
        ""
    }
}

/// A stream of `JobRemoved` signals of one unit (see [`Client::job_removals`]).
struct JobRemovals(zbus::MessageStream);

/// The result of `job` from a `JobRemoved` subscription opened before the job was created, or
/// `None` when none came within `timeout`. Signals of the unit's other jobs are skipped.
async fn job_result(removed: &mut JobRemovals, job: &OwnedObjectPath, timeout: Duration) -> Option<String> {
    let wait = async {
        while let Some(msg) = removed.0.next().await {
            if let Some(signal) = msg.ok().and_then(JobRemoved::from_message)
                && let Ok(args) = signal.args()
                && &args.job == job
            {
                return Some(args.result);
            }
        }
        None
    };
    let timer = async {
        async_io::Timer::after(timeout).await;
        None
    };
    futures_lite::future::or(wait, timer).await
}

enum StartError {
    Exists,
    Other(Error),
}

/// A connection to `bus`, its unix socket connected on this thread.
///
/// `zbus::Connection::session()` connects a unix socket on the `blocking` crate's thread pool,
/// and since blocking 1.7 the pool's last thread never exits: it wakes every 500 ms for as long
/// as the process lives, a polling loop in every idle `daemonic run` and guardian. Connecting a
/// unix socket does not block for long enough to need a thread, so it is done here and the
/// stream handed to zbus; any other transport (tcp, …) is left to zbus.
async fn open(bus: Bus) -> zbus::Result<zbus::Connection> {
    let address = match bus {
        Bus::User => zbus::Address::session()?,
        Bus::System => zbus::Address::system()?,
    };
    match connect_unix(&address) {
        Some(Ok(stream)) => zbus::connection::Builder::async_io_unix_stream(stream).build().await,
        Some(Err(e)) => Err(zbus::Error::Connection(std::sync::Arc::new(e), address)),
        None => zbus::connection::Builder::address(address)?.build().await,
    }
}

/// `address`'s unix socket (a path or an abstract name), connected; `None` for any other
/// transport.
fn connect_unix(address: &zbus::Address) -> Option<std::io::Result<std::os::unix::net::UnixStream>> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixStream};
    use zbus::address::transport::{Transport, UnixSocket};

    let Transport::Unix(unix) = address.transport() else {
        return None;
    };
    Some(match unix.path() {
        UnixSocket::File(path) => UnixStream::connect(path),
        UnixSocket::Abstract(name) => {
            SocketAddr::from_abstract_name(name.as_encoded_bytes()).and_then(|a| UnixStream::connect_addr(&a))
        }
        _ => return None,
    })
}

/// A pause drawn at random between half of `pause` and `pause`.
fn jittered(pause: Duration) -> Duration {
    use std::hash::BuildHasher;
    // A randomly keyed hash of the clock: random enough to spread clients apart, no dependency.
    let r = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    let half = pause / 2;
    half + Duration::from_nanos(r % (half.as_nanos() as u64 + 1))
}

/// Whether a failed connection attempt met a bus that is there but dropped it (closed during
/// the handshake, reset): worth another try, unlike a bus that does not exist or refuses.
fn dropped_while_busy(e: &zbus::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    match e {
        zbus::Error::InputOutput(io) => {
            matches!(io.kind(), BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof)
        }
        zbus::Error::Connection(io, _) => matches!(io.kind(), BrokenPipe | ConnectionReset | ConnectionAborted),
        zbus::Error::Handshake(_) => true,
        _ => false,
    }
}

fn unavailable(bus: Bus, e: zbus::Error) -> Error {
    let which = match bus {
        Bus::User => {
            "the user's systemd manager (session bus; is DBUS_SESSION_BUS_ADDRESS set and systemd --user running?)"
        }
        Bus::System => "the system's systemd manager (system bus)",
    };
    Error::caused_by(ErrorKind::BackendUnavailable, format!("cannot reach {which}"), e)
}

fn call_error(name: &UnitName, e: zbus::Error) -> Error {
    unit_error("start", name.as_str(), e)
}

/// "failed to {op} unit {name}: …"; a lost connection is [`ErrorKind::BackendUnavailable`] and
/// says so, anything else the manager's own answer.
fn unit_error(op: &str, name: &str, e: zbus::Error) -> Error {
    match e {
        zbus::Error::InputOutput(io) => Error::caused_by(
            ErrorKind::BackendUnavailable,
            format!("failed to {op} unit {name}: the connection to the systemd manager was lost"),
            io,
        ),
        e => Error::caused_by(ErrorKind::Os, format!("failed to {op} unit {name}"), e),
    }
}

/// A checked resource property as a `StartTransientUnit` property.
pub fn resource_property(p: &crate::cgroup::properties::Property) -> (&'static str, Value<'static>) {
    use crate::cgroup::properties::Property;
    let value = match *p {
        Property::TasksMax(v) | Property::MemoryMax(v) | Property::CpuWeight(v) => Value::from(v),
        Property::TasksMaxScale(v) | Property::MemoryMaxScale(v) => Value::from(v),
    };
    (p.key(), value)
}
