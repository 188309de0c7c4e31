//! Settings sources through the real binary: the config file (given with
//! `-c` or found as `./rgunicorn.toml`), `RGUNICORN_CMD_ARGS` and the command
//! line, later winning; one-line errors naming the file, line and setting;
//! `--print-config` and `--check-config`; and docs/settings.md being current.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{apps_dir, wait_until, ServerBuilder, TempDir};

/// How long a run that never starts a server may take (a `--check-config`
/// run starts Python once).
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variables that would change the settings under test.
const SETTINGS_VARS: [&str; 5] = [
    "RGUNICORN_CMD_ARGS",
    "WEB_CONCURRENCY",
    "PORT",
    "VIRTUAL_ENV",
    "FORWARDED_ALLOW_IPS",
];

/// What one run printed and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary in `dir` with `args` and `env` (and none of the settings
/// variables of this process), killing it by PID if it outlives
/// [`RUN_TIMEOUT`].
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rgunicorn"));
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in SETTINGS_VARS {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("spawn rgunicorn");
    let mut status = None;
    let exited = wait_until(RUN_TIMEOUT, || {
        status = child.try_wait().expect("wait for rgunicorn");
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("rgunicorn {args:?} did not exit within {RUN_TIMEOUT:?}");
    }
    let output = child.wait_with_output().expect("collect output");
    Run {
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The value line of `key` in `--print-config` output.
fn printed<'a>(output: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    output
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in\n{output}"))
}

#[test]
fn file_then_cmd_args_then_command_line_win_in_turn() {
    let dir = TempDir::new("precedence");
    std::fs::write(
        dir.join("settings.toml"),
        "workers = 2\ntimeout = 40\nkeepalive = 7\nbind = [\"127.0.0.1:7001\", \"127.0.0.1:7002\"]\n\
         wsgi_app = \"from_file:app\"\nloglevel = \"warning\"\n",
    )
    .unwrap();
    let cmd_args = [("RGUNICORN_CMD_ARGS", "-w 3 --timeout 50 --name 'my app'")];
    let run = run(
        dir.path(),
        &[
            "-c",
            "settings.toml",
            "--print-config",
            "-w",
            "4",
            "-b",
            "127.0.0.1:7003",
        ],
        &cmd_args,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = &run.stdout;
    assert_eq!(printed(out, "workers"), "4", "command line beats the rest");
    assert_eq!(printed(out, "timeout"), "50", "CMD_ARGS beats the file");
    assert_eq!(printed(out, "keepalive"), "7", "the file beats defaults");
    assert_eq!(printed(out, "loglevel"), "\"warning\"");
    assert_eq!(printed(out, "proc_name"), "\"my app\"");
    assert_eq!(printed(out, "wsgi_app"), "\"from_file:app\"");
    assert_eq!(
        printed(out, "bind"),
        "[\"127.0.0.1:7003\"]",
        "a later --bind replaces the file's list"
    );
    assert_eq!(printed(out, "backlog"), "2048");
}

#[test]
fn environment_defaults_sit_below_the_file() {
    let dir = TempDir::new("envdefaults");
    std::fs::write(dir.join("rgunicorn.toml"), "workers = 5\n").unwrap();
    let env = [("WEB_CONCURRENCY", "3"), ("PORT", "7010")];
    let run = run(dir.path(), &["--print-config", "a:b"], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(printed(&run.stdout, "workers"), "5");
    assert_eq!(printed(&run.stdout, "bind"), "[\"0.0.0.0:7010\"]");
}

#[test]
fn rgunicorn_toml_in_the_working_directory_is_read_without_dash_c() {
    let dir = TempDir::new("cwdfile");
    std::fs::write(
        dir.join("rgunicorn.toml"),
        "workers = 6\nwsgi_app = \"x:y\"\n",
    )
    .unwrap();
    let run = run(dir.path(), &["--print-config"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(printed(&run.stdout, "workers"), "6");
    assert_eq!(printed(&run.stdout, "wsgi_app"), "\"x:y\"");

    let elsewhere = TempDir::new("nofile");
    let run = run_default(elsewhere.path());
    assert_eq!(printed(&run.stdout, "workers"), "1");
}

fn run_default(dir: &Path) -> Run {
    let run = run(dir, &["--print-config", "a:b"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run
}

#[test]
fn an_unknown_key_names_its_file_line_and_the_closest_setting() {
    let dir = TempDir::new("unknownkey");
    std::fs::write(dir.join("rgunicorn.toml"), "bind = \":1\"\n\nworker = 3\n").unwrap();
    let run = run(dir.path(), &["a:b"], &[]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.trim(),
        "Error: rgunicorn.toml:3: unknown setting 'worker' (did you mean 'workers'?)"
    );
}

#[test]
fn bad_types_and_values_name_the_setting_and_what_it_takes() {
    let dir = TempDir::new("badvalue");
    let cases = [
        (
            "workers = true\n",
            "Error: conf.toml:1: 'workers' takes a whole number, not a boolean",
        ),
        (
            "\ntimeout = \"soon\"\n",
            "Error: conf.toml:2: timeout: 'soon' is not a whole number (0 or more)",
        ),
        (
            "workers = 0\n",
            "Error: conf.toml:1: workers: '0' workers cannot serve: give 1 or more",
        ),
        (
            "loglevel = \"loud\"\n",
            "Error: conf.toml:1: loglevel: 'loud' is not one of debug, info, warning, error, critical",
        ),
        ("workers = [", "Error: conf.toml:1: "),
    ];
    for (text, expected) in cases {
        std::fs::write(dir.join("conf.toml"), text).unwrap();
        let run = run(dir.path(), &["-c", "conf.toml", "a:b"], &[]);
        assert_eq!(run.code, 1, "{text:?}: {}", run.stderr);
        assert!(run.stderr.starts_with(expected), "{text:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(!run.stderr.contains("backtrace"));
    }
    let run = run(dir.path(), &["-c", "missing.toml", "a:b"], &[]);
    assert_eq!(run.code, 1);
    assert!(run
        .stderr
        .starts_with("Error: cannot read config file missing.toml"));
}

#[test]
fn bad_cmd_args_name_the_variable() {
    let dir = TempDir::new("badcmdargs");
    let cases = [
        (
            "-w nine",
            "Error: RGUNICORN_CMD_ARGS: --workers: 'nine' is not a whole number",
        ),
        (
            "--name 'open",
            "Error: RGUNICORN_CMD_ARGS: unterminated ' quote",
        ),
        (
            "--no-such-flag",
            "Error: RGUNICORN_CMD_ARGS: unexpected argument '--no-such-flag'",
        ),
    ];
    for (cmd_args, expected) in cases {
        let run = run(dir.path(), &["a:b"], &[("RGUNICORN_CMD_ARGS", cmd_args)]);
        assert_eq!(run.code, 1, "{cmd_args}: {}", run.stderr);
        assert!(
            run.stderr.starts_with(expected),
            "{cmd_args}: {}",
            run.stderr
        );
    }
}

#[test]
fn print_config_output_is_a_config_file_that_prints_the_same() {
    let dir = TempDir::new("roundtrip");
    let first = run(
        dir.path(),
        &[
            "--print-config",
            "-w",
            "3",
            "-b",
            "127.0.0.1:7020",
            "-b",
            "unix:/tmp/x y.sock",
            "--pythonpath",
            "a,b",
            "--umask",
            "022",
            "--reuse-port",
            "-e",
            "GREETING=hello world",
            "--header-map",
            "refuse",
            "--name",
            "quote \" and \\ back",
            "--access-logformat",
            "%(h)s '%(r)s'",
            "pkg.mod:create_app('x')",
        ],
        &[],
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    std::fs::write(dir.join("printed.toml"), &first.stdout).unwrap();
    let second = run(dir.path(), &["-c", "printed.toml", "--print-config"], &[]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.stdout, first.stdout);
    assert_eq!(printed(&first.stdout, "umask"), "\"022\"");
    assert_eq!(printed(&first.stdout, "reuse_port"), "true");
    assert_eq!(
        printed(&first.stdout, "raw_env"),
        "[\"GREETING=hello world\"]"
    );
    assert_eq!(printed(&first.stdout, "header_map"), "\"refuse\"");
    assert_eq!(printed(&first.stdout, "pythonpath"), "[\"a\", \"b\"]");
}

#[test]
fn check_config_imports_the_app_and_reports_ok() {
    let apps = apps_dir();
    let run = run(&apps, &["--check-config", "hello:application"], &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("Config OK"), "{}", run.stdout);
}

#[test]
fn check_config_fails_with_the_app_exception() {
    let apps = apps_dir();
    let run = run(&apps, &["--check-config", "broken_import:application"], &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("Error: "), "{}", run.stderr);
    assert!(last.contains("Error"), "{}", run.stderr);

    let run = run_check(&apps, "no_such_module_here:app");
    assert!(
        run.stderr.contains("No module named 'no_such_module_here'"),
        "{}",
        run.stderr
    );
}

fn run_check(dir: &Path, app: &str) -> Run {
    let run = run(dir, &["--check-config", app], &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    run
}

#[test]
fn settings_doc_is_current() {
    let path = support::repo_root().join("docs").join("settings.md");
    let rendered = rgunicorn::config::settings_markdown();
    if std::env::var_os("RGUNICORN_BLESS").is_some() {
        std::fs::write(&path, &rendered).expect("write docs/settings.md");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == rendered,
        "docs/settings.md is out of date with src/config/mod.rs: regenerate it with \
         `RGUNICORN_BLESS=1 cargo test --test config_sources settings_doc`"
    );
}

#[test]
fn the_example_config_file_checks_out() {
    let run = run(
        &support::repo_root(),
        &["-c", "examples/rgunicorn.toml", "--check-config"],
        &[],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("Config OK"), "{}", run.stdout);
}

#[test]
fn a_running_server_uses_the_file_cmd_args_and_command_line_together() {
    let dir = TempDir::new("liveconfig");
    let access_log = dir.join("access.log");
    let config = dir.join("live.toml");
    std::fs::write(
        &config,
        format!(
            "accesslog = \"{}\"\naccess_log_format = \"file %(s)s %(U)s\"\n\
             bind = \"127.0.0.1:1\"\nlimit_request_line = 50\n",
            access_log.display()
        ),
    )
    .unwrap();
    let server = ServerBuilder::new("hello:application")
        .arg("-c")
        .arg(config.display().to_string())
        .env("RGUNICORN_CMD_ARGS", "--access-logformat 'cmd %(s)s %(U)s'")
        .start();
    // The command line's --bind (from the test support) replaced the file's.
    assert_eq!(server.get("/short").status, 200);
    let long_target = format!("/{}", "x".repeat(60));
    assert_ne!(
        server.get(&long_target).status,
        200,
        "the file's limit_request_line applies"
    );
    let logged = wait_until(Duration::from_secs(10), || {
        support::read_lines(&access_log).contains(&"cmd 200 /short".to_string())
    });
    assert!(logged, "{:?}", support::read_lines(&access_log));
}
