//! The wire between the master and the preload zygote: a `SOCK_SEQPACKET`
//! socket pair, one message per fork request and one per reply, the
//! descriptors a worker needs travelling beside the request (`SCM_RIGHTS`).
//!
//! The master asks with a [`ForkRequest`]: the worker's age and the
//! descriptors only the master has (the worker's boot-report pipe, its
//! heartbeat and metrics pages, its own `--reuse-port` listeners). The
//! zygote answers with the worker's pid or why it could not fork.
//!
//! Plain bytes and descriptors; no Python, no process logic.

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The most descriptors one request carries (boot report, heartbeat,
/// metrics, and one listener per `--bind`).
const MAX_FDS: usize = 64;
/// The largest message either side sends.
const MAX_MESSAGE: usize = 1024;

const REQUEST: u8 = b'F';
const FORKED: u8 = b'P';
const FAILED: u8 = b'E';

/// Why a message could not be exchanged.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The socket failed (or timed out: `WouldBlock`).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The other side closed its end.
    #[error("the other side closed the channel")]
    Closed,
    /// A message that is not one of ours.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

/// A request for one worker, as the zygote receives it.
#[derive(Debug)]
pub struct ForkRequest {
    /// The worker's spawn order (gunicorn's `worker.age`).
    pub age: u64,
    /// The write end of the worker's boot-report pipe.
    pub boot_report: OwnedFd,
    /// The worker's heartbeat page.
    pub heartbeat: OwnedFd,
    /// The worker's metrics page (with `--metrics-bind` or `--statsd-host`).
    pub metrics: Option<OwnedFd>,
    /// With `--reuse-port`: the worker's own listeners, in `--bind` order.
    pub listeners: Vec<OwnedFd>,
}

/// The descriptors of a request, as the master sends them.
pub struct ForkRequestFds<'a> {
    pub boot_report: BorrowedFd<'a>,
    pub heartbeat: BorrowedFd<'a>,
    pub metrics: Option<BorrowedFd<'a>>,
    pub listeners: Vec<BorrowedFd<'a>>,
}

/// What the zygote answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForkReply {
    /// The worker runs with this pid.
    Forked(i32),
    /// It could not be forked; the reason.
    Failed(String),
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    socket: OwnedFd,
}

/// A connected pair: `(master's end, zygote's end)`, both close-on-exec.
pub fn pair() -> io::Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel { socket: a }, Channel { socket: b }))
}

impl Channel {
    /// Wraps an end received another way (an inherited descriptor).
    pub fn from_fd(socket: OwnedFd) -> Channel {
        Channel { socket }
    }

    /// The socket, e.g. to close it in a child that must not keep it.
    pub fn into_fd(self) -> OwnedFd {
        self.socket
    }

    /// Master: sends a fork request.
    pub fn send_request(&self, age: u64, fds: &ForkRequestFds<'_>) -> Result<(), ChannelError> {
        let mut body = vec![REQUEST];
        body.extend_from_slice(&age.to_le_bytes());
        body.push(u8::from(fds.metrics.is_some()));
        body.extend_from_slice(&(fds.listeners.len() as u32).to_le_bytes());
        let mut raw: Vec<RawFd> = vec![fds.boot_report.as_raw_fd(), fds.heartbeat.as_raw_fd()];
        raw.extend(fds.metrics.iter().map(|fd| fd.as_raw_fd()));
        raw.extend(fds.listeners.iter().map(|fd| fd.as_raw_fd()));
        if raw.len() > MAX_FDS {
            return Err(ChannelError::Malformed("too many descriptors"));
        }
        self.send(&body, &raw)
    }

    /// Zygote: waits for the next request (blocking).
    pub fn recv_request(&self) -> Result<ForkRequest, ChannelError> {
        let (body, fds) = self.recv()?;
        let mut fds = fds.into_iter();
        let mut next_fd = || {
            fds.next()
                .ok_or(ChannelError::Malformed("missing descriptor"))
        };
        let [REQUEST, rest @ ..] = body.as_slice() else {
            return Err(ChannelError::Malformed("not a fork request"));
        };
        if rest.len() != 8 + 1 + 4 {
            return Err(ChannelError::Malformed("fork request of the wrong length"));
        }
        let age = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        let has_metrics = rest[8] == 1;
        let listeners = u32::from_le_bytes(rest[9..13].try_into().expect("4 bytes")) as usize;
        let boot_report = next_fd()?;
        let heartbeat = next_fd()?;
        let metrics = match has_metrics {
            true => Some(next_fd()?),
            false => None,
        };
        let listeners = (0..listeners)
            .map(|_| next_fd())
            .collect::<Result<_, _>>()?;
        Ok(ForkRequest {
            age,
            boot_report,
            heartbeat,
            metrics,
            listeners,
        })
    }

