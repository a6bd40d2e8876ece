//! A process's output as records: its bytes cut into lines (or kept as the chunks they
//! arrived in), each line a record. Text that decodes as UTF-8 becomes
//! [`Payload::Text`] when the job asked for text; anything else stays bytes, never lost.

use crate::record::Payload;

/// How a process job cuts its output into records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputMode {
    /// One record per line, without its `\n` (or `\r\n`); a final line without a newline
    /// is kept. A line longer than [`MAX_LINE`] is cut into records of that size.
    #[default]
    Lines,
    /// One record per read from the pipe (up to 64 KiB), bytes as they came.
    Chunks,
}

/// The longest line kept in one record (1 MiB): a program that writes without newlines
/// cannot make a job hold unbounded memory before its first record.
pub const MAX_LINE: usize = 1 << 20;

/// Cuts one pipe's bytes into record payloads.
pub(super) struct Splitter {
    mode: OutputMode,
    text: bool,
    /// The start of a line not yet ended (Lines), or the start of a UTF-8 character cut
    /// by the end of the last chunk (Chunks, text).
    partial: Vec<u8>,
}

impl Splitter {
    pub(super) fn new(mode: OutputMode, text: bool) -> Splitter {
        Splitter {
            mode,
            text,
            partial: Vec::new(),
        }
    }

    /// Takes bytes as they arrived; `emit` gets each record they complete, in order.
    pub(super) fn push(&mut self, mut data: &[u8], emit: &mut impl FnMut(Payload)) {
        match self.mode {
            OutputMode::Chunks => {
                let mut chunk = std::mem::take(&mut self.partial);
                chunk.extend_from_slice(data);
                let keep = if self.text { cut_char_len(&chunk) } else { 0 };
                self.partial = chunk.split_off(chunk.len() - keep);
                if !chunk.is_empty() {
                    emit(self.payload(chunk));
                }
            }
            OutputMode::Lines => loop {
                let nl = data.iter().position(|&b| b == b'\n');
                let end = nl.unwrap_or(data.len());
                if self.partial.is_empty() && nl.is_some() && end <= MAX_LINE {
                    // The common case: a whole line inside one read.
                    emit(self.line(data[..end].to_vec()));
                } else {
                    self.partial.extend_from_slice(&data[..end]);
                    self.cut_overlong(emit);
                    if nl.is_some() {
                        let line = std::mem::take(&mut self.partial);
                        emit(self.line(line));
                    }
                }
                match nl {
                    Some(i) => data = &data[i + 1..],
                    None => break,
                }
            },
        }
    }

    /// Emits records of `MAX_LINE` bytes (less at a cut character) while the line being
    /// gathered is longer than that.
    fn cut_overlong(&mut self, emit: &mut impl FnMut(Payload)) {
        while self.partial.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            if self.text {
                cut -= cut_char_len(&self.partial[..MAX_LINE]);
            }
            let rest = self.partial.split_off(cut);
            let head = std::mem::replace(&mut self.partial, rest);
            emit(self.payload(head));
        }
    }

    /// The pipe closed: a final line without a newline (or a cut character) is kept.
    pub(super) fn finish(&mut self, emit: &mut impl FnMut(Payload)) {
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            emit(match self.mode {
                OutputMode::Lines => self.line(rest),
                OutputMode::Chunks => self.payload(rest),
            });
        }
    }

    fn line(&self, mut line: Vec<u8>) -> Payload {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.payload(line)
    }

    fn payload(&self, bytes: Vec<u8>) -> Payload {
        if self.text {
            match String::from_utf8(bytes) {
                Ok(s) => Payload::Text(s.into_boxed_str()),
                Err(e) => Payload::Bytes(e.into_bytes().into()),
            }
        } else {
            Payload::Bytes(bytes.into())
        }
    }
}

/// How many bytes at the end of `bytes` are the start of a UTF-8 character the end cut
/// (0–3): those wait for the rest of the character.
fn cut_char_len(bytes: &[u8]) -> usize {
    let tail = &bytes[bytes.len().saturating_sub(3)..];
    for (i, &b) in tail.iter().enumerate().rev() {
        let need = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            0x80..=0xBF => continue,
            _ => return 0,
        };
        let have = tail.len() - i;
        return if have < need { have } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: OutputMode, text: bool, pieces: &[&[u8]]) -> Vec<Payload> {
        let mut s = Splitter::new(mode, text);
        let mut out = Vec::new();
        for p in pieces {
            s.push(p, &mut |r| out.push(r));
        }
        s.finish(&mut |r| out.push(r));
        out
    }

    fn texts(p: &[Payload]) -> Vec<String> {
        p.iter()
            .map(|p| match p {
                Payload::Text(t) => format!("T:{t}"),
                Payload::Bytes(b) => format!("B:{b:?}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn lines_are_cut_at_newlines_across_reads_and_the_last_line_is_kept() {
        let got = run(OutputMode::Lines, true, &[b"a\nbc", b"d\r\n\ne", b"f"]);
        assert_eq!(texts(&got), ["T:a", "T:bcd", "T:", "T:ef"]);
        assert!(run(OutputMode::Lines, true, &[b""]).is_empty());
        assert_eq!(texts(&run(OutputMode::Lines, true, &[b"x\n"])), ["T:x"]);
    }

    #[test]
    fn bytes_that_are_not_utf8_stay_bytes_and_text_off_gives_bytes() {
        let got = run(OutputMode::Lines, true, &[b"ok\n\xff\xfe\n"]);
        assert_eq!(texts(&got), ["T:ok", "B:[255, 254]"]);
        let got = run(OutputMode::Lines, false, &[b"ok\n"]);
        assert_eq!(texts(&got), ["B:[111, 107]"]);
    }

    #[test]
    fn chunks_keep_a_character_cut_by_a_read_for_the_next_chunk() {
        let e = "é".as_bytes(); // C3 A9
        let got = run(OutputMode::Chunks, true, &[&[b'a', e[0]], &[e[1], b'b']]);
        assert_eq!(texts(&got), ["T:a", "T:éb"]);
        let got = run(OutputMode::Chunks, true, &[&[b'a', e[0]]]);
        assert_eq!(texts(&got), ["T:a", "B:[195]"]);
    }

    #[test]
    fn an_overlong_line_is_cut_into_records_of_max_line_on_character_bounds() {
        let mut long = vec![b'x'; MAX_LINE - 1];
        long.extend_from_slice("é".as_bytes());
        long.extend_from_slice(b"yz\n");
        let got = run(OutputMode::Lines, true, &[&long]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].bytes().unwrap().len(), MAX_LINE - 1);
        assert_eq!(got[1].bytes().unwrap(), "éyz".as_bytes());
    }

    #[test]
    fn cut_char_len_finds_incomplete_sequences_only() {
        assert_eq!(cut_char_len(b"abc"), 0);
        assert_eq!(cut_char_len(&[b'a', 0xE2, 0x82]), 2);
        assert_eq!(cut_char_len("€".as_bytes()), 0);
        assert_eq!(cut_char_len(&[0xF0]), 1);
    }
}
