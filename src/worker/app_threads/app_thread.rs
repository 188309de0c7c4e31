//! The Python side of one app thread: it attaches to the interpreter once,
//! for its whole life (so its thread state, and the app's `threading.local`
//! data, live from request to request), and releases the GIL whenever it
//! waits: for a job, or for its client to read. For each job it runs the
//! exchange, handing each part of the response to the loop as it comes, and
//! records in the heartbeat when it is inside the application so the master
//! can time out a stuck request.

use super::super::app_response::PumpUntil;
use super::super::exchange::{AppContext, Exchange, Progress};
use super::super::out_queue::OutQueue;
use super::{End, Job, Pool};
use pyo3::prelude::*;

/// The thread's body: serves jobs until the pool stops.
pub(super) fn run(pool: &Pool, index: usize, mut context: AppContext) {
    Python::attach(|py| {
        while let Some(job) = py.detach(|| pool.next_job()) {
            serve(py, pool, index, &mut context, job);
            pool.heartbeat.thread_leaves_app(index);
            pool.job_done();
        }
        // The context's Python objects are released with the GIL held.
        drop(context);
    });
    pool.thread_ended();
}

/// Runs one exchange to its end, or until its connection is gone.
fn serve(py: Python<'_>, pool: &Pool, index: usize, context: &mut AppContext, job: Job) {
    let Job {
        ticket,
        request,
        body,
    } = job;
    if ticket.is_cancelled() {
        return;
    }
    let view = request.view();
    pool.heartbeat.thread_starts(
        index,
        view.info.head.method.get(view.info.buf),
        view.info.head.target.get(view.info.buf),
    );
    let mut out = OutQueue::default();
    let mut exchange = match Exchange::start(py, context, &view, body) {
        Ok(exchange) => exchange,
        Err(_) => {
            ticket.deliver(&mut out, Some(End::ServerError));
            pool.notify(&ticket);
            return;
        }
    };
    loop {
        pool.heartbeat.thread_enters_app(index);
        let end = match exchange.pump(py, context, &view, &mut out, PumpUntil::EachItem) {
            Ok(Progress::More) => None,
            Ok(Progress::Complete { keep_alive }) => Some(End::Complete { keep_alive }),
            Ok(Progress::Broken) => Some(End::Broken),
            Err(_) => Some(End::ServerError),
        };
        pool.heartbeat.thread_leaves_app(index);
        let delivered = ticket.deliver(&mut out, end);
        pool.notify(&ticket);
        if !delivered {
            exchange.abort(py);
            return;
        }
        if end.is_some() {
            return;
        }
        if !py.detach(|| ticket.wait_for_room()) {
            exchange.abort(py);
            return;
        }
    }
}
