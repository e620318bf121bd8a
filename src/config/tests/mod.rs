//! Loading settings end to end: file, environment, errors as an operator reads them.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::frame::chunks::Fields;

mod keys;

fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

fn load_str(toml: &str, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::from_toml_str(toml, env(vars))
}

fn error(toml: &str, vars: &[(&str, &str)]) -> String {
    load_str(toml, vars).unwrap_err().to_string()
}

#[test]
fn the_shipped_example_config_lists_the_defaults() {
    let mut shipped = load_str(DEFAULT_TOML, &[]).unwrap();
    // The example's only non-defaults: one subscription and a frames folder, so it runs as is.
    assert_eq!(shipped.subscriptions.len(), 1);
    assert_eq!(shipped.output.dir.as_deref(), Some(Path::new("frames")));
    shipped.subscriptions.clear();
    shipped.output.dir = None;
    assert_eq!(shipped.to_toml(), Settings::default().to_toml());
}

#[test]
fn the_schema_knows_every_key_of_the_example_including_the_commented_ones() {
    // `# key = value` lines are the optional keys: uncommented, the example must still load.
    let uncommented: String = DEFAULT_TOML
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(key, value)| {
                    key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        && value.starts_with('"')
                }) =>
            {
                rest
            }
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    // The optional keys include alternatives (a password or a file holding it) and TLS keys, which
    // need a TLS URL.
    let uncommented = uncommented
        .replace("\npassword = ", "\n# password = ")
        .replace("url = \"mqtt://", "url = \"mqtts://");
    assert!(uncommented.contains("\nusername = "), "{uncommented}");
    assert!(uncommented.contains("\njson_field = "), "{uncommented}");
    assert!(uncommented.contains("\nid_field = "), "{uncommented}");
    // The field names are json-parts keys.
    let uncommented = uncommented.replace("\nchunks = \"none\"", "\nchunks = \"json-parts\"");
    let s = load_str(&uncommented, &[]).unwrap();
    assert_eq!(s.broker.username.as_deref(), Some("mqimg"));
    assert_eq!(s.subscriptions[0].json_field.as_deref(), Some("image"));
    assert_eq!(s.subscriptions[0].source().fields, Fields::default());
    assert_eq!(s.subscriptions[0].part_field.as_deref(), Some("part"));
    assert!(s.broker.password_file.is_some());
    assert!(s.broker.tls.ca_file.is_some() && s.broker.tls.server_name.is_some());
}

#[test]
fn a_file_on_disk_loads_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mqimg.toml");
    std::fs::write(&path, "[log]\nsummary_secs = 0\n").unwrap();
    let s = Settings::load_with_env(Some(&path), env(&[])).unwrap();
    assert_eq!(s.log.summary_interval, None);
    let missing = dir.path().join("absent.toml");
    let err = Settings::load_with_env(Some(&missing), env(&[])).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.toml"), "{err}");
}

#[test]
fn toml_syntax_errors_give_the_line_and_column() {
    let err = error("[broker]\nurl = \n", &[]);
    assert!(
        err.starts_with("cannot parse config at line 2, column "),
        "{err}"
    );
}

#[test]
fn environment_overrides_the_file_and_keeps_leading_zeros_in_strings() {
    let s = load_str(
        "[broker]\nclient_id = \"cam\"\nkeep_alive_secs = 10\n",
        &[
            ("MQIMG__BROKER__CLIENT_ID", "0042"),
            ("MQIMG__BROKER__KEEP_ALIVE_SECS", "45"),
            ("MQIMG__DECODE__APPLY_ORIENTATION", "false"),
            ("MQIMG__OUTPUT__DIR", "007"),
            ("UNRELATED", "x"),
        ],
    )
    .unwrap();
    assert_eq!(s.broker.client_id, "0042");
    assert_eq!(s.broker.keep_alive, Duration::from_secs(45));
    assert!(!s.decode.apply_orientation);
    assert_eq!(s.output.dir.as_deref(), Some(Path::new("007")));
}

#[test]
fn an_env_value_of_the_wrong_type_names_the_key_and_the_variable() {
    let err = error("", &[("MQIMG__BROKER__KEEP_ALIVE_SECS", "soon")]);
    assert!(err.contains("broker.keep_alive_secs"), "{err}");
    assert!(err.contains("MQIMG__BROKER__KEEP_ALIVE_SECS"), "{err}");
    assert!(err.contains("\"soon\""), "{err}");
}

