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
//! chunk-ext-name = token
//! chunk-ext-val  = token / quoted-string
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! Each state consumes one byte and moves on according to its class, except
//! `Body`, which copies as much chunk data as is available at once. Chunk
//! extensions and trailer fields are checked and discarded; a trailer field
//! that RFC 9110 §6.5.1 keeps out of trailers ([`FORBIDDEN_TRAILERS`]) fails
//! the body, so that no front end that merges trailers into the header
//! section can be handed framing, routing or credentials that way.

use super::error::ParseError;
use super::tables::{hex_value, is_ows, FIELD_VALUE, QDTEXT, TCHAR};

/// The most hex digits in a chunk size (leading zeros included).
const MAX_SIZE_DIGITS: u8 = 32;
/// The most bytes of chunk extensions over a whole body.
const MAX_EXTENSION_BYTES: usize = 4096;
/// The most bytes of trailer section.
const MAX_TRAILER_BYTES: usize = 8192;

/// Trailer field names (lowercase) that fail the body: fields that must be
/// known before the content is (RFC 9110 §6.5.1), and those this server or
/// a proxy in front uses for routing and client identity.
pub const FORBIDDEN_TRAILERS: &[&[u8]] = &[
    // Message framing and connection management
    b"content-length",
    b"transfer-encoding",
    b"trailer",
    b"te",
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"upgrade",
    // Routing and the client's identity as a proxy reports it
    b"host",
    b"forwarded",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"x-forwarded-proto",
    b"x-forwarded-protocol",
    b"x-forwarded-ssl",
    // Authentication and state
    b"authorization",
    b"proxy-authorization",
    b"cookie",
    b"set-cookie",
    // Request modifiers: controls and conditionals
    b"cache-control",
    b"pragma",
    b"expect",
    b"max-forwards",
    b"range",
    b"if-match",
    b"if-none-match",
    b"if-modified-since",
    b"if-unmodified-since",
    b"if-range",
    // How to process the content
    b"content-type",
    b"content-encoding",
    b"content-language",
    b"content-location",
    b"content-range",
];

/// The longest name in [`FORBIDDEN_TRAILERS`]; a longer trailer name is
/// not in the list and need not be kept.
const TRAILER_NAME_KEPT: usize = 20;

