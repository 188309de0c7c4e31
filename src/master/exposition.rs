//! The Prometheus text exposition format (version 0.0.4) of a
//! [`Snapshot`], and the plain-text table of `/status`. Names follow the
//! Prometheus conventions: one `rgunicorn_` prefix, base units (seconds,
//! bytes), `_total` on counters; label values are bounded (methods are
//! eight names, workers are slot numbers, not pids). docs/metrics.md lists
//! every metric.

use super::scoreboard::{Snapshot, WorkerState};
use crate::metrics::DURATION_BUCKETS;
use std::fmt::Write;

/// The Python version the binary is built for.
const PYTHON_VERSION: &str = env!("RGUNICORN_PYTHON_SHORT_VERSION");

/// Renders `snapshot` for `GET /metrics`.
pub fn prometheus_text(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let counts = &snapshot.counts;

    family(&mut out, "rgunicorn_http_requests_total", "counter", "HTTP responses sent, by request method and status code (including the server's own 4xx and 5xx).");
    for (method, status, count) in counts.requests() {
        let _ = writeln!(
            out,
            "rgunicorn_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {count}"
        );
    }

    family(&mut out, "rgunicorn_http_request_duration_seconds", "histogram", "Time from a request's head being complete to the last byte of the app's response being queued.");
    let cumulative = counts.duration_cumulative();
    for (bound, count) in DURATION_BUCKETS.iter().zip(cumulative) {
        let _ = writeln!(
            out,
            "rgunicorn_http_request_duration_seconds_bucket{{le=\"{bound:?}\"}} {count}"
        );
    }
    let total = cumulative[cumulative.len() - 1];
    let _ = writeln!(
        out,
        "rgunicorn_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {total}"
    );
    let _ = writeln!(
        out,
        "rgunicorn_http_request_duration_seconds_sum {}",
        counts.duration_sum_seconds()
    );
    let _ = writeln!(out, "rgunicorn_http_request_duration_seconds_count {total}");

    let gauges = snapshot.gauges;
    sample(
        &mut out,
        "rgunicorn_http_requests_in_flight",
        "gauge",
        "Requests whose head is complete and whose response is not yet.",
        gauges.requests_in_flight,
    );
    sample(
        &mut out,
        "rgunicorn_http_response_body_bytes_total",
        "counter",
        "Bytes of response bodies sent.",
        counts.response_body_bytes,
    );
    sample(
        &mut out,
        "rgunicorn_connections_open",
        "gauge",
        "Client connections open now.",
        gauges.connections_open,
    );
    sample(
        &mut out,
        "rgunicorn_connections_total",
        "counter",
        "Client connections accepted.",
        counts.connections,
    );

    family(
        &mut out,
        "rgunicorn_workers",
        "gauge",
        "Worker processes, by state.",
    );
    for state in WorkerState::ALL {
        let n = snapshot.workers.iter().filter(|w| w.state == state).count();
        let _ = writeln!(out, "rgunicorn_workers{{state=\"{}\"}} {n}", state.name());
    }

    family(
        &mut out,
        "rgunicorn_worker_restarts_total",
        "counter",
        "Workers replaced, by reason.",
    );
    for (reason, count) in &snapshot.restarts {
        let _ = writeln!(
            out,
            "rgunicorn_worker_restarts_total{{reason=\"{reason}\"}} {count}"
        );
    }

    family(
        &mut out,
        "rgunicorn_worker_memory_rss_bytes",
        "gauge",
        "Resident memory of each worker, by worker slot (1, 2, ...).",
    );
    for worker in &snapshot.workers {
        if let Some(rss) = worker.rss_bytes {
            let _ = writeln!(
                out,
                "rgunicorn_worker_memory_rss_bytes{{worker=\"{}\"}} {rss}",
                worker.slot
            );
        }
    }

    family(
        &mut out,
        "rgunicorn_listen_queue_length",
        "gauge",
        "Connections waiting in the kernel's accept queue, by listening TCP socket.",
    );
    for queue in &snapshot.listen_queues {
        let _ = writeln!(
            out,
            "rgunicorn_listen_queue_length{{listener=\"{}\"}} {}",
            escape(&queue.listener),
            queue.length
        );
    }
    family(&mut out, "rgunicorn_listen_queue_max", "gauge", "The most connections the kernel queues for accept (the effective backlog), by listening TCP socket.");
    for queue in &snapshot.listen_queues {
        let _ = writeln!(
            out,
            "rgunicorn_listen_queue_max{{listener=\"{}\"}} {}",
            escape(&queue.listener),
            queue.max
        );
    }

    sample(
        &mut out,
        "rgunicorn_statsd_dropped_total",
        "counter",
        "statsd datagrams dropped because the socket would block.",
        counts.statsd_dropped,
    );

    family(
        &mut out,
        "rgunicorn_build_info",
        "gauge",
        "Always 1: the rgunicorn version and the Python it embeds.",
    );
    let _ = writeln!(
        out,
        "rgunicorn_build_info{{version=\"{}\",python=\"{PYTHON_VERSION}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    family(
        &mut out,
        "process_start_time_seconds",
        "gauge",
        "When the master started, in seconds since the Unix epoch.",
    );
    let _ = writeln!(
        out,
        "process_start_time_seconds {:.3}",
        snapshot.start_time_seconds
    );
    out
}

/// Renders `snapshot` for `GET /status` (and `rgunicorn status`).
pub fn status_table(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<8} {:<9} {:>8} {:>10} {:>9}  CURRENT REQUEST",
        "WORKER", "PID", "STATE", "AGE", "REQUESTS", "RSS"
    );
    for worker in &snapshot.workers {
        let rss = worker
            .rss_bytes
            .map_or("-".to_string(), |b| format!("{:.1}M", b as f64 / 1048576.0));
        let request = match worker.request.as_str() {
            "" => "-",
            request => request,
        };
        let _ = writeln!(
            out,
            "{:<6} {:<8} {:<9} {:>8} {:>10} {:>9}  {request}",
            worker.slot,
            worker.pid,
            worker.state.name(),
            age(worker.age.as_secs()),
            worker.requests,
            rss,
        );
    }
    out
}

/// `42s`, `5m03s`, `2h05m`, `3d04h`.
fn age(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        3600..86400 => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d{:02}h", seconds / 86400, seconds % 86400 / 3600),
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short() {
        for (seconds, text) in [
            (0, "0s"),
            (59, "59s"),
            (61, "1m01s"),
            (7500, "2h05m"),
            (273600, "3d04h"),
        ] {
            assert_eq!(age(seconds), text);
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
    }
}
