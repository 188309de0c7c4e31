//! The wiring of `--threads`: the app-thread pool (`app_threads`, no
//! Python) carries [`CallJob`]s to threads that run the Python side
//! (`wsgi::exchange::app_thread`), and each job's response comes back to its
//! connection through a [`Ticket`] of out-queue bytes. Neither side names
//! the other; this module joins them.

use super::app_threads::{AppThreads, Chunks, End, Pool, Ticket};
use super::wsgi::exchange::app_thread::{self, Ending, JobSource, ResponseSink, ThreadJob};
use super::wsgi::exchange::{AppContext, OwnedRequest};
use super::wsgi::input::RequestBody;
use super::wsgi::out_queue::OutQueue;
use super::wsgi::response::HIGH_WATER;
use crate::heartbeat::Heartbeat;
use std::sync::Arc;

/// The ticket between a connection and the app thread serving it.
pub type CallTicket = Arc<Ticket<OutQueue>>;

/// One complete request on its way to an app thread.
pub struct CallJob {
    pub ticket: CallTicket,
    pub request: OwnedRequest,
    pub body: RequestBody,
}

/// The pool as the event loop holds it: jobs out, tickets with news back.
pub type AppCallThreads = AppThreads<CallJob, CallTicket>;
type CallPool = Pool<CallJob, CallTicket>;

impl Chunks for OutQueue {
    fn len(&self) -> usize {
        OutQueue::len(self)
    }
    fn append(&mut self, other: &mut Self) {
        OutQueue::append(self, other)
    }
    fn clear(&mut self) {
        OutQueue::clear(self)
    }
}

/// A new ticket for the connection in `slot`.
pub fn ticket(slot: usize) -> CallTicket {
    Ticket::new(slot, HIGH_WATER)
}

/// Starts one app thread per context.
pub fn start(
    contexts: Vec<AppContext>,
    waker: mio::Waker,
    heartbeat: Arc<Heartbeat>,
) -> std::io::Result<AppCallThreads> {
    let contexts = contexts
        .into_iter()
        .map(|context| (context, Arc::clone(&heartbeat)))
        .collect();
    AppThreads::start(contexts, waker, thread_body)
}

fn thread_body(pool: &CallPool, index: usize, (context, heartbeat): (AppContext, Arc<Heartbeat>)) {
    app_thread::run(&Jobs(pool), index, context, &heartbeat);
}

/// The pool, as an app thread takes jobs from it.
struct Jobs<'a>(&'a CallPool);

impl<'a> JobSource for Jobs<'a> {
    type Sink = Handover<'a>;

    fn next_job(&self) -> Option<ThreadJob<Self::Sink>> {
        let job = self.0.next_job()?;
        Some(ThreadJob {
            sink: Handover {
                ticket: job.ticket,
                pool: self.0,
            },
            request: job.request,
            body: job.body,
        })
    }

    fn job_done(&self) {
        self.0.job_done();
    }
}

/// Where an app thread hands one response over: the ticket, then a wake-up
/// of the loop.
struct Handover<'a> {
    ticket: CallTicket,
    pool: &'a CallPool,
}

impl ResponseSink for Handover<'_> {
    fn is_cancelled(&self) -> bool {
        self.ticket.is_cancelled()
    }

    fn deliver(&self, out: &mut OutQueue, ending: Option<Ending>) -> bool {
        let end = ending.map(|ending| match ending {
            Ending::Complete {
                keep_alive,
                status,
                body_bytes,
            } => End::Complete {
                keep_alive,
                status,
                body_bytes,
            },
            Ending::Broken => End::Broken,
            Ending::ServerError => End::ServerError,
        });
        let delivered = self.ticket.deliver(out, end);
        if delivered {
            self.pool.notify(Arc::clone(&self.ticket));
        }
        delivered
    }

    fn wait_for_room(&self) -> bool {
        self.ticket.wait_for_room()
    }
}
