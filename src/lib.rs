//! rgunicorn: a prefork WSGI HTTP server.
//!
//! The process model is gunicorn's: a **master** ([`master`]) binds the
//! listening sockets, forks worker processes and supervises them; it never
//! loads Python. This library is everything but Python: the master, the
//! settings, the wire format ([`http`], which knows nothing of Python or
//! processes) and the foundations. Each **worker** is a separate program,
//! `rgunicorn-python` (`src/python_main.rs`, with `src/worker/`): the only
//! one that links libpython. The master execs it after each fork and hands
//! it its context through [`handoff`]; it embeds CPython, imports the
//! application and serves HTTP/1.1 from a non-blocking event loop.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod config;
pub mod handoff;
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
pub mod x509_name;
pub mod zygote_channel;

/// The version string reported by `--version` and the `Server` header.
pub const SERVER_SOFTWARE: &str = concat!("rgunicorn/", env!("CARGO_PKG_VERSION"));
