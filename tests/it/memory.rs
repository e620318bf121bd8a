//! Decode memory (issue 8, finding 4): a 300 KB PNG "bomb" (16-bit RGBA, 8192x4882, inside the default
//! limits) and floods of them, with the peak resident memory of the real binary (`VmHWM` in
//! `/proc/PID/status`) held to the RGB8 buffer plus a constant for `mqimg decode`, and to the decode
//! budget plus a constant for the daemon, whatever its worker count. Before the budget and the
//! row-by-row PNG decode, `mqimg decode` peaked at 432 MiB on the bomb and the daemon at 834 MiB with
//! 2 workers, 1470 MiB with 4.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mqimg::config::OutputFormat;
use mqimg::frame::payload::Detected;
use rumqttc::QoS;

use crate::support::daemon::{DaemonProcess, json, publish_args, settings, write_config};
use crate::support::{Broker, Subscriber};

const MIB: u64 = 1 << 20;
/// The bomb's size: 39,993,344 pixels, just inside the default `decode.max_pixels` (40 M).
const BOMB: (u32, u32) = (8192, 4882);
/// Its RGB8 buffer: 114 MiB.
const BOMB_RGB: u64 = BOMB.0 as u64 * BOMB.1 as u64 * 3;
/// What `mqimg decode` may hold beyond the frame's RGB8 buffer: the binary, its allocator, the input
/// file and the decoder's rows (measured: 11 MiB).
const DECODE_OVERHEAD: u64 = 32 * MIB;
/// What the daemon may hold beyond its decode budget: the binary, the tokio runtime, the MQTT
/// buffers, the queued payloads and thread stacks (measured: 14 MiB).
const DAEMON_OVERHEAD: u64 = 64 * MIB;

/// The bomb as a file, written once per test run (a 300 KB PNG of zeros); its path.
fn bomb() -> PathBuf {
    static BOMB_PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BOMB_PATH
        .get_or_init(|| {
            let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bomb-8192x4882-rgba16.png");
            let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
            let file = std::fs::File::create(&tmp).expect("creating the bomb");
            let mut encoder = png::Encoder::new(BufWriter::new(file), BOMB.0, BOMB.1);
            encoder.set_color(png::ColorType::Rgba);
            encoder.set_depth(png::BitDepth::Sixteen);
            encoder.set_compression(png::Compression::High);
            let mut writer = encoder.write_header().expect("the bomb's header");
            let mut stream = writer
                .stream_writer_with_size(1 << 20)
                .expect("the bomb's stream");
            let row = vec![0u8; BOMB.0 as usize * 8];
            for _ in 0..BOMB.1 {
                stream.write_all(&row).expect("a bomb row");
            }
            stream.finish().expect("the bomb's data");
            writer.finish().expect("the bomb's end");
            std::fs::rename(&tmp, &path).expect("moving the bomb in place");
            path
        })
        .clone()
}

/// The peak resident memory of process `pid` so far (`VmHWM`), in bytes; `None` once it has exited.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// Runs `mqimg decode` with `args`, sampling its `VmHWM` every millisecond until it exits: (exit
/// code, stdout, the highest peak seen). The peak of a decode lasts while its file is written, far
/// longer than a sample.
fn decode_with_peak(args: &[&std::ffi::OsStr], vars: &[(&str, &str)]) -> (i32, String, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mqimg"))
        .arg("decode")
        .args(args)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running mqimg decode");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut peak = 0;
    let status = loop {
        if let Some(now) = peak_rss(child.id()) {
            peak = peak.max(now);
        }
        if let Some(status) = child.try_wait().expect("waiting for mqimg decode") {
            break status;
        }
        assert!(Instant::now() < deadline, "mqimg decode ran over 300 s");
        // The sampling interval, not a wait for anything.
        std::thread::sleep(Duration::from_millis(1));
    };
    let output = child.wait_with_output().expect("mqimg decode's output");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 stdout");
    (status.code().expect("an exit code"), stdout, peak)
}

