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

mod base64;
mod data_uri;
mod envelope;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use self::base64::{Base64Fail, base64_at, decode_base64};
use self::data_uri::{data_uri, is_data_uri};
use self::envelope::envelope;
use crate::frame::decode::Format;
use crate::frame::hex_head;

/// How a payload is to be read: `auto` detects, the others force one form.
///
/// Config files, the command line and records name it as [`Encoding::name`] does (`data-uri`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

impl Encoding {
    /// Every encoding, `auto` first.
    pub const ALL: [Encoding; 5] = [
        Self::Auto,
        Self::Raw,
        Self::Base64,
        Self::DataUri,
        Self::Json,
    ];

    /// The name in config files and on the command line; serde's `kebab-case` gives the same.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Raw => "raw",
            Self::Base64 => "base64",
            Self::DataUri => "data-uri",
            Self::Json => "json",
        }
    }
}

impl Detected {
    /// Every form a payload can turn out to have.
    pub const ALL: [Detected; 4] = [Self::Raw, Self::Base64, Self::DataUri, Self::Json];

    /// The name of the encoding that forces this form (`data-uri`).
    pub fn name(self) -> &'static str {
        Encoding::from(self).name()
    }
}

impl From<Detected> for Encoding {
    fn from(detected: Detected) -> Self {
        match detected {
            Detected::Raw => Self::Raw,
            Detected::Base64 => Self::Base64,
            Detected::DataUri => Self::DataUri,
            Detected::Json => Self::Json,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Detected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Encoding {
    type Err = UnknownEncoding;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        by_name(&Self::ALL, Self::name, name)
    }
}

impl FromStr for Detected {
    type Err = UnknownEncoding;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        by_name(&Self::ALL, Self::name, name)
    }
}

/// A name that none of the encodings has.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown encoding \"{name}\", expected one of {expected}")]
pub struct UnknownEncoding {
    name: String,
    expected: String,
}

fn by_name<T: Copy>(
    all: &[T],
    name_of: fn(T) -> &'static str,
    name: &str,
) -> Result<T, UnknownEncoding> {
    all.iter()
        .copied()
        .find(|&value| name_of(value) == name)
        .ok_or_else(|| UnknownEncoding {
            name: name.to_owned(),
            expected: all
                .iter()
                .map(|&value| name_of(value))
                .collect::<Vec<_>>()
                .join(", "),
        })
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
        envelope::wanted_list(.wanted),
        envelope::present_list(.present, *.total)
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

/// Longest excerpt of payload text quoted in a message, in characters.
const EXCERPT_CHARS: usize = 40;
/// How many leading bytes an unrecognized payload shows in hex (then `…` if there are more).
const HEAD_BYTES: usize = 16;
/// In `auto`, text that stops being base64 within this many data characters never was base64.
const BASE64_EVIDENCE_CHARS: usize = 16;

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
    if encoding == Encoding::Raw || (encoding == Encoding::Auto && Format::sniff(bytes).is_some()) {
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
                        head: hex_head(bytes, HEAD_BYTES)
                            + if bytes.len() > HEAD_BYTES { " …" } else { "" },
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

/// `b'...'` or `b"..."`: Python's `str()` of a bytes object.
fn looks_like_bytes_repr(text: &[u8]) -> bool {
    match text.trim_ascii() {
        [b'b', quote @ (b'\'' | b'"'), .., last] => last == quote,
        _ => false,
    }
}

/// Up to [`EXCERPT_CHARS`] characters of `bytes` (lossy UTF-8), escaped for double quotes, `…`
/// when cut.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
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
