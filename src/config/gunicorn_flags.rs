//! gunicorn command-line flags rgunicorn does not take. A gunicorn command
//! line carried over must fail loudly where something does not apply, with
//! the reason, rather than with a bare "unexpected argument" (or clap's
//! "similar argument" tip, which offers `--reload` for `--preload`).
//! gunicorn's default worker class, `-k sync`, and its threaded one,
//! `-k gthread` (whose thread count is `--threads`, a setting of ours), are
//! what rgunicorn's workers stand in for: they are accepted and dropped.

use super::ConfigError;
use std::ffi::OsString;

/// Why each kind of gunicorn-only flag does not carry over.
const TLS: &str =
    "rgunicorn does not terminate TLS: put a proxy (nginx, HAProxy, a load balancer) in front";
const STATSD: &str = "rgunicorn has no statsd client: read the access log or the proxy's metrics";
const LOGGING: &str =
    "rgunicorn writes its own logs: use --error-logfile, --access-logfile and --access-logformat";

/// gunicorn-only flags: (long name, short name, takes a value, why).
const FLAGS: &[(&str, Option<char>, bool, &str)] = &[
    ("worker-class", Some('k'), true, "rgunicorn has one kind of worker, an event loop per process serving many connections (with --threads N app threads); only `sync` and `gthread` carry over"),
    ("preload", None, false, "the master never starts Python; every worker imports the app itself (HUP then always loads new code)"),
    ("paste", None, true, "PasteDeploy configurations are not supported: name the WSGI callable as APP_MODULE"),
    ("paster", None, true, "PasteDeploy configurations are not supported: name the WSGI callable as APP_MODULE"),
    ("certfile", None, true, TLS),
    ("keyfile", None, true, TLS),
    ("ca-certs", None, true, TLS),
    ("ssl-version", None, true, TLS),
    ("cert-reqs", None, true, TLS),
    ("ciphers", None, true, TLS),
    ("do-handshake-on-connect", None, false, TLS),
    ("suppress-ragged-eofs", None, false, TLS),
    ("statsd-host", None, true, STATSD),
    ("statsd-prefix", None, true, STATSD),
    ("dogstatsd-tags", None, true, STATSD),
    ("log-config", None, true, LOGGING),
    ("log-config-dict", None, true, LOGGING),
    ("log-config-json", None, true, LOGGING),
    ("log-syslog", None, false, LOGGING),
    ("log-syslog-to", None, true, LOGGING),
    ("log-syslog-prefix", None, true, LOGGING),
    ("log-syslog-facility", None, true, LOGGING),
    ("logger-class", None, true, LOGGING),
    ("no-redirect-access-to-syslog", None, false, LOGGING),
    ("worker-tmp-dir", None, true, "not needed: workers prove they are alive through shared memory, not a file"),
    ("reload-engine", None, true, "--reload polls file modification times; there is no engine to choose"),
    ("spew", None, false, "not supported: use a Python tracer inside the app"),
    ("enable-stdio-inheritance", None, false, "not needed: stdio is inherited except under --daemon, where --error-logfile receives it"),
];

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
        return FLAGS
            .iter()
            .find(|(flag, ..)| *flag == name)
            .map(|(flag, _, takes_value, why)| (*flag, *takes_value, *why, inline));
    }
    let short = word.strip_prefix('-')?;
    let mut chars = short.chars();
    let letter = chars.next()?;
    FLAGS
        .iter()
        .find(|(_, s, ..)| *s == Some(letter))
        .map(|(flag, _, takes_value, why)| {
            let rest = chars.as_str();
            (
                *flag,
                *takes_value,
                *why,
                (!rest.is_empty()).then(|| rest.to_string()),
            )
        })
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
            (&["--preload"], "--preload: gunicorn's flag does not apply: the master never starts Python"),
            (&["--certfile=/x.pem"], "--certfile /x.pem: gunicorn's flag does not apply: rgunicorn does not terminate TLS"),
            (&["-w", "2", "--statsd-host", "h:1"], "--statsd-host h:1"),
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
