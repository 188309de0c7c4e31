//! The error log: gunicorn's line format
//! `[%Y-%m-%d %H:%M:%S %z] [PID] [LEVEL] message`, on stderr.

/// Installs the logger at `level` (debug, info, warning, error, critical).
pub fn init(level: &str) -> Result<(), String> {
    let _ = level;
    todo!()
}
