//! Replacing workers without a dip in capacity: HUP (a new set of workers,
//! abandoned if it cannot load the app), `--max-requests` (a successor for
//! each retiring worker) and `--reload` requests from the heartbeat.

use super::{Arbiter, WorkerRecord};
use crate::heartbeat::Phase;
use crate::master::systemd::Notification;
use nix::unistd::Pid;
use std::time::Instant;

impl Arbiter {
    /// `--reload`: whether a serving worker saw a source file change. Every
    /// worker's request is taken at once, so one change is one reload
    /// however many workers noticed it; workers already being replaced do
    /// not count, nor do those made while a `--preload` reload's new zygote
    /// is importing (the old workers are marked replaced only once it is
    /// ready).
    pub(super) fn take_reload_requests(&mut self) -> bool {
        let mut requested = false;
        let reloading = self.zygote_reload_pending();
        for worker in self.workers.values() {
            let asked = worker.heartbeat.take_reload_request();
            requested |= asked && !worker.replaced && worker.stopping_since.is_none();
        }
        let requested = requested && !reloading;
        if requested {
            log::info!("Reloading: a worker saw a source file change");
        }
        requested
    }

    /// Tells every worker the boot time of the one that started serving
    /// last: with `--max-requests` a worker asks for its successor about
    /// one boot before its limit, and the latest boot is the best guess of
    /// how long the next takes (its own may date from a quieter machine).
    pub(super) fn share_boot_times(&mut self) {
        let mut latest = None;
        for worker in self.workers.values_mut() {
            if let (false, Some(boot)) = (worker.boot_shared, worker.heartbeat.boot()) {
                worker.boot_shared = true;
                latest = Some(boot);
            }
        }
        if let Some(boot) = latest {
            for worker in self.workers.values() {
                worker.heartbeat.set_latest_boot(boot);
            }
        }
    }

    /// Workers near or at `--max-requests` ask for a successor (each asks
    /// about one boot before its limit, see `worker::recycling`).
    pub(super) fn note_retiring_workers(&mut self) {
        for (pid, worker) in self.workers.iter_mut() {
            if !worker.replaced
                && worker.stopping_since.is_none()
                && worker.heartbeat.phase() == Phase::Retiring
            {
                log::info!("Worker (pid:{pid}) asked for its successor (max requests); booting it");
                worker.replaced = true;
                worker.asked_at = Some(Instant::now());
            }
        }
    }

    /// TERMs workers being replaced (by HUP or max-requests) one for one as
    /// their successors serve, so capacity never dips below the wanted
    /// number and no old worker serves longer than it takes one successor
    /// to boot. Workers that asked for a successor (max-requests) go first,
    /// in the order they asked (the first to ask is nearest its limit),
    /// then the oldest.
    pub(super) fn retire_replaced_workers(&mut self) {
        let active = |w: &&WorkerRecord| w.stopping_since.is_none();
        let serving_successors = self
            .workers
            .values()
            .filter(active)
            .filter(|w| !w.replaced && w.heartbeat.phase() == Phase::Serving)
            .count();
        // Sorted: those that asked (or reached max-requests after a HUP),
        // by when they asked, then the oldest.
        let mut replaced: Vec<(bool, bool, Option<Instant>, u64, Pid)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.replaced && w.stopping_since.is_none())
            .map(|(pid, w)| {
                let retiring = w.heartbeat.phase() == Phase::Retiring;
                (!retiring, w.asked_at.is_none(), w.asked_at, w.age, *pid)
            })
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
        for (_, _, _, _, pid) in replaced.into_iter().take(can_retire) {
            self.retire_worker(pid);
        }
        if serving_successors >= self.num_workers as usize {
            self.reload_from_age = None;
        }
    }

    /// HUP: a new set of workers importing the app afresh; the old ones
    /// keep serving until the new set serves, then stop gracefully.
    pub(super) fn reload(&mut self) {
        log::info!("Hang up: Master");
        self.reread_settings();
        self.tls = crate::master::tls::reload(&self.settings, &self.tls);
        if self.num_workers == 0 {
            self.num_workers = self.settings.workers.max(1);
        }
        self.lifecycle.notifier.notify(Notification::Reloading);
        if self.settings.preload {
            // The new zygote's workers replace these once it is ready.
            self.reload_zygote();
            return;
        }
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
    pub(super) fn reread_settings(&mut self) {
        let Some(launch) = &self.lifecycle.launch else {
            return;
        };
        match crate::master::reconfigure::reread(launch, &self.settings) {
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
    pub(super) fn abandon_reload(&mut self, reason: &str) {
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
        self.fall_back_to_the_old_zygote();
    }
}
