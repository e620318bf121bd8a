//! Payload detection: the bytes of one MQTT message → the image bytes inside and how they were wrapped.
//!
//! Pure: bytes in, values out. No I/O, no clocks. Decoding the image itself is [`crate::decode`]'s job:
//! base64 text that decodes to bytes which are not an image passes here and fails there.
//!
//! `auto` tries, in order: JPEG/PNG magic bytes (the payload is borrowed as-is), a data URI
//! (`data:image/...;base64,...`), a JSON envelope (the first non-whitespace byte is `{`, `[` or `"`),
//! then base64. Base64 is strict: standard or URL-safe alphabet (not both), optional padding,
//! spaces, tabs and line breaks ignored, anything else an error that names the character and its
//! 0-based byte offset in the payload (in the field's string for JSON envelopes).

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use base64::DecodeError;
use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::GeneralPurposeConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How a payload is to be read: `auto` detects, the others force one form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    #[default]
    Auto,
    Raw,
    Base64,
    DataUri,
    Json,
}

/// How a payload turned out to be wrapped (what `auto` found, or what was forced).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Detected {
    Raw,
    Base64,
    DataUri,
    Json,
}

/// The image inside a payload.
#[derive(Debug)]
pub struct Payload<'a> {
    /// The image bytes exactly as carried: borrowed for raw payloads, decoded otherwise.
    pub image: Cow<'a, [u8]>,
    pub encoding: Detected,
    /// The JSON envelope field that held the image (only for [`Detected::Json`]).
    pub json_field: Option<String>,
    /// The envelope's other fields (only for [`Detected::Json`]).
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The envelope fields probed, in this order, when no `json_field` is configured. An exact match
/// wins; failing that, the first name matching without regard to ASCII case (`imageBase64`).
pub const PROBED_FIELDS: [&str; 6] = ["image", "imagebase64", "img", "data", "snapshot", "frame"];

/// Why a payload holds no usable image bytes. Messages are one lowercase line with evidence.
///
/// Offsets are 0-based byte offsets from the start of the whole payload, or, for base64 inside a
/// JSON envelope, from the start of the field's (unescaped) string ([`Location`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("empty: 0 bytes")]
    Empty,
    #[error("only whitespace: {len} bytes")]
    WhitespaceOnly { len: usize },
    /// `auto` found no known form. `head` is the first bytes in hex; `base64` is why base64 failed.
    #[error("{len} bytes starting {head} are not JPEG, PNG, a data URI, JSON or base64 ({base64})")]
    Unrecognized {
        len: usize,
        head: String,
        base64: Box<PayloadError>,
    },
    #[error(
        "looks like a Python bytes repr (b'...'){at}: the producer published str(bytes) instead of \
         the bytes; publish the bytes themselves (for base64 text, b64encode(...).decode()), \
         starts \"{excerpt}\""
    )]
    PythonBytesRepr { at: Location, excerpt: String },
    #[error("data URI{at} has MIME type \"{mime}\", not an image type (image/...)")]
    NotImageMime { at: Location, mime: String },
    #[error("malformed data URI{at}: {reason}, starts \"{excerpt}\"")]
    BadDataUri {
        at: Location,
        reason: &'static str,
        excerpt: String,
    },
    #[error("invalid JSON ({len} bytes, starts \"{excerpt}\"): {error}")]
    InvalidJson {
        len: usize,
        excerpt: String,
        error: String,
    },
    #[error("JSON top-level value is {kind}, expected an object")]
    JsonNotObject { kind: &'static str },
    #[error(
        "JSON object has {}; its fields are {}",
        wanted_list(.wanted),
        present_list(.present, *.total)
    )]
    JsonFieldMissing {
        /// The configured field, or [`PROBED_FIELDS`].
        wanted: Vec<String>,
        /// The first few fields the object has (escaped, shortened).
        present: Vec<String>,
        /// How many fields the object has.
        total: usize,
    },
    #[error(
        "JSON field \"{}\" is {kind}, expected a string holding base64 or a data URI",
        excerpt(.field.as_bytes())
    )]
    JsonFieldNotString { field: String, kind: &'static str },
    #[error("no base64 data{at}")]
    NoData { at: Location },
    #[error("invalid base64: {found} at offset {offset}{at}")]
    InvalidChar {
        at: Location,
        found: Found,
        offset: usize,
    },
    #[error(
        "invalid base64: misplaced padding '=' at offset {offset}{at} ('=' may only end the last \
         group of 4)"
    )]
    MisplacedPadding { at: Location, offset: usize },
    #[error(
        "invalid base64: {data_chars} data characters{at}, 1 more than a multiple of 4 \
         (truncated or corrupted)"
    )]
    BadLength { at: Location, data_chars: usize },
    #[error(
        "invalid base64: last {found} at offset {offset}{at} has non-zero unused bits \
         (truncated or corrupted)"
    )]
    TrailingBits {
        at: Location,
        found: Found,
        offset: usize,
    },
    #[error(
        "invalid base64: mixes the standard alphabet ({standard} at offset {standard_offset}) and \
         the url-safe alphabet ({url_safe} at offset {url_safe_offset}){at}"
    )]
    MixedAlphabets {
        at: Location,
        standard: Found,
        standard_offset: usize,
        url_safe: Found,
        url_safe_offset: usize,
    },
}

