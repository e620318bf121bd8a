//! Tests of the marker walk and the entropy check, through [`decode`] where possible.
#![expect(clippy::unwrap_used, reason = "tests")]

use super::markers::{find_ff, walk_with};
use crate::frame::decode::tests::{err, fixture, marker_offset, ok, ok_each, scan_start, with};
use crate::frame::decode::{Backend, DecodeError, Decoded, Limits, decode};

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

fn entropy_warnings(decoded: &Decoded) -> Vec<&String> {
    decoded
        .warnings
        .iter()
        .filter(|w| w.starts_with("corrupt entropy-coded data"))
        .collect()
}

#[test]
fn corrupt_entropy_data_gets_one_warning() {
    for (backend, decoded) in ok_each(&fixture("bad/corrupt-entropy.jpg")) {
        assert_eq!(decoded.rgb.dimensions(), (640, 480));
        // The damage starts at offset 35824 (MCU row 10 of 30); the decoder loses step 150 bytes
        // later. libjpeg says nothing more (it drops coefficients past 63 without a word).
        assert_eq!(
            decoded.warnings,
            [
                "corrupt entropy-coded data: ac coefficients past index 63 in MCU 437 of 1200 \
                 (row 11 of 30) at byte offset 35974; rows below it are likely garbled"
            ],
            "{backend}"
        );
    }
}

/// Overwrites 32 bytes in the middle of the first scan, every other one, with bytes that make no
/// marker (`ff` is neither written nor overwritten); returns where the damage starts.
fn damage_scan(bytes: &mut [u8]) -> usize {
    let start = scan_start(bytes);
    let middle = start + marker_offset(&bytes[start..], 0xd9) / 2;
    let mut at = middle;
    for i in 0..32u8 {
        while bytes[at] == 0xff || bytes[at - 1] == 0xff {
            at += 1;
        }
        bytes[at] = (bytes[at] ^ i.wrapping_mul(0x5b).wrapping_add(0x3c)).min(0xfe);
        at += 2;
    }
    middle
}

/// `bytes` with the second half of the first scan's data cut (not right after an `ff`), up to the
/// end-of-image marker; and where the cut is.
fn cut_scan(bytes: &[u8]) -> (Vec<u8>, usize) {
    let start = scan_start(bytes);
    let eoi = bytes.len() - 2;
    assert_eq!(bytes[eoi..], [0xff, 0xd9]);
    let mut at = start + (eoi - start) / 2;
    while bytes[at - 1] == 0xff {
        at += 1;
    }
    let mut cut = bytes[..at].to_vec();
    cut.extend_from_slice(&bytes[eoi..]);
    (cut, at)
}

