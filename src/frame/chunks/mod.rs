//! Chunked frames: cameras that cannot send a frame in one MQTT message (Arduino PubSubClient's
//! 256-byte buffer, MicroPython's umqtt, many ESP32-CAM firmwares) split it over many. The
//! [`Assembler`] puts frames back together; [`split`] cuts them up the same ways, for `mqimg publish`.
//!
//! Pure, like the rest of `frame`: each message goes in with the [`PartId`] the caller gave it and the
//! instant it arrived; [`Event`]s come out. Spooling, acks and the pipeline the whole frame then takes
//! are the daemon's. Every `PartId` handed in comes out exactly once, in a [`Event::Complete`] or
//! [`Event::Failed`] frame or as an [`Event::Discard`], so the caller can always remove what it spooled.
//!
//! Modes (a contract: names and message shapes stay):
//! - `json-parts`: a JSON object per message, `{"part": N, "total": T, "data": "<base64>", "id": …}`
//!   (`total_parts` is read when `total` is absent; names configurable; numbered from `first_part`,
//!   1 by default). The frame is the base64 texts joined in part order and decoded.
//! - `start-data-end`: `{base}/start` (the byte count as decimal text, a JSON object with `size`, or
//!   empty), any number of `{base}/data`, then `{base}/end`; the frame's topic is `{base}`.
//! - `header-blocks`: on one topic, a JSON object with `file_size` (kept as the record's `meta`), then raw
//!   blocks until `file_size` bytes arrived.
//! - `topic-index`: raw bytes on `{base}/{frame_id}/{index}/{total}`, indexes from 0; the frame's topic
//!   is `{base}`.
//! - `until-eoi`: raw or base64 pieces on one topic; a piece that starts a JPEG begins a frame, which
//!   completes with the piece that ends it.
//!
//! Rules shared by the modes:
//! - Frames are keyed by their topic and, where the mode has one, their frame id: cameras and frames
//!   interleave freely. Without an id, a numbered frame's parts are expected in the order they were
//!   sent (MQTT keeps one topic's order): a part numbered at or below one already held, other than an
//!   identical copy, begins a new frame.
//! - Base64 or raw (`start-data-end` data, `until-eoi` pieces): a frame's first data message decides
//!   for the whole frame. It is base64 when it does not start with image magic bytes (`ff d8 ff`,
//!   `89 PNG`) and holds nothing but base64 text (either alphabet, `=`, spaces and line breaks); raw
//!   otherwise. Raw JPEG and PNG bytes always start outside the base64 alphabet, so image frames are
//!   never misread; other raw content whose first message happens to be all base64 characters would be.
//!   Base64 pieces may be encoded one by one (padding ends each) or cut from one text anywhere.
//! - A copy of a numbered part identical to the one held is discarded, a different one fails the frame
//!   and begins a new one. Unnumbered messages (data, blocks, pieces) carry nothing to recognise a copy
//!   by except the broker's DUP flag: pass those through [`Assembler::redelivered`].
//! - A frame times out `limits.timeout` after its first part. A frame that ended leaves a marker for
//!   one more timeout: redeliveries of its messages are discarded, and for a failed frame (limits,
//!   timeout, a part out of range) its late parts too, instead of starting frames that can only fail.

mod base64;
mod jpeg;
mod mode;
mod numbered;
mod pieces;
mod sequential;
mod split;

#[cfg(test)]
mod failures;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use mode::{Mode, UnknownMode};
pub use split::{Pieces, split};

/// The field names of `json-parts` messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fields {
    pub part: String,
    /// When this is `total` and a message has none, `total_parts` is read.
    pub total: String,
    pub data: String,
    pub id: String,
    /// The number of a frame's first part: 1, or 0 for firmwares counting from 0.
    pub first_part: u32,
}

impl Default for Fields {
    fn default() -> Self {
        Self {
            part: "part".into(),
            total: "total".into(),
            data: "data".into(),
            id: "id".into(),
            first_part: 1,
        }
    }
}

/// Bounds on one partial frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame, in bytes after base64 decoding.
    pub max_frame_bytes: usize,
    /// Most messages in one frame (announced totals included).
    pub max_parts: usize,
    /// How long after its first part a frame may still be incomplete.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: crate::frame::DEFAULT_MAX_PAYLOAD_BYTES,
            max_parts: 4096,
            timeout: Duration::from_secs(10),
        }
    }
}

