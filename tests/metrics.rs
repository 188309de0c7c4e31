//! `--metrics-bind` and `--statsd-host` through the real binary: the
//! request counters by method and status (the server's own 400s included)
//! and the duration histogram after a known mix of requests, counters that
//! survive a worker killed by SIGKILL (and the restart counted as a crash;
//! timeout, max-requests and reload restarts counted by their reason),
//! a scrape answered while the only worker is stuck in the app, the output
//! read by prometheus_client's own parser with the metric names and labels
//! of docs/metrics.md, `/status` and `rgunicorn status`, a statsd listener
//! receiving gunicorn's lines, the socket handed over on USR2, the docs and
//! the Grafana dashboard naming only exported metrics, and bad settings
//! refused in one line.
//!
//! Every server binds 127.0.0.1 only, is held by a guard that stops it by
//! PID, and every wait is a condition with a deadline.

mod support;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::client::Client;
use support::server::{Address, Server, ServerBuilder};
use support::wait_until;

const WAIT: Duration = Duration::from_secs(30);
const MALFORMED: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nNo colon here\r\n\r\n";

/// A server of `tests/apps/metrics_app.py` with `--metrics-bind` on a free
/// port; returns it and the metrics address read from its log.
fn start_with_metrics(workers: u32, extra: &[&str]) -> (Server, SocketAddr) {
    let mut builder = ServerBuilder::new("metrics_app:application")
        .workers(workers)
        .arg("--metrics-bind")
        .arg("127.0.0.1:0");
    for arg in extra {
        builder = builder.arg(*arg);
    }
    let server = builder.start();
    let line = server
        .wait_for_log_line("Serving metrics at: ", WAIT)
        .unwrap_or_else(|| panic!("no metrics line; log:\n{}", server.log()));
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split("/metrics").next())
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (server, address)
}

/// `GET path` on the metrics address; returns the status and the body.
fn scrape_path(address: SocketAddr, path: &str) -> (u16, String) {
    let mut client = Client::connect(&Address::Tcp(address));
    client.send(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
    let response = client.read_response();
    (response.status, response.text())
}

/// One sample as prometheus_client's parser reads it.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    family: String,
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Scrapes `/metrics` and parses it with prometheus_client (a parse
/// error fails the test).
fn scrape(address: SocketAddr) -> Vec<Sample> {
    let (status, text) = scrape_path(address, "/metrics");
    assert_eq!(status, 200, "{text}");
    parse_with_prometheus_client(&text)
}

fn parse_with_prometheus_client(text: &str) -> Vec<Sample> {
    let script = support::repo_root().join("tests/support/prometheus_parse.py");
    let mut child = Command::new(support::python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client could not parse the output: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let labels = fields[3]
                .split(';')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap();
                    (key.to_string(), value.to_string())
                })
                .collect();
            Sample {
                family: fields[0].to_string(),
                kind: fields[1].to_string(),
                name: fields[2].to_string(),
                labels,
                value: fields[4].parse().unwrap(),
            }
        })
        .collect()
}

/// The value of sample `name` whose labels include `labels` (summed over
/// the other labels); 0 when there is none.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

fn get_n(server: &Server, target: &str, n: usize, status: u16) {
    for _ in 0..n {
        assert_eq!(server.get(target).status, status, "GET {target}");
    }
}

