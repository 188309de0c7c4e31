//! The PEP 3333 environ: a per-worker template dict of constant keys, copied
//! per request and filled from the parsed request head.
//!
//! Keys are interned Python strings (the `HTTP_*` keys too: the common ones
//! prebuilt, others kept once seen, up to a bound), values are decoded
//! latin-1 straight from the connection's buffer, and the only Rust-side
//! buffer is one scratch `Vec` reused by every request (for `HTTP_*` key
//! names, joined repeated headers and the percent-decoded path).
//!
//! Per request the work is kept to what varies: the template already holds
//! every key a request always sets (as `None`), so the copy is a clone of
//! the template's table and the request replaces values instead of growing
//! the dict; repeated headers are found in Rust and joined before one
//! `set_item`; the peer's address and the `Host` split are reused while they
//! repeat (one remembered value each: the address of a proxy or of
//! loopback, and the one host name a deployment serves).
//!
//! Decisions, following gunicorn where PEP 3333 leaves room:
//! * `PATH_INFO` is the path percent-decoded to bytes, then latin-1 decoded
//!   (PEP 3333); when `SCRIPT_NAME` (from the environment, trailing `/`
//!   dropped) is a prefix of the decoded path at a `/` boundary, it is
//!   stripped from `PATH_INFO`. `SCRIPT_NAME` is latin-1 decoded too.
//! * `SERVER_NAME`/`SERVER_PORT` come from the request's host (`name[:port]`,
//!   `[v6]:port` keeping the brackets; when none is given, port `80`, or
//!   `443` for an https request, as gunicorn does), else
//!   from the local endpoint (for a unix socket: both empty).
//! * For a unix-socket peer `REMOTE_ADDR` is `''` and `REMOTE_PORT` is not
//!   set (what gunicorn reports).
//! * `CONTENT_TYPE`/`CONTENT_LENGTH` never appear as `HTTP_CONTENT_*`; a
//!   chunked body, complete before the app runs, gets `CONTENT_LENGTH` set to
//!   its decoded length so apps that trust only `CONTENT_LENGTH` read it.
//! * A repeated header becomes one `HTTP_*` value joined with `,`.
//! * `wsgi.url_scheme` is the template's `http` unless the connection
//!   decided the request is https (TLS, or see `worker::forwarded`).
//! * Over TLS, `HTTPS=on` and mod_ssl's `SSL_*` keys (see [`set_tls`]).

use super::errors::ErrorStream;
use super::file_wrapper::FileWrapper;
use crate::http::{hex_value, BodyFraming, RequestHead, UrlScheme, Version};
use crate::listener::Endpoint;
use crate::tls_info::TlsInfo;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};
use pyo3::{ffi, intern};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;

/// What the environ is built from: the request head, the buffer its spans
/// index, the connection's two ends and the request's scheme.
pub struct RequestInfo<'a> {
    pub buf: &'a [u8],
    pub head: &'a RequestHead,
    pub peer: &'a Endpoint,
    pub local: &'a Endpoint,
    pub url_scheme: UrlScheme,
    /// Over TLS: the handshake's facts (the `HTTPS` and `SSL_*` keys).
    pub tls: Option<&'a TlsInfo>,
}

/// Keys of headers common enough to be interned when the worker starts.
const KNOWN_HEADERS: &[&str] = &[
    "HTTP_HOST",
    "HTTP_USER_AGENT",
    "HTTP_ACCEPT",
    "HTTP_ACCEPT_ENCODING",
    "HTTP_ACCEPT_LANGUAGE",
    "HTTP_CONNECTION",
    "HTTP_COOKIE",
    "HTTP_REFERER",
    "HTTP_ORIGIN",
    "HTTP_AUTHORIZATION",
    "HTTP_CACHE_CONTROL",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_REQUESTED_WITH",
    "HTTP_TRANSFER_ENCODING",
    "HTTP_EXPECT",
];

/// How many `HTTP_*` keys beyond [`KNOWN_HEADERS`] are kept once built (a
/// bound, since clients choose the names).
const MAX_EXTRA_KEYS: usize = 64;

/// The keys every request sets: the template holds them as `None`, so that
/// filling them replaces values in the copied table instead of growing it.
/// (`REMOTE_PORT` is removed again for a unix-socket peer.)
const PER_REQUEST_KEYS: [&str; 10] = [
    "REQUEST_METHOD",
    "SERVER_PROTOCOL",
    "PATH_INFO",
    "QUERY_STRING",
    "RAW_URI",
    "SERVER_NAME",
    "SERVER_PORT",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "wsgi.input",
];

/// The constant part of every environ, built once per worker.
pub struct EnvironTemplate {
    /// wsgi.*, SCRIPT_NAME, SERVER_SOFTWARE, and [`PER_REQUEST_KEYS`].
    template: Py<PyDict>,
    /// `SCRIPT_NAME` as bytes, compared with the raw request path.
    script_name: Vec<u8>,
    /// Interned `HTTP_*` keys by their bytes: [`KNOWN_HEADERS`], then up to
    /// [`MAX_EXTRA_KEYS`] others as they are first seen.
    header_keys: RefCell<HeaderKeys>,
    /// The last peer address and its REMOTE_ADDR string.
    last_peer_ip: RefCell<Option<(IpAddr, Py<PyString>)>>,
    /// The last `Host` (with the scheme that decides its default port) and
    /// its SERVER_NAME and SERVER_PORT strings.
    last_host: RefCell<Option<LastHost>>,
    /// Reused for `HTTP_*` key names, joined values and the decoded path.
    scratch: RefCell<Vec<u8>>,
}

