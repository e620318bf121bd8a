//! Rules 3 and 8: records handed to the client, acknowledged, published again after a lost session,
//! or given up when the broker closes the connection on them.

use std::mem;

use super::{Delivery, RECORD_STRIKES, REFUSED_TOPICS, Request};
use crate::config::Qos;

impl<A> Delivery<A> {
    /// Rule 3: without a session rumqttc dropped the records it held for replay, and the broker forgot
    /// those awaiting their PUBACK.
    pub(super) fn republish_lost_records(&mut self) {
        let replay = mem::take(&mut self.replay);
        let frames = &self.frames;
        let lost = |seq: &u64| {
            frames
                .get(seq)
                .and_then(|f| f.record_handle)
                .is_some_and(|handle| replay.contains(&handle))
        };
        let mut again: Vec<u64> = self.unassigned.iter().copied().filter(lost).collect();
        self.unassigned.retain(|seq| !lost(seq));
        again.extend(self.awaiting_puback.drain().map(|(_, (seq, _))| seq));
        again.sort_unstable();
        for seq in again {
            if let Some(frame) = self.frames.get(&seq)
                && let Some(record) = frame.record.clone()
            {
                let qos = frame.qos.min(self.rules.record_qos);
                self.outbox.push_back(Request::Publish { seq, record, qos });
            }
        }
    }

    /// Rule 8: the broker processes packets in order, so the record it choked on is the oldest one
    /// sent on this connection and not acknowledged.
    pub(super) fn strike_oldest_unacked_record(&mut self) {
        let generation = self.generation;
        let Some(seq) = self
            .awaiting_puback
            .values()
            .filter(|(_, sent_on)| *sent_on == generation)
            .map(|(seq, _)| *seq)
            .min()
        else {
            return;
        };
        let Some(topic) = self
            .frames
            .get(&seq)
            .and_then(|f| f.record.as_ref())
            .map(|r| r.topic.clone())
        else {
            return;
        };
        let strikes = self.strikes.entry(topic.clone()).or_insert(0);
        *strikes += 1;
        if *strikes < RECORD_STRIKES {
            return;
        }
        self.strikes.remove(&topic);
        if self.refused.len() == REFUSED_TOPICS {
            self.refused.pop_front();
        }
        self.refused.push_back(topic.clone());
        // Give up every frame whose record goes there, wherever it is on its way out.
        let victims: Vec<u64> = self
            .frames
            .iter()
            .filter(|(_, f)| !f.finished && f.record.as_ref().is_some_and(|r| r.topic == topic))
            .map(|(seq, _)| *seq)
            .collect();
        for seq in victims {
            self.give_up(seq);
        }
    }

    /// Rule 8: the frame's record will not be published; its frame finishes.
    pub(super) fn give_up(&mut self, seq: u64) {
        self.awaiting_puback.retain(|_, (s, _)| *s != seq);
        self.unassigned.retain(|s| *s != seq);
        self.outbox
            .retain(|r| !matches!(r, Request::Publish { seq: s, .. } if *s == seq));
        if let Some(topic) = self
            .frames
            .get(&seq)
            .and_then(|f| f.record.as_ref())
            .map(|r| r.topic.clone())
        {
            self.given_up.push((seq, topic));
        }
        self.finish(seq);
    }

    /// The client took the record of `seq` for publishing; `handle` identifies it in its replay queue.
    pub fn record_handed(&mut self, seq: u64, handle: usize, qos: Qos) {
        if let Some(frame) = self.frames.get_mut(&seq) {
            frame.record_handle = Some(handle);
        }
        if qos == Qos::AtMostOnce {
            self.finish(seq);
        } else {
            self.unassigned.push_back(seq);
        }
    }

    /// The record of `seq` can never be published (an invalid topic): the frame is finished anyway,
    /// or it would hold back every ack after it.
    pub fn record_refused(&mut self, seq: u64) {
        self.finish(seq);
    }

    /// A record publish went out with `pkid` (rumqttc reports them in hand-over order).
    pub fn on_record_sent(&mut self, pkid: u16) -> Result<(), UnknownPublish> {
        // Packet id 0 is a QoS 0 publish; one already awaiting its PUBACK is a retransmission.
        if pkid == 0 || self.awaiting_puback.contains_key(&pkid) {
            return Ok(());
        }
        let seq = self.unassigned.pop_front().ok_or(UnknownPublish(pkid))?;
        self.awaiting_puback.insert(pkid, (seq, self.generation));
        Ok(())
    }

    /// The broker acknowledged the record publish `pkid`. Returns whether it was one of ours.
    pub fn on_record_acked(&mut self, pkid: u16) -> bool {
        match self.awaiting_puback.remove(&pkid) {
            Some((seq, _)) => {
                // The broker takes records again: whatever closed the connection before was not them.
                self.strikes.clear();
                self.finish(seq);
                true
            }
            None => false,
        }
    }

    /// Frames whose record was given up (rule 8) since the last call, with the record topic.
    pub fn take_given_up(&mut self) -> Vec<(u64, String)> {
        mem::take(&mut self.given_up)
    }
}

/// A publish went out that mqimg did not hand over.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("a publish went out with packet id {0} that mqimg did not send")]
pub struct UnknownPublish(pub u16);
