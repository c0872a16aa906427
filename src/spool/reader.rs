//! The shippers' view of the spool: a cursor that reads verified, still-compressed blocks
//! forward from a [`Position`], never past the durable end the writer published, and
//! reports every stretch of data it had to skip instead of failing.

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::format::{read_frame, segment_file_name, FrameError, SEGMENT_HEADER_LEN};
use super::{oldest_position, BlockMeta, Position, Shared, SpoolError, State};

/// What one [`SpoolReader::next`] call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEvent {
    /// A block: its snappy bytes (a ready remote-write body) are in the caller's buffer,
    /// and `next` is the position after it (what to acknowledge once it is delivered).
    Block { meta: BlockMeta, next: Position },
    /// Data between `from` and `to` can never be read; the reader now stands at `to`.
    Gap {
        from: Position,
        to: Position,
        reason: GapReason,
        /// Samples in the skipped data, when known exactly.
        lost_samples: Option<u64>,
    },
    /// Nothing new became durable before the timeout.
    Idle,
    /// The writer closed the spool and everything durable has been read.
    End,
}

/// What [`SpoolReader::backlog`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub bytes: u64,
    pub newest_ts: i64,
}

/// Why a reader skipped data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GapReason {
    /// Retention deleted the segments before the reader reached them.
    Deleted,
    /// Segments are missing from the middle of the numbered run (removed by hand).
    Missing,
    /// A frame failed verification; the rest of its segment's readable data is skipped.
    Corrupt { detail: String },
    /// The starting position lies beyond the spool's durable end (a cursor persisted for a
    /// spool that has since been wiped or lost its tail); the reader starts over at the
    /// oldest segment, or at the durable end when only the offset is beyond it.
    InvalidPosition,
}

/// A reader and registered cursor; see the module docs of `spool`.
pub struct SpoolReader {
    shared: Arc<Shared>,
    slot: usize,
    pos: Position,
    /// `pos.segment`, open. Kept open so retention deleting it loses nothing.
    file: Option<File>,
    /// A gap found when the reader was created, reported by the first `next`.
    pending: Option<ReadEvent>,
}

