//! `--print-config`: the effective settings written as a TOML config file,
//! one line per setting under its config-file key, in `--help` order.
//! Values are clap's raw strings (given or default), so the output read back
//! with `-c` parses to the same settings.

use super::file::is_numeric;
use super::keys::setting_keys;
use clap::{ArgAction, ArgMatches, Command};
use toml::Value;

/// Renders every setting of `matches` (parsed by `command`) as TOML.
pub fn render(command: &Command, matches: &ArgMatches) -> String {
    let mut out = String::from(
        "# The effective settings of this rgunicorn run (rgunicorn --print-config).\n\
         # This is a valid config file: rgunicorn -c FILE\n\n",
    );
    for key in setting_keys(command) {
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_id() == key.id.as_str())
            .expect("setting keys come from the command's arguments");
        let raw: Option<Vec<String>> = matches.get_raw(&key.id).map(|values| {
            values
                .map(|value| value.to_string_lossy().into_owned())
                .collect()
        });
        let value = match raw {
            None => {
                out.push_str(&format!("# {} is not set\n", key.key));
                continue;
            }
            Some(raw) if matches!(arg.get_action(), ArgAction::SetTrue) => {
                Value::Boolean(raw.iter().any(|v| v == "true"))
            }
            Some(raw) if matches!(arg.get_action(), ArgAction::Append) => {
                Value::Array(raw.into_iter().map(Value::String).collect())
            }
            Some(raw) => {
                let text = raw.into_iter().next_back().unwrap_or_default();
                match canonical_integer(&text) {
                    Some(number) if is_numeric(arg) => Value::Integer(number),
                    _ => Value::String(text),
                }
            }
        };
        out.push_str(&format!("{} = {value}\n", key.key));
    }
    out
}

/// `text` as an integer when it is written exactly as TOML would write the
/// number back (so `022` stays a string: it is an octal umask).
fn canonical_integer(text: &str) -> Option<i64> {
    let number: i64 = text.parse().ok()?;
    (number.to_string() == text).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_decimals_become_integers() {
        assert_eq!(canonical_integer("30"), Some(30));
        assert_eq!(canonical_integer("0"), Some(0));
        assert_eq!(canonical_integer("022"), None);
        assert_eq!(canonical_integer("+3"), None);
        assert_eq!(canonical_integer("0x1f"), None);
    }
}
