//! How frames fail: timeouts, copies, limits, sizes, numbers and messages out of place. Each failure
//! names what was wrong and which parts arrived, and the failed frame's late parts are discarded.

#![expect(clippy::unwrap_used, reason = "tests")]

use serde_json::Value;

use super::tests::{
    Run, complete, discarded, every_form, failed, other_photo, photo, sixty, source,
};
use super::*;

#[test]
fn a_missing_part_fails_the_frame_at_the_timeout_naming_it_and_the_parts_that_arrived() {
    let photo = photo();
    let mut messages = sixty(Mode::JsonParts, "cams/door", None, &photo, Pieces::Raw);
    messages.remove(6);
    let mut run = Run::new(Mode::JsonParts);
    assert!(run.send_all(&messages).is_empty());
    assert_eq!(run.assembler.partial_frames(), 1);
    assert!(
        run.assembler.held_bytes() > photo.len(),
        "base64 text is held"
    );
    let events = run.expire();
    let all: Vec<PartId> = (0..59).collect();
    assert_eq!(
        failed(&events),
        [(
            "cams/door",
            "part 7 of 60 missing after 10 s (parts 1-6, 8-60 arrived)",
            &all[..]
        )]
    );
    assert_eq!(run.assembler.partial_frames(), 0);

    let expected = [
        (
            Mode::TopicIndex,
            r#"frame "7": part 59 of 60 missing after 10 s (parts 0-58 arrived)"#,
        ),
        (
            Mode::StartDataEnd,
            "no end message after 10 s (start and 60 data messages arrived, 106229 of 106229 bytes)",
        ),
        (
            Mode::HeaderBlocks,
            "104489 of 106229 bytes after 10 s (header and 59 blocks arrived)",
        ),
        (
            Mode::UntilEoi,
            "no end-of-image marker after 10 s (59 pieces arrived, 104489 bytes)",
        ),
    ];
    for (mode, error) in expected {
        let mut messages = sixty(mode, "cams/door", Some("7"), &photo, Pieces::Raw);
        // The last message: the end, the last block, the piece holding the JPEG's end.
        messages.pop();
        let mut run = Run::new(mode);
        assert!(run.send_all(&messages).is_empty(), "{mode}");
        let events = run.expire();
        let failures = failed(&events);
        assert_eq!(failures.len(), 1, "{mode}");
        assert_eq!(failures[0].1, error, "{mode}");
        assert_eq!(failures[0].2.len(), messages.len(), "{mode}");
    }
}

#[test]
fn a_failed_frames_late_parts_are_discarded_and_the_next_frame_assembles() {
    let photo = photo();
    let messages = sixty(Mode::JsonParts, "cams/door", None, &photo, Pieces::Raw);
    let mut run = Run::new(Mode::JsonParts);
    run.send_all(&messages[..30]);
    assert_eq!(failed(&run.expire()).len(), 1);
    let late = run.send_all(&messages[30..]);
    assert_eq!(discarded(&late), (30..60).collect::<Vec<_>>());
    let next = run.send_all(&messages);
    assert_eq!(complete(&next).len(), 1);
}

#[test]
fn without_an_id_a_part_numbered_below_those_held_begins_a_new_frame() {
    let (a, b) = (photo(), other_photo());
    let first = sixty(Mode::JsonParts, "cam", None, &a, Pieces::Raw);
    let second = sixty(Mode::JsonParts, "cam", None, &b, Pieces::Raw);
    let mut run = Run::new(Mode::JsonParts);
    // Part 60 of the first frame is lost.
    assert!(run.send_all(&first[..59]).is_empty());
    let events = run.send_all(&second);
    let failures = failed(&events);
    assert_eq!(failures.len(), 1);
    assert_eq!(
        failures[0].1,
        "part 60 of 60 missing when part 1 arrived again with different content (parts 1-59 arrived)"
    );
    assert_eq!(complete(&events).len(), 1);
    assert_eq!(complete(&events)[0].1, b);
}

