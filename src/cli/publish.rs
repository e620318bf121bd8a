//! `mqimg publish`: publishes image files as a camera would (for trying mqimg out, and as load generator).
//!
//! Files are read and wrapped once up front (off the reactor); the publishing loop only hands ready payloads
//! to the MQTT client, paced by `--rate` when given. A spawned task owns the rumqttc `EventLoop`; for QoS 1
//! and 2 the run ends only once the broker has acknowledged every message. Also home of the wrapping
//! itself ([`wrap`]). The broker flags fill the daemon's `[broker]` settings and go through the
//! daemon's client setup ([`BrokerArgs`]), TLS and credentials included.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Incoming, Outgoing, Publish, QoS};
use tokio::sync::{oneshot, watch};
use tokio::time::MissedTickBehavior;

use crate::cli::PublishArgs;
use crate::cli::broker::{name_of, setup_error};
use crate::config::Tls;
use crate::daemon::mqtt;
use crate::frame::decode::Format;
use crate::frame::payload::Detected;

/// Capacity of the `AsyncClient` → `EventLoop` request channel: how far publishing may run ahead of the
/// socket beyond the in-flight window.
const REQUEST_CHANNEL_CAPACITY: usize = 64;
/// Unacknowledged QoS 1/2 publishes the client keeps in flight before it stops taking new requests.
const MAX_INFLIGHT: u16 = 100;
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// How long to wait for the broker's CONNACK before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest packet accepted from the broker: only acks and pings come back.
const MAX_INCOMING_PACKET: usize = 64 * 1024;
/// MQTT's own ceiling: the remaining length field holds at most 268,435,455.
const MQTT_MAX_PACKET: usize = 268_435_455;
/// Room for the fixed header, topic length and packet id on top of topic and payload.
const PUBLISH_HEADER_BYTES: usize = 16;

