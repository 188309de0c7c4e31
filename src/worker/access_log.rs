//! The access log: one line per response, in gunicorn's `access_log_format`
//! language (`%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`),
//! so log pipelines written for gunicorn keep parsing it.
//!
//! The format is parsed once per worker into atoms; each response renders
//! into a buffer that the event loop flushes between polls with
//! non-blocking writes, so a slow log reader never stalls serving, and
//! flushes completely (blocking) when the worker exits.

use super::wsgi::access_entry::{AccessEntry, AccessRecorder};
use crate::http::{self, Version};
use crate::listener::Endpoint;
use crate::local_time::LocalTime;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;

/// Lines kept while the log cannot be written; beyond this the oldest
/// pending bytes are dropped (and the loss logged) rather than growing.
const PENDING_LIMIT: usize = 4 * 1024 * 1024;

/// Why an access log could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    /// The format string is malformed.
    #[error("--access-logformat: {0}")]
    Format(String),
    /// The log file cannot be opened.
    #[error("--access-logfile: cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
}

/// One piece of a parsed format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Literal(String),
    /// `h`: remote address.
    RemoteAddr,
    /// `l` (always `-`) and unknown atoms.
    Dash,
    /// `u`: the user name of HTTP Basic authentication, else `-`.
    User,
    /// `t`: the time, `[10/Oct/2000:13:55:36 -0700]`.
    Time,
    /// `r`: the request line.
    RequestLine,
    /// `s`: the status code.
    Status,
    /// `m`: the method.
    Method,
    /// `U`: the path without the query.
    Path,
    /// `q`: the query string.
    Query,
    /// `H`: the protocol.
    Protocol,
    /// `b`: body bytes sent (`-` when none); `B`: the same, `0` when none.
    BodyBytes {
        dash_when_zero: bool,
    },
    /// `f`: Referer; `a`: User-Agent.
    RequestHeader(String),
    /// `{name}o`.
    ResponseHeader(String),
    /// `{name}e`.
    Environ(String),
    /// `T` seconds, `M` milliseconds, `D` microseconds, `L` decimal seconds.
    Duration(DurationUnit),
    /// `p`: `<PID>`.
    Pid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DurationUnit {
    Seconds,
    Millis,
    Micros,
    Decimal,
}

/// A parsed access log format.
#[derive(Debug, Clone)]
pub struct AccessFormat {
    atoms: Vec<Atom>,
}

