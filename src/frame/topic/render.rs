//! Record topics: a `{topic}` template rendered for one frame topic into a topic name that brokers
//! accept. A record topic a broker refuses is worse than a lost record: Mosquitto answers it with a
//! protocol error and drops the whole connection, and the frame, never acked, comes back forever.
//!
//! What Mosquitto 2.0.11 refuses in a PUBLISH topic (measured with raw packets): an empty topic, `+`,
//! `#`, U+0000–U+001F, U+007F–U+009F, the non-characters U+FDD0–U+FDEF and U+xFFFE/U+xFFFF, and more
//! than 200 separators (201 levels). Frames arrive on topics the broker accepted, but a template adds
//! levels and bytes to them, and other brokers accept other topics.
//!
//! The rendering is injective: distinct frame topics give distinct record topics (up to 64-bit hash
//! collisions in folded topics), so records of different cameras never share a topic by accident.

/// Most levels in a record topic: Mosquitto 2.0 drops a client publishing on more than 201, and 128 is
/// EMQX's default `max_topic_levels`.
pub const MAX_LEVELS: usize = 128;
/// Longest record topic, in bytes: MQTT allows 65,535, but a topic this long is already unreadable in
/// logs and far above what cameras use; the margin keeps brokers with tighter limits working.
pub const MAX_BYTES: usize = 4096;
/// Longest folded level: `%rest-` + up to 5 digits (a 65,535-byte topic has at most 65,536 levels) +
/// `-levels~` + 16 hex digits.
pub const MAX_FOLD_BYTES: usize = 6 + 5 + 8 + 16;

const PLACEHOLDER: &str = "{topic}";

/// Whether brokers refuse `c` anywhere in a topic name: the control characters, and the Unicode
/// non-characters that Mosquitto's UTF-8 check refuses along with them.
pub fn refused_char(c: char) -> bool {
    let u = u32::from(c);
    u <= 0x1F
        || (0x7F..=0x9F).contains(&u)
        || (0xFDD0..=0xFDEF).contains(&u)
        || u & 0xFFFE == 0xFFFE
}

/// Checks a record template on its own: characters brokers refuse, wildcards, the `$` prefix brokers
/// reserve, and a fixed part that leaves room for the frame topic within the bounds.
pub fn validate_template(template: &str) -> Result<(), String> {
    if let Some((at, c)) = template.char_indices().find(|(_, c)| refused_char(*c)) {
        return Err(format!(
            "{template:?} contains U+{:04X} at byte {at}: brokers refuse control characters and \
             non-characters in topics and drop the connection",
            u32::from(c)
        ));
    }
    if template.contains(['+', '#']) {
        return Err(format!(
            "{template:?} contains a wildcard; records need a plain topic"
        ));
    }
    if template.starts_with('$') {
        return Err(format!(
            "{template:?} starts with $: brokers reserve such topics ($SYS/…) and drop records \
             published there"
        ));
    }
    let (fixed_bytes, fixed_separators, occurrences) = shape(template);
    let bytes = fixed_bytes + occurrences * MAX_FOLD_BYTES;
    if bytes > MAX_BYTES || fixed_separators >= MAX_LEVELS {
        return Err(format!(
            "{template:?} leaves no room for the frame topic: record topics are limited to \
             {MAX_BYTES} bytes and {MAX_LEVELS} levels, and the template alone takes {fixed_bytes} \
             bytes and {} levels",
            fixed_separators + 1
        ));
    }
    Ok(())
}

/// Bytes and `/` separators of a template without its `{topic}`s, and how many `{topic}`s it has.
fn shape(template: &str) -> (usize, usize, usize) {
    let occurrences = template.matches(PLACEHOLDER).count();
    let fixed = template.len() - occurrences * PLACEHOLDER.len();
    (fixed, template.matches('/').count(), occurrences)
}

