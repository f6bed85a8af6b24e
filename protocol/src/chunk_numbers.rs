//! [`ChunkNumbers`]: the numbers of an `assign`, listed or as a range.

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserializer, Serializer};
use std::fmt;

/// Most numbers a range in an `assign` may hold. A listed chunk is bounded by
/// the message size; a range is a few bytes whatever its count, so the
/// decoder bounds it instead (a worker allocates its results from it).
pub const MAX_RANGE_COUNT: u64 = 1 << 22;

/// The numbers of a chunk, each 1 ≤ n < 2^128, in the order results are
/// given.
///
/// On the wire (the `numbers` field of `assign`) either a list of decimal
/// strings, `["999999999999","1000000000001"]`, or, for a slice of a range
/// job, `{"start":"999999999999","step":"2","count":50000}`: the numbers
/// `start + i·step` for `0 ≤ i < count`, with start, step and count at least
/// 1, count at most [`MAX_RANGE_COUNT`] and the last number below 2^128
/// (anything else is a malformed message). A range saves the coordinator
/// formatting, and the worker parsing, every number of the chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkNumbers {
    /// Listed one by one.
    List(Vec<u128>),
    /// `start, start + step, …`.
    Range(NumberRange),
}

/// `count` numbers `start, start + step, …` (see [`ChunkNumbers`]); valid
/// by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberRange {
    start: u128,
    step: u128,
    count: u64,
}

/// Why a range was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// start, step or count is 0.
    #[error("range start, step and count must be at least 1")]
    Zero,
    /// More than [`MAX_RANGE_COUNT`] numbers.
    #[error("range count exceeds {MAX_RANGE_COUNT}")]
    TooMany,
    /// The last number is 2^128 or more.
    #[error("the range's last number is 2^128 or more")]
    Overflow,
}

impl NumberRange {
    /// The range, if it is a valid one.
    pub fn new(start: u128, step: u128, count: u64) -> Result<Self, RangeError> {
        if start == 0 || step == 0 || count == 0 {
            return Err(RangeError::Zero);
        }
        if count > MAX_RANGE_COUNT {
            return Err(RangeError::TooMany);
        }
        u128::from(count - 1)
            .checked_mul(step)
            .and_then(|d| d.checked_add(start))
            .ok_or(RangeError::Overflow)?;
        Ok(NumberRange { start, step, count })
    }

    /// The first number.
    pub fn start(&self) -> u128 {
        self.start
    }

    /// The difference between neighbours.
    pub fn step(&self) -> u128 {
        self.step
    }

    /// How many numbers.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl ChunkNumbers {
    /// How many numbers.
    pub fn len(&self) -> usize {
        match self {
            ChunkNumbers::List(l) => l.len(),
            // At most MAX_RANGE_COUNT.
            ChunkNumbers::Range(r) => r.count as usize,
        }
    }

    /// Whether there are none (an empty list; a range never is).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<u128> {
        match self {
            ChunkNumbers::List(l) => l.get(i).copied(),
            ChunkNumbers::Range(r) => {
                // In range: start + i·step is at most the last number.
                ((i as u64) < r.count).then(|| r.start + i as u128 * r.step)
            }
        }
    }

    /// The numbers in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = u128> + '_ {
        (0..self.len()).map(|i| match self {
            ChunkNumbers::List(l) => l[i],
            ChunkNumbers::Range(r) => r.start + i as u128 * r.step,
        })
    }
}

impl From<Vec<u128>> for ChunkNumbers {
    fn from(v: Vec<u128>) -> Self {
        ChunkNumbers::List(v)
    }
}

impl From<NumberRange> for ChunkNumbers {
    fn from(r: NumberRange) -> Self {
        ChunkNumbers::Range(r)
    }
}

/// A `u128` serialized as a decimal string.
struct Dec(u128);

impl serde::Serialize for Dec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::dec::serialize(&self.0, s)
    }
}

struct Elem(u128);

impl<'de> serde::Deserialize<'de> for Elem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(crate::dec::DecVisitor).map(Elem)
    }
}

impl serde::Serialize for ChunkNumbers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ChunkNumbers::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for &n in l {
                    seq.serialize_element(&Dec(n))?;
                }
                seq.end()
            }
            ChunkNumbers::Range(r) => {
                let mut st = s.serialize_struct("NumberRange", 3)?;
                st.serialize_field("start", &Dec(r.start))?;
                st.serialize_field("step", &Dec(r.step))?;
                st.serialize_field("count", &r.count)?;
                st.end()
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for ChunkNumbers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumbersVisitor)
    }
}

struct NumbersVisitor;

impl<'de> Visitor<'de> for NumbersVisitor {
    type Value = ChunkNumbers;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a list of decimal strings or {"start":…,"step":…,"count":…}"#)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ChunkNumbers, A::Error> {
        // Cap the preallocation: the length hint comes from the peer.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Elem(n)) = seq.next_element()? {
            out.push(n);
        }
        Ok(ChunkNumbers::List(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChunkNumbers, A::Error> {
        let (mut start, mut step, mut count) = (None, None, None);
        while let Some(key) = map.next_key::<RangeField>()? {
            let dup = match key {
                RangeField::Start => start.replace(map.next_value::<Elem>()?.0).is_some(),
                RangeField::Step => step.replace(map.next_value::<Elem>()?.0).is_some(),
                RangeField::Count => count.replace(map.next_value::<u64>()?).is_some(),
            };
            if dup {
                return Err(de::Error::custom("duplicate field in range"));
            }
        }
        let start = start.ok_or_else(|| de::Error::missing_field("start"))?;
        let step = step.ok_or_else(|| de::Error::missing_field("step"))?;
        let count = count.ok_or_else(|| de::Error::missing_field("count"))?;
        NumberRange::new(start, step, count)
            .map(ChunkNumbers::Range)
            .map_err(de::Error::custom)
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum RangeField {
    Start,
    Step,
    Count,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        assert_eq!(NumberRange::new(0, 1, 1), Err(RangeError::Zero));
        assert_eq!(NumberRange::new(1, 0, 1), Err(RangeError::Zero));
        assert_eq!(NumberRange::new(1, 1, 0), Err(RangeError::Zero));
        assert_eq!(
            NumberRange::new(1, 1, MAX_RANGE_COUNT + 1),
            Err(RangeError::TooMany)
        );
        assert!(NumberRange::new(u128::MAX, 1, 1).is_ok());
        assert_eq!(NumberRange::new(u128::MAX, 1, 2), Err(RangeError::Overflow));
        assert_eq!(
            NumberRange::new(3, u128::MAX / 2, 3),
            Err(RangeError::Overflow)
        );
    }

    #[test]
    fn a_range_reads_like_the_list_it_stands_for() {
        let r = ChunkNumbers::from(NumberRange::new(u128::MAX - 8, 4, 3).expect("valid"));
        let l = ChunkNumbers::from(vec![u128::MAX - 8, u128::MAX - 4, u128::MAX]);
        assert_eq!(r.iter().collect::<Vec<_>>(), l.iter().collect::<Vec<_>>());
        assert_eq!((r.len(), r.get(2), r.get(3)), (3, Some(u128::MAX), None));
        assert_eq!((l.len(), l.get(2), l.get(3)), (3, Some(u128::MAX), None));
    }
}
