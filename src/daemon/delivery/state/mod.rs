//! The at-least-once rules as a plain state machine: events in, requests out, no I/O.
//!
//! [`Delivery`] owns the bookkeeping of every frame between its arrival and its PUBACK. It is fed what
//! happened (a frame arrived, a worker finished one, a record went out or was acknowledged, the
//! connection came or went, shutdown began) and answers with what must be done: jobs for the workers
//! ([`Delivery::next_job`]) and requests for the MQTT client ([`Delivery::next_request`]). The driver
//! ([`super::driver`]) performs them and reports back; this module never touches a client, a channel, a
//! clock or a metric, so every rule below is unit-tested without a broker.
//!
//! Rules:
//! 1. A frame is acked only once its outcome is durable: its worker reported it and its record (if any)
//!    was acknowledged by the broker (or handed over, for QoS 0 records).
//! 2. Acks go out in arrival order (MQTT §4.6), only on the connection the frame arrived on: a packet id
//!    means nothing on a later connection, where the broker redelivers the frame anyway.
//! 3. A record rumqttc dropped with a lost session is published again.
//! 4. Frames go to the workers in arrival order. A QoS 1/2 frame that finds the workers' queue full
//!    waits in the backlog; a QoS 0 frame that does is dropped (its failure record is the driver's job).
//!    Once the backlog holds `backlog_frames`, intake pauses ([`Delivery::accepting`]).
//! 5. Because of rule 4 the backlog always holds the *newest* frames: once it is non-empty every later
//!    frame joins it. Draining relies on this: it abandons the backlog (never acked, so redelivered)
//!    without holding back the ack of any older frame.
//! 6. Storage failing for a reason outside the frame (disk full, read-only, I/O error) is not the
//!    frame's fault: the frame waits unacked, without a failure record, and jobs stop going to the
//!    workers. After a delay (1 s, doubling to 30 s) one of the waiting frames is tried again; when it
//!    is stored, every waiting frame follows, oldest first. A QoS 0 frame cannot wait for redelivery:
//!    it ends with a `store` failure record.
//! 7. Memory is bounded by bytes as well as frames: payloads, topics and records held for frames in
//!    flight are counted against `max_held_bytes`. Payloads leave with the workers, so when they
//!    reach the bound intake pauses (the driver stops reading the connection). Records leave only
//!    when the broker acknowledges them, which it cannot do while the connection is not read: record
//!    bytes never pause intake. Frame acks are paced instead: each ack lets the broker send more QoS
//!    1/2 frames (Mosquitto 2.0 sends up to `max_inflight_messages` more per ack, `ACK_RELEASES`), so
//!    an ack goes out only while the record bytes held plus what its releases may bring stay under the
//!    bound;
//!    record acknowledgements keep flowing meanwhile; QoS 0 frames are dropped on arrival, their records are
//!    published at QoS 0 (at most once, like the frame: no acknowledgement to wait for), and past the
//!    bound the record of a dropped QoS 0 frame is dropped too (counted).
//! 8. A record that the broker answers by closing the connection is given up after three such
//!    closes in a row (its frame finishes, so it is acked), and so is any later record on the same
//!    topic: otherwise the broker's redelivery of the frame would start the loop again.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::mem;
use std::time::Duration;

use crate::config::Qos;
use crate::daemon::workers::Job;

/// A record ready to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordOut {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// What the workers made of a frame, as far as delivery is concerned.
#[derive(Debug)]
pub struct Outcome {
    pub seq: u64,
    /// The record to publish; `None` when that kind of record is turned off.
    pub record: Option<RecordOut>,
    /// Its file was written and flushed (proof that storage works again).
    pub stored: bool,
}

/// First wait before storage is tried again after an environmental failure.
pub const STORE_RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest wait between storage retries.
pub const STORE_RETRY_MAX: Duration = Duration::from_secs(30);
/// Closes right after a record is sent, in a row, before the record is given up.
pub const RECORD_STRIKES: u32 = 3;
/// Record topics remembered as refused (oldest forgotten first).
const REFUSED_TOPICS: usize = 1024;
/// Bookkeeping per frame beyond its payload, topic and record, for the byte bound.
const FRAME_OVERHEAD_BYTES: usize = 512;
/// How often [`Delivery::tick`] halves the ack debt.
pub const ACK_DEBT_HALF_LIFE: Duration = Duration::from_millis(100);
/// Frames the broker may send for each ack: Mosquitto 2.0 refills up to `max_inflight_messages` (20)
/// per PUBACK (`bench/inflight_probe.py`); a conforming broker sends one.
pub const ACK_RELEASES: usize = 20;

