//! Tests of the spool against real files in temporary directories.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::format::{segment_file_name, SEGMENT_HEADER_LEN};
use super::*;
use crate::wire::{put_label, put_series};

const T0: i64 = 1_700_000_000_000;

fn opts(segment_size: u64) -> SpoolOptions {
    SpoolOptions {
        segment_size,
        retention_size: 0,
        retention_time_ms: 0,
    }
}

/// A WriteRequest of `n` samples of series `i`, timestamps from `ts`, plus its meta. The
/// varying values keep snappy from compressing the blocks to nothing.
fn block(i: u64, n: u32, ts: i64) -> (Vec<u8>, BlockMeta) {
    let mut labels = Vec::new();
    put_label(&mut labels, b"__name__", b"test_metric");
    put_label(
        &mut labels,
        b"instance",
        format!("host-{i}:9100").as_bytes(),
    );
    let mut out = Vec::new();
    for k in 0..n {
        let v = (i * 7919 + u64::from(k) * 104_729) as f64 / 3.0;
        put_series(&mut out, &labels, v, ts + i64::from(k));
    }
    let meta = BlockMeta {
        samples: n,
        stripe: 0,
        min_ts: ts,
        max_ts: ts + i64::from(n) - 1,
    };
    (out, meta)
}

fn all_blocks(dir: &Path) -> (Vec<(BlockMeta, Vec<u8>)>, Recovery) {
    let mut got = Vec::new();
    let rec = read_all(dir, |meta, bytes| {
        got.push((meta, bytes.to_vec()));
        Ok(())
    })
    .expect("read_all");
    (got, rec)
}

fn seg_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(segment_file_name(n))
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).expect("stat").len()
}

fn flip_byte(p: &Path, offset: u64) {
    let mut bytes = fs::read(p).expect("read");
    bytes[offset as usize] ^= 0x40;
    fs::write(p, bytes).expect("write");
}

#[test]
fn round_trip_and_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("spool");
    let blocks: Vec<_> = (0..3).map(|i| block(i, 5, T0 + i as i64 * 1000)).collect();
    {
        let (mut spool, rec) = Spool::open(&dir, opts(1 << 20)).expect("open");
        assert_eq!((rec.segments, rec.blocks, rec.problems.len()), (0, 0, 0));
        for (b, m) in &blocks {
            spool.append(b, *m).expect("append");
        }
        spool.sync().expect("sync");
        assert_eq!(spool.segment_count(), 1);
        assert_eq!(spool.disk_bytes(), file_len(&seg_path(&dir, 1)));
        spool.close().expect("close");
    }
    let (got, rec) = all_blocks(&dir);
    assert_eq!(rec.blocks, 3);
    assert_eq!(rec.samples, 15);
    assert!(rec.problems.is_empty(), "{:?}", rec.problems);
    let want: Vec<_> = blocks.iter().map(|(b, m)| (*m, b.clone())).collect();
    assert_eq!(got, want);

    let (spool, rec) = Spool::open(&dir, opts(1 << 20)).expect("reopen");
    assert_eq!((rec.segments, rec.blocks, rec.samples), (1, 3, 15));
    assert_eq!(rec.truncated_bytes, 0);
    // The reader hands out exactly the remote-write body: raw snappy of the WriteRequest.
    let mut reader = spool.reader(spool.oldest_position());
    let mut buf = Vec::new();
    for (b, m) in &blocks {
        match reader.next(&mut buf, Duration::ZERO).expect("next") {
            ReadEvent::Block { meta, .. } => assert_eq!(meta, *m),
            other => panic!("expected a block, got {other:?}"),
        }
        let plain = snap::raw::Decoder::new()
            .decompress_vec(&buf)
            .expect("raw snappy");
        assert_eq!(&plain, b);
    }
    assert_eq!(
        reader.next(&mut buf, Duration::ZERO).expect("next"),
        ReadEvent::Idle
    );
}

