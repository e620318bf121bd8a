//! The delivery rules without a broker: unit tests per rule, then a property test that drives random
//! event sequences through the state machine and a simulated client and checks the at-least-once
//! invariants against a simple model.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::SystemTime;

use bytes::Bytes;
use proptest::prelude::*;

use crate::config::Qos;
use crate::daemon::delivery::state::{
    Arrival, Delivery, DropReason, Outcome, RECORD_STRIKES, RecordOut, Request, Rules, StoreFailed,
    UnknownPublish,
};
use crate::daemon::workers::Job;

/// An ack token: the frame's seq and the connection it arrived on.
mod faults;
mod property;

type Token = (u64, u64);

fn rules() -> Rules {
    Rules {
        manual_acks: true,
        record_qos: Qos::AtLeastOnce,
        backlog_frames: 2,
        subscribe: true,
        max_held_bytes: 1 << 20,
    }
}

/// A worker's outcome for `seq`, its file stored.
fn done(seq: u64, record: Option<RecordOut>) -> Outcome {
    Outcome {
        seq,
        record,
        stored: true,
    }
}

fn record(seq: u64) -> Option<RecordOut> {
    Some(RecordOut {
        topic: format!("mqimg/results/cam/{seq}"),
        payload: seq.to_string().into_bytes(),
    })
}

/// A frame on connection `generation`; returns its seq.
fn frame(d: &mut Delivery<Token>, qos: Qos, generation: u64) -> u64 {
    match d.on_frame(
        "cam".into(),
        Bytes::new(),
        SystemTime::now(),
        qos,
        (0, generation),
    ) {
        Arrival::Accepted(seq) => seq,
        other => panic!("frame not accepted: {other:?}"),
    }
}

/// Hands every job the state machine releases to the workers; returns their seqs.
fn submit_all(d: &mut Delivery<Token>) -> Vec<u64> {
    std::iter::from_fn(|| d.next_job())
        .map(|job| job.seq)
        .collect()
}

/// Drains the outbox: (acked seqs' tokens, published record seqs, subscribes).
fn requests(d: &mut Delivery<Token>) -> Vec<Request<Token>> {
    std::iter::from_fn(|| d.next_request()).collect()
}

fn acks(requests: &[Request<Token>]) -> Vec<Token> {
    requests
        .iter()
        .filter_map(|r| match r {
            Request::Ack(token) => Some(*token),
            _ => None,
        })
        .collect()
}

/// Publishes the record of `seq`, the broker assigns `pkid` and acknowledges it.
fn record_round_trip(d: &mut Delivery<Token>, seq: u64, pkid: u16) {
    d.record_handed(seq, 1000 + seq as usize, Qos::AtLeastOnce);
    d.on_record_sent(pkid).unwrap();
    assert!(d.on_record_acked(pkid));
}

/// Connected, subscribed, the first frames' tokens distinguishable by seq.
fn connected() -> Delivery<Token> {
    let mut d = Delivery::new(rules());
    d.on_connected(false);
    assert_eq!(requests(&mut d), vec![Request::Subscribe]);
    d
}

fn tokened_frame(d: &mut Delivery<Token>, seq_hint: u64) -> u64 {
    match d.on_frame(
        "cam".into(),
        Bytes::new(),
        SystemTime::now(),
        Qos::AtLeastOnce,
        (seq_hint, 1),
    ) {
        Arrival::Accepted(seq) => seq,
        other => panic!("{other:?}"),
    }
}

#[test]
fn acks_go_out_in_arrival_order_once_each_outcome_is_durable() {
    let mut d = connected();
    let seqs: Vec<u64> = (0..3).map(|i| tokened_frame(&mut d, i)).collect();
    assert_eq!(submit_all(&mut d), seqs);
    // The later frames finish first: nothing may be acked before frame 0.
    d.on_done(done(2, None));
    d.on_done(done(1, record(1)));
    let published = requests(&mut d);
    assert_eq!(published.len(), 1, "{published:?}");
    record_round_trip(&mut d, 1, 7);
    assert!(acks(&requests(&mut d)).is_empty());
    // Frame 0's record is published but not yet acknowledged by the broker: still no ack.
    d.on_done(done(0, record(0)));
    requests(&mut d);
    d.record_handed(0, 1000, Qos::AtLeastOnce);
    d.on_record_sent(8).unwrap();
    assert!(acks(&requests(&mut d)).is_empty());
    assert!(d.on_record_acked(8));
    assert_eq!(acks(&requests(&mut d)), vec![(0, 1), (1, 1), (2, 1)]);
    assert_eq!(d.in_flight(), 0);
    assert_eq!(d.take_finished(), vec![2, 1, 0]);
}

