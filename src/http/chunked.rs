//! The `Transfer-Encoding: chunked` body decoder: an explicit state machine
//! fed arbitrary slices of input.

use super::error::ParseError;

/// Decodes a chunked body incrementally. Trailer fields are validated and
/// discarded.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    // (the http helper completes this)
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes as much of `input` as possible, appending body bytes to `out`.
    /// Returns how many bytes of `input` were consumed; stops consuming once
    /// the body is complete (so bytes of a pipelined next request are left).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ParseError> {
        let _ = (input, out);
        todo!()
    }

    /// Whether the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        todo!()
    }
}
