//! `--preload`: the arbiter's zygotes. The master starts one zygote (the
//! Python program with the zygote's role, `master::python_process`), waits
//! for it to import the app, and then forks every worker through it (a
//! request over its channel; the zygote clones the worker as the master's
//! own child, or, with threads in the zygote, forks twice and the master,
//! a child subreaper, adopts it; either way it is supervised like any
//! other).
//!
//! * A HUP (or a `--reload` request) starts a new zygote beside the old
//!   one; once it is ready it becomes the one workers are forked from, the
//!   old workers are replaced as on a HUP without preload, and the old
//!   zygote is stopped once the new workers serve (if they cannot boot,
//!   the reload is abandoned and workers come from the old zygote again).
//!   A new zygote that cannot import the app is dropped, and the old one
//!   and its workers keep serving.
//! * A zygote that dies is replaced; the workers keep serving meanwhile.
//! * At start, a zygote that cannot import the app halts the server with
//!   the app-load exit code, as a worker does without preload.

use super::{
    Arbiter, ArbiterError, WorkerRecord, BOOT_LIMIT, MAX_RESPAWN_DELAY, QUICK_DEATH, TICK,
};
use crate::handoff::{Role, ZygoteFacts, APP_LOAD_ERROR, WORKER_BOOT_ERROR};
use crate::heartbeat::{Heartbeat, Phase};
use crate::master::python_process;
use crate::metrics::WorkerMetrics;
use crate::zygote_channel::{self, Channel, ForkReply, ForkRequestFds};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{pipe2, Pid};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// How long the master waits for a zygote to answer a fork request (a
/// fork of even a large process takes milliseconds).
const FORK_REPLY_LIMIT: Duration = Duration::from_secs(10);

/// What the master knows of one zygote.
#[derive(Debug)]
pub(super) struct ZygoteRecord {
    pid: Pid,
    channel: Channel,
    /// Read end of its boot-report pipe (non-blocking).
    boot_report: OwnedFd,
    /// `Serving` once the app is imported.
    heartbeat: Heartbeat,
    started_at: Instant,
    /// Started by a HUP or `--reload`: once ready, the workers forked from
    /// the zygote before it are replaced.
    reload: bool,
}

impl Arbiter {
    /// `--preload`, once per loop: promotes a zygote that became ready,
    /// kills one that takes too long to import, and starts one when there
    /// is none.
    pub(super) fn manage_zygotes(&mut self) {
        if !self.settings.preload {
            return;
        }
        if self.reload_from_age.is_none() {
            if let Some(old) = self.retiring_zygote.take() {
                stop_zygote(&old, "old");
            }
        }
        if let Some(next) = &self.next_zygote {
            if next.heartbeat.phase() == Phase::Serving {
                self.promote_next_zygote();
            } else if next.started_at.elapsed() > BOOT_LIMIT {
                log::error!(
                    "ZYGOTE BOOT TIMEOUT (pid:{}): still importing after {}s",
                    next.pid,
                    BOOT_LIMIT.as_secs()
                );
                let _ = kill(next.pid, Signal::SIGKILL);
            }
        }
        if self.zygote.is_some() || self.next_zygote.is_some() {
            return;
        }
        if self.zygote_not_before.is_some_and(|at| Instant::now() < at) {
            return;
        }
        self.zygote_not_before = None;
        if let Err(e) = self.start_zygote(false) {
            log::error!("Cannot start the zygote: {e}; retrying in 1s");
            self.zygote_not_before = Some(Instant::now() + Duration::from_secs(1));
        }
    }

    /// HUP or `--reload` under `--preload`: a new zygote imports the code
    /// anew (one already importing is dropped for it).
    pub(super) fn reload_zygote(&mut self) {
        if let Some(next) = self.next_zygote.take() {
            log::info!("Dropping the zygote (pid:{}) still importing", next.pid);
            let _ = kill(next.pid, Signal::SIGKILL);
        }
        if let Err(e) = self.start_zygote(true) {
            log::error!("Reload failed, the old workers keep serving: cannot start a zygote: {e}");
            self.ready_pending = true;
        }
    }

