//! Registering listening sockets for exclusive, level-triggered wake-ups.
//!
//! Every worker polls the same listening sockets. With plain registration the
//! kernel wakes every worker for each new connection (a thundering herd) and
//! the fastest one tends to take them all. With `EPOLLEXCLUSIVE` the kernel
//! wakes one worker that is waiting in `epoll_wait`, so a worker busy in the
//! application is passed over and an idle one accepts. Level-triggered, so a
//! worker may accept a bounded batch and be told again about the rest.
//!
//! Workers with app threads register plainly instead (see
//! `EventLoop::accept_from`): such a worker stops polling the listeners
//! while its threads are full, and with `EPOLLEXCLUSIVE` the one wake-up a
//! new connection caused may have gone to it, so a sibling with free
//! threads would never hear of the connections it left in the backlog.
//! Plainly registered (level-triggered), every polling worker is told
//! about them as long as they wait.
//!
//! mio does not expose these flags, so the listener is added to mio's own
//! epoll instance with `epoll_ctl`, carrying its token in the event data
//! exactly as mio does; mio then reports its events like any other.

use mio::{Poll, Token};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// Adds `listener` to `poll` for readability, with `EPOLLEXCLUSIVE` if
/// `exclusive` (falling back to a plain level-triggered registration where
/// the kernel lacks it).
pub fn add(poll: &Poll, listener: RawFd, token: Token, exclusive: bool) -> io::Result<()> {
    if !exclusive {
        return control(
            poll,
            libc::EPOLL_CTL_ADD,
            listener,
            libc::EPOLLIN as u32,
            token,
        );
    }
    let exclusive = (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32;
    match control(poll, libc::EPOLL_CTL_ADD, listener, exclusive, token) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => control(
            poll,
            libc::EPOLL_CTL_ADD,
            listener,
            libc::EPOLLIN as u32,
            token,
        ),
        other => other,
    }
}

/// Removes `listener` from `poll` (to stop accepting while at the connection
/// cap, or for good on a graceful stop).
pub fn remove(poll: &Poll, listener: RawFd) -> io::Result<()> {
    control(poll, libc::EPOLL_CTL_DEL, listener, 0, Token(0))
}

fn control(poll: &Poll, op: libc::c_int, fd: RawFd, events: u32, token: Token) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events,
        u64: token.0 as u64,
    };
    // SAFETY: `poll` owns a live epoll descriptor and `fd` is an open socket
    // owned by the caller; `event` is a valid, initialised epoll_event that
    // outlives the call (the kernel copies it).
    let result = unsafe { libc::epoll_ctl(poll.as_raw_fd(), op, fd, &mut event) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
