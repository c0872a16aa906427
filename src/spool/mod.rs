//! The durable on-disk spool: append-only segment files of checksummed, snappy-compressed
//! remote-write blocks, a reader for the shippers, retention, and crash recovery.
//!
//! **Owns** every file under the spool directory. **Input**: uncompressed remote-write
//! `WriteRequest` bytes (one *block*) from the single flusher thread, which owns the
//! [`Spool`] (`append`, then `sync` once per flush). **Output**: blocks stored exactly as
//! they will be POSTed (snappy *block* format of the `WriteRequest`), read back by
//! [`SpoolReader`]s on the shipper threads and by [`read_all`] for `export` and tests.
//! The spool starts no thread, never retries a failed `fsync`, never panics on what it
//! finds on disk, and never deletes data except through [`Spool::enforce_retention`] and
//! the truncation of a torn tail on open.
//!
//! # On-disk format (version 2)
//!
//! The directory holds a `LOCK` file (an exclusive `flock` held by the open [`Spool`], so
//! two agents cannot write one spool) and segment files named by a 20-digit, zero-padded,
//! monotonically increasing number: `00000000000000000001.seg`, `…02.seg`, … A segment
//! is a 16-byte header followed by frames, all integers little-endian:
//!
//! ```text
//! segment header   magic "SWSPOOL\0" (8) | version u32 = 2 | reserved u32 = 0
//! frame            len u32 | crc u32 | payload (len bytes)
//!   payload        samples u32 | stripe u32 | min_ts i64 | max_ts i64 | snappy bytes (len - 24)
//! ```
//!
//! `crc` is CRC-32C (Castagnoli) over the 4 bytes of `len` followed by the payload, so a
//! flipped length is caught as surely as a flipped payload byte. `min_ts`/`max_ts` are the
//! block's sample timestamps in milliseconds (they drive time retention); `samples` is its
//! sample count. `stripe` is the append-buffer stripe the block was cut from: every
//! sample of a series goes through one stripe, in order, so blocks of different stripes
//! never share a series and shippers may send them in parallel while sending each stripe's
//! blocks in order. `len` is at least 24 and at most 256 MiB. The snappy bytes are the raw
//! (not framed) encoding of the `WriteRequest`, i.e. a remote-write request body.
//!
//! A *position* is (segment number, byte offset of a frame), the offset of a segment's
//! first frame being 16. The position after the last block of a segment is that segment's
//! end; a reader there moves on to the next segment.
//!
//! # Writing and durability
//!
//! `append` compresses into a reused buffer and writes the frame with one `write(2)`; the
//! data is not yet durable. A segment is rolled when the next frame would take it past
//! `segment_size` (a segment always takes at least one frame, so a block larger than
//! `segment_size` gets a segment of its own). Rolling first `fdatasync`s the old segment,
//! so every sealed segment is durable to its last byte, then creates the next one. `sync`
//! `fdatasync`s the active segment and, after a roll, `fsync`s the directory so the new
//! file's name is durable too; only then is the new end published to readers.
//!
//! A failed write or sync **poisons** the spool: that call returns the I/O error and every
//! later `append`, `sync` and `enforce_retention` returns [`SpoolError::Poisoned`]. After a
//! failed `fsync` the kernel may have dropped the dirty pages and cleared the error, so a
//! retry could report success for data that is gone (the PostgreSQL "fsyncgate" and
//! fjall's `Poisoned`); the only safe continuation is a restart, which re-reads the files.
//!
//! # Recovery on open
//!
//! Every segment is scanned and every frame's checksum verified. In the **last** segment
//! (the one a crash can leave half-written) the first invalid frame (short header, length
//! past the end of file, impossible length, checksum mismatch) and everything after it is
//! truncated; a last segment whose header is short, zeroed or not ours is re-initialised.
//! Both are reported in [`Recovery`], never as an error. In an **earlier** segment the
//! first invalid frame ends that segment for every reader (the rest of the file is kept but
//! ignored) and is reported; later segments are read normally. Only a segment written by a
//! different format version stops `open` with an error (naming both versions), so a
//! downgrade never destroys data. Version 1 (without `stripe`) was never released.
//! The last segment is `fdatasync`ed after the scan, so what open reports is on disk.
//!
//! # Readers and cursors
//!
//! The writer publishes the durable end `(segment, offset)` in a `parking_lot` mutex with
//! a condvar. A [`SpoolReader`] never reads past it, waits on the condvar (with a timeout)
//! when it is there, moves to the next segment at the end of a sealed one, and verifies
//! each frame's checksum before handing out its still-compressed payload. A reader keeps
//! its current segment file open, so retention deleting that segment under it loses
//! nothing; a segment it had not opened yet that retention deleted is reported as a
//! [`ReadEvent::Gap`] carrying the number of samples lost, and the reader continues at the
//! oldest remaining segment.
//!
//! Every reader is also a registered **cursor**: the shipper calls
//! [`SpoolReader::acknowledge`] with the position after the last block its receiver
//! accepted. Retention asks "may I delete segment N?" by comparing N with the lowest
//! acknowledged position (the *watermark*, also [`Spool::min_acknowledged`]). The limits
//! are hard (a full disk helps no one), so a segment past either limit is deleted even when
//! a cursor still needs it, but the [`RemovedSegment`] says so (`unacknowledged`, for a
//! log line and a spool-wide counter) and the lagging reader later reports the loss in its
//! `Gap` (`lost_samples`, exact unless the reader started in the middle of a segment that
//! was already gone, or is more than 4096 deleted segments behind), for that receiver's
//! "samples dropped" counter. A shipper starts from the position it persisted, or from
//! `Position::default()` (the oldest data); dropping the reader unregisters its cursor.
//!
//! The flusher, which owns the [`Spool`], is expected to call `enforce_retention` itself
//! (for instance after a sync, every so often), so no other thread ever writes or deletes.
//!
//! # Retention
//!
//! [`Spool::enforce_retention`] deletes whole segments from the oldest, never the one being
//! written, while the total size exceeds `retention_size` or the segment's newest sample is
//! older than `now - retention_time_ms` (0 disables either limit). It stops at the first
//! segment that breaks neither rule, so the spool is always a contiguous run of segments.

