//! One request/response exchange: everything between a complete request and
//! the framed bytes of its response. It runs the `pre_request` hook, builds
//! the environ, calls the app, pulls the response into an [`OutQueue`], and
//! once the response is complete writes the access log line and runs
//! `post_request`; the iterable's `close()` is called exactly once on every
//! path.
//!
//! The connection (bytes, framing, timeouts) and the exchange meet here and
//! only here: the connection hands over a [`Request`] and its body, and gets
//! back queued bytes and a [`Progress`]. With one thread per worker the
//! event loop runs the exchange itself, with the request borrowed from the
//! connection's buffer; with `--threads` an app thread runs it on its own
//! copy of the request head ([`OwnedRequest`]); `app_thread` is that
//! thread's loop.

pub mod app_thread;

use super::access_entry::AccessRecorder;
use super::environ::{EnvironTemplate, RequestInfo};
use super::hooks::{HookedRequest, Hooks, Outcome};
use super::input::{RequestBody, WsgiInput};
use super::out_queue::OutQueue;
use super::response::{
    AppResponse, PumpUntil, Pumped, RequestFacts, ResponseError, ResponseOptions,
};
use super::traceback::log_exception;
use crate::http::{HttpDate, RequestHead, UrlScheme};
use crate::listener::Endpoint;
use crate::tls_info::TlsInfo;
use pyo3::prelude::*;
use std::sync::Arc;
use std::time::Instant;

/// A complete request, as the exchange sees it.
pub struct Request<'a> {
    /// The head (its spans index `info.buf`), the peer and the scheme.
    pub info: RequestInfo<'a>,
    /// What the response needs to know (version, HEAD, keep-alive).
    pub facts: RequestFacts,
    /// When its head was complete (for the access log's duration).
    pub started: Instant,
}

/// A complete request, owned, for an app thread: the head bytes are a copy
/// of the connection's (the connection keeps its buffer for what follows).
pub struct OwnedRequest {
    pub buf: Vec<u8>,
    pub head: RequestHead,
    pub peer: Endpoint,
    pub local: Endpoint,
    pub url_scheme: UrlScheme,
    /// Over TLS: the handshake's facts.
    pub tls: Option<Arc<TlsInfo>>,
    pub facts: RequestFacts,
    pub started: Instant,
}

impl OwnedRequest {
    /// The request as the exchange reads it.
    pub fn view(&self) -> Request<'_> {
        Request {
            info: RequestInfo {
                buf: &self.buf,
                head: &self.head,
                peer: &self.peer,
                local: &self.local,
                url_scheme: self.url_scheme,
                tls: self.tls.as_deref(),
            },
            facts: self.facts,
            started: self.started,
        }
    }
}

/// What the app side of a worker needs to run exchanges. One per thread
/// that calls the app: the environ template and the date cache are not
/// shared between threads.
pub struct AppContext {
    pub app: Py<PyAny>,
    pub environ: EnvironTemplate,
    pub date: HttpDate,
    pub hooks: Option<Arc<Hooks>>,
    /// Where finished responses are recorded (`--access-logfile`), if
    /// anywhere.
    pub access_log: Option<Arc<dyn AccessRecorder>>,
    pub options: ResponseOptions,
}

/// Where an exchange is after a pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More of the response may come: write what was queued, pump again.
    More,
    /// The response is complete once the queue is written; `keep_alive`
    /// says whether the connection may serve another request; `status`
    /// and `body_bytes` are what was sent (for the metrics).
    Complete {
        keep_alive: bool,
        status: u16,
        body_bytes: u64,
    },
    /// The app failed after its headers were queued: send what is queued,
    /// then close so the client sees the response end early.
    Broken,
}

/// The app could not produce a response (raised before its headers, or
/// returned something unusable): logged, `post_request` run; the
/// connection answers 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerError;

/// One exchange in progress.
pub struct Exchange {
    response: AppResponse,
    hooked: Option<HookedRequest>,
}

impl Exchange {
    /// Runs `pre_request`, builds the environ with `body` as `wsgi.input`,
    /// and calls the app.
    pub fn start(
        py: Python<'_>,
        ctx: &AppContext,
        request: &Request<'_>,
        body: RequestBody,
    ) -> Result<Exchange, ServerError> {
        let info = &request.info;
        let mut hooked = ctx.hooks.as_ref().and_then(|hooks| {
            hooks.before_request(py, info.buf, info.head, info.peer, info.url_scheme)
        });
        let started = Bound::new(py, WsgiInput::new(body))
            .and_then(|input| ctx.environ.build(py, info, input))
            .map_err(ResponseError::AppRaised)
            .and_then(|environ| {
                if let Some(hooked) = hooked.as_mut() {
                    hooked.keep_environ(&environ);
                }
                AppResponse::start(py, &ctx.app, environ.into_any(), request.facts, ctx.options)
            });
        match started {
            Ok(response) => {
                if let Some(hooked) = hooked.as_mut() {
                    hooked.keep_start_response(py, response.start_response());
                }
                Ok(Exchange { response, hooked })
            }
            Err(error) => {
                log_app_error(py, request, &error);
                if let (Some(hooks), Some(hooked)) = (ctx.hooks.as_ref(), hooked) {
                    hooks.after_request(py, hooked, Outcome::ServerError);
                }
                Err(ServerError)
            }
        }
    }

    /// Pulls more of the response into `out` (see [`AppResponse::pump`]).
    /// On completion writes the access log line and runs `post_request`.
    /// `Err` means nothing was sent yet and the connection answers 500.
    pub fn pump(
        &mut self,
        py: Python<'_>,
        ctx: &mut AppContext,
        request: &Request<'_>,
        out: &mut OutQueue,
        until: PumpUntil,
    ) -> Result<Progress, ServerError> {
        match self.response.pump(py, out, ctx.date.now(), until) {
            Ok(Pumped::Queued) => Ok(Progress::More),
            Ok(Pumped::Done { keep_alive }) => {
                if let Some(log) = &ctx.access_log {
                    let info = &request.info;
                    let elapsed = request.started.elapsed();
                    self.response.log_access(
                        py,
                        log.as_ref(),
                        info.peer,
                        info.buf,
                        info.head,
                        elapsed,
                    );
                }
                if let (Some(hooks), Some(hooked)) = (ctx.hooks.as_ref(), self.hooked.take()) {
                    let body_sent = self.response.body_sent();
                    hooks.after_request(py, hooked, Outcome::Completed { body_sent });
                }
                Ok(Progress::Complete {
                    keep_alive,
                    status: self.response.status_code(py),
                    body_bytes: self.response.body_sent(),
                })
            }
            Err(error) => {
                let head_sent = self.response.head_sent();
                self.response.close(py);
                log_app_error(py, request, &error);
                match head_sent {
                    true => Ok(Progress::Broken),
                    false => Err(ServerError),
                }
            }
        }
    }

    /// Ends the exchange early (the client went away or timed out): closes
    /// the iterable if that has not happened yet.
    pub fn abort(&mut self, py: Python<'_>) {
        self.response.close(py);
    }
}

fn log_app_error(py: Python<'_>, request: &Request<'_>, error: &ResponseError) {
    let target = String::from_utf8_lossy(request.info.head.target.get(request.info.buf));
    match error {
        ResponseError::AppRaised(e) => {
            log_exception(py, e, &format!("Error handling request {target}"))
        }
        other => log::error!("Error handling request {target}: {other}"),
    }
}
