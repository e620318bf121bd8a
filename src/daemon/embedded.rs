//! An MQTT broker inside mqimg (rumqttd, behind the `embedded-broker` feature), for `mqimg run --demo`
//! on a machine without one: cameras and `mqimg publish` connect to it as to Mosquitto.
//!
//! In memory only: sessions and queued frames survive reconnects of mqimg but not a restart of the
//! process, and a session's queue is bounded (old messages make room for new). For trying mqimg out,
//! not for production, where the config names a real broker.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;

/// How long the broker may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Unacked QoS 1/2 messages sent to a client, as Mosquitto's `max_inflight_messages` default.
const MAX_INFLIGHT: usize = 20;
/// Each topic's in-memory log: segments of this size, the oldest dropped beyond this count.
const SEGMENT_BYTES: usize = 16 << 20;
const SEGMENTS: usize = 4;

/// Starts the broker on `addr` (in its own threads, for the life of the process) and returns once
/// `answers` says it does. Packets up to `max_packet_bytes` are taken, as mqimg's own limit.
pub fn start(
    addr: SocketAddr,
    max_packet_bytes: usize,
    answers: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    let mut servers = std::collections::HashMap::new();
    servers.insert(
        "embedded".to_owned(),
        rumqttd::ServerSettings {
            name: "mqimg-embedded-broker".into(),
            listen: addr,
            tls: None,
            next_connection_delay_ms: 1,
            connections: rumqttd::ConnectionSettings {
                connection_timeout_ms: 10_000,
                max_payload_size: max_packet_bytes,
                max_inflight_count: MAX_INFLIGHT,
                auth: None,
                external_auth: None,
                dynamic_filters: true,
            },
        },
    );
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            max_segment_size: SEGMENT_BYTES,
            max_segment_count: SEGMENTS,
            ..Default::default()
        },
        v4: Some(servers),
        ..Default::default()
    };
    let broker = std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            rumqttd::Broker::new(config)
                .start()
                .map_err(|e| e.to_string())
        })?;
    // rumqttd binds in a thread of its own and only logs a failure: a broker thread that ended is one.
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if broker.is_finished() {
            let why = match broker.join() {
                Ok(Ok(())) => "it stopped (is the port taken?)".to_owned(),
                Ok(Err(e)) => e,
                Err(_) => "it panicked".to_owned(),
            };
            bail!("cannot start the embedded broker on {addr}: {why}");
        }
        if answers() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the embedded broker does not accept connections on {addr} after {} s",
                STARTUP_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