mod format;
mod reader;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use thiserror::Error;

use format::{
    list_segments, scan_segment, seal_frame, segment_file_name, segment_header, HeaderState,
    HEAD_LEN, MAX_PAYLOAD, SEGMENT_HEADER_LEN,
};
pub use reader::{Backlog, GapReason, ReadEvent, SpoolReader};

/// Spool sizing and retention. A zero retention value disables that limit.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// A segment is rolled when the next frame would take it past this many bytes.
    pub segment_size: u64,
    /// Oldest segments are deleted while the spool is larger than this (0 = unlimited).
    pub retention_size: u64,
    /// Segments whose newest sample is older than this are deleted (0 = unlimited).
    pub retention_time_ms: i64,
}

/// What the spool records about a block next to its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMeta {
    pub samples: u32,
    /// The append-buffer stripe the block came from (see the format above).
    pub stripe: u32,
    /// Oldest sample timestamp in the block, ms.
    pub min_ts: i64,
    /// Newest sample timestamp in the block, ms.
    pub max_ts: i64,
}

/// A place in the spool: a segment number and the byte offset of a frame in it. Segment
/// numbers start at 1, so the default `{segment: 0, offset: 0}` means "the oldest data".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", segment_file_name(self.segment), self.offset)
    }
}

/// What opening (or reading) a spool found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Segment files found.
    pub segments: usize,
    /// Valid blocks found.
    pub blocks: u64,
    /// Samples in the valid blocks.
    pub samples: u64,
    /// Bytes of the last segment cut off as a torn tail ([`read_all`] counts the bytes it
    /// ignored there and modifies nothing).
    pub truncated_bytes: u64,
    /// Each problem found, naming the file and the offset.
    pub problems: Vec<String>,
}

/// Why a segment was removed by retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionReason {
    /// The spool was larger than `retention_size`.
    Size,
    /// The segment's newest sample was older than `retention_time_ms`.
    Time,
}

/// One segment deleted by retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedSegment {
    pub segment: u64,
    pub bytes: u64,
    pub blocks: u64,
    pub samples: u64,
    /// Newest sample in the segment, ms (`i64::MIN` for a segment without blocks).
    pub max_ts: i64,
    pub reason: RetentionReason,
    /// A registered cursor had not acknowledged the whole segment: some receiver may not
    /// get its samples (the reader's [`ReadEvent::Gap`] gives the exact count).
    pub unacknowledged: bool,
}

