//! What the decode workers hand the live view for each frame: built from the record they made, with
//! what the live view must not show taken out (file-system paths, unless `http.show_paths`).

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::{Frame, Outcome, Update, topic_key, url};
use crate::config::Http;
use crate::frame::record::{Failure, Stage, Success};

/// Builds [`Update`]s and records' `url`; read-only, shared by the workers.
#[derive(Clone, Debug)]
pub struct Feed {
    /// `http.public_url` without its trailing `/`.
    public_url: Option<String>,
    show_paths: bool,
    /// `output.dir` as errors print it, to take out of them.
    output_dir: Option<String>,
}

impl Feed {
    pub fn new(http: &Http, output_dir: Option<&Path>) -> Self {
        Self {
            public_url: http
                .public_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            show_paths: http.show_paths,
            output_dir: output_dir
                .map(|d| d.display().to_string())
                .filter(|d| !d.is_empty()),
        }
    }

    /// Where this frame can be fetched while it is its topic's latest (`http.public_url` set):
    /// `/latest/{topic}?sha256=…` answers 404 once a newer frame replaced it, never another image.
    pub fn url(&self, topic: &str, sha256: &str) -> Option<String> {
        let base = self.public_url.as_deref()?;
        let href = url::topic_href("latest", topic);
        let join = if href.contains('?') { '&' } else { '?' };
        Some(format!("{base}{href}{join}sha256={sha256}"))
    }

    /// A frame that decoded; `image` are its bytes as received, `orientation` what the decoder applied.
    /// Completed by [`Feed::finish`] with the record once it is serialized.
    pub fn success(
        &self,
        record: &Success,
        image: Bytes,
        orientation: u8,
        received_at: SystemTime,
    ) -> Pending {
        let frame = Frame::new(
            image,
            record.format,
            (record.width, record.height),
            orientation,
            record.sha256.clone(),
            received_at,
        );
        let topic = record.topic.clone().unwrap_or_default();
        Pending {
            key: topic_key(&topic),
            topic,
            outcome: Outcome::Ok(Arc::new(frame)),
            store_failure: false,
        }
    }

    /// A frame that failed; completed by [`Feed::finish`].
    pub fn failure(&self, failure: &Failure) -> Pending {
        let store_failure = failure.stage == Stage::Store;
        let error = if store_failure {
            self.scrub(&failure.error)
        } else {
            failure.error.clone()
        };
        let topic = failure.topic.clone().unwrap_or_default();
        Pending {
            key: topic_key(&topic),
            topic,
            outcome: Outcome::Failed(format!("{}: {error}", failure.stage)),
            store_failure,
        }
    }

    /// The update, with the record as the live view shows it, made from the JSON published over MQTT
    /// (serializing once per frame: topics can be 64 KiB).
    pub fn finish(&self, pending: Pending, json: &[u8]) -> Update {
        let text = String::from_utf8_lossy(json);
        let text = if self.show_paths {
            text
        } else {
            without_path(&text).map_or(text, Cow::Owned)
        };
        let text = if pending.store_failure {
            Cow::Owned(self.scrub(&text))
        } else {
            text
        };
        Update {
            topic: pending.topic,
            key: pending.key,
            outcome: pending.outcome,
            record: Arc::from(text.as_ref()),
        }
    }

    /// `text` with the paths of frame files (`output.dir/…`) starting with the key's name instead,
    /// unless paths may be shown.
    fn scrub(&self, text: &str) -> String {
        match &self.output_dir {
            Some(dir) if !self.show_paths => text.replace(&format!("{dir}/"), "{output.dir}/"),
            _ => text.to_owned(),
        }
    }
}

/// An [`Update`] waiting for its record's JSON.
#[derive(Debug)]
pub struct Pending {
    topic: String,
    key: u64,
    outcome: Outcome,
    /// Its error may name a frame file's path.
    store_failure: bool,
}

/// A record's JSON without its top-level `path` member, `None` when it has none. serde_json writes
/// records compactly in field order, and every field before `path` is a number or a string (in which
/// a `"` is always escaped), so the first `,"path":` is the member; its value is `null` or a string.
fn without_path(json: &str) -> Option<String> {
    const KEY: &str = ",\"path\":";
    let at = json.find(KEY)?;
    let value = &json[at + KEY.len()..];
    let len = if value.starts_with("null") {
        4
    } else if value.starts_with('"') {
        let mut escaped = false;
        let end = value.char_indices().skip(1).find(|&(_, c)| {
            let closes = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            closes
        })?;
        end.0 + 1
    } else {
        return None;
    };
    Some(format!("{}{}", &json[..at], &value[len..]))
}

