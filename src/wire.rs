//! The remote-write 1.0 protobuf wire format, written and read by hand.
//!
//! Workers encode each sample straight into the bytes of one `WriteRequest.timeseries`
//! entry (field 1), so a batch is already a valid `WriteRequest` body and the flusher
//! only concatenates. Export and tests decode with [`decode_write_request`].
//!
//! ```text
//! WriteRequest { repeated TimeSeries timeseries = 1; }
//! TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//! Label        { string name = 1; string value = 2; }
//! Sample       { double value = 1; int64 timestamp = 2; }   // timestamp in ms
//! ```
//!
//! This module owns no state and does no I/O.

use thiserror::Error;

/// The bit pattern Prometheus uses to mark a series stale.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// The bit pattern every parsed NaN is normalised to, so a target can never send a
/// staleness marker.
pub const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// A staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// True when `v` is exactly the staleness marker (not any other NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Maps every NaN a target sent to the one normal NaN.
#[inline]
pub fn normalize_nan(v: f64) -> f64 {
    if v.is_nan() {
        f64::from_bits(NORMAL_NAN_BITS)
    } else {
        v
    }
}

const TAG_TIMESERIES: u8 = 0x0a; // field 1, length-delimited
const TAG_LABEL: u8 = 0x0a; // TimeSeries.labels, field 1, length-delimited
const TAG_SAMPLE: u8 = 0x12; // TimeSeries.samples, field 2, length-delimited
const TAG_NAME: u8 = 0x0a; // Label.name
const TAG_VALUE: u8 = 0x12; // Label.value
const TAG_SAMPLE_VALUE: u8 = 0x09; // Sample.value, fixed64
const TAG_SAMPLE_TS: u8 = 0x10; // Sample.timestamp, varint

#[inline]
pub fn put_varint(buf: &mut Vec<u8>, v: u64) {
    let mut b = [0u8; 10];
    let n = write_varint(&mut b, v);
    buf.extend_from_slice(&b[..n]);
}

#[inline]
pub fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The framing of one encoded `Label` (with its TimeSeries field tag) when all its
/// lengths fit one byte, as nearly every label's do: the 4 bytes before its name (tag,
/// message length, name tag, name length) and the 2 between name and value (value tag,
/// value length).
#[inline]
fn short_label_framing(name_len: usize, value_len: usize) -> Option<([u8; 4], [u8; 2])> {
    let inner = name_len + value_len + 4;
    (inner < 128 && name_len < 128 && value_len < 128).then_some((
        [TAG_LABEL, inner as u8, TAG_NAME, name_len as u8],
        [TAG_VALUE, value_len as u8],
    ))
}

/// The same framing for any lengths, each part with its length.
fn label_framing(name_len: usize, value_len: usize) -> ([u8; 22], usize, [u8; 11], usize) {
    let (n, v) = (name_len as u64, value_len as u64);
    let inner = 1 + varint_len(n) + name_len + 1 + varint_len(v) + value_len;
    let mut head = [0u8; 22];
    head[0] = TAG_LABEL;
    let mut h = 1 + write_varint(&mut head[1..], inner as u64);
    head[h] = TAG_NAME;
    h += 1;
    h += write_varint(&mut head[h..], n);
    let mut mid = [0u8; 11];
    mid[0] = TAG_VALUE;
    let m = 1 + write_varint(&mut mid[1..], v);
    (head, h, mid, m)
}

/// Appends one encoded `Label` (with its TimeSeries field tag) to `buf`.
#[inline]
pub fn put_label(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.reserve(name.len() + value.len() + 6);
    if let Some((head, mid)) = short_label_framing(name.len(), value.len()) {
        buf.extend_from_slice(&head);
        buf.extend_from_slice(name);
        buf.extend_from_slice(&mid);
    } else {
        let (head, h, mid, m) = label_framing(name.len(), value.len());
        buf.extend_from_slice(&head[..h]);
        buf.extend_from_slice(name);
        buf.extend_from_slice(&mid[..m]);
    }
    buf.extend_from_slice(value);
}

