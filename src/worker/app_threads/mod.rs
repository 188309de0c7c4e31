//! The app-thread pool of `--threads N` (N > 1): N Python threads that run
//! exchanges (environ, hooks, the app call, pulling the response) while the
//! event loop, without the GIL, keeps reading requests and writing
//! responses. This half is Rust only and knows neither HTTP nor Python: a
//! queue of jobs (complete requests), the threads, the [`Ticket`] each job's
//! response comes back through, and waking the loop (a `mio::Waker`) when a
//! ticket has news. What a thread does with a job is given to
//! [`AppThreads::start`]: the worker runs the Python side,
//! `wsgi::exchange::app_thread`, there.
//!
//! Backpressure: the loop hands every complete request over at once, but
//! stops accepting new connections while all threads are busy and
//! as many requests as there are threads are already waiting (long jobs,
//! below, do not count: they cannot take the reserve), so a full worker
//! leaves new clients to its siblings. Requests from connections it already
//! holds (keep-alive, pipelined) still queue here, so a client is never
//! refused or timed out for backpressure; the queue cannot grow beyond the
//! worker's connection count.
//!
//! Long jobs (the worker marks a request long when its route recently held
//! a thread for long: a slow endpoint, a stream) may occupy all threads but
//! a reserve (a quarter, at least one), so a few slow endpoints cannot
//! starve the fast ones: a thread skips queued long jobs while the long
//! ones already running use up their share.

mod ticket;

pub use ticket::{Chunks, Collected, End, Ticket};

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

struct PoolState<J, N> {
    /// Jobs in order, each marked long or not.
    queue: VecDeque<(J, bool)>,
    /// Threads running a job.
    busy: usize,
    /// Threads running a long job.
    busy_long: usize,
    /// Threads waiting for a job.
    idle: usize,
    /// Long jobs in the queue.
    queued_long: usize,
    /// Threads still running.
    alive: usize,
    stopping: bool,
    /// What has news for the loop (the tickets).
    news: Vec<N>,
    /// The waker was triggered and the loop has not taken the news since.
    woken: bool,
}

/// What the loop and the threads share: jobs `J` go to the threads, news
/// `N` comes back to the loop.
pub struct Pool<J, N> {
    state: Mutex<PoolState<J, N>>,
    /// Signalled when a job is queued, when stopping, and when a thread ends.
    changed: Condvar,
    waker: mio::Waker,
    threads: usize,
    queue_bound: usize,
    /// The most threads long jobs may occupy.
    long_limit: usize,
}

impl<J, N> Pool<J, N> {
    fn state(&self) -> MutexGuard<'_, PoolState<J, N>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Thread side: the next job, and whether it is long, waiting for one
    /// (the caller has released the GIL): the first queued job, skipping
    /// long ones while long jobs hold their share of the threads. None once
    /// the pool stops.
    pub fn next_job(&self) -> Option<(J, bool)> {
        let mut state = self.state();
        loop {
            if let Some(taken) = self.take(&mut state) {
                return Some(taken);
            }
            if state.stopping {
                return None;
            }
            state.idle += 1;
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.idle -= 1;
        }
    }

    /// Thread side: the next job if one is queued now, without waiting (a
    /// thread that just finished one takes the next while it still holds
    /// the GIL, instead of handing the GIL to a thread it would wake).
    pub fn try_next_job(&self) -> Option<(J, bool)> {
        let mut state = self.state();
        if state.stopping {
            return None;
        }
        self.take(&mut state)
    }

    fn take(&self, state: &mut PoolState<J, N>) -> Option<(J, bool)> {
        let long_allowed = state.busy_long < self.long_limit;
        let index = state
            .queue
            .iter()
            .position(|(_, long)| !*long || long_allowed)?;
        let (job, long) = state.queue.remove(index)?;
        state.busy += 1;
        state.busy_long += usize::from(long);
        state.queued_long -= usize::from(long);
        Some((job, long))
    }

    /// Thread side: a job (long or not) is finished. Wakes the loop if the
    /// pool was full, so it can accept again, and the waiting threads if a
    /// long job may now run.
    pub fn job_done(&self, long: bool) {
        let mut state = self.state();
        let was_full = !self.has_room(&state);
        state.busy -= 1;
        if long {
            state.busy_long -= 1;
            self.changed.notify_all();
        }
        if was_full {
            self.wake(&mut state);
        }
    }

    /// Thread side: tells the loop about `news` (a ticket with bytes or
    /// its end).
    pub fn notify(&self, news: N) {
        let mut state = self.state();
        state.news.push(news);
        self.wake(&mut state);
    }

