//! The bit reader of entropy-coded data and the hot loop that decodes a block's symbols with it.

use super::tables::Table;
use super::{EOB, Fault, GROUP_BITS, LOOKAHEAD, MAX_SYMBOL_BITS, ZRL, group};

/// The bit buffer of a [`Reader`] and its position. 16 bytes, passed and returned by value (in
/// registers), never by address, so that the hot loop keeps it in registers.
#[derive(Clone, Copy)]
pub(super) struct Bits {
    /// Bits loaded and not consumed, at the top. The bits below the `nbits` ones are zero or the
    /// bits of the bytes from `pos` on (a refill ORs them in again).
    acc: u64,
    /// The offset of the next byte to load (scans past 4 GiB are not checked) in the high half,
    /// the number of bits held (up to 63) in the low half. Two fields, not three: a pair of
    /// scalars is passed in registers.
    at: u64,
}

impl Bits {
    pub(super) fn new(pos: usize) -> Self {
        Self {
            acc: 0,
            at: (pos as u64) << 32,
        }
    }

    #[inline(always)]
    fn nbits(self) -> u32 {
        self.at as u32
    }

    #[inline(always)]
    pub(super) fn pos(self) -> usize {
        (self.at >> 32) as usize
    }

    #[inline(always)]
    fn advance(&mut self, bytes: u32, bits: u32) {
        self.at += u64::from(bytes) << 32 | u64::from(bits);
    }

    #[inline(always)]
    fn peek(self, bits: u32) -> usize {
        (self.acc >> (64 - bits)) as usize
    }

    #[inline(always)]
    fn consume(&mut self, bits: u32) {
        self.acc <<= bits;
        self.at -= u64::from(bits);
    }

    /// Decodes one symbol: its [`Table::fast`] entry.
    #[inline(always)]
    fn symbol(&mut self, reader: &mut Reader<'_>, table: &Table) -> Result<u16, Fault> {
        if self.nbits() < MAX_SYMBOL_BITS {
            *self = reader.refill(*self);
        }
        let mut e = table.fast[self.peek(LOOKAHEAD)];
        if e == 0 {
            e = table.slow(self.acc)?;
        }
        self.consume(u32::from(e & 63));
        Ok(e)
    }

    /// Decodes the one symbol (and its extra bits) a block has in a progressive DC first scan.
    pub(super) fn dc_only(&mut self, reader: &mut Reader<'_>, dc: &Table) -> Result<(), Fault> {
        *self = reader.refill(*self);
        let mut e = dc.fast[self.peek(LOOKAHEAD)];
        if e == 0 {
            e = dc.slow(self.acc)?;
        }
        self.consume(u32::from(e & 63));
        Ok(())
    }

    /// Decodes one block: a DC symbol and the AC symbols up to end-of-block or coefficient 63,
    /// several at a time ([`Table::group`]).
    ///
    /// A refill leaves 56 or more bits, a DC symbol or a group takes 27 or fewer: the hot loop
    /// refills (unconditionally: a branch on the bit count would often mispredict) once per two
    /// groups.
    #[inline(always)]
    pub(super) fn block(
        &mut self,
        reader: &mut Reader<'_>,
        dc: &Table,
        ac: &Table,
    ) -> Result<(), Fault> {
        *self = reader.refill(*self);
        let mut e = dc.fast[self.peek(LOOKAHEAD)];
        if e == 0 {
            e = dc.slow(self.acc)?;
        }
        self.consume(u32::from(e & 63));
        let mut k = 1;
        if let Some(done) = self.group(reader, ac, &mut k) {
            return done;
        }
        loop {
            *self = reader.refill(*self);
            if let Some(done) = self.group(reader, ac, &mut k) {
                return done;
            }
            if let Some(done) = self.group(reader, ac, &mut k) {
                return done;
            }
        }
    }

    /// Decodes the AC symbols of one [`Table::group`] entry, with `k` the next coefficient index;
    /// `Some` when the block ends. Needs 27 bits, and leaves 29 or more if it had 56.
    #[inline(always)]
    fn group(
        &mut self,
        reader: &mut Reader<'_>,
        ac: &Table,
        k: &mut u32,
    ) -> Option<Result<(), Fault>> {
        let e = u32::from(ac.group[self.peek(GROUP_BITS)]);
        let advance = e >> group::ADVANCE_SHIFT;
        if *k + advance < 64 {
            // `& 63` is free: a 64-bit shift takes the count modulo 64.
            self.consume(e & 63);
            *k += advance;
            return None;
        }
        self.settle(reader, ac, e, k)
    }

    /// [`Bits::group`] for an entry that ends the block, may run past its end, or starts with a
    /// long code: the entry if it ends the block, else one symbol (then a refill).
    #[inline(always)]
    fn settle(
        &mut self,
        reader: &mut Reader<'_>,
        ac: &Table,
        e: u32,
        k: &mut u32,
    ) -> Option<Result<(), Fault>> {
        let advance = e >> group::ADVANCE_SHIFT;
        if advance >= group::EOB && *k + advance - group::EOB < 64 || *k + advance == 64 {
            self.consume(e & 63);
            return Some(Ok(()));
        }
        let e = match self.symbol(reader, ac) {
            Ok(e) => u32::from(e),
            Err(fault) => return Some(Err(fault)),
        };
        *self = reader.refill(*self);
        *k += e >> 8;
        match *k {
            0..64 => None,
            64 => Some(Ok(())),
            k if k >= u32::from(EOB) || e & u32::from(ZRL) != 0 => Some(Ok(())),
            _ => Some(Err(Fault::PastIndex63)),
        }
    }
}