#[test]
fn an_unknown_key_is_an_error_that_names_it_and_suggests_the_nearest() {
    let err = error("[broker]\nurll = \"mqtt://x\"\n", &[]);
    assert_eq!(
        err,
        "unknown key broker.urll (MQIMG__BROKER__URLL): did you mean url?"
    );
    let err = error("[broker]\nclientid = \"cam\"\n", &[]);
    assert_eq!(
        err,
        "unknown key broker.clientid (MQIMG__BROKER__CLIENTID): did you mean client_id?"
    );
    let err = error("[brokr]\nurl = \"mqtt://x\"\n", &[]);
    assert!(err.ends_with("did you mean broker?"), "{err}");
    let err = error("[[subscriptions]]\ntopic = \"a\"\nqoss = 1\n", &[]);
    assert_eq!(
        err,
        "unknown key subscriptions[0].qoss (MQIMG__SUBSCRIPTIONS__0__QOSS): did you mean qos?"
    );
}

#[test]
fn an_unknown_key_far_from_any_lists_the_allowed_ones() {
    let err = error("[log]\ncolour = true\n", &[]);
    assert_eq!(
        err,
        "unknown key log.colour (MQIMG__LOG__COLOUR): expected one of format, level, summary_secs"
    );
}

#[test]
fn an_unknown_environment_variable_is_an_error_that_names_it() {
    let err = error("", &[("MQIMG__BROKER__URLL", "mqtt://x")]);
    assert_eq!(
        err,
        "unknown key broker.urll (MQIMG__BROKER__URLL): did you mean url?"
    );
    let err = error("", &[("MQIMG__BROKERS__URL", "mqtt://x")]);
    assert!(
        err.starts_with("unknown key brokers (MQIMG__BROKERS__URL)"),
        "{err}"
    );
    let err = error("", &[("MQIMG__BROKER", "mqtt://x")]);
    assert!(err.contains("as in MQIMG__BROKER__URL"), "{err}");
    let err = error("", &[("MQIMG__BROKER__URL__HOST", "x")]);
    assert!(
        err.contains("broker.url (MQIMG__BROKER__URL__HOST)"),
        "{err}"
    );
    // Other prefixes are not mqimg's.
    load_str("", &[("MQIMG_BROKER_URLL", "x"), ("XMQIMG__A", "x")]).unwrap();
}

#[test]
fn enum_values_out_of_the_allowed_set_list_the_allowed_ones() {
    let err = error("[output]\nformat = \"jpeg\"\n", &[]);
    assert_eq!(
        err,
        "invalid config: output.format (MQIMG__OUTPUT__FORMAT): \"jpeg\" is not one of original, png, ppm"
    );
    let err = error("", &[("MQIMG__LOG__FORMAT", "yaml")]);
    assert!(
        err.ends_with("log.format (MQIMG__LOG__FORMAT): \"yaml\" is not one of text, json"),
        "{err}"
    );
    let err = error(
        "[[subscriptions]]\ntopic = \"a\"\nencoding = \"b64\"\n",
        &[],
    );
    assert!(
        err.ends_with(
            "subscriptions[0].encoding (MQIMG__SUBSCRIPTIONS__0__ENCODING): \"b64\" is not one of auto, raw, base64, data-uri, json"
        ),
        "{err}"
    );
    let err = error("[output]\nqos = 3\n", &[]);
    assert!(
        err.ends_with("output.qos (MQIMG__OUTPUT__QOS): 3 is not one of 0, 1, 2"),
        "{err}"
    );
    let err = error("", &[("MQIMG__OUTPUT__QOS", "once")]);
    assert!(err.ends_with("\"once\" is not one of 0, 1, 2"), "{err}");
}

#[test]
fn a_misspelt_log_level_is_refused_with_the_levels() {
    let err = error("", &[("MQIMG__LOG__LEVEL", "verbose")]);
    assert!(
        err.starts_with(
            "invalid config: log.level (MQIMG__LOG__LEVEL): \"verbose\" is not a level"
        ),
        "{err}"
    );
    assert!(
        err.contains("error, warn, info, debug, trace, off"),
        "{err}"
    );
    let s = load_str("[log]\nlevel = \"mqimg=debug,rumqttc=warn\"\n", &[]).unwrap();
    assert_eq!(s.log.level.as_str(), "mqimg=debug,rumqttc=warn");
}

