//! Base64 text that arrives in pieces, decoded as it comes.
//!
//! Cameras send base64 two ways: each piece encoded on its own (padded with `=` when its byte count is
//! not a multiple of 3), or one encoded frame cut anywhere. One rule reads both: whole groups of four
//! characters are decoded as they arrive, a group holding `=` ends a run (the next character starts a
//! new group), and an unfinished group waits for the next piece. Spaces, tabs and line breaks are
//! ignored. The alphabet, standard or URL-safe, is the first one a distinctive character (`+/` or
//! `-_`) shows; both in one frame is an error.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Padding optional at the very end; non-zero unused bits in a last symbol are refused.
const CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, CONFIG);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, CONFIG);

/// What a byte is to base64 text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// In both alphabets, `=` included.
    Common,
    Standard,
    UrlSafe,
    Space,
    Invalid,
}

const fn class(b: u8) -> Class {
    match b {
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'=' => Class::Common,
        b'+' | b'/' => Class::Standard,
        b'-' | b'_' => Class::UrlSafe,
        b' ' | b'\t' | b'\r' | b'\n' => Class::Space,
        _ => Class::Invalid,
    }
}

const CLASSES: [Class; 256] = {
    let mut table = [Class::Invalid; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = class(b as u8);
        b += 1;
    }
    table
};

/// Whether `bytes` are nothing but base64 text (at least one data character).
pub(super) fn is_base64_text(bytes: &[u8]) -> bool {
    let mut data = false;
    for &b in bytes {
        match CLASSES[usize::from(b)] {
            Class::Invalid => return false,
            Class::Space => {}
            _ => data = true,
        }
    }
    data
}

/// Whether base64 `text` starts with the encoding of a JPEG's first bytes (`ff d8 ff`: `/9j/`).
pub(super) fn starts_jpeg(text: &[u8]) -> bool {
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    let head = start.and_then(|start| text.get(start..start + 4));
    matches!(head, Some(b"/9j/" | b"_9j_"))
}

#[derive(Clone, Debug, Default)]
pub(super) struct Base64Stream {
    /// `Some(true)` once a `-` or `_` was seen, `Some(false)` once a `+` or `/`.
    url_safe: Option<bool>,
    /// The characters of a group the last piece left unfinished (at most 3).
    pending: Vec<u8>,
}

/// What [`Base64Stream::feed`]'s first pass notes of a byte, as bits looked up in [`FLAGS`]: one load and
/// one `or` per byte, no branch.
const STANDARD_CHAR: u8 = 1;
const URL_SAFE_CHAR: u8 = 2;
const SPACE_CHAR: u8 = 4;
const INVALID_CHAR: u8 = 8;
const PAD_CHAR: u8 = 16;

const FLAGS: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match CLASSES[b] {
            Class::Common if b == b'=' as usize => PAD_CHAR,
            Class::Common => 0,
            Class::Standard => STANDARD_CHAR,
            Class::UrlSafe => URL_SAFE_CHAR,
            Class::Space => SPACE_CHAR,
            Class::Invalid => INVALID_CHAR,
        };
        b += 1;
    }
    table
};

impl Base64Stream {
    /// Decodes `text` onto `out`, but for an unfinished last group.
    pub(super) fn feed(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let flags = |bytes: &[u8]| {
            bytes
                .iter()
                .fold(0, |seen, &b| seen | FLAGS[usize::from(b)])
        };
        // Padding, when there is any, normally ends the piece: looked for in its last group only.
        let last = text.len().saturating_sub(4);
        let (body, tail) = (flags(&text[..last]), flags(&text[last..]));
        let seen = body | tail;
        let url_safe = match (seen & STANDARD_CHAR != 0, seen & URL_SAFE_CHAR != 0) {
            (true, false) => Some(false),
            (false, true) => Some(true),
            _ => None,
        };
        let clean = seen & (SPACE_CHAR | INVALID_CHAR) == 0
            && (url_safe.is_none() || self.url_safe.is_none() || url_safe == self.url_safe)
            && (seen & (STANDARD_CHAR | URL_SAFE_CHAR)) != (STANDARD_CHAR | URL_SAFE_CHAR);
        if clean {
            // The common case, checked in one pass: no copy unless a group waits from the last piece.
            self.url_safe = self.url_safe.or(url_safe);
            if self.pending.is_empty() {
                let pad = (body & PAD_CHAR == 0).then(|| {
                    text[last..]
                        .iter()
                        .position(|&b| b == b'=')
                        .map(|at| last + at)
                });
                return self.decode(text, out, pad);
            }
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(text);
            return self.decode(&joined, out, None);
        }
        self.feed_checked(text, out)
    }

    /// [`Base64Stream::feed`] character by character: whitespace dropped, errors located.
    fn feed_checked(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let mut clean = std::mem::take(&mut self.pending);
        clean.reserve(text.len());
        let mut run = 0;
        for (offset, &b) in text.iter().enumerate() {
            let url_safe = match CLASSES[usize::from(b)] {
                Class::Common => continue,
                Class::Standard => false,
                Class::UrlSafe => true,
                Class::Space => {
                    clean.extend_from_slice(&text[run..offset]);
                    run = offset + 1;
                    continue;
                }
                Class::Invalid => {
                    return Err(format!(
                        "invalid base64: {} at offset {offset}",
                        shown(text, offset)
                    ));
                }
            };
            match self.url_safe {
                Some(seen) if seen != url_safe => {
                    return Err(format!(
                        "invalid base64: {} at offset {offset} mixes the standard and url-safe alphabets",
                        shown(text, offset)
                    ));
                }
                _ => self.url_safe = Some(url_safe),
            }
        }
        clean.extend_from_slice(&text[run..]);
        self.decode(&clean, out, None)
    }