    /// Zygote: answers the request just received.
    pub fn send_reply(&self, reply: &ForkReply) -> Result<(), ChannelError> {
        let mut body = Vec::new();
        match reply {
            ForkReply::Forked(pid) => {
                body.push(FORKED);
                body.extend_from_slice(&pid.to_le_bytes());
            }
            ForkReply::Failed(reason) => {
                body.push(FAILED);
                body.extend(reason.bytes().take(MAX_MESSAGE - 1));
            }
        }
        self.send(&body, &[])
    }

    /// Master: waits up to `timeout` for the reply to its request.
    pub fn recv_reply(&self, timeout: Duration) -> Result<ForkReply, ChannelError> {
        nix::sys::socket::setsockopt(
            &self.socket,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(
                timeout.as_secs() as libc::time_t,
                timeout.subsec_micros() as libc::suseconds_t,
            ),
        )
        .map_err(io::Error::from)?;
        let (body, _) = self.recv()?;
        match body.split_first() {
            Some((&FORKED, pid)) if pid.len() == 4 => Ok(ForkReply::Forked(i32::from_le_bytes(
                pid.try_into().expect("4 bytes"),
            ))),
            Some((&FAILED, reason)) => Ok(ForkReply::Failed(
                String::from_utf8_lossy(reason).into_owned(),
            )),
            _ => Err(ChannelError::Malformed("not a fork reply")),
        }
    }

    fn send(&self, body: &[u8], fds: &[RawFd]) -> Result<(), ChannelError> {
        let iov = [IoSlice::new(body)];
        let rights = [ControlMessage::ScmRights(fds)];
        let control: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
        loop {
            match sendmsg::<()>(
                self.socket.as_raw_fd(),
                &iov,
                control,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EPIPE) => return Err(ChannelError::Closed),
                Err(e) => return Err(io::Error::from(e).into()),
            }
        }
    }

    fn recv(&self) -> Result<(Vec<u8>, Vec<OwnedFd>), ChannelError> {
        let mut body = vec![0u8; MAX_MESSAGE];
        let mut control = nix::cmsg_space!([RawFd; MAX_FDS]);
        loop {
            let mut iov = [IoSliceMut::new(&mut body)];
            let message = match recvmsg::<()>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut control),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(message) => message,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e).into()),
            };
            let mut fds = Vec::new();
            for cmsg in message.cmsgs().map_err(io::Error::from)? {
                if let ControlMessageOwned::ScmRights(raw) = cmsg {
                    // SAFETY: the kernel just installed these descriptors in
                    // this process for us; nothing else owns them.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            let len = message.bytes;
            let truncated = message.flags.contains(MsgFlags::MSG_TRUNC)
                || message.flags.contains(MsgFlags::MSG_CTRUNC);
            if len == 0 && fds.is_empty() {
                return Err(ChannelError::Closed);
            }
            if truncated {
                return Err(ChannelError::Malformed("truncated message"));
            }
            body.truncate(len);
            return Ok((body, fds));
        }
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_request_carries_its_descriptors_in_order() {
        let (master, zygote) = pair().unwrap();
        let (report_read, report_write) = nix::unistd::pipe().unwrap();
        let heartbeat = std::fs::File::open("/dev/null").unwrap();
        let (l1_read, l1_write) = nix::unistd::pipe().unwrap();
        let fds = ForkRequestFds {
            boot_report: report_write.as_fd(),
            heartbeat: heartbeat.as_fd(),
            metrics: None,
            listeners: vec![l1_write.as_fd()],
        };
        master.send_request(7, &fds).unwrap();
        let request = zygote.recv_request().unwrap();
        assert_eq!(request.age, 7);
        assert!(request.metrics.is_none());
        assert_eq!(request.listeners.len(), 1);
        drop((report_write, l1_write));
        std::fs::File::from(request.boot_report)
            .write_all(b"report")
            .unwrap();
        std::fs::File::from(request.listeners.into_iter().next().unwrap())
            .write_all(b"listener")
            .unwrap();
        let mut text = String::new();
        std::fs::File::from(report_read)
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "report");
        text.clear();
        std::fs::File::from(l1_read)
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "listener");
    }

    #[test]
    fn replies_round_trip() {
        let (master, zygote) = pair().unwrap();
        for reply in [ForkReply::Forked(4242), ForkReply::Failed("no".into())] {
            zygote.send_reply(&reply).unwrap();
            assert_eq!(master.recv_reply(Duration::from_secs(5)).unwrap(), reply);
        }
    }

    #[test]
    fn a_missing_reply_times_out_and_a_closed_end_is_closed() {
        let (master, zygote) = pair().unwrap();
        let e = master.recv_reply(Duration::from_millis(10)).unwrap_err();
        assert!(matches!(e, ChannelError::Io(ref e) if e.kind() == io::ErrorKind::WouldBlock));
        drop(zygote);
        assert!(matches!(
            master.recv_reply(Duration::from_secs(5)),
            Err(ChannelError::Closed)
        ));
    }
}