/// One series' encoded labels, built label by label. Bytes go into a buffer that only
/// ever grows to its high-water mark and stays initialised, so a label costs two copies
/// and one bounds check where `Vec` growth checks each of its four pieces (a sample's
/// labels were a sixth of the scrape path's instructions that way).
#[derive(Debug, Default)]
pub struct LabelBuf {
    bytes: Vec<u8>,
    len: usize,
}

impl LabelBuf {
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The next `n` bytes, now counted as written.
    #[inline]
    fn take(&mut self, n: usize) -> &mut [u8] {
        let start = self.len;
        let end = start + n;
        if end > self.bytes.len() {
            self.bytes.resize(end.max(2 * self.bytes.len()).max(256), 0);
        }
        self.len = end;
        &mut self.bytes[start..end]
    }

    #[inline]
    pub fn extend(&mut self, b: &[u8]) {
        crate::bytes::copy(self.take(b.len()), b);
    }

    /// Appends what [`put_label`] appends.
    #[inline]
    pub fn put_label(&mut self, name: &[u8], value: &[u8]) {
        let (n, v) = (name.len(), value.len());
        if let Some((head, mid)) = short_label_framing(n, v) {
            let dst = self.take(n + v + 6);
            let (head_dst, rest) = dst.split_at_mut(4);
            head_dst.copy_from_slice(&head);
            let (name_dst, rest) = rest.split_at_mut(n);
            crate::bytes::copy(name_dst, name);
            let (mid_dst, value_dst) = rest.split_at_mut(2);
            mid_dst.copy_from_slice(&mid);
            crate::bytes::copy(value_dst, value);
        } else {
            let (head, h, mid, m) = label_framing(n, v);
            self.extend(&head[..h]);
            self.extend(name);
            self.extend(&mid[..m]);
            self.extend(value);
        }
    }
}

/// Appends one `WriteRequest.timeseries` entry: the pre-encoded labels (a run of
/// [`put_label`] output, sorted by name) and one sample. The framing is assembled on the
/// stack and appended in three copies, as this runs once per sample.
#[inline]
pub fn put_series(buf: &mut Vec<u8>, encoded_labels: &[u8], value: f64, timestamp_ms: i64) {
    let ts = timestamp_ms as u64;
    // TAG_SAMPLE, length, TAG_SAMPLE_VALUE, 8 value bytes, TAG_SAMPLE_TS, a 10-byte
    // varint at most: the length always fits one byte.
    let mut sample = [0u8; 22];
    sample[0] = TAG_SAMPLE;
    sample[2] = TAG_SAMPLE_VALUE;
    sample[3..11].copy_from_slice(&value.to_bits().to_le_bytes());
    let mut n = 11;
    // A zero timestamp is protobuf's default and is left out.
    if ts != 0 {
        sample[11] = TAG_SAMPLE_TS;
        n = 12 + write_varint(&mut sample[12..], ts);
    }
    sample[1] = (n - 2) as u8;
    let series_len = encoded_labels.len() + n;
    let mut head = [0u8; 11];
    head[0] = TAG_TIMESERIES;
    let h = 1 + write_varint(&mut head[1..], series_len as u64);
    buf.reserve(head.len() + series_len + sample.len());
    // The framing is appended whole and cut back: a fixed-size append is a few moves,
    // a variable one a libc call (see `crate::bytes`).
    let start = buf.len();
    buf.extend_from_slice(&head);
    buf.truncate(start + h);
    buf.extend_from_slice(encoded_labels);
    let at = buf.len();
    buf.extend_from_slice(&sample);
    buf.truncate(at + n);
}

/// Writes `v` as a varint at the start of `dst` (10 bytes suffice for any u64) and
/// returns its length.
#[inline]
fn write_varint(dst: &mut [u8], mut v: u64) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        dst[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    dst[i] = v as u8;
    i + 1
}

