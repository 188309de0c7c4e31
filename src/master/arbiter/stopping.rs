//! Stopping: TERM (graceful) and INT/QUIT (fast), a halt on a broken app,
//! and the SIGKILL that leaves no worker behind.

use super::{Arbiter, ArbiterError, EXIT_GRACE, FAST_STOP_TIMEOUT, STOP_TICK};
use crate::master::signals::MasterSignal;
use crate::master::systemd::Notification;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

impl Arbiter {
    /// TERM (graceful) or INT/QUIT (fast): stops every worker and returns.
    pub(super) fn stop(mut self, graceful: bool) -> Result<(), ArbiterError> {
        self.prepare_exit();
        self.stop_workers(graceful);
        log::info!("Shutting down: Master");
        Ok(())
    }

    /// A worker could not boot: stops the others and returns the failure.
    pub(super) fn halt(mut self, failure: ArbiterError) -> Result<(), ArbiterError> {
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
    pub(super) fn prepare_exit(&mut self) {
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
    pub(super) fn stop_workers(&mut self, graceful: bool) {
        let graceful_timeout = Duration::from_secs(self.settings.graceful_timeout);
        let (signal, timeout) = if graceful {
            (Signal::SIGTERM, graceful_timeout + EXIT_GRACE)
        } else {
            (Signal::SIGQUIT, graceful_timeout.min(FAST_STOP_TIMEOUT))
        };
        self.end_zygotes();
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
    pub(super) fn kill_remaining_workers(&mut self) {
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
