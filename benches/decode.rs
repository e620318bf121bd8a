//! Decode throughput, one thread: image bytes → RGB8 (`decode/jpeg-to-rgb`), and the whole CPU work of a
//! frame as the daemon's workers do it, base64 payload → RGB8 record (`frame/base64-to-rgb`: base64,
//! marker walk, limits, decode, SHA-256). The latter times a single core's share of the decode ceiling.
//!
//! Throughput is counted in pixels (`Throughput::Elements(width * height)`), so criterion's
//! "Melem/s" reads as megapixels per second (MP/s). One thread; the daemon runs one decode per worker.
//!
//! Every group runs once per JPEG backend the build has (`--features turbojpeg` adds libjpeg-turbo, its
//! ids prefixed `libjpeg-turbo/`; zune-jpeg's keep the plain frame ids).
//!
//! Run with `cargo bench --bench decode` (about a minute on 2 cores; twice that with both backends).
//! On a busy machine `benches/backends.rs` compares the backends by CPU time instead.

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mqimg::frame::decode::{Backend, Limits, decode};
use mqimg::frame::{self, Options};

/// Reads a file under `fixtures/`.
fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// The frames every group measures: (benchmark id, fixture path, width, height).
const FRAMES: [(&str, &str, u64, u64); 5] = [
    ("640x480", "frames/photo-640x480.jpg", 640, 480),
    ("1280x720", "frames/photo-1280x720.jpg", 1280, 720),
    ("1920x1080", "frames/photo-1920x1080.jpg", 1920, 1080),
    ("3840x2160", "frames/photo-3840x2160.jpg", 3840, 2160),
    (
        "1280x720-progressive",
        "variants/progressive-1280x720.jpg",
        1280,
        720,
    ),
];

/// The benchmark id of frame `id` decoded by `backend`.
fn bench_id(backend: Backend, id: &str) -> BenchmarkId {
    match backend {
        Backend::Zune => BenchmarkId::from_parameter(id),
        other => BenchmarkId::new(other.name(), id),
    }
}

/// Small samples keep the whole run short; decode times are stable enough for these.
fn configured() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// JPEG bytes → RGB8 (marker walk, limits, decode, orientation).
fn jpeg_to_rgb(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode/jpeg-to-rgb");
    for backend in Backend::built() {
        let limits = Limits {
            backend,
            ..Limits::default()
        };
        for (id, path, width, height) in FRAMES {
            let bytes = fixture(path);
            group.throughput(Throughput::Elements(width * height));
            group.bench_with_input(bench_id(backend, id), &bytes, |b, bytes| {
                b.iter(|| decode(black_box(bytes), &limits).expect("fixture decodes"));
            });
        }
    }
    group.finish();
}

/// Base64 payload → RGB8 and its record, as a worker processes a frame (no file, no MQTT).
fn base64_to_rgb(c: &mut Criterion) {
    let budget = mqimg::frame::budget::MemoryBudget::new(1 << 30);
    let mut group = c.benchmark_group("frame/base64-to-rgb");
    for (backend, (id, path, width, height)) in
        Backend::built().flat_map(|backend| FRAMES.map(|frame| (backend, frame)))
    {
        let mut options = Options::default();
        options.limits.backend = backend;
        let payload = base64::engine::general_purpose::STANDARD
            .encode(fixture(path))
            .into_bytes();
        group.throughput(Throughput::Elements(width * height));
        group.bench_with_input(bench_id(backend, id), &payload, |b, payload| {
            b.iter(|| {
                frame::process(
                    black_box(payload),
                    Some("bench"),
                    std::time::SystemTime::now(),
                    &options,
                    &budget,
                )
                .expect("fixture decodes")
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = configured();
    targets = jpeg_to_rgb, base64_to_rgb
}
criterion_main!(benches);