impl AccessFormat {
    /// Parses a gunicorn format: `%(NAME)s` atoms, `%%` for a percent sign,
    /// everything else literal. Unknown names render as `-`, as gunicorn's do.
    pub fn parse(format: &str) -> Result<AccessFormat, AccessLogError> {
        let mut atoms = Vec::new();
        let mut literal = String::new();
        let mut rest = format;
        while let Some(at) = rest.find('%') {
            literal.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('%') {
                literal.push('%');
                rest = after;
                continue;
            }
            let Some(inner) = rest.strip_prefix('(') else {
                return Err(AccessLogError::Format(format!(
                    "'%' must start '%(name)s' or be doubled ('%%') in {format:?}"
                )));
            };
            let Some(close) = inner.find(")s") else {
                return Err(AccessLogError::Format(format!(
                    "unterminated '%(' in {format:?}"
                )));
            };
            if !literal.is_empty() {
                atoms.push(Atom::Literal(std::mem::take(&mut literal)));
            }
            atoms.push(atom_named(&inner[..close]));
            rest = &inner[close + 2..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            atoms.push(Atom::Literal(literal));
        }
        Ok(AccessFormat { atoms })
    }

    /// Whether rendering reads the environ (`{name}e` atoms).
    pub fn needs_environ(&self) -> bool {
        self.atoms.iter().any(|a| matches!(a, Atom::Environ(_)))
    }

    /// Appends one line (with its newline) for `entry` to `out`.
    pub fn render(&self, entry: &AccessEntry<'_>, out: &mut Vec<u8>) {
        for atom in &self.atoms {
            match atom {
                Atom::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Atom::RemoteAddr => match entry.peer {
                    Endpoint::Tcp(addr) => {
                        let _ = write!(out, "{}", addr.ip());
                    }
                    Endpoint::Unix => out.push(b'-'),
                },
                Atom::Dash => out.push(b'-'),
                Atom::User => match basic_auth_user(entry.request_header(b"authorization")) {
                    Some(user) => out.extend_from_slice(&user),
                    None => out.push(b'-'),
                },
                Atom::Time => {
                    out.extend_from_slice(LocalTime::now().common_log_format().as_bytes())
                }
                Atom::RequestLine => {
                    out.extend_from_slice(entry.method());
                    out.push(b' ');
                    out.extend_from_slice(entry.head.target.get(entry.buf));
                    out.push(b' ');
                    out.extend_from_slice(entry.head.version.as_str().as_bytes());
                }
                Atom::Status => match http::status_code(entry.status) {
                    Some(code) => {
                        let _ = write!(out, "{code}");
                    }
                    None => out.push(b'-'),
                },
                Atom::Method => out.extend_from_slice(entry.method()),
                Atom::Path => out.extend_from_slice(entry.head.path.get(entry.buf)),
                Atom::Query => out.extend_from_slice(entry.head.query.get(entry.buf)),
                Atom::Protocol => out.extend_from_slice(protocol(entry.head.version).as_bytes()),
                Atom::BodyBytes { dash_when_zero } => {
                    if entry.body_bytes == 0 && *dash_when_zero {
                        out.push(b'-');
                    } else {
                        let _ = write!(out, "{}", entry.body_bytes);
                    }
                }
                Atom::RequestHeader(name) => dash_or(out, entry.request_header(name.as_bytes())),
                Atom::ResponseHeader(name) => dash_or(
                    out,
                    entry
                        .response_headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
                        .map(|(_, v)| *v),
                ),
                Atom::Environ(name) => dash_or(
                    out,
                    entry
                        .environ
                        .as_ref()
                        .and_then(|lookup| lookup(name))
                        .as_deref(),
                ),
                Atom::Duration(unit) => {
                    let _ = match unit {
                        DurationUnit::Seconds => write!(out, "{}", entry.elapsed.as_secs()),
                        DurationUnit::Millis => write!(out, "{}", entry.elapsed.as_millis()),
                        DurationUnit::Micros => write!(out, "{}", entry.elapsed.as_micros()),
                        DurationUnit::Decimal => write!(out, "{:.6}", entry.elapsed.as_secs_f64()),
                    };
                }
                Atom::Pid => {
                    let _ = write!(out, "<{}>", std::process::id());
                }
            }
        }
        out.push(b'\n');
    }
}

/// The atom for a `%(NAME)s` name.
fn atom_named(name: &str) -> Atom {
    if let Some(inner) = name.strip_prefix('{') {
        if let Some((key, kind)) = inner.rsplit_once('}') {
            return match kind {
                "i" => Atom::RequestHeader(key.to_ascii_lowercase()),
                "o" => Atom::ResponseHeader(key.to_ascii_lowercase()),
                "e" => Atom::Environ(key.to_string()),
                _ => Atom::Dash,
            };
        }
    }
    match name {
        "h" => Atom::RemoteAddr,
        "u" => Atom::User,
        "t" => Atom::Time,
        "r" => Atom::RequestLine,
        "s" => Atom::Status,
        "m" => Atom::Method,
        "U" => Atom::Path,
        "q" => Atom::Query,
        "H" => Atom::Protocol,
        "b" => Atom::BodyBytes {
            dash_when_zero: true,
        },
        "B" => Atom::BodyBytes {
            dash_when_zero: false,
        },
        "f" => Atom::RequestHeader("referer".to_string()),
        "a" => Atom::RequestHeader("user-agent".to_string()),
        "T" => Atom::Duration(DurationUnit::Seconds),
        "M" => Atom::Duration(DurationUnit::Millis),
        "D" => Atom::Duration(DurationUnit::Micros),
        "L" => Atom::Duration(DurationUnit::Decimal),
        "p" => Atom::Pid,
        _ => Atom::Dash,
    }
}

fn dash_or(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(value) => out.extend_from_slice(value),
        None => out.push(b'-'),
    }
}

fn protocol(version: Version) -> &'static str {
    version.as_str()
}

/// The user name of an `Authorization: Basic ...` header.
fn basic_auth_user(header: Option<&[u8]>) -> Option<Vec<u8>> {
    let header = header?;
    let encoded = header
        .strip_prefix(b"Basic ")
        .or_else(|| header.strip_prefix(b"basic "))?;
    let decoded = base64_decode(encoded)?;
    let user = decoded.split(|b| *b == b':').next()?.to_vec();
    Some(user)
}

