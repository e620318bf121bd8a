//! Chunked frames: parts arriving as separate messages, spooled so they can be acked, assembled into
//! frames that then take the normal path. The assembly rules are pure ([`crate::frame::chunks`]);
//! this module owns the disk and the thread.
//!
//! The delivery driver hands every part to one assembly thread, in arrival order (the order the
//! sequential modes depend on). The thread writes the QoS 1/2 parts of a batch to the spool, makes
//! them durable with one flush, and only then reports them done, so their messages may be acked; QoS 0
//! parts are kept in memory only. Whole frames and failures go back to the driver, which admits them
//! like frames that arrived whole. A frame's spooled parts are removed once its outcome is durable.
//! After a crash, the parts left in the spool are replayed through the assembler at startup.

pub mod spool;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::mpsc;

use crate::config::Qos;
use crate::daemon::workers::{Done, Finished, Job, Report};
use crate::frame::chunks::{Assembler, Event, Limits, PartId, Source};
use crate::frame::topic;
use spool::Spool;

/// Parts written to the spool before one flush.
const MAX_BATCH: usize = 64;
/// How often partial frames are checked against their timeout.
const EXPIRY_CHECK: Duration = Duration::from_millis(250);

/// A part on its way to the assembly thread.
#[derive(Debug)]
pub struct Part {
    pub job: Job,
    pub qos: Qos,
    /// The broker flagged it as a redelivery.
    pub dup: bool,
}

/// What the driver sends the assembly thread.
#[derive(Debug)]
pub enum Command {
    Part(Part),
    /// These parts' frame has a durable outcome: forget them.
    Remove(Vec<PartId>),
}

/// A frame assembled from parts, or the failure of one, for the driver to admit.
#[derive(Debug)]
pub struct Assembly {
    pub event: Event,
    /// The highest QoS among its parts: the frame's QoS for its record.
    pub qos: Qos,
}

/// The running assembly thread.
pub struct Assembling {
    pub commands: Sender<Command>,
    pub events: mpsc::Receiver<Assembly>,
    /// Bytes held by partial frames (counted against `pipeline.max_inflight_bytes`).
    pub held_bytes: Arc<AtomicUsize>,
    thread: JoinHandle<()>,
}

impl Assembling {
    /// Waits for the thread to exit (after the command sender was dropped).
    pub fn join(self) {
        drop(self.commands);
        if self.thread.join().is_err() {
            tracing::error!("the chunk assembly thread panicked");
        }
    }
}

/// Where chunked subscriptions' parts go, and how they are read.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Filters of chunked subscriptions and how their parts are read; the first match wins.
    pub sources: Vec<(String, Source)>,
    pub limits: Limits,
    /// Where QoS 1/2 parts are kept until their frame's outcome is durable. `None` (no `output.dir`
    /// and no `chunks.spool_dir`): parts are kept in memory and acked once there, so a crash loses
    /// partial frames; the startup log says so.
    pub spool_dir: Option<PathBuf>,
}

impl Setup {
    /// The source for `topic`, if a chunked subscription takes it.
    pub fn source(&self, topic: &str) -> Option<&Source> {
        self.sources
            .iter()
            .find(|(filter, _)| topic::matches(filter, topic))
            .map(|(_, source)| source)
    }
}

/// Starts the assembly thread: opens the spool and replays what a previous run left in it.
/// Outcomes of parts go to `done` (the workers' channel: a stored part is a finished frame without a
/// record); whole frames and failures to the returned receiver.
pub fn spawn(setup: Setup, done: mpsc::Sender<Done>) -> std::io::Result<Assembling> {
    let (commands, rx) = crossbeam_channel::bounded(MAX_BATCH);
    let (events_tx, events) = mpsc::channel(MAX_BATCH);
    let held_bytes = Arc::new(AtomicUsize::new(0));
    let (spool, replay) = match &setup.spool_dir {
        Some(dir) => {
            let (spool, parts) = Spool::open(dir)?;
            (Some(spool), parts)
        }
        None => (None, Vec::new()),
    };
    let held = Arc::clone(&held_bytes);
    let thread = std::thread::Builder::new()
        .name("mqimg-chunks".into())
        .spawn(move || {
            let mut worker = Worker {
                assembler: Assembler::new(setup.limits),
                setup,
                spool,
                next_memory_id: u64::MAX / 2,
                qos: HashMap::new(),
                events: events_tx,
                done,
                held,
            };
            worker.replay(replay);
            worker.run(&rx);
        })?;
    Ok(Assembling {
        commands,
        events,
        held_bytes,
        thread,
    })
}

struct Worker {
    assembler: Assembler,
    setup: Setup,
    spool: Option<Spool>,
    /// Ids of parts kept in memory only: far above any spool id.
    next_memory_id: PartId,
    /// The QoS of each part still held, for the QoS of its frame.
    qos: HashMap<PartId, Qos>,
    events: mpsc::Sender<Assembly>,
    done: mpsc::Sender<Done>,
    held: Arc<AtomicUsize>,
}

