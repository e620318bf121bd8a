//! Rule 7: the bytes held for frames in flight, and the pacing of acks against what they may release.

use super::{ACK_RELEASES, Delivery, InFlight};

impl<A> Delivery<A> {
    /// Time passes (the driver calls this every [`ACK_DEBT_HALF_LIFE`]): frames an ack released have
    /// arrived by now or are not coming, so the debt shrinks and held-back acks may go.
    pub fn tick(&mut self) {
        self.ack_debt /= 2;
        self.release_acks();
    }

    /// Rule 7: the next ack keeps the bytes held, plus what acks may still bring, under the bound.
    /// With no debt one ack may always go, or a small bound would stop acks forever.
    pub(super) fn ack_affordable(&self) -> bool {
        self.draining
            || self.ack_debt == 0
            || self.record_bytes + (self.ack_debt + ACK_RELEASES) * self.record_cost
                < self.rules.max_held_bytes
    }

    /// Frames the acks sent may still bring (rule 7).
    pub fn ack_debt(&self) -> usize {
        self.ack_debt
    }

    /// Bytes of payloads held for frames the workers have not reported yet (rule 7).
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// Bytes held for frames in flight (rule 7).
    pub fn held_bytes(&self) -> usize {
        self.payload_bytes + self.record_bytes
    }

    /// Records of QoS 0 frames dropped because records were at the bound (rule 7).
    pub fn records_dropped(&self) -> u64 {
        self.records_dropped
    }

    pub(super) fn release(&mut self, frame: &InFlight<A>) {
        self.payload_bytes -= frame.payload_held;
        self.record_bytes -= frame.record_held;
    }
}