#[test]
fn many_blocks_across_segment_rolls() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let segment_size = 4096;
    let blocks: Vec<_> = (0..300).map(|i| block(i, 8, T0 + i as i64)).collect();
    let (mut spool, _) = Spool::open(dir, opts(segment_size)).expect("open");
    for (i, (b, m)) in blocks.iter().enumerate() {
        spool.append(b, *m).expect("append");
        if i % 7 == 0 {
            spool.sync().expect("sync");
        }
    }
    spool.sync().expect("sync");
    let segments = spool.segment_count();
    assert!(segments > 5, "only {segments} segments");
    let listed = format::list_segments(dir).expect("list");
    assert_eq!(listed.len(), segments);
    for (k, (n, path)) in listed.iter().enumerate() {
        assert_eq!(*n, k as u64 + 1, "segments are numbered 1, 2, 3, ...");
        assert!(file_len(path) <= segment_size, "{} too big", path.display());
    }
    assert_eq!(
        spool.disk_bytes(),
        listed.iter().map(|(_, p)| file_len(p)).sum::<u64>()
    );
    drop(spool);

    let (got, rec) = all_blocks(dir);
    assert_eq!(rec.segments, segments);
    assert_eq!(got.len(), blocks.len());
    for ((gm, gb), (b, m)) in got.iter().zip(&blocks) {
        assert_eq!((gm, gb), (m, b));
    }

    // Appending after a reopen continues in the last segment and keeps the order.
    let (mut spool, rec) = Spool::open(dir, opts(segment_size)).expect("reopen");
    assert_eq!(rec.blocks, 300);
    let (b, m) = block(999, 3, T0 + 10_000);
    spool.append(&b, m).expect("append");
    spool.sync().expect("sync");
    let (got, _) = all_blocks(dir);
    assert_eq!(got.len(), 301);
    assert_eq!(got[300], (m, b));
}

#[test]
fn an_oversized_block_gets_a_segment_of_its_own() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = Spool::open(tmp.path(), opts(256)).expect("open");
    for i in 0..3 {
        let (b, m) = block(i, 40, T0);
        spool.append(&b, m).expect("append");
    }
    spool.sync().expect("sync");
    assert_eq!(spool.segment_count(), 3);
    assert_eq!(all_blocks(tmp.path()).0.len(), 3);
}

/// Writes `n` blocks in one segment and returns the offset of the last frame.
fn write_blocks(dir: &Path, n: u64) -> (Vec<(BlockMeta, Vec<u8>)>, u64) {
    let (mut spool, _) = Spool::open(dir, opts(1 << 20)).expect("open");
    let mut want = Vec::new();
    let mut last_start = 0;
    for i in 0..n {
        let (b, m) = block(i, 3, T0 + i as i64 * 10);
        last_start = spool.disk_bytes();
        spool.append(&b, m).expect("append");
        want.push((m, b));
    }
    spool.sync().expect("sync");
    (want, last_start)
}

#[test]
fn torn_tail_at_every_byte_of_the_last_frame_is_truncated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pristine = tmp.path().join("pristine");
    let (want, last_start) = write_blocks(&pristine, 4);
    let seg = fs::read(seg_path(&pristine, 1)).expect("read");
    let full = seg.len() as u64;
    assert!(full - last_start > 28, "frame has header and payload");

    for cut in last_start..full {
        let dir = tmp.path().join(format!("cut{cut}"));
        fs::create_dir(&dir).expect("mkdir");
        fs::write(seg_path(&dir, 1), &seg[..cut as usize]).expect("write");

        // read_all stops at the tear without touching the file.
        let (got, rec) = all_blocks(&dir);
        assert_eq!(got, want[..3], "cut at {cut}");
        assert_eq!(rec.truncated_bytes, cut - last_start);
        assert_eq!(
            file_len(&seg_path(&dir, 1)),
            cut,
            "read_all modified the file"
        );

        let (mut spool, rec) = Spool::open(&dir, opts(1 << 20)).expect("open");
        assert_eq!(rec.blocks, 3, "cut at {cut}");
        assert_eq!(rec.truncated_bytes, cut - last_start, "cut at {cut}");
        assert_eq!(
            rec.problems.len(),
            usize::from(cut > last_start),
            "cut at {cut}"
        );
        if cut > last_start {
            let p = &rec.problems[0];
            assert!(
                p.contains("00000000000000000001.seg")
                    && p.contains(&format!("offset {last_start}")),
                "problem names file and offset: {p}"
            );
        }
        assert_eq!(file_len(&seg_path(&dir, 1)), last_start);

        let (b, m) = block(77, 2, T0 + 99);
        spool.append(&b, m).expect("append after recovery");
        spool.sync().expect("sync");
        drop(spool);
        let (got, rec) = all_blocks(&dir);
        assert!(rec.problems.is_empty(), "cut at {cut}: {:?}", rec.problems);
        assert_eq!(got[..3], want[..3]);
        assert_eq!(got[3], (m, b));
        assert_eq!(got.len(), 4);
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}

