//! Settings: defaults, the environment, a TOML config file,
//! `RGUNICORN_CMD_ARGS` and the command line, merged into one [`Settings`]
//! value that master and worker read.
//!
//! Each setting is one field with its flag, default and doc comment; the doc
//! comments are the `--help` text and docs/settings.md. Names and meanings
//! follow gunicorn's, and config-file keys are gunicorn's setting names.
//!
//! Sources, later wins (see [`sources`]): built-in defaults < environment
//! defaults (`WEB_CONCURRENCY`, `PORT`, `VIRTUAL_ENV`, `FORWARDED_ALLOW_IPS`,
//! which gunicorn also treats as defaults) < the config file (`-c FILE`, else
//! `./rgunicorn.toml` when present) < `RGUNICORN_CMD_ARGS` < the command
//! line.
//!
//! Every error is a [`ConfigError`] whose `Display` is one line naming the
//! setting (and the file and line for the config file), except malformed
//! command lines (unknown flags, missing `APP_MODULE`) and
//! `--help`/`--version`, which clap reports itself.

mod app_spec;
mod bind;
mod doc;
mod effective;
mod file;
mod gunicorn_only;
mod identity;
mod keys;
mod secure_scheme_headers;
mod shell_words;
mod sources;
mod tls;
mod values;

pub use app_spec::AppSpec;
pub use bind::{Bind, BindAddress, BindAddressError, BindScheme, DEFAULT_PORT};
pub use doc::settings_markdown;
pub use gunicorn_only::{hooks_called_by, HookCaller};
pub use identity::{parse_group, parse_user, worker_owner, GroupId, UserId};
pub use secure_scheme_headers::{
    SecureSchemeHeaderError, SecureSchemeHeaders, DEFAULT_SECURE_SCHEME_HEADERS,
};
pub use sources::{Resolved, CMD_ARGS_VAR, DEFAULT_CONFIG_FILE};
pub use tls::{CertReqs, CipherSuites, TlsVersion, CIPHER_SUITE_NAMES};

use crate::logging::LogLevel;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// gunicorn's default access log format (`--access-logformat`).
pub const ACCESS_LOG_DEFAULT_FORMAT: &str =
    r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// The address bound when neither `--bind` nor `$PORT` says otherwise.
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";

/// All settings of one rgunicorn run.
// Also serde data: the master hands its effective `Settings` to each
// Python program it starts (`handoff`), which reads them back exactly
// rather than parsing the sources again.
#[derive(Debug, Clone, clap::Parser, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[command(
    name = "rgunicorn",
    version,
    about = "A prefork WSGI HTTP server: a drop-in for gunicorn",
    args_override_self = true
)]
pub struct Settings {
    /// The WSGI application, `MODULE:VARIABLE` (variable defaults to
    /// `application`) or a factory call `MODULE:create_app('x', debug=True)`
    /// with literal arguments only.
    #[arg(value_name = "APP_MODULE", value_parser = AppSpec::parse)]
    pub app: AppSpec,