/// What [`Spool::enforce_retention`] did.
#[derive(Debug, Default)]
pub struct RetentionReport {
    /// Oldest first.
    pub removed: Vec<RemovedSegment>,
    /// Sum of `removed[..].bytes`.
    pub removed_bytes: u64,
    /// Sum of `removed[..].samples`.
    pub removed_samples: u64,
    /// Samples in removed segments that some cursor had not fully acknowledged.
    pub unacknowledged_samples: u64,
    /// The lowest acknowledged cursor position when retention ran (`None`: no cursors).
    pub watermark: Option<Position>,
}

/// A spool failure. Each variant names the file or directory involved.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// An I/O call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An I/O call at a known offset failed.
    #[error("{op} {} at offset {offset}: {source}", path.display())]
    IoAt {
        op: &'static str,
        path: PathBuf,
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// An earlier write or sync failed; the spool refuses all further writes until the
    /// process restarts and recovers from what is on disk.
    #[error("spool {} is poisoned by an earlier failure ({cause}); restart to recover", path.display())]
    Poisoned { path: PathBuf, cause: String },
    /// Another process (or another `Spool` in this one) has the directory open.
    #[error("spool {} is locked by another process", path.display())]
    Locked { path: PathBuf },
    /// The segment was written by another format version (a newer build, or the
    /// unreleased version 1).
    #[error("{} has spool format version {version}, this build reads version {supported}", path.display())]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        supported: u32,
    },
    /// The block cannot be stored in one frame.
    #[error("block for {} is too large: {bytes} bytes (compressed limit {max})", path.display())]
    TooLarge {
        path: PathBuf,
        bytes: usize,
        max: usize,
    },
}

impl SpoolError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    fn io_at(op: &'static str, path: &Path, offset: u64, source: io::Error) -> Self {
        Self::IoAt {
            op,
            path: path.to_path_buf(),
            offset,
            source,
        }
    }
}

/// Per-segment facts the writer, retention and readers share.
#[derive(Debug, Clone, Copy)]
struct SegInfo {
    /// Readable end: the end of the last valid frame (for the active segment, the end
    /// published by the last sync).
    end: u64,
    /// Size of the file.
    bytes: u64,
    blocks: u64,
    samples: u64,
    max_ts: i64,
}

/// How many deleted segments' sample counts are remembered for readers' gap accounting.
/// A reader further behind than this reports its loss as unknown.
const DELETED_MEMORY: usize = 4096;

struct State {
    /// Readers may read up to here.
    durable: Position,
    segments: BTreeMap<u64, SegInfo>,
    /// (segment, samples) of segments retention deleted, oldest first.
    deleted: VecDeque<(u64, u64)>,
    /// Acknowledged position of each live reader, indexed by its slot.
    cursors: Vec<Option<Position>>,
    /// The writer is gone: no durable end will move any more.
    closed: bool,
}

struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    grew: Condvar,
}

/// The segment being written.
struct Active {
    number: u64,
    path: PathBuf,
    file: File,
    /// Bytes written (durable or not).
    len: u64,
    /// Bytes known durable.
    synced: u64,
    blocks: u64,
    samples: u64,
    max_ts: i64,
}

impl Active {
    fn info(&self, end: u64) -> SegInfo {
        SegInfo {
            end,
            bytes: self.len,
            blocks: self.blocks,
            samples: self.samples,
            max_ts: self.max_ts,
        }
    }
}

