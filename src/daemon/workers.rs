//! Decode workers: OS threads (never the async reactor) that turn a received frame into a stored file
//! and a serialized record. The one place that states the decode queue's bound.
//!
//! With `output.sync = "batch"` workers write frame files without waiting for the disk, and the syncer
//! thread makes a whole batch of them durable with one `syncfs` (group commit) before their outcomes
//! may be acked. With `"file"` each worker flushes its own file; with `"none"` nothing is flushed. Either
//! way an outcome reaches the delivery task only once its file is as durable as configured.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::config::{Output, Settings, SyncMode};
use crate::daemon::delivery::state::RecordOut;
use crate::daemon::retention::{InUse, Index};
use crate::daemon::sink::{self, Frames};
use crate::frame::budget::MemoryBudget;
use crate::frame::record::{Failure, Record, Stage};
use crate::frame::topic;
use crate::frame::{self, Options, decode, encode};
use crate::ops::live;
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
    /// For a frame assembled from parts: how (the record's `chunks`) and the header it came with.
    pub assembled: Option<Box<Assembled>>,
}

/// What a frame assembled from parts adds to its record.
#[derive(Debug)]
pub struct Assembled {
    pub info: crate::frame::chunks::ChunkInfo,
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What the workers made of a frame.
#[derive(Debug)]
pub enum Done {
    /// Its outcome, ready to publish.
    Finished(Finished),
    /// Storing it failed for a reason outside the frame (disk full, read-only, I/O error): it waits
    /// and is tried again, unacked and without a failure record.
    StoreBlocked { job: Job, error: String },
}

/// A frame's outcome: its record and what to tell the operator.
#[derive(Debug)]
pub struct Finished {
    pub seq: u64,
    /// The record as JSON (within `output.max_record_bytes`) and where it goes; `None` when that kind
    /// of record is turned off.
    pub record: Option<RecordOut>,
    /// What to tell the operator once the frame's outcome is final.
    pub report: Report,
    /// A frame file was written for it.
    pub stored: bool,
    /// The frame, while its file still has to be flushed: if flushing fails it is stored again.
    pub unsynced: Option<Job>,
    /// Keeps retention off its file until its record is acknowledged.
    pub in_use: Option<InUse>,
    /// What the live view shows of it (when the HTTP listener is on).
    pub live: Option<Box<live::Update>>,
}

/// What handling a job came to, before the worker wraps it (it owns the job).
enum Handled {
    Finished(Box<Finished>),
    StoreBlocked(String),
}

/// One frame's outcome in the operator's terms: logged once, when it is final (stored and recorded,
/// or failed), not when a worker is done with it.
#[derive(Debug)]
pub enum Report {
    Ok {
        topic: String,
        width: u32,
        height: u32,
        payload_bytes: usize,
        image_bytes: usize,
        decode_ms: f64,
        path: Option<String>,
        warnings: Vec<String>,
    },
    Failed {
        topic: String,
        stage: Stage,
        payload_bytes: usize,
        error: String,
    },
    /// One part of a chunked frame, spooled: its frame gets the line.
    Part { topic: String },
}

impl Report {
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok { .. })
    }

    /// The topic the frame arrived on.
    pub fn topic(&self) -> &str {
        match self {
            Self::Ok { topic, .. } | Self::Failed { topic, .. } | Self::Part { topic } => topic,
        }
    }

    /// The frame's one log line.
    pub fn log(&self, seq: u64) {
        match self {
            Self::Ok {
                topic,
                width,
                height,
                payload_bytes,
                image_bytes,
                decode_ms,
                path,
                warnings,
            } => {
                let message = if path.is_some() {
                    "frame stored"
                } else {
                    "frame decoded"
                };
                let path = path.as_deref().unwrap_or("-");
                if warnings.is_empty() {
                    tracing::info!(
                        seq,
                        topic,
                        width,
                        height,
                        payload_bytes,
                        image_bytes,
                        decode_ms,
                        path,
                        "{message}"
                    );
                } else {
                    let warnings = warnings.join("; ");
                    tracing::warn!(
                        seq,
                        topic,
                        width,
                        height,
                        payload_bytes,
                        image_bytes,
                        decode_ms,
                        path,
                        warnings,
                        "{message} with a warning"
                    );
                }
            }
            Self::Failed {
                topic,
                stage,
                payload_bytes,
                error,
            } => tracing::warn!(
                seq,
                topic,
                stage = stage.as_str(),
                payload_bytes,
                error,
                "frame failed"
            ),
            Self::Part { topic } => tracing::debug!(seq, topic, "frame part spooled"),
        }
    }
}

