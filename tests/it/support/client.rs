//! MQTT test clients built on rumqttc: a [`Subscriber`] that collects what it receives, and [`publish_once`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS, SubscribeReasonCode,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::with_timeout;

/// Frames exceed rumqttc's 10 KiB default packet limit by far.
pub const MAX_PACKET_BYTES: usize = 64 * 1024 * 1024;
/// How long connecting and subscribing may take before a test fails.
const CONNECT_TIMEOUT_SECS: u64 = 10;
/// Pause after a connection error before rumqttc reconnects (it does not back off by itself).
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// One publish as the subscriber received it.
#[derive(Clone, Debug)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    /// Set by the broker on redelivery of an unacknowledged message.
    pub dup: bool,
    pub retain: bool,
}

/// How a [`Subscriber`] connects.
#[derive(Clone, Debug)]
pub struct SubscriberOptions {
    /// Client id; a unique one is generated when `None`. Set it for persistent sessions.
    pub client_id: Option<String>,
    pub clean_session: bool,
    /// Received messages buffered for the test before the connection stops reading.
    pub buffer: usize,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        SubscriberOptions {
            client_id: None,
            clean_session: true,
            buffer: 10_000,
        }
    }
}

/// A subscribed test client. Its event loop runs in a spawned task, reconnects after errors (with a
/// short backoff, re-subscribing when the broker kept no session) and forwards every publish to
/// [`recv`](Subscriber::recv). Dropping it aborts the task, which closes the connection without DISCONNECT.
pub struct Subscriber {
    /// Requests to the event loop (used to disconnect).
    client: AsyncClient,
    /// Publishes received, in arrival order.
    messages: mpsc::Receiver<Message>,
    /// The task polling the event loop.
    driver: JoinHandle<()>,
}

impl Subscriber {
    /// Connects with a fresh clean session, subscribes to `filter` and returns once the SUBACK arrived,
    /// so nothing published afterwards is missed.
    pub async fn connect(url: &str, filter: &str, qos: QoS) -> Subscriber {
        Subscriber::connect_with(url, filter, qos, SubscriberOptions::default()).await
    }

    pub async fn connect_with(
        url: &str,
        filter: &str,
        qos: QoS,
        options: SubscriberOptions,
    ) -> Subscriber {
        let client_id = options.client_id.unwrap_or_else(|| unique_client_id("sub"));
        let mut mqtt = mqtt_options(url, client_id);
        mqtt.set_clean_session(options.clean_session);
        let (client, eventloop) = AsyncClient::new(mqtt, 16);
        client
            .subscribe(filter, qos)
            .await
            .expect("queueing the SUBSCRIBE");

        let (ready_tx, ready_rx) = oneshot::channel();
        let (messages_tx, messages) = mpsc::channel(options.buffer);
        let driver = tokio::spawn(
            SubscriberDriver {
                eventloop,
                client: client.clone(),
                filter: filter.to_owned(),
                qos,
                ready: Some(ready_tx),
                messages: messages_tx,
            }
            .run(),
        );
        let what = format!("connecting to {url} and subscribing to {filter}");
        match with_timeout(CONNECT_TIMEOUT_SECS, &what, ready_rx).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("{what}: {error}"),
            Err(_) => panic!("{what}: the subscriber task ended"),
        }
        Subscriber {
            client,
            messages,
            driver,
        }
    }

    /// The next message; panics if none arrives within `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Message {
        match tokio::time::timeout(timeout, self.messages.recv()).await {
            Ok(Some(message)) => message,
            Ok(None) => panic!("the subscriber's connection task ended"),
            Err(_) => panic!("no message within {timeout:?}"),
        }
    }

    /// The next message, however long it takes (wrap it in a timeout).
    pub async fn recv_any(&mut self) -> Option<Message> {
        self.messages.recv().await
    }

    /// The next `n` messages; panics unless all arrive within `timeout` (overall).
    pub async fn recv_n(&mut self, n: usize, timeout: Duration) -> Vec<Message> {
        let mut received = Vec::with_capacity(n);
        let collect = async {
            while received.len() < n {
                match self.messages.recv().await {
                    Some(message) => received.push(message),
                    None => break,
                }
            }
        };
        let timed_out = tokio::time::timeout(timeout, collect).await.is_err();
        assert!(
            received.len() == n,
            "received {} of {n} messages {}",
            received.len(),
            if timed_out {
                format!("within {timeout:?}")
            } else {
                String::from("before the subscriber's connection task ended")
            }
        );
        received
    }

    /// A message already received, if any (does not wait).
    pub fn try_recv(&mut self) -> Option<Message> {
        self.messages.try_recv().ok()
    }

    /// Sends DISCONNECT and waits for it to be written (a persistent session stays on the broker).
    pub async fn disconnect(mut self) {
        self.client
            .disconnect()
            .await
            .expect("queueing the DISCONNECT");
        with_timeout(
            CONNECT_TIMEOUT_SECS,
            "the subscriber's DISCONNECT",
            &mut self.driver,
        )
        .await
        .expect("the subscriber task");
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Owns a subscriber's event loop.
struct SubscriberDriver {
    eventloop: EventLoop,
    /// Only `try_*` calls: awaiting a client call here could deadlock on a full request channel.
    client: AsyncClient,
    filter: String,
    qos: QoS,
    /// Told the outcome of the first SUBACK (or the first connection error).
    ready: Option<oneshot::Sender<Result<(), String>>>,
    messages: mpsc::Sender<Message>,
}

impl SubscriberDriver {
    async fn run(mut self) {
        let mut connected_before = false;
        loop {
            match self.eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    // rumqttc does not re-send subscriptions after a reconnect (issue #250).
                    if connected_before && !ack.session_present {
                        if let Err(e) = self.client.try_subscribe(&self.filter, self.qos) {
                            eprintln!("test subscriber: re-subscribing failed: {e}");
                        }
                    }
                    connected_before = true;
                }
                Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .any(|code| matches!(code, SubscribeReasonCode::Failure));
                    let outcome = if refused {
                        Err(format!("the broker refused the subscription: {ack:?}"))
                    } else {
                        Ok(())
                    };
                    match self.ready.take() {
                        Some(ready) => {
                            let _ = ready.send(outcome);
                        }
                        None => {
                            if let Err(e) = outcome {
                                eprintln!("test subscriber: {e}");
                            }
                        }
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(publish))) => {
                    let message = Message {
                        topic: publish.topic,
                        payload: publish.payload.to_vec(),
                        qos: publish.qos,
                        dup: publish.dup,
                        retain: publish.retain,
                    };
                    if self.messages.send(message).await.is_err() {
                        return;
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(error) => {
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(Err(error.to_string()));
                        return;
                    }
                    eprintln!("test subscriber: connection error, reconnecting: {error}");
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                }
            }
        }
    }
}

