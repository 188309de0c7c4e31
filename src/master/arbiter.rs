//! The arbiter (gunicorn's name): forks the workers and keeps the right
//! number of them alive. Its loop waits on the signal self-pipe (woken at
//! least once a second), then acts: signals → reap → murder → manage.
//!
//! * A worker that exits with [`WORKER_BOOT_ERROR`] or [`APP_LOAD_ERROR`]
//!   halts the server: respawning a broken app forever helps no one.
//! * Any other death is replaced at once; a worker that keeps dying within a
//!   second of boot is replaced with a growing delay.
//! * No exit path leaves a worker behind: stops end with SIGKILL for the
//!   stragglers, and dropping the arbiter kills and reaps whatever is left.
//!
//! The arbiter never touches Python; the child side of a fork only hands
//! over to [`worker::run`] and `_exit`s with its code.
//!
//! Life-cycle duties (see `docs/signals.md`): the pid file is written once
//! the first workers are forked and removed on every way out; systemd hears
//! `READY=1` once a worker serves, `RELOADING=1`/`READY=1` around a HUP and
//! `STOPPING=1` on a stop; USR1 reopens the log here and in every worker;
//! USR2 starts a new master on the same sockets (binary upgrade).

use super::exposition;
use super::metrics_endpoint::{MetricsEndpoint, Page, PLAIN_TEXT, PROMETHEUS_TEXT};
use super::pidfile::{PidFile, PidFileError};
use super::scoreboard::{Ending, LiveWorker, Scoreboard};
use super::signals::{self, MasterSignal, SignalQueue};
use super::sockets::BoundSockets;
use super::systemd::{Notification, Notifier};
use super::upgrade::{self, LaunchCommand};
use crate::config::Settings;
use crate::heartbeat::{Heartbeat, Phase};
use crate::listener::Listener;
use crate::metrics::WorkerMetrics;
use crate::os_error::os_error_text;
use crate::worker::{self, WorkerContext, APP_LOAD_ERROR, WORKER_BOOT_ERROR};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpid, pipe2, ForkResult, Pid};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The loop wakes at least this often even without signals.
const TICK: Duration = Duration::from_secs(1);
/// While stopping, how often to look for exited workers between signals.
const STOP_TICK: Duration = Duration::from_millis(100);
/// How long a fast stop (INT, QUIT) waits before SIGKILL.
const FAST_STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// A worker that dies sooner than this after boot is crash-looping.
const QUICK_DEATH: Duration = Duration::from_secs(1);
/// The first delay before replacing a crash-looping worker; it doubles with
/// each further quick death, up to [`MAX_RESPAWN_DELAY`].
const FIRST_RESPAWN_DELAY: Duration = Duration::from_millis(100);
const MAX_RESPAWN_DELAY: Duration = Duration::from_secs(10);
/// How long a worker may take to boot (start Python, import the app)
/// before it is killed; booting does not count against `--timeout`.
const BOOT_LIMIT: Duration = Duration::from_secs(120);
/// How long a worker sent SIGABRT (after `--timeout`) has to write its
/// traceback and exit before SIGKILL.
const ABORT_GRACE: Duration = Duration::from_secs(3);
/// A stopping worker ends its own graceful stop at the graceful timeout
/// (closing the responses still in flight, running its exit hooks); the
/// master's SIGKILL comes this much later, for a worker stuck in the app.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// The most of a boot report the master reads.
const BOOT_REPORT_LIMIT: u64 = 4096;

/// Why the arbiter stopped with an error. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum ArbiterError {
    /// A worker exited with [`WORKER_BOOT_ERROR`]; the text is its report.
    #[error("worker failed to boot: {0}")]
    WorkerBoot(String),
    /// A worker exited with [`APP_LOAD_ERROR`]; the text is its report.
    #[error("worker failed to load the app: {0}")]
    AppLoad(String),
    /// Waiting for signals failed.
    #[error("cannot wait for signals: {0}")]
    Signals(io::Error),
    /// The pid file could not be written.
    #[error(transparent)]
    PidFile(#[from] PidFileError),
}

impl ArbiterError {
    /// The process exit code: the worker's own code for a halt, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            ArbiterError::WorkerBoot(_) => WORKER_BOOT_ERROR,
            ArbiterError::AppLoad(_) => APP_LOAD_ERROR,
            ArbiterError::Signals(_) | ArbiterError::PidFile(_) => 1,
        }
    }

    /// gunicorn's `Reason:` line for a halt.
    fn reason(&self) -> &'static str {
        match self {
            ArbiterError::WorkerBoot(_) => "Worker failed to boot.",
            ArbiterError::AppLoad(_) => "App failed to load.",
            ArbiterError::Signals(_) => "Signal handling failed.",
            ArbiterError::PidFile(_) => "Cannot write the pid file.",
        }
    }
}

