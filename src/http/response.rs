//! The response writer: status line, header filtering and framing decisions,
//! chunked body encoding, and the server's own short error responses.
//!
//! Everything is appended to a caller-owned `Vec<u8>`; nothing else is
//! allocated. The status line always says `HTTP/1.1`, the highest version
//! we speak (RFC 9110 §6.2), whatever the request's version.

use super::parser::Version;
use super::tables::{all_in, trim_ows, FIELD_VALUE, TCHAR};

/// The interim response sent before reading a body the client announced with
/// `Expect: 100-continue`.
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The `Server` header value added when the app sets none.
pub const SERVER_NAME: &[u8] = b"rgunicorn";

/// Connection-level header fields, never passed through from the app
/// (RFC 9110 §7.6.1); the server frames the body and manages the connection
/// itself.
const HOP_BY_HOP: [&[u8]; 7] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"te",
    b"trailer",
    b"upgrade",
];

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
/// * `version`: the request's version (it decides the framing; the status
///   line always says HTTP/1.1).
/// * `status`: the app's status, e.g. `b"200 OK"` (three digits, then
///   optionally SP and a reason phrase).
/// * `headers`: the app's headers. Names must be tokens and values must not
///   hold control bytes (no CR/LF injection). Hop-by-hop headers
///   (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, TE,
///   Trailer, Upgrade) are not passed through, though the app's
///   `Connection: close` is honoured; `Content-Length` is validated (a bad
///   value is an error) and decides the framing.
/// * `is_head`: the request was HEAD.
/// * `keep_alive`: the connection may stay open after this response (the
///   caller's view). The returned bool is the final decision (false for a
///   close-delimited body) and drives the `Connection` header.
/// * `date`: the value for the `Date` header (unless the app set one).
///
/// A `Server: rgunicorn` header is added unless the app set one. On error,
/// `out` is left as it was.
pub fn begin_response<'h>(
    out: &mut Vec<u8>,
    version: Version,
    status: &[u8],
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    is_head: bool,
    keep_alive: bool,
    date: &[u8],
) -> Result<(ResponseFraming, bool), &'static str> {
    let start = out.len();
    let result = write_head(out, version, status, headers, is_head, keep_alive, date);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_head<'h>(
    out: &mut Vec<u8>,
    version: Version,
    status: &[u8],
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    is_head: bool,
    mut keep_alive: bool,
    date: &[u8],
) -> Result<(ResponseFraming, bool), &'static str> {
    let code = status_code(status).ok_or("invalid status")?;
    // RFC 9110 §6.4.1: no content in responses to HEAD, 1xx, 204 and 304;
    // §8.6: no Content-Length in 1xx and 204.
    let no_body = is_head || code < 200 || code == 204 || code == 304;
    let content_length_allowed = code >= 200 && code != 204;

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status);
    out.extend_from_slice(b"\r\n");

    let mut content_length: Option<u64> = None;
    let mut has_date = false;
    let mut has_server = false;
    for (name, value) in headers {
        if name.is_empty() || !all_in(name, &TCHAR) {
            return Err("invalid header name");
        }
        if !all_in(value, &FIELD_VALUE) {
            return Err("invalid header value");
        }
        if is_hop_by_hop(name) {
            if name.eq_ignore_ascii_case(b"connection") && lists_close(value) {
                keep_alive = false;
            }
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let length = parse_digits(trim_ows(value)).ok_or("invalid Content-Length")?;
            if content_length.is_some_and(|previous| previous != length) {
                return Err("conflicting Content-Length");
            }
            content_length = Some(length);
            if !content_length_allowed {
                continue;
            }
        }
        has_date |= name.eq_ignore_ascii_case(b"date");
        has_server |= name.eq_ignore_ascii_case(b"server");
        write_header(out, name, value);
    }
    if !has_date {
        write_header(out, b"Date", date);
    }
    if !has_server {
        write_header(out, b"Server", SERVER_NAME);
    }

    let framing = if no_body {
        ResponseFraming::NoBody
    } else if let Some(length) = content_length {
        ResponseFraming::Length(length)
    } else if version == Version::Http11 {
        write_header(out, b"Transfer-Encoding", b"chunked");
        ResponseFraming::Chunked
    } else {
        keep_alive = false;
        ResponseFraming::Close
    };
    if !keep_alive {
        write_header(out, b"Connection", b"close");
    } else if version == Version::Http10 {
        write_header(out, b"Connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    Ok((framing, keep_alive))
}

fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop))
}

fn lists_close(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|option| trim_ows(option).eq_ignore_ascii_case(b"close"))
}

/// `status = 3DIGIT [ SP reason-phrase ]`; returns the code.
fn status_code(status: &[u8]) -> Option<u16> {
    let (digits, rest) = status.split_at_checked(3)?;
    if !digits.iter().all(u8::is_ascii_digit) || digits[0] == b'0' {
        return None;
    }
    match rest {
        [] => {}
        [b' ', reason @ ..] if all_in(reason, &FIELD_VALUE) => {}
        _ => return None,
    }
    Some(digits.iter().fold(0, |n, &d| n * 10 + u16::from(d - b'0')))
}

/// `1*DIGIT` as a u64, without sign, spaces or overflow.
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Appends one chunk (`size CRLF data CRLF`) to `out`. Empty data writes
/// nothing (an empty chunk would end the body).
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut hex = [0u8; 16];
    let mut start = hex.len();
    let mut size = data.len();
    while {
        start -= 1;
        hex[start] = b"0123456789abcdef"[size & 0xf];
        size >>= 4;
        size != 0
    } {}
    out.reserve(hex.len() - start + data.len() + 4);
    out.extend_from_slice(&hex[start..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk and an empty trailer section.
pub fn write_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Appends a complete short response the server itself produces (400, 408,
/// 413, 500, ...) with a plain-text body naming the status, `Connection:
/// close` when `close` is set.
pub fn write_error_response(out: &mut Vec<u8>, status: u16, close: bool, date: &[u8]) {
    let reason = reason_phrase(status).as_bytes();
    let mut code = [0u8; 3];
    put_decimal(&mut code, u64::from(status.min(999)));
    // The body: "400 Bad Request\n".
    let body_len = code.len() + 1 + reason.len() + 1;
    let mut length = [0u8; 20];
    let length = put_decimal(&mut length, body_len as u64);

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&code);
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
    write_header(out, b"Server", SERVER_NAME);
    write_header(out, b"Date", date);
    if close {
        write_header(out, b"Connection", b"close");
    }
    write_header(out, b"Content-Type", b"text/plain");
    write_header(out, b"Content-Length", length);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&code);
    out.push(b' ');
    out.extend_from_slice(reason);
    out.push(b'\n');
}

/// Writes `n` in decimal right-aligned into `buf` (zero-padded); returns the
/// digits written without the padding.
fn put_decimal(buf: &mut [u8], mut n: u64) -> &[u8] {
    let mut start = buf.len();
    buf.fill(b'0');
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || start == 0 {
            break;
        }
    }
    &buf[start..]
}

/// The reason phrase for the statuses the server and common apps use
/// (RFC 9110 §15).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown Status",
    }
}
