//! Storage (issue 11): durability modes, the `latest` file, redelivery across midnight, absolute record
//! paths, and retention keeping the output folder within its bounds while frames arrive.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use mqimg::config::{Settings, SyncMode};
use mqimg::daemon::workers::{self, Context, Done, Job, Report};
use mqimg::frame::sha256_hex;
use mqimg::ops::metrics::Metrics;
use rumqttc::QoS;

use crate::support::daemon::{Daemon, DaemonProcess, http_get, json, settings, write_config};
use crate::support::{
    Broker, Subscriber, Tmpfs, distinct_frames, is_root, publish_all, publish_once, wait_until,
    with_timeout,
};

const RECORD_WAIT: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

/// Every frame file (`{32 hex}.{ext}` in a date folder) under `dir`, with its size.
fn frame_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)
            .expect("reading the output dir")
            .flatten()
        {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().expect("a file type").is_dir() {
                stack.push(path);
            } else if mqimg::daemon::sink::FrameName::parse(&name).is_some() {
                let size = entry.metadata().expect("a size").len();
                files.push((path, size));
            }
        }
    }
    files
}

/// Every record file a success record names must hold the whole image it describes.
fn assert_whole(record: &serde_json::Value) {
    let path = record["path"]
        .as_str()
        .unwrap_or_else(|| panic!("no path: {record}"));
    assert!(Path::new(path).is_absolute(), "{path} is not absolute");
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        Some(bytes.len() as u64),
        record["image_bytes"].as_u64(),
        "{path}"
    );
    assert_eq!(sha256_hex(&bytes), record["sha256"], "{path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_with_a_record_are_whole_on_disk_after_a_sigkill_in_every_sync_mode() {
    let broker = Broker::new();
    let url = broker.url();
    for mode in [SyncMode::Batch, SyncMode::File, SyncMode::None] {
        let temp = tempfile::tempdir().expect("a temp dir");
        let mut s = settings(&url, &["cams/#"], &temp.path().join("frames"));
        s.output.sync = mode;
        let config = write_config(&s, temp.path());
        let topic = format!("cams/kill-{}", mode.as_str());
        let mut records =
            Subscriber::connect(&url, &format!("mqimg/results/{topic}/#"), QoS::AtLeastOnce).await;
        let mut daemon = DaemonProcess::start(&config).await;
        let messages = distinct_frames(60)
            .into_iter()
            .enumerate()
            .map(|(i, f)| (format!("{topic}/{i}"), f))
            .collect();
        let publisher = {
            let url = url.clone();
            tokio::spawn(async move { publish_all(&url, messages, QoS::AtLeastOnce, 120).await })
        };
        let mut got = records.recv_n(15, RECORD_WAIT).await;
        daemon.signal("KILL");
        daemon.wait(10).await;
        while let Some(late) = records.try_recv() {
            got.push(late);
        }
        for message in &got {
            assert_whole(&json(message));
        }
        eprintln!(
            "sync = {}: {} records, every file whole",
            mode.as_str(),
            got.len()
        );
        with_timeout(120, "the publisher", publisher)
            .await
            .expect("the publisher task");
    }
}

