//! Numbered parts: `json-parts` (number, total, optional id and base64 data in a JSON object) and
//! `topic-index` (`{base}/{frame_id}/{index}/{total}`, raw data). Their parts may arrive in any order
//! when the frame has an id; without one, in the order they were sent.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::base64::Base64Stream;
use super::{
    Arrival, Assembler, Body, Entry, Event, Fields, Frame, Key, Limits, Mode, Rest, Source, State,
    ranges, report,
};
use crate::frame::payload::excerpt;

/// The parts of one frame held so far.
#[derive(Debug)]
pub(super) struct Parts {
    total: u64,
    /// The number of the first part (`first_part`; 0 for `topic-index`).
    first: u64,
    /// No frame id: parts come in the order they were sent, so a lower number begins a new frame.
    in_order: bool,
    /// The data is base64 text, decoded when the frame is whole.
    base64: bool,
    /// By index (from 0).
    data: BTreeMap<u64, Vec<u8>>,
    bytes: usize,
}

/// What a valid part does to the frame held under its key.
enum Fit {
    /// It joins the frame.
    Joins,
    /// An identical copy of a part held.
    Copy,
    /// It begins a new frame; the held one ends, incomplete, for this reason.
    Begins(String),
}

/// One message, parsed.
struct Message {
    /// The frame's topic.
    topic: String,
    id: Option<String>,
    number: u64,
    total: u64,
    data: Vec<u8>,
    meta: Option<Map<String, Value>>,
}

impl Assembler {
    pub(super) fn numbered(
        &mut self,
        source: &Source,
        part: &Arrival<'_>,
        events: &mut Vec<Event>,
    ) {
        let mode = source.mode;
        let parsed = match mode {
            Mode::JsonParts => parse_json(&source.fields, part.topic, part.payload),
            _ => parse_topic(part.topic, part.payload),
        };
        let message = match parsed {
            Ok(message) => message,
            Err(error) => {
                events.push(Event::Failed {
                    topic: part.topic.to_owned(),
                    error,
                    parts: vec![part.id],
                });
                return;
            }
        };
        let first = match mode {
            Mode::JsonParts => u64::from(source.fields.first_part),
            _ => 0,
        };
        let in_order = message.id.is_none();
        let key = Key {
            mode,
            topic: message.topic.clone(),
            id: message.id.clone(),
        };
        let entry = match self.take(&key) {
            Some(Entry {
                since,
                state: State::Ended(mut ended),
            }) => {
                // An identical copy is a redelivery, except the first part of an id-less frame: a camera
                // sending the same picture again begins a new frame with it.
                let copy = ended.prints.contains(&part.print)
                    && (part.redelivered || !in_order || message.number != first);
                if copy || ended.rest.takes(message.number, message.total) {
                    events.push(Event::Discard { part: part.id });
                    let state = State::Ended(ended);
                    self.put(key, Entry { since, state });
                    return;
                }
                None
            }
            other => other,
        };
        let (since, mut frame) = match entry {
            Some(Entry {
                since,
                state: State::Open(frame),
            }) => (since, frame),
            _ => {
                let parts = Parts::new(message.total, first, in_order, mode == Mode::JsonParts);
                (part.now, Frame::new(None, 0, Body::Numbered(parts)))
            }
        };

        let index = match check(&message, first, &self.limits, mode) {
            Ok(index) => index,
            Err(problem) => {
                let rest = if in_order {
                    // The frame's parts after those held are its late ones, whatever this one says.
                    let held = frame.numbered().and_then(|parts| parts.numbers().last());
                    Rest::After {
                        total: message.total,
                        highest: held.unwrap_or(message.number),
                    }
                } else {
                    let held = frame.numbered().into_iter().flat_map(Parts::numbers);
                    Rest::Unseen {
                        total: message.total,
                        seen: held.chain([message.number]).collect(),
                    }
                };
                let error = match frame.numbered().filter(|parts| !parts.data.is_empty()) {
                    Some(parts) => format!("{problem} ({})", parts.arrived()),
                    None => problem,
                };
                frame.add(part);
                self.fail(key, frame, error, rest, part.now, events);
                return;
            }
        };

        let fit = frame.numbered().map_or(Fit::Joins, |parts| {
            parts.fit(index, message.total, &message.data)
        });
        match fit {
            Fit::Copy => {
                events.push(Event::Discard { part: part.id });
                let state = State::Open(frame);
                self.put(key, Entry { since, state });
                return;
            }
            Fit::Begins(why) => {
                let error = frame.describe(&format!("when {why}"));
                report(&key, frame.parts, error, events);
                let parts = Parts::new(message.total, first, in_order, mode == Mode::JsonParts);
                frame = Frame::new(None, 0, Body::Numbered(parts));
                return self.join(key, part.now, frame, index, message, part, events);
            }
            Fit::Joins => {}
        }
        self.join(key, since, frame, index, message, part, events);
    }

