//! JSON envelopes: an object whose field (configured, or the first of [`PROBED_FIELDS`] present) holds
//! base64 or a data URI; the object's other fields become the record's `meta`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::base64::base64_at;
use super::data_uri::{data_uri, is_data_uri};
use super::{
    Detected, Location, PROBED_FIELDS, Payload, PayloadError, excerpt, looks_like_bytes_repr,
};

/// How many of a JSON object's fields a message lists.
const FIELDS_LISTED: usize = 8;

/// Reads a JSON envelope: an object whose field (configured or probed) holds base64 or a data URI.
pub(super) fn envelope(
    bytes: &[u8],
    json_field: Option<&str>,
) -> Result<Payload<'static>, PayloadError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| PayloadError::InvalidJson {
        len: bytes.len(),
        excerpt: excerpt(bytes.trim_ascii_start()),
        error: e.to_string(),
    })?;
    let Value::Object(mut map) = value else {
        return Err(PayloadError::JsonNotObject {
            kind: json_kind(&value),
        });
    };
    let Some((field, value)) =
        image_field(&map, json_field).and_then(|key| map.shift_remove_entry(&key))
    else {
        return Err(PayloadError::JsonFieldMissing {
            wanted: match json_field {
                Some(field) => vec![field.to_owned()],
                None => PROBED_FIELDS.iter().map(|&f| f.to_owned()).collect(),
            },
            present: map
                .keys()
                .take(FIELDS_LISTED)
                .map(|k| excerpt(k.as_bytes()))
                .collect(),
            total: map.len(),
        });
    };
    let Value::String(text) = value else {
        return Err(PayloadError::JsonFieldNotString {
            field,
            kind: json_kind(&value),
        });
    };
    let image = field_image(text.as_bytes(), &Location::JsonField(field.clone()))?;
    Ok(Payload {
        image: Cow::Owned(image),
        encoding: Detected::Json,
        json_field: Some(field),
        meta: Some(map),
    })
}

/// The key of the field holding the image: the configured one, else the first probed one present.
fn image_field(map: &Map<String, Value>, json_field: Option<&str>) -> Option<String> {
    if let Some(field) = json_field {
        return map.contains_key(field).then(|| field.to_owned());
    }
    PROBED_FIELDS
        .iter()
        .find(|&&f| map.contains_key(f))
        .map(|&f| f.to_owned())
        .or_else(|| {
            PROBED_FIELDS
                .iter()
                .find_map(|f| map.keys().find(|k| k.eq_ignore_ascii_case(f)).cloned())
        })
}

