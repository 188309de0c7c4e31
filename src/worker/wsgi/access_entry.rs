//! What an exchange knows about a finished response, for the access log:
//! the entry, and the recorder the exchange hands it to. The worker's
//! access log (`worker/access_log.rs`) is that recorder; this room only
//! describes the line, the worker formats and writes it.

use crate::http::RequestHead;
use crate::listener::Endpoint;
use std::time::Duration;

/// Looks up an environ variable as bytes, for `{name}e` atoms.
pub type EnvironLookup<'a> = &'a dyn Fn(&str) -> Option<Vec<u8>>;

/// Everything one access log line is made from.
pub struct AccessEntry<'a> {
    pub peer: &'a Endpoint,
    /// The buffer the head's spans index.
    pub buf: &'a [u8],
    pub head: &'a RequestHead,
    /// The status line given by the app, e.g. `200 OK`.
    pub status: &'a [u8],
    /// The app's response headers.
    pub response_headers: &'a [(&'a [u8], &'a [u8])],
    /// Body bytes sent (after framing decisions, excluding chunk framing).
    pub body_bytes: u64,
    pub elapsed: Duration,
    /// Looks up an environ variable (only when the format needs it).
    pub environ: Option<EnvironLookup<'a>>,
}

/// Where an exchange records its finished response (shared by the threads
/// that run exchanges).
pub trait AccessRecorder: Send + Sync {
    /// Whether the entries need the environ (`{name}e` atoms), so the
    /// exchange must keep it.
    fn needs_environ(&self) -> bool;
    /// Records one response.
    fn record(&self, entry: &AccessEntry<'_>);
}
