//! The conformance suite: every file of `fixtures/conformance/expected.json` decoded, its outcome
//! (pixels, warnings, or the refusal's stage and message) compared with the one committed there, so
//! that any change of outcome (a decoder upgrade included) fails. Decoded files with a libjpeg-turbo
//! reference must also stay within mean ≤ 2 and p99 ≤ 16 of it (issue 9).
//!
//! The public corpus (Pillow's test images, PngSuite) has its own manifest: see [`corpus`].
//!
//! `MQIMG_BLESS=1 cargo test --lib conformance` rewrites the outcomes (of both) after a deliberate change;
//! review the diff of `expected.json`.
#![expect(clippy::unwrap_used, reason = "tests")]

mod corpus;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::tests::fixture;
use super::{Limits, decode};

const MANIFEST: &str = "conformance/expected.json";

#[derive(Serialize, Deserialize)]
struct Manifest {
    note: String,
    files: Vec<Case>,
}

#[derive(Serialize, Deserialize)]
struct Case {
    /// Under `fixtures/`.
    path: String,
    /// Where the file comes from and how it was made.
    source: String,
    /// The libjpeg-turbo (djpeg) or libpng decode, as a binary PPM or PNG under `fixtures/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    outcome: Outcome,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "expect", rename_all = "lowercase")]
enum Outcome {
    Decode {
        width: u32,
        height: u32,
        orientation: u8,
        rgb_sha256: String,
        /// Empty for a clean decode; a damaged file that decodes has its warnings here.
        warnings: Vec<String>,
        /// Against the reference, when there is one (recorded, not compared: the bound is).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mean: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        p99: Option<u8>,
    },
    Refuse {
        stage: String,
        error: String,
    },
}

/// The pixels of `path`: a binary PPM (djpeg) or a PNG.
fn reference(path: &str) -> image::RgbImage {
    let bytes = fixture(path);
    if !path.ends_with(".ppm") {
        return image::load_from_memory(&bytes).unwrap().into_rgb8();
    }
    let mut parts = bytes.splitn(4, |&c| c == b'\n');
    assert_eq!(parts.next().unwrap(), b"P6", "{path}");
    let size = std::str::from_utf8(parts.next().unwrap()).unwrap();
    let (w, h) = size.split_once(' ').unwrap();
    assert_eq!(parts.next().unwrap(), b"255", "{path}");
    let pixels = parts.next().unwrap().to_vec();
    image::RgbImage::from_raw(w.parse().unwrap(), h.parse().unwrap(), pixels).unwrap()
}

/// Mean and 99th percentile of the absolute per-channel difference.
fn difference(ours: &image::RgbImage, theirs: &image::RgbImage) -> (f64, u8) {
    let mut diffs = ours
        .as_raw()
        .iter()
        .zip(theirs.as_raw())
        .map(|(&a, &b)| a.abs_diff(b))
        .collect::<Vec<_>>();
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    diffs.sort_unstable();
    // Rounded so that the manifest stays stable.
    (
        (mean * 1000.0).round() / 1000.0,
        diffs[diffs.len() * 99 / 100],
    )
}

fn outcome(case: &Case) -> Outcome {
    match decode(&fixture(&case.path), &Limits::default()) {
        Err(e) => Outcome::Refuse {
            stage: if e.is_limit() { "limits" } else { "decode" }.to_owned(),
            error: e.to_string(),
        },
        Ok(decoded) => {
            let (mean, p99) = case.reference.as_deref().map_or((None, None), |path| {
                let theirs = reference(path);
                assert_eq!(
                    decoded.rgb.dimensions(),
                    theirs.dimensions(),
                    "{}",
                    case.path
                );
                let (mean, p99) = difference(&decoded.rgb, &theirs);
                assert!(
                    mean <= 2.0 && p99 <= 16,
                    "{}: mean {mean} p99 {p99} against {path}",
                    case.path
                );
                (Some(mean), Some(p99))
            });
            Outcome::Decode {
                width: decoded.rgb.width(),
                height: decoded.rgb.height(),
                orientation: decoded.orientation,
                rgb_sha256: format!("{:x}", Sha256::digest(decoded.rgb.as_raw())),
                warnings: decoded.warnings,
                mean,
                p99,
            }
        }
    }
}

#[test]
fn every_conformance_file_keeps_its_committed_outcome() {
    let mut manifest: Manifest = serde_json::from_slice(&fixture(MANIFEST)).unwrap();
    let mut changed = Vec::new();
    for case in &mut manifest.files {
        let actual = outcome(case);
        if actual != case.outcome {
            changed.push(format!(
                "{}:\n  expected {}\n  actual   {}",
                case.path,
                serde_json::to_string(&case.outcome).unwrap(),
                serde_json::to_string(&actual).unwrap()
            ));
            case.outcome = actual;
        }
    }
    if std::env::var_os("MQIMG_BLESS").is_some() {
        let path = format!("{}/fixtures/{MANIFEST}", env!("CARGO_MANIFEST_DIR"));
        let text = serde_json::to_string_pretty(&manifest).unwrap() + "\n";
        std::fs::write(path, text).unwrap();
        return;
    }
    assert!(changed.is_empty(), "{}", changed.join("\n"));
}

/// The libjpeg-turbo backend on the same files: the walk's refusals and every warning as committed,
/// pixels within the same bound of the libjpeg-turbo reference. What only zune-jpeg refuses (stage
/// `decode`, "jpeg decode failed") libjpeg may decode, with a warning.
#[cfg(feature = "turbojpeg")]
#[test]
fn every_conformance_jpeg_gets_the_same_outcome_from_libjpeg_turbo() {
    use super::Backend;
    let manifest: Manifest = serde_json::from_slice(&fixture(MANIFEST)).unwrap();
    let limits = Limits {
        backend: Backend::Turbo,
        ..Limits::default()
    };
    for case in manifest.files.iter().filter(|c| c.path.ends_with(".jpg")) {
        let path = &case.path;
        let result = decode(&fixture(path), &limits);
        match (&case.outcome, result) {
            (Outcome::Refuse { stage, error }, Err(e)) => {
                let turbo_stage = if e.is_limit() { "limits" } else { "decode" };
                assert_eq!(turbo_stage, stage, "{path}");
                if !error.starts_with("jpeg decode failed") {
                    assert_eq!(&e.to_string(), error, "{path}");
                }
            }
            (Outcome::Refuse { error, .. }, Ok(decoded)) => {
                assert!(
                    error.starts_with("jpeg decode failed") && !decoded.warnings.is_empty(),
                    "{path}: refused by zune ({error}), decoded by libjpeg-turbo without a warning"
                );
            }
            (
                Outcome::Decode {
                    width,
                    height,
                    orientation,
                    warnings,
                    ..
                },
                Ok(decoded),
            ) => {
                assert_eq!(decoded.rgb.dimensions(), (*width, *height), "{path}");
                assert_eq!(decoded.orientation, *orientation, "{path}");
                for w in warnings {
                    assert!(decoded.warnings.contains(w), "{path}: {w} missing");
                }
                if let Some(theirs) = case.reference.as_deref() {
                    let (mean, p99) = difference(&decoded.rgb, &reference(theirs));
                    assert!(mean <= 2.0 && p99 <= 16, "{path}: mean {mean} p99 {p99}");
                }
            }
            (Outcome::Decode { .. }, Err(e)) => panic!("{path}: refused by libjpeg-turbo: {e}"),
        }
    }
}
