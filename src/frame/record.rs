//! The JSON records mqimg emits, one per frame: a success record on the results topic (and from
//! `mqimg decode`), or a failure record on the errors topic. This schema is the product's contract:
//! fields are only ever added, and `schema` changes when a field's meaning does.

use std::time::SystemTime;

use serde::Serialize;

use crate::frame::decode::Format;
use crate::frame::payload::Detected;

/// The version of the record schema.
pub const SCHEMA: u32 = 1;

/// Where in the processing of a frame it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The payload held no image bytes (empty, bad base64, bad envelope, unknown content).
    Payload,
    /// A size limit refused the payload or the image (checked before decoding).
    Limits,
    /// The image bytes are broken, truncated or use an unsupported feature.
    Decode,
    /// The frame decoded but could not be stored.
    Store,
    /// The frame was dropped because the decode queue was full (QoS 0 only).
    Queue,
    /// Its parts could not be assembled into a frame (missing, too many, too big, inconsistent).
    Assembly,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Assembly,
        Stage::Payload,
        Stage::Limits,
        Stage::Decode,
        Stage::Store,
        Stage::Queue,
    ];

    /// The stage's name as it appears in records and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Payload => "payload",
            Stage::Limits => "limits",
            Stage::Decode => "decode",
            Stage::Store => "store",
            Stage::Queue => "queue",
            Stage::Assembly => "assembly",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-26T03:05:18.123Z`.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// The UTC calendar date of `at`, `YYYY-MM-DD`: the folder a frame is stored under.
pub fn utc_date(at: SystemTime) -> String {
    let days = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    // Howard Hinnant's days-to-civil algorithm: exact for the proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A frame that decoded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Success {
    pub schema: u32,
    pub topic: Option<String>,
    pub received_at: String,
    pub payload_bytes: usize,
    pub encoding: Detected,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_field: Option<String>,
    pub format: Format,
    pub image_bytes: usize,
    pub width: u32,
    pub height: u32,
    pub color: &'static str,
    pub rgb_bytes: usize,
    pub orientation: u8,
    pub sha256: String,
    pub decode_ms: f64,
    pub path: Option<String>,
    /// Where the image can be fetched over HTTP (`http.public_url`); absent when not configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// How the frame was assembled, when it arrived in parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<crate::frame::chunks::ChunkInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A frame that did not decode or could not be stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failure {
    pub schema: u32,
    pub topic: Option<String>,
    pub received_at: String,
    pub payload_bytes: usize,
    pub stage: Stage,
    pub error: String,
}

impl Failure {
    pub fn new(
        topic: Option<&str>,
        received_at: SystemTime,
        payload_bytes: usize,
        stage: Stage,
        error: impl std::fmt::Display,
    ) -> Self {
        Self {
            schema: SCHEMA,
            topic: topic.map(str::to_owned),
            received_at: timestamp(received_at),
            payload_bytes,
            stage,
            error: error.to_string(),
        }
    }
}

/// One record: what a frame ended as.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    Success(Box<Success>),
    Failure(Failure),
}

impl Record {
    /// The record as one line of JSON.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_else(|e| format!(r#"{{"schema":1,"error":"{e}"}}"#))
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(timestamp(at), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn failure_record_serializes_its_stage_in_lowercase() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let record = Record::Failure(Failure::new(
            Some("cam/1"),
            at,
            0,
            Stage::Payload,
            "empty payload",
        ));
        let value: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
        assert_eq!(value["stage"], "payload");
        assert_eq!(value["topic"], "cam/1");
        assert_eq!(value["error"], "empty payload");
        assert_eq!(value["schema"], 1);
    }

    #[test]
    fn a_chunked_frames_record_says_how_it_was_assembled() {
        let options = crate::frame::Options::default();
        let budget = crate::frame::budget::MemoryBudget::new(1 << 30);
        let photo = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/frames/photo-640x480.jpg"
        ))
        .unwrap();
        let mut record =
            crate::frame::process(&photo, Some("cam"), SystemTime::now(), &options, &budget)
                .unwrap()
                .record;
        let plain: serde_json::Value = serde_json::to_value(&record).unwrap();
        assert!(plain.get("chunks").is_none());
        record.chunks = Some(crate::frame::chunks::ChunkInfo {
            mode: crate::frame::chunks::Mode::TopicIndex,
            parts: 26,
            bytes: photo.len(),
            assembly_ms: 12.5,
            id: Some("17".into()),
        });
        let value: serde_json::Value = serde_json::to_value(&record).unwrap();
        assert_eq!(
            value["chunks"],
            serde_json::json!({
                "mode": "topic-index", "parts": 26, "bytes": photo.len(), "assembly_ms": 12.5, "id": "17"
            })
        );
        let failure = Failure::new(Some("cam"), SystemTime::now(), 0, Stage::Assembly, "x");
        assert_eq!(serde_json::to_value(&failure).unwrap()["stage"], "assembly");
    }

    #[test]
    fn the_storage_date_matches_the_timestamp_date() {
        use std::time::Duration;
        for secs in [0, 951_782_400, 1_795_694_400, 1_798_761_599, 4_102_444_800] {
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(utc_date(at), timestamp(at)[..10], "{secs}");
        }
    }
}
