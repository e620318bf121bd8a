//! Scan-header checks, and the non-interleaved files of `fixtures/conformance/` against their
//! libjpeg-turbo references.
#![expect(clippy::unwrap_used, reason = "tests")]

use crate::frame::decode::tests::{err, fixture, marker_offset, ok};
use crate::frame::decode::{DecodeError, Decoded};

/// The pixels of a binary PPM (`P6`, three header lines) as made by `djpeg -ppm`.
fn ppm(path: &str) -> (u32, u32, Vec<u8>) {
    let bytes = fixture(path);
    let mut lines = bytes.splitn(4, |&c| c == b'\n');
    assert_eq!(lines.next().unwrap(), b"P6");
    let size = std::str::from_utf8(lines.next().unwrap()).unwrap();
    let (w, h) = size.split_once(' ').unwrap();
    assert_eq!(lines.next().unwrap(), b"255");
    (
        w.parse().unwrap(),
        h.parse().unwrap(),
        lines.next().unwrap().to_vec(),
    )
}

/// Mean and 99th percentile of the absolute per-channel difference from the libjpeg-turbo reference.
fn against_reference(decoded: &Decoded, reference: &str) -> (f64, u8) {
    let (width, height, pixels) = ppm(reference);
    assert_eq!(decoded.rgb.dimensions(), (width, height), "{reference}");
    let mut diffs = decoded
        .rgb
        .as_raw()
        .iter()
        .zip(&pixels)
        .map(|(&a, &b)| a.abs_diff(b))
        .collect::<Vec<_>>();
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    diffs.sort_unstable();
    (mean, diffs[diffs.len() * 99 / 100])
}

/// Regression for zune-image issue #419: zune-jpeg 0.5.15 decodes these to green stripes (mean
/// difference 110–141 from libjpeg-turbo, issue 9's finding 1).
#[test]
fn non_interleaved_jpegs_with_vertically_subsampled_chroma_are_refused() {
    for (name, sampling) in [
        ("noninterleaved-420-64x64", "2x2,1x1,1x1, a scan of 1"),
        ("noninterleaved-420-each-64x64", "2x2,1x1,1x1, a scan of 1"),
        ("noninterleaved-440-64x64", "1x2,1x1,1x1, a scan of 1"),
    ] {
        let e = err(&fixture(&format!("conformance/{name}.jpg")));
        assert!(
            matches!(e, DecodeError::Unsupported { .. }),
            "{name}: {e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "non-interleaved JPEG with vertically subsampled chroma (sampling {sampling} of \
                 the 3 components; zune-jpeg 0.5.15 decodes it to garbage, zune-image issue #419) \
                 is not supported"
            ),
            "{name}"
        );
    }
}

#[test]
fn non_interleaved_jpegs_without_vertical_subsampling_decode_like_libjpeg() {
    for name in [
        "noninterleaved-422-y-then-cbcr-64x64",
        "noninterleaved-444-64x64",
    ] {
        let decoded = ok(&fixture(&format!("conformance/{name}.jpg")));
        assert!(
            decoded.warnings.is_empty(),
            "{name}: {:?}",
            decoded.warnings
        );
        let (mean, p99) = against_reference(&decoded, &format!("conformance/{name}.djpeg.ppm"));
        assert!(mean <= 1.0 && p99 <= 4, "{name}: mean {mean:.3}, p99 {p99}");
    }
}

/// Offset of the `n`th (from 1) SOS marker and of its Ss byte.
fn sos(bytes: &[u8], n: usize) -> (usize, usize) {
    let mut at = 0;
    for _ in 0..n {
        at += marker_offset(&bytes[at..], 0xda) + 2;
    }
    let sos = at - 2;
    (sos, sos + 5 + 2 * usize::from(bytes[sos + 4]))
}

fn progressive_with_scan(n: usize, ss: u8, se: u8, ah: u8, al: u8) -> (Vec<u8>, usize) {
    let mut bytes = fixture("variants/progressive-1280x720.jpg");
    let (at, params) = sos(&bytes, n);
    bytes[params..params + 3].copy_from_slice(&[ss, se, ah << 4 | al]);
    (bytes, at)
}

#[test]
fn illegal_progressive_parameters_are_refused_like_libjpeg() {
    for (n, [ss, se, ah, al], why) in [
        (
            2,
            [1, 63, 10, 11],
            "a refinement scan must lower the approximation bit by one",
        ),
        (2, [1, 63, 0, 14], "the approximation bit is over 13"),
        (
            2,
            [6, 5, 0, 2],
            "the spectral selection starts after it ends",
        ),
        (
            2,
            [1, 64, 0, 2],
            "the spectral selection ends past coefficient 63",
        ),
        (1, [0, 5, 0, 1], "a dc scan must end at coefficient 0"),
        (1, [1, 5, 0, 1], "an ac scan must hold one component"),
    ] {
        let (bytes, at) = progressive_with_scan(n, ss, se, ah, al);
        let e = err(&bytes);
        assert_eq!(
            e.to_string(),
            format!(
                "malformed jpeg at offset {at}: scan {n} has illegal progressive parameters \
                 Ss={ss} Se={se} Ah={ah} Al={al} ({why})"
            )
        );
    }
}

