//! Driving one application response: calling the app, turning what it gives
//! (status, headers, body items, `write()` data, a `wsgi.file_wrapper`) into
//! framed bytes on the connection's out queue, pulled only as the socket
//! drains, and calling the iterable's `close()` exactly once. A real file
//! behind `wsgi.file_wrapper` is queued as a file part (a duplicate of its
//! descriptor) for the writer to send with sendfile.

use super::access_entry::{AccessEntry, AccessRecorder};
use super::file_wrapper::{regular_file_size, FileWrapper};
use super::out_queue::OutQueue;
use super::start_response::StartResponse;
use crate::http::RequestHead;
use crate::http::{self, ResponseFraming, Version};
use crate::listener::Endpoint;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyTuple};
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

/// Pulling from the app stops while this many bytes wait to be written.
pub const HIGH_WATER: usize = 64 * 1024;

/// Why a response could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    /// The application raised.
    #[error("the application raised")]
    AppRaised(PyErr),
    /// A body item was not `bytes`.
    #[error("response body items must be bytes, got {0}")]
    NotBytes(String),
    /// The application returned without calling start_response.
    #[error("the application did not call start_response")]
    NoStartResponse,
    /// The headers cannot be sent (e.g. a malformed Content-Length).
    #[error("invalid response headers: {0}")]
    BadHeaders(&'static str),
    /// The file behind `wsgi.file_wrapper` could not be duplicated.
    #[error("cannot send the file: {0}")]
    File(std::io::Error),
}

/// What one `pump` achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// Bytes were queued (or the queue is full): write them, then pump again.
    Queued,
    /// The response is complete once the queue is flushed; `keep_alive`
    /// says whether the connection may serve another request after it.
    Done { keep_alive: bool },
}

/// When one `pump` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpUntil {
    /// Once the queue reaches [`HIGH_WATER`] (the event loop's own pump: it
    /// writes between pumps, so batching saves system calls).
    HighWater,
    /// After each body item, too (an app thread's pump: what it has is
    /// handed to the loop at once, so a slow stream's items go out as they
    /// come), unless the iterable is a list or tuple, whose items are all
    /// ready.
    EachItem,
}

enum Body {
    /// Items from the app's iterable.
    Items(Py<PyIterator>),
    /// A real file sent with sendfile: `remaining` bytes from `offset`.
    File {
        fd: RawFd,
        offset: u64,
        remaining: u64,
    },
    /// Nothing left to pull.
    Finished,
}

/// How a response is produced, from the worker's settings.
#[derive(Debug, Clone, Copy)]
pub struct ResponseOptions {
    /// Keep the environ for the access log's `{name}e` atoms.
    pub keep_environ: bool,
    /// Send real files behind `wsgi.file_wrapper` with sendfile(2).
    pub sendfile: bool,
}

/// What the response needs to know about its request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts {
    pub version: Version,
    pub is_head: bool,
    pub keep_alive: bool,
}

/// One response in progress.
pub struct AppResponse {
    result: Py<PyAny>,
    start_response: Py<StartResponse>,
    body: Body,
    request: RequestFacts,
    /// None until the head has been queued.
    framing: Option<ResponseFraming>,
    /// For `Length` framing: body bytes still to send.
    length_left: u64,
    keep_alive: bool,
    closed: bool,
    /// The iterable is a list or tuple: every item is ready, so even an
    /// app thread's pump goes on to the high-water mark.
    items_ready: bool,
    /// Body bytes sent so far (for the access log).
    body_sent: u64,
    /// The environ, kept only when the access log format reads it.
    environ: Option<Py<PyAny>>,
}

impl AppResponse {
    /// Calls the application and prepares to stream what it returns.
    pub fn start(
        py: Python<'_>,
        app: &Py<PyAny>,
        environ: Bound<'_, PyAny>,
        request: RequestFacts,
        options: ResponseOptions,
    ) -> Result<AppResponse, ResponseError> {
        let kept_environ = options.keep_environ.then(|| environ.clone().unbind());
        let start_response = Py::new(py, StartResponse::new()).map_err(ResponseError::AppRaised)?;
        let result = app
            .call1(py, (environ, start_response.clone_ref(py)))
            .map_err(ResponseError::AppRaised)?;
        let mut response = AppResponse {
            result,
            start_response,
            body: Body::Finished,
            request,
            framing: None,
            length_left: 0,
            keep_alive: request.keep_alive,
            closed: false,
            items_ready: false,
            body_sent: 0,
            environ: kept_environ,
        };
        let result = response.result.bind(py);
        response.items_ready = result.is_exact_instance_of::<pyo3::types::PyList>()
            || result.is_exact_instance_of::<pyo3::types::PyTuple>();
        match response.choose_body(py, options.sendfile) {
            Ok(body) => response.body = body,
            Err(e) => {
                response.close(py);
                return Err(e);
            }
        }
        Ok(response)
    }