/// Where the decoder is in the chunked grammar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// In the hex digits of a chunk size.
    #[default]
    Size,
    /// In whitespace after the size, which must lead to a `;`.
    SizeLws,
    /// After a `;` (and optional whitespace): an extension name must follow.
    ExtNameStart,
    /// In an extension name.
    ExtName,
    /// In whitespace after an extension name, which must lead to `=` or `;`.
    ExtNameLws,
    /// After `=` (and optional whitespace): a value must follow.
    ExtValueStart,
    /// In a token extension value.
    ExtValueToken,
    /// In a quoted-string extension value.
    ExtQuoted,
    /// After a `\` in a quoted-string.
    ExtQuotedPair,
    /// Right after the closing quote of a value.
    ExtQuotedEnd,
    /// In whitespace after a value, which must lead to a `;`.
    ExtValueLws,
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
    /// The current trailer field name, lowercased, as far as it fits.
    trailer_name: [u8; TRAILER_NAME_KEPT],
    /// Its length; above [`TRAILER_NAME_KEPT`] when it did not fit.
    trailer_name_len: usize,
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
            (Size | SizeLws, b';') => self.extension_byte(ExtNameStart)?,
            (Size | SizeLws, b' ' | b'\t') => SizeLws,
            (Size | SizeLws, _) => return Err(InvalidChunkSize),

            (
                ExtNameStart | ExtName | ExtNameLws | ExtValueStart | ExtValueToken | ExtQuoted
                | ExtQuotedPair | ExtQuotedEnd | ExtValueLws,
                _,
            ) => match extension_step(self.state, b)? {
                // The CR ends the size line; it is no extension byte.
                SizeLf => SizeLf,
                next => self.extension_byte(next)?,
            },

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
            (Trailer, _) if TCHAR[b as usize] => {
                self.trailer_name_len = 0;
                self.trailer_name_byte(b);
                self.trailer_byte(TrailerName)?
            }
            (Trailer, _) => return Err(InvalidHeaderName),

            (TrailerName, _) if TCHAR[b as usize] => {
                self.trailer_name_byte(b);
                self.trailer_byte(TrailerName)?
            }
            (TrailerName, b':') if self.trailer_name_is_forbidden() => {
                return Err(ForbiddenTrailerField)
            }
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
            .ok_or(ParseError::ChunkSizeOverflow)?;
        Ok(())
    }

    /// Keeps one more byte of the trailer name being read, if it fits.
    fn trailer_name_byte(&mut self, b: u8) {
        if let Some(slot) = self.trailer_name.get_mut(self.trailer_name_len) {
            *slot = b.to_ascii_lowercase();
        }
        self.trailer_name_len = self.trailer_name_len.saturating_add(1);
    }

    /// Whether the trailer name just read is one of [`FORBIDDEN_TRAILERS`].
    fn trailer_name_is_forbidden(&self) -> bool {
        self.trailer_name
            .get(..self.trailer_name_len)
            .is_some_and(|name| FORBIDDEN_TRAILERS.contains(&name))
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

/// One byte of chunk extensions, in `state` (one of the `Ext*` states):
/// the next state, which is `SizeLf` at the CR ending the size line.
///
/// ```text
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-name = token
/// chunk-ext-val  = token / quoted-string
/// ```
fn extension_step(state: State, b: u8) -> Result<State, ParseError> {
    use ParseError::*;
    use State::*;
    Ok(match (state, b) {
        (_, b'\n') => return Err(BareLf),
        (ExtNameStart, _) if is_ows(b) => ExtNameStart,
        (ExtNameStart | ExtName, _) if TCHAR[b as usize] => ExtName,
        (ExtNameStart, b'\r' | b';' | b'=') => return Err(ChunkExtensionWithoutName),
        (ExtName | ExtNameLws, _) if is_ows(b) => ExtNameLws,
        (ExtName | ExtNameLws, b'=') => ExtValueStart,
        (ExtValueStart, _) if is_ows(b) => ExtValueStart,
        (ExtValueStart | ExtValueToken, _) if TCHAR[b as usize] => ExtValueToken,
        (ExtValueStart, b'"') => ExtQuoted,
        (ExtQuoted, b'"') => ExtQuotedEnd,
        (ExtQuoted, b'\\') => ExtQuotedPair,
        (ExtQuoted, _) if QDTEXT[b as usize] => ExtQuoted,
        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
        (ExtQuotedPair, _) if FIELD_VALUE[b as usize] => ExtQuoted,
        (ExtValueToken | ExtQuotedEnd | ExtValueLws, _) if is_ows(b) => ExtValueLws,
        (ExtName | ExtNameLws | ExtValueToken | ExtQuotedEnd | ExtValueLws, b';') => ExtNameStart,
        (ExtName | ExtValueToken | ExtQuotedEnd, b'\r') => SizeLf,
        _ => return Err(InvalidChunkExtension),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ParseError::*;

    /// Decodes `input` in one call; returns (consumed, body, done).
    fn read(input: &str) -> (usize, Vec<u8>, bool) {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        let consumed = decoder
            .decode(input.as_bytes(), &mut body)
            .unwrap_or_else(|e| panic!("{input:?}: {e}"));
        (consumed, body, decoder.is_done())
    }

    fn read_err(input: &[u8]) -> ParseError {
        let mut decoder = ChunkedDecoder::new();
        match decoder.decode(input, &mut Vec::new()) {
            Err(error) => error,
            Ok(consumed) => panic!(
                "{:?}: consumed {consumed} without error",
                String::from_utf8_lossy(input)
            ),
        }
    }

    /// Feeds `input` one byte at a time; returns (consumed, body, done).
    fn read_bytewise(input: &[u8]) -> Result<(usize, Vec<u8>, bool), ParseError> {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        let mut consumed = 0;
        for i in 0..input.len() {
            consumed += decoder.decode(&input[i..i + 1], &mut body)?;
        }
        Ok((consumed, body, decoder.is_done()))
    }

    #[test]
    fn complete_bodies_decode() {
        // (input, body)
        let cases: &[(&str, &str)] = &[
            // Only the last chunk
            ("0\r\n\r\n", ""),
            ("000\r\n\r\n", ""),
            // Sizes in either case
            ("A\r\n0123456789\r\n0\r\n\r\n", "0123456789"),
            ("a\r\n0123456789\r\n0\r\n\r\n", "0123456789"),
            ("1\r\nx\r\n2\r\nyz\r\n0\r\n\r\n", "xyz"),
            ("0005\r\nhello\r\n0\r\n\r\n", "hello"),
            // Chunk data may hold CR, LF and anything else
            ("4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n"),
            // Extensions
            ("5;name=value\r\nhello\r\n0\r\n\r\n", "hello"),
            ("5 ;a\r\nhello\r\n0;last\r\n\r\n", "hello"),
            ("5\t; a = \"q;x\"\r\nhello\r\n0\r\n\r\n", "hello"),
            (
                "5;a;b=c;d=\"\";e=\"\\\"\\\\\"\r\nhello\r\n0\r\n\r\n",
                "hello",
            ),
            ("5;a=\"x\" ;b\r\nhello\r\n0\r\n\r\n", "hello"),
            ("5;!#$%&'*+-.^_`|~=~\r\nhello\r\n0\r\n\r\n", "hello"),
            // Trailers
            ("5\r\nhello\r\n0\r\nChecksum: abc\r\n\r\n", "hello"),
            ("0\r\nA: 1\r\nB:\r\n\r\n", ""),
            // Trailers that are no framing, routing or credentials; names
            // that only start like a forbidden one
            (
                "0\r\nContent-Digest: sha-256=:x:\r\nContent-MD5: x\r\n\r\n",
                "",
            ),
            (
                "0\r\nHosts: a\r\nTE-X: 1\r\nX-Forwarded-Protocols: 1\r\n\r\n",
                "",
            ),
            ("0\r\nX-Forwarded-For-Something-Much-Longer: 1\r\n\r\n", ""),
        ];
        for &(input, body) in cases {
            let expected = (input.len(), body.as_bytes().to_vec(), true);
            assert_eq!(read(input), expected, "{input:?}");
            assert_eq!(
                read_bytewise(input.as_bytes()),
                Ok(expected),
                "{input:?} byte by byte"
            );
        }
    }

    #[test]
    fn decoding_stops_at_the_end_of_the_body() {
        let input = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        assert_eq!(read(input), (13, b"abc".to_vec(), true));
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        assert_eq!(decoder.decode(input.as_bytes(), &mut body), Ok(13));
        assert_eq!(decoder.decode(b"more", &mut body), Ok(0));
    }

    #[test]
    fn unfinished_bodies_consume_everything_and_are_not_done() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("A", ""),
            ("A\r", ""),
            ("A\r\n", ""),
            ("A\r\n01234", "01234"),
            ("A\r\n0123456789", "0123456789"),
            ("A\r\n0123456789\r\n", "0123456789"),
            ("0\r\n", ""),
            ("0\r\nX: y\r\n", ""),
            ("0\r\n\r", ""),
        ];
        for &(input, body) in cases {
            assert_eq!(
                read(input),
                (input.len(), body.as_bytes().to_vec(), false),
                "{input:?}"
            );
        }
    }

    #[test]
    fn split_feeding_gives_the_same_body() {
        let input = b"6;x=1\r\nhello \r\n6\r\nworld!\r\n0\r\nT: v\r\n\r\n";
        for split in 0..=input.len() {
            let mut decoder = ChunkedDecoder::new();
            let mut body = Vec::new();
            let first = decoder.decode(&input[..split], &mut body).unwrap();
            let second = decoder.decode(&input[split..], &mut body).unwrap();
            assert_eq!(first + second, input.len());
            assert_eq!(body, b"hello world!");
            assert!(decoder.is_done());
        }
    }

    #[test]
    fn malformed_bodies_fail() {
        let cases: &[(&[u8], ParseError)] = &[
            // Invalid hex digit
            (b"X\r\n", InvalidChunkSize),
            (b"1G\r\n", InvalidChunkSize),
            (b"0x5\r\nhello\r\n0\r\n\r\n", InvalidChunkSize),
            // Sign, underscore, whitespace
            (b"+5\r\n", InvalidChunkSize),
            (b"-5\r\n", InvalidChunkSize),
            (b"1_0\r\n", InvalidChunkSize),
            (b" 5\r\n", InvalidChunkSize),
            (b"5 \r\n", InvalidChunkSize),
            (b"5 6\r\n", InvalidChunkSize),
            // Empty size
            (b"\r\n", InvalidChunkSize),
            (b";ext\r\n", InvalidChunkSize),
            // Overflow
            (b"10000000000000000\r\n", ChunkSizeOverflow),
            (b"FFFFFFFFFFFFFFFFF\r\n", ChunkSizeOverflow),
            (b"000000000000000000000000000000001\r\n", InvalidChunkSize),
            // Line endings in the size line
            (b"5\n", BareLf),
            (b"5\rX", BareCr),
            (b"5;a\n", BareLf),
            (b"\n", BareLf),
            // Extensions: a control byte
            (b"5;a\x00b\r\n", InvalidChunkExtension),
            (b"5;a\x7f\r\n", InvalidChunkExtension),
            (b"5;a=\"\x01\"\r\n", InvalidChunkExtension),
            // Extensions: no name
            (b"2;\r\n", ChunkExtensionWithoutName),
            (b"2; \r\n", ChunkExtensionWithoutName),
            (b"2;=x\r\n", ChunkExtensionWithoutName),
            (b"2;;a\r\n", ChunkExtensionWithoutName),
            (b"2;a;\r\n", ChunkExtensionWithoutName),
            (b"0;\r\n\r\n", ChunkExtensionWithoutName),
            // Extensions: not token [= token / quoted-string]
            (b"2;a b\r\n", InvalidChunkExtension),
            (b"2;a \r\n", InvalidChunkExtension),
            (b"2;a=\r\n", InvalidChunkExtension),
            (b"2;a= \r\n", InvalidChunkExtension),
            (b"2;a=b c\r\n", InvalidChunkExtension),
            (b"2;a=b \r\n", InvalidChunkExtension),
            (b"2;a=b=c\r\n", InvalidChunkExtension),
            (b"2;a/b\r\n", InvalidChunkExtension),
            (b"2;a=b/c\r\n", InvalidChunkExtension),
            (b"2;a=\"b\r\n", InvalidChunkExtension),
            (b"2;a=\"b\"c\r\n", InvalidChunkExtension),
            (b"2;a=\"b\\\r\n", InvalidChunkExtension),
            (b"2;\"a\"\r\n", InvalidChunkExtension),
            (b"2;a=\"b\nc\"\r\n", BareLf),
            // Chunk data not followed by CRLF
            (b"3\r\nabcd\r\n", ChunkNotTerminated),
            (b"3\r\nabc\n0\r\n\r\n", ChunkNotTerminated),
            (b"3\r\nabc\rX", ChunkNotTerminated),
            (b"3\r\nabc0\r\n\r\n", ChunkNotTerminated),
            // Trailer section
            (b"0\r\nX : y\r\n\r\n", WhitespaceBeforeColon),
            (b"0\r\n y\r\n\r\n", ObsFold),
            (b"0\r\nX: y\n\r\n", BareLf),
            (b"0\r\nX: y\r\n\n", BareLf),
            (b"0\r\nX: a\x00\r\n\r\n", InvalidHeaderValue),
            (b"0\r\n: y\r\n\r\n", InvalidHeaderName),
            (b"0\r\n\rX", BareCr),
            (b"0\r\nX\r\n\r\n", InvalidHeaderName),
            // Trailer fields that carry framing, routing, credentials, content metadata
            (b"0\r\nContent-Length: 5\r\n\r\n", ForbiddenTrailerField),
            (
                b"0\r\ntransfer-encoding: chunked\r\n\r\n",
                ForbiddenTrailerField,
            ),
            (b"0\r\nHOST: a\r\n\r\n", ForbiddenTrailerField),
            (b"0\r\nAuthorization: x\r\n\r\n", ForbiddenTrailerField),
            (
                b"0\r\nX-Ok: 1\r\nContent-Type: a/b\r\n\r\n",
                ForbiddenTrailerField,
            ),
            (
                b"0\r\nX-Forwarded-Protocol: ssl\r\n\r\n",
                ForbiddenTrailerField,
            ),
            (b"0\r\nTE:\r\n\r\n", ForbiddenTrailerField),
        ];
        for &(input, error) in cases {
            assert_eq!(
                read_err(input),
                error,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(
                read_bytewise(input),
                Err(error),
                "{:?} byte by byte",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn extensions_and_trailers_are_capped() {
        let mut long_extension = b"1;".to_vec();
        long_extension.resize(2 + MAX_EXTENSION_BYTES, b'e');
        assert_eq!(read_err(&long_extension), ChunkExtensionsTooLong);
        let mut just_fits = b"1;".to_vec();
        just_fits.resize(1 + MAX_EXTENSION_BYTES, b'e');
        just_fits.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(read_bytewise(&just_fits).map(|r| r.2), Ok(true));

        let mut long_trailer = b"0\r\nX: ".to_vec();
        long_trailer.resize(3 + MAX_TRAILER_BYTES + 1, b't');
        assert_eq!(read_err(&long_trailer), TrailerTooLarge);
    }

    #[test]
    fn a_huge_chunk_streams_without_buffering_its_size() {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        assert_eq!(decoder.decode(b"FFFFFFFFFFFFFFFF\r\n", &mut body), Ok(18));
        assert_eq!(decoder.decode(&[7u8; 1000], &mut body), Ok(1000));
        assert_eq!(body.len(), 1000);
        assert!(!decoder.is_done());
    }
}