/// Publishes one message and returns once the broker has it (PUBACK/PUBCOMP for QoS 1/2, written for
/// QoS 0), then disconnects. Panics on any error or after 10 s.
pub async fn publish_once(url: &str, topic: &str, payload: impl Into<Vec<u8>>, qos: QoS) {
    let (client, mut eventloop) = AsyncClient::new(mqtt_options(url, unique_client_id("pub")), 4);
    client
        .publish(topic, qos, false, payload)
        .await
        .expect("queueing the PUBLISH");
    let what = format!("publishing one message to {topic} on {url}");
    with_timeout(CONNECT_TIMEOUT_SECS, &what, async {
        loop {
            let done = match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(_))) => qos == QoS::AtMostOnce,
                Ok(Event::Incoming(Incoming::PubAck(_) | Incoming::PubComp(_))) => true,
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => false,
                Err(error) => panic!("{what}: {error}"),
            };
            if done {
                // Queued only now: sent right after the PUBLISH, it would close the connection before
                // the acknowledgement arrives.
                client.try_disconnect().expect("queueing the DISCONNECT");
            }
        }
    })
    .await;
}

/// Publishes every `(topic, payload)` in order and returns once the broker has them all (acknowledged
/// for QoS 1/2, written for QoS 0), then disconnects. Panics on any error or after `secs`.
pub async fn publish_all(url: &str, messages: Vec<(String, Vec<u8>)>, qos: QoS, secs: u64) {
    let total = messages.len();
    let (client, mut eventloop) = AsyncClient::new(mqtt_options(url, unique_client_id("pub")), 64);
    let sender = tokio::spawn(async move {
        for (topic, payload) in messages {
            client
                .publish(topic, qos, false, payload)
                .await
                .expect("queueing a PUBLISH");
        }
        client
    });
    let what = format!("publishing {total} messages on {url}");
    let mut done = 0;
    with_timeout(secs, &what, async {
        while done < total {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(_))) if qos == QoS::AtMostOnce => done += 1,
                Ok(Event::Incoming(Incoming::PubAck(_) | Incoming::PubComp(_))) => done += 1,
                Ok(_) => {}
                Err(error) => panic!("{what}: {error}"),
            }
        }
        let client = sender.await.expect("the publishing task");
        client.try_disconnect().expect("queueing the DISCONNECT");
        while !matches!(
            eventloop.poll().await,
            Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)
        ) {}
    })
    .await;
}

/// rumqttc options for a test client of the broker at `url`, with room for big frames.
fn mqtt_options(url: &str, client_id: String) -> MqttOptions {
    let broker: mqimg::config::BrokerAddr = url.parse().expect("a valid broker URL");
    let mut options = MqttOptions::new(client_id, broker.host(), broker.port());
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    options
}

/// A client id no other client of this test process uses.
fn unique_client_id(role: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("mqimg-it-{role}-{}-{n}", std::process::id())
}