    /// The number of worker processes, at least 1 [default: $WEB_CONCURRENCY
    /// or 1].
    #[arg(
        short = 'w',
        long = "workers",
        value_name = "INT",
        value_parser = parse_workers,
        default_value = "1",
        hide_default_value = true
    )]
    pub workers: u32,

    /// App threads per worker, 1 to 256 (gunicorn's gthread): with more than
    /// one, each worker calls the app from this many Python threads at once
    /// while its event loop serves the sockets; 1 calls it from the loop.
    #[arg(
        long = "threads",
        value_name = "INT",
        value_parser = parse_threads,
        default_value = "1"
    )]
    pub threads: usize,

    /// The socket to bind: `HOST:PORT`, `HOST` (port 8000), `[V6]:PORT` or
    /// `unix:PATH`. Repeat to bind several. With `--certfile` every bind
    /// serves TLS except one written `http://HOST:PORT` or
    /// `http+unix:PATH`; `https://HOST:PORT` asks for TLS (and needs
    /// `--certfile`) [default: 127.0.0.1:8000, or 0.0.0.0:$PORT when PORT
    /// is set].
    #[arg(
        short = 'b',
        long = "bind",
        value_name = "ADDRESS",
        value_parser = Bind::parse,
        hide_default_value = true
    )]
    pub bind: Vec<Bind>,

    /// The most pending connections each listening socket queues.
    #[arg(long = "backlog", value_name = "INT", value_parser = parse_backlog, default_value = "2048")]
    pub backlog: u32,

    /// Change to this directory before binding sockets and loading the app.
    #[arg(long = "chdir", value_name = "DIR")]
    pub chdir: Option<PathBuf>,

    /// Comma-separated directories to put first on `sys.path`.
    #[arg(long = "pythonpath", value_name = "DIRS", value_delimiter = ',')]
    pub pythonpath: Vec<PathBuf>,

    /// The virtualenv whose packages the app imports [default: $VIRTUAL_ENV].
    #[arg(long = "virtualenv", value_name = "DIR", hide_default_value = true)]
    pub virtualenv: Option<PathBuf>,

    /// The error log level: debug, info, warning, error, critical.
    #[arg(long = "log-level", value_name = "LEVEL", value_parser = parse_log_level, default_value = "info")]
    pub log_level: LogLevel,

    /// A Python module of worker hooks, imported like the app (after
    /// `--chdir` and `--pythonpath`), e.g. `myproject.rgunicorn_hooks`, or
    /// a `.py` file such as `gunicorn.conf.py`. Its functions named like
    /// gunicorn's hooks (post_fork, post_worker_init, pre_request,
    /// post_request, worker_int, worker_abort, worker_exit) run in each
    /// worker. See docs/hooks.md.
    #[arg(long = "hooks", value_name = "MODULE")]
    pub hooks: Option<String>,

    /// Set an environment variable in the workers, `KEY=VALUE`; repeat for
    /// several (gunicorn's raw_env).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = values::parse_raw_env)]
    pub raw_env: Vec<(String, String)>,

    /// Send the application's stdout and stderr (print, logging's default
    /// handler) to the error log.
    #[arg(long = "capture-output")]
    pub capture_output: bool,

    /// Do not send `wsgi.file_wrapper` files with sendfile(2); iterate them
    /// instead (also when the SENDFILE environment variable is 0).
    #[arg(long = "no-sendfile")]
    pub no_sendfile: bool,

    /// What to do with request header names containing `_` (they collide
    /// with `-` in environ keys): `drop` them, `refuse` the request (400), or
    /// pass them on (`dangerous`: a client can spoof a proxy's header).
    #[arg(long = "header-map", value_name = "drop|refuse|dangerous", default_value = "drop", value_parser = values::parse_header_map)]
    pub header_map: crate::http::UnderscoreHeaders,

    /// Where to write the access log, one line per response (`-` means
    /// stdout). No access log unless given.
    #[arg(long = "access-logfile", value_name = "FILE")]
    pub access_logfile: Option<String>,

    /// The access log line format, in gunicorn's `%(atom)s` language (h l u
    /// t r s m U q H b B f a T M D L p, `{header}i`, `{header}o`,
    /// `{variable}e`).
    #[arg(long = "access-logformat", value_name = "STRING", default_value = ACCESS_LOG_DEFAULT_FORMAT)]
    pub access_log_format: String,

    /// Peers trusted to set the scheme through the secure-scheme headers:
    /// comma-separated addresses, CIDR ranges, or `*` (unix-socket peers are
    /// always trusted) [env: FORWARDED_ALLOW_IPS].
    #[arg(
        long = "forwarded-allow-ips",
        value_name = "ADDRESSES",
        env = "FORWARDED_ALLOW_IPS",
        hide_env = true,
        default_value = "127.0.0.1,::1",
        value_parser = crate::ip_allow_list::IpAllowList::parse
    )]
    pub forwarded_allow_ips: crate::ip_allow_list::IpAllowList,

    /// Headers that, from a trusted peer, mean the client used https:
    /// comma-separated `NAME=VALUE` pairs (empty: none).
    #[arg(
        long = "secure-scheme-headers",
        value_name = "NAME=VALUE,...",
        default_value = DEFAULT_SECURE_SCHEME_HEADERS,
        value_parser = SecureSchemeHeaders::parse
    )]
    pub secure_scheme_headers: SecureSchemeHeaders,

    /// Require a PROXY protocol header (v1 or v2) at the start of every
    /// connection; the client address it gives becomes REMOTE_ADDR.
    #[arg(long = "proxy-protocol")]
    pub proxy_protocol: bool,

    /// Peers allowed to send a PROXY protocol header: comma-separated
    /// addresses, CIDR ranges, or `*`.
    #[arg(
        long = "proxy-allow-from",
        value_name = "ADDRESSES",
        default_value = "127.0.0.1,::1",
        value_parser = crate::ip_allow_list::IpAllowList::parse
    )]
    pub proxy_allow_from: crate::ip_allow_list::IpAllowList,

    /// Serve TLS with this PEM certificate chain (the server's certificate
    /// first, then intermediates) on every `--bind` not written `http://`
    /// or `http+unix:`. Loaded by the master at start and again on HUP.
    /// See docs/tls.md.
    #[arg(long = "certfile", value_name = "FILE")]
    pub certfile: Option<PathBuf>,

    /// The PEM private key of `--certfile` (PKCS#8, PKCS#1 or SEC1)
    /// [default: the key in the `--certfile` file].
    #[arg(long = "keyfile", value_name = "FILE")]
    pub keyfile: Option<PathBuf>,

    /// PEM certificates of the authorities that sign client certificates
    /// (for `--cert-reqs 1` or `2`).
    #[arg(long = "ca-certs", value_name = "FILE")]
    pub ca_certs: Option<PathBuf>,

    /// Client certificates: 0 = not asked for, 1 = optional (one that is
    /// sent must verify against `--ca-certs`), 2 = required.
    #[arg(long = "cert-reqs", value_name = "0|1|2", default_value = "0", value_parser = tls::parse_cert_reqs)]
    pub cert_reqs: CertReqs,

    /// The TLS cipher suites to offer, rustls names separated by `:`
    /// (e.g. `TLS13_AES_128_GCM_SHA256:TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`)
    /// [default: all of rustls's suites]. OpenSSL cipher strings are refused.
    #[arg(long = "ciphers", value_name = "SUITES", value_parser = tls::parse_ciphers)]
    pub ciphers: Option<CipherSuites>,

    /// The oldest TLS version offered: 1.2 or 1.3.
    #[arg(long = "tls-min-version", value_name = "1.2|1.3", default_value = "1.2", value_parser = tls::parse_tls_version)]
    pub tls_min_version: TlsVersion,

    /// Accepted for gunicorn command lines; no effect: the handshake always
    /// runs in the event loop before the first request is read.
    #[arg(long = "do-handshake-on-connect")]
    pub do_handshake_on_connect: bool,

    /// Accepted for gunicorn command lines; no effect: a client that closes
    /// without a TLS close_notify always ends its connection like a plain
    /// EOF (gunicorn's default).
    #[arg(long = "suppress-ragged-eofs")]
    pub suppress_ragged_eofs: bool,

    /// Seconds to wait for the next request on a keep-alive connection;
    /// also how long a stopping worker waits for one (answered with
    /// `Connection: close`). 0 turns keep-alive off.
    #[arg(long = "keep-alive", value_name = "INT", default_value_t = 2)]
    pub keepalive: u64,

    /// The most simultaneous client connections one worker holds. At the
    /// cap the worker closes the connections that cost least to close
    /// (kept alive between requests, then those that have sent nothing yet,
    /// the longest waiting first) and keeps accepting; only when every
    /// connection is in the middle of a request does it stop accepting
    /// until one closes. A waiting connection holds no read buffer, so the
    /// cost of the cap is mostly descriptors: the master raises the
    /// open-files limit to its hard limit at start.
    #[arg(
        long = "worker-connections",
        value_name = "INT",
        default_value_t = 10000
    )]
    pub worker_connections: usize,

    /// Seconds a graceful stop waits for workers to finish.
    #[arg(long = "graceful-timeout", value_name = "INT", default_value_t = 30)]
    pub graceful_timeout: u64,

    /// The longest request line in bytes (0 = unlimited).
    #[arg(
        long = "limit-request-line",
        value_name = "INT",
        default_value_t = 4094
    )]
    pub limit_request_line: usize,

    /// The most header fields in a request.
    #[arg(
        long = "limit-request-fields",
        value_name = "INT",
        default_value_t = 100
    )]
    pub limit_request_fields: usize,

    /// The longest header field in bytes (0 = unlimited).
    #[arg(
        long = "limit-request-field_size",
        alias = "limit-request-field-size",
        value_name = "INT",
        default_value_t = 8190
    )]
    pub limit_request_field_size: usize,

    /// The largest request body in bytes; larger requests get 413
    /// (0 = unlimited).
    #[arg(long = "limit-request-body", value_name = "INT", default_value_t = 0)]
    pub limit_request_body: u64,

    /// Seconds from the first byte of a request to the end of its head. An
    /// absolute deadline: a client trickling header bytes (slowloris) gets
    /// 408 when it passes.
    #[arg(long = "header-timeout", value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,

    /// Seconds a request body may stall (no byte received) before 408.
    #[arg(long = "body-timeout", value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,

    /// The slowest average rate, in bytes per second, at which a request
    /// body may arrive once it has been arriving for 5 seconds; slower gets
    /// 408 (0 = no minimum).
    #[arg(long = "body-min-rate", value_name = "BYTES", default_value_t = 1024)]
    pub body_min_rate: u64,

    /// Seconds a client may go without reading any of its response before
    /// it is disconnected.
    #[arg(long = "send-timeout", value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub send_timeout: u64,

    /// Workers silent for more than this many seconds (stuck in the
    /// application) are killed and replaced, after logging where they were
    /// stuck (0 = never). Booting does not count.
    #[arg(
        short = 't',
        long = "timeout",
        value_name = "INT",
        default_value_t = 30
    )]
    pub timeout: u64,

    /// A worker is replaced after serving this many requests (0 = never),
    /// to limit the damage of memory leaks. Its successor boots first, so
    /// capacity never dips: the worker asks for it about one boot before its
    /// limit (judged by its recent request rate and how long workers take
    /// to boot; never before half the limit) and stops as soon as the
    /// successor serves.
    #[arg(long = "max-requests", value_name = "INT", default_value_t = 0)]
    pub max_requests: u64,

    /// A random number of extra requests, up to this, added to
    /// `--max-requests` per worker so workers do not all restart together.
    #[arg(long = "max-requests-jitter", value_name = "INT", default_value_t = 0)]
    pub max_requests_jitter: u64,

    /// Write the master's pid to this file once its workers are started;
    /// removed when the master exits. Refuses to start while the file names
    /// a running rgunicorn.
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pid: Option<PathBuf>,

    /// Set `SO_REUSEPORT` on TCP listeners and give each worker its own
    /// listening socket on the same address, so the kernel spreads new
    /// connections evenly over the workers.
    #[arg(long = "reuse-port")]
    pub reuse_port: bool,

    /// The name in the process titles, `rgunicorn: master [NAME]`
    /// [default: APP_MODULE].
    #[arg(short = 'n', long = "name", alias = "proc-name", value_name = "STRING")]
    pub proc_name: Option<String>,

    /// The file mode creation mask, set when the master starts (workers
    /// inherit it); unix socket files are created with it (0 when unset,
    /// as gunicorn does). gunicorn's number syntax: `022` and `0o22` are
    /// octal, `0x12` hex, `18` decimal.
    #[arg(long = "umask", value_name = "INT", value_parser = parse_umask)]
    pub umask: Option<u32>,

    /// Run the workers as this user: a name or a numeric uid. The master
    /// keeps the identity it was started with (to bind privileged ports and
    /// re-bind on reload); unix socket files are given to this user.
    #[arg(short = 'u', long = "user", value_name = "USER", value_parser = parse_user)]
    pub user: Option<UserId>,

    /// Run the workers as this group: a name or a numeric gid [default:
    /// the master's group].
    #[arg(short = 'g', long = "group", value_name = "GROUP", value_parser = parse_group)]
    pub group: Option<GroupId>,

    /// Give the workers the supplementary groups of the `--user` account
    /// (as `initgroups(3)`); without it a worker started as root keeps only
    /// its `--group`.
    #[arg(long = "initgroups")]
    pub initgroups: bool,

    /// Detach from the terminal and run in the background: the command
    /// returns once the daemon is started, the daemon's stdin and stdout
    /// go to /dev/null, and so does stderr unless `--error-logfile` names a
    /// file. SIGWINCH then stops the workers gracefully (HUP brings them
    /// back).
    #[arg(short = 'D', long = "daemon")]
    pub daemon: bool,

    /// Import the application once, in a zygote process, and fork the
    /// workers from it, so they share the imported modules' memory
    /// copy-on-write (`gc.freeze()` keeps the cyclic collector from
    /// unsharing them). HUP and `--reload` start a new zygote that imports
    /// the new code. The app must not open sockets, connections or threads
    /// at import time (see docs/preload.md).
    #[arg(long = "preload")]
    pub preload: bool,

    /// Development: each worker watches the source files of the loaded
    /// modules (and `--reload-extra-file`s) and has the master reload (as
    /// on HUP) when one changes.
    #[arg(long = "reload")]
    pub reload: bool,

    /// With `--reload`, also reload when this file changes (templates,
    /// configuration...). Repeatable.
    #[arg(long = "reload-extra-file", value_name = "FILE")]
    pub reload_extra_files: Vec<PathBuf>,

    /// Where the error log goes: a file (appended to, reopened on USR1) or
    /// `-` for stderr.
    #[arg(
        long = "error-logfile",
        alias = "log-file",
        value_name = "FILE",
        default_value = "-"
    )]
    pub error_logfile: PathBuf,

    /// Serve Prometheus metrics (`GET /metrics`, text format 0.0.4) and
    /// the workers' status (`GET /status`, read by `rgunicorn status`) from
    /// the master on this address: `HOST:PORT`, `[V6]:PORT` or `unix:PATH`,
    /// as `--bind`. Off when unset. See docs/metrics.md.
    #[arg(long = "metrics-bind", value_name = "ADDRESS", value_parser = BindAddress::parse)]
    pub metrics_bind: Option<BindAddress>,

    /// Send gunicorn's statsd metrics (`gunicorn.requests`,
    /// `gunicorn.request.duration`, ...) over UDP to this `HOST:PORT`
    /// (port 8125 when omitted). Off when unset.
    #[arg(long = "statsd-host", value_name = "STATSD_ADDR", value_parser = parse_statsd_host)]
    pub statsd_host: Option<BindAddress>,

    /// A prefix for the statsd metric names (`app` sends
    /// `app.gunicorn.requests`).
    #[arg(
        long = "statsd-prefix",
        value_name = "STATSD_PREFIX",
        default_value = ""
    )]
    pub statsd_prefix: String,

    /// Datadog tags added to every statsd metric: a comma-separated list
    /// (`env:prod,app:web`).
    #[arg(
        long = "dogstatsd-tags",
        value_name = "DOGSTATSD_TAGS",
        default_value = ""
    )]
    pub dogstatsd_tags: String,

    /// Read settings from this TOML file, keyed by gunicorn's setting names
    /// (see docs/settings.md) [default: ./rgunicorn.toml when present].
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Check the settings and import the application (and the `--hooks`
    /// module) in a child process, then exit: 0 if all is fine, 1 with the
    /// reason otherwise. No socket is bound.
    #[arg(long = "check-config")]
    pub check_config: bool,

    /// Print the effective settings as TOML (itself a valid config file) and
    /// exit.
    #[arg(long = "print-config")]
    pub print_config: bool,
}

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting has a value it cannot take. `setting` is the flag
    /// (`--bind`), the positional name (`APP_MODULE`) or the environment
    /// variable (`WEB_CONCURRENCY`) the value came from.
    #[error("{setting}: {message}")]
    Invalid { setting: String, message: String },
    /// The command line is malformed, or asks for `--help` or `--version`:
    /// print it with [`clap::Error::exit`], which knows its stream and code.
    #[error("{}", .0.to_string().lines().next().unwrap_or("invalid command line"))]
    CommandLine(clap::Error),
    /// The config file has a bad key or value at `line`.
    #[error("{}:{line}: {message}", .path.display())]
    File {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The config file cannot be read.
    #[error("cannot read config file {}: {reason}", .path.display())]
    Read { path: PathBuf, reason: String },
}

