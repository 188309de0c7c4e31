//! The master's signals: signal-hook's self-pipe, registered with a mio
//! `Poll`. A handler only writes to the pipe; [`SignalQueue::wait`] wakes the
//! arbiter's loop and hands it the signals to act on, outside any handler.
//!
//! Forks happen with the master's signals blocked ([`block_for_fork`]); the
//! child drops its copy of the [`SignalQueue`] (the arbiter owns it in an
//! `Option` for that) and resets those signals to their default action,
//! still blocked: the worker unblocks them once its own handlers are in
//! place, so a worker never runs with the master's handlers live.

use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{
    pthread_sigmask, sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};
use signal_hook::consts::signal::{
    SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2, SIGWINCH,
};
use signal_hook_mio::v1_0::Signals;
use std::io;
use std::time::Duration;

/// A signal the master acts on, in the order the arbiter handles them when
/// several arrive together (children first, stops last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MasterSignal {
    /// CHLD: a worker exited; reap it.
    Child,
    /// HUP: reload (a new set of workers, then retire the old).
    HangUp,
    /// TTIN: one worker more.
    IncreaseWorkers,
    /// TTOU: one worker fewer (never below one).
    DecreaseWorkers,
    /// USR1: reopen log files (nothing to reopen yet: stderr only).
    ReopenLogs,
    /// USR2: binary upgrade (not supported yet).
    Upgrade,
    /// WINCH: gunicorn stops the workers of a daemonised master; ignored here
    /// as the master never daemonises.
    WindowChange,
    /// TERM: graceful stop.
    GracefulStop,
    /// INT or QUIT: fast stop.
    FastStop,
}

impl MasterSignal {
    fn from_number(signal: libc::c_int) -> Option<MasterSignal> {
        Some(match signal {
            SIGCHLD => MasterSignal::Child,
            SIGHUP => MasterSignal::HangUp,
            SIGTTIN => MasterSignal::IncreaseWorkers,
            SIGTTOU => MasterSignal::DecreaseWorkers,
            SIGUSR1 => MasterSignal::ReopenLogs,
            SIGUSR2 => MasterSignal::Upgrade,
            SIGWINCH => MasterSignal::WindowChange,
            SIGTERM => MasterSignal::GracefulStop,
            SIGINT | SIGQUIT => MasterSignal::FastStop,
            _ => return None,
        })
    }
}

/// The signals the master registers.
const HANDLED: [libc::c_int; 10] = [
    SIGCHLD, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2, SIGWINCH, SIGTERM, SIGINT, SIGQUIT,
];

const SIGNALS: Token = Token(0);
/// Another fd whose readiness wakes the loop (the metrics endpoint's poll).
const WATCHED: Token = Token(1);

/// The self-pipe and the poll that waits on it.
pub struct SignalQueue {
    poll: Poll,
    signals: Signals,
    events: Events,
    /// The raw names of the signals last returned by [`SignalQueue::wait`],
    /// for `Handling signal: term` log lines.
    last_names: Vec<(MasterSignal, &'static str)>,
}

impl SignalQueue {
    /// Registers the master's handlers and ignores SIGPIPE (a client or
    /// worker going away must surface as EPIPE, never kill the master).
    pub fn install() -> io::Result<SignalQueue> {
        ignore_sigpipe()?;
        let mut signals = Signals::new(HANDLED)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        Ok(SignalQueue {
            poll,
            signals,
            events: Events::with_capacity(4),
            last_names: Vec::new(),
        })
    }

    /// Makes [`SignalQueue::wait`] also return when `fd` becomes readable
    /// (with no signal, if none came).
    pub fn watch(&mut self, fd: std::os::fd::RawFd) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut mio::unix::SourceFd(&fd), WATCHED, Interest::READABLE)
    }

    /// Waits up to `timeout` for a signal, then returns every pending one,
    /// each once, in handling order, with its lowercase name (`term`).
    pub fn wait(&mut self, timeout: Duration) -> io::Result<&[(MasterSignal, &'static str)]> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        self.last_names.clear();
        for number in self.signals.pending() {
            if let Some(signal) = MasterSignal::from_number(number) {
                self.last_names.push((signal, signal_name(number)));
            }
        }
        self.last_names.sort();
        self.last_names.dedup_by_key(|(signal, _)| *signal);
        Ok(&self.last_names)
    }
}

/// gunicorn's lowercase signal names for `Handling signal: ...`.
fn signal_name(signal: libc::c_int) -> &'static str {
    match signal {
        SIGCHLD => "chld",
        SIGHUP => "hup",
        SIGTTIN => "ttin",
        SIGTTOU => "ttou",
        SIGUSR1 => "usr1",
        SIGUSR2 => "usr2",
        SIGWINCH => "winch",
        SIGTERM => "term",
        SIGINT => "int",
        SIGQUIT => "quit",
        _ => "unknown",
    }
}

/// The master's signals, blocked around a fork so that none reaches the
/// child while it still has the master's handlers (which would swallow it).
/// The parent unblocks them with [`BlockedSignals::restore`]; the child
/// resets them with [`BlockedSignals::reset_in_child`] and leaves the
/// unblocking to the worker.
#[must_use = "the signals stay blocked until restored"]
pub struct BlockedSignals {
    previous: SigSet,
}

/// Blocks every signal the master handles, remembering the previous mask.
pub fn block_for_fork() -> io::Result<BlockedSignals> {
    let mut handled = SigSet::empty();
    for number in HANDLED {
        handled.add(Signal::try_from(number)?);
    }
    let mut previous = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&handled), Some(&mut previous))?;
    Ok(BlockedSignals { previous })
}

impl BlockedSignals {
    /// Unblocks: a signal that arrived meanwhile is handled now.
    pub fn restore(self) {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.previous), None);
    }

    /// In a forked child, after it dropped its copy of the [`SignalQueue`]:
    /// puts the master's signals back to their default action and leaves
    /// them blocked. The worker unblocks them when it installs its own
    /// handlers (`SignalPipe::install` sets an empty mask), so a TERM sent
    /// to a new worker is never swallowed by the master's handler: it waits
    /// for the worker's handler, or, if it is unblocked first, stops the
    /// worker by its default action. SIGPIPE stays ignored.
    pub fn reset_in_child(self) {
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        for number in HANDLED {
            if let Ok(signal) = Signal::try_from(number) {
                // SAFETY: installing SIG_DFL runs no code in signal context.
                let _ = unsafe { sigaction(signal, &default) };
            }
        }
    }
}

fn ignore_sigpipe() -> io::Result<()> {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_IGN runs no code in signal context.
    unsafe { sigaction(Signal::SIGPIPE, &ignore) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_to_master_actions() {
        let cases: &[(libc::c_int, Option<MasterSignal>)] = &[
            (SIGCHLD, Some(MasterSignal::Child)),
            (SIGHUP, Some(MasterSignal::HangUp)),
            (SIGTTIN, Some(MasterSignal::IncreaseWorkers)),
            (SIGTTOU, Some(MasterSignal::DecreaseWorkers)),
            (SIGTERM, Some(MasterSignal::GracefulStop)),
            (SIGINT, Some(MasterSignal::FastStop)),
            (SIGQUIT, Some(MasterSignal::FastStop)),
            (libc::SIGSEGV, None),
        ];
        for (number, expected) in cases {
            assert_eq!(MasterSignal::from_number(*number), *expected, "{number}");
        }
    }

    #[test]
    fn stops_are_handled_after_children() {
        assert!(MasterSignal::Child < MasterSignal::GracefulStop);
        assert!(MasterSignal::IncreaseWorkers < MasterSignal::FastStop);
    }
}