/// What the master knows of one live worker.
#[derive(Debug)]
struct WorkerRecord {
    /// Spawn order: lower is older. TTOU and reloads retire the oldest.
    age: u64,
    booted_at: Instant,
    /// Read end of the worker's boot-report pipe (non-blocking).
    boot_report: OwnedFd,
    /// When the master asked it to stop (TTOU, reload, shutdown), if it did.
    stopping_since: Option<Instant>,
    /// Whether it has been sent SIGKILL.
    killed: bool,
    /// Its liveness slot (phase, last beat, current request).
    heartbeat: Heartbeat,
    /// A successor is wanted (HUP, or max-requests reached): it keeps
    /// serving until enough newer workers serve, then gets TERM.
    replaced: bool,
    /// When it was sent SIGABRT for exceeding `--timeout`.
    aborted_at: Option<Instant>,
    /// Its number among the live workers (1, 2, ...; reused once free).
    slot: u32,
    /// Its request counters (with `--metrics-bind` or `--statsd-host`).
    metrics: Option<WorkerMetrics>,
}

impl WorkerRecord {
    fn new(
        age: u64,
        boot_report: OwnedFd,
        heartbeat: Heartbeat,
        slot: u32,
        metrics: Option<WorkerMetrics>,
    ) -> WorkerRecord {
        WorkerRecord {
            age,
            booted_at: Instant::now(),
            boot_report,
            stopping_since: None,
            killed: false,
            heartbeat,
            replaced: false,
            aborted_at: None,
            slot,
            metrics,
        }
    }
}

/// What the master does beyond supervising workers: the pid file, systemd
/// notifications and binary upgrades.
#[derive(Debug)]
pub struct Lifecycle {
    /// `--pid`, written once the workers are forked.
    pub pid_file: Option<PathBuf>,
    /// Where `sd_notify` messages go (a no-op outside systemd).
    pub notifier: Notifier,
    /// What USR2 executes (`None`: USR2 is ignored).
    pub launch: Option<LaunchCommand>,
    /// When this master was started by a USR2 upgrade: the old master's pid.
    pub upgraded_from: Option<Pid>,
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        Lifecycle {
            pid_file: None,
            notifier: Notifier::disabled(),
            launch: None,
            upgraded_from: None,
        }
    }
}

/// The master's supervisor of workers.
pub struct Arbiter {
    settings: Settings,
    sockets: BoundSockets,
    /// `None` only in a forked child, which drops the master's handlers.
    signals: Option<SignalQueue>,
    workers: BTreeMap<Pid, WorkerRecord>,
    /// How many workers should be running (TTIN/TTOU change it).
    num_workers: u32,
    next_age: u64,
    /// While a HUP reload is under way: workers younger than this age are
    /// the new set (if one cannot load the app, the reload is abandoned and
    /// the old workers keep serving).
    reload_from_age: Option<u64>,
    master_pid: Pid,
    /// Consecutive deaths within [`QUICK_DEATH`] of boot.
    quick_deaths: u32,
    /// No worker is spawned (to replace a dead one) before this.
    respawn_not_before: Option<Instant>,
    lifecycle: Lifecycle,
    /// The pid file, once written (dropped, so removed, with the arbiter).
    pid_file: Option<PidFile>,
    /// The new master a USR2 started, while it runs.
    new_master: Option<Pid>,
    /// systemd is still to hear `READY=1` (at start, and after a reload).
    ready_pending: bool,
    /// `--metrics-bind`: served from this loop (see `metrics_endpoint`).
    metrics_endpoint: Option<MetricsEndpoint>,
    /// Retired counts and restarts, for `/metrics` and `/status`.
    scoreboard: Scoreboard,
}

impl Arbiter {
    /// An arbiter for the bound `sockets`, with the master's signal handlers
    /// already installed. Forks nothing yet.
    pub fn new(settings: Settings, sockets: BoundSockets, signals: SignalQueue) -> Arbiter {
        Arbiter {
            num_workers: settings.workers.max(1),
            settings,
            sockets,
            signals: Some(signals),
            workers: BTreeMap::new(),
            next_age: 0,
            reload_from_age: None,
            master_pid: getpid(),
            quick_deaths: 0,
            respawn_not_before: None,
            lifecycle: Lifecycle::default(),
            pid_file: None,
            new_master: None,
            ready_pending: true,
            metrics_endpoint: None,
            scoreboard: Scoreboard::new(),
        }
    }

    /// Serves `--metrics-bind` from the loop: a scrape wakes it.
    pub fn with_metrics_endpoint(mut self, endpoint: MetricsEndpoint) -> io::Result<Arbiter> {
        if let Some(signals) = self.signals.as_mut() {
            signals.watch(endpoint.as_raw_fd())?;
        }
        self.metrics_endpoint = Some(endpoint);
        Ok(self)
    }

    /// Sets the pid file, systemd notifier and upgrade command.
    pub fn with_lifecycle(mut self, lifecycle: Lifecycle) -> Arbiter {
        self.lifecycle = lifecycle;
        self
    }

