//! Assembly overhead of chunked frames, per mode, on one core: the CPU time from a frame's first part
//! to its `Complete` (parsing, base64, copies, fingerprints), and the bytes a partial frame holds just
//! before its last part. `cargo run --release --example chunk_times [FILE] [CHUNK_BYTES]`.
use std::time::{Duration, Instant};

use mqimg::frame::chunks::{Assembler, Event, Fields, Limits, Mode, Pieces, Source, split};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "fixtures/frames/photo-1920x1080.jpg".into());
    let chunk_bytes: usize = args
        .next()
        .map_or(4096, |n| n.parse().expect("CHUNK_BYTES"));
    let jpeg = std::fs::read(&path).expect("fixture");
    println!("{path}: {} bytes in {chunk_bytes}-byte parts", jpeg.len());
    let forms = [
        (Mode::JsonParts, Pieces::Raw, "json-parts"),
        (Mode::StartDataEnd, Pieces::Raw, "start-data-end raw"),
        (Mode::StartDataEnd, Pieces::Base64, "start-data-end base64"),
        (Mode::HeaderBlocks, Pieces::Raw, "header-blocks"),
        (Mode::TopicIndex, Pieces::Raw, "topic-index"),
        (Mode::UntilEoi, Pieces::Raw, "until-eoi raw"),
        (Mode::UntilEoi, Pieces::Base64, "until-eoi base64"),
    ];
    for (mode, pieces, name) in forms {
        let messages = split(
            mode,
            &Fields::default(),
            "cams/door",
            Some("1"),
            &jpeg,
            chunk_bytes,
            pieces,
        );
        let wire: usize = messages.iter().map(|(_, payload)| payload.len()).sum();
        let source = Source {
            mode,
            fields: Fields::default(),
        };
        let runs = 200;
        let mut times = Vec::with_capacity(runs);
        let mut held = 0;
        for run in 0..runs {
            let mut assembler = Assembler::new(Limits::default());
            let now = Instant::now();
            let started = Instant::now();
            let mut whole = None;
            for (id, (topic, payload)) in (0..).zip(&messages) {
                if id + 1 == messages.len() as u64 && run == 0 {
                    held = assembler.held_bytes();
                }
                for event in assembler.part(&source, topic, payload, id, now) {
                    if let Event::Complete { bytes, .. } = event {
                        whole = Some(bytes);
                    }
                }
            }
            times.push(started.elapsed());
            assert_eq!(whole.as_deref(), Some(&jpeg[..]), "{name}");
            std::hint::black_box(whole);
        }
        times.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{name:>22}: {:>4} messages ({wire} bytes), assembly median {:.3} ms (p90 {:.3}), \
             held before the last part {held} bytes ({:.2}x the frame)",
            messages.len(),
            ms(times[runs / 2]),
            ms(times[runs * 9 / 10]),
            held as f64 / jpeg.len() as f64,
        );
    }
}
