//! A job sent as plain text, read as its body arrives.

use super::{bad, on_line, parse_digits, zero_in_list, AppError, JobOptions, Parsed};
use crate::store::ListBuilder;

/// What a text file may start with (a byte-order mark, as editors write it).
const BOM: &[u8] = b"\xef\xbb\xbf";

/// A job sent as plain text (`Content-Type: text/plain` or `text/csv`):
/// the numbers in decimal, separated by whitespace or commas (a file of one
/// number per line, as `seq` or a spreadsheet writes it).
///
/// The body is given piece by piece as it arrives ([`TextList::feed`]), so
/// it is never held whole: a large list costs its numbers' memory, not
/// that and its text (a number cut by the end of a piece waits for the
/// rest). The answer is the one the whole body would get: the first bad
/// item, named with its line, or past the limit the count of them all.
pub(super) struct TextList {
    list: ListBuilder,
    /// The most numbers a job may have.
    max: u64,
    /// Numbers read (and, past `max`, counted).
    count: u64,
    /// The line (from 1) the next byte is on.
    line: usize,
    /// Bytes fed so far.
    offset: u64,
    /// A number the last piece ended in, and where in the body it starts.
    partial: Vec<u8>,
    partial_at: u64,
    /// Whether the body starts with a byte-order mark (which UTF-8 errors'
    /// positions do not count).
    bom: bool,
    /// The first bad item; only counting goes on after it.
    error: Option<AppError>,
    /// More than `max` numbers: only counting goes on.
    too_many: bool,
}

impl TextList {
    /// Room for `capacity` numbers, at most `max` of them taken.
    pub(super) fn new(capacity: usize, max: u64) -> Self {
        TextList {
            list: ListBuilder::with_capacity(capacity),
            max,
            count: 0,
            line: 1,
            offset: 0,
            partial: Vec::new(),
            partial_at: 0,
            bom: false,
            error: None,
            too_many: false,
        }
    }

    /// Reads the next piece of the body.
    pub(super) fn feed(&mut self, piece: &[u8]) {
        // Where the number being read starts in `piece` (0 while it goes on
        // from `partial`).
        let mut start = (!self.partial.is_empty()).then_some(0);
        for (i, &b) in piece.iter().enumerate() {
            if b.is_ascii_whitespace() || b == b',' {
                if let Some(from) = start.take() {
                    if self.partial.is_empty() {
                        self.item(&piece[from..i], self.offset + from as u64);
                    } else {
                        let mut whole = std::mem::take(&mut self.partial);
                        whole.extend_from_slice(&piece[..i]);
                        self.item(&whole, self.partial_at);
                        whole.clear();
                        self.partial = whole;
                    }
                }
                if b == b'\n' {
                    self.line += 1;
                }
            } else if start.is_none() {
                start = Some(i);
            }
        }
        if let Some(from) = start {
            if self.partial.is_empty() {
                self.partial_at = self.offset + from as u64;
            }
            self.partial.extend_from_slice(&piece[from..]);
        }
        self.offset += piece.len() as u64;
    }

    /// The job, with `options` from the query string; or the first bad
    /// item, too many numbers, or none at all.
    pub(super) fn finish(mut self, options: JobOptions) -> Result<Parsed, AppError> {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.item(&last, self.partial_at);
        }
        if self.too_many {
            return Err(bad(
                "too_many_numbers",
                Some("numbers".into()),
                format!("{} numbers; the limit per job is {}", self.count, self.max),
            ));
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.count == 0 {
            return Err(bad(
                "empty_job",
                Some("numbers".into()),
                "the body holds no numbers",
            ));
        }
        Ok(Parsed {
            numbers: Err(self.list),
            chunk_cap: options.chunk_cap,
            priority: options.priority,
            name: options.name,
        })
    }