#[test]
fn subscriptions_can_come_from_the_environment() {
    let s = load_str(
        "",
        &[
            ("MQIMG__SUBSCRIPTIONS__0__TOPIC", "cams/+/jpeg"),
            ("MQIMG__SUBSCRIPTIONS__0__QOS", "0"),
            ("MQIMG__SUBSCRIPTIONS__0__ENCODING", "base64"),
            ("MQIMG__SUBSCRIPTIONS__1__TOPIC", "door/#"),
        ],
    )
    .unwrap();
    assert_eq!(s.subscriptions.len(), 2);
    assert_eq!(s.subscriptions[0].topic, "cams/+/jpeg");
    assert_eq!(s.subscriptions[0].qos, Qos::AtMostOnce);
    assert_eq!(s.subscriptions[0].encoding, Encoding::Base64);
    assert_eq!(s.subscriptions[1].topic, "door/#");
    assert_eq!(s.subscriptions[1].qos, Qos::AtLeastOnce);
}

#[test]
fn environment_subscriptions_overlay_the_file_by_index_or_append() {
    let file = "[[subscriptions]]\ntopic = \"a/#\"\nencoding = \"json\"\n";
    let s = load_str(
        file,
        &[
            ("MQIMG__SUBSCRIPTIONS__0__QOS", "2"),
            ("MQIMG__SUBSCRIPTIONS__1__TOPIC", "b/#"),
        ],
    )
    .unwrap();
    assert_eq!(s.subscriptions.len(), 2);
    assert_eq!(s.subscriptions[0].topic, "a/#");
    assert_eq!(s.subscriptions[0].encoding, Encoding::Json);
    assert_eq!(s.subscriptions[0].qos, Qos::ExactlyOnce);
    assert_eq!(s.subscriptions[1].topic, "b/#");
}

#[test]
fn environment_indexes_apply_in_numeric_order() {
    let vars: Vec<(String, String)> = (0..12)
        .map(|i| {
            (
                format!("MQIMG__SUBSCRIPTIONS__{i}__TOPIC"),
                format!("cams/{i}"),
            )
        })
        .collect();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (&**k, &**v)).collect();
    let s = load_str("", &vars).unwrap();
    assert_eq!(s.subscriptions.len(), 12);
    assert_eq!(s.subscriptions[10].topic, "cams/10");
}

#[test]
fn a_gap_in_environment_indexes_is_an_error_in_the_env_form() {
    let err = error("", &[("MQIMG__SUBSCRIPTIONS__1__TOPIC", "a/#")]);
    assert_eq!(
        err,
        "invalid config: subscriptions[1] (MQIMG__SUBSCRIPTIONS__1__TOPIC): index 1 leaves a gap: \
         subscriptions has 0 element(s) from the file and lower indexes, so the next one is 0"
    );
    let err = error("", &[("MQIMG__SUBSCRIPTIONS__X__TOPIC", "a/#")]);
    assert!(err.contains("`x` is not an index"), "{err}");
    let err = error("", &[("MQIMG__SUBSCRIPTIONS__0", "a/#")]);
    assert!(
        err.contains("as in MQIMG__SUBSCRIPTIONS__0__TOPIC"),
        "{err}"
    );
}

#[test]
fn errors_about_subscriptions_name_the_env_form_with_the_index() {
    let err = error("", &[("MQIMG__SUBSCRIPTIONS__0__TOPIC", "cams/#/x")]);
    assert!(
        err.contains("subscriptions[0].topic (MQIMG__SUBSCRIPTIONS__0__TOPIC)"),
        "{err}"
    );
    let err = error("", &[("MQIMG__SUBSCRIPTIONS__0__QOS", "1")]);
    assert!(
        err.contains("subscriptions[0] (MQIMG__SUBSCRIPTIONS__0)") && err.contains("topic"),
        "{err}"
    );
    assert!(!err.contains("SUBSCRIPTIONS["), "{err}");
}

#[test]
fn env_name_turns_keys_into_variables() {
    assert_eq!(env_name("broker.url"), "MQIMG__BROKER__URL");
    assert_eq!(
        env_name("subscriptions[12].json_field"),
        "MQIMG__SUBSCRIPTIONS__12__JSON_FIELD"
    );
}

#[test]
fn a_packet_limit_below_the_payload_limit_is_refused_with_the_env_name() {
    let err = error(
        "[broker]\nmax_packet_bytes = 10240\n[decode]\nmax_payload_bytes = 1000000\n",
        &[],
    );
    assert!(err.contains("broker.max_packet_bytes"), "{err}");
    assert!(err.contains("MQIMG__BROKER__MAX_PACKET_BYTES"), "{err}");
}

#[test]
fn an_empty_client_id_needs_a_clean_session() {
    let err = error("[broker]\nclient_id = \"\"\n", &[]);
    assert!(err.contains("broker.client_id"), "{err}");
    load_str("[broker]\nclient_id = \"\"\nclean_session = true\n", &[]).unwrap();
}

