//! `scrapewheel export`: reads every block of a spool directory (read-only, safe while an
//! agent is writing it) and writes the samples that match the `--match` selectors as
//! OpenMetrics text or JSON lines.
//!
//! **Input**: a spool directory (through [`crate::spool::read_all_at`]), selectors (ORed,
//! like Prometheus's federate and series APIs; none means everything). **Output**: text on
//! the given writer, and [`ExportStats`]. It never modifies the spool and holds no more
//! than one block plus a 64-bit hash and a timestamp per distinct series in memory.
//!
//! **OpenMetrics** is written for `promtool tsdb create-blocks-from openmetrics`, whose
//! parser (checked against Prometheus 2.42's `promtool` and the `textparse` source) needs
//! a timestamp on every sample and a final `# EOF`, and needs neither `TYPE` lines nor
//! families grouped, so each sample is one line in spool order, e.g.
//! `up{job="node"} 1 1700000000.123`. What OpenMetrics text cannot carry is skipped and
//! counted: staleness markers (a StaleNaN would become an ordinary NaN) and series without
//! a metric name. TSDB appends need each series' samples in time order with no repeated
//! timestamp (promtool drops or rejects the others), so a sample at or before the last one
//! written for its series is skipped and counted too. Timestamps are seconds with
//! millisecond precision; because promtool converts them with `int64(seconds * 1000)`,
//! which truncates, the rare value whose decimal form would land a millisecond low is
//! written with a few more digits (`write_om_timestamp`). Names that are not legacy
//! Prometheus names are written in the quoted UTF-8 syntax (`{"my.metric","a.b"="v"}`),
//! which only Prometheus 3 parsers accept. Labels with empty values are left out, since
//! Prometheus treats them as absent.
//!
//! **JSON lines** keep everything, one object per sample:
//! `{"labels":{"__name__":"up","job":"x"},"value":1.0,"timestamp_ms":1700000000123}`,
//! with `"NaN"`, `"+Inf"`, `"-Inf"` as strings and `"stale":true` on staleness markers.

mod selector;

pub use selector::{MatchOp, Matcher, Selector, SelectorError};

use std::collections::HashMap;
use std::hash::Hasher;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use thiserror::Error;

use crate::labels::{is_legacy_label_name, is_legacy_metric_name, METRIC_NAME};
use crate::spool::{read_all_at, SpoolError};
use crate::wire::{decode_write_request, is_stale_nan, DecodedSeries};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    OpenMetrics,
    Jsonl,
}

/// What an export wrote and what it left out.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Blocks read from the spool.
    pub blocks: u64,
    /// Distinct series with at least one sample written.
    pub series_written: u64,
    pub samples_written: u64,
    /// Staleness markers left out of OpenMetrics output.
    pub stale_markers_skipped: u64,
    /// OpenMetrics: samples at or before the previous sample written for their series.
    pub out_of_order_skipped: u64,
    /// OpenMetrics: samples of series without a `__name__`.
    pub unnamed_skipped: u64,
    /// Blocks whose protobuf did not decode (their remaining series are lost).
    pub blocks_undecodable: u64,
    /// Spool problems (torn tail, corrupt frames, undecodable blocks), naming file and
    /// offset.
    pub problems: Vec<String>,
}

