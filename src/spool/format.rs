//! The bytes of a segment file: the segment header, the frame, the block header, and the
//! one routine that reads and verifies a frame. The writer, the open-time scan, the
//! shippers' reader and `read_all` all go through [`read_frame`], so they agree on what a
//! valid frame is. See the module docs of `spool` for the layout.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{BlockMeta, SpoolError};

/// First 8 bytes of every segment file.
pub(crate) const MAGIC: [u8; 8] = *b"SWSPOOL\0";
/// The segment format this code writes and reads.
pub(crate) const VERSION: u32 = 2;
/// magic (8) + version u32 (4) + reserved u32 (4).
pub(crate) const SEGMENT_HEADER_LEN: u64 = 16;
/// payload length u32 + crc32c u32.
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// samples u32 + stripe u32 + min_ts i64 + max_ts i64.
pub(crate) const BLOCK_HEADER_LEN: usize = 24;
/// Frame header and block header together: what precedes the snappy bytes.
pub(crate) const HEAD_LEN: usize = FRAME_HEADER_LEN + BLOCK_HEADER_LEN;
/// Largest payload a frame may declare. A length above it can only be corruption, and the
/// bound keeps a corrupt length from making a reader allocate gigabytes.
pub(crate) const MAX_PAYLOAD: usize = 256 << 20;

const SEGMENT_SUFFIX: &str = ".seg";
const SEGMENT_DIGITS: usize = 20;

pub(crate) fn segment_header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// What the first bytes of a segment file say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderState {
    Valid,
    /// Shorter than a header, or all zeros: a segment created just before a crash.
    Torn,
    /// Full length but not our magic: corruption.
    BadMagic,
    /// Our magic with a version this build does not know (written by a newer build).
    Unsupported(u32),
}

pub(crate) fn check_header(bytes: &[u8]) -> HeaderState {
    if bytes.len() < SEGMENT_HEADER_LEN as usize || bytes.iter().all(|b| *b == 0) {
        return HeaderState::Torn;
    }
    if bytes[..8] != MAGIC {
        return HeaderState::BadMagic;
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[8..12]);
    match u32::from_le_bytes(v) {
        VERSION => HeaderState::Valid,
        other => HeaderState::Unsupported(other),
    }
}

/// Reads the header of `file` (fewer bytes when the file is shorter).
pub(crate) fn read_header(file: &File, path: &Path) -> Result<HeaderState, SpoolError> {
    let mut buf = [0u8; SEGMENT_HEADER_LEN as usize];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SpoolError::io("read header of", path, e)),
        }
    }
    Ok(check_header(&buf[..got]))
}

pub(crate) fn segment_file_name(segment: u64) -> String {
    format!("{segment:0width$}{SEGMENT_SUFFIX}", width = SEGMENT_DIGITS)
}

/// The segment number of a file name written by [`segment_file_name`], or `None` for any
/// other file (the lock file, editor droppings, ...).
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Every segment file of `dir`, oldest (lowest number) first.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SpoolError::io("read directory", dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SpoolError::io("read directory", dir, e))?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.push((n, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(n, _)| *n);
    Ok(out)
}

/// Fills in the frame and block headers of `frame`, whose snappy bytes the caller has
/// already placed at `frame[HEAD_LEN..]`.
pub(crate) fn seal_frame(frame: &mut [u8], meta: BlockMeta) {
    let payload_len = (frame.len() - FRAME_HEADER_LEN) as u32;
    frame[0..4].copy_from_slice(&payload_len.to_le_bytes());
    frame[8..12].copy_from_slice(&meta.samples.to_le_bytes());
    frame[12..16].copy_from_slice(&meta.stripe.to_le_bytes());
    frame[16..24].copy_from_slice(&meta.min_ts.to_le_bytes());
    frame[24..32].copy_from_slice(&meta.max_ts.to_le_bytes());
    let crc = frame_crc(
        &frame[0..4],
        &frame[FRAME_HEADER_LEN..HEAD_LEN],
        &frame[HEAD_LEN..],
    );
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// The checksum covers the length field too, so a corrupted length is caught even when it
/// happens to point at a plausible place.
fn frame_crc(len: &[u8], block_header: &[u8], snappy: &[u8]) -> u32 {
    let crc = crc32c::crc32c(len);
    let crc = crc32c::crc32c_append(crc, block_header);
    crc32c::crc32c_append(crc, snappy)
}

/// Why the bytes at an offset are not a valid frame.
#[derive(Debug)]
pub(crate) enum FrameError {
    Io(io::Error),
    /// The frame (or its header) runs past the end of the readable bytes.
    Torn {
        needed: u64,
        available: u64,
    },
    /// The length field is impossible (smaller than a block header or above the maximum).
    BadLength(u32),
    Checksum {
        stored: u32,
        computed: u32,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "read error: {e}"),
            Self::Torn { needed, available } => write!(
                f,
                "torn frame: needs {needed} bytes, only {available} remain"
            ),
            Self::BadLength(n) => write!(f, "impossible frame length {n}"),
            Self::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
        }
    }
}

