//! The fault rules: storage failing around frames, the byte bound, records the broker refuses.

use super::*;

fn job(seq: u64) -> Job {
    Job {
        seq,
        topic: "cam".into(),
        payload: Bytes::new(),
        received_at: SystemTime::now(),
        assembled: None,
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
        } => assert_eq!(wait, crate::daemon::delivery::state::STORE_RETRY_MIN),
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
        } => assert_eq!(wait, 2 * crate::daemon::delivery::state::STORE_RETRY_MIN),
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
    assert_eq!(d.ack_debt(), crate::daemon::delivery::state::ACK_RELEASES);
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
