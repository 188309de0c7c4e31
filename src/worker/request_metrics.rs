//! Counting one worker's requests: into its shared page (`--metrics-bind`,
//! summed by the master) and, with `--statsd-host`, as gunicorn's statsd
//! lines, one datagram per response. The connection calls this where a
//! request starts, where its response is complete, and where the server
//! answers itself; nothing here blocks or allocates on the page path.

use crate::metrics::{method_index, WorkerMetrics};
use crate::statsd::{Kind, Statsd};
use std::time::Duration;

/// Where a worker's counts go. Copied into every connection (it is two
/// references).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestMetrics {
    page: Option<&'static WorkerMetrics>,
    statsd: Option<&'static Statsd>,
}

impl RequestMetrics {
    /// Counts into `page` (kept for the life of the worker process) and
    /// sends to the process's statsd client, if any.
    pub fn new(page: Option<WorkerMetrics>) -> RequestMetrics {
        RequestMetrics {
            // The worker counts into its page until it exits: leaking the
            // mapping keeps it valid for every connection.
            page: page.map(|page| &*Box::leak(Box::new(page))),
            statsd: crate::statsd::client(),
        }
    }

    /// A connection was accepted.
    pub fn connection_opened(&self) {
        if let Some(page) = self.page {
            page.connection_opened();
        }
    }

    /// A connection was closed.
    pub fn connection_closed(&self) {
        if let Some(page) = self.page {
            page.connection_closed();
        }
    }

    /// A request's head is complete.
    pub fn request_started(&self) {
        if let Some(page) = self.page {
            page.request_started();
        }
    }

    /// A request in flight is over (answered, or its client went away).
    pub fn request_ended(&self) {
        if let Some(page) = self.page {
            page.request_ended();
        }
    }

    /// A response is complete (its last byte queued). `duration` is the
    /// time since the head was complete when the app answered; `None` when
    /// the server answered itself (a malformed request, a timeout, ...).
    pub fn response_sent(
        &self,
        method: &[u8],
        status: u16,
        body_bytes: u64,
        duration: Option<Duration>,
    ) {
        if let Some(page) = self.page {
            page.response_sent(method_index(method), status, body_bytes);
            if let Some(duration) = duration {
                page.observe_duration(duration);
            }
        }
        if let Some(statsd) = self.statsd {
            let mut packet = String::with_capacity(128);
            if let Some(duration) = duration {
                let ms = duration.as_secs_f64() * 1000.0;
                statsd.line(&mut packet, "gunicorn.request.duration", ms, Kind::Timer);
            }
            statsd.line(&mut packet, "gunicorn.requests", 1, Kind::Counter);
            let status_name = format!("gunicorn.request.status.{status}");
            statsd.line(&mut packet, &status_name, 1, Kind::Counter);
            if !statsd.send(&packet) {
                if let Some(page) = self.page {
                    page.statsd_dropped();
                }
            }
        }
    }
}
