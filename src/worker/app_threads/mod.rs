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
//!
//! Waking threads costs more than a small request (a futex wake, a context
//! switch, then a wait for the GIL that the running thread holds), so a
//! thread is woken only when the queued work needs one: a thread that
//! finishes a job takes the next itself; the loop wakes at most one thread
//! per turn, after it has queued the turn's requests; a woken thread that
//! takes a job wakes the next only if more wait and its own job is not
//! quick. While a thread runs a quick job (its route recently held a thread
//! below [`Class::Quick`]'s bound, such as a hello world), queued requests
//! wait for it rather than for a new thread, for at most [`QUICK_WAIT`].

mod ticket;

pub use ticket::{Chunks, Collected, End, Ticket};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a job is expected to hold its thread (the worker knows from its
/// route's recent requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Recently well below a millisecond: the thread running it is back
    /// for the queue at once, so queued jobs need no other thread woken.
    Quick,
    /// Unknown, or between quick and long.
    Normal,
    /// A slow endpoint or a stream: may not take the reserved threads.
    Long,
}

/// How long queued jobs wait for a thread that runs a quick job before
/// another thread is woken for them anyway (the quick job did not end
/// quickly this time).
pub const QUICK_WAIT: Duration = Duration::from_millis(1);

struct PoolState<J> {
    /// Jobs in order, each with its class.
    queue: VecDeque<(J, Class)>,
    /// Threads running a job.
    busy: usize,
    /// Threads running a long job.
    busy_long: usize,
    /// Threads running a quick job.
    busy_quick: usize,
    /// Threads waiting for a job.
    idle: usize,
    /// Waiting threads signalled to look at the queue that have not woken
    /// yet (so a wake-up is not sent twice for the same work).
    signalled: usize,
    /// Long jobs in the queue.
    queued_long: usize,
    /// Threads still running.
    alive: usize,
    stopping: bool,
}

/// What the loop and the threads share: jobs `J` go to the threads, news
/// `N` comes back to the loop.
pub struct Pool<J, N> {
    state: Mutex<PoolState<J>>,
    /// Signalled when a waiting thread should look at the queue, and when
    /// stopping.
    changed: Condvar,
    /// Signalled when a thread ends.
    ended: Condvar,
    /// What has news for the loop (the tickets); a lock of its own, so
    /// handing news back does not contend with the queue.
    news: Mutex<Vec<N>>,
    /// The waker was triggered and the loop has not taken the news since.
    woken: AtomicBool,
    waker: mio::Waker,
    threads: usize,
    queue_bound: usize,
    /// The most threads long jobs may occupy.
    long_limit: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<J, N> Pool<J, N> {
    fn state(&self) -> MutexGuard<'_, PoolState<J>> {
        lock(&self.state)
    }

    /// Thread side: waits (the caller has released the GIL) until a queued
    /// job may be taken: the first queued job, or the first that is not
    /// long while long jobs hold their share of the threads. False once the
    /// pool stops. The job is taken with [`Pool::try_next_job`] once the
    /// thread holds the GIL again, so a thread that waits for the GIL holds
    /// no job that the thread holding it could run meanwhile.
    pub fn wait_for_job(&self) -> bool {
        let mut state = self.state();
        loop {
            if state.stopping {
                return false;
            }
            if self.takeable(&state) {
                return true;
            }
            state.idle += 1;
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.idle -= 1;
            state.signalled = state.signalled.saturating_sub(1);
        }
    }

    /// Thread side: ends the job this thread ran (`finished`, with its
    /// class, if any) and takes the next if one may be taken now, without
    /// waiting, in one lock: a thread that finishes a job takes the next
    /// while it still holds the GIL, instead of handing the GIL to a
    /// thread it would wake. If more jobs wait and the job taken is not
    /// quick (or a long job ended, so a queued long one may now run), one
    /// waiting thread is signalled: threads wake one after another, each
    /// once the previous one has its job, and only while the work needs
    /// them. Ending a job wakes the loop if the pool was full, so it
    /// accepts again.
    pub fn try_next_job(&self, finished: Option<Class>) -> Option<(J, Class)> {
        let mut state = self.state();
        if let Some(class) = finished {
            let was_full = !self.has_room(&state);
            state.busy -= 1;
            state.busy_long -= usize::from(class == Class::Long);
            state.busy_quick -= usize::from(class == Class::Quick);
            if was_full {
                self.wake_loop();
            }
        }
        if state.stopping {
            return None;
        }
        let taken = self.take(&mut state);
        let freed_long = finished == Some(Class::Long);
        let needs_another = match &taken {
            Some((_, class)) => *class != Class::Quick || freed_long,
            None => freed_long,
        };
        if needs_another && self.takeable(&state) {
            self.signal_one(&mut state);
        }
        taken
    }

    /// Whether a queued job may be taken now.
    fn takeable(&self, state: &PoolState<J>) -> bool {
        let long_allowed = state.busy_long < self.long_limit;
        state
            .queue
            .iter()
            .any(|(_, class)| *class != Class::Long || long_allowed)
    }

    /// Wakes one waiting thread that has not been signalled yet, if any.
    fn signal_one(&self, state: &mut PoolState<J>) {
        if state.idle > state.signalled {
            state.signalled += 1;
            self.changed.notify_one();
        }
    }

