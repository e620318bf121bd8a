//! At-least-once delivery: the task that owns every frame between its arrival and its PUBACK.
//!
//! It hands frames to the decode workers, publishes their records, and acks a frame only when its
//! outcome is durable (file written by the worker, record acknowledged by the broker), in the order the
//! frames arrived (MQTT §4.6), and never for a packet id from an earlier connection.
//!
//! It never awaits the MQTT client: every request is `try_*`, and what the client's channel cannot take
//! waits in an outbox flushed after each event. The poll task is therefore never blocked by this task,
//! which it feeds with [`MqttEvent`]s.
//!
//! Records are matched to their PUBACKs through rumqttc's events: each outgoing publish is reported with
//! its packet id (`Outgoing::Publish`) in request order, and this task is the only one publishing.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use rumqttc::{AsyncClient, ClientError, Publish, QoS, Request, SubscribeFilter};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::daemon::workers::{Context, Done, Job};
use crate::frame::record::{Failure, Stage};
use crate::ops::metrics::Metrics;

/// How soon requests the client's channel refused are offered again.
const OUTBOX_RETRY: Duration = Duration::from_millis(2);

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

/// One frame between arrival and the end of its life here.
#[derive(Debug)]
struct InFlight {
    /// Connection generation it arrived on; only acked on that same connection.
    generation: u64,
    /// The header needed for its PUBACK, while it still awaits one.
    ack: Option<Publish>,
    qos: QoS,
    /// The record, kept until the broker acknowledges it (it is republished if the session is lost).
    record: Option<(String, Vec<u8>)>,
    /// Address of the record payload last handed to the client.
    record_addr: usize,
    /// Its outcome is durable: file written, record acknowledged (or no record to wait for).
    finished: bool,
}

enum Out {
    Subscribe(Vec<SubscribeFilter>),
    Record {
        seq: u64,
        topic: String,
        payload: Vec<u8>,
    },
    Ack(Publish),
    Disconnect,
}

/// How a delivery run ended.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Frames received during shutdown or not finished by its deadline: left unacked for redelivery.
    pub unfinished: u64,
    pub deadline_hit: bool,
}

pub struct Delivery {
    /// The MQTT client; only ever called with `try_*`.
    client: AsyncClient,
    /// Decode queue (bounded: `pipeline.queue_frames`); `None` once draining.
    jobs: Option<SyncSender<Job>>,
    /// Builds failure records for frames dropped here.
    context: Arc<Context>,
    metrics: Arc<Metrics>,
    subscriptions: Vec<SubscribeFilter>,
    record_qos: QoS,
    retain: bool,
    manual_acks: bool,
    /// The decode queue's bound, for messages.
    queue_frames: usize,
    generation: u64,
    connected: bool,
    subscribed: bool,
    next_seq: u64,
    /// Every frame not yet finished and acked, by arrival order.
    frames: BTreeMap<u64, InFlight>,
    /// Frames awaiting their PUBACK, in arrival order.
    acks: VecDeque<u64>,
    /// QoS 1/2 frames that found the decode queue full; at `pipeline.queue_frames`, intake pauses.
    backlog: VecDeque<Job>,
    /// Records handed to the client, waiting for their packet id.
    unassigned: VecDeque<u64>,
    /// Record packet id → frame.
    awaiting_puback: HashMap<u16, u64>,
    /// Records rumqttc held for replay when the connection failed.
    replay: HashSet<usize>,
    outbox: VecDeque<Out>,
    draining: bool,
    summary: Summary,
}

impl Delivery {
    pub fn new(
        settings: &Settings,
        client: AsyncClient,
        jobs: SyncSender<Job>,
        context: Arc<Context>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let subscriptions = settings
            .subscriptions
            .iter()
            .map(|s| SubscribeFilter::new(s.topic.clone(), qos(s.qos)))
            .collect();
        Self {
            client,
            jobs: Some(jobs),
            context,
            metrics,
            subscriptions,
            record_qos: qos(settings.output.qos),
            retain: settings.output.retain,
            manual_acks: !settings.broker.clean_session,
            queue_frames: settings.pipeline.queue_frames,
            generation: 0,
            connected: false,
            subscribed: false,
            next_seq: 0,
            frames: BTreeMap::new(),
            acks: VecDeque::new(),
            backlog: VecDeque::new(),
            unassigned: VecDeque::new(),
            awaiting_puback: HashMap::new(),
            replay: HashSet::new(),
            outbox: VecDeque::new(),
            draining: false,
            summary: Summary::default(),
        }
    }

