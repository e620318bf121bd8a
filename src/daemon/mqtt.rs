//! The MQTT connection: client options from the config, and the task that owns rumqttc's `EventLoop`.
//!
//! The poll task only polls, backs off after errors (rumqttc reconnects in a hot loop by itself), logs
//! connection events and forwards what matters to the delivery task. It never decodes, never awaits a
//! client call (nothing would drain the client's channel) and never blocks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, MqttOptions,
    Outgoing, Publish, Request, SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

/// What the poll task reports, in the order the event loop produced it.
#[derive(Debug)]
pub enum MqttEvent {
    /// A CONNACK: a new connection (a new "generation" of packet ids).
    Connected { session_present: bool },
    /// The connection failed. rumqttc moved the records it had not finished sending into its replay
    /// queue: these are their payload addresses, to know which ones it drops if the session is gone.
    Disconnected { replay: HashSet<usize> },
    /// A frame arrived.
    Frame(Publish),
    /// A record publish went out with this packet id (0 for QoS 0).
    RecordSent(u16),
    /// The broker acknowledged the record publish with this packet id (PUBACK, or PUBCOMP at QoS 2).
    RecordAcked(u16),
}

/// Requests (records, acks) the client's channel holds before `try_*` calls wait in the outbox.
const REQUEST_QUEUE: usize = 256;
/// Outgoing record publishes awaiting their PUBACK.
const RECORDS_IN_FLIGHT: u16 = 100;

/// The client and its event loop, configured from `settings` (not connected yet: polling connects).
pub fn connect(settings: &Settings) -> (AsyncClient, EventLoop) {
    let broker = &settings.broker;
    let mut options = MqttOptions::new(
        broker.client_id.clone(),
        broker.url.host(),
        broker.url.port(),
    );
    options
        .set_keep_alive(broker.keep_alive)
        .set_clean_session(broker.clean_session)
        // rumqttc's 10 KiB default would refuse every real frame and drop the connection.
        .set_max_packet_size(broker.max_packet_bytes, broker.max_packet_bytes)
        .set_inflight(RECORDS_IN_FLIGHT)
        .set_manual_acks(!broker.clean_session)
        .set_request_channel_capacity(REQUEST_QUEUE);
    if let Some(user) = &broker.username {
        let password = broker.password.as_ref().map_or("", |p| p.expose());
        options.set_credentials(user.clone(), password);
    }
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
    // Acks and records are small packets: Nagle's algorithm would hold each one back ~40 ms.
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// rumqttc's name for a QoS level.
pub fn qos(qos: crate::config::Qos) -> rumqttc::QoS {
    match qos {
        crate::config::Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
        crate::config::Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        crate::config::Qos::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
    }
}

/// What a CONNACK refusal means, in the broker's terms.
pub fn refusal_meaning(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::Success => "accepted",
        ConnectReturnCode::RefusedProtocolVersion => {
            "unacceptable protocol version (the broker does not speak MQTT 3.1.1)"
        }
        ConnectReturnCode::BadClientId => {
            "identifier rejected (the broker refuses broker.client_id)"
        }
        ConnectReturnCode::ServiceUnavailable => "server unavailable",
        ConnectReturnCode::BadUserNamePassword => {
            "bad user name or password (check broker.username and broker.password)"
        }
        ConnectReturnCode::NotAuthorized => {
            "not authorised (check broker.username and broker.password first: Mosquitto answers a wrong password this way; then the broker's ACL)"
        }
    }
}

/// Owns the event loop until the client disconnects, the delivery task is gone or shutdown is requested
/// while the broker is unreachable.
pub struct Poller {
    /// rumqttc's driver: nothing moves unless it is polled.
    pub eventloop: EventLoop,
    /// Where events go, in order.
    pub events: mpsc::Sender<MqttEvent>,
    pub metrics: Arc<Metrics>,
    /// Readiness, set as the connection and subscriptions come and go.
    pub health: Arc<Health>,
    /// Subscription filters, to name them when the broker refuses one.
    pub filters: Vec<String>,
    pub url: String,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Stops reconnect attempts; a connected client is stopped by its DISCONNECT instead.
    pub shutdown: CancellationToken,
}

impl Poller {
    pub async fn run(mut self) {
        let mut backoff = self.backoff_min;
        let mut failures: u64 = 0;
        loop {
            let event = match self.eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    backoff = self.backoff_min;
                    failures = 0;
                    self.metrics.connected.set(1);
                    self.health.set_connected(true);
                    let n = self.metrics.connections.inc();
                    tracing::info!(
                        url = %self.url,
                        session_present = ack.session_present,
                        reconnect = n > 0,
                        "connected to broker"
                    );
                    MqttEvent::Connected {
                        session_present: ack.session_present,
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(publish))) => MqttEvent::Frame(publish),
                Ok(Event::Incoming(Incoming::PubAck(ack))) => MqttEvent::RecordAcked(ack.pkid),
                Ok(Event::Incoming(Incoming::PubComp(comp))) => MqttEvent::RecordAcked(comp.pkid),
                Ok(Event::Incoming(Incoming::SubAck(suback))) => {
                    self.log_suback(&suback.return_codes);
                    continue;
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => MqttEvent::RecordSent(pkid),
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    tracing::info!("disconnected from broker");
                    self.metrics.connected.set(0);
                    self.health.set_connected(false);
                    return;
                }
                Ok(_) => continue,
                Err(error) => {
                    self.metrics.connected.set(0);
                    let was_connected = self.health.set_connected(false);
                    failures += 1;
                    self.log_error(&error, was_connected, failures, backoff);
                    let replay = self
                        .eventloop
                        .pending
                        .iter()
                        .filter_map(|request| match request {
                            Request::Publish(p) => Some(p.payload.as_ptr() as usize),
                            _ => None,
                        })
                        .collect::<HashSet<_>>();
                    if self
                        .events
                        .send(MqttEvent::Disconnected { replay })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(self.backoff_max);
                    continue;
                }
            };
            if self.events.send(event).await.is_err() {
                return;
            }
        }
    }

    fn log_error(
        &self,
        error: &ConnectionError,
        was_connected: bool,
        failures: u64,
        retry_in: Duration,
    ) {
        let retry_in_ms = retry_in.as_millis() as u64;
        match error {
            ConnectionError::ConnectionRefused(code) => tracing::error!(
                url = %self.url,
                code = ?code,
                retry_in_ms,
                "broker refused the connection: {}",
                refusal_meaning(*code)
            ),
            // The first failure and every tenth one after: a broker down for hours should not flood.
            _ if was_connected || failures == 1 || failures % 10 == 0 => tracing::warn!(
                url = %self.url,
                error = %error,
                attempts = failures,
                retry_in_ms,
                "{}",
                if was_connected { "connection to broker lost" } else { "cannot connect to broker" }
            ),
            _ => {
                tracing::debug!(url = %self.url, error = %error, retry_in_ms, "still cannot connect")
            }
        }
    }

    fn log_suback(&self, codes: &[SubscribeReasonCode]) {
        if codes
            .iter()
            .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
        {
            self.health.subscriptions_granted();
        }
        for (filter, code) in self.filters.iter().zip(codes) {
            match code {
                SubscribeReasonCode::Success(qos) => {
                    tracing::info!(topic = %filter, qos = *qos as u8, "subscribed");
                }
                SubscribeReasonCode::Failure => tracing::error!(
                    topic = %filter,
                    "the broker refused the subscription (not authorised by its ACL, or an invalid filter)"
                ),
            }
        }
    }
}
