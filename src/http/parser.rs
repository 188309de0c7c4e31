//! The request-head parser: request line and header fields, strictly per
//! RFC 9112, plus the framing analysis (Content-Length / Transfer-Encoding,
//! keep-alive, Expect) that decides how the body is read.
//!
//! Zero-copy: the result is a [`RequestHead`] of [`Span`]s into the caller's
//! buffer, so the caller may keep the head while it keeps the buffer (no
//! self-referential borrows) and reuse the `RequestHead` allocation for the
//! next request on the connection.

use super::error::ParseError;

/// A byte range into the buffer the head was parsed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The bytes this span covers in `buf` (the buffer it was parsed from).
    pub fn get<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.start as usize..self.end as usize]
    }
    /// Whether the span is empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// One header field: the name as sent (a token) and the value with
/// surrounding SP/HTAB trimmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderSpan {
    pub name: Span,
    pub value: Span,
}

/// The protocol version of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Version {
    Http10,
    #[default]
    Http11,
}

impl Version {
    /// `HTTP/1.0` or `HTTP/1.1`, as in the request line and `SERVER_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no Content-Length, no Transfer-Encoding, or Content-Length: 0).
    #[default]
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`: decode with a [`super::ChunkedDecoder`].
    Chunked,
}

/// Size limits applied while parsing (gunicorn's `limit_request_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line in bytes (`--limit-request-line`, default 4094; 0 = unlimited).
    pub request_line: usize,
    /// Most header fields (`--limit-request-fields`, default 100).
    pub fields: usize,
    /// Longest header field line in bytes (`--limit-request-field_size`, default 8190; 0 = unlimited).
    pub field_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: 4094,
            fields: 100,
            field_size: 8190,
        }
    }
}

/// A parsed request head. Reuse one per connection: [`parse_head`] clears it.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// The method token, e.g. `GET`.
    pub method: Span,
    /// The request-target exactly as sent (`RAW_URI`).
    pub target: Span,
    /// The path part of the target, still percent-encoded (for absolute-form,
    /// without scheme and authority; for `*`, the `*`).
    pub path: Span,
    /// The query after `?`, without the `?` (empty when there is none).
    pub query: Span,
    /// The protocol version.
    pub version: Version,
    /// The header fields in order, minus those whose name contains `_`
    /// (dropped, as gunicorn's default `header_map=drop`).
    pub headers: Vec<HeaderSpan>,
    /// The host the request is for: the authority of an absolute-form target,
    /// else the Host header (None only for HTTP/1.0 without Host).
    pub host: Option<Span>,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// Whether the client allows the connection to stay open after this
    /// request (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (HTTP/1.1 only).
    pub expect_continue: bool,
}

/// The outcome of a parse attempt that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The head is complete; the value is its length in bytes, including the
    /// final CRLF (the body, if any, starts there).
    Complete(usize),
    /// More bytes are needed. Not an error.
    Partial,
}

/// Parses a request head from the start of `buf` into `head`.
///
/// Leading empty lines (CRLF) before the request line are skipped. Returns
/// `Partial` when `buf` ends before the head does, and an error as soon as
/// the bytes seen so far cannot begin a valid head.
pub fn parse_head(
    buf: &[u8],
    head: &mut RequestHead,
    limits: &Limits,
) -> Result<Status, ParseError> {
    let _ = (buf, head, limits);
    todo!()
}
