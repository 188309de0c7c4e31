//! gunicorn settings and server hooks rgunicorn does not take, listed once
//! for both the command line and the config file. A gunicorn command
//! line carried over must fail loudly where something does not apply, with
//! the reason, rather than with a bare "unexpected argument" (or clap's
//! "similar argument" tip, which offers a near name).
//! gunicorn's default worker class, `-k sync`, and its threaded one,
//! `-k gthread` (whose thread count is `--threads`, a setting of ours), are
//! what rgunicorn's workers stand in for: they are accepted and dropped.

use super::ConfigError;
use std::ffi::OsString;

/// Why each kind of gunicorn-only flag does not carry over.
const SSL_VERSION: &str =
    "rustls offers TLS 1.2 and 1.3 only: set the floor with --tls-min-version 1.2|1.3";
const LOGGING: &str =
    "rgunicorn writes its own logs: use --error-logfile, --access-logfile and --access-logformat";

/// One gunicorn setting rgunicorn does not have: its config-file key and
/// its command-line flag (either may be absent), and why it does not carry
/// over.
pub struct GunicornOnly {
    /// The config-file key (`worker_class`), if gunicorn has one.
    pub key: Option<&'static str>,
    /// The long flag without `--` (`worker-class`), if gunicorn has one.
    pub flag: Option<&'static str>,
    /// The short flag (`k`), if any.
    pub short: Option<char>,
    /// Whether the flag takes a value.
    pub takes_value: bool,
    /// Why it does not carry over (shown for the flag).
    pub why: &'static str,
}

/// A setting with both a key and a flag.
const fn both(
    key: &'static str,
    flag: &'static str,
    takes_value: bool,
    why: &'static str,
) -> GunicornOnly {
    GunicornOnly {
        key: Some(key),
        flag: Some(flag),
        short: None,
        takes_value,
        why,
    }
}

/// A setting rgunicorn checks only as a config-file key.
const fn key_only(key: &'static str) -> GunicornOnly {
    GunicornOnly {
        key: Some(key),
        flag: None,
        short: None,
        takes_value: false,
        why: "",
    }
}

/// A flag with no config-file key of its own.
const fn flag_only(flag: &'static str, takes_value: bool, why: &'static str) -> GunicornOnly {
    GunicornOnly {
        key: None,
        flag: Some(flag),
        short: None,
        takes_value,
        why,
    }
}

/// Every gunicorn setting rgunicorn does not take: the one list that both
/// the command line ([`check`]) and the config file consult.
pub const GUNICORN_ONLY: &[GunicornOnly] = &[
    GunicornOnly { short: Some('k'), ..both("worker_class", "worker-class", true, "rgunicorn has one kind of worker, an event loop per process serving many connections (with --threads N app threads); only `sync` and `gthread` carry over") },
    both("paste", "paste", true, "PasteDeploy configurations are not supported: name the WSGI callable as APP_MODULE"),
    flag_only("paster", true, "PasteDeploy configurations are not supported: name the WSGI callable as APP_MODULE"),
    key_only("raw_paste_global_conf"),
    both("ssl_version", "ssl-version", true, SSL_VERSION),
    both("logconfig", "log-config", true, LOGGING),
    both("logconfig_dict", "log-config-dict", true, LOGGING),
    both("logconfig_json", "log-config-json", true, LOGGING),
    both("syslog", "log-syslog", false, LOGGING),
    both("syslog_addr", "log-syslog-to", true, LOGGING),
    both("syslog_prefix", "log-syslog-prefix", true, LOGGING),
    both("syslog_facility", "log-syslog-facility", true, LOGGING),
    both("logger_class", "logger-class", true, LOGGING),
    both("disable_redirect_access_to_syslog", "no-redirect-access-to-syslog", false, LOGGING),
    both("worker_tmp_dir", "worker-tmp-dir", true, "not needed: workers prove they are alive through shared memory, not a file"),
    both("reload_engine", "reload-engine", true, "--reload polls file modification times; there is no engine to choose"),
    both("spew", "spew", false, "not supported: use a Python tracer inside the app"),
    both("enable_stdio_inheritance", "enable-stdio-inheritance", false, "not needed: stdio is inherited except under --daemon, where --error-logfile receives it"),
    key_only("default_proc_name"),
    key_only("strip_header_spaces"),
    key_only("permit_obsolete_folding"),
    key_only("permit_unconventional_http_method"),
    key_only("permit_unconventional_http_version"),
    key_only("casefold_http_method"),
    key_only("forwarder_headers"),
    key_only("tmp_upload_dir"),
];

/// Whether `key` is a gunicorn config-file key rgunicorn does not have.
pub fn is_gunicorn_only_key(key: &str) -> bool {
    GUNICORN_ONLY.iter().any(|setting| setting.key == Some(key))
}

/// Which of gunicorn's processes calls a server hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookCaller {
    /// gunicorn's master: rgunicorn's master never runs Python, so these
    /// are never called.
    Master,
    /// A worker: rgunicorn's workers call these (`--hooks`).
    Worker,
    /// gunicorn's TLS setup (`ssl_context`): rgunicorn builds its TLS
    /// configuration from the settings (docs/tls.md), in the master.
    Tls,
}