    /// Runs until shutdown is requested and in-flight frames are finished (or `grace` has passed), or
    /// until the poll task ends. Then asks the client to disconnect.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<MqttEvent>,
        mut done: mpsc::Receiver<Done>,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Summary {
        let mut deadline: Option<Instant> = None;
        let mut watchdog = tokio::time::interval(Duration::from_secs(5));
        let mut last_acked = 0;
        loop {
            // Intake pauses while the backlog is full: the poll task then waits on the events channel,
            // stops reading the socket, and TCP backpressure holds the broker back. Acks cannot do it:
            // Mosquitto 2.0 sends up to max_inflight_messages more frames for *each* PUBACK
            // (bench/inflight_probe.py), so its in-flight window does not bound what reaches mqimg.
            let accepting = self.draining || self.backlog.len() < self.queue_frames;
            tokio::select! {
                event = events.recv(), if accepting => match event {
                    Some(event) => self.on_event(event),
                    None => break,
                },
                Some(outcome) = done.recv() => self.on_done(outcome),
                () = shutdown.cancelled(), if !self.draining => {
                    self.start_draining();
                    deadline = Some(Instant::now() + grace);
                }
                // The client's channel was full. Space frees up as rumqttc sends, but not every send is
                // reported to this task (acks are not), so retry shortly instead of waiting for an event.
                () = tokio::time::sleep(OUTBOX_RETRY), if !self.outbox.is_empty() => {}
                _ = watchdog.tick() => {
                    let acked = self.metrics.acked.get();
                    // Only frames awaiting an ack can stall: QoS 0 and clean sessions never ack.
                    if acked == last_acked && !self.acks.is_empty() {
                        tracing::warn!(
                            frames = self.frames.len(),
                            acks_waiting = self.acks.len(),
                            backlog = self.backlog.len(),
                            queued = self.metrics.queue_depth.get(),
                            outbox = self.outbox.len(),
                            unassigned = self.unassigned.len(),
                            awaiting_puback = self.awaiting_puback.len(),
                            connected = self.connected,
                            head_finished = self.acks.front().and_then(|s| self.frames.get(s)).map(|f| f.finished),
                            "no frame acked for 5 s while frames await their ack"
                        );
                    }
                    last_acked = acked;
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    self.summary.deadline_hit = true;
                    break;
                }
            }
            self.flush();
            self.metrics.in_flight.set(self.frames.len() as i64);
            if self.draining && self.drained() {
                break;
            }
        }
        for (seq, frame) in self.frames.iter().filter(|(_, f)| !f.finished).take(5) {
            tracing::warn!(
                seq,
                record_handed = frame.record_addr != 0,
                awaiting_pkid = ?self.awaiting_puback.iter().find(|(_, s)| **s == *seq).map(|(p, _)| *p),
                unassigned = self.unassigned.contains(seq),
                in_outbox = self.outbox.iter().any(|o| matches!(o, Out::Record { seq: s, .. } if s == seq)),
                "frame unfinished at exit"
            );
        }
        let unfinished = self.frames.len() as u64;
        self.summary.unfinished += unfinished;
        self.outbox.push_back(Out::Disconnect);
        self.flush();
        self.summary
    }

    fn on_event(&mut self, event: MqttEvent) {
        match event {
            MqttEvent::Connected { session_present } => self.on_connected(session_present),
            MqttEvent::Disconnected { replay } => {
                self.connected = false;
                self.replay = replay;
                // An ack queued now would reach the next connection with a stale packet id.
                self.outbox.retain(|out| !matches!(out, Out::Ack(_)));
            }
            MqttEvent::Frame(publish) => self.on_frame(publish),
            MqttEvent::RecordSent(0) => {}
            MqttEvent::RecordSent(pkid) => {
                // A packet id already awaiting its PUBACK is a retransmission after a reconnect.
                if !self.awaiting_puback.contains_key(&pkid) {
                    match self.unassigned.pop_front() {
                        Some(seq) => {
                            self.awaiting_puback.insert(pkid, seq);
                        }
                        None => tracing::warn!(pkid, "a publish went out that mqimg did not send"),
                    }
                }
            }
            MqttEvent::RecordAcked(pkid) => {
                if let Some(seq) = self.awaiting_puback.remove(&pkid) {
                    self.metrics.records_published.inc();
                    self.finish(seq);
                }
            }
        }
    }