#[test]
fn a_frame_is_never_acked_on_a_later_connection() {
    let mut d = connected();
    let seq = tokened_frame(&mut d, 0);
    submit_all(&mut d);
    d.on_disconnected(HashSet::new(), false);
    d.on_connected(true);
    d.on_done(done(seq, None));
    assert!(acks(&requests(&mut d)).is_empty());
    assert_eq!(d.in_flight(), 0, "the finished frame is forgotten");
}

#[test]
fn acks_queued_when_the_connection_drops_are_discarded() {
    let mut d = connected();
    let seq = tokened_frame(&mut d, 0);
    submit_all(&mut d);
    d.on_done(done(seq, None));
    // The client's channel is full: the ack waits in the outbox when the connection drops.
    let ack = d.next_request().unwrap();
    d.retry(ack);
    d.on_disconnected(HashSet::new(), false);
    d.on_connected(true);
    assert!(acks(&requests(&mut d)).is_empty());
}

#[test]
fn a_frame_finished_while_disconnected_is_not_acked_after_the_reconnect() {
    let mut d = connected();
    let seq = tokened_frame(&mut d, 0);
    submit_all(&mut d);
    d.on_disconnected(HashSet::new(), false);
    d.on_done(done(seq, None));
    assert!(acks(&requests(&mut d)).is_empty());
    d.on_connected(true);
    assert!(acks(&requests(&mut d)).is_empty());
    assert_eq!(d.in_flight(), 0);
}

#[test]
fn records_lost_with_the_session_are_published_again() {
    let mut d = connected();
    let a = tokened_frame(&mut d, 0);
    let b = tokened_frame(&mut d, 1);
    let c = tokened_frame(&mut d, 2);
    submit_all(&mut d);
    for seq in [a, b, c] {
        d.on_done(done(seq, record(seq)));
    }
    requests(&mut d);
    // a went out and awaits its PUBACK; b was handed over but not sent; c was handed over after the
    // disconnect (it is in the client's channel, not its replay queue).
    d.record_handed(a, 100, Qos::AtLeastOnce);
    d.on_record_sent(5).unwrap();
    d.record_handed(b, 101, Qos::AtLeastOnce);
    d.on_disconnected(HashSet::from([100, 101]), false);
    d.record_handed(c, 102, Qos::AtLeastOnce);
    d.on_connected(false);
    let again: Vec<u64> = requests(&mut d)
        .into_iter()
        .filter_map(|r| match r {
            Request::Publish { seq, record, .. } => {
                assert_eq!(record.payload, seq.to_string().into_bytes());
                Some(seq)
            }
            _ => None,
        })
        .collect();
    assert_eq!(again, vec![a, b]);
}

#[test]
fn records_are_not_republished_when_the_session_survives() {
    let mut d = connected();
    let a = tokened_frame(&mut d, 0);
    submit_all(&mut d);
    d.on_done(done(a, record(a)));
    requests(&mut d);
    d.record_handed(a, 100, Qos::AtLeastOnce);
    d.on_record_sent(5).unwrap();
    d.on_disconnected(HashSet::from([100]), false);
    d.on_connected(true);
    assert!(requests(&mut d).is_empty());
    // rumqttc retransmits it with the same packet id: not a new publish.
    d.on_record_sent(5).unwrap();
    assert!(d.on_record_acked(5));
    assert!(
        acks(&requests(&mut d)).is_empty(),
        "acked on a later connection"
    );
}

#[test]
fn subscribes_on_the_first_connection_and_whenever_the_session_is_lost() {
    let mut d: Delivery<Token> = Delivery::new(rules());
    d.on_connected(true);
    assert_eq!(requests(&mut d), vec![Request::Subscribe]);
    d.on_disconnected(HashSet::new(), false);
    d.on_connected(true);
    assert!(requests(&mut d).is_empty());
    d.on_disconnected(HashSet::new(), false);
    d.on_connected(false);
    assert_eq!(requests(&mut d), vec![Request::Subscribe]);
    let mut none: Delivery<Token> = Delivery::new(Rules {
        subscribe: false,
        ..rules()
    });
    none.on_connected(false);
    assert!(requests(&mut none).is_empty());
}