/// Standard base64 (with or without padding); None on any other byte.
fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut bits = 0u32;
    let mut count = 0;
    for &byte in input.iter().take_while(|b| **b != b'=') {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

/// The exchanges record into the worker's one access log.
impl AccessRecorder for std::sync::Mutex<AccessLog> {
    fn needs_environ(&self) -> bool {
        self.lock().is_ok_and(|log| log.format().needs_environ())
    }

    fn record(&self, entry: &AccessEntry<'_>) {
        if let Ok(mut log) = self.lock() {
            log.record(entry);
        }
    }
}

impl AccessEntry<'_> {
    fn method(&self) -> &[u8] {
        self.head.method.get(self.buf)
    }

    /// The first request header named `name` (lower-case).
    fn request_header(&self, name: &[u8]) -> Option<&[u8]> {
        self.head.header(self.buf, name)
    }
}

/// Where access log lines go.
pub struct AccessLog {
    format: AccessFormat,
    /// `-` for stdout, else a file path.
    target: String,
    file: File,
    pending: Vec<u8>,
    dropped: usize,
}

impl AccessLog {
    /// Opens `target` (`-` = stdout) for appending, non-blocking.
    pub fn open(target: &str, format: &str) -> Result<AccessLog, AccessLogError> {
        let format = AccessFormat::parse(format)?;
        let file = open_target(target).map_err(|source| AccessLogError::Open {
            path: target.to_string(),
            source,
        })?;
        Ok(AccessLog {
            format,
            target: target.to_string(),
            file,
            pending: Vec::with_capacity(64 * 1024),
            dropped: 0,
        })
    }

    /// The parsed format.
    pub fn format(&self) -> &AccessFormat {
        &self.format
    }

    /// Renders one line into the pending buffer.
    pub fn record(&mut self, entry: &AccessEntry<'_>) {
        if self.pending.len() > PENDING_LIMIT {
            self.dropped += 1;
            return;
        }
        self.format.render(entry, &mut self.pending);
    }

    /// Writes what is pending without blocking (the rest waits for the next
    /// call).
    pub fn flush(&mut self) {
        while !self.pending.is_empty() {
            match self.file.write(&self.pending) {
                Ok(0) => break,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::error!("cannot write the access log {}: {e}", self.target);
                    self.pending.clear();
                    break;
                }
            }
        }
        if self.dropped > 0 && self.pending.is_empty() {
            log::warn!(
                "access log: {} lines dropped while {} was not writable",
                self.dropped,
                self.target
            );
            self.dropped = 0;
        }
    }

    /// Writes everything pending, waiting if needed (at worker exit).
    pub fn flush_all(&mut self) {
        set_nonblocking(&self.file, false);
        self.flush();
    }

    /// Reopens the target (USR1, after logrotate moved the file).
    pub fn reopen(&mut self) {
        self.flush();
        match open_target(&self.target) {
            Ok(file) => self.file = file,
            Err(e) => log::error!("cannot reopen the access log {}: {e}", self.target),
        }
    }
}

/// Opens a fresh open file description (so O_NONBLOCK on it affects no one
/// else): the file in append mode, or for `-` stdout through /proc.
fn open_target(target: &str) -> io::Result<File> {
    let path = if target == "-" {
        "/proc/self/fd/1"
    } else {
        target
    };
    let file = std::fs::OpenOptions::new()
        .create(target != "-")
        .append(true)
        .mode(0o644)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    match file {
        Ok(file) => Ok(file),
        // A socket on stdout cannot be reopened through /proc: share it,
        // blocking.
        Err(_) if target == "-" => {
            let stdout = io::stdout();
            let fd = std::os::fd::AsFd::as_fd(&stdout).try_clone_to_owned()?;
            Ok(File::from(fd))
        }
        Err(e) => Err(e),
    }
}