impl ConfigError {
    /// The process exit code for this error: clap's own for command-line
    /// errors (2 for usage, 0 for `--help`/`--version`), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::CommandLine(err) => err.exit_code(),
            _ => 1,
        }
    }

    fn file(path: &Path, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError::File {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    fn invalid(setting: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            setting: setting.to_string(),
            message: message.into(),
        }
    }
}

/// A snapshot of the environment variables settings read, so that parsing is
/// a pure function of its inputs (and testable without touching the process
/// environment). Empty values count as unset.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// The variables of this process (those that are valid UTF-8).
    pub fn from_process() -> Environment {
        Environment::from_pairs(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// An environment holding exactly `pairs`.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Environment {
        Environment {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Loads the settings of this process: its command line, environment and
/// config file (`./rgunicorn.toml` is looked for in the working directory).
pub fn load() -> Result<Settings, ConfigError> {
    load_resolved().map(|resolved| resolved.settings)
}

/// Like [`load`], also rendering the effective settings for
/// `--print-config`.
pub fn load_resolved() -> Result<Resolved, ConfigError> {
    let working_dir = std::env::current_dir().ok();
    sources::resolve(
        std::env::args_os().collect(),
        &Environment::from_process(),
        working_dir.as_deref(),
    )
}

/// Loads the settings again from `args` (the command line the master was
/// started with), the environment and the config file, with relative paths
/// taken from `working_dir` (where it was started): HUP's re-read.
pub fn reload(args: Vec<OsString>, working_dir: &Path) -> Result<Settings, ConfigError> {
    sources::resolve(args, &Environment::from_process(), Some(working_dir)).map(|r| r.settings)
}

impl Settings {
    /// The name in the process titles: `--name`, else the APP_MODULE as
    /// written.
    pub fn proc_name(&self) -> String {
        match &self.proc_name {
            Some(name) => name.clone(),
            None => format!("{}:{}", self.app.module, self.app.expression),
        }
    }

    /// Parses a command line (`args[0]` is the program name) with no
    /// environment: built-in defaults only.
    pub fn from_args<I, T>(args: I) -> Result<Settings, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Settings::from_sources(args, &Environment::default())
    }

    /// Parses a command line over the defaults `env` provides (with
    /// `RGUNICORN_CMD_ARGS` and a `-c` file, but no `./rgunicorn.toml`).
    pub fn from_sources<I, T>(args: I, env: &Environment) -> Result<Settings, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args = args.into_iter().map(Into::into).collect();
        sources::resolve(args, env, None).map(|resolved| resolved.settings)
    }
}

/// `--statsd-host`: `HOST:PORT` or `[V6]:PORT` (port 8125 when omitted);
/// statsd speaks UDP, so a unix socket path is refused.
fn parse_statsd_host(text: &str) -> Result<BindAddress, String> {
    match BindAddress::parse_with_default_port(text, STATSD_DEFAULT_PORT) {
        Ok(BindAddress::Unix(_)) => Err(format!("'{text}' is not HOST:PORT (statsd is UDP)")),
        Ok(address) => Ok(address),
        Err(e) => Err(e.to_string()),
    }
}

/// statsd's port, for a `--statsd-host` that names only a host.
pub const STATSD_DEFAULT_PORT: u16 = 8125;

/// The defaults the environment sets, as `(clap arg id, value)`, each value
/// checked first so that an error names the variable rather than the flag.
fn environment_defaults(
    env: &Environment,
) -> Result<Vec<(&'static str, &'static str)>, ConfigError> {
    let mut defaults = vec![("bind", DEFAULT_BIND)];
    if let Some(workers) = env.get("WEB_CONCURRENCY") {
        parse_workers(workers)
            .map_err(|message| ConfigError::invalid("WEB_CONCURRENCY", message))?;
        defaults.push(("workers", leak(workers.trim().to_string())));
    }
    if let Some(port) = env.get("PORT") {
        let port: u16 = port.trim().parse().map_err(|_| {
            ConfigError::invalid("PORT", format!("'{port}' is not a port number (0-65535)"))
        })?;
        defaults[0] = ("bind", leak(format!("0.0.0.0:{port}")));
    }
    if let Some(virtualenv) = env.get("VIRTUAL_ENV") {
        defaults.push(("virtualenv", leak(virtualenv.to_string())));
    }
    // gunicorn turns sendfile off when SENDFILE holds a false value.
    let sendfile_off = env.get("SENDFILE").is_some_and(|value| {
        matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "0" | "false" | "no" | "off"
        )
    });
    if sendfile_off {
        defaults.push(("no_sendfile", "true"));
    }
    Ok(defaults)
}

