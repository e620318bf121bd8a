//! Faults a real gateway meets: a full or read-only disk, floods with long topics, two instances with
//! one client id. Each test fails on a daemon that acks frames it did not store, loops, or grows.

use std::collections::BTreeSet;
use std::path::Path;

use mqimg::frame::record::Stage;
use rumqttc::QoS;

use crate::support::daemon::{
    Daemon, DaemonProcess, http_get, json, publish_args, settings, write_config,
};
use crate::support::{
    Broker, Subscriber, Tmpfs, distinct_frames, fixture, is_root, publish_all, vm_hwm_bytes,
    wait_until, with_timeout,
};

const RECORD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Every frame file under `dir` (not the daemon's write probe or temp files).
fn stored_files(dir: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)
            .expect("reading the output dir")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if !entry.file_name().to_string_lossy().starts_with('.') {
                files.insert(path.display().to_string());
            }
        }
    }
    files
}

/// Publishes `frames` on distinct topics `cams/full/<i>` and collects one record per frame.
async fn run_through_a_storage_fault(
    daemon: &Daemon,
    broker: &Broker,
    frames: Vec<Vec<u8>>,
    during: impl FnOnce(),
    after: impl FnOnce(),
) -> Vec<serde_json::Value> {
    let total = frames.len();
    let mut records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;
    let messages = frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| (format!("cams/full/{i}"), f))
        .collect();
    let url = broker.url();
    let publisher = tokio::spawn(async move {
        publish_all(&url, messages, QoS::AtLeastOnce, 120).await;
    });
    during();
    wait_until(60, "storage to be reported blocked", || {
        daemon.metrics.storage_blocked.get() == 1
    })
    .await;
    let (status, body) = http_get(daemon.http, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("frames cannot be stored"), "{body}");
    assert_eq!(
        daemon.metrics.failures(Stage::Store),
        0,
        "a frame blamed for the disk"
    );
    let acked_while_blocked = daemon.metrics.acked.get();
    assert!(
        acked_while_blocked < total as u64,
        "every frame acked while storage was failing"
    );
    after();
    let received = records.recv_n(total, RECORD_WAIT).await;
    with_timeout(120, "the publisher", publisher)
        .await
        .expect("publishing");
    wait_until(30, "storage to be reported working", || {
        daemon.metrics.storage_blocked.get() == 0
    })
    .await;
    assert_eq!(http_get(daemon.http, "/readyz").0, 200);
    received.iter().map(json).collect()
}

