//! `mqimg health`, as a container's HEALTHCHECK runs it: exit 0 only when `/readyz` answers 200
//! (issue 10, point 4).

use std::process::{Command, Output};

use crate::support::daemon::{Daemon, DaemonProcess, settings, write_config};
use crate::support::{Broker, free_port};

fn health(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mqimg"))
        .arg("health")
        .args(args)
        .output()
        .expect("running mqimg health")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_daemon_is_healthy_by_url_and_by_its_config() {
    let broker = Broker::new();
    let dir = tempfile::tempdir().expect("a temp dir");
    let daemon = Daemon::start(settings(&broker.url(), &["cams/#"], dir.path())).await;

    let by_url = health(&["--url", &format!("http://{}/readyz", daemon.http)]);
    assert!(by_url.status.success(), "{}", text(&by_url.stderr));
    assert_eq!(text(&by_url.stdout), "ready\n");

    // The config a container would pass: its http.listen, on all interfaces.
    let config = dir.path().join("health.toml");
    let listen = format!("0.0.0.0:{}", daemon.http.port());
    std::fs::write(&config, format!("[http]\nlisten = \"{listen}\"\n")).expect("a config");
    let by_config = health(&["-c", config.to_str().expect("a UTF-8 path")]);
    assert!(by_config.status.success(), "{}", text(&by_config.stderr));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_without_its_broker_is_unhealthy_with_the_reason_and_no_daemon_is_too() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut config = settings(
        &format!("mqtt://127.0.0.1:{}", free_port()),
        &["cams/#"],
        dir.path(),
    );
    let port = free_port();
    config.http.listen = Some(([127, 0, 0, 1], port).into());
    let path = write_config(&config, dir.path());
    let mut daemon = DaemonProcess::spawn(&path);
    daemon.wait_for_log("/readyz", 15).await;

    let out = health(&["-c", path.to_str().expect("a UTF-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("answered 503") && stderr.contains("not connected to the broker"),
        "{stderr}"
    );
    daemon.signal("TERM");
    daemon.wait(30).await;

    let out = health(&["--url", &format!("http://127.0.0.1:{port}/readyz")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot reach"),
        "{}",
        text(&out.stderr)
    );
}
