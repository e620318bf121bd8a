//! The corruption corpus: scan data of several fixtures damaged at many offsets, one byte or eight in a
//! row, decoded by each backend with and without mqimg's entropy check, and counted as refused, warned,
//! unharmed (pixels as before, no warning) or silent (pixels changed, no warning). Prints the table;
//! asserts only what must hold whatever the numbers: the same inputs were tried everywhere, and what
//! the zune backend with the check flags, the libjpeg-turbo backend with it flags too.
//!
//! Measured (issue 14; 960 copies of each kind, 120 of them progressive): with the check, zune-jpeg
//! flags 236 single-byte and 431 eight-byte damages, libjpeg-turbo 288 and 507 (the same sequential
//! ones, plus progressive AC scans, which libjpeg decodes symbol by symbol and the check skips);
//! without it zune-jpeg flags none and libjpeg-turbo 220 and 359: libjpeg misses a third of what the
//! check finds in sequential scans (coefficients past index 63, a few bytes left over), which is why
//! the libjpeg-turbo backend keeps it. No damage left the pixels unchanged.
//!
//! `cargo test --release --all-features --lib detection_table -- --ignored --nocapture`
#![expect(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;

use crate::frame::decode::tests::fixture;
use crate::frame::decode::{Backend, Limits, decode};

const FIXTURES: [&str; 8] = [
    "seed/seed-frame.jpg",
    "frames/photo-640x480.jpg",
    "frames/photo-1280x720.jpg",
    "variants/restart-1280x720.jpg",
    "variants/subsampling444-1280x720.jpg",
    "variants/gray-1280x720.jpg",
    "variants/cmyk-adobe-1024x768.jpg",
    "variants/progressive-1280x720.jpg",
];

/// Damaged copies per fixture and kind of damage.
const OFFSETS: usize = 120;
/// Bytes changed in a row by a multi-byte damage.
const RUN: usize = 8;

/// Offsets of the entropy-coded bytes of every scan that may change without making or breaking a
/// marker: not `ff`, not the byte after one.
fn entropy_bytes(b: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut p = 2;
    while p + 4 <= b.len() {
        assert_eq!(b[p], 0xff, "segment at {p}");
        let marker = b[p + 1];
        if marker == 0xd9 {
            break;
        }
        let length = usize::from(u16::from_be_bytes([b[p + 2], b[p + 3]]));
        p += 2 + length;
        if marker != 0xda {
            continue;
        }
        loop {
            if b[p] == 0xff && !matches!(b[p + 1], 0x00 | 0xd0..=0xd7) {
                break;
            }
            if b[p] != 0xff && b[p - 1] != 0xff {
                out.push(p);
            }
            p += 1;
        }
    }
    out
}

/// xorshift: the same damage on every run.
struct Rng(u64);

impl Rng {
    fn byte_other_than(&mut self, old: u8) -> u8 {
        loop {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let b = (self.0 >> 24) as u8;
            if b != old && b != 0xff {
                return b;
            }
        }
    }
}

/// Every damaged copy of `bytes`: (kind, bytes).
fn damaged(bytes: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let eligible = entropy_bytes(bytes);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    for i in 0..OFFSETS {
        let start = (eligible.len() - RUN) * i / OFFSETS;
        let mut one = bytes.to_vec();
        let at = eligible[start];
        one[at] = rng.byte_other_than(one[at]);
        out.push(("1 byte", one));
        let mut run = bytes.to_vec();
        for &at in &eligible[start..start + RUN] {
            run[at] = rng.byte_other_than(run[at]);
        }
        out.push(("8 bytes", run));
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Refused,
    Warned,
    Unharmed,
    Silent,
}

fn seen(bytes: &[u8], pristine: &image::RgbImage, limits: &Limits) -> Seen {
    match decode(bytes, limits) {
        Err(_) => Seen::Refused,
        Ok(d) if !d.warnings.is_empty() => Seen::Warned,
        Ok(d) if d.rgb == *pristine => Seen::Unharmed,
        Ok(_) => Seen::Silent,
    }
}

#[test]
#[ignore = "slow: about 8000 decodes; run in release mode"]
fn detection_table() {
    let configs: Vec<(String, Limits)> = Backend::built()
        .flat_map(|backend| {
            [true, false].map(|verify| {
                (
                    format!("{backend}, verify_entropy = {verify}"),
                    Limits {
                        backend,
                        verify_entropy: verify,
                        ..Limits::default()
                    },
                )
            })
        })
        .collect();
    // (config, fixture kind, damage kind) → counts; and per input, what each config saw.
    let mut counts: BTreeMap<(usize, &str, &str), BTreeMap<Seen, usize>> = BTreeMap::new();
    let mut per_input: Vec<Vec<Seen>> = Vec::new();
    for path in FIXTURES {
        let bytes = fixture(path);
        let group = if path.contains("progressive") {
            "progressive"
        } else {
            "sequential"
        };
        let pristine: Vec<_> = configs
            .iter()
            .map(|(_, limits)| decode(&bytes, limits).unwrap().rgb)
            .collect();
        for (kind, copy) in damaged(&bytes) {
            let row: Vec<Seen> = configs
                .iter()
                .zip(&pristine)
                .map(|((_, limits), pristine)| seen(&copy, pristine, limits))
                .collect();
            for (c, &s) in row.iter().enumerate() {
                for g in [group, "all"] {
                    *counts
                        .entry((c, g, kind))
                        .or_default()
                        .entry(s)
                        .or_default() += 1;
                }
            }
            per_input.push(row);
        }
    }
    println!(
        "| backend | scans | damage | copies | refused | warned | unharmed | silent (garbled) |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for ((c, group, kind), seen) in &counts {
        let n = |s| seen.get(&s).copied().unwrap_or(0);
        println!(
            "| {} | {group} | {kind} | {} | {} | {} | {} | {} |",
            configs[*c].0,
            seen.values().sum::<usize>(),
            n(Seen::Refused),
            n(Seen::Warned),
            n(Seen::Unharmed),
            n(Seen::Silent)
        );
    }
    // Inputs one configuration flags (refuses or warns about) and another lets through silently.
    for (a, (name_a, _)) in configs.iter().enumerate() {
        for (b, (name_b, _)) in configs.iter().enumerate() {
            let missed = per_input
                .iter()
                .filter(|row| row[a] <= Seen::Warned && row[b] == Seen::Silent)
                .count();
            if a != b && missed > 0 {
                println!("flagged by [{name_a}], silent with [{name_b}]: {missed}");
            }
        }
    }
    assert_eq!(per_input.len(), FIXTURES.len() * OFFSETS * 2);
    // Both backends run with the check by default (`decode.verify_entropy = true`): libjpeg's own
    // warnings may add to it, never take from it.
    let default = |backend| {
        configs
            .iter()
            .position(|(_, l)| l.backend == backend && l.verify_entropy)
            .unwrap()
    };
    for backend in Backend::built() {
        let (zune, other) = (default(Backend::Zune), default(backend));
        let lost = per_input
            .iter()
            .filter(|row| row[zune] <= Seen::Warned && row[other] > Seen::Warned)
            .count();
        assert_eq!(
            lost, 0,
            "{backend} lets through what zune-jpeg with the check flags"
        );
    }
}
