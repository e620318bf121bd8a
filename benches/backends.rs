//! The two JPEG backends compared by the CPU time of the decoding thread, not wall time, so that other
//! work on the machine (builds, other benchmarks) inflates both alike instead of whichever ran while it
//! was busy; and in alternating rounds, each backend with and without mqimg's entropy check. Prints a
//! Markdown table of the median milliseconds per decode (JPEG bytes → RGB8: walk, decode, orientation).
//!
//! `cargo bench --features turbojpeg --bench backends` (about a minute). Linux only: it reads the thread's
//! run time from `/proc/thread-self/schedstat`.

use std::hint::black_box;
use std::time::Instant;

use mqimg::frame::decode::{Backend, Limits, decode};

const FRAMES: [(&str, &str); 2] = [
    ("1280x720", "frames/photo-1280x720.jpg"),
    ("1920x1080", "frames/photo-1920x1080.jpg"),
];
/// Rounds per frame; each round runs every configuration once.
const ROUNDS: usize = 10;
/// Decodes per configuration and round: enough that a kernel accounting run time by scheduler ticks
/// (4 ms on the project's VM) still resolves 0.1 ms a decode.
const BATCH: usize = 50;

fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// Nanoseconds this thread has run on a CPU.
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat (Linux)");
    stat.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat's first field")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter on the frame id.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let configs: Vec<(Backend, bool)> = Backend::built()
        .flat_map(|b| [(b, true), (b, false)])
        .collect();
    println!("| frame | backend | verify_entropy | CPU ms/decode | wall ms/decode |");
    println!("|---|---|---|---:|---:|");
    for (id, path) in FRAMES {
        if filter.as_deref().is_some_and(|f| !id.contains(f)) {
            continue;
        }
        let bytes = fixture(path);
        let mut cpu = vec![Vec::new(); configs.len()];
        let mut wall = vec![Vec::new(); configs.len()];
        for round in 0..=ROUNDS {
            for (i, &(backend, verify_entropy)) in configs.iter().enumerate() {
                let limits = Limits {
                    backend,
                    verify_entropy,
                    ..Limits::default()
                };
                let (c0, w0) = (thread_cpu_ns(), Instant::now());
                for _ in 0..BATCH {
                    black_box(decode(black_box(&bytes), &limits).expect("fixture decodes"));
                }
                // Round 0 warms caches and the per-thread decoder state.
                if round > 0 {
                    cpu[i].push((thread_cpu_ns() - c0) as f64 / 1e6 / BATCH as f64);
                    wall[i].push(w0.elapsed().as_secs_f64() * 1e3 / BATCH as f64);
                }
            }
        }
        for (i, (backend, verify)) in configs.iter().enumerate() {
            println!(
                "| {id} | {backend} | {verify} | {:.2} | {:.2} |",
                median(cpu[i].clone()),
                median(wall[i].clone())
            );
        }
    }
}
