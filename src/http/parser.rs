//! The request-head parser: request line and header fields, strictly per
//! RFC 9112, plus the framing analysis (Content-Length / Transfer-Encoding,
//! keep-alive, Expect) that decides how the body is read.
//!
//! Zero-copy: the result is a [`RequestHead`] of [`Span`]s into the caller's
//! buffer, so the caller may keep the head while it keeps the buffer (no
//! self-referential borrows) and reuse the `RequestHead` allocation for the
//! next request on the connection.

use super::error::ParseError;
use super::tables::{
    all_in, hex_value, is_ows, scan, trim_ows, FIELD_VALUE, IPV6_LITERAL, REG_NAME, TARGET, TCHAR,
};
use std::cmp::min;

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
///
/// Besides the three limits, the whole head is capped at
/// [`Limits::max_head_len`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line in bytes (`--limit-request-line`, default 4094; 0 = unlimited).
    pub request_line: usize,
    /// Most header fields (`--limit-request-fields`, default 100; 0 or more
    /// than 32768 means 32768).
    pub fields: usize,
    /// Longest header field line in bytes (`--limit-request-field_size`, default 8190; 0 = unlimited).
    pub field_size: usize,
    /// What to do with field names containing `_` (`--header-map`).
    pub underscores: UnderscoreHeaders,
}

/// Field names with `_` collide with `-` once mapped to environ keys
/// (`X_Forwarded_For` and `X-Forwarded-For` are both HTTP_X_FORWARDED_FOR):
/// gunicorn's `header_map` setting decides what to do with them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UnderscoreHeaders {
    /// Parse but leave out of the head (gunicorn's default, `drop`).
    #[default]
    Drop,
    /// Reject the request with 400 (`refuse`).
    Refuse,
    /// Keep them (`dangerous`): a client can then spoof a header that a
    /// proxy sets with `-`.
    Keep,
}

/// Most CRLFs skipped before a request line (RFC 9112 §2.2 lets a server
/// ignore at least one; a client sending more is not speaking HTTP).
const MAX_LEADING_EMPTY_LINES: usize = 16;
/// The head cap when the limits do not demand more, and the line length used
/// for an unlimited (0) line limit.
const DEFAULT_HEAD_CAP: usize = 64 * 1024;
/// The most header fields, whatever the limits say (gunicorn's MAX_HEADERS).
const MAX_FIELDS: usize = 32768;
/// The longest line any limit may allow, so spans always fit in `u32`.
const MAX_LINE: usize = 1 << 20;

impl Limits {
    fn request_line_limit(&self) -> usize {
        match self.request_line {
            0 => DEFAULT_HEAD_CAP,
            n => min(n, MAX_LINE),
        }
    }

    fn field_size_limit(&self) -> usize {
        match self.field_size {
            0 => DEFAULT_HEAD_CAP,
            n => min(n, MAX_LINE),
        }
    }

    fn field_count_limit(&self) -> usize {
        match self.fields {
            0 => MAX_FIELDS,
            n => min(n, MAX_FIELDS),
        }
    }

    /// The longest head accepted, leading empty lines and final CRLF
    /// included: what the three limits allow, but at most 64 KiB unless one
    /// longest request line plus one longest field line need more. A longer
    /// head fails with [`ParseError::HeadTooLarge`] (431).
    pub fn max_head_len(&self) -> usize {
        let line = self.request_line_limit();
        let field = self.field_size_limit();
        let allowed =
            2 * MAX_LEADING_EMPTY_LINES + line + 2 + self.field_count_limit() * (field + 2) + 2;
        let cap = DEFAULT_HEAD_CAP.max(2 * MAX_LEADING_EMPTY_LINES + line + field + 6);
        min(allowed, cap)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: 4094,
            fields: 100,
            field_size: 8190,
            underscores: UnderscoreHeaders::Drop,
        }
    }
}

/// A parsed request head. Reuse one per connection: [`parse_head`] clears it.
///
/// Its contents are meaningful only after [`Status::Complete`]; spans are
/// offsets into the slice given to [`parse_head`].
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// The method token, e.g. `GET`.
    pub method: Span,
    /// The request-target exactly as sent (`RAW_URI`).
    pub target: Span,
    /// The path part of the target, still percent-encoded (for absolute-form,
    /// without scheme and authority, and when that leaves nothing, a span
    /// over a `/` of the `://`, so it reads `/`; for `*`, the `*`). It holds
    /// no `\` and no percent-encoded control byte.
    pub path: Span,
    /// The query after `?`, without the `?` (empty when there is none).
    pub query: Span,
    /// The protocol version.
    pub version: Version,
    /// The header fields in order, minus those whose name contains `_`
    /// (dropped, as gunicorn's default `header_map=drop`).
    pub headers: Vec<HeaderSpan>,
    /// The host the request is for: the authority of an absolute-form target
    /// (a Host header must then name the same host and port), else the Host
    /// header (None only for HTTP/1.0 without Host).
    pub host: Option<Span>,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// Whether the client allows the connection to stay open after this
    /// request (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (HTTP/1.1 only).
    pub expect_continue: bool,
    /// Where the last parse stopped if it was `Partial`, so that the next
    /// call continues there instead of starting over.
    resume: Option<Resume>,
}

/// The state of a parse that ran out of bytes inside the field lines: the
/// head already holds the request line and the complete fields.
#[derive(Debug, Clone, Copy)]
struct Resume {
    /// Where the first incomplete field line starts.
    line_start: usize,
    field_count: usize,
    facts: FieldFacts,
    /// How far that line's value is known to be valid, if it got that far.
    value: Option<ValueProgress>,
}

/// A field line known valid up to `scanned_to`, with a non-empty value
/// started at `value_start`.
#[derive(Debug, Clone, Copy)]
struct ValueProgress {
    name_end: usize,
    value_start: usize,
    scanned_to: usize,
}

impl RequestHead {
    /// Puts every field back to its default, keeping the `headers` storage.
    fn reset(&mut self) {
        self.method = Span::default();
        self.target = Span::default();
        self.path = Span::default();
        self.query = Span::default();
        self.version = Version::default();
        self.headers.clear();
        self.host = None;
        self.framing = BodyFraming::None;
        self.keep_alive = false;
        self.expect_continue = false;
        self.resume = None;
    }

