//! Worker hooks (`--hooks MODULE`) through the real binary: every hook runs
//! with the documented arguments, post_fork once per worker before the app
//! is imported, a raising hook is logged while the server keeps serving, and
//! a hook module that cannot be used stops the server with exit code 3 and
//! one line naming it.
//!
//! The hook module `tests/apps/hooks_recorder.py` appends one JSON line per
//! call to the file named by `$HOOKS_RECORD`; the tests read those lines.

mod support;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::time::Duration;
use support::{read_lines, wait_until, Server, ServerBuilder, TempDir};

const APP: &str = "hooked_app:application";
const WAIT: Duration = Duration::from_secs(10);

/// A server running `hooks_recorder` with `workers` workers, recording into
/// `record`.
fn recorded_server(record: &Path, workers: u32, extra: &[&str]) -> Server {
    let mut builder = ServerBuilder::new(APP)
        .workers(workers)
        .arg("--hooks")
        .arg("hooks_recorder")
        .env("HOOKS_RECORD", record.display().to_string());
    for arg in extra {
        builder = builder.arg(*arg);
    }
    builder.start()
}

/// The recorded lines of one hook.
fn calls(record: &Path, hook: &str) -> Vec<String> {
    let marker = format!("{{\"hook\": \"{hook}\"");
    read_lines(record)
        .into_iter()
        .filter(|line| line.starts_with(&marker))
        .collect()
}

/// Waits until `hook` has been recorded `count` times; returns its lines.
fn wait_calls(record: &Path, hook: &str, count: usize) -> Vec<String> {
    let arrived = wait_until(WAIT, || calls(record, hook).len() >= count);
    assert!(
        arrived,
        "{hook} recorded {} times, wanted {count}; record:\n{}",
        calls(record, hook).len(),
        read_lines(record).join("\n")
    );
    calls(record, hook)
}

fn assert_has(line: &str, facts: &[&str]) {
    for fact in facts {
        assert!(line.contains(fact), "{fact} missing from {line}");
    }
}

#[test]
fn boot_hooks_get_server_and_worker_before_and_after_the_app_import() {
    let dir = TempDir::new("hooks-boot");
    let record = dir.join("record");
    let server = recorded_server(&record, 1, &[]);
    let worker = server.worker_pids()[0];
    let master = server.pid();

    let post_fork = wait_calls(&record, "post_fork", 1);
    assert_has(
        &post_fork[0],
        &[
            &format!("\"worker_pid\": {worker}"),
            &format!("\"ppid\": {master}"),
            &format!("\"server_pid\": {master}"),
            "\"alive\": true",
            "\"app_is_none\": true",
            "\"app_imported\": false",
            "\"log_name\": \"rgunicorn.error\"",
            "\"workers\": 1",
            "\"timeout\": 30",
            "\"wsgi_app\": \"hooked_app:application\"",
            "\"hooks\": \"hooks_recorder\"",
            "\"same_cfg\": true",
        ],
    );
    let init = wait_calls(&record, "post_worker_init", 1);
    assert_has(
        &init[0],
        &["\"app_name\": \"application\"", "\"app_callable\": true"],
    );
    // worker.log / server.log records reach the error log at their level.
    assert!(server.wait_for_log(&format!("[INFO] post_fork says hello from {worker}"), WAIT));
    assert!(server.wait_for_log("[WARNING] post_worker_init warns", WAIT));
}

#[test]
fn post_fork_runs_once_in_each_worker() {
    let dir = TempDir::new("hooks-fork");
    let record = dir.join("record");
    let server = recorded_server(&record, 2, &[]);
    let post_fork = wait_calls(&record, "post_fork", 2);
    std::thread::sleep(Duration::from_millis(300));
    let post_fork_now = calls(&record, "post_fork");
    assert_eq!(post_fork_now.len(), 2, "{post_fork_now:?}");
    let mut workers = server.worker_pids();
    workers.sort_unstable();
    let mut hooked: Vec<i32> = post_fork
        .iter()
        .filter_map(|line| line.split("\"worker_pid\": ").nth(1))
        .filter_map(|rest| rest.split(',').next()?.parse().ok())
        .collect();
    hooked.sort_unstable();
    assert_eq!(hooked, workers);
    let mut ages: Vec<u64> = post_fork
        .iter()
        .filter_map(|line| line.split("\"age\": ").nth(1))
        .filter_map(|rest| rest.split([',', '}']).next()?.trim().parse().ok())
        .collect();
    ages.sort_unstable();
    assert_eq!(ages, [1, 2], "worker.age is the spawn order: {post_fork:?}");
    for line in &post_fork {
        assert_has(
            line,
            &["\"workers\": 2", &format!("\"ppid\": {}", server.pid())],
        );
    }
}