/// A request for the MQTT client, in the order it must be made.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<A> {
    /// (Re-)subscribe to the configured filters.
    Subscribe,
    /// Publish the record of frame `seq` at `qos` (the frame's own QoS when lower than
    /// `output.qos`: a QoS 0 frame's record needs no acknowledgement); report
    /// [`Delivery::record_handed`] or [`Delivery::record_refused`]. A copy: the state keeps its own
    /// until the broker acknowledges it, to publish again if the session is lost.
    Publish {
        seq: u64,
        record: RecordOut,
        qos: Qos,
    },
    /// Acknowledge a frame with the token it arrived with.
    Ack(A),
    Disconnect,
}

/// What became of a frame that arrived.
#[derive(Debug)]
pub enum Arrival {
    /// Taken: it reaches the workers through [`Delivery::next_job`].
    Accepted(u64),
    /// A QoS 0 frame that cannot wait: the driver ends it with a failure record saying why.
    Dropped(Job, DropReason),
    /// Shutdown has begun: not processed, not acked (the broker redelivers it unless it was QoS 0).
    Refused,
}

/// The numbers the state machine is built with.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Frames are acked by mqimg (persistent session); with a clean session the client acks itself.
    pub manual_acks: bool,
    /// QoS of published records: at 0 nothing confirms them, handing over is all there is.
    pub record_qos: Qos,
    /// Frames waiting in the backlog before intake pauses.
    pub backlog_frames: usize,
    /// There are subscriptions to make.
    pub subscribe: bool,
    /// Bytes held for frames in flight (payloads, topics, records) before intake pauses.
    pub max_held_bytes: usize,
}

/// Why a QoS 0 frame was dropped on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The workers' queue is full, or frames wait before it.
    QueueFull,
    /// `max_held_bytes` is reached.
    Bytes,
    /// Frames cannot be stored right now.
    Storage,
}

/// What became of a frame whose storage failed for a reason outside the frame.
#[derive(Debug)]
pub enum StoreFailed {
    /// It waits. `newly_blocked` is set when storage was fine until now (the driver says so once);
    /// `retry_in`, when set, is when the driver should call [`Delivery::retry_storage`].
    Waiting {
        newly_blocked: bool,
        retry_in: Option<Duration>,
    },
    /// A QoS 0 frame: nothing would redeliver it, so it ends with a failure record.
    Dropped(Job),
    /// Shutting down: it is left unacked for the broker to redeliver.
    Abandoned,
}

/// Storage while it is failing.
#[derive(Debug)]
struct Blocked {
    /// The wait before the next try.
    delay: Duration,
    /// The frame handed to the workers as a probe, if one is out.
    probe: Option<u64>,
    /// A probe may be sent.
    probe_due: bool,
}

/// One frame between arrival and the end of its life here.
#[derive(Debug)]
struct InFlight<A> {
    /// Connection generation it arrived on; only acked on that same connection.
    generation: u64,
    /// The token for its PUBACK, while it still awaits one.
    ack: Option<A>,
    qos: Qos,
    /// Kept until the broker acknowledges it: it is published again if the session is lost.
    record: Option<RecordOut>,
    /// The client's handle of the record payload last handed over (its replay-queue identity).
    record_handle: Option<usize>,
    /// Its outcome is durable: reported by its worker, record acknowledged (or none to wait for).
    finished: bool,
    /// Bytes of its payload and topic, until the workers report it.
    payload_held: usize,
    /// Bytes of its record (and the client's copy), until the broker acknowledges it.
    record_held: usize,
}

/// The delivery state machine. `A` is the token a frame is acked with (rumqttc's publish header).
#[derive(Debug)]
pub struct Delivery<A> {
    rules: Rules,
    generation: u64,
    connected: bool,
    subscribed_once: bool,
    next_seq: u64,
    /// Every frame not yet finished and acked, by arrival order.
    frames: BTreeMap<u64, InFlight<A>>,
    /// Frames awaiting their PUBACK, in arrival order.
    acks: VecDeque<u64>,
    /// Frames not yet handed to the workers, oldest first (rule 5: always the newest frames).
    backlog: VecDeque<Job>,
    /// The workers' queue refused a job: hold the backlog until a worker reports progress.
    queue_full: bool,
    /// Frames whose storage failed for a reason outside them, oldest first; tried again before the
    /// backlog.
    retry: VecDeque<Job>,
    /// Set while storage is failing.
    blocked: Option<Blocked>,
    /// Bytes of payloads held for frames not yet reported by the workers.
    payload_bytes: usize,
    /// Bytes of records held until the broker acknowledges them.
    record_bytes: usize,
    /// Records of dropped QoS 0 frames not published because records were at the bound.
    records_dropped: u64,
    /// Bytes held by partial frames being assembled (rule 7).
    assembly_bytes: usize,
    /// QoS 1/2 frames our acks may still bring (rule 7), decayed by [`Delivery::tick`].
    ack_debt: usize,
    /// What a frame's record costs in bytes (with the client's copy), the recent maximum. Payloads
    /// need no pacing: they pause intake themselves.
    record_cost: usize,
    /// Records handed to the client, waiting for their packet id, in hand-over order.
    unassigned: VecDeque<u64>,
    /// Record packet id → frame and the connection it was sent on.
    awaiting_puback: HashMap<u16, (u64, u64)>,
    /// Record topic → closes of the connection in a row right after its record was sent.
    strikes: HashMap<String, u32>,
    /// Record topics given up on (rule 8), oldest first.
    refused: VecDeque<String>,
    /// Frames whose record was given up since the last [`Delivery::take_given_up`].
    given_up: Vec<(u64, String)>,
    /// Handles of the records the client held for replay when the connection failed.
    replay: HashSet<usize>,
    outbox: VecDeque<Request<A>>,
    /// Frames finished since the last [`Delivery::take_finished`].
    finished: Vec<u64>,
    draining: bool,
    /// Frames given up on (received while draining, or abandoned in the backlog).
    abandoned: u64,
}

