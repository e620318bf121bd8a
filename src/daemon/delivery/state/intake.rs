//! Rules 4 and 5: frames admitted (whole, assembled from parts, or failed assembly), handed to the
//! workers in arrival order, and what happens when the workers' queue is full.

use std::mem;
use std::time::SystemTime;

use bytes::Bytes;

use super::{Arrival, Delivery, DropReason, FRAME_OVERHEAD_BYTES, InFlight, Job};
use crate::config::Qos;

impl<A> Delivery<A> {
    /// A frame arrived with `qos`; `ack` is what acknowledges it on this connection.
    pub fn on_frame(
        &mut self,
        topic: String,
        payload: Bytes,
        received_at: SystemTime,
        qos: Qos,
        ack: A,
    ) -> Arrival {
        let job = Job {
            seq: 0,
            topic,
            payload,
            received_at,
            assembled: None,
        };
        self.admit(job, qos, Some(ack), true)
    }

    /// A frame assembled from parts (already acked, each once it was spooled): the same path as a
    /// frame that arrived whole, without an ack of its own. `job.seq` is assigned here.
    pub fn on_assembled(&mut self, job: Job, qos: Qos) -> Arrival {
        self.admit(job, qos, None, true)
    }

    /// Parts that cannot become a frame: a frame without an ack or a job, for its failure record,
    /// which the caller hands to [`Delivery::on_done`] with the returned seq.
    pub fn on_assembly_failed(
        &mut self,
        topic: String,
        received_at: SystemTime,
        qos: Qos,
    ) -> Option<u64> {
        let job = Job {
            seq: 0,
            topic,
            payload: Bytes::new(),
            received_at,
            assembled: None,
        };
        match self.admit(job, qos, None, false) {
            Arrival::Accepted(seq) => Some(seq),
            Arrival::Dropped(job, _) => Some(job.seq),
            Arrival::Refused => None,
        }
    }

    /// Bytes held outside this state machine for frames in flight (partial frames being assembled):
    /// counted with the payloads, so they pause intake too.
    pub fn set_assembly_bytes(&mut self, bytes: usize) {
        self.assembly_bytes = bytes;
    }

    pub(super) fn admit(&mut self, mut job: Job, qos: Qos, ack: Option<A>, queue: bool) -> Arrival {
        if self.draining {
            self.abandoned += 1;
            return Arrival::Refused;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if qos != Qos::AtMostOnce {
            self.ack_debt = self.ack_debt.saturating_sub(1);
        }
        job.seq = seq;
        let awaits_ack = self.rules.manual_acks && qos != Qos::AtMostOnce && ack.is_some();
        let payload_held = job.payload.len() + job.topic.len() + FRAME_OVERHEAD_BYTES;
        let over_bound = self.held_bytes() >= self.rules.max_held_bytes;
        self.payload_bytes += payload_held;
        self.frames.insert(
            seq,
            InFlight {
                generation: self.generation,
                ack: ack.filter(|_| awaits_ack),
                qos,
                record: None,
                record_handle: None,
                finished: false,
                payload_held,
                record_held: 0,
            },
        );
        if awaits_ack {
            self.acks.push_back(seq);
        }
        if !queue {
            return Arrival::Accepted(seq);
        }
        // Rules 4, 6 and 7: a QoS 0 frame never waits, and is not held over the bound. While storage
        // fails it is dropped too, unless it can be the probe that finds storage working again.
        if qos == Qos::AtMostOnce {
            let reason = if self
                .blocked
                .as_ref()
                .is_some_and(|b| !b.probe_due || !self.retry.is_empty())
            {
                Some(DropReason::Storage)
            } else if self.queue_full || !self.backlog.is_empty() {
                Some(DropReason::QueueFull)
            } else if over_bound {
                Some(DropReason::Bytes)
            } else {
                None
            };
            if let Some(reason) = reason {
                return Arrival::Dropped(job, reason);
            }
        }
        self.backlog.push_back(job);
        Arrival::Accepted(seq)
    }

    /// The next frame to hand to the workers, in arrival order.
    pub fn next_job(&mut self) -> Option<Job> {
        if self.queue_full || self.draining {
            return None;
        }
        if let Some(blocked) = &mut self.blocked {
            // Rule 6: only a probe goes out while storage is failing.
            if !mem::take(&mut blocked.probe_due) {
                return None;
            }
            let job = self
                .retry
                .pop_front()
                .or_else(|| self.backlog.pop_front())?;
            blocked.probe = Some(job.seq);
            return Some(job);
        }
        self.retry.pop_front().or_else(|| self.backlog.pop_front())
    }

    /// The workers' queue had no room for `job` (from [`Delivery::next_job`]). A QoS 0 frame comes
    /// back to be dropped; any other waits at the head of the backlog.
    pub fn queue_refused(&mut self, job: Job) -> Option<Job> {
        self.queue_full = true;
        if let Some(blocked) = &mut self.blocked
            && blocked.probe == Some(job.seq)
        {
            blocked.probe = None;
            blocked.probe_due = true;
        }
        let qos = self.frames.get(&job.seq).map_or(Qos::AtMostOnce, |f| f.qos);
        if qos == Qos::AtMostOnce {
            return Some(job);
        }
        self.backlog.push_front(job);
        None
    }
}
