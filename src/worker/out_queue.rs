//! The bytes waiting to be written to one client: server-made bytes (status
//! line, headers, chunk framing) in owned buffers, and large body items as
//! references to the app's own `bytes` objects, so a body is never copied.
//! Written with `writev`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// Body items at least this large are queued by reference, smaller ones copied.
const COPY_BELOW: usize = 4096;
/// Owned buffers larger than this are freed rather than kept for reuse.
const SPARE_LIMIT: usize = 64 * 1024;
/// At most this many pieces go into one writev call.
const MAX_IOVECS: usize = 32;

enum Piece {
    Owned(Vec<u8>),
    Python { bytes: Py<PyBytes>, start: usize },
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
                bytes: item.clone().unbind(),
                start: 0,
            });
        }
    }

    /// Writes as much as the socket takes without blocking. Returns the
    /// number of bytes written; `WouldBlock` surfaces as `Ok` with what was
    /// written so far (check `is_empty`).
    pub fn write_to(&mut self, py: Python<'_>, out: &mut impl Write) -> io::Result<usize> {
        let mut total = 0;
        while !self.is_empty() {
            let written = {
                let mut slices: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                for (index, piece) in self.pieces.iter().take(MAX_IOVECS).enumerate() {
                    let skip = if index == 0 { self.front_written } else { 0 };
                    let data = match piece {
                        Piece::Owned(buf) => &buf[skip..],
                        Piece::Python { bytes, start } => &bytes.as_bytes(py)[*start..],
                    };
                    slices[count] = IoSlice::new(data);
                    count += 1;
                }
                match out.write_vectored(&slices[..count]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.advance(py, written);
            total += written;
        }
        self.clear();
        Ok(total)
    }

    /// Drops `n` written bytes from the front.
    fn advance(&mut self, py: Python<'_>, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let front = self
                .pieces
                .front_mut()
                .expect("advance within queued length");
            let remaining = match front {
                Piece::Owned(buf) => buf.len() - self.front_written,
                Piece::Python { bytes, start } => bytes.as_bytes(py).len() - *start,
            };
            if n < remaining {
                match front {
                    Piece::Owned(_) => self.front_written += n,
                    Piece::Python { start, .. } => *start += n,
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