/// `image` as `Bytes` without a copy: a slice of `payload` when the image is the payload's own bytes
/// (raw frames), else its own buffer (decoded from base64 or an envelope, made once per frame).
pub fn image_bytes(payload: &Bytes, image: Cow<'_, [u8]>) -> Bytes {
    match image {
        Cow::Owned(bytes) => Bytes::from(bytes),
        Cow::Borrowed(slice) => {
            let (start, len) = (payload.as_ptr() as usize, payload.len());
            let at = slice.as_ptr() as usize;
            if !slice.is_empty() && at >= start && at + slice.len() <= start + len {
                payload.slice_ref(slice)
            } else {
                Bytes::copy_from_slice(slice)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::frame::record::Record;

    fn feed(show_paths: bool, public_url: Option<&str>) -> Feed {
        let http = Http {
            show_paths,
            public_url: public_url.map(str::to_owned),
            ..Http::default()
        };
        Feed::new(&http, Some(Path::new("/srv/frames")))
    }

    #[test]
    fn raw_images_share_the_payload_and_decoded_ones_keep_their_buffer() {
        let payload = Bytes::from_static(b"xx\xff\xd8\xff-image-bytes");
        let shared = image_bytes(&payload, Cow::Borrowed(&payload[2..]));
        assert_eq!(shared.as_ptr(), payload[2..].as_ptr());
        let elsewhere = image_bytes(&payload, Cow::Borrowed(b"other"));
        assert_eq!(&elsewhere[..], b"other");
        let decoded = vec![1, 2, 3];
        let at = decoded.as_ptr();
        assert_eq!(image_bytes(&payload, Cow::Owned(decoded)).as_ptr(), at);
    }

    #[test]
    fn urls_name_the_frame_and_use_the_query_form_when_the_path_would_not_survive() {
        let feed = feed(false, Some("https://cams.example/mqimg/"));
        assert_eq!(
            feed.url("cams/front door", "ab12").unwrap(),
            "https://cams.example/mqimg/latest/cams/front%20door?sha256=ab12"
        );
        assert_eq!(
            feed.url("a//b", "ab12").unwrap(),
            "https://cams.example/mqimg/latest?topic=a%2F%2Fb&sha256=ab12"
        );
        assert_eq!(self::feed(false, None).url("a", "b"), None);
    }

    #[test]
    fn a_success_keeps_its_image_and_drops_its_path_unless_asked() {
        let bytes = include_bytes!("../../../fixtures/seed/seed-frame.jpg");
        let payload = Bytes::from_static(bytes);
        let at = SystemTime::now();
        let mut processed = crate::frame::process(
            &payload,
            Some("cam"),
            at,
            &Default::default(),
            &crate::frame::budget::MemoryBudget::new(1 << 30),
        )
        .unwrap();
        processed.record.path = Some("/srv/frames/cam/x.jpg".into());
        let image = image_bytes(&payload, std::mem::take(&mut processed.image));
        let json = Record::Success(Box::new(processed.record.clone())).to_json();
        let hidden = feed(false, None);
        let pending = hidden.success(&processed.record, image.clone(), 1, at);
        let update = hidden.finish(pending, json.as_bytes());
        assert!(!update.record.contains("path"), "{}", update.record);
        let mut expected: serde_json::Value = serde_json::from_str(&json).unwrap();
        expected.as_object_mut().unwrap().remove("path");
        let got: serde_json::Value = serde_json::from_str(&update.record).unwrap();
        assert_eq!(got, expected, "all but the path");
        let Outcome::Ok(frame) = &update.outcome else {
            panic!("{:?}", update.outcome)
        };
        assert_eq!(
            frame.bytes.as_ptr(),
            payload.as_ptr(),
            "no copy of a raw frame"
        );
        assert_eq!(frame.sha256, processed.record.sha256);
        assert_eq!(update.topic, "cam");
        let shown = feed(true, None);
        let pending = shown.success(&processed.record, image, 1, at);
        let shown = shown.finish(pending, json.as_bytes());
        assert!(shown.record.contains("/srv/frames/cam/x.jpg"));
    }

    #[test]
    fn the_path_member_goes_whatever_its_value_holds() {
        let cut = |json: &str| without_path(json);
        assert_eq!(
            cut(r#"{"a":1,"path":null,"b":2}"#).unwrap(),
            r#"{"a":1,"b":2}"#
        );
        assert_eq!(
            cut(r#"{"t":"x,\"path\":1","path":"a\\\"b,\"path\":","meta":{"path":"m"}}"#).unwrap(),
            r#"{"t":"x,\"path\":1","meta":{"path":"m"}}"#
        );
        assert_eq!(cut(r#"{"a":1}"#), None);
        assert_eq!(cut(r#"{"a":1,"path":"unterminated}"#), None);
    }

    #[test]
    fn paths_stay_out_of_the_live_view_unless_asked() {
        let failure = Failure::new(
            Some("cam"),
            SystemTime::UNIX_EPOCH,
            10,
            Stage::Store,
            "cannot write /srv/frames/cam/x.jpg: permission denied",
        );
        let finish = |feed: &Feed, failure: &Failure| {
            let json = Record::Failure(failure.clone()).to_json();
            feed.finish(feed.failure(failure), json.as_bytes())
        };
        let hidden = finish(&feed(false, None), &failure);
        assert!(!hidden.record.contains("/srv/frames"), "{}", hidden.record);
        assert!(hidden.record.contains("{output.dir}/cam/x.jpg"));
        let Outcome::Failed(error) = &hidden.outcome else {
            panic!("{:?}", hidden.outcome)
        };
        assert_eq!(
            error,
            "store: cannot write {output.dir}/cam/x.jpg: permission denied"
        );
        let shown = finish(&feed(true, None), &failure);
        assert!(shown.record.contains("/srv/frames/cam/x.jpg"));
        // Only file paths are rewritten, and only in storage errors.
        let relative = Feed::new(&Http::default(), Some(Path::new("frames")));
        let queue = Failure::new(
            Some("cam"),
            SystemTime::UNIX_EPOCH,
            1,
            Stage::Queue,
            "decode queue full (6 frames waiting): frames/x",
        );
        assert!(
            finish(&relative, &queue)
                .record
                .contains("6 frames waiting): frames/x")
        );

        let value: serde_json::Value = serde_json::from_str(&hidden.record).unwrap();
        assert_eq!(value["stage"], "store");
    }
}
