//! Keys parsed into ready types: secrets, the broker URL and TLS files, listen addresses, HTTP
//! settings, durations, integer ranges.

use super::*;

#[test]
fn passwords_are_masked_in_debug_and_toml() {
    let s = load_str("[broker]\nusername = \"u\"\npassword = \"hunter2\"\n", &[]).unwrap();
    assert_eq!(s.broker.password.as_ref().unwrap().expose(), "hunter2");
    assert!(!format!("{s:?}").contains("hunter2"));
    assert!(!s.to_toml().contains("hunter2"));
    assert!(s.to_toml().contains("***"));
}

#[test]
fn the_broker_url_is_parsed_once_into_an_address() {
    let s = load_str("[broker]\nurl = \"tcp://[::1]:1885\"\n", &[]).unwrap();
    assert_eq!(s.broker.url.host(), "[::1]");
    assert_eq!(s.broker.url.port(), 1885);
    let err = error("", &[("MQIMG__BROKER__URL", "ws://x:8080")]);
    assert!(
        err.starts_with("invalid config: broker.url (MQIMG__BROKER__URL): unsupported scheme `ws`"),
        "{err}"
    );
}

#[test]
fn the_listen_address_parses_and_empty_turns_it_off() {
    let s = load_str("", &[]).unwrap();
    assert_eq!(
        s.http.listen,
        Some("127.0.0.1:9464".parse::<SocketAddr>().unwrap())
    );
    let s = load_str("[http]\nlisten = \"[::]:9000\"\n", &[]).unwrap();
    assert_eq!(s.http.listen, Some("[::]:9000".parse().unwrap()));
    let s = load_str("", &[("MQIMG__HTTP__LISTEN", "")]).unwrap();
    assert_eq!(s.http.listen, None);
    assert!(s.to_toml().contains("listen = \"\""), "{}", s.to_toml());
    let err = error("[http]\nlisten = \"localhost:9464\"\n", &[]);
    assert!(
        err.contains("http.listen (MQIMG__HTTP__LISTEN): \"localhost:9464\" is not an address"),
        "{err}"
    );
}

#[test]
fn the_old_metrics_listen_key_is_read_as_http_listen_and_reported() {
    let deprecated = vec![Deprecated {
        old: "metrics.listen",
        new: "http.listen",
    }];
    let s = load_str("[metrics]\nlisten = \"127.0.0.1:9000\"\n", &[]).unwrap();
    assert_eq!(s.http.listen, Some("127.0.0.1:9000".parse().unwrap()));
    assert_eq!(s.deprecated, deprecated);
    assert!(!s.to_toml().contains("[metrics]"), "{}", s.to_toml());
    let s = load_str("", &[("MQIMG__METRICS__LISTEN", "")]).unwrap();
    assert_eq!(s.http.listen, None);
    assert_eq!(s.deprecated, deprecated);
    // The same value under both names is not a conflict.
    let both = "[metrics]\nlisten = \"127.0.0.1:9000\"\n[http]\nlisten = \"127.0.0.1:9000\"\n";
    assert_eq!(load_str(both, &[]).unwrap().deprecated, deprecated);
    // Each source renames its own; the environment still overrides the file.
    let s = load_str(
        "[metrics]\nlisten = \"127.0.0.1:9000\"\n",
        &[("MQIMG__HTTP__LISTEN", "127.0.0.1:9001")],
    )
    .unwrap();
    assert_eq!(s.http.listen, Some("127.0.0.1:9001".parse().unwrap()));
    let s = load_str(
        "[http]\nlisten = \"127.0.0.1:9000\"\n",
        &[("MQIMG__METRICS__LISTEN", "0.0.0.0:9464")],
    )
    .unwrap();
    assert_eq!(s.http.listen, Some("0.0.0.0:9464".parse().unwrap()));
    assert_eq!(s.deprecated, deprecated);
    let err = error(
        "[metrics]\nlisten = \"127.0.0.1:9000\"\n[http]\nlisten = \"127.0.0.1:9001\"\n",
        &[],
    );
    assert_eq!(
        err,
        "invalid config: metrics.listen (MQIMG__METRICS__LISTEN): is the old name of http.listen \
         (MQIMG__HTTP__LISTEN), which is set too, to another value: keep only http.listen"
    );
    let err = error(
        "",
        &[
            ("MQIMG__METRICS__LISTEN", "127.0.0.1:9000"),
            ("MQIMG__HTTP__LISTEN", "127.0.0.1:9001"),
        ],
    );
    assert!(
        err.starts_with("invalid config: metrics.listen (MQIMG__METRICS__LISTEN): is the old name"),
        "{err}"
    );
    let err = error("[metrics]\nlisten = \"nowhere\"\n", &[]);
    assert!(err.contains("http.listen"), "{err}");
    let err = error("[metrics]\nport = 1\n", &[]);
    assert!(err.starts_with("unknown key metrics.port"), "{err}");
    assert!(load_str("", &[]).unwrap().deprecated.is_empty());
}

