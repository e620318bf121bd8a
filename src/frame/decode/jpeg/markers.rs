//! The marker walk: segment by segment and through each scan's entropy-coded data to the end-of-image
//! marker. It finds the frame header (so limits and unsupported codings are refused before any
//! decoder runs), truncation anywhere, broken structure, and the restart and marker anomalies that
//! become warnings; the entropy-coded data itself is left to [`entropy::check_scan`].

use std::borrow::Cow;

use super::entropy;
use super::scans::Scans;
use crate::frame::decode::limits::check_limits;
use crate::frame::decode::{DecodeError, Limits, Warnings};

/// What the walk learnt about a JPEG that reached its end-of-image marker.
pub(super) struct Header<'a> {
    pub frame: Frame,
    /// How many components the first scan holds (all of them in an interleaved sequential JPEG).
    pub first_scan_components: usize,
    /// The TIFF structure of the first `Exif` APP1 segment (after `Exif\0\0`).
    pub exif: Option<&'a [u8]>,
    pub warnings: Vec<String>,
    /// Offsets of the marker bytes of segments libjpeg ignores and zune-jpeg refuses, which the
    /// decoder gets renamed to APP15 ([`Header::for_decoder`]).
    pub ignored: Vec<usize>,
}

impl Header<'_> {
    /// The bytes to decode: `b` itself, or a copy with the [`Header::ignored`] segments renamed to
    /// APP15, which no decoder interprets (their lengths stay, so the structure does).
    pub fn for_decoder<'b>(&self, b: &'b [u8]) -> Cow<'b, [u8]> {
        if self.ignored.is_empty() {
            return Cow::Borrowed(b);
        }
        let mut copy = b.to_vec();
        for &m in &self.ignored {
            copy[m] = APP15;
        }
        Cow::Owned(copy)
    }
}

const SOI: u8 = 0xd8;
const EOI: u8 = 0xd9;
const SOS: u8 = 0xda;
const DHT: u8 = 0xc4;
const DRI: u8 = 0xdd;
const APP1: u8 = 0xe1;
const APP14: u8 = 0xee;
const APP15: u8 = 0xef;
/// An Adobe APP14 payload up to its colour transform: `Adobe`, version, flags0, flags1, transform.
const ADOBE_LEN: usize = 12;

