//! A Huffman-level check of the entropy-coded data of sequential Huffman JPEGs (SOF0, SOF1) and of
//! the DC first scans of progressive ones.
//!
//! Decodes every Huffman symbol of every block of a scan (DC category plus its extra bits, AC
//! run/size symbols plus theirs, up to end-of-block or coefficient 63), with stuffed `ff 00`, fill
//! bytes and restart markers, but no coefficient values, dequantisation or IDCT. It finds what libjpeg
//! reports as "corrupt JPEG data" (bad Huffman code, premature end of data segment, extraneous bytes
//! before marker), plus AC coefficients past index 63 (which libjpeg silently drops). Damage that makes
//! the decoder lose step shows as one of these, where the decoder loses step or, when the codes fall
//! back in step with a different number of blocks, at the end of the scan or restart interval; damage
//! that decodes to valid symbols in the right number (a flipped bit in a coefficient's extra bits, say)
//! cannot be found without decoding the pixels.
//!
//! Speed (the hot loop is [`Bits::block`]): one table lookup decodes all the AC symbols whose codes lie
//! in the next 12 bits (2.2 on average), the bit buffer lives in registers, refills take eight bytes at
//! a time, and tables are built once per thread ([`Table::cached`]). Measured (`entropy_check_cost`):
//! 0.4 ms for 640x480, 2.2–2.5 ms for 1920x1080 and ~7 ms for 3840x2160 at quality 85, i.e. 15–20 % on
//! top of the decode.
//!
//! Progressive AC and refinement scans are not checked: their symbols depend on every block's
//! coefficient history.
//!
//! [`tables`] builds the decoding tables from the DHT segments; [`bits`] reads the data through them.
//! Here: what the two share (the layout of a table entry), the Huffman table specifications the walk
//! collects, and [`check_scan`], which drives a scan's MCUs and words the fault it finds.

mod bits;
mod tables;
#[cfg(test)]
mod tests;

use std::ops::Range;
use std::rc::Rc;

use super::markers::Frame;
use bits::{Bits, Reader};
use tables::Table;

/// Bits looked up at once to decode a Huffman code; longer codes take [`Table::slow`].
const LOOKAHEAD: u32 = 10;

/// The coefficient-index advance of an end-of-block symbol in a [`Table::fast`] entry: ends the
/// block, and tells it from an overshoot (at most 63 + 16).
const EOB: u16 = 128;

/// Marks the [`Table::fast`] entry of a zero run of 16 (ZRL). One that runs past coefficient 63
/// ends the block, as in libjpeg, rather than counting as corrupt: no coefficient lands there.
const ZRL: u16 = 64;

/// The most bits one symbol (a 16-bit code and 15 extra bits) or a [`Table::group`] entry takes.
const MAX_SYMBOL_BITS: u32 = 31;

/// Bits looked up at once to decode several AC symbols ([`Table::group`]).
const GROUP_BITS: u32 = 12;

/// A [`Table::group`] entry (`u16`): the bits to consume (codes and extra bits of all the symbols,
/// up to 27) in bits 0–5, so that a shift by the entry needs no mask, and in bits 6–13 the
/// coefficient-index advance of all the symbols (up to 63), or for a group that ends with
/// end-of-block [`group::EOB`] plus the advance of the symbols before it (up to 62).
mod group {
    pub(super) const ADVANCE_SHIFT: u32 = 6;
    pub(super) const EOB: u32 = 128;
    /// The entry for bits that start with a code longer than [`super::GROUP_BITS`] or an invalid
    /// one: like an end-of-block group that no coefficient index can take.
    pub(super) const NONE: u16 = 255 << ADVANCE_SHIFT;
}

/// A Huffman table specification from a DHT segment: the 16 code counts (by length) and the
/// symbols.
type Spec<'a> = (&'a [u8], &'a [u8]);