#[test]
fn zeroed_tail_is_truncated() {
    // ext4 can leave a crashed file's tail as zeros rather than short.
    let tmp = tempfile::tempdir().expect("tempdir");
    let (want, _) = write_blocks(tmp.path(), 2);
    let path = seg_path(tmp.path(), 1);
    let len = file_len(&path);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len + 4096))
        .expect("extend");
    let (_spool, rec) = Spool::open(tmp.path(), opts(1 << 20)).expect("open");
    assert_eq!(rec.blocks, 2);
    assert_eq!(rec.truncated_bytes, 4096);
    assert!(
        rec.problems[0].contains("impossible frame length 0"),
        "{:?}",
        rec.problems
    );
    assert_eq!(file_len(&path), len);
    drop(_spool);
    assert_eq!(all_blocks(tmp.path()).0, want);
}

#[test]
fn torn_header_of_a_new_last_segment_is_reinitialised() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (want, _) = write_blocks(tmp.path(), 2);
    // A crash right after a roll: segment 2 exists with half a header.
    fs::write(seg_path(tmp.path(), 2), b"SWSP").expect("write");
    let (mut spool, rec) = Spool::open(tmp.path(), opts(1 << 20)).expect("open");
    assert_eq!(rec.segments, 2);
    assert_eq!(rec.truncated_bytes, 4);
    assert!(
        rec.problems[0].contains("00000000000000000002.seg"),
        "{:?}",
        rec.problems
    );
    let (b, m) = block(5, 1, T0);
    spool.append(&b, m).expect("append");
    spool.sync().expect("sync");
    drop(spool);
    let (got, rec) = all_blocks(tmp.path());
    assert!(rec.problems.is_empty(), "{:?}", rec.problems);
    assert_eq!(got[..2], want[..]);
    assert_eq!(got[2], (m, b));
}

#[test]
fn checksum_mismatch_in_the_last_segment_truncates_there() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (want, last_start) = write_blocks(tmp.path(), 3);
    // Find the second frame's start: the first frame's length is in its header.
    let seg = fs::read(seg_path(tmp.path(), 1)).expect("read");
    let first_len = u32::from_le_bytes([seg[16], seg[17], seg[18], seg[19]]) as u64;
    let second = SEGMENT_HEADER_LEN + 8 + first_len;
    assert!(second < last_start);
    flip_byte(&seg_path(tmp.path(), 1), second + 40);
    let (_spool, rec) = Spool::open(tmp.path(), opts(1 << 20)).expect("open");
    assert_eq!(rec.blocks, 1);
    assert_eq!(rec.truncated_bytes, seg.len() as u64 - second);
    assert!(
        rec.problems[0].contains("checksum mismatch")
            && rec.problems[0].contains(&format!("offset {second}")),
        "{:?}",
        rec.problems
    );
    drop(_spool);
    assert_eq!(all_blocks(tmp.path()).0, want[..1]);
}

