//! One frame, start to finish of the CPU work: payload bytes → image bytes → RGB8 → its record.
//!
//! Shared by `mqimg decode` and the daemon's decode workers, so both produce the same records. Storing the
//! frame is the daemon's job (`daemon::sink`); nothing under `frame` touches files, sockets or
//! configuration. Frames that cameras split over many messages are put back together first by
//! [`chunks::Assembler`].

pub mod budget;
pub mod chunks;
pub mod decode;
pub mod encode;
pub mod payload;
pub mod record;
pub mod topic;

use std::borrow::Cow;
use std::time::{Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::frame::budget::{MemoryBudget, Permit};
use crate::frame::decode::{Decoded, Limits};
use crate::frame::payload::Encoding;
use crate::frame::record::{Failure, Stage, Success};

/// How payloads of one source are read, and the limits they must respect.
#[derive(Clone, Debug)]
pub struct Options {
    pub encoding: Encoding,
    pub json_field: Option<String>,
    pub max_payload_bytes: usize,
    pub limits: Limits,
}

/// The default `decode.max_payload_bytes`: a 4K JPEG at high quality, base64-encoded, fits.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 16 << 20;

impl Default for Options {
    fn default() -> Self {
        Self {
            encoding: Encoding::Auto,
            json_field: None,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            limits: Limits::default(),
        }
    }
}

/// A frame that decoded: its record (with `path` still unset), the image bytes and the pixels.
#[derive(Debug)]
pub struct Processed<'a> {
    pub record: Success,
    /// The image bytes as received, after payload decoding (what `sha256` describes).
    pub image: Cow<'a, [u8]>,
    pub decoded: Decoded,
    /// The decode's share of the memory budget. Declared after `decoded` so that the pixels are freed
    /// before the bytes go back to the budget.
    pub memory: Permit,
}

/// Processes one payload. A failure comes back as its ready failure record.
///
/// The decode's estimated memory is taken from `budget` first (waiting for other frames to give it
/// back) and held by the result until it is dropped; a frame needing more than the whole budget fails
/// at stage `limits`.
pub fn process<'a>(
    payload_bytes: &'a [u8],
    topic: Option<&str>,
    received_at: SystemTime,
    options: &Options,
    budget: &MemoryBudget,
) -> Result<Processed<'a>, Failure> {
    let fail =
        |stage, error: String| Failure::new(topic, received_at, payload_bytes.len(), stage, error);
    if payload_bytes.len() > options.max_payload_bytes {
        return Err(fail(
            Stage::Limits,
            format!(
                "payload is {} bytes, over the limit of {} (decode.max_payload_bytes)",
                payload_bytes.len(),
                options.max_payload_bytes
            ),
        ));
    }
    let started = Instant::now();
    let payload = payload::detect(
        payload_bytes,
        options.encoding,
        options.json_field.as_deref(),
    )
    .map_err(|e| fail(Stage::Payload, e.to_string()))?;
    let decode_error = |e: decode::DecodeError| {
        let stage = if e.is_limit() {
            Stage::Limits
        } else {
            Stage::Decode
        };
        fail(stage, e.to_string())
    };
    let inspected = decode::inspect(&payload.image, &options.limits).map_err(decode_error)?;
    let mut busy = started.elapsed();
    // Waiting for memory is not decoding: `decode_ms` leaves it out.
    let memory = inspected.reserve(budget).map_err(decode_error)?;
    let resumed = Instant::now();
    let decoded = inspected.decode().map_err(decode_error)?;
    busy += resumed.elapsed();
    let decode_ms = busy.as_secs_f64() * 1000.0;
    let (width, height) = decoded.rgb.dimensions();
    let record = Success {
        schema: record::SCHEMA,
        topic: topic.map(str::to_owned),
        received_at: record::timestamp(received_at),
        payload_bytes: payload_bytes.len(),
        encoding: payload.encoding,
        json_field: payload.json_field,
        format: decoded.format,
        image_bytes: payload.image.len(),
        width,
        height,
        color: "rgb8",
        rgb_bytes: decoded.rgb.as_raw().len(),
        orientation: decoded.orientation,
        sha256: sha256_hex(&payload.image),
        // Three decimals: microseconds are all an operator can use.
        decode_ms: (decode_ms * 1000.0).round() / 1000.0,
        path: None,
        url: None,
        meta: payload.meta,
        chunks: None,
        warnings: decoded.warnings.clone(),
    };
    Ok(Processed {
        record,
        image: payload.image,
        decoded,
        memory,
    })
}

/// The first `n` bytes of `bytes` as lowercase hex pairs separated by spaces (`ff d8 ff`): how messages
/// show bytes that are not what they should be.
pub(crate) fn hex_head(bytes: &[u8], n: usize) -> String {
    bytes
        .iter()
        .take(n)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lowercase hex SHA-256 of `bytes`: the record's `sha256`, and the basis of frame file names.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// What a caught panic says: a decoder bug becomes a failure record naming it, not a crash.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn options() -> Options {
        Options::default()
    }

    fn budget() -> MemoryBudget {
        MemoryBudget::new(512 << 20)
    }

    #[test]
    fn sha256_is_lowercase_hex_of_the_bytes() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_payload_over_the_limit_fails_at_stage_limits_before_detection() {
        let mut options = options();
        options.max_payload_bytes = 10;
        let err = process(
            b"not even an image",
            Some("cam"),
            SystemTime::now(),
            &options,
            &budget(),
        )
        .unwrap_err();
        assert_eq!(err.stage, Stage::Limits);
        assert!(err.error.contains("17 bytes"), "{}", err.error);
        assert!(
            err.error.contains("decode.max_payload_bytes"),
            "{}",
            err.error
        );
    }

    #[test]
    fn a_frame_needing_more_than_the_whole_budget_fails_at_stage_limits() {
        let png = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/frames/photo-640x480.png"
        ))
        .unwrap();
        let budget = MemoryBudget::new(640 * 480 * 3);
        let err = process(&png, Some("cam"), SystemTime::now(), &options(), &budget).unwrap_err();
        assert_eq!(err.stage, Stage::Limits);
        assert!(
            err.error
                .starts_with("image is 640x480: decoding it needs an estimated "),
            "{}",
            err.error
        );
        assert!(
            err.error
                .ends_with("over the memory budget of 921600 bytes (decode.max_memory_bytes)"),
            "{}",
            err.error
        );
        // Nothing is held after a refusal.
        assert_eq!(budget.available(), budget.total());
    }

    #[test]
    fn a_processed_frame_holds_its_estimate_until_it_is_dropped() {
        let jpeg = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/frames/photo-640x480.jpg"
        ))
        .unwrap();
        let budget = budget();
        let processed = process(&jpeg, None, SystemTime::now(), &options(), &budget).unwrap();
        let held = processed.memory.bytes();
        assert!(held > 640 * 480 * 3, "{held}");
        assert_eq!(budget.available(), budget.total() - held);
        drop(processed);
        assert_eq!(budget.available(), budget.total());
    }

    #[test]
    fn an_empty_payload_fails_at_stage_payload() {
        let err = process(b"", None, SystemTime::now(), &options(), &budget()).unwrap_err();
        assert_eq!(err.stage, Stage::Payload);
        assert_eq!(err.payload_bytes, 0);
    }
}
