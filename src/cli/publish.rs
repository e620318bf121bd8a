//! `mqimg publish`: publishes image files as a camera would (for trying mqimg out, and as load generator).
//!
//! Files are read and wrapped once up front (off the reactor); the publishing loop only hands ready payloads
//! to the MQTT client, paced by `--rate` when given. A spawned task owns the rumqttc `EventLoop`; for QoS 1
//! and 2 the run ends only once the broker has acknowledged every message. Also home of the wrapping
//! itself ([`wrap`]). `--broker` is parsed as the daemon's `broker.url` is ([`BrokerAddr`]). With
//! `--chunks`, files are cut into many messages as small cameras send them (`chunked.rs`).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod chunked;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, MqttOptions, Outgoing, Publish, QoS,
};
use tokio::sync::{oneshot, watch};
use tokio::time::MissedTickBehavior;

use crate::cli::PublishArgs;
use crate::config::BrokerAddr;
use crate::frame::chunks::Mode;
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

/// Publishes every file `args.count` times, in turn (file 1, file 2, …, file 1, file 2, …), each in one
/// message or, with `--chunks`, in many.
pub async fn run(args: &PublishArgs) -> anyhow::Result<()> {
    let broker: BrokerAddr = args.broker.parse()?;
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
    let frames = args
        .count
        .checked_mul(args.files.len() as u64)
        .ok_or_else(|| {
            anyhow!(
                "--count {} times {} files is too many messages",
                args.count,
                args.files.len()
            )
        })?;

    let plan = if args.chunking.chunks == Mode::None {
        if args.chunking.interleave {
            bail!("--interleave needs --chunks: it alternates the messages of two frames");
        }
        let bodies = prepare_all(args.files.clone(), args.encoding, args.topic.clone()).await?;
        let max_payload = bodies
            .iter()
            .map(|body| body.max_len(&args.topic))
            .max()
            .unwrap_or(0);
        Plan::Whole {
            bodies,
            max_packet: max_payload + args.topic.len() + PUBLISH_HEADER_BYTES,
            total: frames,
        }
    } else {
        Plan::Chunked(chunked::prepare(args, frames).await?)
    };
    let (max_packet, total) = match &plan {
        Plan::Whole {
            max_packet, total, ..
        } => (*max_packet, *total),
        Plan::Chunked(frames) => (frames.max_packet(), frames.total_messages()),
    };
    if max_packet > MQTT_MAX_PACKET {
        bail!("a {max_packet}-byte message exceeds MQTT's {MQTT_MAX_PACKET}-byte packet limit");
    }

    let mut connection = Connection::open(args, &broker, max_packet).await?;
    let started = Instant::now();
    let mut ticker = period.map(|period| {
        let mut ticker = tokio::time::interval(period);
        // Keep the average rate: after a stall, catch up rather than lose messages' slots.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        ticker
    });
    let mut bytes = 0u64;
    match plan {
        Plan::Whole { bodies, .. } => {
            let cycle = bodies.iter().cycle().take(total as usize);
            for (seq, body) in (0u64..).zip(cycle) {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                let payload = match body {
                    Body::Ready(template) => template.payload.clone(),
                    Body::Json { image_base64 } => {
                        json_envelope(&args.topic, unix_millis(), seq, image_base64).into()
                    }
                };
                bytes += payload.len() as u64;
                connection
                    .publish(&args.topic, qos, payload, (seq, total))
                    .await?;
            }
        }
        Plan::Chunked(frames) => {
            let mut messages = frames.spawn();
            let mut seq = 0;
            while let Some((topic, payload)) = messages.recv().await {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                bytes += payload.len() as u64;
                connection
                    .publish(&topic, qos, payload, (seq, total))
                    .await?;
                seq += 1;
            }
        }
    }
    connection.finish(qos, total).await?;

    let secs = started.elapsed().as_secs_f64();
    let frames = if args.chunking.chunks == Mode::None {
        String::new()
    } else {
        format!(" ({frames} frames)")
    };
    eprintln!(
        "published {total} messages{frames}, {bytes} bytes in {secs:.2} s ({:.1} msg/s)",
        total as f64 / secs.max(f64::EPSILON)
    );
    Ok(())
}

/// What a run publishes, ready before connecting.
enum Plan {
    /// Each file in one message.
    Whole {
        bodies: Vec<Body>,
        max_packet: usize,
        total: u64,
    },
    Chunked(chunked::Frames),
}

