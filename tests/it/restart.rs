//! At-least-once across restarts: of the broker (SIGTERM, persistence on), of the daemon (SIGKILL), and a
//! graceful SIGTERM drain. Every published frame must end with a record; duplicates are allowed.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

use crate::support::daemon::{
    Daemon, DaemonProcess, count_by_seq, publish_args, settings, write_config,
};
use crate::support::{
    Broker, MAX_PACKET_BYTES, Subscriber, SubscriberOptions, fixture, with_timeout,
};

const FRAMES: u64 = 500;

/// A records subscriber whose session survives broker restarts.
async fn persistent_records(url: &str, id: &str) -> Subscriber {
    let options = SubscriberOptions {
        client_id: Some(id.to_owned()),
        clean_session: false,
        ..SubscriberOptions::default()
    };
    Subscriber::connect_with(url, "mqimg/#", QoS::AtLeastOnce, options).await
}

/// Receives records until every seq in `0..frames` has one; returns the count per seq.
async fn collect_until_complete(
    records: &mut Subscriber,
    counts: &mut BTreeMap<u64, u32>,
    frames: u64,
    secs: u64,
) {
    let wait = async {
        while (counts.len() as u64) < frames {
            let message = records.recv(Duration::from_secs(secs)).await;
            count_by_seq(counts, &message);
        }
    };
    with_timeout(secs, "records for every frame", wait).await;
}

fn report(what: &str, counts: &BTreeMap<u64, u32>, frames: u64) {
    let records: u32 = counts.values().sum();
    let duplicated = counts.values().filter(|n| **n > 1).count();
    eprintln!(
        "{what}: frames published {frames}, frames with a record {}, records {records}, frames recorded more than once {duplicated}",
        counts.len()
    );
    let missing: Vec<u64> = (0..frames).filter(|s| !counts.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "{what}: no record for frames {missing:?}"
    );
}

/// A QoS 1 publisher with a persistent session that keeps going through broker restarts: rumqttc
/// replays what was not acknowledged when the session resumes.
async fn resilient_publisher(url: String, frames: u64) {
    let broker: mqimg::config::BrokerAddr = url.parse().expect("a broker URL");
    let mut options = MqttOptions::new("mqimg-it-resilient-pub", broker.host(), broker.port());
    options
        .set_clean_session(false)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
        .set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let image = base64::engine::general_purpose::STANDARD.encode(fixture("seed/seed-frame.jpg"));
    tokio::spawn(async move {
        for seq in 0..frames {
            let payload = format!(r#"{{"camera":"restart","seq":{seq},"image":"{image}"}}"#);
            if client
                .publish("cams/restart", QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut acked = 0;
    while acked < frames {
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::PubAck(_))) => acked += 1,
            Ok(_) => {}
            // rumqttc reconnects on the next poll, without any delay of its own.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_frame_is_lost_when_the_broker_restarts_mid_stream() {
    let mut broker = Broker::new();
    let url = broker.url();
    let out = tempfile::tempdir().expect("a temp dir");
    let daemon = Daemon::start(settings(&url, &["cams/#"], out.path())).await;
    let mut records = persistent_records(&url, "mqimg-it-records-broker-restart").await;
    let publisher = tokio::spawn(resilient_publisher(url.clone(), FRAMES));

    let mut counts = BTreeMap::new();
    collect_until_complete(&mut records, &mut counts, 150, 60).await;
    broker.stop();
    broker.start();
    collect_until_complete(&mut records, &mut counts, FRAMES, 120).await;
    report("broker restart", &counts, FRAMES);
    with_timeout(30, "the publisher finishing", publisher)
        .await
        .expect("the publisher task");
    assert!(
        daemon.metrics.connections.get() >= 2,
        "the daemon never saw the broker go away"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_frame_is_lost_when_the_daemon_is_killed_and_restarted() {
    let broker = Broker::new();
    let url = broker.url();
    let out = tempfile::tempdir().expect("a temp dir");
    let config = write_config(
        &settings(&url, &["cams/#"], &out.path().join("frames")),
        out.path(),
    );
    let mut records = persistent_records(&url, "mqimg-it-records-daemon-kill").await;
    let mut daemon = DaemonProcess::start(&config).await;
    // Real 640x480 frames keep the daemon busy long enough to be killed mid-stream.
    let publish = publish_args(
        &url,
        "cams/kill",
        mqimg::frame::payload::Detected::Json,
        1,
        FRAMES,
        "frames/photo-640x480.jpg",
    );
    let publisher = tokio::spawn(async move { mqimg::cli::publish::run(&publish).await });

    let mut counts = BTreeMap::new();
    collect_until_complete(&mut records, &mut counts, 100, 60).await;
    daemon.signal("KILL");
    daemon.wait(10).await;
    let mut daemon = DaemonProcess::start(&config).await;
    // Proof that the kill came mid-stream: frames were left for the second daemon.
    daemon.wait_for_log("frame stored", 30).await;
    collect_until_complete(&mut records, &mut counts, FRAMES, 120).await;
    report("daemon SIGKILL", &counts, FRAMES);
    with_timeout(30, "the publisher finishing", publisher)
        .await
        .expect("the publisher task")
        .expect("publishing");
    daemon.signal("TERM");
    assert!(daemon.wait(30).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_frames_and_exits_cleanly() {
    let broker = Broker::new();
    let url = broker.url();
    let out = tempfile::tempdir().expect("a temp dir");
    let config = write_config(
        &settings(&url, &["cams/#"], &out.path().join("frames")),
        out.path(),
    );
    let mut records = persistent_records(&url, "mqimg-it-records-sigterm").await;
    let mut daemon = DaemonProcess::start(&config).await;
    let frames = 200;
    let publish = publish_args(
        &url,
        "cams/term",
        mqimg::frame::payload::Detected::Json,
        1,
        frames,
        "frames/photo-640x480.jpg",
    );
    with_timeout(60, "publishing", mqimg::cli::publish::run(&publish))
        .await
        .expect("publishing");

    let mut counts = BTreeMap::new();
    collect_until_complete(&mut records, &mut counts, 20, 60).await;
    daemon.signal("TERM");
    let status = daemon.wait(30).await;
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        daemon.log.join("\n")
    );
    let log = daemon.log.join("\n");
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(log.contains("disconnected from broker"), "{log}");
    // What the first daemon did not finish is redelivered to the next one.
    let mut daemon = DaemonProcess::start(&config).await;
    daemon.wait_for_log("frame stored", 30).await;
    collect_until_complete(&mut records, &mut counts, frames, 120).await;
    report("daemon SIGTERM", &counts, frames);
}