impl Worker {
    /// Parts a previous run spooled (acked, so the broker will not send them again).
    fn replay(&mut self, parts: Vec<spool::SpooledPart>) {
        if parts.is_empty() {
            return;
        }
        tracing::info!(
            parts = parts.len(),
            "resuming partial frames from the chunk spool"
        );
        let now = Instant::now();
        for part in parts {
            let Some(source) = self.setup.source(&part.topic).cloned() else {
                // No chunked subscription takes it any more: nothing could complete its frame.
                if let Some(spool) = &self.spool {
                    spool.remove(&[part.id]);
                }
                continue;
            };
            self.qos.insert(part.id, Qos::AtLeastOnce);
            let events = self
                .assembler
                .part(&source, &part.topic, &part.payload, part.id, now);
            self.forward(events);
        }
    }

    fn run(&mut self, commands: &Receiver<Command>) {
        loop {
            let first = match commands.recv_timeout(EXPIRY_CHECK) {
                Ok(command) => command,
                Err(RecvTimeoutError::Timeout) => {
                    let events = self.assembler.expire(Instant::now());
                    self.forward(events);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match commands.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            let mut parts = Vec::new();
            for command in batch {
                match command {
                    Command::Part(part) => parts.push(part),
                    Command::Remove(ids) => self.remove(&ids),
                }
            }
            if !parts.is_empty() && !self.take(parts) {
                return;
            }
            let events = self.assembler.expire(Instant::now());
            self.forward(events);
        }
    }

    /// Spools a batch of parts, flushes once, reports them, then assembles. Returns false when the
    /// driver is gone.
    fn take(&mut self, parts: Vec<Part>) -> bool {
        let mut stored = Vec::with_capacity(parts.len());
        let mut failed: Option<String> = None;
        for part in parts {
            let id = match (&mut self.spool, part.qos) {
                (Some(spool), Qos::AtLeastOnce | Qos::ExactlyOnce) => {
                    let id = spool.next_id();
                    if failed.is_none()
                        && let Err(error) = spool.write(id, &part.job.topic, &part.job.payload)
                    {
                        failed = Some(format!("cannot write to the chunk spool: {error}"));
                    }
                    id
                }
                _ => {
                    self.next_memory_id += 1;
                    self.next_memory_id
                }
            };
            stored.push((id, part));
        }
        if failed.is_none()
            && let Some(spool) = &self.spool
            && stored.iter().any(|(_, p)| p.qos != Qos::AtMostOnce)
            && let Err(error) = spool.flush()
        {
            failed = Some(format!("cannot flush the chunk spool to disk: {error}"));
        }
        if let Some(error) = failed {
            // Not the parts' fault: they wait, unacked, like frames that cannot be stored.
            for (id, part) in stored {
                if let Some(spool) = &self.spool {
                    spool.remove(&[id]);
                }
                let done = Done::StoreBlocked {
                    job: part.job,
                    error: error.clone(),
                };
                if self.done.blocking_send(done).is_err() {
                    return false;
                }
            }
            return true;
        }
        let now = Instant::now();
        for (id, part) in stored {
            let Part { job, qos, dup } = part;
            let finished = Finished {
                seq: job.seq,
                record: None,
                report: Report::Part {
                    topic: job.topic.clone(),
                },
                stored: true,
                unsynced: None,
                in_use: None,
                live: None,
            };
            if self.done.blocking_send(Done::Finished(finished)).is_err() {
                return false;
            }
            let Some(source) = self.setup.source(&job.topic).cloned() else {
                continue;
            };
            self.qos.insert(id, qos);
            let events = if dup {
                self.assembler
                    .redelivered(&source, &job.topic, &job.payload, id, now)
            } else {
                self.assembler
                    .part(&source, &job.topic, &job.payload, id, now)
            };
            self.forward(events);
        }
        true
    }

    /// Hands whole frames and failures to the driver; forgets discarded parts.
    fn forward(&mut self, events: Vec<Event>) {
        self.held
            .store(self.assembler.held_bytes(), Ordering::Relaxed);
        for event in events {
            let parts = match &event {
                Event::Discard { part } => {
                    self.remove(&[*part]);
                    continue;
                }
                Event::Complete { parts, .. } | Event::Failed { parts, .. } => parts,
            };
            let qos = parts
                .iter()
                .filter_map(|id| self.qos.remove(id))
                .max()
                .unwrap_or(Qos::AtMostOnce);
            if self.events.blocking_send(Assembly { event, qos }).is_err() {
                return;
            }
        }
    }

    fn remove(&mut self, ids: &[PartId]) {
        for id in ids {
            self.qos.remove(id);
        }
        if let Some(spool) = &self.spool {
            spool.remove(ids);
        }
    }
}

/// A frame assembled at `received_at`: the job the workers get.
pub fn job(
    topic: String,
    bytes: Vec<u8>,
    received_at: SystemTime,
    assembled: crate::daemon::workers::Assembled,
) -> Job {
    Job {
        seq: 0,
        topic,
        payload: bytes.into(),
        received_at,
        assembled: Some(Box::new(assembled)),
    }
}
