//! The live view over HTTP (issue 12): every route's status, content type and caching headers, topics
//! of every shape, the token, the bounds (`http.max_topics`, `http.max_streams`), the MJPEG stream's
//! framing, server-sent records and `url` in records. A stuck viewer is in `live_load.rs`; the real
//! browser in `browser.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use mqimg::config::{Secret, Settings};
use rumqttc::QoS;
use tempfile::TempDir;

use crate::support::daemon::{Daemon, json, settings};
use crate::support::http::{Open, get, open, request};
use crate::support::{Broker, Subscriber, fixture, publish_once};

const RECORD_WAIT: Duration = Duration::from_secs(30);
/// What ends each MJPEG part: the boundary and the next part's headers, written with it.
const BOUNDARY: &[u8] = b"\r\n--mqimg-frame\r\nContent-Type: image/jpeg\r\n\r\n";
/// How the stream opens: the first part's headers.
const OPENING: &[u8] = b"--mqimg-frame\r\nContent-Type: image/jpeg\r\n\r\n";

/// A broker, a daemon and a subscriber to its records.
pub struct Live {
    pub broker: Broker,
    pub daemon: Daemon,
    records: Subscriber,
    _out: TempDir,
}

impl Live {
    pub async fn start(filters: &[&str], configure: impl FnOnce(&mut Settings)) -> Live {
        let broker = Broker::new();
        let out = tempfile::tempdir().expect("a temp dir");
        let mut settings = settings(&broker.url(), filters, out.path());
        configure(&mut settings);
        let daemon = Daemon::start(settings).await;
        let records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;
        Live {
            broker,
            daemon,
            records,
            _out: out,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.daemon.http
    }

    /// Publishes `payload` on `topic` and returns its record: by then the live view has the frame.
    pub async fn frame(&mut self, topic: &str, payload: Vec<u8>) -> serde_json::Value {
        publish_once(&self.broker.url(), topic, payload, QoS::AtLeastOnce).await;
        loop {
            let record = json(&self.records.recv(RECORD_WAIT).await);
            if record["topic"] == topic {
                return record;
            }
        }
    }
}

fn jpeg() -> Vec<u8> {
    fixture("frames/photo-640x480.jpg")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_with_its_content_type_and_caching() {
    let mut live = Live::start(&["cams/#"], |_| {}).await;
    let addr = live.addr();

    let page = get(addr, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let policy = page.header("content-security-policy").expect("a CSP");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(page.text().contains("data-page=\"gallery\""));
    let topic_page = get(addr, "/topics/cams/door").await;
    assert_eq!(topic_page.status, 200);
    assert!(topic_page.text().contains("data-page=\"topic\""));
    assert_eq!(get(addr, "/api/topics").await.json(), serde_json::json!([]));
    let missing = get(addr, "/latest/cams/door").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.text(), "no frame yet on topic \"cams/door\"\n");
    assert_eq!(get(addr, "/stream/cams/door").await.status, 404);
    assert_eq!(get(addr, "/api/topics/cams/door").await.status, 404);

    let record = live.frame("cams/door", jpeg()).await;
    let sha = record["sha256"].as_str().expect("a sha256").to_owned();
    live.frame("cams/door", fixture("bad/truncated-half.jpg"))
        .await;
    let png_record = live
        .frame("cams/png", fixture("frames/photo-640x480.png"))
        .await;

    let latest = get(addr, "/latest/cams/door").await;
    assert_eq!(latest.status, 200);
    assert_eq!(latest.header("content-type"), Some("image/jpeg"));
    assert_eq!(latest.header("cache-control"), Some("no-cache"));
    let etag = format!("\"{sha}\"");
    assert_eq!(latest.header("etag"), Some(etag.as_str()));
    assert!(latest.body == jpeg(), "the bytes as received");
    let cached = request(addr, "/latest/cams/door", &[("If-None-Match", &etag)]).await;
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    let listed = format!("\"other\", W/{etag}");
    let cached = request(addr, "/latest/cams/door", &[("If-None-Match", &listed)]).await;
    assert_eq!(cached.status, 304);

    let scaled = get(addr, "/latest/cams/door?width=160").await;
    assert_eq!(scaled.status, 200);
    assert_eq!(scaled.header("content-type"), Some("image/jpeg"));
    let scaled_etag = format!("\"{sha}-w160\"");
    assert_eq!(scaled.header("etag"), Some(scaled_etag.as_str()));
    let image = image::load_from_memory(&scaled.body).expect("a JPEG");
    assert_eq!((image.width(), image.height()), (160, 120));
    let cached = request(
        addr,
        "/latest/cams/door?width=160",
        &[("If-None-Match", &scaled_etag)],
    )
    .await;
    assert_eq!(cached.status, 304);
    let wide = get(addr, "/latest/cams/door?width=5000").await;
    assert!(wide.body == jpeg(), "never scaled up");
    for bad in ["0", "-3", "wide", ""] {
        let answer = get(addr, &format!("/latest/cams/door?width={bad}")).await;
        assert_eq!(answer.status, 400, "width={bad}");
    }

    let png = get(addr, "/latest/cams/png").await;
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert!(png.body == fixture("frames/photo-640x480.png"));
    let png_small = get(addr, "/latest/cams/png?width=64").await;
    assert_eq!(png_small.header("content-type"), Some("image/jpeg"));
    assert!(png_small.body.starts_with(&[0xFF, 0xD8, 0xFF]));
    assert_eq!(png_record["format"], "png");

    let pinned = get(addr, &format!("/latest/cams/door?sha256={sha}")).await;
    assert_eq!(pinned.status, 200);
    let replaced = get(addr, "/latest/cams/door?sha256=0000").await;
    assert_eq!(replaced.status, 404);
    assert!(
        replaced.text().contains("no longer the latest"),
        "{}",
        replaced.text()
    );

    let topics = get(addr, "/api/topics").await;
    assert_eq!(topics.header("content-type"), Some("application/json"));
    let topics = topics.json();
    let door = &topics[0];
    assert_eq!(door["topic"], "cams/door");
    assert_eq!(door["width"], 640);
    assert_eq!(door["height"], 480);
    assert_eq!(door["format"], "jpeg");
    assert_eq!(door["ok"], 1);
    assert_eq!(door["failed"], 1);
    assert_eq!(door["received_at"], record["received_at"]);
    assert!(door["fps"].is_number());
    let error = door["last_error"].as_str().expect("the last error");
    assert!(error.starts_with("decode: "), "{error}");
    assert_eq!(topics[1]["topic"], "cams/png");

    let one = get(addr, "/api/topics/cams/door").await.json();
    assert_eq!(one["ok"], 1);
    let records = one["records"].as_array().expect("records");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["stage"], "decode", "newest first");
    assert_eq!(records[1]["sha256"], sha.as_str());
    assert!(records[1].get("path").is_none(), "no file-system paths");
    assert!(record["path"].is_string(), "the MQTT record keeps its path");

    let metrics = get(addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.text().contains("mqimg_frames_ok_total"));
    assert_eq!(get(addr, "/readyz").await.status, 200);
    assert_eq!(get(addr, "/healthz").await.status, 200);
    assert_eq!(get(addr, "/nothing/here").await.status, 404);
    assert_eq!(get(addr, "/latest").await.status, 400, "no topic named");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_of_any_shape_work_through_the_path_or_the_query_and_reach_no_file() {
    let filters = ["cams/#", "caméra/#", "a/#", "/#", "trail/#", "dots/#"];
    let mut live = Live::start(&filters, |_| {}).await;
    let addr = live.addr();
    let cases = [
        ("cams/front door", "/latest/cams/front%20door"),
        ("cams/100%", "/latest/cams/100%25"),
        ("caméra/日本", "/latest/cam%C3%A9ra/%E6%97%A5%E6%9C%AC"),
        ("a//b", "/latest?topic=a%2F%2Fb"),
        ("/lead", "/latest?topic=%2Flead"),
        ("trail/", "/latest?topic=trail%2F"),
        ("dots/../..", "/latest?topic=dots%2F..%2F.."),
        ("cams/q?x=1&y", "/latest/cams/q%3Fx%3D1%26y"),
    ];
    let frame = jpeg();
    for (topic, path) in cases {
        live.frame(topic, frame.clone()).await;
        let answer = get(addr, path).await;
        assert_eq!(answer.status, 200, "{topic:?} via {path}");
        assert!(answer.body == frame, "{topic:?}");
    }
    // The query form works for any topic, and `+` reads as a space, as forms send it.
    assert_eq!(get(addr, "/latest?topic=cams/front+door").await.status, 200);
    // Sent as is (curl --path-as-is), dot levels are topic levels, not directories.
    assert_eq!(get(addr, "/latest/dots/../..").await.status, 200);
    assert_eq!(get(addr, "/latest/cams/../../etc/passwd").await.status, 404);
    assert_eq!(get(addr, "/latest/%2Fetc%2Fpasswd").await.status, 404);
    let bad = get(addr, "/latest/cams/%zz").await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("percent-encoding"), "{}", bad.text());
    assert_eq!(get(addr, "/latest/cams/%FF").await.status, 400);
    let listed = get(addr, "/api/topics").await.json();
    let names: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|t| t["topic"].as_str())
        .collect();
    for (topic, _) in cases {
        assert!(names.contains(&topic), "{topic:?} in {names:?}");
        let detail = get(addr, &format!("/api/topics?topic={}", encode(topic))).await;
        assert_eq!(detail.json()["topic"], topic);
    }
}

