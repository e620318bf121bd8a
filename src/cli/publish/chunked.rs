//! `mqimg publish --chunks`: each file cut into the messages a small camera sends
//! ([`crate::frame::chunks::split`]), frame after frame or two at a time (`--interleave`).
//!
//! Files are read up front; messages are made on a blocking thread and handed over a bounded channel,
//! so a long run holds a few frames, not all of them, and no base64 is encoded on the reactor.

use std::path::Path;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{PUBLISH_HEADER_BYTES, read, validate_topic};
use crate::cli::PublishArgs;
use crate::frame::chunks::{Fields, Mode, Pieces, split};
use crate::frame::payload::Detected;

/// Messages made ahead of the publishing loop.
const MESSAGES_AHEAD: usize = 256;

/// The frames of one run, ready to be cut.
pub(super) struct Frames {
    mode: Mode,
    pieces: Pieces,
    chunk_bytes: usize,
    interleave: bool,
    topic: String,
    /// File names (`header-blocks`' `file_name`) and bytes.
    files: Vec<(String, Vec<u8>)>,
    /// Frames in the run: the files in turn, `--count` times.
    frames: u64,
    /// The largest message, topic and headers included.
    max_packet: usize,
    total_messages: u64,
}

/// Checks the chunk flags and reads the files (off the reactor).
pub(super) async fn prepare(args: &PublishArgs, frames: u64) -> anyhow::Result<Frames> {
    let chunking = &args.chunking;
    let mode = chunking.chunks;
    if chunking.chunk_bytes == 0 {
        bail!("--chunk-bytes must be at least 1");
    }
    let pieces = match args.encoding {
        Detected::Raw => Pieces::Raw,
        Detected::Base64 => Pieces::Base64,
        other => {
            bail!("--encoding {other} does not apply with --chunks: pieces are sent raw or base64")
        }
    };
    if chunking.interleave && frames < 2 {
        bail!("--interleave needs two frames to alternate: give two files or --count 2");
    }
    if chunking.interleave && !has_ids(mode) {
        validate_topic(&second_camera(&args.topic))?;
    }
    let paths = args.files.clone();
    let files = tokio::task::spawn_blocking(move || {
        paths
            .iter()
            .map(|path| Ok((file_name(path), read(path)?)))
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await
    .context("reading files")??;
    let mut run = Frames {
        mode,
        pieces,
        chunk_bytes: chunking.chunk_bytes,
        interleave: chunking.interleave,
        topic: args.topic.clone(),
        files,
        frames,
        max_packet: 0,
        total_messages: 0,
    };
    let per_cycle: u64 = run
        .files
        .iter()
        .map(|(_, bytes)| messages_per_frame(mode, bytes.len(), run.chunk_bytes))
        .sum();
    run.total_messages = per_cycle.saturating_mul(args.count);
    // The longest topic and payload a frame of the run can have: its last frame id is the longest.
    let last = (frames - 1).to_string();
    let topic = if run.interleave && !has_ids(mode) {
        second_camera(&run.topic)
    } else {
        run.topic.clone()
    };
    run.max_packet = run
        .files
        .iter()
        .map(|(name, bytes)| {
            let id = id_for(mode, name, &last);
            // Only the first messages differ in size: the start, the header, the first parts.
            let head = &bytes[..bytes.len().min(run.chunk_bytes.saturating_mul(2))];
            let longest = split(
                mode,
                &Fields::default(),
                &topic,
                Some(&id),
                head,
                run.chunk_bytes,
                pieces,
            )
            .iter()
            .map(|(topic, payload)| topic.len() + payload.len())
            .max()
            .unwrap_or(0);
            // A size in the header or start written with more digits than the head's.
            longest + 20
        })
        .max()
        .unwrap_or(0)
        + PUBLISH_HEADER_BYTES;
    Ok(run)
}

impl Frames {
    pub(super) fn max_packet(&self) -> usize {
        self.max_packet
    }

    pub(super) fn total_messages(&self) -> u64 {
        self.total_messages
    }

    /// Makes the run's messages, in publishing order, on a blocking thread.
    pub(super) fn spawn(self) -> mpsc::Receiver<(String, Bytes)> {
        let (tx, rx) = mpsc::channel(MESSAGES_AHEAD);
        tokio::task::spawn_blocking(move || {
            let step = if self.interleave { 2 } else { 1 };
            let mut frame = 0;
            while frame < self.frames {
                let first = self.messages(frame, &self.topic);
                let second = if step == 2 && frame + 1 < self.frames {
                    let topic = if has_ids(self.mode) {
                        self.topic.clone()
                    } else {
                        second_camera(&self.topic)
                    };
                    self.messages(frame + 1, &topic)
                } else {
                    Vec::new()
                };
                for message in alternate(first, second) {
                    // The receiver is gone only when publishing stopped: nothing left to make.
                    if tx.blocking_send(message).is_err() {
                        return;
                    }
                }
                frame += step;
            }
        });
        rx
    }

    /// Frame number `frame`'s messages on `topic`.
    fn messages(&self, frame: u64, topic: &str) -> Vec<(String, Bytes)> {
        let (name, bytes) = &self.files[(frame % self.files.len() as u64) as usize];
        let id = id_for(self.mode, name, &frame.to_string());
        split(
            self.mode,
            &Fields::default(),
            topic,
            Some(&id),
            bytes,
            self.chunk_bytes,
            self.pieces,
        )
        .into_iter()
        .map(|(topic, payload)| (topic, Bytes::from(payload)))
        .collect()
    }
}

/// `a` and `b` one message each in turn, then the rest of the longer.
fn alternate<T>(a: Vec<T>, b: Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

/// Modes whose messages carry a frame id, so two frames can share a topic.
fn has_ids(mode: Mode) -> bool {
    matches!(mode, Mode::JsonParts | Mode::TopicIndex)
}

/// The topic of the second camera of `--interleave` in modes without frame ids.
fn second_camera(topic: &str) -> String {
    format!("{topic}-2")
}

/// What `split` takes as the frame id: the frame number, or for `header-blocks` the file's name.
fn id_for(mode: Mode, file_name: &str, frame: &str) -> String {
    match mode {
        Mode::HeaderBlocks => file_name.to_owned(),
        _ => frame.to_owned(),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned())
}

/// How many messages `split` makes of a `len`-byte frame.
fn messages_per_frame(mode: Mode, len: usize, chunk_bytes: usize) -> u64 {
    let pieces = len.div_ceil(chunk_bytes.max(1)).max(1) as u64;
    match mode {
        Mode::None => 1,
        Mode::StartDataEnd => pieces + 2,
        Mode::HeaderBlocks => pieces + 1,
        Mode::JsonParts | Mode::TopicIndex | Mode::UntilEoi => pieces,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_count_is_what_split_makes() {
        for mode in Mode::ALL {
            for (len, chunk) in [(0, 10), (1, 10), (10, 10), (11, 10), (106_229, 2048)] {
                let bytes = vec![7u8; len];
                let made = split(
                    mode,
                    &Fields::default(),
                    "t",
                    Some("1"),
                    &bytes,
                    chunk,
                    Pieces::Raw,
                );
                assert_eq!(
                    messages_per_frame(mode, len, chunk),
                    made.len() as u64,
                    "{mode} {len} {chunk}"
                );
            }
        }
    }

    #[test]
    fn alternating_takes_one_of_each_then_the_rest() {
        assert_eq!(alternate(vec![1, 3, 5, 6], vec![2, 4]), [1, 2, 3, 4, 5, 6]);
        assert_eq!(alternate(vec![1], Vec::new()), [1]);
    }
}
