//! The Python side of one app thread (`--threads`): it attaches to the
//! interpreter once, for its whole life (so its thread state, and the app's
//! `threading.local` data, live from request to request), and releases the
//! GIL whenever it waits: for a job, or for its client to read. For each job
//! it runs the exchange, handing each part of the response over as it comes,
//! and records in the heartbeat when it is inside the application so the
//! master can time out a stuck request.
//!
//! It knows the pool only through [`JobSource`] and [`ResponseSink`]: the
//! worker wires them to the app-thread pool and the connection's ticket.

use super::super::input::RequestBody;
use super::super::out_queue::OutQueue;
use super::super::response::PumpUntil;
use super::{AppContext, Exchange, OwnedRequest, Progress};
use crate::heartbeat::Heartbeat;
use pyo3::prelude::*;

/// How a response handed over ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Complete; the connection may be kept if `keep_alive`. `status` and
    /// `body_bytes` are what was sent.
    Complete {
        keep_alive: bool,
        status: u16,
        body_bytes: u64,
    },
    /// The app failed after its headers were queued: close after the bytes.
    Broken,
    /// The app failed before anything was queued: answer 500.
    ServerError,
}

/// Where one job's response goes: its connection, through the pool.
pub trait ResponseSink: Send + Sync {
    /// Whether the connection is gone (then the job is skipped).
    fn is_cancelled(&self) -> bool;
    /// Hands over what `out` holds (and how the response ended, on the last
    /// delivery). Returns false if the connection is gone.
    fn deliver(&self, out: &mut OutQueue, ending: Option<Ending>) -> bool;
    /// Waits, without the GIL, until the connection has taken enough to go
    /// on. Returns false if the connection is gone.
    fn wait_for_room(&self) -> bool;
}

/// One complete request for an app thread.
pub struct ThreadJob<S> {
    pub sink: S,
    pub request: OwnedRequest,
    pub body: RequestBody,
}

/// Where an app thread gets its jobs.
pub trait JobSource: Sync {
    type Sink: ResponseSink;
    /// Waits, without the GIL, until a job may be taken; false when the
    /// pool stops.
    fn wait_for_job(&self) -> bool;
    /// Ends the job taken last, if any, and returns the next if one is
    /// queued now (taken with the GIL held: a thread that waits for the
    /// GIL holds no job).
    fn try_next_job(&self) -> Option<ThreadJob<Self::Sink>>;
}

/// Thread `index`'s body: serves jobs until the pool stops.
pub fn run(jobs: &impl JobSource, index: usize, mut context: AppContext, heartbeat: &Heartbeat) {
    Python::attach(|py| {
        loop {
            match jobs.try_next_job() {
                Some(job) => {
                    serve(py, &mut context, heartbeat, index, job);
                    heartbeat.thread_leaves_app(index);
                }
                None => {
                    if !py.detach(|| jobs.wait_for_job()) {
                        break;
                    }
                }
            }
        }
        // The context's Python objects are released with the GIL held.
        drop(context);
    });
}

/// Runs one exchange to its end, or until its connection is gone.
fn serve<S: ResponseSink>(
    py: Python<'_>,
    context: &mut AppContext,
    heartbeat: &Heartbeat,
    index: usize,
    job: ThreadJob<S>,
) {
    let ThreadJob {
        sink,
        request,
        body,
    } = job;
    if sink.is_cancelled() {
        return;
    }
    let view = request.view();
    heartbeat.thread_starts(
        index,
        view.info.head.method.get(view.info.buf),
        view.info.head.target.get(view.info.buf),
    );
    let mut out = OutQueue::default();
    let mut exchange = match Exchange::start(py, context, &view, body) {
        Ok(exchange) => exchange,
        Err(_) => {
            sink.deliver(&mut out, Some(Ending::ServerError));
            return;
        }
    };
    loop {
        heartbeat.thread_enters_app(index);
        let ending = match exchange.pump(py, context, &view, &mut out, PumpUntil::EachItem) {
            Ok(Progress::More) => None,
            Ok(Progress::Complete {
                keep_alive,
                status,
                body_bytes,
            }) => Some(Ending::Complete {
                keep_alive,
                status,
                body_bytes,
            }),
            Ok(Progress::Broken) => Some(Ending::Broken),
            Err(_) => Some(Ending::ServerError),
        };
        heartbeat.thread_leaves_app(index);
        if !sink.deliver(&mut out, ending) {
            exchange.abort(py);
            return;
        }
        if ending.is_some() {
            return;
        }
        if !py.detach(|| sink.wait_for_room()) {
            exchange.abort(py);
            return;
        }
    }
}