/// A malformed `WriteRequest`.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated protobuf at byte {offset}")]
    Truncated { offset: usize },
    #[error("unsupported protobuf wire type {wire_type} at byte {offset}")]
    WireType { wire_type: u8, offset: usize },
    #[error("label at byte {offset} is not valid UTF-8")]
    Utf8 { offset: usize },
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
    fn offset(&self) -> usize {
        self.base + self.pos
    }
    fn varint(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(WireError::Truncated {
                offset: self.offset(),
            })?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(WireError::Truncated {
            offset: self.offset(),
        })
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or(WireError::Truncated {
            offset: self.offset(),
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    /// Reads one field key, returning (field number, wire type).
    fn key(&mut self) -> Result<(u64, u8), WireError> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }
    /// Reads the payload of a field of `wire_type`, returning the bytes for
    /// length-delimited fields and the raw value for the others.
    fn skip_or_take(&mut self, wire_type: u8) -> Result<Field<'a>, WireError> {
        match wire_type {
            0 => Ok(Field::Varint(self.varint()?)),
            1 => {
                let b = self.bytes(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Ok(Field::Fixed64(u64::from_le_bytes(a)))
            }
            2 => {
                let n = self.varint()? as usize;
                let start = self.offset();
                Ok(Field::Bytes(self.bytes(n)?, start))
            }
            5 => {
                self.bytes(4)?;
                Ok(Field::Skipped)
            }
            wt => Err(WireError::WireType {
                wire_type: wt,
                offset: self.offset(),
            }),
        }
    }
}

enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8], usize),
    Skipped,
}

/// One decoded series, borrowing from the request bytes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DecodedSeries<'a> {
    pub labels: Vec<(&'a str, &'a str)>,
    /// (value, timestamp in ms)
    pub samples: Vec<(f64, i64)>,
}

/// Decodes an uncompressed `WriteRequest`, calling `each` once per series. Unknown fields
/// (metadata, exemplars, histograms) are skipped.
pub fn decode_write_request<'a>(
    buf: &'a [u8],
    mut each: impl FnMut(DecodedSeries<'a>),
) -> Result<(), WireError> {
    let mut r = Reader::new(buf, 0);
    while !r.done() {
        let (field, wt) = r.key()?;
        match (field, r.skip_or_take(wt)?) {
            (1, Field::Bytes(ts, base)) => each(decode_series(ts, base)?),
            _ => continue,
        }
    }
    Ok(())
}