#[test]
fn corrupt_frame_in_a_middle_segment_skips_the_rest_of_that_segment_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (mut spool, _) = Spool::open(dir, opts(2048)).expect("open");
    let mut per_segment: BTreeMap<u64, Vec<(BlockMeta, Vec<u8>)>> = BTreeMap::new();
    for i in 0..60 {
        let (b, m) = block(i, 6, T0 + i as i64);
        spool.append(&b, m).expect("append");
        let seg = spool.active.number;
        per_segment.entry(seg).or_default().push((m, b));
    }
    spool.sync().expect("sync");
    drop(spool);
    assert!(per_segment.len() >= 4);
    // Corrupt the third frame of segment 2.
    let seg2 = seg_path(dir, 2);
    let seg2_len = file_len(&seg2);
    let mut offset = SEGMENT_HEADER_LEN;
    let bytes = fs::read(&seg2).expect("read");
    for _ in 0..2 {
        let len = u32::from_le_bytes([
            bytes[offset as usize],
            bytes[offset as usize + 1],
            bytes[offset as usize + 2],
            bytes[offset as usize + 3],
        ]) as u64;
        offset += 8 + len;
    }
    flip_byte(&seg2, offset + 30);

    let mut expect = Vec::new();
    for (seg, blocks) in &per_segment {
        let keep = if *seg == 2 { 2 } else { blocks.len() };
        expect.extend(blocks[..keep].iter().cloned());
    }
    let (got, rec) = all_blocks(dir);
    assert_eq!(got, expect);
    assert_eq!(rec.truncated_bytes, 0, "not the last segment");

    let (spool, rec) = Spool::open(dir, opts(2048)).expect("open");
    assert_eq!(rec.blocks, expect.len() as u64);
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(rec.problems.len(), 1);
    assert!(
        rec.problems[0].contains("00000000000000000002.seg")
            && rec.problems[0].contains(&format!("offset {offset}")),
        "{:?}",
        rec.problems
    );
    assert_eq!(
        file_len(&seg2),
        seg2_len,
        "a middle segment is never modified"
    );

    // The reader delivers the same blocks and reports the skipped stretch once.
    let mut reader = spool.reader(spool.oldest_position());
    let mut buf = Vec::new();
    let mut delivered = 0;
    let mut gaps = Vec::new();
    loop {
        match reader.next(&mut buf, Duration::ZERO).expect("next") {
            ReadEvent::Block { .. } => delivered += 1,
            ReadEvent::Gap { from, reason, .. } => gaps.push((from, reason)),
            ReadEvent::Idle => break,
            ReadEvent::End => panic!("writer still open"),
        }
    }
    assert_eq!(delivered, expect.len());
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0].0, Position { segment: 2, offset });
    assert!(matches!(gaps[0].1, GapReason::Corrupt { .. }));
}

#[test]
fn write_failure_poisons_the_spool() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = Spool::open(tmp.path(), opts(1 << 20)).expect("open");
    let (b, m) = block(1, 3, T0);
    spool.append(&b, m).expect("append");
    spool.sync().expect("sync");
    // A real EBADF from the kernel: the segment reopened read-only under the writer.
    spool.active.file = File::open(&spool.active.path).expect("reopen read-only");
    let err = spool.append(&b, m).expect_err("write must fail");
    assert!(matches!(err, SpoolError::IoAt { .. }), "{err}");
    assert!(
        err.to_string().contains("00000000000000000001.seg"),
        "{err}"
    );
    assert!(spool.is_poisoned());
    for res in [spool.append(&b, m), spool.sync()] {
        match res {
            Err(SpoolError::Poisoned { path, cause }) => {
                assert_eq!(path, tmp.path());
                assert!(cause.contains("append to"), "{cause}");
            }
            other => panic!("expected Poisoned, got {other:?}"),
        }
    }
    assert!(matches!(
        spool.enforce_retention(T0),
        Err(SpoolError::Poisoned { .. })
    ));
    drop(spool);
    // A restart recovers what was synced.
    let (_spool, rec) = Spool::open(tmp.path(), opts(1 << 20)).expect("reopen");
    assert_eq!(rec.blocks, 1);
}

