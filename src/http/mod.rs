//! HTTP/1.1 wire format (RFC 9112): an incremental, zero-copy request parser,
//! a chunked body decoder and a response head/body writer.
//!
//! This module owns bytes only. It knows nothing of Python, sockets or
//! processes: callers hand it buffers and get back spans (offsets into those
//! buffers), decisions and bytes to send.

mod chunked;
mod date;
mod error;
mod parser;
mod response;
mod tables;

pub use chunked::ChunkedDecoder;
pub use date::HttpDate;
pub use error::ParseError;
pub use parser::{parse_head, BodyFraming, HeaderSpan, Limits, RequestHead, Span, Status, Version};
pub use response::{
    begin_response, write_chunk, write_error_response, write_last_chunk, ResponseFraming,
    CONTINUE_100,
};
