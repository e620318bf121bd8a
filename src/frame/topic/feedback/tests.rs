#![expect(clippy::unwrap_used, reason = "tests")]

use proptest::prelude::*;

use super::*;
use crate::frame::topic::{MAX_LEVELS, validate_filter, validate_template};

/// The loop found, checked again from scratch: the frame topic matches its filter and its record
/// topic matches the other.
fn looping(template: &str, filters: &[&str]) -> Option<Feedback> {
    let found = feedback(template, filters)?;
    assert!(
        matches(&found.frame_filter, &found.frame_topic),
        "{found:?}"
    );
    assert_eq!(
        render(template, &found.frame_topic).as_deref(),
        Some(found.record_topic.as_str())
    );
    assert!(
        matches(&found.record_filter, &found.record_topic),
        "{found:?}"
    );
    assert!(filters.contains(&found.frame_filter.as_str()));
    assert!(filters.contains(&found.record_filter.as_str()));
    Some(found)
}

#[test]
fn a_suffix_under_the_subscribed_prefix_loops() {
    let found = looping("{topic}/error", &["cameras/#"]).unwrap();
    assert_eq!(
        found.to_string(),
        r#"a frame on "cameras/x" gives a record on "cameras/x/error", which "cameras/#" matches"#
    );
    let found = looping("{topic}/error", &["cameras/+"]);
    assert_eq!(found, None, "cameras/x/error has three levels");
    assert!(looping("{topic}/error", &["cameras/+", "cameras/+/+"]).is_some());
}

#[test]
fn the_default_templates_do_not_loop_with_camera_filters() {
    for template in ["mqimg/results/{topic}", "mqimg/errors/{topic}"] {
        for filters in [
            &["cameras/#"][..],
            &["cams/+/jpeg", "door/#", "+/snapshot"],
            &["$share/g/cameras/#"],
            &["mqimg"],
            &["mqimg/results"],
            &["$SYS/#"],
        ] {
            assert_eq!(feedback(template, filters), None, "{template} {filters:?}");
        }
    }
}

#[test]
fn wildcard_filters_loop_through_the_default_templates() {
    for filters in [
        &["#"][..],
        &["+/+/#"],
        &["+/results/#"],
        &["mqimg/#"],
        &["cams/#", "mqimg/+/cams/+"],
        &["$share/g/#"],
        &["cams/+", "$share/workers/mqimg/results/cams/+"],
    ] {
        let found = looping("mqimg/results/{topic}", filters);
        assert!(found.is_some(), "{filters:?}");
    }
    let found = looping("mqimg/results/{topic}", &["cams/+", "mqimg/results/cams/+"]).unwrap();
    assert_eq!(found.frame_topic, "cams/x");
    assert_eq!(
        found.to_string(),
        r#"a frame on "cams/x" (taken by "cams/+") gives a record on "mqimg/results/cams/x", which "mqimg/results/cams/+" matches"#
    );
    // The record has four levels, the filter three.
    assert_eq!(
        feedback("mqimg/results/{topic}", &["cams/+", "mqimg/+/cams"]),
        None
    );
}

#[test]
fn shared_subscriptions_loop_like_plain_ones() {
    let found = looping("{topic}/error", &["$share/g/cameras/#"]).unwrap();
    assert_eq!(found.record_filter, "$share/g/cameras/#");
    assert_eq!(found.record_topic, "cameras/x/error");
}

#[test]
fn a_template_without_topic_loops_when_a_filter_matches_it() {
    assert!(looping("cameras/records", &["cameras/#"]).is_some());
    assert!(
        looping("cameras", &["cameras/#"]).is_some(),
        "# matches the parent"
    );
    assert!(looping("cameras/records", &["+/records"]).is_some());
    assert_eq!(feedback("records", &["cameras/#"]), None);
    assert_eq!(feedback("cameras/a/records", &["cameras/+"]), None);
    assert_eq!(feedback("", &["#"]), None, "records off");
}

#[test]
fn text_joined_to_the_topic_is_matched_inside_the_level() {
    let found = looping("pre-{topic}", &["cams/+", "pre-cams/door"]).unwrap();
    assert_eq!(found.frame_topic, "cams/door");
    let found = looping("r{topic}", &["cams/+", "rcams/#"]).unwrap();
    assert_eq!(found.record_topic, "rcams/x");
    assert_eq!(feedback("r{topic}", &["cams/+", "cams/#"]), None);
    let found = looping("a/{topic}-b", &["x/+", "a/x/door-b"]).unwrap();
    assert_eq!(found.frame_topic, "x/door");
}

#[test]
fn a_topic_used_twice_must_be_the_same_both_times() {
    let found = looping("{topic}/{topic}", &["a/+", "a/b/a/b"]).unwrap();
    assert_eq!(found.frame_topic, "a/b");
    assert_eq!(feedback("{topic}/{topic}", &["a/+", "a/b/a/c"]), None);
    // "c/v" gives "c/v-c/v": the unknown faces two literals.
    let found = looping("{topic}-{topic}", &["c/+", "c/ab-c/ab"]).unwrap();
    assert_eq!(found.frame_topic, "c/ab");
    assert_eq!(feedback("{topic}-{topic}", &["c/+", "c/ab-c/ac"]), None);
    // With one level the two copies share a record level: "a" + "-" + "a".
    let found = looping("x/{topic}-{topic}", &["+", "x/+"]).unwrap();
    assert_eq!(found.record_topic, "x/x-x");
}

