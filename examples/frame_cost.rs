//! One worker's CPU work on a frame, repeated: base64 payload → RGB8 record, pixels given back for the
//! next frame as the daemon's workers do. For instruction counts that a noisy machine cannot skew:
//!
//!   cargo build --release --example frame_cost
//!   valgrind --tool=callgrind target/release/examples/frame_cost fixtures/frames/photo-1920x1080.jpg 20
//!
//! Prints the mean wall time per frame too (meaningful on a quiet machine only).
use std::time::{Instant, SystemTime};

use base64::Engine as _;
use mqimg::frame::budget::MemoryBudget;
use mqimg::frame::{self, Options};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "fixtures/frames/photo-1920x1080.jpg".into());
    let n: u32 = args.next().map_or(20, |n| n.parse().expect("a count"));
    let jpeg = std::fs::read(&path).expect("fixture");
    let payload = base64::engine::general_purpose::STANDARD
        .encode(&jpeg)
        .into_bytes();
    let options = Options::default();
    let budget = MemoryBudget::new(1 << 30);
    let started = Instant::now();
    for _ in 0..n {
        let processed = frame::process(
            &payload,
            Some("bench"),
            SystemTime::now(),
            &options,
            &budget,
        )
        .expect("the fixture decodes");
        std::hint::black_box(&processed.record);
        frame::decode::recycle(processed.decoded.rgb);
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
    println!("{path}: {ms:.2} ms per frame over {n}");
}
