//! The data of an unnumbered frame (`start-data-end`, `header-blocks`, `until-eoi`) as it arrives:
//! read raw or as base64 (decided by the first data message), checked for a JPEG's end, joined when
//! the frame completes.

use super::base64::{Base64Stream, is_base64_text};
use super::jpeg::JpegEnd;
use crate::frame::decode::Format;

/// The data of one frame held so far, decoded, one buffer per message (joined when it completes).
#[derive(Debug, Default)]
pub(super) struct Pieces {
    pub(super) kind: Kind,
    chunks: Vec<Vec<u8>>,
    /// Decoded bytes so far.
    pub(super) bytes: usize,
    /// Data messages (blocks, pieces) so far.
    pub(super) count: u64,
    read: Read,
    /// Where the JPEG ends (`until-eoi` only).
    end: Option<JpegEnd>,
}

#[derive(Clone, Copy, Debug, Default)]
pub(super) enum Kind {
    StartDataEnd {
        size: Option<u64>,
    },
    HeaderBlocks {
        file_size: u64,
    },
    #[default]
    UntilEoi,
}

/// How the frame's data messages are read, decided by the first.
#[derive(Debug, Default)]
enum Read {
    #[default]
    Undecided,
    Raw,
    Base64(Base64Stream),
}

impl Pieces {
    pub(super) fn new(kind: Kind) -> Self {
        let end = matches!(kind, Kind::UntilEoi).then(JpegEnd::default);
        Self {
            kind,
            end,
            ..Self::default()
        }
    }

    /// Whether the next byte is inside a segment of the JPEG, where a new SOI is data.
    pub(super) fn inside_segment(&self) -> bool {
        self.end.as_ref().is_some_and(JpegEnd::inside_segment)
    }

    fn noun(&self) -> &'static str {
        match self.kind {
            Kind::StartDataEnd { .. } => "data message",
            Kind::HeaderBlocks { .. } => "block",
            Kind::UntilEoi => "piece",
        }
    }

    pub(super) fn append(&mut self, payload: &[u8]) -> Result<(), String> {
        self.count += 1;
        if matches!(self.read, Read::Undecided) {
            self.read = match self.kind {
                Kind::HeaderBlocks { .. } => Read::Raw,
                Kind::UntilEoi if payload.starts_with(&[0xff, 0xd8, 0xff]) => Read::Raw,
                Kind::UntilEoi => Read::Base64(Base64Stream::default()),
                Kind::StartDataEnd { .. }
                    if Format::sniff(payload).is_none() && is_base64_text(payload) =>
                {
                    Read::Base64(Base64Stream::default())
                }
                Kind::StartDataEnd { .. } => Read::Raw,
            };
        }
        let (noun, count) = (self.noun(), self.count);
        let decoded = match &mut self.read {
            Read::Base64(stream) => {
                let mut decoded = Vec::with_capacity(payload.len() / 4 * 3 + 3);
                stream
                    .feed(payload, &mut decoded)
                    .map_err(|e| format!("{noun} {count}: {e}"))?;
                decoded.shrink_to_fit();
                decoded
            }
            _ => payload.to_vec(),
        };
        if let Some(end) = &mut self.end {
            end.feed(&decoded);
        }
        self.bytes += decoded.len();
        if !decoded.is_empty() {
            self.chunks.push(decoded);
        }
        Ok(())
    }

    /// Whether the bytes so far end a JPEG, counting a base64 group that no piece will finish.
    pub(super) fn jpeg_ended(&self) -> bool {
        let Some(end) = &self.end else {
            return false;
        };
        match &self.read {
            _ if end.ended() => true,
            Read::Base64(stream) => {
                let mut end = end.clone();
                end.feed(&stream.tail());
                end.ended()
            }
            _ => false,
        }
    }

    /// The frame's bytes, joined.
    pub(super) fn take_bytes(&mut self) -> Result<Vec<u8>, String> {
        if let Read::Base64(stream) = &mut self.read {
            let mut tail = Vec::new();
            stream
                .finish(&mut tail)
                .map_err(|e| format!("{} {}: {e}", self.noun(), self.count))?;
            self.bytes += tail.len();
            self.chunks.push(tail);
        }
        let mut bytes = Vec::with_capacity(self.bytes);
        for chunk in self.chunks.drain(..) {
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    pub(super) fn missing(&self) -> String {
        match self.kind {
            Kind::StartDataEnd { .. } => "no end message".into(),
            Kind::HeaderBlocks { file_size } => format!("{} of {file_size} bytes", self.bytes),
            Kind::UntilEoi => "no end-of-image marker".into(),
        }
    }

    pub(super) fn arrived(&self) -> String {
        let count = self.count;
        match self.kind {
            Kind::StartDataEnd { size } => {
                let of = size.map_or_else(String::new, |size| format!(" of {size}"));
                format!(
                    "start and {} arrived, {}{of} bytes",
                    plural(count, "data message"),
                    self.bytes
                )
            }
            Kind::HeaderBlocks { .. } => format!("header and {} arrived", plural(count, "block")),
            Kind::UntilEoi => format!("{} arrived, {} bytes", plural(count, "piece"), self.bytes),
        }
    }

    pub(super) fn held_bytes(&self) -> usize {
        let chunks: usize = self.chunks.iter().map(Vec::capacity).sum();
        chunks + self.chunks.capacity() * size_of::<Vec<u8>>()
    }
}

fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}
