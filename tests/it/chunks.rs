//! Chunked frames end to end: a photo split into many messages in each mode comes back whole through
//! a real Mosquitto, a missing part fails once at stage `assembly`, and a daemon killed mid-frame
//! resumes the frame from its spool.

use std::time::Duration;

use mqimg::frame::chunks::{Fields, Mode, Pieces, split};
use rumqttc::QoS;

use crate::support::daemon::{Daemon, DaemonProcess, json, settings, write_config};
use crate::support::{Broker, Subscriber, fixture, publish_all, wait_until};

const RECORD_WAIT: Duration = Duration::from_secs(60);

fn chunked(mut s: mqimg::config::Settings, mode: Mode) -> mqimg::config::Settings {
    for sub in &mut s.subscriptions {
        sub.chunks = mode;
    }
    s
}

/// The messages a camera sends for `bytes` in `mode`, the frame's topic being `base`.
fn messages(mode: Mode, base: &str, bytes: &[u8], chunk_bytes: usize) -> Vec<(String, Vec<u8>)> {
    let fields = Fields::default();
    split(
        mode,
        &fields,
        base,
        Some("7"),
        bytes,
        chunk_bytes,
        Pieces::Raw,
    )
}

/// The sha256 the record of the unsplit frame carries.
fn sha256_of(bytes: &[u8]) -> String {
    mqimg::frame::sha256_hex(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_in_more_than_50_parts_round_trips_in_every_mode() {
    let photo = fixture("frames/photo-640x480.jpg");
    for mode in [
        Mode::JsonParts,
        Mode::StartDataEnd,
        Mode::HeaderBlocks,
        Mode::TopicIndex,
        Mode::UntilEoi,
    ] {
        let broker = Broker::new();
        let out = tempfile::tempdir().expect("a temp dir");
        let settings = chunked(settings(&broker.url(), &["cams/#"], out.path()), mode);
        let daemon = Daemon::start(settings).await;
        let mut records =
            Subscriber::connect(&broker.url(), "mqimg/results/#", QoS::AtLeastOnce).await;
        let parts = messages(mode, "cams/esp", &photo, photo.len() / 60);
        assert!(parts.len() >= 50, "{mode:?}: {} parts", parts.len());
        publish_all(&broker.url(), parts.clone(), QoS::AtLeastOnce, 60).await;
        let record = json(&records.recv(RECORD_WAIT).await);
        assert_eq!(record["topic"], "cams/esp", "{mode:?}: {record}");
        assert_eq!(record["sha256"], sha256_of(&photo), "{mode:?}: {record}");
        assert_eq!(record["width"], 640);
        assert_eq!(record["chunks"]["mode"], mode.name(), "{record}");
        assert!(
            record["chunks"]["parts"].as_u64().expect("parts") >= 50,
            "{record}"
        );
        // Every part was acked once spooled, and the spool is empty once the frame is stored.
        wait_until(20, "the parts' acks and the spool to empty", || {
            daemon.metrics.acked.get() >= parts.len() as u64
                && std::fs::read_dir(out.path().join(".mqimg-spool"))
                    .map(|d| d.count() == 0)
                    .unwrap_or(true)
        })
        .await;
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cameras_interleaved_and_a_missing_part_failing_once_at_assembly() {
    let broker = Broker::new();
    let out = tempfile::tempdir().expect("a temp dir");
    let mut settings = chunked(
        settings(&broker.url(), &["cams/#"], out.path()),
        Mode::JsonParts,
    );
    settings.chunks.timeout = Duration::from_secs(1);
    let daemon = Daemon::start(settings).await;
    let mut records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;
    let photo = fixture("frames/photo-640x480.jpg");
    let seed = fixture("seed/seed-frame.jpg");
    let a = messages(Mode::JsonParts, "cams/a", &photo, 2048);
    let b = messages(Mode::JsonParts, "cams/b", &seed, 256);
    let mut interleaved = Vec::new();
    for i in 0..a.len().max(b.len()) {
        interleaved.extend(a.get(i).cloned());
        interleaved.extend(b.get(i).cloned());
    }
    // A third camera loses its part 3.
    let mut c = messages(Mode::JsonParts, "cams/c", &seed, 512);
    c.remove(2);
    interleaved.extend(c);
    publish_all(&broker.url(), interleaved, QoS::AtLeastOnce, 60).await;
    let got: Vec<_> = records
        .recv_n(3, RECORD_WAIT)
        .await
        .iter()
        .map(json)
        .collect();
    let by_topic = |t: &str| {
        got.iter()
            .find(|r| r["topic"] == t)
            .unwrap_or_else(|| panic!("no record for {t}: {got:?}"))
    };
    assert_eq!(by_topic("cams/a")["sha256"], sha256_of(&photo));
    assert_eq!(by_topic("cams/b")["sha256"], sha256_of(&seed));
    let failure = by_topic("cams/c");
    assert_eq!(failure["stage"], "assembly", "{failure}");
    assert!(
        failure["error"].as_str().expect("an error").contains('3'),
        "names the missing part: {failure}"
    );
    assert!(records.try_recv().is_none(), "one record per frame");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_frame_resumes_it_from_the_spool() {
    let broker = Broker::new();
    let temp = tempfile::tempdir().expect("a temp dir");
    let out = temp.path().join("frames");
    let settings = chunked(settings(&broker.url(), &["cams/#"], &out), Mode::JsonParts);
    let config = write_config(&settings, temp.path());
    let mut records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;
    let photo = fixture("frames/photo-640x480.jpg");
    let parts = messages(Mode::JsonParts, "cams/esp", &photo, 2048);
    let half = parts.len() / 2;
    let daemon = DaemonProcess::start(&config).await;
    publish_all(&broker.url(), parts[..half].to_vec(), QoS::AtLeastOnce, 60).await;
    let spool = out.join(".mqimg-spool");
    wait_until(30, "the first half of the parts in the spool", || {
        std::fs::read_dir(&spool).map_or(0, |d| d.count()) >= half
    })
    .await;
    daemon.signal("KILL");
    drop(daemon);
    let _restarted = DaemonProcess::start(&config).await;
    publish_all(&broker.url(), parts[half..].to_vec(), QoS::AtLeastOnce, 60).await;
    let record = json(&records.recv(RECORD_WAIT).await);
    assert_eq!(record["topic"], "cams/esp", "{record}");
    assert_eq!(record["sha256"], sha256_of(&photo), "{record}");
    assert_eq!(
        record["chunks"]["parts"].as_u64(),
        Some(parts.len() as u64),
        "{record}"
    );
    let stored: Vec<_> = walk(&out);
    assert_eq!(stored.len(), 1, "stored once: {stored:?}");
}

/// Frame files under `dir` (the spool and hidden files left out).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files
}