/// Reads the bits of entropy-coded data, most significant first, without the stuffed zero bytes,
/// into [`Bits`].
pub(super) struct Reader<'a> {
    /// The file up to the end of the scan data; offsets are file offsets.
    data: &'a [u8],
    /// [`Bits::pos`] is at a marker (its first `ff`) or the end of the data; no more bytes are
    /// loaded.
    at_marker: bool,
    /// Zero bits added past the marker: of the bits held, `nbits - pad` are real.
    pad: u32,
    /// Where the data of the current restart interval starts, and how many of the bytes since
    /// were not loaded (the `00` of a stuffed `ff 00`, fill `ff`s).
    start: usize,
    skipped: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(data: &'a [u8], start: usize) -> Self {
        Self {
            data,
            at_marker: false,
            pad: 0,
            start,
            skipped: 0,
        }
    }

    /// Tops `bits` up to 56–63 bits: eight bytes at a time when none of them is `ff`.
    #[inline(always)]
    fn refill(&mut self, mut bits: Bits) -> Bits {
        if let Some(chunk) = self
            .data
            .get(bits.pos()..)
            .and_then(|r| r.first_chunk::<8>())
        {
            let word = u64::from_be_bytes(*chunk);
            let inverted = !word;
            // Whether `inverted` has a zero byte, i.e. `word` an `ff` byte.
            if inverted.wrapping_sub(0x0101_0101_0101_0101) & !inverted & 0x8080_8080_8080_8080 == 0
            {
                let nbits = bits.nbits();
                bits.acc |= word >> nbits;
                bits.advance((63 - nbits) >> 3, 0);
                bits.at |= 56;
                return bits;
            }
        }
        self.refill_slow(bits)
    }

    /// Loads byte by byte, to 56–63 bits: unstuffs `ff 00`, skips fill `ff`s, stops at a marker and
    /// then adds zeros.
    #[inline(never)]
    fn refill_slow(&mut self, mut bits: Bits) -> Bits {
        while bits.nbits() <= 55 {
            let mut byte = None;
            if !self.at_marker {
                match self.data.get(bits.pos()..).unwrap_or_default() {
                    [0xff, 0x00, ..] => {
                        bits.advance(2, 0);
                        self.skipped += 1;
                        byte = Some(0xff);
                    }
                    [0xff, 0xff, ..] => {
                        bits.advance(1, 0);
                        self.skipped += 1;
                        continue;
                    }
                    [0xff, ..] | [] => self.at_marker = true,
                    [other, ..] => {
                        bits.advance(1, 0);
                        byte = Some(*other);
                    }
                }
            }
            match byte {
                Some(byte) => bits.acc |= u64::from(byte) << (56 - bits.nbits()),
                None => self.pad += 8,
            }
            bits.advance(0, 8);
        }
        bits
    }

    /// Whether zero bits past the data's end were consumed.
    #[inline(always)]
    pub(super) fn overrun(&self, bits: Bits) -> bool {
        bits.nbits() < self.pad
    }

    /// At the end of a scan or restart interval: at most a byte plus fill bits may be left before
    /// the marker.
    #[inline(always)]
    pub(super) fn boundary(&mut self, bits: &mut Bits) -> Result<(), Fault> {
        *bits = self.refill_slow(*bits);
        if self.overrun(*bits) {
            Err(Fault::PrematureEnd)
        } else if bits.nbits() - self.pad >= 16 {
            Err(Fault::Extraneous)
        } else {
            Ok(())
        }
    }

    /// Moves past the restart marker the reader stopped at, if it is one.
    #[inline(always)]
    pub(super) fn restart(&mut self, bits: &mut Bits) -> Result<(), Fault> {
        self.boundary(bits)?;
        if !matches!(
            self.data.get(bits.pos()..).unwrap_or_default(),
            [0xff, 0xd0..=0xd7, ..]
        ) {
            return Err(Fault::PrematureEnd);
        }
        *self = Self::new(self.data, bits.pos() + 2);
        *bits = Bits::new(bits.pos() + 2);
        Ok(())
    }

    /// Bits decoded since the start of the restart interval.
    pub(super) fn consumed(&self, bits: Bits) -> usize {
        let loaded = bits.pos() - self.start - self.skipped;
        (loaded * 8).saturating_sub(bits.nbits().saturating_sub(self.pad) as usize)
    }

    /// The file offset of data byte `bytes` of the restart interval (a stuffed `ff 00` is one).
    pub(super) fn offset_of(&self, mut bytes: usize) -> usize {
        let mut p = self.start;
        while bytes > 0 {
            match self.data.get(p..).unwrap_or_default() {
                [0xff, 0x00, ..] => p += 2,
                [0xff, 0xff, ..] => {
                    p += 1;
                    continue;
                }
                [0xff, ..] | [] => break,
                _ => p += 1,
            }
            bytes -= 1;
        }
        p
    }

    /// The file offset of the byte holding the next bit to decode.
    pub(super) fn offset(&self, bits: Bits) -> usize {
        self.offset_of(self.consumed(bits) / 8)
    }

    /// The offset of the `ff` of the marker the data runs into from `from` on (the end of the data
    /// for the marker ending the scan).
    pub(super) fn marker_after(&self, from: usize) -> usize {
        let mut p = from;
        loop {
            match self.data.get(p..).unwrap_or_default() {
                [0xff, 0x00, ..] => p += 2,
                [0xff, 0xff, ..] => p += 1,
                [0xff, ..] | [] => return p,
                _ => p += 1,
            }
        }
    }
}