/// Huffman table specifications, as the DHT segments seen so far left them.
#[derive(Default)]
pub(super) struct Specs<'a> {
    /// By class (0 = DC, 1 = AC) and id.
    tables: [[Option<Spec<'a>>; 4]; 2],
    /// A DHT segment did not parse: nothing is verified.
    broken: bool,
}

impl<'a> Specs<'a> {
    /// Records the tables of one DHT segment.
    pub(super) fn define(&mut self, mut payload: &'a [u8]) {
        while let Some((&class_id, rest)) = payload.split_first() {
            let (class, id) = (usize::from(class_id >> 4), usize::from(class_id & 0x0f));
            let Some(counts) = rest.get(..16) else {
                self.broken = true;
                return;
            };
            let total = counts.iter().map(|&c| usize::from(c)).sum::<usize>();
            match rest.get(16..16 + total) {
                Some(symbols) if class <= 1 && id <= 3 => {
                    self.tables[class][id] = Some((counts, symbols));
                }
                _ => {
                    self.broken = true;
                    return;
                }
            }
            payload = &rest[16 + total..];
        }
    }

    /// Whether a scan may use the table of `class` and `id`: defined, standard (see [`Specs::get`]),
    /// or not knowable because a DHT segment did not parse.
    pub(super) fn defines(&self, class: usize, id: u8) -> bool {
        self.broken || (id <= 3 && self.get(class, usize::from(id)).is_some())
    }

    /// The table of `class` and `id`, or the standard one of ITU T.81 K.3 (which Motion-JPEG frames
    /// leave out) for ids 0 and 1.
    fn get(&self, class: usize, id: usize) -> Option<Spec<'a>> {
        self.tables[class][id].or(match (class, id) {
            (0, 0) => Some((&STD_DC_LUMA.0, &STD_DC_LUMA.1)),
            (0, 1) => Some((&STD_DC_CHROMA.0, &STD_DC_CHROMA.1)),
            (1, 0) => Some((&STD_AC_LUMA.0, &STD_AC_LUMA.1)),
            (1, 1) => Some((&STD_AC_CHROMA.0, &STD_AC_CHROMA.1)),
            _ => None,
        })
    }
}

/// What is wrong with the data.
#[derive(Clone, Copy, Debug)]
enum Fault {
    InvalidCode,
    DcCategory(u8),
    PastIndex63,
    /// A marker (or the end of the scan) before the last MCU.
    PrematureEnd,
    /// More than a byte of data left after the last MCU of a scan or restart interval.
    Extraneous,
}

