//! The config file: a TOML table whose keys are gunicorn's setting names
//! (see [`super::keys`]), turned into command-line words so that clap
//! validates file values exactly as it validates flags.
//!
//! This module checks keys and TOML types and remembers the line of each
//! value; the values themselves are validated by the caller, one setting at
//! a time, so an error can name the file and line.

use super::gunicorn_only::{is_gunicorn_only_key, GUNICORN_HOOKS};
use super::keys::{closest_key, SettingKey, GUNICORN_RESHAPED, RUN_ONLY_IDS};
use super::ConfigError;
use clap::{Arg, ArgAction, Command};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use toml::{Spanned, Value};

/// One setting of the file, ready for clap.
#[derive(Debug, Clone)]
pub struct FileSetting {
    /// The key as written.
    pub key: String,
    /// The 1-based line of the value.
    pub line: usize,
    /// Command-line words equivalent to the value (`--workers=4`; the bare
    /// value for `wsgi_app`; nothing for `false` flags).
    pub words: Vec<OsString>,
}

/// Parses the text of the config file at `path` into its settings, in file
/// order: the keys are taken in the order they are written (TOML's table
/// is keyed by name, so they are put back in the order of their values'
/// positions), and the first bad one in the file is the error.
pub fn parse(path: &Path, text: &str, command: &Command) -> Result<Vec<FileSetting>, ConfigError> {
    let table: BTreeMap<String, Spanned<Value>> = toml::from_str(text).map_err(|err| {
        let line = err.span().map_or(1, |span| line_of(text, span.start));
        ConfigError::file(path, line, err.message().trim().replace('\n', " "))
    })?;
    let mut entries: Vec<(String, Spanned<Value>)> = table.into_iter().collect();
    entries.sort_by_key(|(_, value)| value.span().start);
    let keys = super::keys::setting_keys(command);
    let mut settings = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let line = line_of(text, value.span().start);
        let Some(setting) = keys.iter().find(|k| k.answers_to(&key)) else {
            let message = match value.get_ref() {
                Value::Table(_) => format!(
                    "unknown setting '{key}' (settings go at the top level, not in a [{key}] table)"
                ),
                _ => unknown_key_message(&key, &keys),
            };
            return Err(ConfigError::file(path, line, message));
        };
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_id() == setting.id.as_str())
            .expect("setting keys come from the command's arguments");
        let words = words_for(arg, value.get_ref()).map_err(|accepts| {
            ConfigError::file(
                path,
                line,
                format!(
                    "'{key}' takes {accepts}, not {}",
                    type_name(value.get_ref())
                ),
            )
        })?;
        settings.push(FileSetting { key, line, words });
    }
    Ok(settings)
}

/// The message for a key that names no setting.
fn unknown_key_message(key: &str, keys: &[SettingKey]) -> String {
    if RUN_ONLY_IDS.contains(&key) {
        return format!(
            "'{key}' cannot be set in a config file (only on the command line or in RGUNICORN_CMD_ARGS)"
        );
    }
    if let Some((_, hint)) = GUNICORN_RESHAPED.iter().find(|(name, _)| *name == key) {
        return format!("unknown setting '{key}' ({hint})");
    }
    if GUNICORN_HOOKS.iter().any(|(name, _)| *name == key) {
        return format!(
            "'{key}' is a server hook: define it in a Python module named by `hooks` (see docs/hooks.md)"
        );
    }
    if is_gunicorn_only_key(key) {
        return format!(
            "gunicorn setting '{key}' is not supported by rgunicorn (see docs/migrating-from-gunicorn.md)"
        );
    }
    match closest_key(key, keys) {
        Some(close) => format!("unknown setting '{key}' (did you mean '{close}'?)"),
        None => format!("unknown setting '{key}' (see docs/settings.md)"),
    }
}

/// The command-line words for `value` of `arg`, or what the setting accepts.
fn words_for(arg: &Arg, value: &Value) -> Result<Vec<OsString>, &'static str> {
    let long = arg.get_long().unwrap_or_default();
    let option = |text: &str| OsString::from(format!("--{long}={text}"));
    if arg.is_positional() {
        return match value {
            Value::String(text) => Ok(vec![text.into()]),
            _ => Err("a string"),
        };
    }
    match (arg.get_action(), value) {
        (ArgAction::SetTrue, Value::Boolean(true)) => Ok(vec![format!("--{long}").into()]),
        (ArgAction::SetTrue, Value::Boolean(false)) => Ok(Vec::new()),
        (ArgAction::SetTrue, _) => Err("true or false"),
        (_, Value::Table(table)) if arg.get_id() == "secure_scheme_headers" => table
            .iter()
            .map(|(name, value)| Some(format!("{name}={}", scalar_text(value)?)))
            .collect::<Option<Vec<_>>>()
            .map(|pairs| vec![option(&pairs.join(","))])
            .ok_or("a table of header names to string values, or \"NAME=VALUE,...\""),
        (ArgAction::Append, Value::Array(items)) => items
            .iter()
            .map(|item| scalar_text(item).map(|text| option(&text)))
            .collect::<Option<Vec<_>>>()
            .ok_or("a string or an array of strings"),
        (ArgAction::Append, value) => scalar_text(value)
            .map(|text| vec![option(&text)])
            .ok_or("a string or an array of strings"),
        (_, value) => {
            scalar_text(value)
                .map(|text| vec![option(&text)])
                .ok_or(if is_numeric(arg) {
                    "a whole number"
                } else {
                    "a string"
                })
        }
    }
}

