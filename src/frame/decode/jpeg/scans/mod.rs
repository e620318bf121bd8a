//! Scan headers (SOS) checked against their frame and the Huffman tables defined before them, as
//! libjpeg-turbo checks them: what it refuses (nothing valid can be decoded) is refused, what it warns
//! about gets a [`Decoded::warnings`](crate::frame::decode::Decoded::warnings) entry, because zune-jpeg
//! decodes all of it without a word, into pixels far from libjpeg's.
//!
//! Also refuses valid codings zune-jpeg 0.5.15 decodes to garbage: sequential frames with
//! vertically subsampled components coded in separate scans (zune-image issue #419, fixed upstream
//! only in a pre-release that cannot be used next to the `image` crate's requirement), or one MCU
//! wide and more than one high, or in more than two scans, and sequential scans that interleave
//! some but not all components when their sampling differs (`fixtures/conformance/sweep.py` found
//! them; some of these refusals are conservative, see [`Scans::finish`]).

use crate::frame::decode::{DecodeError, Warnings};

use super::entropy::Specs;
use super::markers::Frame;

/// What the scans of one frame have done so far.
pub(super) struct Scans {
    /// Per frame component, per coefficient: the successive-approximation bit (Al) of the last
    /// progressive scan that coded it; -1 before any.
    progression: Vec<[i8; 64]>,
    /// A progression out of sequence was reported: one warning per frame.
    progression_warned: bool,
    /// The fewest components one scan covered.
    fewest_components: usize,
    /// Scans seen.
    count: usize,
}

/// The parsed SOS payload: (component id, table selectors) per component, then Ss, Se, Ah, Al.
struct Header<'a> {
    selectors: &'a [u8],
    ss: u8,
    se: u8,
    ah: u8,
    al: u8,
}

impl Scans {
    pub(super) fn new(frame: &Frame) -> Self {
        Self {
            progression: vec![[-1; 64]; frame.components.len()],
            progression_warned: false,
            fewest_components: usize::MAX,
            count: 0,
        }
    }

    /// Checks scan `index` (from 1), whose segment starts at `at` with payload `sos`.
    pub(super) fn check(
        &mut self,
        frame: &Frame,
        sos: &[u8],
        (index, at): (usize, usize),
        specs: &Specs<'_>,
        warnings: &mut Warnings,
    ) -> Result<(), DecodeError> {
        let malformed = |detail: String| DecodeError::Malformed { offset: at, detail };
        let header = parse(sos).ok_or_else(|| {
            malformed(format!(
                "scan {index} has a header of {} bytes, too short or declaring 0 or over 4 components",
                sos.len()
            ))
        })?;
        let Header { ss, se, ah, al, .. } = header;
        let count = header.selectors.len() / 2;
        self.fewest_components = self.fewest_components.min(count);
        self.count += 1;
        let mut positions = Vec::with_capacity(count);
        for pair in header.selectors.chunks_exact(2) {
            let (id, tables) = (pair[0], pair[1]);
            let position = frame
                .components
                .iter()
                .position(|c| c.0 == id)
                .ok_or_else(|| {
                    malformed(format!(
                        "scan {index} names component {id}, which the frame header does not declare"
                    ))
                })?;
            positions.push(position);
            // Which tables the scan decodes with: a DC refinement scan uses none, a progressive
            // AC scan only its AC table.
            let dc = !frame.progressive || (ss == 0 && ah == 0);
            let ac = !frame.progressive || ss > 0;
            for (used, class, name, table) in
                [(dc, 0, "dc", tables >> 4), (ac, 1, "ac", tables & 0x0f)]
            {
                if used && !specs.defines(class, table) {
                    return Err(malformed(format!(
                        "scan {index} uses {name} huffman table {table} of component {id}, \
                         which no DHT segment before it defines"
                    )));
                }
            }
        }
        if frame.huffman_sequential {
            partial_mixed_scan(frame, &positions, (index, at))?;
        }
        if frame.progressive {
            if let Some(why) = illegal_progression(&header, count) {
                return Err(malformed(format!(
                    "scan {index} has illegal progressive parameters Ss={ss} Se={se} Ah={ah} Al={al} \
                     ({why})"
                )));
            }
            self.follow_progression(frame, &header, &positions, (index, at), warnings);
        } else if (ss, se, ah, al) != (0, 63, 0, 0) {
            warnings.push(|| {
                format!(
                    "scan {index} at offset {at} has spectral selection {ss}-{se} and successive \
                     approximation {ah}/{al}, not 0-63 and 0/0 as a sequential jpeg must: \
                     decoded as sequential, as libjpeg does"
                )
            });
        }
        Ok(())
    }

    /// Warns, as libjpeg does, when a progressive scan refines coefficients no earlier scan coded
    /// to that bit, or codes AC coefficients before the DC one.
    fn follow_progression(
        &mut self,
        frame: &Frame,
        header: &Header<'_>,
        positions: &[usize],
        (index, at): (usize, usize),
        warnings: &mut Warnings,
    ) {
        let Header { ss, se, ah, al, .. } = *header;
        for &position in positions {
            let Some(bits) = self.progression.get_mut(position) else {
                continue;
            };
            let mut wrong = None;
            if ss > 0 && bits[0] < 0 {
                wrong = Some((0, -1));
            }
            let first = usize::from(ss);
            for (k, bit) in bits
                .iter_mut()
                .enumerate()
                .take(usize::from(se) + 1)
                .skip(first)
            {
                let expected = (*bit).max(0);
                if wrong.is_none() && i16::from(ah) != i16::from(expected) {
                    wrong = Some((k, expected));
                }
                // Al ≤ 13, checked before.
                *bit = i8::try_from(al).unwrap_or(i8::MAX);
            }
            if let Some((k, expected)) = wrong
                && !self.progression_warned
            {
                self.progression_warned = true;
                let id = frame.components[position].0;
                warnings.push(|| {
                    let was = if expected < 0 {
                        "no dc scan came before it".to_owned()
                    } else {
                        format!("expected Ah={expected}")
                    };
                    format!(
                        "scan {index} at offset {at} is out of progression sequence for component \
                         {id}, coefficient {k} (Ah={ah}, {was}); its pixels may be off"
                    )
                });
            }
        }
    }