#[test]
fn escaped_characters_are_matched_as_the_record_spells_them() {
    let found = looping("{topic}/x", &["cams/a%b", "cams/a%25b/x"]).unwrap();
    assert_eq!(found.frame_topic, "cams/a%b");
    assert_eq!(feedback("{topic}/x", &["cams/a%b", "cams/a%b/x"]), None);
    // The unknown level must be "a%b" for its record level to read "a%25b".
    let found = looping("r/{topic}", &["+", "r/a%25b"]).unwrap();
    assert_eq!(found.frame_topic, "a%b");
    assert_eq!(feedback("r/{topic}", &["+", "r/a%b"]), None);
}

#[test]
fn records_of_deep_topics_loop_through_their_folded_form() {
    // Its own topics have 128 levels: their records (129) keep 126 levels, fold two, and end in
    // "error" again.
    let filter = format!("cams/{}error", "+/".repeat(126));
    assert_eq!(filter.split('/').count(), MAX_LEVELS);
    let found = looping("{topic}/error", &[&filter]).unwrap();
    assert_eq!(found.frame_topic.split('/').count(), MAX_LEVELS);
    assert!(found.record_topic.contains("/%rest-2-levels~"), "{found:?}");
    // A template without the suffix cannot reach the final literal.
    assert_eq!(feedback("{topic}/errors", &[&filter]), None);
}

#[test]
fn records_of_long_topics_loop_through_their_folded_form() {
    // "x/error" gives "x/error/error"; only a topic too long to keep is folded into one level.
    let found = looping("{topic}/error", &["+/error"]).unwrap();
    assert!(found.frame_topic.len() > MAX_BYTES);
    assert!(found.record_topic.starts_with("%rest-2-levels~"));
    assert!(
        found.to_string().contains("(2 levels, 4103 bytes)"),
        "{found}"
    );
    assert_eq!(feedback("{topic}/error", &["+/errors"]), None);
    assert_eq!(feedback("{topic}/error", &["cams/+/error"]), None);
}

#[test]
fn a_dollar_record_topic_comes_from_a_dollar_filter_under_a_leading_topic() {
    assert_eq!(
        reserved_record("{topic}/r", &["cams/#", "$SYS/broker/+"]),
        Some(("$SYS/broker/x".into(), "$SYS/broker/x/r".into()))
    );
    assert_eq!(
        reserved_record("{topic}/r", &["$share/g/$aws/#"])
            .unwrap()
            .1,
        "$aws/r"
    );
    assert_eq!(reserved_record("{topic}/r", &["cams/#", "#", "+/x"]), None);
    assert_eq!(reserved_record("mqimg/{topic}", &["$SYS/#"]), None);
}

/// Every level of a small alphabet, and the substrings of the literals below, so that topics joined to
/// template text can spell them.
const LEVELS: [&str; 8] = ["", "a", "b", "x", "-", "a-", "-b", "a-b"];

fn filter_strategy() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(
            prop_oneof![Just("a"), Just("b"), Just("a-b"), Just("+")],
            0..4,
        ),
        any::<bool>(),
    )
        .prop_filter_map("an empty filter", |(levels, open)| {
            let mut levels = levels;
            if open {
                levels.push("#");
            }
            let filter = levels.join("/");
            validate_filter(&filter).is_ok().then_some(filter)
        })
}

fn template_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("{topic}"),
            Just("a"),
            Just("b"),
            Just("/"),
            Just("-"),
            Just("a/"),
        ],
        1..5,
    )
    .prop_filter_map("an invalid template", |pieces| {
        let template = pieces.concat();
        validate_template(&template).is_ok().then_some(template)
    })
}

/// Every topic of up to `depth` levels over [`LEVELS`].
fn topics(depth: usize) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let mut last: Vec<String> = vec![String::new()];
    for d in 1..=depth {
        last = last
            .iter()
            .flat_map(|prefix| {
                LEVELS.iter().map(move |level| {
                    if d == 1 {
                        (*level).to_owned()
                    } else {
                        format!("{prefix}/{level}")
                    }
                })
            })
            .collect();
        all.extend(last.iter().cloned());
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Whatever loop from one filter to another trying every small topic finds, the search finds too.
    #[test]
    fn the_search_finds_every_loop_a_brute_force_finds(
        template in template_strategy(),
        from in filter_strategy(),
        to in filter_strategy(),
    ) {
        let brute = topics(3).into_iter().find_map(|topic| {
            let record = render(&template, &topic)?;
            (matches(&from, &topic) && matches(&to, &record)).then_some((topic, record))
        });
        let found = between(&template, &from, &to);
        if let Some(found) = &found {
            prop_assert!(matches(&from, &found.frame_topic), "{:?}", found);
            prop_assert_eq!(render(&template, &found.frame_topic), Some(found.record_topic.clone()));
            prop_assert!(matches(&to, &found.record_topic), "{:?}", found);
        }
        prop_assert!(
            brute.is_none() || found.is_some(),
            "{:?} from {:?} to {:?}: missed {:?}", template, from, to, brute
        );
    }
}