#[test]
fn fsync_failure_poisons_and_is_never_retried() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = Spool::open(tmp.path(), opts(1 << 20)).expect("open");
    let (b, m) = block(1, 3, T0);
    spool.append(&b, m).expect("append");
    spool.fail_next_sync = true;
    let err = spool.sync().expect_err("sync must fail");
    assert!(err.to_string().contains("fdatasync"), "{err}");
    // The injected failure is gone, but the spool must not try again.
    assert!(matches!(spool.sync(), Err(SpoolError::Poisoned { .. })));
    assert!(matches!(
        spool.append(&b, m),
        Err(SpoolError::Poisoned { .. })
    ));
    // Readers never saw the unsynced block.
    let mut reader = spool.reader(spool.oldest_position());
    assert_eq!(
        reader.next(&mut Vec::new(), Duration::ZERO).expect("next"),
        ReadEvent::Idle
    );
}

#[test]
fn a_second_writer_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_spool, _) = Spool::open(tmp.path(), opts(1 << 20)).expect("open");
    match Spool::open(tmp.path(), opts(1 << 20)) {
        Err(SpoolError::Locked { path }) => assert!(path.ends_with("LOCK")),
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("expected Locked, got a second writer"),
    }
    drop(_spool);
    Spool::open(tmp.path(), opts(1 << 20)).expect("lock released on drop");
}

#[test]
fn a_newer_format_version_is_an_error_and_left_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_blocks(tmp.path(), 1);
    let path = seg_path(tmp.path(), 1);
    let mut bytes = fs::read(&path).expect("read");
    bytes[8] = 3;
    fs::write(&path, &bytes).expect("write");
    match Spool::open(tmp.path(), opts(1 << 20)) {
        Err(SpoolError::UnsupportedVersion { version: 3, .. }) => {}
        Err(e) => panic!("expected UnsupportedVersion, got {e}"),
        Ok(_) => panic!("expected UnsupportedVersion"),
    }
    assert_eq!(fs::read(&path).expect("read"), bytes);
}

#[test]
fn retention_by_size_deletes_oldest_segments_but_never_the_active_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut o = opts(2048);
    o.retention_size = 6000;
    let (mut spool, _) = Spool::open(dir, o.clone()).expect("open");
    for i in 0..80 {
        let (b, m) = block(i, 6, T0 + i as i64);
        spool.append(&b, m).expect("append");
    }
    spool.sync().expect("sync");
    let before = spool.segment_count();
    let report = spool.enforce_retention(T0).expect("retention");
    assert!(!report.removed.is_empty());
    assert!(spool.disk_bytes() <= 6000, "{}", spool.disk_bytes());
    assert_eq!(spool.segment_count(), before - report.removed.len());
    for (k, r) in report.removed.iter().enumerate() {
        assert_eq!(r.segment, k as u64 + 1, "oldest first");
        assert_eq!(r.reason, RetentionReason::Size);
        assert!(!seg_path(dir, r.segment).exists());
        assert!(!r.unacknowledged, "no cursors registered");
    }
    let (got, _) = all_blocks(dir);
    assert_eq!(
        got.len() as u64 + report.removed.iter().map(|r| r.blocks).sum::<u64>(),
        80
    );
    assert_eq!(
        report.removed_samples,
        report.removed.iter().map(|r| r.blocks * 6).sum::<u64>()
    );
    assert_eq!(
        report.removed_bytes,
        report.removed.iter().map(|r| r.bytes).sum::<u64>()
    );

    // A limit smaller than the active segment leaves exactly the active segment.
    spool.opts.retention_size = 1;
    spool.enforce_retention(T0).expect("retention");
    assert_eq!(spool.segment_count(), 1);
    assert!(seg_path(dir, spool.active.number).exists());
    let (b, m) = block(1000, 2, T0);
    spool.append(&b, m).expect("append still works");
}