    /// Spawns the workers and supervises them until a stop signal (`Ok`) or
    /// a halt (`Err`: a worker could not boot or load the app).
    pub fn run(mut self) -> Result<(), ArbiterError> {
        self.manage_workers();
        if let Some(path) = self.lifecycle.pid_file.clone() {
            match PidFile::create(&path) {
                Ok(file) => self.pid_file = Some(file),
                Err(e) => {
                    log::error!("{e}");
                    return self.halt(e.into());
                }
            }
        }
        if self.lifecycle.upgraded_from.is_some() {
            self.lifecycle
                .notifier
                .notify(Notification::MainPid(self.master_pid.as_raw() as u32));
        }
        loop {
            let timeout = self.next_timeout();
            let signals = self.wait_for_signals(timeout)?;
            self.serve_metrics();
            for (signal, name) in signals {
                if signal != MasterSignal::Child {
                    log::info!("Handling signal: {name}");
                }
                match signal {
                    MasterSignal::GracefulStop => return self.stop(true),
                    MasterSignal::FastStop => return self.stop(false),
                    MasterSignal::HangUp => self.reload(),
                    MasterSignal::IncreaseWorkers => self.num_workers += 1,
                    MasterSignal::DecreaseWorkers if self.num_workers > 1 => self.num_workers -= 1,
                    MasterSignal::DecreaseWorkers => log::info!("Keeping the last worker"),
                    MasterSignal::ReopenLogs => self.reopen_logs(),
                    MasterSignal::Upgrade => self.upgrade(),
                    MasterSignal::WindowChange => self.handle_winch(),
                    MasterSignal::Child => {}
                }
            }
            if let Some(failure) = self.reap_workers() {
                return self.halt(failure);
            }
            self.murder_workers();
            if self.take_reload_requests() {
                self.reload();
            }
            self.note_retiring_workers();
            self.manage_workers();
            self.retire_replaced_workers();
            self.notify_ready_once_serving();
            self.send_statsd_gauges();
        }
    }

    /// Answers the scrapes that are ready, from the workers' pages.
    fn serve_metrics(&mut self) {
        let Some(mut endpoint) = self.metrics_endpoint.take() else {
            return;
        };
        endpoint.serve(|path| {
            let page = |content_type, body| Some(Page { content_type, body });
            match path {
                "/metrics" => page(
                    PROMETHEUS_TEXT,
                    exposition::prometheus_text(&self.snapshot()),
                ),
                "/status" => page(PLAIN_TEXT, exposition::status_table(&self.snapshot())),
                _ => None,
            }
        });
        self.metrics_endpoint = Some(endpoint);
    }

    fn snapshot(&self) -> super::scoreboard::Snapshot {
        let live = self.workers.iter().filter_map(|(pid, w)| {
            Some(LiveWorker {
                pid: pid.as_raw(),
                slot: w.slot,
                phase: w.heartbeat.phase(),
                leaving: w.replaced || w.stopping_since.is_some(),
                booted_at: w.booted_at,
                request: w.heartbeat.request(),
                metrics: w.metrics.as_ref()?,
            })
        });
        self.scoreboard.snapshot(live, self.sockets.listeners())
    }

    /// gunicorn's `gunicorn.workers` gauge, once per turn of the loop.
    fn send_statsd_gauges(&self) {
        if let Some(statsd) = crate::statsd::client() {
            statsd.send_one(
                "gunicorn.workers",
                self.workers.len(),
                crate::statsd::Kind::Gauge,
            );
        }
    }

    /// Tells systemd `READY=1` once a worker serves (at start, and once a
    /// reload's new workers replaced the old ones).
    fn notify_ready_once_serving(&mut self) {
        if !self.ready_pending {
            return;
        }
        let reload_done = !self
            .workers
            .values()
            .any(|w| w.replaced && w.stopping_since.is_none());
        let serving = self
            .workers
            .values()
            .any(|w| w.stopping_since.is_none() && w.heartbeat.phase() == Phase::Serving);
        if reload_done && serving {
            self.ready_pending = false;
            self.lifecycle.notifier.notify(Notification::Ready);
        }
    }

