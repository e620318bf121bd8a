//! Whole-frame processing (`frame::process`) as a decode worker runs it on a payload from the broker:
//! `auto` detection with the probed JSON fields, decoding under limits, the record, and the frame file
//! the sink would write.
//!
//! Checks, beyond "no panic, no hang, no allocation over 256 MB": a success record agrees with the
//! pixels and the image bytes (size, `rgb_bytes`, `image_bytes`, `sha256`), both kinds of record
//! serialize to JSON that parses back, a failure names the payload's size and a one-line error, and
//! the PPM frame file is header plus pixels.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use mqimg::frame::budget::MemoryBudget;
use mqimg::frame::encode::{OutputFormat, write};
use mqimg::frame::payload::Encoding;
use mqimg::frame::record::{Record, Stage};
use mqimg::frame::{Options, process, sha256_hex};
use mqimg_fuzz::{LIMITS, MAX_PAYLOAD_BYTES, one_line};

const TOPIC: &str = "cameras/gate/1";

fn round_trip(record: &Record) -> serde_json::Value {
    let json = serde_json::to_string(record).expect("a record serializes");
    assert!(one_line(&json), "a record is one line");
    serde_json::from_str(&json).expect("a record's JSON parses back")
}

fuzz_target!(|bytes: &[u8]| {
    let options = Options {
        encoding: Encoding::Auto,
        json_field: None,
        max_payload_bytes: MAX_PAYLOAD_BYTES,
        limits: LIMITS,
    };
    let received_at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_600_000_123);
    // Room for the largest image the limits allow, alone: a frame over it fails at stage `limits`.
    let budget = MemoryBudget::new(512 << 20);
    match process(bytes, Some(TOPIC), received_at, &options, &budget) {
        Ok(processed) => {
            let record = &processed.record;
            let rgb = &processed.decoded.rgb;
            assert_eq!((record.width, record.height), rgb.dimensions());
            assert_eq!(record.rgb_bytes, rgb.as_raw().len());
            assert_eq!(
                record.rgb_bytes,
                record.width as usize * record.height as usize * 3
            );
            assert_eq!(record.image_bytes, processed.image.len());
            assert_eq!(record.payload_bytes, bytes.len());
            assert_eq!(record.sha256, sha256_hex(&processed.image));
            assert_eq!(record.format, processed.decoded.format);
            let value = round_trip(&Record::Success(Box::new(record.clone())));
            assert_eq!(value["topic"], TOPIC);
            let mut ppm = Vec::new();
            write(&processed, OutputFormat::Ppm, &mut ppm).expect("PPM always encodes");
            let header = format!("P6\n{} {}\n255\n", record.width, record.height);
            assert!(ppm.starts_with(header.as_bytes()));
            assert_eq!(ppm.len(), header.len() + record.rgb_bytes);
            let mut original = Vec::new();
            write(&processed, OutputFormat::Original, &mut original).expect("original is as is");
            assert_eq!(&*original, &*processed.image);
        }
        Err(failure) => {
            assert_eq!(failure.payload_bytes, bytes.len());
            assert!(
                one_line(&failure.error),
                "multi-line error {:?}",
                failure.error
            );
            assert!(matches!(
                failure.stage,
                Stage::Payload | Stage::Decode | Stage::Limits
            ));
            let value = round_trip(&Record::Failure(failure));
            assert_eq!(value["topic"], TOPIC);
        }
    }
});