    /// Starts a zygote (the Python program with the zygote's role); it is
    /// the next one until it is ready.
    fn start_zygote(&mut self, reload: bool) -> io::Result<()> {
        let (master_end, zygote_end) = zygote_channel::pair()?;
        let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let heartbeat = Heartbeat::new()?;
        let listeners: Vec<RawFd> = self
            .sockets
            .listeners()
            .iter()
            .map(AsRawFd::as_raw_fd)
            .collect();
        let facts = ZygoteFacts {
            listeners: listeners.clone(),
            serves_tls: self.sockets.serves_tls().to_vec(),
            boot_report: report_write.as_raw_fd(),
            heartbeat: heartbeat.fd().as_raw_fd(),
            channel: zygote_end.as_fd().as_raw_fd(),
            master_pid: self.master_pid.as_raw(),
        };
        let inherit: Vec<RawFd> = listeners
            .iter()
            .copied()
            .chain([facts.boot_report, facts.heartbeat, facts.channel])
            .collect();
        let handoff = self.handoff(Role::Zygote(facts));
        let _ = io::stderr().flush();
        let child = python_process::start(
            &self.python,
            &handoff,
            &inherit,
            Some(report_write.as_raw_fd()),
        )?;
        drop((report_write, zygote_end));
        log::info!("Booting zygote with pid: {child}");
        self.next_zygote = Some(ZygoteRecord {
            pid: child,
            channel: master_end,
            boot_report: report_read,
            heartbeat,
            started_at: Instant::now(),
            reload,
        });
        Ok(())
    }

    /// The next zygote imported the app: workers are forked from it now.
    /// After a reload, the workers of the old one are replaced (one for one
    /// as the new ones serve) and the old zygote is stopped.
    fn promote_next_zygote(&mut self) {
        let Some(next) = self.next_zygote.take() else {
            return;
        };
        log::info!("Zygote (pid:{}) ready", next.pid);
        self.zygote_ever_ready = true;
        let reload = next.reload;
        if let Some(old) = self.zygote.replace(next) {
            // Kept until the new workers serve: a reload abandoned because
            // they cannot boot goes back to it.
            if let Some(older) = self.retiring_zygote.replace(old) {
                stop_zygote(&older, "old");
            }
        }
        if reload {
            self.ready_pending = true;
            self.reload_from_age = Some(self.next_age);
            for worker in self.workers.values_mut() {
                if worker.stopping_since.is_none() {
                    worker.replaced = true;
                }
            }
        }
    }

    /// A reload is abandoned (a new worker cannot boot): workers are forked
    /// from the old zygote again, and the new one is stopped.
    pub(super) fn fall_back_to_the_old_zygote(&mut self) {
        let Some(old) = self.retiring_zygote.take() else {
            return;
        };
        if let Some(new) = self.zygote.replace(old) {
            stop_zygote(&new, "abandoned reload's");
        }
    }

    /// Whether a reload's new zygote is importing.
    pub(super) fn zygote_reload_pending(&self) -> bool {
        self.next_zygote.as_ref().is_some_and(|next| next.reload)
    }

    /// Whether a worker can be forked now (always without `--preload`).
    pub(super) fn can_spawn_workers(&self) -> bool {
        !self.settings.preload || self.zygote.is_some()
    }

    /// Asks the zygote for one worker and records it. A zygote that does
    /// not answer is killed (and replaced once reaped).
    pub(super) fn spawn_worker_from_zygote(&mut self) -> io::Result<()> {
        let Some(zygote) = &self.zygote else {
            return Err(io::Error::other("no zygote is ready"));
        };
        let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let heartbeat = Heartbeat::new()?;
        let metrics = self.counting().then(WorkerMetrics::new).transpose()?;
        let slot = self.free_slot();
        let own_listeners = self.sockets.worker_listeners()?.unwrap_or_default();
        let age = self.next_age + 1;
        let fds = ForkRequestFds {
            boot_report: report_write.as_fd(),
            heartbeat: heartbeat.fd(),
            metrics: metrics.as_ref().map(WorkerMetrics::fd),
            listeners: own_listeners.iter().map(AsFd::as_fd).collect(),
        };
        let asked = zygote
            .channel
            .send_request(age, &fds)
            .and_then(|()| zygote.channel.recv_reply(FORK_REPLY_LIMIT));
        drop(fds);
        drop((report_write, own_listeners));
        let pid = match asked {
            Ok(ForkReply::Forked(pid)) => Pid::from_raw(pid),
            Ok(ForkReply::Failed(reason)) => return Err(io::Error::other(reason)),
            Err(e) => {
                let pid = zygote.pid;
                log::error!("Zygote (pid:{pid}) does not answer ({e}); killing it");
                let _ = kill(pid, Signal::SIGKILL);
                return Err(io::Error::other(e.to_string()));
            }
        };
        self.next_age = age;
        self.workers.insert(
            pid,
            WorkerRecord::new(age, report_read, heartbeat, slot, metrics),
        );
        log::info!("Booting worker with pid: {pid} (forked by the zygote)");
        Ok(())
    }

