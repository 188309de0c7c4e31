//! The bytes waiting to be written to one client: server-made bytes (status
//! line, headers, chunk framing) in owned buffers, large body items as
//! references to the app's own `bytes` objects, so a body is never copied,
//! and file parts sent with sendfile(2). Written with `writev`.
//!
//! Writing needs no interpreter: a `bytes` object is immutable and the queue
//! holds a reference to it, so its data is read through a pointer taken when
//! it was queued. That lets an app thread fill a queue and the event loop,
//! which runs without the GIL under `--threads`, write it; a reference
//! dropped there is released by pyo3 the next time a thread attaches.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsRawFd, OwnedFd};

/// Body items at least this large are queued by reference, smaller ones copied.
const COPY_BELOW: usize = 4096;
/// Owned buffers larger than this are freed rather than kept for reuse.
const SPARE_LIMIT: usize = 64 * 1024;
/// At most this many pieces go into one writev call.
const MAX_IOVECS: usize = 32;
/// The most bytes one sendfile call sends.
const SENDFILE_STEP: u64 = 1 << 20;

enum Piece {
    Owned(Vec<u8>),
    Python {
        /// Keeps the object (and so `data`) alive.
        _owner: Py<PyBytes>,
        data: BytesData,
        start: usize,
    },
    /// `remaining` bytes of a file from `offset`, sent with sendfile. The
    /// descriptor is the queue's own duplicate, so the app may close its
    /// file as soon as the response is queued.
    File {
        fd: OwnedFd,
        offset: i64,
        remaining: u64,
    },
}

/// The data of a queued `bytes` object.
struct BytesData {
    ptr: *const u8,
    len: usize,
}

// SAFETY: `BytesData` points into an immutable `bytes` object kept alive by
// the `Py<PyBytes>` stored next to it in the same piece; reading it from
// another thread is reading immutable memory that outlives the piece.
unsafe impl Send for BytesData {}