    /// Decodes the unfinished last group, if any: the text is over.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let pending = std::mem::take(&mut self.pending);
        match pending.len() {
            0 => Ok(()),
            1 => Err(
                "invalid base64: the text ends with 1 character of a group of 4 (truncated)".into(),
            ),
            _ => self.run(&pending, out),
        }
    }

    /// What [`Base64Stream::finish`] would add, if the text ended now.
    pub(super) fn tail(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.pending.len() > 1 && self.run(&self.pending, &mut out).is_err() {
            out.clear();
        }
        out
    }

    /// Decodes `clean` (no whitespace), keeping an unfinished last group for the next piece.
    /// `first_pad` is where its first `=` is, when the caller knows (`Some(None)`: nowhere).
    fn decode(
        &mut self,
        mut clean: &[u8],
        out: &mut Vec<u8>,
        mut first_pad: Option<Option<usize>>,
    ) -> Result<(), String> {
        loop {
            let pad = first_pad
                .take()
                .unwrap_or_else(|| clean.iter().position(|&b| b == b'='));
            // The groups before the first padded one, and the group itself once it is whole.
            let (whole, end) = match pad {
                None => (clean.len() / 4 * 4, None),
                Some(pad) if (pad / 4 + 1) * 4 > clean.len() => (pad / 4 * 4, None),
                Some(pad) => ((pad / 4 + 1) * 4, Some(pad)),
            };
            let Some(pad) = end else {
                self.run(&clean[..whole], out)?;
                self.pending = clean[whole..].to_vec();
                return Ok(());
            };
            if clean[pad..whole].iter().any(|&b| b != b'=') {
                return Err(format!(
                    "invalid base64: padding '=' inside a group ({:?})",
                    String::from_utf8_lossy(&clean[whole - 4..whole])
                ));
            }
            self.run(&clean[..whole], out)?;
            clean = &clean[whole..];
        }
    }

    fn run(&self, text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let engine = if self.url_safe == Some(true) {
            &URL_SAFE
        } else {
            &STANDARD
        };
        engine
            .decode_vec(text, out)
            .map_err(|e| format!("invalid base64: {e}"))
    }
}

/// The character at `offset` of `text`, for messages.
fn shown(text: &[u8], offset: usize) -> String {
    let rest = &text[offset..];
    match rest
        .utf8_chunks()
        .next()
        .and_then(|c| c.valid().chars().next())
    {
        Some(c) => format!("character '{}'", c.escape_debug()),
        None => format!("byte 0x{:02x}", rest[0]),
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use base64::engine::general_purpose::{STANDARD as PADDED, URL_SAFE_NO_PAD};

    use super::*;

    fn stream(pieces: &[&[u8]]) -> Result<Vec<u8>, String> {
        let mut stream = Base64Stream::default();
        let mut out = Vec::new();
        for piece in pieces {
            stream.feed(piece, &mut out)?;
        }
        stream.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn pieces_encoded_one_by_one_and_one_text_cut_anywhere_decode_alike() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        // One by one: 7-byte pieces, each padded.
        let separately: Vec<String> = bytes.chunks(7).map(|c| PADDED.encode(c)).collect();
        let pieces: Vec<&[u8]> = separately.iter().map(|s| s.as_bytes()).collect();
        assert_eq!(stream(&pieces).unwrap(), bytes);
        // One text, cut every 5 characters, unpadded and URL-safe.
        let text = URL_SAFE_NO_PAD.encode(&bytes);
        let pieces: Vec<&[u8]> = text.as_bytes().chunks(5).collect();
        assert_eq!(stream(&pieces).unwrap(), bytes);
        // Padding split across pieces, and line breaks.
        assert_eq!(stream(&[b"QQ", b"=", b"=\nQg", b"=="]).unwrap(), b"AB");
        // Two padded runs in one piece, and a piece ending inside a padded group.
        assert_eq!(stream(&[b"QQ==Qg==QUJD", b"QQ="]).unwrap(), b"ABABCA");
    }

    #[test]
    fn bad_text_is_named() {
        let err = stream(&[b"QUJD", b"QU!D"]).unwrap_err();
        assert_eq!(err, "invalid base64: character '!' at offset 2");
        let err = stream(&[b"ab+/", b"ab-_"]).unwrap_err();
        assert!(err.contains("mixes the standard and url-safe"), "{err}");
        let err = stream(&[b"QUJDQ"]).unwrap_err();
        assert!(err.contains("1 character"), "{err}");
        let err = stream(&[b"Q=JD"]).unwrap_err();
        assert!(err.contains("padding"), "{err}");
    }

    #[test]
    fn base64_text_and_jpeg_starts_are_recognised() {
        assert!(is_base64_text(b"/9j/4AAQ\r\nSkZJ=="));
        assert!(!is_base64_text(b"\xff\xd8\xff\xe0"));
        assert!(!is_base64_text(b" \n"));
        assert!(starts_jpeg(b" /9j/4AAQ"));
        assert!(starts_jpeg(b"_9j_4AAQ"));
        assert!(!starts_jpeg(b"iVBORw0K"));
    }
}
