//! A gunicorn deployment switches by changing one word: a typical gunicorn
//! command line and `GUNICORN_CMD_ARGS`-style arguments serve unchanged, and
//! the flags that do not carry over stop the start with a one-line reason.

mod support;

use std::time::Duration;
use support::ServerBuilder;

const GUNICORN_FLAGS: &[&str] = &[
    "-k",
    "sync",
    "--timeout",
    "60",
    "--graceful-timeout",
    "20",
    "--keep-alive",
    "5",
    "--max-requests",
    "1000",
    "--max-requests-jitter",
    "50",
    "--access-logfile",
    "-",
    "--access-logformat",
    "%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\" %(D)s",
    "--error-logfile",
    "-",
    "--log-level",
    "info",
    "--forwarded-allow-ips",
    "*",
    "--limit-request-line",
    "4094",
    "--limit-request-field_size",
    "8190",
    "--name",
    "shop",
];

#[test]
fn a_typical_gunicorn_command_line_serves_unchanged() {
    let mut builder = ServerBuilder::new("hello:application").workers(2);
    for flag in GUNICORN_FLAGS {
        builder = builder.arg(*flag);
    }
    let server = builder.start();
    let response = server.get("/shop");
    assert_eq!(response.status, 200, "{}", server.log());
    assert!(
        support::wait_until(Duration::from_secs(10), || server.log().lines().any(
            |line| line.contains("\"GET /shop HTTP/1.1\" 200 14 \"-\" \"-\" ")
                && line.starts_with("127.0.0.1 - - [")
        )),
        "no access line in gunicorn's format: {}",
        server.log()
    );
}

#[test]
fn gunicorn_style_arguments_in_the_environment_serve_unchanged() {
    let mut server = ServerBuilder::new("hello:application")
        .env(
            "RGUNICORN_CMD_ARGS",
            "-k sync --timeout 60 --keep-alive 5 --log-level=debug",
        )
        .start();
    assert_eq!(server.get("/").status, 200, "{}", server.log());
    server.stop();
    // The master logs each worker's exit at debug level.
    assert!(
        server.wait_for_log("[DEBUG]", Duration::from_secs(10)),
        "--log-level=debug from the environment: {}",
        server.log()
    );
}

#[test]
fn gunicorn_flags_that_do_not_carry_over_stop_the_start_with_the_reason() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["-k", "gevent"],
            "--worker-class gevent: gunicorn's flag does not apply",
        ),
        (
            &["--ssl-version", "TLSv1_2"],
            "--ssl-version TLSv1_2: gunicorn's flag does not apply: rustls offers TLS 1.2 and 1.3 only",
        ),
    ];
    for (flags, expected) in cases {
        let mut builder = ServerBuilder::new("hello:application");
        for flag in *flags {
            builder = builder.arg(*flag);
        }
        let mut server = builder.spawn();
        let status = server.wait_exit(Duration::from_secs(30)).expect("exits");
        assert_eq!(status.code(), Some(1), "{flags:?}: {}", server.log());
        let log = server.log();
        let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("Error:")).collect();
        assert_eq!(errors.len(), 1, "{flags:?}: one line: {log}");
        assert!(errors[0].contains(expected), "{flags:?}: {log}");
    }
}