/// Decodes the Huffman symbols of the scan whose entropy-coded data is `b[data]` (`index` counts
/// scans from 1; `grid` is its MCUs as columns and rows; `sos` the SOS segment's payload) and
/// describes the first fault found. `None` when the data is sound or the scan not checkable
/// (progressive AC or refinement, undefined or broken tables).
#[expect(clippy::too_many_arguments, reason = "the walk's state, passed as is")]
pub(super) fn check_scan(
    b: &[u8],
    data: Range<usize>,
    index: usize,
    frame: &Frame,
    (cols, rows): (usize, usize),
    sos: &[u8],
    specs: &Specs<'_>,
    restart_interval: usize,
) -> Option<String> {
    if specs.broken || u32::try_from(data.end).is_err() {
        return None;
    }
    let count = usize::from(*sos.first()?);
    let selectors = sos.get(1..1 + 2 * count)?;
    let params = sos.get(1 + 2 * count..4 + 2 * count)?;
    // Progressive DC first scans are one DC difference a block; AC and refinement scans would
    // need every block's coefficient history.
    let dc_only = frame.progressive && params[..2] == [0, 0] && params[2] >> 4 == 0;
    if !dc_only && (!frame.huffman_sequential || params != [0, 63, 0]) {
        return None;
    }
    // Tables by class and id, built for those the scan uses; blocks of an MCU as table indices.
    let mut tables: Vec<Rc<Table>> = Vec::new();
    let mut built = [[usize::MAX; 4]; 2];
    let mut blocks = Vec::new();
    for selector in selectors.chunks_exact(2) {
        let &(_, h, v) = frame.components.iter().find(|c| c.0 == selector[0])?;
        let mut pair = [0; 2];
        let classes = if dc_only { 1 } else { 2 };
        for (class, id) in [(0, selector[1] >> 4), (1, selector[1] & 0x0f)]
            .into_iter()
            .take(classes)
        {
            let id = usize::from(id);
            let slot = built.get_mut(class)?.get_mut(id)?;
            if *slot == usize::MAX {
                tables.push(Table::cached(specs.get(class, id)?, class == 1)?);
                *slot = tables.len() - 1;
            }
            pair[class] = *slot;
        }
        let units = if count == 1 {
            1
        } else {
            usize::from(h) * usize::from(v)
        };
        blocks.extend(std::iter::repeat_n(pair, units));
    }
    let total = cols * rows;
    let mut reader = Reader::new(&b[..data.end], data.start);
    let mut bits = Bits::new(data.start);
    let mut left = if restart_interval == 0 {
        usize::MAX
    } else {
        restart_interval
    };
    let mut fault = None;
    'mcus: for mcu in 0..total {
        if left == 0 {
            if let Err(f) = reader.restart(&mut bits) {
                fault = Some((f, mcu));
                break;
            }
            left = restart_interval;
        }
        left -= 1;
        for &[dc, ac] in &blocks {
            let done = if dc_only {
                bits.dc_only(&mut reader, &tables[dc])
            } else {
                bits.block(&mut reader, &tables[dc], &tables[ac])
            };
            if let Err(f) = done {
                fault = Some((f, mcu));
                break 'mcus;
            }
        }
        if reader.overrun(bits) {
            fault = Some((Fault::PrematureEnd, mcu));
            break;
        }
    }
    if fault.is_none()
        && let Err(f) = reader.boundary(&mut bits)
    {
        fault = Some((f, total));
    }
    let (fault, mcu) = fault?;
    let scan = if index > 1 {
        format!(" in scan {index}")
    } else {
        String::new()
    };
    let at = format!(
        "MCU {} of {total} (row {} of {rows})",
        mcu + 1,
        mcu / cols + 1
    );
    let what = match fault {
        Fault::InvalidCode => format!(
            "invalid huffman code in {at} at byte offset {}",
            reader.offset(bits)
        ),
        Fault::DcCategory(c) => format!(
            "dc difference category {c} (over 11) in {at} at byte offset {}",
            reader.offset(bits)
        ),
        Fault::PastIndex63 => format!(
            "ac coefficients past index 63 in {at} at byte offset {}",
            reader.offset(bits)
        ),
        Fault::PrematureEnd => {
            let marker = bits.pos();
            let name = b
                .get(marker + 1)
                .map_or_else(|| "end of data".to_owned(), |m| format!("marker ff{m:02x}"));
            format!("premature end of data in {at}: {name} at byte offset {marker}")
        }
        Fault::Extraneous => {
            // The data left starts after the byte holding the fill bits.
            let from = reader.offset_of(reader.consumed(bits).div_ceil(8));
            let marker = reader.marker_after(from);
            let name = b
                .get(marker + 1)
                .map_or_else(String::new, |m| format!(" ff{m:02x}"));
            let at = format!(
                "MCU {mcu} of {total} (row {} of {rows})",
                (mcu - 1) / cols + 1
            );
            return Some(format!(
                "corrupt entropy-coded data{scan}: {} extraneous bytes after {at} at byte offset \
                 {from}, before marker{name}; blocks before it may be garbled",
                marker - from
            ));
        }
    };
    Some(format!(
        "corrupt entropy-coded data{scan}: {what}; rows below it are likely garbled"
    ))
}

/// ITU T.81 K.3, tables K.3 to K.6: (code counts by length, symbols).
const STD_DC_LUMA: ([u8; 16], [u8; 12]) = (
    [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
);
const STD_DC_CHROMA: ([u8; 16], [u8; 12]) = (
    [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
);
const STD_AC_LUMA: ([u8; 16], [u8; 162]) = (
    [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d],
    [
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
        0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
        0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3,
        0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8,
        0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ],
);
const STD_AC_CHROMA: ([u8; 16], [u8; 162]) = (
    [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
    [
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
        0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18,
        0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4,
        0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
        0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
        0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ],
);