/// Reads and verifies the frame at `offset` of `file`, whose readable bytes end at `end`.
/// On success `snappy` holds the block's compressed bytes (the exact remote-write body) and
/// the result is the block's metadata and the frame's total length.
pub(crate) fn read_frame(
    file: &File,
    offset: u64,
    end: u64,
    snappy: &mut Vec<u8>,
) -> Result<(BlockMeta, u64), FrameError> {
    let available = end.saturating_sub(offset);
    if available < FRAME_HEADER_LEN as u64 {
        return Err(FrameError::Torn {
            needed: FRAME_HEADER_LEN as u64,
            available,
        });
    }
    let mut head = [0u8; HEAD_LEN];
    let head_len = available.min(HEAD_LEN as u64) as usize;
    file.read_exact_at(&mut head[..head_len], offset)
        .map_err(FrameError::Io)?;
    let payload_len = le_u32(&head[0..4]);
    let plen = payload_len as usize;
    if !(BLOCK_HEADER_LEN..=MAX_PAYLOAD).contains(&plen) {
        return Err(FrameError::BadLength(payload_len));
    }
    let frame_len = (FRAME_HEADER_LEN + plen) as u64;
    if frame_len > available {
        return Err(FrameError::Torn {
            needed: frame_len,
            available,
        });
    }
    snappy.clear();
    snappy.resize(plen - BLOCK_HEADER_LEN, 0);
    file.read_exact_at(snappy, offset + HEAD_LEN as u64)
        .map_err(FrameError::Io)?;
    let stored = le_u32(&head[4..8]);
    let computed = frame_crc(&head[0..4], &head[FRAME_HEADER_LEN..], snappy);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    let meta = BlockMeta {
        samples: le_u32(&head[8..12]),
        stripe: le_u32(&head[12..16]),
        min_ts: le_i64(&head[16..24]),
        max_ts: le_i64(&head[24..32]),
    };
    Ok((meta, frame_len))
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

fn le_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    i64::from_le_bytes(a)
}

/// What a scan of one segment found.
#[derive(Debug)]
pub(crate) struct SegmentScan {
    pub header: HeaderState,
    pub file_len: u64,
    /// End of the last valid frame: the header length when the segment holds no valid
    /// frame, 0 when the header itself is not valid.
    pub valid_end: u64,
    pub blocks: u64,
    pub samples: u64,
    pub max_ts: i64,
    /// The first invalid frame: its offset and what is wrong with it.
    pub bad_frame: Option<(u64, FrameError)>,
}

/// Checks the header of a segment and walks its frames, calling `each` with every valid
/// frame's offset, metadata and snappy bytes, and stops at the first invalid frame. I/O
/// errors are returned; corruption is recorded in the result. A segment with an invalid
/// header yields no frames.
pub(crate) fn scan_segment<E: From<SpoolError>>(
    file: &File,
    path: &Path,
    snappy: &mut Vec<u8>,
    mut each: impl FnMut(u64, BlockMeta, &[u8]) -> Result<(), E>,
) -> Result<SegmentScan, E> {
    let file_len = file
        .metadata()
        .map_err(|e| SpoolError::io("stat", path, e))?
        .len();
    let header = read_header(file, path)?;
    let valid = header == HeaderState::Valid;
    let mut scan = SegmentScan {
        header,
        file_len,
        valid_end: if valid { SEGMENT_HEADER_LEN } else { 0 },
        blocks: 0,
        samples: 0,
        max_ts: i64::MIN,
        bad_frame: None,
    };
    if !valid {
        return Ok(scan);
    }
    let mut offset = SEGMENT_HEADER_LEN;
    while offset < file_len {
        match read_frame(file, offset, file_len, snappy) {
            Ok((meta, len)) => {
                each(offset, meta, snappy)?;
                offset += len;
                scan.valid_end = offset;
                scan.blocks += 1;
                scan.samples += u64::from(meta.samples);
                scan.max_ts = scan.max_ts.max(meta.max_ts);
            }
            Err(FrameError::Io(e)) => {
                return Err(SpoolError::io_at("read frame of", path, offset, e).into())
            }
            Err(bad) => {
                scan.bad_frame = Some((offset, bad));
                break;
            }
        }
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_reject_others() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_segment_name("00000000000000000042.seg"), Some(42));
        assert_eq!(
            parse_segment_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        for bad in [
            "1.seg",
            "0000000000000000000x.seg",
            "00000000000000000001.tmp",
            "LOCK",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_states() {
        let h = segment_header();
        assert_eq!(check_header(&h), HeaderState::Valid);
        assert_eq!(check_header(&h[..10]), HeaderState::Torn);
        assert_eq!(check_header(&[0u8; 16]), HeaderState::Torn);
        let mut other = h;
        other[0] = b'X';
        assert_eq!(check_header(&other), HeaderState::BadMagic);
        let mut newer = h;
        newer[8] = 9;
        assert_eq!(check_header(&newer), HeaderState::Unsupported(9));
        let mut older = h;
        older[8] = 1;
        assert_eq!(check_header(&older), HeaderState::Unsupported(1));
        assert_eq!(check_header(&newer), HeaderState::Unsupported(9));
    }
}
