//! Bodies in parts: the carry loop that feeds a body to the walker one part at a time,
//! and the staging of a streamed scrape's batch until the scrape is known to succeed.
//!
//! A body larger than the part size (`engine.stream_threshold`, smaller under memory
//! pressure) is never held whole: it is read, walked and written to its stored copy one
//! part at a time, and the encoded samples are spilled to a per-worker staging file as
//! they grow. Only when the whole body has been walked without error, and within the
//! sample limit, are the staged pieces committed, so a streamed scrape keeps the
//! all-or-nothing commit of a buffered one. Stored bodies re-read for staleness markers
//! go through the same loop.
//!
//! Nothing here owns a thread; the staging file belongs to one worker.

use super::pipeline::ScrapeFailure;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// Appends at most the given number of body bytes to the buffer; 0 at the end.
pub type ReadMore<'r> = &'r mut dyn FnMut(&mut Vec<u8>, usize) -> Result<usize, ScrapeFailure>;

/// Walks one part (`true`: the last) and returns the bytes it consumed.
pub type WalkPart<'w> = dyn FnMut(&[u8], bool) -> Result<usize, ScrapeFailure> + 'w;

/// An entry may span parts only by a quoted value holding raw line breaks; past this many
/// parts' worth of carry without a complete entry, the walk reports the error it sees.
const MAX_CARRY_PARTS: usize = 8;

/// Drives `walk` over the body that `read` yields: `read(buf, max)` appends at most `max`
/// bytes to `buf` and returns how many (0 at the end). `buf` is the caller's reused
/// buffer, holding the body's first bytes if some were read already; it holds at most a
/// part plus an incomplete entry carried to the next part.
///
/// Each part handed to `walk` starts at a line boundary and, unless it is the last, ends
/// right after a line break; `walk(part, last)` returns how many bytes it consumed, the
/// rest being an entry cut by the part boundary, which is walked again with the next
/// part in front of it.
pub fn walk_parts(
    buf: &mut Vec<u8>,
    part_size: usize,
    read: ReadMore<'_>,
    walk: &mut WalkPart<'_>,
) -> Result<(), ScrapeFailure> {
    // After a walk left an entry unfinished, the next try waits until the part is twice
    // the carried bytes, so a long entry is not re-parsed at every read.
    let mut retry_at = 0;
    loop {
        let n = read(buf, part_size)?;
        let last = n == 0;
        // A carry past its bound is walked as if it were the end, so the walk reports
        // the entry's error instead of the loop holding ever more of it.
        let forced = !last && buf.len() > MAX_CARRY_PARTS * part_size.max(1);
        let cut = if last || forced {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', buf) {
                Some(i) if i + 1 >= retry_at => i + 1,
                // No line break yet (a line longer than a part), or too little new.
                _ => continue,
            }
        };
        let consumed = walk(&buf[..cut], last || forced)?;
        if last || forced {
            return Ok(());
        }
        retry_at = if consumed < cut {
            2 * (cut - consumed)
        } else {
            0
        };
        buf.drain(..consumed);
    }
}

/// A part of a streamed scrape's batch, staged until the scrape succeeds.
#[derive(Debug, Clone, Copy)]
pub struct Piece {
    pub len: usize,
    pub samples: u64,
    pub min_ts: i64,
    pub max_ts: i64,
}

/// Where a worker keeps the staged pieces of its current streamed scrape: a file it
/// reuses (truncated per scrape), or memory when it has no directory (benches, tests).
pub struct Staging {
    path: Option<PathBuf>,
    file: Option<File>,
    memory: Vec<u8>,
    pieces: Vec<Piece>,
}