impl SpoolReader {
    pub(super) fn new(shared: Arc<Shared>, from: Position) -> Self {
        let mut st = shared.state.lock();
        let mut pos = if from.segment == 0 {
            oldest_position(&st)
        } else {
            Position {
                segment: from.segment,
                offset: from.offset.max(SEGMENT_HEADER_LEN),
            }
        };
        let durable = st.durable;
        let mut pending = None;
        if pos.segment > durable.segment
            || (pos.segment == durable.segment && pos.offset > durable.offset)
        {
            let to = if pos.segment > durable.segment {
                oldest_position(&st)
            } else {
                durable
            };
            pending = Some(ReadEvent::Gap {
                from,
                to,
                reason: GapReason::InvalidPosition,
                lost_samples: None,
            });
            pos = to;
        }
        let slot = match st.cursors.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                st.cursors.push(None);
                st.cursors.len() - 1
            }
        };
        st.cursors[slot] = Some(pos);
        drop(st);
        Self {
            shared,
            slot,
            pos,
            file: None,
            pending,
        }
    }

    /// Where the next `next` call reads.
    pub fn position(&self) -> Position {
        self.pos
    }

    /// How much durable data lies at and after `from`: its bytes (frames only, segment
    /// headers left out) and the newest sample timestamp in the spool (`i64::MIN` when
    /// the spool holds no block). For a shipper's lag gauges.
    pub fn backlog(&self, from: Position) -> Backlog {
        let st = self.shared.state.lock();
        let mut bytes = 0;
        let mut newest_ts = i64::MIN;
        for (&segment, info) in st.segments.iter() {
            newest_ts = newest_ts.max(info.max_ts);
            if segment < from.segment {
                continue;
            }
            let start = if segment == from.segment {
                from.offset.max(SEGMENT_HEADER_LEN)
            } else {
                SEGMENT_HEADER_LEN
            };
            bytes += info.end.saturating_sub(start);
        }
        Backlog { bytes, newest_ts }
    }

    /// Records that everything before `pos` has been delivered, so retention can tell
    /// whether deleting a segment drops data this reader's receiver still needs.
    pub fn acknowledge(&self, pos: Position) {
        self.shared.state.lock().cursors[self.slot] = Some(pos);
    }

    /// Reads the next block into `snappy` (cleared first), waiting up to `timeout` for
    /// the writer to make new data durable.
    pub fn next(
        &mut self,
        snappy: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<ReadEvent, SpoolError> {
        if let Some(event) = self.pending.take() {
            return Ok(event);
        }
        // An absurd timeout (overflowing Instant) means "wait as long as it takes".
        let deadline = Instant::now().checked_add(timeout);
        // A second handle, so the guard does not borrow `self` while `self` moves.
        let shared = Arc::clone(&self.shared);
        loop {
            let mut st = shared.state.lock();
            if self.file.is_none() {
                if !st.segments.contains_key(&self.pos.segment) {
                    return Ok(self.skip_absent(&st, self.pos));
                }
                let path = shared.dir.join(segment_file_name(self.pos.segment));
                match File::open(&path) {
                    Ok(f) => self.file = Some(f),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Ok(self.skip_absent(&st, self.pos))
                    }
                    Err(e) => return Err(SpoolError::io("open", &path, e)),
                }
            }
            let durable = st.durable;
            let sealed = self.pos.segment < durable.segment;
            let end = if sealed {
                match st.segments.get(&self.pos.segment) {
                    Some(info) => info.end,
                    // Deleted since we opened it: a segment sealed in this run ends with
                    // its last complete frame, which is the file's length.
                    None => self.file_len()?,
                }
            } else {
                durable.offset
            };
            if self.pos.offset >= end {
                if sealed {
                    let after = Position {
                        segment: self.pos.segment + 1,
                        offset: SEGMENT_HEADER_LEN,
                    };
                    self.file = None;
                    // The open-time scan found a bad frame here and kept the file: the
                    // bytes after it are lost to this reader.
                    let ignored = st
                        .segments
                        .get(&self.pos.segment)
                        .filter(|i| i.end < i.bytes && self.pos.offset == i.end)
                        .map(|i| i.bytes - i.end);
                    if let Some(ignored) = ignored {
                        let from = self.pos;
                        self.pos = after;
                        return Ok(ReadEvent::Gap {
                            from,
                            to: after,
                            reason: GapReason::Corrupt {
                                detail: format!(
                                    "{ignored} bytes from {from} on failed verification when the spool was opened"
                                ),
                            },
                            lost_samples: None,
                        });
                    }
                    if st.segments.contains_key(&after.segment) {
                        self.pos = after;
                        continue;
                    }
                    return Ok(self.skip_absent(&st, after));
                }
                if st.closed {
                    return Ok(ReadEvent::End);
                }
                match deadline {
                    Some(d) if Instant::now() >= d => return Ok(ReadEvent::Idle),
                    Some(d) => {
                        shared.grew.wait_until(&mut st, d);
                    }
                    None => shared.grew.wait(&mut st),
                }
                continue;
            }
            drop(st);
            let Some(file) = self.file.as_ref() else {
                continue;
            };
            return match read_frame(file, self.pos.offset, end, snappy) {
                Ok((meta, len)) => {
                    self.pos.offset += len;
                    Ok(ReadEvent::Block {
                        meta,
                        next: self.pos,
                    })
                }
                Err(FrameError::Io(e)) => {
                    let path = self.shared.dir.join(segment_file_name(self.pos.segment));
                    Err(SpoolError::io_at(
                        "read frame of",
                        &path,
                        self.pos.offset,
                        e,
                    ))
                }
                Err(bad) => {
                    let from = self.pos;
                    self.pos.offset = end;
                    Ok(ReadEvent::Gap {
                        from,
                        to: self.pos,
                        reason: GapReason::Corrupt {
                            detail: format!("{bad} at {from}"),
                        },
                        lost_samples: None,
                    })
                }
            };
        }
    }

    /// `from.segment` does not exist: move to the next segment that does and describe
    /// the gap.
    fn skip_absent(&mut self, st: &State, from: Position) -> ReadEvent {
        self.file = None;
        // The active segment always exists and is never behind a reader (new() checks),
        // so there is a next segment; fall back to the durable end all the same.
        let to = st
            .segments
            .range(from.segment..)
            .next()
            .map(|(n, _)| Position {
                segment: *n,
                offset: SEGMENT_HEADER_LEN,
            })
            .unwrap_or(st.durable);
        let oldest = oldest_position(st);
        let reason = if to.segment == oldest.segment {
            GapReason::Deleted
        } else {
            GapReason::Missing
        };
        self.pos = to;
        ReadEvent::Gap {
            from,
            to,
            reason,
            lost_samples: lost_samples(st, from, to.segment),
        }
    }

    fn file_len(&self) -> Result<u64, SpoolError> {
        let path = || self.shared.dir.join(segment_file_name(self.pos.segment));
        match &self.file {
            Some(f) => f
                .metadata()
                .map(|m| m.len())
                .map_err(|e| SpoolError::io("stat", &path(), e)),
            None => Ok(0),
        }
    }
}

impl Drop for SpoolReader {
    fn drop(&mut self) {
        self.shared.state.lock().cursors[self.slot] = None;
    }
}

/// Samples in the deleted segments `from.segment .. to_segment`, counting only what lies
/// at or after `from`. `None` when a segment is not in the deleted record or `from` is in
/// the middle of a deleted segment (how many of its samples came before is not known).
fn lost_samples(st: &State, from: Position, to_segment: u64) -> Option<u64> {
    let span = to_segment.saturating_sub(from.segment);
    if span > st.deleted.len() as u64 || (from.offset > SEGMENT_HEADER_LEN && span > 0) {
        return None;
    }
    let mut total = 0;
    for segment in from.segment..to_segment {
        let i = st
            .deleted
            .binary_search_by_key(&segment, |(n, _)| *n)
            .ok()?;
        total += st.deleted[i].1;
    }
    Some(total)
}