/// A record topic: `template` with each `{topic}` replaced by the frame's topic; `None` when the
/// template is empty (that kind of record is off). Always a topic brokers accept, at most
/// [`MAX_LEVELS`] levels and [`MAX_BYTES`] bytes:
///
/// - in the frame topic, `%` and every character brokers refuse become `%XX` (their UTF-8 bytes), so
///   escaped and plain topics stay distinct;
/// - a frame topic with too many levels keeps its first levels and folds the rest into one level
///   `%rest-N-levels~HASH` (N levels, the first 16 hex digits of their SHA-256);
/// - a frame topic with too many bytes is folded whole into `%rest-N-levels~HASH`.
///
/// A folded level cannot be mistaken for an escaped one: after `%` an escape has two hex digits.
/// Templates are checked by [`validate_template`]; an invalid one is still made publishable here.
pub fn render(template: &str, topic: &str) -> Option<String> {
    if template.is_empty() {
        return None;
    }
    let pieces: Vec<String> = template.split(PLACEHOLDER).map(plain_text).collect();
    let levels: Vec<String> = topic.split('/').map(escape_level).collect();
    let record = fill(&pieces, &levels.join("/"));
    if fits(&record) {
        return Some(record);
    }
    if let Some(kept) = kept_levels(&pieces).filter(|kept| kept + 1 < levels.len()) {
        let mut folded = levels[..kept].join("/");
        if kept > 0 {
            folded.push('/');
        }
        folded.push_str(&fold(&levels[kept..]));
        let record = fill(&pieces, &folded);
        if fits(&record) {
            return Some(record);
        }
    }
    let record = fill(&pieces, &fold(&levels));
    if fits(&record) {
        return Some(record);
    }
    Some(fold_levels(&split(&record)))
}

/// How many levels of a deep frame topic a record keeps before the folded one: the record then has
/// `fixed separators + occurrences × kept` separators. `None` without `{topic}`, or when the template
/// alone has too many levels.
pub(super) fn kept_levels(pieces: &[impl AsRef<str>]) -> Option<usize> {
    let occurrences = pieces.len().checked_sub(1).filter(|n| *n > 0)?;
    let fixed_separators: usize = pieces.iter().map(|p| p.as_ref().matches('/').count()).sum();
    (MAX_LEVELS - 1)
        .checked_sub(fixed_separators)
        .map(|room| room / occurrences)
}

/// One level of a frame topic as it appears in a record topic: `%`, `+`, `#` and the characters
/// brokers refuse become `%XX`.
pub fn escape_level(level: &str) -> String {
    escape(level, |c| {
        c == '%' || c == '+' || c == '#' || refused_char(c)
    })
}

/// The frame-topic level whose escaped form is `escaped`, when there is one.
pub fn unescape_level(escaped: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('%') {
        bytes.extend_from_slice(&rest.as_bytes()[..at]);
        let hex = rest.get(at + 1..at + 3)?;
        bytes.push(u8::from_str_radix(hex, 16).ok()?);
        rest = &rest[at + 3..];
    }
    bytes.extend_from_slice(rest.as_bytes());
    let level = String::from_utf8(bytes).ok()?;
    // Only the one spelling `escape_level` produces (`%2B` but not `%2b`, `%41` or `+`) is an escape.
    (!level.contains('/') && escape_level(&level) == escaped).then_some(level)
}

/// Template text: characters a broker would refuse become `%XX`; `%` stays, the template's own.
fn plain_text(text: &str) -> String {
    escape(text, |c| c == '+' || c == '#' || refused_char(c))
}