    /// The value of the first kept header named `name` (case-insensitive).
    pub fn header<'b>(&self, buf: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.get(buf).eq_ignore_ascii_case(name))
            .map(|h| h.value.get(buf))
    }
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
///
/// The outcome depends only on the bytes, not on how they arrived: a buffer
/// grown a byte at a time yields `Partial` until the same `Complete` or error
/// that the whole buffer yields (limits included: a line is too long as soon
/// as one byte more than its limit is seen without a line end).
///
/// Calling again after `Partial` with the same `head` and a buffer that
/// starts with the same bytes (the buffer only grew) resumes at the first
/// incomplete field line, so a head arriving in many small reads is not
/// re-parsed from the start each time. Pass a fresh (or completed) head
/// when the buffer's start has changed.
pub fn parse_head(
    buf: &[u8],
    head: &mut RequestHead,
    limits: &Limits,
) -> Result<Status, ParseError> {
    // A cheap check that the buffer is still the one that was parsed: the
    // complete lines end where they ended.
    let resume = head.resume.take().filter(|resume| {
        resume.line_start <= buf.len() && buf[..resume.line_start].ends_with(b"\r\n")
    });
    if resume.is_none() {
        head.reset();
    }
    let cap = limits.max_head_len();
    let truncated = buf.len() > cap;
    let mut parser = HeadParser {
        buf: if truncated { &buf[..cap] } else { buf },
        truncated,
        limits,
        head,
        facts: resume.map_or_else(FieldFacts::default, |r| r.facts),
        field_count: resume.map_or(0, |r| r.field_count),
        value_progress: resume.and_then(|r| r.value),
    };
    match parser.parse(resume.map(|r| r.line_start))? {
        Some(len) => Ok(Status::Complete(len)),
        None => Ok(Status::Partial),
    }
}

const SP: u8 = b' ';
const HTAB: u8 = b'\t';
const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// `Ok(None)` is "need more bytes"; `Ok(Some(x))` carries a parse position.
type Step<T> = Result<Option<T>, ParseError>;

/// Fields other than Host and Content-Length that must not appear twice:
/// joining their values with `,` would make a new value, and a front end
/// may have read the first or the last one instead.
const SINGLETON_FIELDS: [&[u8]; 3] = [b"content-type", b"authorization", b"proxy-authorization"];

/// What one field line turned out to be.
enum FieldLine {
    /// A header field; the next line starts at this offset.
    Field(usize),
    /// The empty line ending the head; the head is this long.
    End(usize),
}

/// What the header fields said about framing and the connection, gathered
/// while parsing and judged once the head is complete.
#[derive(Debug, Clone, Copy, Default)]
struct FieldFacts {
    host: Option<Span>,
    content_length: Option<u64>,
    /// Which of [`SINGLETON_FIELDS`] have been seen, one bit each.
    singletons_seen: u8,
    transfer_encoding: bool,
    chunked: bool,
    chunked_not_final: bool,
    other_coding: bool,
    connection_close: bool,
    connection_keep_alive: bool,
    expect_continue: bool,
}

struct HeadParser<'b, 'h, 'l> {
    /// The input, cut at the head cap.
    buf: &'b [u8],
    /// Whether the input went on past the head cap.
    truncated: bool,
    limits: &'l Limits,
    head: &'h mut RequestHead,
    facts: FieldFacts,
    field_count: usize,
    /// In: how far the first field line is known valid (when resuming).
    /// Out: how far the incomplete field line was found valid.
    value_progress: Option<ValueProgress>,
}

fn span(start: usize, end: usize) -> Span {
    // Offsets are bounded by `Limits::max_head_len`, far below u32::MAX.
    Span {
        start: start as u32,
        end: end as u32,
    }
}

impl<'b> HeadParser<'b, '_, '_> {
    /// Parses the head, from the start or from a field line where an
    /// earlier parse of the same bytes stopped.
    fn parse(&mut self, resume_at: Option<usize>) -> Step<usize> {
        let mut pos = match resume_at {
            Some(line_start) => line_start,
            None => {
                let Some(start) = self.skip_empty_lines()? else {
                    return Ok(None);
                };
                let Some(next) = self.request_line(start)? else {
                    return Ok(None);
                };
                next
            }
        };
        loop {
            let field_count = self.field_count;
            match self.field_line(pos)? {
                None => {
                    self.head.resume = Some(Resume {
                        line_start: pos,
                        field_count,
                        facts: self.facts,
                        value: self.value_progress,
                    });
                    return Ok(None);
                }
                Some(FieldLine::Field(next)) => pos = next,
                Some(FieldLine::End(len)) => {
                    self.finish()?;
                    return Ok(Some(len));
                }
            }
        }
    }

    /// The byte at `i`, or `None` when the input ends first (an error when
    /// it was cut at the head cap).
    fn byte_at(&self, i: usize) -> Step<u8> {
        match self.buf.get(i) {
            Some(&b) => Ok(Some(b)),
            None if self.truncated => Err(ParseError::HeadTooLarge),
            None => Ok(None),
        }
    }