    fn wake(&self, state: &mut PoolState<J, N>) {
        if !std::mem::replace(&mut state.woken, true) {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake the event loop: {e}");
            }
        }
    }

    /// Whether a new connection is welcome: counting the jobs that are not
    /// long (long ones wait for their share of the threads and cannot take
    /// the reserve, so they do not stop a worker from serving fast
    /// requests).
    fn has_room(&self, state: &PoolState<J, N>) -> bool {
        let short_busy = state.busy - state.busy_long;
        let short_queued = state.queue.len() - state.queued_long;
        short_busy + short_queued < self.threads + self.queue_bound
    }

    /// Thread side: this thread ends.
    fn thread_ended(&self) {
        self.state().alive -= 1;
        self.changed.notify_all();
    }
}

/// The pool, as the event loop holds it.
pub struct AppThreads<J, N> {
    pool: Arc<Pool<J, N>>,
    handles: Vec<JoinHandle<()>>,
}

impl<J: Send + 'static, N: Send + 'static> AppThreads<J, N> {
    /// Starts one thread per context (each context is that thread's own);
    /// thread `index` runs `body(pool, index, context)`, which serves jobs
    /// from [`Pool::next_job`] until it returns None.
    pub fn start<C: Send + 'static>(
        contexts: Vec<C>,
        waker: mio::Waker,
        body: fn(&Pool<J, N>, usize, C),
    ) -> std::io::Result<AppThreads<J, N>> {
        let threads = contexts.len();
        let pool = Arc::new(Pool {
            state: Mutex::new(PoolState {
                queue: VecDeque::new(),
                busy: 0,
                busy_long: 0,
                idle: 0,
                queued_long: 0,
                alive: threads,
                stopping: false,
                news: Vec::new(),
                woken: false,
            }),
            changed: Condvar::new(),
            waker,
            threads,
            queue_bound: queue_bound(threads),
            long_limit: threads - reserve_for_short(threads),
        });
        let mut handles = Vec::with_capacity(threads);
        for (index, context) in contexts.into_iter().enumerate() {
            let thread_pool = Arc::clone(&pool);
            let spawned = std::thread::Builder::new()
                .name(format!("app-{}", index + 1))
                .spawn(move || {
                    body(&thread_pool, index, context);
                    thread_pool.thread_ended();
                });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    let mut pool_state = pool.state();
                    pool_state.stopping = true;
                    pool_state.alive -= threads - index;
                    drop(pool_state);
                    pool.changed.notify_all();
                    return Err(e);
                }
            }
        }
        Ok(AppThreads { pool, handles })
    }

    /// Queues a complete request (`long`: its route runs long) for the
    /// next free thread.
    pub fn submit(&self, job: J, long: bool) {
        let mut state = self.pool.state();
        state.queue.push_back((job, long));
        state.queued_long += usize::from(long);
        // A busy thread takes queued jobs as it finishes; wake an idle one
        // only if the queue outgrows the threads about to finish.
        let wake = state.idle > 0;
        drop(state);
        if wake {
            self.pool.changed.notify_one();
        }
    }

    /// Whether the worker should keep accepting connections: a thread is
    /// free or fewer than the bound are waiting.
    pub fn has_room(&self) -> bool {
        let state = self.pool.state();
        self.pool.has_room(&state)
    }

    /// The news since the last call (the loop was woken).
    pub fn take_news(&self) -> Vec<N> {
        let mut state = self.pool.state();
        state.woken = false;
        std::mem::take(&mut state.news)
    }

    /// Stops the pool: threads finish the job they run, then end; queued
    /// jobs are dropped (their connections are closing). Waits until
    /// `deadline` for the threads; any still in the app are left to the
    /// process exit.
    pub fn stop(&mut self, deadline: Instant) {
        let mut state = self.pool.state();
        state.stopping = true;
        state.queue.clear();
        state.queued_long = 0;
        self.pool.changed.notify_all();
        while state.alive > 0 {
            let now = Instant::now();
            if now >= deadline {
                log::warn!(
                    "{} app threads still busy at the graceful timeout",
                    state.alive
                );
                return;
            }
            state = self
                .pool
                .changed
                .wait_timeout(state, deadline - now)
                .map(|(state, _)| state)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        drop(state);
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// How many requests may wait for a thread before the worker stops
/// accepting: as many as there are threads, so a full worker holds at most
/// one new request in waiting per thread (see the module doc).
fn queue_bound(threads: usize) -> usize {
    threads
}

/// How many threads long jobs leave to the others: a quarter, at least one
/// (with one thread, none).
fn reserve_for_short(threads: usize) -> usize {
    (threads / 4).max(1).min(threads.saturating_sub(1))
}
