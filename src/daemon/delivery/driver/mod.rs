//! The delivery task: performs what the [`state`](super::state) machine decides.
//!
//! It feeds the state machine with the poll task's events and the workers' outcomes, hands jobs to the
//! workers and requests to the MQTT client, logs each frame once at its final outcome and keeps the
//! metrics. It never awaits the client: every request is `try_*`, and what the client's channel cannot
//! take goes back to the state machine's outbox, offered again shortly. The poll task is therefore
//! never blocked by this task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use rumqttc::{AsyncClient, ClientError, Publish, QoS, SubscribeFilter};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod chunks;

use super::state::{Arrival, Delivery, DropReason, Outcome, Request, Rules, StoreFailed};
use crate::config::{Qos, Settings};
use crate::daemon::mqtt::{self, MqttEvent};
use crate::daemon::retention::InUse;
use crate::daemon::workers::{Context, Done, Finished, Job, Report};
use crate::frame::record::{Failure, Stage};
use crate::ops::health::Health;
use crate::ops::live::Hub;
use crate::ops::metrics::Metrics;

/// How soon requests the client's channel refused are offered again.
const OUTBOX_RETRY: Duration = Duration::from_millis(2);
/// How long acks may stall before the operator is told.
const STALL_WARNING: Duration = Duration::from_secs(5);

/// How a delivery run ended.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Frames received during shutdown or not finished by its deadline: left unacked for redelivery.
    pub unfinished: u64,
    pub deadline_hit: bool,
}

pub struct Driver {
    /// The rules: what to submit, publish and ack.
    state: Delivery<Publish>,
    /// The MQTT client; only ever called with `try_*`.
    client: AsyncClient,
    subscriptions: Vec<SubscribeFilter>,
    retain: bool,
    /// The workers' queue (bounded: `pipeline.queue_frames`); `None` once draining.
    jobs: Option<Sender<Job>>,
    /// Chunked subscriptions: where their parts go, and the frames assembled from them.
    chunks: Option<chunks::Chunks>,
    /// Builds failure records for frames dropped here.
    context: Arc<Context>,
    metrics: Arc<Metrics>,
    /// Readiness: says when frames cannot be stored.
    health: Arc<Health>,
    /// What each frame became, logged once its outcome is final.
    reports: HashMap<u64, Report>,
    /// Frame files retention must not delete yet: their records are not published.
    in_use: HashMap<u64, InUse>,
    /// PUBACKs sent for frames, to notice a stall.
    acked: u64,
    /// `pipeline.max_inflight_bytes`, for messages.
    max_held_bytes: usize,
    /// When to try storing again, while storage fails.
    store_retry_at: Option<Instant>,
    /// When storage started failing, for the recovery message.
    blocked_since: Option<Instant>,
    /// The live view, given each frame's outcome once it is final.
    live: Option<Arc<Hub>>,
}

impl Driver {
    /// Sends the parts of chunked subscriptions to `assembling` instead of the workers.
    pub fn with_chunks(
        mut self,
        setup: crate::daemon::chunks::Setup,
        assembling: crate::daemon::chunks::Assembling,
    ) -> Self {
        self.chunks = Some(chunks::Chunks::new(setup, assembling));
        self
    }

    /// The assembly thread, to join at exit.
    pub fn take_assembling(&mut self) -> Option<crate::daemon::chunks::Assembling> {
        self.chunks.take().map(chunks::Chunks::into_assembling)
    }

    pub fn new(
        settings: &Settings,
        client: AsyncClient,
        jobs: Sender<Job>,
        context: Arc<Context>,
        (metrics, health): (Arc<Metrics>, Arc<Health>),
    ) -> Self {
        let rules = Rules {
            manual_acks: !settings.broker.clean_session,
            record_qos: settings.output.qos,
            backlog_frames: settings.pipeline.queue_frames,
            subscribe: !settings.subscriptions.is_empty(),
            max_held_bytes: settings.pipeline.max_inflight_bytes,
        };
        Self {
            state: Delivery::new(rules),
            client,
            subscriptions: settings
                .subscriptions
                .iter()
                .map(|s| SubscribeFilter::new(s.topic.clone(), mqtt::qos(s.qos)))
                .collect(),
            retain: settings.output.retain,
            jobs: Some(jobs),
            context,
            metrics,
            health,
            chunks: None,
            reports: HashMap::new(),
            in_use: HashMap::new(),
            acked: 0,
            max_held_bytes: settings.pipeline.max_inflight_bytes,
            store_retry_at: None,
            blocked_since: None,
            live: None,
        }
    }

