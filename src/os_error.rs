//! The text of an operating-system error for one-line messages, shared by
//! every process (master, worker, logging). A foundation: imports nothing
//! of the crate.

use std::io;

/// The OS error's text without Rust's ` (os error N)` suffix:
/// `Address already in use`.
pub fn os_error_text(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(index) if text.ends_with(')') => text[..index].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_text_drops_the_code() {
        let error = io::Error::from_raw_os_error(libc::EADDRINUSE);
        assert_eq!(os_error_text(&error), "Address already in use");
        let error = io::Error::other("plain");
        assert_eq!(os_error_text(&error), "plain");
    }
}