    fn take(&self, state: &mut PoolState<J>) -> Option<(J, Class)> {
        let long_allowed = state.busy_long < self.long_limit;
        let index = state
            .queue
            .iter()
            .position(|(_, class)| *class != Class::Long || long_allowed)?;
        let (job, class) = state.queue.remove(index)?;
        state.busy += 1;
        state.busy_long += usize::from(class == Class::Long);
        state.busy_quick += usize::from(class == Class::Quick);
        state.queued_long -= usize::from(class == Class::Long);
        Some((job, class))
    }

    /// Thread side: tells the loop about `news` (a ticket with bytes or
    /// its end). The loop is woken only if it has not been since it last
    /// took the news: one wake-up for all the responses a turn collects.
    pub fn notify(&self, news: N) {
        lock(&self.news).push(news);
        self.wake_loop();
    }

    fn wake_loop(&self) {
        // After the push: the loop clears the flag before it takes the
        // news, so news pushed after its take finds the flag clear.
        if !self.woken.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.waker.wake() {
                self.woken.store(false, Ordering::SeqCst);
                log::error!("cannot wake the event loop: {e}");
            }
        }
    }

    /// Whether a new connection is welcome: counting the jobs that are not
    /// long (long ones wait for their share of the threads and cannot take
    /// the reserve, so they do not stop a worker from serving fast
    /// requests).
    fn has_room(&self, state: &PoolState<J>) -> bool {
        let short_busy = state.busy - state.busy_long;
        let short_queued = state.queue.len() - state.queued_long;
        short_busy + short_queued < self.threads + self.queue_bound
    }

    /// Thread side: this thread ends.
    fn thread_ended(&self) {
        self.state().alive -= 1;
        self.ended.notify_all();
    }
}

/// The pool, as the event loop holds it.
pub struct AppThreads<J, N> {
    pool: Arc<Pool<J, N>>,
    handles: Vec<JoinHandle<()>>,
    /// Jobs may wait that no thread was woken for: look at the queue at
    /// the end of the turn.
    check_queue: bool,
    /// Since when queued jobs have waited for a thread running a quick job.
    deferred_since: Option<Instant>,
}

impl<J: Send + 'static, N: Send + 'static> AppThreads<J, N> {
    /// Starts one thread per context (each context is that thread's own);
    /// thread `index` runs `body(pool, index, context)`, which serves jobs
    /// from [`Pool::try_next_job`], waiting with [`Pool::wait_for_job`],
    /// until the pool stops.
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
                busy_quick: 0,
                idle: 0,
                signalled: 0,
                queued_long: 0,
                alive: threads,
                stopping: false,
            }),
            changed: Condvar::new(),
            ended: Condvar::new(),
            news: Mutex::new(Vec::new()),
            woken: AtomicBool::new(false),
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
        Ok(AppThreads {
            pool,
            handles,
            check_queue: false,
            deferred_since: None,
        })
    }

    /// Queues a complete request of `class` for the next free thread. No
    /// thread is woken yet: the loop calls [`AppThreads::wake_for_queued`]
    /// once it has handed over all the requests of its turn.
    pub fn submit(&mut self, job: J, class: Class) {
        let mut state = self.pool.state();
        state.queue.push_back((job, class));
        state.queued_long += usize::from(class == Class::Long);
        self.check_queue = true;
    }

    /// Loop side, once per turn, after the turn's requests are queued:
    /// wakes a waiting thread for them unless one is on its way (signalled,
    /// or running a quick job) and they have waited less than
    /// [`QUICK_WAIT`]. Waking once per turn rather than per request lets a
    /// burst be served by a thread that is already running, and the woken
    /// thread does not preempt the loop in the middle of its turn. Returns
    /// when to look again, while jobs wait so.
    pub fn wake_for_queued(&mut self) -> Option<Instant> {
        if !self.check_queue {
            return None;
        }
        let mut state = self.pool.state();
        if !self.pool.takeable(&state) || state.idle <= state.signalled {
            // Nothing waits, or every waiting thread is already woken (the
            // busy ones take queued jobs as they finish).
            self.check_queue = false;
            self.deferred_since = None;
            return None;
        }
        let now = Instant::now();
        let since = *self.deferred_since.get_or_insert(now);
        let one_on_its_way = state.signalled > 0 || state.busy_quick > 0;
        if one_on_its_way && now < since + QUICK_WAIT {
            return Some(since + QUICK_WAIT);
        }
        self.pool.signal_one(&mut state);
        self.deferred_since = None;
        Some(now + QUICK_WAIT)
    }

    /// Whether the worker should keep accepting connections: a thread is
    /// free or fewer than the bound are waiting.
    pub fn has_room(&self) -> bool {
        let state = self.pool.state();
        self.pool.has_room(&state)
    }

    /// The news since the last call (the loop was woken).
    pub fn take_news(&self) -> Vec<N> {
        // Before the take: see Pool::wake_loop.
        self.pool.woken.store(false, Ordering::SeqCst);
        std::mem::take(&mut *lock(&self.pool.news))
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
                .ended
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