fn assert_all_stored_once(records: &[serde_json::Value], dir: &Path, total: usize) {
    let failures: Vec<_> = records
        .iter()
        .filter(|r| r.get("stage").is_some())
        .collect();
    assert!(failures.is_empty(), "failure records: {failures:?}");
    let topics: BTreeSet<_> = records.iter().map(|r| r["topic"].to_string()).collect();
    assert_eq!(topics.len(), total, "a frame recorded twice or not at all");
    let files = stored_files(dir);
    assert_eq!(files.len(), total, "{files:?}");
    for r in records {
        let path = r["path"].as_str().expect("a stored path");
        assert!(files.contains(path), "{path} is not on disk");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_wait_unacked_while_the_disk_is_full_and_all_are_stored_once_space_returns() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let broker = Broker::new();
    let temp = tempfile::tempdir().expect("a temp dir");
    let disk = Tmpfs::mount(temp.path(), "3m");
    let out = disk.path().join("frames");
    let mut settings = settings(&broker.url(), &["cams/#"], &out);
    settings.pipeline.queue_frames = 4;
    let daemon = Daemon::start(settings).await;
    let total = 60;
    let records = run_through_a_storage_fault(
        &daemon,
        &broker,
        distinct_frames(total),
        || {},
        || disk.remount("size=64m"),
    )
    .await;
    assert_all_stored_once(&records, &out, total);
    assert!(daemon.metrics.store_retries.get() > 0);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_wait_while_the_output_folder_is_read_only_and_resume_when_it_is_writable() {
    if !is_root() {
        eprintln!("skipped: remounting a tmpfs read-only needs root (CI runs as root)");
        return;
    }
    let broker = Broker::new();
    let temp = tempfile::tempdir().expect("a temp dir");
    let disk = Tmpfs::mount(temp.path(), "64m");
    let out = disk.path().join("frames");
    let settings = settings(&broker.url(), &["cams/#"], &out);
    let daemon = Daemon::start(settings).await;
    let total = 40;
    let records = run_through_a_storage_fault(
        &daemon,
        &broker,
        distinct_frames(total),
        || disk.remount("ro"),
        || disk.remount("rw"),
    )
    .await;
    assert_all_stored_once(&records, &out, total);
    daemon.stop().await;
}

/// A 60 KB topic: each frame's record repeats it twice (topic and `topic` field).
fn long_topic(tag: &str) -> String {
    format!("cams/{tag}/{}", "x".repeat(60_000))
}

/// Peak RSS of the real daemon while `publish` floods it, with `pipeline.max_inflight_bytes` at 16 MiB.
async fn peak_rss_under_flood(qos: u8, frames: u64, tag: &str) -> u64 {
    let broker = Broker::new();
    let temp = tempfile::tempdir().expect("a temp dir");
    let mut settings = settings(&broker.url(), &["cams/#"], &temp.path().join("frames"));
    settings.pipeline.max_inflight_bytes = 16 << 20;
    settings.subscriptions[0].qos = mqimg::config::Qos::try_from(qos).expect("a QoS");
    let config = write_config(&settings, temp.path());
    let mut sentinel_record = Subscriber::connect(
        &broker.url(),
        "mqimg/results/cams/sentinel",
        QoS::AtLeastOnce,
    )
    .await;
    let mut daemon = DaemonProcess::start(&config).await;
    let tiny = temp.path().join("tiny.bin");
    std::fs::write(&tiny, b"not an image at all").expect("writing the payload");
    let mut publish = publish_args(
        &broker.url(),
        &long_topic(tag),
        mqimg::frame::payload::Detected::Raw,
        qos,
        frames,
        "frames/photo-640x480.jpg",
    );
    publish.files = vec![tiny];
    mqimg::cli::publish::run(&publish)
        .await
        .expect("publishing the flood");
    // Frames are read in order: once a sentinel's record is out, the flood has been taken in. The
    // broker drops messages for the daemon while its queue for it is full (the flood overflows it),
    // so the sentinel is sent again until one gets through.
    with_timeout(120, "a sentinel frame's record after the flood", async {
        loop {
            crate::support::publish_once(
                &broker.url(),
                "cams/sentinel",
                fixture("seed/seed-frame.jpg"),
                QoS::AtLeastOnce,
            )
            .await;
            if tokio::time::timeout(
                std::time::Duration::from_secs(2),
                sentinel_record.recv_any(),
            )
            .await
            .is_ok()
            {
                break;
            }
        }
    })
    .await;
    let peak = vm_hwm_bytes(daemon.pid());
    daemon.signal("TERM");
    daemon.wait(30).await;
    eprintln!(
        "{tag}: {frames} frames at QoS {qos}: peak RSS {} MiB",
        peak >> 20
    );
    peak
}

/// The bound (16 MiB) plus the daemon's fixed overhead: code and runtime (~20 MiB idle), decode
/// workers' buffers, rumqttc's read buffer and parsed packets (the broker pushes 60 KB-topic frames
/// faster than they are taken), its request queue and in-flight records, the events channel.
/// Measured 45-210 MiB over runs on a loaded 2-core machine (the more the machine is loaded, the more
/// the allocator keeps); 720-939 MiB before the bound existed. The limit sits well between the two.
const FLOOD_RSS_LIMIT: u64 = (16 + 304) << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos0_flood_on_a_long_topic_stays_within_the_inflight_byte_bound() {
    let peak = peak_rss_under_flood(0, 3000, "flood0").await;
    assert!(peak < FLOOD_RSS_LIMIT, "peak RSS {} MiB", peak >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos1_flood_of_failing_frames_on_a_long_topic_stays_within_the_bound() {
    let peak = peak_rss_under_flood(1, 3000, "flood1").await;
    assert!(peak < FLOOD_RSS_LIMIT, "peak RSS {} MiB", peak >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_with_one_client_id_are_told_so_once_and_back_off() {
    let broker = Broker::new();
    let temp = tempfile::tempdir().expect("a temp dir");
    let mut settings = settings(&broker.url(), &["cams/#"], &temp.path().join("frames"));
    settings.broker.client_id = "mqimg-it-same-id".into();
    settings.broker.reconnect_min = std::time::Duration::from_millis(100);
    settings.broker.reconnect_max = std::time::Duration::from_secs(2);
    let first_dir = temp.path().join("first");
    std::fs::create_dir_all(&first_dir).expect("a config dir");
    let config = write_config(&settings, &first_dir);
    let mut first = DaemonProcess::start(&config).await;
    // The second instance takes the session; from then on each connection closes the other one.
    let mut second = DaemonProcess::start(&config).await;
    let needle = "another client uses the same broker.client_id";
    let found = tokio::select! {
        () = first.wait_for_log(needle, 60) => "first",
        () = second.wait_for_log(needle, 60) => "second",
    };
    first.signal("TERM");
    second.signal("TERM");
    first.wait(30).await;
    second.wait(30).await;
    for daemon in [&first, &second] {
        let log = daemon.log.join("\n");
        assert!(
            log.matches(needle).count() <= 1,
            "each instance says it once ({found} said it first):\n{log}"
        );
    }
    let log = [first.log.join("\n"), second.log.join("\n")].join("\n");
    assert!(log.contains("mqimg-it-same-id"), "{log}");
    assert!(log.contains("$share/"), "the fix is named: {log}");
}
