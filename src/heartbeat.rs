//! The heartbeat a worker shares with its master: one shared mapping per
//! worker (a memfd, `shared_memory`), created by the master before it
//! starts the worker and mapped again by the worker from the descriptor it
//! inherits, so proving
//! liveness costs the worker an atomic store (no file on a slow disk, no
//! syscall beyond the vDSO clock read).
//!
//! The worker records when it last went round its event loop, what phase it
//! is in (booting does not count against `--timeout`), and which request it
//! is serving, so the master can name that request when it kills a stuck
//! worker. With `--threads N` the loop keeps beating while the app threads
//! work, so each app thread has its own entry: since when it has been inside
//! the application (0 while it is not) and for which request. A thread
//! inside the app for longer than `--timeout` is stuck even though the loop
//! still beats. The master only reads; a worker that changes phase (serving,
//! retiring) also wakes it with SIGCHLD, so a handover does not wait for the
//! master's next tick.

use crate::shared_memory::{SharedMemoryError, SharedRegion};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Words of the request description kept (method, space, target).
const REQUEST_WORDS: usize = 32;

/// The most app threads a worker can have (`--threads`): one entry each.
pub const MAX_APP_THREADS: usize = 256;
/// Words of an app thread's request description (method, space, target).
const THREAD_REQUEST_WORDS: usize = 16;

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Starting the interpreter and importing the app (own time limit).
    Booting,
    /// Serving; `--timeout` applies.
    Serving,
    /// Asked to be replaced (max-requests reached): the master starts a
    /// successor, then stops this worker gracefully.
    Retiring,
}

impl Phase {
    fn from_u32(value: u32) -> Phase {
        match value {
            1 => Phase::Serving,
            2 => Phase::Retiring,
            _ => Phase::Booting,
        }
    }
}

#[repr(C)]
struct Slot {
    beat_ms: AtomicU64,
    phase: AtomicU32,
    /// Set by a worker whose `--reload` watcher saw a source file change.
    reload_requested: AtomicU32,
    /// Byte 0: length; then the bytes, packed little-endian into words so
    /// they can be stored without tearing a word.
    request: [AtomicU64; REQUEST_WORDS],
    threads: [ThreadSlot; MAX_APP_THREADS],
}

/// One app thread's entry.
#[repr(C)]
struct ThreadSlot {
    /// When the thread last went into the application (monotonic ms), or 0
    /// while it is outside it (waiting for work or for a slow client).
    in_app_since_ms: AtomicU64,
    /// Its current request, encoded as [`Slot::request`].
    request: [AtomicU64; THREAD_REQUEST_WORDS],
}

/// An app thread found inside the application for too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckThread {
    /// The thread's number in its worker (1-based, as in its name).
    pub number: usize,
    /// How long it has been inside the application.
    pub for_how_long: Duration,
    /// The request it serves, e.g. `GET /slow`.
    pub request: String,
}

/// One worker's shared slot. Created by the master; inherited by the worker.
pub struct Heartbeat {
    region: SharedRegion,
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("phase", &self.phase())
            .field("silent_for", &self.silent_for())
            .finish()
    }
}

impl Heartbeat {
    /// Maps a fresh shared slot (phase Booting, beat now).
    pub fn new() -> io::Result<Heartbeat> {
        let region = SharedRegion::create(c"rgunicorn-heartbeat", std::mem::size_of::<Slot>())?;
        let heartbeat = Heartbeat { region };
        heartbeat.beat();
        Ok(heartbeat)
    }

    /// Maps the slot the master created, from the descriptor the worker
    /// inherited ([`Heartbeat::fd`] in the master).
    pub fn from_inherited(fd: OwnedFd) -> Result<Heartbeat, SharedMemoryError> {
        let region = SharedRegion::from_inherited(fd, std::mem::size_of::<Slot>())?;
        Ok(Heartbeat { region })
    }