    /// Feeds `hub` each frame's final outcome.
    pub fn with_live(mut self, hub: Option<Arc<Hub>>) -> Self {
        self.live = hub;
        self
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
        let mut summary = Summary::default();
        let mut deadline: Option<Instant> = None;
        let mut watchdog = tokio::time::interval(STALL_WARNING);
        let mut ack_pacing = tokio::time::interval(super::state::ACK_DEBT_HALF_LIFE);
        let mut last_acked = 0;
        loop {
            // Intake pauses while the backlog is full: the poll task then waits on the events channel,
            // stops reading the socket, and TCP backpressure holds the broker back. Acks cannot do it:
            // Mosquitto 2.0 sends up to max_inflight_messages more frames for *each* PUBACK
            // (bench/inflight_probe.py), so its in-flight window does not bound what reaches mqimg.
            let accepting = self.state.accepting();
            tokio::select! {
                event = events.recv(), if accepting => match event {
                    Some(event) => self.on_event(event),
                    None => break,
                },
                Some(outcome) = done.recv() => self.on_done(outcome),
                Some(assembly) = chunks::next_assembly(&mut self.chunks) => self.on_assembly(assembly),
                () = shutdown.cancelled(), if deadline.is_none() => {
                    self.jobs = None;
                    let abandoned = self.state.start_draining();
                    tracing::info!(
                        in_flight = self.state.in_flight(),
                        not_started = abandoned,
                        "shutting down: finishing the frames being processed; frames not started are left for the broker to redeliver"
                    );
                    deadline = Some(Instant::now() + grace);
                }
                // The client's channel was full. Space frees up as rumqttc sends, but not every send is
                // reported to this task (acks are not), so retry shortly instead of waiting for an event.
                () = tokio::time::sleep(OUTBOX_RETRY), if self.state.outbox() > 0 => {}
                _ = ack_pacing.tick() => self.state.tick(),
                _ = watchdog.tick() => {
                    // Only frames awaiting an ack can stall: QoS 0 and clean sessions never ack.
                    if self.acked == last_acked && self.state.awaiting_ack() > 0 {
                        self.warn_stall();
                    }
                    last_acked = self.acked;
                }
                () = sleep_until(self.store_retry_at), if self.store_retry_at.is_some() => {
                    self.store_retry_at = None;
                    self.state.retry_storage();
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    summary.deadline_hit = true;
                    break;
                }
            }
            self.step();
            if deadline.is_some() && self.state.drained() {
                break;
            }
        }
        summary.unfinished = self.state.unfinished();
        if summary.unfinished > 0 {
            tracing::warn!(
                unfinished = summary.unfinished,
                "{} frames left unacked; the broker will redeliver them (QoS 0 frames among them are lost)",
                summary.unfinished
            );
        }
        self.state.retry(Request::Disconnect);
        self.flush();
        if let Some(assembling) = self.take_assembling() {
            // Its queue is closed now; it exits at once (parts in flight stay spooled for the next
            // start), without holding up the shutdown.
            tokio::task::spawn_blocking(move || assembling.join());
        }
        summary
    }

    fn on_event(&mut self, event: MqttEvent) {
        match event {
            MqttEvent::Connected { session_present } => self.state.on_connected(session_present),
            MqttEvent::Disconnected {
                replay,
                short_lived,
            } => self.state.on_disconnected(replay, short_lived),
            MqttEvent::Frame(publish) => self.on_frame(publish),
            MqttEvent::RecordSent(pkid) => {
                if let Err(unknown) = self.state.on_record_sent(pkid) {
                    tracing::warn!(pkid, "{unknown}");
                }
            }
            MqttEvent::RecordAcked(pkid) => {
                if self.state.on_record_acked(pkid) {
                    self.metrics.records_published.inc();
                }
            }
        }
    }

