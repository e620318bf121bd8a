//! The MQTT client's options from `[broker]`: address, credentials (`password` or `password_file`) and
//! transport (plain TCP, or TLS from `[broker.tls]`). One function for the daemon and `mqimg publish`,
//! so both reach and log in to a broker the same way; every file is read here, once, and a missing or
//! bad one is refused naming its key.

use std::path::Path;

use rumqttc::{AsyncClient, EventLoop, MqttOptions, TlsConfiguration, Transport};

use crate::config::{Broker, Settings, env_name};

/// Why the client could not be set up: the key to change and what is wrong with its value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key} ({}): {problem}", env_name(key))]
pub struct SetupError {
    /// The config key, as in `broker.tls.ca_file`.
    pub key: &'static str,
    pub problem: String,
}

impl SetupError {
    pub fn new(key: &'static str, problem: impl Into<String>) -> Self {
        Self {
            key,
            problem: problem.into(),
        }
    }
}

/// Options to reach and log in to `broker` (validated) as `client_id`: address, credentials and
/// transport. The caller sets the session's own options (keep-alive, packet sizes, acks).
pub fn client_options(broker: &Broker, client_id: String) -> Result<MqttOptions, SetupError> {
    let mut options = MqttOptions::new(client_id, broker.url.host(), broker.url.port());
    if let Some(user) = &broker.username {
        let password = match (&broker.password, &broker.password_file) {
            (Some(password), _) => password.expose().to_owned(),
            (None, Some(path)) => password_file(path)?,
            (None, None) => String::new(),
        };
        options.set_credentials(user.clone(), password);
    }
    if broker.url.scheme().is_tls() {
        let config = super::tls::client_config(&broker.tls, broker.url.host())?;
        options.set_transport(Transport::Tls(TlsConfiguration::Rustls(config)));
    }
    Ok(options)
}

/// The password in `path`: the whole file but one trailing line break (`echo secret > file`).
fn password_file(path: &Path) -> Result<String, SetupError> {
    let key = "broker.password_file";
    let text = std::fs::read_to_string(path)
        .map_err(|e| SetupError::new(key, format!("cannot read {}: {e}", path.display())))?;
    let password = text
        .strip_suffix('\n')
        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    if password.is_empty() {
        return Err(SetupError::new(key, format!("{} is empty", path.display())));
    }
    Ok(password.to_owned())
}

/// Requests (records, acks) the client's channel holds before `try_*` calls wait in the outbox.
pub const REQUEST_QUEUE: usize = 64;
/// Outgoing record publishes awaiting their PUBACK.
pub const RECORDS_IN_FLIGHT: u16 = 100;

/// The daemon's client and its event loop, configured from `settings` (not connected yet: polling
/// connects).
pub fn connect(settings: &Settings) -> Result<(AsyncClient, EventLoop), SetupError> {
    let broker = &settings.broker;
    let mut options = client_options(broker, broker.client_id.clone())?;
    options
        .set_keep_alive(broker.keep_alive)
        .set_clean_session(broker.clean_session)
        // rumqttc's 10 KiB default would refuse every real frame and drop the connection.
        .set_max_packet_size(broker.max_packet_bytes, broker.max_packet_bytes)
        .set_inflight(RECORDS_IN_FLIGHT)
        .set_manual_acks(!broker.clean_session)
        .set_request_channel_capacity(REQUEST_QUEUE);
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
    // Acks and records are small packets: Nagle's algorithm would hold each one back ~40 ms.
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    Ok((client, eventloop))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_password_file_loses_one_trailing_line_break_only() {
        let dir = tempfile::tempdir().unwrap();
        let read = |text: &str| {
            let path = dir.path().join("secret");
            std::fs::write(&path, text).unwrap();
            password_file(&path)
        };
        assert_eq!(read("s3cret\n").unwrap(), "s3cret");
        assert_eq!(read("s3cret\r\n").unwrap(), "s3cret");
        assert_eq!(read("s3cret").unwrap(), "s3cret");
        assert_eq!(read(" s3cret \n\n").unwrap(), " s3cret \n");
        let empty = read("\n").unwrap_err().to_string();
        assert!(
            empty.starts_with("broker.password_file (MQIMG__BROKER__PASSWORD_FILE): ")
                && empty.ends_with("secret is empty"),
            "{empty}"
        );
        let missing = password_file(&dir.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("cannot read") && missing.contains("absent: No such file"),
            "{missing}"
        );
    }
}