fn set_nonblocking(file: &File, nonblocking: bool) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on an open descriptor we own, with integer arguments.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            let flags = if nonblocking {
                flags | libc::O_NONBLOCK
            } else {
                flags & !libc::O_NONBLOCK
            };
            libc::fcntl(fd, libc::F_SETFL, flags);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::RequestHead;
    use crate::http::{parse_head, Limits, Status};
    use std::time::Duration;

    fn render(
        format: &str,
        request: &[u8],
        status: &[u8],
        headers: &[(&[u8], &[u8])],
        body: u64,
    ) -> String {
        let mut head = RequestHead::default();
        let Ok(Status::Complete(_)) = parse_head(request, &mut head, &Limits::default()) else {
            panic!("test request must parse")
        };
        let peer = Endpoint::Tcp("192.0.2.7:54321".parse().unwrap());
        let lookup = |name: &str| (name == "SCRIPT_NAME").then(|| b"/app".to_vec());
        let entry = AccessEntry {
            peer: &peer,
            buf: request,
            head: &head,
            status,
            response_headers: headers,
            body_bytes: body,
            elapsed: Duration::from_micros(1_234_567),
            environ: Some(&lookup),
        };
        let mut out = Vec::new();
        AccessFormat::parse(format)
            .unwrap()
            .render(&entry, &mut out);
        String::from_utf8(out).unwrap()
    }

    const REQUEST: &[u8] = b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nReferer: http://r/\r\nUser-Agent: curl/8\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\nX-Req: v\r\n\r\n";

    #[test]
    fn the_default_format_is_gunicorns_combined_log() {
        let line = render(
            crate::config::ACCESS_LOG_DEFAULT_FORMAT,
            REQUEST,
            b"200 OK",
            &[],
            13,
        );
        let (before_time, after_time) = line.split_once('[').unwrap();
        assert_eq!(before_time, "192.0.2.7 - alice ");
        let after = after_time.split_once("] ").unwrap().1;
        assert_eq!(
            after,
            "\"GET /a/b?x=1 HTTP/1.1\" 200 13 \"http://r/\" \"curl/8\"\n"
        );
    }

    #[test]
    fn each_atom_renders_its_field() {
        let cases: &[(&str, &str)] = &[
            ("%(m)s", "GET"),
            ("%(U)s", "/a/b"),
            ("%(q)s", "x=1"),
            ("%(H)s", "HTTP/1.1"),
            ("%(s)s", "404"),
            ("%(l)s", "-"),
            ("%(T)s", "1"),
            ("%(M)s", "1234"),
            ("%(D)s", "1234567"),
            ("%(L)s", "1.234567"),
            ("%({x-req}i)s", "v"),
            ("%({X-REQ}i)s", "v"),
            ("%({missing}i)s", "-"),
            ("%({content-type}o)s", "text/plain"),
            ("%({SCRIPT_NAME}e)s", "/app"),
            ("%({OTHER}e)s", "-"),
            ("%(nonsense)s", "-"),
            ("100%% %(m)s", "100% GET"),
        ];
        for (format, expected) in cases {
            let line = render(
                format,
                REQUEST,
                b"404 Not Found",
                &[(b"Content-Type", b"text/plain")],
                0,
            );
            assert_eq!(line, format!("{expected}\n"), "format {format}");
        }
    }

    #[test]
    fn body_bytes_b_is_a_dash_when_zero_and_capital_b_is_zero() {
        assert_eq!(
            render("%(b)s %(B)s", REQUEST, b"204 No Content", &[], 0),
            "- 0\n"
        );
        assert_eq!(render("%(b)s %(B)s", REQUEST, b"200 OK", &[], 5), "5 5\n");
    }

    #[test]
    fn pid_is_in_angle_brackets() {
        assert_eq!(
            render("%(p)s", REQUEST, b"200 OK", &[], 0),
            format!("<{}>\n", std::process::id())
        );
    }

    #[test]
    fn malformed_formats_are_rejected_with_the_setting_named() {
        for format in ["%(h", "100% done", "%s"] {
            let error = AccessFormat::parse(format).unwrap_err().to_string();
            assert!(error.starts_with("--access-logformat:"), "{error}");
        }
    }

    #[test]
    fn base64_user_names_decode() {
        assert_eq!(
            basic_auth_user(Some(b"Basic YWxpY2U6c2VjcmV0")),
            Some(b"alice".to_vec())
        );
        assert_eq!(basic_auth_user(Some(b"Bearer x")), None);
        assert_eq!(basic_auth_user(Some(b"Basic !!")), None);
    }
}