/// `--bind https://...` asks for TLS, which only `--certfile` can give.
fn check_https_binds(settings: &Settings) -> Result<(), ConfigError> {
    match settings
        .bind
        .iter()
        .find(|bind| bind.scheme == BindScheme::Https)
    {
        Some(bind) if settings.certfile.is_none() => Err(ConfigError::invalid(
            "--bind",
            format!("'{bind}' asks for TLS, which needs --certfile"),
        )),
        _ => Ok(()),
    }
}

/// clap (without its `string` feature) takes defaults as `&'static str`.
/// Settings are loaded at start and on each HUP: a few bytes per load.
fn leak(value: String) -> &'static str {
    Box::leak(value.into_boxed_str())
}

/// Turns clap's rejection of one value into a one-line [`ConfigError`] that
/// names the setting; anything else (usage errors, `--help`) stays clap's.
fn from_clap_error(err: clap::Error) -> ConfigError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let setting = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => setting_name(arg),
        _ => return ConfigError::CommandLine(err),
    };
    let message = match err.kind() {
        ErrorKind::ValueValidation => match std::error::Error::source(&err) {
            Some(source) if source.is::<std::num::ParseIntError>() => {
                match err.get(ContextKind::InvalidValue) {
                    Some(ContextValue::String(value)) => {
                        format!("'{value}' is not a whole number (0 or more)")
                    }
                    _ => source.to_string(),
                }
            }
            Some(source) => source.to_string(),
            None => return ConfigError::CommandLine(err),
        },
        ErrorKind::InvalidValue => {
            let value = match err.get(ContextKind::InvalidValue) {
                Some(ContextValue::String(value)) => value.clone(),
                _ => String::new(),
            };
            match err.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(valid)) => {
                    format!("'{value}' is not one of {}", valid.join(", "))
                }
                _ if value.is_empty() => "a value is required".to_string(),
                _ => format!("'{value}' is not a valid value"),
            }
        }
        _ => return ConfigError::CommandLine(err),
    };
    ConfigError::invalid(&setting, message)
}

