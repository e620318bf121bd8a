//! Tests of the entropy check, through [`decode`] where possible: damage found (and where), what it
//! tolerates, and what it costs.
#![expect(clippy::unwrap_used, reason = "tests")]

use super::super::markers::walk_with;
use crate::frame::decode::tests::{fixture, marker_offset, ok, ok_each, scan_start};
use crate::frame::decode::{Backend, Decoded, Limits, decode};
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
