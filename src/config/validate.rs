//! Checks the types cannot express: ranges, and values that only make sense together. Runs once after
//! loading, and again in `App::build` for settings built in code.

use super::{Broker, ConfigError, Settings};
use crate::frame::topic;

/// MQTT's largest packet: the remaining-length field holds at most 268,435,455.
const MQTT_MAX_PACKET: usize = 268_435_455;
/// Room above `decode.max_payload_bytes` for the topic and headers of the packet carrying it.
const PACKET_OVERHEAD: usize = 64 * 1024;

impl Settings {
    /// Checks what the types cannot: ranges, and values that only make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_broker()?;
        self.validate_subscriptions()?;
        self.validate_output()?;
        let d = &self.decode;
        for (key, value) in [
            ("decode.max_payload_bytes", d.max_payload_bytes as u64),
            ("decode.max_width", u64::from(d.max_width)),
            ("decode.max_height", u64::from(d.max_height)),
            ("decode.max_pixels", d.max_pixels),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if self.pipeline.max_inflight_bytes < 1 << 20 {
            return Err(ConfigError::invalid(
                "pipeline.max_inflight_bytes",
                format!(
                    "{} is below 1048576 (1 MiB): too little to hold a camera frame and its record",
                    self.pipeline.max_inflight_bytes
                ),
            ));
        }
        if self.pipeline.queue_frames == 0 {
            return Err(ConfigError::invalid(
                "pipeline.queue_frames",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    fn validate_broker(&self) -> Result<(), ConfigError> {
        let b = &self.broker;
        if b.client_id.is_empty() && !b.clean_session {
            return Err(ConfigError::invalid(
                "broker.client_id",
                "must not be empty when broker.clean_session = false (the broker keeps the session under this id)",
            ));
        }
        if b.client_id.chars().count() > 23 {
            tracing::debug!("client id longer than 23 characters: some brokers refuse it");
        }
        // rumqttc panics on a keep-alive below one second; MQTT carries it in 16 bits.
        let keep_alive = b.keep_alive.as_secs();
        if keep_alive < 1 || keep_alive > u64::from(u16::MAX) {
            return Err(ConfigError::invalid(
                "broker.keep_alive_secs",
                format!("{keep_alive} is outside 1..=65535"),
            ));
        }
        b.validate()?;
        if b.reconnect_min.is_zero() || b.reconnect_min > b.reconnect_max {
            return Err(ConfigError::invalid(
                "broker.reconnect_min_ms",
                format!(
                    "{} must be at least 1 and at most broker.reconnect_max_ms ({})",
                    b.reconnect_min.as_millis(),
                    b.reconnect_max.as_millis()
                ),
            ));
        }
        // The client's packet limit must sit above the payload limit: an incoming packet over the
        // client's limit drops the connection, and under a persistent session the broker redelivers it
        // on every reconnect, forever. A payload between the two gets a clean `limits` failure instead.
        let max_payload = self.decode.max_payload_bytes;
        if b.max_packet_bytes < max_payload.saturating_add(PACKET_OVERHEAD) {
            return Err(ConfigError::invalid(
                "broker.max_packet_bytes",
                format!(
                    "{} must exceed decode.max_payload_bytes ({max_payload}) by at least 64 KiB (topic and headers), \
                     or an oversized frame would drop the connection instead of failing cleanly",
                    b.max_packet_bytes
                ),
            ));
        }
        if b.max_packet_bytes > MQTT_MAX_PACKET {
            return Err(ConfigError::invalid(
                "broker.max_packet_bytes",
                format!(
                    "{} exceeds MQTT's maximum packet size ({MQTT_MAX_PACKET})",
                    b.max_packet_bytes
                ),
            ));
        }
        Ok(())
    }

    fn validate_subscriptions(&self) -> Result<(), ConfigError> {
        for (i, s) in self.subscriptions.iter().enumerate() {
            let key = |k: &str| format!("subscriptions[{i}].{k}");
            topic::validate_filter(&s.topic).map_err(|p| ConfigError::invalid(&key("topic"), p))?;
            if s.json_field.as_deref() == Some("") {
                return Err(ConfigError::invalid(
                    &key("json_field"),
                    "must not be empty (leave it unset to probe the usual names)",
                ));
            }
        }
        Ok(())
    }

    fn validate_output(&self) -> Result<(), ConfigError> {
        let o = &self.output;
        if o.dir.as_ref().is_some_and(|dir| dir.as_os_str().is_empty()) {
            // Only settings built in code get here: an empty string in TOML or the environment is read
            // as "no files".
            return Err(ConfigError::invalid(
                "output.dir",
                "is an empty path: use None for no files",
            ));
        }
        let filters: Vec<&str> = self
            .subscriptions
            .iter()
            .map(|s| s.topic.as_str())
            .collect();
        for (key, template) in [
            ("output.results_topic", &o.results_topic),
            ("output.errors_topic", &o.errors_topic),
        ] {
            if template.is_empty() {
                continue;
            }
            topic::validate_template(template).map_err(|p| ConfigError::invalid(key, p))?;
            // A record that comes back as a frame fails (it holds no image), and its failure record
            // may come back in turn: one bad frame became hundreds of messages per second.
            if let Some(found) = topic::feedback(template, &filters) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{template:?} feeds records back into the subscriptions: {found}"),
                ));
            }
            if let Some((frame, record)) = topic::reserved_record(template, &filters) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "{template:?}: a frame on {frame:?} gives a record on {record:?}, which the \
                         broker drops (topics starting with $ are reserved)"
                    ),
                ));
            }
        }
        if o.max_record_bytes < 1024 {
            return Err(ConfigError::invalid(
                "output.max_record_bytes",
                format!("{} is below 1024", o.max_record_bytes),
            ));
        }
        Ok(())
    }
}

