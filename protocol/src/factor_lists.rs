//! [`FactorLists`]: the factorizations of a chunk, kept flat.

use std::fmt;

/// The prime factors of each number of a chunk, in the chunk's order, kept
/// in one flat vector (a chunk of a million numbers is two allocations, not
/// a million).
///
/// On the wire (the `factors` field of `result`) it is one string: the lists
/// separated by `;`, each list's factors in decimal separated by single
/// spaces, an empty list (for 1) empty — `"2 2 3;;5"` is 12, 1, 5. As a
/// chunk has at least one number, `""` is one empty list.
#[derive(Clone, Default)]
pub struct FactorLists {
    factors: Vec<u128>,
    /// `ends[i]` is where list i ends in `factors`.
    ends: Vec<u32>,
    /// The text these lists were parsed from and its list separator, kept
    /// while nothing is appended: written out again (the coordinator stores
    /// every result it accepts as text) it is moved or copied, not
    /// reformatted.
    source: Option<(Box<str>, u8)>,
    /// Whether each list leaves out the number's largest prime factor, as
    /// protocol 5 workers write them: see [`FactorLists::largest_left_out`].
    largest_left_out: bool,
}

impl PartialEq for FactorLists {
    fn eq(&self, other: &Self) -> bool {
        self.factors == other.factors
            && self.ends == other.ends
            && self.largest_left_out == other.largest_left_out
    }
}

impl Eq for FactorLists {}

/// Why the `factors` text of a result could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactorListsError {
    /// Something other than a digit, one space between factors or `;`
    /// between lists.
    #[error("factor list {list}: expected digits separated by single spaces")]
    Syntax {
        /// Which list (from 0).
        list: usize,
    },
    /// A factor of 2^128 or more, or with a leading zero.
    #[error("factor list {list}: {why}")]
    Number {
        /// Which list (from 0).
        list: usize,
        /// What is wrong with it.
        why: &'static str,
    },
    /// More factors than the wire format allows.
    #[error("too many factors")]
    TooMany,
}

impl FactorLists {
    /// No lists.
    pub fn new() -> Self {
        FactorLists::default()
    }

    /// Room for `lists` lists of about `per_list` factors each.
    pub fn with_capacity(lists: usize, per_list: usize) -> Self {
        FactorLists {
            factors: Vec::with_capacity(lists.saturating_mul(per_list)),
            ends: Vec::with_capacity(lists),
            source: None,
            largest_left_out: false,
        }
    }

    /// Whether each list leaves out its number's largest prime factor
    /// (the last one): the reader restores it as the number divided by the
    /// product of the list, and there is none to restore when that is 1
    /// (so `1` and a prime both have an empty list). Workers write results
    /// this way from protocol 5 on — a chunk's largest factors are most of
    /// its digits — and the coordinator stores them so. Not on the wire:
    /// a `result`'s protocol version says which form it is in, and the
    /// decoder leaves this false.
    pub fn largest_left_out(&self) -> bool {
        self.largest_left_out
    }

    /// Marks the lists as written without (true) or with (false) each
    /// number's largest factor; see [`FactorLists::largest_left_out`].
    pub fn set_largest_left_out(&mut self, left_out: bool) {
        self.largest_left_out = left_out;
    }

    /// Appends one list.
    pub fn push(&mut self, list: &[u128]) {
        self.factors.extend_from_slice(list);
        self.close_list();
    }

    /// Appends a number's whole factorization (ascending, with
    /// multiplicity) in these lists' form: without its last, largest
    /// factor when [`FactorLists::largest_left_out`] is set.
    pub fn push_factorization(&mut self, factors: &[u128]) {
        self.push(listed(factors, self.largest_left_out));
    }

    fn close_list(&mut self) {
        self.source = None;
        // 2^32 factors would be at least 8 GiB of u128s: far beyond any
        // message limit, so the end always fits.
        self.ends.push(self.factors.len() as u32);
    }

    /// The lists without the text they were parsed from (for keeping them
    /// in memory; see [`FactorLists::write_text`]).
    pub fn without_source(mut self) -> Self {
        self.source = None;
        self
    }