/// The writing end of the spool, owned by the flusher thread.
pub struct Spool {
    opts: SpoolOptions,
    shared: Arc<Shared>,
    active: Active,
    /// Bytes of all segments but the active one.
    sealed_bytes: u64,
    /// A segment was created since the last directory fsync.
    dir_dirty: bool,
    encoder: snap::raw::Encoder,
    frame: Vec<u8>,
    poisoned: Option<String>,
    /// Held for the flock; closing it releases the lock.
    _lock: File,
    #[cfg(test)]
    fail_next_sync: bool,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, recovering from whatever a crash left.
    pub fn open(dir: &Path, opts: SpoolOptions) -> Result<(Spool, Recovery), SpoolError> {
        std::fs::create_dir_all(dir).map_err(|e| SpoolError::io("create directory", dir, e))?;
        let lock = lock_dir(dir)?;
        let listed = list_segments(dir)?;
        let mut rec = Recovery::default();
        let mut segments = BTreeMap::new();
        let mut snappy = Vec::new();
        let mut active = None;
        let count = listed.len();
        for (i, (number, path)) in listed.into_iter().enumerate() {
            let last = i + 1 == count;
            let file = OpenOptions::new()
                .read(true)
                .append(last)
                .open(&path)
                .map_err(|e| SpoolError::io("open", &path, e))?;
            let scan = scan_segment::<SpoolError>(&file, &path, &mut snappy, |_, _, _| Ok(()))?;
            if let HeaderState::Unsupported(version) = scan.header {
                return Err(SpoolError::UnsupportedVersion {
                    path,
                    version,
                    supported: format::VERSION,
                });
            }
            rec.segments += 1;
            rec.blocks += scan.blocks;
            rec.samples += scan.samples;
            let mut info = SegInfo {
                end: scan.valid_end.max(SEGMENT_HEADER_LEN),
                bytes: scan.file_len,
                blocks: scan.blocks,
                samples: scan.samples,
                max_ts: scan.max_ts,
            };
            if last {
                if scan.header != HeaderState::Valid {
                    rec.problems.push(format!(
                        "{}: segment header is {}; re-initialised the segment, dropping its {} bytes",
                        path.display(),
                        header_words(&scan.header),
                        scan.file_len
                    ));
                    rec.truncated_bytes += scan.file_len;
                    file.set_len(0)
                        .map_err(|e| SpoolError::io("truncate", &path, e))?;
                    (&file)
                        .write_all(&segment_header())
                        .map_err(|e| SpoolError::io("write header of", &path, e))?;
                } else if let Some((offset, bad)) = &scan.bad_frame {
                    let cut = scan.file_len - scan.valid_end;
                    rec.problems.push(format!(
                        "{}: {bad} at offset {offset}; truncated the last segment there, dropping {cut} bytes",
                        path.display()
                    ));
                    rec.truncated_bytes += cut;
                    file.set_len(scan.valid_end)
                        .map_err(|e| SpoolError::io_at("truncate", &path, scan.valid_end, e))?;
                }
                // What the scan saw may still be only in the page cache (a killed process,
                // not a crashed host); make it durable before readers may ship it.
                file.sync_data()
                    .map_err(|e| SpoolError::io("fdatasync", &path, e))?;
                info.bytes = info.end;
                active = Some(Active {
                    number,
                    path,
                    file,
                    len: info.end,
                    synced: info.end,
                    blocks: info.blocks,
                    samples: info.samples,
                    max_ts: info.max_ts,
                });
            } else {
                if scan.header != HeaderState::Valid {
                    rec.problems.push(format!(
                        "{}: segment header is {}; skipping the whole segment ({} bytes)",
                        path.display(),
                        header_words(&scan.header),
                        scan.file_len
                    ));
                } else if let Some((offset, bad)) = &scan.bad_frame {
                    rec.problems.push(format!(
                        "{}: {bad} at offset {offset}; ignoring the remaining {} bytes of this segment",
                        path.display(),
                        scan.file_len - offset
                    ));
                }
            }
            segments.insert(number, info);
        }
        let active = match active {
            Some(a) => a,
            None => {
                let a = create_segment(dir, 1)?;
                sync_dir(dir)?;
                segments.insert(1, a.info(a.len));
                a
            }
        };
        let sealed_bytes = segments
            .iter()
            .filter(|(n, _)| **n != active.number)
            .map(|(_, s)| s.bytes)
            .sum();
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                durable: Position {
                    segment: active.number,
                    offset: active.len,
                },
                segments,
                deleted: VecDeque::new(),
                cursors: Vec::new(),
                closed: false,
            }),
            grew: Condvar::new(),
        });
        let spool = Spool {
            opts,
            shared,
            active,
            sealed_bytes,
            dir_dirty: false,
            encoder: snap::raw::Encoder::new(),
            frame: Vec::new(),
            poisoned: None,
            _lock: lock,
            #[cfg(test)]
            fail_next_sync: false,
        };
        Ok((spool, rec))
    }

    /// Compresses `write_request` (an uncompressed remote-write `WriteRequest`) and appends
    /// it as one frame. The block is not durable, nor visible to readers, until [`sync`].
    ///
    /// [`sync`]: Spool::sync
    pub fn append(&mut self, write_request: &[u8], meta: BlockMeta) -> Result<(), SpoolError> {
        self.check_poisoned()?;
        let max = snap::raw::max_compress_len(write_request.len());
        if max == 0 || max > MAX_PAYLOAD - format::BLOCK_HEADER_LEN {
            return Err(self.too_large(write_request.len()));
        }
        self.reserve_frame(max);
        // The output buffer has the maximum size and the input length was checked, so
        // snappy has nothing left to refuse; map the error anyway rather than unwrap.
        let n = match self
            .encoder
            .compress(write_request, &mut self.frame[HEAD_LEN..])
        {
            Ok(n) => n,
            Err(_) => return Err(self.too_large(write_request.len())),
        };
        self.write_frame(HEAD_LEN + n, meta)
    }

    /// Appends one block that is already snappy-compressed, given as its uncompressed
    /// length and its snappy elements (a raw snappy block without the leading length).
    /// Element streams of separately compressed inputs may be concatenated: a copy only
    /// reaches back into output of its own stream, so the result decodes to the
    /// concatenated inputs. Otherwise as [`Spool::append`].
    pub fn append_compressed(
        &mut self,
        raw_len: usize,
        elements: &[u8],
        meta: BlockMeta,
    ) -> Result<(), SpoolError> {
        self.check_poisoned()?;
        let len = crate::wire::varint_len(raw_len as u64) + elements.len();
        if raw_len > u32::MAX as usize || len > MAX_PAYLOAD - format::BLOCK_HEADER_LEN {
            return Err(self.too_large(raw_len));
        }
        self.frame.truncate(HEAD_LEN);
        self.frame.resize(HEAD_LEN, 0);
        crate::wire::put_varint(&mut self.frame, raw_len as u64);
        self.frame.extend_from_slice(elements);
        self.write_frame(HEAD_LEN + len, meta)
    }

    fn too_large(&self, bytes: usize) -> SpoolError {
        SpoolError::TooLarge {
            path: self.shared.dir.clone(),
            bytes,
            max: MAX_PAYLOAD - format::BLOCK_HEADER_LEN,
        }
    }

    /// Makes room for a frame of `snappy_max` payload bytes. The buffer only grows, so
    /// steady-state appends neither allocate nor zero it.
    fn reserve_frame(&mut self, snappy_max: usize) {
        if self.frame.len() < HEAD_LEN + snappy_max {
            self.frame.resize(HEAD_LEN + snappy_max, 0);
        }
    }

    /// Seals and writes the frame held in `self.frame[..frame_len]`.
    fn write_frame(&mut self, frame_len: usize, meta: BlockMeta) -> Result<(), SpoolError> {
        let frame = &mut self.frame[..frame_len];
        seal_frame(frame, meta);
        let frame_len = frame.len() as u64;

        if self.active.len > SEGMENT_HEADER_LEN
            && self.active.len + frame_len > self.opts.segment_size
        {
            self.roll()?;
        }
        if let Err(e) = (&self.active.file).write_all(&self.frame[..frame_len as usize]) {
            let err = SpoolError::io_at("append to", &self.active.path, self.active.len, e);
            return Err(self.poison(err));
        }
        let a = &mut self.active;
        a.len += frame_len;
        a.blocks += 1;
        a.samples += u64::from(meta.samples);
        a.max_ts = a.max_ts.max(meta.max_ts);
        Ok(())
    }

    /// Makes every appended block durable, then publishes the new end to readers.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.check_poisoned()?;
        if self.active.synced == self.active.len && !self.dir_dirty {
            return Ok(());
        }
        self.sync_active()?;
        if self.dir_dirty {
            if let Err(e) = sync_dir(&self.shared.dir) {
                return Err(self.poison(e));
            }
            self.dir_dirty = false;
        }
        self.publish();
        Ok(())
    }

    /// Syncs and closes the spool; readers then drain to the end and get
    /// [`ReadEvent::End`]. Dropping the spool without `close` does not sync.
    pub fn close(mut self) -> Result<(), SpoolError> {
        self.sync()
        // Drop marks the shared state closed.
    }

    /// Deletes whole segments from the oldest while the spool breaks a retention limit
    /// (see the module docs), never the active one.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionReport, SpoolError> {
        self.check_poisoned()?;
        let cutoff = (self.opts.retention_time_ms > 0)
            .then(|| now_ms.saturating_sub(self.opts.retention_time_ms));
        let mut st = self.shared.state.lock();
        let watermark = st.cursors.iter().flatten().min().copied();
        let mut report = RetentionReport {
            watermark,
            ..RetentionReport::default()
        };
        while let Some((&segment, &info)) = st.segments.first_key_value() {
            if segment == self.active.number {
                break;
            }
            let total = self.sealed_bytes + self.active.len;
            let reason = if self.opts.retention_size > 0 && total > self.opts.retention_size {
                RetentionReason::Size
            } else if cutoff.is_some_and(|c| info.max_ts < c) {
                RetentionReason::Time
            } else {
                break;
            };
            let path = self.shared.dir.join(segment_file_name(segment));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(SpoolError::io("delete", &path, e)),
            }
            st.segments.remove(&segment);
            if st.deleted.len() == DELETED_MEMORY {
                st.deleted.pop_front();
            }
            st.deleted.push_back((segment, info.samples));
            self.sealed_bytes -= info.bytes;
            let unacknowledged = watermark.is_some_and(|w| {
                w.segment < segment || (w.segment == segment && w.offset < info.end)
            });
            report.removed_bytes += info.bytes;
            report.removed_samples += info.samples;
            if unacknowledged {
                report.unacknowledged_samples += info.samples;
            }
            report.removed.push(RemovedSegment {
                segment,
                bytes: info.bytes,
                blocks: info.blocks,
                samples: info.samples,
                max_ts: info.max_ts,
                reason,
                unacknowledged,
            });
        }
        Ok(report)
    }

    /// Bytes of all segment files, including appended but not yet synced frames.
    pub fn disk_bytes(&self) -> u64 {
        self.sealed_bytes + self.active.len
    }

    pub fn segment_count(&self) -> usize {
        self.shared.state.lock().segments.len()
    }

    /// A reader (and registered cursor) starting at `from`. Use [`Spool::oldest_position`]
    /// to read everything, or a position a shipper persisted.
    pub fn reader(&self, from: Position) -> SpoolReader {
        SpoolReader::new(Arc::clone(&self.shared), from)
    }

    /// The first frame of the oldest segment.
    pub fn oldest_position(&self) -> Position {
        oldest_position(&self.shared.state.lock())
    }

    /// The end of the synced data: where a reader that wants only new data starts.
    pub fn durable_end(&self) -> Position {
        self.shared.state.lock().durable
    }

    /// The lowest position any live reader has acknowledged.
    pub fn min_acknowledged(&self) -> Option<Position> {
        self.shared
            .state
            .lock()
            .cursors
            .iter()
            .flatten()
            .min()
            .copied()
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    fn check_poisoned(&self) -> Result<(), SpoolError> {
        match &self.poisoned {
            Some(cause) => Err(SpoolError::Poisoned {
                path: self.shared.dir.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison(&mut self, err: SpoolError) -> SpoolError {
        self.poisoned = Some(err.to_string());
        err
    }

    /// `fdatasync`s the active segment, poisoning on failure.
    fn sync_active(&mut self) -> Result<(), SpoolError> {
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_sync) {
            let e = io::Error::from_raw_os_error(libc::EIO);
            let err = SpoolError::io("fdatasync", &self.active.path, e);
            return Err(self.poison(err));
        }
        if let Err(e) = self.active.file.sync_data() {
            let err = SpoolError::io("fdatasync", &self.active.path, e);
            return Err(self.poison(err));
        }
        self.active.synced = self.active.len;
        Ok(())
    }

    fn publish(&self) {
        let mut st = self.shared.state.lock();
        st.durable = Position {
            segment: self.active.number,
            offset: self.active.synced,
        };
        st.segments
            .insert(self.active.number, self.active.info(self.active.synced));
        drop(st);
        self.shared.grew.notify_all();
    }

    /// Seals the active segment (durable to its last byte) and starts the next one.
    fn roll(&mut self) -> Result<(), SpoolError> {
        self.sync_active()?;
        self.publish();
        let next = match create_segment(&self.shared.dir, self.active.number + 1) {
            Ok(a) => a,
            Err(e) => return Err(self.poison(e)),
        };
        self.sealed_bytes += self.active.len;
        self.dir_dirty = true;
        self.shared
            .state
            .lock()
            .segments
            .insert(next.number, next.info(next.len));
        self.active = next;
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.shared.state.lock().closed = true;
        self.shared.grew.notify_all();
    }
}

fn oldest_position(st: &State) -> Position {
    let segment = st
        .segments
        .keys()
        .next()
        .copied()
        .unwrap_or(st.durable.segment);
    Position {
        segment,
        offset: SEGMENT_HEADER_LEN,
    }
}

fn header_words(h: &HeaderState) -> &'static str {
    match h {
        HeaderState::Valid => "valid",
        HeaderState::Torn => "torn (short or zeroed)",
        HeaderState::BadMagic => "not a spool header",
        HeaderState::Unsupported(_) => "of an unsupported version",
    }
}

/// Creates segment `number` with its header written (not yet durable).
fn create_segment(dir: &Path, number: u64) -> Result<Active, SpoolError> {
    let path = dir.join(segment_file_name(number));
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| SpoolError::io("create", &path, e))?;
    (&file)
        .write_all(&segment_header())
        .map_err(|e| SpoolError::io("write header of", &path, e))?;
    file.sync_data()
        .map_err(|e| SpoolError::io("fdatasync", &path, e))?;
    Ok(Active {
        number,
        path,
        file,
        len: SEGMENT_HEADER_LEN,
        synced: SEGMENT_HEADER_LEN,
        blocks: 0,
        samples: 0,
        max_ts: i64::MIN,
    })
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SpoolError::io("fsync directory", dir, e))
}

fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| SpoolError::io("open", &path, e))?;
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(SpoolError::Locked { path });
        }
        return Err(SpoolError::io("lock", &path, e));
    }
    Ok(file)
}

/// For export and tests: every block of a spool directory, oldest first, decompressed.
/// Read-only; tolerates a torn tail (stops there) without modifying files.
pub fn read_all(
    dir: &Path,
    mut each: impl FnMut(BlockMeta, &[u8]) -> Result<(), SpoolError>,
) -> Result<Recovery, SpoolError> {
    read_all_at(dir, |_, meta, bytes| each(meta, bytes))
}

/// [`read_all`] that also passes each block's position and lets the callback fail with its
/// own error type. A block whose checksum is right but whose snappy bytes do not
/// decompress is skipped and reported as a problem.
pub fn read_all_at<E: From<SpoolError>>(
    dir: &Path,
    mut each: impl FnMut(Position, BlockMeta, &[u8]) -> Result<(), E>,
) -> Result<Recovery, E> {
    let listed = list_segments(dir)?;
    let mut rec = Recovery::default();
    let mut snappy = Vec::new();
    let mut plain = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    let count = listed.len();
    for (i, (segment, path)) in listed.into_iter().enumerate() {
        let last = i + 1 == count;
        let file = match File::open(&path) {
            Ok(f) => f,
            // A running agent's retention may delete a segment between listing and opening.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                rec.problems.push(format!(
                    "{}: deleted while the spool was being read",
                    path.display()
                ));
                continue;
            }
            Err(e) => return Err(SpoolError::io("open", &path, e).into()),
        };
        let mut bad_blocks = Vec::new();
        let mut bad_samples = 0u64;
        let scan = scan_segment(&file, &path, &mut snappy, |offset, meta, compressed| {
            let decoded = snap::raw::decompress_len(compressed).and_then(|n| {
                plain.resize(n, 0);
                decoder.decompress(compressed, &mut plain)
            });
            match decoded {
                Ok(n) => each(Position { segment, offset }, meta, &plain[..n]),
                Err(e) => {
                    bad_samples += u64::from(meta.samples);
                    bad_blocks.push(format!(
                        "{}: block at offset {offset} does not decompress ({e}); skipped",
                        path.display()
                    ));
                    Ok(())
                }
            }
        })?;
        if let HeaderState::Unsupported(version) = scan.header {
            return Err(SpoolError::UnsupportedVersion {
                path,
                version,
                supported: format::VERSION,
            }
            .into());
        }
        rec.segments += 1;
        rec.blocks += scan.blocks - bad_blocks.len() as u64;
        rec.samples += scan.samples - bad_samples;
        rec.problems.append(&mut bad_blocks);
        if scan.header != HeaderState::Valid {
            rec.problems.push(format!(
                "{}: segment header is {}; skipped {} bytes",
                path.display(),
                header_words(&scan.header),
                scan.file_len
            ));
            if last {
                rec.truncated_bytes += scan.file_len;
            }
        } else if let Some((offset, bad)) = &scan.bad_frame {
            let rest = scan.file_len - offset;
            rec.problems.push(format!(
                "{}: {bad} at offset {offset}; ignored the remaining {rest} bytes",
                path.display()
            ));
            if last {
                rec.truncated_bytes += rest;
            }
        }
    }
    Ok(rec)
}
