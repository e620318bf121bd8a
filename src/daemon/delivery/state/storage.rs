//! Rule 6: storage failing for a reason outside the frame. The frame waits unacked; one waiting frame
//! probes storage after a delay that doubles up to a cap.

use super::{Blocked, Delivery, STORE_RETRY_MAX, STORE_RETRY_MIN, StoreFailed};
use crate::config::Qos;
use crate::daemon::workers::Job;

impl<A> Delivery<A> {
    /// Rule 6: a worker could not store `job` for a reason outside the frame.
    pub fn on_store_failed(&mut self, job: Job) -> StoreFailed {
        self.queue_full = false;
        let qos = self.frames.get(&job.seq).map_or(Qos::AtMostOnce, |f| f.qos);
        if self.draining && qos != Qos::AtMostOnce {
            if let Some(frame) = self.frames.remove(&job.seq) {
                self.release(&frame);
            }
            self.abandoned += 1;
            return StoreFailed::Abandoned;
        }
        let newly_blocked = self.blocked.is_none();
        let blocked = self.blocked.get_or_insert(Blocked {
            delay: STORE_RETRY_MIN,
            probe: None,
            probe_due: false,
        });
        let retry_in = if newly_blocked {
            Some(blocked.delay)
        } else if blocked.probe == Some(job.seq) {
            // The probe failed too: wait longer before the next one.
            blocked.probe = None;
            blocked.delay = (blocked.delay * 2).min(STORE_RETRY_MAX);
            Some(blocked.delay)
        } else {
            None
        };
        if qos == Qos::AtMostOnce {
            return StoreFailed::Dropped(job);
        }
        // Older than anything in the backlog: keep arrival order among the waiting frames.
        let at = self.retry.partition_point(|j| j.seq < job.seq);
        self.retry.insert(at, job);
        StoreFailed::Waiting {
            newly_blocked,
            retry_in,
        }
    }

    /// The storage retry delay has passed: let one waiting frame try.
    pub fn retry_storage(&mut self) {
        if let Some(blocked) = &mut self.blocked
            && blocked.probe.is_none()
        {
            blocked.probe_due = true;
        }
    }

    /// Storage is failing (rule 6): the frames waiting for it.
    pub fn storage_blocked(&self) -> Option<usize> {
        self.blocked.as_ref().map(|_| self.retry.len())
    }
}
