//! HUP re-reads the configuration: the new workers get the new settings,
//! settings that need a rebind keep their values (with a warning), and a
//! broken file is logged while the current settings keep serving.

mod support;

use std::time::Duration;
use support::{wait_until, ServerBuilder, TempDir};

const WAIT: Duration = Duration::from_secs(20);

fn hup(pid: u32) {
    // SAFETY: sends a signal to the server this test started.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
}

#[test]
fn hup_rereads_the_config_file_for_the_new_workers() {
    let dir = TempDir::new("config-reload");
    let file = dir.join("rgunicorn.toml");
    std::fs::write(&file, "raw_env = [\"RG_FLAVOUR=mint\"]\nbacklog = 100\n").unwrap();
    let server = ServerBuilder::new("settings_app:application")
        .arg("-c")
        .arg(file.display().to_string())
        .start();
    assert_eq!(server.get("/env?RG_FLAVOUR").text(), "mint");

    std::fs::write(&file, "raw_env = [\"RG_FLAVOUR=lime\"]\nbacklog = 200\n").unwrap();
    hup(server.pid());
    assert!(
        wait_until(WAIT, || server.get("/env?RG_FLAVOUR").text() == "lime"),
        "new workers did not get the new raw_env: {}",
        server.log()
    );
    assert!(
        server
            .log()
            .contains("--backlog changed; it applies only after a restart"),
        "{}",
        server.log()
    );

    std::fs::write(&file, "raw_env = [\"RG_FLAVOUR=lemon\"]\nworkerz = 2\n").unwrap();
    hup(server.pid());
    assert!(
        server.wait_for_log(
            "Cannot reload the configuration, keeping the current one",
            WAIT
        ),
        "{}",
        server.log()
    );
    assert!(
        server.log().contains("unknown setting 'workerz'"),
        "{}",
        server.log()
    );
    assert!(
        wait_until(WAIT, || server.log_count("Booting worker with pid") >= 3),
        "{}",
        server.log()
    );
    for _ in 0..3 {
        assert_eq!(server.get("/env?RG_FLAVOUR").text(), "lime");
    }
}
