//! `cfg` of the hooks' `server` and `worker`: a read-only mirror of the
//! settings, named as gunicorn's `cfg` attributes.

use crate::config::Settings;
use pyo3::prelude::*;

/// The settings hooks can read as `server.cfg` / `worker.cfg`, named as
/// gunicorn's `cfg` attributes. Read-only.
#[pyclass(module = "rgunicorn", name = "Config", frozen, get_all)]
pub struct Config {
    wsgi_app: String,
    workers: u32,
    bind: Vec<String>,
    backlog: u32,
    timeout: u64,
    graceful_timeout: u64,
    keepalive: u64,
    worker_connections: usize,
    max_requests: u64,
    max_requests_jitter: u64,
    limit_request_line: usize,
    limit_request_fields: usize,
    limit_request_field_size: usize,
    chdir: Option<String>,
    pythonpath: Vec<String>,
    loglevel: String,
    accesslog: Option<String>,
    hooks: Option<String>,
}

#[pymethods]
impl Config {
    fn __repr__(&self) -> String {
        format!(
            "<rgunicorn.Config wsgi_app={:?} workers={} bind={:?} timeout={}>",
            self.wsgi_app, self.workers, self.bind, self.timeout
        )
    }
}

impl Config {
    pub(super) fn from_settings(settings: &Settings) -> Config {
        let path_text = |path: &std::path::PathBuf| path.display().to_string();
        Config {
            wsgi_app: settings.app.to_string(),
            workers: settings.workers,
            bind: settings.bind.iter().map(ToString::to_string).collect(),
            backlog: settings.backlog,
            timeout: settings.timeout,
            graceful_timeout: settings.graceful_timeout,
            keepalive: settings.keepalive,
            worker_connections: settings.worker_connections,
            max_requests: settings.max_requests,
            max_requests_jitter: settings.max_requests_jitter,
            limit_request_line: settings.limit_request_line,
            limit_request_fields: settings.limit_request_fields,
            limit_request_field_size: settings.limit_request_field_size,
            chdir: settings.chdir.as_ref().map(path_text),
            pythonpath: settings.pythonpath.iter().map(path_text).collect(),
            loglevel: settings.log_level.name().to_string(),
            accesslog: settings.access_logfile.clone(),
            hooks: settings.hooks.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::test_support::attach;
    use super::*;

    fn attr(object: &Bound<'_, PyAny>, name: &str) -> String {
        object.getattr(name).unwrap().repr().unwrap().to_string()
    }

    #[test]
    fn cfg_is_read_only_and_shows_the_settings() {
        attach(|py| {
            let settings = <Settings as clap::Parser>::try_parse_from([
                "rgunicorn",
                "-w",
                "3",
                "-b",
                "127.0.0.1:9000",
                "-b",
                "unix:/tmp/s",
                "pkg.mod:app",
            ])
            .unwrap();
            let cfg = Bound::new(py, Config::from_settings(&settings))
                .unwrap()
                .into_any();
            assert_eq!(attr(&cfg, "workers"), "3");
            assert_eq!(attr(&cfg, "bind"), "['127.0.0.1:9000', 'unix:/tmp/s']");
            assert_eq!(attr(&cfg, "wsgi_app"), "'pkg.mod:app'");
            assert!(cfg.setattr("workers", 5).is_err());
        });
    }
}