/// A string or integer as the text clap parses; `None` for other types.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Integer(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Whether `arg` takes a number (written as a TOML integer).
pub fn is_numeric(arg: &Arg) -> bool {
    arg.get_value_names()
        .and_then(|names| names.first())
        .is_some_and(|name| matches!(name.as_str(), "INT" | "SECONDS" | "BYTES"))
}

/// The TOML type of `value`, as a user would name it.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "a number",
        Value::Float(_) => "a fractional number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use clap::CommandFactory;

    fn words(text: &str) -> Result<Vec<String>, String> {
        parse(Path::new("rgunicorn.toml"), text, &Settings::command())
            .map(|settings| {
                settings
                    .into_iter()
                    .flat_map(|s| s.words)
                    .map(|w| w.into_string().unwrap())
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn keys_are_read_in_file_order() {
        assert_eq!(
            words("workers = 2\nbacklog = 7\n").unwrap(),
            ["--workers=2", "--backlog=7"]
        );
        let error = words("zz_first = 1\naa_second = 2\n").unwrap_err();
        assert!(error.contains(":1: unknown setting 'zz_first'"), "{error}");
    }

    #[test]
    fn values_become_command_line_words() {
        let text = "workers = 4\nbind = [\"127.0.0.1:1\", \"unix:/x\"]\nkeepalive = \"5\"\n\
                    reuse_port = true\nproxy_protocol = false\nwsgi_app = \"a:b\"\n\
                    loglevel = \"debug\"\n";
        assert_eq!(
            words(text).unwrap(),
            [
                "--workers=4",
                "--bind=127.0.0.1:1",
                "--bind=unix:/x",
                "--keep-alive=5",
                "--reuse-port",
                "a:b",
                "--log-level=debug"
            ]
        );
        assert_eq!(words("bind = \":9\"").unwrap(), ["--bind=:9"]);
        assert_eq!(
            words(
                "secure_scheme_headers = { X-FORWARDED-PROTO = \"https\", X-SCHEME = \"https\" }"
            )
            .unwrap(),
            ["--secure-scheme-headers=X-FORWARDED-PROTO=https,X-SCHEME=https"]
        );
        assert_eq!(words("keep_alive = 3").unwrap(), ["--keep-alive=3"]);
    }

    #[test]
    fn bad_keys_and_types_name_the_line() {
        let cases = [
            (
                "workers = 2\n\nworker = 3\n",
                "rgunicorn.toml:3: unknown setting 'worker' (did you mean 'workers'?)",
            ),
            (
                "xyzzy = 1",
                "rgunicorn.toml:1: unknown setting 'xyzzy' (see docs/settings.md)",
            ),
            (
                "worker_class = \"gevent\"",
                "rgunicorn.toml:1: gunicorn setting 'worker_class' is not supported by rgunicorn",
            ),
            (
                "[server]\nworkers = 2",
                "rgunicorn.toml:1: unknown setting 'server' (settings go at the top level, not in a [server] table)",
            ),
            (
                "sendfile = false",
                "rgunicorn.toml:1: unknown setting 'sendfile' (write `no_sendfile = true` for `sendfile = false`)",
            ),
            (
                "config = \"other.toml\"",
                "rgunicorn.toml:1: 'config' cannot be set in a config file",
            ),
            (
                "post_fork = \"x\"",
                "rgunicorn.toml:1: 'post_fork' is a server hook: define it in a Python module named by `hooks`",
            ),
            (
                "\nworkers = true",
                "rgunicorn.toml:2: 'workers' takes a whole number, not a boolean",
            ),
            (
                "reuse_port = \"yes\"",
                "rgunicorn.toml:1: 'reuse_port' takes true or false, not a string",
            ),
            (
                "bind = [1.5]",
                "rgunicorn.toml:1: 'bind' takes a string or an array of strings, not an array",
            ),
            (
                "wsgi_app = 3",
                "rgunicorn.toml:1: 'wsgi_app' takes a string, not a number",
            ),
            ("a\nworkers = = 1", "rgunicorn.toml:1: "),
        ];
        for (text, expected) in cases {
            let message = words(text).unwrap_err();
            assert!(message.starts_with(expected), "{text:?}: {message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }
}
