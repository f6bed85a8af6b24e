//! Verifying the factorizations of a whole arithmetic progression at once.
//!
//! A range chunk's numbers are `start + i·step`. When they are all below
//! 2^44, a sieve proves every claimed factor prime far more cheaply than one
//! primality test per number: with `s = ⌊√max⌋`, a factor ≤ s is looked up in
//! the prime bitmap, and a valid list has at most one factor `L` > s (two
//! would multiply past the largest number). A composite `L` has a prime
//! divisor `q ≤ √L ≤ s`, and `q` divides the number, so sieving the
//! progression by every prime up to `s` and testing each hit's `L` for
//! divisibility by that prime finds every composite `L`; a prime `L` is never
//! hit (it exceeds every sieving prime). The sieve costs about one step per
//! prime up to `s` plus `count · ln ln s` hits, so it is used only when the
//! chunk is long enough to repay the per-prime step; otherwise each number
//! goes through [`verify`] as before.

use crate::arith::inv64;
use crate::ecm::{is_odd_prime, odd_primes_upto, primes, MAX_B2};
use crate::small::{is_small_prime, LIMIT};
use crate::{verify, VerifyError};
use std::sync::OnceLock;

/// The sieve needs the primes up to √max, which the shared bitmap holds
/// below 2^22: numbers below 2^44.
const MAX_SQRT: u64 = MAX_B2 as u64 - 1;

/// Checks that each of `lists` is the prime factorization (as [`verify`]
/// defines it) of the matching number of the progression `start`,
/// `start + step`, `start + 2·step`, …: one list per number, in order.
///
/// On failure returns the index of a wrong list (not necessarily the first)
/// and [`verify`]'s verdict on it. A number past 2^128 fails with
/// [`VerifyError::Overflow`].
///
/// ```
/// use crowdfactor_factor::{factor, verify_progression, VerifyError};
/// let lists: Vec<Vec<u128>> = (0..4).map(|i| factor(91 + 2 * i)).collect();
/// assert!(verify_progression(91, 2, lists.iter().map(|l| &l[..])).is_ok());
/// // 91 = 7 · 13 claimed prime:
/// let wrong = [vec![91], lists[1].clone(), lists[2].clone(), lists[3].clone()];
/// assert_eq!(
///     verify_progression(91, 2, wrong.iter().map(|l| &l[..])),
///     Err((0, VerifyError::NotPrime(91)))
/// );
/// ```
pub fn verify_progression<'a, I>(
    start: u128,
    step: u128,
    lists: I,
) -> Result<(), (usize, VerifyError)>
where
    I: IntoIterator<Item = &'a [u128]>,
    I::IntoIter: ExactSizeIterator,
{
    verify_lists(start, step, lists.into_iter(), Lists::Whole, None)
}

/// [`verify_progression`] for lists written without their largest factor
/// (as [`crate::verify_without_largest`] reads them): how workers send a
/// chunk's factorizations from protocol 5 on. The sieve restores each
/// number's largest factor with one division.
///
/// ```
/// use crowdfactor_factor::{factor, verify_progression_without_largest};
/// let lists: Vec<Vec<u128>> = (0..4).map(|i| factor(91 + 2 * i)).collect();
/// let short: Vec<&[u128]> = lists.iter().map(|l| &l[..l.len() - 1]).collect();
/// assert!(verify_progression_without_largest(91, 2, short.iter().copied()).is_ok());
/// ```
pub fn verify_progression_without_largest<'a, I>(
    start: u128,
    step: u128,
    lists: I,
) -> Result<(), (usize, VerifyError)>
where
    I: IntoIterator<Item = &'a [u128]>,
    I::IntoIter: ExactSizeIterator,
{
    verify_lists(start, step, lists.into_iter(), Lists::LargestLeftOut, None)
}

/// Where a sieve left off, so that a later chunk of the same progression
/// skips the sieve's per-prime set-up — one division per prime up to
/// √last: about a tenth of the verifying sieve's time on 44,620 numbers
/// from 10^12, and a quarter of the factoring sieve's. Kept by
/// [`verify_progression_resuming`] and [`factor_progression_resuming`],
/// which resume it for any chunk of the same progression, nearest
/// cheapest (see [`SieveResume::distance_to`]); empty when there is
/// nothing to resume (no chunk was sieved yet, or a wrong list stopped the
/// sieve). A chunk checked or factored number by number leaves it as it was.
#[derive(Debug, Clone, Default)]
pub struct SieveResume {
    /// The progression's next number and its step (0: nothing to resume).
    next: u64,
    step: u64,
    /// For each odd prime up to the last chunk's bound, in order: the
    /// index of its first multiple from `next` on ([`NO_MULTIPLE`],
    /// [`EVERY_NUMBER`] when the prime divides the step).
    offsets: Vec<u32>,
}

/// [`SieveResume::offsets`]: no number of the progression is a multiple.
const NO_MULTIPLE: u32 = u32::MAX;
/// [`SieveResume::offsets`]: every number of the progression is.
const EVERY_NUMBER: u32 = u32::MAX - 1;

impl SieveResume {
    /// Whether a chunk of the progression `start`, `start + step`, … is the
    /// one that follows where this sieve left off.
    pub fn resumes(&self, start: u128, step: u128) -> bool {
        self.step != 0 && u128::from(self.next) == start && u128::from(self.step) == step
    }

    /// Whether there is nothing to resume.
    pub fn is_empty(&self) -> bool {
        self.step == 0
    }

    /// How many numbers of the progression `start`, `start + step`, … lie
    /// between where this sieve left off and `start`, after it or before
    /// (0: the chunk just after), when a sieve of this progression can
    /// resume it there; `None` when it cannot (another progression). Of
    /// several, the nearest resumes cheapest: a distance costs a division
    /// per prime below it.
    pub fn distance_to(&self, start: u128, step: u128) -> Option<u128> {
        self.signed_distance(start, step).map(i128::unsigned_abs)
    }