fn escape(text: &str, escaped: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if escaped(c) {
            let mut utf8 = [0; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The template pieces joined by `topic`.
fn fill(pieces: &[String], topic: &str) -> String {
    pieces.join(topic)
}

fn split(record: &str) -> Vec<String> {
    record.split('/').map(str::to_owned).collect()
}

/// Whether brokers accept `topic` as it is (its characters are already escaped).
fn fits(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= MAX_BYTES && topic.matches('/').count() < MAX_LEVELS
}

/// `%rest-N-levels~HASH`: N levels, the first 16 hex digits of the SHA-256 of them joined by `/`.
fn fold(levels: &[String]) -> String {
    let hash = crate::frame::sha256_hex(levels.join("/").as_bytes());
    format!("%rest-{}-levels~{}", levels.len(), &hash[..16])
}

/// The longest prefix of `levels` that fits with the rest folded after it. Only for templates over the
/// bounds on their own, which settings validation refuses.
fn fold_levels(levels: &[String]) -> String {
    let mut best = fold(levels);
    let mut kept = String::new();
    for i in 1..levels.len().min(MAX_LEVELS) {
        if i > 1 {
            kept.push('/');
        }
        kept.push_str(&levels[i - 1]);
        let candidate = format!("{kept}/{}", fold(&levels[i..]));
        if candidate.len() > MAX_BYTES {
            break;
        }
        best = candidate;
    }
    best
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use proptest::prelude::*;

    fn valid(topic: &str) -> Result<(), String> {
        if topic.is_empty() || topic.len() > MAX_BYTES {
            return Err(format!("{} bytes", topic.len()));
        }
        if topic.matches('/').count() >= MAX_LEVELS {
            return Err(format!("{} levels", topic.matches('/').count() + 1));
        }
        if let Some(c) = topic
            .chars()
            .find(|c| refused_char(*c) || *c == '+' || *c == '#')
        {
            return Err(format!("contains {c:?}"));
        }
        Ok(())
    }

    fn deep(levels: usize) -> String {
        vec!["a"; levels].join("/")
    }

    #[test]
    fn plain_topics_render_unchanged() {
        assert_eq!(
            render("mqimg/results/{topic}", "cams/door-1/jpeg").as_deref(),
            Some("mqimg/results/cams/door-1/jpeg")
        );
        assert_eq!(
            render("{topic}/error", "кадр/摄像头/📷").as_deref(),
            Some("кадр/摄像头/📷/error")
        );
        assert_eq!(
            render("mqimg/results/{topic}", "a//b/").as_deref(),
            Some("mqimg/results/a//b/")
        );
        assert_eq!(render("records", "cams/door").as_deref(), Some("records"));
        assert_eq!(render("{topic}|{topic}", "a/b").as_deref(), Some("a/b|a/b"));
        assert_eq!(render("", "cams/door"), None);
    }

    #[test]
    fn characters_brokers_refuse_are_escaped_and_percent_with_them() {
        assert_eq!(
            render("r/{topic}", "a\u{0}b/c\u{1F}\u{7F}\u{9F}/%41").as_deref(),
            Some("r/a%00b/c%1F%7F%C2%9F/%2541")
        );
        assert_eq!(
            render("r/{topic}", "x\u{FDD0}\u{FFFF}\u{1FFFE}\u{A0}").as_deref(),
            Some("r/x%EF%B7%90%EF%BF%BF%F0%9F%BF%BE\u{A0}")
        );
        assert_eq!(render("r/{topic}", "a+/#").as_deref(), Some("r/a%2B/%23"));
        // An invalid template (refused by validation) is still made publishable.
        assert_eq!(
            render("r\u{7}/+/{topic}", "a").as_deref(),
            Some("r%07/%2B/a")
        );
    }

    #[test]
    fn deep_topics_keep_their_first_levels_and_fold_the_rest() {
        let topic = format!("cams/{}", deep(200));
        let rendered = render("mqimg/results/{topic}", &topic).unwrap();
        valid(&rendered).unwrap();
        let levels: Vec<&str> = rendered.split('/').collect();
        assert_eq!(levels.len(), MAX_LEVELS);
        assert_eq!(levels[..3], ["mqimg", "results", "cams"]);
        let expected = fold(&vec!["a".to_owned(); 76]);
        assert_eq!(levels[127], expected);
        assert!(expected.starts_with("%rest-76-levels~") && expected.len() == 32);
        // What follows `{topic}` in the template survives.
        let rendered = render("{topic}/error", &deep(300)).unwrap();
        valid(&rendered).unwrap();
        assert!(rendered.starts_with("a/a/") && rendered.ends_with("/error"));
        assert_eq!(
            render("{topic}/error", &deep(127)).unwrap(),
            deep(127) + "/error"
        );
        assert_ne!(
            render("{topic}/error", &deep(128)).unwrap(),
            deep(128) + "/error"
        );
    }

    #[test]
    fn long_topics_are_folded_whole() {
        let long = format!("cams/{}", "é".repeat(3000));
        let rendered = render("mqimg/results/{topic}", &long).unwrap();
        valid(&rendered).unwrap();
        assert_eq!(rendered, format!("mqimg/results/{}", fold(&split(&long))));
        let rendered = render("{topic}/x/{topic}", &long).unwrap();
        let folded = fold(&split(&long));
        assert_eq!(rendered, format!("{folded}/x/{folded}"));
    }

    #[test]
    fn empty_topics_and_oversized_templates_still_give_valid_topics() {
        valid(&render("{topic}", "").unwrap()).unwrap();
        let template = format!("{}/{{topic}}", "t".repeat(5000));
        valid(&render(&template, "a").unwrap()).unwrap();
        let template = format!("{}/{{topic}}", deep(300));
        let rendered = render(&template, "a").unwrap();
        valid(&rendered).unwrap();
        assert!(rendered.starts_with("a/a/a/"));
    }

    #[test]
    fn templates_must_leave_room_and_avoid_what_brokers_refuse() {
        for good in [
            "mqimg/results/{topic}",
            "{topic}/error",
            "records",
            "a/{topic}/{topic}",
        ] {
            validate_template(good).unwrap();
        }
        for (bad, why) in [
            ("mqimg/\u{1}/{topic}", "U+0001"),
            ("mqimg/\u{85}/{topic}", "U+0085"),
            ("mqimg/+/{topic}", "wildcard"),
            ("mqimg/#", "wildcard"),
            ("$SYS/{topic}", "starts with $"),
        ] {
            let err = validate_template(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(validate_template(&format!("{}/{{topic}}", "t".repeat(4070))).is_err());
        validate_template(&format!("{}/{{topic}}", "t".repeat(4000))).unwrap();
        assert!(validate_template(&format!("{}/{{topic}}", deep(128))).is_err());
        validate_template(&format!("{}/{{topic}}", deep(127))).unwrap();
    }

    #[test]
    fn unescape_accepts_only_what_escape_produces() {
        for level in ["", "a", "%", "a%2Bb", "x\u{1}y", "+", "é\u{FFFE}"] {
            assert_eq!(unescape_level(&escape_level(level)).as_deref(), Some(level));
        }
        for not_escaped in [
            "%", "%4", "%41", "%2b", "%zz", "%2F", "a+b", "a/b", "\u{1}", "%C3",
        ] {
            assert_eq!(unescape_level(not_escaped), None, "{not_escaped:?}");
        }
    }

    fn topic_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::collection::vec(
                "[a%+#/\u{0}-\u{3}\u{7F}-\u{A0}\u{FDD0}\u{FFFF}é]{0,4}",
                1..6
            )
            .prop_map(|levels| levels.join("/")),
            (1usize..400).prop_map(deep),
            (1usize..5000).prop_map(|n| format!("c/{}", "x".repeat(n))),
        ]
    }

    proptest! {
        #[test]
        fn every_rendering_is_valid_and_distinct_topics_stay_distinct(
            a in topic_strategy(),
            b in topic_strategy(),
            template in prop_oneof![
                Just("mqimg/results/{topic}"),
                Just("{topic}/error"),
                Just("r-{topic}-{topic}"),
                Just("records"),
            ],
        ) {
            let ra = render(template, &a).unwrap();
            let rb = render(template, &b).unwrap();
            prop_assert!(valid(&ra).is_ok(), "{:?} → {:?}: {:?}", a, ra, valid(&ra));
            if a != b && template.contains(PLACEHOLDER) {
                prop_assert_ne!(ra, rb);
            }
        }
    }
}
