//! The issue's acceptance case: Flask installed with pip into a virtualenv
//! serves under `rgunicorn -w 4 --virtualenv VENV flask_venv_app:app`, with
//! Flask imported from the venv (not the base interpreter) and every worker
//! booted.

mod support;

use std::collections::HashSet;
use std::process::Command;
use support::{python, repo_root, ServerBuilder, TempDir};

/// A fresh venv with Flask pip-installed into it from the pinned wheels that
/// `.ci/setup` downloads into `target/wheelhouse` (`tests/wheelhouse.txt`):
/// no registry is asked at test time.
fn venv_with_flask(dir: &TempDir) -> std::path::PathBuf {
    let wheelhouse = repo_root().join("target").join("wheelhouse");
    let pinned = repo_root().join("tests").join("wheelhouse.txt");
    assert!(
        wheelhouse.join("wheelhouse.txt").exists(),
        "run `bash .ci/setup` first: it downloads the pinned Flask wheels into {}",
        wheelhouse.display()
    );
    let venv = dir.join("venv");
    let created = Command::new(python())
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("run python -m venv");
    assert!(created.success(), "python -m venv failed");
    let installed = Command::new(venv.join("bin").join("pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-index",
        ])
        .arg("--find-links")
        .arg(&wheelhouse)
        .arg("-r")
        .arg(&pinned)
        .status()
        .expect("run pip install");
    assert!(
        installed.success(),
        "pip install --no-index -r {} failed",
        pinned.display()
    );
    venv
}

#[test]
fn flask_installed_in_a_virtualenv_serves_under_four_workers() {
    let dir = TempDir::new("flask-venv");
    let venv = venv_with_flask(&dir);
    let server = ServerBuilder::new("flask_venv_app:app")
        .workers(4)
        .arg("--virtualenv")
        .arg(venv.display().to_string())
        .start();
    assert!(
        support::wait_until(std::time::Duration::from_secs(30), || {
            server.log().matches("Booting worker with pid").count() >= 4
        }),
        "four workers did not boot: {}",
        server.log()
    );

    let mut pids = HashSet::new();
    for _ in 0..20 {
        let response = server.get("/");
        assert_eq!(response.status, 200, "{}", server.log());
        let text = response.text();
        let venv_prefix = venv.canonicalize().unwrap().display().to_string();
        assert!(
            text.contains(&venv_prefix),
            "Flask not imported from the venv {venv_prefix}: {text}"
        );
        if let Some(pid) = text.split("\"pid\":").nth(1) {
            pids.insert(pid.trim_matches(|c: char| !c.is_ascii_digit()).to_string());
        }
    }
    assert!(!pids.is_empty());

    let mut client = server.connect();
    let body = br#"{"n": [1, 2, 3]}"#;
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    client.send(request.as_bytes());
    client.send(body);
    let response = client.read_response();
    assert_eq!(response.status, 200, "{}", server.log());
    assert!(
        response.text().contains("\"received\""),
        "{}",
        response.text()
    );
}
