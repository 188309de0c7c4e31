//! The wiring of `--threads`: the app-thread pool (`app_threads`, no
//! Python) carries [`CallJob`]s to threads that run the Python side
//! (`wsgi::exchange::app_thread`), and each job's response comes back to its
//! connection through a [`Ticket`] of out-queue bytes. Neither side names
//! the other; this module joins them, and marks requests to routes that
//! recently held a thread long as long jobs (`route_times`).

use super::app_threads::{AppThreads, Chunks, Class, End, Pool, Ticket};
use super::route_times::RouteTimes;
use super::wsgi::exchange::app_thread::{self, Ending, JobSource, ResponseSink, ThreadJob};
use super::wsgi::exchange::{AppContext, OwnedRequest};
use super::wsgi::input::RequestBody;
use super::wsgi::out_queue::OutQueue;
use super::wsgi::response::HIGH_WATER;
use crate::heartbeat::Heartbeat;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The ticket between a connection and the app thread serving it.
pub type CallTicket = Arc<Ticket<OutQueue>>;

/// One complete request on its way to an app thread.
pub struct CallJob {
    pub ticket: CallTicket,
    pub request: OwnedRequest,
    pub body: RequestBody,
}

type CallPool = Pool<CallJob, CallTicket>;

/// The pool as the event loop holds it: jobs out, tickets with news back,
/// and the routes' recent times.
pub struct AppCallThreads {
    pub pool: AppThreads<CallJob, CallTicket>,
    route_times: RouteTimes,
}

impl AppCallThreads {
    /// Queues `job`, classed by how its route recently held a thread.
    pub fn submit(&mut self, job: CallJob) {
        let view = job.request.view();
        let (method, path) = (
            view.info.head.method.get(view.info.buf),
            view.info.head.path.get(view.info.buf),
        );
        let class = self.route_times.class(method, path);
        self.pool.submit(job, class);
    }

    /// Once per loop turn: wakes a thread for the requests queued in it, if
    /// they need one. Returns when to look again.
    pub fn wake_for_queued(&mut self) -> Option<Instant> {
        self.pool.wake_for_queued()
    }

    /// Records how long the request `method path` held its thread.
    pub fn finished(&mut self, method: &[u8], path: &[u8], ticket: &CallTicket) {
        self.route_times.record(method, path, ticket.held());
    }
}

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
    Ok(AppCallThreads {
        pool: AppThreads::start(contexts, waker, thread_body)?,
        route_times: RouteTimes::default(),
    })
}

fn thread_body(pool: &CallPool, index: usize, (context, heartbeat): (AppContext, Arc<Heartbeat>)) {
    let jobs = Jobs {
        pool,
        running: AtomicU8::new(NONE),
    };
    app_thread::run(&jobs, index, context, &heartbeat);
}

/// The pool, as one app thread takes jobs from it.
struct Jobs<'a> {
    pool: &'a CallPool,
    /// The class of the job this thread runs ([`NONE`] between jobs).
    running: AtomicU8,
}

const NONE: u8 = 0;

fn encode(class: Class) -> u8 {
    match class {
        Class::Quick => 1,
        Class::Normal => 2,
        Class::Long => 3,
    }
}

fn decode(code: u8) -> Option<Class> {
    match code {
        1 => Some(Class::Quick),
        2 => Some(Class::Normal),
        3 => Some(Class::Long),
        _ => None,
    }
}

impl<'a> JobSource for Jobs<'a> {
    type Sink = Handover<'a>;

    fn wait_for_job(&self) -> bool {
        self.pool.wait_for_job()
    }

    fn try_next_job(&self) -> Option<ThreadJob<Self::Sink>> {
        let finished = decode(self.running.swap(NONE, Ordering::Relaxed));
        let (job, class) = self.pool.try_next_job(finished)?;
        self.running.store(encode(class), Ordering::Relaxed);
        Some(ThreadJob {
            sink: Handover {
                ticket: job.ticket,
                pool: self.pool,
                taken: Instant::now(),
            },
            request: job.request,
            body: job.body,
        })
    }
}

/// Where an app thread hands one response over: the ticket, then a wake-up
/// of the loop.
struct Handover<'a> {
    ticket: CallTicket,
    pool: &'a CallPool,
    /// When the thread took the job.
    taken: Instant,
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
        let delivered = self.ticket.deliver(out, end, self.taken.elapsed());
        if delivered {
            self.pool.notify(Arc::clone(&self.ticket));
        }
        delivered
    }

    fn wait_for_room(&self) -> bool {
        self.ticket.wait_for_room()
    }
}
