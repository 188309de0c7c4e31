//! The `Date` header value (IMF-fixdate), formatted at most once a second.

/// A cached IMF-fixdate string (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub struct HttpDate {
    // (the http helper completes this)
}

impl HttpDate {
    /// A cache holding the current time.
    pub fn new() -> Self {
        todo!()
    }
    /// The current date, re-formatted only when the second has changed.
    pub fn now(&mut self) -> &[u8] {
        todo!()
    }
}

impl Default for HttpDate {
    fn default() -> Self {
        Self::new()
    }
}
