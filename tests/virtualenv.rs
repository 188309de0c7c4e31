//! `--virtualenv` and `$VIRTUAL_ENV`: a fresh venv (made with the same
//! Python the binary was built for) gets a tiny local package installed by
//! pip, offline; an app importing it must be served, and the venv must be
//! what the embedded interpreter sees (`sys.prefix`, no base site-packages).
//! A directory that is not a virtualenv must be refused with a clear message.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{repo_root, Server, ServerBuilder, TempDir};

/// A venv in a temp dir with `rg_tinypkg` installed.
struct Venv {
    dir: TempDir,
}

impl Venv {
    fn create() -> Venv {
        let dir = TempDir::new("venv");
        let venv = dir.join("env");
        run(Command::new(support::python())
            .args(["-m", "venv"])
            .arg(&venv));
        let package = repo_root().join("tests").join("pkgs").join("rg_tinypkg");
        run(Command::new(venv.join("bin").join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--no-build-isolation",
                "--disable-pip-version-check",
            ])
            .arg(&package)
            .env("PIP_NO_CACHE_DIR", "1")
            .current_dir(dir.path()));
        Venv { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("env")
    }
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn report(server: &Server) -> String {
    let response = server.get("/");
    assert_eq!(response.status, 200, "{}", server.log());
    response.text()
}

fn canonical(path: &Path) -> String {
    path.canonicalize().unwrap().display().to_string()
}

#[test]
fn virtualenv_option_makes_its_packages_importable() {
    let venv = Venv::create();
    let server = ServerBuilder::new("venv_app:application")
        .arg("--virtualenv")
        .arg(venv.path().display().to_string())
        .start();
    let text = report(&server);
    assert!(text.contains("greeting=hello from rg_tinypkg\n"), "{text}");
    assert!(
        text.contains(&format!("package={}", canonical(&venv.path()))),
        "package not from the venv: {text}"
    );
}

#[test]
fn virtual_env_variable_is_the_default_virtualenv() {
    let venv = Venv::create();
    let server = ServerBuilder::new("venv_app:application")
        .env("VIRTUAL_ENV", venv.path().display().to_string())
        .start();
    let text = report(&server);
    assert!(text.contains("greeting=hello from rg_tinypkg\n"), "{text}");
}

#[test]
fn virtualenv_is_what_the_interpreter_sees_as_its_prefix() {
    let venv = Venv::create();
    let server = ServerBuilder::new("venv_app:application")
        .arg("--virtualenv")
        .arg(venv.path().display().to_string())
        .start();
    let text = report(&server);
    let prefix = text
        .lines()
        .find_map(|l| l.strip_prefix("prefix="))
        .expect("prefix line");
    assert_eq!(
        canonical(Path::new(prefix)),
        canonical(&venv.path()),
        "{text}"
    );
    // python3 -m venv does not include the base site-packages: neither may we.
    assert!(
        text.contains("flask_visible=False"),
        "base site-packages leaked into the venv: {text}"
    );
}

#[test]
fn without_a_virtualenv_the_package_is_not_importable() {
    let mut server = ServerBuilder::new("venv_app:application").spawn();
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("master did not exit");
    assert_eq!(status.code(), Some(4), "{}", server.log());
    assert!(server.log().contains("rg_tinypkg"), "{}", server.log());
}

#[test]
fn virtualenv_pointing_at_a_plain_directory_fails_with_a_clear_message() {
    let dir = TempDir::new("not-a-venv");
    let mut server = ServerBuilder::new("hello:application")
        .arg("--virtualenv")
        .arg(dir.path().display().to_string())
        .spawn();
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("master did not exit for a bad --virtualenv");
    assert!(!status.success(), "{}", server.log());
    let log = server.log();
    assert!(
        log.contains(&dir.path().display().to_string()),
        "message does not name the directory:\n{log}"
    );
    assert!(
        log.to_lowercase().contains("virtualenv"),
        "message does not say what is wrong:\n{log}"
    );
}

#[test]
fn virtualenv_of_another_python_version_is_refused_naming_both_versions() {
    // What `python3.99 -m venv` would leave: a pyvenv.cfg and a versioned lib.
    let dir = TempDir::new("other-version-venv");
    std::fs::create_dir_all(dir.join("lib/python3.99/site-packages")).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    // Any existing interpreter will do for the link: the version to check
    // is the one pyvenv.cfg records.
    let interpreter = which_python();
    std::os::unix::fs::symlink(&interpreter, dir.join("bin/python")).unwrap();
    std::fs::write(
        dir.join("pyvenv.cfg"),
        "home = /opt/python3.99/bin\ninclude-system-site-packages = false\nversion = 3.99.0\n",
    )
    .unwrap();
    let mut server = ServerBuilder::new("hello:application")
        .arg("--virtualenv")
        .arg(dir.path().display().to_string())
        .spawn();
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("master did not exit for a venv of another Python");
    assert!(!status.success(), "{}", server.log());
    let log = server.log();
    let built_for = env!("RGUNICORN_PYTHON_SHORT_VERSION");
    assert!(
        log.contains("3.99"),
        "message does not name the venv's Python:\n{log}"
    );
    assert!(
        log.contains(built_for),
        "message does not name the server's Python {built_for}:\n{log}"
    );
}

/// The absolute path of the build interpreter.
fn which_python() -> PathBuf {
    let output = Command::new(support::python())
        .args(["-c", "import sys; print(sys.executable, end='')"])
        .output()
        .expect("run python3");
    PathBuf::from(String::from_utf8(output.stdout).unwrap())
}
