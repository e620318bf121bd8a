//! The public corpus (`fixtures/conformance/corpus/`: Pillow's test images and PngSuite) against
//! references made once with Pillow (`reference.json`, by `make_corpus.py`), with every file's
//! outcome committed in `corpus/expected.json`.
//!
//! Beyond "no outcome changes", three rules hold whatever is blessed: a file that decodes without a
//! warning matches its reference (exactly for PNGs of 8 bits or fewer, within mean ≤ 2 and p99 ≤ 16
//! per channel otherwise); one Pillow refuses may decode cleanly only with a reason recorded in
//! [`CLEAN_DESPITE_PILLOW`]; a JPEG libjpeg-turbo's djpeg warns about is warned about or refused.
//! Anything else would be silently wrong pixels: a bug to fix, not to bless.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::super::tests::fixture;
use super::super::{Limits, decode};

const DIR: &str = "conformance/corpus";

/// Files Pillow refuses that mqimg decodes without a warning, and why that is right. Their pixels
/// must still match the reference Pillow makes from a copy without the chunks it choked on.
const CLEAN_DESPITE_PILLOW: &[(&str, &str)] = &[
    (
        "pillow/apng/chunk_no_fctl.png",
        "APNG chunks out of sequence: the frames are broken, not the still image, which libpng \
         and OpenCV decode (they ignore APNG chunks) and is what mqimg outputs",
    ),
    (
        "pillow/png_decompression_dos.png",
        "zTXt chunks that inflate past Pillow's own text limit: mqimg never inflates text chunks",
    ),
    (
        "pillow/unknown_compression_method.png",
        "an iCCP chunk with an unknown compression method: libpng drops the profile with a \
         warning and decodes the image; mqimg never reads colour profiles",
    ),
];

#[derive(Deserialize)]
struct References {
    files: Vec<Reference>,
}

/// One file as Pillow (and, for JPEGs, djpeg) saw it: see `make_corpus.py`.
#[derive(Deserialize)]
struct Reference {
    path: String,
    /// Pillow refused the file.
    error: Option<String>,
    /// Chunk types removed from the copy the pixels come from, when Pillow refused the file.
    #[serde(default)]
    stripped: Vec<String>,
    width: Option<u32>,
    height: Option<u32>,
    /// Of the RGB8 pixels, for lossless references.
    sha256: Option<String>,
    /// Under the corpus folder: the RGB8 pixels, or their `block` x `block` means.
    png: Option<String>,
    block: Option<u32>,
    /// libjpeg-turbo's verdict on a JPEG: its warnings ("Corrupt JPEG data: …").
    djpeg: Option<Djpeg>,
}

#[derive(Deserialize)]
struct Djpeg {
    warnings: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Expected {
    note: String,
    files: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    path: String,
    outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "expect", rename_all = "lowercase")]
enum Outcome {
    Decode {
        width: u32,
        height: u32,
        orientation: u8,
        rgb_sha256: String,
        warnings: Vec<String>,
        /// How the pixels compare with Pillow's.
        reference: Comparison,
    },
    Refuse {
        stage: String,
        error: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "is", rename_all = "lowercase")]
enum Comparison {
    /// The same RGB8 bytes.
    Exact,
    /// Worst channel's mean and 99th percentile of the absolute difference, over pixels or over
    /// `block` x `block` means.
    Within {
        mean: f64,
        p99: u8,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        block: Option<u32>,
    },
    /// Over the bound, or of another size.
    Differs { detail: String },
    /// Pillow refused the file.
    None { pillow: String },
}

const MAX_MEAN: f64 = 2.0;
const MAX_P99: u8 = 16;