    /// A file_wrapper over a real file is sent with sendfile; anything else
    /// is iterated.
    fn choose_body(&self, py: Python<'_>, sendfile: bool) -> Result<Body, ResponseError> {
        let result = self.result.bind(py);
        if let (true, Ok(wrapper)) = (sendfile, result.cast::<FileWrapper>()) {
            if let Some((fd, offset)) = wrapper.borrow().sendfile_source(py) {
                if let Some(size) = regular_file_size(fd) {
                    let remaining = size.saturating_sub(offset);
                    return Ok(Body::File {
                        fd,
                        offset,
                        remaining,
                    });
                }
            }
        }
        let iterator = result.try_iter().map_err(ResponseError::AppRaised)?;
        Ok(Body::Items(iterator.unbind()))
    }

    /// Body bytes sent or queued so far.
    pub fn body_sent(&self) -> u64 {
        self.body_sent
    }

    /// The status code the app gave (500 when it gave none that reads).
    pub fn status_code(&self, py: Python<'_>) -> u16 {
        self.start_response
            .borrow(py)
            .status()
            .and_then(crate::http::status_code)
            .unwrap_or(500)
    }

    /// Whether the status line and headers have been queued.
    pub fn head_sent(&self) -> bool {
        self.framing.is_some()
    }

    /// The `start_response` the app was given.
    pub fn start_response(&self) -> &Py<StartResponse> {
        &self.start_response
    }

    /// Pulls from the app into `out` until the queue reaches [`HIGH_WATER`]
    /// (or, with [`PumpUntil::EachItem`], a body item was queued) or the
    /// body ends; a file body is queued as a file part.
    pub fn pump(
        &mut self,
        py: Python<'_>,
        out: &mut OutQueue,
        date: &[u8],
        until: PumpUntil,
    ) -> Result<Pumped, ResponseError> {
        let queued_before = out.len();
        let each_item = until == PumpUntil::EachItem && !self.items_ready;
        loop {
            if out.len() >= HIGH_WATER || (each_item && out.len() > queued_before) {
                return Ok(Pumped::Queued);
            }
            match &mut self.body {
                Body::Items(iterator) => {
                    let next = iterator.bind(py).clone().next();
                    self.queue_written(py, out, date)?;
                    match next {
                        None => self.body = Body::Finished,
                        Some(Err(e)) => return Err(ResponseError::AppRaised(e)),
                        Some(Ok(item)) => {
                            let bytes = item.cast_into::<PyBytes>().map_err(|e| {
                                ResponseError::NotBytes(
                                    e.into_inner()
                                        .get_type()
                                        .name()
                                        .map(|n| n.to_string())
                                        .unwrap_or_default(),
                                )
                            })?;
                            if !bytes.as_bytes().is_empty() {
                                self.queue_body(py, out, &bytes, date)?;
                            }
                        }
                    }
                }
                Body::File { .. } => {
                    if !self.head_sent() {
                        self.queue_head(py, out, date)?;
                    }
                    self.queue_file(out)?;
                    self.body = Body::Finished;
                }
                Body::Finished => {
                    if !self.head_sent() {
                        self.queue_head(py, out, date)?;
                    }
                    return Ok(Pumped::Done {
                        keep_alive: self.finish(py, out),
                    });
                }
            }
        }
    }

    /// Queues bytes the app passed to `write()`.
    fn queue_written(
        &mut self,
        py: Python<'_>,
        out: &mut OutQueue,
        date: &[u8],
    ) -> Result<(), ResponseError> {
        let written = self.start_response.borrow_mut(py).take_written();
        if !written.is_empty() {
            let bytes = PyBytes::new(py, &written);
            self.queue_body(py, out, &bytes, date)?;
        }
        Ok(())
    }

    /// Queues the status line and headers, deciding the framing.
    fn queue_head(
        &mut self,
        py: Python<'_>,
        out: &mut OutQueue,
        date: &[u8],
    ) -> Result<(), ResponseError> {
        let mut start_response = self.start_response.borrow_mut(py);
        let status = start_response
            .status()
            .ok_or(ResponseError::NoStartResponse)?;
        let mut outcome = Err("unset");
        out.append_with(|buf| {
            let mark = buf.len();
            outcome = http::begin_validated_response(
                buf,
                self.request.version,
                status,
                start_response.headers(),
                self.request.is_head,
                self.request.keep_alive,
                date,
            );
            if outcome.is_err() {
                buf.truncate(mark);
            }
        });
        let (framing, keep_alive) = outcome.map_err(ResponseError::BadHeaders)?;
        start_response.mark_headers_sent();
        self.framing = Some(framing);
        self.keep_alive = keep_alive;
        if let ResponseFraming::Length(n) = framing {
            self.length_left = n;
        }
        Ok(())
    }