/// How one subscription's parts are read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    pub mode: Mode,
    pub fields: Fields,
}

/// The caller's name for a part: unique, increasing in arrival order (the spool's file id).
pub type PartId = u64;

/// What became of the parts handed in.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A whole frame, for the normal pipeline (payload detection per the subscription's encoding,
    /// decode, store, record).
    Complete {
        topic: String,
        bytes: Vec<u8>,
        /// The header (`header-blocks`), the start object (`start-data-end`) or the first part's other
        /// fields (`json-parts`): the record's `meta`.
        meta: Option<serde_json::Map<String, serde_json::Value>>,
        info: ChunkInfo,
        parts: Vec<PartId>,
    },
    /// A frame that cannot be assembled: one failure record at stage `assembly`. `error` says what was
    /// wrong and which parts arrived.
    Failed {
        topic: String,
        error: String,
        parts: Vec<PartId>,
    },
    /// A part that needs no more keeping (a copy, a late part of a frame that already failed).
    Discard { part: PartId },
}

/// The record's `chunks` object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChunkInfo {
    pub mode: Mode,
    /// Messages the frame was assembled from (copies not counted).
    pub parts: u32,
    /// The frame's bytes.
    pub bytes: usize,
    /// From the first part's arrival to the last one's.
    pub assembly_ms: f64,
    /// The frame id, for modes that carry one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Partial frames, keyed by frame topic and frame id.
#[derive(Debug)]
pub struct Assembler {
    limits: Limits,
    entries: HashMap<Key, Entry>,
    /// What [`Assembler::held_bytes`] reports, kept up to date by [`Assembler::take`] and
    /// [`Assembler::put`], the only ways entries change.
    held: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    mode: Mode,
    topic: String,
    id: Option<String>,
}

#[derive(Debug)]
struct Entry {
    /// When the frame's first part arrived, or when it ended.
    since: Instant,
    state: State,
}

#[derive(Debug)]
enum State {
    Open(Frame),
    /// A frame that ended: copies of its parts, and for a failed one its late parts, are discarded.
    Ended(Ended),
}

#[derive(Debug)]
struct Frame {
    parts: Vec<PartId>,
    /// [`fingerprint`]s of the parts' messages, to recognise redeliveries.
    prints: Vec<u64>,
    meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// Bytes of the message `meta` came from: what it holds, roughly.
    meta_bytes: usize,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Numbered(numbered::Parts),
    Sequential(pieces::Pieces),
}

#[derive(Debug)]
struct Ended {
    prints: Vec<u64>,
    rest: Rest,
}

/// Which parts that are not copies still belong to an ended frame.
#[derive(Debug, PartialEq, Eq)]
enum Rest {
    /// None: it completed, or its end arrived.
    Nothing,
    /// In order (no frame id): parts of `total` numbered above `highest`.
    After { total: u64, highest: u64 },
    /// Any order: parts of `total` whose number has not been seen.
    Unseen { total: u64, seen: BTreeSet<u64> },
    /// Data, blocks or pieces, until a message begins a new frame.
    UntilNext,
}

/// Bookkeeping of one entry besides its parts: the map slot, key and state headers.
const ENTRY_BYTES: usize = 160;
/// Bookkeeping of one part: its id, fingerprint, buffer header and map node share.
const PART_BYTES: usize = 64;

impl Assembler {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
            held: 0,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A part arrived on `topic` (a subscription with `source.mode != None` matched it) at `now`.
    pub fn part(
        &mut self,
        source: &Source,
        topic: &str,
        payload: &[u8],
        id: PartId,
        now: Instant,
    ) -> Vec<Event> {
        self.receive(source, topic, payload, id, now, false)
    }

    /// Like [`Assembler::part`], for a message the broker flagged as a redelivery (DUP): when it is
    /// identical to a message of a frame held or recently ended, it is discarded. Unnumbered messages
    /// cannot be recognised as copies any other way.
    pub fn redelivered(
        &mut self,
        source: &Source,
        topic: &str,
        payload: &[u8],
        id: PartId,
        now: Instant,
    ) -> Vec<Event> {
        self.receive(source, topic, payload, id, now, true)
    }