fn compare(rgb: &image::RgbImage, reference: &Reference) -> Comparison {
    if let (Some(pillow), None, None) = (&reference.error, &reference.sha256, &reference.png) {
        return Comparison::None {
            pillow: pillow.clone(),
        };
    }
    let size = (reference.width.unwrap(), reference.height.unwrap());
    if rgb.dimensions() != size {
        return Comparison::Differs {
            detail: format!(
                "{}x{} against {}x{}",
                rgb.width(),
                rgb.height(),
                size.0,
                size.1
            ),
        };
    }
    if let Some(sha) = &reference.sha256 {
        let ours = format!("{:x}", Sha256::digest(rgb.as_raw()));
        return if &ours == sha {
            Comparison::Exact
        } else {
            Comparison::Differs {
                detail: "other pixels than the lossless reference".to_owned(),
            }
        };
    }
    let path = format!("{DIR}/{}", reference.png.as_deref().unwrap());
    let theirs = image::load_from_memory(&fixture(&path))
        .unwrap()
        .into_rgb8();
    let ours = match reference.block {
        Some(block) => block_means(rgb, block),
        None => rgb.clone(),
    };
    assert_eq!(ours.dimensions(), theirs.dimensions(), "{path}");
    let (mean, p99) = difference(&ours, &theirs);
    if mean <= MAX_MEAN && p99 <= MAX_P99 {
        Comparison::Within {
            mean,
            p99,
            block: reference.block,
        }
    } else {
        let over = reference
            .block
            .map_or_else(String::new, |b| format!(" over {b}x{b} means"));
        Comparison::Differs {
            detail: format!("mean {mean} p99 {p99}{over}"),
        }
    }
}

/// The rounded means of `block` x `block` tiles (partial tiles at the edges dropped), as
/// `make_corpus.py` stores the references of large images.
fn block_means(rgb: &image::RgbImage, block: u32) -> image::RgbImage {
    let (w, h) = (rgb.width() / block, rgb.height() / block);
    let area = block * block;
    image::RgbImage::from_fn(w, h, |bx, by| {
        let mut sums = [0u32; 3];
        for y in by * block..(by + 1) * block {
            for x in bx * block..(bx + 1) * block {
                for (sum, &v) in sums.iter_mut().zip(&rgb.get_pixel(x, y).0) {
                    *sum += u32::from(v);
                }
            }
        }
        image::Rgb(sums.map(|s| u8::try_from((s + area / 2) / area).unwrap()))
    })
}

/// The worst channel's mean and 99th percentile of the absolute difference.
fn difference(ours: &image::RgbImage, theirs: &image::RgbImage) -> (f64, u8) {
    // A histogram per channel: sorting millions of differences is slow in a debug build.
    let mut histograms = [[0u64; 256]; 3];
    for (a, b) in ours.pixels().zip(theirs.pixels()) {
        for (c, histogram) in histograms.iter_mut().enumerate() {
            histogram[usize::from(a.0[c].abs_diff(b.0[c]))] += 1;
        }
    }
    let count = u64::from(ours.width()) * u64::from(ours.height());
    let mut worst = (0.0f64, 0u8);
    for histogram in &histograms {
        let sum: u64 = histogram
            .iter()
            .enumerate()
            .map(|(d, &n)| d as u64 * n)
            .sum();
        let mean = (sum as f64 / count as f64 * 1000.0).round() / 1000.0;
        // The smallest difference at or under which 99 % of the samples lie.
        let mut seen = 0;
        let p99 = histogram
            .iter()
            .position(|&n| {
                seen += n;
                seen * 100 >= count * 99
            })
            .unwrap_or(255);
        worst = (worst.0.max(mean), worst.1.max(u8::try_from(p99).unwrap()));
    }
    worst
}

fn outcome(reference: &Reference) -> Outcome {
    let bytes = fixture(&format!("{DIR}/{}", reference.path));
    match decode(&bytes, &Limits::default()) {
        Err(e) => Outcome::Refuse {
            stage: if e.is_limit() { "limits" } else { "decode" }.to_owned(),
            error: e.to_string(),
        },
        Ok(decoded) => Outcome::Decode {
            width: decoded.rgb.width(),
            height: decoded.rgb.height(),
            orientation: decoded.orientation,
            rgb_sha256: format!("{:x}", Sha256::digest(decoded.rgb.as_raw())),
            reference: compare(&decoded.rgb, reference),
            warnings: decoded.warnings,
        },
    }
}