    /// The input window for a line starting at `start` whose content may
    /// be at most `limit` bytes: one byte more, so that a line with no end
    /// in sight is known to be too long.
    fn line_window(&self, start: usize, limit: usize) -> &'b [u8] {
        &self.buf[..min(self.buf.len(), start.saturating_add(limit + 1))]
    }

    /// A scan of a line reached the end of its window without finding the
    /// line's end.
    fn ran_out<T>(
        &self,
        start: usize,
        window_end: usize,
        limit: usize,
        too_long: ParseError,
    ) -> Step<T> {
        if window_end - start > limit {
            Err(too_long)
        } else if self.truncated && window_end == self.buf.len() {
            Err(ParseError::HeadTooLarge)
        } else {
            Ok(None)
        }
    }

    /// Skips CRLFs before the request line; returns where it starts.
    fn skip_empty_lines(&self) -> Step<usize> {
        let mut pos = 0;
        for _ in 0..=MAX_LEADING_EMPTY_LINES {
            match self.byte_at(pos)? {
                None => return Ok(None),
                Some(CR) => match self.byte_at(pos + 1)? {
                    None => return Ok(None),
                    Some(LF) => pos += 2,
                    Some(_) => return Err(ParseError::BareCr),
                },
                Some(LF) => return Err(ParseError::BareLf),
                Some(_) => return Ok(Some(pos)),
            }
        }
        Err(ParseError::TooManyEmptyLines)
    }

    /// `request-line = method SP request-target SP HTTP-version CRLF`;
    /// returns where the first field line starts.
    fn request_line(&mut self, start: usize) -> Step<usize> {
        use ParseError::*;
        let limit = self.limits.request_line_limit();
        let w = self.line_window(start, limit);

        let method_end = scan(w, start, &TCHAR);
        if method_end == w.len() {
            return self.ran_out(start, method_end, limit, RequestLineTooLong);
        }
        match w[method_end] {
            SP if method_end > start => {}
            CR | LF if method_end > start => return Err(InvalidRequestLine),
            _ => return Err(InvalidMethod),
        }

        let target_start = method_end + 1;
        let target_end = scan(w, target_start, &TARGET);
        if target_end == w.len() {
            return self.ran_out(start, target_end, limit, RequestLineTooLong);
        }
        match w[target_end] {
            SP if target_end > target_start => {}
            CR | LF if target_end > target_start => return Err(InvalidRequestLine),
            _ => return Err(InvalidTarget),
        }
        self.head.method = span(start, method_end);
        self.head.target = span(target_start, target_end);
        self.classify_target(target_start, target_end)?;

        let version_start = target_end + 1;
        for (i, &expected) in b"HTTP/#.#".iter().enumerate() {
            let Some(&b) = w.get(version_start + i) else {
                return self.ran_out(start, w.len(), limit, RequestLineTooLong);
            };
            let fits = if expected == b'#' {
                b.is_ascii_digit()
            } else {
                b == expected
            };
            if !fits {
                return Err(InvalidVersion);
            }
        }
        let cr = version_start + 8;
        match w.get(cr) {
            None => return self.ran_out(start, w.len(), limit, RequestLineTooLong),
            Some(&CR) => {}
            Some(&LF) => return Err(BareLf),
            Some(_) => return Err(InvalidVersion),
        }
        self.head.version = match (w[version_start + 5], w[version_start + 7]) {
            (b'1', b'0') => Version::Http10,
            (b'1', b'1') => Version::Http11,
            _ => return Err(UnsupportedVersion),
        };
        match self.byte_at(cr + 1)? {
            None => Ok(None),
            Some(LF) => Ok(Some(cr + 2)),
            Some(_) => Err(BareCr),
        }
    }

    /// Checks the request-target's form against the method and splits it
    /// into path and query (RFC 9112 §3.2).
    fn classify_target(&mut self, start: usize, end: usize) -> Result<(), ParseError> {
        let target = &self.buf[start..end];
        if target.contains(&b'#') {
            return Err(ParseError::FragmentInTarget);
        }
        let method = self.head.method.get(self.buf);
        if method == b"CONNECT" {
            // authority-form = uri-host ":" port; a tunnel is not ours to make.
            if !valid_authority(target, true) {
                return Err(ParseError::InvalidTarget);
            }
            return Err(ParseError::ConnectNotSupported);
        } else if target[0] == b'/' {
            // origin-form = absolute-path [ "?" query ]
            self.split_path_query(start, end)?;
        } else if target == b"*" {
            // asterisk-form, for a server-wide OPTIONS only
            if method != b"OPTIONS" {
                return Err(ParseError::InvalidTarget);
            }
            self.head.path = span(start, end);
            self.head.query = span(end, end);
        } else {
            self.absolute_form(start, end)?;
        }
        Ok(())
    }

    /// `absolute-form = absolute-URI`, restricted to the http and https
    /// schemes: `scheme "://" authority path-abempty [ "?" query ]`.
    fn absolute_form(&mut self, start: usize, end: usize) -> Result<(), ParseError> {
        let target = &self.buf[start..end];
        let scheme_len = if target.len() > 7 && target[..7].eq_ignore_ascii_case(b"http://") {
            4
        } else if target.len() > 8 && target[..8].eq_ignore_ascii_case(b"https://") {
            5
        } else {
            return Err(ParseError::InvalidTarget);
        };
        let authority_start = start + scheme_len + 3;
        let authority_end = self.buf[authority_start..end]
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .map_or(end, |i| authority_start + i);
        let authority = &self.buf[authority_start..authority_end];
        if authority.is_empty() || !valid_authority(authority, false) {
            return Err(ParseError::InvalidTarget);
        }
        self.head.host = Some(span(authority_start, authority_end));
        if self.buf.get(authority_end) == Some(&b'/') && authority_end < end {
            self.split_path_query(authority_end, end)?;
        } else {
            // An empty path is "/": point at the last slash of "://".
            let slash = authority_start - 1;
            self.head.path = span(slash, slash + 1);
            self.head.query = if authority_end < end {
                span(authority_end + 1, end)
            } else {
                span(end, end)
            };
        }
        Ok(())
    }

    /// Splits `path [ "?" query ]` and checks the path.
    fn split_path_query(&mut self, start: usize, end: usize) -> Result<(), ParseError> {
        let path_end = self.buf[start..end]
            .iter()
            .position(|&b| b == b'?')
            .map_or(end, |q| start + q);
        check_path(&self.buf[start..path_end])?;
        self.head.path = span(start, path_end);
        self.head.query = span(min(path_end + 1, end), end);
        Ok(())
    }

    /// `field-line = field-name ":" OWS field-value OWS CRLF`, or the empty
    /// line that ends the head.
    fn field_line(&mut self, start: usize) -> Step<FieldLine> {
        use ParseError::*;
        match self.byte_at(start)? {
            None => return Ok(None),
            Some(CR) => {
                return match self.byte_at(start + 1)? {
                    None => Ok(None),
                    Some(LF) => Ok(Some(FieldLine::End(start + 2))),
                    Some(_) => Err(BareCr),
                }
            }
            Some(LF) => return Err(BareLf),
            Some(SP | HTAB) => return Err(ObsFold),
            Some(_) => {}
        }
        self.field_count += 1;
        if self.field_count > self.limits.field_count_limit() {
            return Err(TooManyHeaders);
        }

        let limit = self.limits.field_size_limit();
        let w = self.line_window(start, limit);

        let known = self
            .value_progress
            .take()
            .filter(|p| p.scanned_to <= w.len());
        let (name_end, value_start, scan_from) = match known {
            Some(progress) => (progress.name_end, progress.value_start, progress.scanned_to),
            None => {
                let name_end = scan(w, start, &TCHAR);
                if name_end == w.len() {
                    return self.ran_out(start, name_end, limit, HeaderFieldTooLarge);
                }
                match w[name_end] {
                    b':' if name_end > start => {}
                    SP | HTAB if name_end > start => return Err(WhitespaceBeforeColon),
                    _ => return Err(InvalidHeaderName),
                }
                let mut value_start = name_end + 1;
                while value_start < w.len() && is_ows(w[value_start]) {
                    value_start += 1;
                }
                (name_end, value_start, value_start)
            }
        };
        let cr = scan(w, scan_from, &FIELD_VALUE);
        if cr > value_start {
            // Once the value has begun, what was scanned needs no second look.
            self.value_progress = Some(ValueProgress {
                name_end,
                value_start,
                scanned_to: cr,
            });
        }
        if cr == w.len() {
            return self.ran_out(start, cr, limit, HeaderFieldTooLarge);
        }
        match w[cr] {
            CR => {}
            LF => return Err(BareLf),
            _ => return Err(InvalidHeaderValue),
        }
        let mut value_end = cr;
        while value_end > value_start && is_ows(w[value_end - 1]) {
            value_end -= 1;
        }
        match self.byte_at(cr + 1)? {
            None => return Ok(None),
            Some(LF) => {}
            Some(_) => return Err(BareCr),
        }

        self.value_progress = None;
        let field = HeaderSpan {
            name: span(start, name_end),
            value: span(value_start, value_end),
        };
        self.note_field(field, &self.buf[name_end + 1..cr])?;
        // `X_Forwarded_For` must not pass for `X-Forwarded-For` once mapped
        // to HTTP_X_FORWARDED_FOR, unless the operator says so.
        let underscored = self.buf[start..name_end].contains(&b'_');
        match (underscored, self.limits.underscores) {
            (false, _) | (true, UnderscoreHeaders::Keep) => self.head.headers.push(field),
            (true, UnderscoreHeaders::Drop) => {}
            (true, UnderscoreHeaders::Refuse) => return Err(ParseError::UnderscoreInHeaderName),
        }
        Ok(Some(FieldLine::Field(cr + 2)))
    }

    /// Records what a field means for framing, Host, Connection and Expect;
    /// `raw_value` is everything between the colon and the CR.
    fn note_field(&mut self, field: HeaderSpan, raw_value: &[u8]) -> Result<(), ParseError> {
        let name = field.name.get(self.buf);
        let value = field.value.get(self.buf);
        let facts = &mut self.facts;
        let is =
            |expected: &[u8]| name.len() == expected.len() && name.eq_ignore_ascii_case(expected);
        if let Some(i) = SINGLETON_FIELDS.iter().position(|&singleton| is(singleton)) {
            let bit = 1 << i;
            if facts.singletons_seen & bit != 0 {
                return Err(ParseError::RepeatedSingletonField);
            }
            facts.singletons_seen |= bit;
        } else if is(b"host") {
            if facts.host.is_some() {
                return Err(ParseError::DuplicateHost);
            }
            if !valid_authority(value, false) {
                return Err(ParseError::InvalidHost);
            }
            facts.host = Some(field.value);
        } else if is(b"content-length") {
            if facts.content_length.is_some() {
                return Err(ParseError::DuplicateContentLength);
            }
            check_framing_whitespace(raw_value)?;
            facts.content_length = Some(parse_content_length(value)?);
        } else if is(b"transfer-encoding") {
            check_framing_whitespace(raw_value)?;
            facts.note_transfer_encoding(value)?;
        } else if is(b"connection") {
            for option in list_elements(value) {
                if option.eq_ignore_ascii_case(b"close") {
                    facts.connection_close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    facts.connection_keep_alive = true;
                }
            }
        } else if is(b"expect") {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return Err(ParseError::ExpectationFailed);
            }
            facts.expect_continue = true;
        }
        Ok(())
    }

    /// Judges the gathered facts once the head is complete (RFC 9112 §6.3).
    fn finish(&mut self) -> Result<(), ParseError> {
        use ParseError::*;
        let facts = &self.facts;
        let http11 = self.head.version == Version::Http11;
        if http11 && facts.host.is_none() {
            return Err(MissingHost);
        }
        if let (Some(authority), Some(host)) = (self.head.host, facts.host) {
            // RFC 9112 §3.2.2: the client sends the target's authority as Host.
            let target = self.head.target.get(self.buf);
            let default_port = if target[..5].eq_ignore_ascii_case(b"https") {
                443
            } else {
                80
            };
            if !same_authority(authority.get(self.buf), host.get(self.buf), default_port) {
                return Err(HostMismatch);
            }
        }
        self.head.framing = if facts.transfer_encoding {
            if !http11 {
                return Err(TransferEncodingOnHttp10);
            }
            if facts.content_length.is_some() {
                return Err(ContentLengthWithTransferEncoding);
            }
            if facts.chunked_not_final {
                return Err(ChunkedNotFinal);
            }
            if facts.other_coding {
                return Err(UnsupportedTransferCoding);
            }
            if !facts.chunked {
                return Err(ChunkedNotFinal);
            }
            BodyFraming::Chunked
        } else {
            match facts.content_length {
                None | Some(0) => BodyFraming::None,
                Some(n) => BodyFraming::Length(n),
            }
        };
        // RFC 9110 §9.3.2, §9.3.8: content on HEAD has no meaning, on TRACE
        // it is forbidden; a front end may well not expect to forward any.
        let method = self.head.method.get(self.buf);
        if self.head.framing != BodyFraming::None && (method == b"HEAD" || method == b"TRACE") {
            return Err(BodyNotAllowed);
        }
        if self.head.host.is_none() {
            self.head.host = facts.host;
        }
        self.head.keep_alive = !facts.connection_close && (http11 || facts.connection_keep_alive);
        self.head.expect_continue = http11 && facts.expect_continue;
        Ok(())
    }
}

