//! Times each CPU stage of a frame (payload detection, decode, SHA-256) on one core.
use std::time::Instant;

use base64::Engine as _;
use sha2::Digest as _;

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fixtures/frames/photo-1280x720.jpg".into());
    let jpeg = std::fs::read(&path).expect("fixture");
    let b64 = base64::engine::general_purpose::STANDARD
        .encode(&jpeg)
        .into_bytes();
    let limits = mqimg::frame::decode::Limits::default();
    let n = 50;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            mqimg::frame::payload::detect(&b64, Default::default(), None).expect("payload"),
        );
    }
    let payload_ms = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(mqimg::frame::decode::decode(&jpeg, &limits).expect("decode"));
    }
    let decode_ms = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(sha2::Sha256::digest(&jpeg));
    }
    let sha_ms = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
    println!("{path}: payload {payload_ms:.3} ms, decode {decode_ms:.3} ms, sha256 {sha_ms:.3} ms");
}
