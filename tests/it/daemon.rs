//! `mqimg run` in-process against a private Mosquitto: payload forms, bad frames, wildcards, hostile
//! topics, oversized frames.

use mqimg::frame::record::Stage;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rumqttc::QoS;
use sha2::{Digest, Sha256};

use crate::support::daemon::{Daemon, http_get, json, publish_args, settings};
use crate::support::{Broker, Subscriber, fixture, publish_once, with_timeout};

const RECORD_WAIT: Duration = Duration::from_secs(30);

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Publishes a frame that decodes and waits for its success record: with one worker, records come out
/// in arrival order, so every record of an earlier frame has been received by then.
async fn sentinel(
    broker: &Broker,
    records: &mut Subscriber,
    topic: &str,
) -> Vec<serde_json::Value> {
    publish_once(
        &broker.url(),
        topic,
        fixture("seed/seed-frame.jpg"),
        QoS::AtLeastOnce,
    )
    .await;
    let mut before = Vec::new();
    loop {
        let message = records.recv(RECORD_WAIT).await;
        let record = json(&message);
        if record["topic"] == topic {
            assert_eq!(record["width"], 100, "the sentinel frame failed: {record}");
            return before;
        }
        before.push(record);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_payload_form_arrives_as_a_file_and_a_result_record() {
    let broker = Broker::new();
    let out = tempfile::tempdir().expect("a temp dir");
    let daemon = Daemon::start(settings(&broker.url(), &["cams/#"], out.path())).await;
    let mut records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;

    let jpeg = fixture("frames/photo-640x480.jpg");
    let png = fixture("frames/photo-640x480.png");
    let forms = [
        ("cams/raw-jpeg", "frames/photo-640x480.jpg", "raw", "jpeg"),
        ("cams/raw-png", "frames/photo-640x480.png", "raw", "png"),
        ("cams/b64", "encoded/photo-640x480.b64", "base64", "jpeg"),
        (
            "cams/mime",
            "encoded/photo-640x480.mime.b64",
            "base64",
            "jpeg",
        ),
        (
            "cams/urlsafe",
            "encoded/photo-640x480.urlsafe.b64",
            "base64",
            "jpeg",
        ),
        (
            "cams/datauri",
            "encoded/photo-640x480.datauri.txt",
            "data-uri",
            "jpeg",
        ),
        ("cams/json", "encoded/photo-640x480.json", "json", "jpeg"),
    ];
    for (topic, file, _, _) in forms {
        publish_once(&broker.url(), topic, fixture(file), QoS::AtLeastOnce).await;
    }
    let received = records.recv_n(forms.len(), RECORD_WAIT).await;
    let by_topic: BTreeMap<String, serde_json::Value> = received
        .iter()
        .map(|m| {
            assert!(
                m.topic.starts_with("mqimg/results/"),
                "unexpected record on {}: {:?}",
                m.topic,
                json(m)
            );
            (
                m.topic.trim_start_matches("mqimg/results/").to_owned(),
                json(m),
            )
        })
        .collect();
    for (topic, file, encoding, format) in forms {
        let record = &by_topic[topic];
        assert_eq!(record["topic"], topic);
        assert_eq!(record["encoding"], encoding, "{file}: {record}");
        assert_eq!(record["format"], format, "{file}: {record}");
        assert_eq!(
            (record["width"].as_u64(), record["height"].as_u64()),
            (Some(640), Some(480))
        );
        assert_eq!(record["rgb_bytes"], 640 * 480 * 3);
        let image = if format == "png" { &png } else { &jpeg };
        assert_eq!(record["sha256"], sha256_hex(image), "{file}");
        let path = record["path"].as_str().expect("a path in the record");
        assert!(
            Path::new(path).starts_with(out.path()),
            "{path} is outside the output dir"
        );
        let stored = std::fs::read(path).expect("the stored frame");
        assert_eq!(
            &stored, image,
            "{path} does not hold the original image bytes"
        );
        if encoding == "json" {
            assert_eq!(record["meta"]["camera"], "door");
            assert!(record["meta"].get("image").is_none());
        }
    }
    assert_eq!(daemon.metrics.ok.get(), forms.len() as u64);
    let http = daemon.http;
    let (status, body) = tokio::task::spawn_blocking(move || http_get(http, "/metrics"))
        .await
        .expect("the request");
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!("mqimg_frames_ok_total {}", forms.len())),
        "{body}"
    );
    let (status, _) = tokio::task::spawn_blocking(move || http_get(http, "/readyz"))
        .await
        .expect("the request");
    assert_eq!(status, 200);
    let summary = daemon.stop().await;
    assert_eq!(summary.unfinished, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_frame_yields_exactly_one_failure_record_and_the_daemon_keeps_going() {
    let broker = Broker::new();
    let out = tempfile::tempdir().expect("a temp dir");
    let mut settings = settings(&broker.url(), &["cams/#"], out.path());
    settings.decode.workers = 1;
    let daemon = Daemon::start(settings).await;
    let mut records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;

    let bad = [
        ("bad/empty.jpg", "payload"),
        ("bad/random-65536.bin", "payload"),
        ("bad/invalid-chars.b64", "payload"),
        ("bad/bad-padding.b64", "payload"),
        ("bad/truncated-half.jpg", "decode"),
        ("bad/bomb-16384x16384.jpg", "limits"),
        ("bad/bomb-65000x65000.jpg", "limits"),
        ("variants/arithmetic-227x149.jpg", "decode"),
        ("variants/precision12-149x227.jpg", "decode"),
    ];
    for (i, (file, _)) in bad.iter().enumerate() {
        publish_once(
            &broker.url(),
            &format!("cams/bad/{i}"),
            fixture(file),
            QoS::AtLeastOnce,
        )
        .await;
    }
    // corrupt-entropy.jpg may decode with a warning instead of failing; either way: one record.
    publish_once(
        &broker.url(),
        "cams/corrupt",
        fixture("bad/corrupt-entropy.jpg"),
        QoS::AtLeastOnce,
    )
    .await;
    let before = sentinel(&broker, &mut records, "cams/sentinel").await;

    assert_eq!(
        before.len(),
        bad.len() + 1,
        "records before the sentinel: {before:#?}"
    );
    for (i, (file, stage)) in bad.iter().enumerate() {
        let topic = format!("cams/bad/{i}");
        let mine: Vec<_> = before.iter().filter(|r| r["topic"] == topic).collect();
        assert_eq!(mine.len(), 1, "{file}: {mine:?}");
        assert_eq!(mine[0]["stage"], *stage, "{file}: {}", mine[0]);
        let error = mine[0]["error"].as_str().expect("an error line");
        assert!(
            !error.is_empty() && !error.contains('\n'),
            "{file}: {error:?}"
        );
        assert_eq!(mine[0]["payload_bytes"], fixture(file).len());
    }
    let corrupt: Vec<_> = before
        .iter()
        .filter(|r| r["topic"] == "cams/corrupt")
        .collect();
    assert_eq!(corrupt.len(), 1);
    assert!(
        corrupt[0]["stage"] == "decode" || corrupt[0]["warnings"].is_array(),
        "corrupt-entropy.jpg neither failed nor carried a warning: {}",
        corrupt[0]
    );
    assert!(
        records.try_recv().is_none(),
        "extra records after the sentinel"
    );
    assert_eq!(daemon.metrics.connections.get(), 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_subscriptions_take_matching_topics_only() {
    let broker = Broker::new();
    let out = tempfile::tempdir().expect("a temp dir");
    let mut settings = settings(&broker.url(), &["cams/+/jpeg", "raw/#"], out.path());
    settings.decode.workers = 1;
    let daemon = Daemon::start(settings).await;
    let mut records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;

    let seed = fixture("seed/seed-frame.jpg");
    for topic in [
        "cams/a/jpeg",
        "cams/a/png",
        "cams/a/b/jpeg",
        "raw/x/y/z",
        "raw",
        "other/jpeg",
    ] {
        publish_once(&broker.url(), topic, seed.clone(), QoS::AtLeastOnce).await;
    }
    let before = sentinel(&broker, &mut records, "raw/sentinel").await;
    let mut topics: Vec<&str> = before
        .iter()
        .map(|r| r["topic"].as_str().expect("a topic"))
        .collect();
    topics.sort_unstable();
    assert_eq!(topics, ["cams/a/jpeg", "raw", "raw/x/y/z"]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_topics_cannot_write_outside_the_output_folder() {
    let broker = Broker::new();
    let parent = tempfile::tempdir().expect("a temp dir");
    let out = parent.path().join("frames");
    // One filter per hostile root ("#" is refused: it would match mqimg's own records).
    let filters = [
        "a/#",
        "..",
        "../#",
        "/#",
        "back\\slash/#",
        "кадр/#",
        "cams/#",
    ];
    let daemon = Daemon::start(settings(&broker.url(), &filters, &out)).await;
    let mut records = Subscriber::connect(&broker.url(), "mqimg/results/#", QoS::AtLeastOnce).await;

    let long = format!("cams/{}", "x".repeat(3000));
    let hostile = [
        "a/../../etc",
        "..",
        "../escape",
        "/abs/olute",
        "a//b",
        "back\\slash/..\\..",
        "кадр/📷",
        long.as_str(),
    ];
    for topic in hostile {
        publish_once(
            &broker.url(),
            topic,
            fixture("seed/seed-frame.jpg"),
            QoS::AtLeastOnce,
        )
        .await;
    }
    let received = records.recv_n(hostile.len(), RECORD_WAIT).await;
    let root = std::fs::canonicalize(&out).expect("the output dir");
    for message in &received {
        let record = json(message);
        let path = record["path"]
            .as_str()
            .unwrap_or_else(|| panic!("no path: {record}"));
        let real = std::fs::canonicalize(path).expect("the stored file exists");
        assert!(
            real.starts_with(&root),
            "{:?} escaped to {real:?}",
            record["topic"]
        );
    }
    let topics: Vec<_> = received.iter().map(|m| json(m)["topic"].clone()).collect();
    for topic in hostile {
        assert!(
            topics.contains(&serde_json::Value::from(topic)),
            "no record for {topic:?}"
        );
    }
    let outside: Vec<_> = std::fs::read_dir(parent.path())
        .expect("the parent dir")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    assert_eq!(
        outside,
        ["frames"],
        "files appeared beside the output folder"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_under_a_persistent_session_fails_once_without_reconnecting() {
    let broker = Broker::new();
    let out = tempfile::tempdir().expect("a temp dir");
    let mut settings = settings(&broker.url(), &["cams/#"], out.path());
    settings.decode.workers = 1;
    settings.decode.max_payload_bytes = 200_000;
    // Persistent QoS 1 session: a frame that broke the connection would be redelivered forever.
    assert!(!settings.broker.clean_session);
    let daemon = Daemon::start(settings).await;
    let mut records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;

    let big = fixture("frames/photo-1920x1080.jpg");
    assert!(big.len() > 200_000);
    publish_once(&broker.url(), "cams/big", big.clone(), QoS::AtLeastOnce).await;
    let before = sentinel(&broker, &mut records, "cams/after").await;
    assert_eq!(before.len(), 1, "{before:#?}");
    assert_eq!(before[0]["stage"], "limits");
    assert_eq!(before[0]["payload_bytes"], big.len());
    let error = before[0]["error"].as_str().expect("an error");
    assert!(error.contains("200000"), "{error}");
    assert_eq!(
        daemon.metrics.connections.get(),
        1,
        "the daemon reconnected"
    );
    assert_eq!(daemon.metrics.failures(Stage::Limits), 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_waits_for_a_broker_that_is_not_up_yet() {
    let mut broker = Broker::new();
    let url = broker.url();
    broker.stop();
    let out = tempfile::tempdir().expect("a temp dir");
    let settings = settings(&url, &["cams/#"], out.path());
    let app = mqimg::daemon::app::App::build(settings).expect("building the daemon");

    let mut subscribed = app.health().subscribed();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    broker.start();
    with_timeout(
        20,
        "the daemon connecting once the broker is up",
        subscribed.wait_for(|n| *n > 0),
    )
    .await
    .expect("the metrics");
    let mut records = Subscriber::connect(&url, "mqimg/#", QoS::AtLeastOnce).await;
    publish_once(
        &url,
        "cams/late",
        fixture("seed/seed-frame.jpg"),
        QoS::AtLeastOnce,
    )
    .await;
    let record = json(&records.recv(RECORD_WAIT).await);
    assert_eq!(record["width"], 100);
    let _ = stop.send(());
    with_timeout(30, "the daemon stopping", task)
        .await
        .expect("the task")
        .expect("the run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos0_flood_beyond_capacity_ends_every_frame_as_a_record_or_a_counted_drop() {
    let broker = Broker::new();
    let out = tempfile::tempdir().expect("a temp dir");
    let mut settings = settings(&broker.url(), &["cams/#"], out.path());
    settings.decode.workers = 1;
    settings.pipeline.queue_frames = 1;
    settings.subscriptions[0].qos = mqimg::config::Qos::AtMostOnce;
    let daemon = Daemon::start(settings).await;
    let mut records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;

    let frames = 100;
    let publish = publish_args(
        &broker.url(),
        "cams/flood",
        mqimg::frame::payload::Detected::Base64,
        0,
        frames,
        "frames/photo-640x480.jpg",
    );
    mqimg::cli::publish::run(&publish)
        .await
        .expect("publishing");
    let received = records.recv_n(frames as usize, RECORD_WAIT).await;
    let dropped: Vec<_> = received
        .iter()
        .map(json)
        .filter(|r| r["stage"] == "queue")
        .collect();
    let decoded = received
        .iter()
        .filter(|m| m.topic.starts_with("mqimg/results/"))
        .count();
    assert!(
        !dropped.is_empty(),
        "one worker with a queue of one kept up with a flood?"
    );
    assert_eq!(decoded + dropped.len(), frames as usize);
    assert!(
        dropped[0]["error"]
            .as_str()
            .expect("an error")
            .contains("pipeline.queue_frames")
    );
    let m = &daemon.metrics;
    assert_eq!(m.received.get(), frames);
    assert_eq!(m.failures(Stage::Queue), dropped.len() as u64);
    assert_eq!(m.ok.get(), decoded as u64);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backlog_stays_within_the_queue_bound() {
    let broker = Broker::new();
    let out = tempfile::tempdir().expect("a temp dir");
    let mut settings = settings(&broker.url(), &["cams/#"], out.path());
    settings.decode.workers = 1;
    settings.pipeline.queue_frames = 4;
    // Make the broker keep the session and its queue while the daemon is away.
    let first = Daemon::start(settings.clone()).await;
    first.stop().await;
    let frames = 200;
    let publish = publish_args(
        &broker.url(),
        "cams/backlog",
        mqimg::frame::payload::Detected::Base64,
        1,
        frames,
        "frames/photo-640x480.jpg",
    );
    mqimg::cli::publish::run(&publish)
        .await
        .expect("publishing");
    let mut records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;
    let daemon = Daemon::start(settings).await;
    records.recv_n(frames as usize, RECORD_WAIT).await;
    // Mosquitto sends up to max_inflight_messages (20) more frames per ack: unless mqimg stops reading,
    // the whole queue of 200 piles up in memory. Queue (4) + backlog (4), give or take one frame.
    let peak = daemon.metrics.waiting_peak.get();
    assert!(peak <= 4 + 4 + 1, "{peak} frames waited at once");
    assert_eq!(daemon.metrics.ok.get(), frames);
    daemon.stop().await;
}
