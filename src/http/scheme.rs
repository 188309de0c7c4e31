//! The request's URL scheme, one of the request's facts: `http` unless the
//! bytes came through TLS or a trusted proxy said the client used https.
//! Who decides it is the worker's business; this is only the value.

/// `wsgi.url_scheme` of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UrlScheme {
    #[default]
    Http,
    Https,
}

impl UrlScheme {
    /// The scheme's name as it is written in a URL: `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            UrlScheme::Http => "http",
            UrlScheme::Https => "https",
        }
    }
}