#[test]
fn an_identical_copy_is_discarded_and_a_different_one_fails_the_frame() {
    let photo = photo();
    for mode in [Mode::JsonParts, Mode::TopicIndex] {
        let messages = sixty(mode, "cams/door", Some("1"), &photo, Pieces::Raw);
        let mut run = Run::new(mode);
        run.send_all(&messages[..10]);
        let (topic, payload) = &messages[4];
        assert_eq!(discarded(&run.send(topic, payload)), [10]);
        assert_eq!(discarded(&run.deliver(topic, payload, true)), [11]);
        let events = run.send_all(&messages[10..]);
        assert_eq!(complete(&events).len(), 1, "{mode}");
        assert_eq!(
            complete(&events)[0].2.len(),
            60,
            "copies are not parts of the frame"
        );
        // After the frame completed, a copy of its part is recognised too.
        assert_eq!(discarded(&run.send(topic, payload)).len(), 1, "{mode}");

        let mut run = Run::new(mode);
        run.send_all(&messages[..10]);
        let (topic, _) = &messages[4];
        let changed = match mode {
            Mode::JsonParts => {
                let mut part: Value = serde_json::from_slice(&messages[4].1).unwrap();
                part["data"] = "AAAA".into();
                part.to_string().into_bytes()
            }
            _ => b"changed".to_vec(),
        };
        let events = run.send(topic, &changed);
        let failures = failed(&events);
        assert_eq!(failures.len(), 1, "{mode}");
        assert!(
            failures[0]
                .1
                .contains("arrived again with different content"),
            "{}",
            failures[0].1
        );
        assert_eq!(failures[0].2, (0..10).collect::<Vec<_>>());
        // The different copy began a new frame, which fails at the timeout.
        assert_eq!(failed(&run.expire())[0].2, [10]);
    }
}

#[test]
fn a_redelivered_unnumbered_message_is_discarded_while_its_frame_is_held_or_just_ended() {
    let photo = photo();
    for (mode, pieces) in every_form() {
        let messages = sixty(mode, "cams/door", Some("1"), &photo, pieces);
        let mut run = Run::new(mode);
        run.send_all(&messages[..10]);
        for (topic, payload) in &messages[..10] {
            let events = run.deliver(topic, payload, true);
            assert_eq!(discarded(&events).len(), 1, "{mode} {pieces:?}");
        }
        let events = run.send_all(&messages[10..]);
        assert_eq!(complete(&events).len(), 1, "{mode}");
        assert_eq!(complete(&events)[0].1, photo, "{mode}");
        let (topic, payload) = messages.last().unwrap();
        assert_eq!(
            discarded(&run.deliver(topic, payload, true)).len(),
            1,
            "{mode}"
        );
    }
}

#[test]
fn parts_beyond_max_parts_fail_the_frame_once() {
    let photo = photo();
    let limits = Limits {
        max_parts: 50,
        ..Limits::default()
    };
    for (mode, pieces) in every_form() {
        let messages = sixty(mode, "cams/door", Some("1"), &photo, pieces);
        let mut run = Run::with(source(mode), limits);
        let events = run.send_all(&messages);
        let failures = failed(&events);
        assert_eq!(failures.len(), 1, "{mode} {pieces:?}: {events:?}");
        assert!(
            failures[0].1.contains("(chunks.max_parts)"),
            "{mode}: {}",
            failures[0].1
        );
        // The frame's other parts are discarded: every part comes out once.
        let out = failures[0].2.len() + discarded(&events).len();
        assert_eq!(out, messages.len(), "{mode}");
    }
}

