//! Strict base64: standard or URL-safe alphabet (not both), padding optional, spaces, tabs and line
//! breaks ignored. A failure names the first offending character and its offset in the original text,
//! whitespace included, which is what the SIMD decoder cannot tell by itself.

use std::borrow::Cow;
use std::sync::LazyLock;

use base64::DecodeError;
use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::GeneralPurposeConfig;

use super::{Found, Location, PayloadError};

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

/// Decodes base64 `text` that begins at offset `base` of the text `at` names.
pub(super) fn base64_at(text: &[u8], base: usize, at: &Location) -> Result<Vec<u8>, PayloadError> {
    decode_base64(text).map_err(|fail| fail.into_error(text, base, at))
}

/// A base64 failure, offsets into the text handed to [`decode_base64`] (whitespace included).
#[derive(Debug)]
pub(super) enum Base64Fail {
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
    pub(super) fn into_error(self, text: &[u8], base: usize, at: &Location) -> PayloadError {
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
pub(super) fn is_base64_space(b: u8) -> bool {
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
pub(super) fn decode_base64(text: &[u8]) -> Result<Vec<u8>, Base64Fail> {
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

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::frame::payload::Encoding;
    use crate::frame::payload::tests::{
        auto, auto_err, find, fixture, forced_err, photo, seed, seed_b64, spliced,
    };

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
}
