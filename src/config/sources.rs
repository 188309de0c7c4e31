//! Merging the sources of settings, later wins: built-in defaults <
//! environment defaults (`WEB_CONCURRENCY`, `PORT`, `VIRTUAL_ENV`,
//! `FORWARDED_ALLOW_IPS`) < the config file (`-c FILE`, else
//! `./rgunicorn.toml` when present) < `RGUNICORN_CMD_ARGS` < the command
//! line.
//!
//! Each source is parsed on its own by clap (so every value is validated
//! where it was written, and an error names its source); then, per setting,
//! the words of the last source that gave it are kept (a later `--bind`
//! replaces every earlier one rather than adding to it) and parsed once more
//! over the environment defaults into [`Settings`].

use super::file;
use super::{environment_defaults, from_clap_error, ConfigError, Environment, Settings};
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable holding extra command-line arguments.
pub const CMD_ARGS_VAR: &str = "RGUNICORN_CMD_ARGS";
/// The config file read from the working directory when `-c` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "rgunicorn.toml";

/// The merged settings and how they print.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The effective settings.
    pub settings: Settings,
    /// Every setting as TOML, for `--print-config`.
    pub effective_toml: String,
}

/// Merges all sources. `args[0]` is the program name; `working_dir`, when
/// given, is where `./rgunicorn.toml` is looked for.
pub fn resolve(
    args: Vec<OsString>,
    env: &Environment,
    working_dir: Option<&Path>,
) -> Result<Resolved, ConfigError> {
    let mut args = args.into_iter();
    let program = args.next().unwrap_or_else(|| "rgunicorn".into());
    let cli = super::gunicorn_only::check(args.collect())?;
    let mut strict = Settings::command();
    for (arg_id, value) in environment_defaults(env)? {
        strict = strict.mut_arg(arg_id, |arg| arg.default_value(value));
    }
    let lenient = Settings::command().mut_arg("app", |arg| arg.required(false));

    let cli_layer = parse_layer(&lenient, &program, &cli)
        .map_err(|err| command_line_error(err, &strict, &program, &cli))?;
    let cmd_args_layer = match env.get(CMD_ARGS_VAR) {
        None => None,
        Some(line) => Some(parse_cmd_args(&lenient, &program, line)?),
    };
    let file_layer = match find_config_file(&cli_layer, cmd_args_layer.as_ref(), working_dir) {
        None => None,
        Some(path) => Some(parse_file(&lenient, &program, &path, working_dir)?),
    };

    let layers: Vec<&ArgMatches> = [file_layer.as_ref(), cmd_args_layer.as_ref()]
        .into_iter()
        .flatten()
        .chain(std::iter::once(&cli_layer))
        .collect();
    let merged = merge(&lenient, &layers);
    let matches = strict
        .clone()
        .try_get_matches_from(std::iter::once(program).chain(merged))
        .map_err(from_clap_error)?;
    let settings = Settings::from_arg_matches(&matches).map_err(from_clap_error)?;
    super::check_https_binds(&settings)?;
    let effective_toml = super::effective::render(&Settings::command(), &matches);
    Ok(Resolved {
        settings,
        effective_toml,
    })
}

/// Parses one source's words.
fn parse_layer(
    command: &Command,
    program: &OsString,
    words: &[OsString],
) -> Result<ArgMatches, clap::Error> {
    command
        .clone()
        .try_get_matches_from(std::iter::once(program).chain(words))
}

/// A command-line error; `--help` and `--version` are rendered by the real
/// command (where APP_MODULE is required).
fn command_line_error(
    err: clap::Error,
    strict: &Command,
    program: &OsString,
    cli: &[OsString],
) -> ConfigError {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        if let Err(err) = parse_layer(strict, program, cli) {
            return ConfigError::CommandLine(err);
        }
    }
    from_clap_error(err)
}

/// `RGUNICORN_CMD_ARGS`, split like a shell command line and parsed.
fn parse_cmd_args(
    command: &Command,
    program: &OsString,
    line: &str,
) -> Result<ArgMatches, ConfigError> {
    let words: Vec<OsString> = super::shell_words::split(line)
        .map_err(|err| ConfigError::invalid(CMD_ARGS_VAR, err.to_string()))?
        .into_iter()
        .map(OsString::from)
        .collect();
    let words = super::gunicorn_only::check(words)
        .map_err(|err| ConfigError::invalid(CMD_ARGS_VAR, err.to_string()))?;
    parse_layer(command, program, &words)
        .map_err(|err| ConfigError::invalid(CMD_ARGS_VAR, clap_message(err)))
}

/// The config file to read: `-c` from the command line, else from
/// `RGUNICORN_CMD_ARGS`, else `./rgunicorn.toml` if `working_dir` has one.
fn find_config_file(
    cli_layer: &ArgMatches,
    cmd_args_layer: Option<&ArgMatches>,
    working_dir: Option<&Path>,
) -> Option<PathBuf> {
    config_path(cli_layer)
        .or_else(|| cmd_args_layer.and_then(config_path))
        .or_else(|| {
            let default = working_dir?.join(DEFAULT_CONFIG_FILE);
            default
                .is_file()
                .then(|| PathBuf::from(DEFAULT_CONFIG_FILE))
        })
}

