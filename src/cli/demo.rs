//! `mqimg run --demo`: the quick start. The example config (`config/mqimg.toml`, built in; or `-c
//! FILE`), against the broker that answers on its loopback `broker.url` (Mosquitto on 127.0.0.1:1883
//! on most development machines) or, when none does, an embedded broker started on that address
//! (the `embedded-broker` feature). The first log lines say which.
//!
//! Only for loopback `mqtt://` addresses: a production config names its broker, and a daemon that
//! started its own broker when the real one was down would take frames nobody sends there.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::bail;

use crate::config::{BrokerAddr, DEFAULT_TOML, LogFilter, Settings};

/// How long a broker has to accept a connection and answer a CONNECT.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the startup line calls the built-in config.
pub const BUILT_IN_CONFIG: &str = "config/mqimg.toml (built in)";

/// The demo's settings: `config`, or the built-in example; the environment applies either way. The
/// embedded broker's own log lines are off unless `log.level` (or `RUST_LOG`) names `rumqttd`: it
/// logs every connection at info, and rumqttd 0.20 logs errors for ordinary disconnects ("no-connection
/// id 1 is already gone", "router-drop") that would send a newcomer looking for a fault. mqimg's own
/// lines say what matters: which broker, connected, subscribed, each frame.
pub fn settings(config: Option<&Path>) -> anyhow::Result<Settings> {
    let mut settings = match config {
        Some(path) => Settings::load(Some(path))?,
        None => Settings::from_toml_str(DEFAULT_TOML, None)?,
    };
    let level = settings.log.level.as_str();
    if !level.contains("rumqttd") {
        settings.log.level = format!("{level},rumqttd=off").parse::<LogFilter>()?;
    }
    Ok(settings)
}

/// Makes sure a broker answers on `url`: the one running there, else an embedded one. Logs which.
pub fn ensure_broker(url: &BrokerAddr, max_packet_bytes: usize) -> anyhow::Result<()> {
    let addr = loopback(url)?;
    match mqtt_answers(addr) {
        Ok(true) => {
            tracing::info!(
                broker = %url,
                "demo: a broker answers on {url}: using it (the embedded broker starts only when none does)"
            );
            Ok(())
        }
        Ok(false) => start_embedded(url, addr, max_packet_bytes),
        Err(why) => bail!(
            "something listens on {url} but does not answer as an MQTT broker ({why}): stop it, or \
             name another broker.url with -c"
        ),
    }
}

/// Whether an MQTT broker answers on `addr`: `Ok(false)` when nothing listens, an error when
/// something does but no CONNACK comes back. A CONNECT answered by a CONNACK, so the broker logs a
/// client that came and went rather than a broken connection. No DISCONNECT follows: rumqttd 0.20
/// logs an error for a DISCONNECT right after the CONNACK.
fn mqtt_answers(addr: SocketAddr) -> Result<bool, String> {
    let mut stream = match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
        Ok(stream) => stream,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(false),
        Err(e) => return Err(e.to_string()),
    };
    let mut exchange = || -> std::io::Result<[u8; 4]> {
        stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
        stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
        // MQTT 3.1.1 CONNECT: protocol "MQTT" level 4, clean session, keep-alive 10 s, client id
        // "mqimg-demo-probe".
        const CONNECT: &[u8] = b"\x10\x1c\x00\x04MQTT\x04\x02\x00\x0a\x00\x10mqimg-demo-probe";
        stream.write_all(CONNECT)?;
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack)?;
        Ok(connack)
    };
    match exchange() {
        Ok([0x20, 0x02, _, _]) => Ok(true),
        Ok(other) => Err(format!("it answered {other:02x?}")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(feature = "embedded-broker")]
fn start_embedded(
    url: &BrokerAddr,
    addr: SocketAddr,
    max_packet_bytes: usize,
) -> anyhow::Result<()> {
    crate::daemon::embedded::start(addr, max_packet_bytes, &|| mqtt_answers(addr) == Ok(true))?;
    tracing::info!(
        broker = %url,
        "demo: no broker answered on {url}: started the embedded broker there (in memory, for trying \
         mqimg out); cameras and `mqimg publish` reach it at {url}"
    );
    Ok(())
}

#[cfg(not(feature = "embedded-broker"))]
fn start_embedded(url: &BrokerAddr, _: SocketAddr, _: usize) -> anyhow::Result<()> {
    bail!(
        "no broker answers on {url}, and this mqimg was built without the embedded one: run \
         `cargo run --release --features embedded-broker -- run --demo`, or install Mosquitto"
    )
}

/// The socket address of a loopback `mqtt://` URL; other URLs are refused.
fn loopback(url: &BrokerAddr) -> anyhow::Result<SocketAddr> {
    let host = url.host().trim_start_matches('[').trim_end_matches(']');
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) if host.eq_ignore_ascii_case("localhost") => Some(Ipv4Addr::LOCALHOST.into()),
        Err(_) => None,
    };
    match ip {
        Some(ip) if ip.is_loopback() && !url.scheme().is_tls() => {
            Ok(SocketAddr::new(ip, url.port()))
        }
        _ => bail!(
            "--demo runs against a broker on this machine, and broker.url is {url}: use \
             mqtt://127.0.0.1:PORT, or leave out --demo to use that broker"
        ),
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn addr(url: &str) -> anyhow::Result<SocketAddr> {
        loopback(&url.parse().unwrap())
    }

    #[test]
    fn only_plain_loopback_urls_are_demo_brokers() {
        assert_eq!(
            addr("mqtt://127.0.0.1:1883").unwrap().to_string(),
            "127.0.0.1:1883"
        );
        assert_eq!(
            addr("mqtt://localhost:1884").unwrap().to_string(),
            "127.0.0.1:1884"
        );
        assert_eq!(addr("mqtt://[::1]:1883").unwrap().to_string(), "[::1]:1883");
        for url in [
            "mqtt://broker.lan:1883",
            "mqtt://10.0.0.2:1883",
            "mqtts://127.0.0.1:8883",
        ] {
            let error = addr(url).unwrap_err().to_string();
            assert!(
                error.contains("--demo runs against a broker on this machine"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_built_in_config_subscribes_and_stores() {
        let settings = Settings::from_toml_str(DEFAULT_TOML, Some(Default::default())).unwrap();
        assert_eq!(settings.subscriptions.len(), 1);
        assert!(settings.output.dir.is_some());
        assert_eq!(settings.broker.url.to_string(), "mqtt://127.0.0.1:1883");
    }
}
