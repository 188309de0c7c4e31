//! Every way a request can be wrong, each mapped to the status it earns.
//!
//! The parser ([`super::parse_head`]) and the chunked decoder
//! ([`super::ChunkedDecoder`]) return these; the caller answers with
//! [`ParseError::status`] and closes the connection. The enum is `Copy` and
//! carries no payload, so failing costs nothing.

/// Why a request was rejected. Each variant maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    // Request line
    /// The request line is not `method SP target SP HTTP-version`.
    #[error("invalid request line")]
    InvalidRequestLine,
    /// More empty lines (CRLF) before the request line than we skip.
    #[error("too many empty lines before the request line")]
    TooManyEmptyLines,
    /// The method is empty or not a token.
    #[error("invalid method")]
    InvalidMethod,
    /// The request-target has a byte outside visible ASCII, or a form the
    /// method does not allow (`*` without OPTIONS, authority-form without
    /// CONNECT, a scheme other than http/https, userinfo, a bad authority).
    #[error("invalid request target")]
    InvalidTarget,
    /// The request-target carries a `#fragment`.
    #[error("fragment in request target")]
    FragmentInTarget,
    /// The path percent-encodes a control byte (`%00`-`%1F`, `%7F`), which
    /// would reach the app decoded (NUL truncation, CR/LF injection).
    #[error("percent-encoded control byte in path")]
    EncodedControlInPath,
    /// The path contains `\`, which some front ends read as `/`.
    #[error("backslash in path")]
    BackslashInPath,
    /// A well-formed CONNECT: a request for a tunnel, which a WSGI server
    /// does not provide.
    #[error("CONNECT is not supported")]
    ConnectNotSupported,
    /// The version is not `HTTP/DIGIT.DIGIT`.
    #[error("invalid HTTP version")]
    InvalidVersion,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1.
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    /// The request line is longer than `limit_request_line`.
    #[error("request line too long")]
    RequestLineTooLong,

    // Line endings
    /// A CR not followed by LF.
    #[error("bare CR")]
    BareCr,
    /// A LF not preceded by CR.
    #[error("bare LF")]
    BareLf,

    // Header fields
    /// A field name that is empty or not a token.
    #[error("invalid header name")]
    InvalidHeaderName,
    /// A field name with `_` under `--header-map refuse`.
    #[error("underscore in header name")]
    UnderscoreInHeaderName,
    /// Whitespace between a field name and its colon.
    #[error("whitespace before colon in header")]
    WhitespaceBeforeColon,
    /// A field line starting with SP or HTAB (obsolete line folding).
    #[error("obsolete line folding in header")]
    ObsFold,
    /// A field value containing a control byte other than HTAB.
    #[error("invalid header value")]
    InvalidHeaderValue,
    /// More header fields than `limit_request_fields`.
    #[error("too many header fields")]
    TooManyHeaders,
    /// A field line longer than `limit_request_field_size`.
    #[error("header field too large")]
    HeaderFieldTooLarge,
    /// The whole head is larger than [`super::Limits::max_head_len`].
    #[error("request head too large")]
    HeadTooLarge,
    /// A field that must appear once (Content-Type, Authorization,
    /// Proxy-Authorization) on a second field line.
    #[error("repeated singleton header field")]
    RepeatedSingletonField,

    // Host
    /// An HTTP/1.1 request without a Host header.
    #[error("missing Host header")]
    MissingHost,
    /// More than one Host header.
    #[error("duplicate Host header")]
    DuplicateHost,
    /// A Host header (empty included) that names another host or port than
    /// the authority of an absolute-form target.
    #[error("Host header differs from the target's authority")]
    HostMismatch,
    /// A Host value that is not `uri-host [ ":" port ]`.
    #[error("invalid Host header")]
    InvalidHost,

    // Body framing
    /// A Content-Length that is not `1*DIGIT`.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// A Content-Length written as a list (`5, 5`, `5,`).
    #[error("Content-Length is a list")]
    ContentLengthList,
    /// More than one Content-Length field line, equal or not.
    #[error("duplicate Content-Length header")]
    DuplicateContentLength,
    /// A Content-Length with a leading zero (`05`, `00`).
    #[error("leading zero in Content-Length")]
    LeadingZeroInContentLength,
    /// A Content-Length above 2^64-1: too large to represent.
    #[error("Content-Length too large to represent")]
    ContentLengthOverflow,
    /// Whitespace around a Content-Length or Transfer-Encoding value other
    /// than one SP after the colon (a TAB, two spaces, trailing whitespace).
    #[error("unexpected whitespace in a framing header")]
    WhitespaceInFramingField,
    /// A HEAD or TRACE request that announces a body.
    #[error("body on a method that has none")]
    BodyNotAllowed,
    /// Both Transfer-Encoding and Content-Length.
    #[error("Transfer-Encoding with Content-Length")]
    ContentLengthWithTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 request.
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingOnHttp10,
    /// A Transfer-Encoding list that does not end with exactly one `chunked`.
    #[error("Transfer-Encoding does not end in a single chunked")]
    ChunkedNotFinal,
    /// A Transfer-Encoding element that is not a token.
    #[error("invalid Transfer-Encoding")]
    InvalidTransferEncoding,
    /// A transfer coding other than chunked (gzip, deflate, ...).
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    /// An Expect value other than `100-continue`.
    #[error("unsupported expectation")]
    ExpectationFailed,

    // Chunked body
    /// A chunk size that is not `1*HEXDIG`.
    #[error("invalid chunk size")]
    InvalidChunkSize,
    /// A chunk size above 2^64-1: too large to represent.
    #[error("chunk size too large to represent")]
    ChunkSizeOverflow,
    /// A chunk extension that is not `";" token [ "=" ( token /
    /// quoted-string ) ]` with optional whitespace around `;` and `=`.
    #[error("invalid chunk extension")]
    InvalidChunkExtension,
    /// A `;` not followed by an extension name (`2;`, `2;=x`).
    #[error("chunk extension without a name")]
    ChunkExtensionWithoutName,
    /// Chunk extensions longer in total than the decoder accepts.
    #[error("chunk extensions too long")]
    ChunkExtensionsTooLong,
    /// Chunk data not followed by exactly CRLF.
    #[error("chunk data not followed by CRLF")]
    ChunkNotTerminated,
    /// A trailer section larger than the decoder accepts.
    #[error("trailer section too large")]
    TrailerTooLarge,
    /// A trailer field that must not be sent in trailers: framing, routing,
    /// authentication, request modifiers, content metadata.
    #[error("field not allowed in trailers")]
    ForbiddenTrailerField,
    /// The connection ended before the body did (reported by callers).
    #[error("incomplete body")]
    IncompleteBody,
}

