//! The `rgunicorn` command: parse settings, run the master, turn errors into
//! one-line messages and exit codes.
//!
//! Exit codes: 0 after a clean stop; 1 for a bad setting or a master error;
//! 2 for a malformed command line (clap's usage message); 3 when a worker
//! could not boot and 4 when the app could not be loaded (gunicorn's codes).

use rgunicorn::config::{self, ConfigError};
use rgunicorn::{logging, master};

fn main() {
    let settings = match config::load() {
        Ok(settings) => settings,
        Err(ConfigError::CommandLine(err)) => err.exit(),
        Err(err) => exit_with_error(&err, err.exit_code()),
    };
    if let Err(err) = logging::set_log_file(&settings.error_logfile) {
        exit_with_error(&err, 1);
    }
    if let Err(err) = logging::init(&settings.log_level) {
        exit_with_error(&err, 1);
    }
    if let Err(err) = master::run(settings) {
        exit_with_error(&err, err.exit_code());
    }
}

/// Prints `Error: <message>` as one line on stderr (and on the original
/// stderr too when the log went to a file) and exits with `code`.
fn exit_with_error(err: &dyn std::fmt::Display, code: i32) -> ! {
    eprintln!("Error: {err}");
    logging::write_to_original_stderr(&format!("Error: {err}"));
    std::process::exit(code)
}