#[test]
fn request_hooks_see_the_request_and_the_response() {
    let dir = TempDir::new("hooks-request");
    let record = dir.join("record");
    let server = recorded_server(&record, 1, &[]);
    let response = server.request(
        b"GET /a/b%20c?x=1&y=2 HTTP/1.1\r\nHost: localhost\r\nX-Trace: abc\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 201);

    let pre = wait_calls(&record, "pre_request", 1);
    assert_has(
        &pre[0],
        &[
            "\"method\": \"GET\"",
            "\"path\": \"/a/b%20c\"",
            "\"query\": \"x=1&y=2\"",
            "\"uri\": \"/a/b%20c?x=1&y=2\"",
            "\"version\": [1, 1]",
            "[\"HOST\", \"localhost\"]",
            "[\"X-TRACE\", \"abc\"]",
            "\"remote_addr\": [\"127.0.0.1\", ",
        ],
    );
    let post = wait_calls(&record, "post_request", 1);
    assert_has(
        &post[0],
        &[
            "\"marker\": \"set-in-pre-request\"",
            "\"path_info\": \"/a/b c\"",
            "\"status\": \"201 Created\"",
            "\"status_code\": 201",
            "[\"X-Hooked\", \"yes\"]",
            "\"sent\": 12",
        ],
    );
}

#[test]
fn post_request_sees_the_500_when_the_app_raises() {
    let dir = TempDir::new("hooks-app-error");
    let record = dir.join("record");
    let server = recorded_server(&record, 1, &[]);
    assert_eq!(server.get("/raise").status, 500);
    let post = wait_calls(&record, "post_request", 1);
    assert_has(
        &post[0],
        &[
            "\"status\": \"500 Internal Server Error\"",
            "\"status_code\": 500",
            "\"headers\": []",
            "\"sent\": 0",
        ],
    );
}

#[test]
fn raising_request_hooks_are_logged_and_the_request_is_still_served() {
    let dir = TempDir::new("hooks-raise-request");
    let record = dir.join("record");
    let server = recorded_server(&record, 1, &[]);
    let response = server.get("/raise-in-hooks");
    assert_eq!(response.status, 201, "{}", server.log());
    assert_eq!(response.text(), "path=/raise-in-hooks\n");
    assert!(server.wait_for_log("ValueError: post_request hook failed on purpose", WAIT));
    let log = server.log();
    assert!(
        log.contains("[ERROR] Exception in pre_request hook\nTraceback (most recent call last):"),
        "{log}"
    );
    assert!(
        log.contains("RuntimeError: pre_request hook failed on purpose"),
        "{log}"
    );
    assert!(
        log.contains("[ERROR] Exception in post_request hook"),
        "{log}"
    );
    assert_eq!(server.get("/next").status, 201);
}

#[test]
fn raising_boot_hooks_are_logged_and_the_worker_serves() {
    let server = ServerBuilder::new(APP)
        .arg("--hooks")
        .arg("hooks_raising")
        .start();
    assert_eq!(server.get("/ok").status, 201);
    assert_eq!(server.get("/again").status, 201);
    assert!(server.wait_for_log_count("post_request failed on purpose", 2, WAIT));
    let log = server.log();
    for hook in [
        "post_fork",
        "post_worker_init",
        "pre_request",
        "post_request",
    ] {
        assert!(
            log.contains(&format!("Exception in {hook} hook")),
            "{hook}: {log}"
        );
        assert!(
            log.contains(&format!("RuntimeError: {hook} failed on purpose")),
            "{log}"
        );
    }
    assert!(!log.contains("exited with code"), "{log}");
}

#[test]
fn worker_int_then_worker_exit_run_on_quit() {
    let dir = TempDir::new("hooks-int");
    let record = dir.join("record");
    let server = recorded_server(&record, 1, &[]);
    let worker = server.worker_pids()[0];
    wait_calls(&record, "post_worker_init", 1);
    kill(Pid::from_raw(worker), Signal::SIGQUIT).unwrap();
    let int = wait_calls(&record, "worker_int", 1);
    assert_has(
        &int[0],
        &[&format!("\"pid\": {worker}"), "\"alive\": false"],
    );
    let exit = wait_calls(&record, "worker_exit", 1);
    assert_has(
        &exit[0],
        &[
            &format!("\"pid\": {worker}"),
            &format!("\"server_pid\": {}", server.pid()),
        ],
    );
    let lines = read_lines(&record);
    let int_at = lines.iter().position(|l| l.contains("\"worker_int\""));
    let exit_at = lines.iter().position(|l| l.contains("\"worker_exit\""));
    assert!(int_at < exit_at, "{lines:?}");
}

#[test]
fn worker_exit_runs_on_a_graceful_stop() {
    let dir = TempDir::new("hooks-exit");
    let record = dir.join("record");
    let mut server = recorded_server(&record, 1, &[]);
    let worker = server.worker_pids()[0];
    wait_calls(&record, "post_worker_init", 1);
    assert!(server.stop().is_some_and(|status| status.success()));
    let exit = wait_calls(&record, "worker_exit", 1);
    assert_has(
        &exit[0],
        &[&format!("\"pid\": {worker}"), "\"alive\": false"],
    );
    assert!(calls(&record, "worker_int").is_empty());
}

#[test]
fn worker_abort_runs_when_a_stuck_worker_is_aborted() {
    let dir = TempDir::new("hooks-abort");
    let record = dir.join("record");
    let server = recorded_server(&record, 1, &["--timeout", "1"]);
    let worker = server.worker_pids()[0];
    let mut client = server.connect();
    client.send(b"GET /sleep HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let abort = wait_calls(&record, "worker_abort", 1);
    assert_has(
        &abort[0],
        &[&format!("\"pid\": {worker}"), "\"alive\": false"],
    );
    // faulthandler still dumped where the worker was stuck, and the worker
    // still ended by SIGABRT (then was replaced).
    assert!(server.wait_for_log(&format!("Worker (pid:{worker}) was sent SIGABRT"), WAIT));
    let log = server.log();
    assert!(log.contains("in application"), "{log}");
    assert!(calls(&record, "worker_exit").is_empty());
}

#[test]
fn a_missing_hook_module_stops_the_server_with_exit_3_naming_it() {
    let mut server = ServerBuilder::new(APP)
        .arg("--hooks")
        .arg("no_such_hooks_module")
        .spawn();
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("the server exits");
    assert_eq!(status.code(), Some(3), "{}", server.log());
    let log = server.log();
    let last = log.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "Error: worker failed to boot: --hooks no_such_hooks_module: \
         ModuleNotFoundError: No module named 'no_such_hooks_module'"
    );
}

#[test]
fn a_hook_that_is_not_callable_stops_the_server_with_exit_3() {
    let mut server = ServerBuilder::new(APP)
        .arg("--hooks")
        .arg("hooks_not_callable")
        .spawn();
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("the server exits");
    assert_eq!(status.code(), Some(3), "{}", server.log());
    let log = server.log();
    assert!(
        log.lines()
            .last()
            .unwrap_or_default()
            .ends_with("--hooks hooks_not_callable: 'post_fork' is not callable (it is int)"),
        "{log}"
    );
}

#[test]
fn without_hooks_nothing_about_hooks_is_logged() {
    // The same app without --hooks: no hook runs, nothing is logged for them.
    let server = ServerBuilder::new(APP).start();
    assert_eq!(server.get("/plain").status, 201);
    assert!(!server.log().contains("hook"), "{}", server.log());
}

#[test]
fn a_gunicorn_config_file_path_works_as_the_hook_module() {
    let server = ServerBuilder::new(APP)
        .arg("--hooks")
        .arg("gunicorn_style.conf.py")
        .start();
    let worker = server.worker_pids()[0];
    assert!(server.wait_for_log(
        &format!("Worker spawned (pid: {worker}) from a config file"),
        WAIT
    ));
    assert_eq!(server.get("/from-file").status, 201);
    assert!(server.wait_for_log("config-file hook saw GET /from-file", WAIT));
    let log = server.log();
    assert!(
        log.contains(
            "--hooks gunicorn_style.conf.py: on_starting, when_ready run in gunicorn's master"
        ),
        "{log}"
    );
    assert!(!log.contains("never called"), "{log}");
}

#[test]
fn pipelined_requests_each_get_their_own_req() {
    let dir = TempDir::new("hooks-pipelined");
    let record = dir.join("record");
    let server = recorded_server(&record, 1, &[]);
    let mut client = server.connect();
    client.send(
        b"GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n\
          GET /second HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(client.read_response().text(), "path=/first\n");
    assert_eq!(client.read_response().text(), "path=/second\n");
    let post = wait_calls(&record, "post_request", 2);
    assert_has(
        &post[0],
        &[
            "\"path\": \"/first\"",
            "\"path_info\": \"/first\"",
            "\"sent\": 12",
        ],
    );
    assert_has(
        &post[1],
        &[
            "\"path\": \"/second\"",
            "\"path_info\": \"/second\"",
            "\"sent\": 13",
        ],
    );
    let hooks: Vec<String> = read_lines(&record)
        .iter()
        .filter_map(|line| line.split('"').nth(3).map(str::to_string))
        .filter(|hook| hook.ends_with("_request"))
        .collect();
    assert_eq!(
        hooks,
        ["pre_request", "post_request", "pre_request", "post_request"]
    );
}

#[test]
fn worker_abort_runs_at_once_when_an_idle_worker_gets_sigabrt() {
    let dir = TempDir::new("hooks-abort-idle");
    let record = dir.join("record");
    let server = recorded_server(&record, 1, &[]);
    let worker = server.worker_pids()[0];
    wait_calls(&record, "post_worker_init", 1);
    kill(Pid::from_raw(worker), Signal::SIGABRT).unwrap();
    // No request arrives: the hook must not wait for one.
    let abort = wait_calls(&record, "worker_abort", 1);
    assert_has(&abort[0], &[&format!("\"pid\": {worker}")]);
    assert!(server.wait_for_log(&format!("Worker (pid:{worker}) was sent SIGABRT"), WAIT));
}
