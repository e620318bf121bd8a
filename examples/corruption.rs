//! The corruption corpus: how many damaged JPEGs mqimg notices. Each fixture's entropy-coded data (from
//! the end of its first scan header to the end-of-image marker) is damaged many times over, reproducibly
//! (a fixed seed), and every damaged copy is decoded as the daemon would:
//!
//! - `refused`: the decode failed (stage `decode`);
//! - `warned`: decoded, with a `warnings` entry;
//! - `silent, same`: decoded without a warning, pixels within 1 of the undamaged decode (harmless damage,
//!   e.g. in padding bits);
//! - `silent, wrong`: decoded without a warning into different pixels: the misses.
//!
//! Detection = (refused + warned) / (everything but `silent, same`).
//!
//!   cargo run --release --example corruption                 # the table, default decode options
//!   cargo run --release --example corruption -- --no-verify  # without the entropy check
//!
//! Kinds of damage: one byte set to a random value; 2–16 consecutive random bytes; one bit flipped; 1–64
//! bytes removed; 4–32 random bytes inserted. Damage never touches the first scan header or the last two
//! bytes (the end-of-image marker), whose loss is refused by the marker walk anyway.

use mqimg::frame::decode::{Limits, decode};

const FIXTURES: [&str; 8] = [
    "frames/photo-640x480.jpg",
    "frames/photo-1280x720.jpg",
    "variants/restart-1280x720.jpg",
    "variants/progressive-1280x720.jpg",
    "variants/subsampling444-1280x720.jpg",
    "variants/gray-1280x720.jpg",
    "variants/huffman-227x149.jpg",
    "seed/seed-frame.jpg",
];

/// Damaged copies per fixture and kind of damage.
const PER_KIND: usize = 60;

const KINDS: [&str; 5] = ["byte", "bytes", "bit", "removed", "inserted"];

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The offset just past the first scan header (`ff da` and its length).
fn scan_start(bytes: &[u8]) -> usize {
    let at = bytes
        .windows(2)
        .position(|w| w == [0xff, 0xda])
        .expect("a scan header");
    at + 2 + usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]))
}

fn damage(bytes: &[u8], kind: &str, rng: &mut Rng) -> Vec<u8> {
    let start = scan_start(bytes);
    let end = bytes.len() - 2;
    let mut out = bytes.to_vec();
    let at = start + rng.below(end - start);
    match kind {
        "byte" => {
            let old = out[at];
            let mut new = rng.next() as u8;
            if new == old {
                new ^= 0x5a;
            }
            out[at] = new;
        }
        "bytes" => {
            let n = 2 + rng.below(15);
            for b in out.iter_mut().skip(at).take(n.min(end - at)) {
                *b = rng.next() as u8;
            }
        }
        "bit" => out[at] ^= 1 << rng.below(8),
        "removed" => {
            let n = (1 + rng.below(64)).min(end - at);
            out.drain(at..at + n);
        }
        "inserted" => {
            let n = 4 + rng.below(29);
            let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            out.splice(at..at, junk);
        }
        other => unreachable!("{other}"),
    }
    out
}

#[derive(Default, Clone, Copy)]
struct Counts {
    refused: usize,
    warned: usize,
    same: usize,
    wrong: usize,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.refused += o.refused;
        self.warned += o.warned;
        self.same += o.same;
        self.wrong += o.wrong;
    }

    fn row(&self, name: &str) -> String {
        let damaged = self.refused + self.warned + self.wrong;
        let rate = 100.0 * (self.refused + self.warned) as f64 / damaged.max(1) as f64;
        format!(
            "| {name} | {} | {} | {} | {} | {rate:.1} % |",
            self.refused, self.warned, self.same, self.wrong
        )
    }
}

fn main() {
    let verify = !std::env::args().any(|a| a == "--no-verify");
    let limits = Limits {
        verify_entropy: verify,
        ..Limits::default()
    };
    let root = env!("CARGO_MANIFEST_DIR");
    println!("| fixture / kind | refused | warned | silent, same | silent, wrong | detection |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut total = Counts::default();
    let mut by_kind = [Counts::default(); KINDS.len()];
    for fixture in FIXTURES {
        let bytes = std::fs::read(format!("{root}/fixtures/{fixture}")).expect("fixture");
        let clean = decode(&bytes, &limits).expect("undamaged fixture decodes");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ bytes.len() as u64);
        let mut counts = Counts::default();
        for (k, kind) in KINDS.iter().enumerate() {
            let mut c = Counts::default();
            for _ in 0..PER_KIND {
                let damaged = damage(&bytes, kind, &mut rng);
                match decode(&damaged, &limits) {
                    Err(_) => c.refused += 1,
                    Ok(d) if !d.warnings.is_empty() => c.warned += 1,
                    Ok(d) => {
                        let same = d.rgb.dimensions() == clean.rgb.dimensions()
                            && d.rgb
                                .as_raw()
                                .iter()
                                .zip(clean.rgb.as_raw())
                                .all(|(a, b)| a.abs_diff(*b) <= 1);
                        if same {
                            c.same += 1;
                        } else {
                            c.wrong += 1;
                        }
                    }
                }
            }
            by_kind[k].add(c);
            counts.add(c);
        }
        println!("{}", counts.row(fixture));
        total.add(counts);
    }
    for (kind, c) in KINDS.iter().zip(by_kind) {
        println!("{}", c.row(&format!("all / {kind}")));
    }
    println!("{}", total.row("**all**"));
}
