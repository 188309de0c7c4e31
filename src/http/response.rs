//! The response writer: status line, header filtering and framing decisions,
//! chunked body encoding, and the server's own short error responses.
//!
//! Everything is appended to a caller-owned `Vec<u8>`; nothing else is
//! allocated. The status line always says `HTTP/1.1`, the highest version
//! we speak (RFC 9110 §6.2), whatever the request's version.

use super::parser::Version;
use super::tables::{all_in, is_field_value, is_token, trim_ows, FIELD_VALUE};

/// The interim response sent before reading a body the client announced with
/// `Expect: 100-continue`.
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The `Server` header value added when the app sets none.
pub const SERVER_NAME: &[u8] = b"rgunicorn";

/// Connection-level header fields, never passed through from the app: those
/// of RFC 9110 §7.6.1 plus the RFC 2616 §13.5.1 list that PEP 3333 forbids
/// applications to send (Proxy-Authenticate, Proxy-Authorization). The server
/// frames the body and manages the connection itself.
const HOP_BY_HOP: [&[u8]; 9] = [
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
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
    write_head_or_nothing(
        out,
        version,
        status,
        headers,
        is_head,
        keep_alive,
        date,
        Fields::Check,
    )
}

/// [`begin_response`] for headers whose names were already found to be
/// tokens and values field values ([`super::is_token`],
/// [`super::is_field_value`]), as `start_response` does when it records
/// them: they are not checked again (debug builds assert it). The other
/// errors (status, Content-Length) are still reported.
pub fn begin_validated_response<'h>(
    out: &mut Vec<u8>,
    version: Version,
    status: &[u8],
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    is_head: bool,
    keep_alive: bool,
    date: &[u8],
) -> Result<(ResponseFraming, bool), &'static str> {
    write_head_or_nothing(
        out,
        version,
        status,
        headers,
        is_head,
        keep_alive,
        date,
        Fields::Trusted,
    )
}

/// [`write_head`], leaving `out` as it was on error.
#[allow(clippy::too_many_arguments)]
fn write_head_or_nothing<'h>(
    out: &mut Vec<u8>,
    version: Version,
    status: &[u8],
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    is_head: bool,
    keep_alive: bool,
    date: &[u8],
    fields: Fields,
) -> Result<(ResponseFraming, bool), &'static str> {
    let start = out.len();
    let result = write_head(
        out, version, status, headers, is_head, keep_alive, date, fields,
    );
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Whether [`write_head`] checks header names and values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fields {
    Check,
    /// Validated by the caller.
    Trusted,
}