/// The frame header (SOFn) facts the walk and the memory estimate use.
#[derive(Debug)]
pub(in crate::frame::decode) struct Frame {
    pub width: u16,
    pub height: u16,
    /// (component id, horizontal sampling, vertical sampling)
    pub components: Vec<(u8, u8, u8)>,
    /// Baseline or extended sequential with Huffman coding (SOF0, SOF1): the scans
    /// [`entropy::check_scan`] verifies.
    pub huffman_sequential: bool,
    /// Progressive (SOF2): the decoder keeps every coefficient until the last scan.
    pub progressive: bool,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Walks `b` (which starts with `ff d8 ff`) segment by segment and through each scan's entropy-coded
/// data to the end-of-image marker, verifying that data ([`entropy::check_scan`]) when `verify` is
/// set. Refuses unsupported codings and sizes over `limits` as soon as the frame header is read,
/// before the scan data is looked at.
pub(super) fn walk_with<'a>(
    b: &'a [u8],
    limits: &Limits,
    verify: bool,
) -> Result<Header<'a>, DecodeError> {
    let len = b.len();
    let truncated = |inside: String, complete: usize| DecodeError::Truncated {
        len,
        inside,
        complete,
    };
    let mut warnings = Warnings::default();
    let mut frame: Option<Frame> = None;
    let mut exif = None;
    let mut ignored = Vec::new();
    let mut restart_interval = 0;
    let mut tables = entropy::Specs::default();
    // Only the first scan found corrupt gets a warning.
    let mut verify = verify;
    let mut scans = 0;
    let mut scan_checks: Option<Scans> = None;
    let mut first_scan_components = 0;
    let mut pos = 2;
    // Just past the last complete segment or scan.
    let mut complete = 2;
    loop {
        let Some((at, m)) = next_marker(b, pos) else {
            let inside = if pos >= len {
                "right after a complete segment".to_owned()
            } else {
                format!(
                    "in {} bytes holding no marker after offset {pos}",
                    len - pos
                )
            };
            return Err(truncated(inside, complete));
        };
        if at > pos {
            warnings.push(|| {
                format!(
                    "{} extraneous bytes at offset {pos} before marker ff{:02x}",
                    at - pos,
                    b[m]
                )
            });
        }
        let marker = b[m];
        match marker {
            EOI if scans == 0 => {
                return Err(DecodeError::Malformed {
                    offset: at,
                    detail: "end-of-image marker before any scan".to_owned(),
                });
            }
            EOI => {
                let Some(frame) = frame else {
                    return Err(DecodeError::Malformed {
                        offset: at,
                        detail: "end-of-image marker before the frame header".to_owned(),
                    });
                };
                if let Some(checks) = &scan_checks {
                    checks.finish(&frame)?;
                }
                return Ok(Header {
                    frame,
                    first_scan_components,
                    exif,
                    warnings: warnings.finish(),
                    ignored,
                });
            }
            SOI | 0xd0..=0xd7 | 0x01 => {
                warnings.push(|| format!("unexpected marker ff{marker:02x} at offset {at}"));
                pos = m + 1;
                complete = pos;
                continue;
            }
            _ => {}
        }
        if m + 3 > len {
            return Err(truncated(
                format!("inside the length of segment ff{marker:02x} at offset {at}"),
                complete,
            ));
        }
        let length = usize::from(be16(b, m + 1));
        if length < 2 {
            return Err(DecodeError::Malformed {
                offset: at,
                detail: format!("segment ff{marker:02x} declares length {length}, below 2"),
            });
        }
        let end = m + 1 + length;
        if end > len {
            return Err(truncated(
                format!(
                    "inside segment ff{marker:02x} at offset {at}, which declares {length} bytes"
                ),
                complete,
            ));
        }
        let payload = &b[m + 3..end];
        match marker {
            0xc0..=0xcf if !matches!(marker, 0xc4 | 0xc8 | 0xcc) => {
                if frame.is_some() {
                    return Err(DecodeError::Malformed {
                        offset: at,
                        detail: format!("second frame header ff{marker:02x}"),
                    });
                }
                let header = frame_header(marker, at, payload, limits)?;
                if let Some(warning) = narrow_chroma(&header, at) {
                    warnings.push(|| warning);
                }
                frame = Some(header);
            }
            DHT => tables.define(payload),
            DRI => {
                if payload.len() < 2 {
                    return Err(DecodeError::Malformed {
                        offset: at,
                        detail: format!("restart interval segment of {length} bytes"),
                    });
                }
                restart_interval = usize::from(be16(payload, 0));
            }
            APP1 if exif.is_none() && payload.starts_with(b"Exif\0\0") => {
                exif = Some(&payload[6..]);
            }
            // zune-jpeg refuses the file ("Too short of a length for App14 segment"); libjpeg
            // does not recognise the segment as Adobe's, skips it and decodes (Pillow's
            // `truncated_app14.jpg`, issue 9 finding 4).
            APP14 if payload.starts_with(b"Adobe") && payload.len() < ADOBE_LEN => {
                warnings.push(|| {
                    format!(
                        "adobe segment (app14) at offset {at} declares {length} bytes, too short \
                         for its colour transform ({}): ignored, as libjpeg does",
                        ADOBE_LEN + 2
                    )
                });
                ignored.push(m);
            }
            SOS => {
                let Some(frame) = &frame else {
                    return Err(DecodeError::Malformed {
                        offset: at,
                        detail: "scan before the frame header".to_owned(),
                    });
                };
                scan_checks.get_or_insert_with(|| Scans::new(frame)).check(
                    frame,
                    payload,
                    (scans + 1, at),
                    &tables,
                    &mut warnings,
                )?;
                partial_scan_restarts(frame, payload, restart_interval, (scans + 1, at))?;
                complete = end;
                let scan = scan_data(b, end, &mut warnings).ok_or_else(|| {
                    truncated(
                        format!("inside the scan data that starts at offset {end}"),
                        complete,
                    )
                })?;
                if scan.rst_order_broken_at > 0 {
                    let offset = scan.rst_order_broken_at;
                    warnings.push(|| format!("restart markers out of sequence at offset {offset}"));
                }
                let grid = scan_grid(frame, payload);
                if let Some((cols, rows)) = grid {
                    let mcus = cols * rows;
                    let expected = match restart_interval {
                        0 => 0,
                        interval => mcus.div_ceil(interval).saturating_sub(1),
                    };
                    if scan.restarts != expected {
                        let restarts = scan.restarts;
                        warnings.push(|| {
                            format!(
                                "scan data at offset {end} has {restarts} restart markers, \
                                 expected {expected} ({mcus} mcus, restart interval {restart_interval})"
                            )
                        });
                    }
                }
                scans += 1;
                if scans == 1 {
                    first_scan_components = payload.first().map_or(0, |&n| usize::from(n));
                }
                if verify
                    && (frame.huffman_sequential || frame.progressive)
                    && let Some(grid) = grid
                    && let Some(warning) = entropy::check_scan(
                        b,
                        end..scan.end,
                        scans,
                        frame,
                        grid,
                        payload,
                        &tables,
                        restart_interval,
                    )
                {
                    warnings.push(|| warning);
                    verify = false;
                }
                pos = scan.end;
                complete = pos;
                continue;
            }
            _ => {}
        }
        pos = end;
        complete = end;
    }
}