    /// Partial frames older than `limits.timeout` at `now` fail; markers of ended frames that old go.
    pub fn expire(&mut self, now: Instant) -> Vec<Event> {
        let timeout = self.limits.timeout;
        let mut old: Vec<(Instant, Key)> = self
            .entries
            .iter()
            .filter(|(_, entry)| now.saturating_duration_since(entry.since) >= timeout)
            .map(|(key, entry)| (entry.since, key.clone()))
            .collect();
        old.sort_by(|(a, ka), (b, kb)| (a, &ka.topic, &ka.id).cmp(&(b, &kb.topic, &kb.id)));
        let mut events = Vec::new();
        for (_, key) in old {
            if let Some(Entry {
                state: State::Open(frame),
                ..
            }) = self.take(&key)
            {
                let error = frame.describe(&format!("after {}", secs(timeout)));
                let rest = frame.rest();
                self.fail(key, frame, error, rest, now, &mut events);
            }
        }
        events
    }

    /// Bytes held by partial frames and the markers of ended ones: parts' data plus bookkeeping.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Partial frames held (ended frames' markers not counted).
    pub fn partial_frames(&self) -> usize {
        self.entries
            .values()
            .filter(|entry| matches!(entry.state, State::Open(_)))
            .count()
    }

    fn receive(
        &mut self,
        source: &Source,
        topic: &str,
        payload: &[u8],
        id: PartId,
        now: Instant,
        redelivered: bool,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let part = Arrival {
            topic,
            payload,
            id,
            now,
            print: fingerprint(topic, payload),
            redelivered,
        };
        match source.mode {
            Mode::None => events.push(Event::Failed {
                topic: topic.to_owned(),
                error: "the subscription does not take chunked frames (chunks = none)".into(),
                parts: vec![id],
            }),
            Mode::JsonParts | Mode::TopicIndex => self.numbered(source, &part, &mut events),
            Mode::StartDataEnd | Mode::HeaderBlocks | Mode::UntilEoi => {
                self.sequential(source.mode, &part, &mut events);
            }
        }
        events
    }

    /// Removes `key`'s entry, no longer counting it as held.
    fn take(&mut self, key: &Key) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.held -= entry_bytes(key, &entry);
        Some(entry)
    }

    fn put(&mut self, key: Key, entry: Entry) {
        self.held += entry_bytes(&key, &entry);
        self.entries.insert(key, entry);
    }

    /// Fails `frame` with `error`, leaving a marker that takes `rest`, its late parts.
    fn fail(
        &mut self,
        key: Key,
        frame: Frame,
        error: String,
        rest: Rest,
        now: Instant,
        events: &mut Vec<Event>,
    ) {
        report(&key, frame.parts, error, events);
        let ended = Ended {
            prints: frame.prints,
            rest,
        };
        self.put(
            key,
            Entry {
                since: now,
                state: State::Ended(ended),
            },
        );
    }

    /// Emits `frame` whole, leaving a marker that recognises redeliveries of its parts.
    fn complete(
        &mut self,
        key: Key,
        since: Instant,
        frame: Frame,
        bytes: Vec<u8>,
        now: Instant,
        events: &mut Vec<Event>,
    ) {
        let ms = now.saturating_duration_since(since).as_secs_f64() * 1000.0;
        let info = ChunkInfo {
            mode: key.mode,
            parts: u32::try_from(frame.parts.len()).unwrap_or(u32::MAX),
            bytes: bytes.len(),
            // Microseconds are all an operator can use.
            assembly_ms: (ms * 1000.0).round() / 1000.0,
            id: key.id.clone(),
        };
        events.push(Event::Complete {
            topic: key.topic.clone(),
            bytes,
            meta: frame.meta,
            info,
            parts: frame.parts,
        });
        let ended = Ended {
            prints: frame.prints,
            rest: Rest::Nothing,
        };
        self.put(
            key,
            Entry {
                since: now,
                state: State::Ended(ended),
            },
        );
    }
}

/// Pushes the failure of the frame under `key` made of `parts`.
fn report(key: &Key, parts: Vec<PartId>, error: String, events: &mut Vec<Event>) {
    let error = match &key.id {
        Some(id) => format!("frame {id:?}: {error}"),
        None => error,
    };
    events.push(Event::Failed {
        topic: key.topic.clone(),
        error,
        parts,
    });
}

