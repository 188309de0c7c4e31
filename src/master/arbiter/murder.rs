//! Murder (gunicorn's word): killing the workers that stopped proving they
//! are alive (stuck past `--timeout`, still booting after the boot limit)
//! and the stopping ones that outlived the graceful timeout.

use super::{Arbiter, ABORT_GRACE, BOOT_LIMIT, EXIT_GRACE};
use crate::heartbeat::Phase;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::time::{Duration, Instant};

impl Arbiter {
    /// Kills workers that stopped proving they are alive: stuck in the
    /// application past `--timeout` (SIGABRT, so the worker dumps where it
    /// is stuck; SIGKILL after a grace), or still booting after
    /// [`BOOT_LIMIT`]. Then SIGKILLs stopping workers that outlived the
    /// graceful timeout.
    pub(super) fn murder_workers(&mut self) {
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

    /// SIGKILLs stopping workers that outlived the graceful timeout.
    pub(super) fn murder_stopping_workers(&mut self) {
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
}
