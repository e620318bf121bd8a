//! The assembler mode by mode: round trips of a real photo, interleaving, any order, meta, base64 forms,
//! field names. How frames fail is in `failures.rs`; the property test in `proptests.rs`.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

pub(super) type Messages = Vec<(String, Vec<u8>)>;

pub(super) fn photo() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/frames/photo-640x480.jpg"
    );
    std::fs::read(path).unwrap()
}

/// Another photo, so two interleaved frames differ.
pub(super) fn other_photo() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/frames/photo-1280x720.jpg"
    );
    std::fs::read(path).unwrap()
}

pub(super) fn source(mode: Mode) -> Source {
    Source {
        mode,
        fields: Fields::default(),
    }
}

/// `bytes` split into 60 parts.
pub(super) fn sixty(
    mode: Mode,
    topic: &str,
    id: Option<&str>,
    bytes: &[u8],
    pieces: Pieces,
) -> Messages {
    split(
        mode,
        &Fields::default(),
        topic,
        id,
        bytes,
        bytes.len().div_ceil(60),
        pieces,
    )
}

/// An assembler fed one message at a time, 1 ms apart, numbering parts from 0.
pub(super) struct Run {
    pub(super) assembler: Assembler,
    pub(super) source: Source,
    start: Instant,
    now: Instant,
    next: PartId,
}

impl Run {
    pub(super) fn new(mode: Mode) -> Self {
        Self::with(source(mode), Limits::default())
    }

    pub(super) fn with(source: Source, limits: Limits) -> Self {
        let start = Instant::now();
        Self {
            assembler: Assembler::new(limits),
            source,
            start,
            now: start,
            next: 0,
        }
    }

    pub(super) fn send(&mut self, topic: &str, payload: &[u8]) -> Vec<Event> {
        self.deliver(topic, payload, false)
    }

    pub(super) fn deliver(&mut self, topic: &str, payload: &[u8], redelivered: bool) -> Vec<Event> {
        self.now += Duration::from_millis(1);
        let id = self.next;
        self.next += 1;
        let events = if redelivered {
            let source = &self.source;
            self.assembler
                .redelivered(source, topic, payload, id, self.now)
        } else {
            self.assembler
                .part(&self.source, topic, payload, id, self.now)
        };
        assert_eq!(self.assembler.held_bytes(), self.assembler.recount());
        events
    }

    pub(super) fn send_all(&mut self, messages: &[(String, Vec<u8>)]) -> Vec<Event> {
        messages
            .iter()
            .flat_map(|(topic, payload)| self.send(topic, payload))
            .collect()
    }

    /// Expires at the timeout after the first message.
    pub(super) fn expire(&mut self) -> Vec<Event> {
        self.now = self.start + Limits::default().timeout + Duration::from_millis(500);
        let events = self.assembler.expire(self.now);
        assert_eq!(self.assembler.held_bytes(), self.assembler.recount());
        events
    }
}

pub(super) fn complete(events: &[Event]) -> Vec<(&str, &[u8], &[PartId])> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Complete {
                topic,
                bytes,
                parts,
                ..
            } => Some((topic.as_str(), bytes.as_slice(), parts.as_slice())),
            _ => None,
        })
        .collect()
}

pub(super) fn failed(events: &[Event]) -> Vec<(&str, &str, &[PartId])> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Failed {
                topic,
                error,
                parts,
            } => Some((topic.as_str(), error.as_str(), parts.as_slice())),
            _ => None,
        })
        .collect()
}

pub(super) fn discarded(events: &[Event]) -> Vec<PartId> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Discard { part } => Some(*part),
            _ => None,
        })
        .collect()
}

/// Every mode with the piece forms it takes, and the topic its frames are on.
pub(super) fn every_form() -> Vec<(Mode, Pieces)> {
    vec![
        (Mode::JsonParts, Pieces::Raw),
        (Mode::StartDataEnd, Pieces::Raw),
        (Mode::StartDataEnd, Pieces::Base64),
        (Mode::HeaderBlocks, Pieces::Raw),
        (Mode::TopicIndex, Pieces::Raw),
        (Mode::UntilEoi, Pieces::Raw),
        (Mode::UntilEoi, Pieces::Base64),
    ]
}

