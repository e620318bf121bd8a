//! The MQTT connection: client options from the config (`setup`, with `tls`), and the task that owns
//! rumqttc's `EventLoop`.
//!
//! The poll task only polls, backs off after errors (rumqttc reconnects in a hot loop by itself), logs
//! connection events and forwards what matters to the delivery task. It never decodes, never awaits a
//! client call (nothing would drain the client's channel) and never blocks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{
    ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, Outgoing, Publish, Request,
    SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod setup;
mod tls;

pub use setup::{SetupError, client_options, connect};
pub use tls::explain as explain_tls;

use crate::config::{Tls, env_name};
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

/// What the poll task reports, in the order the event loop produced it.
#[derive(Debug)]
pub enum MqttEvent {
    /// A CONNACK: a new connection (a new "generation" of packet ids).
    Connected { session_present: bool },
    /// The connection failed. rumqttc moved the records it had not finished sending into its replay
    /// queue: these are their payload addresses, to know which ones it drops if the session is gone.
    /// `short_lived`: the broker closed it soon after accepting it.
    Disconnected {
        replay: HashSet<usize>,
        short_lived: bool,
    },
    /// A frame arrived.
    Frame(Publish),
    /// A record publish went out with this packet id (0 for QoS 0).
    RecordSent(u16),
    /// The broker acknowledged the record publish with this packet id (PUBACK, or PUBCOMP at QoS 2).
    RecordAcked(u16),
}

/// How long a connection must last to count as working: a broker that closes connections sooner
/// is failing, and its backoff keeps growing instead of starting over.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Accepted connections closed before `STABLE_AFTER`, in a row, before another client using the same
/// client id is suspected. One more than the closes that give up a record the broker chokes on, so
/// that case is settled first.
const TAKEOVER_SUSPECT: u32 = 4;

/// The reconnect policy, apart from the I/O so its rules are tested without a broker: capped
/// exponential backoff that starts over only after a connection that lasted, and the recognition of
/// a broker that keeps closing accepted connections.
#[derive(Debug)]
pub struct Reconnect {
    min: Duration,
    max: Duration,
    /// The wait before the next attempt.
    next: Duration,
    /// Failed attempts in a row (refused, unreachable, or closed too soon).
    failures: u64,
    connected_at: Option<Instant>,
    /// Accepted connections closed too soon, in a row.
    short_closes: u32,
    takeover_reported: bool,
}

/// What a failed connection means, for the poll task to act on.
#[derive(Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Wait this long before the next attempt.
    pub retry_in: Duration,
    /// Failed attempts in a row, this one included.
    pub failures: u64,
    /// The connection had been accepted.
    pub was_connected: bool,
    /// It was accepted and closed before it could count as working.
    pub short_lived: bool,
    /// Set once when accepted connections keep being closed right away (another client with the
    /// same id is the usual cause).
    pub takeover_suspected: bool,
}

impl Reconnect {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
            failures: 0,
            connected_at: None,
            short_closes: 0,
            takeover_reported: false,
        }
    }

    /// A CONNACK was received at `now`.
    pub fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// The connection or the attempt failed at `now`.
    pub fn failed(&mut self, now: Instant) -> Attempt {
        let lasted = self
            .connected_at
            .take()
            .map(|at| now.saturating_duration_since(at));
        let was_connected = lasted.is_some();
        let short_lived = lasted.is_some_and(|d| d < STABLE_AFTER);
        if lasted.is_some_and(|d| d >= STABLE_AFTER) {
            // A working connection broke: start over.
            self.next = self.min;
            self.failures = 0;
            self.short_closes = 0;
            self.takeover_reported = false;
        }
        if short_lived {
            self.short_closes += 1;
        }
        self.failures += 1;
        let retry_in = self.next;
        self.next = (self.next * 2).min(self.max);
        let takeover_suspected =
            short_lived && self.short_closes >= TAKEOVER_SUSPECT && !self.takeover_reported;
        self.takeover_reported |= takeover_suspected;
        Attempt {
            retry_in,
            failures: self.failures,
            was_connected,
            short_lived,
            takeover_suspected,
        }
    }
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
    /// `[broker.tls]`, to say which key to change when a handshake fails.
    pub tls: Tls,
    /// Named when another client seems to take the session over.
    pub client_id: String,
    pub reconnect: Reconnect,
    /// Stops reconnect attempts; a connected client is stopped by its DISCONNECT instead.
    pub shutdown: CancellationToken,
}