    /// Adds the valid part `message` to `frame`, then completes the frame, fails it, or keeps it.
    #[expect(clippy::too_many_arguments, reason = "one part and the frame it joins")]
    fn join(
        &mut self,
        key: Key,
        since: std::time::Instant,
        mut frame: Frame,
        index: u64,
        message: Message,
        part: &Arrival<'_>,
        events: &mut Vec<Event>,
    ) {
        if index == 0 {
            frame.meta_bytes = message.meta.as_ref().map_or(0, |_| part.payload.len());
            frame.meta = message.meta;
        }
        frame.add(part);
        let Body::Numbered(parts) = &mut frame.body else {
            return;
        };
        parts.bytes += message.data.len();
        parts.data.insert(index, message.data);
        let max = self.limits.max_frame_bytes;
        if parts.frame_bytes() > max {
            let error = format!(
                "frame is over {max} bytes (chunks.max_frame_bytes) at part {} ({})",
                message.number,
                parts.arrived()
            );
            let rest = parts.rest();
            return self.fail(key, frame, error, rest, part.now, events);
        }
        if !parts.is_complete() {
            let state = State::Open(frame);
            return self.put(key, Entry { since, state });
        }
        match parts.assemble() {
            Ok(bytes) if bytes.len() > max => {
                let error = format!(
                    "frame is {} bytes, over the limit of {max} (chunks.max_frame_bytes)",
                    bytes.len()
                );
                self.fail(key, frame, error, Rest::Nothing, part.now, events);
            }
            Ok(bytes) => self.complete(key, since, frame, bytes, part.now, events),
            Err(error) => self.fail(key, frame, error, Rest::Nothing, part.now, events),
        }
    }
}

impl Frame {
    fn numbered(&self) -> Option<&Parts> {
        match &self.body {
            Body::Numbered(parts) => Some(parts),
            Body::Sequential(_) => None,
        }
    }
}

impl Parts {
    fn new(total: u64, first: u64, in_order: bool, base64: bool) -> Self {
        Self {
            total,
            first,
            in_order,
            base64,
            data: BTreeMap::new(),
            bytes: 0,
        }
    }

    fn fit(&self, index: u64, total: u64, data: &[u8]) -> Fit {
        let number = self.first + index;
        if total != self.total {
            return Fit::Begins(format!("a part of {total} arrived"));
        }
        if let Some(held) = self.data.get(&index) {
            return if held == data {
                Fit::Copy
            } else {
                Fit::Begins(format!(
                    "part {number} arrived again with different content"
                ))
            };
        }
        match self.data.last_key_value() {
            Some((&highest, _)) if self.in_order && index < highest => Fit::Begins(format!(
                "part {number} arrived after part {}",
                self.first + highest
            )),
            _ => Fit::Joins,
        }
    }

    fn is_complete(&self) -> bool {
        self.data.len() as u64 == self.total
    }

    /// The frame's size so far: base64 text counts as the bytes it decodes to.
    fn frame_bytes(&self) -> usize {
        if self.base64 {
            self.bytes / 4 * 3
        } else {
            self.bytes
        }
    }

    /// The parts' data in order, decoded.
    fn assemble(&self) -> Result<Vec<u8>, String> {
        if !self.base64 {
            let mut bytes = Vec::with_capacity(self.bytes);
            for data in self.data.values() {
                bytes.extend_from_slice(data);
            }
            return Ok(bytes);
        }
        let mut bytes = Vec::with_capacity(self.bytes / 4 * 3 + 3);
        let mut stream = Base64Stream::default();
        let mut number = self.first;
        for (&index, text) in &self.data {
            number = self.first + index;
            stream
                .feed(text, &mut bytes)
                .map_err(|e| format!("part {number}: {e}"))?;
        }
        stream
            .finish(&mut bytes)
            .map_err(|e| format!("part {number}: {e}"))?;
        Ok(bytes)
    }

    /// The numbers of the parts held, as the firmware numbers them.
    fn numbers(&self) -> impl Iterator<Item = u64> + '_ {
        self.data.keys().map(|index| self.first + index)
    }

    pub(super) fn missing(&self) -> String {
        let missing: Vec<u64> = (0..self.total)
            .filter(|index| !self.data.contains_key(index))
            .map(|index| self.first + index)
            .collect();
        let noun = if missing.len() == 1 { "part" } else { "parts" };
        format!("{noun} {} of {} missing", ranges(missing), self.total)
    }

    pub(super) fn arrived(&self) -> String {
        let noun = if self.data.len() == 1 {
            "part"
        } else {
            "parts"
        };
        format!("{noun} {} arrived", ranges(self.numbers()))
    }

    pub(super) fn rest(&self) -> Rest {
        if self.in_order {
            Rest::After {
                total: self.total,
                highest: self.numbers().last().unwrap_or(self.first),
            }
        } else {
            Rest::Unseen {
                total: self.total,
                seen: self.numbers().collect(),
            }
        }
    }

    pub(super) fn held_bytes(&self) -> usize {
        self.data.values().map(Vec::capacity).sum()
    }
}