/// Decodes a JSON field's string: base64 or a data URI.
fn field_image(text: &[u8], at: &Location) -> Result<Vec<u8>, PayloadError> {
    let Some(start) = text.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Err(PayloadError::NoData { at: at.clone() });
    };
    if looks_like_bytes_repr(&text[start..]) {
        return Err(PayloadError::PythonBytesRepr {
            at: at.clone(),
            excerpt: excerpt(&text[start..]),
        });
    }
    if is_data_uri(&text[start..]) {
        data_uri(text, start, at)
    } else {
        base64_at(text, 0, at)
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn wanted_list(wanted: &[String]) -> String {
    match wanted {
        [one] => format!("no field \"{}\"", excerpt(one.as_bytes())),
        _ => format!(
            "none of the fields {} (set json_field to name another)",
            quoted(wanted)
        ),
    }
}

pub(super) fn present_list(present: &[String], total: usize) -> String {
    match total {
        0 => "none (empty object)".to_owned(),
        _ if total > present.len() => {
            format!("{} and {} more", quoted(present), total - present.len())
        }
        _ => quoted(present),
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::frame::payload::tests::{
        auto, auto_err, find, fixture, forced_err, seed, seed_b64, spliced,
    };
    use crate::frame::payload::{Encoding, Found, detect};

    #[test]
    fn json_envelope_keeps_its_other_fields_as_meta_in_order() {
        let bytes = fixture("encoded/seed-frame.json");
        let payload = auto(&bytes).unwrap();
        assert_eq!(payload.encoding, Detected::Json);
        assert_eq!(payload.json_field.as_deref(), Some("image"));
        let meta = payload.meta.unwrap();
        assert_eq!(meta.keys().collect::<Vec<_>>(), ["camera", "ts"]);
        assert_eq!(meta["camera"], "door");
        assert_eq!(meta["ts"], 1_700_000_000);
        assert!(!meta.contains_key("image"));
    }

    #[test]
    fn a_configured_json_field_is_used_and_the_others_are_meta() {
        let b64 = String::from_utf8(seed_b64()).unwrap();
        let text = format!(r#"{{"a":1,"pic":"{b64}","image":5,"z":true}}"#);
        let payload = detect(text.as_bytes(), Encoding::Json, Some("pic")).unwrap();
        assert_eq!(payload.image[..], seed()[..]);
        assert_eq!(payload.json_field.as_deref(), Some("pic"));
        let meta = payload.meta.unwrap();
        assert_eq!(meta.keys().collect::<Vec<_>>(), ["a", "image", "z"]);
        let err = detect(text.as_bytes(), Encoding::Auto, Some("photo")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"JSON object has no field "photo"; its fields are "a", "pic", "image", "z""#
        );
    }

    #[test]
    fn probing_takes_the_first_listed_field_then_ignores_ascii_case() {
        let b64 = String::from_utf8(seed_b64()).unwrap();
        let text = format!(r#"{{"frame":"@@","snapshot":"{b64}","ts":1}}"#);
        let payload = auto(text.as_bytes()).unwrap();
        assert_eq!(payload.json_field.as_deref(), Some("snapshot"));
        let text = format!(r#"{{"ts":1,"imageBase64":"{b64}"}}"#);
        let payload = auto(text.as_bytes()).unwrap();
        assert_eq!(payload.json_field.as_deref(), Some("imageBase64"));
        assert_eq!(payload.image[..], seed()[..]);
    }

    #[test]
    fn a_json_field_may_hold_a_data_uri() {
        let uri = String::from_utf8(fixture("encoded/seed-frame.datauri.txt")).unwrap();
        let text = format!(r#"{{"img":"{uri}","camera":"door"}}"#);
        let payload = auto(text.as_bytes()).unwrap();
        assert_eq!(payload.encoding, Detected::Json);
        assert_eq!(payload.json_field.as_deref(), Some("img"));
        assert_eq!(payload.image[..], seed()[..]);
        let offset = find(uri.as_bytes(), b",") + 7;
        let bad = String::from_utf8(spliced(uri.as_bytes(), offset, b"%")).unwrap();
        let text = format!(r#"{{"img":"{bad}"}}"#);
        let err = auto_err(text.as_bytes());
        assert_eq!(
            err,
            PayloadError::InvalidChar {
                at: Location::JsonField("img".to_owned()),
                found: Found::Char('%'),
                offset,
            }
        );
        assert_eq!(
            err.to_string(),
            format!("invalid base64: character '%' at offset {offset} in JSON field \"img\"")
        );
    }

    #[test]
    fn json_field_offsets_count_in_the_unescaped_string() {
        let bytes = fixture("encoded/seed-frame.json");
        let start = find(&bytes, br#""image":""#) + 9;
        let err = auto_err(&spliced(&bytes, start + 100, b"!"));
        assert_eq!(
            err,
            PayloadError::InvalidChar {
                at: Location::JsonField("image".to_owned()),
                found: Found::Char('!'),
                offset: 100,
            }
        );
        // JSON escapes are undone first: "\/" is '/', and "\n" is a line break to skip.
        let escaped = String::from_utf8(seed_b64())
            .unwrap()
            .replace('/', "\\/")
            .replacen('A', "\\nA", 3);
        let text = format!(r#"{{"image":"{escaped}"}}"#);
        assert_eq!(auto(text.as_bytes()).unwrap().image[..], seed()[..]);
    }

    #[test]
    fn json_envelope_errors_name_types_and_fields() {
        let cases: [(&str, &str); 7] = [
            (
                "[1,2]",
                "JSON top-level value is an array, expected an object",
            ),
            (
                r#""/9j/4AAQ""#,
                "JSON top-level value is a string, expected an object",
            ),
            (
                r#"{"image":42}"#,
                "JSON field \"image\" is a number, expected a string holding base64 or a data URI",
            ),
            (r#"{"data":null}"#, "JSON field \"data\" is null"),
            (
                r#"{"image":" \n"}"#,
                "no base64 data in JSON field \"image\"",
            ),
            (
                r#"{"camera":"door","ts":1}"#,
                r#"JSON object has none of the fields "image", "imagebase64", "img", "data", "snapshot", "frame" (set json_field to name another); its fields are "camera", "ts""#,
            ),
            ("{}", "its fields are none (empty object)"),
        ];
        for (text, expected) in cases {
            let err = auto_err(text.as_bytes());
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
        let many: Vec<String> = (0..20).map(|i| format!(r#""f{i}":{i}"#)).collect();
        let err = auto_err(format!("{{{}}}", many.join(",")).as_bytes());
        assert!(err.to_string().ends_with(r#""f7" and 12 more"#), "{err}");
    }

    #[test]
    fn invalid_json_reports_the_parser_position() {
        let bytes = fixture("encoded/seed-frame.json");
        let cut = &bytes[..bytes.len() - 10];
        let err = auto_err(cut);
        let PayloadError::InvalidJson { len, error, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*len, cut.len());
        assert!(error.contains("EOF while parsing"), "{error}");
        assert!(matches!(
            forced_err(b"not json", Encoding::Json),
            PayloadError::InvalidJson { .. }
        ));
    }
}