impl ParseError {
    /// The status code to answer with before closing the connection.
    pub fn status(self) -> u16 {
        use ParseError::*;
        match self {
            RequestLineTooLong => 414,
            TooManyHeaders | HeaderFieldTooLarge | HeadTooLarge | TrailerTooLarge => 431,
            ExpectationFailed => 417,
            UnsupportedTransferCoding | ConnectNotSupported => 501,
            UnsupportedVersion => 505,
            InvalidRequestLine
            | TooManyEmptyLines
            | InvalidMethod
            | InvalidTarget
            | FragmentInTarget
            | EncodedControlInPath
            | BackslashInPath
            | InvalidVersion
            | BareCr
            | BareLf
            | InvalidHeaderName
            | UnderscoreInHeaderName
            | WhitespaceBeforeColon
            | ObsFold
            | InvalidHeaderValue
            | RepeatedSingletonField
            | MissingHost
            | DuplicateHost
            | HostMismatch
            | InvalidHost
            | InvalidContentLength
            | ContentLengthList
            | DuplicateContentLength
            | LeadingZeroInContentLength
            | ContentLengthOverflow
            | WhitespaceInFramingField
            | BodyNotAllowed
            | ContentLengthWithTransferEncoding
            | TransferEncodingOnHttp10
            | ChunkedNotFinal
            | InvalidTransferEncoding
            | InvalidChunkSize
            | ChunkSizeOverflow
            | InvalidChunkExtension
            | ChunkExtensionWithoutName
            | ChunkExtensionsTooLong
            | ChunkNotTerminated
            | ForbiddenTrailerField
            | IncompleteBody => 400,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ParseError::{self, *};

    #[test]
    fn each_error_maps_to_its_status() {
        let cases: &[(ParseError, u16)] = &[
            // Request line
            (InvalidRequestLine, 400),
            (TooManyEmptyLines, 400),
            (InvalidMethod, 400),
            (InvalidTarget, 400),
            (FragmentInTarget, 400),
            (EncodedControlInPath, 400),
            (BackslashInPath, 400),
            (ConnectNotSupported, 501),
            (InvalidVersion, 400),
            (UnsupportedVersion, 505),
            (RequestLineTooLong, 414),
            // Line endings
            (BareCr, 400),
            (BareLf, 400),
            // Header fields
            (InvalidHeaderName, 400),
            (UnderscoreInHeaderName, 400),
            (WhitespaceBeforeColon, 400),
            (ObsFold, 400),
            (InvalidHeaderValue, 400),
            (TooManyHeaders, 431),
            (HeaderFieldTooLarge, 431),
            (HeadTooLarge, 431),
            (RepeatedSingletonField, 400),
            // Host
            (MissingHost, 400),
            (DuplicateHost, 400),
            (HostMismatch, 400),
            (InvalidHost, 400),
            // Body framing
            (InvalidContentLength, 400),
            (ContentLengthList, 400),
            (DuplicateContentLength, 400),
            (LeadingZeroInContentLength, 400),
            (ContentLengthOverflow, 400),
            (WhitespaceInFramingField, 400),
            (BodyNotAllowed, 400),
            (ContentLengthWithTransferEncoding, 400),
            (TransferEncodingOnHttp10, 400),
            (ChunkedNotFinal, 400),
            (InvalidTransferEncoding, 400),
            (UnsupportedTransferCoding, 501),
            (ExpectationFailed, 417),
            // Chunked body
            (InvalidChunkSize, 400),
            (ChunkSizeOverflow, 400),
            (InvalidChunkExtension, 400),
            (ChunkExtensionWithoutName, 400),
            (ChunkExtensionsTooLong, 400),
            (ChunkNotTerminated, 400),
            (TrailerTooLarge, 431),
            (ForbiddenTrailerField, 400),
            (IncompleteBody, 400),
        ];
        for &(error, status) in cases {
            assert_eq!(error.status(), status, "{error:?}");
        }
    }

    #[test]
    fn display_is_a_short_phrase_for_logs() {
        assert_eq!(BareLf.to_string(), "bare LF");
        assert_eq!(UnsupportedVersion.to_string(), "unsupported HTTP version");
    }
}