impl Poller {
    pub async fn run(mut self) {
        loop {
            let event = match self.eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    self.reconnect.connected(Instant::now());
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
                    self.health.set_connected(false);
                    let attempt = self.reconnect.failed(Instant::now());
                    self.log_error(&error, &attempt);
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
                        .send(MqttEvent::Disconnected {
                            replay,
                            short_lived: attempt.short_lived,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(attempt.retry_in) => {}
                        () = self.shutdown.cancelled() => return,
                    }
                    continue;
                }
            };
            if self.events.send(event).await.is_err() {
                return;
            }
        }
    }

    fn log_error(&self, error: &ConnectionError, attempt: &Attempt) {
        let retry_in_ms = attempt.retry_in.as_millis() as u64;
        let attempts = attempt.failures;
        // The first failure and every tenth one after: a broker down for hours should not flood.
        let notable = attempts == 1 || attempts % 10 == 0;
        if attempt.takeover_suspected {
            tracing::error!(
                url = %self.url,
                client_id = %self.client_id,
                attempts,
                "the broker keeps closing the connection right after accepting it: most likely another \
                 client uses the same broker.client_id {:?} and each connection takes the session from \
                 the other. Give each mqimg instance its own broker.client_id; to spread frames across \
                 instances, subscribe with $share/GROUP/FILTER",
                self.client_id
            );
        }
        if let Some(why) = tls::explain(error, &self.tls, &|key| {
            format!("{key} ({})", env_name(key))
        }) {
            if notable {
                tracing::error!(url = %self.url, attempts, retry_in_ms, "TLS with the broker failed: {why}");
            } else {
                tracing::debug!(url = %self.url, retry_in_ms, "TLS failed again: {why}");
            }
            return;
        }
        match error {
            ConnectionError::ConnectionRefused(code) => tracing::error!(
                url = %self.url,
                code = ?code,
                retry_in_ms,
                "broker refused the connection: {}",
                refusal_meaning(*code)
            ),
            _ if attempt.short_lived => {
                if notable {
                    tracing::warn!(
                        url = %self.url,
                        error = %error,
                        attempts,
                        retry_in_ms,
                        "the broker closed the connection soon after accepting it"
                    );
                } else {
                    tracing::debug!(url = %self.url, error = %error, retry_in_ms, "closed again");
                }
            }
            _ if attempt.was_connected => tracing::warn!(
                url = %self.url,
                error = %error,
                retry_in_ms,
                "connection to broker lost"
            ),
            _ if notable => tracing::warn!(
                url = %self.url,
                error = %error,
                attempts,
                retry_in_ms,
                "cannot connect to broker"
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(30);

    #[test]
    fn failed_attempts_back_off_exponentially_up_to_the_cap() {
        let mut r = Reconnect::new(MIN, MAX);
        let now = Instant::now();
        let waits: Vec<u64> = (0..10)
            .map(|_| r.failed(now).retry_in.as_millis() as u64)
            .collect();
        assert_eq!(
            waits,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
    }

    #[test]
    fn a_connection_that_lasted_starts_the_backoff_over() {
        let mut r = Reconnect::new(MIN, MAX);
        let t0 = Instant::now();
        for _ in 0..5 {
            r.failed(t0);
        }
        r.connected(t0);
        let attempt = r.failed(t0 + STABLE_AFTER);
        assert_eq!(attempt.retry_in, MIN);
        assert!(attempt.was_connected && !attempt.short_lived);
        assert_eq!(attempt.failures, 1);
    }

    #[test]
    fn a_connection_closed_right_after_its_connack_counts_as_a_failed_attempt() {
        let mut r = Reconnect::new(MIN, MAX);
        let t0 = Instant::now();
        let mut waits = Vec::new();
        for i in 0..6 {
            let at = t0 + Duration::from_secs(i);
            r.connected(at);
            let attempt = r.failed(at + Duration::from_millis(100));
            assert!(attempt.short_lived);
            waits.push(attempt.retry_in.as_millis() as u64);
        }
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000]);
    }

    #[test]
    fn repeated_closes_of_accepted_connections_are_reported_once_as_a_takeover() {
        let mut r = Reconnect::new(MIN, MAX);
        let t0 = Instant::now();
        let reported: Vec<bool> = (0..8)
            .map(|i| {
                let at = t0 + Duration::from_secs(i);
                r.connected(at);
                r.failed(at).takeover_suspected
            })
            .collect();
        assert_eq!(
            reported,
            [false, false, false, true, false, false, false, false]
        );
        // Unreachable-broker failures are not closes of accepted connections.
        let mut r = Reconnect::new(MIN, MAX);
        assert!((0..10).all(|_| !r.failed(t0).takeover_suspected));
    }
}
