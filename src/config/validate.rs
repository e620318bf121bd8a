//! Checks the types cannot express: ranges, and values that only make sense together. Runs once after
//! loading, and again in `App::build` for settings built in code.

use super::{Broker, ConfigError, Settings, Subscription};
use crate::frame::chunks::Mode;
use crate::frame::payload::Encoding;
use crate::frame::topic;

/// MQTT's largest packet: the remaining-length field holds at most 268,435,455.
const MQTT_MAX_PACKET: usize = 268_435_455;
/// Room above `decode.max_payload_bytes` for the topic and headers of the packet carrying it.
const PACKET_OVERHEAD: usize = 64 * 1024;
/// Most frames `pipeline.queue_frames` may hold: far beyond any use, far below an allocation failure.
const MAX_QUEUE_FRAMES: usize = 100_000;
/// Most decode threads `decode.workers` may start.
const MAX_WORKERS: usize = 1024;

impl Settings {
    /// Checks what the types cannot: ranges, and values that only make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_integers()?;
        self.validate_broker()?;
        self.validate_subscriptions()?;
        self.validate_output()?;
        self.validate_chunks()?;
        self.retention.validate()?;
        self.validate_http()?;
        let d = &self.decode;
        for (key, value) in [
            ("decode.max_payload_bytes", d.max_payload_bytes as u64),
            ("decode.max_width", u64::from(d.max_width)),
            ("decode.max_height", u64::from(d.max_height)),
            ("decode.max_pixels", d.max_pixels),
            ("decode.max_memory_bytes", d.max_memory_bytes),
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
        // Both size things made up front (a channel's slots, one thread each): a typo must not
        // become a crash at startup.
        if !(1..=MAX_QUEUE_FRAMES).contains(&self.pipeline.queue_frames) {
            return Err(ConfigError::invalid(
                "pipeline.queue_frames",
                format!(
                    "{} is outside 1..={MAX_QUEUE_FRAMES}",
                    self.pipeline.queue_frames
                ),
            ));
        }
        if !self.decode.backend.is_built() {
            return Err(ConfigError::invalid(
                "decode.backend",
                format!(
                    "{:?} needs a build with the `turbojpeg` cargo feature (cargo build --features \
                     turbojpeg; libjpeg-turbo is built from source, with cmake and nasm); this build \
                     has only \"zune\"",
                    self.decode.backend.name()
                ),
            ));
        }
        if self.decode.workers > MAX_WORKERS {
            return Err(ConfigError::invalid(
                "decode.workers",
                format!(
                    "{} is over {MAX_WORKERS} (0 = one per core)",
                    self.decode.workers
                ),
            ));
        }
        Ok(())
    }

    /// TOML integers are signed 64-bit: a larger value (possible from the environment) would make
    /// settings that `check-config` prints but nothing can load back.
    fn validate_integers(&self) -> Result<(), ConfigError> {
        let mut section = String::new();
        for line in self.to_toml().lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim_matches('[').trim_matches(']').to_owned();
                continue;
            }
            let Some((key, value)) = line.split_once(" = ") else {
                continue;
            };
            if let Ok(n) = value.trim().parse::<u128>()
                && n > i64::MAX as u128
            {
                let key = if section.is_empty() {
                    key.to_owned()
                } else {
                    format!("{section}.{key}")
                };
                return Err(ConfigError::invalid(
                    &key,
                    format!(
                        "{n} is over the largest value a config can hold ({})",
                        i64::MAX
                    ),
                ));
            }
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
            validate_chunked(s, &key)?;
        }
        Ok(())
    }

    fn validate_chunks(&self) -> Result<(), ConfigError> {
        let c = &self.chunks;
        if c.max_parts == 0 {
            return Err(ConfigError::invalid(
                "chunks.max_parts",
                "must be at least 1",
            ));
        }
        if c.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "chunks.timeout_secs",
                "must be at least 1",
            ));
        }
        let max_payload = self.decode.max_payload_bytes;
        if c.max_frame_bytes > max_payload {
            return Err(ConfigError::invalid(
                "chunks.max_frame_bytes",
                format!(
                    "{} exceeds decode.max_payload_bytes ({max_payload}), which the assembled frame \
                     must then pass: raise that instead (0 = the same)",
                    c.max_frame_bytes
                ),
            ));
        }
        if c.spool_dir
            .as_ref()
            .is_some_and(|dir| dir.as_os_str().is_empty())
        {
            // Only settings built in code get here, as for `output.dir`.
            return Err(ConfigError::invalid(
                "chunks.spool_dir",
                "is an empty path: use None for the default inside output.dir",
            ));
        }
        // Parts acked once spooled, so that a frame of more parts than the broker keeps in flight
        // does not stall: without a spool they could only wait unacked.
        let acked = self
            .subscriptions
            .iter()
            .position(|s| s.chunks != Mode::None && s.qos != crate::config::Qos::AtMostOnce);
        if let (Some(i), None) = (acked, self.spool_dir()) {
            return Err(ConfigError::invalid(
                "chunks.spool_dir",
                format!(
                    "subscriptions[{i}] takes chunked frames at QoS {}, whose parts are kept in a spool \
                     until their frame is done: set chunks.spool_dir or output.dir",
                    u8::from(self.subscriptions[i].qos)
                ),
            ));
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
        // A chunked frame's topic is its parts' topic without their last levels: records are rendered
        // from those, so the search starts from them. Each maps back to its subscription's filter.
        let frame_filters: Vec<(String, &str)> = self
            .subscriptions
            .iter()
            .flat_map(|s| {
                let own = s.chunks.frame_filters(&s.topic);
                let own = if s.chunks == Mode::None {
                    vec![s.topic.clone()]
                } else {
                    own
                };
                own.into_iter().map(|f| (f, s.topic.as_str()))
            })
            .collect();
        let frames: Vec<&str> = frame_filters.iter().map(|(f, _)| f.as_str()).collect();
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
            if let Some(mut found) = topic::feedback_between(template, &frames, &filters) {
                if let Some((_, filter)) =
                    frame_filters.iter().find(|(f, _)| *f == found.frame_filter)
                {
                    found.frame_filter = (*filter).to_owned();
                }
                return Err(ConfigError::invalid(
                    key,
                    format!("{template:?} feeds records back into the subscriptions: {found}"),
                ));
            }
            if let Some((frame, record)) = topic::reserved_record(template, &frames) {
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

    fn validate_http(&self) -> Result<(), ConfigError> {
        let h = &self.http;
        for (key, value) in [
            ("http.max_topics", h.max_topics),
            ("http.max_streams", h.max_streams),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if h.max_latest_bytes < 1 << 20 {
            return Err(ConfigError::invalid(
                "http.max_latest_bytes",
                format!(
                    "{} is below 1048576 (1 MiB): too little to keep a camera frame",
                    h.max_latest_bytes
                ),
            ));
        }
        if let Some(token) = &h.token {
            // Empty would most likely be an unset secret in a container, silently opening the view.
            if token.expose().is_empty() {
                return Err(ConfigError::invalid(
                    "http.token",
                    "is empty: leave it unset for no token",
                ));
            }
            if !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::invalid(
                    "http.token",
                    "must be printable ASCII without spaces (it is sent in a header and in URLs)",
                ));
            }
        }
        if let Some(url) = &h.public_url {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || url.contains(['?', '#']) || url.chars().any(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    "http.public_url",
                    format!(
                        "{url:?} is not a base URL like http://host:9464 (http or https, no query or fragment)"
                    ),
                ));
            }
            if h.listen.is_none() {
                return Err(ConfigError::invalid(
                    "http.public_url",
                    "is set but http.listen is off: records would carry URLs nothing serves",
                ));
            }
        }
        Ok(())
    }
}

