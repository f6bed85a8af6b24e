//! A job sent as JSON, read as its body arrives.

use std::collections::VecDeque;
use std::io::Read;

/// A body's pieces, read as one text: a large JSON body is parsed as it
/// arrives (the pieces come from the connection through a channel), so it
/// is never held whole and costs its list's memory, not that and its text.
pub(super) struct BodyText<I: Iterator> {
    /// BodyText taken from `rest` but not yet read, the first of them read up
    /// to `at`.
    queue: VecDeque<I::Item>,
    at: usize,
    rest: I,
}

impl<B: AsRef<[u8]>, I: Iterator<Item = B>> BodyText<I> {
    pub(super) fn new(pieces: impl IntoIterator<IntoIter = I>) -> Self {
        BodyText {
            queue: VecDeque::new(),
            at: 0,
            rest: pieces.into_iter(),
        }
    }

    /// The first byte of the text that is not `space`, if any, without
    /// reading it (the parser's lines and columns count from the start).
    pub(super) fn first(&mut self, space: impl Fn(u8) -> bool) -> Option<u8> {
        let mut skip = self.at;
        for piece in &self.queue {
            if let Some(&b) = piece.as_ref()[skip..].iter().find(|&&b| !space(b)) {
                return Some(b);
            }
            skip = 0;
        }
        // Whitespace up to here: the pieces wait in the queue.
        for piece in self.rest.by_ref() {
            let found = piece.as_ref().iter().copied().find(|&b| !space(b));
            self.queue.push_back(piece);
            if found.is_some() {
                return found;
            }
        }
        None
    }
}

impl<B: AsRef<[u8]>, I: Iterator<Item = B>> Read for BodyText<I> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(piece) = self.queue.front() {
                let left = &piece.as_ref()[self.at..];
                if !left.is_empty() {
                    let n = left.len().min(buf.len());
                    buf[..n].copy_from_slice(&left[..n]);
                    self.at += n;
                    return Ok(n);
                }
                self.queue.pop_front();
                self.at = 0;
                continue;
            }
            match self.rest.next() {
                Some(piece) => self.queue.push_back(piece),
                None => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_read_as_one_text_and_first_reads_nothing() {
        let parts: [&[u8]; 5] = [b"", b"  ", b"\n", b" {\"a\"", b": 1}"];
        let mut body = BodyText::new(parts);
        assert_eq!(body.first(|b| b.is_ascii_whitespace()), Some(b'{'));
        assert_eq!(body.first(|b| b != b'"'), Some(b'"'));
        let mut text = String::new();
        body.read_to_string(&mut text).expect("read");
        assert_eq!(text, "  \n {\"a\": 1}");
        assert_eq!(BodyText::new(parts).first(|_| true), None);
        assert_eq!(BodyText::new([b"" as &[u8]]).first(|_| false), None);
    }
}