    /// Removes from `kept` the sieve that left off nearest `start` in the
    /// progression of `step` (for a cache of sieves of several chunks or
    /// jobs); `None` if none of them is of this progression.
    pub fn take_nearest(kept: &mut Vec<SieveResume>, start: u128, step: u128) -> Option<Self> {
        let nearest = kept
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.distance_to(start, step).map(|d| (d, i)))
            .min()?;
        Some(kept.remove(nearest.1))
    }

    /// The distance of [`SieveResume::distance_to`], negative before.
    fn signed_distance(&self, start: u128, step: u128) -> Option<i128> {
        let next = u128::from(self.next);
        let apart = start.abs_diff(next);
        if self.step == 0 || step != u128::from(self.step) || !apart.is_multiple_of(step) {
            return None;
        }
        // `start` may be any chunk's (up to 2^128), not only a sieved one's.
        let d = i128::try_from(apart / step).ok()?;
        Some(if start < next { -d } else { d })
    }

    /// Takes the offsets for a chunk of the progression starting at
    /// `start` (none if it is another progression, or too far away). Moving
    /// an offset by g numbers costs a division only for the primes below
    /// about g.
    fn take_offsets_at(&mut self, start: u64, step: u64, primes: &[u32]) -> Vec<u32> {
        let distance = self.signed_distance(start.into(), step.into());
        let Some(d) = distance.and_then(|d| i32::try_from(d).ok()) else {
            return vec![];
        };
        let mut offsets = core::mem::take(&mut self.offsets);
        if d == 0 {
            return offsets;
        }
        let g = d.unsigned_abs();
        for (at, &p) in offsets.iter_mut().zip(primes) {
            if *at == NO_MULTIPLE || *at == EVERY_NUMBER {
                continue;
            }
            // The multiples are at `at` + k·p from where it left off: the
            // first from the new start on (at < p < 2^22 and g < 2^31: no
            // overflow).
            *at = if d > 0 {
                match at.checked_sub(g) {
                    Some(left) => left,
                    None => (p - (g - *at) % p) % p,
                }
            } else {
                let back = *at + g;
                if back >= p {
                    back % p
                } else {
                    back
                }
            };
        }
        offsets
    }
}

/// [`verify_progression`] (or, with `largest_left_out`,
/// [`verify_progression_without_largest`]) of one chunk of a longer
/// progression checked chunk after chunk: when `resume` holds where the
/// sieve of another chunk of the progression left off (most cheaply the
/// one just before, or one nearby: chunks arrive out of order), the sieve
/// starts from there instead of finding every prime's first multiple
/// again; afterwards `resume` holds where this chunk's sieve left off
/// (nothing where a wrong list stopped it; unchanged where the chunk was
/// checked number by number). The verdict is the same either way.
///
/// ```
/// use crowdfactor_factor::{factor, verify_progression_resuming, SieveResume};
/// let lists: Vec<Vec<u128>> = (0..40_000).map(|i| factor(999_999_999_999 + 2 * i)).collect();
/// let (first, second) = lists.split_at(20_000);
/// let mut resume = SieveResume::default();
/// let first = first.iter().map(|l| &l[..]);
/// assert!(verify_progression_resuming(999_999_999_999, 2, first, false, &mut resume).is_ok());
/// assert!(resume.resumes(999_999_999_999 + 40_000, 2));
/// let second = second.iter().map(|l| &l[..]);
/// assert!(verify_progression_resuming(999_999_999_999 + 40_000, 2, second, false, &mut resume).is_ok());
/// ```
pub fn verify_progression_resuming<'a, I>(
    start: u128,
    step: u128,
    lists: I,
    largest_left_out: bool,
    resume: &mut SieveResume,
) -> Result<(), (usize, VerifyError)>
where
    I: IntoIterator<Item = &'a [u128]>,
    I::IntoIter: ExactSizeIterator,
{
    let form = if largest_left_out {
        Lists::LargestLeftOut
    } else {
        Lists::Whole
    };
    verify_lists(start, step, lists.into_iter(), form, Some(resume))
}

/// A sieve resumed this few numbers from where it left off (either way)
/// moves most primes' offsets with a subtraction (a division for the primes
/// below the distance only).
const NEAR: u128 = 1 << 17;

/// How a factor list is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lists {
    /// Every factor.
    Whole,
    /// Every factor but the largest.
    LargestLeftOut,
}

impl Lists {
    fn verify(self, n: u128, list: &[u128]) -> Result<(), VerifyError> {
        match self {
            Lists::Whole => verify(n, list),
            Lists::LargestLeftOut => crate::verify_without_largest(n, list),
        }
    }
}

fn verify_lists<'a>(
    start: u128,
    step: u128,
    lists: impl ExactSizeIterator<Item = &'a [u128]>,
    form: Lists,
    resume: Option<&mut SieveResume>,
) -> Result<(), (usize, VerifyError)> {
    // A resumed sieve's step per prime is an offset moved on (~1 ns, not
    // ~7 to find the first multiple), so it repays itself on far shorter
    // chunks; one that will be resumed pays for the chunks after it too.
    let per_prime = match resume.as_deref() {
        Some(r) if r.distance_to(start, step).is_some_and(|d| d < NEAR) => 64.0,
        Some(_) => 16.0,
        None => 8.0,
    };
    match sieve_bound(start, step, lists.len(), per_prime) {
        Some(s) => {
            let mut found = Found::first();
            let numbers = Numbers {
                start: start as u64,
                step: step as u64,
                s,
            };
            sieve(numbers, lists, form, &mut found, resume);
            found.wrong.pop().map_or(Ok(()), Err)
        }
        // Number by number (no lists at all included); past 2^128 the
        // progression's numbers run out.
        // `resume` stays as it was: its sieve may serve a later chunk.
        None => {
            let mut n = Some(start);
            for (i, list) in lists.enumerate() {
                let Some(v) = n else {
                    return Err((i, VerifyError::Overflow));
                };
                form.verify(v, list).map_err(|e| (i, e))?;
                n = v.checked_add(step);
            }
            Ok(())
        }
    }
}