#[test]
fn retention_by_time_deletes_only_an_old_prefix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut o = opts(64);
    o.retention_time_ms = 15 * 60_000;
    let (mut spool, _) = Spool::open(dir, o).expect("open");
    // One block per segment (segment_size is tiny). Block timestamps in minutes, with the
    // cutoff at minute 5: 0 and 1 (old), 10 (new), 2 (old, but behind a new one), 20
    // (active).
    for (i, minute) in [0i64, 1, 10, 2, 20].iter().enumerate() {
        let (b, m) = block(i as u64, 2, T0 + minute * 60_000);
        spool.append(&b, m).expect("append");
    }
    spool.sync().expect("sync");
    assert_eq!(spool.segment_count(), 5);
    let now = T0 + 20 * 60_000;
    let report = spool.enforce_retention(now).expect("retention");
    let removed: Vec<_> = report
        .removed
        .iter()
        .map(|r| (r.segment, r.reason))
        .collect();
    assert_eq!(
        removed,
        [(1, RetentionReason::Time), (2, RetentionReason::Time)]
    );
    assert_eq!(spool.segment_count(), 3);
    // Much later everything but the active segment goes.
    let report = spool.enforce_retention(now + 3_600_000).expect("retention");
    assert_eq!(report.removed.len(), 2);
    assert_eq!(spool.segment_count(), 1);
}

#[test]
fn retention_reports_and_reader_counts_data_a_lagging_cursor_lost() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut o = opts(64);
    o.retention_size = 1;
    let (mut spool, _) = Spool::open(dir, o).expect("open");
    let (b, m) = block(0, 4, T0);
    spool.append(&b, m).expect("append");
    spool.sync().expect("sync");
    let mut lagging = spool.reader(spool.oldest_position());
    let mut buf = Vec::new();
    // The lagging reader reads segment 1 but its receiver has not acknowledged it.
    assert!(matches!(
        lagging.next(&mut buf, Duration::ZERO).expect("next"),
        ReadEvent::Block { .. }
    ));
    let mut up_to_date = spool.reader(spool.oldest_position());
    for i in 1..5 {
        let (b, m) = block(i, 4 + i as u32, T0);
        spool.append(&b, m).expect("append");
    }
    spool.sync().expect("sync");
    // Segments 1..=4 sealed, 5 active. The up-to-date reader acknowledges everything.
    while let ReadEvent::Block { next, .. } =
        up_to_date.next(&mut buf, Duration::ZERO).expect("next")
    {
        up_to_date.acknowledge(next);
    }
    let report = spool.enforce_retention(T0).expect("retention");
    assert_eq!(
        report.watermark,
        Some(Position {
            segment: 1,
            offset: SEGMENT_HEADER_LEN
        })
    );
    assert_eq!(report.removed.len(), 4);
    assert!(report.removed.iter().all(|r| r.unacknowledged));
    assert_eq!(report.unacknowledged_samples, 4 + 5 + 6 + 7);

    // The lagging reader still has segment 1 open, so it finishes it, then learns that
    // segments 2..=4 are gone and exactly how many samples that was.
    match lagging.next(&mut buf, Duration::ZERO).expect("next") {
        ReadEvent::Gap {
            from,
            to,
            reason,
            lost_samples,
        } => {
            assert_eq!(
                from,
                Position {
                    segment: 2,
                    offset: SEGMENT_HEADER_LEN
                }
            );
            assert_eq!(
                to,
                Position {
                    segment: 5,
                    offset: SEGMENT_HEADER_LEN
                }
            );
            assert_eq!(reason, GapReason::Deleted);
            assert_eq!(lost_samples, Some(5 + 6 + 7));
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    assert!(matches!(
        lagging.next(&mut buf, Duration::ZERO).expect("next"),
        ReadEvent::Block {
            meta: BlockMeta { samples: 8, .. },
            ..
        }
    ));
    drop(lagging);
    drop(up_to_date);
    assert_eq!(spool.min_acknowledged(), None);
}

#[test]
fn reader_sees_only_synced_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = Spool::open(tmp.path(), opts(1 << 20)).expect("open");
    let mut reader = spool.reader(spool.oldest_position());
    let mut buf = Vec::new();
    let (b, m) = block(1, 3, T0);
    spool.append(&b, m).expect("append");
    assert_eq!(
        reader
            .next(&mut buf, Duration::from_millis(20))
            .expect("next"),
        ReadEvent::Idle
    );
    spool.sync().expect("sync");
    let end = spool.durable_end();
    assert_eq!(
        reader.next(&mut buf, Duration::ZERO).expect("next"),
        ReadEvent::Block { meta: m, next: end }
    );
}