#[test]
fn requests_are_counted_by_method_and_status_and_the_histogram_counts_the_apps_answers() {
    let (server, metrics) = start_with_metrics(2, &[]);
    let both_serving = wait_until(WAIT, || {
        value(
            &scrape(metrics),
            "rgunicorn_workers",
            &[("state", "serving")],
        ) == 2.0
    });
    assert!(both_serving, "the workers never both served");
    get_n(&server, "/", 100, 200);
    get_n(&server, "/missing", 10, 404);
    for _ in 0..5 {
        assert_eq!(server.request(MALFORMED).status, 400);
    }
    let samples = scrape(metrics);
    let requests = "rgunicorn_http_requests_total";
    assert_eq!(
        value(&samples, requests, &[("method", "GET"), ("status", "200")]),
        100.0
    );
    assert_eq!(
        value(&samples, requests, &[("method", "GET"), ("status", "404")]),
        10.0
    );
    assert_eq!(value(&samples, requests, &[("status", "400")]), 5.0);
    assert_eq!(value(&samples, requests, &[]), 115.0);
    let duration = "rgunicorn_http_request_duration_seconds";
    assert_eq!(value(&samples, &format!("{duration}_count"), &[]), 110.0);
    assert_eq!(
        value(&samples, &format!("{duration}_bucket"), &[("le", "+Inf")]),
        110.0
    );
    assert!(value(&samples, &format!("{duration}_sum"), &[]) > 0.0);
    assert_eq!(
        value(&samples, "rgunicorn_http_response_body_bytes_total", &[]),
        (100 * 14 + 10 * 10) as f64
    );
    assert!(value(&samples, "rgunicorn_connections_total", &[]) >= 115.0);
    assert_eq!(
        value(&samples, "rgunicorn_http_requests_in_flight", &[]),
        0.0
    );
}

/// Every metric family of the issue, with its type and its exact label
/// names (per sample name).
const EXPECTED: &[(&str, &str, &str, &[&str])] = &[
    (
        "rgunicorn_http_requests",
        "counter",
        "rgunicorn_http_requests_total",
        &["method", "status"],
    ),
    (
        "rgunicorn_http_request_duration_seconds",
        "histogram",
        "rgunicorn_http_request_duration_seconds_bucket",
        &["le"],
    ),
    (
        "rgunicorn_http_request_duration_seconds",
        "histogram",
        "rgunicorn_http_request_duration_seconds_sum",
        &[],
    ),
    (
        "rgunicorn_http_request_duration_seconds",
        "histogram",
        "rgunicorn_http_request_duration_seconds_count",
        &[],
    ),
    (
        "rgunicorn_http_requests_in_flight",
        "gauge",
        "rgunicorn_http_requests_in_flight",
        &[],
    ),
    (
        "rgunicorn_http_response_body_bytes",
        "counter",
        "rgunicorn_http_response_body_bytes_total",
        &[],
    ),
    (
        "rgunicorn_connections_open",
        "gauge",
        "rgunicorn_connections_open",
        &[],
    ),
    (
        "rgunicorn_connections",
        "counter",
        "rgunicorn_connections_total",
        &[],
    ),
    (
        "rgunicorn_workers",
        "gauge",
        "rgunicorn_workers",
        &["state"],
    ),
    (
        "rgunicorn_worker_restarts",
        "counter",
        "rgunicorn_worker_restarts_total",
        &["reason"],
    ),
    (
        "rgunicorn_worker_memory_rss_bytes",
        "gauge",
        "rgunicorn_worker_memory_rss_bytes",
        &["worker"],
    ),
    (
        "rgunicorn_listen_queue_length",
        "gauge",
        "rgunicorn_listen_queue_length",
        &["listener"],
    ),
    (
        "rgunicorn_listen_queue_max",
        "gauge",
        "rgunicorn_listen_queue_max",
        &["listener"],
    ),
    (
        "rgunicorn_build_info",
        "gauge",
        "rgunicorn_build_info",
        &["python", "version"],
    ),
    (
        "process_start_time_seconds",
        "gauge",
        "process_start_time_seconds",
        &[],
    ),
    // Beyond the list: the statsd drops it asks to count.
    (
        "rgunicorn_statsd_dropped",
        "counter",
        "rgunicorn_statsd_dropped_total",
        &[],
    ),
];