#[test]
fn a_frame_past_max_frame_bytes_fails_once() {
    let photo = photo();
    let limits = Limits {
        max_frame_bytes: 50_000,
        ..Limits::default()
    };
    for (mode, pieces) in every_form() {
        let messages = sixty(mode, "cams/door", Some("1"), &photo, pieces);
        let mut run = Run::with(source(mode), limits);
        let events = run.send_all(&messages);
        let failures = failed(&events);
        assert_eq!(failures.len(), 1, "{mode} {pieces:?}: {events:?}");
        assert!(
            failures[0].1.contains("50000") && failures[0].1.contains("chunks.max_frame_bytes"),
            "{mode}: {}",
            failures[0].1
        );
        assert_eq!(
            failures[0].2.len() + discarded(&events).len(),
            messages.len()
        );
        assert!(
            run.assembler.held_bytes() < 4096,
            "{mode}: the data is not kept"
        );
    }
}

#[test]
fn a_size_mismatch_fails_at_the_end() {
    let mut run = Run::new(Mode::StartDataEnd);
    run.send("cam/start", b"5");
    run.send("cam/data", b"\xff\xd8\xff");
    let events = run.send("cam/end", b"");
    assert_eq!(
        failed(&events),
        [(
            "cam",
            "size mismatch: the start announced 5 bytes, 3 arrived (start and 1 data message arrived, 3 of 5 bytes)",
            &[0, 1, 2][..]
        )]
    );
    // Too much: the frame fails as soon as it is, and the rest is discarded up to its end.
    run.send("cam/start", b"2");
    let events = run.send("cam/data", b"\xff\xd8\xff");
    assert!(
        failed(&events)[0]
            .1
            .starts_with("data exceeds the size announced")
    );
    assert_eq!(discarded(&run.send("cam/data", b"x")), [5]);
    assert_eq!(discarded(&run.send("cam/end", b"")), [6]);
    assert_eq!(
        failed(&run.send("cam/end", b""))[0].1,
        "end message without a start"
    );
}