#[derive(Debug, Error)]
pub enum ExportError {
    /// The spool could not be read.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The output could not be written.
    #[error("writing export output: {0}")]
    Write(#[source] io::Error),
}

/// Writes every sample of the spool in `spool_dir` that matches any of `selectors` (all
/// samples when there are none) to `out`.
pub fn export(
    spool_dir: &Path,
    selectors: &[Selector],
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<ExportStats, ExportError> {
    let mut w = BufWriter::with_capacity(1 << 16, out);
    let mut stats = ExportStats::default();
    // Per distinct series: the newest timestamp written. Keyed by a label-set hash; a
    // 64-bit collision (odds about n²/2⁶⁵) could only make OpenMetrics output skip a sample.
    let mut last_ts: crate::hash::HashKeyed<i64> = HashMap::default();
    let mut write_error: Option<io::Error> = None;

    let recovery = read_all_at::<ExportError>(spool_dir, |pos, _meta, bytes| {
        stats.blocks += 1;
        let decoded = decode_write_request(bytes, |series| {
            if write_error.is_some() {
                return;
            }
            if !selectors.is_empty() && !selectors.iter().any(|s| s.matches(&series.labels)) {
                return;
            }
            let res = match format {
                ExportFormat::OpenMetrics => {
                    write_om_series(&mut w, &series, &mut last_ts, &mut stats)
                }
                ExportFormat::Jsonl => {
                    write_jsonl_series(&mut w, &series, &mut last_ts, &mut stats)
                }
            };
            if let Err(e) = res {
                write_error = Some(e);
            }
        });
        if let Some(e) = write_error.take() {
            return Err(ExportError::Write(e));
        }
        if let Err(e) = decoded {
            stats.blocks_undecodable += 1;
            stats.problems.push(format!("block at {pos}: {e}"));
        }
        Ok(())
    })?;
    stats.problems.extend(recovery.problems);
    if format == ExportFormat::OpenMetrics {
        w.write_all(b"# EOF\n").map_err(ExportError::Write)?;
    }
    w.flush().map_err(ExportError::Write)?;
    Ok(stats)
}

/// Hashes a label set; the pairs are separated so that `a="bc"` and `ab="c"` differ.
fn series_hash(labels: &[(&str, &str)]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (n, v) in labels {
        h.write(n.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

fn write_om_series(
    w: &mut impl Write,
    series: &DecodedSeries<'_>,
    last_ts: &mut crate::hash::HashKeyed<i64>,
    stats: &mut ExportStats,
) -> io::Result<()> {
    let Some(name) = series
        .labels
        .iter()
        .find(|(n, _)| *n == METRIC_NAME)
        .map(|(_, v)| *v)
        .filter(|v| !v.is_empty())
    else {
        stats.unnamed_skipped += series.samples.len() as u64;
        return Ok(());
    };
    let key = series_hash(&series.labels);
    for &(value, ts) in &series.samples {
        if is_stale_nan(value) {
            stats.stale_markers_skipped += 1;
            continue;
        }
        match last_ts.get_mut(&key) {
            Some(last) if ts <= *last => {
                stats.out_of_order_skipped += 1;
                continue;
            }
            Some(last) => *last = ts,
            None => {
                last_ts.insert(key, ts);
                stats.series_written += 1;
            }
        }
        write_om_labels(w, name, &series.labels)?;
        w.write_all(b" ")?;
        write_om_value(w, value)?;
        w.write_all(b" ")?;
        write_om_timestamp(w, ts)?;
        w.write_all(b"\n")?;
        stats.samples_written += 1;
    }
    Ok(())
}

/// `name{a="1",b="2"}`, or `{"odd.name",a="1"}` when the name needs quoting.
fn write_om_labels(w: &mut impl Write, name: &str, labels: &[(&str, &str)]) -> io::Result<()> {
    let quoted_name = !is_legacy_metric_name(name);
    let mut first = true;
    if quoted_name {
        w.write_all(b"{")?;
        write_om_quoted(w, name)?;
        first = false;
    } else {
        w.write_all(name.as_bytes())?;
    }
    for (n, v) in labels {
        // An empty value is an absent label in Prometheus.
        if *n == METRIC_NAME || v.is_empty() {
            continue;
        }
        w.write_all(if first { b"{" } else { b"," })?;
        first = false;
        if is_legacy_label_name(n) {
            w.write_all(n.as_bytes())?;
        } else {
            write_om_quoted(w, n)?;
        }
        w.write_all(b"=")?;
        write_om_quoted(w, v)?;
    }
    if !first {
        w.write_all(b"}")?;
    }
    Ok(())
}

/// A double-quoted string with OpenMetrics escapes: `\\`, `\"`, `\n`.
fn write_om_quoted(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_all(b"\"")?;
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'"' => b"\\\"",
            b'\n' => b"\\n",
            _ => continue,
        };
        w.write_all(&bytes[start..i])?;
        w.write_all(esc)?;
        start = i + 1;
    }
    w.write_all(&bytes[start..])?;
    w.write_all(b"\"")
}

/// NaN, +Inf, -Inf as OpenMetrics spells them; other values in the shortest form that
/// reads back to the same float, with an exponent for very large or small magnitudes.
fn write_om_value(w: &mut impl Write, v: f64) -> io::Result<()> {
    if v.is_nan() {
        w.write_all(b"NaN")
    } else if v.is_infinite() {
        w.write_all(if v > 0.0 { b"+Inf" } else { b"-Inf" })
    } else if v == 0.0 || (1e-5..1e16).contains(&v.abs()) {
        write!(w, "{v}")
    } else {
        write!(w, "{v:e}")
    }
}

/// Seconds with millisecond precision (`1700000000.123`). promtool computes
/// `int64(parse(text) * 1000)`, which truncates: for about 1% of millisecond values the
/// decimal text parses to a float just below the intended value and would come out one
/// millisecond early. For those, the neighbouring float on the right side is written in its
/// shortest exact form (`1700000000.1230001`), which parses back to exactly that float.
fn write_om_timestamp(w: &mut impl Write, ms: i64) -> io::Result<()> {
    let mut buf = [0u8; 32];
    let mut cur = io::Cursor::new(&mut buf[..]);
    let abs = ms.unsigned_abs();
    let sign = if ms < 0 { "-" } else { "" };
    let (secs, frac) = (abs / 1000, abs % 1000);
    if frac == 0 {
        write!(cur, "{sign}{secs}")?;
    } else {
        write!(cur, "{sign}{secs}.{frac:03}")?;
    }
    let len = cur.position() as usize;
    let text = &buf[..len];
    let parsed = std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<f64>().ok());
    match parsed {
        Some(x) if truncated_ms(x) != ms => write!(w, "{}", corrected_seconds(x, ms)),
        _ => w.write_all(text),
    }
}

/// What promtool makes of a seconds value (Go's float-to-int conversion truncates).
fn truncated_ms(seconds: f64) -> i64 {
    (seconds * 1000.0) as i64
}

/// The float nearest `x` that promtool reads as `ms`: a few ulps away at most.
fn corrected_seconds(x: f64, ms: i64) -> f64 {
    let mut y = x;
    for _ in 0..16 {
        let got = truncated_ms(y);
        if got == ms {
            return y;
        }
        y = step(y, got < ms);
    }
    x
}

/// The next representable float up (`up`) or down from a finite `x`.
fn step(x: f64, up: bool) -> f64 {
    if x == 0.0 {
        let tiny = f64::from_bits(1);
        return if up { tiny } else { -tiny };
    }
    let bits = x.to_bits();
    // Positive floats order like their bit patterns; negative ones in reverse.
    let away_from_zero = up == (x > 0.0);
    f64::from_bits(if away_from_zero { bits + 1 } else { bits - 1 })
}

fn write_jsonl_series(
    w: &mut impl Write,
    series: &DecodedSeries<'_>,
    last_ts: &mut crate::hash::HashKeyed<i64>,
    stats: &mut ExportStats,
) -> io::Result<()> {
    if series.samples.is_empty() {
        return Ok(());
    }
    let key = series_hash(&series.labels);
    for &(value, ts) in &series.samples {
        w.write_all(b"{\"labels\":{")?;
        let mut first = true;
        // __name__ first, for people reading the file; the rest in wire (sorted) order.
        let named = series.labels.iter().filter(|(n, _)| *n == METRIC_NAME);
        let others = series.labels.iter().filter(|(n, _)| *n != METRIC_NAME);
        for (n, v) in named.chain(others) {
            if !first {
                w.write_all(b",")?;
            }
            first = false;
            serde_json::to_writer(&mut *w, n)?;
            w.write_all(b":")?;
            serde_json::to_writer(&mut *w, v)?;
        }
        w.write_all(b"},\"value\":")?;
        let stale = is_stale_nan(value);
        if value.is_nan() {
            w.write_all(b"\"NaN\"")?;
        } else if value.is_infinite() {
            w.write_all(if value > 0.0 {
                b"\"+Inf\""
            } else {
                b"\"-Inf\""
            })?;
        } else {
            serde_json::to_writer(&mut *w, &value)?;
        }
        write!(w, ",\"timestamp_ms\":{ts}")?;
        if stale {
            w.write_all(b",\"stale\":true")?;
        }
        w.write_all(b"}\n")?;
        stats.samples_written += 1;
    }
    let newest = series.samples.iter().map(|s| s.1).max().unwrap_or(i64::MIN);
    match last_ts.get_mut(&key) {
        Some(last) => *last = (*last).max(newest),
        None => {
            last_ts.insert(key, newest);
            stats.series_written += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{BlockMeta, Spool, SpoolOptions};
    use crate::wire::{put_label, put_series, stale_nan};
    use std::path::PathBuf;
    use std::process::Command;

    const T0: i64 = 1_700_000_000_000;

    fn encode(out: &mut Vec<u8>, labels: &[(&str, &str)], v: f64, ts: i64) {
        let mut l = Vec::new();
        for (n, val) in labels {
            put_label(&mut l, n.as_bytes(), val.as_bytes());
        }
        put_series(out, &l, v, ts);
    }

    /// Two blocks, the second in a new segment, covering the cases export must handle.
    fn write_spool(dir: &Path) {
        let opts = SpoolOptions {
            segment_size: 64,
            retention_size: 0,
            retention_time_ms: 0,
        };
        let (mut spool, _) = Spool::open(dir, opts).expect("open");
        let up_a: &[(&str, &str)] = &[("__name__", "up"), ("job", "a")];
        let reqs: &[(&str, &str)] = &[
            ("__name__", "http_requests_total"),
            ("code", "200"),
            ("path", "/x\"y\\z\nw"),
        ];
        let mut b1 = Vec::new();
        encode(&mut b1, up_a, 1.0, T0);
        encode(&mut b1, reqs, 5.5, T0 + 123);
        encode(
            &mut b1,
            &[("__name__", "weird"), ("k", "nan")],
            f64::NAN,
            T0 + 1,
        );
        encode(
            &mut b1,
            &[("__name__", "weird"), ("k", "pinf")],
            f64::INFINITY,
            T0 + 1,
        );
        encode(
            &mut b1,
            &[("__name__", "weird"), ("k", "ninf")],
            f64::NEG_INFINITY,
            T0 + 1,
        );
        encode(&mut b1, &[("__name__", "tiny")], 1.5e-300, T0 + 2);
        encode(&mut b1, &[("job", "no_name")], 3.0, T0 + 3);
        spool
            .append(
                &b1,
                BlockMeta {
                    samples: 7,
                    stripe: 0,
                    min_ts: T0,
                    max_ts: T0 + 123,
                },
            )
            .expect("append");
        let mut b2 = Vec::new();
        encode(&mut b2, up_a, 0.0, T0 + 15_000);
        encode(&mut b2, up_a, stale_nan(), T0 + 30_000);
        // Out of order and a repeated timestamp for `up{job="a"}`.
        encode(&mut b2, up_a, 7.0, T0 + 10_000);
        encode(&mut b2, up_a, 8.0, T0 + 15_000);
        encode(
            &mut b2,
            &[("__name__", "my.metric"), ("a.b", "v")],
            -2.25,
            T0 + 40_000,
        );
        encode(&mut b2, reqs, 6.0, T0 + 15_123);
        spool
            .append(
                &b2,
                BlockMeta {
                    samples: 6,
                    stripe: 0,
                    min_ts: T0 + 10_000,
                    max_ts: T0 + 40_000,
                },
            )
            .expect("append");
        spool.sync().expect("sync");
        assert_eq!(spool.segment_count(), 2);
    }

    fn run(dir: &Path, selectors: &[&str], format: ExportFormat) -> (String, ExportStats) {
        let selectors: Vec<_> = selectors
            .iter()
            .map(|s| Selector::parse(s).expect("selector"))
            .collect();
        let mut out = Vec::new();
        let stats = export(dir, &selectors, format, &mut out).expect("export");
        (String::from_utf8(out).expect("utf-8"), stats)
    }

    #[test]
    fn openmetrics_output_line_by_line() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_spool(tmp.path());
        let (text, stats) = run(tmp.path(), &[], ExportFormat::OpenMetrics);
        let want = [
            r#"up{job="a"} 1 1700000000"#,
            r#"http_requests_total{code="200",path="/x\"y\\z\nw"} 5.5 1700000000.123"#,
            r#"weird{k="nan"} NaN 1700000000.001"#,
            r#"weird{k="pinf"} +Inf 1700000000.001"#,
            r#"weird{k="ninf"} -Inf 1700000000.001"#,
            r#"tiny 1.5e-300 1700000000.002"#,
            r#"up{job="a"} 0 1700000015"#,
            r#"{"my.metric","a.b"="v"} -2.25 1700000040"#,
            r#"http_requests_total{code="200",path="/x\"y\\z\nw"} 6 1700000015.123"#,
            "# EOF",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), want);
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(stats.blocks, 2);
        assert_eq!(stats.samples_written, 9);
        assert_eq!(stats.series_written, 7);
        assert_eq!(stats.stale_markers_skipped, 1);
        assert_eq!(stats.out_of_order_skipped, 2);
        assert_eq!(stats.unnamed_skipped, 1);
        assert!(stats.problems.is_empty(), "{:?}", stats.problems);
    }

    #[test]
    fn jsonl_output_line_by_line() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_spool(tmp.path());
        let (text, stats) = run(tmp.path(), &[], ExportFormat::Jsonl);
        let want = [
            r#"{"labels":{"__name__":"up","job":"a"},"value":1.0,"timestamp_ms":1700000000000}"#,
            r#"{"labels":{"__name__":"http_requests_total","code":"200","path":"/x\"y\\z\nw"},"value":5.5,"timestamp_ms":1700000000123}"#,
            r#"{"labels":{"__name__":"weird","k":"nan"},"value":"NaN","timestamp_ms":1700000000001}"#,
            r#"{"labels":{"__name__":"weird","k":"pinf"},"value":"+Inf","timestamp_ms":1700000000001}"#,
            r#"{"labels":{"__name__":"weird","k":"ninf"},"value":"-Inf","timestamp_ms":1700000000001}"#,
            r#"{"labels":{"__name__":"tiny"},"value":1.5e-300,"timestamp_ms":1700000000002}"#,
            r#"{"labels":{"job":"no_name"},"value":3.0,"timestamp_ms":1700000000003}"#,
            r#"{"labels":{"__name__":"up","job":"a"},"value":0.0,"timestamp_ms":1700000015000}"#,
            r#"{"labels":{"__name__":"up","job":"a"},"value":"NaN","timestamp_ms":1700000030000,"stale":true}"#,
            r#"{"labels":{"__name__":"up","job":"a"},"value":7.0,"timestamp_ms":1700000010000}"#,
            r#"{"labels":{"__name__":"up","job":"a"},"value":8.0,"timestamp_ms":1700000015000}"#,
            r#"{"labels":{"__name__":"my.metric","a.b":"v"},"value":-2.25,"timestamp_ms":1700000040000}"#,
            r#"{"labels":{"__name__":"http_requests_total","code":"200","path":"/x\"y\\z\nw"},"value":6.0,"timestamp_ms":1700000015123}"#,
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), want);
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("each line is JSON");
        }
        assert_eq!(stats.samples_written, 13);
        assert_eq!(stats.series_written, 8);
        assert_eq!(stats.stale_markers_skipped, 0);
    }

    #[test]
    fn selectors_are_ored() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_spool(tmp.path());
        let (text, stats) = run(
            tmp.path(),
            &[r#"up{job="a"}"#, r#"{__name__=~"weird", k=~".*inf"}"#],
            ExportFormat::OpenMetrics,
        );
        let want = [
            r#"up{job="a"} 1 1700000000"#,
            r#"weird{k="pinf"} +Inf 1700000000.001"#,
            r#"weird{k="ninf"} -Inf 1700000000.001"#,
            r#"up{job="a"} 0 1700000015"#,
            "# EOF",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), want);
        assert_eq!(stats.samples_written, 4);
        let (text, _) = run(tmp.path(), &[r#"{job="nothing"}"#], ExportFormat::Jsonl);
        assert_eq!(text, "");
    }

    #[test]
    fn a_torn_tail_is_reported_not_fatal() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_spool(tmp.path());
        let seg = tmp.path().join("00000000000000000002.seg");
        let len = std::fs::metadata(&seg).expect("stat").len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .and_then(|f| f.set_len(len - 3))
            .expect("truncate");
        let (text, stats) = run(tmp.path(), &[], ExportFormat::OpenMetrics);
        assert_eq!(stats.blocks, 1);
        assert_eq!(stats.samples_written, 6);
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(stats.problems.len(), 1);
        assert!(
            stats.problems[0].contains("00000000000000000002.seg"),
            "{:?}",
            stats.problems
        );
    }

    #[test]
    fn an_undecodable_block_is_counted_and_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let opts = SpoolOptions {
            segment_size: 1 << 20,
            retention_size: 0,
            retention_time_ms: 0,
        };
        let (mut spool, _) = Spool::open(tmp.path(), opts).expect("open");
        let meta = BlockMeta {
            samples: 1,
            stripe: 0,
            min_ts: T0,
            max_ts: T0,
        };
        // A timeseries entry whose length runs past the end of the request.
        spool.append(&[0x0a, 0x05, 0x01], meta).expect("append");
        let mut good = Vec::new();
        encode(&mut good, &[("__name__", "up")], 1.0, T0);
        spool.append(&good, meta).expect("append");
        spool.sync().expect("sync");
        let (text, stats) = run(tmp.path(), &[], ExportFormat::OpenMetrics);
        assert_eq!(text, "up 1 1700000000\n# EOF\n");
        assert_eq!(stats.blocks, 2);
        assert_eq!(stats.blocks_undecodable, 1);
        assert!(
            stats.problems[0].starts_with("block at 00000000000000000001.seg@16: truncated"),
            "{:?}",
            stats.problems
        );
    }

    #[test]
    fn output_errors_and_missing_spools_are_errors() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        write_spool(tmp.path());
        let err =
            export(tmp.path(), &[], ExportFormat::Jsonl, &mut Broken).expect_err("broken pipe");
        assert!(matches!(err, ExportError::Write(_)), "{err}");
        let missing = tmp.path().join("nope");
        let err = export(&missing, &[], ExportFormat::Jsonl, &mut Vec::new()).expect_err("missing");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn timestamps_read_back_to_the_same_millisecond() {
        // What promtool does: parse the text as a float and truncate seconds * 1000.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut corrected = 0;
        for i in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ms = match i % 3 {
                0 => (x % 20_000_000_000_000) as i64 - 10_000_000_000_000,
                1 => T0 + (x % 100_000_000_000) as i64,
                _ => (x % 10_000) as i64 - 5_000,
            };
            let mut out = Vec::new();
            write_om_timestamp(&mut out, ms).expect("write");
            let text = String::from_utf8(out).expect("utf-8");
            let secs: f64 = text.parse().expect("float");
            assert_eq!(truncated_ms(secs), ms, "{ms} written as {text}");
            if text.split('.').nth(1).is_some_and(|f| f.len() > 3) {
                corrected += 1;
            }
        }
        assert!(corrected > 0, "the correction path was exercised");
        let mut out = Vec::new();
        write_om_timestamp(&mut out, 4_333_681_634_839).expect("write");
        assert_eq!(out, b"4333681634.839001");
        let mut out = Vec::new();
        write_om_timestamp(&mut out, -1).expect("write");
        assert_eq!(out, b"-0.001");
    }

    fn promtool() -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    }

    fn promtool_block(promtool: &Path, om: &Path, out: &Path) -> String {
        let create = Command::new(promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(om)
            .arg(out)
            .output()
            .expect("run promtool");
        assert!(
            create.status.success(),
            "promtool create-blocks-from failed: {}{}",
            String::from_utf8_lossy(&create.stdout),
            String::from_utf8_lossy(&create.stderr)
        );
        // promtool 2.x's dump opens the directory as a DB and wants a wal directory.
        std::fs::create_dir_all(out.join("wal")).expect("mkdir wal");
        let dump = Command::new(promtool)
            .args(["tsdb", "dump"])
            .arg(out)
            .output()
            .expect("run promtool");
        assert!(
            dump.status.success(),
            "promtool tsdb dump failed: {}",
            String::from_utf8_lossy(&dump.stderr)
        );
        String::from_utf8(dump.stdout).expect("utf-8")
    }

    #[test]
    fn promtool_backfills_the_openmetrics_export() {
        let Some(promtool) = promtool() else {
            if std::env::var("SCRAPEWHEEL_REQUIRE_PEERS").as_deref() == Ok("1") {
                panic!("promtool is not on PATH and SCRAPEWHEEL_REQUIRE_PEERS=1");
            }
            eprintln!("skipping: promtool is not on PATH (install Prometheus to run this test)");
            return;
        };
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = tmp.path().join("spool");
        write_spool(&spool);
        // Prometheus 2.x parsers reject the quoted UTF-8 name syntax; export the rest.
        let legacy = [r#"{__name__=~"[a-z_]+"}"#];
        let (text, stats) = run(&spool, &legacy, ExportFormat::OpenMetrics);
        assert_eq!(stats.samples_written, 8);
        let om = tmp.path().join("export.om");
        std::fs::write(&om, &text).expect("write");
        let dump = promtool_block(&promtool, &om, &tmp.path().join("blocks"));
        let mut got: Vec<&str> = dump.lines().collect();
        got.sort_unstable();
        let want = [
            r#"{__name__="http_requests_total", code="200", path="/x\"y\\z\nw"} 5.5 1700000000123"#,
            r#"{__name__="http_requests_total", code="200", path="/x\"y\\z\nw"} 6 1700000015123"#,
            r#"{__name__="tiny"} 1.5e-300 1700000000002"#,
            r#"{__name__="up", job="a"} 0 1700000015000"#,
            r#"{__name__="up", job="a"} 1 1700000000000"#,
            r#"{__name__="weird", k="nan"} NaN 1700000000001"#,
            r#"{__name__="weird", k="ninf"} -Inf 1700000000001"#,
            r#"{__name__="weird", k="pinf"} +Inf 1700000000001"#,
        ];
        assert_eq!(got, want, "promtool dump:\n{dump}\nexport:\n{text}");

        // A timestamp whose plain decimal form promtool would read a millisecond early.
        let far = tmp.path().join("far");
        let (mut s, _) = Spool::open(
            &far,
            SpoolOptions {
                segment_size: 1 << 20,
                retention_size: 0,
                retention_time_ms: 0,
            },
        )
        .expect("open");
        let mut b = Vec::new();
        encode(&mut b, &[("__name__", "far")], 1.0, 4_333_681_634_839);
        s.append(
            &b,
            BlockMeta {
                samples: 1,
                stripe: 0,
                min_ts: 0,
                max_ts: 0,
            },
        )
        .expect("append");
        s.sync().expect("sync");
        let (text, _) = run(&far, &[], ExportFormat::OpenMetrics);
        let om = tmp.path().join("far.om");
        std::fs::write(&om, &text).expect("write");
        let dump = promtool_block(&promtool, &om, &tmp.path().join("far_blocks"));
        assert_eq!(dump.trim(), r#"{__name__="far"} 1 4333681634839"#);
    }
}