#[test]
fn the_output_parses_with_prometheus_client_and_names_and_labels_match_the_list() {
    let (server, metrics) = start_with_metrics(1, &[]);
    get_n(&server, "/", 3, 200);
    let samples = scrape(metrics);
    let seen: BTreeSet<(String, String, String, Vec<String>)> = samples
        .iter()
        .map(|s| {
            let labels = s.labels.keys().cloned().collect();
            (s.family.clone(), s.kind.clone(), s.name.clone(), labels)
        })
        .collect();
    let expected: BTreeSet<(String, String, String, Vec<String>)> = EXPECTED
        .iter()
        .map(|(family, kind, name, labels)| {
            let labels = labels.iter().map(|l| l.to_string()).collect();
            (
                family.to_string(),
                kind.to_string(),
                name.to_string(),
                labels,
            )
        })
        .collect();
    assert_eq!(seen, expected);

    let buckets: Vec<&str> = samples
        .iter()
        .filter(|s| s.name == "rgunicorn_http_request_duration_seconds_bucket")
        .map(|s| s.labels["le"].as_str())
        .collect();
    assert_eq!(
        buckets,
        [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0",
            "+Inf"
        ]
    );
    let labels_of = |name: &str, key: &str| -> BTreeSet<String> {
        samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.labels[key].clone())
            .collect()
    };
    assert_eq!(
        labels_of("rgunicorn_workers", "state"),
        ["booting", "retiring", "serving"].map(String::from).into()
    );
    assert_eq!(
        labels_of("rgunicorn_worker_restarts_total", "reason"),
        ["crash", "max_requests", "oom_kill", "reload", "timeout"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        labels_of("rgunicorn_worker_memory_rss_bytes", "worker"),
        ["1".to_string()].into()
    );
    assert!(value(&samples, "rgunicorn_worker_memory_rss_bytes", &[]) > 1e6);
    let listener = server.port();
    assert_eq!(
        labels_of("rgunicorn_listen_queue_max", "listener"),
        [format!("127.0.0.1:{listener}")].into()
    );
    assert!(value(&samples, "rgunicorn_listen_queue_max", &[]) >= 1.0);
    assert_eq!(value(&samples, "rgunicorn_build_info", &[]), 1.0);
    let started = value(&samples, "process_start_time_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(started <= now && started > now - 600.0, "{started}");
}

#[test]
fn a_killed_worker_counts_as_a_crash_and_no_counter_goes_down() {
    let (server, metrics) = start_with_metrics(1, &[]);
    get_n(&server, "/", 20, 200);
    let before = scrape(metrics);
    let served = value(&before, "rgunicorn_http_requests_total", &[]);
    assert_eq!(served, 20.0);
    assert_eq!(
        value(
            &before,
            "rgunicorn_worker_restarts_total",
            &[("reason", "crash")]
        ),
        0.0
    );
    let worker = server.worker_pids()[0];
    kill(Pid::from_raw(worker), Signal::SIGKILL).unwrap();
    assert!(
        server.wait_for_log_count("Booting worker with pid", 2, WAIT),
        "no replacement; log:\n{}",
        server.log()
    );
    let after = scrape(metrics);
    assert_eq!(
        value(
            &after,
            "rgunicorn_worker_restarts_total",
            &[("reason", "crash")]
        ),
        1.0
    );
    for name in [
        "rgunicorn_http_requests_total",
        "rgunicorn_http_request_duration_seconds_count",
        "rgunicorn_http_response_body_bytes_total",
        "rgunicorn_connections_total",
    ] {
        assert!(
            value(&after, name, &[]) >= value(&before, name, &[]),
            "{name} went down"
        );
    }
    assert_eq!(value(&after, "rgunicorn_http_requests_total", &[]), 20.0);
    // The new worker counts on top of the retired total.
    get_n(&server, "/", 1, 200);
    assert_eq!(
        value(&scrape(metrics), "rgunicorn_http_requests_total", &[]),
        21.0
    );
}

#[test]
fn a_scrape_is_answered_while_the_only_worker_is_stuck_in_the_app() {
    let (server, metrics) = start_with_metrics(1, &[]);
    let mut stuck = server.connect();
    stuck.send(b"GET /sleep?seconds=20 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let in_the_app = wait_until(WAIT, || {
        let samples = scrape(metrics);
        value(&samples, "rgunicorn_http_requests_in_flight", &[]) == 1.0
    });
    assert!(in_the_app, "the request never showed in flight");
    let started = Instant::now();
    let (status, table) = scrape_path(metrics, "/status");
    let took = started.elapsed();
    assert_eq!(status, 200);
    // Generous: the worker is stuck for 20 s; the master answers at once.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let worker = server.worker_pids()[0];
    let row = table
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some(&worker.to_string()))
        .unwrap_or_else(|| panic!("no row for {worker}:\n{table}"));
    assert!(row.contains("serving"), "{row}");
    assert!(row.ends_with("GET /sleep?seconds=20"), "{row}");
}