fn decode_series(buf: &[u8], base: usize) -> Result<DecodedSeries<'_>, WireError> {
    let mut out = DecodedSeries::default();
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let (field, wt) = r.key()?;
        match (field, r.skip_or_take(wt)?) {
            (1, Field::Bytes(label, base)) => {
                let (mut name, mut value) = ("", "");
                let mut lr = Reader::new(label, base);
                while !lr.done() {
                    let (f, wt) = lr.key()?;
                    if let (f @ (1 | 2), Field::Bytes(s, at)) = (f, lr.skip_or_take(wt)?) {
                        let s =
                            std::str::from_utf8(s).map_err(|_| WireError::Utf8 { offset: at })?;
                        if f == 1 {
                            name = s;
                        } else {
                            value = s;
                        }
                    }
                }
                out.labels.push((name, value));
            }
            (2, Field::Bytes(sample, base)) => {
                let (mut value, mut ts) = (0f64, 0i64);
                let mut sr = Reader::new(sample, base);
                while !sr.done() {
                    let (f, wt) = sr.key()?;
                    match (f, sr.skip_or_take(wt)?) {
                        (1, Field::Fixed64(bits)) => value = f64::from_bits(bits),
                        (2, Field::Varint(v)) => ts = v as i64,
                        _ => {}
                    }
                }
                out.samples.push((value, ts));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Calls `each` with the byte range of every `timeseries` entry (tag included) of an
/// encoded `WriteRequest`, so a batch can be cut into blocks without decoding it.
pub fn for_each_entry(buf: &[u8], mut each: impl FnMut(&[u8])) -> Result<(), WireError> {
    let mut r = Reader::new(buf, 0);
    while !r.done() {
        let start = r.pos;
        let (_, wt) = r.key()?;
        r.skip_or_take(wt)?;
        each(&buf[start..r.pos]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_buf_writes_what_put_label_writes() {
        let long = "x".repeat(200);
        let edge = "y".repeat(120);
        let labels = [
            ("a", "1"),
            ("", ""),
            ("__name__", long.as_str()),
            (long.as_str(), "v"),
            (edge.as_str(), "z"),
            ("n", edge.as_str()),
        ];
        let mut buf = LabelBuf::default();
        for round in 0..3 {
            buf.clear();
            let mut want = Vec::new();
            // Enough labels to make the buffer grow past its first size.
            for i in 0..(10 * (round + 1)) {
                let (n, v) = labels[i % labels.len()];
                put_label(&mut want, n.as_bytes(), v.as_bytes());
                buf.put_label(n.as_bytes(), v.as_bytes());
            }
            buf.extend(b"tail");
            want.extend_from_slice(b"tail");
            assert_eq!(buf.as_slice(), &want[..], "round {round}");
        }
    }

    fn encode(labels: &[(&str, &str)], v: f64, ts: i64) -> Vec<u8> {
        let mut l = Vec::new();
        for (n, val) in labels {
            put_label(&mut l, n.as_bytes(), val.as_bytes());
        }
        let mut out = Vec::new();
        put_series(&mut out, &l, v, ts);
        out
    }

    #[test]
    fn round_trip() {
        let mut buf = encode(&[("__name__", "up"), ("job", "j")], 1.0, 1_700_000_000_123);
        buf.extend(encode(&[("__name__", "x")], -2.5, 0));
        buf.extend(encode(&[("__name__", "neg")], 3.0, -5));
        let mut got = Vec::new();
        decode_write_request(&buf, |s| got.push(s)).expect("decodes");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].labels, vec![("__name__", "up"), ("job", "j")]);
        assert_eq!(got[0].samples, vec![(1.0, 1_700_000_000_123)]);
        assert_eq!(got[1].samples, vec![(-2.5, 0)]);
        assert_eq!(got[2].samples, vec![(3.0, -5)]);
        let mut n = 0;
        for_each_entry(&buf, |_| n += 1).expect("walks");
        assert_eq!(n, 3);
    }

    #[test]
    fn long_labels_use_multibyte_lengths() {
        let long = "v".repeat(300);
        let buf = encode(&[("a", &long)], 1.0, 1);
        let mut got = Vec::new();
        decode_write_request(&buf, |s| got.push(s.labels[0].1.len())).expect("decodes");
        assert_eq!(got, vec![300]);
    }

    #[test]
    fn label_lengths_around_the_single_byte_boundary() {
        for n in 118..132 {
            let v = "x".repeat(n);
            let buf = encode(&[("name", &v), (&v, "y")], 1.0, 1);
            let mut got = Vec::new();
            decode_write_request(&buf, |s| {
                got = s.labels.iter().map(|(a, b)| (a.len(), b.len())).collect()
            })
            .expect("decodes");
            assert_eq!(got, vec![(4, n), (n, 1)], "length {n}");
        }
    }

    #[test]
    fn stale_nan_survives() {
        let buf = encode(&[("a", "b")], stale_nan(), 1);
        let mut v = 0.0;
        decode_write_request(&buf, |s| v = s.samples[0].0).expect("decodes");
        assert!(is_stale_nan(v));
        assert!(!is_stale_nan(normalize_nan(f64::NAN)));
    }

    #[test]
    fn truncated_is_an_error() {
        let buf = encode(&[("a", "b")], 1.0, 1);
        assert!(decode_write_request(&buf[..buf.len() - 2], |_| {}).is_err());
    }

    #[test]
    fn varint_len_matches_encoding() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            let mut fixed = [0u8; 10];
            let n = write_varint(&mut fixed, v);
            assert_eq!(&fixed[..n], &b[..], "{v}");
        }
    }
}
