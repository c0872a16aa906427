//! Turning one spool block into the request bodies sent to one receiver.
//!
//! The common case costs nothing: without external labels and write relabel rules, and
//! with the block no larger than `max_samples_per_send`, the block's snappy bytes are the
//! request body. Otherwise the block is decompressed and walked entry by entry: external
//! labels are merged into each series (a label the series already has wins, as in
//! Prometheus), `write_relabel_configs` run on the result (Prometheus applies external
//! labels first, then write relabeling), survivors are re-encoded with `wire`, and the
//! output is cut into requests of at most `max_samples_per_send` samples, each
//! snappy-compressed. A series whose relabeling drops it or leaves it without labels is
//! counted, not sent.
//!
//! With external labels and no relabel rules (the usual case: a `cluster` or `replica`
//! label) nothing is decoded: each entry's label fields are located in the raw bytes and
//! the pre-encoded external labels are spliced in between them in name order, the
//! samples copied as they are. Entries of an unexpected shape take the decoding path.
//!
//! Runs on the shard threads; owns reusable buffers and no other state.

use crate::labels::LabelSet;
use crate::relabel::{self, Rule};
use crate::wire;

/// What every block bound for one receiver goes through.
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// External labels, sorted by name.
    pub external: Vec<(String, String)>,
    pub rules: Vec<Rule>,
    pub max_samples_per_send: usize,
}

impl Rewrite {
    /// True when blocks must be decoded (labels change), not only possibly split.
    fn changes_labels(&self) -> bool {
        !self.external.is_empty() || !self.rules.is_empty()
    }
}

/// One request body ready to POST.
#[derive(Debug)]
pub struct Part {
    /// Snappy block-compressed `WriteRequest`.
    pub body: Vec<u8>,
    pub samples: u64,
}