    /// How many lists.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no lists.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// List `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&[u128]> {
        let end = *self.ends.get(i)? as usize;
        let start = i.checked_sub(1).map_or(0, |j| self.ends[j] as usize);
        Some(&self.factors[start..end])
    }

    /// The lists in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u128]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let list = &self.factors[start..end as usize];
            start = end as usize;
            list
        })
    }

    /// Appends the lists as text: factors separated by spaces, lists by
    /// `sep` (`;` on the wire). Lists read by [`FactorLists::parse`] copy
    /// the text they were read from instead of formatting every factor
    /// again.
    pub fn write_text(&self, out: &mut String, sep: char) {
        if let Some((text, from)) = &self.source {
            // Parsed text is in exactly this form (`parse` refuses any
            // other), up to the separator.
            if char::from(*from) == sep {
                out.push_str(text);
            } else {
                for (i, list) in text.split(char::from(*from)).enumerate() {
                    if i > 0 {
                        out.push(sep);
                    }
                    out.push_str(list);
                }
            }
            return;
        }
        let mut buf = crate::DecimalBuf::new();
        let mut sep_bytes = [0; 4];
        let sep_bytes = sep.encode_utf8(&mut sep_bytes).as_bytes();
        crate::push_ascii(out, |bytes| {
            for (i, list) in self.iter().enumerate() {
                if i > 0 {
                    bytes.extend_from_slice(sep_bytes);
                }
                crate::push_decimal_bytes(bytes, list, &mut buf);
            }
        });
    }

    /// The lists as text, like [`FactorLists::write_text`] into an empty
    /// string; lists read by [`FactorLists::parse`] with this separator hand
    /// over the text they were read from without copying it.
    pub fn into_text(self, sep: char) -> String {
        match self.source {
            Some((text, from)) if char::from(from) == sep => text.into(),
            _ => {
                let mut out = String::new();
                self.write_text(&mut out, sep);
                out
            }
        }
    }

    /// Reads lists written by [`FactorLists::write_text`] with separator
    /// `sep`: exactly one space between factors, no leading zeros.
    pub fn parse(text: &str, sep: u8) -> Result<Self, FactorListsError> {
        match FactorLists::parse_blocks(text.as_bytes(), sep) {
            Some(mut out) => {
                out.source = Some((text.into(), sep));
                Ok(out)
            }
            // Not lists: read again a factor at a time, to say what is
            // wrong where.
            None => FactorLists::parse_tokens(text, sep),
        }
    }

    /// [`FactorLists::parse`] a factor at a time: exact about what is wrong
    /// where, but a branch on each factor's end — the space or the
    /// separator after it, as random as the lists' lengths — mispredicted
    /// about once per factor.
    fn parse_tokens(text: &str, sep: u8) -> Result<Self, FactorListsError> {
        let bytes = text.as_bytes();
        let mut out = FactorLists::with_capacity(bytes.len() / 16 + 1, 4);
        let mut i = 0;
        loop {
            let list = out.len();
            // One list: empty, or factors separated by single spaces.
            if i < bytes.len() && bytes[i] != sep {
                loop {
                    // One pass: up to 19 digits (a u64) are summed while
                    // scanning; longer factors are rare and read again.
                    let start = i;
                    let (small, end) = scan_digits(bytes, i);
                    i = end;
                    let digits = &bytes[start..i];
                    if digits.is_empty() {
                        return Err(FactorListsError::Syntax { list });
                    }
                    if digits.len() > 1 && digits[0] == b'0' {
                        return Err(FactorListsError::Number {
                            list,
                            why: "leading zero",
                        });
                    }
                    let v = if digits.len() <= 19 {
                        u128::from(small)
                    } else {
                        crate::digits_value(digits).ok_or(FactorListsError::Number {
                            list,
                            why: "a factor of 2^128 or more",
                        })?
                    };
                    out.factors.push(v);
                    match bytes.get(i) {
                        Some(b' ') => i += 1,
                        Some(&b) if b == sep => break,
                        None => break,
                        Some(_) => return Err(FactorListsError::Syntax { list }),
                    }
                }
            }
            if out.factors.len() > u32::MAX as usize {
                return Err(FactorListsError::TooMany);
            }
            out.close_list();
            match bytes.get(i) {
                None => {
                    out.source = Some((text.into(), sep));
                    return Ok(out);
                }
                // `sep`: another list follows (possibly empty).
                Some(_) => i += 1,
            }
        }
    }
}

