//! The Python wheel, end to end (slow: the first test builds the wheel
//! with `pip wheel .`, a release build, once per run; the README says so).
//!
//! The wheel is built by the tools virtualenv that `.ci/setup` makes
//! (`target/wheel-tools`, with pinned maturin; `--no-build-isolation
//! --no-index`, cargo offline) and installed with `pip install --no-index`
//! into a fresh `python -m venv` of the build interpreter, with no cargo on
//! PATH, together with Flask from the pinned wheels in `target/wheelhouse`:
//! nothing comes from a registry at test time. The tests then use only
//! that virtualenv: its `rgunicorn` (found on PATH) serving the Flask
//! example with two workers, `python -m rgunicorn --version`, and the
//! launcher's one-line refusals of a Python without a shared libpython and
//! of another CPython minor version than the wheel's.

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::{python, repo_root, Server};

/// Generous: a release build from nothing on two shared cores.
const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);
/// `python -m venv`, `pip install` from local files, a launcher run.
const STEP_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The built wheel and the fresh virtualenv it is installed in.
struct Installed {
    wheel: PathBuf,
    venv: PathBuf,
}

/// Builds the wheel and installs it (once for all tests of this file: a
/// failure is kept, not retried by each test).
fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Result<Installed, String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        std::panic::catch_unwind(build_and_install).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    });
    match result {
        Ok(installed) => installed,
        Err(reason) => panic!("the wheel was not built and installed: {reason}"),
    }
}

fn build_and_install() -> Installed {
    let root = repo_root();
    let tools_python = root.join("target/wheel-tools/bin/python");
    let wheelhouse = root.join("target/wheelhouse");
    assert!(
        tools_python.exists() && wheelhouse.join("wheelhouse.txt").exists(),
        "run `bash .ci/setup` first: it makes target/wheel-tools (maturin) and target/wheelhouse"
    );
    let work = root.join("target/wheel-test");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();

    let wheels = work.join("wheels");
    let mut build = Command::new(&tools_python);
    build
        .args([
            "-m",
            "pip",
            "wheel",
            ".",
            "--no-build-isolation",
            "--no-deps",
        ])
        .args(["--no-index", "--disable-pip-version-check", "--wheel-dir"])
        .arg(&wheels)
        .current_dir(&root)
        // Its own target dir: the wheel's build (feature `wheel`) never
        // touches the binaries the other tests run.
        .env("CARGO_TARGET_DIR", root.join("target/wheel"))
        .env("CARGO_NET_OFFLINE", "true");
    succeed(build, BUILD_TIMEOUT, "pip wheel .");
    let wheel = only_file(&wheels, ".whl");

    let venv = work.join("venv");
    let mut create = Command::new(python());
    create.args(["-m", "venv"]).arg(&venv);
    succeed(create, STEP_TIMEOUT, "python -m venv");

    let mut install = Command::new(venv.join("bin/python"));
    install
        .args([
            "-m",
            "pip",
            "install",
            "--no-index",
            "--disable-pip-version-check",
        ])
        .arg("--find-links")
        .arg(&wheelhouse)
        .arg(&wheel)
        .arg("Flask")
        .env("PATH", path_without_cargo());
    succeed(install, STEP_TIMEOUT, "pip install WHEEL Flask");
    Installed { wheel, venv }
}

/// This process's PATH without the directories that hold `cargo` or
/// `rustc`, with the virtualenv's `bin` first when given.
fn path_without_cargo() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let kept: Vec<&str> = path
        .split(':')
        .filter(|dir| !dir.is_empty())
        .filter(|dir| {
            !["cargo", "rustc"]
                .iter()
                .any(|tool| Path::new(dir).join(tool).exists())
        })
        .collect();
    kept.join(":")
}

fn venv_path(venv: &Path) -> String {
    format!("{}:{}", venv.join("bin").display(), path_without_cargo())
}

/// The one file in `dir` whose name ends with `suffix`.
fn only_file(dir: &Path, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "expected one {suffix} in {}", dir.display());
    found.into_iter().next().unwrap()
}