/// Which text a base64 error's offset counts in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The whole MQTT payload.
    Payload,
    /// The string of this JSON envelope field, after JSON unescaping.
    JsonField(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Payload => Ok(()),
            Self::JsonField(field) => write!(f, " in JSON field \"{}\"", excerpt(field.as_bytes())),
        }
    }
}

/// What sat where base64 was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// A character (ASCII, or a whole UTF-8 sequence such as `é`).
    Char(char),
    /// A byte that does not start valid UTF-8.
    Byte(u8),
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Char(c) => write!(f, "character '{}'", c.escape_debug()),
            Self::Byte(b) => write!(f, "byte 0x{b:02x} (not UTF-8)"),
        }
    }
}

const JPEG_MAGIC: &[u8] = &[0xFF, 0xD8, 0xFF];
const PNG_MAGIC: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
/// The `,` ending a data URI header must come within this many bytes of `data:`.
const DATA_URI_HEADER_MAX: usize = 256;
/// Longest excerpt of payload text quoted in a message, in characters.
const EXCERPT_CHARS: usize = 40;
/// How many leading bytes an unrecognized payload shows in hex.
const HEAD_BYTES: usize = 16;
/// How many of a JSON object's fields a message lists.
const FIELDS_LISTED: usize = 8;
/// In `auto`, text that stops being base64 within this many data characters never was base64.
const BASE64_EVIDENCE_CHARS: usize = 16;

/// Padding optional (`Indifferent`); non-zero unused bits in the last symbol are rejected.
const BASE64_CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
type Base64Engine = base64::engine::Simd;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
type Base64Engine = base64::engine::GeneralPurpose;

static STANDARD: LazyLock<Base64Engine> = LazyLock::new(|| base64_engine(false));
static URL_SAFE: LazyLock<Base64Engine> = LazyLock::new(|| base64_engine(true));

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn base64_engine(url_safe: bool) -> Base64Engine {
    if url_safe {
        base64::engine::Simd::url_safe(BASE64_CONFIG)
    } else {
        base64::engine::Simd::standard(BASE64_CONFIG)
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn base64_engine(url_safe: bool) -> Base64Engine {
    let alphabet = if url_safe {
        &base64::alphabet::URL_SAFE
    } else {
        &base64::alphabet::STANDARD
    };
    base64::engine::GeneralPurpose::new(alphabet, BASE64_CONFIG)
}

/// Finds the image bytes in `bytes`.
///
/// `json_field` names the envelope field holding the image; when `None`, [`PROBED_FIELDS`] are
/// probed.
pub fn detect<'a>(
    bytes: &'a [u8],
    encoding: Encoding,
    json_field: Option<&str>,
) -> Result<Payload<'a>, PayloadError> {
    if bytes.is_empty() {
        return Err(PayloadError::Empty);
    }
    if encoding == Encoding::Raw
        || (encoding == Encoding::Auto
            && (bytes.starts_with(JPEG_MAGIC) || bytes.starts_with(PNG_MAGIC)))
    {
        return Ok(Payload::new(Cow::Borrowed(bytes), Detected::Raw));
    }
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or(PayloadError::WhitespaceOnly { len: bytes.len() })?;
    let text = &bytes[start..];
    if looks_like_bytes_repr(text) {
        return Err(PayloadError::PythonBytesRepr {
            at: Location::Payload,
            excerpt: excerpt(text),
        });
    }
    let at = Location::Payload;
    match encoding {
        Encoding::Raw => Ok(Payload::new(Cow::Borrowed(bytes), Detected::Raw)),
        Encoding::Base64 => Ok(Payload::new(
            base64_at(bytes, 0, &at)?.into(),
            Detected::Base64,
        )),
        Encoding::DataUri => Ok(Payload::new(
            data_uri(bytes, start, &at)?.into(),
            Detected::DataUri,
        )),
        Encoding::Json => envelope(bytes, json_field),
        Encoding::Auto if is_data_uri(text) => Ok(Payload::new(
            data_uri(bytes, start, &at)?.into(),
            Detected::DataUri,
        )),
        Encoding::Auto if matches!(text[0], b'{' | b'[' | b'"') => envelope(bytes, json_field),
        Encoding::Auto => match decode_base64(bytes) {
            Ok(image) => Ok(Payload::new(image.into(), Detected::Base64)),
            Err(fail) => {
                let never_base64 = matches!(
                    fail,
                    Base64Fail::Invalid { data_index, .. } if data_index < BASE64_EVIDENCE_CHARS
                );
                let error = fail.into_error(bytes, 0, &at);
                Err(if never_base64 {
                    PayloadError::Unrecognized {
                        len: bytes.len(),
                        head: hex_head(bytes),
                        base64: Box::new(error),
                    }
                } else {
                    error
                })
            }
        },
    }
}

