//! The live view's two pages, embedded in the binary: no build step, no CDN, they work offline. One
//! stylesheet and one script serve both; each page is a single document with them inline, so a token
//! in the page's URL is the only thing its requests need.

use std::sync::LazyLock;

use base64::Engine as _;
use sha2::{Digest, Sha256};

const STYLE: &str = include_str!("page/live.css");
const SCRIPT: &str = include_str!("page/live.js");

macro_rules! document {
    ($page:literal, $body:literal) => {
        concat!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
            "<title>mqimg live</title>\n<style>",
            include_str!("page/live.css"),
            "</style>\n</head>\n<body data-page=\"",
            $page,
            "\">\n",
            include_str!($body),
            "<script>",
            include_str!("page/live.js"),
            "</script>\n</body>\n</html>\n"
        )
    };
}

/// `/`: a tile per topic.
pub const GALLERY: &str = document!("gallery", "page/gallery.html");
/// `/topics/{topic}`: one camera.
pub const TOPIC: &str = document!("topic", "page/topic.html");

/// Allows exactly the embedded style and script and requests to this listener, nothing else.
pub fn content_security_policy() -> &'static str {
    static POLICY: LazyLock<String> = LazyLock::new(|| {
        let hash = |text: &str| {
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
        };
        format!(
            "default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'sha256-{}'; \
             script-src 'sha256-{}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash(STYLE),
            hash(SCRIPT)
        )
    });
    &POLICY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_page_holds_the_style_and_script_the_policy_allows() {
        for page in [GALLERY, TOPIC] {
            assert!(page.contains(&format!("<style>{STYLE}</style>")));
            assert!(page.contains(&format!("<script>{SCRIPT}</script>")));
        }
        assert!(GALLERY.contains("data-page=\"gallery\""));
        assert!(TOPIC.contains("data-page=\"topic\""));
        assert!(content_security_policy().contains("script-src 'sha256-"));
    }

    #[test]
    fn the_pages_load_nothing_from_elsewhere() {
        for page in [GALLERY, TOPIC] {
            assert!(!page.contains("http://") && !page.contains("https://"));
        }
    }
}
