//! Property test of the assembler against a model of outcomes: cameras send frames in every mode, in
//! any order the mode allows, with parts dropped and redelivered, interleaved with each other. Then
//! - every part handed in comes out exactly once (complete, failed or discarded);
//! - a copy is always discarded;
//! - a frame that lost no part completes, byte-identical, from exactly its parts;
//! - a frame that lost a part never completes, and fails at most once, from its own parts only;
//! - the byte count is exact at every step, and nothing is held once every frame timed out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

#[derive(Clone, Copy, Debug)]
enum Form {
    JsonWithId,
    /// No id: parts in the order sent.
    JsonInOrder,
    TopicIndex,
    StartDataEndRaw,
    StartDataEndBase64,
    HeaderBlocks,
    UntilEoiRaw,
    UntilEoiBase64,
}

impl Form {
    const ALL: [Form; 8] = [
        Self::JsonWithId,
        Self::JsonInOrder,
        Self::TopicIndex,
        Self::StartDataEndRaw,
        Self::StartDataEndBase64,
        Self::HeaderBlocks,
        Self::UntilEoiRaw,
        Self::UntilEoiBase64,
    ];

    fn mode(self) -> Mode {
        match self {
            Self::JsonWithId | Self::JsonInOrder => Mode::JsonParts,
            Self::TopicIndex => Mode::TopicIndex,
            Self::StartDataEndRaw | Self::StartDataEndBase64 => Mode::StartDataEnd,
            Self::HeaderBlocks => Mode::HeaderBlocks,
            Self::UntilEoiRaw | Self::UntilEoiBase64 => Mode::UntilEoi,
        }
    }

    fn pieces(self) -> Pieces {
        match self {
            Self::StartDataEndBase64 | Self::UntilEoiBase64 => Pieces::Base64,
            _ => Pieces::Raw,
        }
    }

    /// Parts numbered and keyed by a frame id: any order, and copies recognised without a DUP flag.
    fn any_order(self) -> bool {
        matches!(self, Self::JsonWithId | Self::TopicIndex)
    }

    /// Which of a frame's `n` messages may be lost while the outcome stays decidable: without an id a
    /// lost first part would let the previous frame take the next one's parts, and `until-eoi` has
    /// nothing to tell a lost middle piece by (decoding does).
    fn may_drop(self, index: usize, n: usize) -> bool {
        match self {
            Self::JsonInOrder => index != 0,
            Self::UntilEoiRaw | Self::UntilEoiBase64 => index == 0 || index + 1 == n,
            _ => true,
        }
    }

    /// Whether a frame that lost the messages `lost` (of `n`) can still be open when the next frame on
    /// its topic begins. That one's first message must then arrive: were it lost too, nothing could
    /// tell the two frames' data apart (the protocols have no frame ids).
    fn leaves_open(self, lost: &[usize], n: usize) -> bool {
        match self {
            Self::StartDataEndRaw | Self::StartDataEndBase64 => lost.contains(&(n - 1)),
            Self::HeaderBlocks => !lost.is_empty(),
            Self::UntilEoiRaw | Self::UntilEoiBase64 => lost.contains(&(n - 1)),
            _ => false,
        }
    }
}

/// One frame a camera sends: its size, how it is cut, and what happens to each message.
#[derive(Clone, Debug)]
struct Plan {
    camera: usize,
    scan_bytes: usize,
    chunk: usize,
    seed: u64,
    /// Per message: 0 lost, 1 delivered twice, otherwise delivered once.
    fates: Vec<u8>,
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        0..3usize,
        20..1500usize,
        40..300usize,
        any::<u64>(),
        prop::collection::vec(0..12u8, 64),
    )
        .prop_map(|(camera, scan_bytes, chunk, seed, fates)| Plan {
            camera,
            scan_bytes,
            chunk,
            seed,
            fates,
        })
}

/// xorshift64*: the plan's randomness, so that proptest shrinks seeds rather than byte vectors.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A small JPEG: SOI, an APP0 segment of random bytes (`ff d9` included), an SOS header, scan data
/// without `ff`, EOI. Its structure sits in the first 30 bytes, inside any first piece.
fn jpeg(rng: &mut Rng, scan_bytes: usize) -> Vec<u8> {
    let mut bytes = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
    bytes.extend((0..14).map(|_| rng.next() as u8));
    bytes.extend_from_slice(&[0xff, 0xda, 0x00, 0x08, 1, 2, 3, 4, 5, 6]);
    bytes.extend((0..scan_bytes).map(|_| (rng.next() % 0xff) as u8));
    bytes.extend_from_slice(&[0xff, 0xd9]);
    bytes
}

/// One message handed to the assembler.
struct Delivery {
    frame: usize,
    topic: String,
    payload: Vec<u8>,
    copy: bool,
}