impl FieldFacts {
    /// `Transfer-Encoding = #transfer-coding`, across all its field lines.
    fn note_transfer_encoding(&mut self, value: &[u8]) -> Result<(), ParseError> {
        self.transfer_encoding = true;
        for coding in list_elements(value) {
            if self.chunked {
                self.chunked_not_final = true;
            }
            if coding.eq_ignore_ascii_case(b"chunked") {
                self.chunked = true;
                continue;
            }
            // transfer-coding = token *( OWS ";" OWS transfer-parameter )
            let name_end = scan(coding, 0, &TCHAR);
            let well_formed = name_end > 0
                && (name_end == coding.len()
                    || coding[name_end] == b';'
                    || is_ows(coding[name_end]));
            if !well_formed {
                return Err(ParseError::InvalidTransferEncoding);
            }
            self.other_coding = true;
        }
        Ok(())
    }
}

/// The non-empty elements of a comma-separated list (RFC 9110 §5.6.1), each
/// without surrounding OWS.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6), without the list form or
/// leading zeros the RFC tolerates. Hand-rolled: `str::parse` would take a
/// leading `+`.
fn parse_content_length(digits: &[u8]) -> Result<u64, ParseError> {
    if digits.contains(&b',') {
        return Err(ParseError::ContentLengthList);
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::InvalidContentLength);
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return Err(ParseError::LeadingZeroInContentLength);
    }
    digits
        .iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(ParseError::ContentLengthOverflow)
}

/// A framing field's value (all between the colon and the CR) may follow
/// one SP, and no other whitespace may surround it or stand in it as HTAB:
/// a front end that trims differently must not read other framing.
fn check_framing_whitespace(raw_value: &[u8]) -> Result<(), ParseError> {
    let value = raw_value.strip_prefix(b" ").unwrap_or(raw_value);
    let loose = value.first().is_some_and(|&b| is_ows(b))
        || value.last().is_some_and(|&b| is_ows(b))
        || value.contains(&HTAB);
    if loose {
        return Err(ParseError::WhitespaceInFramingField);
    }
    Ok(())
}

/// `absolute-path` as this server passes it on: no `\` (which some front
/// ends and file systems read as `/`) and no percent-encoded control byte
/// (which would reach the app decoded: NUL, CR, LF, ...).
fn check_path(path: &[u8]) -> Result<(), ParseError> {
    if path.contains(&b'\\') {
        return Err(ParseError::BackslashInPath);
    }
    let encoded_control = path.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (hex_value(w[1]), hex_value(w[2])),
                (Some(high), Some(low)) if high < 2 || (high == 7 && low == 0xf)
            )
    });
    if encoded_control {
        return Err(ParseError::EncodedControlInPath);
    }
    Ok(())
}