/// Factors every number of the progression `start + i·step` (`i < count`)
/// and hands each factorization (ascending, with multiplicity, as
/// [`crate::factor`] gives it) to `each`, in order.
///
/// When every number is below 2^44 and the progression is long enough, the
/// whole progression is sieved at once instead of factoring number by
/// number: each prime up to `s = ⌊√last⌋` is divided out of the numbers it
/// divides (found by stepping, not by trial), and what is left of a number
/// after that is 1 or a prime (a composite rest would have a prime factor up
/// to `s`). On the classic job (10^12 + 2i) that costs tens of nanoseconds
/// per number against about a microsecond and a half. Otherwise (or for a
/// start of 0) each number goes through [`crate::factor_into`].
///
/// ```
/// use crowdfactor_factor::{factor, factor_progression};
/// let mut lists = vec![];
/// factor_progression(999_999_999_999, 2, 5, |l| lists.push(l.to_vec()));
/// let each: Vec<_> = (0..5).map(|i| factor(999_999_999_999 + 2 * i)).collect();
/// assert_eq!(lists, each);
/// ```
pub fn factor_progression(start: u128, step: u128, count: usize, mut each: impl FnMut(&[u128])) {
    factor_lists(start, step, count, &mut each, None);
}

/// [`factor_progression`] of one chunk of a longer progression factored
/// chunk after chunk (as a worker gets a range job's chunks): where
/// `resume` holds where the sieve of an earlier chunk of the same
/// progression left off, this chunk's sieve starts from there instead of
/// finding every prime's first multiple again — a division per prime up to
/// √last, ~0.6 ms of the ~2 ms that 44,620 numbers from 10^12 take. The
/// other chunk need not be the one just before: a distance either way (the
/// chunks another thread factors, or chunks started out of order) costs a
/// division per prime below its length only.
/// Afterwards `resume` holds where this chunk's sieve left off (unchanged
/// where it factored number by number). The lists are the same either way.
///
/// ```
/// use crowdfactor_factor::{factor, factor_progression_resuming, SieveResume};
/// let mut resume = SieveResume::default();
/// let mut lists = vec![];
/// // Two chunks of 20,000 numbers, one after a gap of 20,000, one before.
/// for first in [0u128, 20_000, 60_000, 40_000] {
///     let start = 999_999_999_999 + 2 * first;
///     factor_progression_resuming(start, 2, 20_000, &mut resume, |l| lists.push(l.to_vec()));
/// }
/// let each = (0..40_000).chain(60_000..80_000).chain(40_000..60_000);
/// let each = each.map(|i| factor(999_999_999_999 + 2 * i));
/// assert!(lists.into_iter().eq(each));
/// ```
pub fn factor_progression_resuming(
    start: u128,
    step: u128,
    count: usize,
    resume: &mut SieveResume,
    mut each: impl FnMut(&[u128]),
) {
    factor_lists(start, step, count, &mut each, Some(resume));
}

fn factor_lists(
    start: u128,
    step: u128,
    count: usize,
    each: &mut dyn FnMut(&[u128]),
    resume: Option<&mut SieveResume>,
) {
    match factor_sieve_bound(start, step, count) {
        Some(s) => {
            let numbers = Numbers {
                start: start as u64,
                step: step as u64,
                s,
            };
            sieve_factor(numbers, count, each, resume);
        }
        // `resume` stays as it was: its sieve may serve a later chunk.
        None => {
            let mut buf = Vec::with_capacity(64);
            // Past 2^128 there is nothing left to hand out (the caller's
            // count was wrong): the numbers stop rather than wrap.
            let numbers = core::iter::successors(Some(start), |&n| n.checked_add(step));
            for n in numbers.take(count) {
                buf.clear();
                crate::factor_into(n, &mut buf);
                each(&buf);
            }
        }
    }
}

/// `numbers` as `(start, step, count)` when they are two or more rising by
/// one positive step (as `seq` writes them): the form [`factor_progression`]
/// takes. Stops reading at the first number out of step.
///
/// ```
/// use crowdfactor_factor::as_progression;
/// assert_eq!(as_progression([10, 13, 16, 19]), Some((10, 3, 4)));
/// assert_eq!(as_progression([10, 13, 17]), None); // out of step
/// assert_eq!(as_progression([10, 10]), None); // not rising
/// assert_eq!(as_progression([10]), None); // one number
/// ```
pub fn as_progression(numbers: impl IntoIterator<Item = u128>) -> Option<(u128, u128, usize)> {
    let mut numbers = numbers.into_iter();
    let start = numbers.next()?;
    let mut last = numbers.next()?;
    let step = last.checked_sub(start).filter(|&step| step > 0)?;
    let mut count = 2;
    for n in numbers {
        if n.checked_sub(last) != Some(step) {
            return None;
        }
        last = n;
        count += 1;
    }
    Some((start, step, count))
}

/// Whether [`factor_progression`] sieves this progression (rather than
/// factoring number by number).
pub fn progression_is_sieved(start: u128, step: u128, count: usize) -> bool {
    factor_sieve_bound(start, step, count).is_some()
}

/// The sieving bound when [`factor_progression`] sieves (never from 0,
/// which has no factorization to sieve out).
fn factor_sieve_bound(start: u128, step: u128, count: usize) -> Option<u64> {
    sieve_bound(start, step, count, 32.0).filter(|_| start > 0)
}

/// The sieving bound s = ⌊√last⌋ when the progression's numbers are all
/// below 2^44 and there are enough of them to repay a step per prime up to
/// s ([`worth_sieving`] with `per_prime`); `None` for no numbers, or a last
/// number past 2^128.
fn sieve_bound(start: u128, step: u128, count: usize, per_prime: f64) -> Option<u64> {
    let last = (count as u128)
        .checked_sub(1)
        .and_then(|k| k.checked_mul(step))
        .and_then(|d| d.checked_add(start))?;
    let s = last.isqrt() as u64;
    (last >> 44 == 0 && worth_sieving(s, count, per_prime)).then_some(s)
}

