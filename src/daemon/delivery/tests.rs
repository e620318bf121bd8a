//! The delivery rules without a broker: unit tests per rule, then a property test that drives random
//! event sequences through the state machine and a simulated client and checks the at-least-once
//! invariants against a simple model.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::SystemTime;

use bytes::Bytes;
use proptest::prelude::*;

use super::state::{
    Arrival, Delivery, DropReason, Outcome, RECORD_STRIKES, RecordOut, Request, Rules, StoreFailed,
    UnknownPublish,
};
use crate::config::Qos;
use crate::daemon::workers::Job;

/// An ack token: the frame's seq and the connection it arrived on.
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
fn d_job(d: &mut Delivery<Token>) -> super::super::workers::Job {
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

fn job(seq: u64) -> Job {
    Job {
        seq,
        topic: "cam".into(),
        payload: Bytes::new(),
        received_at: SystemTime::now(),
    }
}

#[test]
fn a_frame_that_cannot_be_stored_waits_unacked_and_storage_is_probed_with_backoff() {
    let mut d = connected();
    let a = tokened_frame(&mut d, 0);
    let b = tokened_frame(&mut d, 1);
    assert_eq!(submit_all(&mut d), vec![a, b]);
    match d.on_store_failed(job(a)) {
        StoreFailed::Waiting {
            newly_blocked: true,
            retry_in: Some(wait),
        } => assert_eq!(wait, super::state::STORE_RETRY_MIN),
        other => panic!("{other:?}"),
    }
    // The other job failing too changes neither the state nor the timer.
    assert!(matches!(
        d.on_store_failed(job(b)),
        StoreFailed::Waiting {
            newly_blocked: false,
            retry_in: None
        }
    ));
    assert_eq!(d.storage_blocked(), Some(2));
    assert!(!d.accepting(), "intake pauses while storage fails");
    assert!(d.next_job().is_none(), "nothing goes out before the delay");
    assert!(requests(&mut d).is_empty(), "no failure record, no ack");
    // The delay passes: one probe, the oldest; it fails: the delay doubles.
    d.retry_storage();
    assert_eq!(submit_all(&mut d), vec![a]);
    match d.on_store_failed(job(a)) {
        StoreFailed::Waiting {
            newly_blocked: false,
            retry_in: Some(wait),
        } => assert_eq!(wait, 2 * super::state::STORE_RETRY_MIN),
        other => panic!("{other:?}"),
    }
    // Storage works again: the probe is stored, the rest follows in order, acks resume.
    d.retry_storage();
    assert_eq!(submit_all(&mut d), vec![a]);
    assert!(d.on_done(done(a, None)), "recovery is reported");
    assert_eq!(d.storage_blocked(), None);
    assert_eq!(submit_all(&mut d), vec![b]);
    assert!(!d.on_done(done(b, None)));
    assert_eq!(acks(&requests(&mut d)), vec![(0, 1), (1, 1)]);
}

#[test]
fn a_probe_that_fails_for_its_own_reasons_does_not_end_the_storage_failure() {
    let mut d = connected();
    let a = tokened_frame(&mut d, 0);
    let b = tokened_frame(&mut d, 1);
    submit_all(&mut d);
    d.on_store_failed(job(a));
    d.on_store_failed(job(b));
    d.retry_storage();
    assert_eq!(submit_all(&mut d), vec![a]);
    // It was not an image after all: a failure record, nothing written.
    let failed = Outcome {
        seq: a,
        record: None,
        stored: false,
    };
    assert!(!d.on_done(failed));
    assert_eq!(d.storage_blocked(), Some(1));
    assert_eq!(submit_all(&mut d), vec![b], "the next one probes at once");
}

#[test]
fn a_qos0_frame_that_cannot_be_stored_is_dropped_and_the_next_one_probes() {
    let mut d = connected();
    let seq = frame(&mut d, Qos::AtMostOnce, 1);
    submit_all(&mut d);
    assert!(matches!(d.on_store_failed(job(seq)), StoreFailed::Dropped(j) if j.seq == seq));
    let arrive = |d: &mut Delivery<Token>| {
        d.on_frame(
            "cam".into(),
            Bytes::new(),
            SystemTime::now(),
            Qos::AtMostOnce,
            (0, 1),
        )
    };
    assert!(matches!(
        arrive(&mut d),
        Arrival::Dropped(_, DropReason::Storage)
    ));
    d.retry_storage();
    assert!(matches!(arrive(&mut d), Arrival::Accepted(_)));
    assert_eq!(submit_all(&mut d).len(), 1, "the probe");
}

#[test]
fn intake_pauses_at_the_byte_bound_and_qos0_frames_are_dropped_there() {
    let mut d: Delivery<Token> = Delivery::new(Rules {
        max_held_bytes: 10_000,
        backlog_frames: 100,
        ..rules()
    });
    d.on_connected(false);
    let big = |d: &mut Delivery<Token>, qos| {
        d.on_frame(
            "cam".into(),
            Bytes::from(vec![0; 6000]),
            SystemTime::now(),
            qos,
            (0, 1),
        )
    };
    assert!(matches!(
        big(&mut d, Qos::AtLeastOnce),
        Arrival::Accepted(0)
    ));
    assert!(d.accepting());
    assert!(matches!(
        big(&mut d, Qos::AtLeastOnce),
        Arrival::Accepted(1)
    ));
    assert!(!d.accepting(), "{} bytes held", d.held_bytes());
    assert_eq!(submit_all(&mut d), vec![0, 1]);
    assert!(!d.accepting(), "still held by the workers");
    assert!(matches!(
        big(&mut d, Qos::AtMostOnce),
        Arrival::Dropped(_, DropReason::Bytes)
    ));
    // The payloads are gone once the workers report; the records are held until acknowledged.
    d.on_done(done(0, None));
    d.on_done(done(1, None));
    d.on_done(done(2, None));
    assert_eq!(d.held_bytes(), 0);
    assert!(d.accepting());
}

#[test]
fn a_record_the_broker_closes_the_connection_on_is_given_up_after_three_times() {
    let mut d = connected();
    let seq = tokened_frame(&mut d, 0);
    submit_all(&mut d);
    d.on_done(done(seq, record(seq)));
    for (pkid, round) in (1..).zip(1..=3) {
        let published = requests(&mut d);
        assert!(
            published
                .iter()
                .any(|r| matches!(r, Request::Publish { seq: s, .. } if *s == seq)),
            "round {round}: {published:?}"
        );
        d.record_handed(seq, round, Qos::AtLeastOnce);
        d.on_record_sent(pkid).unwrap();
        // The broker drops the connection right away, every time.
        d.on_disconnected(HashSet::from([round]), true);
        d.on_connected(false);
    }
    assert_eq!(
        d.take_given_up(),
        vec![(seq, "mqimg/results/cam/0".to_owned())]
    );
    assert_eq!(d.in_flight(), 0, "the frame is finished");
    assert!(
        !requests(&mut d)
            .iter()
            .any(|r| matches!(r, Request::Publish { .. })),
        "not published again"
    );
    // The broker redelivers the frame: its record goes to the same topic and is given up at once.
    let again = tokened_frame(&mut d, 1);
    submit_all(&mut d);
    d.on_done(Outcome {
        seq: again,
        record: Some(RecordOut {
            topic: "mqimg/results/cam/0".into(),
            payload: b"again".to_vec(),
        }),
        stored: true,
    });
    assert_eq!(acks(&requests(&mut d)), vec![(1, 1)]);
}

#[test]
fn connections_lost_for_other_reasons_do_not_count_against_a_record() {
    let mut d = connected();
    let seq = tokened_frame(&mut d, 0);
    submit_all(&mut d);
    d.on_done(done(seq, record(seq)));
    for round in 1..=5 {
        requests(&mut d);
        d.record_handed(seq, round, Qos::AtLeastOnce);
        d.on_record_sent(round as u16).unwrap();
        // A connection that had worked for a while: not the record's doing.
        d.on_disconnected(HashSet::from([round]), round % 2 == 0);
        d.on_connected(false);
    }
    assert!(d.take_given_up().is_empty());
}

#[test]
fn acks_are_paced_when_the_frames_they_release_would_bring_records_over_the_bound() {
    // Records of ~10 KB and a 100 KB bound: twenty more frames per ack would not fit.
    let mut d: Delivery<Token> = Delivery::new(Rules {
        max_held_bytes: 100_000,
        backlog_frames: 100,
        ..rules()
    });
    d.on_connected(false);
    requests(&mut d);
    let big = |seq: u64| {
        Some(RecordOut {
            topic: "r".repeat(5000),
            payload: seq.to_string().into_bytes(),
        })
    };
    let seqs: Vec<u64> = (0..3).map(|i| tokened_frame(&mut d, i)).collect();
    submit_all(&mut d);
    let mut sent = Vec::new();
    for (pkid, &seq) in (1..).zip(&seqs) {
        d.on_done(done(seq, big(seq)));
        sent.extend(acks(&requests(&mut d)));
        d.record_handed(seq, seq as usize, Qos::AtLeastOnce);
        d.on_record_sent(pkid).unwrap();
        d.on_record_acked(pkid);
    }
    sent.extend(acks(&requests(&mut d)));
    // The first ack may always go; the broker may now send twenty frames whose records would not fit.
    assert_eq!(sent, vec![(0, 1)]);
    assert_eq!(d.ack_debt(), super::state::ACK_RELEASES);
    // Time passes and nothing came: the debt fades and the held-back acks go, in order.
    for _ in 0..8 {
        d.tick();
    }
    assert_eq!(acks(&requests(&mut d)), vec![(1, 1)]);
    for _ in 0..8 {
        d.tick();
    }
    assert_eq!(acks(&requests(&mut d)), vec![(2, 1)]);
}

// ---- property test -------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Connect {
        session_present: bool,
    },
    Disconnect {
        short_lived: bool,
    },
    Frame {
        qos: u8,
        bytes: usize,
    },
    /// The next submission finds the workers' queue full.
    QueueFull,
    /// A worker finishes the job at this index (modulo the jobs at the workers).
    WorkerDone(usize),
    /// A worker cannot store the job at this index: the disk is full.
    StoreFails(usize),
    /// The storage retry delay passed.
    StoreRetry,
    /// The ack pacing timer fired.
    Tick,
    /// The client takes up to this many requests, then its channel is full.
    Execute(usize),
    /// The client sends the next handed-over record.
    Send,
    /// The broker acknowledges the record at this index (modulo those awaiting).
    PubAck(usize),
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => any::<bool>().prop_map(|session_present| Op::Connect { session_present }),
        1 => any::<bool>().prop_map(|short_lived| Op::Disconnect { short_lived }),
        6 => (0u8..3, 0usize..4000).prop_map(|(qos, bytes)| Op::Frame { qos, bytes }),
        1 => Just(Op::QueueFull),
        5 => any::<usize>().prop_map(Op::WorkerDone),
        1 => any::<usize>().prop_map(Op::StoreFails),
        1 => Just(Op::StoreRetry),
        2 => Just(Op::Tick),
        5 => (0usize..6).prop_map(Op::Execute),
        4 => Just(Op::Send),
        4 => any::<usize>().prop_map(Op::PubAck),
        1 => Just(Op::Drain),
    ]
}