    /// A reaped process that is one of the zygotes: `None` if `pid` is not
    /// one; else `Some` of a halt, when the first zygote could not import
    /// the app.
    pub(super) fn on_zygote_exit(
        &mut self,
        pid: Pid,
        code: Option<i32>,
        signal: Option<Signal>,
    ) -> Option<Option<ArbiterError>> {
        let how = match (code, signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("was sent {}", signal.as_str()),
            (None, None) => "ended".to_string(),
        };
        if self.retiring_zygote.as_ref().is_some_and(|z| z.pid == pid) {
            self.retiring_zygote = None;
            log::debug!("Old zygote (pid:{pid}) {how}");
            return Some(None);
        }
        if self.zygote.as_ref().is_some_and(|z| z.pid == pid) {
            let died = self.zygote.take().expect("checked above");
            log::error!("Zygote (pid:{pid}) {how}; starting a new one (the workers keep serving)");
            if died.started_at.elapsed() < QUICK_DEATH {
                // Dying as soon as it is ready: do not restart in a tight loop.
                self.zygote_not_before = Some(Instant::now() + TICK);
            }
            return Some(None);
        }
        if self.next_zygote.as_ref().is_none_or(|z| z.pid != pid) {
            return None;
        }
        let next = self.next_zygote.take().expect("checked above");
        let report = super::reap::read_boot_report(next.boot_report);
        let failure = match code {
            Some(WORKER_BOOT_ERROR) => ArbiterError::WorkerBoot(report.clone()),
            Some(APP_LOAD_ERROR) => ArbiterError::AppLoad(report.clone()),
            _ => ArbiterError::WorkerBoot(format!("the zygote {how}")),
        };
        if !self.zygote_ever_ready {
            return Some(Some(failure));
        }
        let reason = match code {
            Some(WORKER_BOOT_ERROR | APP_LOAD_ERROR) => report,
            _ => format!("the new zygote (pid:{pid}) {how}"),
        };
        if self.zygote.is_some() {
            log::error!("Reload failed, the old workers keep serving: {reason}");
            // systemd heard RELOADING=1: READY=1 again, for the old set.
            self.ready_pending = true;
        } else {
            log::error!(
                "Zygote failed to start: {reason}; the workers keep serving, retrying in {}s",
                MAX_RESPAWN_DELAY.as_secs()
            );
            self.zygote_not_before = Some(Instant::now() + MAX_RESPAWN_DELAY);
        }
        Some(None)
    }

    /// SIGKILLs the zygotes and waits for them (on every way out of the
    /// master: they serve nothing, and must not fork any more workers).
    pub(super) fn end_zygotes(&mut self) {
        for zygote in [
            self.zygote.take(),
            self.next_zygote.take(),
            self.retiring_zygote.take(),
        ]
        .into_iter()
        .flatten()
        {
            let _ = kill(zygote.pid, Signal::SIGKILL);
            loop {
                match waitpid(zygote.pid, None) {
                    Err(Errno::EINTR) => continue,
                    Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        }
    }
}

/// TERMs a zygote the master no longer forks from (`which`: for the log);
/// it is reaped, as a stranger, when it exits.
fn stop_zygote(zygote: &ZygoteRecord, which: &str) {
    log::info!("Stopping the {which} zygote (pid:{})", zygote.pid);
    let _ = kill(zygote.pid, Signal::SIGTERM);
}

/// `--preload`: makes the master the reaper of its orphaned descendants,
/// so the workers the zygote forks (through a child that exits at once)
/// become the master's children.
pub(super) fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes an integer flag and no
    // pointers.
    let done = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) };
    match done {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}
