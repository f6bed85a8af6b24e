//! Which numbers of a chunk another chunk's result already answers.
//!
//! A restarted coordinator does not know the chunks it had leased (leases
//! are not stored): it cuts the numbers they held into new chunks, with new
//! ids and other bounds. A worker that factored the old chunks for the
//! connection that ended answers the new ones from those results, list by
//! list, and factors only the numbers no result holds: a restart then
//! costs the worker no work twice. (The coordinator still checks every list.)

use std::collections::HashMap;

use crowdfactor_protocol::{ChunkNumbers, NumberRange};

/// `count` numbers of a chunk from its index `at` are those of source
/// `source` from its index `from`, in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub at: usize,
    pub count: usize,
    pub source: usize,
    pub from: usize,
}

/// Where the numbers of `numbers` are found in `sources` (an earlier
/// source wins where two hold a number): spans in order, not overlapping.
/// Two ranges of one step overlap in one span, found by arithmetic; any
/// other pair is matched number by number.
pub fn plan(numbers: &ChunkNumbers, sources: &[&ChunkNumbers]) -> Vec<Span> {
    if sources.is_empty() || numbers.is_empty() {
        return Vec::new();
    }
    if let ChunkNumbers::Range(r) = numbers {
        let same_step =
            |s: &&ChunkNumbers| matches!(s, ChunkNumbers::Range(q) if q.step() == r.step());
        if sources.iter().all(same_step) {
            let mut spans: Vec<Span> = Vec::new();
            for (source, s) in sources.iter().enumerate() {
                let ChunkNumbers::Range(q) = s else { continue };
                if let Some(span) = range_overlap(r, q, source) {
                    let mut pieces = vec![span];
                    for taken in &spans {
                        pieces = pieces.into_iter().flat_map(|p| outside(p, taken)).collect();
                    }
                    spans.extend(pieces);
                }
            }
            spans.sort_by_key(|s| s.at);
            return spans;
        }
    }
    let indexes: Vec<Index> = sources.iter().map(|s| Index::new(s)).collect();
    let mut spans: Vec<Span> = Vec::new();
    for (at, n) in numbers.iter().enumerate() {
        let found = indexes
            .iter()
            .enumerate()
            .find_map(|(source, index)| Some((source, index.find(n)?)));
        let Some((source, from)) = found else {
            continue;
        };
        match spans.last_mut() {
            Some(last)
                if last.source == source
                    && last.at + last.count == at
                    && last.from + last.count == from =>
            {
                last.count += 1;
            }
            _ => spans.push(Span {
                at,
                count: 1,
                source,
                from,
            }),
        }
    }
    spans
}

/// The numbers `r` and `q` (of one step) share, as a span of `r`'s.
fn range_overlap(r: &NumberRange, q: &NumberRange, source: usize) -> Option<Span> {
    let step = r.step();
    let (r_len, q_len) = (u128::from(r.count()), u128::from(q.count()));
    let (at, from, count) = if q.start() >= r.start() {
        let gap = q.start() - r.start();
        let k = gap / step;
        if !gap.is_multiple_of(step) || k >= r_len {
            return None;
        }
        (k, 0, (r_len - k).min(q_len))
    } else {
        let gap = r.start() - q.start();
        let k = gap / step;
        if !gap.is_multiple_of(step) || k >= q_len {
            return None;
        }
        (0, k, r_len.min(q_len - k))
    };
    // Each below a chunk's count, a u64.
    Some(Span {
        at: at as usize,
        count: count as usize,
        source,
        from: from as usize,
    })
}

/// The parts of `p` outside `taken`'s indices (none, one or two).
fn outside(p: Span, taken: &Span) -> impl Iterator<Item = Span> {
    let (lo, hi) = (taken.at, taken.at + taken.count);
    let end = p.at + p.count;
    let before = (p.at < lo).then(|| Span {
        count: end.min(lo) - p.at,
        ..p
    });
    let after = (end > hi).then(|| {
        let at = p.at.max(hi);
        Span {
            at,
            count: end - at,
            from: p.from + (at - p.at),
            ..p
        }
    });
    before.into_iter().chain(after)
}

/// Finds a number's index in a source.
enum Index {
    Range(NumberRange),
    List(HashMap<u128, usize>),
}

