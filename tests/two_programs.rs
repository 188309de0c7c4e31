//! The two programs: the master (`rgunicorn`) links no Python and never
//! maps libpython; it starts each worker as the Python program
//! (`rgunicorn-python`, beside it), which does. Started by hand, the Python
//! program says it is not meant to be, and a master without its Python
//! program stops before binding.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Server, ServerBuilder, TempDir};

/// The lines of `/proc/PID/maps` that map a libpython.
fn libpython_mappings(pid: i32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/maps: {e}"));
    maps.lines()
        .filter(|line| line.contains("libpython"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_master_maps_no_libpython_while_its_serving_workers_do() {
    let server = ServerBuilder::new("hello:application").workers(2).start();
    assert_eq!(server.get("/").status, 200);
    let master = server.pid() as i32;
    assert_eq!(
        libpython_mappings(master),
        Vec::<String>::new(),
        "the master maps libpython"
    );
    let workers = server.worker_pids();
    assert_eq!(workers.len(), 2, "{}", server.log());
    for worker in workers {
        assert!(
            !libpython_mappings(worker).is_empty(),
            "worker {worker} maps no libpython:\n{}",
            server.log()
        );
        let exe = std::fs::read_link(format!("/proc/{worker}/exe")).unwrap();
        assert_eq!(
            exe.file_name().unwrap(),
            "rgunicorn-python",
            "worker {worker} runs {}",
            exe.display()
        );
    }
}

#[test]
fn the_python_program_started_by_hand_says_so_in_one_line_and_exits_2() {
    for args in [
        &[][..],
        &["hello:application"][..],
        &["--handoff-fd", "x"][..],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_rgunicorn-python"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("rgunicorn-python: "),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_master_without_its_python_program_names_the_path_and_binds_nothing() {
    // The master alone in a directory (a hard link: same file, no copy).
    let dir = TempDir::new("lonely-master");
    let lonely = dir.join("rgunicorn");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_rgunicorn"), &lonely).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_rgunicorn"), &lonely).unwrap();
    }
    let address = support::server::free_port();
    let mut command = Command::new(&lonely);
    command
        .args(["--bind", &address.to_string(), "hello:application"])
        .current_dir(support::apps_dir());
    let mut server = Server::spawn_command(command, support::server::Address::Tcp(address), None);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("the master stops");
    assert_eq!(status.code(), Some(1), "{}", server.log());
    let missing = dir.join("rgunicorn-python");
    let error = server
        .log()
        .lines()
        .find(|line| line.starts_with("Error: "))
        .unwrap_or_else(|| panic!("no error line:\n{}", server.log()))
        .to_string();
    assert!(
        error.contains(&format!(
            "cannot open the Python program {}",
            missing.display()
        )),
        "{error}"
    );
    assert!(!server.log().contains("Listening at:"), "{}", server.log());
}