    /// Refuses, once all scans are seen, the codings zune-jpeg garbles (see the module doc).
    pub(super) fn finish(&self, frame: &Frame) -> Result<(), DecodeError> {
        let count = frame.components.len();
        if !frame.huffman_sequential || count < 2 || self.fewest_components >= count {
            return Ok(());
        }
        let vertical = frame.components.iter().any(|c| c.2 > 1);
        let sampling = frame
            .components
            .iter()
            .map(|&(_, h, v)| format!("{h}x{v}"))
            .collect::<Vec<_>>()
            .join(",");
        // One MCU wide, more than one high: garbage in a cjpeg sweep of scan scripts and sizes
        // (mean difference up to ~40, e.g. 21x36 4:1:1 in a scan per component), whatever the
        // sampling; wider images and one MCU row decode right.
        let h_max = frame.components.iter().map(|c| c.1).max().unwrap_or(1);
        let v_max = frame.components.iter().map(|c| c.2).max().unwrap_or(1);
        let (width, height) = (frame.width, frame.height);
        if !vertical && width <= 8 * u16::from(h_max) && height > 8 * u16::from(v_max) {
            return Err(DecodeError::Unsupported {
                feature: format!(
                    "non-interleaved JPEG one MCU wide ({width}x{height}, sampling {sampling}, a \
                     scan of {} of the {count} components; zune-jpeg 0.5.15 decodes it to garbage)",
                    self.fewest_components
                ),
            });
        }
        if vertical {
            return Err(DecodeError::Unsupported {
                feature: format!(
                    "non-interleaved JPEG with vertically subsampled chroma (sampling {sampling}, \
                     a scan of {} of the {count} components; zune-jpeg 0.5.15 decodes it to \
                     garbage, zune-image issue #419)",
                    self.fewest_components
                ),
            });
        }
        // A scan between the first and the last (Y, Cb, Cr each in its own scan): zune-jpeg
        // loses the last MCU row of that scan (its component ~115 off there) in most files of a
        // cjpeg sweep, and more the more compressed: 13 of 20 4:4:4 crops at quality 30, some at
        // 75. Two scans (Y then CbCr) decode right.
        if self.count > 2 {
            return Err(DecodeError::Unsupported {
                feature: format!(
                    "sequential JPEG in {} scans (sampling {sampling}; zune-jpeg 0.5.15 garbles \
                     the last rows of a scan between the first and the last)",
                    self.count
                ),
            });
        }
        Ok(())
    }
}

/// Refuses a sequential scan that interleaves some but not all components when their sampling
/// factors differ (4:2:2 coded as Y+Cb then Cr): valid, and libjpeg decodes it, but zune-jpeg 0.5.15
/// outputs garbage without an error (mean difference 83–115 from libjpeg-turbo, found by a cjpeg
/// sweep over scan scripts; a scan of one component, or of all, decodes right).
fn partial_mixed_scan(
    frame: &Frame,
    positions: &[usize],
    (index, at): (usize, usize),
) -> Result<(), DecodeError> {
    let components = positions
        .iter()
        .filter_map(|&p| frame.components.get(p))
        .collect::<Vec<_>>();
    let Some(&&(_, h, v)) = components.first() else {
        return Ok(());
    };
    let mixed = components.iter().any(|c| (c.1, c.2) != (h, v));
    if positions.len() < 2 || positions.len() >= frame.components.len() || !mixed {
        return Ok(());
    }
    let listed = components
        .iter()
        .map(|&&(id, h, v)| format!("{id} {h}x{v}"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(DecodeError::Unsupported {
        feature: format!(
            "sequential JPEG with a scan interleaving {} of its {} components, sampled \
             differently (scan {index} at offset {at}: components {listed}; zune-jpeg 0.5.15 \
             decodes it to garbage)",
            positions.len(),
            frame.components.len()
        ),
    })
}

fn parse(sos: &[u8]) -> Option<Header<'_>> {
    let count = usize::from(*sos.first()?);
    if !(1..=4).contains(&count) {
        return None;
    }
    let selectors = sos.get(1..1 + 2 * count)?;
    let &[ss, se, a] = sos.get(1 + 2 * count..4 + 2 * count)? else {
        return None;
    };
    Some(Header {
        selectors,
        ss,
        se,
        ah: a >> 4,
        al: a & 0x0f,
    })
}

/// Why a progressive scan's parameters are illegal (ITU T.81 G.1.1.1.1, libjpeg's "invalid
/// progressive parameters"), if they are.
fn illegal_progression(h: &Header<'_>, count: usize) -> Option<&'static str> {
    if h.ss == 0 && h.se != 0 {
        Some("a dc scan must end at coefficient 0")
    } else if h.ss > h.se {
        Some("the spectral selection starts after it ends")
    } else if h.se > 63 {
        Some("the spectral selection ends past coefficient 63")
    } else if h.ss > 0 && count != 1 {
        Some("an ac scan must hold one component")
    } else if h.ah != 0 && h.al + 1 != h.ah {
        Some("a refinement scan must lower the approximation bit by one")
    } else if h.al > 13 {
        Some("the approximation bit is over 13")
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
