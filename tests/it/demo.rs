//! `mqimg run --demo` as the README's first command runs it, on a private port instead of 1883: it
//! uses a broker that answers there, and otherwise starts the embedded one (issue 10, point 3).

use std::ffi::OsStr;

use crate::support::daemon::{DaemonProcess, settings, write_config};
use crate::support::{Broker, free_port};

const READY_SECS: u64 = 20;

/// Whether a line before the startup line contains `needle`: the demo says first which broker.
fn said_first(daemon: &DaemonProcess, needle: &str) -> bool {
    daemon
        .log
        .iter()
        .take_while(|line| !line.contains("mqimg starting"))
        .any(|line| line.contains(needle))
}

/// `run --demo -c config`, the config's broker on `url`.
fn demo(url: &str, dir: &std::path::Path) -> DaemonProcess {
    let config = write_config(&settings(url, &["cameras/#"], &dir.join("frames")), dir);
    DaemonProcess::spawn_args(&[
        OsStr::new("run"),
        OsStr::new("--demo"),
        OsStr::new("-c"),
        config.as_os_str(),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_uses_the_broker_that_answers() {
    let broker = Broker::new();
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut daemon = demo(&broker.url(), dir.path());
    daemon.wait_for_log("subscribed", READY_SECS).await;
    assert!(
        said_first(&daemon, "demo: a broker answers on"),
        "the first line says which broker: {}",
        daemon.log.join("\n")
    );
    daemon.signal("TERM");
    assert!(daemon.wait(30).await.success(), "{}", daemon.log.join("\n"));
}

#[cfg(feature = "embedded-broker")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_the_demo_starts_its_own_and_a_frame_becomes_a_record_and_a_file() {
    use crate::support::daemon::{json, publish_args};
    use crate::support::{Subscriber, with_timeout};
    use mqimg::frame::payload::Detected;
    use rumqttc::QoS;
    use std::time::Duration;

    let url = format!("mqtt://127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut daemon = demo(&url, dir.path());
    daemon.wait_for_log("subscribed", READY_SECS).await;
    assert!(
        said_first(&daemon, "started the embedded broker there"),
        "the first line says which broker: {}",
        daemon.log.join("\n")
    );

    let mut records = Subscriber::connect(&url, "mqimg/results/#", QoS::AtLeastOnce).await;
    let args = publish_args(
        &url,
        "cameras/door",
        Detected::Base64,
        1,
        1,
        "frames/photo-640x480.jpg",
    );
    with_timeout(
        30,
        "mqimg publish to the embedded broker",
        mqimg::cli::publish::run(&args),
    )
    .await
    .expect("publishing");
    let record = json(&records.recv(Duration::from_secs(30)).await);
    assert_eq!(record["topic"], "cameras/door", "{record}");
    let path = record["path"].as_str().expect("a stored file");
    assert!(std::path::Path::new(path).is_file(), "{path}");

    daemon.signal("TERM");
    assert!(daemon.wait(30).await.success(), "{}", daemon.log.join("\n"));
}

#[cfg(not(feature = "embedded-broker"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_or_the_feature_the_demo_says_how_to_get_one() {
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut daemon = demo(&url, dir.path());
    let status = daemon.wait(30).await;
    assert_eq!(status.code(), Some(2), "{}", daemon.log.join("\n"));
    assert!(
        daemon.log.join("\n").contains("--features embedded-broker"),
        "{}",
        daemon.log.join("\n")
    );
}
