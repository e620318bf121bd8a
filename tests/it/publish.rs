//! `mqimg publish` against a private broker (whole frames and chunked ones), and the harness's broker
//! restart.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mqimg::cli::{ChunkArgs, PublishArgs};
use mqimg::frame::chunks::{Assembler, Event, Limits, Mode, Source};
use mqimg::frame::payload::Detected;
use rumqttc::QoS;

use crate::support::{
    Broker, Message, Subscriber, SubscriberOptions, fixture, fixture_path, free_port, publish_once,
    with_timeout,
};

const PHOTO: &str = "frames/photo-640x480.jpg";
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

fn args(broker: &str, topic: &str, encoding: Detected, count: u64) -> PublishArgs {
    PublishArgs {
        broker: broker.to_owned(),
        topic: topic.to_owned(),
        encoding,
        qos: 1,
        count,
        rate: None,
        client_id: None,
        chunking: ChunkArgs::default(),
        files: vec![fixture_path(PHOTO)],
    }
}

/// Publishes the photo 3 times with `encoding` and returns exactly what a subscriber got.
async fn publish_three(encoding: Detected) -> Vec<Message> {
    let broker = Broker::new();
    let topic = "cams/door";
    let mut subscriber = Subscriber::connect(&broker.url(), topic, QoS::AtLeastOnce).await;

    let args = args(&broker.url(), topic, encoding, 3);
    with_timeout(30, "mqimg publish", mqimg::cli::publish::run(&args))
        .await
        .expect("publishing succeeds");

    let messages = subscriber.recv_n(3, RECV_TIMEOUT).await;
    // Published after run() returned (all 3 acknowledged, so already queued for the subscriber): if the
    // next message is this one, there were exactly 3. Mosquitto keeps this order for QoS 1 on both sides;
    // with QoS 0 or 2 involved it can deliver a later message first.
    publish_once(&broker.url(), topic, "end", QoS::AtLeastOnce).await;
    let next = subscriber.recv(RECV_TIMEOUT).await;
    assert_eq!(
        next.payload, b"end",
        "a 4th message arrived before the end marker"
    );
    for message in &messages {
        assert_eq!(message.topic, topic);
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_base64_delivers_each_copy_as_the_padded_standard_encoding() {
    let photo = fixture(PHOTO);
    for message in publish_three(Detected::Base64).await {
        let decoded = STANDARD
            .decode(&message.payload)
            .expect("payload is standard base64");
        assert_eq!(decoded, photo);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_raw_delivers_the_file_bytes_unchanged() {
    let photo = fixture(PHOTO);
    for message in publish_three(Detected::Raw).await {
        assert!(
            message.payload == photo,
            "raw payload differs from the file"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_data_uri_delivers_a_jpeg_data_uri_of_the_file() {
    let photo = fixture(PHOTO);
    for message in publish_three(Detected::DataUri).await {
        let text = String::from_utf8(message.payload).expect("a data URI is text");
        let encoded = text
            .strip_prefix("data:image/jpeg;base64,")
            .unwrap_or_else(|| panic!("unexpected prefix: {:.40}", text));
        let decoded = STANDARD.decode(encoded).expect("base64 after the prefix");
        assert_eq!(decoded, photo);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_json_delivers_envelopes_with_camera_sequence_and_image() {
    let photo = fixture(PHOTO);
    let messages = publish_three(Detected::Json).await;
    let mut seqs = Vec::new();
    for message in messages {
        let envelope: serde_json::Value =
            serde_json::from_slice(&message.payload).expect("payload is JSON");
        assert_eq!(envelope["camera"], "cams/door");
        assert!(envelope["ts"].is_u64(), "ts is unix milliseconds");
        seqs.push(envelope["seq"].as_u64().expect("seq is a number"));
        let image = envelope["image"].as_str().expect("image is a string");
        assert_eq!(STANDARD.decode(image).expect("image is base64"), photo);
    }
    assert_eq!(seqs, [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_cycles_through_files_in_turn() {
    let broker = Broker::new();
    let topic = "cams/yard";
    let mut subscriber = Subscriber::connect(&broker.url(), topic, QoS::AtLeastOnce).await;
    let mut args = args(&broker.url(), topic, Detected::Raw, 2);
    args.files = vec![
        fixture_path(PHOTO),
        fixture_path("frames/photo-640x480.png"),
    ];
    args.qos = 2;
    with_timeout(30, "mqimg publish", mqimg::cli::publish::run(&args))
        .await
        .expect("publishing succeeds");

    let (jpeg, png) = (fixture(PHOTO), fixture("frames/photo-640x480.png"));
    let payloads: Vec<_> = subscriber
        .recv_n(4, RECV_TIMEOUT)
        .await
        .into_iter()
        .map(|message| message.payload)
        .collect();
    assert!(
        payloads == [jpeg.clone(), png.clone(), jpeg, png],
        "files not published in turn"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_a_port_where_nothing_listens_fails_quickly() {
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    let args = args(&url, "cams/door", Detected::Base64, 1);
    let error = with_timeout(
        15,
        "mqimg publish to a closed port",
        mqimg::cli::publish::run(&args),
    )
    .await
    .expect_err("nothing listens there");
    let message = format!("{error:#}");
    assert!(
        message.contains(&format!("cannot connect to broker at {url}")),
        "unexpected error: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_restarts_the_broker_on_the_same_port_with_its_persistence() {
    let mut broker = Broker::new();
    let port = broker.port();
    let url = broker.url();
    let topic = "cams/restart";
    let persistent = SubscriberOptions {
        client_id: Some(String::from("it-restart-subscriber")),
        clean_session: false,
        ..SubscriberOptions::default()
    };
    // A persistent session that is offline while a QoS 1 message arrives: the broker queues it.
    Subscriber::connect_with(&url, topic, QoS::AtLeastOnce, persistent.clone())
        .await
        .disconnect()
        .await;
    publish_once(&url, topic, "queued", QoS::AtLeastOnce).await;

    broker.stop();
    assert!(!broker.is_running());
    assert!(
        broker.dir().join("mosquitto.db").is_file(),
        "no persistence file after stop; log:\n{}",
        broker.log()
    );
    broker.start();
    assert_eq!(broker.port(), port);

    let mut subscriber = Subscriber::connect_with(&url, topic, QoS::AtLeastOnce, persistent).await;
    let message = subscriber.recv(RECV_TIMEOUT).await;
    assert_eq!(message.payload, b"queued", "log:\n{}", broker.log());
}

/// Publishes `args`, then returns the `n` messages a subscriber to `filter` got, checking there were
/// no more.
async fn publish_and_take(
    broker: &Broker,
    filter: &str,
    args: &PublishArgs,
    n: usize,
) -> Vec<Message> {
    let mut subscriber = Subscriber::connect(&broker.url(), filter, QoS::AtLeastOnce).await;
    with_timeout(30, "mqimg publish", mqimg::cli::publish::run(args))
        .await
        .expect("publishing succeeds");
    let messages = subscriber.recv_n(n, RECV_TIMEOUT).await;
    publish_once(&broker.url(), &args.topic, "end", QoS::AtLeastOnce).await;
    let next = subscriber.recv(RECV_TIMEOUT).await;
    assert_eq!(next.payload, b"end", "more than {n} messages arrived");
    messages
}

/// The frames the assembler makes of `messages`, in order of completion.
fn assemble(mode: Mode, messages: &[Message]) -> Vec<(String, Vec<u8>)> {
    let source = Source {
        mode,
        ..Source::default()
    };
    let mut assembler = Assembler::new(Limits::default());
    let now = std::time::Instant::now();
    let mut frames = Vec::new();
    for (id, message) in (0..).zip(messages) {
        for event in assembler.part(&source, &message.topic, &message.payload, id, now) {
            match event {
                Event::Complete { topic, bytes, .. } => frames.push((topic, bytes)),
                other => panic!("{other:?}"),
            }
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_json_parts_sends_the_file_as_numbered_base64_slices() {
    let broker = Broker::new();
    let photo = fixture(PHOTO);
    let mut args = args(&broker.url(), "cams/esp", Detected::Base64, 1);
    args.chunking = ChunkArgs {
        chunks: Mode::JsonParts,
        chunk_bytes: 2048,
        interleave: false,
    };
    let total = photo.len().div_ceil(2048);
    assert!(total >= 50);
    let messages = publish_and_take(&broker, "cams/esp", &args, total).await;
    for (i, message) in messages.iter().enumerate() {
        assert_eq!(message.topic, "cams/esp");
        let part: serde_json::Value = serde_json::from_slice(&message.payload).expect("JSON");
        assert_eq!(part["id"], 0);
        assert_eq!(part["part"], i + 1, "parts in order, from 1");
        assert_eq!(part["total"], total);
        let data = STANDARD
            .decode(part["data"].as_str().expect("data is text"))
            .expect("data is base64");
        let slice = &photo[i * 2048..photo.len().min((i + 1) * 2048)];
        assert!(data == slice, "part {} holds bytes {}..", i + 1, i * 2048);
    }
    assert_eq!(
        assemble(Mode::JsonParts, &messages),
        [("cams/esp".to_owned(), photo)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_interleaves_two_frames_by_id_or_as_two_cameras() {
    let broker = Broker::new();
    let (jpeg, png) = (fixture(PHOTO), fixture("frames/photo-640x480.png"));
    let mut args = args(&broker.url(), "cams/esp", Detected::Raw, 1);
    args.files.push(fixture_path("frames/photo-640x480.png"));
    args.chunking = ChunkArgs {
        chunks: Mode::TopicIndex,
        chunk_bytes: 8192,
        interleave: true,
    };
    let (a, b) = (jpeg.len().div_ceil(8192), png.len().div_ceil(8192));
    let messages = publish_and_take(&broker, "cams/esp/#", &args, a + b).await;
    assert_eq!(messages[0].topic, format!("cams/esp/0/0/{a}"));
    assert_eq!(messages[1].topic, format!("cams/esp/1/0/{b}"));
    assert_eq!(messages[2].topic, format!("cams/esp/0/1/{a}"));
    let frames = assemble(Mode::TopicIndex, &messages);
    assert_eq!(frames.len(), 2);
    assert!(frames.contains(&("cams/esp".to_owned(), jpeg.clone())));
    assert!(frames.contains(&("cams/esp".to_owned(), png)));

    // Without frame ids, the second frame is another camera's.
    args.files.pop();
    args.count = 2;
    args.encoding = Detected::Base64;
    args.chunking.chunks = Mode::StartDataEnd;
    let n = 2 * (jpeg.len().div_ceil(8192) + 2);
    let messages = publish_and_take(&broker, "cams/#", &args, n).await;
    assert_eq!(messages[0].topic, "cams/esp/start");
    assert_eq!(messages[1].topic, "cams/esp-2/start");
    assert!(messages[2].payload.starts_with(b"/9j/"), "base64 pieces");
    let frames = assemble(Mode::StartDataEnd, &messages);
    assert_eq!(
        frames,
        [
            ("cams/esp".to_owned(), jpeg.clone()),
            ("cams/esp-2".to_owned(), jpeg)
        ]
    );
}