/// Finds the next marker at or after `from`: the offset of the `ff` that starts it (fill bytes
/// included) and the offset of the marker byte. Skips stuffed `ff 00`.
fn next_marker(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut p = from;
    loop {
        let at = find_ff(b, p)?;
        let mut m = at + 1;
        while *b.get(m)? == 0xff {
            m += 1;
        }
        if b[m] != 0x00 {
            return Some((at, m));
        }
        p = m + 1;
    }
}

/// Bytes checked per step of [`find_ff`]: a fixed-size block the compiler vectorises. Measured on
/// the 1.6 MB 4K fixture: 64 → ~0.2 ms, `iter().position` alone → ~1–2 ms.
const BLOCK: usize = 64;

/// The offset of the next `ff` byte at or after `from`.
pub(super) fn find_ff(b: &[u8], from: usize) -> Option<usize> {
    let hay = b.get(from..)?;
    let mut blocks = hay.chunks_exact(BLOCK);
    let mut base = from;
    for block in &mut blocks {
        if block.iter().fold(0u8, |any, &x| any | u8::from(x == 0xff)) != 0 {
            return block.iter().position(|&x| x == 0xff).map(|i| base + i);
        }
        base += BLOCK;
    }
    blocks
        .remainder()
        .iter()
        .position(|&x| x == 0xff)
        .map(|i| base + i)
}

struct Scan {
    /// Offset of the `ff` of the marker that ends the scan.
    end: usize,
    restarts: usize,
    /// Offset of the first restart marker out of sequence; 0 when all are in order.
    rst_order_broken_at: usize,
}

/// Runs through entropy-coded data from `start` to the marker that ends it; `None` when the bytes
/// run out first. Stuffed `ff 00`, fill `ff ff` and restart markers belong to the data; markers that
/// may not follow a scan are noted as warnings and skipped.
fn scan_data(b: &[u8], start: usize, warnings: &mut Warnings) -> Option<Scan> {
    let mut p = start;
    let mut restarts = 0;
    let mut rst_order_broken_at = 0;
    loop {
        let at = find_ff(b, p)?;
        let marker = *b.get(at + 1)?;
        match marker {
            0x00 => p = at + 2,
            0xff => p = at + 1,
            0xd0..=0xd7 => {
                if usize::from(marker - 0xd0) != restarts % 8 && rst_order_broken_at == 0 {
                    rst_order_broken_at = at;
                }
                restarts += 1;
                p = at + 2;
            }
            // End of image, next scan, or the tables and segments allowed between scans.
            0xd9 | 0xda | 0xc4 | 0xdb | 0xdc | 0xdd | 0xe0..=0xef | 0xfe => {
                return Some(Scan {
                    end: at,
                    restarts,
                    rst_order_broken_at,
                });
            }
            _ => {
                warnings.push(|| {
                    format!("unexpected marker ff{marker:02x} inside scan data at offset {at}")
                });
                p = at + 2;
            }
        }
    }
}

/// Parses a frame header (SOFn) and refuses unsupported codings and sizes over `limits`.
fn frame_header(
    marker: u8,
    at: usize,
    payload: &[u8],
    limits: &Limits,
) -> Result<Frame, DecodeError> {
    let malformed = |detail: String| DecodeError::Malformed { offset: at, detail };
    let n = marker - 0xc0;
    let unsupported = match marker {
        0xc3 => Some(format!("lossless JPEG (SOF{n})")),
        0xc5..=0xc7 => Some(format!("hierarchical JPEG (SOF{n})")),
        0xc9..=0xcb | 0xcd..=0xcf => Some(format!("arithmetic-coded JPEG (SOF{n})")),
        _ => None,
    };
    if let Some(feature) = unsupported {
        return Err(DecodeError::Unsupported { feature });
    }
    if payload.len() < 6 {
        return Err(malformed(format!(
            "frame header sof{n} has {} bytes, fewer than 6",
            payload.len()
        )));
    }
    let precision = payload[0];
    if precision != 8 {
        return Err(DecodeError::Unsupported {
            feature: format!("{precision}-bit JPEG (sample precision {precision})"),
        });
    }
    let height = be16(payload, 1);
    let width = be16(payload, 3);
    let count = usize::from(payload[5]);
    if width == 0 || count == 0 {
        return Err(malformed(format!(
            "frame header declares width {width} and {count} components"
        )));
    }
    if height == 0 {
        return Err(DecodeError::Unsupported {
            feature: "JPEG with height 0 in its frame header (height in a DNL marker)".to_owned(),
        });
    }
    check_limits(u32::from(width), u32::from(height), limits)?;
    let Some(specs) = payload.get(6..6 + 3 * count) else {
        return Err(malformed(format!(
            "frame header of {} bytes is too short for {count} components",
            payload.len()
        )));
    };
    let components = specs
        .chunks_exact(3)
        .map(|c| (c[0], c[1] >> 4, c[1] & 0x0f))
        .collect::<Vec<_>>();
    if let Some(&(id, h, v)) = components
        .iter()
        .find(|&&(_, h, v)| !(1..=4).contains(&h) || !(1..=4).contains(&v))
    {
        return Err(malformed(format!(
            "component {id} has sampling factors {h}x{v}, outside 1-4"
        )));
    }
    // zune-jpeg refuses these itself, as "Horizontal sample is not a power of two(3)"; libjpeg
    // decodes them. Refused here by name, before anything is allocated.
    if let Some(&(id, h, v)) = components.iter().find(|c| !c.1.is_power_of_two()) {
        return Err(DecodeError::Unsupported {
            feature: format!("JPEG with horizontal sampling factor {h} (component {id}: {h}x{v})"),
        });
    }
    Ok(Frame {
        width,
        height,
        components,
        huffman_sequential: matches!(marker, 0xc0 | 0xc1),
        progressive: marker == 0xc2,
    })
}