/// [`factor_progression`] by sieving: numbers 1 ≤ n < 2^44, s = ⌊√last⌋.
fn sieve_factor(
    numbers: Numbers,
    count: usize,
    each: &mut dyn FnMut(&[u128]),
    resume: Option<&mut SieveResume>,
) {
    let Numbers { start, step, .. } = numbers;
    // What is left of each number; the small factors found, as (index, p)
    // in the order found (ascending p per index), sorted by index at the end.
    let mut rest: Vec<u64> = (0..count as u64).map(|i| start + i * step).collect();
    let mut twos = vec![0u8; count];
    for (r, t) in rest.iter_mut().zip(&mut twos) {
        let z = r.trailing_zeros();
        *r >>= z;
        *t = z as u8;
    }
    let mut hits: Vec<(u32, u32)> = Vec::with_capacity(count * 3);
    walk_primes(numbers, count, resume, |i, stride, p| {
        Some(divide_out(i, stride, p, &mut rest, &mut hits))
    });
    // Counting sort by index, stable: each number's primes stay ascending.
    let mut starts = vec![0u32; count + 1];
    for &(i, _) in &hits {
        starts[i as usize + 1] += 1;
    }
    for i in 0..count {
        starts[i + 1] += starts[i];
    }
    let mut sorted = vec![0u32; hits.len()];
    let mut at = starts.clone();
    for &(i, p) in &hits {
        sorted[at[i as usize] as usize] = p;
        at[i as usize] += 1;
    }
    let mut list: Vec<u128> = Vec::with_capacity(64);
    for i in 0..count {
        list.clear();
        list.extend(core::iter::repeat_n(2, usize::from(twos[i])));
        list.extend(
            sorted[starts[i] as usize..starts[i + 1] as usize]
                .iter()
                .map(|&p| u128::from(p)),
        );
        // No prime factor up to s is left, and the rest is at most
        // last < (s + 1)², so it is 1 or a prime above s.
        if rest[i] > 1 {
            list.push(rest[i].into());
        }
        each(&list);
    }
}

/// Divides the odd prime `p` out of what is left of each number it divides
/// (from index `i`, every `stride`), noting each time in `hits`. Returns the
/// index of the first multiple past the end.
#[inline]
fn divide_out(
    mut i: usize,
    stride: usize,
    p: u64,
    rest: &mut [u64],
    hits: &mut Vec<(u32, u32)>,
) -> usize {
    // Division by multiplication: v·p⁻¹ mod 2^64 is v/p when p | v,
    // and p | v iff that product times p fits 64 bits.
    let inv = inv64(p);
    while i < rest.len() {
        // p divides the number, so it divides what is left of it
        // (only primes below p were taken out).
        let mut v = rest[i].wrapping_mul(inv);
        hits.push((i as u32, p as u32));
        loop {
            let q = v.wrapping_mul(inv);
            if (u128::from(q) * u128::from(p)) >> 64 != 0 {
                break;
            }
            v = q;
            hits.push((i as u32, p as u32));
        }
        rest[i] = v;
        i += stride;
    }
    i
}

/// Whether sieving `count` numbers with the ~s / ln s primes up to `s`
/// beats one step per number that costs `per_prime` times as much as a
/// sieving prime's step: the sieve wins from about π(s) / `per_prime`
/// numbers.
///
/// Verifying: each sieving prime costs ~9 ns, each number ~40 ns in the
/// sieve against ~200–250 ns through [`verify`] (its largest factor,
/// usually above 2^32 here, through BPSW), so the sieve wins from about
/// π(s)/20 numbers; [`verify_progression`] sieves from π(s)/8, a margin for
/// other machines. A chunk that resumes the sieve of the one before it
/// ([`verify_progression_resuming`]) pays ~1 ns per prime and is sieved
/// from π(s)/64 numbers; the first chunk of such a run from π(s)/16.
///
/// Factoring a number one by one costs ~1.3 µs around 10^12 against ~70 ns
/// in the sieve, so the sieve wins from about π(s)/100;
/// [`factor_progression`] sieves from π(s)/32.
fn worth_sieving(s: u64, count: usize, per_prime: f64) -> bool {
    let s_f = s as f64;
    (2..=MAX_SQRT).contains(&s) && count as f64 * per_prime * s_f.ln() >= s_f
}

/// The numbers a sieve runs over: `start`, `start + step`, … (as many as
/// lists), all below 2^44, with 2 ≤ s = ⌊√last⌋ < 2^22.
#[derive(Clone, Copy)]
struct Numbers {
    start: u64,
    step: u64,
    s: u64,
}

/// The wrong lists a sieve found, as (index, verdict): the first one, or
/// with `all` every one (for tests).
struct Found {
    wrong: Vec<(usize, VerifyError)>,
    all: bool,
}

impl Found {
    fn first() -> Self {
        Found {
            wrong: vec![],
            all: false,
        }
    }

    /// Nothing more to look for.
    fn enough(&self) -> bool {
        !self.all && !self.wrong.is_empty()
    }
}

/// The sieve proper: checks each of `lists` against its number, adding the
/// wrong ones to `found`. With `resume`, starts from where it says (see
/// [`walk_primes`]), and leaves where this sieve stopped in it (nothing when
/// it stopped early, at a wrong list).
fn sieve<'a>(
    numbers: Numbers,
    lists: impl ExactSizeIterator<Item = &'a [u128]>,
    form: Lists,
    found: &mut Found,
    resume: Option<&mut SieveResume>,
) {
    let Numbers { start, step, s } = numbers;
    let bits = primes();
    // Per number, the factor above s (1: none or already judged); the rest
    // is checked here.
    let mut big = Vec::with_capacity(lists.len());
    for (i, list) in lists.enumerate() {
        let n = start + i as u64 * step;
        match split_check(bits, n, s, list, form) {
            Some(l) if l == 1 || l & 1 == 1 => big.push(l),
            // Wrong product, order, a composite small factor or an even L > 2:
            // verify says which (and is the authority if it disagrees).
            _ => {
                if let Err(e) = form.verify(n.into(), list) {
                    found.wrong.push((i, e));
                    if found.enough() {
                        if let Some(r) = resume {
                            *r = SieveResume::default();
                        }
                        return;
                    }
                }
                big.push(1);
            }
        }
    }
    let len = big.len();
    walk_primes(numbers, len, resume, |i, stride, p| {
        let end = sieve_one(i, stride, p, &mut big, &mut found.wrong);
        (!found.enough()).then_some(end)
    });
}

/// Runs every odd prime up to the sieve's bound over `len` numbers of the
/// progression: `visit(i, stride, p)` takes the prime's multiples from
/// index i on, every `stride`, and returns the index past the end, or
/// `None` to stop the sieve (then so does this). With `resume`, the primes
/// the sieve it holds reached start from where it left off
/// ([`SieveResume::take_offsets_at`]), and afterwards it holds where this
/// sieve left off (nothing if `visit` stopped it).
fn walk_primes(
    numbers: Numbers,
    len: usize,
    resume: Option<&mut SieveResume>,
    visit: impl FnMut(usize, usize, u64) -> Option<usize>,
) {
    let Some(r) = resume else {
        walk_from(numbers, len, vec![], false, visit);
        return;
    };
    let Numbers { start, step, .. } = numbers;
    let carried = r.take_offsets_at(start, step, odd_prime_list());
    *r = SieveResume::default();
    if let Some(offsets) = walk_from(numbers, len, carried, true, visit) {
        *r = SieveResume {
            next: start + len as u64 * step,
            step,
            offsets,
        };
    }
}

