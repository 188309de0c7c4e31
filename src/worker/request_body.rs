//! Receiving a request body before the app runs: Content-Length or chunked
//! framing, kept in memory up to a threshold and spooled to an unlinked
//! temporary file beyond it.

use super::wsgi::input::RequestBody;
use crate::http::{BodyFraming, ChunkedDecoder, ParseError};
use std::fs::File;
use std::io::{self, Write};

/// Bodies larger than this are spooled to a temporary file.
pub const SPOOL_THRESHOLD: usize = 1024 * 1024;

/// Why a body could not be received.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The chunked framing is malformed.
    #[error("invalid chunked body: {0}")]
    Framing(ParseError),
    /// The body is larger than `--limit-request-body`.
    #[error("request body too large")]
    TooLarge,
    /// The temporary file could not be written.
    #[error("cannot spool request body: {0}")]
    Spool(io::Error),
}

enum Decoder {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

/// Receives one request body from the bytes the connection reads.
pub struct BodyReader {
    decoder: Decoder,
    memory: Vec<u8>,
    spool: Option<File>,
    spooled: u64,
    limit: u64,
}

impl BodyReader {
    /// A reader for a body framed as `framing`; `limit` is the most bytes
    /// accepted (0 = unlimited).
    pub fn new(framing: BodyFraming, limit: u64) -> Result<BodyReader, BodyError> {
        let decoder = match framing {
            BodyFraming::None => Decoder::Length { remaining: 0 },
            BodyFraming::Length(n) => {
                if limit > 0 && n > limit {
                    return Err(BodyError::TooLarge);
                }
                Decoder::Length { remaining: n }
            }
            BodyFraming::Chunked => Decoder::Chunked(ChunkedDecoder::new()),
        };
        let capacity = match decoder {
            Decoder::Length { remaining } => remaining.min(SPOOL_THRESHOLD as u64) as usize,
            Decoder::Chunked(_) => 0,
        };
        Ok(BodyReader {
            decoder,
            memory: Vec::with_capacity(capacity),
            spool: None,
            spooled: 0,
            limit,
        })
    }

    /// Whether the whole body has arrived.
    pub fn is_complete(&self) -> bool {
        match &self.decoder {
            Decoder::Length { remaining } => *remaining == 0,
            Decoder::Chunked(decoder) => decoder.is_done(),
        }
    }

    /// Body bytes received so far.
    pub fn received(&self) -> u64 {
        self.spooled + self.memory.len() as u64
    }

    /// Takes body bytes from the front of `input`; returns how many were
    /// consumed (bytes after the body's end are left for the next request).
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, BodyError> {
        let consumed = match &mut self.decoder {
            Decoder::Length { remaining } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                self.memory.extend_from_slice(&input[..take]);
                *remaining -= take as u64;
                take
            }
            Decoder::Chunked(decoder) => decoder
                .decode(input, &mut self.memory)
                .map_err(BodyError::Framing)?,
        };
        if self.limit > 0 && self.spooled + self.memory.len() as u64 > self.limit {
            return Err(BodyError::TooLarge);
        }
        if self.memory.len() > SPOOL_THRESHOLD {
            self.spill()?;
        }
        Ok(consumed)
    }

    /// Moves the in-memory bytes to the spool file.
    fn spill(&mut self) -> Result<(), BodyError> {
        if self.spool.is_none() {
            self.spool = Some(anonymous_temp_file().map_err(BodyError::Spool)?);
        }
        let file = self.spool.as_mut().expect("spool was just created");
        file.write_all(&self.memory).map_err(BodyError::Spool)?;
        self.spooled += self.memory.len() as u64;
        self.memory.clear();
        Ok(())
    }

    /// The complete body, for `wsgi.input`.
    pub fn finish(mut self) -> Result<RequestBody, BodyError> {
        match self.spool.is_some() {
            false => Ok(RequestBody::Memory(self.memory)),
            true => {
                self.spill()?;
                let len = self.spooled;
                Ok(RequestBody::File(
                    self.spool.take().expect("spooled body has a file"),
                    len,
                ))
            }
        }
    }
}

/// An unnamed read-write file in the temporary directory (O_TMPFILE), or a
/// named one unlinked at once where the file system lacks O_TMPFILE.
fn anonymous_temp_file() -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    let unnamed = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(&dir);
    match unnamed {
        Ok(file) => Ok(file),
        Err(_) => {
            let path = dir.join(format!(
                "rgunicorn-body-{}-{:?}",
                std::process::id(),
                std::time::Instant::now()
            ));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(file)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a Content-Length body of `len` bytes in 16 KiB reads.
    fn receive(len: usize) -> RequestBody {
        let mut reader = BodyReader::new(BodyFraming::Length(len as u64), 0).unwrap();
        let chunk = vec![b'x'; 16 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            assert_eq!(reader.feed(&chunk[..n]).unwrap(), n);
            left -= n;
        }
        assert!(reader.is_complete());
        reader.finish().unwrap()
    }

    #[test]
    fn a_body_of_exactly_the_threshold_stays_in_memory() {
        match receive(SPOOL_THRESHOLD) {
            RequestBody::Memory(bytes) => assert_eq!(bytes.len(), SPOOL_THRESHOLD),
            RequestBody::File(..) => panic!("a body of the threshold's size was spooled"),
        }
    }

    #[test]
    fn a_body_larger_than_the_threshold_is_spooled() {
        match receive(SPOOL_THRESHOLD + 1) {
            RequestBody::File(_, len) => assert_eq!(len, SPOOL_THRESHOLD as u64 + 1),
            RequestBody::Memory(_) => panic!("a body above the threshold stayed in memory"),
        }
    }
}