    fn on_frame(&mut self, publish: Publish) {
        self.metrics.received.inc();
        self.metrics
            .received_bytes
            .inc_by(publish.payload.len() as u64);
        let qos = match publish.qos {
            QoS::AtMostOnce => Qos::AtMostOnce,
            QoS::AtLeastOnce => Qos::AtLeastOnce,
            QoS::ExactlyOnce => Qos::ExactlyOnce,
        };
        // The ack needs the packet id and QoS only: the payload moves on to the worker, and a topic
        // can be 64 KiB.
        let header = Publish {
            dup: publish.dup,
            qos: publish.qos,
            retain: publish.retain,
            topic: String::new(),
            pkid: publish.pkid,
            payload: bytes::Bytes::new(),
        };
        let is_part = self.is_part(&publish.topic);
        let arrival = self.state.on_frame(
            publish.topic,
            publish.payload,
            std::time::SystemTime::now(),
            qos,
            header,
        );
        match arrival {
            Arrival::Accepted(seq) if is_part => self.part_arrived(seq, qos, publish.dup),
            Arrival::Dropped(job, reason) => self.drop_qos0(job, reason),
            _ => {}
        }
    }

    /// A QoS 0 frame that cannot wait ends here, with a failure record.
    fn drop_qos0(&mut self, job: Job, reason: DropReason) {
        let (stage, error) = match reason {
            DropReason::QueueFull => (
                Stage::Queue,
                format!(
                    "decode queue full ({} frames waiting, pipeline.queue_frames): QoS 0 frame dropped",
                    self.context.queue_frames()
                ),
            ),
            DropReason::Bytes => (
                Stage::Queue,
                format!(
                    "{} bytes held for frames in flight, at pipeline.max_inflight_bytes ({}): QoS 0 frame dropped",
                    self.state.held_bytes(),
                    self.max_held_bytes
                ),
            ),
            DropReason::Storage => (
                Stage::Store,
                "frames cannot be stored right now (see the storage error logged before): QoS 0 frame dropped"
                    .to_owned(),
            ),
        };
        let failure = Failure::new(
            Some(&job.topic),
            job.received_at,
            job.payload.len(),
            stage,
            error,
        );
        let outcome = self.context.failed(job.seq, failure);
        self.on_finished(outcome);
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Finished(finished) => self.on_finished(finished),
            Done::StoreBlocked { job, error } => self.on_store_blocked(job, error),
        }
    }

    fn on_finished(&mut self, done: Finished) {
        if done.report.is_ok() {
            // Counted here, not by the worker: only now is its file known to be on disk.
            self.metrics.ok.inc();
        }
        if let (Some(hub), Some(update)) = (&self.live, done.live) {
            hub.publish(*update);
        }
        self.reports.insert(done.seq, done.report);
        if let Some(in_use) = done.in_use {
            self.in_use.insert(done.seq, in_use);
        }
        let recovered = self.state.on_done(Outcome {
            seq: done.seq,
            record: done.record,
            stored: done.stored,
        });
        if recovered {
            let after = self
                .blocked_since
                .take()
                .map_or(0, |t| t.elapsed().as_secs());
            tracing::info!(
                after_secs = after,
                waiting = self.state.backlog(),
                "storage works again: frames waiting for it are being stored"
            );
            self.store_retry_at = None;
            self.metrics.storage_blocked.set(0);
            self.health.set_storage_blocked(None);
        }
    }

    /// Storing failed for a reason outside the frame: it waits, unacked (a QoS 0 frame cannot).
    fn on_store_blocked(&mut self, job: Job, error: String) {
        let (topic, received_at, payload_bytes) =
            (job.topic.clone(), job.received_at, job.payload.len());
        match self.state.on_store_failed(job) {
            StoreFailed::Waiting {
                newly_blocked,
                retry_in,
            } => {
                self.metrics.store_retries.inc();
                if newly_blocked {
                    tracing::error!(
                        error,
                        "frames cannot be stored: they wait unacked and intake is paused until storage works again (retrying every {}-{} s)",
                        super::state::STORE_RETRY_MIN.as_secs(),
                        super::state::STORE_RETRY_MAX.as_secs()
                    );
                    self.blocked_since = Some(Instant::now());
                    self.metrics.storage_blocked.set(1);
                    self.health.set_storage_blocked(Some(error));
                } else {
                    tracing::debug!(topic, error, "frame waits for storage");
                }
                if let Some(retry_in) = retry_in {
                    self.store_retry_at = Some(Instant::now() + retry_in);
                }
            }
            StoreFailed::Abandoned => {
                tracing::debug!(
                    topic,
                    error,
                    "frame not stored at shutdown: left for redelivery"
                );
            }
            StoreFailed::Dropped(job) => {
                let failure = Failure::new(
                    Some(&topic),
                    received_at,
                    payload_bytes,
                    Stage::Store,
                    format!("{error} (a QoS 0 frame cannot wait for storage: dropped)"),
                );
                let outcome = self.context.failed(job.seq, failure);
                self.on_finished(outcome);
            }
        }
    }

    /// After each event: hand jobs to the workers, requests to the client, log finished frames.
    fn step(&mut self) {
        while let Some(job) = self.state.next_job() {
            let job = match self.route_part(job) {
                Ok(()) => continue,
                Err(job) => job,
            };
            let Some(jobs) = &self.jobs else { break };
            match jobs.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                    if let Some(job) = self.state.queue_refused(job) {
                        self.drop_qos0(job, DropReason::QueueFull);
                    }
                    break;
                }
            }
        }
        self.flush();
        for (seq, record_topic) in self.state.take_given_up() {
            let topic = self
                .reports
                .get(&seq)
                .map(Report::topic)
                .unwrap_or_default();
            tracing::error!(
                topic,
                record_topic,
                "the broker closed the connection each time this record was sent ({} times in a row): record given up, and later ones on that topic too; the frame is acked",
                super::state::RECORD_STRIKES
            );
            self.metrics.records_failed.inc();
        }
        for seq in self.state.take_finished() {
            self.in_use.remove(&seq);
            if let Some(report) = self.reports.remove(&seq) {
                report.log(seq);
            }
            self.forget_parts(seq);
        }
        self.flush_part_removals();
        let m = &self.metrics;
        let queued = self.jobs.as_ref().map_or(0, Sender::len);
        m.queue_depth.set(queued as i64);
        m.backlog.set(self.state.backlog() as i64);
        m.in_flight.set(self.state.in_flight() as i64);
        m.held_bytes.set(self.state.held_bytes() as i64);
        let dropped = self.state.records_dropped();
        if dropped > m.records_dropped.get() {
            m.records_dropped.inc_by(dropped - m.records_dropped.get());
        }
        let waiting = (queued + self.state.backlog()) as i64;
        if waiting > m.waiting_peak.get() {
            m.waiting_peak.set(waiting);
        }
    }

    /// Makes the requests the client's channel takes, in order; the rest waits for the next round.
    fn flush(&mut self) {
        while let Some(request) = self.state.next_request() {
            let refused = match request {
                Request::Subscribe => self
                    .client
                    .try_subscribe_many(self.subscriptions.clone())
                    .err()
                    .map(|_| Request::Subscribe),
                Request::Publish {
                    seq,
                    mut record,
                    qos,
                } => {
                    // rumqttc keeps this allocation as the publish payload: its address identifies the
                    // record in the client's replay queue. Exact capacity keeps it from being moved.
                    record.payload.shrink_to_fit();
                    let handle = record.payload.as_ptr() as usize;
                    match self.client.try_publish(
                        record.topic.as_str(),
                        mqtt::qos(qos),
                        self.retain,
                        record.payload.clone(),
                    ) {
                        Ok(()) => {
                            self.state.record_handed(seq, handle, qos);
                            if qos == Qos::AtMostOnce {
                                self.metrics.records_published.inc();
                            }
                            None
                        }
                        Err(ClientError::TryRequest(_)) => {
                            Some(Request::Publish { seq, record, qos })
                        }
                        Err(e) => {
                            // Only an invalid topic gets here: the record can never be sent.
                            tracing::error!(topic = record.topic, error = %e, "cannot publish record");
                            self.metrics.records_failed.inc();
                            self.state.record_refused(seq);
                            None
                        }
                    }
                }
                Request::Ack(publish) => match self.client.try_ack(&publish) {
                    Ok(()) => {
                        self.acked += 1;
                        self.metrics.acked.inc();
                        None
                    }
                    Err(_) => Some(Request::Ack(publish)),
                },
                Request::Disconnect => self
                    .client
                    .try_disconnect()
                    .err()
                    .map(|_| Request::Disconnect),
            };
            if let Some(request) = refused {
                self.state.retry(request);
                break;
            }
        }
    }

    fn warn_stall(&self) {
        let (head, why) = self.state.head_of_line().unwrap_or((0, "unknown"));
        tracing::warn!(
            waiting = self.state.awaiting_ack(),
            oldest = why,
            "no frame acked for {} s: {} frames wait for their ack (the oldest: {why})",
            STALL_WARNING.as_secs(),
            self.state.awaiting_ack()
        );
        tracing::debug!(
            head_seq = head,
            in_flight = self.state.in_flight(),
            backlog = self.state.backlog(),
            outbox = self.state.outbox(),
            "ack stall details"
        );
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