/// libjpeg(-turbo) upsamples chroma halved horizontally by replication when it is at most 2 samples
/// wide, where zune-jpeg interpolates as everywhere: on images 2 to 4 pixels wide their colours
/// differ by up to ~70 (Pillow's `app13.jpg`, 4x4 4:2:0: mean 34). Both are upsamplings of the
/// right data, so a warning rather than a refusal. 1 pixel wide, both replicate.
fn narrow_chroma(frame: &Frame, at: usize) -> Option<String> {
    let h_max = frame.components.iter().map(|c| c.1).max()?;
    let width = usize::from(frame.width);
    let &(id, h, v) = frame.components.iter().find(|&&(_, h, _)| {
        h * 2 == h_max && width > 1 && width * usize::from(h) <= 2 * usize::from(h_max)
    })?;
    let samples = match (width * usize::from(h)).div_ceil(usize::from(h_max)) {
        1 => "1 sample".to_owned(),
        n => format!("{n} samples"),
    };
    Some(format!(
        "frame header at offset {at}: component {id} (sampling {h}x{v} of {h_max} horizontally) is \
         {samples} wide in a {width}-pixel-wide image: zune-jpeg interpolates it where libjpeg \
         replicates, so colours may differ from libjpeg's"
    ))
}

/// Refuses a sequential scan of some but not all of a frame's components whose restart interval
/// does not divide its MCUs (the last interval is short): valid, and libjpeg decodes it, but
/// zune-jpeg 0.5.15 outputs garbage without an error (mean difference 12–72 from libjpeg-turbo in a
/// cjpeg sweep of scan scripts and restart intervals; intervals that divide the MCUs, interleaved
/// scans and one-component frames decode right).
fn partial_scan_restarts(
    frame: &Frame,
    sos: &[u8],
    restart_interval: usize,
    (index, at): (usize, usize),
) -> Result<(), DecodeError> {
    let count = frame.components.len();
    let in_scan = sos.first().map_or(0, |&n| usize::from(n));
    if !frame.huffman_sequential || restart_interval == 0 || count < 2 || in_scan >= count {
        return Ok(());
    }
    let Some((cols, rows)) = scan_grid(frame, sos) else {
        return Ok(());
    };
    let mcus = cols * rows;
    if mcus % restart_interval == 0 {
        return Ok(());
    }
    Err(DecodeError::Unsupported {
        feature: format!(
            "sequential JPEG with a scan of {in_scan} of its {count} components whose restart \
             interval leaves a short last interval (scan {index} at offset {at}: {mcus} mcus, \
             restart interval {restart_interval}; zune-jpeg 0.5.15 decodes it to garbage)"
        ),
    })
}

/// The MCUs of a scan (ITU T.81 A.2) as (columns, rows), from its SOS header; `None` if it names
/// an unknown component.
fn scan_grid(frame: &Frame, sos: &[u8]) -> Option<(usize, usize)> {
    let (width, height) = (usize::from(frame.width), usize::from(frame.height));
    let h_max = usize::from(frame.components.iter().map(|c| c.1).max()?);
    let v_max = usize::from(frame.components.iter().map(|c| c.2).max()?);
    if *sos.first()? == 1 {
        // Non-interleaved: one data unit per MCU, over that component's own size.
        let id = *sos.get(1)?;
        let &(_, h, v) = frame.components.iter().find(|c| c.0 == id)?;
        let cols = (width * usize::from(h)).div_ceil(h_max).div_ceil(8);
        let rows = (height * usize::from(v)).div_ceil(v_max).div_ceil(8);
        Some((cols, rows))
    } else {
        Some((width.div_ceil(8 * h_max), height.div_ceil(8 * v_max)))
    }
}