impl Broker {
    /// Checks the keys saying how to reach and log in to the broker, which `mqimg publish` shares
    /// with the daemon. The files named are read later, when the client is set up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.password.is_some() && self.password_file.is_some() {
            return Err(ConfigError::invalid(
                "broker.password_file",
                "is set together with broker.password (MQIMG__BROKER__PASSWORD): give the password one way",
            ));
        }
        for (key, set) in [
            ("broker.password", self.password.is_some()),
            ("broker.password_file", self.password_file.is_some()),
        ] {
            if set && self.username.is_none() {
                return Err(ConfigError::invalid(key, "is set without broker.username"));
            }
        }
        let tls = &self.tls;
        if !self.url.scheme().is_tls() && tls.is_set() {
            // Keys that only apply to TLS next to a plain URL mean the operator expects an encrypted,
            // authenticated connection: running in plain text would betray that.
            let key = [
                ("broker.tls.ca_file", tls.ca_file.is_some()),
                (
                    "broker.tls.client_cert_file",
                    tls.client_cert_file.is_some(),
                ),
                ("broker.tls.client_key_file", tls.client_key_file.is_some()),
                ("broker.tls.server_name", tls.server_name.is_some()),
            ]
            .into_iter()
            .find_map(|(key, set)| set.then_some(key))
            .unwrap_or("broker.tls");
            return Err(ConfigError::invalid(
                key,
                format!(
                    "is set but broker.url {} is not TLS: use mqtts://{}:{}",
                    self.url,
                    self.url.host(),
                    self.url.port()
                ),
            ));
        }
        match (&tls.client_cert_file, &tls.client_key_file) {
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "broker.tls.client_cert_file",
                    "is set without broker.tls.client_key_file (MQIMG__BROKER__TLS__CLIENT_KEY_FILE)",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "broker.tls.client_key_file",
                    "is set without broker.tls.client_cert_file (MQIMG__BROKER__TLS__CLIENT_CERT_FILE)",
                ));
            }
            _ => {}
        }
        if self.url.scheme().is_tls() && self.url.host().starts_with('[') {
            // rumqttc checks the certificate against the URL's host as written, brackets included,
            // which no certificate can hold.
            return Err(ConfigError::invalid(
                "broker.url",
                format!(
                    "{}: TLS to an IPv6 address literal is not supported; use a host name that resolves to it",
                    self.url
                ),
            ));
        }
        Ok(())
    }
}
