//! Under `cargo run`: the master's Python program is built first.
//!
//! `cargo run` builds only the target it runs, the master, never the
//! `rgunicorn-python` beside it, which would then be missing or, worse,
//! stale (an older worker than the code being run). So when cargo's own
//! run-time variables say that this process is `cargo run` of this very
//! package (`CARGO` is set and `CARGO_MANIFEST_DIR` is the directory this
//! program was built from), the master has that cargo build the Python
//! program, in the same profile, before it looks for it: a no-op when it is
//! current. Under `cargo test` (which builds every program itself and also
//! sets `CARGO_BIN_EXE_rgunicorn`), in the wheel and for an installed
//! binary nothing happens.

use std::path::Path;
use std::process::{Command, Stdio};

/// Why the Python program could not be built. One line.
#[derive(Debug, thiserror::Error)]
#[error("cargo run: cannot build the Python program ({0})")]
pub struct CargoRunError(String);

/// Builds the Python program when this process is `cargo run` of this
/// package (see the module comment); does nothing otherwise.
pub fn build_python_program_if_cargo_run(master: &Path) -> Result<(), CargoRunError> {
    if cfg!(feature = "wheel") || std::env::var_os("CARGO_BIN_EXE_rgunicorn").is_some() {
        return Ok(());
    }
    let (Some(cargo), Some(manifest_dir)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) else {
        return Ok(());
    };
    if Path::new(&manifest_dir) != Path::new(env!("CARGO_MANIFEST_DIR")) {
        return Ok(());
    }
    // target/debug is the `dev` profile; target/release and custom
    // profiles are named after their directory.
    let profile = match master.parent().and_then(Path::file_name) {
        Some(name) if name == "debug" => "dev".to_string(),
        Some(name) => name.to_string_lossy().into_owned(),
        None => return Ok(()),
    };
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--bin", crate::handoff::PYTHON_PROGRAM])
        .args(["--profile", &profile, "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .stdin(Stdio::null())
        .status()
        .map_err(|e| CargoRunError(crate::os_error::os_error_text(&e)))?;
    match status.success() {
        true => Ok(()),
        false => Err(CargoRunError(format!("cargo build ended with {status}"))),
    }
}