/// Interned `HTTP_*` keys by their bytes.
type HeaderKeys = HashMap<Box<[u8]>, Py<PyString>, BuildHasherDefault<Fnv1a>>;

/// FNV-1a, for the header-key table: its keys are short, and since the
/// table is bounded, names a client picks to collide cost it little.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A `Host` value already split into SERVER_NAME and SERVER_PORT.
struct LastHost {
    host: Vec<u8>,
    scheme: UrlScheme,
    name: Py<PyString>,
    port: Py<PyString>,
}

impl EnvironTemplate {
    /// Builds the template (wsgi.version, wsgi.errors, wsgi.file_wrapper,
    /// SCRIPT_NAME, SERVER_SOFTWARE, the multiprocess flags, ...).
    pub fn new(py: Python<'_>) -> PyResult<EnvironTemplate> {
        let script_name = std::env::var_os("SCRIPT_NAME").unwrap_or_default();
        EnvironTemplate::with_script_name(py, script_name.as_bytes())
    }

    /// Sets `wsgi.multithread` (true when the app is called from several
    /// threads at once, `--threads` > 1).
    pub fn set_multithread(&self, py: Python<'_>, multithread: bool) -> PyResult<()> {
        self.template.bind(py).set_item(
            intern!(py, "wsgi.multithread"),
            PyBool::new(py, multithread),
        )
    }