#[test]
fn http_settings_are_checked_naming_the_key() {
    for (toml, expected) in [
        (
            "[http]\nmax_topics = 0\n",
            "http.max_topics (MQIMG__HTTP__MAX_TOPICS): must be at least 1",
        ),
        (
            "[http]\nmax_streams = 0\n",
            "http.max_streams (MQIMG__HTTP__MAX_STREAMS): must be at least 1",
        ),
        (
            "[http]\nmax_latest_bytes = 1000\n",
            "http.max_latest_bytes (MQIMG__HTTP__MAX_LATEST_BYTES): 1000 is below",
        ),
        (
            "[http]\ntoken = \"\"\n",
            "http.token (MQIMG__HTTP__TOKEN): is empty",
        ),
        (
            "[http]\ntoken = \"two words\"\n",
            "http.token (MQIMG__HTTP__TOKEN): must be printable ASCII",
        ),
        (
            "[http]\npublic_url = \"cams.local:9464\"\n",
            "http.public_url (MQIMG__HTTP__PUBLIC_URL): \"cams.local:9464\" is not a base URL",
        ),
        (
            "[http]\npublic_url = \"http://x/?a=b\"\n",
            "is not a base URL",
        ),
        (
            "[http]\nlisten = \"\"\npublic_url = \"http://x\"\n",
            "http.public_url (MQIMG__HTTP__PUBLIC_URL): is set but http.listen is off",
        ),
    ] {
        let err = error(toml, &[]);
        assert!(err.contains(expected), "{toml}: {err}");
    }
    let s = load_str(
        "",
        &[
            ("MQIMG__HTTP__TOKEN", "s3cret"),
            ("MQIMG__HTTP__MAX_STREAMS", "2"),
        ],
    )
    .unwrap();
    assert_eq!(s.http.token.as_ref().map(Secret::expose), Some("s3cret"));
    assert_eq!(s.http.max_streams, 2);
    assert!(!s.to_toml().contains("s3cret"), "{}", s.to_toml());
}

#[test]
fn durations_keep_their_keys_and_units() {
    let s = load_str(
        "[broker]\nkeep_alive_secs = 5\nreconnect_min_ms = 100\nreconnect_max_ms = 2000\n\
         [pipeline]\nshutdown_grace_secs = 3\n[log]\nsummary_secs = 0\n",
        &[],
    )
    .unwrap();
    assert_eq!(s.broker.keep_alive, Duration::from_secs(5));
    assert_eq!(s.broker.reconnect_min, Duration::from_millis(100));
    assert_eq!(s.broker.reconnect_max, Duration::from_secs(2));
    assert_eq!(s.pipeline.shutdown_grace, Duration::from_secs(3));
    assert_eq!(s.log.summary_interval, None);
    let toml = s.to_toml();
    assert!(toml.contains("reconnect_min_ms = 100\n"), "{toml}");
    assert!(toml.contains("summary_secs = 0\n"), "{toml}");
    let err = error("[broker]\nreconnect_min_ms = 0\n", &[]);
    assert!(err.contains("broker.reconnect_min_ms"), "{err}");
    let err = error("[broker]\nkeep_alive_secs = 0\n", &[]);
    assert!(err.contains("0 is outside 1..=65535"), "{err}");
}

#[test]
fn text_that_is_not_a_config_never_panics() {
    for text in [
        "broker = 5",
        "subscriptions = 5",
        "subscriptions = [1, 2]",
        "[broker]\nurl = 5",
        "[decode]\nmax_payload_bytes = -1",
        "[decode]\nmax_payload_bytes = 9223372036854775807",
        "[broker]\nmax_packet_bytes = 9223372036854775807",
        "\u{0}",
    ] {
        assert!(load_str(text, &[]).is_err(), "{text:?} was accepted");
    }
    let err = error("broker = 5", &[("MQIMG__BROKER__URL", "x")]);
    assert!(err.contains("is not a table in the file"), "{err}");
}

#[test]
fn an_integer_over_what_toml_holds_is_refused_with_its_key() {
    // Found by fuzzing: accepted, then printed by check-config as TOML nothing could load back.
    let msg = error("", &[("MQIMG__DECODE__MAX_PIXELS", "18446744073709551615")]);
    assert!(msg.contains("decode.max_pixels"), "{msg}");
    // Set in code (tests, embedders), the same value is caught by validation.
    let mut settings = Settings::default();
    settings.decode.max_pixels = u64::MAX;
    let msg = settings.validate().unwrap_err().to_string();
    assert!(
        msg.contains("decode.max_pixels") && msg.contains("9223372036854775807"),
        "{msg}"
    );
}

