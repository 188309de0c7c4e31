//! The meeting point of one exchange run on an app thread and its
//! connection in the event loop: the thread delivers framed bytes (and at
//! the end, how the response ended); the loop collects them when the
//! connection has written what it had; either side may learn that the other
//! is gone (the client left: cancelled).
//!
//! The thread waits while a high-water mark of bytes is undelivered, so a
//! slow reader holds a bounded buffer and a paused thread, never the loop;
//! the thread is released as soon as the iterable is exhausted. What the
//! bytes are is the worker's business: any [`Chunks`].

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A queue of response bytes the ticket carries (the worker's out queue).
pub trait Chunks: Default + Send {
    /// Bytes queued.
    fn len(&self) -> usize;
    /// Whether nothing is queued.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Moves everything in `other` to the end of this queue.
    fn append(&mut self, other: &mut Self);
    /// Drops everything queued.
    fn clear(&mut self);
}

/// How an exchange run on an app thread ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The response is complete; the connection may be kept if
    /// `keep_alive`. `status` and `body_bytes` are what was sent.
    Complete {
        keep_alive: bool,
        status: u16,
        body_bytes: u64,
    },
    /// The app failed after its headers were sent: close after the bytes.
    Broken,
    /// The app failed before sending anything: answer 500.
    ServerError,
}

/// What the loop found when it collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collected {
    /// Bytes were moved to the connection's queue.
    Bytes,
    /// Nothing new yet.
    Nothing,
    /// Everything has been collected and the exchange ended so.
    End(End),
}

struct Outbox<C> {
    out: C,
    end: Option<End>,
    /// How long the thread held the job, once it ended.
    held: Duration,
    cancelled: bool,
    /// The thread waits for room (only then is it signalled: a signal is
    /// a system call).
    thread_waiting: bool,
}

/// One exchange's shared state.
pub struct Ticket<C> {
    /// The connection's slot in the event loop (the loop checks that the
    /// connection there still holds this ticket).
    slot: usize,
    /// The thread pauses while this many bytes are undelivered.
    high_water: usize,
    outbox: Mutex<Outbox<C>>,
    room: Condvar,
}

impl<C: Chunks> Ticket<C> {
    /// A ticket for the connection in `slot`.
    pub fn new(slot: usize, high_water: usize) -> Arc<Ticket<C>> {
        Arc::new(Ticket {
            slot,
            high_water,
            outbox: Mutex::new(Outbox {
                out: C::default(),
                end: None,
                held: Duration::ZERO,
                cancelled: false,
                thread_waiting: false,
            }),
            room: Condvar::new(),
        })
    }

    /// The connection's slot.
    pub fn slot(&self) -> usize {
        self.slot
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox<C>> {
        self.outbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Loop side: moves what the thread delivered into `out`, and reports
    /// the end once everything before it is collected (with the last
    /// bytes, when they came together).
    pub fn collect(&self, out: &mut C) -> Collected {
        let mut outbox = self.outbox();
        if !outbox.out.is_empty() {
            out.append(&mut outbox.out);
            let end = outbox.end;
            let waiting = outbox.thread_waiting;
            drop(outbox);
            if waiting {
                self.room.notify_one();
            }
            // With the last bytes, the end at once: the response is
            // complete as soon as it is queued (and counted before the
            // client can have read it), as for an exchange run inline.
            return end.map_or(Collected::Bytes, Collected::End);
        }
        match outbox.end {
            Some(end) => Collected::End(end),
            None => Collected::Nothing,
        }
    }

    /// Loop side: the connection is gone; the thread stops at its next
    /// delivery and closes the iterable.
    pub fn cancel(&self) {
        let mut outbox = self.outbox();
        outbox.cancelled = true;
        outbox.out.clear();
        let waiting = outbox.thread_waiting;
        drop(outbox);
        if waiting {
            self.room.notify_one();
        }
    }

    /// Whether the connection is gone.
    pub fn is_cancelled(&self) -> bool {
        self.outbox().cancelled
    }

    /// How long the thread held the job (known once it ended).
    pub fn held(&self) -> Duration {
        self.outbox().held
    }

    /// Thread side: hands over `from` (and the end, with how long the
    /// thread held the job, if this is the last delivery). Returns false if
    /// the connection is gone.
    pub fn deliver(&self, from: &mut C, end: Option<End>, held: Duration) -> bool {
        let mut outbox = self.outbox();
        if outbox.cancelled {
            from.clear();
            return false;
        }
        outbox.out.append(from);
        if end.is_some() {
            outbox.end = end;
            outbox.held = held;
        }
        true
    }

    /// Thread side: waits (the caller has released the GIL) until the loop
    /// has collected enough to go below the high-water mark. Returns false
    /// if the connection is gone.
    pub fn wait_for_room(&self) -> bool {
        let mut outbox = self.outbox();
        while outbox.out.len() >= self.high_water && !outbox.cancelled {
            outbox.thread_waiting = true;
            outbox = self
                .room
                .wait(outbox)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            outbox.thread_waiting = false;
        }
        !outbox.cancelled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Bytes(Vec<u8>);

    impl Chunks for Bytes {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn append(&mut self, other: &mut Self) {
            self.0.append(&mut other.0);
        }
        fn clear(&mut self) {
            self.0.clear();
        }
    }

    const END: End = End::Complete {
        keep_alive: true,
        status: 200,
        body_bytes: 2,
    };

    #[test]
    fn the_last_bytes_come_with_the_end() {
        let ticket = Ticket::<Bytes>::new(0, 1024);
        let mut out = Bytes::default();
        assert_eq!(ticket.collect(&mut out), Collected::Nothing);
        ticket.deliver(&mut Bytes(b"he".to_vec()), None, Duration::ZERO);
        assert_eq!(ticket.collect(&mut out), Collected::Bytes);
        ticket.deliver(&mut Bytes(b"llo".to_vec()), Some(END), Duration::ZERO);
        assert_eq!(ticket.collect(&mut out), Collected::End(END));
        assert_eq!(out.0, b"hello");
        assert_eq!(ticket.collect(&mut out), Collected::End(END));
    }
}
