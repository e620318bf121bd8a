//! Payload detection: the bytes of one MQTT message → the image bytes inside and how they were wrapped.
//!
//! Pure: bytes in, values out. No I/O, no clocks. Decoding the image itself is [`crate::frame::decode`]'s job:
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
    #[error("empty payload (0 bytes)")]
    Empty,
    #[error("whitespace only ({len} bytes), no image data")]
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
///
/// # Errors
///
/// When the payload is empty or, unless `encoding` is [`Encoding::Raw`], holds no image bytes in
/// the expected (or any detected) form. See [`PayloadError`].
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

/// Whether `text` holds base64 whitespace. No early exit inside a block, so that it vectorises.
fn has_base64_space(text: &[u8]) -> bool {
    text.chunks(64).any(|block| {
        block
            .iter()
            .fold(false, |seen, &b| seen | is_base64_space(b))
    })
}

/// The offset of the first base64 whitespace byte in `text`, or its length. Skips clean 16-byte
/// blocks with a vectorised check first.
fn next_base64_space(text: &[u8]) -> usize {
    let mut start = 0;
    for block in text.chunks_exact(16) {
        if block
            .iter()
            .fold(false, |seen, &b| seen | is_base64_space(b))
        {
            break;
        }
        start += 16;
    }
    text[start..]
        .iter()
        .position(|&b| is_base64_space(b))
        .map_or(text.len(), |run| start + run)
}

/// Whether `text` holds base64 whitespace, checking every byte (no early exit: it vectorises).
fn has_space_in_line(text: &[u8]) -> bool {
    text.iter()
        .fold(false, |seen, &b| seen | is_base64_space(b))
}

/// `text` without its base64 whitespace, copied run by run.
///
/// Wrapped base64 (MIME, PEM) has lines of one width: the last run's length is tried first, so a
/// line costs one vectorised check instead of a byte-by-byte search.
fn strip_base64_space(text: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(text.len());
    let mut rest = text;
    let mut line = 0;
    while !rest.is_empty() {
        let run = if line > 0
            && rest.get(line).is_some_and(|&b| is_base64_space(b))
            && !has_space_in_line(&rest[..line])
        {
            line
        } else {
            next_base64_space(rest)
        };
        data.extend_from_slice(&rest[..run]);
        if run > 0 {
            line = run;
        }
        let spaces = rest[run..]
            .iter()
            .take_while(|&&b| is_base64_space(b))
            .count();
        rest = &rest[run + spaces..];
    }
    data
}

