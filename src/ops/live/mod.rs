//! The live view's state: per topic, the latest frame (its bytes as received), counters and the last
//! records; a broadcast of every record (for `/events`) and a `watch` per topic (for `/stream/`).
//!
//! The delivery driver feeds it once per frame, when the frame's outcome is final ([`Hub::publish`]);
//! the HTTP handlers in `ops::http` read it. Everything is bounded: `http.max_topics` topics (least
//! recently updated dropped), `http.max_latest_bytes` of latest frames, [`RECORDS_PER_TOPIC`] records
//! of at most [`RECORD_BYTES_PER_TOPIC`] per topic, [`EVENTS_QUEUE`] records in the broadcast (a viewer
//! that falls behind skips records, it never holds the pipeline back), `http.max_streams` streams.
//! Publishing takes a mutex for a few map operations and never waits for a viewer.

mod feed;
pub mod page;
mod render;
pub mod url;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};

pub use feed::{Feed, Pending, image_bytes};
pub use render::{Jpeg, RenderError};

use crate::config::Http;
use crate::frame::decode::Format;
use crate::frame::record::timestamp;

/// Records kept per topic for `/topics/{topic}`.
pub const RECORDS_PER_TOPIC: usize = 50;
/// Bytes of records kept per topic (envelopes' `meta` can make records large); the newest is always kept.
pub const RECORD_BYTES_PER_TOPIC: usize = 256 << 10;
/// Records waiting for the slowest `/events` viewer; one further behind skips ahead.
pub const EVENTS_QUEUE: usize = 128;
/// Seconds of history behind `fps`.
const RATE_WINDOW_SECS: u64 = 10;

/// A frame that decoded, as the camera sent it.
#[derive(Debug)]
pub struct Frame {
    /// The image bytes as received, after payload decoding (shared with the job, or made once for
    /// base64 and JSON payloads).
    pub bytes: Bytes,
    pub format: Format,
    /// After orientation, as in the record.
    pub width: u32,
    pub height: u32,
    /// The EXIF orientation the decoder applied (1: none); scaled versions apply it too.
    pub orientation: u8,
    pub sha256: String,
    pub received_at: SystemTime,
    renditions: render::Renditions,
}

/// What one frame came to, for the live view.
#[derive(Debug)]
pub struct Update {
    pub topic: String,
    /// [`topic_key`] of `topic`, computed by the worker: topics can be 64 KiB, and the driver, which
    /// publishes, must stay cheap per frame.
    pub key: u64,
    pub outcome: Outcome,
    /// The record as the live view serves it (paths left out unless `http.show_paths`).
    pub record: Arc<str>,
}

#[derive(Debug)]
pub enum Outcome {
    Ok(Arc<Frame>),
    /// `stage: error`.
    Failed(String),
}

/// One record on the broadcast.
#[derive(Clone, Debug)]
pub struct Record {
    pub topic: Arc<str>,
    pub json: Arc<str>,
}

/// One topic as `/api/topics` shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub topic: String,
    /// Of the latest frame; `null` (and so are the frame's fields) while only failures came.
    pub received_at: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub format: Option<Format>,
    pub image_bytes: Option<usize>,
    pub sha256: Option<String>,
    /// Milliseconds since the latest frame was received, by this machine's clock.
    pub age_ms: Option<u64>,
    pub ok: u64,
    pub failed: u64,
    /// Frames (any outcome) per second over the last 10 s.
    pub fps: f64,
    pub last_error: Option<String>,
}

/// Refused: `http.max_streams` streams (or event feeds) are open.
#[derive(Debug)]
pub struct StreamsFull(pub usize);

/// Shared by the delivery driver (which publishes) and the HTTP handlers (which read).
#[derive(Debug)]
pub struct Hub {
    max_topics: usize,
    max_latest_bytes: usize,
    max_streams: usize,
    state: Mutex<Topics>,
    records: broadcast::Sender<Record>,
    streams: Arc<Semaphore>,
    /// Event feeds at once: as many as streams, counted apart (a topic's page opens one of each).
    feeds: Arc<Semaphore>,
    /// Scaling and re-encoding at once: one per core, so viewers cannot take the machine.
    renders: Arc<Semaphore>,
    /// The clock `fps` counts seconds on.
    started: Instant,
}

#[derive(Debug, Default)]
struct Topics {
    /// By [`topic_key`]; a bucket holds the topics sharing one (at most `http.max_topics`, so a
    /// crafted collision costs little).
    buckets: HashMap<u64, Vec<Topic>>,
    count: usize,
    /// Bumped on each publish: a topic's `touched` orders eviction.
    tick: u64,
    /// Bytes of every topic's latest frame.
    frame_bytes: usize,
}