/// Publishes every file `args.count` times, in turn (file 1, file 2, …, file 1, file 2, …).
pub async fn run(args: &PublishArgs) -> anyhow::Result<()> {
    let broker = args.broker.settings()?;
    let qos = qos(args.qos)?;
    validate_topic(&args.topic)?;
    let period = match args.rate {
        // Beyond a message per nanosecond there is no pacing to do.
        Some(rate) if rate.is_finite() && rate > 0.0 => Duration::try_from_secs_f64(1.0 / rate)
            .map_err(|_| {
                anyhow!("--rate {rate} is too low: the interval between messages overflows")
            })
            .map(|period| Some(period).filter(|period| !period.is_zero()))?,
        Some(rate) => bail!("--rate must be a positive number of messages per second, got {rate}"),
        None => None,
    };
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    if args.files.is_empty() {
        bail!("no files to publish");
    }

    let bodies = prepare_all(args.files.clone(), args.encoding, args.topic.clone()).await?;
    let max_payload = bodies
        .iter()
        .map(|body| body.max_len(&args.topic))
        .max()
        .unwrap_or(0);
    let max_packet = max_payload + args.topic.len() + PUBLISH_HEADER_BYTES;
    if max_packet > MQTT_MAX_PACKET {
        bail!("a {max_payload}-byte payload exceeds MQTT's {MQTT_MAX_PACKET}-byte packet limit");
    }

    let total = args.count.checked_mul(bodies.len() as u64).ok_or_else(|| {
        anyhow!(
            "--count {} times {} files is too many messages",
            args.count,
            bodies.len()
        )
    })?;

    let client_id = args
        .client_id
        .clone()
        .unwrap_or_else(|| format!("mqimg-publish-{}", std::process::id()));
    let mut options = mqtt::client_options(&broker, client_id).map_err(setup_error)?;
    options
        .set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_max_packet_size(MAX_INCOMING_PACKET, max_packet)
        .set_inflight(MAX_INFLIGHT);
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
    // Without TCP_NODELAY, Nagle's algorithm can hold a small packet (a PUBREL, a payload's tail) back
    // for the broker's delayed ACK, about 40 ms on Linux.
    eventloop.network_options.set_tcp_nodelay(true);

    let (connected_tx, connected_rx) = oneshot::channel();
    let (acked_tx, mut acked_rx) = watch::channel(0u64);
    let mut driver = tokio::spawn(
        Driver {
            eventloop,
            connected: Some(connected_tx),
            acked: acked_tx,
        }
        .run(),
    );

    let url = &broker.url;
    let tls = &broker.tls;
    match tokio::time::timeout(CONNECT_TIMEOUT, connected_rx).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => {
            let error = driver_error(&mut driver, tls).await;
            return Err(error.context(format!("cannot connect to broker at {url}")));
        }
        Err(_) => {
            driver.abort();
            bail!(
                "cannot connect to broker at {url}: no CONNACK within {} s",
                CONNECT_TIMEOUT.as_secs()
            );
        }
    }

    let started = Instant::now();
    let mut ticker = period.map(|period| {
        let mut ticker = tokio::time::interval(period);
        // Keep the average rate: after a stall, catch up rather than lose messages' slots.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        ticker
    });
    let mut bytes = 0u64;
    let cycle = bodies.iter().cycle().take(total as usize);
    for (seq, body) in (0u64..).zip(cycle) {
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
        let sent = match body {
            Body::Ready(template) => {
                bytes += template.payload.len() as u64;
                client
                    .publish_bytes(&args.topic, qos, false, template.payload.clone())
                    .await
            }
            Body::Json { image_base64 } => {
                let payload = json_envelope(&args.topic, unix_millis(), seq, image_base64);
                bytes += payload.len() as u64;
                client.publish(&args.topic, qos, false, payload).await
            }
        };
        if sent.is_err() {
            // The request channel closes only when the driver has stopped: its error says why.
            let error = driver_error(&mut driver, tls).await;
            return Err(error.context(format!(
                "connection to broker at {url} lost after {seq} of {total} messages"
            )));
        }
    }

    if qos != QoS::AtMostOnce && acked_rx.wait_for(|&acked| acked >= total).await.is_err() {
        let acked = *acked_rx.borrow();
        let error = driver_error(&mut driver, tls).await;
        return Err(error.context(format!(
            "connection to broker at {url} lost with {acked} of {total} messages acknowledged"
        )));
    }
    // Requests are handled in order: for QoS 0 every publish is written before this.
    if client.disconnect().await.is_err() {
        let error = driver_error(&mut driver, tls).await;
        return Err(error.context(format!(
            "connection to broker at {url} lost while disconnecting"
        )));
    }
    match driver.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            return Err(connection_error(error, tls).context(format!(
                "connection to broker at {url} lost while disconnecting"
            )));
        }
        Err(join) => return Err(anyhow!(join).context("MQTT event loop task failed")),
    }

    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "published {total} messages, {bytes} bytes in {secs:.2} s ({:.1} msg/s)",
        total as f64 / secs.max(f64::EPSILON)
    );
    Ok(())
}

/// Wraps image bytes as `mqimg publish` sends them with `encoding`.
///
/// `base64` is the standard padded alphabet; `data-uri` is `data:image/png;base64,…` for PNG bytes and
/// `data:image/jpeg;base64,…` otherwise; `json` is `{"camera":topic,"ts":unix ms,"seq":seq,"image":base64}`
/// stamped with the current time.
pub fn wrap(bytes: &[u8], encoding: Detected, topic: &str, seq: u64) -> Vec<u8> {
    match encoding {
        Detected::Raw => bytes.to_vec(),
        Detected::Base64 => STANDARD.encode(bytes).into_bytes(),
        Detected::DataUri => data_uri(bytes),
        Detected::Json => json_envelope(topic, unix_millis(), seq, &STANDARD.encode(bytes)),
    }
}

/// One file's payload, wrapped as far as possible before publishing starts.
enum Body {
    /// The final payload; its `Bytes` are cloned (a reference count) for each message.
    Ready(Publish),
    /// JSON envelopes carry a timestamp and sequence number, so only the image is encoded up front.
    Json { image_base64: String },
}

impl Body {
    fn prepare(bytes: Vec<u8>, encoding: Detected, topic: &str) -> Body {
        match encoding {
            Detected::Json => Body::Json {
                image_base64: STANDARD.encode(&bytes),
            },
            Detected::Raw => Body::Ready(Publish::new(topic, QoS::AtMostOnce, bytes)),
            other => Body::Ready(Publish::new(
                topic,
                QoS::AtMostOnce,
                wrap(&bytes, other, topic, 0),
            )),
        }
    }

