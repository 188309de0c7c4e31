//! The app sees the server's command line in `sys.argv`, as gunicorn's
//! workers see gunicorn's: the arguments as the server was started with,
//! not the process title that later overwrote that memory.

mod support;

use support::{apps_dir, ServerBuilder};

#[test]
fn sys_argv_in_the_app_is_the_command_line_the_server_was_started_with() {
    let server = ServerBuilder::new("serving:application")
        .arg("--proc-name")
        .arg("argv-check")
        .start();
    let response = server.get("/argv");
    assert_eq!(response.status, 200);
    let text = response.text();
    let argv: Vec<&str> = text.split('\n').collect();
    let bind = match server.address() {
        support::server::Address::Tcp(addr) => addr.to_string(),
        support::server::Address::Unix(_) => unreachable!("a TCP server"),
    };
    let apps = apps_dir().display().to_string();
    let expected = [
        "--bind",
        &bind,
        "--workers",
        "1",
        "--chdir",
        &apps,
        "--proc-name",
        "argv-check",
        "serving:application",
    ];
    assert!(
        argv[0].ends_with("rgunicorn"),
        "sys.argv[0] is {:?}: {argv:?}",
        argv[0]
    );
    assert_eq!(&argv[1..], &expected, "sys.argv");
}