    /// Builds the template for an app mounted at `script_name` (raw bytes,
    /// as in the environment; a trailing `/` is dropped).
    pub fn with_script_name(py: Python<'_>, script_name: &[u8]) -> PyResult<EnvironTemplate> {
        let script_name = script_name.strip_suffix(b"/").unwrap_or(script_name);
        let template = PyDict::new(py);
        let version = PyTuple::new(py, [1, 0])?;
        template.set_item(intern!(py, "wsgi.version"), version)?;
        template.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "http"))?;
        template.set_item(
            intern!(py, "wsgi.errors"),
            Bound::new(py, ErrorStream::new())?,
        )?;
        template.set_item(intern!(py, "wsgi.multithread"), PyBool::new(py, false))?;
        template.set_item(intern!(py, "wsgi.multiprocess"), PyBool::new(py, true))?;
        template.set_item(intern!(py, "wsgi.run_once"), PyBool::new(py, false))?;
        template.set_item(intern!(py, "wsgi.input_terminated"), PyBool::new(py, true))?;
        template.set_item(
            intern!(py, "wsgi.file_wrapper"),
            py.get_type::<FileWrapper>(),
        )?;
        template.set_item(intern!(py, "SCRIPT_NAME"), latin1(py, script_name)?)?;
        template.set_item(intern!(py, "SERVER_SOFTWARE"), crate::SERVER_SOFTWARE)?;
        for key in PER_REQUEST_KEYS {
            template.set_item(PyString::intern(py, key), py.None())?;
        }
        reserve_room(&template)?;
        let header_keys = KNOWN_HEADERS
            .iter()
            .map(|&key| {
                let bytes: Box<[u8]> = key.as_bytes().into();
                (bytes, PyString::intern(py, key).unbind())
            })
            .collect();
        Ok(EnvironTemplate {
            template: template.unbind(),
            script_name: script_name.to_vec(),
            header_keys: RefCell::new(header_keys),
            last_peer_ip: RefCell::new(None),
            last_host: RefCell::new(None),
            scratch: RefCell::new(Vec::with_capacity(256)),
        })
    }

    /// A fresh environ for one request, with `input` as `wsgi.input`.
    pub fn build<'py>(
        &self,
        py: Python<'py>,
        request: &RequestInfo<'_>,
        input: Bound<'py, super::input::WsgiInput>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let environ = self.template.bind(py).copy()?;
        let (buf, head) = (request.buf, request.head);
        environ.set_item(
            intern!(py, "REQUEST_METHOD"),
            method(py, head.method.get(buf))?,
        )?;
        environ.set_item(intern!(py, "SERVER_PROTOCOL"), protocol(py, head.version))?;
        self.set_path(py, &environ, head.path.get(buf))?;
        environ.set_item(
            intern!(py, "QUERY_STRING"),
            latin1(py, head.query.get(buf))?,
        )?;
        environ.set_item(intern!(py, "RAW_URI"), latin1(py, head.target.get(buf))?)?;
        if request.url_scheme == UrlScheme::Https {
            environ.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "https"))?;
        }
        self.set_server(
            py,
            &environ,
            head.host.map(|host| host.get(buf)),
            request.local,
            request.url_scheme,
        )?;
        self.set_remote(py, &environ, request.peer)?;
        if let Some(tls) = request.tls {
            set_tls(py, &environ, tls)?;
        }
        self.set_headers(py, &environ, request)?;
        if head.framing == BodyFraming::Chunked {
            let length = input.borrow().body_len();
            environ.set_item(intern!(py, "CONTENT_LENGTH"), decimal(py, length)?)?;
        }
        environ.set_item(intern!(py, "wsgi.input"), input)?;
        Ok(environ)
    }

    /// PATH_INFO: `raw_path` percent-decoded, minus SCRIPT_NAME, latin-1.
    fn set_path(
        &self,
        py: Python<'_>,
        environ: &Bound<'_, PyDict>,
        raw_path: &[u8],
    ) -> PyResult<()> {
        let mut scratch = self.scratch.borrow_mut();
        let decoded = if raw_path.contains(&b'%') {
            scratch.clear();
            percent_decode_into(&mut scratch, raw_path);
            &scratch[..]
        } else {
            raw_path
        };
        let path = strip_script_name(decoded, &self.script_name);
        environ.set_item(intern!(py, "PATH_INFO"), latin1(py, path)?)
    }

    /// CONTENT_TYPE, CONTENT_LENGTH and an `HTTP_*` key per other header;
    /// the values of headers that share a key are joined with `,` (in
    /// order) and set once.
    fn set_headers(
        &self,
        py: Python<'_>,
        environ: &Bound<'_, PyDict>,
        request: &RequestInfo<'_>,
    ) -> PyResult<()> {
        let buf = request.buf;
        let headers = &request.head.headers;
        for (i, header) in headers.iter().enumerate() {
            let name = header.name.get(buf);
            if name.eq_ignore_ascii_case(b"content-type") {
                environ.set_item(
                    intern!(py, "CONTENT_TYPE"),
                    latin1(py, header.value.get(buf))?,
                )?;
                continue;
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                let value = latin1(py, header.value.get(buf))?;
                environ.set_item(intern!(py, "CONTENT_LENGTH"), value)?;
                continue;
            }
            let shares_key = |other: &crate::http::HeaderSpan| {
                let other = other.name.get(buf);
                is_http_key_header(other) && same_http_key(other, name)
            };
            if headers[..i].iter().any(shares_key) {
                continue; // joined into the first one's value
            }
            let key = self.header_key(py, name)?;
            let mut repeats = headers[i + 1..].iter().filter(|h| shares_key(h)).peekable();
            let value = if repeats.peek().is_none() {
                latin1(py, header.value.get(buf))?
            } else {
                let mut joined = self.scratch.borrow_mut();
                joined.clear();
                joined.extend_from_slice(header.value.get(buf));
                for repeat in repeats {
                    joined.push(b',');
                    joined.extend_from_slice(repeat.value.get(buf));
                }
                latin1(py, &joined)?
            };
            environ.set_item(key, value)?;
        }
        Ok(())
    }

    /// `HTTP_` + the name upper-cased with `-` as `_`, interned and kept
    /// (up to [`MAX_EXTRA_KEYS`] beyond the known ones).
    fn header_key<'py>(&self, py: Python<'py>, name: &[u8]) -> PyResult<Bound<'py, PyString>> {
        let mut scratch = self.scratch.borrow_mut();
        scratch.clear();
        scratch.extend_from_slice(b"HTTP_");
        scratch.extend(name.iter().map(|&b| http_key_byte(b)));
        let mut keys = self.header_keys.borrow_mut();
        if let Some(key) = keys.get(&scratch[..]) {
            return Ok(key.bind(py).clone());
        }
        // A header name is a token, so its key is ASCII.
        let Ok(text) = std::str::from_utf8(&scratch) else {
            return latin1(py, &scratch);
        };
        if keys.len() >= KNOWN_HEADERS.len() + MAX_EXTRA_KEYS {
            return Ok(PyString::new(py, text));
        }
        let key = PyString::intern(py, text);
        keys.insert(scratch[..].into(), key.clone().unbind());
        Ok(key)
    }

    /// SERVER_NAME and SERVER_PORT, from the host when there is one.
    fn set_server(
        &self,
        py: Python<'_>,
        environ: &Bound<'_, PyDict>,
        host: Option<&[u8]>,
        local: &Endpoint,
        scheme: UrlScheme,
    ) -> PyResult<()> {
        let (name, port) = match (host.filter(|h| !h.is_empty()), local) {
            (Some(host), _) => {
                let mut last = self.last_host.borrow_mut();
                match &*last {
                    Some(seen) if seen.host == host && seen.scheme == scheme => {
                        (seen.name.bind(py).clone(), seen.port.bind(py).clone())
                    }
                    _ => {
                        let (name, port) = split_host(host);
                        let port = match port {
                            Some(port) => latin1(py, port)?,
                            None if scheme == UrlScheme::Https => intern!(py, "443").clone(),
                            None => intern!(py, "80").clone(),
                        };
                        let name = latin1(py, name)?;
                        *last = Some(LastHost {
                            host: host.to_vec(),
                            scheme,
                            name: name.clone().unbind(),
                            port: port.clone().unbind(),
                        });
                        (name, port)
                    }
                }
            }
            (None, Endpoint::Tcp(addr)) => (
                formatted(py, format_args!("{}", addr.ip()))?,
                decimal(py, u64::from(addr.port()))?,
            ),
            (None, Endpoint::Unix) => (intern!(py, "").clone(), intern!(py, "").clone()),
        };
        environ.set_item(intern!(py, "SERVER_NAME"), name)?;
        environ.set_item(intern!(py, "SERVER_PORT"), port)
    }

    /// REMOTE_ADDR and REMOTE_PORT of the peer.
    fn set_remote(
        &self,
        py: Python<'_>,
        environ: &Bound<'_, PyDict>,
        peer: &Endpoint,
    ) -> PyResult<()> {
        match peer {
            Endpoint::Tcp(addr) => {
                let mut last = self.last_peer_ip.borrow_mut();
                let ip = match &*last {
                    Some((ip, text)) if *ip == addr.ip() => text.bind(py).clone(),
                    _ => {
                        let text = formatted(py, format_args!("{}", addr.ip()))?;
                        *last = Some((addr.ip(), text.clone().unbind()));
                        text
                    }
                };
                environ.set_item(intern!(py, "REMOTE_ADDR"), ip)?;
                let port = decimal(py, u64::from(addr.port()))?;
                environ.set_item(intern!(py, "REMOTE_PORT"), port)
            }
            Endpoint::Unix => {
                environ.set_item(intern!(py, "REMOTE_ADDR"), intern!(py, ""))?;
                environ.del_item(intern!(py, "REMOTE_PORT"))
            }
        }
    }
}