/// What workers need to process any frame: read-only, shared by all of them.
#[derive(Debug)]
pub struct Context {
    /// Subscription filters and how their payloads are read; the first matching filter wins.
    sources: Vec<(String, Options)>,
    /// Payloads on topics no filter matches (possible with overlapping session subscriptions).
    fallback: Options,
    output: Output,
    /// Where and how frame files are written; `None` when `output.dir` is unset.
    frames: Option<Frames>,
    /// The workers' queue bound, for messages.
    queue_frames: usize,
    /// `decode.max_memory_bytes`, shared by all workers: each frame holds its decode's estimate
    /// until its pixels are dropped.
    memory: MemoryBudget,
    metrics: Arc<Metrics>,
    /// Builds what the live view gets and records' `url`; `None` without an HTTP listener.
    live: Option<live::Feed>,
}

impl Context {
    /// `index` is retention's accounting, when it is on. `output.dir` is used as it is: the daemon
    /// resolves it to an absolute path first.
    pub fn new(settings: &Settings, metrics: Arc<Metrics>, index: Option<Arc<Index>>) -> Self {
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
            frames: settings
                .output
                .dir
                .clone()
                .map(|dir| Frames::new(dir, settings.output.sync, settings.output.latest, index)),
            queue_frames: settings.pipeline.queue_frames,
            memory: settings.decode.memory_budget(),
            metrics,
            live: settings
                .http
                .listen
                .map(|_| live::Feed::new(&settings.http, settings.output.dir.as_deref())),
        }
    }

    /// `pipeline.queue_frames`.
    pub fn queue_frames(&self) -> usize {
        self.queue_frames
    }

    fn options_for(&self, topic: &str) -> &Options {
        self.sources
            .iter()
            .find(|(filter, _)| topic::matches(filter, topic))
            .map_or(&self.fallback, |(_, options)| options)
    }

    /// Processes one frame: decode, store, log, count, and serialize its record.
    fn handle(&self, job: &Job) -> Handled {
        let options = self.options_for(&job.topic);
        let memory = &self.memory;
        let mut stored = None;
        let result = frame::process(
            &job.payload,
            Some(&job.topic),
            job.received_at,
            options,
            memory,
        )
        .and_then(|mut processed| {
            if let Some(assembled) = &job.assembled {
                processed.record.chunks = Some(assembled.info.clone());
                if assembled.meta.is_some() {
                    processed.record.meta.clone_from(&assembled.meta);
                }
            }
            if let Some(frames) = &self.frames {
                let store = || {
                    let ext = encode::extension(self.output.format, processed.decoded.format);
                    // The image as received needs no copy; PNG and PPM are made in memory once.
                    let bytes: std::borrow::Cow<'_, [u8]> =
                        if encode::is_original(self.output.format, processed.decoded.format) {
                            std::borrow::Cow::Borrowed(&processed.image)
                        } else {
                            let mut out = Vec::new();
                            encode::write(&processed, self.output.format, &mut out).map_err(
                                |source| sink::OutputError::Io {
                                    path: frames.dir().to_owned(),
                                    source,
                                },
                            )?;
                            std::borrow::Cow::Owned(out)
                        };
                    frames.store(
                        (&job.topic, job.seq, job.received_at),
                        &processed.record.sha256,
                        ext,
                        &bytes,
                    )
                };
                match store() {
                    Ok(file) => {
                        processed.record.path = Some(file.path.display().to_string());
                        stored = Some(file);
                    }
                    Err(e) if e.is_environmental() => {
                        if e.is_full() {
                            frames.full();
                        }
                        return Ok(Err(e.to_string()));
                    }
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
            Ok(Ok(processed))
        });
        match result {
            Ok(Err(store_error)) => Handled::StoreBlocked(store_error),
            Ok(Ok(mut processed)) => {
                // The live view gets the frame, and the record where to fetch it (http.public_url).
                let mut pending = None;
                if let Some(feed) = &self.live {
                    processed.record.url = feed.url(&job.topic, &processed.record.sha256);
                    let applied = options.limits.apply_orientation;
                    let orientation = if applied {
                        processed.record.orientation
                    } else {
                        1
                    };
                    let image =
                        live::image_bytes(&job.payload, std::mem::take(&mut processed.image));
                    pending =
                        Some(feed.success(&processed.record, image, orientation, job.received_at));
                }
                let r = &processed.record;
                let report = Report::Ok {
                    topic: job.topic.clone(),
                    width: r.width,
                    height: r.height,
                    payload_bytes: r.payload_bytes,
                    image_bytes: r.image_bytes,
                    decode_ms: r.decode_ms,
                    path: r.path.clone(),
                    warnings: r.warnings.clone(),
                };
                let record = Record::Success(Box::new(processed.record));
                // The next frame on this worker decodes into these pixels' buffer.
                decode::recycle(processed.decoded.rgb);
                if stored.as_ref().is_some_and(|s| s.flushed) {
                    self.metrics.frames_flushed.inc();
                }
                let (record, live) =
                    self.record_out(&self.output.results_topic, &job.topic, record, pending);
                Handled::Finished(Box::new(Finished {
                    seq: job.seq,
                    record,
                    report,
                    stored: stored.is_some(),
                    unsynced: None,
                    in_use: stored.and_then(|s| s.in_use),
                    live,
                }))
            }
            Err(failure) => Handled::Finished(Box::new(self.failed(job.seq, failure))),
        }
    }

    /// The outcome of a frame that failed (also used by the delivery task for queue drops).
    pub fn failed(&self, seq: u64, failure: Failure) -> Finished {
        let topic = failure.topic.clone().unwrap_or_default();
        self.metrics.count_failure(failure.stage);
        let report = Report::Failed {
            topic: topic.clone(),
            stage: failure.stage,
            payload_bytes: failure.payload_bytes,
            error: failure.error.clone(),
        };
        let pending = self.live.as_ref().map(|feed| feed.failure(&failure));
        let (record, live) = self.record_out(
            &self.output.errors_topic,
            &topic,
            Record::Failure(failure),
            pending,
        );
        Finished {
            seq,
            record,
            report,
            stored: false,
            unsynced: None,
            in_use: None,
            live,
        }
    }

    /// The record, serialized, with its topic (`None` when `template` turns that kind of record off),
    /// and the live view's update completed from the same JSON.
    fn record_out(
        &self,
        template: &str,
        topic: &str,
        record: Record,
        live: Option<live::Pending>,
    ) -> (Option<RecordOut>, Option<Box<live::Update>>) {
        let topic = topic::render(template, topic);
        let feed = self.live.as_ref().zip(live);
        if topic.is_none() && feed.is_none() {
            return (None, None);
        }
        let payload = self.fit(record);
        let live = feed.map(|(feed, pending)| Box::new(feed.finish(pending, &payload)));
        (topic.map(|topic| RecordOut { topic, payload }), live)
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

/// The workers' outcome channel: a sender for other producers of outcomes (the chunk assembly
/// thread), and the receiver.
pub type Outcomes = (mpsc::Sender<Done>, mpsc::Receiver<Done>);

/// The running decode workers.
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
}

/// Starts `count` workers taking jobs from a queue of `queue_frames`, and the syncer. Returns the
/// queue's sender, the outcome channel (a sender for other producers of outcomes, and the receiver)
/// and the threads; dropping the sender stops them once the queue
/// is empty.
pub fn spawn(
    count: usize,
    queue_frames: usize,
    context: Arc<Context>,
) -> std::io::Result<(crossbeam_channel::Sender<Job>, Outcomes, Workers)> {
    let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(queue_frames);
    let (stored_tx, stored_rx) = std::sync::mpsc::sync_channel(count * DONE_QUEUE_PER_WORKER);
    let (done_tx, done_rx) = mpsc::channel(count * DONE_QUEUE_PER_WORKER);
    // For the chunk assembly thread, whose spooled parts end like frames.
    let done_tx_out = done_tx.clone();
    let mut threads = Vec::with_capacity(count + 1);
    for i in 0..count {
        let (job_rx, stored_tx, context) =
            (job_rx.clone(), stored_tx.clone(), Arc::clone(&context));
        let thread = std::thread::Builder::new()
            .name(format!("mqimg-decode-{i}"))
            .spawn(move || work(&job_rx, &stored_tx, &context))?;
        threads.push(thread);
    }
    let syncer = std::thread::Builder::new()
        .name("mqimg-sync".into())
        .spawn(move || sync(&stored_rx, &done_tx, &context))?;
    threads.push(syncer);
    Ok((job_tx, (done_tx_out, done_rx), Workers { threads }))
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
        let unsynced = |d: &Done| matches!(d, Done::Finished(f) if f.unsynced.is_some());
        let waiting = batch.iter().filter(|d| unsynced(d)).count();
        if let Some(frames) = &context.frames
            && waiting > 0
        {
            let flushed = sink::sync_filesystem(frames.dir());
            if flushed.is_ok() {
                context.metrics.frames_flushed.inc_by(waiting as u64);
            }
            batch = batch
                .into_iter()
                .map(|d| match (d, &flushed) {
                    (Done::Finished(mut f), Ok(())) => {
                        // Durable now: the payload can go.
                        f.unsynced = None;
                        Done::Finished(f)
                    }
                    // The files may not be on disk: their frames must not be acked as stored, and
                    // whatever failed the flush is not their fault. Write them again later.
                    (
                        Done::Finished(Finished {
                            unsynced: Some(job),
                            ..
                        }),
                        Err(error),
                    ) => Done::StoreBlocked {
                        job,
                        error: format!("cannot flush frame files to disk: {error}"),
                    },
                    (d, _) => d,
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

fn work(jobs: &crossbeam_channel::Receiver<Job>, done: &SyncSender<Done>, context: &Context) {
    while let Ok(job) = jobs.recv() {
        // A decoder bug must not kill the worker: the frame would never finish and, acked in order,
        // would hold back every frame after it.
        let handled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| context.handle(&job)))
                .unwrap_or_else(|panic| {
                    let what = crate::frame::panic_message(&*panic);
                    let failure = Failure::new(
                        Some(&job.topic),
                        job.received_at,
                        job.payload.len(),
                        Stage::Decode,
                        format!("the decoder crashed on this frame: {what}"),
                    );
                    Handled::Finished(Box::new(context.failed(job.seq, failure)))
                });
        let outcome = match handled {
            Handled::Finished(mut finished) => {
                let batched = context
                    .frames
                    .as_ref()
                    .is_some_and(|f| f.sync() == SyncMode::Batch);
                if finished.stored && batched {
                    finished.unsynced = Some(job);
                }
                Done::Finished(*finished)
            }
            Handled::StoreBlocked(error) => Done::StoreBlocked { job, error },
        };
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