#[derive(Debug)]
struct Topic {
    name: Arc<str>,
    key: u64,
    touched: u64,
    /// The latest frame; streams watch it, skipping whatever they were too slow for.
    latest: watch::Sender<Option<Arc<Frame>>>,
    ok: u64,
    failed: u64,
    last_error: Option<String>,
    rate: Rate,
    first_seen: u64,
    /// Newest first.
    records: VecDeque<Arc<str>>,
    record_bytes: usize,
}

impl Hub {
    pub fn new(http: &Http) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            max_topics: http.max_topics,
            max_latest_bytes: http.max_latest_bytes,
            max_streams: http.max_streams,
            state: Mutex::default(),
            records: broadcast::Sender::new(EVENTS_QUEUE),
            streams: Arc::new(Semaphore::new(http.max_streams)),
            feeds: Arc::new(Semaphore::new(http.max_streams)),
            renders: Arc::new(Semaphore::new(cores)),
            started: Instant::now(),
        }
    }

    /// Takes one frame's final outcome. Never waits for a viewer.
    pub fn publish(&self, update: Update) {
        let now = self.started.elapsed().as_secs();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.tick += 1;
        let tick = state.tick;
        let key = update.key;
        if state.get(key, &update.topic).is_none() {
            state.insert(Topic::new(update.topic.as_str().into(), key, now));
        }
        let mut freed = 0;
        let mut added = 0;
        let Update {
            topic: name,
            outcome,
            record,
            ..
        } = update;
        let Some(topic) = state.get_mut(key, &name) else {
            return;
        };
        let name = Arc::clone(&topic.name);
        {
            topic.touched = tick;
            topic.rate.add(now);
            match outcome {
                Outcome::Ok(frame) => {
                    topic.ok += 1;
                    added = frame.bytes.len();
                    let old = topic.latest.send_replace(Some(frame));
                    freed = old.map_or(0, |f| f.bytes.len());
                }
                Outcome::Failed(error) => {
                    topic.failed += 1;
                    topic.last_error = Some(error);
                }
            }
            topic.keep_record(Arc::clone(&record));
        }
        state.frame_bytes = state.frame_bytes - freed + added;
        state.evict(key, &name, self.max_topics, self.max_latest_bytes);
        drop(state);
        // No receiver is not an error: nobody is watching.
        let _ = self.records.send(Record {
            topic: name,
            json: record,
        });
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Summary> {
        let now = self.started.elapsed().as_secs();
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        let mut all: Vec<Summary> = state
            .buckets
            .values()
            .flatten()
            .map(|t| t.summary(now))
            .collect();
        all.sort_by(|a, b| a.topic.cmp(&b.topic));
        all
    }

    /// One topic and its last records, newest first.
    pub fn topic(&self, name: &str) -> Option<(Summary, Vec<Arc<str>>)> {
        let now = self.started.elapsed().as_secs();
        let state = self.state.lock().ok()?;
        let topic = state.get(topic_key(name), name)?;
        Some((topic.summary(now), topic.records.iter().cloned().collect()))
    }

    /// The latest frame of `name`.
    pub fn latest(&self, name: &str) -> Option<Arc<Frame>> {
        let state = self.state.lock().ok()?;
        state.get(topic_key(name), name)?.latest.borrow().clone()
    }

    /// Watches the latest frame of `name`, once it has one. Ends when the topic is dropped.
    pub fn watch(&self, name: &str) -> Option<watch::Receiver<Option<Arc<Frame>>>> {
        let state = self.state.lock().ok()?;
        let topic = state.get(topic_key(name), name)?;
        topic
            .latest
            .borrow()
            .is_some()
            .then(|| topic.latest.subscribe())
    }

    /// Every record from now on, and the feed's place (`http.max_streams` feeds at once), held for as
    /// long as it runs.
    pub fn records(
        &self,
    ) -> Result<(broadcast::Receiver<Record>, OwnedSemaphorePermit), StreamsFull> {
        let permit = Arc::clone(&self.feeds)
            .try_acquire_owned()
            .map_err(|_| StreamsFull(self.max_streams))?;
        Ok((self.records.subscribe(), permit))
    }

    /// A stream's place, held for as long as it runs.
    pub fn admit_stream(&self) -> Result<OwnedSemaphorePermit, StreamsFull> {
        Arc::clone(&self.streams)
            .try_acquire_owned()
            .map_err(|_| StreamsFull(self.max_streams))
    }

    /// The limit on concurrent scaling and re-encoding.
    pub fn renders(&self) -> &Arc<Semaphore> {
        &self.renders
    }
}

impl Topics {
    fn get(&self, key: u64, name: &str) -> Option<&Topic> {
        self.buckets.get(&key)?.iter().find(|t| &*t.name == name)
    }

