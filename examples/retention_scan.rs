//! Measures retention's startup scan: time and memory to index a tree of frame files.
//!
//!     cargo run --release --example retention_scan -- /var/tmp/mqimg-scan 1000000
//!
//! Generates the tree first when the folder does not exist: `files` frame files spread over 4 cameras
//! and 90 date folders each, sparse (100 KB long, no data blocks: ~1 GB of inodes' worth of metadata,
//! not of disk), then scans it twice (the second time with a warm cache) and prints the time and the
//! memory the index holds. Delete the folder afterwards (`rm -rf`), it is not removed here.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use mqimg::config::Retention;
use mqimg::daemon::retention::{Policy, scan};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "/var/tmp/mqimg-scan".into());
    let files: usize = args
        .next()
        .map_or(1_000_000, |n| n.parse().expect("a number of files"));
    let dir = Path::new(&dir);
    if !dir.exists() {
        let started = Instant::now();
        generate(dir, files);
        println!(
            "generated {files} files in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let policy = Policy(Retention {
        max_age: Some(Duration::from_secs(30 * 86_400)),
        ..Retention::default()
    });
    for run in ["first", "second"] {
        let before = rss_kib("VmRSS");
        let scanned = scan(dir, &policy, &|| false);
        let after = rss_kib("VmRSS");
        println!(
            "{run} scan: {} files, {} date folders, {:.2} s; index {:.1} MB (RSS {:.1} → {:.1} MB, peak {:.1} MB)",
            scanned.files.count(),
            scanned.files.folders(),
            scanned.took.as_secs_f64(),
            (after.saturating_sub(before)) as f64 / 1024.0,
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            rss_kib("VmHWM") as f64 / 1024.0,
        );
        drop(scanned);
    }
}

/// `files` sparse frame files under `dir`, as mqimg names them, with modification times spread over
/// the 90 days up to today.
fn generate(dir: &Path, files: usize) {
    const CAMERAS: usize = 4;
    const DAYS: usize = 90;
    let per_folder = files.div_ceil(CAMERAS * DAYS);
    let today = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
        / 86_400;
    let mut made = 0;
    'all: for day in 0..DAYS {
        for camera in 0..CAMERAS {
            let topic = format!("site/cam{camera}/jpeg");
            for k in 0..per_folder {
                if made == files {
                    break 'all;
                }
                // Spread over the day, so that a date folder holds its own day's files only.
                let secs = (today - day as u64) * 86_400 + (k * 86_400 / per_folder) as u64;
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
                let sha = format!("{made:032x}{}", "0".repeat(32));
                let path = mqimg::daemon::sink::frame_path(dir, &topic, at, &sha, "jpg");
                if k == 0 {
                    std::fs::create_dir_all(path.parent().expect("a folder")).expect("folders");
                }
                let file = std::fs::File::create(&path).expect("a file");
                file.set_len(100_000).expect("a sparse length");
                file.set_modified(at).expect("a modification time");
                made += 1;
            }
        }
    }
}

/// A `/proc/self/status` figure, in KiB.
fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