/// gunicorn's server hooks: Python functions, which belong in the `--hooks`
/// module rather than in the config file.
pub const GUNICORN_HOOKS: [(&str, HookCaller); 16] = [
    ("on_starting", HookCaller::Master),
    ("on_reload", HookCaller::Master),
    ("when_ready", HookCaller::Master),
    ("pre_fork", HookCaller::Master),
    ("post_fork", HookCaller::Worker),
    ("post_worker_init", HookCaller::Worker),
    ("worker_int", HookCaller::Worker),
    ("worker_abort", HookCaller::Worker),
    ("pre_exec", HookCaller::Master),
    ("pre_request", HookCaller::Worker),
    ("post_request", HookCaller::Worker),
    ("child_exit", HookCaller::Master),
    ("worker_exit", HookCaller::Worker),
    ("nworkers_changed", HookCaller::Master),
    ("on_exit", HookCaller::Master),
    ("ssl_context", HookCaller::Tls),
];

/// The hooks gunicorn's `caller` calls, in [`GUNICORN_HOOKS`] order.
pub fn hooks_called_by(caller: HookCaller) -> impl Iterator<Item = &'static str> {
    GUNICORN_HOOKS
        .into_iter()
        .filter(move |(_, by)| *by == caller)
        .map(|(name, _)| name)
}

/// Checks `args` (one source's words, without the program name) for
/// gunicorn-only flags: returns them without `-k sync`/`-k gthread`, or a one-line
/// error for the first flag that does not carry over.
pub fn check(args: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    let mut kept = Vec::with_capacity(args.len());
    let mut words = args.into_iter();
    while let Some(word) = words.next() {
        let Some(text) = word.to_str() else {
            kept.push(word);
            continue;
        };
        if text == "--" {
            kept.push(word);
            kept.extend(words);
            break;
        }
        let Some((flag, takes_value, why, inline_value)) = find(text) else {
            kept.push(word);
            continue;
        };
        let value = match (takes_value, inline_value) {
            (true, Some(value)) => Some(value),
            (true, None) => words.next().and_then(|v| v.into_string().ok()),
            (false, _) => None,
        };
        if flag == "worker-class" && value.as_deref().is_some_and(is_carried_over_class) {
            continue;
        }
        let shown = match &value {
            Some(value) => format!("--{flag} {value}"),
            None => format!("--{flag}"),
        };
        return Err(ConfigError::invalid(
            &shown,
            format!("gunicorn's flag does not apply: {why} (see docs/migrating-from-gunicorn.md)"),
        ));
    }
    Ok(kept)
}

/// `sync` or `gthread`, or their full class paths: rgunicorn's worker is
/// both (threads come from `--threads`).
fn is_carried_over_class(class: &str) -> bool {
    matches!(
        class,
        "sync"
            | "gunicorn.workers.sync.SyncWorker"
            | "gthread"
            | "gunicorn.workers.gthread.ThreadWorker"
    )
}

/// The gunicorn-only flag `word` names, with an inline value
/// (`--flag=value`, `-kvalue`).
fn find(word: &str) -> Option<(&'static str, bool, &'static str, Option<String>)> {
    if let Some(long) = word.strip_prefix("--") {
        let (name, inline) = match long.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (long, None),
        };
        return GUNICORN_ONLY
            .iter()
            .find(|setting| setting.flag == Some(name))
            .and_then(|setting| Some((setting.flag?, setting.takes_value, setting.why, inline)));
    }
    let short = word.strip_prefix('-')?;
    let mut chars = short.chars();
    let letter = chars.next()?;
    let setting = GUNICORN_ONLY
        .iter()
        .find(|setting| setting.short == Some(letter))?;
    let rest = chars.as_str();
    Some((
        setting.flag?,
        setting.takes_value,
        setting.why,
        (!rest.is_empty()).then(|| rest.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(words: &[&str]) -> Result<Vec<String>, String> {
        check(words.iter().map(OsString::from).collect())
            .map(|kept| kept.into_iter().map(|w| w.into_string().unwrap()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn sync_and_gthread_worker_classes_are_accepted_and_dropped() {
        for words in [
            &["-k", "sync", "app:a"][..],
            &["--worker-class=sync", "app:a"],
            &["-ksync", "app:a"],
            &["-k", "gthread", "app:a"],
            &[
                "--worker-class",
                "gunicorn.workers.gthread.ThreadWorker",
                "app:a",
            ],
        ] {
            assert_eq!(run(words), Ok(vec!["app:a".to_string()]), "{words:?}");
        }
    }

    #[test]
    fn flags_that_do_not_carry_over_say_why() {
        let cases: &[(&[&str], &str)] = &[
            (&["-k", "gevent"], "--worker-class gevent: gunicorn's flag does not apply: rgunicorn has one kind of worker"),
            (&["--ssl-version=TLSv1_2"], "--ssl-version TLSv1_2: gunicorn's flag does not apply: rustls offers TLS 1.2 and 1.3 only"),
        ];
        for (words, start) in cases {
            let error = run(words).unwrap_err();
            assert!(error.starts_with(start), "{words:?}: {error}");
        }
    }

    #[test]
    fn other_words_pass_through_untouched() {
        let words = [
            "-w",
            "4",
            "--reload",
            "-b",
            "[::1]:80",
            "app:a",
            "--",
            "--preload",
        ];
        assert_eq!(run(&words).unwrap(), words.to_vec());
    }
}
