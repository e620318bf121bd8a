//! The hub's bounds and bookkeeping, without HTTP: what is kept, what is dropped, what viewers see.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage};

use super::*;

fn hub(max_topics: usize, max_latest_bytes: usize) -> Hub {
    Hub::new(&Http {
        max_topics,
        max_latest_bytes,
        max_streams: 2,
        ..Http::default()
    })
}

/// A `w`×`h` image: left half red, right half blue.
fn picture(w: u32, h: u32, format: ImageFormat) -> Bytes {
    let image = RgbImage::from_fn(w, h, |x, _| {
        if x < w / 2 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    Bytes::from(out.into_inner())
}

fn frame(bytes: Bytes, format: Format, (w, h): (u32, u32), sha: &str) -> Arc<Frame> {
    Arc::new(Frame::new(
        bytes,
        format,
        (w, h),
        1,
        sha.to_owned(),
        SystemTime::now(),
    ))
}

fn ok(topic: &str, bytes: usize, sha: &str) -> Update {
    Update {
        topic: topic.to_owned(),
        key: topic_key(topic),
        outcome: Outcome::Ok(frame(
            Bytes::from(vec![0; bytes]),
            Format::Jpeg,
            (4, 3),
            sha,
        )),
        record: format!(r#"{{"topic":{topic:?},"sha256":{sha:?}}}"#).into(),
    }
}

fn failed(topic: &str, error: &str) -> Update {
    Update {
        topic: topic.to_owned(),
        key: topic_key(topic),
        outcome: Outcome::Failed(format!("decode: {error}")),
        record: format!(r#"{{"topic":{topic:?},"stage":"decode"}}"#).into(),
    }
}

#[test]
fn a_frame_and_a_failure_show_in_the_topic_summary_and_its_records() {
    let hub = hub(8, 1 << 20);
    let (mut feed, _place) = hub.records().unwrap();
    hub.publish(ok("cams/door", 100, "aa"));
    hub.publish(failed("cams/door", "truncated"));
    let (summary, records) = hub.topic("cams/door").unwrap();
    assert_eq!(summary.ok, 1);
    assert_eq!(summary.failed, 1);
    assert_eq!(summary.sha256.as_deref(), Some("aa"));
    assert_eq!(summary.image_bytes, Some(100));
    assert_eq!((summary.width, summary.height), (Some(4), Some(3)));
    assert_eq!(summary.last_error.as_deref(), Some("decode: truncated"));
    assert!(summary.age_ms.unwrap() < 60_000);
    assert_eq!(records.len(), 2);
    assert!(records[0].contains("stage"), "newest first: {records:?}");
    assert_eq!(hub.latest("cams/door").unwrap().sha256, "aa");
    assert_eq!(&*feed.try_recv().unwrap().topic, "cams/door");
    assert!(feed.try_recv().unwrap().json.contains("stage"));
    assert!(hub.latest("cams/other").is_none());
    assert!(hub.topic("cams/other").is_none());
}

#[test]
fn a_topic_with_failures_only_has_no_frame_to_show_or_stream() {
    let hub = hub(8, 1 << 20);
    hub.publish(failed("cam", "bad"));
    let summary = &hub.topics()[0];
    assert_eq!((summary.ok, summary.failed), (0, 1));
    assert_eq!(summary.received_at, None);
    assert!(hub.latest("cam").is_none());
    assert!(hub.watch("cam").is_none());
}

#[test]
fn the_least_recently_updated_topic_is_dropped_beyond_max_topics() {
    let hub = hub(2, 1 << 20);
    hub.publish(ok("a", 10, "1"));
    hub.publish(ok("b", 10, "2"));
    let watching_a = hub.watch("a").unwrap();
    hub.publish(ok("a", 10, "3"));
    hub.publish(ok("c", 10, "4"));
    let names: Vec<String> = hub.topics().into_iter().map(|s| s.topic).collect();
    assert_eq!(names, ["a", "c"]);
    hub.publish(ok("d", 10, "5"));
    let names: Vec<String> = hub.topics().into_iter().map(|s| s.topic).collect();
    assert_eq!(names, ["c", "d"]);
    // A stream of a dropped topic ends instead of waiting forever.
    assert!(watching_a.has_changed().is_err());
}

#[test]
fn latest_frames_stay_within_max_latest_bytes_keeping_the_newest() {
    let hub = hub(100, 1 << 20);
    for i in 0..10 {
        hub.publish(ok(&format!("cam/{i}"), 300 << 10, "x"));
    }
    let kept: usize = hub.topics().iter().filter_map(|s| s.image_bytes).sum();
    assert!(kept <= 1 << 20, "{kept}");
    assert_eq!(hub.topics().len(), 3);
    assert!(hub.latest("cam/9").is_some());
    // One frame larger than the bound is still kept: it is the newest.
    hub.publish(ok("huge", 2 << 20, "y"));
    assert_eq!(hub.topics().len(), 1);
    assert!(hub.latest("huge").is_some());
    // Replacing a frame frees its bytes.
    hub.publish(ok("huge", 10, "z"));
    hub.publish(ok("small", 10, "w"));
    assert_eq!(hub.topics().len(), 2);
}

#[test]
fn records_per_topic_are_bounded_by_count_and_bytes() {
    let hub = hub(8, 1 << 20);
    for i in 0..(RECORDS_PER_TOPIC + 20) {
        hub.publish(ok("cam", 1, &i.to_string()));
    }
    let (_, records) = hub.topic("cam").unwrap();
    assert_eq!(records.len(), RECORDS_PER_TOPIC);
    assert!(records[0].contains(&format!("\"{}\"", RECORDS_PER_TOPIC + 19)));
    let big = "m".repeat(RECORD_BYTES_PER_TOPIC / 3);
    for _ in 0..5 {
        let mut update = failed("cam", "x");
        update.record = format!(r#"{{"meta":"{big}"}}"#).into();
        hub.publish(update);
    }
    let (_, records) = hub.topic("cam").unwrap();
    let bytes: usize = records.iter().map(|r| r.len()).sum();
    assert!(bytes <= RECORD_BYTES_PER_TOPIC, "{bytes}");
    assert_eq!(records.len(), 2);
    let mut huge = failed("cam", "x");
    huge.record = "h".repeat(RECORD_BYTES_PER_TOPIC * 2).into();
    hub.publish(huge);
    assert_eq!(hub.topic("cam").unwrap().1.len(), 1, "the newest is kept");
}

#[test]
fn a_stream_that_falls_behind_sees_only_the_newest_frame() {
    let hub = hub(8, 1 << 20);
    hub.publish(ok("cam", 10, "first"));
    let mut frames = hub.watch("cam").unwrap();
    assert_eq!(frames.borrow_and_update().as_ref().unwrap().sha256, "first");
    for sha in ["2", "3", "4"] {
        hub.publish(ok("cam", 10, sha));
    }
    assert!(frames.has_changed().unwrap());
    assert_eq!(frames.borrow_and_update().as_ref().unwrap().sha256, "4");
    assert!(!frames.has_changed().unwrap());
}

#[test]
fn an_event_viewer_that_falls_behind_skips_ahead_and_the_queue_stays_bounded() {
    let hub = hub(8, 1 << 20);
    let (mut slow, _place) = hub.records().unwrap();
    for i in 0..(EVENTS_QUEUE + 10) {
        hub.publish(ok("cam", 1, &i.to_string()));
    }
    assert_eq!(
        slow.try_recv().unwrap_err(),
        broadcast::error::TryRecvError::Lagged(10)
    );
    assert!(slow.try_recv().unwrap().json.contains("\"10\""));
    assert_eq!(slow.len(), EVENTS_QUEUE - 1);
}

#[test]
fn streams_beyond_max_streams_are_refused_until_one_ends() {
    let hub = hub(8, 1 << 20);
    let first = hub.admit_stream().unwrap();
    let _second = hub.admit_stream().unwrap();
    assert_eq!(hub.admit_stream().unwrap_err().0, 2);
    drop(first);
    assert!(hub.admit_stream().is_ok());
    // Event feeds are counted apart.
    let _feeds = [hub.records().unwrap(), hub.records().unwrap()];
    assert_eq!(hub.records().unwrap_err().0, 2);
}

#[test]
fn fps_counts_whole_seconds_of_the_last_ten() {
    let mut rate = Rate::default();
    assert_eq!(rate.per_sec(100, 100), 0.0);
    for second in 100..120 {
        for _ in 0..5 {
            rate.add(second);
        }
    }
    rate.add(120);
    assert_eq!(
        rate.per_sec(120, 100),
        5.0,
        "the current second is not whole yet"
    );
    assert_eq!(rate.per_sec(125, 100), 2.6, "five quiet seconds");
    assert_eq!(rate.per_sec(200, 100), 0.0);
    let mut young = Rate::default();
    young.add(10);
    young.add(10);
    assert_eq!(young.per_sec(11, 10), 2.0, "a topic seen a second ago");
}

#[tokio::test]
async fn scaled_versions_keep_the_aspect_and_are_made_once_per_width() {
    let hub = hub(8, 1 << 20);
    let jpeg = frame(
        picture(64, 48, ImageFormat::Jpeg),
        Format::Jpeg,
        (64, 48),
        "j",
    );
    let native = jpeg.jpeg(None, hub.renders()).await.unwrap();
    assert_eq!(native.bytes.as_ptr(), jpeg.bytes.as_ptr(), "as received");
    let wider = jpeg.jpeg(Some(1000), hub.renders()).await.unwrap();
    assert_eq!(wider.bytes.as_ptr(), jpeg.bytes.as_ptr(), "never upscaled");
    let small = jpeg.jpeg(Some(16), hub.renders()).await.unwrap();
    assert_eq!((small.width, small.height), (16, 12));
    let again = jpeg.jpeg(Some(16), hub.renders()).await.unwrap();
    assert_eq!(again.bytes.as_ptr(), small.bytes.as_ptr(), "made once");
    let decoded = image::load_from_memory(&small.bytes).unwrap().into_rgb8();
    assert_eq!(decoded.dimensions(), (16, 12));
    let left = decoded.get_pixel(2, 6);
    let right = decoded.get_pixel(13, 6);
    assert!(left[0] > 200 && left[2] < 60, "{left:?}");
    assert!(right[2] > 200 && right[0] < 60, "{right:?}");

    let png = frame(
        picture(40, 20, ImageFormat::Png),
        Format::Png,
        (40, 20),
        "p",
    );
    let as_jpeg = png.jpeg(None, hub.renders()).await.unwrap();
    assert_eq!((as_jpeg.width, as_jpeg.height), (40, 20));
    assert!(as_jpeg.bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
}

#[tokio::test]
async fn scaled_versions_follow_the_orientation_the_decoder_applied() {
    let hub = hub(8, 1 << 20);
    // Stored 64x48; orientation 6 (rotate 90°) made the record say 48x64.
    let rotated = Arc::new(Frame::new(
        picture(64, 48, ImageFormat::Jpeg),
        Format::Jpeg,
        (48, 64),
        6,
        "r".into(),
        SystemTime::now(),
    ));
    let small = rotated.jpeg(Some(24), hub.renders()).await.unwrap();
    assert_eq!((small.width, small.height), (24, 32));
}

#[test]
fn topics_sharing_a_key_are_told_apart_by_name() {
    let hub = hub(8, 1 << 20);
    let mut a = ok("a", 1, "1");
    let mut b = ok("b", 1, "2");
    (a.key, b.key) = (7, 7);
    hub.publish(a);
    hub.publish(b);
    let mut state = hub.state.lock().unwrap();
    assert_eq!(state.count, 2);
    let latest = state.get(7, "b").unwrap().latest.borrow().clone();
    assert_eq!(latest.unwrap().sha256, "2");
    state.evict(7, "b", 1, 1 << 20);
    assert!(state.get(7, "a").is_none());
    assert!(state.get(7, "b").is_some());
}

#[test]
fn the_topic_key_covers_every_byte() {
    let long = "x".repeat(60_000);
    let mut other = long.clone();
    other.push('y');
    assert_ne!(topic_key(&long), topic_key(&other));
    assert_ne!(topic_key("cams/1"), topic_key("cams/2"));
    assert_ne!(topic_key(""), topic_key("\0"));
    assert_eq!(topic_key("cams/door"), topic_key("cams/door"));
}