#[test]
fn sizes_made_up_front_are_capped() {
    // Found reading the fuzz harness: a huge queue or thread count would crash at startup.
    let msg = error("[pipeline]\nqueue_frames = 9223372036854775807\n", &[]);
    assert!(msg.contains("pipeline.queue_frames"), "{msg}");
    let msg = error("[decode]\nworkers = 100000\n", &[]);
    assert!(msg.contains("decode.workers"), "{msg}");
}

#[test]
fn a_password_comes_one_way_only_and_with_a_user_name() {
    let s = load_str(
        "[broker]\nusername = \"u\"\npassword_file = \"/run/secrets/mqtt\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        s.broker.password_file.as_deref(),
        Some(Path::new("/run/secrets/mqtt"))
    );
    let both = error(
        "[broker]\nusername = \"u\"\npassword_file = \"/run/secrets/mqtt\"\n",
        &[("MQIMG__BROKER__PASSWORD", "hunter2")],
    );
    assert_eq!(
        both,
        "invalid config: broker.password_file (MQIMG__BROKER__PASSWORD_FILE): is set together with \
         broker.password (MQIMG__BROKER__PASSWORD): give the password one way"
    );
    assert!(!both.contains("hunter2"));
    let anonymous = error("", &[("MQIMG__BROKER__PASSWORD_FILE", "/run/secrets/mqtt")]);
    assert!(
        anonymous.ends_with("is set without broker.username"),
        "{anonymous}"
    );
    // An empty value unsets it, so a container can undo a file's setting.
    let s = load_str(
        "[broker]\nusername = \"u\"\npassword_file = \"/x\"\n",
        &[("MQIMG__BROKER__PASSWORD_FILE", "")],
    )
    .unwrap();
    assert_eq!(s.broker.password_file, None);
}

#[test]
fn tls_keys_need_a_tls_url_and_come_in_pairs() {
    let s = load_str(
        "[broker]\nurl = \"mqtts://broker.example\"\n[broker.tls]\nca_file = \"/etc/ca.pem\"\n",
        &[("MQIMG__BROKER__TLS__SERVER_NAME", "mqtt.example")],
    )
    .unwrap();
    assert_eq!(s.broker.url.port(), 8883);
    assert_eq!(
        s.broker.tls.ca_file.as_deref(),
        Some(Path::new("/etc/ca.pem"))
    );
    assert_eq!(s.broker.tls.server_name.as_deref(), Some("mqtt.example"));
    let plain = error("[broker.tls]\nca_file = \"/etc/ca.pem\"\n", &[]);
    assert_eq!(
        plain,
        "invalid config: broker.tls.ca_file (MQIMG__BROKER__TLS__CA_FILE): is set but broker.url \
         mqtt://127.0.0.1:1883 is not TLS: use mqtts://127.0.0.1:1883"
    );
    let tls = [("MQIMG__BROKER__URL", "mqtts://b")];
    let half = error("[broker.tls]\nclient_cert_file = \"/c.pem\"\n", &tls);
    assert!(half.contains("broker.tls.client_cert_file (MQIMG__BROKER__TLS__CLIENT_CERT_FILE): is set without broker.tls.client_key_file"), "{half}");
    let half = error("[broker.tls]\nclient_key_file = \"/c.key\"\n", &tls);
    assert!(
        half.contains("is set without broker.tls.client_cert_file"),
        "{half}"
    );
    let ipv6 = error("", &[("MQIMG__BROKER__URL", "mqtts://[::1]:8883")]);
    assert!(
        ipv6.contains("TLS to an IPv6 address literal is not supported"),
        "{ipv6}"
    );
    let typo = error("[broker.tls]\ncafile = \"/etc/ca.pem\"\n", &tls);
    assert!(typo.contains("did you mean ca_file?"), "{typo}");
}

#[test]
fn the_decode_backend_is_a_choice_and_libjpeg_turbo_needs_its_feature() {
    assert_eq!(load_str("", &[]).unwrap().decode.backend, Backend::Zune);
    let err = error("[decode]\nbackend = \"turbo\"\n", &[]);
    assert_eq!(
        err,
        "invalid config: decode.backend (MQIMG__DECODE__BACKEND): \"turbo\" is not one of zune, \
         libjpeg-turbo"
    );
    let loaded = load_str("", &[("MQIMG__DECODE__BACKEND", "libjpeg-turbo")]);
    if cfg!(feature = "turbojpeg") {
        let s = loaded.unwrap();
        assert_eq!(s.decode.backend, Backend::Turbo);
        assert_eq!(s.decode.limits().backend, Backend::Turbo);
        assert!(s.to_toml().contains("backend = \"libjpeg-turbo\""));
    } else {
        let err = loaded.unwrap_err().to_string();
        assert!(
            err.starts_with(
                "invalid config: decode.backend (MQIMG__DECODE__BACKEND): \"libjpeg-turbo\" needs a \
                 build with the `turbojpeg` cargo feature"
            ),
            "{err}"
        );
    }
}