    fn get_mut(&mut self, key: u64, name: &str) -> Option<&mut Topic> {
        self.buckets
            .get_mut(&key)?
            .iter_mut()
            .find(|t| &*t.name == name)
    }

    fn insert(&mut self, topic: Topic) {
        self.buckets.entry(topic.key).or_default().push(topic);
        self.count += 1;
    }

    /// Drops the least recently updated topics (never `keep`) until within both bounds.
    fn evict(&mut self, key: u64, keep: &str, max_topics: usize, max_bytes: usize) {
        while self.count > max_topics || self.frame_bytes > max_bytes {
            let oldest = self
                .buckets
                .values()
                .flatten()
                .filter(|t| !(t.key == key && &*t.name == keep))
                .min_by_key(|t| t.touched)
                .map(|t| (t.key, t.touched));
            let Some((oldest_key, touched)) = oldest else {
                break;
            };
            let Some(bucket) = self.buckets.get_mut(&oldest_key) else {
                break;
            };
            if let Some(at) = bucket.iter().position(|t| t.touched == touched) {
                let topic = bucket.swap_remove(at);
                let bytes = topic.latest.borrow().as_ref().map_or(0, |f| f.bytes.len());
                self.frame_bytes -= bytes;
                self.count -= 1;
            }
            if bucket.is_empty() {
                self.buckets.remove(&oldest_key);
            }
        }
    }
}

/// The key topics are found by: cheap to compute even for a 64 KiB topic in an unoptimised build
/// (8 bytes a step), and stable, so workers compute it and HTTP handlers find the same topics.
pub fn topic_key(topic: &str) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let bytes = topic.as_bytes();
    let mut hash = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        hash = (hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
    let mut last = [0u8; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    (hash.rotate_left(5) ^ u64::from_le_bytes(last)).wrapping_mul(K)
}

impl Topic {
    fn new(name: Arc<str>, key: u64, now: u64) -> Self {
        Self {
            name,
            key,
            touched: 0,
            latest: watch::Sender::new(None),
            ok: 0,
            failed: 0,
            last_error: None,
            rate: Rate::default(),
            first_seen: now,
            records: VecDeque::new(),
            record_bytes: 0,
        }
    }

    fn keep_record(&mut self, record: Arc<str>) {
        self.record_bytes += record.len();
        self.records.push_front(record);
        while self.records.len() > RECORDS_PER_TOPIC
            || (self.record_bytes > RECORD_BYTES_PER_TOPIC && self.records.len() > 1)
        {
            if let Some(old) = self.records.pop_back() {
                self.record_bytes -= old.len();
            }
        }
    }

    fn summary(&self, now: u64) -> Summary {
        let frame = self.latest.borrow();
        let frame = frame.as_deref();
        Summary {
            topic: self.name.to_string(),
            received_at: frame.map(|f| timestamp(f.received_at)),
            width: frame.map(|f| f.width),
            height: frame.map(|f| f.height),
            format: frame.map(|f| f.format),
            image_bytes: frame.map(|f| f.bytes.len()),
            sha256: frame.map(|f| f.sha256.clone()),
            age_ms: frame.map(|f| {
                let age = SystemTime::now().duration_since(f.received_at);
                age.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }),
            ok: self.ok,
            failed: self.failed,
            fps: self.rate.per_sec(now, self.first_seen),
            last_error: self.last_error.clone(),
        }
    }
}

/// Frames per second by whole seconds: one counter per second of the window, reused in a ring.
#[derive(Debug, Default)]
struct Rate {
    seconds: [(u64, u32); RATE_WINDOW_SECS as usize + 1],
}

impl Rate {
    fn add(&mut self, now: u64) {
        let slot = &mut self.seconds[(now % self.seconds.len() as u64) as usize];
        if slot.0 != now {
            *slot = (now, 0);
        }
        slot.1 += 1;
    }

    /// Over the last whole seconds (at most 10, fewer for a topic seen more recently), two decimals.
    fn per_sec(&self, now: u64, first_seen: u64) -> f64 {
        let window = now.saturating_sub(first_seen).clamp(1, RATE_WINDOW_SECS);
        let frames: u32 = self
            .seconds
            .iter()
            .filter(|(second, _)| *second < now && *second + window >= now)
            .map(|(_, n)| n)
            .sum();
        (f64::from(frames) / window as f64 * 100.0).round() / 100.0
    }
}

impl Frame {
    /// A frame with no scaled versions made yet.
    pub fn new(
        bytes: Bytes,
        format: Format,
        (width, height): (u32, u32),
        orientation: u8,
        sha256: String,
        received_at: SystemTime,
    ) -> Self {
        Self {
            bytes,
            format,
            width,
            height,
            orientation,
            sha256,
            received_at,
            renditions: render::Renditions::default(),
        }
    }
}

#[cfg(test)]
mod tests;