    /// The slot's memfd, to hand to the worker.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.region.fd()
    }

    fn slot(&self) -> &Slot {
        let slot: NonNull<Slot> = self.region.as_ptr().cast();
        // SAFETY: the mapping is live, `size_of::<Slot>()` bytes and
        // page-aligned for as long as `self` exists; zeroed memory is a
        // valid `Slot` (atomics of zero), and it is only accessed through
        // atomics.
        unsafe { slot.as_ref() }
    }

    /// Records that the worker is alive now.
    pub fn beat(&self) {
        self.slot().beat_ms.store(monotonic_ms(), Ordering::Relaxed);
    }

    /// How long since the last beat.
    pub fn silent_for(&self) -> Duration {
        let last = self.slot().beat_ms.load(Ordering::Relaxed);
        Duration::from_millis(monotonic_ms().saturating_sub(last))
    }

    /// Moves the worker to `phase` (and beats).
    pub fn set_phase(&self, phase: Phase) {
        self.beat();
        let value = match phase {
            Phase::Booting => 0,
            Phase::Serving => 1,
            Phase::Retiring => 2,
        };
        self.slot().phase.store(value, Ordering::Release);
    }

    /// The worker's phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u32(self.slot().phase.load(Ordering::Acquire))
    }

    /// Asks the master for a graceful reload (`--reload` saw a change).
    pub fn request_reload(&self) {
        self.slot().reload_requested.store(1, Ordering::Release);
    }

    /// Whether a reload was asked for since the last call (and clears it).
    pub fn take_reload_request(&self) -> bool {
        self.slot().reload_requested.swap(0, Ordering::AcqRel) == 1
    }

    /// Records the request about to be handed to the application.
    pub fn set_request(&self, method: &[u8], target: &[u8]) {
        store_request(&self.slot().request, method, target);
    }

    /// The request last recorded, e.g. `GET /slow?x=1` (lossy UTF-8).
    pub fn request(&self) -> String {
        load_request(&self.slot().request)
    }

    fn thread(&self, index: usize) -> &ThreadSlot {
        &self.slot().threads[index.min(MAX_APP_THREADS - 1)]
    }

    /// App thread `index` (0-based) starts on a request: records it and
    /// that the thread is inside the application from now.
    pub fn thread_starts(&self, index: usize, method: &[u8], target: &[u8]) {
        let thread = self.thread(index);
        store_request(&thread.request, method, target);
        thread
            .in_app_since_ms
            .store(monotonic_ms().max(1), Ordering::Release);
    }

    /// App thread `index` goes back into the application (to pull the next
    /// part of a response) from now.
    pub fn thread_enters_app(&self, index: usize) {
        self.thread(index)
            .in_app_since_ms
            .store(monotonic_ms().max(1), Ordering::Release);
    }

    /// App thread `index` is outside the application (done, or waiting for
    /// its client to read).
    pub fn thread_leaves_app(&self, index: usize) {
        self.thread(index)
            .in_app_since_ms
            .store(0, Ordering::Release);
    }

    /// The app thread that has been inside the application longest, if that
    /// is more than `limit`.
    pub fn stuck_thread(&self, limit: Duration) -> Option<StuckThread> {
        let now = monotonic_ms();
        let (index, since) = self
            .slot()
            .threads
            .iter()
            .enumerate()
            .map(|(index, t)| (index, t.in_app_since_ms.load(Ordering::Acquire)))
            .filter(|&(_, since)| since != 0)
            .min_by_key(|&(_, since)| since)?;
        let for_how_long = Duration::from_millis(now.saturating_sub(since));
        (for_how_long > limit).then(|| StuckThread {
            number: index + 1,
            for_how_long,
            request: load_request(&self.thread(index).request),
        })
    }
}

/// Stores `METHOD TARGET` (truncated to fit) into `words`: byte 0 is the
/// length, then the bytes, packed little-endian so no word tears.
fn store_request(words: &[AtomicU64], method: &[u8], target: &[u8]) {
    let mut bytes = [0u8; REQUEST_WORDS * 8];
    let capacity = words.len() * 8 - 1;
    let mut len = 0;
    for part in [method, b" ", target] {
        let take = part.len().min(capacity - len);
        bytes[1 + len..1 + len + take].copy_from_slice(&part[..take]);
        len += take;
    }
    bytes[0] = len as u8;
    for (word, chunk) in words.iter().zip(bytes.chunks_exact(8)) {
        let value = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        word.store(value, Ordering::Relaxed);
    }
}