fn encode(topic: &str) -> String {
    topic.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_required_by_every_route_but_healthz() {
    let mut live = Live::start(&["cams/#"], |s| {
        s.http.token = Some(Secret::new("s3cret-token"));
    })
    .await;
    let addr = live.addr();
    live.frame("cams/door", jpeg()).await;
    let routes = [
        "/",
        "/topics/cams/door",
        "/latest/cams/door",
        "/api/topics",
        "/api/topics/cams/door",
        "/metrics",
        "/readyz",
    ];
    for route in routes {
        let refused = get(addr, route).await;
        assert_eq!(refused.status, 401, "{route}");
        assert_eq!(
            refused.header("www-authenticate"),
            Some("Bearer realm=\"mqimg\"")
        );
        let wrong = request(addr, route, &[("Authorization", "Bearer s3cret-tokeN")]).await;
        assert_eq!(wrong.status, 401, "{route}");
        let bearer = request(addr, route, &[("Authorization", "Bearer s3cret-token")]).await;
        assert_eq!(bearer.status, 200, "{route}");
        let join = if route.contains('?') { '&' } else { '?' };
        let query = get(addr, &format!("{route}{join}token=s3cret-token")).await;
        assert_eq!(query.status, 200, "{route}");
    }
    for route in ["/stream/cams/door", "/events"] {
        assert_eq!(get(addr, route).await.status, 401, "{route}");
        let open = open(addr, &format!("{route}?token=s3cret-token"), &[]).await;
        assert_eq!(open.status, 200, "{route}");
    }
    assert_eq!(get(addr, "/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_most_recently_updated_max_topics_are_kept() {
    let mut live = Live::start(&["cams/#"], |s| s.http.max_topics = 2).await;
    let addr = live.addr();
    for topic in ["cams/1", "cams/2", "cams/1", "cams/3"] {
        live.frame(topic, jpeg()).await;
    }
    let topics = get(addr, "/api/topics").await.json();
    let names: Vec<&str> = topics
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|t| t["topic"].as_str())
        .collect();
    assert_eq!(names, ["cams/1", "cams/3"]);
    assert_eq!(get(addr, "/latest/cams/2").await.status, 404);
    assert_eq!(get(addr, "/latest/cams/1").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_each_frame_closed_by_a_boundary_and_refuses_beyond_max_streams() {
    let mut live = Live::start(&["cams/#"], |s| s.http.max_streams = 2).await;
    let addr = live.addr();
    let first = fixture("seed/seed-frame.jpg");
    live.frame("cams/door", first.clone()).await;

    let mut stream = open(addr, "/stream/cams/door", &[]).await;
    assert_eq!(stream.status, 200);
    assert_eq!(
        stream.header("content-type"),
        Some("multipart/x-mixed-replace; boundary=mqimg-frame")
    );
    let opening = stream.until(OPENING, 10.0).await;
    assert_eq!(opening.as_deref(), Some(OPENING));
    // The boundary and the next part's headers follow the frame at once: Chromium shows a part only
    // once those have arrived.
    let part = stream.until(BOUNDARY, 10.0).await.expect("the first part");
    assert_eq!(part_body(&part), &first[..]);

    let second = jpeg();
    live.frame("cams/door", second.clone()).await;
    let part = stream.until(BOUNDARY, 10.0).await.expect("the next part");
    assert_eq!(part_body(&part), &second[..]);

    let mut scaled = open(addr, "/stream/cams/door?width=100", &[]).await;
    scaled.until(OPENING, 10.0).await;
    let part = scaled.until(BOUNDARY, 10.0).await.expect("a scaled part");
    let image = image::load_from_memory(part_body(&part)).expect("a JPEG");
    assert_eq!((image.width(), image.height()), (100, 75));

    let refused = get(addr, "/stream/cams/door").await;
    assert_eq!(refused.status, 503);
    assert!(
        refused.text().contains("http.max_streams"),
        "{}",
        refused.text()
    );
    assert_eq!(refused.header("retry-after"), Some("5"));

    // A viewer leaving gives its place back (noticed at the next frame it would be sent).
    drop(scaled);
    let again = reopen(&mut live, "/stream/cams/door").await;
    drop(again);
    drop(stream);

    // A PNG topic streams as JPEG.
    live.frame("cams/png", fixture("frames/photo-640x480.png"))
        .await;
    let mut png = reopen(&mut live, "/stream/cams/png").await;
    png.until(OPENING, 10.0).await;
    let part = png.until(BOUNDARY, 10.0).await.expect("a PNG frame's part");
    assert!(part_body(&part).starts_with(&[0xFF, 0xD8, 0xFF]));

    // Event feeds have as many places, counted apart from streams.
    let feeds = [
        open(addr, "/events", &[]).await,
        open(addr, "/events", &[]).await,
    ];
    assert!(feeds.iter().all(|f| f.status == 200));
    let refused = get(addr, "/events").await;
    assert_eq!(refused.status, 503);
    assert!(
        refused.text().contains("too many event feeds"),
        "{}",
        refused.text()
    );
}

/// Opens `path` once a stream's place is free: a viewer that left is noticed when the next frame
/// is written to it, so each try publishes one.
async fn reopen(live: &mut Live, path: &str) -> Open {
    for _ in 0..20 {
        live.frame("cams/door", fixture("seed/seed-frame.jpg"))
            .await;
        let stream = open(live.addr(), path, &[]).await;
        if stream.status == 200 {
            return stream;
        }
    }
    panic!("no stream's place was given back");
}

/// The image bytes of one MJPEG part (read up to and including [`BOUNDARY`]).
fn part_body(part: &[u8]) -> &[u8] {
    &part[..part.len() - BOUNDARY.len()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_deliver_each_record_and_can_follow_one_topic() {
    let mut live = Live::start(&["cams/#"], |_| {}).await;
    let addr = live.addr();
    let mut all = open(addr, "/events", &[]).await;
    assert_eq!(all.header("content-type"), Some("text/event-stream"));
    let mut door = open(addr, "/events?topic=cams%2Fdoor", &[]).await;
    all.until(b"\n\n", 10.0).await.expect("the opening comment");
    door.until(b"\n\n", 10.0)
        .await
        .expect("the opening comment");

    live.frame("cams/yard", jpeg()).await;
    live.frame("cams/door", fixture("bad/truncated-half.jpg"))
        .await;
    let record = live.frame("cams/door", jpeg()).await;

    let yard = next_event(&mut all).await;
    assert_eq!(yard["topic"], "cams/yard");
    let failed = next_event(&mut all).await;
    assert_eq!(failed["stage"], "decode");
    let ok = next_event(&mut all).await;
    assert_eq!(ok["sha256"], record["sha256"]);
    assert!(ok.get("path").is_none(), "no file-system paths: {ok}");

    let first = next_event(&mut door).await;
    assert_eq!(first["topic"], "cams/door");
    assert_eq!(first["stage"], "decode");
    assert_eq!(next_event(&mut door).await["topic"], "cams/door");
}

/// The next record of an event feed, past comments (keep-alives).
async fn next_event(feed: &mut Open) -> serde_json::Value {
    loop {
        let block = feed.until(b"\n\n", 10.0).await.expect("an event");
        let text = String::from_utf8(block).expect("UTF-8");
        if text.starts_with(':') {
            continue;
        }
        let data = text
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("{text:?}"));
        return serde_json::from_str(data.trim_end()).expect("a record");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_public_url_result_records_carry_a_url_that_serves_that_frame() {
    let mut live = Live::start(&["cams/#"], |s| {
        s.http.public_url = Some("http://cams.example:9464/".into());
    })
    .await;
    let record = live.frame("cams/front door", jpeg()).await;
    let sha = record["sha256"].as_str().expect("a sha256");
    let url = record["url"].as_str().expect("a url");
    assert_eq!(
        url,
        format!("http://cams.example:9464/latest/cams/front%20door?sha256={sha}")
    );
    let path = url
        .strip_prefix("http://cams.example:9464")
        .expect("the base");
    let frame = get(live.addr(), path).await;
    assert_eq!(frame.status, 200);
    assert!(frame.body == jpeg());

    let failed = live
        .frame("cams/front door", fixture("bad/truncated-half.jpg"))
        .await;
    assert!(failed.get("url").is_none(), "{failed}");
    live.frame("cams/front door", fixture("seed/seed-frame.jpg"))
        .await;
    assert_eq!(get(live.addr(), path).await.status, 404, "replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_public_url_records_have_no_url() {
    let mut live = Live::start(&["cams/#"], |_| {}).await;
    let record = live.frame("cams/door", jpeg()).await;
    assert!(record.get("url").is_none(), "{record}");
}