#[test]
fn reader_waits_for_new_data_and_ends_after_close() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = Spool::open(tmp.path(), opts(300)).expect("open");
    let mut reader = spool.reader(spool.durable_end());
    let waiter = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut events = Vec::new();
        let start = Instant::now();
        loop {
            let ev = reader
                .next(&mut buf, Duration::from_secs(10))
                .expect("next");
            let done = ev == ReadEvent::End;
            events.push((ev, start.elapsed()));
            if done {
                return events;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    // Three blocks crossing segments (300-byte segments hold one block each).
    for i in 0..3 {
        let (b, m) = block(i, 10, T0);
        spool.append(&b, m).expect("append");
        spool.sync().expect("sync");
    }
    assert!(spool.segment_count() >= 3);
    spool.close().expect("close");
    let events = waiter.join().expect("reader thread");
    let blocks = events
        .iter()
        .filter(|(e, _)| matches!(e, ReadEvent::Block { .. }))
        .count();
    assert_eq!(blocks, 3, "{events:?}");
    assert!(events
        .iter()
        .all(|(e, _)| !matches!(e, ReadEvent::Idle | ReadEvent::Gap { .. })));
    // The first block arrived after the writer synced it, well before the 10 s timeout.
    assert!(events[0].1 >= Duration::from_millis(90), "{events:?}");
    assert!(events[0].1 < Duration::from_secs(5), "{events:?}");
}

#[test]
fn reader_crosses_segments_and_matches_read_all() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (mut spool, _) = Spool::open(dir, opts(1500)).expect("open");
    for i in 0..50 {
        let (b, m) = block(i, 5, T0 + i as i64);
        spool.append(&b, m).expect("append");
    }
    spool.sync().expect("sync");
    assert!(spool.segment_count() > 3);
    let (want, _) = all_blocks(dir);
    let mut reader = spool.reader(spool.oldest_position());
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let mut last = reader.position();
    while let ReadEvent::Block { meta, next } = reader.next(&mut buf, Duration::ZERO).expect("next")
    {
        assert!(next > last, "positions only move forward");
        last = next;
        let plain = snap::raw::Decoder::new()
            .decompress_vec(&buf)
            .expect("snappy");
        got.push((meta, plain));
    }
    assert_eq!(got, want);
    assert_eq!(last, spool.durable_end());

    // A reader resumed from a persisted position continues from there.
    let mid = {
        let mut r = spool.reader(spool.oldest_position());
        let mut next_pos = r.position();
        for _ in 0..20 {
            if let ReadEvent::Block { next, .. } = r.next(&mut buf, Duration::ZERO).expect("next") {
                next_pos = next;
            }
        }
        next_pos
    };
    let mut resumed = spool.reader(mid);
    let mut rest = 0;
    while let ReadEvent::Block { .. } = resumed.next(&mut buf, Duration::ZERO).expect("next") {
        rest += 1;
    }
    assert_eq!(rest, 30);
}

#[test]
fn the_default_position_reads_from_the_oldest_segment_without_a_gap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = opts(64);
    o.retention_size = 1;
    let (mut spool, _) = Spool::open(tmp.path(), o).expect("open");
    for i in 0..3 {
        let (b, m) = block(i, 3, T0);
        spool.append(&b, m).expect("append");
    }
    spool.sync().expect("sync");
    spool.enforce_retention(T0).expect("retention");
    let mut reader = spool.reader(Position::default());
    assert_eq!(reader.position(), spool.oldest_position());
    assert!(matches!(
        reader.next(&mut Vec::new(), Duration::ZERO).expect("next"),
        ReadEvent::Block { .. }
    ));
}

