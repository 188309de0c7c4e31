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
//! The arbiter never touches Python: a worker is the Python program,
//! started through `master::python_process` with a worker's handoff.
//!
//! Life-cycle duties (see `docs/signals.md`): the pid file is written once
//! the first workers are forked and removed on every way out; systemd hears
//! `READY=1` once a worker serves, `RELOADING=1`/`READY=1` around a HUP and
//! `STOPPING=1` on a stop; USR1 reopens the log here and in every worker;
//! USR2 starts a new master on the same sockets (binary upgrade).
//!
//! This file is the supervision loop and the arbiter's state; each step's
//! details are beside it: `workers` (manage, spawn, signal), `reap`,
//! `murder`, `replacement` (HUP, max-requests, `--reload`),
//! `signal_actions` (USR1, USR2, WINCH), `stopping` and `zygote`
//! (`--preload`: the zygote workers are forked from).

mod metrics;
mod murder;
mod reap;
mod replacement;
mod signal_actions;
mod stopping;
mod workers;
mod zygote;

use super::metrics_endpoint::MetricsEndpoint;
use super::pidfile::{PidFile, PidFileError};
use super::python_process::PythonProgram;
use super::scoreboard::Scoreboard;
use super::signals::{MasterSignal, SignalQueue};
use super::sockets::BoundSockets;
use super::systemd::{Notification, Notifier};
use super::upgrade::LaunchCommand;
use crate::config::Settings;
use crate::handoff::tls::TlsMaterial;
use crate::handoff::{APP_LOAD_ERROR, WORKER_BOOT_ERROR};
use crate::heartbeat::{Heartbeat, Phase};
use crate::metrics::WorkerMetrics;
use nix::unistd::{getpid, Pid};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
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
    /// When it asked for a successor (max-requests): the first to ask is
    /// the first retired.
    asked_at: Option<Instant>,
    /// When it was sent SIGABRT for exceeding `--timeout`.
    aborted_at: Option<Instant>,
    /// Its number among the live workers (1, 2, ...; reused once free).
    slot: u32,
    /// Whether its boot time has been passed on to the other workers.
    boot_shared: bool,
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
            asked_at: None,
            aborted_at: None,
            slot,
            boot_shared: false,
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
    /// The TLS files new workers build their configuration from (`None`:
    /// plain HTTP); read again on HUP.
    tls: Option<TlsMaterial>,
    /// The program every worker (and zygote) runs.
    python: PythonProgram,
    /// `--preload`: the zygote workers are forked from, once it is ready.
    zygote: Option<zygote::ZygoteRecord>,
    /// `--preload`: a zygote still importing the app (at start, after the
    /// last one died, or after a HUP).
    next_zygote: Option<zygote::ZygoteRecord>,
    /// `--preload`: the zygote a reload replaced, kept until the reload's
    /// workers all serve.
    retiring_zygote: Option<zygote::ZygoteRecord>,
    /// No zygote is started before this (after one failed to start).
    zygote_not_before: Option<Instant>,
    /// Whether a zygote has been ready: until then, one that cannot import
    /// the app halts the server.
    zygote_ever_ready: bool,
}

impl Arbiter {
    /// An arbiter for the bound `sockets`, with the master's signal handlers
    /// already installed. Forks nothing yet.
    pub fn new(
        settings: Settings,
        sockets: BoundSockets,
        signals: SignalQueue,
        tls: Option<TlsMaterial>,
        python: PythonProgram,
    ) -> Arbiter {
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
            tls,
            python,
            zygote: None,
            next_zygote: None,
            retiring_zygote: None,
            zygote_not_before: None,
            zygote_ever_ready: false,
        }
    }

    /// Sets the pid file, systemd notifier and upgrade command.
    pub fn with_lifecycle(mut self, lifecycle: Lifecycle) -> Arbiter {
        self.lifecycle = lifecycle;
        self
    }

    /// Spawns the workers and supervises them until a stop signal (`Ok`) or
    /// a halt (`Err`: a worker could not boot or load the app).
    pub fn run(mut self) -> Result<(), ArbiterError> {
        if self.settings.preload {
            if let Err(e) = zygote::become_subreaper() {
                log::error!("--preload: cannot adopt the zygote's workers: {e}");
                return self.halt(ArbiterError::Signals(e));
            }
        }
        self.manage_zygotes();
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
            self.share_boot_times();
            self.note_retiring_workers();
            self.manage_zygotes();
            self.manage_workers();
            self.retire_replaced_workers();
            self.notify_ready_once_serving();
            self.send_statsd_gauges();
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
}

impl Drop for Arbiter {
    /// The last line of defence against orphans: on any path out of the
    /// master (an error, a panic) the remaining workers are killed and reaped.
    /// A forked child never gets here (it `_exit`s), and is checked anyway.
    fn drop(&mut self) {
        if getpid() == self.master_pid {
            self.end_zygotes();
            self.kill_remaining_workers();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