impl Index {
    fn new(numbers: &ChunkNumbers) -> Self {
        match numbers {
            ChunkNumbers::Range(r) => Index::Range(*r),
            ChunkNumbers::List(list) => {
                let mut at = HashMap::with_capacity(list.len());
                for (i, &n) in list.iter().enumerate() {
                    at.entry(n).or_insert(i);
                }
                Index::List(at)
            }
        }
    }

    fn find(&self, n: u128) -> Option<usize> {
        match self {
            Index::Range(r) => {
                let gap = n.checked_sub(r.start())?;
                let i = gap / r.step();
                (gap.is_multiple_of(r.step()) && i < u128::from(r.count())).then_some(i as usize)
            }
            Index::List(at) => at.get(&n).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u128, step: u128, count: u64) -> ChunkNumbers {
        ChunkNumbers::Range(NumberRange::new(start, step, count).expect("a valid range"))
    }

    fn list(numbers: &[u128]) -> ChunkNumbers {
        ChunkNumbers::List(numbers.to_vec())
    }

    /// What a plan says, checked number by number: each span's numbers are
    /// its source's, and every number some source holds is in a span,
    /// from the first source that holds it.
    fn check(numbers: &ChunkNumbers, sources: &[&ChunkNumbers]) -> Vec<Span> {
        let spans = plan(numbers, sources);
        let mut covered = vec![None; numbers.len()];
        let mut last_end = 0;
        for s in &spans {
            assert!(s.count > 0 && s.at >= last_end, "{spans:?}");
            last_end = s.at + s.count;
            for k in 0..s.count {
                assert_eq!(
                    numbers.get(s.at + k),
                    sources[s.source].get(s.from + k),
                    "{s:?}"
                );
                covered[s.at + k] = Some(s.source);
            }
        }
        for (i, n) in numbers.iter().enumerate() {
            let first = sources.iter().position(|s| s.iter().any(|m| m == n));
            assert_eq!(covered[i], first, "number {n} at {i}: {spans:?}");
        }
        spans
    }

    #[test]
    fn ranges_of_one_step_overlap_by_arithmetic() {
        let chunk = range(1_000_001, 2, 100);
        // A source inside, one straddling the start, one the end, one
        // disjoint, one of the other parity, one covering all.
        let inside = range(1_000_041, 2, 10);
        let start = range(999_901, 2, 60);
        let end = range(1_000_191, 2, 50);
        let far = range(2_000_001, 2, 50);
        let odd = range(1_000_002, 2, 50);
        let all = range(999_001, 2, 100_000);
        // (at, count, source, from) of each span.
        let spans = |chunk: &ChunkNumbers, sources: &[&ChunkNumbers]| {
            let found = check(chunk, sources);
            found
                .iter()
                .map(|s| (s.at, s.count, s.source, s.from))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            spans(&chunk, &[&inside, &start, &end, &far, &odd]),
            [(0, 10, 1, 50), (20, 10, 0, 0), (95, 5, 2, 0)]
        );
        assert_eq!(
            spans(&chunk, &[&inside, &all]),
            [(0, 20, 1, 500), (20, 10, 0, 0), (30, 70, 1, 530)]
        );
        assert!(check(&chunk, &[&far, &odd]).is_empty());
        // Near the top of the numbers: no overflow.
        let top = range(u128::MAX - 20, 2, 10);
        assert_eq!(check(&top, &[&range(u128::MAX - 10, 2, 6)]).len(), 1);
    }

    #[test]
    fn lists_and_mixed_match_number_by_number() {
        let chunk = list(&[9, 4, 7, 7, 100, 12, 13, 14]);
        let a = list(&[1, 4, 7, 100]);
        let b = range(10, 1, 5);
        let spans = check(&chunk, &[&a, &b]);
        assert_eq!(spans.len(), 3, "{spans:?}");
        // A range chunk against a list, and against a range of another step.
        let chunk = range(10, 3, 20);
        check(&chunk, &[&list(&[13, 16, 19, 40, 5, 41]), &range(4, 6, 10)]);
        check(&chunk, &[&range(4, 6, 10), &range(10, 1, 30)]);
        assert!(plan(&chunk, &[]).is_empty());
    }
}
