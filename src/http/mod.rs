//! HTTP/1.1 wire format (RFC 9112): an incremental, zero-copy request parser,
//! a chunked body decoder and a response head/body writer.
//!
//! This module owns bytes only. It knows nothing of Python, sockets or
//! processes: callers hand it buffers and get back spans (offsets into those
//! buffers), decisions and bytes to send.
//!
//! ```
//! use rgunicorn::http::{parse_head, BodyFraming, Limits, RequestHead, Status};
//!
//! let buf = b"POST /hello?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nhi";
//! let mut head = RequestHead::default();
//! // A prefix is not an error, just not enough.
//! assert_eq!(parse_head(&buf[..20], &mut head, &Limits::default()), Ok(Status::Partial));
//! let Ok(Status::Complete(head_len)) = parse_head(buf, &mut head, &Limits::default()) else {
//!     panic!("a valid head")
//! };
//! assert_eq!(head.path.get(buf), b"/hello");
//! assert_eq!(head.query.get(buf), b"x=1");
//! assert_eq!(head.framing, BodyFraming::Length(2));
//! assert_eq!(&buf[head_len..], b"hi");
//! ```

mod chunked;
mod date;
mod error;
mod parser;
mod response;
mod scheme;
mod tables;

pub use chunked::ChunkedDecoder;
pub use date::HttpDate;
pub use error::ParseError;
pub use parser::{
    parse_head, BodyFraming, HeaderSpan, Limits, RequestHead, Span, Status, UnderscoreHeaders,
    Version,
};
pub use response::{
    begin_response, begin_validated_response, reason_phrase, status_code, write_chunk,
    write_chunk_header, write_error_response, write_last_chunk, ResponseFraming, CONTINUE_100,
    SERVER_NAME,
};
pub use scheme::UrlScheme;
pub use tables::{hex_value, is_field_value, is_token};
