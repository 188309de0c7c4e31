//! The arbiter's workers: how many there should be, forking one (the
//! child hands over to `worker::run`), and sending them signals.

use super::{Arbiter, WorkerRecord, TICK};
use crate::heartbeat::Heartbeat;
use crate::listener::Listener;
use crate::master::signals;
use crate::metrics::WorkerMetrics;
use crate::worker::{self, WorkerContext};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, pipe2, ForkResult, Pid};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::time::Instant;

impl Arbiter {
    /// Spawns workers up to the wanted number (unless a crash-loop delay is
    /// running) and retires the oldest beyond it.
    pub(super) fn manage_workers(&mut self) {
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
        if !self.can_spawn_workers() {
            return; // --preload: until the zygote has imported the app
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

    /// Whether workers count requests (for `--metrics-bind` or statsd).
    pub(super) fn counting(&self) -> bool {
        self.metrics_endpoint.is_some() || crate::statsd::client().is_some()
    }

    /// The lowest slot number no live worker holds.
    pub(super) fn free_slot(&self) -> u32 {
        (1..)
            .find(|n| self.workers.values().all(|w| w.slot != *n))
            .expect("a free slot number")
    }

    /// Starts one worker: forked by the zygote with `--preload`, else
    /// forked here (the child never returns from here).
    pub(super) fn spawn_worker(&mut self) -> io::Result<()> {
        if self.settings.preload {
            return self.spawn_worker_from_zygote();
        }
        let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let heartbeat = Heartbeat::new()?;
        let metrics = self.counting().then(WorkerMetrics::new).transpose()?;
        let slot = self.free_slot();
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
    pub(super) fn become_worker(
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
            serves_tls: self.sockets.serves_tls(),
            boot_report,
            master_pid: self.master_pid.as_raw(),
            heartbeat,
            metrics,
            age,
            tls: self.tls.clone(),
        };
        // A panic must never unwind into the copy of the master's loop: it
        // ends this worker with a plain failure code (replaced, not halted).
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker::run(context))).unwrap_or(1)
    }

    /// TERMs one worker to make room; it is reaped when it exits.
    pub(super) fn retire_worker(&mut self, pid: Pid) {
        log::debug!("Retiring worker (pid:{pid})");
        self.kill_worker(pid, Signal::SIGTERM);
    }

    /// Sends `signal` to one worker and notes that it was asked to stop (or
    /// killed); a worker already gone is not an error.
    pub(super) fn kill_worker(&mut self, pid: Pid, signal: Signal) {
        if let Some(record) = self.workers.get_mut(&pid) {
            record.stopping_since.get_or_insert_with(Instant::now);
            record.killed |= signal == Signal::SIGKILL;
        }
        match kill(pid, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => log::error!("Cannot send {} to worker (pid:{pid}): {e}", signal.as_str()),
        }
    }

    pub(super) fn kill_workers(&mut self, signal: Signal) {
        let pids: Vec<Pid> = self.workers.keys().copied().collect();
        for pid in pids {
            self.kill_worker(pid, signal);
        }
    }
}