impl Staging {
    pub fn new(path: Option<PathBuf>) -> Staging {
        Staging {
            path,
            file: None,
            memory: Vec::new(),
            pieces: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Stages `batch` as one piece.
    pub fn spill(&mut self, batch: &[u8], piece: Piece) -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        match &self.path {
            None => self.memory.extend_from_slice(batch),
            Some(path) => {
                if self.file.is_none() {
                    self.file = Some(
                        File::options()
                            .read(true)
                            .write(true)
                            .create(true)
                            .truncate(true)
                            .open(path)?,
                    );
                }
                if let Some(f) = &mut self.file {
                    f.write_all(batch)?;
                }
            }
        }
        self.pieces.push(Piece {
            len: batch.len(),
            ..piece
        });
        Ok(())
    }

    /// Hands every staged piece, in order, to `commit`, reading each into `buf`; then
    /// forgets them.
    pub fn replay(
        &mut self,
        buf: &mut Vec<u8>,
        commit: &mut dyn FnMut(&[u8], &Piece),
    ) -> io::Result<()> {
        let pieces = std::mem::take(&mut self.pieces);
        let result = (|| {
            if let Some(f) = &mut self.file {
                f.seek(SeekFrom::Start(0))?;
            }
            let mut off = 0;
            for p in &pieces {
                match &mut self.file {
                    Some(f) => {
                        buf.clear();
                        buf.resize(p.len, 0);
                        f.read_exact(buf)?;
                        commit(buf, p);
                    }
                    None => {
                        commit(&self.memory[off..off + p.len], p);
                        off += p.len;
                    }
                }
            }
            Ok(())
        })();
        self.clear();
        result
    }

    /// Drops whatever is staged (a failed scrape's rollback).
    pub fn clear(&mut self) {
        self.pieces.clear();
        self.memory = Vec::new();
        if let Some(f) = &mut self.file {
            // The next scrape overwrites from the start; a failed truncate only leaves
            // stale bytes past what the next pieces cover.
            let _ = f.set_len(0).and_then(|_| f.seek(SeekFrom::Start(0)));
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let (Some(path), Some(_)) = (&self.path, &self.file) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(
        body: &[u8],
        chunk: usize,
    ) -> impl FnMut(&mut Vec<u8>, usize) -> Result<usize, ScrapeFailure> + '_ {
        let mut at = 0;
        move |buf: &mut Vec<u8>, max: usize| {
            let n = chunk.min(max).min(body.len() - at);
            buf.extend_from_slice(&body[at..at + n]);
            at += n;
            Ok(n)
        }
    }

    #[test]
    fn parts_end_at_line_breaks_and_carry_the_rest() {
        let body = b"a 1\nbb 2\nccc 3\ndddd 4";
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        walk_parts(&mut buf, 6, &mut reader(body, 6), &mut |part, last| {
            seen.push((String::from_utf8_lossy(part).into_owned(), last));
            Ok(part.len())
        })
        .expect("walks");
        let joined: String = seen.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(joined.as_bytes(), body);
        assert!(seen[..seen.len() - 1]
            .iter()
            .all(|(p, last)| !last && p.ends_with('\n')));
        assert!(seen.last().is_some_and(|(_, last)| *last));
    }

    #[test]
    fn an_unconsumed_tail_is_walked_again_with_the_next_part() {
        let body = b"x{a=\"1\n2\"} 1\ny 2\n";
        let mut walked = Vec::new();
        let mut buf = Vec::new();
        walk_parts(&mut buf, 8, &mut reader(body, 8), &mut |part, last| {
            walked.push(String::from_utf8_lossy(part).into_owned());
            // Pretend the walker needs a whole `x{...}` entry: consume nothing until the
            // closing quote is there.
            let text = String::from_utf8_lossy(part);
            Ok(if !last && text.matches('"').count() % 2 == 1 {
                0
            } else {
                part.len()
            })
        })
        .expect("walks");
        assert!(walked.iter().any(|p| p.starts_with("x{a=\"1\n2\"} 1\n")));
    }

    #[test]
    fn an_endless_line_is_bounded() {
        let body = vec![b'a'; 100];
        let mut calls = Vec::new();
        let mut buf = Vec::new();
        walk_parts(&mut buf, 8, &mut reader(&body, 8), &mut |part, last| {
            calls.push((part.len(), last));
            Ok(part.len())
        })
        .expect("walks");
        assert_eq!(calls.len(), 1);
        assert!(calls[0].0 <= 9 * 8 && calls[0].1, "{calls:?}");
    }

    #[test]
    fn staging_replays_pieces_in_order_and_clears() {
        let dir = tempfile::tempdir().expect("tempdir");
        for path in [None, Some(dir.path().join("w0.staging"))] {
            let mut st = Staging::new(path);
            let piece = |samples| Piece {
                len: 0,
                samples,
                min_ts: 1,
                max_ts: 2,
            };
            st.spill(b"one", piece(1)).expect("spill");
            st.spill(b"three", piece(3)).expect("spill");
            let mut got = Vec::new();
            st.replay(&mut Vec::new(), &mut |b, p| {
                got.push((b.to_vec(), p.samples, p.len))
            })
            .expect("replay");
            assert_eq!(
                got,
                vec![(b"one".to_vec(), 1, 3), (b"three".to_vec(), 3, 5)]
            );
            assert!(st.is_empty());
            st.spill(b"x", piece(1)).expect("spill");
            st.clear();
            st.spill(b"yz", piece(2)).expect("spill");
            let mut got = Vec::new();
            st.replay(&mut Vec::new(), &mut |b, _| got.push(b.to_vec()))
                .expect("replay");
            assert_eq!(got, vec![b"yz".to_vec()]);
        }
    }
}
