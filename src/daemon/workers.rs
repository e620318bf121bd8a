//! Decode workers: OS threads (never the async reactor) that turn a received frame into a stored file
//! and a serialized record. The one place that states the decode queue's bound.
//!
//! ```text
//! delivery ─Job (pipeline.queue_frames)→ worker×N ─Done→ syncer ─Done→ delivery
//! ```
//!
//! Workers write frame files without waiting for the disk; the syncer thread makes a whole batch of
//! them durable with one `syncfs` (group commit) before their outcomes may be acked.

use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::config::{Output, Settings};
use crate::daemon::sink;
use crate::frame::record::{Failure, Record, Stage};
use crate::frame::topic;
use crate::frame::{self, Options, encode};
use crate::ops::metrics::Metrics;

/// Outcomes waiting for the syncer, and for the delivery task, per worker.
const DONE_QUEUE_PER_WORKER: usize = 4;
/// Most outcomes made durable by one filesystem flush.
const MAX_SYNC_BATCH: usize = 64;

/// A frame on its way to a worker.
#[derive(Debug)]
pub struct Job {
    /// Arrival order, assigned by the delivery task.
    pub seq: u64,
    pub topic: String,
    pub payload: Bytes,
    pub received_at: SystemTime,
}

/// What a frame ended as: its record, ready to publish.
#[derive(Debug)]
pub struct Done {
    pub seq: u64,
    /// Where the record goes; `None` when that kind of record is turned off.
    pub record_topic: Option<String>,
    /// The record as JSON, within `output.max_record_bytes`.
    pub record: Vec<u8>,
    pub ok: bool,
    /// Set when a frame file was written and still has to be flushed to disk.
    pub stored: Option<Stored>,
}

/// What is needed to turn a stored frame's outcome into a failure if flushing its file fails.
#[derive(Debug)]
pub struct Stored {
    pub topic: String,
    pub received_at: SystemTime,
    pub payload_bytes: usize,
}

/// What workers need to process any frame: read-only, shared by all of them.
#[derive(Debug)]
pub struct Context {
    /// Subscription filters and how their payloads are read; the first matching filter wins.
    sources: Vec<(String, Options)>,
    /// Payloads on topics no filter matches (possible with overlapping session subscriptions).
    fallback: Options,
    output: Output,
    metrics: Arc<Metrics>,
}

impl Context {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Self {
        let sources = settings
            .subscriptions
            .iter()
            .map(|s| {
                let options = settings.decode.options(s.encoding, s.json_field.clone());
                (s.topic.clone(), options)
            })
            .collect();
        Self {
            sources,
            fallback: settings.decode.options(Default::default(), None),
            output: settings.output.clone(),
            metrics,
        }
    }

    fn options_for(&self, topic: &str) -> &Options {
        self.sources
            .iter()
            .find(|(filter, _)| topic::matches(filter, topic))
            .map_or(&self.fallback, |(_, options)| options)
    }

    /// Processes one frame: decode, store, log, count, and serialize its record.
    pub fn handle(&self, job: &Job) -> Done {
        let span = tracing::info_span!("frame", seq = job.seq, topic = %job.topic);
        let _entered = span.enter();
        let options = self.options_for(&job.topic);
        let result = frame::process(&job.payload, Some(&job.topic), job.received_at, options)
            .and_then(|mut processed| {
                if let Some(dir) = &self.output.dir {
                    let store = || {
                        let ext = encode::extension(self.output.format, processed.decoded.format);
                        let date = &processed.record.received_at[..10];
                        let path =
                            sink::frame_path(dir, &job.topic, date, &processed.record.sha256, ext);
                        let bytes = encode::encode(&processed, self.output.format)?;
                        sink::write_unsynced(&path, &bytes)?;
                        Ok::<_, sink::OutputError>(path)
                    };
                    match store() {
                        Ok(path) => processed.record.path = Some(path.display().to_string()),
                        Err(e) => {
                            return Err(Failure::new(
                                Some(&job.topic),
                                job.received_at,
                                job.payload.len(),
                                Stage::Store,
                                e,
                            ));
                        }
                    }
                }
                Ok(processed)
            });
        match result {
            Ok(processed) => {
                let r = &processed.record;
                tracing::info!(
                    topic = %job.topic,
                    width = r.width,
                    height = r.height,
                    payload_bytes = r.payload_bytes,
                    image_bytes = r.image_bytes,
                    rgb_bytes = r.rgb_bytes,
                    decode_ms = r.decode_ms,
                    path = r.path.as_deref().unwrap_or("-"),
                    "frame decoded"
                );
                for warning in &r.warnings {
                    tracing::warn!(topic = %job.topic, warning = %warning, "frame decoded with a warning");
                }
                let stored = processed.record.path.is_some().then(|| Stored {
                    topic: job.topic.clone(),
                    received_at: job.received_at,
                    payload_bytes: job.payload.len(),
                });
                Done {
                    seq: job.seq,
                    record_topic: topic::render(&self.output.results_topic, &job.topic),
                    record: self.fit(Record::Success(Box::new(processed.record))),
                    ok: true,
                    stored,
                }
            }
            Err(failure) => self.failed(job.seq, failure),
        }
    }