/// The byte offset a warning names.
fn named_offset(warning: &str) -> usize {
    warning
        .split("at byte offset ")
        .nth(1)
        .and_then(|rest| rest.split([';', ',']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{warning}"))
}

#[test]
fn flipped_bytes_in_the_scan_give_a_warning() {
    let mut bytes = fixture("frames/photo-640x480.jpg");
    let at = damage_scan(&mut bytes);
    for (backend, decoded) in ok_each(&bytes) {
        assert_eq!(
            decoded.warnings.len(),
            1,
            "{backend}: {:?}",
            decoded.warnings
        );
        assert!(
            decoded.warnings[0].starts_with("corrupt entropy-coded data: "),
            "{backend}: {:?}",
            decoded.warnings
        );
        // Here the codes fall back in step a few blocks after the damage, with one block too
        // many or too few: what shows is the data left over (or missing) at the end of the scan.
        assert!(named_offset(&decoded.warnings[0]) > at);
    }
}

/// The check runs on every layout: scan data that stops halfway is found, at the right place.
#[test]
fn scan_data_ending_early_is_found_in_every_baseline_layout() {
    for path in [
        "frames/photo-640x480.jpg",
        "frames/photo-1920x1080.jpg",
        "variants/camera-original-reconyx-2048x1536.jpg",
        "variants/cmyk-adobe-1024x768.jpg",
        "variants/exif-orientation6-1280x720.jpg",
        "variants/gray-1280x720.jpg",
        "variants/huffman-227x149.jpg",
        "variants/restart-1280x720.jpg",
        "variants/subsampling422-1280x720.jpg",
        "variants/subsampling444-1280x720.jpg",
        "seed/seed-frame.jpg",
    ] {
        let (bytes, at) = cut_scan(&fixture(path));
        for (backend, decoded) in ok_each(&bytes) {
            let found = entropy_warnings(&decoded);
            assert_eq!(found.len(), 1, "{path}: {:?}", decoded.warnings);
            assert!(
                found[0].starts_with("corrupt entropy-coded data: premature end of data in MCU ")
                    && found[0].ends_with(&format!(
                        ": marker ffd9 at byte offset {at}; rows below it are likely garbled"
                    )),
                "{path}: {}",
                found[0]
            );
            // Only the restart markers of the lost half are missed as well.
            let others = decoded.warnings.len() - 1;
            assert_eq!(
                others,
                usize::from(path.contains("restart")),
                "{path} {backend}"
            );
        }
    }
}

#[test]
fn an_end_of_image_marker_inside_the_scan_data_is_found() {
    let mut bytes = fixture("frames/photo-640x480.jpg");
    let at = scan_start(&bytes) + 20_000;
    bytes[at..at + 2].copy_from_slice(&[0xff, 0xd9]);
    // The image ends there; the rest of the file counts as bytes after it.
    for (backend, decoded) in ok_each(&bytes) {
        assert_eq!(
            decoded.warnings,
            [format!(
                "corrupt entropy-coded data: premature end of data in MCU 271 of 1200 (row 7 of \
                 30): marker ffd9 at byte offset {at}; rows below it are likely garbled"
            )],
            "{backend}"
        );
    }
}

#[test]
fn extended_sequential_frames_are_checked_too() {
    let mut bytes = fixture("seed/seed-frame.jpg");
    let sof = marker_offset(&bytes, 0xc0);
    bytes[sof + 1] = 0xc1;
    assert!(ok(&bytes).warnings.is_empty());
    damage_scan(&mut bytes);
    assert_eq!(entropy_warnings(&ok(&bytes)).len(), 1);
}

/// Documents a limit of mqimg's check: progressive AC scans are not verified. libjpeg-turbo decodes
/// every scan's Huffman codes and notices.
#[test]
fn damaged_progressive_scan_data_goes_unnoticed_by_zune() {
    let mut bytes = fixture("variants/progressive-1280x720.jpg");
    damage_scan(&mut bytes);
    for (backend, decoded) in ok_each(&bytes) {
        let found = entropy_warnings(&decoded);
        match backend {
            Backend::Zune => assert!(found.is_empty(), "{found:?}"),
            // Here: "3201 extraneous bytes before marker ffd9 (libjpeg-turbo, …)".
            Backend::Turbo => assert_eq!(found.len(), 1, "{:?}", decoded.warnings),
        }
    }
}

/// The scan data of the seed frame, with `extra` inserted before its end-of-image marker.
fn seed_with_scan_tail(extra: &[u8]) -> Vec<u8> {
    let seed = fixture("seed/seed-frame.jpg");
    let eoi = seed.len() - 2;
    assert_eq!(seed[eoi..], [0xff, 0xd9]);
    let mut bytes = seed[..eoi].to_vec();
    bytes.extend_from_slice(extra);
    bytes.extend_from_slice(&seed[eoi..]);
    bytes
}

#[test]
fn one_extra_byte_after_the_last_mcu_is_tolerated_two_are_not() {
    assert!(ok(&seed_with_scan_tail(&[0x00])).warnings.is_empty());
    assert!(ok(&seed_with_scan_tail(&[0xff, 0x00])).warnings.is_empty());
    // The seed's last data byte holds the fill bits; the extra bytes start where its marker was.
    let at = fixture("seed/seed-frame.jpg").len() - 2;
    for (backend, decoded) in ok_each(&seed_with_scan_tail(&[0x12, 0x34, 0x56])) {
        assert_eq!(
            decoded.warnings,
            [format!(
                "corrupt entropy-coded data: 3 extraneous bytes after MCU 49 of 49 (row 7 of 7) \
                 at byte offset {at}, before marker ffd9; blocks before it may be garbled"
            )],
            "{backend}"
        );
    }
}

/// A Motion-JPEG frame (APP0 `AVI1`) leaves out its Huffman tables: the standard ones apply.
#[test]
fn frames_without_huffman_tables_are_checked_with_the_standard_ones() {
    let seed = fixture("seed/seed-frame.jpg");
    let mut bytes = seed[..2].to_vec();
    let mut at = 2;
    while seed[at + 1] != 0xda {
        let end = at + 2 + usize::from(u16::from_be_bytes([seed[at + 2], seed[at + 3]]));
        if seed[at + 1] == 0xe0 {
            bytes.extend_from_slice(&[0xff, 0xe0, 0, 16]);
            bytes.extend_from_slice(b"AVI1\0");
            bytes.extend_from_slice(&[0; 9]);
        } else if seed[at + 1] != 0xc4 {
            bytes.extend_from_slice(&seed[at..end]);
        }
        at = end;
    }
    bytes.extend_from_slice(&seed[at..]);
    let decoded = ok(&bytes);
    assert!(decoded.warnings.is_empty(), "{:?}", decoded.warnings);
    assert_eq!(decoded.rgb, ok(&seed).rgb);
    damage_scan(&mut bytes);
    assert_eq!(entropy_warnings(&ok(&bytes)).len(), 1);
}

/// What the entropy check costs, against the whole decode. Run with
/// `cargo test --release --lib entropy_check_cost -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release mode"]
fn entropy_check_cost() {
    let limits = Limits::default();
    for path in [
        "seed/seed-frame.jpg",
        "frames/photo-640x480.jpg",
        "frames/photo-1280x720.jpg",
        "frames/photo-1920x1080.jpg",
        "frames/photo-3840x2160.jpg",
    ] {
        let bytes = fixture(path);
        let best = |runs: usize, f: &dyn Fn()| {
            (0..runs)
                .map(|_| {
                    let t = std::time::Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .fold(f64::INFINITY, f64::min)
        };
        let checked = best(200, &|| {
            std::hint::black_box(walk_with(&bytes, &limits, true).unwrap());
        });
        let walk = best(200, &|| {
            std::hint::black_box(walk_with(&bytes, &limits, false).unwrap());
        });
        let whole = best(30, &|| {
            std::hint::black_box(decode(&bytes, &limits).unwrap());
        });
        let check = checked - walk;
        println!(
            "{path}: check {check:.3} ms, walk {walk:.3} ms, decode {whole:.2} ms: \
             check = {:.1} % of decode",
            100.0 * check / whole
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