/// Whether an absolute-form target's authority and a Host value name the
/// same host (case-insensitively) and port (an absent or empty port being
/// the scheme's `default_port`). Both are valid authorities.
fn same_authority(target: &[u8], host: &[u8], default_port: u32) -> bool {
    let (target_host, target_port) = split_authority(target);
    let (host_host, host_port) = split_authority(host);
    let port = |digits: &[u8]| {
        if digits.is_empty() {
            default_port
        } else {
            // At most 5 digits (valid_authority), so no overflow.
            digits.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0'))
        }
    };
    target_host.eq_ignore_ascii_case(host_host) && port(target_port) == port(host_port)
}

/// A valid authority as (host, port digits), the port empty when absent.
fn split_authority(authority: &[u8]) -> (&[u8], &[u8]) {
    let host_end = match authority.first() {
        Some(b'[') => authority
            .iter()
            .position(|&b| b == b']')
            .map_or(authority.len(), |i| i + 1),
        _ => authority
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(authority.len()),
    };
    let (host, rest) = authority.split_at(host_end);
    (host, rest.strip_prefix(b":").unwrap_or(rest))
}

/// `authority = uri-host [ ":" port ]` as in Host and absolute-form targets
/// (no userinfo); with `port_required`, CONNECT's `uri-host ":" port`.
fn valid_authority(authority: &[u8], port_required: bool) -> bool {
    let port_part = if authority.first() == Some(&b'[') {
        // IP-literal = "[" IPv6address "]"
        let Some(close) = authority.iter().position(|&b| b == b']') else {
            return false;
        };
        let inside = &authority[1..close];
        if inside.is_empty() || !all_in(inside, &IPV6_LITERAL) {
            return false;
        }
        &authority[close + 1..]
    } else {
        let host_end = authority
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(authority.len());
        if !valid_reg_name(&authority[..host_end]) {
            return false;
        }
        &authority[host_end..]
    };
    match port_part {
        [] => !port_required,
        // port = *DIGIT
        [b':', port @ ..] => {
            port.len() <= 5
                && port.iter().all(u8::is_ascii_digit)
                && !(port_required && port.is_empty())
        }
        _ => false,
    }
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, which also
/// covers an IPv4address.
fn valid_reg_name(host: &[u8]) -> bool {
    if !all_in(host, &REG_NAME) {
        return false;
    }
    let mut rest = host;
    while let Some(percent) = rest.iter().position(|&b| b == b'%') {
        let triplet_ok = rest.len() > percent + 2
            && hex_value(rest[percent + 1]).is_some()
            && hex_value(rest[percent + 2]).is_some();
        if !triplet_ok {
            return false;
        }
        rest = &rest[percent + 3..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use ParseError::*;

    fn parse_with(input: &[u8], limits: &Limits) -> Result<Status, ParseError> {
        let mut head = RequestHead::default();
        parse_head(input, &mut head, limits)
    }

    fn parse(input: &[u8]) -> Result<Status, ParseError> {
        parse_with(input, &Limits::default())
    }

    /// Parses a complete head and returns it with its length.
    fn complete(input: &[u8]) -> (RequestHead, usize) {
        let mut head = RequestHead::default();
        match parse_head(input, &mut head, &Limits::default()) {
            Ok(Status::Complete(len)) => (head, len),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn text(span: Span, buf: &[u8]) -> &str {
        std::str::from_utf8(span.get(buf)).unwrap()
    }

    #[test]
    fn valid_request_lines_split_into_method_path_query() {
        // (request, method, target, path, query, version)
        type Case = (
            &'static [u8],
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            Version,
        );
        let cases: &[Case] = &[
            // origin-form
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET",
                "/",
                "/",
                "",
                Version::Http11,
            ),
            (
                b"GET /a/b?x=1&y HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET",
                "/a/b?x=1&y",
                "/a/b",
                "x=1&y",
                Version::Http11,
            ),
            (
                b"GET /?q HTTP/1.0\r\n\r\n",
                "GET",
                "/?q",
                "/",
                "q",
                Version::Http10,
            ),
            (
                b"GET /a?b?c HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET",
                "/a?b?c",
                "/a",
                "b?c",
                Version::Http11,
            ),
            (
                b"GET /%7Euser//x HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET",
                "/%7Euser//x",
                "/%7Euser//x",
                "",
                Version::Http11,
            ),
            // absolute-form
            (
                b"GET http://example.com/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n",
                "GET",
                "http://example.com/p?q",
                "/p",
                "q",
                Version::Http11,
            ),
            (
                b"GET HTTPS://example.com:8443 HTTP/1.1\r\nHost: example.com:8443\r\n\r\n",
                "GET",
                "HTTPS://example.com:8443",
                "/",
                "",
                Version::Http11,
            ),
            (
                b"GET http://example.com?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
                "GET",
                "http://example.com?q=1",
                "/",
                "q=1",
                Version::Http11,
            ),
            // asterisk-form
            (
                b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
                "OPTIONS",
                "*",
                "*",
                "",
                Version::Http11,
            ),
            // what the path may hold: encoded non-controls, a backslash in the query
            (
                b"GET /%20%2F%5C%80%7e?a%00\\%0d HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET",
                "/%20%2F%5C%80%7e?a%00\\%0d",
                "/%20%2F%5C%80%7e",
                "a%00\\%0d",
                Version::Http11,
            ),
            (
                b"GET /a%2 HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET",
                "/a%2",
                "/a%2",
                "",
                Version::Http11,
            ),
            // methods are any token
            (
                b"PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n",
                "PROPFIND",
                "/",
                "/",
                "",
                Version::Http11,
            ),
        ];
        for &(input, method, target, path, query, version) in cases {
            let (head, len) = complete(input);
            assert_eq!(len, input.len());
            assert_eq!(text(head.method, input), method);
            assert_eq!(text(head.target, input), target);
            assert_eq!(text(head.path, input), path);
            assert_eq!(text(head.query, input), query);
            assert_eq!(head.version, version);
        }
    }

    #[test]
    fn fields_are_kept_in_order_trimmed_and_underscored_names_dropped() {
        let input = b"GET / HTTP/1.1\r\nHost:  a.example \r\nX-A:\tone two\t\r\nX_Forwarded_For: 1.2.3.4\r\nEmpty:\r\nObs: caf\xc3\xa9\xff\r\n\r\n";
        let (head, _) = complete(input);
        let fields: Vec<(&[u8], &[u8])> = head
            .headers
            .iter()
            .map(|h| (h.name.get(input), h.value.get(input)))
            .collect();
        let expected: Vec<(&[u8], &[u8])> = vec![
            (b"Host", b"a.example"),
            (b"X-A", b"one two"),
            (b"Empty", b""),
            (b"Obs", b"caf\xc3\xa9\xff"),
        ];
        assert_eq!(fields, expected);
        assert_eq!(head.host.map(|h| h.get(input)), Some(&b"a.example"[..]));
        assert_eq!(head.header(input, b"x-a"), Some(&b"one two"[..]));
    }

    #[test]
    fn framing_keep_alive_and_expect_follow_the_fields() {
        // (request, framing, keep_alive, expect_continue)
        let cases: &[(&[u8], BodyFraming, bool, bool)] = &[
            // Defaults per version
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", BodyFraming::None, true, false),
            (b"GET / HTTP/1.0\r\n\r\n", BodyFraming::None, false, false),
            // Connection options
            (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", BodyFraming::None, false, false),
            (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n", BodyFraming::None, false, false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", BodyFraming::None, true, false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", BodyFraming::None, false, false),
            (b"GET / HTTP/1.0\r\nConnection: te\r\n\r\n", BodyFraming::None, false, false),
            // Content-Length
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", BodyFraming::Length(5), true, false),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", BodyFraming::None, true, false),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:7\r\n\r\n", BodyFraming::Length(7), true, false),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n", BodyFraming::Length(u64::MAX), true, false),
            (b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n", BodyFraming::Length(3), false, false),
            // Transfer-Encoding
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", BodyFraming::Chunked, true, false),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n", BodyFraming::Chunked, true, false),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked,\r\n\r\n", BodyFraming::Chunked, true, false),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\nTransfer-Encoding: chunked\r\n\r\n", BodyFraming::Chunked, true, false),
            // Expect
            (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", BodyFraming::Length(1), true, true),
            (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", BodyFraming::Length(1), false, false),
        ];
        for &(input, framing, keep_alive, expect_continue) in cases {
            let (head, _) = complete(input);
            let name = String::from_utf8_lossy(input);
            assert_eq!(head.framing, framing, "{name:?}");
            assert_eq!(head.keep_alive, keep_alive, "{name:?}");
            assert_eq!(head.expect_continue, expect_continue, "{name:?}");
        }
    }

    #[test]
    fn absolute_form_authority_is_the_host_and_host_must_name_it() {
        // (request, host) where Host names the target's host and port
        let cases: &[(&[u8], &str)] = &[
            (
                b"GET http://origin.example:8080/x HTTP/1.1\r\nHost: origin.example:8080\r\n\r\n",
                "origin.example:8080",
            ),
            (
                b"GET http://Origin.Example/x HTTP/1.1\r\nHost: origin.example:80\r\n\r\n",
                "Origin.Example",
            ),
            (b"GET http://a:/x HTTP/1.1\r\nHost: a\r\n\r\n", "a:"),
            (b"GET https://a:443/x HTTP/1.1\r\nHost: a\r\n\r\n", "a:443"),
            (
                b"GET http://a:0080/x HTTP/1.1\r\nHost: a:80\r\n\r\n",
                "a:0080",
            ),
            (
                b"GET http://[::1]:8000/ HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n",
                "[::1]:8000",
            ),
            (b"GET http://a/x HTTP/1.0\r\n\r\n", "a"),
        ];
        for &(input, host) in cases {
            let (head, _) = complete(input);
            assert_eq!(text(head.host.unwrap(), input), host);
        }
        let input = b"GET /x HTTP/1.0\r\n\r\n";
        assert_eq!(complete(input).0.host, None);
        // No authority in the target: an empty Host stands (RFC 9112 §3.3
        // lets the server apply its default).
        let input = b"GET /x HTTP/1.1\r\nHost:\r\n\r\n";
        assert_eq!(complete(input).0.host.map(|h| h.is_empty()), Some(true));
    }

    #[test]
    fn bodies_on_get_and_options_are_allowed_on_head_and_trace_only_empty() {
        let cases: &[(&[u8], BodyFraming)] = &[
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n",
                BodyFraming::Length(2),
            ),
            (
                b"OPTIONS * HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                BodyFraming::Chunked,
            ),
            (
                b"HEAD / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                BodyFraming::None,
            ),
            (
                b"TRACE / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                BodyFraming::None,
            ),
            (
                b"head / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n",
                BodyFraming::Length(2),
            ),
        ];
        for &(input, framing) in cases {
            assert_eq!(
                complete(input).0.framing,
                framing,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted_in_the_length() {
        let input = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT";
        let (head, len) = complete(input);
        assert_eq!(len, input.len() - 4);
        assert_eq!(text(head.method, input), "GET");
        let many = [
            &b"\r\n".repeat(MAX_LEADING_EMPTY_LINES + 1)[..],
            b"GET / HTTP/1.0\r\n\r\n",
        ]
        .concat();
        assert_eq!(parse(&many), Err(TooManyEmptyLines));
    }

    #[test]
    fn every_prefix_of_a_valid_request_is_partial() {
        let requests: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"\r\nPOST /form?a=b HTTP/1.1\r\nHost: [::1]:8000\r\nContent-Length: 5\r\nX:\r\n\r\n",
            b"GET http://h/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        ];
        for &request in requests {
            for end in 0..request.len() {
                assert_eq!(
                    parse(&request[..end]),
                    Ok(Status::Partial),
                    "{:?}",
                    String::from_utf8_lossy(&request[..end])
                );
            }
            assert_eq!(parse(request), Ok(Status::Complete(request.len())));
        }
    }

    #[test]
    fn a_growing_buffer_resumes_and_ends_like_a_fresh_parse() {
        let request = b"POST /a HTTP/1.1\r\nHost: h\r\nX: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";
        let mut head = RequestHead::default();
        for end in 0..request.len() - 2 {
            let status = parse_head(&request[..end], &mut head, &Limits::default());
            assert_eq!(status, Ok(Status::Partial), "{end}");
        }
        let status = parse_head(request, &mut head, &Limits::default());
        let (fresh, len) = complete(request);
        assert_eq!(status, Ok(Status::Complete(len)));
        assert_eq!(format!("{head:?}"), format!("{fresh:?}"));
        assert_eq!(head.framing, BodyFraming::Length(2));
        assert!(!head.keep_alive);
    }

    #[test]
    fn a_changed_buffer_is_parsed_from_the_start() {
        let mut head = RequestHead::default();
        let first = b"GET /a HTTP/1.1\r\nHost: a\r\nX-Lo";
        assert_eq!(
            parse_head(first, &mut head, &Limits::default()),
            Ok(Status::Partial)
        );
        // Shorter than where the first parse stopped: start over.
        let other = b"GET / HTTP/1.0\r\n\r\n";
        assert_eq!(
            parse_head(other, &mut head, &Limits::default()),
            Ok(Status::Complete(other.len()))
        );
        assert_eq!(head.headers.len(), 0);
        assert_eq!(head.version, Version::Http10);
    }

    #[test]
    fn invalid_heads_fail_with_their_error() {
        let cases: &[(&[u8], ParseError)] = &[
            // Request line shape
            (b"GET\r\n", InvalidRequestLine),
            (b"GET /\r\n", InvalidRequestLine),
            (b" GET / HTTP/1.1\r\n", InvalidMethod),
            (b"G(T / HTTP/1.1\r\n", InvalidMethod),
            (b"GET  / HTTP/1.1\r\n", InvalidTarget),
            (b"GET / HTTP/1.1 \r\n", InvalidVersion),
            (b"GET / HTTP/1.1\r\r\n", BareCr),
            (b"GET\t/ HTTP/1.1\r\n", InvalidMethod),
            // Request target
            (b"GET /a\x01b HTTP/1.1\r\n", InvalidTarget),
            (b"GET /caf\xc3\xa9 HTTP/1.1\r\n", InvalidTarget),
            (b"GET /\x7f HTTP/1.1\r\n", InvalidTarget),
            (b"GET /a#frag HTTP/1.1\r\n", FragmentInTarget),
            (b"GET * HTTP/1.1\r\n", InvalidTarget),
            (b"M-SEARCH * HTTP/1.1\r\n", InvalidTarget),
            (b"GET example.com:80 HTTP/1.1\r\n", InvalidTarget),
            (b"CONNECT /x HTTP/1.1\r\n", InvalidTarget),
            (b"CONNECT example.com HTTP/1.1\r\n", InvalidTarget),
            (b"CONNECT example.com:443 HTTP/1.1\r\n", ConnectNotSupported),
            (b"CONNECT [::1]:443 HTTP/1.1\r\n", ConnectNotSupported),
            (b"GET /a\\b HTTP/1.1\r\n", BackslashInPath),
            (b"GET \\ HTTP/1.1\r\n", InvalidTarget),
            (b"GET http://h/a\\b?c HTTP/1.1\r\n", BackslashInPath),
            (b"GET /a%00 HTTP/1.1\r\n", EncodedControlInPath),
            (b"GET /a%0D%0Ab HTTP/1.1\r\n", EncodedControlInPath),
            (b"GET /%1f HTTP/1.1\r\n", EncodedControlInPath),
            (b"GET /%7F HTTP/1.1\r\n", EncodedControlInPath),
            (b"GET http://h/%0a HTTP/1.1\r\n", EncodedControlInPath),
            (b"GET ftp://example.com/ HTTP/1.1\r\n", InvalidTarget),
            (b"GET http:///x HTTP/1.1\r\n", InvalidTarget),
            (b"GET http://user@h/ HTTP/1.1\r\n", InvalidTarget),
            (b"GET http://h:port/ HTTP/1.1\r\n", InvalidTarget),
            // Version
            (b"GET / HTTP/2.0\r\n", UnsupportedVersion),
            (b"GET / HTTP/1.2\r\n", UnsupportedVersion),
            (b"GET / HTTP/0.9\r\n", UnsupportedVersion),
            (b"GET / http/1.1\r\n", InvalidVersion),
            (b"GET / HTTP/1.10\r\n", InvalidVersion),
            (b"GET / HTTP/11\r\n", InvalidVersion),
            (b"GET / HTTP/1.x\r\n", InvalidVersion),
            // Line endings
            (b"GET / HTTP/1.1\n", BareLf),
            (b"\nGET / HTTP/1.1\r\n", BareLf),
            (b"\rGET / HTTP/1.1\r\n", BareCr),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", BareLf),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\n", BareLf),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\rX", BareCr),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n", BareCr),
            // Field names
            (b"GET / HTTP/1.1\r\n: a\r\n", InvalidHeaderName),
            (b"GET / HTTP/1.1\r\nX Y: a\r\n", WhitespaceBeforeColon),
            (b"GET / HTTP/1.1\r\nHost : a\r\n", WhitespaceBeforeColon),
            (b"GET / HTTP/1.1\r\nHost\t: a\r\n", WhitespaceBeforeColon),
            (b"GET / HTTP/1.1\r\nX(: a\r\n", InvalidHeaderName),
            (b"GET / HTTP/1.1\r\nX\r\n", InvalidHeaderName),
            (b"GET / HTTP/1.1\r\nCaf\xc3\xa9: a\r\n", InvalidHeaderName),
            // Folding and values
            (b"GET / HTTP/1.1\r\nX: a\r\n b\r\n", ObsFold),
            (b"GET / HTTP/1.1\r\n\tX: a\r\n", ObsFold),
            (b"GET / HTTP/1.1\r\nX: a\x00b\r\n", InvalidHeaderValue),
            (b"GET / HTTP/1.1\r\nX: a\x0bb\r\n", InvalidHeaderValue),
            (b"GET / HTTP/1.1\r\nX: \x7f\r\n", InvalidHeaderValue),
            // Host
            (b"GET / HTTP/1.1\r\n\r\n", MissingHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n", DuplicateHost),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n", InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: a/b\r\n", InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: user@a\r\n", InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: a:b\r\n", InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: a:123456\r\n", InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: [::1\r\n", InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: [::g]\r\n", InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: a%2\r\n", InvalidHost),
            (b"GET / HTTP/1.0\r\nHost: a,b\r\nHost: c\r\n", DuplicateHost),
            // Content-Length
            (b"GET / HTTP/1.1\r\nContent-Length: +5\r\n", InvalidContentLength),
            (b"GET / HTTP/1.1\r\nContent-Length: -5\r\n", InvalidContentLength),
            (b"GET / HTTP/1.1\r\nContent-Length: 5 5\r\n", InvalidContentLength),
            (b"GET / HTTP/1.1\r\nContent-Length: 0x5\r\n", InvalidContentLength),
            (b"GET / HTTP/1.1\r\nContent-Length: 1_000\r\n", InvalidContentLength),
            (b"GET / HTTP/1.1\r\nContent-Length: \r\n", InvalidContentLength),
            (b"GET / HTTP/1.1\r\nContent-Length: ,\r\n", ContentLengthList),
            (b"GET / HTTP/1.1\r\nContent-Length: 5,\r\n", ContentLengthList),
            (b"GET / HTTP/1.1\r\nContent-Length: 5, 5\r\n", ContentLengthList),
            (b"GET / HTTP/1.1\r\nContent-Length: 5, 6\r\n", ContentLengthList),
            (b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n", DuplicateContentLength),
            (b"GET / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n", DuplicateContentLength),
            (b"GET / HTTP/1.1\r\nContent-Length: 007\r\n", LeadingZeroInContentLength),
            (b"GET / HTTP/1.1\r\nContent-Length: 00\r\n", LeadingZeroInContentLength),
            (b"GET / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n", ContentLengthOverflow),
            (b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n", ContentLengthOverflow),
            // Whitespace around framing values: one SP after the colon, no more
            (b"GET / HTTP/1.1\r\nContent-Length:\t5\r\n", WhitespaceInFramingField),
            (b"GET / HTTP/1.1\r\nContent-Length:  5\r\n", WhitespaceInFramingField),
            (b"GET / HTTP/1.1\r\nContent-Length: \t5\r\n", WhitespaceInFramingField),
            (b"GET / HTTP/1.1\r\nContent-Length: 5 \r\n", WhitespaceInFramingField),
            (b"GET / HTTP/1.1\r\nContent-Length: 5\t\r\n", WhitespaceInFramingField),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n", WhitespaceInFramingField),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked \r\n", WhitespaceInFramingField),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,\tchunked\r\n", WhitespaceInFramingField),
            // Singleton fields
            (b"GET / HTTP/1.1\r\nContent-Type: a/b\r\nContent-Type: a/b\r\n", RepeatedSingletonField),
            (b"GET / HTTP/1.1\r\nAuthorization: a\r\nauthorization: b\r\n", RepeatedSingletonField),
            (b"GET / HTTP/1.1\r\nProxy-Authorization: a\r\nProxy-Authorization: a\r\n", RepeatedSingletonField),
            // Absolute-form authority against Host
            (b"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", HostMismatch),
            (b"GET http://a/ HTTP/1.1\r\nHost:\r\n\r\n", HostMismatch),
            (b"GET http://a:81/ HTTP/1.1\r\nHost: a\r\n\r\n", HostMismatch),
            (b"GET https://a/ HTTP/1.1\r\nHost: a:80\r\n\r\n", HostMismatch),
            (b"GET http://[::1]/ HTTP/1.1\r\nHost: [::2]\r\n\r\n", HostMismatch),
            (b"GET http://a/ HTTP/1.0\r\nHost: b\r\n\r\n", HostMismatch),
            // Bodies on HEAD and TRACE
            (b"HEAD / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n", BodyNotAllowed),
            (b"HEAD / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", BodyNotAllowed),
            (b"TRACE / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n", BodyNotAllowed),
            // Transfer-Encoding
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", ContentLengthWithTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ContentLengthWithTransferEncoding),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", TransferEncodingOnHttp10),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", ChunkedNotFinal),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", ChunkedNotFinal),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", ChunkedNotFinal),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", ChunkedNotFinal),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", UnsupportedTransferCoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferCoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", UnsupportedTransferCoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", UnsupportedTransferCoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n", InvalidTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun/ked\r\n", InvalidTransferEncoding),
            // Expect
            (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue-x\r\n", ExpectationFailed),
            (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: \r\n", ExpectationFailed),
            (b"POST / HTTP/1.0\r\nExpect: 200-ok\r\n", ExpectationFailed),
        ];
        for &(input, error) in cases {
            assert_eq!(
                parse(input),
                Err(error),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn limits_reject_long_lines_many_fields_and_big_heads() {
        let small = Limits {
            request_line: 16,
            fields: 2,
            field_size: 10,
            ..Limits::default()
        };
        let cases: &[(&[u8], Result<Status, ParseError>)] = &[
            // Request line: 16 bytes is fine, 17 is too long even unfinished
            (
                b"GET /12345678901 HTTP/1.0\r\n\r\n",
                Err(RequestLineTooLong),
            ),
            (b"GET /123456789012", Err(RequestLineTooLong)),
            (b"GET /12345678901", Ok(Status::Partial)),
            (b"GET /12 HTTP/1.0\r\n\r\n", Ok(Status::Complete(20))),
            (b"GET /123 HTTP/1.0\r\n\r\n", Err(RequestLineTooLong)),
            (b"GET /12 HTTP/1.0\r", Ok(Status::Partial)),
            // An error inside the allowed length wins over the length
            (b"GET /1234\x01678901234567890", Err(InvalidTarget)),
            // Field lines: 10 bytes is fine, 11 is too long
            (
                b"GET / HTTP/1.0\r\nX: 3456789\r\n\r\n",
                Ok(Status::Complete(30)),
            ),
            (
                b"GET / HTTP/1.0\r\nX: 34567890\r\n\r\n",
                Err(HeaderFieldTooLarge),
            ),
            (b"GET / HTTP/1.0\r\nX: 34567890", Err(HeaderFieldTooLarge)),
            (b"GET / HTTP/1.0\r\nX: 3456789\r", Ok(Status::Partial)),
            // Field count
            (
                b"GET / HTTP/1.0\r\nA: 1\r\nB: 2\r\n\r\n",
                Ok(Status::Complete(30)),
            ),
            (b"GET / HTTP/1.0\r\nA: 1\r\nB: 2\r\nC", Err(TooManyHeaders)),
            (
                b"GET / HTTP/1.0\r\nA: 1\r\nB_B: 2\r\nC: 3\r\n\r\n",
                Err(TooManyHeaders),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                &parse_with(input, &small),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn the_whole_head_is_capped() {
        let limits = Limits::default();
        let cap = limits.max_head_len();
        assert!((64 * 1024..128 * 1024).contains(&cap), "{cap}");
        let mut input = b"GET / HTTP/1.0\r\n".to_vec();
        while input.len() <= cap {
            input.extend_from_slice(b"X-Filler: ");
            input.extend_from_slice(&[b'f'; 1000]);
            input.extend_from_slice(b"\r\n");
        }
        assert_eq!(parse(&input), Err(HeadTooLarge));
        assert_eq!(parse(&input[..cap]), Ok(Status::Partial));
        // A single field as long as the limit allows still fits.
        let big = Limits {
            request_line: 100,
            fields: 10,
            field_size: 200_000,
            ..Limits::default()
        };
        let mut input = b"GET / HTTP/1.0\r\nX: ".to_vec();
        input.resize(input.len() + 199_990, b'v');
        input.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_with(&input, &big), Ok(Status::Complete(input.len())));
    }

    #[test]
    fn zero_limits_mean_unlimited_within_the_head_cap() {
        let unlimited = Limits {
            request_line: 0,
            fields: 0,
            field_size: 0,
            ..Limits::default()
        };
        let mut input = b"GET /".to_vec();
        input.resize(20_000, b'a');
        input.extend_from_slice(b" HTTP/1.0\r\nX: ");
        input.resize(input.len() + 20_000, b'b');
        input.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            parse_with(&input, &unlimited),
            Ok(Status::Complete(input.len()))
        );
    }

    #[test]
    fn a_reused_head_is_cleared_between_requests() {
        let mut head = RequestHead::default();
        let first = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX: 1\r\n\r\n";
        let second = b"GET /b HTTP/1.0\r\n\r\n";
        parse_head(first, &mut head, &Limits::default()).unwrap();
        assert_eq!(head.headers.len(), 3);
        parse_head(second, &mut head, &Limits::default()).unwrap();
        assert_eq!(head.headers.len(), 0);
        assert_eq!(head.framing, BodyFraming::None);
        assert_eq!(head.host, None);
        assert!(!head.keep_alive);
    }
}
