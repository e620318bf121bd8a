//! The driver's side of chunked frames: parts go to the assembly thread in arrival order, whole
//! frames and failures come back and are admitted like frames that arrived whole, and a frame's
//! spooled parts are forgotten once its outcome is durable.

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

use crossbeam_channel::TrySendError;

use super::Driver;
use crate::config::Qos;
use crate::daemon::chunks::{self, Assembling, Assembly, Command, Part, Setup};
use crate::daemon::delivery::state::{Arrival, DropReason};
use crate::daemon::workers::{Assembled, Job};
use crate::frame::chunks::{Event, PartId};
use crate::frame::record::{Failure, Stage};

/// What the driver keeps for chunked subscriptions.
pub(super) struct Chunks {
    setup: Setup,
    assembling: Assembling,
    /// Parts admitted and not yet handed to the assembly thread: their QoS and DUP flag.
    parts: HashMap<u64, (Qos, bool)>,
    /// Frames assembled (or failed) from spooled parts, by seq: the parts to forget once finished.
    origins: HashMap<u64, Vec<PartId>>,
    /// Removals the assembly thread's queue had no room for yet.
    removals: VecDeque<Vec<PartId>>,
}

impl Chunks {
    pub(super) fn new(setup: Setup, assembling: Assembling) -> Self {
        Self {
            setup,
            assembling,
            parts: HashMap::new(),
            origins: HashMap::new(),
            removals: VecDeque::new(),
        }
    }

    pub(super) fn into_assembling(self) -> Assembling {
        self.assembling
    }
}

/// The next whole frame or failure, or never when there are no chunked subscriptions.
pub(super) async fn next_assembly(chunks: &mut Option<Chunks>) -> Option<Assembly> {
    match chunks {
        Some(chunks) => chunks.assembling.events.recv().await,
        None => std::future::pending().await,
    }
}

impl Driver {
    pub(super) fn is_part(&self, topic: &str) -> bool {
        self.chunks
            .as_ref()
            .is_some_and(|c| c.setup.source(topic).is_some())
    }

    pub(super) fn part_arrived(&mut self, seq: u64, qos: Qos, dup: bool) {
        if let Some(chunks) = &mut self.chunks {
            chunks.parts.insert(seq, (qos, dup));
        }
    }

    /// Hands `job` to the assembly thread if it is a part; gives it back otherwise (or when the
    /// thread's queue is full: then it waits like any job that finds its queue full).
    pub(super) fn route_part(&mut self, job: Job) -> Result<(), Job> {
        let Some(chunks) = &mut self.chunks else {
            return Err(job);
        };
        let Some((qos, dup)) = chunks.parts.remove(&job.seq) else {
            return Err(job);
        };
        match chunks
            .assembling
            .commands
            .try_send(Command::Part(Part { job, qos, dup }))
        {
            Ok(()) => Ok(()),
            Err(
                TrySendError::Full(Command::Part(part))
                | TrySendError::Disconnected(Command::Part(part)),
            ) => {
                chunks.parts.insert(part.job.seq, (part.qos, part.dup));
                if let Some(job) = self.state.queue_refused(part.job) {
                    self.drop_qos0(job, DropReason::QueueFull);
                }
                // Nothing else goes out this round: the assembly thread or the workers are behind.
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }

    /// A whole frame or a failure from the assembly thread.
    pub(super) fn on_assembly(&mut self, assembly: Assembly) {
        let now = SystemTime::now();
        match assembly.event {
            Event::Complete {
                topic,
                bytes,
                meta,
                info,
                parts,
            } => {
                let job = chunks::job(topic, bytes, now, Assembled { info, meta });
                match self.state.on_assembled(job, assembly.qos) {
                    Arrival::Accepted(seq) => self.remember_parts(seq, parts),
                    Arrival::Dropped(job, reason) => {
                        self.remember_parts(job.seq, parts);
                        self.drop_qos0(job, reason);
                    }
                    // Shutting down: the parts stay spooled and are assembled again at the next start.
                    Arrival::Refused => {}
                }
            }
            Event::Failed {
                topic,
                error,
                parts,
            } => {
                let Some(seq) = self
                    .state
                    .on_assembly_failed(topic.clone(), now, assembly.qos)
                else {
                    return;
                };
                self.remember_parts(seq, parts);
                let failure = Failure::new(Some(&topic), now, 0, Stage::Assembly, error);
                let finished = self.context.failed(seq, failure);
                self.on_finished(finished);
            }
            Event::Discard { part } => self.queue_removal(vec![part]),
        }
        let held = self.chunks.as_ref().map_or(0, |c| {
            c.assembling
                .held_bytes
                .load(std::sync::atomic::Ordering::Relaxed)
        });
        self.state.set_assembly_bytes(held);
    }

    fn remember_parts(&mut self, seq: u64, parts: Vec<PartId>) {
        if let Some(chunks) = &mut self.chunks {
            chunks.origins.insert(seq, parts);
        }
    }

    /// Frame `seq` finished: its spooled parts can go.
    pub(super) fn forget_parts(&mut self, seq: u64) {
        let parts = self.chunks.as_mut().and_then(|c| c.origins.remove(&seq));
        if let Some(parts) = parts {
            self.queue_removal(parts);
        }
    }

    fn queue_removal(&mut self, parts: Vec<PartId>) {
        if let Some(chunks) = &mut self.chunks {
            chunks.removals.push_back(parts);
        }
    }

    pub(super) fn flush_part_removals(&mut self) {
        let Some(chunks) = &mut self.chunks else {
            return;
        };
        while let Some(parts) = chunks.removals.pop_front() {
            match chunks.assembling.commands.try_send(Command::Remove(parts)) {
                Ok(()) => {}
                Err(TrySendError::Full(Command::Remove(parts))) => {
                    chunks.removals.push_front(parts);
                    break;
                }
                Err(_) => break,
            }
        }
    }
}