#[test]
fn reader_reports_a_position_beyond_the_spool() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = Spool::open(tmp.path(), opts(1 << 20)).expect("open");
    let (b, m) = block(1, 3, T0);
    spool.append(&b, m).expect("append");
    spool.sync().expect("sync");
    let wiped = Position {
        segment: 40,
        offset: 1234,
    };
    let mut reader = spool.reader(wiped);
    let mut buf = Vec::new();
    assert_eq!(
        reader.next(&mut buf, Duration::ZERO).expect("next"),
        ReadEvent::Gap {
            from: wiped,
            to: spool.oldest_position(),
            reason: GapReason::InvalidPosition,
            lost_samples: None,
        }
    );
    assert!(matches!(
        reader.next(&mut buf, Duration::ZERO).expect("next"),
        ReadEvent::Block { .. }
    ));
}

#[test]
fn reader_reports_segments_deleted_before_it_started() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = opts(64);
    o.retention_size = 1;
    let (mut spool, _) = Spool::open(tmp.path(), o).expect("open");
    for i in 0..4 {
        let (b, m) = block(i, 3, T0);
        spool.append(&b, m).expect("append");
    }
    spool.sync().expect("sync");
    spool.enforce_retention(T0).expect("retention");
    // A cursor persisted at the start of segment 2 (deleted) and one in its middle.
    let mut at_start = spool.reader(Position {
        segment: 2,
        offset: SEGMENT_HEADER_LEN,
    });
    let mut in_middle = spool.reader(Position {
        segment: 2,
        offset: 40,
    });
    let mut buf = Vec::new();
    let ev = at_start.next(&mut buf, Duration::ZERO).expect("next");
    assert!(
        matches!(&ev, ReadEvent::Gap { reason: GapReason::Deleted, lost_samples: Some(6), to, .. } if to.segment == 4),
        "{ev:?}"
    );
    let ev = in_middle.next(&mut buf, Duration::ZERO).expect("next");
    assert!(
        matches!(
            &ev,
            ReadEvent::Gap {
                reason: GapReason::Deleted,
                lost_samples: None,
                ..
            }
        ),
        "{ev:?}"
    );
}

#[test]
fn read_all_skips_a_block_that_does_not_decompress() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (want, _) = write_blocks(tmp.path(), 1);
    // A frame with a valid checksum around bytes that are not snappy.
    let garbage = [0xffu8; 12];
    let mut frame = vec![0u8; format::HEAD_LEN + garbage.len()];
    frame[format::HEAD_LEN..].copy_from_slice(&garbage);
    let meta = BlockMeta {
        samples: 9,
        stripe: 0,
        min_ts: T0,
        max_ts: T0,
    };
    format::seal_frame(&mut frame, meta);
    let path = seg_path(tmp.path(), 1);
    let mut bytes = fs::read(&path).expect("read");
    let bad_at = bytes.len();
    bytes.extend_from_slice(&frame);
    fs::write(&path, &bytes).expect("write");
    let (b, m) = block(3, 2, T0);
    {
        let (mut spool, rec) = Spool::open(tmp.path(), opts(1 << 20)).expect("open");
        assert!(
            rec.problems.is_empty(),
            "the frame itself is valid: {:?}",
            rec.problems
        );
        spool.append(&b, m).expect("append");
        spool.sync().expect("sync");
    }
    let (got, rec) = all_blocks(tmp.path());
    assert_eq!(got, vec![want[0].clone(), (m, b)]);
    assert_eq!(rec.blocks, 2);
    assert_eq!(rec.samples, u64::from(want[0].0.samples) + 2);
    assert_eq!(rec.problems.len(), 1);
    assert!(
        rec.problems[0].contains(&format!("offset {bad_at}")),
        "{:?}",
        rec.problems
    );
}
