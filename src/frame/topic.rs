//! MQTT topic names and filters: validating filters, matching topics against them, and rendering the
//! record topics (`{topic}` templates).

/// Checks a topic filter (`+`/`#` wildcards; `$share/GROUP/FILTER` allowed).
pub fn validate_filter(filter: &str) -> Result<(), String> {
    let inner = match filter.strip_prefix("$share/") {
        Some(rest) => match rest.split_once('/') {
            Some((group, inner)) if !group.is_empty() && !group.contains(['+', '#']) => inner,
            _ => {
                return Err(format!(
                    "{filter:?}: a shared subscription is $share/GROUP/FILTER"
                ));
            }
        },
        None => filter,
    };
    if inner.is_empty() {
        return Err("the topic filter is empty".into());
    }
    if inner.contains('\0') {
        return Err(format!("{filter:?} contains a NUL character"));
    }
    let levels: Vec<&str> = inner.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(format!(
                "{filter:?}: '#' must be a whole level and the last one"
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!("{filter:?}: '+' must be a whole level"));
        }
    }
    Ok(())
}

/// The filter without a `$share/GROUP/` prefix: what topics are matched against.
pub fn unshared(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_, inner)| inner)
}

/// Whether `topic` matches `filter` (MQTT 3.1.1 §4.7; wildcards never match `$`-topics at the root).
pub fn matches(filter: &str, topic: &str) -> bool {
    let filter = unshared(filter);
    if topic.starts_with('$') && !filter.starts_with('$') {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// MQTT's longest topic name, in bytes.
const MAX_TOPIC_BYTES: usize = 65_535;

/// A record topic: `template` with `{topic}` replaced by the frame's topic; `None` when records are off.
/// Cut to MQTT's limit: a longer topic would fail to encode and drop the whole connection.
pub fn render(template: &str, topic: &str) -> Option<String> {
    if template.is_empty() {
        return None;
    }
    let mut rendered = template.replace("{topic}", topic);
    if rendered.len() > MAX_TOPIC_BYTES {
        let mut cut = MAX_TOPIC_BYTES;
        while !rendered.is_char_boundary(cut) {
            cut -= 1;
        }
        rendered.truncate(cut);
    }
    Some(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_mqtt_says() {
        assert!(matches("cams/#", "cams/door/jpeg"));
        assert!(matches("cams/#", "cams"));
        assert!(matches("cams/+/jpeg", "cams/door/jpeg"));
        assert!(!matches("cams/+/jpeg", "cams/door/png"));
        assert!(!matches("cams/+", "cams/door/jpeg"));
        assert!(matches("#", "anything/at/all"));
        assert!(!matches("#", "$SYS/broker/load"));
        assert!(matches("$share/g/cams/+", "cams/door"));
        assert!(matches("a//b", "a//b"));
        assert!(!matches("a/b", "a/b/"));
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in ["", "a/#/b", "a/b#", "a+/b", "$share/g", "$share//x", "a\0b"] {
            assert!(validate_filter(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["#", "+", "a/+/b/#", "$share/g/a/#", "/leading"] {
            assert!(validate_filter(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn templates_render_the_frame_topic_or_turn_records_off() {
        assert_eq!(
            render("mqimg/results/{topic}", "cams/door").as_deref(),
            Some("mqimg/results/cams/door")
        );
        assert_eq!(render("", "cams/door"), None);
        let long = "é".repeat(40_000);
        let rendered = render("mqimg/results/{topic}", &long).unwrap_or_default();
        assert!(rendered.len() <= 65_535 && rendered.starts_with("mqimg/results/é"));
    }
}