/// A subscription's `chunks` and the keys that go with it.
fn validate_chunked(s: &Subscription, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let fields = [
        ("part_field", &s.part_field),
        ("total_field", &s.total_field),
        ("data_field", &s.data_field),
        ("id_field", &s.id_field),
    ];
    if s.chunks != Mode::JsonParts {
        let set = fields
            .iter()
            .find(|(_, value)| value.is_some())
            .map(|(name, _)| *name)
            .or(s.first_part.map(|_| "first_part"));
        if let Some(name) = set {
            return Err(ConfigError::invalid(
                &key(name),
                format!(
                    "applies to chunks = \"json-parts\" only (this subscription has chunks = \"{}\")",
                    s.chunks
                ),
            ));
        }
    }
    for (name, value) in fields {
        if value.as_deref() == Some("") {
            return Err(ConfigError::invalid(
                &key(name),
                "must not be empty (leave it unset for the default name)",
            ));
        }
    }
    let source = s.source();
    let f = &source.fields;
    let names = [&f.part, &f.total, &f.data, &f.id];
    if let Some(twice) = names
        .iter()
        .enumerate()
        .find_map(|(i, name)| names[i + 1..].contains(name).then_some(name))
    {
        return Err(ConfigError::invalid(
            &key("part_field"),
            format!("the json-parts fields must differ: \"{twice}\" is used twice"),
        ));
    }
    if f.first_part > 1 {
        return Err(ConfigError::invalid(
            &key("first_part"),
            format!("{} is not 0 or 1", f.first_part),
        ));
    }
    // Assembly decodes base64 (json-parts data; start-data-end and until-eoi pieces that are base64):
    // a forced base64 or data URI reading of the frame would then fail every frame.
    let decoded = matches!(
        s.chunks,
        Mode::JsonParts | Mode::StartDataEnd | Mode::UntilEoi
    );
    if decoded && matches!(s.encoding, Encoding::Base64 | Encoding::DataUri) {
        return Err(ConfigError::invalid(
            &key("encoding"),
            format!(
                "\"{}\" cannot read frames assembled with chunks = \"{}\": their base64 is already \
                 decoded; use \"auto\" or \"raw\"",
                s.encoding, s.chunks
            ),
        ));
    }
    let filter = topic::unshared(&s.topic);
    let levels: Vec<&str> = filter.split('/').collect();
    let problem = match s.chunks {
        Mode::StartDataEnd
            if s.chunks.frame_filters(&s.topic).is_empty()
                || !matches!(levels.last(), Some(&("+" | "#"))) =>
        {
            Some(
                "takes {base}/start, {base}/data and {base}/end: end the filter with /+ or /# (as in cams/esp/+)",
            )
        }
        Mode::TopicIndex
            if s.chunks.frame_filters(&s.topic).is_empty()
                || !(levels.last() == Some(&"#")
                    || levels.iter().rev().take(3).all(|level| *level == "+")) =>
        {
            Some(
                "takes {base}/{frame_id}/{index}/{total}: end the filter with /+/+/+ or /# (as in cams/esp/+/+/+)",
            )
        }
        _ => None,
    };
    if let Some(problem) = problem {
        return Err(ConfigError::invalid(
            &key("topic"),
            format!("{:?}: chunks = \"{}\" {problem}", s.topic, s.chunks),
        ));
    }
    Ok(())
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
