//! gunicorn's `req` and `resp` as the request hooks receive them:
//! `types.SimpleNamespace` objects built from the parsed head and from what
//! the app's `start_response` recorded.

use super::super::environ::latin1;
use super::{HookedRequest, Outcome};
use crate::http::{RequestHead, UrlScheme, Version};
use crate::listener::Endpoint;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

/// gunicorn's `req`: method, uri, path, query (still percent-encoded),
/// version tuple, headers as `(NAME, value)` with upper-cased names,
/// remote_addr (`(host, port)`, or `''` on a unix socket), scheme (`https`
/// when a trusted proxy says so, as `wsgi.url_scheme`).
pub(super) fn request_object<'py>(
    namespace: &Bound<'py, PyAny>,
    buf: &[u8],
    head: &RequestHead,
    peer: &Endpoint,
    scheme: UrlScheme,
) -> PyResult<Bound<'py, PyAny>> {
    let py = namespace.py();
    let headers = PyList::empty(py);
    let mut upper = Vec::new();
    for header in &head.headers {
        upper.clear();
        upper.extend(header.name.get(buf).iter().map(u8::to_ascii_uppercase));
        headers.append((latin1(py, &upper)?, latin1(py, header.value.get(buf))?))?;
    }
    let version = match head.version {
        Version::Http10 => (1, 0),
        Version::Http11 => (1, 1),
    };
    let remote_addr = match peer {
        Endpoint::Tcp(addr) => (addr.ip().to_string(), addr.port())
            .into_pyobject(py)?
            .into_any(),
        Endpoint::Unix => PyString::new(py, "").into_any(),
    };
    let fields = PyDict::new(py);
    fields.set_item("method", latin1(py, head.method.get(buf))?)?;
    fields.set_item("uri", latin1(py, head.target.get(buf))?)?;
    fields.set_item("path", latin1(py, head.path.get(buf))?)?;
    fields.set_item("query", latin1(py, head.query.get(buf))?)?;
    fields.set_item("fragment", "")?;
    fields.set_item("version", version)?;
    fields.set_item("headers", headers)?;
    fields.set_item("remote_addr", &remote_addr)?;
    fields.set_item("peer_addr", remote_addr)?;
    fields.set_item("scheme", scheme.as_str())?;
    namespace.call((), Some(&fields))
}

/// gunicorn's `resp`, as far as `post_request` needs it: `status` (str),
/// `status_code` (int), `headers` (the app's, as `(name, value)` tuples) and
/// `sent` (body bytes).
pub(super) fn response_object<'py>(
    namespace: &Bound<'py, PyAny>,
    hooked: &HookedRequest,
    outcome: Outcome,
) -> PyResult<Bound<'py, PyAny>> {
    let py = namespace.py();
    let fields = PyDict::new(py);
    let headers = PyList::empty(py);
    match (outcome, &hooked.start_response) {
        (Outcome::Completed { body_sent }, Some(start_response)) => {
            let start_response = start_response.borrow(py);
            let status = start_response
                .status()
                .unwrap_or(b"500 Internal Server Error");
            fields.set_item("status", latin1(py, status)?)?;
            fields.set_item("status_code", start_response.status_code().unwrap_or(500))?;
            for (name, value) in start_response.headers() {
                headers.append(PyTuple::new(py, [latin1(py, name)?, latin1(py, value)?])?)?;
            }
            fields.set_item("sent", body_sent)?;
        }
        (Outcome::Completed { body_sent }, None) => {
            fields.set_item("status", py.None())?;
            fields.set_item("status_code", py.None())?;
            fields.set_item("sent", body_sent)?;
        }
        (Outcome::ServerError, _) => {
            fields.set_item("status", "500 Internal Server Error")?;
            fields.set_item("status_code", 500)?;
            fields.set_item("sent", 0)?;
        }
    }
    fields.set_item("headers", headers)?;
    namespace.call((), Some(&fields))
}

#[cfg(test)]
mod tests {
    use super::super::super::test_support::attach;
    use super::*;
    use crate::http::{parse_head, Limits, Status};

    fn namespace(py: Python<'_>) -> Bound<'_, PyAny> {
        py.import("types")
            .unwrap()
            .getattr("SimpleNamespace")
            .unwrap()
    }

    fn parsed(raw: &[u8]) -> RequestHead {
        let mut head = RequestHead::default();
        assert!(matches!(
            parse_head(raw, &mut head, &Limits::default()),
            Ok(Status::Complete(_))
        ));
        head
    }

    fn attr(object: &Bound<'_, PyAny>, name: &str) -> String {
        object.getattr(name).unwrap().repr().unwrap().to_string()
    }

    #[test]
    fn req_has_gunicorns_attributes() {
        attach(|py| {
            let raw = b"POST /a%20b/c?x=1&y HTTP/1.0\r\nHost: h\r\nx-Trace-Id: \xe9t\xe9\r\n\r\n";
            let head = parsed(raw);
            let peer = Endpoint::Tcp("127.0.0.1:4321".parse().unwrap());
            let req = request_object(&namespace(py), raw, &head, &peer, UrlScheme::Http).unwrap();
            let cases = [
                ("method", "'POST'"),
                ("uri", "'/a%20b/c?x=1&y'"),
                ("path", "'/a%20b/c'"),
                ("query", "'x=1&y'"),
                ("version", "(1, 0)"),
                ("headers", "[('HOST', 'h'), ('X-TRACE-ID', 'été')]"),
                ("remote_addr", "('127.0.0.1', 4321)"),
                ("scheme", "'http'"),
            ];
            for (name, expected) in cases {
                assert_eq!(attr(&req, name), expected, "req.{name}");
            }
            let unix = request_object(
                &namespace(py),
                raw,
                &head,
                &Endpoint::Unix,
                UrlScheme::Https,
            )
            .unwrap();
            assert_eq!(attr(&unix, "remote_addr"), "''");
            assert_eq!(attr(&unix, "scheme"), "'https'");
        });
    }

    #[test]
    fn resp_for_our_500_has_no_app_headers() {
        attach(|py| {
            let hooked = HookedRequest {
                req: py.None(),
                environ: None,
                start_response: None,
            };
            let resp = response_object(&namespace(py), &hooked, Outcome::ServerError).unwrap();
            assert_eq!(attr(&resp, "status"), "'500 Internal Server Error'");
            assert_eq!(attr(&resp, "status_code"), "500");
            assert_eq!(attr(&resp, "headers"), "[]");
            assert_eq!(attr(&resp, "sent"), "0");
        });
    }
}
