//! Cutting a frame into the messages of a mode: what a camera of that kind sends, and what the
//! [`super::Assembler`] puts back together. `mqimg publish --chunks` uses it; the tests round-trip it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::{Fields, Mode};

/// How `start-data-end` data and `until-eoi` pieces are sent. Other modes have one form: `json-parts`
/// data is base64, `topic-index` and `header-blocks` blocks are raw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pieces {
    #[default]
    Raw,
    /// Each piece encoded on its own (padded), as firmwares encoding a buffer at a time do.
    Base64,
}

/// The messages (topic, payload) a camera using `mode` sends for `bytes`, `chunk_bytes` of them per
/// message (at least 1).
///
/// `base_topic` is the frame's topic. `frame_id` goes where the mode carries one: `json-parts`' `id`
/// (a JSON number when it is one), the `{frame_id}` level of `topic-index` (`0` when `None`), and
/// `header-blocks`' `file_name`. [`Mode::None`] is the frame as one message.
pub fn split(
    mode: Mode,
    fields: &Fields,
    base_topic: &str,
    frame_id: Option<&str>,
    bytes: &[u8],
    chunk_bytes: usize,
    pieces: Pieces,
) -> Vec<(String, Vec<u8>)> {
    let chunk_bytes = chunk_bytes.max(1);
    // An empty frame is still one message: a camera sends what it has.
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![bytes]
    } else {
        bytes.chunks(chunk_bytes).collect()
    };
    let total = chunks.len();
    let topic = || base_topic.to_owned();
    let piece = |chunk: &[u8]| match pieces {
        Pieces::Raw => chunk.to_vec(),
        Pieces::Base64 => STANDARD.encode(chunk).into_bytes(),
    };
    match mode {
        Mode::None => vec![(topic(), bytes.to_vec())],
        Mode::JsonParts => chunks
            .iter()
            .zip(u64::from(fields.first_part)..)
            .map(|(chunk, number)| {
                let mut object = Map::new();
                if let Some(id) = frame_id {
                    object.insert(fields.id.clone(), id_value(id));
                }
                object.insert(fields.part.clone(), number.into());
                object.insert(fields.total.clone(), total.into());
                object.insert(fields.data.clone(), STANDARD.encode(chunk).into());
                (topic(), Value::Object(object).to_string().into_bytes())
            })
            .collect(),
        Mode::StartDataEnd => {
            let mut messages = vec![(
                format!("{base_topic}/start"),
                bytes.len().to_string().into_bytes(),
            )];
            let data = format!("{base_topic}/data");
            messages.extend(chunks.iter().map(|chunk| (data.clone(), piece(chunk))));
            messages.push((format!("{base_topic}/end"), Vec::new()));
            messages
        }
        Mode::HeaderBlocks => {
            let mut header = Map::new();
            header.insert("file_size".into(), bytes.len().into());
            header.insert("num_blocks".into(), total.into());
            header.insert("block_size".into(), chunk_bytes.into());
            if let Some(name) = frame_id {
                header.insert("file_name".into(), name.into());
            }
            let mut messages = vec![(topic(), Value::Object(header).to_string().into_bytes())];
            messages.extend(chunks.iter().map(|chunk| (topic(), chunk.to_vec())));
            messages
        }
        Mode::TopicIndex => {
            let id = frame_id.unwrap_or("0");
            chunks
                .iter()
                .enumerate()
                .map(|(index, chunk)| {
                    (format!("{base_topic}/{id}/{index}/{total}"), chunk.to_vec())
                })
                .collect()
        }
        Mode::UntilEoi => chunks.iter().map(|chunk| (topic(), piece(chunk))).collect(),
    }
}

fn id_value(id: &str) -> Value {
    match id.parse::<u64>() {
        Ok(number) if number.to_string() == id => number.into(),
        _ => id.into(),
    }
}