fn run(form: Form, plans: &[Plan], order_seed: u64) -> Result<(), TestCaseError> {
    let mode = form.mode();
    let mut streams: Vec<Vec<Delivery>> = (0..3).map(|_| Vec::new()).collect();
    let mut originals = Vec::new();
    let mut intact = Vec::new();
    let mut open = [false; 3];
    for (frame, plan) in plans.iter().enumerate() {
        let mut rng = Rng(plan.seed | 1);
        let bytes = jpeg(&mut rng, plan.scan_bytes);
        let topic = format!("cams/{}", plan.camera);
        let id = frame.to_string();
        let id = form.any_order().then_some(id.as_str());
        let mut messages = split(
            mode,
            &Fields::default(),
            &topic,
            id,
            &bytes,
            plan.chunk,
            form.pieces(),
        );
        if form.any_order() {
            for i in (1..messages.len()).rev() {
                messages.swap(i, rng.below(i + 1));
            }
        }
        let n = messages.len();
        let mut lost = Vec::new();
        for (index, (topic, payload)) in messages.into_iter().enumerate() {
            let fate = plan.fates[index % plan.fates.len()];
            let kept = index == 0 && open[plan.camera];
            if fate == 0 && form.may_drop(index, n) && !kept {
                lost.push(index);
                continue;
            }
            let stream = &mut streams[plan.camera];
            if fate == 1 {
                stream.push(Delivery {
                    frame,
                    topic: topic.clone(),
                    payload: payload.clone(),
                    copy: false,
                });
            }
            stream.push(Delivery {
                frame,
                topic,
                payload,
                copy: fate == 1,
            });
        }
        open[plan.camera] = form.leaves_open(&lost, n);
        originals.push(bytes);
        intact.push(lost.is_empty());
    }
    // The cameras' streams merged in a random order, each keeping its own.
    let mut rng = Rng(order_seed | 1);
    let mut deliveries = Vec::new();
    let mut streams: Vec<std::collections::VecDeque<Delivery>> =
        streams.into_iter().map(Into::into).collect();
    while streams.iter().any(|s| !s.is_empty()) {
        let camera = rng.below(streams.len());
        deliveries.extend(streams[camera].pop_front());
    }

    let limits = Limits::default();
    let source = Source {
        mode,
        fields: Fields::default(),
    };
    let mut assembler = Assembler::new(limits);
    let start = Instant::now();
    let mut now = start;
    let mut events = Vec::new();
    for (id, delivery) in deliveries.iter().enumerate() {
        now += Duration::from_millis(1);
        let (topic, payload, id) = (&delivery.topic, &delivery.payload, id as PartId);
        // Copies of unnumbered messages are only recognisable by the broker's DUP flag.
        events.extend(if delivery.copy && !form.any_order() {
            assembler.redelivered(&source, topic, payload, id, now)
        } else {
            assembler.part(&source, topic, payload, id, now)
        });
        prop_assert_eq!(assembler.held_bytes(), assembler.recount());
    }
    events.extend(assembler.expire(now + limits.timeout));
    events.extend(assembler.expire(now + limits.timeout * 3));
    prop_assert_eq!(assembler.held_bytes(), 0);
    prop_assert!(assembler.entries.is_empty());

    let frame_of = |id: &PartId| deliveries[*id as usize].frame;
    let mut seen = BTreeMap::new();
    let mut failures: BTreeMap<usize, usize> = BTreeMap::new();
    let mut completed = BTreeSet::new();
    for event in &events {
        let parts: Vec<PartId> = match event {
            Event::Complete { parts, bytes, .. } => {
                let frame = frame_of(&parts[0]);
                prop_assert!(intact[frame], "frame {} lost a part yet completed", frame);
                prop_assert!(
                    bytes == &originals[frame],
                    "frame {} completed with other bytes",
                    frame
                );
                let own: Vec<PartId> = (0..deliveries.len() as PartId)
                    .filter(|id| frame_of(id) == frame && !deliveries[*id as usize].copy)
                    .collect();
                let mut sorted = parts.clone();
                sorted.sort_unstable();
                prop_assert_eq!(&sorted, &own, "frame {} is made of its own parts", frame);
                prop_assert!(completed.insert(frame), "frame {} completed twice", frame);
                parts.clone()
            }
            Event::Failed { parts, error, .. } => {
                let frame = frame_of(&parts[0]);
                prop_assert!(
                    parts.iter().all(|id| frame_of(id) == frame),
                    "a failure mixes frames: {}",
                    error
                );
                prop_assert!(!intact[frame], "intact frame {} failed: {}", frame, error);
                *failures.entry(frame).or_default() += 1;
                parts.clone()
            }
            Event::Discard { part } => vec![*part],
        };
        for id in parts {
            *seen.entry(id).or_insert(0) += 1;
            if deliveries[id as usize].copy {
                prop_assert!(
                    matches!(event, Event::Discard { .. }),
                    "a copy was not discarded"
                );
            }
        }
    }
    for id in 0..deliveries.len() as PartId {
        prop_assert_eq!(seen.get(&id).copied(), Some(1), "part {} out once", id);
    }
    for (frame, ok) in intact.iter().enumerate() {
        if *ok {
            prop_assert!(
                completed.contains(&frame),
                "intact frame {} did not complete",
                frame
            );
        }
    }
    prop_assert!(
        failures.values().all(|&n| n == 1),
        "a frame failed twice: {:?}",
        failures
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_streams_keep_the_assembly_invariants(
        plans in prop::collection::vec(plan(), 1..7),
        order_seed in any::<u64>(),
    ) {
        for form in Form::ALL {
            run(form, &plans, order_seed)?;
        }
    }
}
