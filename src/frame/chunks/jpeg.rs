//! Where a JPEG ends, found while its bytes arrive piece by piece (`until-eoi`).
//!
//! `ff d9` also occurs before the end: inside an EXIF thumbnail (a whole JPEG in an APP1 segment) and
//! in any segment's raw payload. So the markers are walked: segments are skipped by their length, scan
//! data is read up to the marker ending it (`ff 00` is a stuffed byte, `ff d0`-`ff d7` are restarts),
//! and only an EOI among markers ends the image. Bytes that do not follow the JPEG structure leave the
//! walk lost; the image then ends when its bytes so far end with `ff d9`.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the SOI marker; how many of its bytes were seen.
    Start(u8),
    /// A marker's `ff` is next.
    Marker,
    /// After a marker's `ff`: its code is next (more `ff`s are fill).
    Code,
    /// A segment's length: its first byte next.
    Length {
        code: u8,
    },
    LengthLow {
        code: u8,
        high: u8,
    },
    /// Inside a segment's payload, `left` bytes to go; `scan` after SOS.
    Skip {
        left: usize,
        scan: bool,
    },
    /// Entropy-coded data.
    Scan,
    /// Entropy-coded data, just after an `ff`.
    ScanFf,
    Done,
    Lost,
}

/// The SOS marker code: its segment is followed by entropy-coded data.
const SOS: u8 = 0xda;

#[derive(Clone, Debug)]
pub(super) struct JpegEnd {
    state: State,
    /// The last two bytes fed.
    last: [u8; 2],
}

impl Default for JpegEnd {
    fn default() -> Self {
        Self {
            state: State::Start(0),
            last: [0; 2],
        }
    }
}

impl JpegEnd {
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        match bytes {
            [] => {}
            [only] => self.last = [self.last[1], *only],
            [.., a, b] => self.last = [*a, *b],
        }
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Done | State::Lost => return,
                State::Skip { left, scan } => {
                    let n = left.min(bytes.len() - i);
                    i += n;
                    self.state = match left - n {
                        0 if scan => State::Scan,
                        0 => State::Marker,
                        left => State::Skip { left, scan },
                    };
                    continue;
                }
                State::Scan => {
                    match bytes[i..].iter().position(|&b| b == 0xff) {
                        Some(at) => {
                            i += at + 1;
                            self.state = State::ScanFf;
                        }
                        None => i = bytes.len(),
                    }
                    continue;
                }
                _ => {}
            }
            let b = bytes[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::Start(0), 0xff) => State::Start(1),
                (State::Start(_), 0xd8) => State::Marker,
                (State::Marker, 0xff) => State::Code,
                (State::Code | State::ScanFf, 0xff) => self.state,
                (State::Code | State::ScanFf, 0xd9) => State::Done,
                (State::ScanFf, 0x00 | 0xd0..=0xd7) => State::Scan,
                (State::Code | State::ScanFf, 0x01 | 0xd0..=0xd7) => State::Marker,
                (State::Code | State::ScanFf, 0x00 | 0xd8) => State::Lost,
                (State::Code | State::ScanFf, code) => State::Length { code },
                (State::Length { code }, high) => State::LengthLow { code, high },
                (State::LengthLow { code, high }, low) => {
                    match usize::from(u16::from_be_bytes([high, low])).checked_sub(2) {
                        None => State::Lost,
                        Some(0) if code == SOS => State::Scan,
                        Some(0) => State::Marker,
                        Some(left) => State::Skip {
                            left,
                            scan: code == SOS,
                        },
                    }
                }
                _ => State::Lost,
            };
        }
    }

    /// Whether the bytes fed so far end the image.
    pub(super) fn ended(&self) -> bool {
        match self.state {
            State::Done => true,
            State::Lost => self.last == [0xff, 0xd9],
            _ => false,
        }
    }

    /// Whether the next byte is inside a segment's payload, where a new SOI is data.
    pub(super) fn inside_segment(&self) -> bool {
        matches!(self.state, State::Skip { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends_at(bytes: &[u8], piece: usize) -> Option<usize> {
        let mut end = JpegEnd::default();
        let mut fed = 0;
        for chunk in bytes.chunks(piece) {
            end.feed(chunk);
            fed += chunk.len();
            if end.ended() {
                return Some(fed);
            }
        }
        None
    }

    /// SOI, an APP1 segment holding a whole small JPEG, SOS with scan data (stuffing, a restart), EOI.
    fn with_thumbnail() -> Vec<u8> {
        let thumbnail = [0xff, 0xd8, 0xff, 0xd9];
        let mut bytes = vec![0xff, 0xd8, 0xff, 0xe1, 0x00, 6];
        bytes.extend_from_slice(&thumbnail);
        bytes.extend_from_slice(&[0xff, 0xda, 0x00, 0x03, 0x01]);
        bytes.extend_from_slice(&[0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56, 0xff, 0xd9]);
        bytes
    }

    #[test]
    fn the_end_is_the_eoi_marker_not_an_ff_d9_inside_a_segment() {
        let bytes = with_thumbnail();
        for piece in 1..=bytes.len() {
            let fed = ends_at(&bytes, piece);
            assert_eq!(fed, Some(bytes.len()), "pieces of {piece}");
        }
        // Cut right after the thumbnail's EOI: not the end.
        let mut end = JpegEnd::default();
        end.feed(&bytes[..10]);
        assert!(!end.ended());
        assert!(end.inside_segment() || bytes[..10].ends_with(&[0xff, 0xd9]));
    }

    #[test]
    fn real_photos_end_with_their_eoi_found_by_walking_the_markers() {
        for name in ["photo-640x480.jpg", "photo-1920x1080.jpg"] {
            let path = format!("{}/fixtures/frames/{name}", env!("CARGO_MANIFEST_DIR"));
            let photo = std::fs::read(path).expect("fixture");
            assert!(photo.ends_with(&[0xff, 0xd9]), "{name}");
            for piece in [1, 255, 256, 4096] {
                assert_eq!(
                    ends_at(&photo, piece),
                    Some(photo.len()),
                    "{name} in {piece}"
                );
            }
            let mut end = JpegEnd::default();
            end.feed(&photo);
            assert_eq!(
                end.state,
                State::Done,
                "{name}: the walk followed the structure"
            );
            assert!(ends_at(&photo[..photo.len() - 1], 4096).is_none());
        }
    }

    #[test]
    fn bytes_off_the_structure_end_at_a_trailing_ff_d9() {
        let mut end = JpegEnd::default();
        end.feed(b"not a jpeg at all \xff");
        assert!(!end.ended());
        end.feed(b"\xd9");
        assert!(end.ended());
    }
}