/// Runs `frames` through real workers (no broker) with `output.sync = mode` and checks, as each
/// outcome arrives where the delivery task would take it, that its file was flushed first.
async fn outcomes_arrive_only_after_their_flush(mode: SyncMode, frames: usize) {
    let temp = tempfile::tempdir().expect("a temp dir");
    let mut s = settings("mqtt://127.0.0.1:1", &["cams/#"], temp.path());
    s.output.sync = mode;
    let metrics = Arc::new(Metrics::default());
    let context = Arc::new(Context::new(&s, Arc::clone(&metrics), None));
    let (jobs, (done_tx, mut done), workers) = workers::spawn(2, 4, context).expect("workers");
    drop(done_tx);
    let payloads = distinct_frames(frames);
    let feeder = std::thread::spawn(move || {
        for (seq, payload) in payloads.into_iter().enumerate() {
            let job = Job {
                seq: seq as u64,
                topic: "cams/flush".into(),
                payload: payload.into(),
                received_at: SystemTime::now(),
                assembled: None,
            };
            jobs.send(job).expect("a worker queue");
        }
    });
    let mut stored = 0;
    for _ in 0..frames {
        let outcome = with_timeout(30, "an outcome", done.recv())
            .await
            .expect("the workers running");
        let Done::Finished(finished) = outcome else {
            panic!("storage blocked: {outcome:?}");
        };
        assert!(finished.stored, "{:?}", finished.report);
        assert!(finished.unsynced.is_none(), "handed on before its flush");
        stored += 1;
        let flushed = metrics.frames_flushed.get();
        match mode {
            SyncMode::Batch | SyncMode::File => assert!(
                flushed >= stored,
                "sync = {}: outcome {stored} arrived with {flushed} frames flushed",
                mode.as_str()
            ),
            SyncMode::None => assert_eq!(flushed, 0),
        }
    }
    feeder.join().expect("the feeder");
    tokio::task::spawn_blocking(move || workers.join())
        .await
        .expect("joining the workers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_outcome_reaches_delivery_before_its_file_is_flushed() {
    for mode in [SyncMode::Batch, SyncMode::File, SyncMode::None] {
        outcomes_arrive_only_after_their_flush(mode, 40).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_redelivered_after_midnight_is_stored_once_in_its_first_folder() {
    let temp = tempfile::tempdir().expect("a temp dir");
    let s = settings("mqtt://127.0.0.1:1", &["cams/#"], temp.path());
    let context = Arc::new(Context::new(&s, Arc::new(Metrics::default()), None));
    let (jobs, (done_tx, mut done), workers) = workers::spawn(1, 4, context).expect("workers");
    drop(done_tx);
    // 2026-11-27T00:00:00Z: the frame first arrives just before, and is redelivered just after.
    let midnight = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_737_600);
    let frames = distinct_frames(2);
    let arrivals = [
        (&frames[0], midnight - Duration::from_millis(100)),
        (&frames[0], midnight + Duration::from_millis(500)),
        (&frames[1], midnight + Duration::from_secs(1)),
    ];
    let mut paths = Vec::new();
    for (seq, (payload, received_at)) in arrivals.into_iter().enumerate() {
        let job = Job {
            seq: seq as u64,
            topic: "cams/midnight".into(),
            payload: payload.clone().into(),
            received_at,
            assembled: None,
        };
        jobs.send(job).expect("a worker queue");
        let outcome = with_timeout(30, "an outcome", done.recv())
            .await
            .expect("the workers running");
        let Done::Finished(finished) = outcome else {
            panic!("storage blocked: {outcome:?}");
        };
        let Report::Ok { path, .. } = finished.report else {
            panic!("failed: {:?}", finished.report);
        };
        paths.push(path.expect("a stored path"));
    }
    assert_eq!(
        paths[0], paths[1],
        "the redelivered frame has a second copy"
    );
    assert!(paths[0].contains("/2026-11-26/"), "{}", paths[0]);
    assert!(paths[2].contains("/2026-11-27/"), "{}", paths[2]);
    assert_eq!(frame_files(temp.path()).len(), 2);
    drop(jobs);
    tokio::task::spawn_blocking(move || workers.join())
        .await
        .expect("joining the workers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_holds_the_newest_frame_and_a_reader_never_sees_a_partial_one() {
    let broker = Broker::new();
    let out = tempfile::tempdir().expect("a temp dir");
    let mut s = settings(&broker.url(), &["cams/#"], out.path());
    s.output.latest = true;
    let daemon = Daemon::start(s).await;
    let frames = distinct_frames(40);
    let whole: BTreeSet<String> = frames.iter().map(|f| sha256_hex(f)).collect();
    let latest = out.path().join("cams/door/latest.jpg");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (latest, stop) = (latest.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                match std::fs::read(&latest) {
                    Ok(bytes) => {
                        let sha = sha256_hex(&bytes);
                        assert!(whole.contains(&sha), "a partial or unknown latest file");
                        reads += 1;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("reading {}: {e}", latest.display()),
                }
            }
            reads
        })
    };
    let mut records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;
    let messages = frames
        .iter()
        .map(|f| ("cams/door".to_owned(), f.clone()))
        .collect();
    publish_all(&broker.url(), messages, QoS::AtLeastOnce, 60).await;
    let received = records.recv_n(frames.len(), RECORD_WAIT).await;
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("the reader never saw a partial file");
    assert!(received.iter().all(|m| json(m).get("stage").is_none()));
    assert!(reads > 0, "the reader never saw the latest file");
    let last = std::fs::read(&latest).expect("the latest file");
    assert_eq!(
        sha256_hex(&last),
        sha256_hex(&frames[39]),
        "not the newest frame"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_paths_are_absolute_when_output_dir_is_relative() {
    let broker = Broker::new();
    let temp = tempfile::tempdir().expect("a temp dir");
    let s = settings(&broker.url(), &["cams/#"], Path::new("frames"));
    let config = write_config(&s, temp.path());
    let mut records =
        Subscriber::connect(&broker.url(), "mqimg/results/cams/rel", QoS::AtLeastOnce).await;
    let mut daemon = DaemonProcess::start_in(&config, temp.path()).await;
    publish_once(
        &broker.url(),
        "cams/rel",
        distinct_frames(1).remove(0),
        QoS::AtLeastOnce,
    )
    .await;
    let record = json(&records.recv(RECORD_WAIT).await);
    let root = std::fs::canonicalize(temp.path()).expect("the temp dir");
    let path = Path::new(record["path"].as_str().expect("a path"));
    assert!(
        path.starts_with(root.join("frames/cams/rel")),
        "{}",
        path.display()
    );
    assert_whole(&record);
    daemon.signal("TERM");
    assert!(daemon.wait(30).await.success());
}

/// Frame files of three cameras, 8 to 10 days old, 10 KB each, dated by their modification time.
fn old_frames(dir: &Path) -> Vec<PathBuf> {
    let now = SystemTime::now();
    let mut paths = Vec::new();
    for (t, topic) in ["cams/a", "cams/b", "cams/a/sub"].iter().enumerate() {
        for day in 8..11_u32 {
            for k in 0..4 {
                let at = now - day * DAY;
                let sha = format!(
                    "{:032x}{}",
                    1000 * (t + 1) + 10 * day as usize + k,
                    "0".repeat(32)
                );
                let path = mqimg::daemon::sink::frame_path(dir, topic, at, &sha, "jpg");
                std::fs::create_dir_all(path.parent().expect("a folder")).expect("folders");
                std::fs::write(&path, vec![0_u8; 10_000]).expect("an old frame");
                let file = std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .expect("open");
                file.set_modified(at).expect("an old mtime");
                paths.push(path);
            }
        }
    }
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_output_within_its_bounds_while_frames_arrive() {
    let broker = Broker::new();
    let out = tempfile::tempdir().expect("a temp dir");
    let old = old_frames(out.path());
    let date = mqimg::frame::record::utc_date(SystemTime::now() - 9 * DAY);
    let foreign = [
        out.path().join(format!("cams/a/{date}/notes.txt")),
        out.path().join(format!(
            "my photos/{date}/0123456789abcdef0123456789abcdef.jpg"
        )),
        out.path().join("README"),
    ];
    for path in &foreign {
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("folders");
        std::fs::write(path, b"someone else's").expect("a foreign file");
    }
    let max_bytes = 1_000_000;
    let mut s = settings(&broker.url(), &["cams/#"], out.path());
    s.retention.max_age = Some(7 * DAY);
    s.retention.max_bytes = Some(max_bytes);
    s.retention.interval = Duration::from_secs(1);
    let daemon = Daemon::start(s).await;
    let mut records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;
    let frames = distinct_frames(30);
    let messages: Vec<_> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (format!("cams/c{}", i % 3), f.clone()))
        .collect();
    publish_all(&broker.url(), messages, QoS::AtLeastOnce, 60).await;
    let received = records.recv_n(frames.len(), RECORD_WAIT).await;
    for message in &received {
        let record = json(message);
        assert!(record.get("stage").is_none(), "{record}");
    }
    let m = &daemon.metrics;
    wait_until(30, "a sweep bringing the bytes under max_bytes", || {
        u64::try_from(m.stored_bytes.get()).is_ok_and(|b| b <= max_bytes)
    })
    .await;
    let on_disk: u64 = frame_files(out.path()).iter().map(|(_, size)| size).sum();
    assert!(on_disk <= max_bytes, "{on_disk} bytes of frames on disk");
    assert!(
        old.iter().all(|p| !p.exists()),
        "frames past max_age are left"
    );
    assert!(
        foreign.iter().all(|p| p.exists()),
        "a file that is not a frame was deleted"
    );
    let newest = received.last().map(json).expect("a record");
    assert_whole(&newest);
    let (_, text) = http_get(daemon.http, "/metrics");
    assert!(
        text.contains(&format!(
            r#"mqimg_deleted_files_total{{reason="max_age"}} {}"#,
            old.len()
        )),
        "{text}"
    );
    assert!(
        !text.contains(r#"mqimg_deleted_files_total{reason="max_bytes"} 0"#),
        "{text}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_free_keeps_a_small_disk_storing_frames_past_its_size() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let broker = Broker::new();
    let temp = tempfile::tempdir().expect("a temp dir");
    let disk = Tmpfs::mount(temp.path(), "16m");
    let out = disk.path().join("frames");
    let mut s: Settings = settings(&broker.url(), &["cams/#"], &out);
    // Room for the frames in flight, whose files cannot be deleted until their records are
    // acknowledged, and which include those waiting while the disk is full.
    s.retention.min_free_bytes = Some(6 << 20);
    s.retention.interval = Duration::from_secs(1);
    let daemon = Daemon::start(s).await;
    let mut records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;
    // 200 frames of ~106 KB: twice what the disk holds.
    let total = 200;
    let messages = distinct_frames(total)
        .into_iter()
        .enumerate()
        .map(|(i, f)| (format!("cams/small/{i}"), f))
        .collect();
    publish_all(&broker.url(), messages, QoS::AtLeastOnce, 120).await;
    let received = records.recv_n(total, Duration::from_secs(120)).await;
    for message in &received {
        let record = json(message);
        assert!(record.get("stage").is_none(), "{record}");
    }
    let deleted = daemon
        .metrics
        .deleted_files
        .get_or_create(&mqimg::ops::metrics::ReasonLabel { reason: "min_free" })
        .get();
    assert!(deleted > 0, "nothing was deleted for min_free");
    daemon.stop().await;
}
