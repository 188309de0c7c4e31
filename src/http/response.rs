//! The response writer: status line, header filtering and framing decisions,
//! chunked body encoding, and the server's own short error responses.

use super::parser::Version;

/// The interim response sent before reading a body the client announced with
/// `Expect: 100-continue`.
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How the response body must be framed on the wire, decided by
/// [`begin_response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body may be sent (HEAD, 1xx, 204, 304). Body bytes from the app are
    /// discarded.
    NoBody,
    /// The app declared `Content-Length`: send exactly this many bytes; if the
    /// app gives fewer, the connection must be closed after the response.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 without a Content-Length).
    Chunked,
    /// Close-delimited (HTTP/1.0 without a Content-Length).
    Close,
}

/// Appends the status line and headers of a response to `out` and decides
/// the framing.
///
/// * `version`: the request's version (the status line always says HTTP/1.1
///   for 1.1 requests and HTTP/1.0 for 1.0 ones).
/// * `status`: the app's status, e.g. `b"200 OK"`.
/// * `headers`: the app's headers. Hop-by-hop headers (Connection,
///   Keep-Alive, Transfer-Encoding, TE, Trailer, Upgrade, Proxy-*) are not
///   passed through; `Content-Length` is validated (a bad value is an error).
/// * `is_head`: the request was HEAD.
/// * `keep_alive`: the connection may stay open after this response (the
///   caller's view). The returned bool is the final decision (false for a
///   close-delimited body) and drives the `Connection` header.
/// * `date`: the value for the `Date` header (unless the app set one).
///
/// A `Server: rgunicorn` header is added unless the app set one.
pub fn begin_response<'h>(
    out: &mut Vec<u8>,
    version: Version,
    status: &[u8],
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    is_head: bool,
    keep_alive: bool,
    date: &[u8],
) -> Result<(ResponseFraming, bool), &'static str> {
    let _ = (out, version, status, headers, is_head, keep_alive, date);
    todo!()
}

/// Appends one chunk (`size CRLF data CRLF`) to `out`. Empty data writes
/// nothing (an empty chunk would end the body).
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    let _ = (out, data);
    todo!()
}

/// Appends the last chunk and an empty trailer section.
pub fn write_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Appends a complete short response the server itself produces (400, 408,
/// 413, 500, ...) with a plain-text body naming the status, `Connection:
/// close` when `close` is set.
pub fn write_error_response(out: &mut Vec<u8>, status: u16, close: bool, date: &[u8]) {
    let _ = (out, status, close, date);
    todo!()
}
