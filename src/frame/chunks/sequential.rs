//! Unnumbered messages: `start-data-end`, `header-blocks` and `until-eoi`. A frame begins with a
//! message that says so (a start, a header, a piece starting a JPEG) and takes the data that follows
//! on its topic, in arrival order, until it ends (an end message, `file_size` bytes, the JPEG's EOI).

use serde_json::{Map, Value};

use super::base64::starts_jpeg;
use super::numbered::{kind, whole_number};
use super::pieces::{Kind, Pieces};
use super::{Arrival, Assembler, Body, Ended, Entry, Event, Frame, Key, Mode, Rest, State, report};
use crate::frame::hex_head;
use crate::frame::payload::excerpt;

/// What one message is to its frame.
enum Message {
    /// A start or a header: its announced size, or why it is not one.
    Begin {
        size: Result<Option<u64>, String>,
        meta: Option<Map<String, Value>>,
    },
    Data,
    End,
}

impl Assembler {
    pub(super) fn sequential(&mut self, mode: Mode, part: &Arrival<'_>, events: &mut Vec<Event>) {
        let (topic, message) = match classify(mode, part.topic, part.payload) {
            Ok(classified) => classified,
            Err(error) => {
                events.push(Event::Failed {
                    topic: part.topic.to_owned(),
                    error,
                    parts: vec![part.id],
                });
                return;
            }
        };
        let key = Key {
            mode,
            topic: topic.to_owned(),
            id: None,
        };
        let entry = self.take(&key);
        if part.redelivered && entry.as_ref().is_some_and(|e| e.has_print(part.print)) {
            events.push(Event::Discard { part: part.id });
            if let Some(entry) = entry {
                self.put(key, entry);
            }
            return;
        }
        let message = match message {
            // A JPEG's start inside a segment of the open frame (an EXIF thumbnail) is its data.
            Message::Data
                if mode == Mode::UntilEoi
                    && begins_jpeg(part.payload)
                    && !entry.as_ref().is_some_and(Entry::inside_segment) =>
            {
                Message::Begin {
                    size: Ok(None),
                    meta: None,
                }
            }
            other => other,
        };
        match (message, entry) {
            (Message::Begin { size, meta }, entry) => {
                self.begin(key, entry, size, meta, part, events);
            }
            (
                Message::Data,
                Some(Entry {
                    since,
                    state: State::Open(mut frame),
                }),
            ) => {
                frame.add(part);
                self.advance(key, since, frame, part, events);
            }
            (
                Message::Data,
                Some(Entry {
                    since,
                    state: State::Ended(ended),
                }),
            ) if ended.rest == Rest::UntilNext => {
                events.push(Event::Discard { part: part.id });
                let state = State::Ended(ended);
                self.put(key, Entry { since, state });
            }
            (Message::Data, _) => {
                let error = orphan(mode, part.payload);
                self.fail(
                    key,
                    Frame::lone(part),
                    error,
                    Rest::UntilNext,
                    part.now,
                    events,
                );
            }
            (
                Message::End,
                Some(Entry {
                    since,
                    state: State::Open(mut frame),
                }),
            ) => {
                frame.add(part);
                self.finish(key, since, frame, part, events);
            }
            (
                Message::End,
                Some(Entry {
                    since,
                    state: State::Ended(mut ended),
                }),
            ) if ended.rest == Rest::UntilNext => {
                // The end of a frame that already failed.
                events.push(Event::Discard { part: part.id });
                ended.rest = Rest::Nothing;
                ended.prints.push(part.print);
                let state = State::Ended(ended);
                self.put(key, Entry { since, state });
            }
            (Message::End, entry) => {
                let error = "end message without a start".to_owned();
                report(&key, vec![part.id], error, events);
                // Kept, so that a redelivery of it is recognised.
                let entry = match entry {
                    Some(Entry {
                        since,
                        state: State::Ended(mut ended),
                    }) => {
                        ended.prints.push(part.print);
                        let state = State::Ended(ended);
                        Entry { since, state }
                    }
                    _ => Entry {
                        since: part.now,
                        state: State::Ended(Ended {
                            prints: vec![part.print],
                            rest: Rest::Nothing,
                        }),
                    },
                };
                self.put(key, entry);
            }
        }
    }