#[allow(clippy::too_many_arguments)]
fn write_head<'h>(
    out: &mut Vec<u8>,
    version: Version,
    status: &[u8],
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    is_head: bool,
    mut keep_alive: bool,
    date: &[u8],
    fields: Fields,
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
        let name_ok = || is_token(name);
        let value_ok = || is_field_value(value);
        if fields == Fields::Check {
            if !name_ok() {
                return Err("invalid header name");
            }
            if !value_ok() {
                return Err("invalid header value");
            }
        } else {
            debug_assert!(name_ok() && value_ok(), "unvalidated header {name:?}");
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

/// The one reading of a status line as an app gives it (`200 OK`):
/// `status = 3DIGIT [ SP reason-phrase ]`, the code not starting with 0,
/// the reason free of control characters; returns the code.
pub fn status_code(status: &[u8]) -> Option<u16> {
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
    out.reserve(data.len() + 20);
    write_chunk_header(out, data.len() as u64);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the size line of a chunk of `len` bytes (`1a2b\r\n`), for a
/// caller that sends the data itself (e.g. from a file); the data must be
/// followed by CRLF. `len` must not be 0 (that is the last chunk).
pub fn write_chunk_header(out: &mut Vec<u8>, len: u64) {
    let mut hex = [0u8; 16];
    let mut start = hex.len();
    let mut rest = len;
    loop {
        start -= 1;
        hex[start] = b"0123456789abcdef"[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&hex[start..]);
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

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    struct Case<'a> {
        version: Version,
        status: &'a str,
        headers: &'a [(&'a str, &'a str)],
        is_head: bool,
        keep_alive: bool,
    }

    fn begin(case: &Case<'_>) -> Result<(String, ResponseFraming, bool), &'static str> {
        let mut out = b"previous".to_vec();
        let headers = case
            .headers
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()));
        let result = begin_response(
            &mut out,
            case.version,
            case.status.as_bytes(),
            headers,
            case.is_head,
            case.keep_alive,
            DATE,
        );
        let (framing, keep_alive) = result.inspect_err(|_| assert_eq!(out, b"previous"))?;
        // Headers that passed the check give the same head unchecked.
        let mut trusted = b"previous".to_vec();
        let again = begin_validated_response(
            &mut trusted,
            case.version,
            case.status.as_bytes(),
            case.headers
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            case.is_head,
            case.keep_alive,
            DATE,
        );
        assert_eq!(again, Ok((framing, keep_alive)));
        assert_eq!(trusted, out);
        let text = String::from_utf8(out[8..].to_vec()).unwrap();
        Ok((text, framing, keep_alive))
    }

    fn ok(status: &'static str, headers: &'static [(&'static str, &'static str)]) -> Case<'static> {
        Case {
            version: Version::Http11,
            status,
            headers,
            is_head: false,
            keep_alive: true,
        }
    }

    const DEFAULTS: &str = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: rgunicorn\r\n";

    #[test]
    fn framing_follows_content_length_version_and_status() {
        // (case, framing, keep_alive, expected head after the defaults)
        let http10 = |keep_alive| Case {
            version: Version::Http10,
            keep_alive,
            ..ok("200 OK", &[])
        };
        let head = Case {
            is_head: true,
            ..ok("200 OK", &[("Content-Length", "42")])
        };
        let cases: Vec<(Case, ResponseFraming, bool, &str, &str)> = vec![
            // Content-Length from the app
            (
                ok("200 OK", &[("Content-Length", "5")]),
                ResponseFraming::Length(5),
                true,
                "Content-Length: 5\r\n",
                "",
            ),
            (
                ok("200 OK", &[("content-length", " 0 ")]),
                ResponseFraming::Length(0),
                true,
                "content-length:  0 \r\n",
                "",
            ),
            // No length: chunked on 1.1, close-delimited on 1.0
            (
                ok("200 OK", &[]),
                ResponseFraming::Chunked,
                true,
                "",
                "Transfer-Encoding: chunked\r\n",
            ),
            (
                http10(true),
                ResponseFraming::Close,
                false,
                "",
                "Connection: close\r\n",
            ),
            // 1.0 keep-alive with a length says so
            (
                Case {
                    headers: &[("Content-Length", "1")],
                    ..http10(true)
                },
                ResponseFraming::Length(1),
                true,
                "Content-Length: 1\r\n",
                "Connection: keep-alive\r\n",
            ),
            // Not keeping alive
            (
                Case {
                    keep_alive: false,
                    ..ok("200 OK", &[("Content-Length", "1")])
                },
                ResponseFraming::Length(1),
                false,
                "Content-Length: 1\r\n",
                "Connection: close\r\n",
            ),
            (
                Case {
                    keep_alive: false,
                    ..ok("200 OK", &[])
                },
                ResponseFraming::Chunked,
                false,
                "",
                "Transfer-Encoding: chunked\r\nConnection: close\r\n",
            ),
            // No body: HEAD keeps the app's Content-Length, 204 and 1xx drop it
            (
                head,
                ResponseFraming::NoBody,
                true,
                "Content-Length: 42\r\n",
                "",
            ),
            (
                ok("204 No Content", &[("Content-Length", "0")]),
                ResponseFraming::NoBody,
                true,
                "",
                "",
            ),
            (
                ok("304 Not Modified", &[("Content-Length", "9")]),
                ResponseFraming::NoBody,
                true,
                "Content-Length: 9\r\n",
                "",
            ),
            (
                ok("101 Switching Protocols", &[]),
                ResponseFraming::NoBody,
                true,
                "",
                "",
            ),
            // Hop-by-hop headers are dropped; the app's Connection: close is honoured
            (
                ok(
                    "200 OK",
                    &[
                        ("Connection", "close"),
                        ("Keep-Alive", "timeout=5"),
                        ("Transfer-Encoding", "gzip"),
                        ("TE", "x"),
                        ("Trailer", "x"),
                        ("Upgrade", "h2c"),
                        ("Proxy-Connection", "x"),
                        ("Content-Length", "2"),
                    ],
                ),
                ResponseFraming::Length(2),
                false,
                "Content-Length: 2\r\n",
                "Connection: close\r\n",
            ),
            // Other headers pass through in order, as written
            (
                ok(
                    "200 OK",
                    &[("X-B", "2"), ("x-a", "1"), ("Content-Length", "0")],
                ),
                ResponseFraming::Length(0),
                true,
                "X-B: 2\r\nx-a: 1\r\nContent-Length: 0\r\n",
                "",
            ),
        ];
        for (case, framing, keep_alive, app_headers, tail) in cases {
            let (text, got_framing, got_keep_alive) = begin(&case).unwrap();
            let expected = format!(
                "HTTP/1.1 {}\r\n{app_headers}{DEFAULTS}{tail}\r\n",
                case.status
            );
            assert_eq!(text, expected);
            assert_eq!(got_framing, framing, "{expected:?}");
            assert_eq!(got_keep_alive, keep_alive, "{expected:?}");
        }
    }

    #[test]
    fn app_date_and_server_replace_the_defaults() {
        let case = ok(
            "200 OK",
            &[
                ("server", "app/1"),
                ("DATE", "yesterday"),
                ("Content-Length", "0"),
            ],
        );
        let (text, _, _) = begin(&case).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nserver: app/1\r\nDATE: yesterday\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn bad_statuses_and_headers_are_errors() {
        let cases: &[(Case, &str)] = &[
            // Status
            (ok("OK", &[]), "invalid status"),
            (ok("20 OK", &[]), "invalid status"),
            (ok("2000 OK", &[]), "invalid status"),
            (ok("099 x", &[]), "invalid status"),
            (ok("200 OK\r\nX: y", &[]), "invalid status"),
            // Names and values
            (ok("200 OK", &[("X Y", "1")]), "invalid header name"),
            (ok("200 OK", &[("", "1")]), "invalid header name"),
            (
                ok("200 OK", &[("X", "a\r\nSet-Cookie: x")]),
                "invalid header value",
            ),
            (ok("200 OK", &[("X", "a\nb")]), "invalid header value"),
            (ok("200 OK", &[("X", "a\0")]), "invalid header value"),
            // Content-Length
            (
                ok("200 OK", &[("Content-Length", "+5")]),
                "invalid Content-Length",
            ),
            (
                ok("200 OK", &[("Content-Length", "5x")]),
                "invalid Content-Length",
            ),
            (
                ok("200 OK", &[("Content-Length", "")]),
                "invalid Content-Length",
            ),
            (
                ok("200 OK", &[("Content-Length", "99999999999999999999")]),
                "invalid Content-Length",
            ),
            (
                ok(
                    "200 OK",
                    &[("Content-Length", "1"), ("Content-Length", "2")],
                ),
                "conflicting Content-Length",
            ),
        ];
        for (case, error) in cases {
            assert_eq!(begin(case).map(|r| r.0), Err(*error), "{:?}", case.status);
        }
    }

    #[test]
    fn status_without_reason_is_accepted() {
        let (text, _, _) = begin(&ok("200", &[("Content-Length", "0")])).unwrap();
        assert!(text.starts_with("HTTP/1.1 200\r\n"), "{text:?}");
    }

    #[test]
    fn chunks_are_hex_sized_and_empty_data_writes_nothing() {
        let cases: &[(usize, &str)] = &[
            (1, "1"),
            (10, "a"),
            (255, "ff"),
            (256, "100"),
            (65536, "10000"),
        ];
        for &(len, hex) in cases {
            let data = vec![b'x'; len];
            let mut out = Vec::new();
            write_chunk(&mut out, &data);
            let expected = [hex.as_bytes(), b"\r\n", &data, b"\r\n"].concat();
            assert_eq!(out, expected, "{len}");
        }
        let mut out = Vec::new();
        write_chunk(&mut out, b"");
        assert!(out.is_empty());
        write_chunk_header(&mut out, u64::MAX);
        assert_eq!(out, b"ffffffffffffffff\r\n");
        out.clear();
        write_last_chunk(&mut out);
        assert_eq!(out, b"0\r\n\r\n");
    }

    #[test]
    fn written_chunks_decode_back() {
        let mut out = Vec::new();
        for piece in [&b"hello"[..], &[b'-'; 300], b"!"] {
            write_chunk(&mut out, piece);
        }
        write_last_chunk(&mut out);
        let mut decoder = crate::http::ChunkedDecoder::new();
        let mut body = Vec::new();
        assert_eq!(decoder.decode(&out, &mut body), Ok(out.len()));
        assert!(decoder.is_done());
        assert_eq!(body, [&b"hello"[..], &[b'-'; 300], b"!"].concat());
    }

    #[test]
    fn error_responses_are_complete_and_self_describing() {
        let mut out = Vec::new();
        write_error_response(&mut out, 400, true, DATE);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 400 Bad Request\r\nServer: rgunicorn\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Connection: close\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\r\n400 Bad Request\n"
        );
        let mut out = Vec::new();
        write_error_response(&mut out, 431, false, DATE);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{text}"
        );
        assert!(!text.contains("Connection"));
        assert!(
            text.ends_with("Content-Length: 36\r\n\r\n431 Request Header Fields Too Large\n"),
            "{text}"
        );
    }

    #[test]
    fn every_status_the_parser_produces_has_a_reason() {
        for status in [400, 408, 413, 414, 417, 431, 500, 501, 505] {
            assert_ne!(reason_phrase(status), "Unknown Status", "{status}");
        }
    }
}