    /// One item of the list, which starts `at` that byte of the body.
    fn item(&mut self, mut item: &[u8], mut at: u64) {
        if at == 0 {
            if let Some(rest) = item.strip_prefix(BOM) {
                self.bom = true;
                if rest.is_empty() {
                    return;
                }
                item = rest;
                at = BOM.len() as u64;
            }
        }
        if self.error.is_some() {
            return;
        }
        if self.count >= self.max {
            self.too_many = true;
            self.count += 1;
            return;
        }
        let index = self.count;
        let name = || format!("numbers[{index}]");
        // A file's reader looks for a line, not an index.
        let line = self.line;
        let text = match std::str::from_utf8(item) {
            Ok(text) => text,
            Err(e) => {
                let skipped = if self.bom { BOM.len() as u64 } else { 0 };
                self.error = Some(not_utf8(e, at - skipped, line));
                return;
            }
        };
        match parse_digits(text, name) {
            Ok(0) => self.error = Some(on_line(zero_in_list(name()), line)),
            Ok(n) => {
                self.list.push(n);
                self.count += 1;
            }
            Err(e) => self.error = Some(on_line(e, line)),
        }
    }
}

/// The body is not UTF-8 where `e` says, in an item that starts `at` that
/// byte of the text (after any byte-order mark): said in std's words, with
/// the place in the body.
fn not_utf8(e: std::str::Utf8Error, at: u64, line: usize) -> AppError {
    let index = at + e.valid_up_to() as u64;
    let what = match e.error_len() {
        Some(len) => format!("invalid utf-8 sequence of {len} bytes from index {index}"),
        None => format!("incomplete utf-8 byte sequence from index {index}"),
    };
    bad(
        "bad_request",
        None,
        format!("the body is not UTF-8 text: line {line}: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer to a body fed in `pieces`, at most `max` numbers taken,
    /// in a form to compare.
    fn read(pieces: &[&[u8]], max: u64) -> String {
        let limits = crate::Config {
            max_numbers_per_job: max,
            ..crate::Config::default()
        };
        match crate::api::parse_text_job(pieces.iter().copied(), &limits) {
            Ok(job) => format!("{:?}", job.numbers),
            Err(e) => format!("{e:?}"),
        }
    }

    /// A body cut anywhere, even byte by byte, reads as it does whole: the
    /// same numbers, or the same error naming the same item and line.
    #[test]
    fn a_body_in_pieces_reads_as_it_does_whole() {
        let bodies: [&[u8]; 12] = [
            b"\xef\xbb\xbf12\r\n1000000000001, 97\n\n340282366920938463463374607431768211455\n",
            b"7\n8\n9\n10\n",
            b"\xef\xbb\xbf\n\n5 6",
            b"12 15 abc 17",
            b"1\n2\n3\xff\n4",
            b"1\n\xef\xbb\xbf2\n",
            b"1 2\n\xe2\x82\n",
            b"\xef\xbb\xbf1 \xc3\xa9\xff",
            b"1 2 3 4 5 6 7",
            b"1 2 0 4 5 6 7",
            b"1,2,,3\t4\x0c5 -6",
            b" \n ",
        ];
        for body in bodies {
            let whole = read(&[body], 5);
            for cut in 0..=body.len() {
                let (a, b) = body.split_at(cut);
                assert_eq!(read(&[a, b], 5), whole, "{body:?} cut at {cut}");
            }
            let bytes: Vec<&[u8]> = body.chunks(1).collect();
            assert_eq!(read(&bytes, 5), whole, "{body:?} byte by byte");
        }
    }

    /// A UTF-8 error is placed in the body (after a byte-order mark), on
    /// its line, as std would place it in the whole text.
    #[test]
    fn utf8_errors_say_where() {
        for body in [
            &b"1\n2\n3\xff\n"[..],
            b"\xef\xbb\xbf1\n2 3\xff\n",
            b"\xef\xbb\xbf1\n\n 2\xe2\x82",
            b"\xc3\xa9\xc3\xa9\xff",
        ] {
            let text = body.strip_prefix(BOM).unwrap_or(body);
            let e = std::str::from_utf8(text).expect_err("not UTF-8");
            let line = 1 + text[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            let want = format!("the body is not UTF-8 text: line {line}: {e}");
            assert!(
                read(&[body], 5).contains(&format!("{want:?}")),
                "{}",
                read(&[body], 5)
            );
        }
    }
}