/// Whether a header becomes an `HTTP_*` key (Content-Type and
/// Content-Length have their own).
fn is_http_key_header(name: &[u8]) -> bool {
    !name.eq_ignore_ascii_case(b"content-type") && !name.eq_ignore_ascii_case(b"content-length")
}

/// A header-name byte as it appears in its `HTTP_*` key.
fn http_key_byte(b: u8) -> u8 {
    match b {
        b'-' => b'_',
        _ => b.to_ascii_uppercase(),
    }
}

/// Whether two header names give the same `HTTP_*` key.
fn same_http_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| http_key_byte(x) == http_key_byte(y))
}

/// The template's entries are grown to this many, then the extra ones
/// removed: CPython sizes a dict's table by its growth history, and
/// `dict.copy()` clones the table (its free room included) while at most a
/// third of its entries are removed ones. Growing past 21 entries gives a
/// 64-slot table, so each request's copy has room for about 20 headers
/// before it must grow. Only a matter of speed: any other table is correct.
const TEMPLATE_GROWN_TO: usize = 22;

/// Grows `template`'s table to [`TEMPLATE_GROWN_TO`] entries and removes
/// the fillers again.
fn reserve_room(template: &Bound<'_, PyDict>) -> PyResult<()> {
    let fillers: Vec<String> = (template.len()..TEMPLATE_GROWN_TO)
        .map(|i| format!("rgunicorn.reserved.{i}"))
        .collect();
    for filler in &fillers {
        template.set_item(filler, ())?;
    }
    for filler in &fillers {
        template.del_item(filler)?;
    }
    Ok(())
}

/// The method as a str (interned for the usual ones).
fn method<'py>(py: Python<'py>, method: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let interned = match method {
        b"GET" => intern!(py, "GET"),
        b"POST" => intern!(py, "POST"),
        b"HEAD" => intern!(py, "HEAD"),
        b"PUT" => intern!(py, "PUT"),
        b"DELETE" => intern!(py, "DELETE"),
        b"PATCH" => intern!(py, "PATCH"),
        b"OPTIONS" => intern!(py, "OPTIONS"),
        _ => return latin1(py, method),
    };
    Ok(interned.clone())
}

/// `HTTP/1.0` or `HTTP/1.1`, interned.
fn protocol(py: Python<'_>, version: Version) -> Bound<'_, PyString> {
    match version {
        Version::Http10 => intern!(py, "HTTP/1.0").clone(),
        Version::Http11 => intern!(py, "HTTP/1.1").clone(),
    }
}

/// The TLS keys, named as Apache's mod_ssl (and nginx's `$ssl_*`
/// variables) name them: `HTTPS`, `SSL_PROTOCOL`, `SSL_CIPHER`, and
/// `SSL_CLIENT_VERIFY`, with `SSL_CLIENT_S_DN` and `SSL_CLIENT_I_DN` when
/// the client sent a certificate.
fn set_tls(py: Python<'_>, environ: &Bound<'_, PyDict>, tls: &TlsInfo) -> PyResult<()> {
    environ.set_item(intern!(py, "HTTPS"), intern!(py, "on"))?;
    environ.set_item(intern!(py, "SSL_PROTOCOL"), tls.protocol)?;
    environ.set_item(intern!(py, "SSL_CIPHER"), tls.cipher)?;
    environ.set_item(intern!(py, "SSL_CLIENT_VERIFY"), tls.client_verify())?;
    if let Some(client) = &tls.client {
        environ.set_item(intern!(py, "SSL_CLIENT_S_DN"), client.subject.as_str())?;
        environ.set_item(intern!(py, "SSL_CLIENT_I_DN"), client.issuer.as_str())?;
    }
    Ok(())
}

/// Splits `name[:port]` or `[v6]:port`; the name keeps IPv6 brackets and an
/// empty port counts as none.
fn split_host(host: &[u8]) -> (&[u8], Option<&[u8]>) {
    let name_end = match host.first() {
        Some(b'[') => host
            .iter()
            .position(|&b| b == b']')
            .map_or(host.len(), |i| i + 1),
        _ => host.iter().position(|&b| b == b':').unwrap_or(host.len()),
    };
    let (name, rest) = host.split_at(name_end);
    let port = rest.strip_prefix(b":").filter(|port| !port.is_empty());
    (name, port)
}

/// `path` without a leading `script_name` (matched at a `/` boundary).
fn strip_script_name<'a>(path: &'a [u8], script_name: &[u8]) -> &'a [u8] {
    match path.strip_prefix(script_name) {
        Some(rest) if !script_name.is_empty() && (rest.is_empty() || rest[0] == b'/') => rest,
        _ => path,
    }
}

