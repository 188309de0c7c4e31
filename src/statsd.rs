//! A statsd client (gunicorn's `--statsd-host`): lines such as
//! `gunicorn.requests:1|c` sent over a connected, non-blocking UDP socket.
//! A send that would block is dropped, never waited for, and the caller is
//! told so it can count it.
//!
//! One client per server, opened by the master before the first fork and
//! inherited by the workers ([`install`], [`client`]): every process sends
//! on the same socket, each datagram whole. The names and line shapes are
//! gunicorn's, so a dashboard built for it keeps working; `--statsd-prefix`
//! goes in front of every name and `--dogstatsd-tags` after every line.

use std::fmt::Write as _;
use std::io;
use std::net::{ToSocketAddrs, UdpSocket};
use std::sync::OnceLock;

/// The most bytes of one datagram (safe on any link without fragmenting).
const MAX_DATAGRAM: usize = 1432;

/// The kind of a statsd metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `|c`: added up by the server.
    Counter,
    /// `|g`: the latest value.
    Gauge,
    /// `|ms`: a duration in milliseconds (gunicorn's histogram).
    Timer,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Counter => "c",
            Kind::Gauge => "g",
            Kind::Timer => "ms",
        }
    }
}

/// A connected statsd client.
#[derive(Debug)]
pub struct Statsd {
    socket: UdpSocket,
    /// `--statsd-prefix` with one trailing dot, or empty.
    prefix: String,
    /// `|#tag,tag` from `--dogstatsd-tags`, or empty.
    tags: String,
}

impl Statsd {
    /// Resolves `host` and connects a non-blocking UDP socket to it.
    pub fn connect(host: &str, port: u16, prefix: &str, tags: &str) -> io::Result<Statsd> {
        let target = (host, port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address for the host"))?;
        let local = match target {
            std::net::SocketAddr::V4(_) => "0.0.0.0:0",
            std::net::SocketAddr::V6(_) => "[::]:0",
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(target)?;
        socket.set_nonblocking(true)?;
        Ok(Statsd {
            socket,
            prefix: normalized_prefix(prefix),
            tags: tags_suffix(tags),
        })
    }

    /// Appends one line (`PREFIXname:value|kind|#tags`, newline-separated
    /// from the one before) to `packet`.
    pub fn line(&self, packet: &mut String, name: &str, value: impl std::fmt::Display, kind: Kind) {
        if !packet.is_empty() {
            packet.push('\n');
        }
        let _ = write!(
            packet,
            "{}{name}:{value}|{}{}",
            self.prefix,
            kind.suffix(),
            self.tags
        );
    }

    /// Sends `packet` as one datagram (cut at a line if too long). Returns
    /// false when it was dropped (the socket would block, or the kernel
    /// refused it).
    pub fn send(&self, packet: &str) -> bool {
        let mut end = packet.len();
        if end > MAX_DATAGRAM {
            end = packet[..MAX_DATAGRAM].rfind('\n').unwrap_or(MAX_DATAGRAM);
        }
        // An error (would block, or refused because nobody listens) loses
        // the datagram like any other.
        self.socket.send(&packet.as_bytes()[..end]).is_ok()
    }

    /// Sends one metric on its own.
    pub fn send_one(&self, name: &str, value: impl std::fmt::Display, kind: Kind) -> bool {
        let mut packet = String::new();
        self.line(&mut packet, name, value, kind);
        self.send(&packet)
    }
}

/// gunicorn's prefix rule: a non-empty prefix ends with exactly one dot.
fn normalized_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_end_matches('.');
    match trimmed.is_empty() {
        true => String::new(),
        false => format!("{trimmed}."),
    }
}

/// `|#a:b,c` for the comma-separated `tags`, or empty.
fn tags_suffix(tags: &str) -> String {
    let tags: Vec<&str> = tags
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    match tags.is_empty() {
        true => String::new(),
        false => format!("|#{}", tags.join(",")),
    }
}

static CLIENT: OnceLock<Statsd> = OnceLock::new();

/// Makes `statsd` this process's client (and, after fork, its workers').
/// A second call is ignored.
pub fn install(statsd: Statsd) {
    let _ = CLIENT.set(statsd);
}

/// The process's client, if `--statsd-host` is set.
pub fn client() -> Option<&'static Statsd> {
    CLIENT.get()
}

/// gunicorn's `gunicorn.log.<level>` counter for a warning, error or
/// critical log line (level as gunicorn names it, lower case).
pub fn count_log_line(level: &str) {
    if let Some(statsd) = client() {
        let name = match level {
            "CRITICAL" => "gunicorn.log.critical",
            "ERROR" => "gunicorn.log.error",
            "WARNING" => "gunicorn.log.warning",
            _ => return,
        };
        statsd.send_one(name, 1, Kind::Counter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn prefixes_end_with_one_dot() {
        for (given, expected) in [
            ("", ""),
            ("app", "app."),
            ("app.", "app."),
            ("a.b..", "a.b."),
        ] {
            assert_eq!(normalized_prefix(given), expected, "{given}");
        }
    }

    #[test]
    fn tags_are_appended_dogstatsd_style() {
        assert_eq!(tags_suffix(""), "");
        assert_eq!(tags_suffix("env:prod, app:web"), "|#env:prod,app:web");
    }

    #[test]
    fn lines_reach_a_udp_listener() {
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let statsd = Statsd::connect("127.0.0.1", port, "app", "env:test").unwrap();
        let mut packet = String::new();
        statsd.line(&mut packet, "gunicorn.requests", 1, Kind::Counter);
        statsd.line(&mut packet, "gunicorn.request.duration", 1.5, Kind::Timer);
        assert!(statsd.send(&packet));
        let mut buf = [0u8; 2048];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "app.gunicorn.requests:1|c|#env:test\napp.gunicorn.request.duration:1.5|ms|#env:test"
        );
    }
}
