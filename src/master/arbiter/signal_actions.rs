//! What the other signals do: USR1 reopens the logs, USR2 starts a new
//! master on the same sockets (and what happens when it goes away), WINCH
//! stops the workers of a daemon.

use super::Arbiter;
use crate::master::upgrade;
use crate::os_error::os_error_text;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{self, Write};

impl Arbiter {
    /// USR1: asks every worker to reopen its logs, then reopens the error
    /// log here. Workers first: once the new file exists, the workers have
    /// been told, so what they log next goes there.
    pub(super) fn reopen_logs(&mut self) {
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
    pub(super) fn upgrade(&mut self) {
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
    pub(super) fn on_new_master_exit(
        &mut self,
        pid: Pid,
        code: Option<i32>,
        signal: Option<Signal>,
    ) {
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

    pub(super) fn restore_pid_file(&mut self) {
        if let Some(file) = self.pid_file.as_mut() {
            if let Err(e) = file.restore_from_oldbin() {
                log::error!("Cannot restore the pid file: {}", os_error_text(&e));
            }
        }
    }

    /// WINCH: when daemonised, stops every worker gracefully and keeps
    /// the master (HUP brings them back); otherwise ignored, as gunicorn.
    pub(super) fn handle_winch(&mut self) {
        if !self.settings.daemon {
            log::debug!("SIGWINCH ignored. Not daemonized");
            return;
        }
        log::info!("graceful stop of workers");
        self.num_workers = 0;
        self.kill_workers(Signal::SIGTERM);
    }
}