/// Why `outcome` is silently wrong, if it is: clean pixels far from the reference, or a clean
/// decode of a file Pillow refuses without a recorded reason.
fn silently_wrong(reference: &Reference, outcome: &Outcome) -> Option<String> {
    let path = reference.path.as_str();
    let Outcome::Decode {
        warnings,
        reference: against,
        ..
    } = outcome
    else {
        return None;
    };
    if !warnings.is_empty() {
        return None;
    }
    let excused = CLEAN_DESPITE_PILLOW.iter().any(|(p, _)| *p == path);
    if let Some(djpeg) = reference.djpeg.as_ref().filter(|d| !d.warnings.is_empty()) {
        return Some(format!(
            "{path}: no warning, but libjpeg-turbo finds damage: {:?}",
            djpeg.warnings
        ));
    }
    match (against, &reference.error) {
        (Comparison::Differs { detail }, _) => Some(format!("{path}: no warning, but {detail}")),
        (_, Some(pillow)) if !excused => Some(format!(
            "{path}: no warning, but Pillow refuses it ({pillow}; stripped {:?})",
            reference.stripped
        )),
        _ => None,
    }
}

/// One line of the table: the outcome in a few words.
fn summary(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Refuse { stage, error } => format!("refused ({stage}): {error}"),
        Outcome::Decode {
            width,
            height,
            warnings,
            reference,
            ..
        } => {
            let against = match reference {
                Comparison::Exact => "exact".to_owned(),
                Comparison::Within { mean, p99, block } => {
                    let over = block.map_or_else(String::new, |b| format!(" ({b}x{b} means)"));
                    format!("mean {mean} p99 {p99}{over}")
                }
                Comparison::Differs { detail } => format!("DIFFERS: {detail}"),
                Comparison::None { .. } => "no reference".to_owned(),
            };
            let warned = match warnings.as_slice() {
                [] => String::new(),
                [first, ..] => format!("; {} warnings: {first}", warnings.len()),
            };
            format!("decoded {width}x{height}, {against}{warned}")
        }
    }
}

/// Files by outcome, refusals by reason (the start of the message, up to its first colon or offset).
fn totals(entries: &[Entry]) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for entry in entries {
        let key = match &entry.outcome {
            Outcome::Decode {
                warnings,
                reference,
                ..
            } => {
                let against = match reference {
                    Comparison::Exact => "exact",
                    Comparison::Within { .. } => "within tolerance",
                    Comparison::Differs { .. } => "differs",
                    Comparison::None { .. } => "no reference",
                };
                let warned = if warnings.is_empty() { "" } else { ", warned" };
                format!("decoded{warned}, {against}")
            }
            Outcome::Refuse { stage, error } => {
                let head = error.split([':']).next().unwrap_or_default();
                let head = head.split(" at offset").next().unwrap_or_default();
                let head = if head.ends_with("is not supported") {
                    "not supported"
                } else {
                    head
                };
                format!("refused ({stage}), {head}")
            }
        };
        *counts.entry(key).or_default() += 1;
    }
    let mut text = format!("{} files\n", entries.len());
    for (key, count) in counts {
        writeln!(text, "{count:>5}  {key}").unwrap();
    }
    text
}

#[test]
fn every_corpus_file_keeps_its_committed_outcome_and_none_is_silently_wrong() {
    let references: References =
        serde_json::from_slice(&fixture(&format!("{DIR}/reference.json"))).unwrap();
    let expected_path = format!("{DIR}/expected.json");
    let expected: Expected = serde_json::from_slice(&fixture(&expected_path)).unwrap();
    for (path, _) in CLEAN_DESPITE_PILLOW {
        assert!(
            references
                .files
                .iter()
                .any(|r| r.path == *path && r.error.is_some()),
            "{path}: excused, but not a file Pillow refuses"
        );
    }
    let mut actual = Vec::new();
    let mut changed = Vec::new();
    let mut wrong = Vec::new();
    let mut table = String::new();
    for reference in &references.files {
        let outcome = outcome(reference);
        let before = expected.files.iter().find(|e| e.path == reference.path);
        if before.map(|e| &e.outcome) != Some(&outcome) {
            changed.push(format!(
                "{}:\n  expected {}\n  actual   {}",
                reference.path,
                before.map_or_else(
                    || "(not in expected.json)".to_owned(),
                    |e| serde_json::to_string(&e.outcome).unwrap()
                ),
                serde_json::to_string(&outcome).unwrap()
            ));
        }
        wrong.extend(silently_wrong(reference, &outcome));
        writeln!(table, "{:<60} {}", reference.path, summary(&outcome)).unwrap();
        actual.push(Entry {
            path: reference.path.clone(),
            outcome,
        });
    }
    println!("{table}\n{}", totals(&actual));
    if std::env::var_os("MQIMG_BLESS").is_some() {
        let manifest = Expected {
            note: expected.note,
            files: actual,
        };
        let path = format!("{}/fixtures/{expected_path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::write(
            path,
            serde_json::to_string_pretty(&manifest).unwrap() + "\n",
        )
        .unwrap();
    } else {
        let stale = expected
            .files
            .iter()
            .filter(|e| !references.files.iter().any(|r| r.path == e.path))
            .map(|e| format!("{}: in expected.json, not in reference.json", e.path));
        changed.extend(stale);
        assert!(changed.is_empty(), "{}", changed.join("\n"));
    }
    assert!(wrong.is_empty(), "silently wrong:\n{}", wrong.join("\n"));
}

