//! The `rgunicorn` command: parse settings, run the master, turn errors into
//! one-line messages and exit codes.
//!
//! `rgunicorn status [--metrics-bind ADDRESS | -c FILE]` prints a running
//! server's workers (see `master::status_command`).
//!
//! `--print-config` prints the effective settings and exits 0;
//! `--check-config` checks them and imports the app in the Python program
//! (`rgunicorn-python`, as a worker would), exiting 0 (`Config OK`) or 1
//! with the reason. This program itself links no Python.
//!
//! Exit codes: 0 after a clean stop; 1 for a bad setting or a master error;
//! 2 for a malformed command line (clap's usage message); 3 when a worker
//! could not boot and 4 when the app could not be loaded (gunicorn's codes).

use rgunicorn::config::{self, ConfigError, Settings};
use rgunicorn::handoff::{Handoff, Role};
use rgunicorn::master::python_process::{self, PythonProgram};
use rgunicorn::{logging, master};

/// The command (`pub` for `src/wheel_main.rs`, the wheel's copy).
pub fn main() {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    if args.first().map(String::as_str) == Some("status") {
        match master::status_command::run(&args[1..]) {
            Ok(table) => print!("{table}"),
            Err(err) => exit_with_error(&err, 1),
        }
        return;
    }
    let resolved = match config::load_resolved() {
        Ok(resolved) => resolved,
        Err(ConfigError::CommandLine(err)) => err.exit(),
        Err(err) => exit_with_error(&err, err.exit_code()),
    };
    let settings = resolved.settings;
    if settings.print_config {
        print!("{}", resolved.effective_toml);
        return;
    }
    if let Err(err) = logging::set_log_file(&settings.error_logfile) {
        exit_with_error(&err, 1);
    }
    if let Err(err) = logging::init(settings.log_level) {
        exit_with_error(&err, 1);
    }
    raise_open_files_limit();
    if settings.check_config {
        if let Err(err) = master::check_tls(&settings) {
            exit_with_error(&err, 1);
        }
        check_config(&settings);
    }
    if let Err(err) = master::run(settings) {
        exit_with_error(&err, err.exit_code());
    }
}

/// `--check-config`: the settings are valid (they parsed); imports the app
/// in the Python program and exits 0 with `Config OK`, or 1 with its
/// reason.
fn check_config(settings: &Settings) -> ! {
    use nix::sys::wait::{waitpid, WaitStatus};
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let program = PythonProgram::find().unwrap_or_else(|err| exit_with_error(&err, 1));
    let (report_read, report_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .unwrap_or_else(|err| exit_with_error(&format!("cannot check the app: {err}"), 1));
    let handoff = Handoff {
        role: Role::Check {
            report: report_write.as_raw_fd(),
        },
        settings: settings.clone(),
        argv: rgunicorn::proc_title::original_args(),
        log_file: logging::log_file().map(std::path::Path::to_path_buf),
        tls: None,
    };
    let report = report_write.as_raw_fd();
    let child = python_process::start(&program, &handoff, &[report], Some(report))
        .unwrap_or_else(|err| exit_with_error(&format!("cannot check the app: {err}"), 1));
    drop(report_write);
    let mut reason = String::new();
    let _ = std::fs::File::from(report_read).read_to_string(&mut reason);
    let reason = reason.trim();
    match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, 0)) => {
            println!("Config OK");
            std::process::exit(0)
        }
        Ok(WaitStatus::Exited(..)) if !reason.is_empty() => exit_with_error(&reason, 1),
        Ok(WaitStatus::Exited(..)) => std::process::exit(1),
        Ok(status) => exit_with_error(&format!("the app check ended: {status:?}"), 1),
        Err(err) => exit_with_error(&format!("cannot wait for the app check: {err}"), 1),
    }
}

/// Raises the soft open-files limit (`RLIMIT_NOFILE`) to the hard limit,
/// as most servers do: each connection is a descriptor, and the workers
/// inherit the limit. Logged at debug level; a failure only logs.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(err) => {
            log::debug!("Cannot read the open files limit: {err}");
            return;
        }
    };
    if soft < hard {
        if let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            log::debug!("Open files limit: {soft} (cannot raise it to {hard}: {err})");
            return;
        }
    }
    log::debug!("Open files limit: {hard}");
}

/// Prints `Error: <message>` as one line on stderr (and on the original
/// stderr too when the log went to a file) and exits with `code`.
fn exit_with_error(err: &dyn std::fmt::Display, code: i32) -> ! {
    eprintln!("Error: {err}");
    logging::write_to_original_stderr(&format!("Error: {err}"));
    std::process::exit(code)
}