    /// Queues one non-empty body item with the response's framing.
    fn queue_body(
        &mut self,
        py: Python<'_>,
        out: &mut OutQueue,
        item: &Bound<'_, PyBytes>,
        date: &[u8],
    ) -> Result<(), ResponseError> {
        if !self.head_sent() {
            self.queue_head(py, out, date)?;
        }
        let data = item.as_bytes();
        let framing = self.framing.expect("head was queued");
        if framing != ResponseFraming::NoBody {
            self.body_sent += match framing {
                ResponseFraming::Length(_) => self.length_left.min(data.len() as u64),
                _ => data.len() as u64,
            };
        }
        match framing {
            ResponseFraming::NoBody => {}
            ResponseFraming::Length(_) => {
                let allowed = self.length_left.min(data.len() as u64) as usize;
                if allowed == data.len() {
                    out.push_bytes(item);
                } else {
                    out.push_slice(&data[..allowed]);
                }
                self.length_left -= allowed as u64;
            }
            ResponseFraming::Chunked => {
                out.append_with(|buf| http::write_chunk_header(buf, data.len() as u64));
                out.push_bytes(item);
                out.push_slice(b"\r\n");
            }
            ResponseFraming::Close => out.push_bytes(item),
        }
        Ok(())
    }

    /// Queues a file body as one file part, bounded by Content-Length and
    /// framed as one chunk when chunked.
    fn queue_file(&mut self, out: &mut OutQueue) -> Result<(), ResponseError> {
        let Body::File {
            fd,
            offset,
            remaining,
        } = self.body
        else {
            return Ok(());
        };
        let framing = self.framing.expect("head was queued");
        let len = match framing {
            ResponseFraming::NoBody => 0,
            ResponseFraming::Length(n) => remaining.min(n),
            ResponseFraming::Chunked | ResponseFraming::Close => remaining,
        };
        if len == 0 {
            return Ok(());
        }
        // SAFETY: `fd` belongs to the file object that `self.result` keeps
        // alive; it is only borrowed to duplicate it.
        let own = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .map_err(ResponseError::File)?;
        let chunked = framing == ResponseFraming::Chunked;
        if chunked {
            out.append_with(|buf| http::write_chunk_header(buf, len));
        }
        out.push_file(own, offset, len);
        if chunked {
            out.push_slice(b"\r\n");
        }
        self.body_sent += len;
        if let ResponseFraming::Length(_) = framing {
            self.length_left -= len;
        }
        Ok(())
    }

    /// Ends the body framing and closes the iterable. Returns whether the
    /// connection may be kept alive.
    fn finish(&mut self, py: Python<'_>, out: &mut OutQueue) -> bool {
        match self.framing {
            Some(ResponseFraming::Chunked) => out.append_with(http::write_last_chunk),
            Some(ResponseFraming::Length(_)) if self.length_left > 0 => {
                log::warn!(
                    "Application sent {} bytes less than its Content-Length; closing the connection",
                    self.length_left
                );
                self.keep_alive = false;
            }
            Some(ResponseFraming::Close) => self.keep_alive = false,
            _ => {}
        }
        self.close(py);
        self.keep_alive
    }

    /// Writes this response's access log line.
    pub fn log_access(
        &self,
        py: Python<'_>,
        log: &dyn AccessRecorder,
        peer: &Endpoint,
        buf: &[u8],
        head: &RequestHead,
        elapsed: Duration,
    ) {
        let start_response = self.start_response.borrow(py);
        let headers: Vec<(&[u8], &[u8])> = start_response.headers().collect();
        let environ = self.environ.as_ref().map(|environ| environ.bind(py));
        let lookup = |name: &str| {
            let value = environ?.get_item(name).ok()?;
            Some(value.str().ok()?.to_string().into_bytes())
        };
        log.record(&AccessEntry {
            peer,
            buf,
            head,
            status: start_response.status().unwrap_or(b"500"),
            response_headers: &headers,
            body_bytes: self.body_sent,
            elapsed,
            environ: Some(&lookup),
        });
    }

    /// Calls the iterable's `close()` if it has one, exactly once. An
    /// exception from it is logged.
    pub fn close(&mut self, py: Python<'_>) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        self.body = Body::Finished;
        let result = self.result.bind(py);
        // A plain list or tuple has no close(): asking would raise (and
        // format) an AttributeError on every such response.
        if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
            return;
        }
        if let Ok(Some(close)) = result.getattr_opt(pyo3::intern!(py, "close")) {
            if let Err(e) = close.call0() {
                super::traceback::log_exception(py, &e, "Error closing the response iterable");
            }
        }
    }
}