/// The part's index (from 0), or why the part cannot belong to any frame.
fn check(message: &Message, first: u64, limits: &Limits, mode: Mode) -> Result<u64, String> {
    let (number, total) = (message.number, message.total);
    if total == 0 {
        return Err(format!("part {number} of 0: a frame has at least one part"));
    }
    if total > limits.max_parts as u64 {
        return Err(format!(
            "a frame of {total} parts is over the limit of {} (chunks.max_parts)",
            limits.max_parts
        ));
    }
    match number.checked_sub(first) {
        Some(index) if index < total => Ok(index),
        _ => {
            let hint = match mode {
                Mode::JsonParts => format!(" (first_part = {first})"),
                _ => String::new(),
            };
            Err(format!(
                "part {number} of {total} is out of range: parts are numbered {first} to {}{hint}",
                first + total - 1
            ))
        }
    }
}

fn parse_json(fields: &Fields, topic: &str, payload: &[u8]) -> Result<Message, String> {
    let not = |why: String| format!("not a json-parts message: {why}");
    let value: Value = serde_json::from_slice(payload).map_err(|e| {
        not(format!(
            "invalid JSON ({} bytes, starts \"{}\"): {e}",
            payload.len(),
            excerpt(payload)
        ))
    })?;
    let Value::Object(mut map) = value else {
        return Err(not(format!("JSON {}, expected an object", kind(&value))));
    };
    let fields_of = |map: &Map<String, Value>| {
        let names: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
        names.join(", ")
    };
    let number = match map.remove(&fields.part) {
        Some(value) => whole_number(&value)
            .ok_or_else(|| not(format!("\"{}\" is {value}, not a number", fields.part)))?,
        None => {
            return Err(not(format!(
                "no \"{}\" field (its fields are {})",
                fields.part,
                fields_of(&map)
            )));
        }
    };
    let total_value = match map.remove(&fields.total) {
        Some(value) => Some((fields.total.as_str(), value)),
        None if fields.total == "total" => map.remove("total_parts").map(|v| ("total_parts", v)),
        None => None,
    };
    let total = match total_value {
        Some((name, value)) => whole_number(&value)
            .ok_or_else(|| not(format!("\"{name}\" is {value}, not a number")))?,
        None => {
            return Err(not(format!(
                "no \"{}\" field (its fields are {})",
                fields.total,
                fields_of(&map)
            )));
        }
    };
    let data = match map.remove(&fields.data) {
        Some(Value::String(text)) => without_spaces(text.into_bytes()),
        Some(other) => {
            return Err(not(format!(
                "\"{}\" is {}, expected base64 text",
                fields.data,
                kind(&other)
            )));
        }
        None => {
            return Err(not(format!(
                "no \"{}\" field (its fields are {})",
                fields.data,
                fields_of(&map)
            )));
        }
    };
    let id = match map.remove(&fields.id) {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(other) => Some(other.to_string()),
    };
    Ok(Message {
        topic: topic.to_owned(),
        id,
        number,
        total,
        data,
        meta: (!map.is_empty()).then_some(map),
    })
}

fn parse_topic(topic: &str, payload: &[u8]) -> Result<Message, String> {
    let shape = || format!("topic {topic:?} is not {{base}}/{{frame_id}}/{{index}}/{{total}}");
    let mut levels = topic.rsplitn(4, '/');
    let (Some(total), Some(index), Some(id), Some(base)) =
        (levels.next(), levels.next(), levels.next(), levels.next())
    else {
        return Err(shape());
    };
    if base.is_empty() {
        return Err(shape());
    }
    let number = |text: &str, what: &str| {
        text.parse::<u64>()
            .map_err(|_| format!("{}: {what} {text:?} is not a number", shape()))
    };
    Ok(Message {
        topic: base.to_owned(),
        id: Some(id.to_owned()),
        number: number(index, "index")?,
        total: number(total, "total")?,
        data: payload.to_vec(),
        meta: None,
    })
}

/// A whole number ≥ 0, written as a JSON number or as decimal text.
pub(super) fn whole_number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Base64 text without the line breaks and spaces some encoders put in (MIME, PEM).
fn without_spaces(mut text: Vec<u8>) -> Vec<u8> {
    if text.iter().any(u8::is_ascii_whitespace) {
        text.retain(|b| !b.is_ascii_whitespace());
    }
    text.shrink_to_fit();
    text
}
