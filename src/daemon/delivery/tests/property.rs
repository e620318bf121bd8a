//! Random event sequences through the state machine and a simulated client, workers and broker,
//! checked against a simple model of what at-least-once delivery allows.

use super::*;

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
                        assembled: None,
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
        // Everything that can change while settling: a round that changes none of it is the end.
        let progress = |sim: &Sim| {
            (
                sim.d.in_flight(),
                sim.held.len(),
                sim.at_workers.len(),
                sim.acked.len(),
                sim.d.outbox(),
                sim.d.backlog(),
                sim.d.storage_blocked(),
                sim.durable.len(),
                sim.worked.len(),
            )
        };
        let before = progress(&sim);
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
        let after = progress(&sim);
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
