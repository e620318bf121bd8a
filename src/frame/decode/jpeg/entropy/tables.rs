//! The decoding tables built from a Huffman table specification, and the per-thread cache that builds
//! each one once.

use std::cell::RefCell;
use std::rc::Rc;

use super::{EOB, Fault, GROUP_BITS, LOOKAHEAD, Spec, ZRL, group};

/// A decoding table for one DHT table.
pub(super) struct Table {
    /// By the next [`LOOKAHEAD`] bits: the bits to consume (code plus extra bits, up to 31) in bits
    /// 0–5, [`ZRL`] for a zero run, and in AC tables the coefficient-index advance in the high byte
    /// ([`EOB`] for end-of-block). 0 for codes longer than [`LOOKAHEAD`] bits, invalid codes and DC
    /// categories over 11.
    pub(super) fast: [u16; 1 << LOOKAHEAD],
    /// AC tables: by the next [`GROUP_BITS`] bits, the run of symbols whose codes all lie in them
    /// ([`group`]).
    pub(super) group: Box<[u16; 1 << GROUP_BITS]>,
    /// By code length: the largest code of that length, -1 if none (ITU T.81 F.2.2.3).
    maxcode: [i32; 17],
    /// By code length: the index in `symbols` of a code minus the code.
    valoffset: [i32; 17],
    symbols: [u8; 256],
    ac: bool,
}

/// The [`Table::fast`] entry of a code of `len` bits for `symbol`; 0 for a DC category over 11.
fn entry(ac: bool, len: u32, symbol: u8) -> u16 {
    let len = len as u16;
    let (run, size) = (u16::from(symbol >> 4), u16::from(symbol & 0x0f));
    match (ac, size) {
        (false, _) if symbol > 11 => 0,
        (false, _) => len + u16::from(symbol),
        // A zero run of 16 (ZRL); any other run with size 0 ends the block, as in libjpeg.
        (true, 0) if run == 15 => len | ZRL | 16 << 8,
        (true, 0) => len | EOB << 8,
        (true, _) => (len + size) | (run + 1) << 8,
    }
}

/// Tables most recently built on this thread, with their class and specification (counts, then
/// symbols), least recently used first.
type Cache = Vec<(bool, Vec<u8>, Rc<Table>)>;

/// Tables kept per thread: building an AC table takes some 50 µs, and a camera sends the same
/// tables (usually the standard ones) with every frame.
const CACHED_TABLES: usize = 8;

thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Vec::new()) };
}

impl Table {
    /// The table for `spec`, from the thread's cache or built (and cached); `None` for a table
    /// whose counts over-subscribe the code space.
    pub(super) fn cached(spec: Spec<'_>, ac: bool) -> Option<Rc<Table>> {
        let (counts, symbols) = spec;
        CACHE.with_borrow_mut(|cache| {
            let found = cache.iter().position(|(class, key, _)| {
                *class == ac
                    && key.len() == 16 + symbols.len()
                    && key[..16] == *counts
                    && key[16..] == *symbols
            });
            let entry = match found {
                Some(i) => cache.remove(i),
                None => {
                    if cache.len() == CACHED_TABLES {
                        cache.remove(0);
                    }
                    (
                        ac,
                        [counts, symbols].concat(),
                        Rc::new(Table::new(spec, ac)?),
                    )
                }
            };
            let table = Rc::clone(&entry.2);
            cache.push(entry);
            Some(table)
        })
    }

    /// `None` for a table whose counts over-subscribe the code space.
    fn new((counts, symbols): Spec<'_>, ac: bool) -> Option<Table> {
        if symbols.len() > 256 {
            return None;
        }
        let mut table = Table {
            fast: [0; 1 << LOOKAHEAD],
            group: Box::new([group::NONE; 1 << GROUP_BITS]),
            maxcode: [-1; 17],
            valoffset: [0; 17],
            symbols: [0; 256],
            ac,
        };
        table.symbols[..symbols.len()].copy_from_slice(symbols);
        // By the next GROUP_BITS bits: the code's length and symbol, for codes that fit (AC only).
        let mut first = vec![(0u32, 0u8); if ac { 1 << GROUP_BITS } else { 0 }];
        let mut code = 0u32;
        let mut k = 0;
        for len in 1..=16 {
            let count = usize::from(counts[len as usize - 1]);
            table.valoffset[len as usize] = k as i32 - code as i32;
            for &symbol in &symbols[k..k + count] {
                if code >= 1 << len {
                    return None;
                }
                if len <= LOOKAHEAD {
                    let shift = LOOKAHEAD - len;
                    let start = (code << shift) as usize;
                    table.fast[start..start + (1 << shift)].fill(entry(ac, len, symbol));
                }
                if ac && len <= GROUP_BITS {
                    let shift = GROUP_BITS - len;
                    let start = (code << shift) as usize;
                    first[start..start + (1 << shift)].fill((len, symbol));
                }
                code += 1;
            }
            k += count;
            if count > 0 {
                table.maxcode[len as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        if ac {
            table.group.copy_from_slice(&groups(&first));
        }
        Some(table)
    }

    /// Decodes the code at the top of `acc` the long way: its [`Table::fast`] entry, or the fault.
    #[cold]
    #[inline(never)]
    pub(super) fn slow(&self, acc: u64) -> Result<u16, Fault> {
        let bits = (acc >> 48) as i32;
        for len in 1..=16 {
            let code = bits >> (16 - len);
            if code <= self.maxcode[len] {
                let symbol = usize::try_from(self.valoffset[len] + code)
                    .ok()
                    .and_then(|i| self.symbols.get(i))
                    .ok_or(Fault::InvalidCode)?;
                return match entry(self.ac, len as u32, *symbol) {
                    0 => Err(Fault::DcCategory(*symbol)),
                    e => Ok(e),
                };
            }
        }
        Err(Fault::InvalidCode)
    }
}

/// The [`Table::group`] entries of an AC table from `first` (by the next [`GROUP_BITS`] bits, the
/// length and symbol of the code they start with; length 0 when none fits): for every `r` up to
/// [`GROUP_BITS`], the groups of the `r`-bit numbers, from those of fewer bits.
fn groups(first: &[(u32, u8)]) -> Vec<u16> {
    // The groups of r-bit numbers v at index (1 << r) + v.
    let mut all = vec![group::NONE; 2 << GROUP_BITS];
    for room in 1..=GROUP_BITS {
        for v in 0..1u32 << room {
            let (len, symbol) = first[(v << (GROUP_BITS - room)) as usize];
            if len == 0 || len > room {
                continue;
            }
            let e = entry(true, len, symbol);
            let (used, advance) = (u32::from(e & 63), u32::from(e >> 8));
            let rest = if used < room {
                let left = room - used;
                all[(1 << left) + (v & ((1 << left) - 1)) as usize]
            } else {
                group::NONE
            };
            let rest_advance = u32::from(rest >> group::ADVANCE_SHIFT);
            // End-of-block ends a group; the rest joins while the advances stay in range.
            let (used, advance) = if advance == u32::from(EOB) {
                (used, group::EOB)
            } else if rest != group::NONE
                && advance + rest_advance
                    < if rest_advance >= group::EOB {
                        group::EOB + 63
                    } else {
                        64
                    }
            {
                (used + u32::from(rest & 63), advance + rest_advance)
            } else {
                (used, advance)
            };
            all[((1 << room) + v) as usize] = (used | advance << group::ADVANCE_SHIFT) as u16;
        }
    }
    all.split_off(1 << GROUP_BITS)
}