/// A handed-over record in the simulated client.
#[derive(Clone, Copy, Debug)]
struct Held {
    seq: u64,
    handle: usize,
    pkid: Option<u16>,
    /// In the client's replay state at the last disconnect (dropped if the session is lost).
    pending: bool,
}

/// The world around the state machine: workers, a client, a broker, and the model of what is right.
struct Sim {
    d: Delivery<Token>,
    rules: Rules,
    connected: bool,
    generation: u64,
    /// Jobs at the workers.
    at_workers: Vec<u64>,
    queue_full_next: bool,
    /// Records handed to the client and not yet acknowledged: unsent first, in order.
    held: VecDeque<Held>,
    next_pkid: u16,
    next_handle: usize,
    next_seq: u64,
    /// Model: the connection each frame arrived on, and its QoS.
    arrived: HashMap<u64, (u64, Qos)>,
    /// Model: frames whose outcome is durable.
    durable: HashSet<u64>,
    /// Model: frames acked, and the last acked seq per connection.
    acked: HashSet<u64>,
    last_acked: HashMap<u64, u64>,
    /// Model: frames the worker has reported, and whether they had a record.
    worked: HashMap<u64, bool>,
    abandoned: HashSet<u64>,
    /// Connections closed right after being accepted.
    short_closes: u32,
}