    fn on_connected(&mut self, session_present: bool) {
        self.generation += 1;
        self.connected = true;
        // Frames of the old connection can no longer be acked: the broker redelivers them.
        for seq in std::mem::take(&mut self.acks) {
            if let Some(frame) = self.frames.get_mut(&seq) {
                frame.ack = None;
                if frame.finished {
                    self.frames.remove(&seq);
                }
            }
        }
        // The broker keeps subscriptions in a persistent session, but the first connection subscribes
        // anyway: the config may have changed since the session was made.
        if !session_present || !self.subscribed {
            self.subscribed = true;
            if !self.subscriptions.is_empty() {
                self.outbox
                    .push_front(Out::Subscribe(self.subscriptions.clone()));
            }
        }
        if !session_present {
            // rumqttc dropped the records it held for replay: publish them again.
            let replay = std::mem::take(&mut self.replay);
            let frames = &self.frames;
            let lost = |seq: &u64| {
                frames
                    .get(seq)
                    .is_some_and(|f| replay.contains(&f.record_addr))
            };
            let mut again: Vec<u64> = self.unassigned.iter().copied().filter(lost).collect();
            self.unassigned.retain(|seq| !lost(seq));
            again.extend(self.awaiting_puback.drain().map(|(_, seq)| seq));
            again.sort_unstable();
            for seq in again {
                if let Some((topic, payload)) = self.frames.get(&seq).and_then(|f| f.record.clone())
                {
                    self.outbox.push_back(Out::Record {
                        seq,
                        topic,
                        payload,
                    });
                }
            }
        }
        self.replay.clear();
    }