    /// The largest payload this body can produce on `topic`.
    fn max_len(&self, topic: &str) -> usize {
        match self {
            Body::Ready(template) => template.payload.len(),
            Body::Json { image_base64 } => {
                json_envelope(topic, u64::MAX, u64::MAX, "").len() + image_base64.len()
            }
        }
    }
}

/// Reads and wraps every file on a blocking thread: file I/O and base64 are no work for the reactor.
async fn prepare_all(
    files: Vec<std::path::PathBuf>,
    encoding: Detected,
    topic: String,
) -> anyhow::Result<Vec<Body>> {
    tokio::task::spawn_blocking(move || {
        files
            .iter()
            .map(|path| Ok(Body::prepare(read(path)?, encoding, &topic)))
            .collect::<anyhow::Result<Vec<Body>>>()
    })
    .await
    .context("preparing payloads")?
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Owns the rumqttc event loop for one publishing run: reports the CONNACK, counts acknowledgements and
/// ends after the DISCONNECT is written or at the first connection error (no reconnecting: a clean
/// session would not resume the lost in-flight messages anyway).
struct Driver {
    /// Nothing moves unless this is being polled.
    eventloop: EventLoop,
    /// Fired at the first CONNACK, so `run` can bound the wait for the connection.
    connected: Option<oneshot::Sender<()>>,
    /// Messages the broker has acknowledged so far (PUBACK for QoS 1, PUBCOMP for QoS 2).
    acked: watch::Sender<u64>,
}

impl Driver {
    async fn run(mut self) -> Result<(), ConnectionError> {
        loop {
            match self.eventloop.poll().await? {
                Event::Incoming(Incoming::ConnAck(_)) => {
                    if let Some(connected) = self.connected.take() {
                        let _ = connected.send(());
                    }
                }
                Event::Incoming(Incoming::PubAck(_) | Incoming::PubComp(_)) => {
                    self.acked.send_modify(|acked| *acked += 1);
                }
                Event::Outgoing(Outgoing::Disconnect) => return Ok(()),
                _ => {}
            }
        }
    }
}

/// The driver's error once it has stopped (it stops only on an error or after disconnecting).
async fn driver_error(
    driver: &mut tokio::task::JoinHandle<Result<(), ConnectionError>>,
    tls: &Tls,
) -> anyhow::Error {
    match driver.await {
        Ok(Err(error)) => connection_error(error, tls),
        Ok(Ok(())) => anyhow!("the MQTT event loop stopped unexpectedly"),
        Err(join) => anyhow!(join).context("MQTT event loop task failed"),
    }
}

/// rumqttc's errors repeat their source in their own message: keep the message only, so the chain
/// printed with `{:#}` says it once. TLS failures are said as the daemon says them.
fn connection_error(error: ConnectionError, tls: &Tls) -> anyhow::Error {
    match mqtt::explain_tls(&error, tls, &|key| name_of(key)) {
        Some(why) => anyhow!("TLS failed: {why}"),
        None => anyhow!("{error}"),
    }
}

fn qos(level: u8) -> anyhow::Result<QoS> {
    match level {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        2 => Ok(QoS::ExactlyOnce),
        other => bail!("--qos must be 0, 1 or 2, got {other}"),
    }
}

fn validate_topic(topic: &str) -> anyhow::Result<()> {
    if topic.is_empty() {
        bail!("the topic is empty");
    }
    if let Some(bad) = topic.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
        bail!(
            "topic `{topic}` contains `{}`: wildcards and NUL are not allowed when publishing",
            bad.escape_default()
        );
    }
    if topic.len() > usize::from(u16::MAX) {
        bail!(
            "topic is {} bytes long, MQTT allows at most 65535",
            topic.len()
        );
    }
    Ok(())
}

fn data_uri(bytes: &[u8]) -> Vec<u8> {
    let mime = if Format::sniff(bytes) == Some(Format::Png) {
        "image/png"
    } else {
        "image/jpeg"
    };
    let mut uri = format!("data:{mime};base64,");
    STANDARD.encode_string(bytes, &mut uri);
    uri.into_bytes()
}