/// Decodes standard or URL-safe base64, padding optional, whitespace ignored.
///
/// Text without whitespace goes to the SIMD decoder as is; only text with whitespace is copied
/// without it.
fn decode_base64(text: &[u8]) -> Result<Vec<u8>, Base64Fail> {
    let data: Cow<'_, [u8]> = if has_base64_space(text) {
        Cow::Owned(strip_base64_space(text))
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

/// Up to [`EXCERPT_CHARS`] characters of `bytes` (lossy UTF-8), escaped for double quotes, `…`
/// when cut.
fn excerpt(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(EXCERPT_CHARS * 4)];
    let text = String::from_utf8_lossy(head);
    let mut chars = text.chars();
    let mut out = String::new();
    for c in chars.by_ref().take(EXCERPT_CHARS) {
        // Quoted in double quotes by the messages: a single quote needs no escape.
        if c == '\'' {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
    }
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

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    fn photo() -> Vec<u8> {
        fixture("frames/photo-640x480.jpg")
    }

    fn seed() -> Vec<u8> {
        fixture("seed/seed-frame.jpg")
    }

    fn seed_b64() -> Vec<u8> {
        fixture("seed/seed-frame.b64")
    }

    fn auto(bytes: &[u8]) -> Result<Payload<'_>, PayloadError> {
        detect(bytes, Encoding::Auto, None)
    }

    fn auto_err(bytes: &[u8]) -> PayloadError {
        auto(bytes).unwrap_err()
    }

    fn forced_err(bytes: &[u8], encoding: Encoding) -> PayloadError {
        detect(bytes, encoding, None).unwrap_err()
    }

    /// The offset of the first occurrence of `needle` in `haystack`.
    fn find(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    }

    /// Replaces the byte at `offset` by `with`.
    fn spliced(bytes: &[u8], offset: usize, with: &[u8]) -> Vec<u8> {
        [&bytes[..offset], with, &bytes[offset + 1..]].concat()
    }

    #[test]
    fn every_encoded_fixture_decodes_to_its_frame_in_auto_and_forced_mode() {
        let cases = [
            ("photo-640x480.b64", Encoding::Base64, Detected::Base64),
            ("photo-640x480.mime.b64", Encoding::Base64, Detected::Base64),
            (
                "photo-640x480.urlsafe.b64",
                Encoding::Base64,
                Detected::Base64,
            ),
            (
                "photo-640x480.datauri.txt",
                Encoding::DataUri,
                Detected::DataUri,
            ),
            ("photo-640x480.json", Encoding::Json, Detected::Json),
            ("seed-frame.mime.b64", Encoding::Base64, Detected::Base64),
            ("seed-frame.urlsafe.b64", Encoding::Base64, Detected::Base64),
            (
                "seed-frame.datauri.txt",
                Encoding::DataUri,
                Detected::DataUri,
            ),
            ("seed-frame.json", Encoding::Json, Detected::Json),
        ];
        let (photo, seed) = (photo(), seed());
        for (file, forced, detected) in cases {
            let bytes = fixture(&format!("encoded/{file}"));
            let frame = if file.starts_with("photo") {
                &photo
            } else {
                &seed
            };
            for encoding in [Encoding::Auto, forced] {
                let payload = detect(&bytes, encoding, None)
                    .unwrap_or_else(|e| panic!("{file} ({encoding:?}): {e}"));
                assert_eq!(payload.encoding, detected, "{file}");
                assert!(matches!(payload.image, Cow::Owned(_)), "{file}");
                assert!(payload.image[..] == frame[..], "{file} ({encoding:?})");
            }
        }
        let text = seed_b64();
        let payload = auto(&text).unwrap();
        assert_eq!(
            (payload.encoding, &payload.image[..]),
            (Detected::Base64, &seed[..])
        );
    }

    #[test]
    fn raw_jpeg_and_png_are_borrowed_as_is() {
        for file in [
            "frames/photo-640x480.jpg",
            "frames/photo-640x480.png",
            "seed/seed-frame.jpg",
        ] {
            let bytes = fixture(file);
            for encoding in [Encoding::Auto, Encoding::Raw] {
                let payload = detect(&bytes, encoding, Some("image")).unwrap();
                assert_eq!(payload.encoding, Detected::Raw);
                let Cow::Borrowed(image) = payload.image else {
                    panic!("{file} was copied")
                };
                assert!(std::ptr::eq(image, &bytes[..]), "{file}");
                assert_eq!((payload.json_field, payload.meta), (None, None));
            }
        }
    }

    #[test]
    fn forced_raw_takes_any_non_empty_bytes_as_they_are() {
        let bytes = seed_b64();
        let payload = detect(&bytes, Encoding::Raw, None).unwrap();
        assert!(matches!(payload.image, Cow::Borrowed(b) if b == &bytes[..]));
        assert_eq!(payload.encoding, Detected::Raw);
        let payload = detect(b"  \n", Encoding::Raw, None).unwrap();
        assert_eq!(&payload.image[..], b"  \n");
    }

    #[test]
    fn invalid_chars_fixture_names_the_first_bad_char_and_its_offset() {
        let bytes = fixture("bad/invalid-chars.b64");
        let offset = bytes.iter().position(|&b| b == b'!').unwrap();
        let alphabet = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/');
        assert!(bytes[..offset].iter().all(alphabet));
        for encoding in [Encoding::Auto, Encoding::Base64] {
            let err = forced_err(&bytes, encoding);
            assert_eq!(
                err,
                PayloadError::InvalidChar {
                    at: Location::Payload,
                    found: Found::Char('!'),
                    offset,
                }
            );
            let message = err.to_string();
            assert!(message.contains("'!'"), "{message}");
            assert!(message.contains(&format!("offset {offset}")), "{message}");
        }
    }

    #[test]
    fn a_non_ascii_char_is_named_as_its_utf8_char() {
        let bytes = fixture("bad/invalid-chars.b64");
        let offset = find(&bytes, "é".as_bytes());
        // Keep everything up to the 'é', minus the earlier invalid chars, then a clean tail.
        let head: Vec<u8> = bytes[..offset]
            .iter()
            .copied()
            .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
            .collect();
        let payload = [&head[..], "é".as_bytes(), b"QUJD"].concat();
        let err = auto_err(&payload);
        assert_eq!(
            err,
            PayloadError::InvalidChar {
                at: Location::Payload,
                found: Found::Char('é'),
                offset: head.len(),
            }
        );
        assert!(err.to_string().contains("character 'é'"), "{err}");
    }

    #[test]
    fn forcing_base64_on_a_raw_jpeg_names_the_first_byte() {
        let err = forced_err(&seed(), Encoding::Base64);
        assert_eq!(
            err,
            PayloadError::InvalidChar {
                at: Location::Payload,
                found: Found::Byte(0xff),
                offset: 0,
            }
        );
        assert_eq!(
            err.to_string(),
            "invalid base64: byte 0xff (not UTF-8) at offset 0"
        );
    }

    #[test]
    fn bad_padding_fixture_reports_its_data_char_count() {
        let bytes = fixture("bad/bad-padding.b64");
        assert_eq!(bytes.len() % 4, 1);
        let err = auto_err(&bytes);
        assert_eq!(
            err,
            PayloadError::BadLength {
                at: Location::Payload,
                data_chars: bytes.len(),
            }
        );
        assert!(err.to_string().contains("3469 data characters"), "{err}");
        // Line breaks do not count as data characters.
        let wrapped: Vec<u8> = bytes
            .chunks(76)
            .flat_map(|line| [line, b"\r\n"].concat())
            .collect();
        assert_eq!(auto_err(&wrapped), err);
    }

    #[test]
    fn padding_is_optional_but_must_end_the_data() {
        let padded = fixture("encoded/photo-640x480.b64");
        assert!(padded.ends_with(b"="));
        let unpadded = padded.trim_ascii_end().strip_suffix(b"=").unwrap();
        assert_eq!(auto(unpadded).unwrap().image[..], photo()[..]);
        assert_eq!(
            auto_err(b"QUJD=QUJD"),
            PayloadError::MisplacedPadding {
                at: Location::Payload,
                offset: 4,
            }
        );
        assert_eq!(
            auto_err(b"QUJDRA===="),
            PayloadError::MisplacedPadding {
                at: Location::Payload,
                offset: 6,
            }
        );
        let offset = padded.len() - 1;
        let err = auto_err(&[&padded[..], b"QQ"].concat());
        assert_eq!(
            err,
            PayloadError::MisplacedPadding {
                at: Location::Payload,
                offset,
            }
        );
    }

    #[test]
    fn non_zero_unused_bits_in_the_last_char_are_rejected() {
        // "QUI=" is "AB"; 'J' differs from 'I' only in bits that no output byte holds.
        assert_eq!(&auto(b"QUI=").unwrap().image[..], b"AB");
        assert_eq!(
            auto_err(b"QUJ="),
            PayloadError::TrailingBits {
                at: Location::Payload,
                found: Found::Char('J'),
                offset: 2,
            }
        );
    }

    #[test]
    fn mime_wrapped_offsets_count_the_removed_line_breaks() {
        let bytes = fixture("encoded/photo-640x480.mime.b64");
        let offset = 76 * 10 + 10 + 5; // line 11, after 10 LFs
        assert!(bytes[offset].is_ascii_alphanumeric());
        let err = auto_err(&spliced(&bytes, offset, b"*"));
        assert_eq!(
            err,
            PayloadError::InvalidChar {
                at: Location::Payload,
                found: Found::Char('*'),
                offset,
            }
        );
    }

    #[test]
    fn whitespace_is_stripped_exactly_whatever_its_layout() {
        let b64 = seed_b64();
        let naive = |text: &[u8]| -> Vec<u8> {
            text.iter()
                .copied()
                .filter(|&b| !is_base64_space(b))
                .collect()
        };
        let mut layouts: Vec<Vec<u8>> = [64, 76, 1, 3]
            .iter()
            .flat_map(|&width| {
                [&b"\n"[..], b"\r\n", b" \t"].map(|eol| {
                    b64.chunks(width)
                        .flat_map(|line| [line, eol].concat())
                        .collect()
                })
            })
            .collect();
        // Irregular gaps from a fixed linear congruential sequence, plus leading spaces.
        let mut state = 7_u32;
        let mut irregular = b"  \t".to_vec();
        for &b in &b64 {
            irregular.push(b);
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            if state >> 28 == 0 {
                irregular.extend_from_slice(&b" \r\n\t"[..=(state >> 24 & 3) as usize]);
            }
        }
        layouts.push(irregular);
        for text in &layouts {
            assert_eq!(strip_base64_space(text), b64);
            assert_eq!(naive(text), b64);
            assert_eq!(auto(text).unwrap().image[..], seed()[..]);
        }
        assert!(!has_base64_space(&b64));
        assert_eq!(next_base64_space(&b64), b64.len());
    }

    #[test]
    fn a_dangling_last_byte_does_not_hide_an_earlier_invalid_char() {
        // 33 characters (1 mod 4) whose last one is invalid too: the first one is reported.
        let text = b"QUJDQUJDQUJDQUJDQUJD#QUJDQUJDQUJ!";
        assert_eq!(text.len() % 4, 1);
        assert_eq!(
            auto_err(text),
            PayloadError::InvalidChar {
                at: Location::Payload,
                found: Found::Char('#'),
                offset: 20,
            }
        );
        let text = b"QUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJ!";
        assert!(matches!(
            auto_err(&[&text[..], b"A"].concat()),
            PayloadError::InvalidChar {
                found: Found::Char('!'),
                offset: 31,
                ..
            }
        ));
    }

    #[test]
    fn mixing_standard_and_url_safe_alphabets_is_rejected() {
        let standard = seed_b64();
        let slash = standard.iter().position(|&b| b == b'/').unwrap();
        let offset = 2000;
        assert!(standard[offset].is_ascii_alphanumeric());
        let mixed = spliced(&standard, offset, b"_");
        let err = auto_err(&mixed);
        assert_eq!(
            err,
            PayloadError::MixedAlphabets {
                at: Location::Payload,
                standard: Found::Char('/'),
                standard_offset: slash,
                url_safe: Found::Char('_'),
                url_safe_offset: offset,
            }
        );
        assert!(err.to_string().contains("'/' at offset"), "{err}");
        // The url-safe fixture with one standard character spliced in.
        let url_safe = fixture("encoded/seed-frame.urlsafe.b64");
        let first_url = url_safe
            .iter()
            .position(|&b| b == b'-' || b == b'_')
            .unwrap();
        let mixed = spliced(&url_safe, 3000, b"+");
        assert!(matches!(
            auto_err(&mixed),
            PayloadError::MixedAlphabets { standard_offset: 3000, url_safe_offset, .. }
                if url_safe_offset == first_url
        ));
    }

    #[test]
    fn empty_and_whitespace_only_payloads_fail_in_every_mode() {
        let empty = fixture("bad/empty.jpg");
        for encoding in [
            Encoding::Auto,
            Encoding::Raw,
            Encoding::Base64,
            Encoding::DataUri,
            Encoding::Json,
        ] {
            assert_eq!(forced_err(&empty, encoding), PayloadError::Empty);
            if encoding != Encoding::Raw {
                assert_eq!(
                    forced_err(b" \r\n\t ", encoding),
                    PayloadError::WhitespaceOnly { len: 5 }
                );
            }
        }
    }

    #[test]
    fn random_binary_is_unrecognized_and_shows_its_first_bytes() {
        let bytes = fixture("bad/random-65536.bin");
        let err = auto_err(&bytes);
        let PayloadError::Unrecognized { len, head, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*len, 65536);
        assert!(head.starts_with(&format!("{:02x} {:02x}", bytes[0], bytes[1])));
        let message = err.to_string();
        assert!(message.contains("65536 bytes starting"), "{message}");
        assert!(
            message.contains("not JPEG, PNG, a data URI, JSON or base64"),
            "{message}"
        );
        // A long base64 text with an error deep inside is base64 all the same.
        assert!(matches!(
            auto_err(&[&seed_b64()[..], b"\x00"].concat()),
            PayloadError::InvalidChar {
                offset: 3472,
                found: Found::Char('\0'),
                ..
            }
        ));
    }

    #[test]
    fn data_uri_must_name_an_image_mime_type() {
        let bytes = fixture("encoded/seed-frame.datauri.txt");
        let comma = find(&bytes, b",");
        let text = [&b"data:text/plain;base64"[..], &bytes[comma..]].concat();
        let err = auto_err(&text);
        assert_eq!(
            err,
            PayloadError::NotImageMime {
                at: Location::Payload,
                mime: "text/plain".to_owned(),
            }
        );
        assert!(
            err.to_string()
                .contains("\"text/plain\", not an image type"),
            "{err}"
        );
        let upper = [&b"DATA:Image/PNG;name=x.png;BASE64"[..], &bytes[comma..]].concat();
        assert_eq!(auto(&upper).unwrap().image[..], seed()[..]);
    }

    #[test]
    fn malformed_data_uris_say_what_is_wrong() {
        let cases: [(&[u8], Encoding, &str); 4] = [
            (b"data:image/jpeg,%FF%D8", Encoding::Auto, "not base64"),
            (
                b"data:image/jpeg;base64,  \n",
                Encoding::Auto,
                "no data after",
            ),
            (b"data:image/jpeg;base64", Encoding::Auto, "no ','"),
            (
                b"/9j/4AAQ",
                Encoding::DataUri,
                "does not start with \"data:\"",
            ),
        ];
        for (bytes, encoding, expected) in cases {
            let err = forced_err(bytes, encoding);
            assert!(matches!(err, PayloadError::BadDataUri { .. }), "{err:?}");
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn data_uri_offsets_count_from_the_start_of_the_payload() {
        let bytes = fixture("encoded/photo-640x480.datauri.txt");
        let offset = find(&bytes, b",") + 1000;
        let err = auto_err(&spliced(&bytes, offset, b"!"));
        assert_eq!(
            err,
            PayloadError::InvalidChar {
                at: Location::Payload,
                found: Found::Char('!'),
                offset,
            }
        );
    }

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

    #[test]
    fn python_bytes_repr_is_called_out() {
        let b64 = String::from_utf8(seed_b64()).unwrap();
        for text in [format!("b'{b64}'"), format!("b\"{b64}\"\n")] {
            for encoding in [Encoding::Auto, Encoding::Base64] {
                let err = forced_err(text.as_bytes(), encoding);
                assert!(
                    matches!(
                        err,
                        PayloadError::PythonBytesRepr {
                            at: Location::Payload,
                            ..
                        }
                    ),
                    "{err:?}"
                );
                let message = err.to_string();
                assert!(message.starts_with("looks like a Python bytes repr (b'...')"));
                assert!(message.contains("published str(bytes) instead of the bytes"));
            }
        }
        let text = format!(r#"{{"ts":1,"image":"b'{b64}'"}}"#);
        assert!(matches!(
            auto_err(text.as_bytes()),
            PayloadError::PythonBytesRepr { at: Location::JsonField(f), .. } if f == "image"
        ));
        // Merely starting with "b'" is not enough.
        assert!(matches!(
            auto_err(b"b'QUJD"),
            PayloadError::Unrecognized { .. }
        ));
    }

    #[test]
    fn messages_are_one_lowercase_line_without_a_trailing_period() {
        let uri = b"data:text/plain;base64,QUJD";
        let errors = [
            auto_err(b""),
            auto_err(b"  "),
            auto_err(&fixture("bad/random-65536.bin")),
            auto_err(&fixture("bad/invalid-chars.b64")),
            auto_err(&fixture("bad/bad-padding.b64")),
            auto_err(b"QUJD=QUJD"),
            auto_err(b"QUJ="),
            auto_err(b"b'QUJD'"),
            auto_err(uri),
            auto_err(b"data:image/png;base64"),
            auto_err(b"{\"a\": \n"),
            auto_err(b"[]"),
            auto_err(b"{\"image\":{}}"),
            auto_err(b"{\"x\":\"a\\nb\"}"),
            forced_err(&seed(), Encoding::Base64),
        ];
        for err in errors {
            let message = err.to_string();
            assert!(!message.starts_with("payload"), "{message}");
            let first = message.chars().next().unwrap();
            assert!(
                !first.is_uppercase() || message.starts_with("JSON"),
                "{message}"
            );
            assert!(!message.ends_with('.'), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }
}