#[test]
fn a_photo_in_sixty_parts_round_trips_byte_identical_in_every_mode() {
    let photo = photo();
    for (mode, pieces) in every_form() {
        let messages = sixty(mode, "cams/door", Some("7"), &photo, pieces);
        assert!(messages.len() >= 60, "{mode}: {} messages", messages.len());
        let mut run = Run::new(mode);
        let events = run.send_all(&messages);
        let all: Vec<PartId> = (0..messages.len() as u64).collect();
        assert_eq!(
            complete(&events),
            [("cams/door", &photo[..], &all[..])],
            "{mode} {pieces:?}"
        );
        let Some(Event::Complete { info, .. }) = events.last() else {
            panic!("{mode}: {events:?}")
        };
        assert_eq!(info.mode, mode);
        assert_eq!(info.parts as usize, messages.len());
        assert_eq!(info.bytes, photo.len());
        assert_eq!(info.assembly_ms, (messages.len() - 1) as f64, "1 ms apart");
        assert_eq!(run.assembler.partial_frames(), 0);
        // Only the marker recognising redeliveries is left, and it goes at the timeout.
        assert!(run.assembler.held_bytes() < 2048, "{mode}");
        assert!(run.expire().is_empty());
        assert_eq!(run.assembler.held_bytes(), 0);
    }
}

#[test]
fn an_assembled_frame_decodes_to_the_pixels_of_the_unsplit_one() {
    let photo = photo();
    let options = crate::frame::Options::default();
    let budget = crate::frame::budget::MemoryBudget::new(1 << 30);
    let at = std::time::SystemTime::now();
    let whole = crate::frame::process(&photo, Some("cam"), at, &options, &budget).unwrap();
    let mut run = Run::new(Mode::JsonParts);
    let events = run.send_all(&sixty(Mode::JsonParts, "cam", None, &photo, Pieces::Raw));
    let (topic, bytes, _) = complete(&events)[0];
    let assembled = crate::frame::process(bytes, Some(topic), at, &options, &budget).unwrap();
    assert_eq!(assembled.record.sha256, whole.record.sha256);
    assert!(assembled.decoded.rgb == whole.decoded.rgb, "pixels differ");
}

