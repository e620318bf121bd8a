//! MQTT topic names and filters: validating filters, matching topics against them, rendering record
//! topics from `{topic}` templates (`render`), and finding templates whose records would come back as
//! frames (`feedback`).

mod feedback;
mod render;

pub use feedback::{Feedback, feedback, feedback_between, reserved_record};
pub use render::{MAX_BYTES, MAX_LEVELS, refused_char, render, validate_template};

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
}