impl FactorLists {
    /// [`FactorLists::parse`] of text that is lists, `None` for any other
    /// text. Block by block of 64 bytes: first a bit per byte for each kind
    /// (digit, space, separator, `0`; [`block_masks`]), which checks the
    /// whole block's syntax with a few shifts and masks; then each factor
    /// read from the word where it starts (garbage where the block is
    /// wrong, which only the end result says), and where it goes (the same
    /// list or the next) counted, not branched on. The coordinator reads
    /// every result: a chunk of the classic seed job took 31–42 ns per
    /// number a factor at a time, 17–31 this way with the masks made eight
    /// bytes at a time, 12 with sixteen (pinned to one core, alternating).
    fn parse_blocks(bytes: &[u8], sep: u8) -> Option<Self> {
        if sep.is_ascii_digit() || sep == b' ' || u32::try_from(bytes.len()).is_err() {
            return None;
        }
        // The end of the text reads as one more separator.
        let total = bytes.len() + 1;
        let mut out = FactorLists::with_capacity(bytes.len() / 6 + 1, 2);
        // The last bit of the previous block's digits, spaces and zeros
        // that start a factor.
        let (mut digit_before, mut space_before, mut zero_began) = (0u64, 0u64, 0u64);
        let mut wrong = 0u64;
        // Where the next factor starts.
        let mut start = 0;
        let mut tail = [sep; 64];
        for block in (0..total).step_by(64) {
            let chunk: &[u8; 64] = match bytes
                .get(block..block + 64)
                .and_then(|b| <&[u8; 64]>::try_from(b).ok())
            {
                Some(chunk) => chunk,
                None => {
                    let rest = bytes.get(block..).unwrap_or_default();
                    tail[..rest.len()].copy_from_slice(rest);
                    &tail
                }
            };
            let [digits, spaces, seps, zeros] = block_masks(chunk, sep);
            let here = match total - block {
                64.. => u64::MAX,
                n => (1 << n) - 1,
            };
            let (digits, spaces, seps) = (digits & here, spaces & here, seps & here);
            let after_digit = digits << 1 | digit_before;
            let after_space = spaces << 1 | space_before;
            let zero_begins = zeros & here & !after_digit;
            // Only digits, spaces and separators; a space between two
            // digits; no digit after a factor's leading 0.
            wrong |= here & !(digits | spaces | seps);
            wrong |= spaces & !after_digit;
            wrong |= after_space & here & !digits;
            wrong |= digits & (zero_begins << 1 | zero_began);
            digit_before = digits >> 63;
            space_before = spaces >> 63;
            zero_began = zero_begins >> 63;

            let mut ends = spaces | seps;
            let found = ends.count_ones() as usize;
            out.factors.reserve(found);
            out.ends.reserve(found);
            while ends != 0 {
                let bit = ends.trailing_zeros() as usize;
                ends &= ends - 1;
                let end = block + bit;
                let len = end - start;
                let value = if len <= 8 {
                    // The bytes after the factor shifted out the top (an
                    // empty one reads as anything: it is taken back below).
                    let v = le_word(bytes, start).wrapping_sub(ONES * u64::from(b'0'));
                    u128::from(top_digits_value(v << (8 * ((8 - len) & 7))))
                } else if len <= 19 {
                    u128::from(scan_digits(bytes, start).0)
                } else if wrong == 0 {
                    // Digits only (the blocks up to this one are checked):
                    // None from 2^128 on.
                    crate::digits_value(&bytes[start..end])?
                } else {
                    return None;
                };
                // Each pushed, and taken back if it is not one (an empty
                // list; the end of a factor but not of its list).
                out.factors.push(value);
                out.factors
                    .truncate(out.factors.len() - usize::from(len == 0));
                out.ends.push(out.factors.len() as u32);
                out.ends
                    .truncate(out.ends.len() - ((spaces >> bit) & 1) as usize);
                start = end + 1;
            }
        }
        (wrong == 0).then_some(out)
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;

/// The eight bytes of `bytes` from `at` as a little-endian word, zeros
/// past the end of `bytes`.
#[inline(always)]
fn le_word(bytes: &[u8], at: usize) -> u64 {
    match bytes.get(at..at + 8) {
        Some(w) => u64::from_le_bytes(w.try_into().unwrap_or_default()),
        None => {
            let mut w = [0u8; 8];
            let tail = bytes.get(at..).unwrap_or_default();
            w[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(w)
        }
    }
}

/// Bit k set in each mask where byte k of `block` is a digit, a space,
/// `sep`, a `0`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[allow(unsafe_code)]
#[inline(always)]
fn block_masks(block: &[u8; 64], sep: u8) -> [u64; 4] {
    // SAFETY: built only for targets with SSE2 (every x86_64 one: it is
    // the baseline), so the CPU running this has it.
    unsafe { block_masks_sse2(block, sep) }
}

/// [`block_masks`] sixteen bytes to a compare: a quarter of parsing took
/// the eight-byte masks of [`block_masks_swar`] (four bits' gathering
/// multiply per word and kind).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn block_masks_sse2(block: &[u8; 64], sep: u8) -> [u64; 4] {
    use std::arch::x86_64::*;
    let all = |c: u8| _mm_set1_epi8(c as i8);
    let (zero, nine, space, sep) = (all(b'0'), all(b'9'), all(b' '), all(sep));
    let mut masks = [0u64; 4];
    for (k, lanes) in block.chunks_exact(16).enumerate() {
        let x = load_sixteen(lanes);
        let found = [
            digit_bytes(x, zero, nine),
            _mm_cmpeq_epi8(x, space),
            _mm_cmpeq_epi8(x, sep),
            _mm_cmpeq_epi8(x, zero),
        ];
        for (mask, f) in masks.iter_mut().zip(found) {
            *mask |= u64::from(_mm_movemask_epi8(f) as u16) << (16 * k);
        }
    }
    masks
}

/// The sixteen bytes from the start of `bytes` (zeros past its end) in
/// one register.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[inline]
fn load_sixteen(bytes: &[u8]) -> std::arch::x86_64::__m128i {
    std::arch::x86_64::_mm_set_epi64x(le_word(bytes, 8) as i64, le_word(bytes, 0) as i64)
}

/// All ones in each byte of `x` from `zero` to `nine` (unsigned; the same
/// byte in every lane of each), zeros elsewhere.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[inline]
fn digit_bytes(
    x: std::arch::x86_64::__m128i,
    zero: std::arch::x86_64::__m128i,
    nine: std::arch::x86_64::__m128i,
) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    _mm_and_si128(
        _mm_cmpeq_epi8(_mm_max_epu8(x, zero), x),
        _mm_cmpeq_epi8(_mm_min_epu8(x, nine), x),
    )
}

/// [`block_masks`] eight bytes at a time in a word's bits.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn block_masks_swar(block: &[u8; 64], sep: u8) -> [u64; 4] {
    let mut masks = [0u64; 4];
    for j in 0..8 {
        let w = le_word(block, 8 * j);
        masks[0] |= gather(!non_digits(w) & (ONES * 0x80)) << (8 * j);
        masks[1] |= gather(equal_bytes(w, b' ')) << (8 * j);
        masks[2] |= gather(equal_bytes(w, sep)) << (8 * j);
        masks[3] |= gather(equal_bytes(w, b'0')) << (8 * j);
    }
    masks
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn block_masks(block: &[u8; 64], sep: u8) -> [u64; 4] {
    block_masks_swar(block, sep)
}

/// Bit k set where byte k of `top_bits` has its top bit set.
#[inline(always)]
fn gather(top_bits: u64) -> u64 {
    (top_bits >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// The top bit of each byte of `word` equal to `c`, and no other bit.
#[inline(always)]
fn equal_bytes(word: u64, c: u8) -> u64 {
    let x = word ^ (ONES * u64::from(c));
    // Per byte: the low seven bits plus 0x7f carry into the top bit unless
    // zero, never into the next byte.
    !(((x & (ONES * 0x7f)) + ONES * 0x7f) | x) & (ONES * 0x80)
}

/// The top bit of each byte of `word` that is not an ASCII digit, and no
/// other bit: a digit is 3 in its high half and below 10 in its low one
/// (tested byte by byte, without carries between bytes).
#[inline(always)]
fn non_digits(word: u64) -> u64 {
    let high = (word & (ONES * 0xf0)) ^ (ONES * 0x30);
    let high_wrong = ((high & (ONES * 0x7f)) + ONES * 0x7f) | high;
    let low_wrong = ((word & (ONES * 0x0f)) + ONES * 0x06) << 3;
    (high_wrong | low_wrong) & (ONES * 0x80)
}

/// What of a number's whole factorization (ascending) its list holds:
/// all of it, or all but its last, largest factor when `largest_left_out`
/// (see [`FactorLists::largest_left_out`]).
pub(crate) fn listed(factors: &[u128], largest_left_out: bool) -> &[u128] {
    if largest_left_out {
        &factors[..factors.len().saturating_sub(1)]
    } else {
        factors
    }
}

/// Reads the run of ASCII digits at `bytes[i..]`: returns its value (exact
/// for up to 19 digits; wrapped beyond, where the caller reads it again) and
/// where the run ends. Eight bytes at a time while eight remain: a factor
/// list is mostly digits, and a byte-at-a-time loop paid a mispredicted
/// branch at the end of every factor.
#[inline]
fn scan_digits(bytes: &[u8], mut i: usize) -> (u64, usize) {
    let mut value = 0u64;
    while let Some(word) = bytes
        .get(i..i + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
    {
        let (digits, n) = leading_digits(u64::from_le_bytes(word));
        value = value.wrapping_mul(POW10[n]).wrapping_add(digits);
        i += n;
        if n < 8 {
            return (value, i);
        }
    }
    while let Some(&b) = bytes.get(i) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        value = value.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    (value, i)
}

const POW10: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// The number of ASCII digits at the start of eight little-endian bytes
/// (the first byte lowest) and their value.
#[inline]
fn leading_digits(word: u64) -> (u64, usize) {
    // Per byte x: x − '0' has its top bit set for x < '0' or x ≥ 0xB0, and
    // x + 0x46 for '9' < x < 0xBA; a digit sets neither. A byte can borrow
    // from or carry into the next one only if it is not a digit, so every
    // byte below the first non-digit reads true.
    let sub = word.wrapping_sub(ONES * b'0' as u64);
    let over = word.wrapping_add(ONES * 0x46);
    let flags = (sub | over) & (ONES * 0x80);
    let n = if flags == 0 {
        8
    } else {
        flags.trailing_zeros() as usize / 8
    };
    if n == 0 {
        return (0, 0);
    }
    // The n digits moved to the top bytes (the bytes below read as zeros),
    // then combined pairwise: 2, 4, 8 digits per lane.
    (top_digits_value(sub << (8 * (8 - n))), n)
}

/// The value of the digits (bytes of value 0–9, the first lowest) in the
/// top bytes of `v`, zeros below them: combined pairwise, 2, 4, 8 digits
/// per lane.
#[inline(always)]
fn top_digits_value(v: u64) -> u64 {
    let v = (v & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
    let v = (v & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;
    (v & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32
}

impl fmt::Debug for FactorLists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<L: AsRef<[u128]>> FromIterator<L> for FactorLists {
    fn from_iter<I: IntoIterator<Item = L>>(iter: I) -> Self {
        let mut out = FactorLists::new();
        for list in iter {
            out.push(list.as_ref());
        }
        out
    }
}

impl From<Vec<Vec<u128>>> for FactorLists {
    fn from(lists: Vec<Vec<u128>>) -> Self {
        lists.iter().collect()
    }
}

/// A factor-list text (digits, spaces and `;`, as [`FactorLists::write_text`]
/// writes it with `;`) packed two characters to a byte, the first in the
/// low half: a digit as itself, a space as 10, `;` as 11, and 15 after the
/// last character of an odd count; `None` if `text` holds any other byte.
/// Half the bytes to store: the coordinator keeps accepted results so. It
/// does not check the text's syntax, only its bytes, and
/// [`unpack_list_text`] gives back exactly `text`.
pub fn pack_list_text(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len().div_ceil(2));
    let mut sixteens = bytes.chunks_exact(16);
    for sixteen in &mut sixteens {
        out.extend_from_slice(&pack_sixteen(sixteen)?.to_le_bytes());
    }
    let mut words = sixteens.remainder().chunks_exact(8);
    for word in &mut words {
        out.extend_from_slice(&pack_eight(le_word(word, 0))?.to_le_bytes());
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b' ' => Some(10),
        b';' => Some(11),
        _ => None,
    };
    for pair in words.remainder().chunks(2) {
        let high = match pair.get(1) {
            Some(&c) => nibble(c)?,
            None => 15,
        };
        out.push(nibble(pair[0])? | high << 4);
    }
    Some(out)
}

/// Eight characters of [`pack_list_text`] (the first lowest) in four bytes;
/// `None` if one is not a digit, a space or `;`.
#[inline(always)]
fn pack_eight(w: u64) -> Option<u32> {
    if non_digits(w) & !(equal_bytes(w, b' ') | equal_bytes(w, b';')) != 0 {
        return None;
    }
    // Low half of each byte, plus 10 where bit 4 is clear (a space):
    // '0'–'9' → 0–9, ' ' → 10, ';' → 11.
    let nibbles = (w & (ONES * 0x0f)) + (!(w >> 4) & ONES) * 10;
    // Each even byte takes the odd one above it as its high half, then
    // the even bytes are gathered into the low four.
    let pairs = (nibbles | nibbles >> 4) & 0x00ff_00ff_00ff_00ff;
    let pairs = (pairs | pairs >> 8) & 0x0000_ffff_0000_ffff;
    Some((pairs | pairs >> 16) as u32)
}

/// Sixteen characters of [`pack_list_text`] in eight bytes (as
/// [`pack_eight`] twice).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[allow(unsafe_code)]
#[inline(always)]
fn pack_sixteen(chars: &[u8]) -> Option<u64> {
    // SAFETY: built only for targets with SSE2 (every x86_64 one: it is
    // the baseline), so the CPU running this has it.
    unsafe { pack_sixteen_sse2(chars) }
}

/// [`pack_sixteen`] in one register: half the work of two words' (the
/// coordinator packs every result it stores).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn pack_sixteen_sse2(chars: &[u8]) -> Option<u64> {
    use std::arch::x86_64::*;
    let x = load_sixteen(chars);
    let all = |c: u8| _mm_set1_epi8(c as i8);
    let space = _mm_cmpeq_epi8(x, all(b' '));
    let digit = digit_bytes(x, all(b'0'), all(b'9'));
    let known = _mm_or_si128(_mm_or_si128(digit, space), _mm_cmpeq_epi8(x, all(b';')));
    if _mm_movemask_epi8(known) != 0xffff {
        return None;
    }
    // As in `pack_eight`: '0'–'9' → 0–9, ' ' → 10, ';' → 11.
    let nibbles = _mm_add_epi8(_mm_and_si128(x, all(0x0f)), _mm_and_si128(space, all(10)));
    // Each 16-bit lane's high byte as its low one's high half; the lanes'
    // low bytes packed into the low eight.
    let pairs = _mm_or_si128(nibbles, _mm_srli_epi16(nibbles, 4));
    let pairs = _mm_and_si128(pairs, _mm_set1_epi16(0x00ff));
    Some(_mm_cvtsi128_si64(_mm_packus_epi16(pairs, pairs)) as u64)
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn pack_sixteen(chars: &[u8]) -> Option<u64> {
    let (low, high) = (
        pack_eight(le_word(chars, 0))?,
        pack_eight(le_word(chars, 8))?,
    );
    Some(u64::from(low) | u64::from(high) << 32)
}

/// The text [`pack_list_text`] packed; `None` if a byte holds anything
/// else.
pub fn unpack_list_text(packed: &[u8]) -> Option<String> {
    const CHARS: &[u8; 12] = b"0123456789 ;";
    let mut text = Vec::with_capacity(packed.len() * 2);
    for (i, &b) in packed.iter().enumerate() {
        let (low, high) = (usize::from(b & 15), usize::from(b >> 4));
        text.push(*CHARS.get(low)?);
        match CHARS.get(high) {
            Some(&c) => text.push(c),
            // The filler, only at the very end.
            None if high == 15 && i + 1 == packed.len() => {}
            None => return None,
        }
    }
    // Only ASCII was pushed.
    String::from_utf8(text).ok()
}

impl serde::Serialize for FactorLists {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(self.factors.len() * 8 + self.ends.len());
        self.write_text(&mut text, ';');
        s.serialize_str(&text)
    }
}

impl<'de> serde::Deserialize<'de> for FactorLists {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FactorLists;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("factor lists as text, e.g. \"2 2 3;;5\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FactorLists, E> {
                FactorLists::parse(v, b';').map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_characters_pack_as_two_words() {
        let mut rng = fastrand::Rng::with_seed(0x7061_636b);
        let alphabet = b"0123456789 ;";
        for round in 0..20_000 {
            let mut chars = [0u8; 16];
            for c in &mut chars {
                *c = alphabet[rng.usize(..alphabet.len())];
            }
            // Now and then one byte of any value.
            if round % 3 == 0 {
                chars[rng.usize(..16)] = rng.u8(..);
            }
            let two = pack_eight(le_word(&chars, 0))
                .zip(pack_eight(le_word(&chars, 8)))
                .map(|(low, high)| u64::from(low) | u64::from(high) << 32);
            assert_eq!(pack_sixteen(&chars), two, "{chars:?}");
            let known = chars.iter().all(|&c| alphabet.contains(&c));
            assert_eq!(two.is_some(), known, "{chars:?}");
        }
    }

    #[test]
    fn block_masks_are_the_bytes_kinds() {
        let mut rng = fastrand::Rng::with_seed(0x6d61_736b);
        let alphabet = b"0123456789 ;,\n/:";
        for round in 0..4000 {
            let mut block = [0u8; 64];
            for b in &mut block {
                // Mostly the lists' own bytes; any byte at all in some.
                *b = if round % 4 == 0 {
                    rng.u8(..)
                } else {
                    alphabet[rng.usize(..alphabet.len())]
                };
            }
            let sep = [b';', b'\n', 0x80, 0xff, 0x2f, 0x3a][round % 6];
            let masks = block_masks(&block, sep);
            assert_eq!(masks, block_masks_swar(&block, sep), "{block:?}");
            for (k, &b) in block.iter().enumerate() {
                let bit = |m: u64| m >> k & 1 == 1;
                assert_eq!(bit(masks[0]), b.is_ascii_digit());
                assert_eq!(bit(masks[1]), b == b' ');
                assert_eq!(bit(masks[2]), b == sep);
                assert_eq!(bit(masks[3]), b == b'0');
            }
        }
    }

    #[test]
    fn text_round_trips() {
        let cases: Vec<Vec<Vec<u128>>> = vec![
            vec![vec![]],
            vec![vec![2, 2, 3], vec![], vec![5]],
            vec![vec![], vec![]],
            vec![vec![u128::MAX, 0, 1], vec![7]],
        ];
        for lists in cases {
            let f: FactorLists = lists.iter().collect();
            let mut text = String::new();
            f.write_text(&mut text, ';');
            assert_eq!(FactorLists::parse(&text, b';'), Ok(f.clone()), "{text}");
            assert_eq!(f.iter().map(<[u128]>::to_vec).collect::<Vec<_>>(), lists);
            assert_eq!(f.len(), lists.len());
            for (i, l) in lists.iter().enumerate() {
                assert_eq!(f.get(i), Some(l.as_slice()));
            }
            assert_eq!(f.get(lists.len()), None);
        }
        let mut text = String::new();
        [[2u128, 2, 3]]
            .iter()
            .collect::<FactorLists>()
            .write_text(&mut text, ';');
        assert_eq!(text, "2 2 3");
        assert_eq!(FactorLists::parse("2 2 3;;5", b';').map(|f| f.len()), Ok(3));
        assert_eq!(FactorLists::parse("", b';').map(|f| f.len()), Ok(1));
    }

    /// The block reader takes exactly what the factor-at-a-time reader
    /// takes, and reads it the same: lists of every size, factors across
    /// block edges, and text one byte away from lists.
    #[test]
    fn both_readers_agree() {
        let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
        let mut next = move |below: u64| rng.u64(..below);
        let mut texts: Vec<String> = ["", ";", ";;", "0", "0;0 0", "9999999999999999999"]
            .map(String::from)
            .into();
        for _ in 0..3_000 {
            let lists: Vec<String> = (0..next(40))
                .map(|_| {
                    let factors: Vec<String> = (0..next(5))
                        .map(|_| {
                            let f = u128::from(next(u64::MAX)) << 64 | u128::from(next(u64::MAX));
                            // Now and then past 10^19.
                            let bits = if next(64) == 0 {
                                next(128)
                            } else {
                                64 + next(64)
                            };
                            (f >> bits).to_string()
                        })
                        .collect();
                    factors.join(" ")
                })
                .collect();
            let text = lists.join(";");
            // One byte changed, added or removed.
            let mut bytes = text.clone().into_bytes();
            let at = next(bytes.len() as u64 + 1) as usize;
            let b = b"0123456789 ;\nx0 ;"[next(16) as usize];
            match next(3) {
                0 if at < bytes.len() => bytes[at] = b,
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, b),
            }
            texts.push(text);
            texts.extend(String::from_utf8(bytes).ok());
        }
        // Every kind of fault (and of fine text) at each place around the
        // first two block edges: after a filler of lists ending in a digit.
        let filler = "12 3;5;;7 7 11".repeat(12);
        for at in 50..140 {
            let mut before = filler[..at].to_string();
            before.pop();
            before.push('7');
            for fault in [
                " ;", "  ", "; ", ";;", " 0", "0", "01", " 01", ";01", "x", " ", ";",
            ] {
                texts.push(format!("{before}{fault}5"));
                texts.push(format!("{before}{fault}"));
            }
        }
        let (mut read, mut refused) = (0, 0);
        for text in &texts {
            for sep in [b';', b'\n'] {
                let tokens = FactorLists::parse_tokens(text, sep);
                assert_eq!(FactorLists::parse(text, sep), tokens, "{text:?}");
                match FactorLists::parse_blocks(text.as_bytes(), sep) {
                    Some(lists) => {
                        assert_eq!(Ok(lists), tokens, "{text:?}");
                        read += 1;
                    }
                    None => {
                        assert!(tokens.is_err(), "{text:?}");
                        refused += 1;
                    }
                }
            }
        }
        assert!(read > 1_000 && refused > 1_000, "{read} {refused}");
    }

    #[test]
    fn parsed_lists_write_what_built_lists_write() {
        let text = |f: &FactorLists, sep: char| {
            let mut out = String::new();
            f.write_text(&mut out, sep);
            out
        };
        for (wire, parse_sep) in [
            ("", b';'),
            ("2 2 3;;5", b';'),
            (";", b';'),
            ("340282366920938463463374607431768211455;7 7", b';'),
            ("2 2 3\n\n5", b'\n'),
        ] {
            let parsed = FactorLists::parse(wire, parse_sep).expect("valid");
            let built: FactorLists = parsed.iter().collect();
            assert_eq!(parsed, built);
            for sep in [';', '\n', 'é'] {
                assert_eq!(text(&parsed, sep), text(&built, sep), "{wire:?} {sep:?}");
                assert_eq!(parsed.clone().into_text(sep), text(&built, sep));
                assert_eq!(built.clone().into_text(sep), text(&built, sep));
            }
            // Appending drops the parsed text.
            let (mut grown, mut expected) = (parsed.clone(), built.clone());
            grown.push(&[11]);
            expected.push(&[11]);
            assert_eq!(text(&grown, ';'), text(&expected, ';'));
        }
    }

    /// Whole factorizations go in whole, or without their largest factor
    /// when the lists are marked so.
    #[test]
    fn factorizations_are_pushed_in_the_lists_form() {
        let whole: [&[u128]; 5] = [&[2, 2, 3], &[], &[5], &[3, 3], &[7, u128::MAX]];
        for left_out in [false, true] {
            let mut pushed = FactorLists::new();
            pushed.set_largest_left_out(left_out);
            for f in whole {
                pushed.push_factorization(f);
            }
            let expected: Vec<&[u128]> = if left_out {
                vec![&[2, 2], &[], &[], &[3], &[7]]
            } else {
                whole.to_vec()
            };
            assert_eq!(pushed.iter().collect::<Vec<_>>(), expected);
        }
    }

    /// The eight-byte digit reader against a byte-at-a-time one: every byte
    /// value in every position after a run of digits, and random words.
    #[test]
    fn leading_digits_match_a_plain_loop() {
        fn plain(bytes: &[u8; 8]) -> (u64, usize) {
            let n = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
            let v = bytes[..n]
                .iter()
                .fold(0, |v, b| v * 10 + u64::from(b - b'0'));
            (v, n)
        }
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for len in 0..8 {
            for stop in 0..=255u8 {
                let mut w = [0u8; 8];
                for (k, b) in w.iter_mut().enumerate() {
                    *b = if k < len {
                        b'0' + (next() % 10) as u8
                    } else if k == len {
                        stop
                    } else {
                        next() as u8
                    };
                }
                assert_eq!(leading_digits(u64::from_le_bytes(w)), plain(&w), "{w:?}");
            }
        }
        for _ in 0..200_000 {
            let mut w = next().to_le_bytes();
            // Mostly digits, so that long runs occur.
            for b in &mut w {
                if next() % 4 != 0 {
                    *b = b'0' + (next() % 10) as u8;
                }
            }
            assert_eq!(leading_digits(u64::from_le_bytes(w)), plain(&w), "{w:?}");
        }
        let text = b"12345678901234567890123 7";
        assert_eq!(scan_digits(text, 0).1, 23);
        assert_eq!(scan_digits(text, 4), (5_678_901_234_567_890_123, 23));
        assert_eq!(scan_digits(text, 24), (7, 25));
    }

    #[test]
    fn malformed_text_is_refused() {
        for bad in [
            " ",
            "2  3",
            "2 ",
            " 2",
            "2;3 ",
            "2,3",
            "02",
            "2 -3",
            "2\n3",
            "x",
            "340282366920938463463374607431768211456",
        ] {
            assert!(FactorLists::parse(bad, b';').is_err(), "{bad:?}");
        }
        assert_eq!(FactorLists::parse("2\n3", b'\n').map(|f| f.len()), Ok(2));
    }

    /// List text packs two characters to a byte and unpacks to itself; any
    /// other byte, anywhere in an eight-byte word or the tail, is refused
    /// (the coordinator then stores the text as it is); bad packed bytes
    /// are refused.
    #[test]
    fn list_text_packs_to_half_and_back() {
        let mut rng = fastrand::Rng::with_seed(17);
        let mut texts = vec![String::new(), ";".into(), "7".into(), "2 2 3;;5".into()];
        for _ in 0..2_000 {
            let lists: Vec<String> = (0..rng.usize(1..12))
                .map(|_| {
                    let factors: Vec<String> = (0..rng.usize(..4))
                        .map(|_| (rng.u128(..) >> rng.u32(..127)).max(1).to_string())
                        .collect();
                    factors.join(" ")
                })
                .collect();
            texts.push(lists.join(";"));
        }
        for text in &texts {
            let packed = pack_list_text(text).expect("lists pack");
            assert_eq!(packed.len(), text.len().div_ceil(2));
            assert_eq!(unpack_list_text(&packed).as_deref(), Some(&text[..]));
        }
        let base = b"12 34;5 67;89 1;;23 4".to_vec();
        for at in 0..base.len() {
            for b in 0..=255u8 {
                let mut bytes = base.clone();
                bytes[at] = b;
                let Ok(text) = String::from_utf8(bytes) else {
                    continue;
                };
                match pack_list_text(&text) {
                    Some(packed) => assert_eq!(unpack_list_text(&packed), Some(text)),
                    None => assert!(
                        !(b.is_ascii_digit() || b == b' ' || b == b';'),
                        "{text:?} refused"
                    ),
                }
            }
        }
        for bad in [&[0xc0][..], &[0x0d], &[0xf3, 0x21], &[0x1e], &[0x21, 0xff]] {
            assert_eq!(unpack_list_text(bad), None, "{bad:?}");
        }
        assert_eq!(unpack_list_text(&[0x21, 0xf3]).as_deref(), Some("123"));
    }
}