mod bounds;
mod intake;
mod records;
mod storage;

pub use records::UnknownPublish;

impl<A> Delivery<A> {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            generation: 0,
            connected: false,
            subscribed_once: false,
            next_seq: 0,
            frames: BTreeMap::new(),
            acks: VecDeque::new(),
            backlog: VecDeque::new(),
            queue_full: false,
            retry: VecDeque::new(),
            blocked: None,
            payload_bytes: 0,
            record_bytes: 0,
            records_dropped: 0,
            assembly_bytes: 0,
            ack_debt: 0,
            record_cost: FRAME_OVERHEAD_BYTES,
            unassigned: VecDeque::new(),
            awaiting_puback: HashMap::new(),
            strikes: HashMap::new(),
            refused: VecDeque::new(),
            given_up: Vec::new(),
            replay: HashSet::new(),
            outbox: VecDeque::new(),
            finished: Vec::new(),
            draining: false,
            abandoned: 0,
        }
    }

    /// A CONNACK: a new connection, a new generation of packet ids.
    pub fn on_connected(&mut self, session_present: bool) {
        self.generation += 1;
        self.connected = true;
        // Rule 2: frames of the old connection can no longer be acked.
        for seq in mem::take(&mut self.acks) {
            if let Some(frame) = self.frames.get_mut(&seq) {
                frame.ack = None;
                if frame.finished {
                    self.frames.remove(&seq);
                }
            }
        }
        // The broker keeps subscriptions in a persistent session, but the first connection subscribes
        // anyway: the config may have changed since the session was made.
        if (!session_present || !self.subscribed_once) && self.rules.subscribe {
            self.outbox.push_front(Request::Subscribe);
        }
        self.subscribed_once = true;
        if !session_present {
            self.republish_lost_records();
        }
        self.replay.clear();
    }

    /// The connection failed; `replay` holds the handles of the records the client kept to resend.
    /// `short_lived`: the broker closed it soon after accepting it (rule 8's evidence).
    pub fn on_disconnected(&mut self, replay: HashSet<usize>, short_lived: bool) {
        self.connected = false;
        self.replay = replay;
        if short_lived {
            self.strike_oldest_unacked_record();
        } else {
            self.strikes.clear();
        }
        // Rule 2: an ack queued now would reach the next connection with a stale packet id.
        self.outbox.retain(|r| !matches!(r, Request::Ack(_)));
    }

    /// A worker (or the driver, for a dropped frame) reports a frame's durable outcome.
    /// Returns whether this ended a storage failure (rule 6): the driver says so once.
    pub fn on_done(&mut self, outcome: Outcome) -> bool {
        // A worker made progress: its queue has room again.
        self.queue_full = false;
        let mut recovered = false;
        if let Some(blocked) = &mut self.blocked
            && blocked.probe == Some(outcome.seq)
        {
            if outcome.stored {
                self.blocked = None;
                recovered = true;
            } else {
                // It failed for its own reasons before reaching the disk: try the next one now.
                blocked.probe = None;
                blocked.probe_due = true;
            }
        }
        let seq = outcome.seq;
        let Some(frame) = self.frames.get_mut(&seq) else {
            return recovered;
        };
        // The payload is gone with the job; the record is kept until the broker has it, and the
        // client holds a copy of it meanwhile.
        let record_cost = outcome
            .record
            .as_ref()
            .map_or(0, |r| 2 * (r.topic.len() + r.payload.len()));
        // A slowly decaying maximum: an underestimate lets acks release floods.
        self.record_cost = (self.record_cost - self.record_cost / 64).max(record_cost);
        self.payload_bytes -= frame.payload_held;
        frame.payload_held = 0;
        let mut record = outcome.record;
        if frame.qos == Qos::AtMostOnce
            && record.is_some()
            && self.record_bytes >= self.rules.max_held_bytes
        {
            // Rule 7: the last resort against a QoS 0 flood whose records outrun the broker.
            record = None;
            self.records_dropped += 1;
        }
        frame.record_held = record
            .as_ref()
            .map_or(0, |r| 2 * (r.topic.len() + r.payload.len()));
        self.record_bytes += frame.record_held;
        match record {
            Some(record) if self.refused.contains(&record.topic) => {
                frame.record = Some(record);
                self.give_up(seq);
            }
            Some(record) => {
                frame.record = Some(record.clone());
                let qos = frame.qos.min(self.rules.record_qos);
                self.outbox.push_back(Request::Publish { seq, record, qos });
            }
            None => self.finish(seq),
        }
        recovered
    }

    /// Shutdown: no more jobs for the workers; the backlog is abandoned (rule 5). Returns how many
    /// backlog frames were given up.
    pub fn start_draining(&mut self) -> usize {
        self.draining = true;
        let mut dropped = mem::take(&mut self.backlog);
        // Frames waiting for storage are older; abandoning them holds back later acks, which is
        // right: acks go in order, and the broker redelivers all of them.
        dropped.extend(mem::take(&mut self.retry));
        for job in &dropped {
            if let Some(frame) = self.frames.remove(&job.seq) {
                self.release(&frame);
            }
        }
        self.abandoned += dropped.len() as u64;
        dropped.len()
    }

    /// The next request for the client. One it cannot take yet goes back with [`Delivery::retry`].
    pub fn next_request(&mut self) -> Option<Request<A>> {
        self.outbox.pop_front()
    }

    /// The client's channel was full: `request` is made again first, later.
    pub fn retry(&mut self, request: Request<A>) {
        self.outbox.push_front(request);
    }

    /// Frames finished since the last call, in the order they finished.
    pub fn take_finished(&mut self) -> Vec<u64> {
        mem::take(&mut self.finished)
    }

    /// Whether to take more events: not while the backlog is full (intake pause), except when
    /// draining (new frames are then refused, not held).
    pub fn accepting(&self) -> bool {
        self.draining
            || (self.backlog.len() < self.rules.backlog_frames
                && self.blocked.is_none()
                && self.payload_bytes + self.assembly_bytes < self.rules.max_held_bytes)
    }

    /// Nothing is left that could still finish.
    pub fn drained(&self) -> bool {
        self.outbox.is_empty() && self.frames.values().all(|f| f.finished)
    }

    /// Frames received and not yet finished and acked.
    pub fn in_flight(&self) -> usize {
        self.frames.len()
    }

    /// Frames waiting for a worker: in the backlog, or for storage to work again.
    pub fn backlog(&self) -> usize {
        self.backlog.len() + self.retry.len()
    }

    /// Frames waiting for their PUBACK to be sent.
    pub fn awaiting_ack(&self) -> usize {
        self.acks.len()
    }

    /// Requests waiting for room in the client's channel.
    pub fn outbox(&self) -> usize {
        self.outbox.len()
    }

    /// Frames that will end without an ack from this process: abandoned, or not finished yet.
    pub fn unfinished(&self) -> u64 {
        self.abandoned + self.frames.len() as u64
    }

    /// The oldest frame holding back acks, and why, for a stall diagnosis.
    pub fn head_of_line(&self) -> Option<(u64, &'static str)> {
        let seq = *self.acks.front()?;
        let frame = self.frames.get(&seq)?;
        let why = if !self.connected {
            "not connected"
        } else if !frame.finished && frame.record.is_none() {
            "not processed yet"
        } else if !frame.finished && frame.record_handle.is_none() {
            "record not handed to the client yet"
        } else if !frame.finished {
            "record not acknowledged by the broker yet"
        } else {
            "finished"
        };
        Some((seq, why))
    }

    /// Rule 1: the frame's outcome is durable. Acks it and every finished frame after it, in order.
    fn finish(&mut self, seq: u64) {
        let Some(frame) = self.frames.get_mut(&seq) else {
            return;
        };
        if frame.finished {
            return;
        }
        frame.finished = true;
        frame.record = None;
        self.payload_bytes -= frame.payload_held;
        self.record_bytes -= frame.record_held;
        frame.payload_held = 0;
        frame.record_held = 0;
        self.finished.push(seq);
        if frame.ack.is_none() {
            self.frames.remove(&seq);
        }
        self.release_acks();
    }

    /// Rule 2: acks finished frames from the head of the arrival order, on their own connection.
    fn release_acks(&mut self) {
        while let Some(&head) = self.acks.front() {
            if !self.ack_affordable() {
                break;
            }
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
                self.ack_debt += ACK_RELEASES;
                self.outbox.push_back(Request::Ack(ack));
            }
        }
    }
}