#[test]
fn subscriptions_default_to_qos_1_and_auto_and_bad_filters_are_named() {
    let s = load_str("[[subscriptions]]\ntopic = \"cams/+/jpeg\"\n", &[]).unwrap();
    assert_eq!(s.subscriptions[0].qos, Qos::AtLeastOnce);
    assert_eq!(s.subscriptions[0].encoding, Encoding::Auto);
    let err = error("[[subscriptions]]\ntopic = \"cams/#/x\"\n", &[]);
    assert!(err.contains("subscriptions[0].topic"), "{err}");
    load_str("[[subscriptions]]\ntopic = \"$share/g/cams/#\"\n", &[]).unwrap();
    let err = error("[[subscriptions]]\ntopic = \"#\"\n", &[]);
    assert!(err.contains("feeds records back"), "{err}");
}

#[test]
fn a_template_whose_records_a_subscription_takes_back_is_refused_with_an_example() {
    // Issue 8, finding 5: this passed check-config, then one bad frame made 206 messages in 5 s.
    let cameras = "[[subscriptions]]\ntopic = \"cameras/#\"\n";
    let err = error(
        &format!("{cameras}[output]\nerrors_topic = \"{{topic}}/error\"\n"),
        &[],
    );
    assert_eq!(
        err,
        "invalid config: output.errors_topic (MQIMG__OUTPUT__ERRORS_TOPIC): \"{topic}/error\" feeds \
         records back into the subscriptions: a frame on \"cameras/x\" gives a record on \
         \"cameras/x/error\", which \"cameras/#\" matches"
    );
    let err = error(
        cameras,
        &[("MQIMG__OUTPUT__RESULTS_TOPIC", "cameras/{topic}")],
    );
    assert!(
        err.contains("output.results_topic (MQIMG__OUTPUT__RESULTS_TOPIC)")
            && err.contains("a frame on \"cameras/x\" gives a record on \"cameras/cameras/x\""),
        "{err}"
    );
    // A shared subscription takes records back like a plain one.
    let err = error(
        "[[subscriptions]]\ntopic = \"$share/g/cams/+\"\n[[subscriptions]]\ntopic = \"out/#\"\n\
         [output]\nresults_topic = \"out/{topic}\"\n",
        &[],
    );
    assert!(err.contains("which \"out/#\" matches"), "{err}");
    // Records elsewhere, or off, are fine.
    load_str(
        &format!("{cameras}[output]\nerrors_topic = \"camera-errors/{{topic}}\"\n"),
        &[],
    )
    .unwrap();
    load_str(&format!("{cameras}[output]\nresults_topic = \"\"\n"), &[]).unwrap();
}

#[test]
fn templates_with_control_characters_or_a_dollar_prefix_are_refused() {
    let err = error("[output]\nresults_topic = \"mqimg/\\u0007/{topic}\"\n", &[]);
    assert!(
        err.contains("output.results_topic (MQIMG__OUTPUT__RESULTS_TOPIC)")
            && err.contains("U+0007"),
        "{err}"
    );
    let err = error("", &[("MQIMG__OUTPUT__ERRORS_TOPIC", "$SYS/mqimg/{topic}")]);
    assert!(
        err.contains("MQIMG__OUTPUT__ERRORS_TOPIC") && err.contains("starts with $"),
        "{err}"
    );
    let err = error(
        "[[subscriptions]]\ntopic = \"$aws/things/+/cam\"\n[output]\nresults_topic = \"{topic}/result\"\n",
        &[],
    );
    assert!(
        err.contains("output.results_topic")
            && err.contains(
                "a frame on \"$aws/things/x/cam\" gives a record on \"$aws/things/x/cam/result\""
            ),
        "{err}"
    );
}

#[test]
fn an_empty_output_dir_means_no_files() {
    // Issue 8, finding 9: the only way to undo a container image's MQIMG__OUTPUT__DIR.
    let s = load_str("[output]\ndir = \"\"\n", &[]).unwrap();
    assert_eq!(s.output.dir, None);
    let s = load_str(
        "[output]\ndir = \"frames\"\n",
        &[("MQIMG__OUTPUT__DIR", "")],
    )
    .unwrap();
    assert_eq!(s.output.dir, None);
    assert!(s.to_toml().contains("dir = \"\"\n"), "{}", s.to_toml());
    let mut s = Settings::default();
    s.output.dir = Some(PathBuf::new());
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("output.dir (MQIMG__OUTPUT__DIR)"), "{err}");
}