    /// USR1: asks every worker to reopen its logs, then reopens the error
    /// log here. Workers first: once the new file exists, the workers have
    /// been told, so what they log next goes there.
    fn reopen_logs(&mut self) {
        for (pid, worker) in &self.workers {
            if worker.stopping_since.is_none() {
                match kill(*pid, Signal::SIGUSR1) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => log::error!("Cannot send SIGUSR1 to worker (pid:{pid}): {e}"),
                }
            }
        }
        if let Err(e) = crate::logging::reopen() {
            log::error!("{e}");
        }
    }

    /// USR2: starts a new master from the binary on disk, on our sockets.
    /// We keep serving until the operator stops us; our pid file moves to
    /// `FILE.oldbin` meanwhile.
    fn upgrade(&mut self) {
        if let Some(pid) = self.new_master {
            log::warn!("USR2 signal ignored: a new master (pid:{pid}) is already running");
            return;
        }
        let Some(launch) = self.lifecycle.launch.clone() else {
            log::warn!("USR2 signal ignored: no command to start a new master with");
            return;
        };
        if let Some(old) = self.lifecycle.upgraded_from {
            if nix::unistd::getppid() == old {
                log::warn!("USR2 signal ignored: the old master (pid:{old}) is still running");
                return;
            }
        }
        if let Some(file) = self.pid_file.as_mut() {
            if let Err(e) = file.move_to_oldbin() {
                log::error!(
                    "Cannot upgrade: cannot rename the pid file {}: {}",
                    file.path().display(),
                    os_error_text(&e)
                );
                return;
            }
        }
        let _ = io::stderr().flush();
        match upgrade::spawn_new_master(
            &launch,
            &self.sockets.raw_fds(),
            self.sockets.from_systemd(),
            self.metrics_endpoint.as_ref().map(|e| e.listener_fd()),
        ) {
            Ok(pid) => {
                let pid = Pid::from_raw(pid);
                log::info!(
                    "Booting new master with pid: {pid} ({})",
                    launch.executable.display()
                );
                self.new_master = Some(pid);
            }
            Err(e) => {
                log::error!(
                    "Cannot upgrade: cannot start {}: {}",
                    launch.executable.display(),
                    os_error_text(&e)
                );
                self.restore_pid_file();
            }
        }
    }

    /// The new master is gone: this one is the server again.
    fn on_new_master_exit(&mut self, pid: Pid, code: Option<i32>, signal: Option<Signal>) {
        self.new_master = None;
        match (code, signal) {
            (Some(code), _) => log::error!("New master (pid:{pid}) exited with code {code}"),
            (None, Some(signal)) => {
                log::error!("New master (pid:{pid}) was sent {}", signal.as_str())
            }
            (None, None) => {}
        }
        // The pid file is back before the log says so.
        self.restore_pid_file();
        log::info!("Upgrade abandoned; this master keeps serving");
    }

    fn restore_pid_file(&mut self) {
        if let Some(file) = self.pid_file.as_mut() {
            if let Err(e) = file.restore_from_oldbin() {
                log::error!("Cannot restore the pid file: {}", os_error_text(&e));
            }
        }
    }

    /// The number of workers the arbiter is aiming for.
    pub fn num_workers(&self) -> u32 {
        self.num_workers
    }

    /// How long the loop may sleep: a tick, or less when a delayed respawn
    /// is due sooner.
    fn next_timeout(&self) -> Duration {
        match self.respawn_not_before {
            Some(at) => at
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), TICK),
            None => TICK,
        }
    }

    fn wait_for_signals(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<(MasterSignal, &'static str)>, ArbiterError> {
        match self.signals.as_mut() {
            Some(signals) => Ok(signals
                .wait(timeout)
                .map_err(ArbiterError::Signals)?
                .to_vec()),
            None => Ok(Vec::new()),
        }
    }

    /// Spawns workers up to the wanted number (unless a crash-loop delay is
    /// running) and retires the oldest beyond it.
    fn manage_workers(&mut self) {
        let mut active: Vec<(u64, Pid)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.stopping_since.is_none() && !w.replaced)
            .map(|(pid, w)| (w.age, *pid))
            .collect();
        let wanted = self.num_workers as usize;
        if active.len() > wanted {
            active.sort();
            let excess = active.len() - wanted;
            for (_, pid) in active.into_iter().take(excess) {
                self.retire_worker(pid);
            }
            return;
        }
        if let Some(at) = self.respawn_not_before {
            if Instant::now() < at {
                return;
            }
            self.respawn_not_before = None;
        }
        for _ in active.len()..wanted {
            if let Err(e) = self.spawn_worker() {
                log::error!(
                    "Cannot spawn a worker: {e}; retrying in {}s",
                    TICK.as_secs()
                );
                self.respawn_not_before = Some(Instant::now() + TICK);
                return;
            }
        }
    }

    /// Forks one worker. The child never returns from here.
    fn spawn_worker(&mut self) -> io::Result<()> {
        let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let heartbeat = Heartbeat::new()?;
        let counting = self.metrics_endpoint.is_some() || crate::statsd::client().is_some();
        let metrics = counting.then(WorkerMetrics::new).transpose()?;
        let slot = (1..)
            .find(|n| self.workers.values().all(|w| w.slot != *n))
            .expect("a free slot number");
        // `--reuse-port`: the worker's own sockets, closed here after the fork.
        let own_listeners = self.sockets.worker_listeners()?;
        let _ = io::stderr().flush();
        let blocked = signals::block_for_fork()?;
        // SAFETY: the master is single-threaded, so the child starts with
        // consistent locks and allocator state. The child only drops master
        // state, runs the worker and `_exit`s; it never returns into the
        // master's loop.
        let forked = unsafe { fork() };
        let forked = match forked {
            Ok(forked) => forked,
            Err(e) => {
                blocked.restore();
                return Err(e.into());
            }
        };
        match forked {
            ForkResult::Parent { child } => {
                blocked.restore();
                drop(report_write);
                drop(own_listeners);
                self.next_age += 1;
                self.workers.insert(
                    child,
                    WorkerRecord::new(self.next_age, report_read, heartbeat, slot, metrics),
                );
                log::info!("Booting worker with pid: {child}");
                Ok(())
            }
            ForkResult::Child => {
                drop(report_read);
                drop(self.signals.take());
                if let Some(endpoint) = self.metrics_endpoint.take() {
                    endpoint.close_in_child();
                }
                blocked.reset_in_child();
                let age = self.next_age + 1;
                let code = self.become_worker(
                    report_write,
                    heartbeat,
                    metrics,
                    own_listeners.as_deref(),
                    age,
                );
                let _ = io::stderr().flush();
                // SAFETY: `_exit` ends the child without running the master's
                // atexit handlers or destructors (which would kill "its"
                // workers or unlink the master's unix sockets).
                unsafe { libc::_exit(code) }
            }
        }
    }

    /// The child side of a fork (signal handling already reset): lets go of
    /// the other workers' pipes, then runs the worker. Returns its exit code.
    fn become_worker(
        &mut self,
        boot_report: OwnedFd,
        heartbeat: Heartbeat,
        metrics: Option<WorkerMetrics>,
        own_listeners: Option<&[Listener]>,
        age: u64,
    ) -> i32 {
        self.workers.clear();
        let context = WorkerContext {
            settings: &self.settings,
            listeners: own_listeners.unwrap_or(self.sockets.listeners()),
            boot_report,
            master_pid: self.master_pid.as_raw(),
            heartbeat,
            metrics,
            age,
        };
        // A panic must never unwind into the copy of the master's loop: it
        // ends this worker with a plain failure code (replaced, not halted).
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker::run(context))).unwrap_or(1)
    }

    /// Collects every exited worker. Returns the first boot or app-load
    /// failure among them (which halts the server), reaping the rest anyway.
    fn reap_workers(&mut self) -> Option<ArbiterError> {
        let mut failure = None;
        loop {
            let (pid, code, signal) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Some(code), None),
                Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, None, Some(signal)),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return failure,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::error!("waitpid failed: {e}");
                    return failure;
                }
            };
            if Some(pid) == self.new_master {
                self.on_new_master_exit(pid, code, signal);
                continue;
            }
            let Some(record) = self.workers.remove(&pid) else {
                continue;
            };
            let outcome = self.on_worker_exit(pid, record, code, signal);
            if failure.is_none() {
                failure = outcome;
            }
        }
    }

    /// Logs one worker's end; returns a halt if it could not boot.
    fn on_worker_exit(
        &mut self,
        pid: Pid,
        record: WorkerRecord,
        code: Option<i32>,
        signal: Option<Signal>,
    ) -> Option<ArbiterError> {
        match (code, signal) {
            (Some(0), _) => log::debug!("Worker (pid:{pid}) exited"),
            (Some(code), _) => log::error!("Worker (pid:{pid}) exited with code {code}"),
            (None, Some(Signal::SIGKILL)) if record.killed => {
                log::debug!("Worker (pid:{pid}) was sent SIGKILL by the master")
            }
            (None, Some(Signal::SIGKILL)) => {
                log::error!("Worker (pid:{pid}) was sent SIGKILL! Perhaps out of memory?")
            }
            (None, Some(signal @ (Signal::SIGTERM | Signal::SIGQUIT)))
                if record.stopping_since.is_some() =>
            {
                log::debug!("Worker (pid:{pid}) stopped by {}", signal.as_str())
            }
            (None, Some(signal)) => log::error!("Worker (pid:{pid}) was sent {}!", signal.as_str()),
            (None, None) => {}
        }
        if let Some(metrics) = &record.metrics {
            let ending = Ending {
                timed_out: record.aborted_at.is_some(),
                replaced: record.replaced,
                reached_max_requests: record.heartbeat.phase() == Phase::Retiring,
                asked_to_stop: record.stopping_since.is_some(),
                killed_by_someone_else: signal == Some(Signal::SIGKILL) && !record.killed,
            };
            self.scoreboard.retire(metrics, ending);
        }
        let reload_failed = self
            .reload_from_age
            .is_some_and(|from_age| record.age > from_age);
        if record.stopping_since.is_none() && reload_failed {
            if let Some(WORKER_BOOT_ERROR | APP_LOAD_ERROR) = code {
                self.abandon_reload(&read_boot_report(record));
                return None;
            }
        }
        if record.stopping_since.is_none() {
            match code {
                Some(WORKER_BOOT_ERROR) => {
                    return Some(ArbiterError::WorkerBoot(read_boot_report(record)))
                }
                Some(APP_LOAD_ERROR) => {
                    return Some(ArbiterError::AppLoad(read_boot_report(record)))
                }
                _ => self.note_unexpected_death(pid, &record),
            }
        }
        None
    }

    /// Tracks crash loops: a worker dying within [`QUICK_DEATH`] of boot
    /// delays the next spawn, more with each consecutive quick death.
    fn note_unexpected_death(&mut self, pid: Pid, record: &WorkerRecord) {
        let lived = record.booted_at.elapsed();
        if lived >= QUICK_DEATH {
            self.quick_deaths = 0;
            return;
        }
        if self
            .respawn_not_before
            .is_some_and(|at| at > Instant::now())
        {
            return; // several workers died together: one step of delay per batch
        }
        self.quick_deaths += 1;
        let Some(delay) = respawn_delay(self.quick_deaths) else {
            return;
        };
        log::warn!(
            "Worker (pid:{pid}) died {} ms after boot; waiting {:.1}s before booting another",
            lived.as_millis(),
            delay.as_secs_f64()
        );
        let at = Instant::now() + delay;
        self.respawn_not_before = Some(
            self.respawn_not_before
                .map_or(at, |current| current.max(at)),
        );
    }

    /// Kills workers that stopped proving they are alive: stuck in the
    /// application past `--timeout` (SIGABRT, so the worker dumps where it
    /// is stuck; SIGKILL after a grace), or still booting after
    /// [`BOOT_LIMIT`]. Then SIGKILLs stopping workers that outlived the
    /// graceful timeout.
    fn murder_workers(&mut self) {
        let timeout = Duration::from_secs(self.settings.timeout);
        let mut to_abort = Vec::new();
        let mut to_kill = Vec::new();
        for (pid, worker) in &self.workers {
            if worker.killed {
                continue;
            }
            if let Some(at) = worker.aborted_at {
                if at.elapsed() >= ABORT_GRACE {
                    to_kill.push(*pid);
                }
                continue;
            }
            match worker.heartbeat.phase() {
                Phase::Booting if worker.booted_at.elapsed() > BOOT_LIMIT => {
                    log::error!(
                        "WORKER BOOT TIMEOUT (pid:{pid}): still booting after {}s",
                        BOOT_LIMIT.as_secs()
                    );
                    to_kill.push(*pid);
                }
                Phase::Serving | Phase::Retiring
                    if !timeout.is_zero() && worker.heartbeat.silent_for() > timeout =>
                {
                    log::error!(
                        target: crate::logging::CRITICAL,
                        "WORKER TIMEOUT (pid:{pid}) while serving {}",
                        worker.heartbeat.request()
                    );
                    to_abort.push(*pid);
                }
                Phase::Serving | Phase::Retiring if !timeout.is_zero() => {
                    if let Some(stuck) = worker.heartbeat.stuck_thread(timeout) {
                        log::error!(
                            target: crate::logging::CRITICAL,
                            "WORKER TIMEOUT (pid:{pid}) while serving {} (app thread {}, inside \
                             the application for {}s)",
                            stuck.request,
                            stuck.number,
                            stuck.for_how_long.as_secs()
                        );
                        to_abort.push(*pid);
                    }
                }
                _ => {}
            }
        }
        for pid in to_abort {
            self.kill_worker(pid, Signal::SIGABRT);
            if let Some(worker) = self.workers.get_mut(&pid) {
                worker.aborted_at = Some(Instant::now());
            }
        }
        for pid in to_kill {
            self.kill_worker(pid, Signal::SIGKILL);
        }
        self.murder_stopping_workers();
    }

    /// `--reload`: whether a serving worker saw a source file change. Every
    /// worker's request is taken at once, so one change is one reload
    /// however many workers noticed it; workers already being replaced do
    /// not count.
    fn take_reload_requests(&mut self) -> bool {
        let mut requested = false;
        for worker in self.workers.values() {
            let asked = worker.heartbeat.take_reload_request();
            requested |= asked && !worker.replaced && worker.stopping_since.is_none();
        }
        if requested {
            log::info!("Reloading: a worker saw a source file change");
        }
        requested
    }

    /// Workers that reached `--max-requests` ask for a successor.
    fn note_retiring_workers(&mut self) {
        for (pid, worker) in self.workers.iter_mut() {
            if !worker.replaced
                && worker.stopping_since.is_none()
                && worker.heartbeat.phase() == Phase::Retiring
            {
                log::info!("Worker (pid:{pid}) reached its max requests; booting its successor");
                worker.replaced = true;
            }
        }
    }

    /// TERMs workers being replaced (by HUP or max-requests) one for one as
    /// their successors serve, so capacity never dips below the wanted
    /// number and no old worker serves longer than it takes one successor
    /// to boot. Workers that reached max-requests go first, then the oldest.
    fn retire_replaced_workers(&mut self) {
        let active = |w: &&WorkerRecord| w.stopping_since.is_none();
        let serving_successors = self
            .workers
            .values()
            .filter(active)
            .filter(|w| !w.replaced && w.heartbeat.phase() == Phase::Serving)
            .count();
        let mut replaced: Vec<(bool, u64, Pid)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.replaced && w.stopping_since.is_none())
            .map(|(pid, w)| (w.heartbeat.phase() != Phase::Retiring, w.age, *pid))
            .collect();
        if replaced.is_empty() {
            if serving_successors >= self.num_workers as usize {
                self.reload_from_age = None;
            }
            return;
        }
        // Retiring k of them leaves serving_successors + (replaced - k)
        // workers, which must stay at least the wanted number.
        let can_retire = (serving_successors + replaced.len())
            .saturating_sub(self.num_workers as usize)
            .min(replaced.len());
        replaced.sort();
        for (_, _, pid) in replaced.into_iter().take(can_retire) {
            self.retire_worker(pid);
        }
        if serving_successors >= self.num_workers as usize {
            self.reload_from_age = None;
        }
    }

    /// SIGKILLs stopping workers that outlived the graceful timeout.
    fn murder_stopping_workers(&mut self) {
        let timeout = Duration::from_secs(self.settings.graceful_timeout);
        let overdue: Vec<Pid> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                !w.killed
                    && w.stopping_since
                        .is_some_and(|since| since.elapsed() >= timeout + EXIT_GRACE)
            })
            .map(|(pid, _)| *pid)
            .collect();
        for pid in overdue {
            log::warn!(
                "Worker (pid:{pid}) did not stop in {}s; killing it",
                timeout.as_secs()
            );
            self.kill_worker(pid, Signal::SIGKILL);
        }
    }

    /// TERMs one worker to make room; it is reaped when it exits.
    fn retire_worker(&mut self, pid: Pid) {
        log::debug!("Retiring worker (pid:{pid})");
        self.kill_worker(pid, Signal::SIGTERM);
    }

    /// WINCH: when daemonised, stops every worker gracefully and keeps
    /// the master (HUP brings them back); otherwise ignored, as gunicorn.
    fn handle_winch(&mut self) {
        if !self.settings.daemon {
            log::debug!("SIGWINCH ignored. Not daemonized");
            return;
        }
        log::info!("graceful stop of workers");
        self.num_workers = 0;
        self.kill_workers(Signal::SIGTERM);
    }

    /// HUP: a new set of workers importing the app afresh; the old ones
    /// keep serving until the new set serves, then stop gracefully.
    fn reload(&mut self) {
        log::info!("Hang up: Master");
        self.reread_settings();
        if self.num_workers == 0 {
            self.num_workers = self.settings.workers.max(1);
        }
        self.lifecycle.notifier.notify(Notification::Reloading);
        self.ready_pending = true;
        self.reload_from_age = Some(self.next_age);
        for worker in self.workers.values_mut() {
            if worker.stopping_since.is_none() {
                worker.replaced = true;
            }
        }
        self.manage_workers();
    }

    /// Re-reads the configuration for the new workers; a bad one is logged
    /// and the current settings stay.
    fn reread_settings(&mut self) {
        let Some(launch) = &self.lifecycle.launch else {
            return;
        };
        match super::reconfigure::reread(launch, &self.settings) {
            Ok(settings) => {
                if settings.workers != self.settings.workers {
                    log::info!(
                        "Workers: {} (was {})",
                        settings.workers,
                        self.settings.workers
                    );
                    self.num_workers = settings.workers.max(1);
                }
                self.settings = settings;
            }
            Err(e) => log::error!("Cannot reload the configuration, keeping the current one: {e}"),
        }
    }

    /// A worker of the new set could not boot: the new code is broken.
    /// Unlike gunicorn (which halts), keep the old workers serving, stop the
    /// rest of the new set, and say why; a later HUP can try again.
    fn abandon_reload(&mut self, reason: &str) {
        let Some(from_age) = self.reload_from_age.take() else {
            return;
        };
        log::error!("Reload failed, the old workers keep serving: {reason}");
        let mut new_set = Vec::new();
        for (pid, worker) in self.workers.iter_mut() {
            if worker.age > from_age {
                if worker.stopping_since.is_none() {
                    new_set.push(*pid);
                }
            } else if worker.replaced && worker.heartbeat.phase() != Phase::Retiring {
                worker.replaced = false;
            }
        }
        for pid in new_set {
            self.retire_worker(pid);
        }
    }

    /// Sends `signal` to one worker and notes that it was asked to stop (or
    /// killed); a worker already gone is not an error.
    fn kill_worker(&mut self, pid: Pid, signal: Signal) {
        if let Some(record) = self.workers.get_mut(&pid) {
            record.stopping_since.get_or_insert_with(Instant::now);
            record.killed |= signal == Signal::SIGKILL;
        }
        match kill(pid, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => log::error!("Cannot send {} to worker (pid:{pid}): {e}", signal.as_str()),
        }
    }

    fn kill_workers(&mut self, signal: Signal) {
        let pids: Vec<Pid> = self.workers.keys().copied().collect();
        for pid in pids {
            self.kill_worker(pid, signal);
        }
    }

    /// TERM (graceful) or INT/QUIT (fast): stops every worker and returns.
    fn stop(mut self, graceful: bool) -> Result<(), ArbiterError> {
        self.prepare_exit();
        self.stop_workers(graceful);
        log::info!("Shutting down: Master");
        Ok(())
    }

    /// A worker could not boot: stops the others and returns the failure.
    fn halt(mut self, failure: ArbiterError) -> Result<(), ArbiterError> {
        self.prepare_exit();
        self.stop_workers(true);
        log::info!("Shutting down: Master");
        log::info!("Reason: {}", failure.reason());
        Err(failure)
    }

    /// Tells systemd the service stops; after an upgrade the service goes
    /// on in the new master, so instead the unix socket files are left to
    /// it and systemd hears nothing. The listening sockets stay open until
    /// the workers are gone (they drain their backlog on TERM).
    fn prepare_exit(&mut self) {
        match self.new_master {
            Some(pid) => {
                log::info!("New master (pid:{pid}) keeps the sockets");
                self.sockets.keep_unix_socket_files();
                if let Some(endpoint) = self.metrics_endpoint.as_mut() {
                    endpoint.keep_unix_socket_file();
                }
            }
            None => self.lifecycle.notifier.notify(Notification::Stopping),
        }
    }

    /// Sends TERM (graceful) or QUIT (fast) to every worker, waits for them
    /// up to the graceful timeout (fast: at most [`FAST_STOP_TIMEOUT`]), then
    /// SIGKILLs and reaps the rest. An INT or QUIT during a graceful stop
    /// turns it into a fast one.
    fn stop_workers(&mut self, graceful: bool) {
        let graceful_timeout = Duration::from_secs(self.settings.graceful_timeout);
        let (signal, timeout) = if graceful {
            (Signal::SIGTERM, graceful_timeout + EXIT_GRACE)
        } else {
            (Signal::SIGQUIT, graceful_timeout.min(FAST_STOP_TIMEOUT))
        };
        self.kill_workers(signal);
        let mut deadline = Instant::now() + timeout;
        self.reap_workers();
        while !self.workers.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let signals = self
                .wait_for_signals(left.min(STOP_TICK))
                .unwrap_or_default();
            if signals.iter().any(|(s, _)| *s == MasterSignal::FastStop) {
                log::info!("Handling signal: quit");
                self.kill_workers(Signal::SIGQUIT);
                deadline = deadline.min(Instant::now() + FAST_STOP_TIMEOUT);
            }
            self.reap_workers();
        }
        if !self.workers.is_empty() {
            log::warn!(
                "{} worker(s) still running after {:.1}s; sending SIGKILL",
                self.workers.len(),
                timeout.as_secs_f64()
            );
        }
        self.kill_remaining_workers();
    }

    /// SIGKILLs every worker still known and waits for each (blocking: a
    /// SIGKILLed process always ends).
    fn kill_remaining_workers(&mut self) {
        if self.workers.is_empty() {
            return;
        }
        self.kill_workers(Signal::SIGKILL);
        let pids: Vec<Pid> = self.workers.keys().copied().collect();
        for pid in pids {
            loop {
                match waitpid(pid, None) {
                    Err(Errno::EINTR) => continue,
                    Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            self.workers.remove(&pid);
        }
    }
}

impl Drop for Arbiter {
    /// The last line of defence against orphans: on any path out of the
    /// master (an error, a panic) the remaining workers are killed and reaped.
    /// A forked child never gets here (it `_exit`s), and is checked anyway.
    fn drop(&mut self) {
        if getpid() == self.master_pid {
            self.kill_remaining_workers();
        }
    }
}

/// The delay before the next spawn after `quick_deaths` consecutive quick
/// deaths: none for the first (a one-off crash is replaced at once), then
/// doubling from [`FIRST_RESPAWN_DELAY`] up to [`MAX_RESPAWN_DELAY`].
fn respawn_delay(quick_deaths: u32) -> Option<Duration> {
    if quick_deaths < 2 {
        return None;
    }
    let doublings = (quick_deaths - 2).min(16);
    Some(
        FIRST_RESPAWN_DELAY
            .saturating_mul(1 << doublings)
            .min(MAX_RESPAWN_DELAY),
    )
}

/// The first non-empty line a failed worker wrote to its boot-report pipe.
fn read_boot_report(record: WorkerRecord) -> String {
    let mut bytes = Vec::new();
    // The pipe is non-blocking: whatever was written is there (the worker
    // has exited); an error (WouldBlock if a grandchild still holds the
    // write end) just ends the read with what we have.
    let _ = std::fs::File::from(record.boot_report)
        .take(BOOT_REPORT_LIMIT)
        .read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("(the worker reported nothing; see the log above)")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respawn_delay_grows_and_is_capped() {
        let cases: &[(u32, Option<u64>)] = &[
            (0, None),
            (1, None),
            (2, Some(100)),
            (3, Some(200)),
            (4, Some(400)),
            (8, Some(6400)),
            (9, Some(10_000)),
            (40, Some(10_000)),
        ];
        for (deaths, millis) in cases {
            assert_eq!(
                respawn_delay(*deaths),
                millis.map(Duration::from_millis),
                "{deaths}"
            );
        }
    }

    fn record_with_report(report: &[u8]) -> WorkerRecord {
        let (read, write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        std::fs::File::from(write).write_all(report).unwrap();
        WorkerRecord::new(1, read, Heartbeat::new().unwrap(), 1, None)
    }

    #[test]
    fn boot_report_is_its_first_non_empty_line() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"ModuleNotFoundError: No module named 'nope'\n",
                "ModuleNotFoundError: No module named 'nope'",
            ),
            (b"\n  first  \nsecond\n", "first"),
            (b"no newline", "no newline"),
            (b"", "(the worker reported nothing; see the log above)"),
        ];
        for (report, expected) in cases {
            assert_eq!(read_boot_report(record_with_report(report)), *expected);
        }
    }

    #[test]
    fn boot_report_read_does_not_block_while_a_writer_is_open() {
        let (read, write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        let mut writer = std::fs::File::from(write);
        writer.write_all(b"partial line").unwrap();
        let record = WorkerRecord::new(1, read, Heartbeat::new().unwrap(), 1, None);
        assert_eq!(read_boot_report(record), "partial line");
    }

    #[test]
    fn halts_exit_with_the_workers_code() {
        assert_eq!(ArbiterError::WorkerBoot(String::new()).exit_code(), 3);
        assert_eq!(ArbiterError::AppLoad(String::new()).exit_code(), 4);
        assert_eq!(
            ArbiterError::AppLoad("ModuleNotFoundError: No module named 'nope'".into()).to_string(),
            "worker failed to load the app: ModuleNotFoundError: No module named 'nope'"
        );
    }
}