/// A block that could not be turned into requests.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("block does not decompress: {0}")]
    Snappy(#[from] snap::Error),
    #[error("block is not a valid WriteRequest: {0}")]
    Wire(#[from] wire::WireError),
}

/// The parts of one block plus what was dropped on the way.
#[derive(Debug, Default)]
pub struct Prepared {
    pub parts: Vec<Part>,
    /// Samples whose series write relabeling dropped.
    pub relabel_dropped: u64,
}

/// Reusable buffers for [`Encoder::prepare`].
pub struct Encoder {
    rewrite: Rewrite,
    /// The external labels as encoded `Label` fields, sorted by name.
    external_raw: Vec<(Vec<u8>, Vec<u8>)>,
    /// (name, whole field) byte ranges of one entry's labels, for the splice.
    spans: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    body: Vec<u8>,
    plain: Vec<u8>,
    out: Vec<u8>,
    labels: Vec<u8>,
    decoder: snap::raw::Decoder,
    encoder: snap::raw::Encoder,
}

impl Encoder {
    pub fn new(rewrite: Rewrite) -> Encoder {
        let external_raw = rewrite
            .external
            .iter()
            .map(|(n, v)| {
                let mut raw = Vec::new();
                wire::put_label(&mut raw, n.as_bytes(), v.as_bytes());
                (n.as_bytes().to_vec(), raw)
            })
            .collect();
        Encoder {
            rewrite,
            external_raw,
            spans: Vec::new(),
            body: Vec::new(),
            plain: Vec::new(),
            out: Vec::new(),
            labels: Vec::new(),
            decoder: snap::raw::Decoder::new(),
            encoder: snap::raw::Encoder::new(),
        }
    }

    /// The requests for one block of `samples` samples (`block` is its snappy bytes).
    pub fn prepare(&mut self, block: Vec<u8>, samples: u32) -> Result<Prepared, EncodeError> {
        let max = self.rewrite.max_samples_per_send.max(1);
        if !self.rewrite.changes_labels() && samples as usize <= max {
            return Ok(Prepared {
                parts: vec![Part {
                    body: block,
                    samples: u64::from(samples),
                }],
                relabel_dropped: 0,
            });
        }
        let n = snap::raw::decompress_len(&block)?;
        self.plain.resize(n, 0);
        let n = self.decoder.decompress(&block, &mut self.plain)?;
        self.plain.truncate(n);
        drop(block);

        let mut prepared = Prepared::default();
        let mut in_part = 0u64;
        self.out.clear();
        let plain = std::mem::take(&mut self.plain);
        let result = self.walk(&plain, max, &mut prepared, &mut in_part);
        self.plain = plain;
        result?;
        if in_part > 0 {
            self.cut(&mut prepared, in_part)?;
        }
        Ok(prepared)
    }

    fn walk(
        &mut self,
        plain: &[u8],
        max: usize,
        prepared: &mut Prepared,
        in_part: &mut u64,
    ) -> Result<(), EncodeError> {
        let changes = self.rewrite.changes_labels();
        let mut failure = None;
        wire::for_each_entry(plain, |entry| {
            if failure.is_some() {
                return;
            }
            let added = if changes {
                match self.rewrite_entry(entry) {
                    Ok(Some(n)) => n,
                    Ok(None) => {
                        prepared.relabel_dropped += entry_samples(entry);
                        0
                    }
                    Err(e) => {
                        failure = Some(e);
                        return;
                    }
                }
            } else {
                self.out.extend_from_slice(entry);
                1
            };
            *in_part += added;
            if *in_part >= max as u64 {
                if let Err(e) = self.cut(prepared, *in_part) {
                    failure = Some(e);
                }
                *in_part = 0;
            }
        })?;
        failure.map_or(Ok(()), Err)
    }

    /// Compresses `self.out` into a new part.
    fn cut(&mut self, prepared: &mut Prepared, samples: u64) -> Result<(), EncodeError> {
        let body = self.encoder.compress_vec(&self.out)?;
        self.out.clear();
        prepared.parts.push(Part { body, samples });
        Ok(())
    }

    /// Re-encodes one `timeseries` entry with the external labels and relabel rules
    /// applied, appending to `self.out`. `None`: relabeling dropped the series.
    fn rewrite_entry(&mut self, entry: &[u8]) -> Result<Option<u64>, EncodeError> {
        if self.rewrite.rules.is_empty() {
            if let Some(n) = self.splice_entry(entry) {
                return Ok(Some(n));
            }
        }
        let mut series = None;
        wire::decode_write_request(entry, |s| series = Some(s))?;
        let Some(mut s) = series else {
            return Ok(Some(0));
        };
        if !s.labels.is_sorted_by(|a, b| a.0 <= b.0) {
            s.labels.sort_by(|a, b| a.0.cmp(b.0));
        }
        self.labels.clear();
        if self.rewrite.rules.is_empty() {
            let out = &mut self.labels;
            merge(&s.labels, &self.rewrite.external, |name, value| {
                wire::put_label(out, name.as_bytes(), value.as_bytes())
            });
        } else {
            let mut pairs = Vec::with_capacity(s.labels.len() + self.rewrite.external.len());
            merge(&s.labels, &self.rewrite.external, |n, v| pairs.push((n, v)));
            let mut set = LabelSet::from_pairs(pairs);
            if !relabel::process(&self.rewrite.rules, &mut set) || set.is_empty() {
                return Ok(None);
            }
            for l in set.iter() {
                wire::put_label(&mut self.labels, l.name.as_bytes(), l.value.as_bytes());
            }
        }
        for (value, ts) in &s.samples {
            wire::put_series(&mut self.out, &self.labels, *value, *ts);
        }
        Ok(Some(s.samples.len() as u64))
    }
}

impl Encoder {
    /// The fast path: appends `entry` with the external labels spliced in, without
    /// decoding it. `None` (nothing appended) when the entry is not a `timeseries` field
    /// whose label fields come first, sorted by name.
    fn splice_entry(&mut self, entry: &[u8]) -> Option<u64> {
        let (tag, mut p) = varint(entry, 0)?;
        if tag != 0x0a {
            return None;
        }
        let (len, start) = varint(entry, p)?;
        p = start;
        let body = entry.get(p..p.checked_add(usize::try_from(len).ok()?)?)?;
        self.spans.clear();
        let mut rest = body.len();
        let mut samples = 0;
        let mut q = 0;
        while q < body.len() {
            let field_start = q;
            let (key, at) = varint(body, q)?;
            let (flen, at) = varint(body, at)?;
            let end = at.checked_add(usize::try_from(flen).ok()?)?;
            if key & 7 != 2 || end > body.len() {
                return None;
            }
            match key >> 3 {
                1 if rest == body.len() => {
                    let name = label_name(body, at..end)?;
                    if let Some((prev, _)) = self.spans.last() {
                        if body[prev.clone()] >= body[name.clone()] {
                            return None;
                        }
                    }
                    self.spans.push((name, field_start..end));
                }
                // A label after the samples: legal protobuf, but not what the spool writes.
                1 => return None,
                f => {
                    rest = rest.min(field_start);
                    samples += u64::from(f == 2);
                }
            }
            q = end;
        }
        self.body.clear();
        let mut ext = self.external_raw.iter().peekable();
        for (name, field) in &self.spans {
            let name = &body[name.clone()];
            while let Some((en, raw)) = ext.peek() {
                match en.as_slice().cmp(name) {
                    std::cmp::Ordering::Less => self.body.extend_from_slice(raw),
                    // The series' own label wins.
                    std::cmp::Ordering::Equal => {}
                    std::cmp::Ordering::Greater => break,
                }
                ext.next();
            }
            self.body.extend_from_slice(&body[field.clone()]);
        }
        for (_, raw) in ext {
            self.body.extend_from_slice(raw);
        }
        self.body.extend_from_slice(&body[rest..]);
        self.out.push(0x0a);
        wire::put_varint(&mut self.out, self.body.len() as u64);
        self.out.extend_from_slice(&self.body);
        Some(samples)
    }
}

/// Reads a protobuf varint at `at`: (value, position after it).
fn varint(buf: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *buf.get(at + i)?;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((v, at + i + 1));
        }
    }
    None
}

