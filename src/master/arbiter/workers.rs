//! The arbiter's workers: how many there should be, starting one (the
//! Python program with a worker's handoff, `master::python_process`), and
//! sending them signals.

use super::{Arbiter, WorkerRecord, TICK};
use crate::handoff::{Handoff, Role, WorkerFacts};
use crate::heartbeat::Heartbeat;
use crate::master::python_process;
use crate::metrics::WorkerMetrics;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{pipe2, Pid};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
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

    /// Starts one worker: forked by the zygote with `--preload`, else the
    /// Python program, with a worker's handoff.
    pub(super) fn spawn_worker(&mut self) -> io::Result<()> {
        if self.settings.preload {
            return self.spawn_worker_from_zygote();
        }
        let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let heartbeat = Heartbeat::new()?;
        let metrics = self.counting().then(WorkerMetrics::new).transpose()?;
        let slot = self.free_slot();
        // `--reuse-port`: the worker's own sockets, closed here once started.
        let own_listeners = self.sockets.worker_listeners()?;
        let listeners: Vec<RawFd> = own_listeners
            .as_deref()
            .unwrap_or(self.sockets.listeners())
            .iter()
            .map(AsRawFd::as_raw_fd)
            .collect();
        let age = self.next_age + 1;
        let facts = WorkerFacts {
            listeners: listeners.clone(),
            serves_tls: self.sockets.serves_tls().to_vec(),
            boot_report: report_write.as_raw_fd(),
            heartbeat: heartbeat.fd().as_raw_fd(),
            metrics: metrics.as_ref().map(|m| m.fd().as_raw_fd()),
            master_pid: self.master_pid.as_raw(),
            age,
        };
        let inherit: Vec<RawFd> = listeners
            .iter()
            .copied()
            .chain([facts.boot_report, facts.heartbeat])
            .chain(facts.metrics)
            .collect();
        let handoff = self.handoff(Role::Worker(facts));
        let _ = io::stderr().flush();
        let child = python_process::start(
            &self.python,
            &handoff,
            &inherit,
            Some(report_write.as_raw_fd()),
        )?;
        drop(report_write);
        drop(own_listeners);
        self.next_age = age;
        self.workers.insert(
            child,
            WorkerRecord::new(age, report_read, heartbeat, slot, metrics),
        );
        log::info!("Booting worker with pid: {child}");
        Ok(())
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

impl Arbiter {
    /// What every Python program the master starts is handed: `role`, with
    /// the master's effective settings, the real command line, the error
    /// log's path and the TLS bytes.
    pub(super) fn handoff(&self, role: Role) -> Handoff {
        Handoff {
            role,
            settings: self.settings.clone(),
            argv: crate::proc_title::original_args(),
            log_file: crate::logging::log_file().map(Path::to_path_buf),
            tls: self.tls.clone(),
        }
    }
}