/// Reads what [`store_request`] stored (lossy UTF-8).
fn load_request(words: &[AtomicU64]) -> String {
    let mut bytes = [0u8; REQUEST_WORDS * 8];
    for (word, chunk) in words.iter().zip(bytes.chunks_exact_mut(8)) {
        chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
    }
    let len = (bytes[0] as usize).min(words.len() * 8 - 1);
    String::from_utf8_lossy(&bytes[1..1 + len]).into_owned()
}

/// Milliseconds on CLOCK_MONOTONIC, which master and workers share.
fn monotonic_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a valid timespec; CLOCK_MONOTONIC
    // always exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_slot_is_booting_and_just_beaten() {
        let heartbeat = Heartbeat::new().unwrap();
        assert_eq!(heartbeat.phase(), Phase::Booting);
        assert!(heartbeat.silent_for() < Duration::from_secs(1));
    }

    #[test]
    fn phases_round_trip() {
        let heartbeat = Heartbeat::new().unwrap();
        for phase in [Phase::Serving, Phase::Retiring, Phase::Booting] {
            heartbeat.set_phase(phase);
            assert_eq!(heartbeat.phase(), phase);
        }
    }

    #[test]
    fn a_reload_request_is_taken_once() {
        let heartbeat = Heartbeat::new().unwrap();
        assert!(!heartbeat.take_reload_request());
        heartbeat.request_reload();
        assert!(heartbeat.take_reload_request());
        assert!(!heartbeat.take_reload_request());
    }

    #[test]
    fn the_request_is_recorded_and_truncated_to_fit() {
        let heartbeat = Heartbeat::new().unwrap();
        heartbeat.set_request(b"GET", b"/slow?x=1");
        assert_eq!(heartbeat.request(), "GET /slow?x=1");
        let long = vec![b'a'; 1000];
        heartbeat.set_request(b"POST", &long);
        assert_eq!(heartbeat.request().len(), REQUEST_WORDS * 8 - 1);
        assert!(heartbeat.request().starts_with("POST aaa"));
    }

    #[test]
    fn a_thread_inside_the_app_too_long_is_named_with_its_request() {
        let heartbeat = Heartbeat::new().unwrap();
        assert_eq!(heartbeat.stuck_thread(Duration::ZERO), None);
        heartbeat.thread_starts(2, b"GET", b"/stuck");
        std::thread::sleep(Duration::from_millis(5));
        let stuck = heartbeat.stuck_thread(Duration::ZERO).unwrap();
        assert_eq!((stuck.number, stuck.request.as_str()), (3, "GET /stuck"));
        assert_eq!(heartbeat.stuck_thread(Duration::from_secs(60)), None);
        heartbeat.thread_leaves_app(2);
        assert_eq!(heartbeat.stuck_thread(Duration::ZERO), None);
    }

    #[test]
    fn a_slot_mapped_from_its_descriptor_is_the_same_slot() {
        let heartbeat = Heartbeat::new().unwrap();
        let fd = heartbeat.fd().try_clone_to_owned().unwrap();
        let inherited = Heartbeat::from_inherited(fd).unwrap();
        inherited.set_phase(Phase::Serving);
        inherited.set_request(b"GET", b"/exec");
        assert_eq!(heartbeat.phase(), Phase::Serving);
        assert_eq!(heartbeat.request(), "GET /exec");
    }

    #[test]
    fn a_forked_child_beat_is_seen_by_the_parent() {
        let heartbeat = Heartbeat::new().unwrap();
        heartbeat.set_phase(Phase::Booting);
        // SAFETY: the child only touches the shared slot and `_exit`s.
        match unsafe { libc::fork() } {
            0 => {
                heartbeat.set_phase(Phase::Serving);
                heartbeat.set_request(b"GET", b"/child");
                // SAFETY: ends the child without running the test harness.
                unsafe { libc::_exit(0) }
            }
            child => {
                let mut status = 0;
                // SAFETY: waits for the child just forked.
                unsafe { libc::waitpid(child, &mut status, 0) };
                assert_eq!(heartbeat.phase(), Phase::Serving);
                assert_eq!(heartbeat.request(), "GET /child");
            }
        }
    }
}