/// `--bind <ADDRESS>` → `--bind`; `<APP_MODULE>` (or `[APP_MODULE]`, where
/// optional) → `APP_MODULE`.
fn setting_name(clap_arg: &str) -> String {
    let first = clap_arg.split_whitespace().next().unwrap_or(clap_arg);
    first
        .trim_start_matches(['[', '<'])
        .trim_end_matches([']', '>'])
        .to_string()
}

/// `--workers`: a whole number, at least 1.
fn parse_workers(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Err("'0' workers cannot serve: give 1 or more".to_string()),
        Ok(count) => Ok(count),
        Err(_) => Err(format!(
            "'{text}' is not a whole number of workers (1 or more)"
        )),
    }
}

/// The most `--threads` a worker runs (each has a slot in the worker's
/// heartbeat page).
pub const MAX_THREADS: usize = crate::heartbeat::MAX_APP_THREADS;

/// `--threads`: a whole number from 1 to [`MAX_THREADS`].
fn parse_threads(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(count) if (1..=MAX_THREADS).contains(&count) => Ok(count),
        _ => Err(format!(
            "'{text}' is not a whole number of threads from 1 to {MAX_THREADS}"
        )),
    }
}

/// `--backlog`: a whole number, at least 1.
fn parse_backlog(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(backlog) if backlog >= 1 => Ok(backlog),
        _ => Err(format!(
            "'{text}' is not a whole number of pending connections (1 or more)"
        )),
    }
}

