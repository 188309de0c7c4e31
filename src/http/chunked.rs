//! The `Transfer-Encoding: chunked` body decoder: an explicit state machine
//! fed arbitrary slices of input.
//!
//! RFC 9112 §7.1:
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! Each state consumes one byte and moves on according to its class, except
//! `Body`, which copies as much chunk data as is available at once. Chunk
//! extensions and trailer fields are checked and discarded.

use super::error::ParseError;
use super::tables::{hex_value, FIELD_VALUE, TCHAR};

/// The most hex digits in a chunk size (leading zeros included).
const MAX_SIZE_DIGITS: u8 = 32;
/// The most bytes of chunk extensions over a whole body.
const MAX_EXTENSION_BYTES: usize = 4096;
/// The most bytes of trailer section.
const MAX_TRAILER_BYTES: usize = 8192;

/// Where the decoder is in the chunked grammar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// In the hex digits of a chunk size.
    #[default]
    Size,
    /// In whitespace after the size, which must lead to a `;`.
    SizeLws,
    /// In chunk extensions, after a `;`.
    Extension,
    /// After the CR ending a chunk-size line.
    SizeLf,
    /// In chunk data.
    Body,
    /// After chunk data, expecting CR.
    BodyCr,
    /// After chunk data and CR, expecting LF.
    BodyLf,
    /// At the start of a trailer line (or of the final CRLF).
    Trailer,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
    /// After the CR ending a trailer field line.
    TrailerLf,
    /// After the CR of the final empty line.
    EndLf,
    /// The body is complete.
    End,
}

/// Decodes a chunked body incrementally. Trailer fields are validated and
/// discarded. After an error the decoder must not be used again.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: State,
    /// The size being read (in `Size`), then the data still due (in `Body`).
    size: u64,
    size_digits: u8,
    extension_bytes: usize,
    trailer_bytes: usize,
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
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::End => break,
                State::Body => {
                    let available = input.len() - pos;
                    let take =
                        usize::try_from(self.size).map_or(available, |due| due.min(available));
                    out.extend_from_slice(&input[pos..pos + take]);
                    pos += take;
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = State::BodyCr;
                    }
                }
                _ => {
                    self.step(input[pos])?;
                    pos += 1;
                }
            }
        }
        Ok(pos)
    }

    /// Whether the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::End
    }

    /// Consumes one byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), ParseError> {
        use ParseError::*;
        use State::*;
        self.state = match (self.state, b) {
            (Size, _) if hex_value(b).is_some() => {
                self.push_size_digit(b)?;
                Size
            }
            (Size, b'\n') => return Err(BareLf),
            (Size, _) if self.size_digits == 0 => return Err(InvalidChunkSize),
            (Size, b'\r') => SizeLf,
            (Size, b';') => self.extension_byte(Extension)?,
            (Size | SizeLws, b' ' | b'\t') => SizeLws,
            (SizeLws, b';') => self.extension_byte(Extension)?,
            (Size | SizeLws, _) => return Err(InvalidChunkSize),

            (Extension, b'\r') => SizeLf,
            (Extension, b'\n') => return Err(BareLf),
            (Extension, _) if FIELD_VALUE[b as usize] => self.extension_byte(Extension)?,
            (Extension, _) => return Err(InvalidChunkExtension),

            (SizeLf, b'\n') if self.size == 0 => Trailer,
            (SizeLf, b'\n') => Body,
            (SizeLf, _) => return Err(BareCr),

            (BodyCr, b'\r') => BodyLf,
            (BodyLf, b'\n') => {
                self.size_digits = 0;
                Size
            }
            (BodyCr | BodyLf, _) => return Err(ChunkNotTerminated),

            (Trailer, b'\r') => EndLf,
            (Trailer, b'\n') => return Err(BareLf),
            (Trailer, b' ' | b'\t') => return Err(ObsFold),
            (Trailer, _) if TCHAR[b as usize] => self.trailer_byte(TrailerName)?,
            (Trailer, _) => return Err(InvalidHeaderName),

            (TrailerName, _) if TCHAR[b as usize] => self.trailer_byte(TrailerName)?,
            (TrailerName, b':') => self.trailer_byte(TrailerValue)?,
            (TrailerName, b' ' | b'\t') => return Err(WhitespaceBeforeColon),
            (TrailerName, _) => return Err(InvalidHeaderName),

            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, b'\n') => return Err(BareLf),
            (TrailerValue, _) if FIELD_VALUE[b as usize] => self.trailer_byte(TrailerValue)?,
            (TrailerValue, _) => return Err(InvalidHeaderValue),

            (TrailerLf, b'\n') => Trailer,
            (EndLf, b'\n') => End,
            (TrailerLf | EndLf, _) => return Err(BareCr),

            (Body | End, _) => unreachable!("decode handles chunk data and the end itself"),
        };
        Ok(())
    }

    fn push_size_digit(&mut self, digit: u8) -> Result<(), ParseError> {
        if self.size_digits == MAX_SIZE_DIGITS {
            return Err(ParseError::InvalidChunkSize);
        }
        self.size_digits += 1;
        let value = u64::from(hex_value(digit).unwrap_or(0));
        self.size = self
            .size
            .checked_mul(16)
            .and_then(|n| n.checked_add(value))
            .ok_or(ParseError::ContentTooLarge)?;
        Ok(())
    }

    fn extension_byte(&mut self, next: State) -> Result<State, ParseError> {
        self.extension_bytes += 1;
        if self.extension_bytes > MAX_EXTENSION_BYTES {
            return Err(ParseError::ChunkExtensionsTooLong);
        }
        Ok(next)
    }

    fn trailer_byte(&mut self, next: State) -> Result<State, ParseError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(ParseError::TrailerTooLarge);
        }
        Ok(next)
    }
}
