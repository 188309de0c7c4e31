//! Settings: the command line (and, later, config file and environment),
//! merged into one [`Settings`] value that master and worker read.
//!
//! Each setting is one field with its flag, default and doc comment; the doc
//! comments are the `--help` text. Names and meanings follow gunicorn's.

mod app_spec;
mod bind;

pub use app_spec::AppSpec;
pub use bind::BindAddress;

use std::path::PathBuf;

/// All settings of one rgunicorn run.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "rgunicorn",
    version,
    about = "A prefork WSGI HTTP server: a drop-in for gunicorn"
)]
pub struct Settings {
    /// The WSGI application, `MODULE:VARIABLE` (variable defaults to
    /// `application`) or a factory call `MODULE:create_app('x', debug=True)`
    /// with literal arguments only.
    #[arg(value_name = "APP_MODULE", value_parser = AppSpec::parse)]
    pub app: AppSpec,

    /// The number of worker processes [default: $WEB_CONCURRENCY or 1].
    #[arg(
        short = 'w',
        long = "workers",
        env = "WEB_CONCURRENCY",
        default_value_t = 1
    )]
    pub workers: u32,

    /// The socket to bind: `HOST:PORT`, `[V6]:PORT` or `unix:PATH`.
    /// Repeat to bind several [default: 127.0.0.1:8000, or 0.0.0.0:$PORT].
    #[arg(short = 'b', long = "bind", value_parser = BindAddress::parse)]
    pub bind: Vec<BindAddress>,

    /// Change to this directory before loading the app.
    #[arg(long = "chdir")]
    pub chdir: Option<PathBuf>,

    /// Comma-separated directories to put first on `sys.path`.
    #[arg(long = "pythonpath", value_delimiter = ',')]
    pub pythonpath: Vec<PathBuf>,

    /// The virtualenv whose packages the app imports [default: $VIRTUAL_ENV].
    #[arg(long = "virtualenv", env = "VIRTUAL_ENV")]
    pub virtualenv: Option<PathBuf>,

    /// The error log level: debug, info, warning, error, critical.
    #[arg(long = "log-level", default_value = "info")]
    pub log_level: String,

    /// Seconds to wait for the next request on a keep-alive connection.
    #[arg(long = "keep-alive", default_value_t = 2)]
    pub keepalive: u64,

    /// The most simultaneous client connections one worker holds.
    #[arg(long = "worker-connections", default_value_t = 1000)]
    pub worker_connections: usize,

    /// Seconds a graceful stop waits for workers to finish.
    #[arg(long = "graceful-timeout", default_value_t = 30)]
    pub graceful_timeout: u64,

    /// The longest request line in bytes (0 = unlimited).
    #[arg(long = "limit-request-line", default_value_t = 4094)]
    pub limit_request_line: usize,

    /// The most header fields in a request.
    #[arg(long = "limit-request-fields", default_value_t = 100)]
    pub limit_request_fields: usize,

    /// The longest header field in bytes (0 = unlimited).
    #[arg(
        long = "limit-request-field_size",
        alias = "limit-request-field-size",
        default_value_t = 8190
    )]
    pub limit_request_field_size: usize,
}