/// The comparison itself: a quarter of the image greyed out (as a truncated decode looks) or one
/// lossless sample changed is caught, whichever way the reference is kept.
#[test]
fn damaged_pixels_differ_from_every_kind_of_reference() {
    let references: References =
        serde_json::from_slice(&fixture(&format!("{DIR}/reference.json"))).unwrap();
    let find = |path: &str| references.files.iter().find(|r| r.path == path).unwrap();
    for (path, kind) in [
        ("pillow/flower.jpg", "block means"),
        ("pillow/hopper.jpg", "full size"),
        ("pngsuite/basn2c16.png", "full size, 16-bit"),
    ] {
        let reference = find(path);
        let mut rgb = decode(&fixture(&format!("{DIR}/{path}")), &Limits::default())
            .unwrap()
            .rgb;
        assert!(
            matches!(compare(&rgb, reference), Comparison::Within { .. }),
            "{path}"
        );
        let (w, h) = rgb.dimensions();
        for y in h * 3 / 4..h {
            for x in 0..w {
                rgb.put_pixel(x, y, image::Rgb([128; 3]));
            }
        }
        let against = compare(&rgb, reference);
        assert!(
            matches!(against, Comparison::Differs { .. }),
            "{path} ({kind}): {against:?}"
        );
    }
    let reference = find("pngsuite/basn2c08.png");
    let mut rgb = decode(
        &fixture(&format!("{DIR}/pngsuite/basn2c08.png")),
        &Limits::default(),
    )
    .unwrap()
    .rgb;
    assert_eq!(compare(&rgb, reference), Comparison::Exact);
    rgb.get_pixel_mut(5, 5).0[1] ^= 1;
    assert!(matches!(
        compare(&rgb, reference),
        Comparison::Differs { .. }
    ));
}

#[test]
fn a_clean_decode_of_what_libjpeg_or_pillow_finds_damaged_is_silently_wrong() {
    let references: References =
        serde_json::from_slice(&fixture(&format!("{DIR}/reference.json"))).unwrap();
    let find = |path: &str| references.files.iter().find(|r| r.path == path).unwrap();
    let clean = |warnings: &[&str]| Outcome::Decode {
        width: 1,
        height: 1,
        orientation: 1,
        rgb_sha256: String::new(),
        warnings: warnings.iter().map(|&w| w.to_owned()).collect(),
        reference: Comparison::Exact,
    };
    // djpeg: "Corrupt JPEG data: 4 extraneous bytes before marker 0xdb".
    let damaged = find("pillow/jpeg_ff00_header.jpg");
    assert!(silently_wrong(damaged, &clean(&[])).is_some());
    assert_eq!(
        silently_wrong(damaged, &clean(&["4 extraneous bytes"])),
        None
    );
    // Pillow refuses it, and no reason excuses a clean decode.
    assert!(silently_wrong(find("pillow/broken_data_stream.png"), &clean(&[])).is_some());
    assert_eq!(silently_wrong(find("pillow/hopper.jpg"), &clean(&[])), None);
}