/// The byte range of the `name` field inside the `Label` message at `range` of `buf`.
fn label_name(buf: &[u8], range: std::ops::Range<usize>) -> Option<std::ops::Range<usize>> {
    let mut p = range.start;
    while p < range.end {
        let (key, at) = varint(buf, p)?;
        if key & 7 != 2 {
            return None;
        }
        let (len, at) = varint(buf, at)?;
        let end = at.checked_add(usize::try_from(len).ok()?)?;
        if end > range.end {
            return None;
        }
        if key >> 3 == 1 {
            return Some(at..end);
        }
        p = end;
    }
    None
}

/// Samples in one encoded entry, for counting what relabeling dropped.
fn entry_samples(entry: &[u8]) -> u64 {
    let mut n = 0;
    // The entry decoded a moment ago; a failure here can only undercount a drop.
    let _ = wire::decode_write_request(entry, |s| n += s.samples.len() as u64);
    n
}

/// Calls `each` with the union of two name-sorted label lists, in name order; on a
/// shared name the series' label wins.
fn merge<'a>(
    series: &[(&'a str, &'a str)],
    external: &'a [(String, String)],
    mut each: impl FnMut(&'a str, &'a str),
) {
    let (mut si, mut ei) = (0, 0);
    loop {
        let s = series.get(si).copied();
        let e = external.get(ei).map(|(n, v)| (n.as_str(), v.as_str()));
        let (name, value) = match (s, e) {
            (Some(s), Some(e)) if s.0 == e.0 => {
                si += 1;
                ei += 1;
                s
            }
            (Some(s), Some(e)) if e.0 < s.0 => {
                ei += 1;
                e
            }
            (Some(s), _) => {
                si += 1;
                s
            }
            (None, Some(e)) => {
                ei += 1;
                e
            }
            (None, None) => return,
        };
        each(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relabel::RelabelConfig;

    /// (labels, value, timestamp) of one test series.
    type Series<'a> = (&'a [(&'a str, &'a str)], f64, i64);

    fn block(series: &[Series<'_>]) -> Vec<u8> {
        let mut plain = Vec::new();
        for (labels, v, ts) in series {
            let mut l = Vec::new();
            for (n, val) in *labels {
                wire::put_label(&mut l, n.as_bytes(), val.as_bytes());
            }
            wire::put_series(&mut plain, &l, *v, *ts);
        }
        snap::raw::Encoder::new()
            .compress_vec(&plain)
            .expect("compress")
    }

    type Decoded = Vec<(Vec<(String, String)>, u64, i64)>;

    fn decode(parts: &[Part]) -> Vec<Decoded> {
        parts
            .iter()
            .map(|p| {
                let plain = snap::raw::Decoder::new()
                    .decompress_vec(&p.body)
                    .expect("snappy");
                let mut out = Vec::new();
                wire::decode_write_request(&plain, |s| {
                    let labels: Vec<(String, String)> = s
                        .labels
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect();
                    for (v, ts) in s.samples {
                        out.push((labels.clone(), v.to_bits(), ts));
                    }
                })
                .expect("decodes");
                out
            })
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn passthrough_keeps_the_stored_bytes() {
        let b = block(&[(&[("__name__", "a")], 1.0, 5)]);
        let mut e = Encoder::new(Rewrite {
            external: vec![],
            rules: vec![],
            max_samples_per_send: 10,
        });
        let p = e.prepare(b.clone(), 1).expect("prepare");
        assert_eq!(p.parts.len(), 1);
        assert_eq!(p.parts[0].body, b);
    }

    #[test]
    fn external_labels_merge_and_series_labels_win() {
        let b = block(&[
            (&[("__name__", "a"), ("env", "series")], 1.0, 5),
            (&[("__name__", "b"), ("zone", "z1")], wire::stale_nan(), 6),
        ]);
        let mut e = Encoder::new(Rewrite {
            external: pairs(&[("cluster", "c1"), ("env", "ext"), ("zzz", "last")]),
            rules: vec![],
            max_samples_per_send: 10,
        });
        let p = e.prepare(b, 2).expect("prepare");
        let got = decode(&p.parts);
        assert_eq!(
            got,
            vec![vec![
                (
                    pairs(&[
                        ("__name__", "a"),
                        ("cluster", "c1"),
                        ("env", "series"),
                        ("zzz", "last")
                    ]),
                    1f64.to_bits(),
                    5
                ),
                (
                    pairs(&[
                        ("__name__", "b"),
                        ("cluster", "c1"),
                        ("env", "ext"),
                        ("zone", "z1"),
                        ("zzz", "last")
                    ]),
                    wire::STALE_NAN_BITS,
                    6
                ),
            ]]
        );
    }

    #[test]
    fn relabel_runs_after_external_labels_and_drops_are_counted() {
        let b = block(&[
            (&[("__name__", "keep_me")], 1.0, 5),
            (&[("__name__", "drop_me")], 2.0, 5),
        ]);
        let drop = Rule::compile(&RelabelConfig {
            source_labels: Some(vec!["__name__".into()]),
            regex: Some("drop_.*".into()),
            action: Some("drop".into()),
            ..RelabelConfig::default()
        })
        .expect("rule");
        let copy = Rule::compile(&RelabelConfig {
            source_labels: Some(vec!["cluster".into()]),
            target_label: Some("copied".into()),
            ..RelabelConfig::default()
        })
        .expect("rule");
        let mut e = Encoder::new(Rewrite {
            external: pairs(&[("cluster", "c1")]),
            rules: vec![drop, copy],
            max_samples_per_send: 10,
        });
        let p = e.prepare(b, 2).expect("prepare");
        assert_eq!(p.relabel_dropped, 1);
        let got = decode(&p.parts);
        assert_eq!(
            got,
            vec![vec![(
                pairs(&[("__name__", "keep_me"), ("cluster", "c1"), ("copied", "c1")]),
                1f64.to_bits(),
                5
            )]]
        );
    }

    #[test]
    fn large_blocks_are_split_at_max_samples_per_send() {
        let names: Vec<String> = (0..7).map(|i| format!("m{i}")).collect();
        let labels: Vec<[(&str, &str); 1]> =
            names.iter().map(|n| [("__name__", n.as_str())]).collect();
        let series: Vec<Series<'_>> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (&l[..], i as f64, 1000 + i as i64))
            .collect();
        for external in [vec![], pairs(&[("a", "b")])] {
            let mut e = Encoder::new(Rewrite {
                external: external.clone(),
                rules: vec![],
                max_samples_per_send: 3,
            });
            let p = e.prepare(block(&series), 7).expect("prepare");
            let sizes: Vec<u64> = p.parts.iter().map(|p| p.samples).collect();
            assert_eq!(sizes, vec![3, 3, 1]);
            let ts: Vec<i64> = decode(&p.parts)
                .into_iter()
                .flatten()
                .map(|(_, _, ts)| ts)
                .collect();
            assert_eq!(ts, (1000..1007).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_splice_matches_the_decoding_path() {
        let b = block(&[
            (
                &[("__name__", "a"), ("env", "series"), ("job", "j")],
                1.0,
                5,
            ),
            (&[("a", "first")], 2.0, 0),
            (&[("zz", "after")], -3.0, -7),
            (
                &[("__name__", "b"), ("cluster", "own")],
                wire::stale_nan(),
                6,
            ),
        ]);
        let rewrite = Rewrite {
            external: pairs(&[("cluster", "c1"), ("env", "ext"), ("zzz", "last")]),
            rules: vec![],
            max_samples_per_send: 10,
        };
        let mut fast = Encoder::new(rewrite.clone());
        let fast = fast.prepare(b.clone(), 4).expect("prepare");
        // A rule that changes nothing forces the decoding path.
        let noop = Rule::compile(&RelabelConfig {
            action: Some("keep".into()),
            source_labels: Some(vec!["__name__".into()]),
            regex: Some(".*".into()),
            ..RelabelConfig::default()
        })
        .expect("rule");
        let mut slow = Encoder::new(Rewrite {
            rules: vec![noop],
            ..rewrite
        });
        let slow = slow.prepare(b, 4).expect("prepare");
        assert_eq!(decode(&fast.parts), decode(&slow.parts));
        let plain = |p: &Prepared| {
            snap::raw::Decoder::new()
                .decompress_vec(&p.parts[0].body)
                .expect("snappy")
        };
        assert_eq!(plain(&fast), plain(&slow), "byte for byte");
    }

    #[test]
    fn unsorted_or_odd_entries_fall_back() {
        let mut plain = Vec::new();
        let mut l = Vec::new();
        wire::put_label(&mut l, b"b", b"2");
        wire::put_label(&mut l, b"a", b"1");
        wire::put_series(&mut plain, &l, 1.0, 5);
        let mut e = Encoder::new(Rewrite {
            external: pairs(&[("c", "3")]),
            rules: vec![],
            max_samples_per_send: 10,
        });
        let entry = plain.clone();
        assert_eq!(e.splice_entry(&entry), None);
        assert!(e.out.is_empty());
        let b = snap::raw::Encoder::new().compress_vec(&plain).expect("c");
        let got = decode(&e.prepare(b, 1).expect("prepare").parts);
        assert_eq!(got[0][0].0, pairs(&[("a", "1"), ("b", "2"), ("c", "3")]));
    }

    #[test]
    fn garbage_is_an_error() {
        let mut e = Encoder::new(Rewrite {
            external: pairs(&[("a", "b")]),
            rules: vec![],
            max_samples_per_send: 3,
        });
        assert!(e.prepare(vec![0xff, 0xff, 0xff], 1).is_err());
    }
}
