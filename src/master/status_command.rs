//! `rgunicorn status --metrics-bind ADDRESS`: asks a running master for
//! its workers (`GET /status` on its metrics endpoint) and prints the
//! table: pid, state, age, requests served, RSS and current request. The
//! address is read like every setting (`-c FILE`, `./rgunicorn.toml`,
//! `RGUNICORN_CMD_ARGS`, the command line), so the server's own config
//! file finds it.

use crate::config::BindAddress;
use crate::os_error::os_error_text;
use std::io::{Read, Write};
use std::time::Duration;

/// How long the master has to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why the status could not be shown. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No `--metrics-bind` is set where the settings were read.
    #[error("no --metrics-bind: give the server's (rgunicorn status --metrics-bind ADDRESS, or -c FILE)")]
    Usage,
    /// The settings do not parse.
    #[error(transparent)]
    Settings(#[from] crate::config::ConfigError),
    /// Nothing answers there.
    #[error("cannot reach the master at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    /// Something answered, but not with a status table.
    #[error("the master at {address} answered: {answer}")]
    BadAnswer { address: String, answer: String },
}

/// Stands in for APP_MODULE when the settings are read: the command needs
/// none, and names no module.
const NO_APP: &str = "status:application";

/// Runs the command with the words after `status` (the server's own
/// settings: `--metrics-bind ADDRESS`, or `-c FILE`, `RGUNICORN_CMD_ARGS`
/// or `./rgunicorn.toml` that set it); returns the table.
pub fn run(args: &[String]) -> Result<String, StatusError> {
    let working_dir = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let words = std::iter::once("rgunicorn")
        .chain(args.iter().map(String::as_str))
        .chain(std::iter::once(NO_APP))
        .map(std::ffi::OsString::from)
        .collect();
    let settings = crate::config::reload(words, &working_dir)?;
    let address = settings.metrics_bind.ok_or(StatusError::Usage)?;
    let unreachable = |e: std::io::Error| StatusError::Unreachable {
        address: address.to_string(),
        reason: os_error_text(&e),
    };
    let answer = fetch_status(&address).map_err(unreachable)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.starts_with("HTTP/1.1 200") {
        return Err(StatusError::BadAnswer {
            address: address.to_string(),
            answer: status_line.to_string(),
        });
    }
    Ok(body.to_string())
}

fn fetch_status(address: &BindAddress) -> std::io::Result<String> {
    const REQUEST: &[u8] = b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut answer = Vec::new();
    match address {
        BindAddress::Tcp { host, port } => {
            let target = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))?
                .next()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
            let mut stream = std::net::TcpStream::connect_timeout(&target, TIMEOUT)?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.write_all(REQUEST)?;
            stream.read_to_end(&mut answer)?;
        }
        BindAddress::Unix(path) => {
            let mut stream = std::os::unix::net::UnixStream::connect(path)?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.write_all(REQUEST)?;
            stream.read_to_end(&mut answer)?;
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}
