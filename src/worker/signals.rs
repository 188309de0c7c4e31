//! Worker signal handling: a self-pipe that turns signals into readable
//! events for the event loop.
//!
//! After fork the worker inherits the master's handlers (signal-hook's
//! registrations, which write to the master's pipe). We replace them with our
//! own minimal handler via `sigaction`: it only writes the signal number to a
//! non-blocking pipe; the event loop reads the pipe and acts outside the
//! handler. Handlers (unlike a blocked mask) are reset by `exec`, so programs
//! the application spawns see default signal behaviour.

use mio::unix::pipe;
use std::io::{self, Read};
use std::sync::atomic::{AtomicI32, Ordering};

/// Write end of the self-pipe, read by the signal handler.
static PIPE_WRITE_FD: AtomicI32 = AtomicI32::new(-1);

/// What a signal asks of the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerSignal {
    /// TERM: stop accepting, finish the requests in flight, exit.
    GracefulStop,
    /// INT or QUIT: exit at once.
    FastStop,
    /// USR1: reopen log files.
    ReopenLogs,
}

/// The signals the worker catches.
const CAUGHT: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGUSR1];

/// Signals whose disposition goes back to the default after fork (the master
/// handles them; in a worker they should not reach the master's handler).
const RESET_TO_DEFAULT: [libc::c_int; 7] = [
    libc::SIGABRT,
    libc::SIGHUP,
    libc::SIGCHLD,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = PIPE_WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: write(2) is async-signal-safe; `byte` outlives the call. A
        // full pipe (EAGAIN) just drops the byte: enough are already queued to
        // wake the loop. errno is saved and restored so the interrupted code
        // does not see ours.
        unsafe {
            let saved = *libc::__errno_location();
            libc::write(fd, (&byte as *const u8).cast(), 1);
            *libc::__errno_location() = saved;
        }
    }
}

/// The read end of the self-pipe, registered with the worker's poll.
pub struct SignalPipe {
    receiver: pipe::Receiver,
    _sender: pipe::Sender,
}

impl SignalPipe {
    /// Resets the master's dispositions, installs the worker's handlers,
    /// then unblocks all signals. Call once, right after fork.
    pub fn install() -> io::Result<SignalPipe> {
        let (sender, receiver) = pipe::new()?;
        PIPE_WRITE_FD.store(std::os::fd::AsRawFd::as_raw_fd(&sender), Ordering::Relaxed);
        // SAFETY: sigaction/sigprocmask with fully initialised structs; the
        // worker is single-threaded right after fork, and `on_signal` only
        // performs async-signal-safe operations.
        unsafe {
            for signal in RESET_TO_DEFAULT {
                libc::signal(signal, libc::SIG_DFL);
            }
            // A client that goes away must surface as EPIPE, not kill us.
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            for signal in CAUGHT {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // The master forks with signals blocked; unblock only now that our
            // handlers are in place, so a TERM that arrived during the fork
            // reaches the handler instead of the default action.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        }
        Ok(SignalPipe {
            receiver,
            _sender: sender,
        })
    }

    /// The pipe to register for readability.
    pub fn receiver(&mut self) -> &mut pipe::Receiver {
        &mut self.receiver
    }

    /// Drains the pipe and returns the signals received since the last call,
    /// most urgent first.
    pub fn drain(&mut self) -> Vec<WorkerSignal> {
        let mut buf = [0u8; 64];
        let mut seen = Vec::new();
        loop {
            match self.receiver.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    for &byte in &buf[..n] {
                        let signal = match byte as libc::c_int {
                            libc::SIGINT | libc::SIGQUIT => WorkerSignal::FastStop,
                            libc::SIGTERM => WorkerSignal::GracefulStop,
                            libc::SIGUSR1 => WorkerSignal::ReopenLogs,
                            _ => continue,
                        };
                        if !seen.contains(&signal) {
                            seen.push(signal);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        seen.sort_by_key(|s| match s {
            WorkerSignal::FastStop => 0,
            WorkerSignal::GracefulStop => 1,
            WorkerSignal::ReopenLogs => 2,
        });
        seen
    }
}

/// Asks the kernel to send SIGTERM to this worker when the master dies, so
/// no worker outlives its master. Returns false when the master is already
/// gone (the parent changed before the request took effect).
pub fn die_with_master(master_pid: i32) -> bool {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and no pointers;
    // getppid cannot fail.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
        libc::getppid() == master_pid
    }
}