/// A connected client and the task driving its event loop.
struct Connection {
    client: AsyncClient,
    driver: tokio::task::JoinHandle<Result<(), ConnectionError>>,
    /// Messages the broker acknowledged so far.
    acked: watch::Receiver<u64>,
    /// The broker URL as given, for messages.
    url: String,
}

impl Connection {
    /// Connects, waiting for the CONNACK at most [`CONNECT_TIMEOUT`].
    async fn open(
        args: &PublishArgs,
        broker: &BrokerAddr,
        max_packet: usize,
    ) -> anyhow::Result<Self> {
        let client_id = args
            .client_id
            .clone()
            .unwrap_or_else(|| format!("mqimg-publish-{}", std::process::id()));
        let mut options = MqttOptions::new(client_id, broker.host(), broker.port());
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(true)
            .set_max_packet_size(MAX_INCOMING_PACKET, max_packet)
            .set_inflight(MAX_INFLIGHT);
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
        // Without TCP_NODELAY, Nagle's algorithm can hold a small packet (a PUBREL, a payload's tail)
        // back for the broker's delayed ACK, about 40 ms on Linux.
        eventloop.network_options.set_tcp_nodelay(true);

        let (connected_tx, connected_rx) = oneshot::channel();
        let (acked_tx, acked) = watch::channel(0u64);
        let mut driver = tokio::spawn(
            Driver {
                eventloop,
                connected: Some(connected_tx),
                acked: acked_tx,
            }
            .run(),
        );

        let url = &args.broker;
        match tokio::time::timeout(CONNECT_TIMEOUT, connected_rx).await {
            Ok(Ok(())) => Ok(Self {
                client,
                driver,
                acked,
                url: url.clone(),
            }),
            Ok(Err(_)) => {
                let error = driver_error(&mut driver).await;
                Err(error.context(format!("cannot connect to broker at {url}")))
            }
            Err(_) => {
                driver.abort();
                bail!(
                    "cannot connect to broker at {url}: no CONNACK within {} s",
                    CONNECT_TIMEOUT.as_secs()
                );
            }
        }
    }

    /// Hands one message to the client; `(seq, total)` say how far the run got, for the error.
    async fn publish(
        &mut self,
        topic: &str,
        qos: QoS,
        payload: Bytes,
        (seq, total): (u64, u64),
    ) -> anyhow::Result<()> {
        if self
            .client
            .publish_bytes(topic, qos, false, payload)
            .await
            .is_err()
        {
            // The request channel closes only when the driver has stopped: its error says why.
            let error = driver_error(&mut self.driver).await;
            return Err(error.context(format!(
                "connection to broker at {} lost after {seq} of {total} messages",
                self.url
            )));
        }
        Ok(())
    }

    /// Waits for the broker to acknowledge all `total` messages (QoS 1 and 2), then disconnects.
    async fn finish(mut self, qos: QoS, total: u64) -> anyhow::Result<()> {
        let url = &self.url;
        if qos != QoS::AtMostOnce && self.acked.wait_for(|&acked| acked >= total).await.is_err() {
            let acked = *self.acked.borrow();
            let error = driver_error(&mut self.driver).await;
            return Err(error.context(format!(
                "connection to broker at {url} lost with {acked} of {total} messages acknowledged"
            )));
        }
        // Requests are handled in order: for QoS 0 every publish is written before this.
        if self.client.disconnect().await.is_err() {
            let error = driver_error(&mut self.driver).await;
            return Err(error.context(format!(
                "connection to broker at {url} lost while disconnecting"
            )));
        }
        match self.driver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(connection_error(error).context(format!(
                "connection to broker at {url} lost while disconnecting"
            ))),
            Err(join) => Err(anyhow!(join).context("MQTT event loop task failed")),
        }
    }
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
) -> anyhow::Error {
    match driver.await {
        Ok(Err(error)) => connection_error(error),
        Ok(Ok(())) => anyhow!("the MQTT event loop stopped unexpectedly"),
        Err(join) => anyhow!(join).context("MQTT event loop task failed"),
    }
}

/// rumqttc's errors repeat their source in their own message: keep the message only, so the chain
/// printed with `{:#}` says it once.
fn connection_error(error: ConnectionError) -> anyhow::Error {
    anyhow!("{error}")
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
mod tests;