/// Runs `command` in its own process group, killing the group if it takes
/// longer than `timeout` (pip's build runs maturin and cargo below it).
fn run_bounded(mut command: Command, timeout: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output();
        let _ = done_tx.send(());
        output
    });
    if done_rx.recv_timeout(timeout).is_err() {
        // SAFETY: kill(2) of the process group led by our child, which the
        // waiter thread has not reaped yet.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    waiter.join().unwrap().expect("wait")
}

fn succeed(command: Command, timeout: Duration, what: &str) -> Output {
    let started = Instant::now();
    let output = run_bounded(command, timeout);
    assert!(
        output.status.success(),
        "{what} failed after {:?} ({}):\n{}\n{}",
        started.elapsed(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// What the build interpreter reports for `expression` (`sys` and
/// `sysconfig` imported).
fn build_python_says(expression: &str) -> String {
    let mut command = Command::new(python());
    command.args(["-c", &format!("import sys, sysconfig; print({expression})")]);
    let output = succeed(command, STEP_TIMEOUT, expression);
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// Runs the virtualenv's `python -m rgunicorn ARGS` with `env`.
fn python_m_rgunicorn(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let venv = &installed().venv;
    let mut command = Command::new(venv.join("bin/python"));
    command
        .args(["-m", "rgunicorn"])
        .args(args)
        .env("PATH", venv_path(venv));
    for (key, value) in env {
        command.env(key, value);
    }
    run_bounded(command, STEP_TIMEOUT)
}

#[test]
fn wheel_is_tagged_for_the_build_cpython_and_carries_no_build_path() {
    let installed = installed();
    let name = installed.wheel.file_name().unwrap().to_string_lossy();
    let tag = format!("cp{}", build_python_says("'%d%d' % sys.version_info[:2]"));
    let expected = format!("rgunicorn-{}-{tag}-{tag}-", env!("CARGO_PKG_VERSION"));
    assert!(name.starts_with(&expected), "{name}");
    let platform = name[expected.len()..].trim_end_matches(".whl");
    let arch = std::env::consts::ARCH;
    assert!(
        platform == format!("linux_{arch}")
            || (platform.starts_with("manylinux_") && platform.ends_with(arch)),
        "{name}"
    );

    // The master and, beside it, the Python program it runs for workers.
    for name in ["rgunicorn-bin", "rgunicorn-python"] {
        let program = std::fs::read(installed.venv.join("bin").join(name)).unwrap();
        for fact in ["sys.base_prefix", "sysconfig.get_config_var('LIBDIR')"] {
            let path = build_python_says(fact);
            assert!(
                !program.windows(path.len()).any(|w| w == path.as_bytes()),
                "{name} contains the build machine's {fact} ({path})"
            );
        }
    }
}

#[test]
fn wheel_rgunicorn_on_the_venv_path_serves_the_flask_example_with_two_workers() {
    let venv = &installed().venv;
    let root = repo_root();
    let address = support::server::free_port();
    // `env` finds rgunicorn on the venv's PATH and execs it: the guard's
    // pid is the master's.
    let mut command = Command::new("/usr/bin/env");
    command
        .arg("rgunicorn")
        .args(["--bind", &address.to_string(), "--workers", "2"])
        .arg("--chdir")
        .arg(&root)
        .arg("--pythonpath")
        .arg(root.join("tests/apps"))
        .arg("wheel_flask_app:app")
        .env("PATH", venv_path(venv))
        .env("LD_LIBRARY_PATH", "/nonexistent/callers-own-dir");
    let mut server = Server::spawn_command(command, support::server::Address::Tcp(address), None);
    assert!(
        server.wait_for_log_count("Booting worker with pid", 2, support::BOOT_TIMEOUT),
        "{}",
        server.log()
    );
    server.wait_ready();

    let hello = server.get("/hello/wheel");
    assert_eq!(hello.status, 200, "{}", server.log());
    assert_eq!(hello.text(), "Hello, wheel!\n");

    let report = server.get("/_report");
    assert_eq!(report.status, 200, "{}", server.log());
    let report = report.text();
    let prefix = |path: &Path| format!("\"prefix\":\"{}\"", path.display());
    assert!(
        report.contains(&prefix(venv)) || report.contains(&prefix(&venv.canonicalize().unwrap())),
        "sys.prefix is not the venv {}: {report}",
        venv.display()
    );
    assert!(report.contains("\"multiprocess\":true"), "{report}");
    let flask_dir = venv.join("lib");
    assert!(
        report.contains(&format!("\"flask_file\":\"{}", flask_dir.display())),
        "Flask not imported from the venv: {report}"
    );
    // The app sees the caller's LD_LIBRARY_PATH, not the launcher's.
    assert!(
        report.contains("\"ld_library_path\":\"/nonexistent/callers-own-dir\""),
        "{report}"
    );
    assert!(report.contains("\"launch_variables\":[]"), "{report}");
}

#[test]
fn wheel_python_dash_m_rgunicorn_prints_the_version() {
    let output = python_m_rgunicorn(&["--version"], &[]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("rgunicorn {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// One line on stderr, exit code 1, nothing on stdout (the server never
/// started).
fn one_line_refusal(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("Error: "), "{stderr}");
    stderr
}

#[test]
fn wheel_python_without_a_shared_libpython_gets_one_line_saying_what_to_install() {
    let venv = &installed().venv;
    // What a `--disable-shared` build (pyenv's default) reports: the venv's
    // interpreter, given the sysconfig data of its own build with only the
    // shared-library facts changed, and a LIBDIR without a libpython.
    let fake = venv.parent().unwrap().join("static-python");
    let libdir = fake.join("lib");
    std::fs::create_dir_all(&libdir).unwrap();
    let module = "_sysconfigdata_rgunicorn_static";
    let write_fake = format!(
        r#"import pprint, sys, sysconfig
real = __import__(sysconfig._get_sysconfigdata_name()).build_time_vars
static = "libpython%d.%d%s.a" % (sys.version_info[0], sys.version_info[1], sys.abiflags)
fake = dict(real, Py_ENABLE_SHARED=0, LDLIBRARY=static, INSTSONAME=static, LIBDIR={libdir:?})
with open({path:?}, "w") as f:
    f.write("build_time_vars = " + pprint.pformat(fake) + "\n")
"#,
        libdir = libdir.display().to_string(),
        path = fake.join(format!("{module}.py")).display().to_string(),
    );
    let mut command = Command::new(venv.join("bin/python"));
    command.args(["-c", &write_fake]);
    succeed(command, STEP_TIMEOUT, "writing the fake sysconfig data");

    let output = python_m_rgunicorn(
        &["--version"],
        &[
            ("PYTHONPATH", &fake),
            ("_PYTHON_SYSCONFIGDATA_NAME", Path::new(module)),
        ],
    );
    let line = one_line_refusal(&output);
    let minor = build_python_says("'%d.%d' % sys.version_info[:2]");
    assert!(
        line.contains(&format!(
            "has no shared libpython (libpython{minor}.so.1.0 is not in {})",
            libdir.display()
        )),
        "{line}"
    );
    assert!(
        line.contains("--enable-shared") || line.contains(&format!("libpython{minor}")),
        "{line}"
    );
}

#[test]
fn wheel_for_another_cpython_minor_gets_one_line_naming_what_to_install() {
    let venv = &installed().venv;
    // The installed package as another CPython's wheel would have it: the
    // same files with the wheel tag of CPython 3.9 (3.8 when built by 3.9),
    // put first on the venv interpreter's sys.path.
    let minor = build_python_says("sys.version_info[1]");
    let other = if minor == "9" { "8" } else { "9" };
    let site = venv.join(format!("lib/python3.{minor}/site-packages"));
    let copy = venv.parent().unwrap().join("other-minor");
    std::fs::create_dir_all(copy.join("rgunicorn")).unwrap();
    for entry in std::fs::read_dir(site.join("rgunicorn")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(
                &path,
                copy.join("rgunicorn").join(path.file_name().unwrap()),
            )
            .unwrap();
        }
    }
    let dist_info = format!("rgunicorn-{}.dist-info", env!("CARGO_PKG_VERSION"));
    std::fs::create_dir_all(copy.join(&dist_info)).unwrap();
    std::fs::copy(
        site.join(&dist_info).join("METADATA"),
        copy.join(&dist_info).join("METADATA"),
    )
    .unwrap();
    let wheel = std::fs::read_to_string(site.join(&dist_info).join("WHEEL")).unwrap();
    let ours = format!("cp3{minor}");
    let theirs = format!("cp3{other}");
    assert!(wheel.contains(&ours), "{wheel}");
    std::fs::write(
        copy.join(&dist_info).join("WHEEL"),
        wheel.replace(&ours, &theirs),
    )
    .unwrap();

    let output = python_m_rgunicorn(&["--version"], &[("PYTHONPATH", &copy)]);
    let line = one_line_refusal(&output);
    assert!(
        line.contains(&format!(
            "this rgunicorn is built for CPython 3.{other} (wheel tag {theirs}), but runs under cpython 3.{minor}."
        )),
        "{line}"
    );
    assert!(
        line.contains("-m pip install --force-reinstall rgunicorn"),
        "{line}"
    );
}

#[test]
fn wheel_program_started_without_its_launcher_refuses_to_guess_the_interpreter() {
    let venv = &installed().venv;
    let libdir = build_python_says("sysconfig.get_config_var('LIBDIR')");
    let mut command = Command::new(venv.join("bin/rgunicorn-bin"));
    command
        .args(["--bind", &support::server::free_port().to_string()])
        .arg("--chdir")
        .arg(repo_root().join("tests/apps"))
        .arg("hello:application")
        .env("LD_LIBRARY_PATH", libdir)
        .env("PATH", venv_path(venv));
    let output = run_bounded(command, STEP_TIMEOUT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "this rgunicorn binary belongs to the Python wheel and records no interpreter: \
             start it with the `rgunicorn` command or `python -m rgunicorn`"
        ),
        "{stderr}"
    );
}

/// SIGTERMs (then SIGKILLs) a pid on drop: the USR2 successor, which no
/// `Server` guard owns.
struct PidGuard(i32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        // SAFETY: kill(2) of a pid this test started (through USR2).
        unsafe { libc::kill(self.0, libc::SIGTERM) };
        if !support::wait_until(Duration::from_secs(10), || {
            !support::server::process_alive(self.0)
        }) {
            // SAFETY: as above.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

#[test]
fn wheel_usr2_successor_serves_under_the_launchers_libpython() {
    let venv = &installed().venv;
    let address = support::server::free_port();
    let mut command = Command::new(venv.join("bin/rgunicorn"));
    command
        .args(["--bind", &address.to_string(), "--workers", "1"])
        .arg("--chdir")
        .arg(repo_root().join("tests/apps"))
        .arg("hello:application")
        .env("PATH", venv_path(venv));
    let mut old = Server::spawn_command(command, support::server::Address::Tcp(address), None);
    old.wait_ready();

    // The successor is exec'd from the master's environment, which keeps
    // the launcher's library path and facts (only workers drop them).
    old.signal(nix::sys::signal::Signal::SIGUSR2);
    assert!(
        old.wait_for_log("Booting new master with pid: ", support::BOOT_TIMEOUT),
        "{}",
        old.log()
    );
    let new_pid: i32 = old
        .log()
        .split("Booting new master with pid: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("new master pid");
    let _new_master = PidGuard(new_pid);
    let new_worker = format!("[{new_pid}] [INFO] Booting worker with pid: ");
    assert!(
        old.wait_for_log_count(&new_worker, 1, support::BOOT_TIMEOUT),
        "{}",
        old.log()
    );
    // Not `old.stop()`: it also kills the workers the log names, which
    // include the new master's.
    // SAFETY: kill(2) of the master this test spawned.
    unsafe { libc::kill(old.pid() as i32, libc::SIGTERM) };
    assert!(
        old.wait_exit(Duration::from_secs(30)).is_some(),
        "{}",
        old.log()
    );
    // The address is the old master's, the socket now the new one's alone.
    let response = old.get("/");
    assert_eq!(response.status, 200, "{}", old.log());
    assert!(!old.log().contains("ERROR"), "{}", old.log());
}