#[test]
fn a_full_queue_fills_the_backlog_then_pauses_intake() {
    let mut d = connected();
    let first = tokened_frame(&mut d, 0);
    let job = d.next_job().unwrap();
    assert_eq!(job.seq, first);
    assert!(d.queue_refused(job).is_none(), "a QoS 1 frame waits");
    assert!(
        d.next_job().is_none(),
        "the queue is full until a worker reports"
    );
    assert!(d.accepting());
    tokened_frame(&mut d, 1);
    assert_eq!(d.backlog(), 2);
    assert!(!d.accepting(), "backlog_frames = 2 reached: intake pauses");
    d.on_done(done(99, None));
    assert_eq!(submit_all(&mut d), vec![0, 1], "oldest first");
    assert!(d.accepting());
}

#[test]
fn a_qos0_frame_is_dropped_when_the_queue_is_full_or_others_wait() {
    let mut d = connected();
    let seq = frame(&mut d, Qos::AtMostOnce, 1);
    let job = d.next_job().unwrap();
    let dropped = d.queue_refused(job).unwrap();
    assert_eq!(dropped.seq, seq);
    // While the queue is known to be full, the next QoS 0 frame does not even wait.
    match d.on_frame(
        "cam".into(),
        Bytes::new(),
        SystemTime::now(),
        Qos::AtMostOnce,
        (0, 1),
    ) {
        Arrival::Dropped(job, reason) => {
            assert_eq!(job.seq, seq + 1);
            assert_eq!(reason, DropReason::QueueFull);
        }
        other => panic!("{other:?}"),
    }
    // Its failure record finishes it like any other frame; QoS 0 is never acked.
    d.on_done(done(seq + 1, None));
    assert!(acks(&requests(&mut d)).is_empty());
}

#[test]
fn draining_abandons_the_backlog_without_holding_back_older_acks() {
    let mut d = connected();
    let old = tokened_frame(&mut d, 0);
    let job = d.next_job().unwrap();
    assert_eq!(job.seq, old);
    // The queue is full: the next two wait in the backlog, the newest frames (rule 5).
    let job = d_job(&mut d);
    assert!(d.queue_refused(job).is_none());
    assert_eq!(d.backlog(), 1);
    tokened_frame(&mut d, 2);
    assert_eq!(d.start_draining(), 2);
    assert!(d.next_job().is_none());
    assert!(matches!(
        d.on_frame(
            "cam".into(),
            Bytes::new(),
            SystemTime::now(),
            Qos::AtLeastOnce,
            (3, 1)
        ),
        Arrival::Refused
    ));
    assert!(!d.drained(), "the frame at the worker may still finish");
    d.on_done(done(old, None));
    assert_eq!(acks(&requests(&mut d)), vec![(0, 1)]);
    assert!(d.drained());
    assert_eq!(d.unfinished(), 3, "two abandoned, one refused");
}

/// Takes a second frame and returns its job (from the head of the backlog).
fn d_job(d: &mut Delivery<Token>) -> Job {
    tokened_frame(d, 1);
    d.next_job().unwrap()
}

#[test]
fn packet_ids_nobody_handed_over_are_reported_and_unknown_pubacks_ignored() {
    let mut d = connected();
    assert_eq!(d.on_record_sent(9), Err(UnknownPublish(9)));
    assert_eq!(d.on_record_sent(0), Ok(()), "QoS 0 publishes have no id");
    assert!(!d.on_record_acked(9));
}

#[test]
fn a_qos0_record_finishes_its_frame_when_handed_over() {
    let mut d: Delivery<Token> = Delivery::new(Rules {
        record_qos: Qos::AtMostOnce,
        ..rules()
    });
    d.on_connected(false);
    requests(&mut d);
    let seq = tokened_frame(&mut d, 0);
    submit_all(&mut d);
    d.on_done(done(seq, record(seq)));
    requests(&mut d);
    d.record_handed(seq, 1, Qos::AtMostOnce);
    assert_eq!(acks(&requests(&mut d)), vec![(0, 1)]);
}

#[test]
fn a_record_that_can_never_be_sent_does_not_block_later_acks() {
    let mut d = connected();
    let a = tokened_frame(&mut d, 0);
    let b = tokened_frame(&mut d, 1);
    submit_all(&mut d);
    d.on_done(done(a, record(a)));
    d.on_done(done(b, None));
    requests(&mut d);
    d.record_refused(a);
    assert_eq!(acks(&requests(&mut d)), vec![(0, 1), (1, 1)]);
}

#[test]
fn with_a_clean_session_nothing_is_acked_by_mqimg() {
    let mut d: Delivery<Token> = Delivery::new(Rules {
        manual_acks: false,
        ..rules()
    });
    d.on_connected(false);
    requests(&mut d);
    let seq = tokened_frame(&mut d, 0);
    submit_all(&mut d);
    d.on_done(done(seq, None));
    assert!(acks(&requests(&mut d)).is_empty());
    assert_eq!(d.in_flight(), 0);
}