    /// The outcome of a frame that failed (also used by the delivery task for queue drops).
    pub fn failed(&self, seq: u64, failure: Failure) -> Done {
        let topic = failure.topic.clone().unwrap_or_default();
        tracing::warn!(
            topic = %topic,
            stage = %failure.stage,
            payload_bytes = failure.payload_bytes,
            error = %failure.error,
            "frame failed"
        );
        self.metrics.count_failure(failure.stage);
        Done {
            seq,
            record_topic: topic::render(&self.output.errors_topic, &topic),
            ok: false,
            stored: None,
            record: self.fit(Record::Failure(failure)),
        }
    }

    /// Serializes `record`, shrinking it to `output.max_record_bytes`: an oversized publish would drop
    /// the whole MQTT connection, not just the record.
    fn fit(&self, mut record: Record) -> Vec<u8> {
        let max = self.output.max_record_bytes;
        let mut json = record.to_json();
        if json.len() > max {
            let size = json.len();
            match &mut record {
                Record::Success(s) => {
                    s.meta = None;
                    s.warnings.push(format!(
                        "meta dropped: the record would be {size} bytes, over output.max_record_bytes ({max})"
                    ));
                }
                Record::Failure(f) => {
                    let mut keep = (max / 2).min(f.error.len());
                    while !f.error.is_char_boundary(keep) {
                        keep -= 1;
                    }
                    f.error.truncate(keep);
                    f.error.push_str(" …(truncated)");
                }
            }
            json = record.to_json();
        }
        json.into_bytes()
    }
}

/// The running decode workers.
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
}

/// Starts `count` workers taking jobs from a queue of `queue_frames`, and the syncer. Returns the
/// queue's sender, the outcome receiver and the threads; dropping the sender stops them once the queue
/// is empty.
pub fn spawn(
    count: usize,
    queue_frames: usize,
    context: Arc<Context>,
) -> std::io::Result<(SyncSender<Job>, mpsc::Receiver<Done>, Workers)> {
    let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<Job>(queue_frames);
    let (stored_tx, stored_rx) = std::sync::mpsc::sync_channel(count * DONE_QUEUE_PER_WORKER);
    let (done_tx, done_rx) = mpsc::channel(count * DONE_QUEUE_PER_WORKER);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let mut threads = Vec::with_capacity(count + 1);
    for i in 0..count {
        let (job_rx, stored_tx, context) =
            (Arc::clone(&job_rx), stored_tx.clone(), Arc::clone(&context));
        let thread = std::thread::Builder::new()
            .name(format!("mqimg-decode-{i}"))
            .spawn(move || work(&job_rx, &stored_tx, &context))?;
        threads.push(thread);
    }
    let syncer = std::thread::Builder::new()
        .name("mqimg-sync".into())
        .spawn(move || sync(&stored_rx, &done_tx, &context))?;
    threads.push(syncer);
    Ok((job_tx, done_rx, Workers { threads }))
}

/// Group commit: takes every outcome that is ready, flushes the filesystem once for all their files,
/// then passes them on. While one flush runs the next batch gathers, so batches grow with the load.
fn sync(stored: &Receiver<Done>, done: &mpsc::Sender<Done>, context: &Context) {
    while let Ok(first) = stored.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_SYNC_BATCH {
            match stored.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        if let Some(dir) = &context.output.dir
            && batch.iter().any(|d| d.stored.is_some())
            && let Err(error) = sink::sync_filesystem(dir)
        {
            // The files may not be on disk: their frames must not be acked as stored.
            batch = batch
                .into_iter()
                .map(|d| {
                    let Some(stored) = &d.stored else {
                        return d;
                    };
                    let failure = Failure::new(
                        Some(&stored.topic),
                        stored.received_at,
                        stored.payload_bytes,
                        Stage::Store,
                        format!("cannot flush the frame file to disk: {error}"),
                    );
                    context.failed(d.seq, failure)
                })
                .collect();
        }
        for outcome in batch {
            if done.blocking_send(outcome).is_err() {
                return;
            }
        }
    }
}

fn work(jobs: &Mutex<Receiver<Job>>, done: &SyncSender<Done>, context: &Context) {
    loop {
        // The lock is held only while waiting for the next job, never while decoding.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        context.metrics.queue_depth.dec();
        // A decoder bug must not kill the worker: the frame would never finish and, acked in order,
        // would hold back every frame after it.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| context.handle(&job)))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    let failure = Failure::new(
                        Some(&job.topic),
                        job.received_at,
                        job.payload.len(),
                        Stage::Decode,
                        format!("the decoder crashed on this frame: {what}"),
                    );
                    context.failed(job.seq, failure)
                });
        if done.send(outcome).is_err() {
            return;
        }
    }
}

impl Workers {
    /// Waits for every worker and the syncer to exit (after the job sender was dropped).
    pub fn join(self) {
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a decode worker panicked");
            }
        }
    }
}
