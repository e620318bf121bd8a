//! Tests of the marker walk: refusals, truncation, restart and marker anomalies, through [`decode`] where
//! possible. The entropy check has its own, in `entropy/tests.rs`.
#![expect(clippy::unwrap_used, reason = "tests")]

use super::markers::{find_ff, walk_with};
use crate::frame::decode::tests::{err, fixture, marker_offset, ok, ok_each, scan_start, with};
use crate::frame::decode::{Backend, DecodeError, Limits, decode};

/// `bytes` refused by each backend of this build, with the same error.
fn err_each(bytes: &[u8]) -> DecodeError {
    let mut errors = Backend::built().map(|backend| decode(bytes, &with(backend)).unwrap_err());
    let first = errors.next().unwrap();
    for other in errors {
        assert_eq!(other.to_string(), first.to_string());
    }
    first
}

#[test]
fn arithmetic_coding_is_refused_by_name() {
    let e = err_each(&fixture("variants/arithmetic-227x149.jpg"));
    assert!(matches!(e, DecodeError::Unsupported { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "arithmetic-coded JPEG (SOF9) is not supported"
    );
    assert!(!e.is_limit());
}

#[test]
fn twelve_bit_precision_is_refused_by_name() {
    let e = err_each(&fixture("variants/precision12-149x227.jpg"));
    assert_eq!(
        e.to_string(),
        "12-bit JPEG (sample precision 12) is not supported"
    );
    assert!(!e.is_limit());
}

#[test]
fn horizontal_sampling_factor_three_is_refused_by_name() {
    let e = err(&fixture("conformance/sampling-3x1-64x64.jpg"));
    assert_eq!(
        e.to_string(),
        "JPEG with horizontal sampling factor 3 (component 1: 3x1) is not supported"
    );
    assert!(!e.is_limit());
}

#[test]
fn lossless_and_hierarchical_codings_are_refused_by_name() {
    let mut bytes = fixture("seed/seed-frame.jpg");
    let sof = marker_offset(&bytes, 0xc0);
    for (marker, name) in [
        (0xc3, "lossless JPEG (SOF3)"),
        (0xc5, "hierarchical JPEG (SOF5)"),
        (0xca, "arithmetic-coded JPEG (SOF10)"),
        (0xcf, "arithmetic-coded JPEG (SOF15)"),
    ] {
        bytes[sof + 1] = marker;
        assert_eq!(
            err_each(&bytes).to_string(),
            format!("{name} is not supported")
        );
    }
}

#[test]
fn truncation_is_found_in_every_part_of_the_file() {
    let seed = fixture("seed/seed-frame.jpg");
    let start = scan_start(&seed);
    // Inside APP0's length, inside APP0, right after APP0, just before EOI, inside EOI.
    for (cut, inside, complete) in [
        (
            5,
            "inside the length of segment ffe0 at offset 2".to_owned(),
            2,
        ),
        (
            10,
            "inside segment ffe0 at offset 2, which declares 16 bytes".to_owned(),
            2,
        ),
        (
            seed.len() - 2,
            format!("inside the scan data that starts at offset {start}"),
            start,
        ),
        (
            seed.len() - 1,
            format!("inside the scan data that starts at offset {start}"),
            start,
        ),
    ] {
        let e = err(&seed[..cut]);
        assert!(
            matches!(&e, DecodeError::Truncated { len, inside: i, complete: c }
                if *len == cut && *i == inside && *c == complete),
            "cut at {cut}: {e}"
        );
    }
    let e = err(&seed[..start]);
    assert!(matches!(e, DecodeError::Truncated { .. }), "{e}");
    let mut garbage = seed[..20].to_vec();
    garbage.extend_from_slice(&[1, 2, 3]);
    assert_eq!(
        err(&garbage).to_string(),
        "truncated jpeg: 23 bytes end in 3 bytes holding no marker after offset 20, \
         with no end-of-image marker (the last complete segment or scan ends at offset 20)"
    );
}

#[test]
fn an_exif_thumbnail_end_marker_does_not_hide_truncation() {
    let seed = fixture("seed/seed-frame.jpg");
    // APP1 "Exif" holding a whole thumbnail JPEG, with its own ff d9.
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&seed);
    let mut bytes = seed[..2].to_vec();
    bytes.extend_from_slice(&[0xff, 0xe1]);
    bytes.extend_from_slice(&u16::try_from(app1.len() + 2).unwrap().to_be_bytes());
    bytes.extend_from_slice(&app1);
    bytes.extend_from_slice(&seed[2..]);
    assert_eq!(ok(&bytes).rgb.dimensions(), (100, 100));
    let e = err(&bytes[..bytes.len() - 500]);
    assert!(matches!(e, DecodeError::Truncated { .. }), "{e}");
}

#[test]
fn bytes_after_the_end_of_image_are_allowed() {
    let mut bytes = fixture("seed/seed-frame.jpg");
    bytes.extend_from_slice(&[0; 1000]);
    bytes.extend_from_slice(b"camera padding");
    let decoded = ok(&bytes);
    assert_eq!(decoded.rgb.dimensions(), (100, 100));
    assert!(decoded.warnings.is_empty());
}

#[test]
fn restart_markers_out_of_sequence_give_a_warning() {
    let mut bytes = fixture("variants/restart-1280x720.jpg");
    let first = marker_offset(&bytes, 0xd0);
    bytes[first + 1] = 0xd3;
    for (backend, decoded) in ok_each(&bytes) {
        assert_eq!(
            decoded.warnings,
            [format!("restart markers out of sequence at offset {first}")],
            "{backend}"
        );
    }
}

#[test]
fn a_missing_restart_marker_gives_a_warning() {
    let bytes = fixture("variants/restart-1280x720.jpg");
    let start = scan_start(&bytes);
    let first = marker_offset(&bytes, 0xd0);
    let second = marker_offset(&bytes, 0xd1);
    let mut cut = bytes[..first].to_vec();
    cut.extend_from_slice(&bytes[first + 2..]);
    // The rest are now one step off in sequence, and one short in number.
    for (backend, decoded) in ok_each(&cut) {
        assert_eq!(
            decoded.warnings,
            [
                format!("restart markers out of sequence at offset {}", second - 2),
                format!(
                    "scan data at offset {start} has 43 restart markers, expected 44 \
                 (3600 mcus, restart interval 80)"
                ),
                // The second interval's data where the first restart marker should be.
                format!(
                    "corrupt entropy-coded data: {} extraneous bytes after MCU 80 of 3600 \
                 (row 1 of 45) at byte offset {first}, before marker ffd1; blocks before it \
                 may be garbled",
                    second - 2 - first
                ),
            ],
            "{backend}"
        );
    }
}

/// zune-jpeg stops at the marker and decodes the rest as grey; libjpeg reads `ff c8` as a frame
/// header of an unsupported process and fails: a refusal at stage `decode`.
#[test]
fn a_stray_marker_in_scan_data_gives_a_warning_or_fails_with_libjpeg() {
    let mut bytes = fixture("frames/photo-640x480.jpg");
    let at = scan_start(&bytes) + 20_000;
    // ff c8 (reserved "JPG") may not appear in scan data; the decoder stops at it.
    bytes[at..at + 2].copy_from_slice(&[0xff, 0xc8]);
    for backend in Backend::built() {
        let decoded = decode(&bytes, &with(backend));
        if backend == Backend::Turbo {
            let e = decoded.unwrap_err();
            assert_eq!(
                e.to_string(),
                "jpeg decode failed: libjpeg-turbo: unsupported JPEG process: SOF type 0xc8"
            );
            assert!(!e.is_limit());
            continue;
        }
        assert_eq!(
            decoded.unwrap().warnings,
            [
                format!("unexpected marker ffc8 inside scan data at offset {at}"),
                format!(
                    "corrupt entropy-coded data: premature end of data in MCU 271 of 1200 \
                 (row 7 of 30): marker ffc8 at byte offset {at}; rows below it are likely garbled"
                ),
            ],
        );
    }
}

#[test]
fn garbage_between_segments_gives_a_warning() {
    let seed = fixture("seed/seed-frame.jpg");
    let dqt = marker_offset(&seed, 0xdb);
    let mut bytes = seed[..dqt].to_vec();
    bytes.extend_from_slice(&[0x00, 0x12, 0x34]);
    bytes.extend_from_slice(&seed[dqt..]);
    for (backend, decoded) in ok_each(&bytes) {
        assert_eq!(
            decoded.warnings,
            [format!(
                "3 extraneous bytes at offset {dqt} before marker ffdb"
            )],
            "{backend}"
        );
    }
}

#[test]
fn broken_structure_is_malformed() {
    let seed = fixture("seed/seed-frame.jpg");
    let mut short = seed.clone();
    short[4..6].copy_from_slice(&[0, 1]);
    assert_eq!(
        err(&short).to_string(),
        "malformed jpeg at offset 2: segment ffe0 declares length 1, below 2"
    );

    let sof = marker_offset(&seed, 0xc0);
    let sos = marker_offset(&seed, 0xda);
    let mut no_frame = seed.clone();
    no_frame[sof + 1] = 0xfe; // the frame header becomes a comment
    assert_eq!(
        err(&no_frame).to_string(),
        format!("malformed jpeg at offset {sos}: scan before the frame header")
    );

    let e = err(&[0xff, 0xd8, 0xff, 0xd9]);
    assert_eq!(
        e.to_string(),
        "malformed jpeg at offset 2: end-of-image marker before any scan"
    );
}

#[test]
fn find_ff_agrees_with_a_plain_search() {
    let mut bytes = vec![0u8; 300];
    for at in [0, 1, 62, 63, 64, 65, 127, 128, 250, 299] {
        bytes[at] = 0xff;
    }
    for from in 0..=bytes.len() + 1 {
        let plain = bytes
            .get(from..)
            .and_then(|h| h.iter().position(|&b| b == 0xff))
            .map(|i| i + from);
        assert_eq!(find_ff(&bytes, from), plain, "from {from}");
    }
}

/// Issue 9, finding 3: bytes between the scans of a progressive JPEG.
#[test]
fn stray_bytes_after_a_progressive_dc_scan_get_a_warning() {
    let mut bytes = fixture("variants/progressive-1280x720.jpg");
    // The DHT segment between the DC first scan and the first AC scan.
    let dht = scan_start(&bytes) + marker_offset(&bytes[scan_start(&bytes)..], 0xc4);
    bytes.splice(dht..dht, [0x55; 16]);
    let header = walk_with(&bytes, &Limits::default(), true).unwrap();
    assert_eq!(header.warnings.len(), 1, "{:?}", header.warnings);
    let warning = &header.warnings[0];
    assert!(
        warning
            .starts_with("corrupt entropy-coded data: 16 extraneous bytes after MCU 3600 of 3600")
            && warning.contains("before marker ffc4"),
        "{warning}"
    );
}

#[test]
fn chroma_two_samples_wide_gets_a_warning_that_libjpeg_upsamples_it_otherwise() {
    // 4x4, 4:2:0: its chroma is 2 samples wide.
    let narrow = fixture("conformance/corpus/pillow/app13.jpg");
    let warnings = ok(&narrow).warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("frame header at offset 166: component 2 (sampling 1x1 of 2 horizontally) is 2 samples wide in a 4-pixel-wide image"),
        "{warnings:?}"
    );
    // The same scan data, declared 5 and 1 pixels wide: 3 chroma samples, or 1; both decoders agree.
    for width in [5, 1] {
        let mut bytes = narrow.clone();
        let width_at = marker_offset(&bytes, 0xc0) + 7;
        bytes[width_at..width_at + 2].copy_from_slice(&[0, width]);
        assert_eq!(ok(&bytes).warnings, Vec::<String>::new(), "width {width}");
    }
}