    fn on_frame(&mut self, publish: Publish) {
        self.metrics.received.inc();
        self.metrics
            .received_bytes
            .inc_by(publish.payload.len() as u64);
        if self.draining {
            // Not processed and not acked: the broker redelivers it (a QoS 0 frame is lost, counted).
            self.summary.unfinished += 1;
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let awaits_ack = self.manual_acks && publish.qos != QoS::AtMostOnce;
        let ack = awaits_ack.then(|| Publish {
            payload: bytes::Bytes::new(),
            ..publish.clone()
        });
        self.frames.insert(
            seq,
            InFlight {
                generation: self.generation,
                ack,
                qos: publish.qos,
                record: None,
                record_addr: 0,
                finished: false,
            },
        );
        if awaits_ack {
            self.acks.push_back(seq);
        }
        let job = Job {
            seq,
            topic: publish.topic,
            payload: publish.payload,
            received_at: SystemTime::now(),
        };
        if self.backlog.is_empty() {
            self.submit(job);
        } else {
            self.overflow(job);
        }
        let waiting = self.waiting() as i64;
        if waiting > self.metrics.waiting_peak.get() {
            self.metrics.waiting_peak.set(waiting);
        }
    }

    /// Hands a job to the workers, or keeps/drops it when their queue is full.
    fn submit(&mut self, job: Job) {
        let Some(jobs) = &self.jobs else {
            return;
        };
        match jobs.try_send(job) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
            }
            Err(TrySendError::Full(job)) => self.overflow(job),
            Err(TrySendError::Disconnected(job)) => {
                tracing::error!(seq = job.seq, "the decode workers are gone");
            }
        }
    }

    /// A job that found the queue full: QoS 1/2 waits (the broker's in-flight window bounds how many),
    /// QoS 0 is dropped with a failure record.
    fn overflow(&mut self, job: Job) {
        let qos = self.frames.get(&job.seq).map_or(QoS::AtMostOnce, |f| f.qos);
        if qos != QoS::AtMostOnce {
            self.backlog.push_back(job);
            return;
        }
        let failure = Failure::new(
            Some(&job.topic),
            job.received_at,
            job.payload.len(),
            Stage::Queue,
            format!(
                "decode queue full ({} frames waiting, pipeline.queue_frames): QoS 0 frame dropped",
                self.queue_frames
            ),
        );
        let outcome = self.context.failed(job.seq, failure);
        self.on_done(outcome);
    }

    fn on_done(&mut self, outcome: Done) {
        if outcome.ok {
            // Counted here, not by the worker: only now is its file known to be on disk.
            self.metrics.ok.inc();
        }
        let Some(frame) = self.frames.get_mut(&outcome.seq) else {
            return;
        };
        match outcome.record_topic {
            Some(topic) => {
                frame.record = Some((topic.clone(), outcome.record.clone()));
                self.outbox.push_back(Out::Record {
                    seq: outcome.seq,
                    topic,
                    payload: outcome.record,
                });
            }
            None => self.finish(outcome.seq),
        }
        self.release_acks();
        // A worker is free: move waiting frames into the queue, oldest first.
        while let Some(job) = self.backlog.pop_front() {
            let Some(jobs) = &self.jobs else { break };
            match jobs.try_send(job) {
                Ok(()) => {
                    self.metrics.queue_depth.inc();
                }
                Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                    self.backlog.push_front(job);
                    break;
                }
            }
        }
    }

    /// The frame's outcome is durable: ack it and every finished frame after it, in order.
    fn finish(&mut self, seq: u64) {
        let Some(frame) = self.frames.get_mut(&seq) else {
            return;
        };
        frame.finished = true;
        frame.record = None;
        if frame.ack.is_none() {
            self.frames.remove(&seq);
        }
        self.release_acks();
    }

    /// Frames received and waiting for a worker: in the decode queue or the backlog.
    fn waiting(&self) -> usize {
        self.backlog.len() + usize::try_from(self.metrics.queue_depth.get()).unwrap_or(0)
    }

    /// Acks finished frames from the head of the arrival order.
    fn release_acks(&mut self) {
        while let Some(&head) = self.acks.front() {
            let Some(frame) = self.frames.get(&head) else {
                break;
            };
            if !frame.finished || !self.connected || frame.generation != self.generation {
                break;
            }
            self.acks.pop_front();
            if let Some(frame) = self.frames.remove(&head)
                && let Some(ack) = frame.ack
            {
                self.outbox.push_back(Out::Ack(ack));
            }
        }
    }

    /// Sends what the client's request channel takes, in order; the rest waits for the next event.
    fn flush(&mut self) {
        while let Some(out) = self.outbox.pop_front() {
            let sent = match out {
                Out::Subscribe(filters) => self
                    .client
                    .try_subscribe_many(filters.clone())
                    .map_err(|_| Out::Subscribe(filters)),
                Out::Record {
                    seq,
                    topic,
                    mut payload,
                } => {
                    // rumqttc keeps this allocation as the publish payload: its address identifies the
                    // record in the client's replay queue. Exact capacity keeps it from being moved.
                    payload.shrink_to_fit();
                    let addr = payload.as_ptr() as usize;
                    match self.client.try_publish(
                        topic.as_str(),
                        self.record_qos,
                        self.retain,
                        payload,
                    ) {
                        Ok(()) => {
                            self.record_handed(seq, addr);
                            Ok(())
                        }
                        Err(ClientError::TryRequest(Request::Publish(p))) => Err(Out::Record {
                            seq,
                            topic,
                            payload: p.payload.to_vec(),
                        }),
                        Err(e) => {
                            // Only an invalid topic gets here: the record can never be sent.
                            tracing::error!(topic, error = %e, "cannot publish record");
                            self.metrics.records_failed.inc();
                            self.finish(seq);
                            Ok(())
                        }
                    }
                }
                Out::Ack(publish) => match self.client.try_ack(&publish) {
                    Ok(()) => {
                        self.metrics.acked.inc();
                        Ok(())
                    }
                    Err(_) => Err(Out::Ack(publish)),
                },
                Out::Disconnect => self.client.try_disconnect().map_err(|_| Out::Disconnect),
            };
            if let Err(out) = sent {
                self.outbox.push_front(out);
                break;
            }
        }
    }

    fn record_handed(&mut self, seq: u64, addr: usize) {
        if let Some(frame) = self.frames.get_mut(&seq) {
            frame.record_addr = addr;
        }
        if self.record_qos == QoS::AtMostOnce {
            // Nothing more will be heard of a QoS 0 publish: handing it over is all there is.
            self.metrics.records_published.inc();
            self.finish(seq);
        } else {
            self.unassigned.push_back(seq);
        }
    }

    fn start_draining(&mut self) {
        self.draining = true;
        // Workers finish what is already queued, then exit.
        self.jobs = None;
        for job in std::mem::take(&mut self.backlog) {
            self.frames.remove(&job.seq);
            self.summary.unfinished += 1;
        }
        tracing::info!(
            in_flight = self.frames.len(),
            "shutting down: finishing frames in flight"
        );
    }

    /// Nothing is left that could still finish.
    fn drained(&self) -> bool {
        self.outbox.is_empty() && self.frames.values().all(|f| f.finished)
    }
}

fn qos(qos: crate::config::Qos) -> QoS {
    crate::daemon::mqtt::qos(qos)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