    /// A start, a header or a piece starting a JPEG: ends the open frame, begins a new one.
    fn begin(
        &mut self,
        key: Key,
        entry: Option<Entry>,
        size: Result<Option<u64>, String>,
        meta: Option<Map<String, Value>>,
        part: &Arrival<'_>,
        events: &mut Vec<Event>,
    ) {
        if let Some(Entry {
            state: State::Open(frame),
            ..
        }) = entry
        {
            let when = match key.mode {
                Mode::StartDataEnd => "before a new start",
                Mode::HeaderBlocks => "when a new header arrived",
                _ => "before a new start-of-image",
            };
            let error = frame.describe(when);
            report(&key, frame.parts, error, events);
        }
        let size = size.and_then(|size| self.check_begin(key.mode, size, meta.as_ref()));
        let kind = match (key.mode, &size) {
            (Mode::StartDataEnd, Ok(size)) => Kind::StartDataEnd { size: *size },
            (Mode::HeaderBlocks, Ok(size)) => Kind::HeaderBlocks {
                file_size: size.unwrap_or(0),
            },
            _ => Kind::UntilEoi,
        };
        let pieces = Pieces::new(kind);
        let mut frame = Frame::new(meta, part.payload.len(), Body::Sequential(pieces));
        frame.add(part);
        match size {
            Err(problem) => self.fail(key, frame, problem, Rest::UntilNext, part.now, events),
            Ok(_) if key.mode == Mode::UntilEoi => self.advance(key, part.now, frame, part, events),
            Ok(_) => {
                let state = State::Open(frame);
                self.put(
                    key,
                    Entry {
                        since: part.now,
                        state,
                    },
                );
            }
        }
    }

    /// The announced size, if the limits allow it.
    fn check_begin(
        &self,
        mode: Mode,
        size: Option<u64>,
        meta: Option<&Map<String, Value>>,
    ) -> Result<Option<u64>, String> {
        let limits = &self.limits;
        let what = match mode {
            Mode::HeaderBlocks => "header announces file_size",
            _ => "start announces",
        };
        if let Some(size) = size.filter(|&size| size > limits.max_frame_bytes as u64) {
            return Err(format!(
                "{what} {size} bytes, over the limit of {} (chunks.max_frame_bytes)",
                limits.max_frame_bytes
            ));
        }
        let blocks = meta
            .and_then(|meta| meta.get("num_blocks"))
            .and_then(whole_number);
        if let Some(blocks) = blocks.filter(|&blocks| blocks > limits.max_parts as u64) {
            return Err(format!(
                "header announces {blocks} blocks, over the limit of {} (chunks.max_parts)",
                limits.max_parts
            ));
        }
        Ok(size)
    }

    /// Adds a data message (already in `frame.parts`) to `frame`, then completes, fails or keeps it.
    fn advance(
        &mut self,
        key: Key,
        since: std::time::Instant,
        mut frame: Frame,
        part: &Arrival<'_>,
        events: &mut Vec<Event>,
    ) {
        let limits = self.limits;
        let count = frame.parts.len();
        let Body::Sequential(pieces) = &mut frame.body else {
            return;
        };
        let problem = match pieces.append(part.payload) {
            Err(error) => Some(error),
            Ok(()) if count > limits.max_parts => Some(format!(
                "over {} messages (chunks.max_parts)",
                limits.max_parts
            )),
            Ok(()) if pieces.bytes > limits.max_frame_bytes => Some(format!(
                "frame is over {} bytes (chunks.max_frame_bytes)",
                limits.max_frame_bytes
            )),
            Ok(()) => match pieces.kind {
                Kind::StartDataEnd { size: Some(size) } if pieces.bytes as u64 > size => Some(
                    format!("data exceeds the size announced by the start, {size} bytes"),
                ),
                Kind::HeaderBlocks { file_size } if pieces.bytes as u64 > file_size => Some(
                    format!("blocks exceed the header's file_size, {file_size} bytes"),
                ),
                _ => None,
            },
        };
        if let Some(problem) = problem {
            let error = format!("{problem} ({})", pieces.arrived());
            return self.fail(key, frame, error, Rest::UntilNext, part.now, events);
        }
        let whole = match pieces.kind {
            Kind::HeaderBlocks { file_size } => pieces.bytes as u64 == file_size,
            Kind::UntilEoi => pieces.jpeg_ended(),
            Kind::StartDataEnd { .. } => false,
        };
        if whole {
            self.finish(key, since, frame, part, events);
        } else {
            let state = State::Open(frame);
            self.put(key, Entry { since, state });
        }
    }

