//! Chunked subscriptions and the `[chunks]` table: keys, defaults, the environment, and the checks that
//! refuse what could not assemble.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::frame::chunks::{Fields, Mode};

fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::from_toml_str(toml, Some(env))
}

fn error(toml: &str) -> String {
    load(toml, &[]).unwrap_err().to_string()
}

const OUTPUT: &str = "[output]\ndir = \"frames\"\n";

#[test]
fn chunks_default_to_none_with_limits_from_the_decode_section() {
    let s = load(
        &format!("{OUTPUT}[[subscriptions]]\ntopic = \"cams/#\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(s.subscriptions[0].chunks, Mode::None);
    assert_eq!(s.subscriptions[0].source().fields, Fields::default());
    let limits = s.chunk_limits();
    assert_eq!(limits.max_frame_bytes, s.decode.max_payload_bytes);
    assert_eq!(limits.max_parts, 4096);
    assert_eq!(limits.timeout, Duration::from_secs(10));
    assert_eq!(
        s.spool_dir().as_deref(),
        Some(Path::new("frames/.mqimg-spool"))
    );
    // Printed settings keep the mode but not the json-parts keys nobody set.
    let toml = s.to_toml();
    assert!(toml.contains("chunks = \"none\""), "{toml}");
    assert!(!toml.contains("part_field"), "{toml}");
}

#[test]
fn a_chunked_subscription_and_its_limits_come_from_the_file_or_the_environment() {
    let file = r#"
[[subscriptions]]
topic = "cams/esp/+"
chunks = "start-data-end"

[chunks]
max_frame_bytes = 1000000
spool_dir = "/var/spool/mqimg"
"#;
    let s = load(file, &[("MQIMG__CHUNKS__TIMEOUT_SECS", "30")]).unwrap();
    assert_eq!(s.subscriptions[0].source().mode, Mode::StartDataEnd);
    assert_eq!(s.chunk_limits().max_frame_bytes, 1_000_000);
    assert_eq!(s.chunk_limits().timeout, Duration::from_secs(30));
    assert_eq!(s.spool_dir(), Some(PathBuf::from("/var/spool/mqimg")));

    let s = load(
        OUTPUT,
        &[
            ("MQIMG__SUBSCRIPTIONS__0__TOPIC", "cams/+"),
            ("MQIMG__SUBSCRIPTIONS__0__CHUNKS", "json-parts"),
            ("MQIMG__SUBSCRIPTIONS__0__PART_FIELD", "n"),
            ("MQIMG__SUBSCRIPTIONS__0__FIRST_PART", "0"),
            ("MQIMG__CHUNKS__MAX_PARTS", "100"),
        ],
    )
    .unwrap();
    let source = s.subscriptions[0].source();
    assert_eq!(source.mode, Mode::JsonParts);
    assert_eq!(source.fields.part, "n");
    assert_eq!(source.fields.total, "total");
    assert_eq!(source.fields.first_part, 0);
    assert_eq!(s.chunk_limits().max_parts, 100);
}

#[test]
fn an_unknown_mode_is_refused_with_every_name() {
    let err = load(
        "",
        &[
            ("MQIMG__SUBSCRIPTIONS__0__TOPIC", "a"),
            ("MQIMG__SUBSCRIPTIONS__0__CHUNKS", "parts"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.ends_with(
            "subscriptions[0].chunks (MQIMG__SUBSCRIPTIONS__0__CHUNKS): \"parts\" is not one of none, \
             json-parts, start-data-end, header-blocks, topic-index, until-eoi"
        ),
        "{err}"
    );
}

#[test]
fn json_parts_keys_apply_to_json_parts_only_and_must_make_sense() {
    let sub = |extra: &str| format!("{OUTPUT}[[subscriptions]]\ntopic = \"cams/+\"\n{extra}");
    let err = error(&sub("chunks = \"until-eoi\"\npart_field = \"n\"\n"));
    assert!(
        err.ends_with(
            "subscriptions[0].part_field (MQIMG__SUBSCRIPTIONS__0__PART_FIELD): applies to chunks = \
             \"json-parts\" only (this subscription has chunks = \"until-eoi\")"
        ),
        "{err}"
    );
    let err = error(&sub("first_part = 0\n"));
    assert!(err.contains("subscriptions[0].first_part"), "{err}");
    let err = error(&sub("chunks = \"json-parts\"\nfirst_part = 2\n"));
    assert!(err.ends_with("2 is not 0 or 1"), "{err}");
    let err = error(&sub("chunks = \"json-parts\"\ndata_field = \"part\"\n"));
    assert!(err.contains("\"part\" is used twice"), "{err}");
    let err = error(&sub("chunks = \"json-parts\"\nid_field = \"\"\n"));
    assert!(err.contains("id_field"), "{err}");
    let err = error(&sub("chunks = \"json-parts\"\nencoding = \"base64\"\n"));
    assert!(err.contains("already decoded"), "{err}");
    // Raw blocks may carry base64 text, which the frame's encoding then reads.
    let s = load(
        &sub("chunks = \"header-blocks\"\nencoding = \"base64\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(s.subscriptions[0].chunks, Mode::HeaderBlocks);
}

#[test]
fn filters_must_take_the_sub_topics_their_mode_sends_parts_on() {
    let sub = |mode: &str, topic: &str| {
        load(
            &format!("{OUTPUT}[[subscriptions]]\ntopic = \"{topic}\"\nchunks = \"{mode}\"\n"),
            &[],
        )
    };
    for (mode, topic) in [
        ("start-data-end", "cams/esp/+"),
        ("start-data-end", "cams/esp/#"),
        ("start-data-end", "a/+/#"),
        ("topic-index", "cams/esp/+/+/+"),
        ("topic-index", "cams/+/+/+"),
        ("topic-index", "$share/g/cams/#"),
    ] {
        sub(mode, topic).unwrap_or_else(|e| panic!("{mode} {topic}: {e}"));
    }
    for (mode, topic) in [
        ("start-data-end", "cams/esp"),
        ("start-data-end", "cams/esp/start"),
        ("start-data-end", "+"),
        ("topic-index", "cams/esp/+"),
        ("topic-index", "+/+/+"),
    ] {
        let err = sub(mode, topic).unwrap_err().to_string();
        assert!(
            err.contains("subscriptions[0].topic") && err.contains("end the filter with"),
            "{mode} {topic}: {err}"
        );
    }
}

#[test]
fn chunk_limits_are_checked() {
    let err = error("[chunks]\nmax_parts = 0\n");
    assert!(err.contains("chunks.max_parts"), "{err}");
    let err = error("[chunks]\ntimeout_secs = 0\n");
    assert!(err.contains("chunks.timeout_secs"), "{err}");
    let err = error("[decode]\nmax_payload_bytes = 1000\n[chunks]\nmax_frame_bytes = 1001\n");
    assert!(
        err.contains("exceeds decode.max_payload_bytes (1000)"),
        "{err}"
    );
}

#[test]
fn qos1_chunked_subscriptions_need_a_spool() {
    let sub = |qos: u8| {
        format!("[[subscriptions]]\ntopic = \"cams/+\"\nchunks = \"json-parts\"\nqos = {qos}\n")
    };
    let err = error(&sub(1));
    assert!(
        err.starts_with(
            "invalid config: chunks.spool_dir (MQIMG__CHUNKS__SPOOL_DIR): subscriptions[0]"
        ),
        "{err}"
    );
    load(&sub(0), &[]).unwrap();
    load(
        &format!("{}[chunks]\nspool_dir = \"/tmp/spool\"\n", sub(1)),
        &[],
    )
    .unwrap();
}

#[test]
fn records_of_chunked_frames_may_not_come_back_as_parts() {
    // A topic-index frame on cams/x gets a record on cams/x/r/1/2, which is a part again.
    let toml = "[output]\nresults_topic = \"{topic}/r/1/2\"\nerrors_topic = \"\"\n\
                [[subscriptions]]\ntopic = \"cams/+/+/+/+\"\nchunks = \"topic-index\"\nqos = 0\n";
    let err = error(toml);
    assert!(err.contains("feeds records back"), "{err}");
    assert!(err.contains("\"cams/+/+/+/+\" matches"), "{err}");
    // Unchunked, the same subscription's frames are five levels deep, and their records eight.
    load(&toml.replace("chunks = \"topic-index\"", ""), &[]).unwrap();
}
