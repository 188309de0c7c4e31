//! rgunicorn: a prefork WSGI HTTP server.
//!
//! The process model is gunicorn's: a **master** ([`master`]) binds the
//! listening sockets, forks worker processes and supervises them; it never
//! initialises Python. Each **worker** ([`worker`]) embeds CPython after the
//! fork, imports the application and serves HTTP/1.1 from a non-blocking
//! event loop. The HTTP/1.1 wire format lives in [`http`], which knows nothing
//! of Python or processes.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod config;
pub mod heartbeat;
pub mod http;
pub mod ip_allow_list;
pub mod listener;
pub mod local_time;
pub mod logging;
pub mod master;
pub mod metrics;
pub mod os_error;
pub mod proc_title;
pub mod proxy_protocol;
pub mod shared_memory;
pub mod statsd;
pub mod tls_info;
pub mod worker;
pub mod x509_name;

/// The version string reported by `--version` and the `Server` header.
pub const SERVER_SOFTWARE: &str = concat!("rgunicorn/", env!("CARGO_PKG_VERSION"));
