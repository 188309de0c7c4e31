//! The config-file key of every setting, derived from the clap definition:
//! each flag's long name with `-` turned into `_`, or gunicorn's own name
//! where it differs (`keepalive` for `--keep-alive`, `wsgi_app` for
//! `APP_MODULE`, ...). Also the "did you mean" suggestion for an unknown key.
//!
//! Knows nothing of files or TOML: only names.

use clap::Command;

/// gunicorn's setting names that differ from our flag: `(key, clap long or
/// positional value name)`. The derived name (`keep_alive`) is accepted too.
pub const GUNICORN_NAMES: [(&str, &str); 12] = [
    ("wsgi_app", "APP_MODULE"),
    ("preload_app", "preload"),
    ("reload_extra_files", "reload-extra-file"),
    ("raw_env", "env"),
    ("keepalive", "keep-alive"),
    ("accesslog", "access-logfile"),
    ("access_log_format", "access-logformat"),
    ("errorlog", "error-logfile"),
    ("loglevel", "log-level"),
    ("pidfile", "pid"),
    ("proc_name", "name"),
    ("proxy_allow_ips", "proxy-allow-from"),
];

/// Clap ids that are not settings: they steer this run (`--config`,
/// `--check-config`, `--print-config`) or are clap's own.
pub const RUN_ONLY_IDS: [&str; 5] = ["help", "version", "config", "check_config", "print_config"];

/// gunicorn settings that rgunicorn has under another shape: `(gunicorn
/// key, how to write it here)`.
pub const GUNICORN_RESHAPED: [(&str, &str); 1] = [(
    "sendfile",
    "write `no_sendfile = true` for `sendfile = false`",
)];

/// One setting as the config file sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingKey {
    /// The key `--print-config` writes (gunicorn's name where there is one).
    pub key: String,
    /// Another accepted key (the flag-derived name), if different.
    pub alias: Option<String>,
    /// The clap argument id (the `Settings` field name).
    pub id: String,
}

impl SettingKey {
    /// Whether `name` is this setting's key or alias.
    pub fn answers_to(&self, name: &str) -> bool {
        self.key == name || self.alias.as_deref() == Some(name)
    }
}

/// Every setting a config file may set, in `--help` order.
pub fn setting_keys(command: &Command) -> Vec<SettingKey> {
    command
        .get_arguments()
        .filter(|arg| !RUN_ONLY_IDS.contains(&arg.get_id().as_str()))
        .filter_map(|arg| {
            let flag_name = match arg.get_long() {
                Some(long) => long.to_string(),
                None => arg.get_value_names()?.first()?.to_string(),
            };
            let derived = flag_name.replace('-', "_");
            let gunicorn = GUNICORN_NAMES
                .iter()
                .find(|(_, flag)| *flag == flag_name)
                .map(|(key, _)| key.to_string());
            Some(match gunicorn {
                Some(key) if arg.is_positional() => SettingKey {
                    key,
                    alias: None,
                    id: arg.get_id().to_string(),
                },
                Some(key) => SettingKey {
                    key,
                    alias: Some(derived),
                    id: arg.get_id().to_string(),
                },
                None => SettingKey {
                    key: derived,
                    alias: None,
                    id: arg.get_id().to_string(),
                },
            })
        })
        .collect()
}

/// The accepted key closest to `unknown`, if it is close enough to be a
/// likely typo.
pub fn closest_key<'a>(unknown: &str, keys: &'a [SettingKey]) -> Option<&'a str> {
    let candidates = keys
        .iter()
        .flat_map(|k| std::iter::once(k.key.as_str()).chain(k.alias.as_deref()));
    let (distance, best) = candidates
        .map(|candidate| (edit_distance(unknown, candidate), candidate))
        .min_by_key(|(distance, _)| *distance)?;
    let allowed = 2.max(unknown.chars().count() / 3);
    (distance <= allowed).then_some(best)
}

/// Levenshtein distance: the fewest single-character insertions, deletions
/// and substitutions turning `a` into `b`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, a_char) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::gunicorn_only::{GUNICORN_HOOKS, GUNICORN_ONLY};
    use crate::config::Settings;
    use clap::CommandFactory;

    #[test]
    fn edit_distance_counts_single_character_edits() {
        let cases = [
            ("", "", 0),
            ("worker", "workers", 1),
            ("kitten", "sitting", 3),
            ("bind", "bind", 0),
            ("", "abc", 3),
            ("timeuot", "timeout", 2),
        ];
        for (a, b, expected) in cases {
            assert_eq!(edit_distance(a, b), expected, "{a} {b}");
            assert_eq!(edit_distance(b, a), expected, "{b} {a}");
        }
    }

    #[test]
    fn keys_are_gunicorn_names_or_flag_names() {
        let keys = setting_keys(&Settings::command());
        let find = |id: &str| keys.iter().find(|k| k.id == id).unwrap().clone();
        assert_eq!(find("app").key, "wsgi_app");
        assert_eq!(find("workers").key, "workers");
        assert_eq!(find("keepalive").key, "keepalive");
        assert_eq!(find("keepalive").alias.as_deref(), Some("keep_alive"));
        assert_eq!(find("access_logfile").key, "accesslog");
        assert_eq!(find("access_log_format").key, "access_log_format");
        assert_eq!(find("error_logfile").key, "errorlog");
        assert_eq!(find("log_level").key, "loglevel");
        assert_eq!(find("pid").key, "pidfile");
        assert_eq!(find("proc_name").key, "proc_name");
        assert_eq!(find("raw_env").key, "raw_env");
        assert_eq!(find("raw_env").alias.as_deref(), Some("env"));
        assert_eq!(find("capture_output").key, "capture_output");
        assert_eq!(find("header_map").key, "header_map");
        assert_eq!(find("proxy_allow_from").key, "proxy_allow_ips");
        assert_eq!(
            find("limit_request_field_size").key,
            "limit_request_field_size"
        );
        assert!(!keys.iter().any(|k| k.id == "config" || k.id == "help"));
        for (key, _) in GUNICORN_NAMES {
            assert!(keys.iter().any(|k| k.key == key), "{key} maps to no flag");
        }
        let gunicorn_only = GUNICORN_ONLY.iter().filter_map(|setting| setting.key);
        for key in gunicorn_only.chain(GUNICORN_HOOKS.map(|(name, _)| name)) {
            assert!(
                !keys.iter().any(|k| k.answers_to(key)),
                "{key} is supported"
            );
        }
    }

    #[test]
    fn typos_suggest_the_closest_key() {
        let keys = setting_keys(&Settings::command());
        assert_eq!(closest_key("worker", &keys), Some("workers"));
        assert_eq!(closest_key("keep_alive_", &keys), Some("keep_alive"));
        assert_eq!(closest_key("timout", &keys), Some("timeout"));
        assert_eq!(closest_key("xyzzy", &keys), None);
    }
}
