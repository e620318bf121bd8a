//! Topics in URLs. A topic travels as its levels, each percent-encoded (`/latest/cameras/front%20door`),
//! or whole in a query parameter (`/latest?topic=cameras%2Ffront%20door`) when the path form would not
//! survive a browser or proxy: empty levels (`a//b` gets collapsed) and `.`/`..` levels (resolved as
//! dot segments, even percent-encoded). Decoding is strict: a topic is a map key and nothing else, so
//! whatever it holds never reaches a file-system path.

/// Why a topic in a URL could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadEncoding {
    #[error("bad percent-encoding at byte {offset}: `%` must be followed by two hex digits")]
    Percent { offset: usize },
    #[error("the decoded topic is not UTF-8 (byte {offset})")]
    Utf8 { offset: usize },
}

/// RFC 3986 unreserved characters: the only ones left as they are.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `text` with every byte but the unreserved ones written `%XX` (so `/` too).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether each level of `topic` survives as a path segment.
fn path_safe(topic: &str) -> bool {
    !topic.is_empty()
        && topic
            .split('/')
            .all(|level| !level.is_empty() && level != "." && level != "..")
}

/// The URL path of `route` for `topic`: `/{route}/{levels}`, or `/{route}?topic=…` when a level would
/// not survive as a path segment.
pub fn topic_href(route: &str, topic: &str) -> String {
    if path_safe(topic) {
        let levels: Vec<String> = topic.split('/').map(encode_component).collect();
        format!("/{route}/{}", levels.join("/"))
    } else {
        format!("/{route}?topic={}", encode_component(topic))
    }
}

/// Percent-decodes `text`; in query strings (`plus_is_space`) `+` is a space, as forms send it.
pub fn decode(text: &str, plus_is_space: bool) -> Result<String, BadEncoding> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(BadEncoding::Percent { offset: i })?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|e| BadEncoding::Utf8 {
        offset: e.utf8_error().valid_up_to(),
    })
}

/// The value of the first `name=` parameter of `query`, decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<Result<String, BadEncoding>> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| decode(value, true))
    })
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn levels_are_encoded_one_by_one_and_read_back() {
        for (topic, href) in [
            ("cameras/front door", "/latest/cameras/front%20door"),
            ("cams/100%", "/latest/cams/100%25"),
            ("caméra/1", "/latest/cam%C3%A9ra/1"),
            ("a?b#c", "/latest/a%3Fb%23c"),
            ("x/.hidden/..z", "/latest/x/.hidden/..z"),
        ] {
            assert_eq!(topic_href("latest", topic), href);
            let path = href.strip_prefix("/latest/").unwrap();
            assert_eq!(decode(path, false).unwrap(), topic);
        }
    }

    #[test]
    fn topics_a_browser_would_rewrite_go_in_the_query() {
        for (topic, href) in [
            ("a//b", "/stream?topic=a%2F%2Fb"),
            ("/lead", "/stream?topic=%2Flead"),
            ("trail/", "/stream?topic=trail%2F"),
            ("a/../b", "/stream?topic=a%2F..%2Fb"),
            ("./x", "/stream?topic=.%2Fx"),
            ("", "/stream?topic="),
        ] {
            assert_eq!(topic_href("stream", topic), href);
            let query = href.split_once('?').unwrap().1;
            assert_eq!(query_param(Some(query), "topic").unwrap().unwrap(), topic);
        }
    }

    #[test]
    fn query_values_read_plus_as_space_and_the_first_match_wins() {
        let q = Some("token=s3cret&topic=front+door%2B&topic=other");
        assert_eq!(query_param(q, "topic").unwrap().unwrap(), "front door+");
        assert_eq!(query_param(q, "token").unwrap().unwrap(), "s3cret");
        assert_eq!(query_param(q, "width"), None);
        assert_eq!(query_param(None, "topic"), None);
        assert_eq!(query_param(Some("topic"), "topic").unwrap().unwrap(), "");
    }

    #[test]
    fn bad_escapes_and_bytes_that_are_not_utf8_are_refused_with_their_offset() {
        assert_eq!(
            decode("ab%zz", false),
            Err(BadEncoding::Percent { offset: 2 })
        );
        assert_eq!(
            decode("ab%4", false),
            Err(BadEncoding::Percent { offset: 2 })
        );
        assert_eq!(decode("%", false), Err(BadEncoding::Percent { offset: 0 }));
        assert_eq!(decode("ok%FF", false), Err(BadEncoding::Utf8 { offset: 2 }));
        assert_eq!(decode("a+b", false).unwrap(), "a+b");
    }

    #[test]
    fn every_string_survives_the_round_trip() {
        let odd = [
            "\u{0}\u{1f}\u{7f}",
            "%25%",
            "+#/+",
            "日本/カメラ",
            "🎥 / 🎥",
            "a b\tc\r\nd",
            "..",
            ".",
            "//",
        ];
        for topic in odd {
            let href = topic_href("latest", topic);
            let back = match href.split_once('?') {
                Some((_, query)) => query_param(Some(query), "topic").unwrap().unwrap(),
                None => decode(href.strip_prefix("/latest/").unwrap(), false).unwrap(),
            };
            assert_eq!(back, topic, "{href}");
            assert!(href.is_ascii(), "{href}");
        }
    }
}