fn json_envelope(topic: &str, ts: u64, seq: u64, image_base64: &str) -> Vec<u8> {
    // A JSON string can always be serialised; the fallback only keeps this function total.
    let camera = serde_json::to_string(topic).unwrap_or_else(|_| String::from("\"\""));
    format!(r#"{{"camera":{camera},"ts":{ts},"seq":{seq},"image":"{image_base64}"}}"#).into_bytes()
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::BrokerArgs;

    #[test]
    fn wrap_raw_is_the_bytes_themselves() {
        assert_eq!(wrap(b"\xff\xd8abc", Detected::Raw, "t", 0), b"\xff\xd8abc");
    }

    #[test]
    fn wrap_base64_uses_the_padded_standard_alphabet() {
        assert_eq!(wrap(&[0xfb, 0xff], Detected::Base64, "t", 0), b"+/8=");
    }

    #[test]
    fn wrap_data_uri_names_png_or_jpeg_from_the_magic_bytes() {
        let png = wrap(b"\x89PNG\r\n\x1a\n", Detected::DataUri, "t", 0);
        assert_eq!(png, b"data:image/png;base64,iVBORw0KGgo=");
        let jpeg = wrap(b"\xff\xd8\xff", Detected::DataUri, "t", 0);
        assert_eq!(jpeg, b"data:image/jpeg;base64,/9j/");
    }

    #[test]
    fn wrap_json_carries_camera_ts_seq_and_image() {
        let before = unix_millis();
        let bytes = wrap(b"\xff\xd8\xff", Detected::Json, "cams/\"door\"", 7);
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
        assert_eq!(value["camera"], "cams/\"door\"");
        assert_eq!(value["seq"], 7);
        assert_eq!(value["image"], "/9j/");
        let ts = value["ts"].as_u64().expect("ts is a number");
        assert!(ts >= before, "ts {ts} is unix milliseconds");
    }

    #[test]
    fn json_size_estimate_covers_the_largest_envelope() {
        let body = Body::prepare(vec![1, 2, 3], Detected::Json, "t");
        let largest = json_envelope("t", u64::MAX, u64::MAX, "AQID");
        assert_eq!(body.max_len("t"), largest.len());
    }

    #[tokio::test]
    async fn bad_arguments_fail_before_connecting() {
        let args = |rate: Option<f64>, count: u64| PublishArgs {
            // Nothing is ever connected to: every case fails validation first.
            broker: BrokerArgs::url("mqtt://127.0.0.1:9"),
            topic: String::from("cams/door"),
            encoding: Detected::Base64,
            qos: 1,
            count,
            rate,
            client_id: None,
            files: vec![std::path::PathBuf::from("/nonexistent/frame.jpg")],
        };
        let error = |args: PublishArgs| async move {
            format!("{:#}", run(&args).await.expect_err("invalid arguments"))
        };
        assert!(
            error(args(Some(0.0), 1))
                .await
                .contains("--rate must be a positive")
        );
        assert!(
            error(args(Some(f64::NAN), 1))
                .await
                .contains("--rate must be a positive")
        );
        assert!(error(args(Some(1e-300), 1)).await.contains("too low"));
        assert!(
            error(args(None, 0))
                .await
                .contains("--count must be at least 1")
        );
        assert!(
            error(args(None, 1))
                .await
                .contains("cannot read /nonexistent/frame.jpg")
        );
    }

    #[tokio::test]
    async fn the_broker_url_is_parsed_as_the_daemon_parses_it() {
        let args = PublishArgs {
            broker: BrokerArgs::url("ws://127.0.0.1:8883"),
            topic: String::from("cams/door"),
            encoding: Detected::Base64,
            qos: 1,
            count: 1,
            rate: None,
            client_id: None,
            files: vec![std::path::PathBuf::from("/nonexistent/frame.jpg")],
        };
        let error = format!("{:#}", run(&args).await.expect_err("an unsupported scheme"));
        assert!(error.contains("unsupported scheme `ws`"), "{error}");
    }

    #[test]
    fn topics_with_wildcards_are_rejected() {
        assert!(validate_topic("cams/door").is_ok());
        assert!(validate_topic("cams/+").is_err());
        assert!(validate_topic("cams/#").is_err());
        assert!(validate_topic("").is_err());
    }
}