/// Appends `raw` to `out` with each `%XX` (two hex digits) decoded to its
/// byte; a `%` not followed by two hex digits is kept as is.
pub fn percent_decode_into(out: &mut Vec<u8>, raw: &[u8]) {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(high), Some(low)) = (hex_value(raw[i + 1]), hex_value(raw[i + 2])) {
                out.push(high << 4 | low);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
}

/// `bytes` decoded as latin-1 (every byte is the code point of its value).
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    // SAFETY: the pointer and length describe a live slice; the null errors
    // argument means "strict", which latin-1 decoding never needs. The result
    // is a new reference (or null with an exception set), checked by
    // from_owned_ptr_or_err, and is a str, so the unchecked cast is sound.
    unsafe {
        let ptr = ffi::PyUnicode_DecodeLatin1(
            bytes.as_ptr().cast(),
            bytes.len() as ffi::Py_ssize_t,
            std::ptr::null(),
        );
        Ok(Bound::from_owned_ptr_or_err(py, ptr)?.cast_into_unchecked())
    }
}

/// A number as a decimal str, its digits written on the stack.
fn decimal(py: Python<'_>, mut value: u64) -> PyResult<Bound<'_, PyString>> {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    latin1(py, &digits[start..])
}

/// `args` formatted on the stack (at most 64 bytes: addresses and numbers).
fn formatted<'py>(
    py: Python<'py>,
    args: std::fmt::Arguments<'_>,
) -> PyResult<Bound<'py, PyString>> {
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    cursor
        .write_fmt(args)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    let len = cursor.position() as usize;
    latin1(py, &buf[..len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HeaderSpan, Span};
    use crate::worker::wsgi::input::RequestBody;
    use std::net::SocketAddr;

    /// A hand-built request: the buffer and a head of spans into it.
    struct Request {
        buf: Vec<u8>,
        head: RequestHead,
    }

    impl Request {
        fn new(method: &str, target: &str, headers: &[(&str, &str)]) -> Request {
            let mut buf = Vec::new();
            let span = |buf: &mut Vec<u8>, text: &[u8]| {
                let start = buf.len() as u32;
                buf.extend_from_slice(text);
                buf.push(b' ');
                Span {
                    start,
                    end: start + text.len() as u32,
                }
            };
            let method = span(&mut buf, method.as_bytes());
            let target_span = span(&mut buf, target.as_bytes());
            let (path, query) = match target.split_once('?') {
                Some((path, query)) => (path, query),
                None => (target, ""),
            };
            let path_start = target_span.start;
            let path = Span {
                start: path_start,
                end: path_start + path.len() as u32,
            };
            let query = if target.contains('?') {
                Span {
                    start: path.end + 1,
                    end: path.end + 1 + query.len() as u32,
                }
            } else {
                Span::default()
            };
            let mut head = RequestHead::default();
            head.method = method;
            head.target = target_span;
            head.path = path;
            head.query = query;
            for (name, value) in headers {
                let name = span(&mut buf, name.as_bytes());
                let value = span(&mut buf, value.as_bytes());
                head.headers.push(HeaderSpan { name, value });
            }
            head.host = head
                .headers
                .iter()
                .find(|h| h.name.get(&buf).eq_ignore_ascii_case(b"host"))
                .map(|h| h.value);
            Request { buf, head }
        }
    }

    const PEER: Endpoint = Endpoint::Tcp(SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::new(192, 0, 2, 7),
        54321,
    )));
    const LOCAL: Endpoint = Endpoint::Tcp(SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::new(127, 0, 0, 1),
        8000,
    )));

    /// Builds the environ for `request` and returns it as Python sees it.
    fn environ_for<'py>(
        py: Python<'py>,
        request: &Request,
        peer: &Endpoint,
        local: &Endpoint,
        body: RequestBody,
    ) -> Bound<'py, PyDict> {
        environ_with_scheme(py, request, peer, local, body, UrlScheme::Http)
    }

    /// [`environ_for`] a request whose scheme was decided to be `url_scheme`.
    fn environ_with_scheme<'py>(
        py: Python<'py>,
        request: &Request,
        peer: &Endpoint,
        local: &Endpoint,
        body: RequestBody,
        url_scheme: UrlScheme,
    ) -> Bound<'py, PyDict> {
        super::super::test_support::python();
        let template = EnvironTemplate::new(py).unwrap();
        let info = RequestInfo {
            buf: &request.buf,
            head: &request.head,
            peer,
            local,
            url_scheme,
            tls: None,
        };
        let input = Bound::new(py, WsgiInputForTests::new(body)).unwrap();
        template.build(py, &info, input).unwrap()
    }

    use crate::worker::wsgi::input::WsgiInput as WsgiInputForTests;

    fn get(environ: &Bound<'_, PyDict>, key: &str) -> Option<String> {
        environ.get_item(key).unwrap().map(|v| v.extract().unwrap())
    }

    #[test]
    fn constant_keys_come_from_the_template() {
        super::super::test_support::attach(|py| {
            let request = Request::new("GET", "/", &[("Host", "example.com")]);
            let environ = environ_for(py, &request, &PEER, &LOCAL, RequestBody::Memory(vec![]));
            let version: (i32, i32) = environ
                .get_item("wsgi.version")
                .unwrap()
                .unwrap()
                .extract()
                .unwrap();
            assert_eq!(version, (1, 0));
            assert_eq!(get(&environ, "wsgi.url_scheme").as_deref(), Some("http"));
            let flag =
                |key: &str| -> bool { environ.get_item(key).unwrap().unwrap().extract().unwrap() };
            assert!(!flag("wsgi.multithread"));
            assert!(flag("wsgi.multiprocess"));
            assert!(!flag("wsgi.run_once"));
            assert!(flag("wsgi.input_terminated"));
            let errors = environ.get_item("wsgi.errors").unwrap().unwrap();
            assert!(errors.is_instance_of::<ErrorStream>());
            let wrapper = environ.get_item("wsgi.file_wrapper").unwrap().unwrap();
            assert!(wrapper.is(py.get_type::<FileWrapper>()));
            let input = environ.get_item("wsgi.input").unwrap().unwrap();
            assert!(input.is_instance_of::<WsgiInputForTests>());
            assert_eq!(get(&environ, "SCRIPT_NAME").as_deref(), Some(""));
            assert_eq!(
                get(&environ, "SERVER_SOFTWARE").as_deref(),
                Some(crate::SERVER_SOFTWARE)
            );
        });
    }

    #[test]
    fn an_https_request_gets_its_scheme_and_port_443_when_the_host_has_none() {
        super::super::test_support::attach(|py| {
            let https = |host: &str| {
                let request = Request::new("GET", "/", &[("Host", host)]);
                let body = RequestBody::Memory(vec![]);
                environ_with_scheme(py, &request, &PEER, &LOCAL, body, UrlScheme::Https)
            };
            let environ = https("example.com");
            assert_eq!(get(&environ, "wsgi.url_scheme").as_deref(), Some("https"));
            assert_eq!(get(&environ, "SERVER_PORT").as_deref(), Some("443"));
            let environ = https("example.com:8443");
            assert_eq!(get(&environ, "SERVER_PORT").as_deref(), Some("8443"));
            let request = Request::new("GET", "/", &[("Host", "example.com")]);
            let environ = environ_for(py, &request, &PEER, &LOCAL, RequestBody::Memory(vec![]));
            assert_eq!(get(&environ, "wsgi.url_scheme").as_deref(), Some("http"));
            assert_eq!(get(&environ, "SERVER_PORT").as_deref(), Some("80"));
        });
    }

    #[test]
    fn request_keys_come_from_the_head() {
        super::super::test_support::attach(|py| {
            let request = Request::new(
                "POST",
                "/submit/form?a=1&b=%20",
                &[
                    ("Host", "example.com:8080"),
                    ("Content-Type", "text/plain"),
                    ("Content-Length", "5"),
                    ("X-Custom-Thing", "caf\u{e9}"),
                    ("accept", "text/html"),
                    ("X-Dup", "one"),
                    ("x-dup", "two"),
                ],
            );
            let environ = environ_for(
                py,
                &request,
                &PEER,
                &LOCAL,
                RequestBody::Memory(b"hello".to_vec()),
            );
            let expect = [
                ("REQUEST_METHOD", "POST"),
                ("PATH_INFO", "/submit/form"),
                ("QUERY_STRING", "a=1&b=%20"),
                ("RAW_URI", "/submit/form?a=1&b=%20"),
                ("SERVER_PROTOCOL", "HTTP/1.1"),
                ("SERVER_NAME", "example.com"),
                ("SERVER_PORT", "8080"),
                ("REMOTE_ADDR", "192.0.2.7"),
                ("REMOTE_PORT", "54321"),
                ("CONTENT_TYPE", "text/plain"),
                ("CONTENT_LENGTH", "5"),
                ("HTTP_HOST", "example.com:8080"),
                ("HTTP_ACCEPT", "text/html"),
                ("HTTP_X_DUP", "one,two"),
            ];
            for (key, value) in expect {
                assert_eq!(get(&environ, key).as_deref(), Some(value), "{key}");
            }
            // The header value's UTF-8 bytes, each decoded as latin-1.
            assert_eq!(
                get(&environ, "HTTP_X_CUSTOM_THING").as_deref(),
                Some("caf\u{c3}\u{a9}")
            );
            assert_eq!(get(&environ, "HTTP_CONTENT_TYPE"), None);
            assert_eq!(get(&environ, "HTTP_CONTENT_LENGTH"), None);
            let input = environ.get_item("wsgi.input").unwrap().unwrap();
            let body: Vec<u8> = input.call_method0("read").unwrap().extract().unwrap();
            assert_eq!(body, b"hello");
        });
    }

    #[test]
    fn path_info_is_percent_decoded_then_latin1() {
        super::super::test_support::attach(|py| {
            let cases = [
                ("/caf%C3%A9", "/caf\u{c3}\u{a9}"),
                ("/a%2Fb", "/a/b"),
                ("/100%", "/100%"),
                ("/%zz%4", "/%zz%4"),
                ("/%41%42c", "/ABc"),
                ("/plain", "/plain"),
            ];
            for (target, expected) in cases {
                let request = Request::new("GET", target, &[("Host", "h")]);
                let environ = environ_for(py, &request, &PEER, &LOCAL, RequestBody::Memory(vec![]));
                assert_eq!(
                    get(&environ, "PATH_INFO").as_deref(),
                    Some(expected),
                    "{target}"
                );
                assert_eq!(get(&environ, "RAW_URI").as_deref(), Some(target));
            }
        });
    }

    #[test]
    fn server_name_and_port_come_from_host_or_the_local_endpoint() {
        super::super::test_support::attach(|py| {
            let cases: [(Option<&str>, &str, &str); 5] = [
                (Some("example.com"), "example.com", "80"),
                (Some("example.com:"), "example.com", "80"),
                (Some("[::1]:8443"), "[::1]", "8443"),
                (Some("[::1]"), "[::1]", "80"),
                (None, "127.0.0.1", "8000"),
            ];
            for (host, name, port) in cases {
                let headers: Vec<(&str, &str)> = host.iter().map(|h| ("Host", *h)).collect();
                let mut request = Request::new("GET", "/", &headers);
                request.head.version = Version::Http10;
                let environ = environ_for(py, &request, &PEER, &LOCAL, RequestBody::Memory(vec![]));
                assert_eq!(
                    get(&environ, "SERVER_NAME").as_deref(),
                    Some(name),
                    "{host:?}"
                );
                assert_eq!(
                    get(&environ, "SERVER_PORT").as_deref(),
                    Some(port),
                    "{host:?}"
                );
                assert_eq!(
                    get(&environ, "SERVER_PROTOCOL").as_deref(),
                    Some("HTTP/1.0")
                );
            }
        });
    }

    #[test]
    fn unix_socket_peer_has_empty_remote_addr_and_no_port() {
        super::super::test_support::attach(|py| {
            let request = Request::new("GET", "/", &[]);
            let environ = environ_for(
                py,
                &request,
                &Endpoint::Unix,
                &Endpoint::Unix,
                RequestBody::Memory(vec![]),
            );
            assert_eq!(get(&environ, "REMOTE_ADDR").as_deref(), Some(""));
            assert_eq!(get(&environ, "REMOTE_PORT"), None);
            assert_eq!(get(&environ, "SERVER_NAME").as_deref(), Some(""));
            assert_eq!(get(&environ, "SERVER_PORT").as_deref(), Some(""));
        });
    }

    #[test]
    fn ipv6_peer_address_is_unbracketed() {
        super::super::test_support::attach(|py| {
            let request = Request::new("GET", "/", &[("Host", "h")]);
            let peer = Endpoint::Tcp("[2001:db8::1]:40000".parse().unwrap());
            let environ = environ_for(py, &request, &peer, &LOCAL, RequestBody::Memory(vec![]));
            assert_eq!(get(&environ, "REMOTE_ADDR").as_deref(), Some("2001:db8::1"));
            assert_eq!(get(&environ, "REMOTE_PORT").as_deref(), Some("40000"));
        });
    }

    #[test]
    fn chunked_body_gets_its_decoded_length_as_content_length() {
        super::super::test_support::attach(|py| {
            let mut request = Request::new(
                "POST",
                "/",
                &[("Host", "h"), ("Transfer-Encoding", "chunked")],
            );
            request.head.framing = BodyFraming::Chunked;
            let environ = environ_for(
                py,
                &request,
                &PEER,
                &LOCAL,
                RequestBody::Memory(b"abc".to_vec()),
            );
            assert_eq!(get(&environ, "CONTENT_LENGTH").as_deref(), Some("3"));
            assert_eq!(
                get(&environ, "HTTP_TRANSFER_ENCODING").as_deref(),
                Some("chunked")
            );
        });
    }

    #[test]
    fn each_request_gets_a_fresh_dict() {
        super::super::test_support::python();
        super::super::test_support::attach(|py| {
            let template = EnvironTemplate::new(py).unwrap();
            let request = Request::new("GET", "/", &[("Host", "h")]);
            let info = RequestInfo {
                buf: &request.buf,
                head: &request.head,
                peer: &PEER,
                local: &LOCAL,
                url_scheme: UrlScheme::Http,
                tls: None,
            };
            let body =
                || Bound::new(py, WsgiInputForTests::new(RequestBody::Memory(vec![]))).unwrap();
            let first = template.build(py, &info, body()).unwrap();
            first.set_item("app.state", 1).unwrap();
            let second = template.build(py, &info, body()).unwrap();
            assert!(second.get_item("app.state").unwrap().is_none());
            assert!(!first.is(&second));
        });
    }

    /// Builds environs for several requests with one template, as a worker
    /// does.
    fn build_with<'py>(
        py: Python<'py>,
        template: &EnvironTemplate,
        request: &Request,
        peer: &Endpoint,
        url_scheme: UrlScheme,
    ) -> Bound<'py, PyDict> {
        let info = RequestInfo {
            buf: &request.buf,
            head: &request.head,
            peer,
            local: &LOCAL,
            url_scheme,
            tls: None,
        };
        let input = Bound::new(py, WsgiInputForTests::new(RequestBody::Memory(vec![])));
        template.build(py, &info, input.unwrap()).unwrap()
    }

    #[test]
    fn headers_sharing_a_key_are_joined_in_order() {
        super::super::test_support::attach(|py| {
            let request = Request::new(
                "GET",
                "/",
                &[
                    ("X-Dup", "one"),
                    ("Accept", "a"),
                    ("x-dup", "two"),
                    ("Content-Type", "text/plain"),
                    ("X-DUP", "three"),
                    ("accept", "b"),
                ],
            );
            let environ = environ_for(py, &request, &PEER, &LOCAL, RequestBody::Memory(vec![]));
            assert_eq!(
                get(&environ, "HTTP_X_DUP").as_deref(),
                Some("one,two,three")
            );
            assert_eq!(get(&environ, "HTTP_ACCEPT").as_deref(), Some("a,b"));
            assert_eq!(get(&environ, "CONTENT_TYPE").as_deref(), Some("text/plain"));
        });
    }

    #[test]
    fn every_request_key_is_filled_and_none_is_left_over_from_the_template() {
        super::super::test_support::attach(|py| {
            let request = Request::new("GET", "/", &[]);
            let environ = environ_for(py, &request, &PEER, &LOCAL, RequestBody::Memory(vec![]));
            for (key, value) in environ.iter() {
                assert!(!value.is_none(), "{key} is None");
            }
            for key in PER_REQUEST_KEYS {
                assert!(environ.contains(key).unwrap(), "{key}");
            }
        });
    }

    #[test]
    fn remembered_peer_host_and_header_keys_follow_each_request() {
        super::super::test_support::python();
        super::super::test_support::attach(|py| {
            let template = EnvironTemplate::new(py).unwrap();
            let other_peer = Endpoint::Tcp("198.51.100.9:1234".parse().unwrap());
            let first = Request::new("GET", "/", &[("Host", "a.example"), ("X-Rare", "1")]);
            let second = Request::new("GET", "/", &[("Host", "b.example:81"), ("X-Rare", "2")]);
            let runs = [
                (
                    &first,
                    &PEER,
                    UrlScheme::Http,
                    "192.0.2.7",
                    "54321",
                    "a.example",
                    "80",
                ),
                (
                    &first,
                    &PEER,
                    UrlScheme::Https,
                    "192.0.2.7",
                    "54321",
                    "a.example",
                    "443",
                ),
                (
                    &second,
                    &other_peer,
                    UrlScheme::Http,
                    "198.51.100.9",
                    "1234",
                    "b.example",
                    "81",
                ),
                (
                    &first,
                    &PEER,
                    UrlScheme::Http,
                    "192.0.2.7",
                    "54321",
                    "a.example",
                    "80",
                ),
            ];
            let mut rare_keys = Vec::new();
            for (request, peer, scheme, addr, port, name, server_port) in runs {
                let environ = build_with(py, &template, request, peer, scheme);
                assert_eq!(get(&environ, "REMOTE_ADDR").as_deref(), Some(addr));
                assert_eq!(get(&environ, "REMOTE_PORT").as_deref(), Some(port));
                assert_eq!(get(&environ, "SERVER_NAME").as_deref(), Some(name));
                assert_eq!(get(&environ, "SERVER_PORT").as_deref(), Some(server_port));
                let key = environ
                    .keys()
                    .iter()
                    .find(|k| k.extract::<String>().unwrap() == "HTTP_X_RARE")
                    .unwrap();
                rare_keys.push(key);
            }
            // A header key seen before is the same (interned) str.
            assert!(rare_keys.windows(2).all(|pair| pair[0].is(&pair[1])));
            // A unix-socket peer after a TCP one: no REMOTE_PORT.
            let environ = build_with(py, &template, &first, &Endpoint::Unix, UrlScheme::Http);
            assert_eq!(get(&environ, "REMOTE_ADDR").as_deref(), Some(""));
            assert_eq!(get(&environ, "REMOTE_PORT"), None);
        });
    }

    #[test]
    fn script_name_is_stripped_from_the_decoded_path() {
        super::super::test_support::attach(|py| {
            let template = EnvironTemplate::with_script_name(py, "/caf\u{e9}/".as_bytes()).unwrap();
            for (target, path_info) in [
                ("/caf%C3%A9/x%20y", "/x y"),
                ("/caf\u{e9}", ""),
                ("/cafe/x", "/cafe/x"),
            ] {
                let request = Request::new("GET", target, &[("Host", "h")]);
                let info = RequestInfo {
                    buf: &request.buf,
                    head: &request.head,
                    peer: &PEER,
                    local: &LOCAL,
                    url_scheme: UrlScheme::Http,
                    tls: None,
                };
                let input = Bound::new(py, WsgiInputForTests::new(RequestBody::Memory(vec![])));
                let environ = template.build(py, &info, input.unwrap()).unwrap();
                assert_eq!(
                    get(&environ, "PATH_INFO").as_deref(),
                    Some(path_info),
                    "{target}"
                );
                assert_eq!(
                    get(&environ, "SCRIPT_NAME").as_deref(),
                    Some("/caf\u{c3}\u{a9}")
                );
            }
        });
    }

    #[test]
    fn script_name_is_stripped_at_a_segment_boundary() {
        assert_eq!(strip_script_name(b"/app/x", b"/app"), b"/x");
        assert_eq!(strip_script_name(b"/app", b"/app"), b"");
        assert_eq!(strip_script_name(b"/application", b"/app"), b"/application");
        assert_eq!(strip_script_name(b"/other", b"/app"), b"/other");
        assert_eq!(strip_script_name(b"/x", b""), b"/x");
    }

    #[test]
    fn host_splitting_keeps_ipv6_brackets() {
        assert_eq!(split_host(b"a.b:81"), (&b"a.b"[..], Some(&b"81"[..])));
        assert_eq!(split_host(b"a.b"), (&b"a.b"[..], None));
        assert_eq!(split_host(b"[::1]:81"), (&b"[::1]"[..], Some(&b"81"[..])));
        assert_eq!(split_host(b"[::1]"), (&b"[::1]"[..], None));
    }
}