impl BytesData {
    fn slice(&self) -> &[u8] {
        // SAFETY: see the `Send` impl: the object is alive and immutable for
        // as long as the piece holding this pointer exists.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Piece {
    /// The unwritten bytes of a memory piece (a file piece has none).
    fn data(&self) -> &[u8] {
        match self {
            Piece::Owned(buf) => buf,
            Piece::Python { data, start, .. } => &data.slice()[*start..],
            Piece::File { .. } => &[],
        }
    }
}

/// A FIFO of bytes to send.
#[derive(Default)]
pub struct OutQueue {
    pieces: VecDeque<Piece>,
    /// Offset already written of the front piece (for Owned pieces).
    front_written: usize,
    len: usize,
    /// An emptied owned buffer kept for reuse.
    spare: Option<Vec<u8>>,
}

impl OutQueue {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends bytes through `fill`, which writes into an owned buffer (for
    /// the http writer's functions, which append to a `Vec<u8>`).
    pub fn append_with(&mut self, fill: impl FnOnce(&mut Vec<u8>)) {
        if !matches!(self.pieces.back(), Some(Piece::Owned(_))) {
            let buf = self
                .spare
                .take()
                .unwrap_or_else(|| Vec::with_capacity(1024));
            self.pieces.push_back(Piece::Owned(buf));
        }
        let Some(Piece::Owned(buf)) = self.pieces.back_mut() else {
            unreachable!("an owned piece was just pushed")
        };
        let before = buf.len();
        fill(buf);
        self.len += buf.len() - before;
    }

    /// Appends a copy of `data`.
    pub fn push_slice(&mut self, data: &[u8]) {
        self.append_with(|buf| buf.extend_from_slice(data));
    }

    /// Appends a Python `bytes` body item: by reference when large.
    pub fn push_bytes(&mut self, item: &Bound<'_, PyBytes>) {
        let data = item.as_bytes();
        if data.len() < COPY_BELOW {
            self.push_slice(data);
        } else {
            self.len += data.len();
            self.pieces.push_back(Piece::Python {
                _owner: item.clone().unbind(),
                data: BytesData {
                    ptr: data.as_ptr(),
                    len: data.len(),
                },
                start: 0,
            });
        }
    }

    /// Appends `remaining` bytes of the file `fd` (the queue's own
    /// descriptor) from `offset`, to be sent with sendfile.
    pub fn push_file(&mut self, fd: OwnedFd, offset: u64, remaining: u64) {
        if remaining == 0 {
            return;
        }
        self.len += remaining as usize;
        self.pieces.push_back(Piece::File {
            fd,
            offset: offset as i64,
            remaining,
        });
    }

    /// Moves everything queued in `other` to the end of this queue.
    pub fn append(&mut self, other: &mut OutQueue) {
        if other.front_written > 0 {
            if let Some(Piece::Owned(buf)) = other.pieces.front_mut() {
                buf.drain(..other.front_written);
            }
            other.front_written = 0;
        }
        self.len += other.len;
        other.len = 0;
        self.pieces.extend(other.pieces.drain(..));
    }

    /// Writes as much as the socket takes without blocking. Returns the
    /// number of bytes written; `WouldBlock` surfaces as `Ok` with what was
    /// written so far (check `is_empty`). A file part that shrank under
    /// sendfile is an `UnexpectedEof` error.
    pub fn write_to(&mut self, out: &mut (impl Write + AsRawFd)) -> io::Result<usize> {
        let mut total = 0;
        while !self.is_empty() {
            if let Some(Piece::File { .. }) = self.pieces.front() {
                match self.send_front_file(out.as_raw_fd())? {
                    0 => return Ok(total),
                    n => {
                        total += n;
                        continue;
                    }
                }
            }
            let written = {
                let mut slices: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                for (index, piece) in self.pieces.iter().take(MAX_IOVECS).enumerate() {
                    if let Piece::File { .. } = piece {
                        break;
                    }
                    let skip = if index == 0 { self.front_written } else { 0 };
                    slices[count] = IoSlice::new(&piece.data()[skip..]);
                    count += 1;
                }
                // One piece (a small response's head and body share a
                // buffer) goes out with send(2), which skips writev's trip
                // through the file layer.
                let result = match count {
                    1 => out.write(&slices[0]),
                    _ => out.write_vectored(&slices[..count]),
                };
                match result {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.advance(written);
            total += written;
        }
        self.clear();
        Ok(total)
    }

    /// Sends the front file piece with sendfile(2) until it is done or the
    /// socket is full. Returns the bytes sent (0: the socket would block).
    fn send_front_file(&mut self, socket: std::os::fd::RawFd) -> io::Result<usize> {
        let Some(Piece::File {
            fd,
            offset,
            remaining,
        }) = self.pieces.front_mut()
        else {
            return Ok(0);
        };
        let mut total = 0usize;
        while *remaining > 0 {
            let step = (*remaining).min(SENDFILE_STEP) as usize;
            // SAFETY: both descriptors are open (the socket belongs to the
            // caller, `fd` to this piece); `offset` is a valid out-pointer.
            let sent = unsafe { libc::sendfile(socket, fd.as_raw_fd(), offset, step) };
            match sent {
                n if n > 0 => {
                    *remaining -= n as u64;
                    total += n as usize;
                }
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file ended before its announced length",
                    ))
                }
                _ => {
                    let error = io::Error::last_os_error();
                    match error.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => continue,
                        _ => return Err(error),
                    }
                }
            }
        }
        self.len -= total;
        if *remaining == 0 {
            self.pieces.pop_front();
        }
        Ok(total)
    }

    /// Drops `n` written bytes from the front (memory pieces only).
    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let front = self
                .pieces
                .front_mut()
                .expect("advance within queued length");
            let remaining = front.data().len() - self.front_written;
            if n < remaining {
                match front {
                    Piece::Python { start, .. } => *start += n,
                    _ => self.front_written += n,
                }
                return;
            }
            n -= remaining;
            self.front_written = 0;
            if let Some(piece) = self.pieces.pop_front() {
                self.keep_spare(piece);
            }
        }
    }

    /// Keeps one emptied owned buffer for the next response head, so a
    /// keep-alive connection does not allocate per response.
    fn keep_spare(&mut self, piece: Piece) {
        if let Piece::Owned(mut buf) = piece {
            if self.spare.is_none() && buf.capacity() <= SPARE_LIMIT {
                buf.clear();
                self.spare = Some(buf);
            }
        }
    }

    /// Discards everything (the client went away).
    pub fn clear(&mut self) {
        while let Some(piece) = self.pieces.pop_front() {
            self.keep_spare(piece);
        }
        self.front_written = 0;
        self.len = 0;
    }
}
