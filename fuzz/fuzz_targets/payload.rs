//! Payload detection (`frame::payload::detect`) in every encoding mode, with and without a configured
//! JSON field.
//!
//! Checks, beyond "no panic, no hang, no huge allocation":
//! - `raw` hands back the payload itself; `auto` does too for JPEG/PNG magic bytes;
//! - what `auto` detects, forcing that encoding gives byte for byte;
//! - forced `base64` agrees with a reference decoder (the `base64` crate's scalar `GeneralPurpose`
//!   engine, whitespace stripped, standard then URL-safe alphabet), which checks the SIMD engine and
//!   the whitespace stripping both ways: what one accepts the other accepts, with the same bytes;
//! - error offsets that count in the payload lie inside it, and every message is one line.
#![no_main]

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use libfuzzer_sys::fuzz_target;
use mqimg::frame::payload::{Detected, Encoding, Location, PayloadError, detect};

const MODES: [Encoding; 5] = [
    Encoding::Auto,
    Encoding::Raw,
    Encoding::Base64,
    Encoding::DataUri,
    Encoding::Json,
];

fn reference_base64(bytes: &[u8]) -> Option<Vec<u8>> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let data: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .collect();
    if data.is_empty() {
        return None;
    }
    GeneralPurpose::new(&base64::alphabet::STANDARD, config)
        .decode(&data)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::URL_SAFE, config).decode(&data))
        .ok()
}

fn check_error(bytes: &[u8], mode: Encoding, err: &PayloadError) {
    let message = err.to_string();
    assert!(
        mqimg_fuzz::one_line(&message),
        "{mode:?}: multi-line message {message:?}"
    );
    let offset = match err {
        PayloadError::InvalidChar {
            at: Location::Payload,
            offset,
            ..
        }
        | PayloadError::MisplacedPadding {
            at: Location::Payload,
            offset,
        }
        | PayloadError::TrailingBits {
            at: Location::Payload,
            offset,
            ..
        } => Some(*offset),
        PayloadError::MixedAlphabets {
            at: Location::Payload,
            standard_offset,
            url_safe_offset,
            ..
        } => Some((*standard_offset).max(*url_safe_offset)),
        _ => None,
    };
    if let Some(offset) = offset {
        assert!(
            offset < bytes.len(),
            "{mode:?}: offset {offset} past the {}-byte payload in {message:?}",
            bytes.len()
        );
    }
}

fuzz_target!(|bytes: &[u8]| {
    for json_field in [None, Some("image")] {
        let mut auto = None;
        for mode in MODES {
            match detect(bytes, mode, json_field) {
                Ok(payload) => {
                    if mode == Encoding::Raw {
                        assert_eq!(payload.encoding, Detected::Raw);
                        assert_eq!(&*payload.image, bytes);
                    }
                    if mode == Encoding::Base64 {
                        assert_eq!(
                            reference_base64(bytes).as_deref(),
                            Some(&*payload.image),
                            "base64 differs from the reference decoder"
                        );
                    }
                    if mode == Encoding::Auto {
                        auto = Some((payload.encoding, payload.image.into_owned()));
                    } else if let Some((encoding, image)) = &auto {
                        let forced = match encoding {
                            Detected::Raw => Encoding::Raw,
                            Detected::Base64 => Encoding::Base64,
                            Detected::DataUri => Encoding::DataUri,
                            Detected::Json => Encoding::Json,
                        };
                        if forced == mode {
                            assert_eq!(image, &*payload.image, "auto and forced {mode:?} differ");
                        }
                    }
                }
                Err(err) => {
                    check_error(bytes, mode, &err);
                    if mode == Encoding::Raw {
                        assert!(bytes.is_empty(), "raw failed on a non-empty payload: {err}");
                    }
                    if mode == Encoding::Base64
                        && !bytes.trim_ascii().is_empty()
                        && let Some(reference) = reference_base64(bytes)
                    {
                        panic!(
                            "base64 refused what the reference decoder accepts ({} bytes): {err}",
                            reference.len()
                        );
                    }
                    if let Some((encoding, _)) = &auto {
                        let forced_same = matches!(
                            (encoding, mode),
                            (Detected::Base64, Encoding::Base64)
                                | (Detected::DataUri, Encoding::DataUri)
                                | (Detected::Json, Encoding::Json)
                        );
                        assert!(
                            !forced_same,
                            "auto found {encoding:?}, forced {mode:?} failed: {err}"
                        );
                    }
                }
            }
        }
        if bytes.starts_with(&[0xff, 0xd8, 0xff]) || bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            let (encoding, image) = auto.as_ref().expect("magic bytes are always raw");
            assert_eq!(*encoding, Detected::Raw);
            assert_eq!(image.as_slice(), bytes);
        }
    }
});
