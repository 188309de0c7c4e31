//! Build script: pins the Python program (`rgunicorn-python`, the one
//! target that links libpython) to the libpython of the interpreter pyo3
//! was configured for.
//!
//! pyo3 links `-lpython3.X` and adds the interpreter's `LIBDIR` to the link
//! search path, but nothing tells the dynamic loader to look there at run
//! time. On a machine where a system libpython of the same soname exists
//! (Debian's `/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0` beside a pyenv
//! build, say), the loader would pick the system one and the worker would run
//! a different interpreter than `python3`. We add an rpath to `LIBDIR` and
//! record the interpreter's identity (its real executable, libpython path,
//! version, and whether libpython is linked shared) so the worker can verify
//! at start-up that the library it actually loaded is the one it was built
//! for (`src/worker/wsgi/interpreter.rs`).
//!
//! With the `wheel` feature (the Python wheel, `pyproject.toml`) nothing of
//! the build machine is recorded but the CPython `major.minor` the binary's
//! ABI is for: no rpath, no paths. The wheel's launcher
//! (`python/rgunicorn/launcher.py`) finds the libpython of the interpreter
//! it runs under and hands the facts to the binary at run time
//! (`src/worker/wsgi/expected_python.rs`).

use std::process::Command;

/// Asks the build interpreter for the facts the worker checks at run time.
const PROBE: &str = r#"
import os, sys, sysconfig
print(os.path.realpath(sys.executable))
print(sysconfig.get_config_var("LIBDIR") or "")
print(sysconfig.get_config_var("LDLIBRARY") or "")
print(sys.version.replace("\n", " "))
print("%d.%d" % sys.version_info[:2])
"#;

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    let config = pyo3_build_config::get();
    let executable = config
        .executable()
        .expect("pyo3 found no Python executable; set PYO3_PYTHON")
        .to_string();
    let output = Command::new(&executable)
        .args(["-c", PROBE])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {executable}: {e}"));
    assert!(
        output.status.success(),
        "{executable} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("probe output is UTF-8");
    let mut lines = text.lines();
    let mut next = || lines.next().unwrap_or_default().to_string();
    let (real_executable, libdir, ldlibrary, version, short_version) =
        (next(), next(), next(), next(), next());

    let wheel = std::env::var_os("CARGO_FEATURE_WHEEL").is_some();
    let recorded = |fact: String| if wheel { String::new() } else { fact };
    let libdir = recorded(libdir);
    if !libdir.is_empty() {
        println!("cargo:rustc-link-arg-bin=rgunicorn-python=-Wl,-rpath,{libdir}");
    }
    println!(
        "cargo:rustc-env=RGUNICORN_PYTHON_EXECUTABLE={}",
        recorded(real_executable)
    );
    println!("cargo:rustc-env=RGUNICORN_PYTHON_LIBDIR={libdir}");
    println!(
        "cargo:rustc-env=RGUNICORN_PYTHON_LDLIBRARY={}",
        recorded(ldlibrary)
    );
    println!(
        "cargo:rustc-env=RGUNICORN_PYTHON_VERSION={}",
        recorded(version)
    );
    println!("cargo:rustc-env=RGUNICORN_PYTHON_SHORT_VERSION={short_version}");
    // Whether pyo3 links libpython as a shared library: when it is linked
    // statically there is no separate library to verify at run time.
    assert!(
        config.shared() || !wheel,
        "the wheel needs {executable} to have a shared libpython: the binary loads the \
         libpython of the interpreter it serves (PYTHON_CONFIGURE_OPTS=--enable-shared)"
    );
    let shared = if config.shared() { "1" } else { "0" };
    println!("cargo:rustc-env=RGUNICORN_PYTHON_SHARED={shared}");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    println!("cargo:rerun-if-changed=build.rs");
}