impl<'a> Payload<'a> {
    fn new(image: Cow<'a, [u8]>, encoding: Detected) -> Self {
        Self {
            image,
            encoding,
            json_field: None,
            meta: None,
        }
    }
}

/// Reads a JSON envelope: an object whose field (configured or probed) holds base64 or a data URI.
fn envelope(bytes: &[u8], json_field: Option<&str>) -> Result<Payload<'static>, PayloadError> {
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

fn is_data_uri(text: &[u8]) -> bool {
    text.get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"data:"))
}

/// Decodes the data URI that starts at `text[start..]`: `data:image/<type>[;params];base64,<data>`.
fn data_uri(text: &[u8], start: usize, at: &Location) -> Result<Vec<u8>, PayloadError> {
    let uri = &text[start..];
    let bad = |reason| PayloadError::BadDataUri {
        at: at.clone(),
        reason,
        excerpt: excerpt(uri),
    };
    if !is_data_uri(uri) {
        return Err(bad("does not start with \"data:\""));
    }
    let comma = uri
        .iter()
        .take(DATA_URI_HEADER_MAX)
        .position(|&b| b == b',')
        .ok_or_else(|| bad("no ',' within the first 256 bytes"))?;
    let header = String::from_utf8_lossy(&uri[5..comma]);
    let mut params = header.split(';');
    let mime = params.next().unwrap_or_default().trim();
    let is_image = mime.len() > 6
        && mime
            .get(..6)
            .is_some_and(|t| t.eq_ignore_ascii_case("image/"));
    if !is_image {
        return Err(PayloadError::NotImageMime {
            at: at.clone(),
            mime: excerpt(mime.as_bytes()),
        });
    }
    if !params
        .next_back()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("base64"))
    {
        return Err(bad("not base64 (no \";base64\" before the ',')"));
    }
    let data_start = start + comma + 1;
    if text[data_start..].iter().all(|&b| is_base64_space(b)) {
        return Err(bad("no data after the ','"));
    }
    base64_at(&text[data_start..], data_start, at)
}

/// Decodes base64 `text` that begins at offset `base` of the text `at` names.
fn base64_at(text: &[u8], base: usize, at: &Location) -> Result<Vec<u8>, PayloadError> {
    decode_base64(text).map_err(|fail| fail.into_error(text, base, at))
}

/// A base64 failure, offsets into the text handed to [`decode_base64`] (whitespace included).
#[derive(Debug)]
enum Base64Fail {
    NoData,
    /// `data_index` counts data characters (whitespace excluded) before the culprit.
    Invalid {
        offset: usize,
        data_index: usize,
    },
    Padding {
        offset: usize,
    },
    Length {
        data_chars: usize,
    },
    TrailingBits {
        offset: usize,
    },
    Mixed {
        standard: usize,
        url_safe: usize,
    },
}

impl Base64Fail {
    fn into_error(self, text: &[u8], base: usize, at: &Location) -> PayloadError {
        let at = at.clone();
        match self {
            Self::NoData => PayloadError::NoData { at },
            Self::Invalid { offset, .. } => PayloadError::InvalidChar {
                at,
                found: found_at(text, offset),
                offset: base + offset,
            },
            Self::Padding { offset } => PayloadError::MisplacedPadding {
                at,
                offset: base + offset,
            },
            Self::Length { data_chars } => PayloadError::BadLength { at, data_chars },
            Self::TrailingBits { offset } => PayloadError::TrailingBits {
                at,
                found: found_at(text, offset),
                offset: base + offset,
            },
            Self::Mixed { standard, url_safe } => PayloadError::MixedAlphabets {
                at,
                standard: found_at(text, standard),
                standard_offset: base + standard,
                url_safe: found_at(text, url_safe),
                url_safe_offset: base + url_safe,
            },
        }
    }
}

