//! Reaping: collecting the workers that exited, logging how each ended,
//! halting on a boot or app-load failure, and slowing down crash loops.

use super::{
    Arbiter, ArbiterError, WorkerRecord, BOOT_REPORT_LIMIT, FIRST_RESPAWN_DELAY, MAX_RESPAWN_DELAY,
    QUICK_DEATH,
};
use crate::handoff::{APP_LOAD_ERROR, PROGRAM_NOT_LOADED, WORKER_BOOT_ERROR};
use crate::heartbeat::Phase;
use crate::master::scoreboard::Ending;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

impl Arbiter {
    /// Collects every exited worker. Returns the first boot or app-load
    /// failure among them (which halts the server), reaping the rest anyway.
    pub(super) fn reap_workers(&mut self) -> Option<ArbiterError> {
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
            if let Some(outcome) = self.on_zygote_exit(pid, code, signal) {
                if failure.is_none() {
                    failure = outcome;
                }
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
    pub(super) fn on_worker_exit(
        &mut self,
        pid: Pid,
        record: WorkerRecord,
        code: Option<i32>,
        signal: Option<Signal>,
    ) -> Option<ArbiterError> {
        // The Python program never ran (its libpython could not be loaded,
        // say): it cannot boot, however often it is started again.
        let code = match code {
            Some(PROGRAM_NOT_LOADED) if record.heartbeat.phase() == Phase::Booting => {
                log::error!(
                    "Worker (pid:{pid}): the Python program could not be loaded (exit \
                     {PROGRAM_NOT_LOADED}; the dynamic loader's reason is above)"
                );
                Some(WORKER_BOOT_ERROR)
            }
            code => code,
        };
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
                self.abandon_reload(&read_boot_report(record.boot_report));
                return None;
            }
        }
        if record.stopping_since.is_none() {
            match code {
                Some(WORKER_BOOT_ERROR) => {
                    return Some(ArbiterError::WorkerBoot(read_boot_report(
                        record.boot_report,
                    )))
                }
                Some(APP_LOAD_ERROR) => {
                    return Some(ArbiterError::AppLoad(read_boot_report(record.boot_report)))
                }
                _ => self.note_unexpected_death(pid, &record),
            }
        }
        None
    }

    /// Tracks crash loops: a worker dying within [`QUICK_DEATH`] of boot
    /// delays the next spawn, more with each consecutive quick death.
    pub(super) fn note_unexpected_death(&mut self, pid: Pid, record: &WorkerRecord) {
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
}

/// The delay before the next spawn after `quick_deaths` consecutive quick
/// deaths: none for the first (a one-off crash is replaced at once), then
/// doubling from [`FIRST_RESPAWN_DELAY`] up to [`MAX_RESPAWN_DELAY`].
pub(super) fn respawn_delay(quick_deaths: u32) -> Option<Duration> {
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

/// The first non-empty line a failed worker (or zygote) wrote to its
/// boot-report pipe, given its read end.
pub(super) fn read_boot_report(boot_report: OwnedFd) -> String {
    let mut bytes = Vec::new();
    // The pipe is non-blocking: whatever was written is there (the worker
    // has exited); an error (WouldBlock if a grandchild still holds the
    // write end) just ends the read with what we have.
    let _ = std::fs::File::from(boot_report)
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
    use crate::heartbeat::Heartbeat;
    use nix::fcntl::OFlag;
    use nix::unistd::pipe2;
    use std::io::Write;

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
            assert_eq!(
                read_boot_report(record_with_report(report).boot_report),
                *expected
            );
        }
    }

    #[test]
    fn boot_report_read_does_not_block_while_a_writer_is_open() {
        let (read, write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        let mut writer = std::fs::File::from(write);
        writer.write_all(b"partial line").unwrap();
        let record = WorkerRecord::new(1, read, Heartbeat::new().unwrap(), 1, None);
        assert_eq!(read_boot_report(record.boot_report), "partial line");
    }
}