/// `--umask`: a mode mask from 0 to 0o777 in gunicorn's syntax: a leading
/// `0` or `0o` means octal (`022`, `0o22`), `0x` hex, otherwise decimal.
fn parse_umask(text: &str) -> Result<u32, String> {
    let trimmed = text.trim().to_ascii_lowercase();
    let (digits, radix) = if let Some(octal) = trimmed.strip_prefix("0o") {
        (octal, 8)
    } else if let Some(hex) = trimmed.strip_prefix("0x") {
        (hex, 16)
    } else if trimmed.len() > 1 && trimmed.starts_with('0') {
        (&trimmed[1..], 8)
    } else {
        (trimmed.as_str(), 10)
    };
    match u32::from_str_radix(digits, radix) {
        Ok(mask) if mask <= 0o777 && !digits.is_empty() => Ok(mask),
        _ => Err(format!(
            "'{text}' is not a mask from 0 to 0o777 (write octal as 022 or 0o22)"
        )),
    }
}

/// `--log-level`: one of gunicorn's level names, any case.
fn parse_log_level(text: &str) -> Result<LogLevel, String> {
    LogLevel::parse(text).ok_or_else(|| {
        let names: Vec<&str> = LogLevel::ALL.iter().map(|level| level.name()).collect();
        format!("'{text}' is not one of {}", names.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, ConfigError> {
        Settings::from_args(std::iter::once("rgunicorn").chain(args.iter().copied()))
    }

    fn parse_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env = Environment::from_pairs(env.iter().copied());
        Settings::from_sources(
            std::iter::once("rgunicorn").chain(args.iter().copied()),
            &env,
        )
    }

    /// One table row: command line, environment, and what to expect.
    type Case<'a, T> = (&'a [&'a str], &'a [(&'a str, &'a str)], T);

    fn tcp(host: &str, port: u16) -> Bind {
        Bind::unsaid(BindAddress::Tcp {
            host: host.to_string(),
            port,
        })
    }

    #[test]
    fn defaults_match_gunicorn() {
        let settings = parse(&["app:application"]).unwrap();
        assert_eq!(settings.app.to_string(), "app:application");
        assert_eq!(settings.workers, 1);
        assert_eq!(settings.bind, vec![tcp("127.0.0.1", 8000)]);
        assert_eq!(settings.backlog, 2048);
        assert_eq!(settings.log_level, LogLevel::Info);
        assert_eq!(settings.keepalive, 2);
        assert_eq!(settings.worker_connections, 10000);
        assert_eq!(settings.graceful_timeout, 30);
        assert_eq!(settings.limit_request_line, 4094);
        assert_eq!(settings.limit_request_fields, 100);
        assert_eq!(settings.limit_request_field_size, 8190);
        assert_eq!(settings.chdir, None);
        assert!(settings.pythonpath.is_empty());
        assert_eq!(settings.virtualenv, None);
    }

    #[test]
    fn flags_set_their_fields() {
        let settings = parse(&[
            "-w",
            "4",
            "-b",
            "0.0.0.0:9000",
            "--bind",
            "unix:/tmp/x.sock",
            "--backlog",
            "64",
            "--chdir",
            "/srv",
            "--pythonpath",
            "a,b",
            "--virtualenv",
            "/venv",
            "--log-level",
            "WARNING",
            "--keep-alive",
            "5",
            "--worker-connections",
            "10",
            "--graceful-timeout",
            "7",
            "--limit-request-line",
            "0",
            "--limit-request-fields",
            "20",
            "--limit-request-field-size",
            "100",
            "pkg.mod:create_app()",
        ])
        .unwrap();
        assert_eq!(settings.workers, 4);
        assert_eq!(
            settings.bind,
            vec![
                tcp("0.0.0.0", 9000),
                Bind::unsaid(BindAddress::Unix("/tmp/x.sock".into()))
            ]
        );
        assert_eq!(settings.backlog, 64);
        assert_eq!(settings.chdir, Some(PathBuf::from("/srv")));
        assert_eq!(
            settings.pythonpath,
            vec![PathBuf::from("a"), PathBuf::from("b")]
        );
        assert_eq!(settings.virtualenv, Some(PathBuf::from("/venv")));
        assert_eq!(settings.log_level, LogLevel::Warning);
        assert_eq!(settings.keepalive, 5);
        assert_eq!(settings.worker_connections, 10);
        assert_eq!(settings.graceful_timeout, 7);
        assert_eq!(settings.limit_request_line, 0);
        assert_eq!(settings.limit_request_fields, 20);
        assert_eq!(settings.limit_request_field_size, 100);
        assert_eq!(settings.app.module, "pkg.mod");
        assert_eq!(settings.app.expression, "create_app()");
    }

    #[test]
    fn a_repeated_flag_takes_its_last_value_and_binds_accumulate() {
        let settings =
            parse(&["-w", "2", "--workers", "3", "-b", ":1", "-b", ":2", "a:b"]).unwrap();
        assert_eq!(settings.workers, 3);
        assert_eq!(settings.bind, vec![tcp("", 1), tcp("", 2)]);
    }

    #[test]
    fn environment_supplies_defaults_under_the_command_line() {
        let cases: &[Case<(u32, Bind)>] = &[
            (
                &["a:b"],
                &[("WEB_CONCURRENCY", "3")],
                (3, tcp("127.0.0.1", 8000)),
            ),
            (
                &["-w", "2", "a:b"],
                &[("WEB_CONCURRENCY", "3")],
                (2, tcp("127.0.0.1", 8000)),
            ),
            (&["a:b"], &[("PORT", "5000")], (1, tcp("0.0.0.0", 5000))),
            (
                &["-b", "127.0.0.1:1", "a:b"],
                &[("PORT", "5000")],
                (1, tcp("127.0.0.1", 1)),
            ),
            (
                &["a:b"],
                &[("PORT", ""), ("WEB_CONCURRENCY", "")],
                (1, tcp("127.0.0.1", 8000)),
            ),
        ];
        for (args, env, (workers, bind)) in cases {
            let settings = parse_with_env(args, env).unwrap();
            assert_eq!(settings.workers, *workers, "{args:?} {env:?}");
            assert_eq!(settings.bind, vec![bind.clone()], "{args:?} {env:?}");
        }
        let settings = parse_with_env(&["a:b"], &[("VIRTUAL_ENV", "/venv")]).unwrap();
        assert_eq!(settings.virtualenv, Some(PathBuf::from("/venv")));
    }

    #[test]
    fn bad_values_give_one_line_naming_the_setting() {
        let cases: &[Case<&str>] = &[
            (
                &["-b", "x:y", "a:b"],
                &[],
                "--bind: 'x:y' is not HOST:PORT, [V6]:PORT or unix:PATH (bad port 'y')",
            ),
            (&["--bind=::1", "a:b"], &[], "--bind: "),
            (
                &["-w", "0", "a:b"],
                &[],
                "--workers: '0' workers cannot serve",
            ),
            (
                &["-w", "many", "a:b"],
                &[],
                "--workers: 'many' is not a whole number",
            ),
            (
                &["--workers=-3", "a:b"],
                &[],
                "--workers: '-3' is not a whole number",
            ),
            (
                &["a:b"],
                &[("WEB_CONCURRENCY", "zero")],
                "WEB_CONCURRENCY: 'zero' is not a whole number",
            ),
            (
                &["a:b"],
                &[("WEB_CONCURRENCY", "0")],
                "WEB_CONCURRENCY: '0' workers",
            ),
            (
                &["a:b"],
                &[("PORT", "http")],
                "PORT: 'http' is not a port number",
            ),
            (
                &["a:b"],
                &[("PORT", "70000")],
                "PORT: '70000' is not a port number",
            ),
            (
                &["--log-level", "loud", "a:b"],
                &[],
                "--log-level: 'loud' is not one of debug, info, warning, error, critical",
            ),
            (
                &["--backlog", "0", "a:b"],
                &[],
                "--backlog: '0' is not a whole number",
            ),
            (
                &["1nvalid:app"],
                &[],
                "APP_MODULE: '1nvalid:app' is not MODULE:VARIABLE",
            ),
            (&["mod:"], &[], "APP_MODULE: 'mod:' names no variable"),
            (
                &["--keep-alive", "x", "a:b"],
                &[],
                "--keep-alive: 'x' is not a whole number (0 or more)",
            ),
        ];
        for (args, env, expected) in cases {
            let err = parse_with_env(args, env).expect_err(&format!("{args:?}"));
            assert!(
                matches!(err, ConfigError::Invalid { .. }),
                "{args:?}: {err:?}"
            );
            let message = err.to_string();
            assert!(message.starts_with(expected), "{args:?}: {message}");
            assert!(!message.contains('\n'), "{args:?}: {message}");
            assert_eq!(err.exit_code(), 1);
        }
    }

    #[test]
    fn malformed_command_lines_are_left_to_clap() {
        let cases: &[(&[&str], i32)] = &[
            (&[], 2),
            (&["a:b", "--no-such-flag"], 2),
            (&["a:b", "c:d"], 2),
            (&["--help"], 0),
            (&["--version"], 0),
        ];
        for (args, code) in cases {
            let err = parse(args).expect_err(&format!("{args:?}"));
            assert!(
                matches!(err, ConfigError::CommandLine(_)),
                "{args:?}: {err:?}"
            );
            assert_eq!(err.exit_code(), *code, "{args:?}");
        }
    }

    #[test]
    fn lifecycle_flags_set_their_fields() {
        let settings = parse(&[
            "-p",
            "/run/app.pid",
            "--reuse-port",
            "--name",
            "shop",
            "--umask",
            "022",
            "--log-file",
            "/var/log/app.log",
            "a:b",
        ])
        .unwrap();
        assert_eq!(settings.pid, Some(PathBuf::from("/run/app.pid")));
        assert!(settings.reuse_port);
        assert_eq!(settings.proc_name.as_deref(), Some("shop"));
        assert_eq!(settings.umask, Some(0o22));
        assert_eq!(settings.error_logfile, PathBuf::from("/var/log/app.log"));
        let defaults = parse(&["a:b"]).unwrap();
        assert_eq!(defaults.pid, None);
        assert!(!defaults.reuse_port);
        assert_eq!(defaults.umask, None);
        assert_eq!(defaults.error_logfile, PathBuf::from("-"));
        let named = parse(&["--error-logfile", "-", "a:b"]).unwrap();
        assert_eq!(named.error_logfile, PathBuf::from("-"));
    }

    #[test]
    fn the_process_title_name_defaults_to_the_app_module() {
        assert_eq!(parse(&["pkg.mod:app"]).unwrap().proc_name(), "pkg.mod:app");
        assert_eq!(
            parse(&["pkg.mod"]).unwrap().proc_name(),
            "pkg.mod:application"
        );
        assert_eq!(parse(&["-n", "shop", "a:b"]).unwrap().proc_name(), "shop");
    }

    #[test]
    fn umask_is_octal() {
        let cases: &[(&str, Option<u32>)] = &[
            ("0", Some(0)),
            ("022", Some(0o22)),
            ("0o077", Some(0o77)),
            ("0O077", Some(0o77)),
            ("0777", Some(0o777)),
            ("79", Some(0o117)),
            ("0x1f", Some(0o37)),
            ("0778", None),
            ("01000", None),
            ("1000", None),
            ("", None),
            ("0o", None),
            ("-1", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_umask(text).ok(), *expected, "{text}");
        }
        let err = parse(&["--umask", "09", "a:b"]).unwrap_err();
        assert!(err.to_string().starts_with("--umask: '09' is not a mask"));
    }

    #[test]
    fn clap_argument_names_become_setting_names() {
        let cases = [
            ("--bind <ADDRESS>", "--bind"),
            ("--workers <INT>", "--workers"),
            ("<APP_MODULE>", "APP_MODULE"),
            ("[APP_MODULE]", "APP_MODULE"),
            ("--log-level", "--log-level"),
        ];
        for (clap_arg, expected) in cases {
            assert_eq!(setting_name(clap_arg), expected);
        }
    }

    #[test]
    fn version_is_the_package_version() {
        let err = parse(&["--version"]).unwrap_err();
        let ConfigError::CommandLine(err) = err else {
            panic!()
        };
        assert_eq!(err.to_string().trim(), "rgunicorn 0.1.0");
    }
}