/// Space, tab, CR and LF: what base64 text may carry between its characters.
fn is_base64_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Decodes standard or URL-safe base64, padding optional, whitespace ignored.
///
/// Text without whitespace goes to the SIMD decoder as is; only text with whitespace is copied
/// (run by run) without it.
fn decode_base64(text: &[u8]) -> Result<Vec<u8>, Base64Fail> {
    let data: Cow<'_, [u8]> = if text.iter().any(|&b| is_base64_space(b)) {
        let mut data = Vec::with_capacity(text.len());
        for run in text.split(|&b| is_base64_space(b)) {
            data.extend_from_slice(run);
        }
        Cow::Owned(data)
    } else {
        Cow::Borrowed(text)
    };
    if data.is_empty() {
        return Err(Base64Fail::NoData);
    }
    let spaced = data.len() != text.len();
    let in_text = |index: usize| {
        if spaced {
            original_offset(text, index)
        } else {
            index
        }
    };
    let error = match first_error_decode(&STANDARD, &data) {
        Ok(image) => return Ok(image),
        Err(DecodeError::InvalidByte(url_safe, b'-' | b'_')) => {
            match first_error_decode(&URL_SAFE, &data) {
                Ok(image) => return Ok(image),
                Err(DecodeError::InvalidByte(standard, b'+' | b'/')) => {
                    return Err(Base64Fail::Mixed {
                        standard: in_text(standard),
                        url_safe: in_text(url_safe),
                    });
                }
                Err(error) => error,
            }
        }
        Err(error) => error,
    };
    Err(match error {
        DecodeError::InvalidByte(index, b'=') => Base64Fail::Padding {
            offset: in_text(index),
        },
        DecodeError::InvalidByte(index, _) => Base64Fail::Invalid {
            offset: in_text(index),
            data_index: index,
        },
        DecodeError::InvalidLength(data_chars) => Base64Fail::Length { data_chars },
        DecodeError::InvalidLastSymbol { offset, .. } => Base64Fail::TrailingBits {
            offset: in_text(offset),
        },
        // Not produced with `DecodePaddingMode::Indifferent`; the padding is what is wrong.
        DecodeError::InvalidPadding => Base64Fail::Padding {
            offset: in_text(data.iter().position(|&b| b == b'=').unwrap_or(0)),
        },
    })
}

/// Decodes `data`, reporting the first invalid byte.
///
/// With a length of 1 mod 4 the decoder checks the last byte before the others; an invalid byte
/// earlier on is then found by decoding the text without that last byte.
fn first_error_decode(engine: &Base64Engine, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    match engine.decode(data) {
        Err(DecodeError::InvalidByte(index, byte))
            if index + 1 == data.len() && data.len() % 4 == 1 =>
        {
            match engine.decode(&data[..index]) {
                Err(earlier @ DecodeError::InvalidByte(..)) => Err(earlier),
                _ => Err(DecodeError::InvalidByte(index, byte)),
            }
        }
        other => other,
    }
}

/// The offset in `text` of its `index`-th byte that is not base64 whitespace.
fn original_offset(text: &[u8], index: usize) -> usize {
    text.iter()
        .enumerate()
        .filter(|&(_, &b)| !is_base64_space(b))
        .nth(index)
        .map_or(text.len(), |(offset, _)| offset)
}

/// The character (or, if not UTF-8, the byte) at `text[offset]`.
fn found_at(text: &[u8], offset: usize) -> Found {
    let rest = text.get(offset..).unwrap_or_default();
    let byte = rest.first().copied().unwrap_or_default();
    rest.utf8_chunks()
        .next()
        .and_then(|chunk| chunk.valid().chars().next())
        .map_or(Found::Byte(byte), Found::Char)
}

/// `b'...'` or `b"..."`: Python's `str()` of a bytes object.
fn looks_like_bytes_repr(text: &[u8]) -> bool {
    match text.trim_ascii() {
        [b'b', quote @ (b'\'' | b'"'), .., last] => last == quote,
        _ => false,
    }
}

/// Up to [`EXCERPT_CHARS`] characters of `bytes` (lossy UTF-8), escaped, `…` when cut.
fn excerpt(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(EXCERPT_CHARS * 4)];
    let text = String::from_utf8_lossy(head);
    let mut chars = text.chars();
    let mut out: String = chars
        .by_ref()
        .take(EXCERPT_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if chars.next().is_some() || head.len() < bytes.len() {
        out.push('…');
    }
    out
}

/// The first [`HEAD_BYTES`] bytes in hex, `…` when there are more.
fn hex_head(bytes: &[u8]) -> String {
    let mut hex = bytes[..bytes.len().min(HEAD_BYTES)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    if bytes.len() > HEAD_BYTES {
        hex.push_str(" …");
    }
    hex
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

fn wanted_list(wanted: &[String]) -> String {
    match wanted {
        [one] => format!("no field \"{}\"", excerpt(one.as_bytes())),
        _ => format!(
            "none of the fields {} (set json_field to name another)",
            quoted(wanted)
        ),
    }
}

fn present_list(present: &[String], total: usize) -> String {
    match total {
        0 => "none (empty object)".to_owned(),
        _ if total > present.len() => {
            format!("{} and {} more", quoted(present), total - present.len())
        }
        _ => quoted(present),
    }
}