impl Sim {
    fn new(rules: Rules) -> Self {
        Self {
            d: Delivery::new(rules),
            rules,
            connected: false,
            generation: 0,
            at_workers: Vec::new(),
            queue_full_next: false,
            held: VecDeque::new(),
            next_pkid: 1,
            next_handle: 1,
            next_seq: 0,
            arrived: HashMap::new(),
            durable: HashSet::new(),
            acked: HashSet::new(),
            last_acked: HashMap::new(),
            worked: HashMap::new(),
            abandoned: HashSet::new(),
            short_closes: 0,
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Connect { session_present } => {
                if self.connected {
                    return Ok(());
                }
                self.connected = true;
                self.generation += 1;
                if !session_present {
                    // rumqttc drops what it held for replay; the broker forgets unacked records.
                    self.held.retain(|h| !h.pending);
                }
                for h in &mut self.held {
                    h.pending = false;
                }
                self.d.on_connected(session_present);
            }
            Op::Disconnect { short_lived } => {
                if !self.connected {
                    return Ok(());
                }
                self.short_closes += u32::from(short_lived);
                self.connected = false;
                let mut replay = HashSet::new();
                for h in &mut self.held {
                    h.pending = true;
                    replay.insert(h.handle);
                }
                self.d.on_disconnected(replay, short_lived);
                self.collect_given_up()?;
            }
            Op::Frame { qos, bytes } => {
                // The driver reads no events while intake is paused.
                if !self.connected || !self.d.accepting() {
                    return Ok(());
                }
                let qos = Qos::try_from(qos).unwrap();
                // Seqs are handed out in arrival order from 0: the token can name the frame.
                let token = (self.next_seq, self.generation);
                let payload = Bytes::from(vec![0; bytes]);
                let arrival = self
                    .d
                    .on_frame("cam".into(), payload, SystemTime::now(), qos, token);
                let seq = match arrival {
                    Arrival::Accepted(seq) => seq,
                    Arrival::Dropped(job, _) => {
                        prop_assert_eq!(job.seq, token.0);
                        self.next_seq += 1;
                        self.arrived.insert(job.seq, (token.1, qos));
                        self.worker_done(job.seq, true);
                        return self.pump();
                    }
                    Arrival::Refused => return Ok(()),
                };
                prop_assert_eq!(seq, token.0);
                self.next_seq += 1;
                self.arrived.insert(seq, (token.1, qos));
            }
            Op::QueueFull => self.queue_full_next = true,
            Op::WorkerDone(i) => {
                if !self.at_workers.is_empty() {
                    let seq = self.at_workers.remove(i % self.at_workers.len());
                    self.worker_done(seq, seq % 3 != 0);
                }
            }
            Op::StoreFails(i) => {
                if !self.at_workers.is_empty() {
                    let seq = self.at_workers.remove(i % self.at_workers.len());
                    let job = Job {
                        seq,
                        topic: "cam".into(),
                        payload: Bytes::new(),
                        received_at: SystemTime::now(),
                    };
                    match self.d.on_store_failed(job) {
                        StoreFailed::Waiting { .. } => {
                            prop_assert!(self.d.storage_blocked().is_some());
                        }
                        StoreFailed::Abandoned => {
                            self.abandoned.insert(seq);
                        }
                        StoreFailed::Dropped(job) => {
                            prop_assert_eq!(self.arrived[&job.seq].1, Qos::AtMostOnce);
                            self.worker_done(job.seq, true);
                        }
                    }
                }
            }
            Op::StoreRetry => self.d.retry_storage(),
            Op::Tick => self.d.tick(),
            Op::Execute(n) => return self.execute(n),
            Op::Send => {
                if self.connected
                    && let Some(h) = self.held.iter_mut().find(|h| h.pkid.is_none())
                {
                    let pkid = self.next_pkid;
                    self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
                    h.pkid = Some(pkid);
                    self.d
                        .on_record_sent(pkid)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
            }
            Op::PubAck(i) => {
                let sent: Vec<usize> = (0..self.held.len())
                    .filter(|&k| self.held[k].pkid.is_some() && !self.held[k].pending)
                    .collect();
                if self.connected && !sent.is_empty() {
                    let h = self.held.remove(sent[i % sent.len()]).unwrap();
                    self.durable.insert(h.seq);
                    self.d.on_record_acked(h.pkid.unwrap());
                }
            }
            Op::Drain => {
                let before: HashSet<u64> = self.arrived.keys().copied().collect();
                self.d.start_draining();
                // Which frames were abandoned is visible in the model: those never given to a worker.
                for seq in before {
                    if !self.worked.contains_key(&seq) && !self.at_workers.contains(&seq) {
                        self.abandoned.insert(seq);
                    }
                }
            }
        }
        self.pump()
    }

    /// Records given up (rule 8) finish their frame without a PUBACK.
    fn collect_given_up(&mut self) -> Result<(), TestCaseError> {
        for (seq, _) in self.d.take_given_up() {
            prop_assert!(
                self.short_closes >= RECORD_STRIKES,
                "record of frame {} given up after {} short-lived connections",
                seq,
                self.short_closes
            );
            self.durable.insert(seq);
        }
        Ok(())
    }

    fn worker_done(&mut self, seq: u64, with_record: bool) {
        self.worked.insert(seq, with_record);
        if !with_record {
            self.durable.insert(seq);
        }
        self.d
            .on_done(done(seq, with_record.then(|| record(seq)).flatten()));
    }

    /// What the driver does after each event: submit jobs (maybe into a full queue).
    fn pump(&mut self) -> Result<(), TestCaseError> {
        while let Some(job) = self.d.next_job() {
            // A queue is only ever full of jobs: with none at the workers there is room.
            if std::mem::take(&mut self.queue_full_next) && !self.at_workers.is_empty() {
                if let Some(job) = self.d.queue_refused(job) {
                    self.worker_done(job.seq, true);
                }
                break;
            }
            self.at_workers.push(job.seq);
        }
        Ok(())
    }

    fn execute(&mut self, n: usize) -> Result<(), TestCaseError> {
        for _ in 0..n {
            let Some(request) = self.d.next_request() else {
                break;
            };
            match request {
                Request::Subscribe | Request::Disconnect => {}
                Request::Publish { seq, record, qos } => {
                    prop_assert_eq!(record.payload, seq.to_string().into_bytes());
                    let frame_qos = self.arrived[&seq].1;
                    prop_assert_eq!(qos, frame_qos.min(self.rules.record_qos));
                    let handle = self.next_handle;
                    self.next_handle += 1;
                    self.d.record_handed(seq, handle, qos);
                    if qos == Qos::AtMostOnce {
                        self.durable.insert(seq);
                    } else {
                        self.held.push_back(Held {
                            seq,
                            handle,
                            pkid: None,
                            pending: false,
                        });
                    }
                }
                Request::Ack((seq, generation)) => {
                    prop_assert_eq!(self.arrived.get(&seq).map(|a| a.0), Some(generation));
                    check_ack(self, seq)?;
                }
            }
        }
        Ok(())
    }
}

/// The ack invariants, checked on every ack the state machine asks for.
fn check_ack(sim: &mut Sim, seq: u64) -> Result<(), TestCaseError> {
    let (generation, qos) = sim.arrived[&seq];
    prop_assert!(sim.rules.manual_acks, "acked with a clean session");
    prop_assert!(qos != Qos::AtMostOnce, "a QoS 0 frame was acked");
    prop_assert!(sim.connected, "frame {} acked while disconnected", seq);
    prop_assert_eq!(
        generation,
        sim.generation,
        "frame {} acked on a later connection",
        seq
    );
    prop_assert!(sim.acked.insert(seq), "frame {} acked twice", seq);
    prop_assert!(
        sim.durable.contains(&seq),
        "frame {} acked before its outcome was durable",
        seq
    );
    if let Some(&last) = sim.last_acked.get(&generation) {
        prop_assert!(last < seq, "frame {} acked after frame {}", seq, last);
    }
    sim.last_acked.insert(generation, seq);
    Ok(())
}

/// Runs `ops`, then settles and checks that everything that should be acked was.
fn run(rules: Rules, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(rules);
    for op in ops {
        sim.apply(op)?;
        // Rule 7: intake stops at the bound, so at most one frame (and its overhead) goes over it.
        prop_assert!(
            sim.d.payload_bytes() <= rules.max_held_bytes + 4000 + 1024,
            "{} payload bytes held",
            sim.d.payload_bytes()
        );
    }
    // Settle: a stable connection, every worker and the broker answering, the client always free.
    if !sim.connected {
        sim.apply(&Op::Connect {
            session_present: true,
        })?;
    }
    let final_generation = sim.generation;
    for _ in 0..10_000 {
        let before = (
            sim.d.in_flight(),
            sim.held.len(),
            sim.at_workers.len(),
            sim.acked.len(),
            sim.d.outbox(),
        );
        sim.d.retry_storage();
        sim.d.tick();
        sim.pump()?;
        while let Some(seq) = sim.at_workers.pop() {
            sim.worker_done(seq, seq % 3 != 0);
        }
        sim.execute(usize::MAX)?;
        while sim.held.iter().any(|h| h.pkid.is_none()) {
            sim.apply(&Op::Send)?;
        }
        while sim.held.iter().any(|h| h.pkid.is_some()) {
            sim.apply(&Op::PubAck(0))?;
        }
        sim.execute(usize::MAX)?;
        let after = (
            sim.d.in_flight(),
            sim.held.len(),
            sim.at_workers.len(),
            sim.acked.len(),
            sim.d.outbox(),
        );
        if after == before && sim.d.ack_debt() == 0 {
            break;
        }
    }
    // Liveness: every frame of the final connection that awaits an ack got it; nothing is left over
    // except abandoned backlog frames.
    // Frames of earlier connections may have been acked on their own connection (checked above) or
    // not at all (the broker redelivers them).
    // Acks go in order: an abandoned frame (never acked) holds back every later one on its connection.
    let awaits_ack = |qos: Qos| rules.manual_acks && qos != Qos::AtMostOnce;
    let first_abandoned = sim
        .arrived
        .iter()
        .filter(|(seq, (generation, qos))| {
            *generation == final_generation && awaits_ack(*qos) && sim.abandoned.contains(seq)
        })
        .map(|(seq, _)| *seq)
        .min()
        .unwrap_or(u64::MAX);
    for (&seq, &(generation, qos)) in &sim.arrived {
        if generation != final_generation {
            continue;
        }
        let expect_ack = awaits_ack(qos) && seq < first_abandoned;
        prop_assert_eq!(
            sim.acked.contains(&seq),
            expect_ack,
            "frame {} (qos {:?}) on the final connection",
            seq,
            qos
        );
    }
    prop_assert!(sim.d.drained(), "work left after settling");
    // Storage stays blocked only when nothing waits for it: the next frame is the probe.
    prop_assert!(
        sim.d.storage_blocked().unwrap_or(0) == 0,
        "frames still wait for storage"
    );
    prop_assert_eq!(sim.d.held_bytes(), 0, "bytes still counted for no frame");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_event_sequences_keep_the_at_least_once_invariants(
        ops in prop::collection::vec(op(), 0..120),
        manual_acks in any::<bool>(),
        record_qos in 0u8..2,
        backlog_frames in 1usize..4,
        max_held_bytes in 2000usize..20_000,
    ) {
        let rules = Rules {
            manual_acks,
            record_qos: Qos::try_from(record_qos).unwrap(),
            backlog_frames,
            subscribe: true,
            max_held_bytes,
        };
        run(rules, &ops)?;
    }
}