#[test]
fn a_too_short_adobe_segment_is_ignored_with_a_warning_as_libjpeg_does() {
    let original = fixture("frames/photo-640x480.jpg");
    // After SOI: an APP14 "Adobe" segment of 13 bytes, one short of its colour transform byte.
    let mut bytes = original[..2].to_vec();
    bytes.extend_from_slice(b"\xff\xee\x00\x0dAdobe\x00\x64\x40\x00\x00\x00");
    bytes.extend_from_slice(&original[2..]);
    let decoded = ok(&bytes);
    assert_eq!(
        decoded.warnings,
        [
            "adobe segment (app14) at offset 2 declares 13 bytes, too short for its colour \
          transform (14): ignored, as libjpeg does"
        ]
    );
    assert_eq!(decoded.rgb, ok(&original).rgb);
    // Pillow's: the same, then the transform byte left over between segments.
    let decoded = ok(&fixture("conformance/corpus/pillow/truncated_app14.jpg"));
    assert_eq!(decoded.warnings.len(), 2, "{:?}", decoded.warnings);
    assert!(decoded.warnings[1].starts_with("1 extraneous bytes at offset 21834"));
}

/// A Y scan then a CbCr scan, 64 MCUs each: zune-jpeg 0.5.15 decoded the restart interval of 5
/// silently off libjpeg-turbo (mean 2.9, p99 16; mean 5.2, p99 67 with a scan per component); 4
/// divides the MCUs and decodes right.
#[test]
fn a_short_last_restart_interval_in_a_partial_scan_is_refused() {
    let e = err(&fixture(
        "conformance/noninterleaved-444-restart5-64x64.jpg",
    ));
    assert!(matches!(e, DecodeError::Unsupported { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with(
            "sequential JPEG with a scan of 1 of its 3 components whose restart interval leaves a \
             short last interval (scan 1 at offset "
        ),
        "{e}"
    );
    assert!(e.to_string().contains("64 mcus, restart interval 5"), "{e}");
    let decoded = ok(&fixture(
        "conformance/noninterleaved-444-restart4-64x64.jpg",
    ));
    assert!(decoded.warnings.is_empty(), "{:?}", decoded.warnings);
}