/// One message as it arrived.
struct Arrival<'a> {
    topic: &'a str,
    payload: &'a [u8],
    id: PartId,
    now: Instant,
    print: u64,
    redelivered: bool,
}

impl Frame {
    fn new(
        meta: Option<serde_json::Map<String, serde_json::Value>>,
        meta_bytes: usize,
        body: Body,
    ) -> Self {
        let meta_bytes = if meta.is_some() { meta_bytes } else { 0 };
        Self {
            parts: Vec::new(),
            prints: Vec::new(),
            meta,
            meta_bytes,
            body,
        }
    }

    fn add(&mut self, part: &Arrival<'_>) {
        self.parts.push(part.id);
        self.prints.push(part.print);
    }

    /// Why the frame is incomplete `when` (`after 10 s`), and which parts arrived.
    fn describe(&self, when: &str) -> String {
        let (missing, arrived) = match &self.body {
            Body::Numbered(parts) => (parts.missing(), parts.arrived()),
            Body::Sequential(pieces) => (pieces.missing(), pieces.arrived()),
        };
        format!("{missing} {when} ({arrived})")
    }

    /// The late parts a failed frame still takes.
    fn rest(&self) -> Rest {
        match &self.body {
            Body::Numbered(parts) => parts.rest(),
            Body::Sequential(_) => Rest::UntilNext,
        }
    }

    fn bytes(&self) -> usize {
        let body = match &self.body {
            Body::Numbered(parts) => parts.held_bytes(),
            Body::Sequential(pieces) => pieces.held_bytes(),
        };
        body + self.meta_bytes + self.parts.len() * PART_BYTES
    }
}

impl Entry {
    /// Whether a message identical to the one fingerprinted `print` belongs to this entry.
    fn has_print(&self, print: u64) -> bool {
        match &self.state {
            State::Open(frame) => frame.prints.contains(&print),
            State::Ended(ended) => ended.prints.contains(&print),
        }
    }
}

impl Ended {
    fn bytes(&self) -> usize {
        let rest = match &self.rest {
            Rest::Unseen { seen, .. } => seen.len() * 2 * size_of::<u64>(),
            _ => 0,
        };
        self.prints.len() * size_of::<u64>() + rest
    }
}

impl Rest {
    /// Whether the part numbered `number` of `total` is a late part of the ended frame (then noted).
    fn takes(&mut self, number: u64, of: u64) -> bool {
        match self {
            Self::After { total, highest } if *total == of && number > *highest => {
                *highest = number;
                true
            }
            Self::Unseen { total, seen } if *total == of => seen.insert(number),
            _ => false,
        }
    }
}

fn entry_bytes(key: &Key, entry: &Entry) -> usize {
    let state = match &entry.state {
        State::Open(frame) => frame.bytes(),
        State::Ended(ended) => ended.bytes(),
    };
    ENTRY_BYTES + key.topic.len() + key.id.as_ref().map_or(0, String::len) + state
}

/// Tells identical messages apart from different ones (topic and payload).
fn fingerprint(topic: &str, payload: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    topic.hash(&mut hasher);
    payload.hash(&mut hasher);
    hasher.finish()
}

/// `10 s`, or `250 ms` below a second.
fn secs(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

/// Sorted numbers as ranges, `1-6, 8, 10-50`, the first few only.
fn ranges(numbers: impl IntoIterator<Item = u64>) -> String {
    const SHOWN: usize = 6;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for n in numbers {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == n => *end = n,
            _ => runs.push((n, n)),
        }
    }
    let mut shown: Vec<String> = runs
        .iter()
        .take(SHOWN)
        .map(|&(start, end)| {
            if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            }
        })
        .collect();
    if runs.len() > SHOWN {
        shown.push("…".into());
    }
    shown.join(", ")
}

#[cfg(test)]
impl Assembler {
    /// [`Assembler::held_bytes`] computed afresh, to check the running count.
    fn recount(&self) -> usize {
        self.entries
            .iter()
            .map(|(key, entry)| entry_bytes(key, entry))
            .sum()
    }
}
