//! The two JPEG backends compared by CPU time (user + system, every thread of the process: the entropy
//! check runs on a thread of its own beside the decoder) as well as wall time, so that other work on
//! the machine (builds, other benchmarks) inflates both alike instead of whichever ran while it was
//! busy; and in alternating rounds, each backend with and without mqimg's entropy check. Prints a
//! Markdown table of the median milliseconds per decode (JPEG bytes → RGB8: walk, decode, check,
//! orientation).
//!
//! `cargo bench --features turbojpeg --bench backends` (about two minutes). Linux only: it reads the
//! process's CPU time from `/proc/self/stat`.

use std::hint::black_box;
use std::time::Instant;

use mqimg::frame::decode::{Backend, Limits, decode};

const FRAMES: [(&str, &str); 2] = [
    ("1280x720", "frames/photo-1280x720.jpg"),
    ("1920x1080", "frames/photo-1920x1080.jpg"),
];
/// Rounds per frame; each round runs every configuration once.
const ROUNDS: usize = 6;
/// Decodes per configuration and round: CPU time comes in clock ticks (10 ms), so a batch of 1–2 s
/// resolves 1 %.
const BATCH: usize = 200;
/// Clock ticks a second (`USER_HZ`, 100 on every Linux architecture Rust targets).
const TICKS_PER_SECOND: f64 = 100.0;

fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// Milliseconds of CPU (user + system) this process has used, exited threads included.
fn process_cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat (Linux)");
    // Fields 14 and 15 (utime, stime), counted after the command name's closing parenthesis.
    let after = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .map(|&i| fields[i].parse::<u64>().expect("a tick count"))
        .sum();
    ticks as f64 * 1e3 / TICKS_PER_SECOND
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
                let (c0, w0) = (process_cpu_ms(), Instant::now());
                for _ in 0..BATCH {
                    black_box(decode(black_box(&bytes), &limits).expect("fixture decodes"));
                }
                // Round 0 warms caches and the per-thread decoder state.
                if round > 0 {
                    cpu[i].push((process_cpu_ms() - c0) / BATCH as f64);
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