/// [`walk_primes`] from `offsets`, the first multiples of the primes an
/// earlier chunk's sieve reached (moved on in place: most primes above the
/// chunk's length have no multiple in it, and that loop is the whole cost
/// of such a prime, so it stays this small); the others from their first
/// multiple. Returns the offsets for the chunk after this one (with `keep`;
/// else empty), or `None` if `visit` stopped it.
fn walk_from(
    Numbers { start, step, s }: Numbers,
    len: usize,
    mut offsets: Vec<u32>,
    keep: bool,
    mut visit: impl FnMut(usize, usize, u64) -> Option<usize>,
) -> Option<Vec<u32>> {
    let primes = odd_prime_list();
    let upto = primes.partition_point(|&p| u64::from(p) <= s);
    offsets.truncate(upto);
    for (slot, &p) in offsets.iter_mut().zip(primes) {
        let at = *slot;
        if at == NO_MULTIPLE {
            continue;
        }
        if at != EVERY_NUMBER && at as usize >= len {
            *slot = (at as usize - len) as u32;
            continue;
        }
        let (i, stride) = match at {
            EVERY_NUMBER => (0, 1),
            _ => (at as usize, p as usize),
        };
        let end = visit(i, stride, p.into())?;
        *slot = if stride == 1 {
            EVERY_NUMBER
        } else {
            // The next multiple lies within p of the last number.
            (end - len) as u32
        };
    }
    let known = offsets.len();
    for &p in &primes[known..upto] {
        let p = u64::from(p);
        let end = match first_multiple(p, start, step) {
            Some((i, stride)) => Some((visit(i, stride, p)?, stride)),
            None => None,
        };
        if keep {
            offsets.push(match end {
                None => NO_MULTIPLE,
                Some((_, 1)) => EVERY_NUMBER,
                Some((i, _)) => (i - len) as u32,
            });
        }
    }
    Some(offsets)
}

/// The odd primes up to [`MAX_SQRT`], ascending, listed once from the
/// shared bitmap (~1.2 MB): a sieve resumed chunk after chunk walks them
/// beside its offsets instead of decoding the bitmap again each time.
fn odd_prime_list() -> &'static [u32] {
    static LIST: OnceLock<Vec<u32>> = OnceLock::new();
    LIST.get_or_init(|| {
        odd_primes_upto(primes(), MAX_SQRT)
            .map(|p| p as u32)
            .collect()
    })
}

/// Checks one list's order, product and factors up to `s`; returns its
/// factor above `s` (1 if none), or `None` if anything is wrong.
#[inline]
fn split_check(bits: &[u64], n: u64, s: u64, list: &[u128], form: Lists) -> Option<u64> {
    let mut product = 1u64;
    let mut prev = 0;
    let mut big = 1;
    let mut check = |f: u64| {
        if f < prev {
            return None;
        }
        prev = f;
        if f > s {
            if big != 1 {
                return None;
            }
            big = f;
        } else if f < LIMIT as u64 {
            // Most factors are small: a 4 KiB table that stays in cache.
            if !is_small_prime(f) {
                return None;
            }
        } else if !is_odd_prime(bits, f) {
            return None;
        }
        Some(())
    };
    for &f in list {
        let f = u64::try_from(f).ok()?;
        product = product.checked_mul(f)?;
        check(f)?;
    }
    match form {
        Lists::Whole => (product == n).then_some(())?,
        // The largest factor is what the listed ones leave of n.
        Lists::LargestLeftOut => {
            let largest = n.checked_div(product)?;
            if largest * product != n {
                return None;
            }
            if largest > 1 {
                check(largest)?;
            }
        }
    }
    Some(big)
}

/// Tests the big factor of every number divisible by the odd prime `p`
/// (from index `i`, every `stride`); a composite one is reported and not
/// looked at again. Returns the index of the first multiple past the end.
#[inline]
fn sieve_one(
    mut i: usize,
    stride: usize,
    p: u64,
    big: &mut [u64],
    wrong: &mut Vec<(usize, VerifyError)>,
) -> usize {
    if i >= big.len() {
        return i;
    }
    // Divisibility by multiplication: L·p⁻¹ mod 2^64 times p fits 64 bits iff
    // p | L. That holds no test for L = 1 (judged, or no big factor): p⁻¹·p
    // is 1 mod 2^64 and above it, so needs no branch of its own (which
    // mispredicted on about every third number).
    let inv = inv64(p);
    while i < big.len() {
        let l = big[i];
        if (u128::from(l.wrapping_mul(inv)) * u128::from(p)) >> 64 == 0 {
            // l > s ≥ p, so l is a proper multiple of p.
            wrong.push((i, VerifyError::NotPrime(l.into())));
            big[i] = 1;
        }
        i += stride;
    }
    i
}

/// The first index i with `start + i·step ≡ 0 (mod p)` and the stride
/// between such indices; `None` if there is none.
#[inline]
fn first_multiple(p: u64, start: u64, step: u64) -> Option<(usize, usize)> {
    let r = start % p;
    // The step is nearly always below p: no division for it then.
    let t = if step < p { step } else { step % p };
    // No second division where the step is 1 or 2 (range jobs' steps):
    // the per-prime set-up is a good part of a verifying sieve's time.
    let first = match t {
        0 if r == 0 => return Some((0, 1)),
        0 => return None,
        _ if r == 0 => 0,
        1 => p - r,
        // (p − r)/2 mod p: p − r or 2p − r is even, and half of it is
        // below p for 0 < r < p.
        2 => {
            if (p - r) & 1 == 0 {
                (p - r) / 2
            } else {
                (2 * p - r) / 2
            }
        }
        _ => (p - r) * inv_mod(t, p) % p,
    };
    Some((first as usize, p as usize))
}