#[test]
fn a_refinement_out_of_progression_sequence_gets_a_warning() {
    // Scan 6 refines component 1 from bit 2 to 1; claiming 3 to 2 skips what scans 2 and 5 coded.
    let (bytes, at) = progressive_with_scan(6, 1, 63, 3, 2);
    let decoded = ok(&bytes);
    assert_eq!(
        decoded.warnings,
        [format!(
            "scan 6 at offset {at} is out of progression sequence for component 1, coefficient 1 \
             (Ah=3, expected Ah=2); its pixels may be off"
        )]
    );
}

#[test]
fn a_sequential_scan_with_progressive_parameters_gets_a_warning() {
    let mut bytes = fixture("seed/seed-frame.jpg");
    let (at, params) = sos(&bytes, 1);
    bytes[params] = 1;
    let decoded = ok(&bytes);
    assert!(
        decoded.warnings.iter().any(|w| w
            == &format!(
                "scan 1 at offset {at} has spectral selection 1-63 and successive approximation \
                 0/0, not 0-63 and 0/0 as a sequential jpeg must: decoded as sequential, as \
                 libjpeg does"
            )),
        "{:?}",
        decoded.warnings
    );
}

#[test]
fn a_huffman_table_never_defined_is_refused() {
    let mut bytes = fixture("seed/seed-frame.jpg");
    let (at, params) = sos(&bytes, 1);
    // The first component's selectors: DC table 2, AC table 0.
    bytes[at + 6] = 0x20;
    assert!(params > at + 6);
    assert_eq!(
        err(&bytes).to_string(),
        format!(
            "malformed jpeg at offset {at}: scan 1 uses dc huffman table 2 of component 1, which \
             no DHT segment before it defines"
        )
    );
}

#[test]
fn a_scan_naming_a_component_the_frame_lacks_is_refused() {
    let mut bytes = fixture("seed/seed-frame.jpg");
    let (at, _) = sos(&bytes, 1);
    bytes[at + 5] = 9;
    assert_eq!(
        err(&bytes).to_string(),
        format!(
            "malformed jpeg at offset {at}: scan 1 names component 9, which the frame header \
             does not declare"
        )
    );
}

/// 4:2:2 coded as a Y+Cb scan then a Cr scan: zune-jpeg 0.5.15 decoded it silently to garbage
/// (mean difference 75.7 from libjpeg-turbo); as a Y scan then a CbCr scan it decodes right.
#[test]
fn a_scan_interleaving_some_differently_sampled_components_is_refused() {
    let e = err(&fixture("conformance/partial-interleave-422-64x64.jpg"));
    assert!(matches!(e, DecodeError::Unsupported { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "sequential JPEG with a scan interleaving 2 of its 3 components, sampled differently \
         (scan 1 at offset 609: components 1 2x1, 2 1x1; zune-jpeg 0.5.15 decodes it to garbage) \
         is not supported"
    );
    let name = "noninterleaved-422-y-then-cbcr-64x64";
    let decoded = ok(&fixture(&format!("conformance/{name}.jpg")));
    let (mean, p99) = against_reference(&decoded, &format!("conformance/{name}.djpeg.ppm"));
    assert!(mean <= 0.1 && p99 <= 2, "{name}: mean {mean} p99 {p99}");
}

/// One MCU wide and several high, a scan per component: zune-jpeg 0.5.15 decoded it silently to
/// garbage (mean difference 16.5, p99 120 from libjpeg-turbo).
#[test]
fn a_non_interleaved_jpeg_one_mcu_wide_is_refused() {
    let e = err(&fixture("conformance/noninterleaved-411-21x36.jpg"));
    assert!(matches!(e, DecodeError::Unsupported { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "non-interleaved JPEG one MCU wide (21x36, sampling 4x1,1x1,1x1, a scan of 1 of the 3 \
         components; zune-jpeg 0.5.15 decodes it to garbage) is not supported"
    );
}

/// Y, Cb and Cr each in its own scan: zune-jpeg 0.5.15 loses the last MCU row of the middle scan in
/// most such files (this one, at quality 90, happens to come out right: the refusal is conservative).
#[test]
fn a_sequential_jpeg_in_more_than_two_scans_is_refused() {
    let e = err(&fixture("conformance/noninterleaved-422-64x64.jpg"));
    assert!(matches!(e, DecodeError::Unsupported { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "sequential JPEG in 3 scans (sampling 2x1,1x1,1x1; zune-jpeg 0.5.15 garbles the last rows \
         of a scan between the first and the last) is not supported"
    );
}
