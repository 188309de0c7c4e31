//! Test support shared by the integration tests: spawning the real
//! `rgunicorn` binary on a free loopback port, watching its log, holding it
//! in a guard that stops it by PID, and a raw-socket HTTP/1.1 client that
//! parses responses byte by byte (so the tests see exactly what the server
//! wrote: framing, pipelined order, premature close).
//!
//! Nothing here waits without a deadline: every read has a timeout and every
//! wait for a log line or a process exit is bounded.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod client;
pub mod load;
pub mod server;

#[allow(unused_imports)]
pub use client::{Client, Response};
#[allow(unused_imports)]
pub use server::{Server, ServerBuilder};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long a server may take to boot (interpreter start + app import).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long any single socket read may block before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The repository root (where `examples/` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/apps`, the directory of the test WSGI applications.
pub fn apps_dir() -> PathBuf {
    repo_root().join("tests").join("apps")
}

/// The Python interpreter the binary was built against (recorded by
/// `build.rs`), falling back to `python3`.
pub fn python() -> &'static str {
    option_env!("RGUNICORN_PYTHON_EXECUTABLE").unwrap_or("python3")
}

/// A directory under the system temp dir, unique to this test, removed on
/// drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh, empty directory whose name starts with `label`.
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "rgunicorn-test-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Percent-encodes a value for a query string (unreserved bytes kept).
pub fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reads the lines of a file that an app appends to (empty if absent).
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
