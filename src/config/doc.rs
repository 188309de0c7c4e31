//! docs/settings.md, rendered from the clap definition of [`Settings`]: one
//! section per setting with its flags, config-file key, environment
//! variable, default and doc comment. `tests/config_sources.rs` fails when
//! the file in the repository differs from this rendering.

use super::keys::{setting_keys, SettingKey};
use super::Settings;
use clap::{Arg, ArgAction, CommandFactory};

/// Settings whose default an environment variable sets (besides clap's own
/// `env` attribute): `(clap id, variable)`.
const ENVIRONMENT_DEFAULTS: [(&str, &str); 4] = [
    ("workers", "WEB_CONCURRENCY"),
    ("bind", "PORT (binds 0.0.0.0:$PORT)"),
    ("virtualenv", "VIRTUAL_ENV"),
    (
        "no_sendfile",
        "SENDFILE (0, false, no or off turns sendfile off)",
    ),
];

const INTRODUCTION: &str = "\
# Settings

<!-- Generated from src/config/mod.rs by `RGUNICORN_BLESS=1 cargo test --test config_sources settings_doc`: do not edit. -->

Every setting can be given, later sources winning:

1. built-in defaults;
2. environment defaults: `WEB_CONCURRENCY`, `PORT`, `VIRTUAL_ENV`,
   `FORWARDED_ALLOW_IPS`, `SENDFILE` (as in gunicorn, these are defaults, so a config
   file overrides them);
3. a TOML config file: `-c FILE`, else `./rgunicorn.toml` when it exists in
   the working directory. Keys are gunicorn's setting names (below); values
   are strings, whole numbers, booleans, or arrays of strings for settings
   that repeat (`bind`, `pythonpath`);
4. `RGUNICORN_CMD_ARGS`: extra command-line arguments, split like a shell
   command line (quotes and backslashes);
5. the command line.

For a setting that repeats (`--bind`), the last source that gives it
replaces what earlier sources gave.

A bad key or value stops rgunicorn before it starts anything, with one line
naming the source (`rgunicorn.toml:3: unknown setting 'worker' (did you mean
'workers'?)`) and exit code 1. `--check-config` also imports the application
in a child process; `--print-config` prints the effective settings as a
config file. See `examples/rgunicorn.toml` and
`docs/migrating-from-gunicorn.md`.
";

/// The settings reference as Markdown.
pub fn settings_markdown() -> String {
    let command = Settings::command();
    let keys = setting_keys(&command);
    let mut out = String::from(INTRODUCTION);
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let key = keys.iter().find(|k| k.id == id);
        out.push_str(&section(arg, key));
    }
    out
}

/// One setting's section.
fn section(arg: &Arg, key: Option<&SettingKey>) -> String {
    let title = match key {
        Some(key) => key.key.clone(),
        None => format!("--{}", arg.get_long().unwrap_or(arg.get_id().as_str())),
    };
    let mut out = format!("\n## `{title}`\n\n| | |\n|---|---|\n");
    out.push_str(&format!("| Command line | {} |\n", table_cell(&flags(arg))));
    let file_key = match key {
        None => "none (command line and `RGUNICORN_CMD_ARGS` only)".to_string(),
        Some(SettingKey {
            key,
            alias: Some(alias),
            ..
        }) => format!("`{key}` (or `{alias}`)"),
        Some(SettingKey { key, .. }) => format!("`{key}`"),
    };
    out.push_str(&format!("| Config file | {file_key} |\n"));
    if let Some(variable) = environment_variable(arg) {
        out.push_str(&format!("| Environment default | `{variable}` |\n"));
    }
    out.push_str(&format!(
        "| Default | {} |\n\n",
        table_cell(&default_text(arg))
    ));
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    out.push_str(help.trim());
    out.push('\n');
    out
}

/// `text` with its `|` escaped, so it stays in one Markdown table cell.
fn table_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// `-w INT`, `--workers INT`; the bare value name for the positional.
fn flags(arg: &Arg) -> String {
    let value = match arg.get_action() {
        ArgAction::SetTrue => String::new(),
        _ => arg
            .get_value_names()
            .and_then(|names| names.first())
            .map(|name| format!(" {name}"))
            .unwrap_or_default(),
    };
    if arg.is_positional() {
        return format!("`{}` (positional)", value.trim());
    }
    let mut forms = Vec::new();
    if let Some(short) = arg.get_short() {
        forms.push(format!("`-{short}{value}`"));
    }
    if let Some(long) = arg.get_long() {
        forms.push(format!("`--{long}{value}`"));
    }
    for alias in arg.get_all_aliases().into_iter().flatten() {
        forms.push(format!("`--{alias}{value}`"));
    }
    forms.join(", ")
}

/// The environment variable that sets this setting's default, if any.
fn environment_variable(arg: &Arg) -> Option<String> {
    if let Some(env) = arg.get_env() {
        return Some(env.to_string_lossy().into_owned());
    }
    ENVIRONMENT_DEFAULTS
        .iter()
        .find(|(id, _)| arg.get_id() == *id)
        .map(|(_, variable)| variable.to_string())
}

/// The built-in default, as Markdown.
fn default_text(arg: &Arg) -> String {
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return "`false`".to_string();
    }
    if arg.get_id() == "bind" {
        return format!("`{}`", super::DEFAULT_BIND);
    }
    let values: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| format!("`{}`", v.to_string_lossy()))
        .collect();
    if values.is_empty() {
        "none".to_string()
    } else {
        values.join(", ")
    }
}
