//! The value types on their own: URL forms, QoS levels, enum names, log filters.

#![expect(clippy::unwrap_used, reason = "tests")]

use super::*;

fn address(url: &str) -> (String, u16) {
    let addr: BrokerAddr = url.parse().unwrap();
    (addr.host().to_owned(), addr.port())
}

fn address_error(url: &str) -> String {
    url.parse::<BrokerAddr>().unwrap_err().to_string()
}

#[test]
fn broker_urls_accept_mqtt_tcp_and_bare_forms() {
    assert_eq!(
        address("mqtt://broker.lan:1884"),
        ("broker.lan".into(), 1884)
    );
    assert_eq!(
        address("MQTT://broker.lan:1884/"),
        ("broker.lan".into(), 1884)
    );
    assert_eq!(address("tcp://10.0.0.2:1885"), ("10.0.0.2".into(), 1885));
    assert_eq!(address("127.0.0.1:1886"), ("127.0.0.1".into(), 1886));
}

#[test]
fn broker_urls_default_the_port_to_1883() {
    assert_eq!(address("mqtt://broker.lan"), ("broker.lan".into(), 1883));
    assert_eq!(address("broker"), ("broker".into(), 1883));
}

#[test]
fn tls_urls_take_mqtts_or_ssl_and_default_the_port_to_8883() {
    for url in [
        "mqtts://broker.example",
        "SSL://broker.example",
        "mqtts://broker.example:8883/",
    ] {
        let addr: BrokerAddr = url.parse().unwrap();
        assert_eq!(addr.scheme(), Scheme::Mqtts, "{url}");
        assert_eq!(addr.to_string(), "mqtts://broker.example:8883");
    }
    assert_eq!(address("mqtts://10.0.0.2:9883"), ("10.0.0.2".into(), 9883));
    assert!(!"mqtt://b".parse::<BrokerAddr>().unwrap().scheme().is_tls());
}

#[test]
fn broker_urls_keep_ipv6_brackets_for_rumqttc() {
    assert_eq!(address("tcp://[::1]:1885"), ("[::1]".into(), 1885));
    assert_eq!(address("[fe80::1]"), ("[fe80::1]".into(), 1883));
}

#[test]
fn broker_urls_with_other_schemes_or_malformed_parts_are_refused() {
    assert!(address_error("wss://broker:8883").contains("unsupported scheme `wss`"));
    assert!(address_error("ws://broker/mqtt").contains("unsupported scheme `ws`"));
    assert!(address_error("mqtt://user@broker").contains("`@`"));
    assert!(address_error("mqtt://broker/path").contains("`/`"));
    assert!(address_error("mqtt://broker:0").contains("invalid port `0`"));
    assert!(address_error("mqtt://broker:70000").contains("invalid port `70000`"));
    assert!(address_error("mqtt://broker:").contains("invalid port ``"));
    assert!(address_error("mqtt://:1883").contains("no host"));
    assert!(address_error("::1").contains("brackets"));
    assert!(address_error("[::1").contains("unclosed"));
    assert!(address_error("[]:1883").contains("empty IPv6"));
    assert!(address_error("[::1]1883").contains("expected `:port`"));
}

#[test]
fn a_broker_address_prints_as_the_url_it_parses_from() {
    for url in ["mqtt://127.0.0.1:1883", "mqtt://[::1]:1884", "mqtt://b:1"] {
        let addr: BrokerAddr = url.parse().unwrap();
        assert_eq!(addr.to_string(), url);
        assert_eq!(addr.to_string().parse::<BrokerAddr>().unwrap(), addr);
    }
    assert_eq!(BrokerAddr::default().to_string(), "mqtt://127.0.0.1:1883");
}

#[test]
fn qos_levels_out_of_range_list_the_allowed_ones() {
    assert_eq!(Qos::try_from(2i64).unwrap(), Qos::ExactlyOnce);
    assert_eq!(
        Qos::try_from(3u8).unwrap_err().to_string(),
        "3 is not one of 0, 1, 2"
    );
    let from = |v: toml::Value| Qos::deserialize(v).map_err(|e| e.message().to_owned());
    assert_eq!(from(toml::Value::Integer(0)).unwrap(), Qos::AtMostOnce);
    assert_eq!(
        from(toml::Value::Integer(-1)).unwrap_err(),
        "-1 is not one of 0, 1, 2"
    );
    assert_eq!(from("1".into()).unwrap(), Qos::AtLeastOnce);
    assert_eq!(from("x".into()).unwrap_err(), "\"x\" is not one of 0, 1, 2");
}

#[test]
fn every_enum_variant_is_a_choice() {
    // A match per enum: adding a variant fails to compile here until `all()` is checked.
    let listed = |format: OutputFormat| match format {
        OutputFormat::Original | OutputFormat::Png | OutputFormat::Ppm => {
            OutputFormat::all().contains(&format)
        }
    };
    assert!(OutputFormat::all().iter().all(|f| listed(*f)));
    assert_eq!(OutputFormat::all().len(), 3);
    let listed = |format: LogFormat| match format {
        LogFormat::Text | LogFormat::Json => LogFormat::all().contains(&format),
    };
    assert!(LogFormat::all().iter().all(|f| listed(*f)));
    assert_eq!(LogFormat::all().len(), 2);
    let names: Vec<String> = Encoding::all().iter().map(|e| Choice::name(*e)).collect();
    assert_eq!(names, ["auto", "raw", "base64", "data-uri", "json"]);
}

#[test]
fn a_wrong_choice_lists_every_name() {
    let from = |name: &str| {
        choice::<_, OutputFormat>(toml::Value::from(name)).map_err(|e| e.message().to_owned())
    };
    assert_eq!(from("png").unwrap(), OutputFormat::Png);
    assert_eq!(
        from("jpeg").unwrap_err(),
        "\"jpeg\" is not one of original, png, ppm"
    );
}

#[test]
fn log_filters_need_a_level_in_every_directive() {
    for good in [
        "info",
        "WARN",
        "off",
        "mqimg=debug,rumqttc=warn",
        "warn,mqimg=trace",
        "mqimg[frame]=debug",
        "info,",
    ] {
        assert_eq!(good.parse::<LogFilter>().unwrap().as_str(), good);
    }
    let err = "verbose".parse::<LogFilter>().unwrap_err().to_string();
    assert!(
        err.contains("\"verbose\" is not a level")
            && err.contains("error, warn, info, debug, trace, off"),
        "{err}"
    );
    for bad in [
        "",
        " ",
        "mqimg",
        "mqimg=verbose",
        "mqimg[frame]",
        "mqimg=debug,trace2",
    ] {
        assert!(bad.parse::<LogFilter>().is_err(), "{bad:?} was accepted");
    }
}