/// t⁻¹ mod p for a prime p not dividing t (extended Euclid).
fn inv_mod(t: u64, p: u64) -> u64 {
    let (mut a, mut b) = (t as i64, p as i64);
    let (mut x, mut y) = (1i64, 0i64);
    while b != 0 {
        let q = a / b;
        (a, b) = (b, a - q * b);
        (x, y) = (y, x - q * y);
    }
    x.rem_euclid(p as i64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{factor, is_prime};

    fn lists(start: u128, step: u128, count: usize) -> Vec<Vec<u128>> {
        (0..count as u128)
            .map(|i| factor(start + i * step))
            .collect()
    }

    /// The two largest factors replaced by their (composite) product.
    fn merge_two_largest(l: &mut Vec<u128>) {
        if let [.., a, b] = l[..] {
            l.truncate(l.len() - 2);
            l.push(a * b);
        }
    }

    fn slices(lists: &[Vec<u128>]) -> impl ExactSizeIterator<Item = &[u128]> {
        lists.iter().map(|l| &l[..])
    }

    /// Both paths: the sieve (called directly, whatever the length) and the
    /// public function (which may choose either). The lists are also
    /// checked without their last factor ([`Lists::LargestLeftOut`]) against
    /// `verify_without_largest` (the same lists may be right or wrong
    /// there). Returns the verdict on the whole lists.
    fn check(start: u128, step: u128, lists: &[Vec<u128>]) -> Result<(), (usize, VerifyError)> {
        let short: Vec<Vec<u128>> = lists
            .iter()
            .map(|l| l[..l.len().saturating_sub(1)].to_vec())
            .collect();
        let both = [(Lists::Whole, lists), (Lists::LargestLeftOut, &short[..])];
        let count = lists.len();
        let last = start + (count as u128 - 1) * step;
        let n = |k: usize| start + k as u128 * step;
        let mut verdicts = vec![];
        for (form, lists) in both {
            let public = match form {
                Lists::Whole => verify_progression(start, step, slices(lists)),
                Lists::LargestLeftOut => {
                    verify_progression_without_largest(start, step, slices(lists))
                }
            };
            let expect: Vec<_> = (0..count)
                .filter_map(|k| form.verify(n(k), &lists[k]).err().map(|e| (k, e)))
                .collect();
            if last >> 44 == 0 && last >= 4 {
                // The sieve, whatever the length, finds exactly the lists
                // verify refuses, each with verify's verdict.
                let mut found = Found {
                    wrong: vec![],
                    all: true,
                };
                let numbers = Numbers {
                    start: start as u64,
                    step: step as u64,
                    s: last.isqrt() as u64,
                };
                sieve(numbers, slices(lists), form, &mut found, None);
                let mut wrong = found.wrong;
                wrong.sort_by_key(|w| w.0);
                assert_eq!(wrong, expect, "{form:?}: start {start} step {step}");
                // The same in three chunks, each resuming where the sieve
                // of the one before left off (each chunk's own bound).
                if start >= 4 {
                    let cuts = [0, count / 3, count / 2 + 1, count];
                    let mut resume = SieveResume::default();
                    let mut wrong = vec![];
                    for w in cuts.windows(2).filter(|w| w[0] < w[1]) {
                        let (from, to) = (w[0], w[1]);
                        assert!(from == 0 || resume.resumes(n(from), step));
                        let mut found = Found {
                            wrong: vec![],
                            all: true,
                        };
                        let numbers = Numbers {
                            start: n(from) as u64,
                            step: step as u64,
                            s: n(to - 1).isqrt() as u64,
                        };
                        let chunk = slices(&lists[from..to]);
                        sieve(numbers, chunk, form, &mut found, Some(&mut resume));
                        wrong.extend(found.wrong.into_iter().map(|(i, e)| (from + i, e)));
                    }
                    wrong.sort_by_key(|w| w.0);
                    assert_eq!(
                        wrong, expect,
                        "{form:?} in chunks: start {start} step {step}"
                    );
                }
            }
            match &public {
                Err((j, f)) => assert_eq!(form.verify(n(*j), &lists[*j]), Err(f.clone())),
                Ok(()) => assert_eq!(expect, vec![], "{form:?}: start {start} step {step}"),
            }
            verdicts.push(public);
        }
        verdicts.swap_remove(0)
    }

    /// (start, step, count): steps 1, 2, prime, with small prime factors,
    /// numbers from 4 to 2^44 (and past it, where each number is verified).
    fn progressions() -> Vec<(u128, u128, usize)> {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut v = vec![
            (1, 1, 3000),
            (2, 2, 2000),
            (999_999_999_999, 2, 4000),
            (15, 30, 3000),
            (1_000_003, 1001, 3000),
            ((1 << 44) - 3000, 1, 2999),
            ((1 << 44) - 3000, 1, 3001),
            ((1 << 64) + 1, 2, 300),
            (7, 3, 5000),
        ];
        for _ in 0..6 {
            let bits = rng.u32(8..44);
            let start = rng.u128(1..1 << bits);
            let step = rng.u128(1..4096);
            v.push((start, step, rng.usize(1..3000)));
        }
        v
    }

    /// The sieve (called directly, whatever the length) and the public
    /// function (which may choose either path) give exactly `factor`'s
    /// lists, in order.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn factors_progressions_like_factor() {
        let mut cases = progressions();
        cases.extend([
            (1, 1, 1),
            (1, 2, 1),
            (3, 0, 50),
            (8, 8, 4000),
            (1, 1, 20_000),
        ]);
        cases.extend([(2, 3, 1), (1 << 43, 1 << 30, 100), (u128::MAX - 4, 2, 3)]);
        for (start, step, count) in cases {
            let want = lists(start, step, count);
            let mut got = vec![];
            factor_progression(start, step, count, |l| got.push(l.to_vec()));
            assert_eq!(got, want, "start {start} step {step} count {count}");
            let last = start + (count as u128 - 1) * step;
            if last >> 44 == 0 {
                let mut sieved = vec![];
                let numbers = Numbers {
                    start: start as u64,
                    step: step as u64,
                    s: last.isqrt() as u64,
                };
                sieve_factor(numbers, count, &mut |l| sieved.push(l.to_vec()), None);
                assert_eq!(sieved, want, "sieve: start {start} step {step}");
            }
        }
        // A count running past 2^128 stops at the last number there is.
        let mut got = 0;
        factor_progression(u128::MAX - 2, 2, 5, |_| got += 1);
        assert_eq!(got, 2);
    }

    /// Chunks of progressions factored one after another with one
    /// [`SieveResume`] give `factor`'s lists: chunk after chunk, after gaps
    /// (shorter and longer than the sieving primes), with steps that some
    /// sieving primes divide, after another progression or a chunk factored
    /// number by number, and a chunk before where it left off.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn resumed_sieves_factor_like_factor() {
        let mut rng = fastrand::Rng::with_seed(73);
        let mut resume = SieveResume::default();
        let check = |start: u128, step: u128, count: usize, resume: &mut SieveResume| {
            let mut got = vec![];
            factor_progression_resuming(start, step, count, resume, |l| got.push(l.to_vec()));
            assert_eq!(
                got,
                lists(start, step, count),
                "start {start} step {step} count {count}"
            );
        };
        for (start, step) in [
            (999_999_999_999u128, 2u128),
            (1, 1),
            (10_000_000_001, 6),
            (3 * 5 * 7 * 1_000_003, 3 * 5 * 7 * 11),
            ((1 << 43) - 5_000_000, 2),
        ] {
            let mut at = 0u128;
            for _ in 0..12 {
                let count = rng.usize(1..30_000);
                check(start + at * step, step, count, &mut resume);
                at += count as u128;
                // Mostly the next chunk; else a gap below or above the
                // primes' strides, or back to an earlier chunk.
                match rng.u8(..6) {
                    0 => at += rng.u128(1..100),
                    1 => at += rng.u128(1_000..200_000),
                    2 => at -= rng.u128(1..=at.min(100)),
                    3 => at -= rng.u128(..=at),
                    _ => {}
                }
            }
            check(start, step, 20_000, &mut resume);
            assert_eq!(resume.distance_to(start + 20_000 * step, step), Some(0));
            assert_eq!(resume.distance_to(start + 20_000 * step, step + 1), None);
            assert_eq!(resume.distance_to(start + 19_999 * step, step), Some(1));
            assert_eq!(resume.distance_to(start, step), Some(20_000));
            if step > 1 {
                assert_eq!(resume.distance_to(start + 1, step), None);
            }
            // A chunk of the progression far past 2^64 (the coordinator asks
            // for every range chunk): its true distance.
            let far = start + 20_000 * step + (u128::MAX / 2 / step) * step;
            assert_eq!(resume.distance_to(far, step), Some(u128::MAX / 2 / step));
        }
        // Of several kept, the nearest of the progression is taken.
        let mut kept: Vec<SieveResume> = [
            (999_999_999_999u128, 2u128),
            (1_000_000_099_999, 2),
            (1_000_000_099_999, 4),
        ]
        .into_iter()
        .map(|(start, step)| {
            let mut r = SieveResume::default();
            factor_progression_resuming(start, step, 20_000, &mut r, |_| {});
            r
        })
        .collect();
        let near = SieveResume::take_nearest(&mut kept, 1_000_000_099_999, 2).expect("one");
        assert_eq!(near.distance_to(1_000_000_099_999, 2), Some(20_000));
        assert_eq!(kept.len(), 2);
        assert!(SieveResume::take_nearest(&mut kept, 1_000_000_099_999, 6).is_none());
        // A chunk factored number by number (past 2^44, of a progression
        // of the same step) leaves the sieve for the next sieved chunk.
        check(999_999_999_999, 2, 30_000, &mut resume);
        check(1 << 64 | 1, 2, 5, &mut resume);
        assert_eq!(resume.distance_to(999_999_999_999 + 60_000, 2), Some(0));
        check(999_999_999_999 + 60_000, 2, 30_000, &mut resume);
        // So does a short chunk, too short to sieve.
        check(999_999_999_999 + 120_000, 2, 3, &mut resume);
        assert_eq!(resume.distance_to(999_999_999_999 + 120_000, 2), Some(0));
        // And one verified number by number leaves the verifying sieve.
        let mut resume = SieveResume::default();
        for (start, count) in [(999_999_999_999u128, 30_000), (1 << 64 | 1, 3)] {
            let good = lists(start, 2, count);
            let good = good.iter().map(|l| &l[..]);
            assert_eq!(
                verify_progression_resuming(start, 2, good, false, &mut resume),
                Ok(())
            );
        }
        assert_eq!(resume.distance_to(999_999_999_999 + 60_000, 2), Some(0));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn accepts_true_factorizations() {
        for (start, step, count) in progressions() {
            let l = lists(start, step, count);
            assert_eq!(check(start, step, &l), Ok(()), "start {start} step {step}");
        }
        assert_eq!(verify_progression(5, 2, core::iter::empty()), Ok(()));
    }

    /// Every way a list can be wrong, one list at a time, at every kind of
    /// position: two factors merged into a composite one (the case the sieve
    /// exists for), a small composite factor, wrong product, wrong order.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn rejects_each_wrong_list() {
        let mut rng = fastrand::Rng::with_seed(11);
        for (start, step, count) in progressions() {
            let good = lists(start, step, count);
            for _ in 0..40 {
                let i = rng.usize(..count);
                let mut bad = good.clone();
                let l = &mut bad[i];
                match rng.u8(..4) {
                    0 if l.len() >= 2 => merge_two_largest(l),
                    1 if l.first() == Some(&2) && l.get(1) == Some(&2) => {
                        l.drain(..2);
                        l.insert(0, 4);
                    }
                    2 => l.push(3),
                    3 if l.len() >= 2 && l[0] != l[l.len() - 1] => l.reverse(),
                    _ => l.insert(0, 1),
                }
                let got = check(start, step, &bad);
                let n = start + i as u128 * step;
                assert_eq!(
                    got,
                    Err((i, verify(n, &bad[i]).expect_err("a wrong list"))),
                    "start {start} step {step}: {n} as {:?}",
                    bad[i]
                );
            }
        }
    }

    /// Every number claimed prime, and every number's two largest factors
    /// merged: the sieve must find exactly the composites verify finds.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn finds_every_wrong_list_at_once() {
        for (start, step, count) in progressions() {
            let claims: Vec<Vec<u128>> = (0..count as u128)
                .map(|i| start + i * step)
                .map(|n| if n == 1 { vec![] } else { vec![n] })
                .collect();
            let _ = check(start, step, &claims);
            let mut merged = lists(start, step, count);
            for l in &mut merged {
                merge_two_largest(l);
            }
            let _ = check(start, step, &merged);
        }
    }

    /// Chunks too short to sieve afresh (a job's first ones) are sieved
    /// when they resume the sieve of the chunk before, the first one
    /// seeding it: right chunks pass and leave the sieve to resume, and a
    /// composite claimed prime is caught in whichever chunk it is, in
    /// either form of the lists.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn short_resumed_chunks_are_sieved_and_catch_wrong_lists() {
        let (start, chunk, chunks) = (999_999_999_999u128, 6_000usize, 4usize);
        assert!(
            sieve_bound(start, 2, chunk, 8.0).is_none(),
            "too short alone"
        );
        let right = lists(start, 2, chunk * chunks);
        // A number with at least two factors in each chunk.
        let victims: Vec<usize> = (0..chunks)
            .map(|c| {
                (c * chunk + 1_234..)
                    .find(|&k| right[k].len() >= 2)
                    .expect("a composite")
            })
            .collect();
        for bad in [None, Some(0), Some(1), Some(3)] {
            let mut claims = right.clone();
            if let Some(c) = bad {
                merge_two_largest(&mut claims[victims[c]]);
            }
            for left_out in [false, true] {
                let form: Vec<&[u128]> = claims
                    .iter()
                    .map(|l| &l[..l.len() - usize::from(left_out)])
                    .collect();
                let mut resume = SieveResume::default();
                for c in 0..chunks {
                    let from = start + 2 * (c * chunk) as u128;
                    let part = form[c * chunk..][..chunk].iter().copied();
                    let verdict = verify_progression_resuming(from, 2, part, left_out, &mut resume);
                    if bad == Some(c) {
                        let k = victims[c];
                        // Left out, the composite is what the rest leaves.
                        let composite = *claims[k].last().expect("merged");
                        let expect = Err((k - c * chunk, VerifyError::NotPrime(composite)));
                        assert_eq!(verdict, expect, "chunk {c}");
                    } else {
                        assert_eq!(verdict, Ok(()), "chunk {c} of {bad:?}");
                        let next = from + 2 * chunk as u128;
                        assert!(resume.resumes(next, 2), "chunk {c} was sieved");
                    }
                }
            }
        }
    }

    fn prime_near(mut x: u128) -> u128 {
        while !is_prime(x) {
            x += 1;
        }
        x
    }

    /// Composites claimed prime whose smallest prime factor is as large as
    /// it can be: squares of the largest sieving primes, products of two
    /// primes near √max, base-2 strong pseudoprimes and Carmichael numbers,
    /// alone and times small primes.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn rejects_hard_composites_claimed_prime() {
        let mut hard: Vec<(u128, Vec<u128>)> = vec![];
        for bits in [10u32, 16, 20, 21] {
            let p = prime_near(1 << bits);
            let q = prime_near(p + 2);
            hard.push((p * p, vec![p * p]));
            hard.push((p * q, vec![p * q]));
            hard.push((3 * p * q, vec![3, p * q]));
            hard.push((2 * 2 * p * q, vec![2, 2, p * q]));
        }
        // Base-2 strong pseudoprimes, the last to bases 2, 3, 5 and 7.
        for n in [
            2047u128,
            3277,
            1_373_653,
            25_326_001,
            3_215_031_751,
            2_152_302_898_747,
        ] {
            hard.push((n, vec![n]));
        }
        // Carmichael numbers.
        for n in [561u128, 41_041, 825_265, 321_197_185] {
            hard.push((n, vec![n]));
            hard.push((5 * n, vec![5, n]));
        }
        for (n, claim) in hard {
            for (step, before) in [(1u128, 500u128), (2, 1500), (6, 7), (1001, 0)] {
                let start = n.saturating_sub(before * step).max(1);
                let start = n - (n - start) / step * step;
                let i = ((n - start) / step) as usize;
                let mut l = lists(start, step, i + 1 + 400);
                assert_eq!(l[i], factor(n));
                l[i] = claim.clone();
                let got = check(start, step, &l);
                assert_eq!(
                    got,
                    Err((i, verify(n, &claim).expect_err("a wrong list"))),
                    "{n} as {claim:?}, step {step}"
                );
                assert!(matches!(got, Err((_, VerifyError::NotPrime(_)))));
            }
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn numbers_past_2_128_fail() {
        let start = u128::MAX - 3;
        let l = [factor(start), factor(start + 2), vec![1]];
        assert_eq!(
            verify_progression(start, 2, slices(&l)),
            Err((2, VerifyError::Overflow))
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn modular_helpers() {
        for p in [3u64, 5, 7, 1_000_003, 4_194_301] {
            assert_eq!(p.wrapping_mul(inv64(p)), 1);
            for t in [1u64, 2, 3, 10, p - 1, p + 1] {
                if t % p != 0 {
                    assert_eq!(t % p * inv_mod(t % p, p) % p, 1, "{t} mod {p}");
                }
            }
        }
        // first_multiple against a search, every residue of start and step.
        for p in [3u64, 5, 7, 11, 13] {
            for start in 1..=3 * p {
                for step in 1..=2 * p {
                    let search = (0..p).find(|i| (start + i * step).is_multiple_of(p));
                    let want = match search {
                        None => None,
                        Some(i) if step.is_multiple_of(p) => Some((i as usize, 1)),
                        Some(i) => Some((i as usize, p as usize)),
                    };
                    assert_eq!(
                        first_multiple(p, start, step),
                        want,
                        "{start} + i·{step} mod {p}"
                    );
                }
            }
        }
        let big = (1u64 << 43) + 12_345;
        for p in [1_000_003u64, 4_194_301] {
            for step in [1, 2, 6, 1_000_002] {
                let (i, stride) = first_multiple(p, big, step).expect("p ∤ step");
                assert!((big + i as u64 * step).is_multiple_of(p));
                assert!(i < p as usize && stride == p as usize);
                assert!((0..i as u64).all(|j| !(big + j * step).is_multiple_of(p)));
            }
        }
    }
}
