//! `mqimg publish` without a broker: wrapping, flags refused before connecting.

use super::*;
use crate::cli::ChunkArgs;

#[test]
fn wrap_raw_is_the_bytes_themselves() {
    assert_eq!(wrap(b"\xff\xd8abc", Detected::Raw, "t", 0), b"\xff\xd8abc");
}

#[test]
fn wrap_base64_uses_the_padded_standard_alphabet() {
    assert_eq!(wrap(&[0xfb, 0xff], Detected::Base64, "t", 0), b"+/8=");
}

#[test]
fn wrap_data_uri_names_png_or_jpeg_from_the_magic_bytes() {
    let png = wrap(b"\x89PNG\r\n\x1a\n", Detected::DataUri, "t", 0);
    assert_eq!(png, b"data:image/png;base64,iVBORw0KGgo=");
    let jpeg = wrap(b"\xff\xd8\xff", Detected::DataUri, "t", 0);
    assert_eq!(jpeg, b"data:image/jpeg;base64,/9j/");
}

#[test]
fn wrap_json_carries_camera_ts_seq_and_image() {
    let before = unix_millis();
    let bytes = wrap(b"\xff\xd8\xff", Detected::Json, "cams/\"door\"", 7);
    let value: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
    assert_eq!(value["camera"], "cams/\"door\"");
    assert_eq!(value["seq"], 7);
    assert_eq!(value["image"], "/9j/");
    let ts = value["ts"].as_u64().expect("ts is a number");
    assert!(ts >= before, "ts {ts} is unix milliseconds");
}

#[test]
fn json_size_estimate_covers_the_largest_envelope() {
    let body = Body::prepare(vec![1, 2, 3], Detected::Json, "t");
    let largest = json_envelope("t", u64::MAX, u64::MAX, "AQID");
    assert_eq!(body.max_len("t"), largest.len());
}

#[tokio::test]
async fn bad_arguments_fail_before_connecting() {
    let args = |rate: Option<f64>, count: u64| PublishArgs {
        // Nothing is ever connected to: every case fails validation first.
        broker: String::from("mqtt://127.0.0.1:9"),
        topic: String::from("cams/door"),
        encoding: Detected::Base64,
        qos: 1,
        count,
        rate,
        client_id: None,
        chunking: ChunkArgs::default(),
        files: vec![std::path::PathBuf::from("/nonexistent/frame.jpg")],
    };
    let error = |args: PublishArgs| async move {
        format!("{:#}", run(&args).await.expect_err("invalid arguments"))
    };
    assert!(
        error(args(Some(0.0), 1))
            .await
            .contains("--rate must be a positive")
    );
    assert!(
        error(args(Some(f64::NAN), 1))
            .await
            .contains("--rate must be a positive")
    );
    assert!(error(args(Some(1e-300), 1)).await.contains("too low"));
    assert!(
        error(args(None, 0))
            .await
            .contains("--count must be at least 1")
    );
    assert!(
        error(args(None, 1))
            .await
            .contains("cannot read /nonexistent/frame.jpg")
    );
}

#[tokio::test]
async fn chunk_flags_that_do_not_fit_fail_before_connecting() {
    let args =
        |chunks: Mode, chunk_bytes: usize, interleave: bool, encoding: Detected| PublishArgs {
            broker: String::from("mqtt://127.0.0.1:9"),
            topic: String::from("cams/door"),
            encoding,
            qos: 1,
            count: 1,
            rate: None,
            client_id: None,
            chunking: ChunkArgs {
                chunks,
                chunk_bytes,
                interleave,
            },
            files: vec![std::path::PathBuf::from("/nonexistent/frame.jpg")],
        };
    let error = |args: PublishArgs| async move {
        format!("{:#}", run(&args).await.expect_err("invalid arguments"))
    };
    let base64 = Detected::Base64;
    let cases = [
        (
            args(Mode::None, 4096, true, base64),
            "--interleave needs --chunks",
        ),
        (
            args(Mode::JsonParts, 0, false, base64),
            "--chunk-bytes must be at least 1",
        ),
        (
            args(Mode::UntilEoi, 4096, false, Detected::DataUri),
            "--encoding data-uri does not apply with --chunks",
        ),
        (
            args(Mode::TopicIndex, 4096, true, base64),
            "--interleave needs two frames",
        ),
        (
            args(Mode::TopicIndex, 4096, false, base64),
            "cannot read /nonexistent/frame.jpg",
        ),
    ];
    for (args, expected) in cases {
        let message = error(args).await;
        assert!(message.contains(expected), "{message}");
    }
}

#[tokio::test]
async fn the_broker_url_is_parsed_as_the_daemon_parses_it() {
    let args = PublishArgs {
        broker: String::from("mqtts://127.0.0.1:8883"),
        topic: String::from("cams/door"),
        encoding: Detected::Base64,
        qos: 1,
        count: 1,
        rate: None,
        client_id: None,
        chunking: ChunkArgs::default(),
        files: vec![std::path::PathBuf::from("/nonexistent/frame.jpg")],
    };
    let error = format!("{:#}", run(&args).await.expect_err("an unsupported scheme"));
    assert!(error.contains("unsupported scheme `mqtts`"), "{error}");
}

#[test]
fn topics_with_wildcards_are_rejected() {
    assert!(validate_topic("cams/door").is_ok());
    assert!(validate_topic("cams/+").is_err());
    assert!(validate_topic("cams/#").is_err());
    assert!(validate_topic("").is_err());
}
