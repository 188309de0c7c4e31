//! HUP's configuration re-read: the settings are loaded again from the
//! sources the master started with (command line, environment, config
//! file, `RGUNICORN_CMD_ARGS`), and what can change without rebinding takes
//! effect in the new workers. What cannot (the sockets, the master's own
//! files and process state) keeps its value, with a warning naming it.

use super::upgrade::LaunchCommand;
use crate::config::{self, ConfigError, Settings};

/// The settings for the workers a HUP starts.
pub fn reread(launch: &LaunchCommand, current: &Settings) -> Result<Settings, ConfigError> {
    let mut new = config::reload(launch.arguments.clone(), &launch.working_dir)?;
    // The master changed into --chdir at start; compare like with like.
    new.chdir = new.chdir.map(|dir| launch.working_dir.join(dir));
    keep_fixed(current, &mut new);
    Ok(new)
}

/// Puts back the settings a reload cannot apply, warning for each that the
/// file or environment tried to change.
fn keep_fixed(current: &Settings, new: &mut Settings) {
    macro_rules! keep {
        ($($field:ident => $flag:literal),* $(,)?) => {$(
            if new.$field != current.$field {
                log::warn!(
                    "{} changed; it applies only after a restart (or a USR2 upgrade)",
                    $flag
                );
                new.$field = current.$field.clone();
            }
        )*};
    }
    keep!(
        bind => "--bind",
        backlog => "--backlog",
        reuse_port => "--reuse-port",
        preload => "--preload",
        chdir => "--chdir",
        daemon => "--daemon",
        pid => "--pid",
        error_logfile => "--error-logfile",
        umask => "--umask",
        log_level => "--log-level",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Settings {
        Settings::from_args(std::iter::once("rgunicorn").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn socket_and_master_settings_keep_their_values() {
        let current = settings(&["-b", "127.0.0.1:9000", "--backlog", "64", "app:a"]);
        let mut new = settings(&[
            "-b",
            "127.0.0.1:9001",
            "--backlog",
            "128",
            "-w",
            "3",
            "app:b",
        ]);
        keep_fixed(&current, &mut new);
        assert_eq!(new.bind, current.bind);
        assert_eq!(new.backlog, 64);
        assert_eq!(new.workers, 3, "the worker count may change");
        assert_eq!(new.app.expression, "b", "the app may change");
    }
}