#[test]
fn the_png_bomb_decodes_to_ppm_within_its_rgb_buffer_plus_a_constant() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = dir.path().join("bomb.ppm");
    let bomb = bomb();
    let (code, stdout, peak) =
        decode_with_peak(&["--out".as_ref(), out.as_ref(), bomb.as_ref()], &[]);
    assert_eq!(code, 0, "{stdout}");
    let record: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON record");
    assert_eq!(record["width"], BOMB.0);
    assert_eq!(record["height"], BOMB.1);
    let header = format!("P6\n{} {}\n255\n", BOMB.0, BOMB.1);
    let written = std::fs::metadata(&out).expect("the PPM file").len();
    assert_eq!(written, header.len() as u64 + BOMB_RGB);
    eprintln!(
        "mqimg decode --out bomb.ppm bomb.png: peak RSS {} MiB",
        peak / MIB
    );
    assert!(
        peak <= BOMB_RGB + DECODE_OVERHEAD,
        "peak RSS {} MiB, over the RGB8 buffer ({} MiB) plus {} MiB",
        peak / MIB,
        BOMB_RGB / MIB,
        DECODE_OVERHEAD / MIB
    );
}

#[test]
fn a_frame_needing_more_than_the_memory_budget_fails_at_stage_limits_without_decoding() {
    let bomb = bomb();
    let (code, stdout, peak) = decode_with_peak(
        &[bomb.as_ref()],
        &[("MQIMG__DECODE__MAX_MEMORY_BYTES", "100000000")],
    );
    assert_eq!(code, 1, "{stdout}");
    let record: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON record");
    assert_eq!(record["stage"], "limits");
    let error = record["error"].as_str().expect("an error message");
    assert!(
        error.starts_with("image is 8192x4882: decoding it needs an estimated ")
            && error
                .ends_with("over the memory budget of 100000000 bytes (decode.max_memory_bytes)"),
        "{error}"
    );
    assert!(peak < DECODE_OVERHEAD, "peak RSS {} MiB", peak / MIB);
}

/// Floods a daemon of `workers` workers and a budget of `budget` bytes with `frames` bombs; returns
/// its peak RSS once every frame has its success record.
async fn flood_peak(workers: usize, budget: u64, frames: u64) -> u64 {
    let broker = Broker::new();
    let out = tempfile::tempdir().expect("a temp dir");
    let mut settings = settings(&broker.url(), &["cams/#"], out.path());
    settings.decode.workers = workers;
    settings.decode.max_memory_bytes = budget;
    settings.output.format = OutputFormat::Original;
    let config = write_config(&settings, out.path());
    let daemon = DaemonProcess::start(&config).await;
    let mut records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;
    let mut publish = publish_args(&broker.url(), "cams/bomb", Detected::Raw, 1, frames, "-");
    publish.files = vec![bomb()];
    mqimg::cli::publish::run(&publish)
        .await
        .expect("publishing");
    // Debug builds take seconds a bomb (the conversion loop is not optimised), on shared cores.
    let received = records
        .recv_n(frames as usize, Duration::from_secs(900))
        .await;
    for message in &received {
        let record = json(message);
        assert_eq!(record["width"], BOMB.0, "{record}");
    }
    peak_rss(daemon.pid()).expect("the daemon is running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_png_bombs_stays_within_the_decode_budget_whatever_the_worker_count() {
    // Room for two bombs at once: with more workers, the others wait for memory.
    let budget = 256 * MIB;
    let frames = 8;
    for workers in [2, 4] {
        let peak = flood_peak(workers, budget, frames).await;
        eprintln!(
            "{frames} bombs, {workers} workers, budget {} MiB: daemon peak RSS {} MiB",
            budget / MIB,
            peak / MIB
        );
        assert!(
            peak <= budget + DAEMON_OVERHEAD,
            "{workers} workers: peak RSS {} MiB, over the budget ({} MiB) plus {} MiB",
            peak / MIB,
            budget / MIB,
            DAEMON_OVERHEAD / MIB
        );
    }
}
