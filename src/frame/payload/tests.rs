//! Tests of detection as a whole: the fixtures in every mode, raw bytes, what is not an image at all,
//! and the style of every message. Each form's own cases are tested next to its code, with the
//! helpers here.
#![expect(clippy::unwrap_used, reason = "tests")]

use super::*;

pub(super) fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

pub(super) fn photo() -> Vec<u8> {
    fixture("frames/photo-640x480.jpg")
}

pub(super) fn seed() -> Vec<u8> {
    fixture("seed/seed-frame.jpg")
}

pub(super) fn seed_b64() -> Vec<u8> {
    fixture("seed/seed-frame.b64")
}

pub(super) fn auto(bytes: &[u8]) -> Result<Payload<'_>, PayloadError> {
    detect(bytes, Encoding::Auto, None)
}

pub(super) fn auto_err(bytes: &[u8]) -> PayloadError {
    auto(bytes).unwrap_err()
}

pub(super) fn forced_err(bytes: &[u8], encoding: Encoding) -> PayloadError {
    detect(bytes, encoding, None).unwrap_err()
}

/// The offset of the first occurrence of `needle` in `haystack`.
pub(super) fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

/// Replaces the byte at `offset` by `with`.
pub(super) fn spliced(bytes: &[u8], offset: usize, with: &[u8]) -> Vec<u8> {
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

#[test]
fn encoding_names_parse_back_and_are_the_serde_names() {
    assert_eq!(
        Encoding::ALL.map(Encoding::name),
        ["auto", "raw", "base64", "data-uri", "json"]
    );
    for encoding in Encoding::ALL {
        let name = encoding.to_string();
        assert_eq!(name.parse::<Encoding>(), Ok(encoding));
        assert_eq!(serde_json::to_value(encoding).unwrap(), name.as_str());
    }
    for detected in Detected::ALL {
        let name = detected.to_string();
        assert_eq!(name.parse::<Detected>(), Ok(detected));
        assert_eq!(serde_json::to_value(detected).unwrap(), name.as_str());
    }
    assert_eq!(
        "auto".parse::<Detected>().unwrap_err().to_string(),
        "unknown encoding \"auto\", expected one of raw, base64, data-uri, json"
    );
    assert!("data_uri".parse::<Encoding>().is_err());
}