    /// The frame's end: its bytes, checked against what was announced.
    fn finish(
        &mut self,
        key: Key,
        since: std::time::Instant,
        mut frame: Frame,
        part: &Arrival<'_>,
        events: &mut Vec<Event>,
    ) {
        let Body::Sequential(pieces) = &mut frame.body else {
            return;
        };
        let arrived = pieces.arrived();
        let bytes = match pieces.take_bytes() {
            Ok(bytes) => bytes,
            Err(error) => return self.fail(key, frame, error, Rest::Nothing, part.now, events),
        };
        let problem = match pieces.kind {
            _ if pieces.count == 0 => Some("no data messages between start and end".to_owned()),
            Kind::StartDataEnd { size: Some(size) } if bytes.len() as u64 != size => Some(format!(
                "size mismatch: the start announced {size} bytes, {} arrived ({arrived})",
                bytes.len()
            )),
            _ if bytes.len() > self.limits.max_frame_bytes => Some(format!(
                "frame is {} bytes, over the limit of {} (chunks.max_frame_bytes)",
                bytes.len(),
                self.limits.max_frame_bytes
            )),
            _ => None,
        };
        match problem {
            Some(error) => self.fail(key, frame, error, Rest::Nothing, part.now, events),
            None => self.complete(key, since, frame, bytes, part.now, events),
        }
    }
}

impl Entry {
    /// Whether an open `until-eoi` frame is inside a segment, where a JPEG's start is data.
    fn inside_segment(&self) -> bool {
        match &self.state {
            State::Open(Frame {
                body: Body::Sequential(pieces),
                ..
            }) => pieces.inside_segment(),
            _ => false,
        }
    }
}

impl Frame {
    /// A frame of the one message `part`, that fails at once.
    fn lone(part: &Arrival<'_>) -> Self {
        let mut frame = Frame::new(None, 0, Body::Sequential(Pieces::default()));
        frame.add(part);
        frame
    }
}

/// The frame topic and what the message is, or why it is none of the mode's messages.
fn classify<'t>(mode: Mode, topic: &'t str, payload: &[u8]) -> Result<(&'t str, Message), String> {
    match mode {
        Mode::StartDataEnd => {
            let shape =
                || format!("topic {topic:?} is not {{base}}/start, {{base}}/data or {{base}}/end");
            let (base, last) = topic
                .rsplit_once('/')
                .filter(|(base, _)| !base.is_empty())
                .ok_or_else(shape)?;
            let message = match last {
                "start" => start(payload),
                "data" => Message::Data,
                "end" => Message::End,
                _ => return Err(shape()),
            };
            Ok((base, message))
        }
        Mode::HeaderBlocks => Ok((topic, header(payload).unwrap_or(Message::Data))),
        _ => Ok((topic, Message::Data)),
    }
}

/// A `{base}/start` payload: decimal text, a JSON object with `size`, or nothing.
fn start(payload: &[u8]) -> Message {
    let text = payload.trim_ascii();
    if text.is_empty() {
        return Message::Begin {
            size: Ok(None),
            meta: None,
        };
    }
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(text) {
        let size = match map.get("size") {
            None | Some(Value::Null) => Ok(None),
            Some(value) => whole_number(value)
                .map(Some)
                .ok_or_else(|| format!("the start's size is {value}, not a byte count")),
        };
        return Message::Begin {
            size,
            meta: Some(map),
        };
    }
    let size = std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "start payload \"{}\" is not a size: expected the byte count as decimal text or a \
                 JSON object with \"size\"",
                excerpt(payload)
            )
        });
    Message::Begin { size, meta: None }
}

/// A `header-blocks` header: a JSON object (blocks are binary), with a `file_size`.
fn header(payload: &[u8]) -> Option<Message> {
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(payload) else {
        return None;
    };
    let size = match map.get("file_size") {
        None => {
            let names: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
            Err(format!(
                "header has no file_size (its fields are {})",
                names.join(", ")
            ))
        }
        Some(value) => match whole_number(value) {
            Some(0) => Err("header announces file_size 0".to_owned()),
            Some(size) => Ok(Some(size)),
            None => Err(format!(
                "header's file_size is {} ({value}), not a byte count",
                kind(value)
            )),
        },
    };
    Some(Message::Begin {
        size,
        meta: Some(map),
    })
}

fn begins_jpeg(payload: &[u8]) -> bool {
    payload.starts_with(&[0xff, 0xd8, 0xff]) || starts_jpeg(payload)
}

/// Why a data message that belongs to no frame fails.
fn orphan(mode: Mode, payload: &[u8]) -> String {
    let head = if payload.len() > 8 {
        format!("{} …", hex_head(payload, 8))
    } else {
        hex_head(payload, 8)
    };
    let seen = format!("{} bytes starting {head}", payload.len());
    match mode {
        Mode::StartDataEnd => format!("data message without a start ({seen})"),
        Mode::HeaderBlocks => {
            format!("block without a header, a JSON object with file_size ({seen})")
        }
        _ => format!("piece does not start a JPEG and no frame is open ({seen})"),
    }
}