/// Reads and parses the config file `path` (relative to `working_dir` when
/// given; shown in errors as given), validating each setting on its own.
fn parse_file(
    command: &Command,
    program: &OsString,
    path: &Path,
    working_dir: Option<&Path>,
) -> Result<ArgMatches, ConfigError> {
    let full = match working_dir {
        Some(dir) => dir.join(path),
        None => path.to_path_buf(),
    };
    let text = std::fs::read_to_string(&full).map_err(|err| ConfigError::Read {
        path: path.to_path_buf(),
        reason: err.to_string(),
    })?;
    let settings = file::parse(path, &text, command)?;
    for setting in &settings {
        parse_layer(command, program, &setting.words).map_err(|err| {
            let message = match from_clap_error(err) {
                ConfigError::Invalid { message, .. } => message,
                other => other.to_string().trim_start_matches("error: ").to_string(),
            };
            ConfigError::file(path, setting.line, format!("{}: {message}", setting.key))
        })?;
    }
    let words: Vec<OsString> = settings.into_iter().flat_map(|s| s.words).collect();
    parse_layer(command, program, &words)
        .map_err(|err| ConfigError::file(path, 1, clap_message(err)))
}

/// One line for a clap error in a source other than the command line.
fn clap_message(err: clap::Error) -> String {
    match from_clap_error(err) {
        ConfigError::Invalid { setting, message } => format!("{setting}: {message}"),
        other => other.to_string().trim_start_matches("error: ").to_string(),
    }
}

/// The `-c/--config` a source gave.
fn config_path(layer: &ArgMatches) -> Option<PathBuf> {
    if layer.value_source("config") != Some(ValueSource::CommandLine) {
        return None;
    }
    let raw = layer.get_raw("config")?.next_back()?;
    Some(PathBuf::from(raw))
}

/// The words of the merged sources: per setting, those of the last layer
/// that gave it; APP_MODULE last.
fn merge(command: &Command, layers: &[&ArgMatches]) -> Vec<OsString> {
    let mut words = Vec::new();
    let mut positional = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let Some(layer) = layers
            .iter()
            .rev()
            .find(|layer| layer.value_source(id) == Some(ValueSource::CommandLine))
        else {
            continue;
        };
        let raw = layer.get_raw(id).into_iter().flatten();
        if arg.is_positional() {
            positional.extend(raw.map(OsString::from));
        } else if matches!(arg.get_action(), ArgAction::SetTrue) {
            words.push(format!("--{}", arg.get_long().unwrap_or(id)).into());
        } else {
            let long = arg.get_long().unwrap_or(id);
            for value in raw {
                let mut word = OsString::from(format!("--{long}="));
                word.push(value);
                words.push(word);
            }
        }
    }
    words.extend(positional);
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Bind, BindAddress};

    fn resolve_with(args: &[&str], env: &[(&str, &str)], dir: Option<&Path>) -> Settings {
        let args = std::iter::once("rgunicorn")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        resolve(args, &Environment::from_pairs(env.iter().copied()), dir)
            .unwrap()
            .settings
    }

    fn port(bind: &Bind) -> u16 {
        match &bind.address {
            BindAddress::Tcp { port, .. } => *port,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_later_source_replaces_a_repeated_setting_rather_than_adding_to_it() {
        let cmd_args = [(CMD_ARGS_VAR, "-b :2 -b :3 -w 4")];
        let settings = resolve_with(&["-b", ":1", "a:b"], &cmd_args, None);
        assert_eq!(settings.bind.iter().map(port).collect::<Vec<_>>(), [1]);
        assert_eq!(settings.workers, 4);
        let settings = resolve_with(&["a:b"], &cmd_args, None);
        assert_eq!(settings.bind.iter().map(port).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn the_command_line_app_module_beats_one_in_cmd_args() {
        let settings = resolve_with(&["a:b"], &[(CMD_ARGS_VAR, "x:y")], None);
        assert_eq!(settings.app.to_string(), "a:b");
        let settings = resolve_with(&[], &[(CMD_ARGS_VAR, "x:y")], None);
        assert_eq!(settings.app.to_string(), "x:y");
    }

    #[test]
    fn the_working_directory_file_is_read_only_when_a_directory_is_given() {
        let dir = std::env::temp_dir().join(format!("rgunicorn-sources-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(DEFAULT_CONFIG_FILE), "workers = 7\n").unwrap();
        assert_eq!(resolve_with(&["a:b"], &[], Some(&dir)).workers, 7);
        assert_eq!(resolve_with(&["a:b"], &[], None).workers, 1);
        assert_eq!(
            resolve_with(&["-w", "2", "a:b"], &[], Some(&dir)).workers,
            2
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