#[test]
fn part_numbers_out_of_range_and_bad_totals_fail() {
    let mut run = Run::new(Mode::JsonParts);
    let part =
        |part: u64, total: u64| format!(r#"{{"part":{part},"total":{total},"data":"AAAA"}}"#);
    let events = run.send("cam", part(0, 3).as_bytes());
    assert_eq!(
        failed(&events)[0].1,
        "part 0 of 3 is out of range: parts are numbered 1 to 3 (first_part = 1)"
    );
    // The rest of that frame is discarded; the next frame begins at part 1.
    assert_eq!(discarded(&run.send("cam", part(1, 3).as_bytes())), [1]);
    assert_eq!(discarded(&run.send("cam", part(2, 3).as_bytes())), [2]);
    let next = r#"{"part":0,"total":3,"data":"BBBB"}"#;
    assert!(
        failed(&run.send("cam", next.as_bytes()))[0]
            .1
            .contains("out of range")
    );
    // An identical copy of a part of the failed frame is a copy, not a new frame.
    assert_eq!(discarded(&run.send("cam", part(2, 3).as_bytes())), [4]);

    let mut run = Run::new(Mode::JsonParts);
    run.send("cam", part(1, 3).as_bytes());
    let events = run.send("cam", part(4, 3).as_bytes());
    assert_eq!(
        failed(&events),
        [(
            "cam",
            "part 4 of 3 is out of range: parts are numbered 1 to 3 (first_part = 1) (part 1 arrived)",
            &[0, 1][..]
        )]
    );
    // The frame's other parts are late parts of the failed frame.
    assert_eq!(discarded(&run.send("cam", part(2, 3).as_bytes())), [2]);
    assert_eq!(discarded(&run.send("cam", part(3, 3).as_bytes())), [3]);
    assert!(
        failed(&run.send("cam", part(1, 0).as_bytes()))[0]
            .1
            .contains("at least one part")
    );

    let mut run = Run::new(Mode::TopicIndex);
    let events = run.send("cam/9/5/5", b"x");
    assert_eq!(
        failed(&events)[0].1,
        r#"frame "9": part 5 of 5 is out of range: parts are numbered 0 to 4"#
    );
}

#[test]
fn a_header_without_a_size_fails_and_its_blocks_are_discarded() {
    let photo = photo();
    let mut run = Run::new(Mode::HeaderBlocks);
    let events = run.send("cam", br#"{"num_blocks": 2, "file_name": "a.jpg"}"#);
    assert_eq!(
        failed(&events)[0].1,
        "header has no file_size (its fields are num_blocks, file_name)"
    );
    assert_eq!(discarded(&run.send("cam", &photo[..100])), [1]);
    assert_eq!(discarded(&run.send("cam", &photo[100..])), [2]);
    let events = run.send_all(&sixty(Mode::HeaderBlocks, "cam", None, &photo, Pieces::Raw));
    assert_eq!(complete(&events)[0].1, photo);

    let mut run = Run::new(Mode::HeaderBlocks);
    assert!(
        failed(&run.send("cam", br#"{"file_size": 0}"#))[0]
            .1
            .contains("file_size 0")
    );
    let mut run = Run::new(Mode::HeaderBlocks);
    let events = run.send("cam", &photo[..100]);
    assert!(failed(&events)[0].1.starts_with("block without a header"));
    assert_eq!(discarded(&run.send("cam", &photo[100..200])), [1]);
}

#[test]
fn a_new_start_of_image_fails_the_open_frame_and_begins_the_next() {
    let (a, b) = (photo(), other_photo());
    let first = sixty(Mode::UntilEoi, "cam", None, &a, Pieces::Raw);
    let second = sixty(Mode::UntilEoi, "cam", None, &b, Pieces::Raw);
    let mut run = Run::new(Mode::UntilEoi);
    run.send_all(&first[..30]);
    let events = run.send_all(&second);
    assert_eq!(
        failed(&events),
        [(
            "cam",
            "no end-of-image marker before a new start-of-image (30 pieces arrived, 53130 bytes)",
            &(0..30).collect::<Vec<_>>()[..]
        )]
    );
    assert_eq!(complete(&events)[0].1, b);

    // A piece that starts no JPEG with no frame open fails, and the pieces after it until one does.
    let mut run = Run::new(Mode::UntilEoi);
    let events = run.send_all(&first[1..]);
    assert!(
        failed(&events)[0]
            .1
            .starts_with("piece does not start a JPEG")
    );
    assert_eq!(discarded(&events).len(), first.len() - 2);
    assert_eq!(complete(&run.send_all(&second))[0].1, b);
}

#[test]
fn messages_that_are_none_of_the_modes_fail_alone() {
    let cases = [
        (
            Mode::JsonParts,
            "cam",
            &b"\xff\xd8\xff"[..],
            "not a json-parts message: invalid JSON",
        ),
        (
            Mode::JsonParts,
            "cam",
            b"[1]",
            "not a json-parts message: JSON an array",
        ),
        (
            Mode::TopicIndex,
            "cam/1/2",
            b"x",
            "is not {base}/{frame_id}/{index}/{total}",
        ),
        (
            Mode::TopicIndex,
            "cam/1/x/2",
            b"x",
            r#"index "x" is not a number"#,
        ),
        (
            Mode::StartDataEnd,
            "cam/status",
            b"x",
            "is not {base}/start, {base}/data or {base}/end",
        ),
        (
            Mode::StartDataEnd,
            "cam/start",
            b"big",
            r#"start payload "big" is not a size"#,
        ),
        (
            Mode::StartDataEnd,
            "cam/data",
            b"x",
            "data message without a start",
        ),
        (Mode::None, "cam", b"x", "chunks = none"),
    ];
    for (mode, topic, payload, error) in cases {
        let mut run = Run::new(mode);
        let events = run.send(topic, payload);
        let failures = failed(&events);
        assert_eq!(failures.len(), 1, "{mode} {topic}");
        assert!(failures[0].1.contains(error), "{mode}: {}", failures[0].1);
        assert_eq!(failures[0].2, [0]);
    }
}
