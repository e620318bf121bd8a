//! Data URIs (`data:image/<type>[;params];base64,<data>`), in the payload or in a JSON envelope's field:
//! the header must name an image MIME type and `;base64`; the data is base64, its error offsets counted
//! from the start of the text holding the URI.

use super::base64::{base64_at, is_base64_space};
use super::{Location, PayloadError, excerpt};

/// The `,` ending a data URI header must come within this many bytes of `data:`.
const DATA_URI_HEADER_MAX: usize = 256;

pub(super) fn is_data_uri(text: &[u8]) -> bool {
    text.get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"data:"))
}

/// Decodes the data URI that starts at `text[start..]`: `data:image/<type>[;params];base64,<data>`.
pub(super) fn data_uri(text: &[u8], start: usize, at: &Location) -> Result<Vec<u8>, PayloadError> {
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

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::frame::payload::tests::{auto, auto_err, find, fixture, forced_err, seed, spliced};
    use crate::frame::payload::{Encoding, Found};

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
}