#[test]
fn status_lists_the_workers_and_rgunicorn_status_prints_them() {
    let (server, metrics) = start_with_metrics(2, &[]);
    get_n(&server, "/", 4, 200);
    let (status, table) = scrape_path(metrics, "/status");
    assert_eq!(status, 200);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("WORKER"), "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    let served: u64 = lines[1..]
        .iter()
        .map(|line| {
            line.split_whitespace()
                .nth(4)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(served, 4, "{table}");
    let pids: BTreeSet<String> = server.worker_pids().iter().map(i32::to_string).collect();
    let listed: BTreeSet<String> = lines[1..]
        .iter()
        .map(|line| line.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    assert_eq!(listed, pids);
    assert_eq!(scrape_path(metrics, "/nope").0, 404);

    let output = Command::new(env!("CARGO_BIN_EXE_rgunicorn"))
        .args(["status", "--metrics-bind", &metrics.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(printed.starts_with("WORKER"), "{printed}");
    assert_eq!(printed.lines().count(), 3, "{printed}");

    // The server's config file names the address just as well.
    let dir = support::TempDir::new("status-config");
    let config = dir.join("rgunicorn.toml");
    std::fs::write(&config, format!("metrics_bind = \"{metrics}\"\n")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_rgunicorn"))
        .args(["status", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8(output.stdout).unwrap().lines().count(), 3);
}

#[test]
fn rgunicorn_status_without_a_server_says_so_in_one_line() {
    let free = support::server::free_port();
    let output = Command::new(env!("CARGO_BIN_EXE_rgunicorn"))
        .args(["status", "--metrics-bind", &free.to_string()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("Error: cannot reach"), "{stderr}");

    let dir = support::TempDir::new("status-nothing");
    let output = Command::new(env!("CARGO_BIN_EXE_rgunicorn"))
        .arg("status")
        .current_dir(dir.path())
        .env_remove("RGUNICORN_CMD_ARGS")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with("Error: no --metrics-bind"), "{stderr}");
}

/// Reads datagrams until `lines` lines matching `wanted` arrived.
fn receive_lines(socket: &UdpSocket, wanted: impl Fn(&str) -> bool, lines: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.iter().filter(|l: &&String| wanted(l)).count() < lines {
        assert!(Instant::now() < deadline, "only got {got:?}");
        if let Ok(n) = socket.recv(&mut buf) {
            got.extend(String::from_utf8_lossy(&buf[..n]).lines().map(String::from));
        }
    }
    got
}

#[test]
fn a_statsd_listener_receives_gunicorns_lines_for_each_request() {
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    listener
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let statsd = listener.local_addr().unwrap().to_string();
    let server = ServerBuilder::new("metrics_app:application")
        .arg("--statsd-host")
        .arg(&statsd)
        .start();
    get_n(&server, "/", 5, 200);
    get_n(&server, "/missing", 2, 404);
    let lines = receive_lines(&listener, |l| l == "gunicorn.requests:1|c", 7);
    let count = |wanted: &str| lines.iter().filter(|l| *l == wanted).count();
    assert_eq!(count("gunicorn.requests:1|c"), 7, "{lines:?}");
    assert_eq!(count("gunicorn.request.status.200:1|c"), 5, "{lines:?}");
    assert_eq!(count("gunicorn.request.status.404:1|c"), 2, "{lines:?}");
    let durations = lines
        .iter()
        .filter(|l| l.starts_with("gunicorn.request.duration:") && l.ends_with("|ms"))
        .count();
    assert_eq!(durations, 7, "{lines:?}");
    receive_lines(&listener, |l| l == "gunicorn.workers:1|g", 1);
    // An error line (a malformed request is only debug; a killed worker
    // is an error) counts as gunicorn.log.error.
    kill(Pid::from_raw(server.worker_pids()[0]), Signal::SIGKILL).unwrap();
    receive_lines(&listener, |l| l == "gunicorn.log.error:1|c", 1);
}

#[test]
fn statsd_names_take_the_prefix_and_the_dogstatsd_tags() {
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    listener
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let statsd = listener.local_addr().unwrap().to_string();
    let server = ServerBuilder::new("metrics_app:application")
        .arg("--statsd-host")
        .arg(&statsd)
        .arg("--statsd-prefix")
        .arg("web")
        .arg("--dogstatsd-tags")
        .arg("env:test,team:sre")
        .start();
    get_n(&server, "/", 1, 200);
    receive_lines(
        &listener,
        |l| l == "web.gunicorn.requests:1|c|#env:test,team:sre",
        1,
    );
}

#[test]
fn bad_metrics_settings_are_refused_in_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["--metrics-bind", "127.0.0.1:99999"], "--metrics-bind"),
        (
            &["--metrics-bind", &taken],
            "Error: --metrics-bind: cannot bind",
        ),
        (&["--statsd-host", "unix:/tmp/x"], "--statsd-host"),
    ];
    for (args, start) in cases {
        let mut server = ServerBuilder::new("metrics_app:application");
        for arg in *args {
            server = server.arg(*arg);
        }
        let mut server = server.spawn();
        let status = server.wait_exit(WAIT).expect("the server exits");
        assert!(!status.success(), "{args:?}");
        let log = server.log();
        let error: Vec<&str> = log.lines().filter(|l| l.contains("Error")).collect();
        assert_eq!(error.len(), 1, "{args:?}: {log}");
        assert!(error[0].contains(start), "{args:?}: {log}");
    }
}

/// Stops, when dropped, the master a USR2 upgrade started (not our child):
/// the pid its pid file names, TERMed, then KILLed after a deadline.
struct NewMasterGuard {
    pid_file: std::path::PathBuf,
    old_master: i32,
}

impl Drop for NewMasterGuard {
    fn drop(&mut self) {
        let Some(pid) = read_pid_file(&self.pid_file).filter(|pid| *pid != self.old_master) else {
            return;
        };
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let gone = wait_until(WAIT, || kill(Pid::from_raw(pid), None).is_err());
        if !gone {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn read_pid_file(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The worker pids `/status` lists.
fn status_pids(address: SocketAddr) -> BTreeSet<i32> {
    let (_, table) = scrape_path(address, "/status");
    table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

#[test]
fn a_usr2_upgrade_hands_the_metrics_socket_to_the_new_master() {
    let dir = support::TempDir::new("metrics-usr2");
    let pid_file = dir.join("rgunicorn.pid");
    let (mut server, metrics) = start_with_metrics(1, &["--pid", pid_file.to_str().unwrap()]);
    let old_master = server.pid() as i32;
    assert!(wait_until(WAIT, || read_pid_file(&pid_file) == Some(old_master)));
    let _guard = NewMasterGuard {
        pid_file: pid_file.clone(),
        old_master,
    };
    let old_workers = status_pids(metrics);
    server.signal(Signal::SIGUSR2);
    assert!(
        server.wait_for_log_count("Booting worker with pid", 2, WAIT),
        "no new worker; log:\n{}",
        server.log()
    );
    assert!(wait_until(WAIT, || read_pid_file(&pid_file)
        .is_some_and(|pid| pid != old_master)));
    server.signal(Signal::SIGTERM);
    assert!(
        server.wait_exit(WAIT).is_some(),
        "the old master did not exit"
    );
    // The same address now answers from the new master, with its workers.
    let new_workers = wait_until(WAIT, || {
        let pids = status_pids(metrics);
        !pids.is_empty() && pids.is_disjoint(&old_workers)
    });
    assert!(new_workers, "log:\n{}", server.log());
    assert!(!server.log().contains("Error"), "log:\n{}", server.log());
}

/// The `rgunicorn_*` names a text mentions.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("rgunicorn_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        if name != "rgunicorn_" {
            // (the bare prefix, as the docs name it)
            names.insert(name);
        }
    }
    names
}

#[test]
fn the_docs_and_the_grafana_dashboard_name_exactly_the_exported_metrics() {
    let exported: BTreeSet<String> = EXPECTED
        .iter()
        .map(|(_, _, name, _)| name.to_string())
        .filter(|name| name.starts_with("rgunicorn_"))
        .collect();
    let histogram = "rgunicorn_http_request_duration_seconds";
    let root = support::repo_root();
    let docs = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    let mut documented = metric_names_in(&docs);
    documented.remove(histogram);
    documented.extend(["_bucket", "_sum", "_count"].map(|s| format!("{histogram}{s}")));
    assert_eq!(documented, exported, "docs/metrics.md");
    let dashboard = std::fs::read_to_string(root.join("examples/grafana-dashboard.json")).unwrap();
    let used = metric_names_in(&dashboard);
    assert!(used.len() >= 8, "{used:?}");
    assert!(
        used.is_subset(&exported),
        "unknown in the dashboard: {:?}",
        used.difference(&exported)
    );
}

#[test]
fn restarts_are_counted_by_reason_timeout_max_requests_and_reload() {
    let (server, metrics) = start_with_metrics(1, &["--timeout", "2"]);
    let mut stuck = server.connect();
    stuck.send(b"GET /sleep?seconds=30 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let counted = wait_until(WAIT, || {
        value(
            &scrape(metrics),
            "rgunicorn_worker_restarts_total",
            &[("reason", "timeout")],
        ) == 1.0
    });
    assert!(counted, "log:\n{}", server.log());
    let samples = scrape(metrics);
    assert_eq!(
        value(
            &samples,
            "rgunicorn_worker_restarts_total",
            &[("reason", "crash")]
        ),
        0.0
    );
    drop(server);

    let (server, metrics) = start_with_metrics(1, &["--max-requests", "3"]);
    get_n(&server, "/", 3, 200);
    let counted = wait_until(WAIT, || {
        value(
            &scrape(metrics),
            "rgunicorn_worker_restarts_total",
            &[("reason", "max_requests")],
        ) == 1.0
    });
    assert!(counted, "log:\n{}", server.log());
    let samples = scrape(metrics);
    assert_eq!(value(&samples, "rgunicorn_http_requests_total", &[]), 3.0);
    assert_eq!(
        value(
            &samples,
            "rgunicorn_worker_restarts_total",
            &[("reason", "crash")]
        ),
        0.0
    );

    server.signal(Signal::SIGHUP);
    let counted = wait_until(WAIT, || {
        value(
            &scrape(metrics),
            "rgunicorn_worker_restarts_total",
            &[("reason", "reload")],
        ) == 1.0
    });
    assert!(counted, "log:\n{}", server.log());
}

#[test]
fn metrics_on_a_unix_socket_are_served_and_the_file_is_removed_at_exit() {
    let dir = support::TempDir::new("metrics-unix");
    let path = dir.join("metrics.sock");
    let mut server = ServerBuilder::new("metrics_app:application")
        .arg("--metrics-bind")
        .arg(format!("unix:{}", path.display()))
        .start();
    get_n(&server, "/", 2, 200);
    let mut client = Client::connect(&Address::Unix(path.clone()));
    client.send(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let samples = parse_with_prometheus_client(&response.text());
    assert_eq!(value(&samples, "rgunicorn_http_requests_total", &[]), 2.0);
    let output = Command::new(env!("CARGO_BIN_EXE_rgunicorn"))
        .args([
            "status",
            "--metrics-bind",
            &format!("unix:{}", path.display()),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(WAIT).is_some_and(|s| s.success()));
    assert!(!path.exists(), "the metrics socket file was left behind");
}