#[test]
fn the_record_gets_the_frame_id_and_the_header_or_start_as_meta() {
    let photo = photo();
    let mut run = Run::new(Mode::HeaderBlocks);
    let events = run.send_all(&sixty(
        Mode::HeaderBlocks,
        "cam",
        Some("a.jpg"),
        &photo,
        Pieces::Raw,
    ));
    let Some(Event::Complete { meta, info, .. }) = events.last() else {
        panic!("{events:?}")
    };
    let meta = meta.as_ref().unwrap();
    assert_eq!(meta["file_size"], photo.len());
    assert_eq!(meta["file_name"], "a.jpg");
    assert_eq!(info.id, None);
    let value = serde_json::to_value(info).unwrap();
    assert_eq!(value["mode"], "header-blocks");
    assert!(value.get("id").is_none());

    let mut run = Run::new(Mode::JsonParts);
    let mut messages = sixty(Mode::JsonParts, "cam", Some("42"), &photo, Pieces::Raw);
    let first: Value = serde_json::from_slice(&messages[0].1).unwrap();
    let mut first = first.as_object().unwrap().clone();
    first.insert("camera".into(), "door".into());
    messages[0].1 = Value::Object(first).to_string().into_bytes();
    let events = run.send_all(&messages);
    let Some(Event::Complete { meta, info, .. }) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(info.id.as_deref(), Some("42"));
    assert_eq!(meta.as_ref().unwrap()["camera"], "door");
    assert_eq!(
        meta.as_ref().unwrap().len(),
        1,
        "part, total, data and id are not meta"
    );

    let mut run = Run::new(Mode::StartDataEnd);
    run.send("cam/start", br#"{"size": 3, "camera": "door"}"#);
    run.send("cam/data", b"\xff\xd8\xff");
    let events = run.send("cam/end", b"");
    let Some(Event::Complete { meta, bytes, .. }) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(bytes, b"\xff\xd8\xff");
    assert_eq!(meta.as_ref().unwrap()["camera"], "door");
}

#[test]
fn two_cameras_interleaved_each_get_their_frame_in_every_mode() {
    let (a, b) = (photo(), other_photo());
    for (mode, pieces) in every_form() {
        // Frames with ids share a topic; the others are two cameras.
        let (topic_b, id_b) = match mode {
            Mode::JsonParts | Mode::TopicIndex => ("cams/door", "8"),
            _ => ("cams/yard", "8"),
        };
        let first = sixty(mode, "cams/door", Some("7"), &a, pieces);
        let second = sixty(mode, topic_b, Some(id_b), &b, pieces);
        let mut messages = Vec::new();
        for i in 0..first.len().max(second.len()) {
            messages.extend(first.get(i).cloned());
            messages.extend(second.get(i).cloned());
        }
        let mut run = Run::new(mode);
        let events = run.send_all(&messages);
        let done = complete(&events);
        assert_eq!(done.len(), 2, "{mode} {pieces:?}: {:?}", failed(&events));
        let find = |bytes: &[u8]| {
            done.iter()
                .find(|(_, got, _)| *got == bytes)
                .map(|(t, ..)| *t)
        };
        assert_eq!(find(&a), Some("cams/door"), "{mode}");
        assert_eq!(find(&b), Some(topic_b), "{mode}");
    }
}

#[test]
fn numbered_parts_with_an_id_complete_in_any_order() {
    let photo = photo();
    for mode in [Mode::JsonParts, Mode::TopicIndex] {
        let mut messages = sixty(mode, "cams/door", Some("7"), &photo, Pieces::Raw);
        messages.reverse();
        messages.swap(3, 40);
        let mut run = Run::new(mode);
        let events = run.send_all(&messages);
        assert_eq!(complete(&events).len(), 1, "{mode}: {events:?}");
        assert_eq!(complete(&events)[0].1, photo, "{mode}");
    }
}

#[test]
fn a_jpeg_start_inside_a_segment_of_the_open_frame_is_data() {
    // An APP1 segment whose payload holds a thumbnail, cut so that a piece starts with its SOI.
    let thumbnail = [0xff, 0xd8, 0xff, 0xd9];
    let mut frame = vec![0xff, 0xd8, 0xff, 0xe1, 0x00, 6];
    frame.extend_from_slice(&thumbnail);
    frame.extend_from_slice(&[0xff, 0xda, 0x00, 0x02, 0x12, 0x34, 0xff, 0xd9]);
    let mut run = Run::new(Mode::UntilEoi);
    assert!(run.send("cam", &frame[..6]).is_empty());
    assert!(run.send("cam", &frame[6..10]).is_empty());
    let events = run.send("cam", &frame[10..]);
    assert_eq!(complete(&events)[0].1, frame);
}

#[test]
fn base64_pieces_cut_anywhere_and_wrapped_assemble() {
    let photo = photo();
    let text = ::base64::Engine::encode(&::base64::engine::general_purpose::STANDARD, &photo);
    let wrapped: Vec<u8> = text
        .as_bytes()
        .chunks(76)
        .flat_map(|line| [line, &b"\r\n"[..]].concat())
        .collect();
    for mode in [Mode::StartDataEnd, Mode::UntilEoi] {
        let mut run = Run::new(mode);
        let topic = if mode == Mode::StartDataEnd {
            "cam/data"
        } else {
            "cam"
        };
        if mode == Mode::StartDataEnd {
            run.send("cam/start", photo.len().to_string().as_bytes());
        }
        let mut events = Vec::new();
        for piece in wrapped.chunks(1001) {
            events.extend(run.send(topic, piece));
        }
        if mode == Mode::StartDataEnd {
            events.extend(run.send("cam/end", b""));
        }
        assert_eq!(complete(&events).len(), 1, "{mode}: {events:?}");
        assert_eq!(complete(&events)[0].1, photo, "{mode}");
    }
    // json-parts slices cut from one text (not each padded) join before decoding.
    let mut run = Run::new(Mode::JsonParts);
    let slices: Vec<&[u8]> = text.as_bytes().chunks(1001).collect();
    let mut events = Vec::new();
    for (i, slice) in slices.iter().enumerate() {
        let part = serde_json::json!({
            "part": i, "total_parts": slices.len(), "data": std::str::from_utf8(slice).unwrap()
        });
        let source = Source {
            mode: Mode::JsonParts,
            fields: Fields {
                first_part: 0,
                ..Fields::default()
            },
        };
        run.source = source;
        events.extend(run.send("cam", part.to_string().as_bytes()));
    }
    assert_eq!(complete(&events)[0].1, photo);
}

#[test]
fn json_parts_field_names_are_configurable() {
    let fields = Fields {
        part: "n".into(),
        total: "of".into(),
        data: "b64".into(),
        id: "frame".into(),
        first_part: 0,
    };
    let photo = photo();
    let messages = split(
        Mode::JsonParts,
        &fields,
        "cam",
        Some("x1"),
        &photo,
        2000,
        Pieces::Raw,
    );
    let first: Value = serde_json::from_slice(&messages[0].1).unwrap();
    assert_eq!(first["n"], 0);
    assert_eq!(first["frame"], "x1");
    let source = Source {
        mode: Mode::JsonParts,
        fields,
    };
    let mut run = Run::with(source, Limits::default());
    let events = run.send_all(&messages);
    assert_eq!(complete(&events)[0].1, photo);
    // Default names are not read under other names, and the error lists the fields there are.
    let events = run.send("cam", br#"{"part": 1, "total": 1, "data": "AAAA"}"#);
    assert_eq!(
        failed(&events)[0].1,
        r#"not a json-parts message: no "n" field (its fields are part, total, data)"#
    );
}

#[test]
fn modes_have_kebab_case_names_that_parse_back() {
    for mode in Mode::ALL {
        assert_eq!(mode.name().parse::<Mode>(), Ok(mode));
        assert_eq!(serde_json::to_value(mode).unwrap(), mode.name());
    }
    let err = "json_parts".parse::<Mode>().unwrap_err();
    assert!(
        err.to_string().contains("none, json-parts, start-data-end"),
        "{err}"
    );
}

#[test]
fn frame_filters_cover_the_frame_topics_of_parts_a_filter_takes() {
    assert_eq!(Mode::JsonParts.frame_filters("cams/+"), ["cams/+"]);
    assert_eq!(Mode::StartDataEnd.frame_filters("cams/esp/+"), ["cams/esp"]);
    assert_eq!(
        Mode::TopicIndex.frame_filters("$share/g/cams/+/+/+/+"),
        ["cams/+"]
    );
    assert_eq!(
        Mode::TopicIndex.frame_filters("+/+/+"),
        Vec::<String>::new()
    );
    assert_eq!(
        Mode::StartDataEnd.frame_filters("cams/esp/#"),
        ["cams/esp/#", "cams"]
    );
    assert_eq!(
        Mode::TopicIndex.frame_filters("a/b/c/#"),
        ["a/b/c/#", "a", "a/b"]
    );
    assert_eq!(Mode::TopicIndex.frame_filters("#"), ["#"]);
    use crate::frame::topic::matches;
    for (mode, filter, part) in [
        (Mode::StartDataEnd, "cams/esp/#", "cams/esp/start"),
        (Mode::StartDataEnd, "cams/esp/#", "cams/esp/x/y/data"),
        (Mode::TopicIndex, "a/b/c/#", "a/b/c/1/2"),
        (Mode::TopicIndex, "a/b/c/#", "a/b/c/d/e/f/g"),
        (Mode::TopicIndex, "a/+/c/+/+/+", "a/b/c/1/2/3"),
    ] {
        assert!(matches(filter, part), "{filter} {part}");
        let levels: Vec<&str> = part.split('/').collect();
        let frame = levels[..levels.len() - mode.part_levels()].join("/");
        let filters = mode.frame_filters(filter);
        assert!(
            filters.iter().any(|f| matches(f, &frame)),
            "{part} → {frame} in {filters:?}"
        );
    }
}

#[test]
fn ranges_are_compact_and_bounded() {
    assert_eq!(ranges([1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
    assert_eq!(ranges((0..20).map(|n| n * 2)), "0, 2, 4, 6, 8, 10, …");
}
