//! OpenMetrics 1.0 text (`application/openmetrics-text`).
//!
//! Stricter than the text format, mirroring Prometheus's `openmetricslex.l`: exactly one
//! space between tokens and none elsewhere, no blank lines, only `# HELP`, `# TYPE`,
//! `# UNIT` and `# EOF` comment lines, a comma or `}` after every label value, no raw
//! line breaks in label values, timestamps in float seconds, and the body must end with
//! `# EOF` (and an optional line break). Exemplars are checked and skipped.

use super::float::parse_value;
use super::lex::{excerpt, is_metric_start, metric_name_end, scan_quoted};
use super::{fail, Entry, MetricType, PResult, ParseErrorKind, Parser, RawLabel, RawStr, Sample};

impl<'a> Parser<'a> {
    pub(super) fn next_openmetrics(&mut self) -> PResult<Option<Entry<'a>>> {
        self.labels.clear();
        let b = self.src.as_bytes();
        let p = self.pos;
        // Set before the end check too: a part that ends here resumes on this line.
        self.entry_line = self.cur_line;
        let Some(&c) = b.get(p) else {
            return fail(p, ParseErrorKind::MissingEof);
        };
        match c {
            b'#' => self.om_comment(p),
            b'{' => self.om_sample(p).map(Some),
            c if is_metric_start(c) => self.om_sample(p).map(Some),
            _ => fail(p, ParseErrorKind::ExpectedStart(self.found_at(p))),
        }
    }

    fn om_comment(&mut self, hash: usize) -> PResult<Option<Entry<'a>>> {
        let b = self.src.as_bytes();
        let rest = &b[hash + 1..];
        if rest.starts_with(b" EOF") {
            let mut end = hash + 5;
            if b.get(end) == Some(&b'\n') {
                end += 1;
            }
            if end != b.len() {
                return fail(end, ParseErrorKind::DataAfterEof);
            }
            if end > hash + 5 {
                self.cur_line += 1;
            }
            self.pos = end;
            self.saw_eof = true;
            return Ok(None);
        }
        let keyword = if rest.starts_with(b" HELP ") {
            "HELP"
        } else if rest.starts_with(b" TYPE ") {
            "TYPE"
        } else if rest.starts_with(b" UNIT ") {
            "UNIT"
        } else {
            return fail(hash, ParseErrorKind::InvalidComment);
        };
        self.om_metadata(keyword, hash + 7).map(Some)
    }

    /// `# HELP`, `# TYPE` or `# UNIT` from the metric name on.
    fn om_metadata(&mut self, keyword: &'static str, p: usize) -> PResult<Entry<'a>> {
        let b = self.src.as_bytes();
        let (name, name_end) = match b.get(p) {
            Some(b'"') => {
                let q = scan_quoted(b, p, true, || ParseErrorKind::UnterminatedString)?;
                self.cur_line += q.newlines;
                (&self.src[p + 1..q.end - 1], q.end)
            }
            Some(&c) if is_metric_start(c) => {
                let end = metric_name_end(b, p);
                (&self.src[p..end], end)
            }
            _ => {
                return fail(
                    p,
                    ParseErrorKind::ExpectedMetadataName {
                        keyword,
                        found: self.found_at(p),
                    },
                )
            }
        };
        if b.get(name_end) != Some(&b' ') {
            if name_end >= b.len() {
                return fail(name_end, ParseErrorKind::MissingEof);
            }
            return fail(
                name_end,
                ParseErrorKind::ExpectedMetadataText {
                    keyword,
                    found: self.found_at(name_end),
                },
            );
        }
        let text_start = name_end + 1;
        let Some(eol) = memchr::memchr(b'\n', &b[text_start..]).map(|i| text_start + i) else {
            return fail(b.len(), ParseErrorKind::MissingEof);
        };
        let text = &self.src[text_start..eol];
        self.cur_line += 1;
        self.pos = eol + 1;
        match keyword {
            "HELP" => Ok(Entry::Help {
                name,
                text: RawStr {
                    raw: text,
                    escaped: memchr::memchr(b'\\', text.as_bytes()).is_some(),
                },
            }),
            "TYPE" => {
                let kind = match text {
                    "counter" => MetricType::Counter,
                    "gauge" => MetricType::Gauge,
                    "histogram" => MetricType::Histogram,
                    "gaugehistogram" => MetricType::GaugeHistogram,
                    "summary" => MetricType::Summary,
                    "info" => MetricType::Info,
                    "stateset" => MetricType::StateSet,
                    "unknown" => MetricType::Unknown,
                    _ => return fail(text_start, ParseErrorKind::InvalidMetricType(excerpt(text))),
                };
                Ok(Entry::Type { name, kind })
            }
            _ => {
                let unit = text;
                let is_suffix = unit.is_empty()
                    || (name.len() > unit.len()
                        && name.ends_with(unit)
                        && name.as_bytes()[name.len() - unit.len() - 1] == b'_');
                if !is_suffix {
                    return fail(
                        text_start,
                        ParseErrorKind::UnitNotSuffix {
                            unit: excerpt(unit),
                            name: excerpt(name),
                        },
                    );
                }
                Ok(Entry::Unit { name, unit })
            }
        }
    }

    fn om_sample(&mut self, start: usize) -> PResult<Entry<'a>> {
        let b = self.src.as_bytes();
        let mut name = None;
        let mut p = start;
        if b[p] != b'{' {
            p = metric_name_end(b, p);
            name = Some(RawStr::plain(&self.src[start..p]));
        }
        if b.get(p) == Some(&b'{') {
            p = self.om_labels(p + 1, &mut name, false)?;
        }
        let series_end = p;
        let Some(name) = name else {
            return fail(start, ParseErrorKind::MissingMetricName);
        };

        let (value, mut p) = self.om_number(p, "metric")?;
        let value = match parse_value(value) {
            Some(v) => v,
            None => {
                return fail(
                    p - value.len(),
                    ParseErrorKind::InvalidValue(excerpt(value)),
                )
            }
        };
        let mut timestamp = None;
        if b.get(p) == Some(&b' ') && !b[p + 1..].starts_with(b"# {") {
            let (ts, end) = self.om_timestamp(p)?;
            timestamp = Some(ts);
            p = end;
        }
        match b.get(p) {
            Some(b'\n') => {}
            Some(b' ') if b[p + 1..].starts_with(b"# {") => p = self.om_exemplar(p + 4)?,
            None => return fail(p, ParseErrorKind::MissingEof),
            Some(_) => {
                let kind = if timestamp.is_some() {
                    ParseErrorKind::ExpectedLineEnd {
                        after: "timestamp",
                        found: self.found_at(p),
                    }
                } else {
                    ParseErrorKind::ExpectedTimestamp(self.found_at(p))
                };
                return fail(p, kind);
            }
        }
        // Checked once the line is known to parse, as Prometheus finds a duplicate only
        // when it appends the sample (after counting it as scraped).
        let same_names = self.check_duplicate_labels()?;
        self.cur_line += 1;
        self.pos = p + 1;
        Ok(Entry::Sample(Sample {
            series: &self.src[start..series_end],
            name,
            value,
            timestamp,
            same_names,
        }))
    }

    /// A single space then a non-empty run of bytes up to the next space or line break:
    /// the shape of values and timestamps. Returns the token and the offset after it.
    fn om_number(&self, p: usize, after: &'static str) -> PResult<(&'a str, usize)> {
        let b = self.src.as_bytes();
        let expected = |pos| {
            fail(
                pos,
                ParseErrorKind::ExpectedValue {
                    after,
                    found: self.found_at(pos),
                },
            )
        };
        match b.get(p) {
            Some(b' ') => {}
            None => return fail(p, ParseErrorKind::MissingEof),
            Some(_) => return expected(p),
        }
        let start = p + 1;
        let end = start + memchr::memchr2(b' ', b'\n', &b[start..]).unwrap_or(b.len() - start);
        if end == start {
            return expected(start);
        }
        Ok((&self.src[start..end], end))
    }

    /// A timestamp in float seconds after the space at `p`, as milliseconds.
    fn om_timestamp(&self, p: usize) -> PResult<(i64, usize)> {
        let b = self.src.as_bytes();
        let start = p + 1;
        let end = start + memchr::memchr2(b' ', b'\n', &b[start..]).unwrap_or(b.len() - start);
        let token = &self.src[start..end];
        match parse_value(token) {
            // Go's int64(ts*1000) truncates toward zero; `as` does too (and saturates
            // where Go's result would be unspecified).
            Some(secs) if secs.is_finite() => Ok(((secs * 1000.0) as i64, end)),
            _ => {
                if end == start {
                    return fail(
                        start,
                        ParseErrorKind::ExpectedTimestamp(self.found_at(start)),
                    );
                }
                fail(start, ParseErrorKind::InvalidTimestamp(excerpt(token)))
            }
        }
    }

    /// `{labels} value [timestamp]` of an exemplar, `p` being just after `# {`. It is
    /// validated and dropped. Returns the offset of the line break.
    fn om_exemplar(&mut self, p: usize) -> PResult<usize> {
        let b = self.src.as_bytes();
        let mut no_name = None;
        let p = self.om_labels(p, &mut no_name, true)?;
        let (value, mut p) = self.om_number(p, "exemplar labels")?;
        if parse_value(value).is_none() {
            return fail(
                p - value.len(),
                ParseErrorKind::InvalidValue(excerpt(value)),
            );
        }
        let mut has_ts = false;
        if b.get(p) == Some(&b' ') {
            p = self.om_timestamp(p)?.1;
            has_ts = true;
        }
        match b.get(p) {
            Some(b'\n') => Ok(p),
            None => fail(p, ParseErrorKind::MissingEof),
            Some(_) => fail(
                p,
                ParseErrorKind::ExpectedLineEnd {
                    after: if has_ts {
                        "exemplar timestamp"
                    } else {
                        "exemplar value"
                    },
                    found: self.found_at(p),
                },
            ),
        }
    }

    /// Label pairs after `{` up to and including `}`; returns the offset after `}`.
    /// Exemplar labels are checked but not kept, and may not hold a metric name.
    fn om_labels(
        &mut self,
        mut p: usize,
        name: &mut Option<RawStr<'a>>,
        exemplar: bool,
    ) -> PResult<usize> {
        let b = self.src.as_bytes();
        loop {
            let token_start = p;
            let (token, next) = self.label_token(p)?;
            p = next;
            let Some((label, quoted)) = token else {
                return Ok(p);
            };
            if quoted && !exemplar && matches!(b.get(p), Some(b',' | b'}')) {
                if name.is_some() {
                    return fail(token_start, ParseErrorKind::MetricNameSetTwice);
                }
                *name = Some(label);
                if b[p] == b',' {
                    p += 1;
                }
                continue;
            }
            if b.get(p) != Some(&b'=') {
                return fail(
                    p,
                    ParseErrorKind::ExpectedEquals {
                        name: excerpt(&label.to_cow()),
                        found: self.found_at(p),
                    },
                );
            }
            p += 1;
            if b.get(p) != Some(&b'"') {
                return fail(
                    p,
                    ParseErrorKind::ExpectedLabelValue {
                        name: excerpt(&label.to_cow()),
                        found: self.found_at(p),
                    },
                );
            }
            let q = scan_quoted(b, p, false, || ParseErrorKind::NewlineInLabelValue {
                name: excerpt(&label.to_cow()),
            })?;
            if !exemplar {
                self.labels.push(RawLabel {
                    name: label,
                    value: RawStr {
                        raw: &self.src[p + 1..q.end - 1],
                        escaped: q.escaped,
                    },
                });
            }
            p = q.end;
            match b.get(p) {
                Some(b',') => p += 1,
                Some(b'}') => {}
                _ => {
                    return fail(
                        p,
                        ParseErrorKind::ExpectedCommaOrBrace {
                            name: excerpt(&label.to_cow()),
                            found: self.found_at(p),
                        },
                    )
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Entry, Format, Found as F, ParseErrorKind as K, Parser};

    fn ok(body: &str) -> Vec<String> {
        super::super::test_util::ok(body, Format::OpenMetrics)
    }

    /// The error's (line, column, kind).
    fn err(body: &str) -> (usize, usize, K) {
        super::super::test_util::err(body, Format::OpenMetrics)
    }

    #[test]
    fn full_exposition() {
        let body = "# TYPE a counter\n# HELP a Help \\\"q\\\" \\\\ \\n.\n# UNIT a_seconds seconds\n\
                    a_total{x=\"1\",y=\"2\"} 1.5 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67 1520879602.029\n\
                    a_created{x=\"1\",y=\"2\"} 1520430000.123\n\
                    # TYPE i info\ni_info{v=\"1\"} 1\n\
                    # TYPE s stateset\ns{s=\"a\"} 1\n\
                    # TYPE g gaugehistogram\ng_gcount 2\n\
                    # TYPE u unknown\nu NaN -1.5\n\
                    {\"my.metric\",\"l.1\"=\"v\"} 7\n\
                    # EOF\n";
        assert_eq!(
            ok(body),
            [
                "type a counter",
                "help a \"Help \\\"q\\\" \\\\ \\n.\"",
                "unit a_seconds seconds",
                "a_total{x=\"1\",y=\"2\"} 1.5 @1520879607789",
                "a_created{x=\"1\",y=\"2\"} 1520430000.123",
                "type i info",
                "i_info{v=\"1\"} 1.0",
                "type s stateset",
                "s{s=\"a\"} 1.0",
                "type g gaugehistogram",
                "g_gcount{} 2.0",
                "type u unknown",
                "u{} NaN @-1500",
                "my.metric{l.1=\"v\"} 7.0",
            ]
        );
    }

    #[test]
    fn eof_forms() {
        assert_eq!(ok("# EOF"), Vec::<String>::new());
        assert_eq!(ok("# EOF\n"), Vec::<String>::new());
        assert_eq!(ok("a 1\n# EOF"), ["a{} 1.0"]);
        assert_eq!(err(""), (1, 1, K::MissingEof));
        assert_eq!(err("a 1\n"), (2, 1, K::MissingEof));
        assert_eq!(err("a 1"), (1, 4, K::MissingEof));
        assert_eq!(err("# EOF\n\n"), (2, 1, K::DataAfterEof));
        assert_eq!(err("# EOF\na 1\n"), (2, 1, K::DataAfterEof));
        assert_eq!(err("# EOF "), (1, 6, K::DataAfterEof));
        assert_eq!(err("# HELP a x"), (1, 11, K::MissingEof));
        assert_eq!(err("a{b=\"c\"} 1 # {x=\"y\"} 1"), (1, 23, K::MissingEof));
    }

    #[test]
    fn timestamps_are_float_seconds_truncated() {
        let body = "a 1 1.5\nb 1 -0.0015\nc 1 1e3\nd 1 0.0009\ne 1 1520879607.7899\n# EOF\n";
        assert_eq!(
            ok(body),
            [
                "a{} 1.0 @1500",
                "b{} 1.0 @-1",
                "c{} 1.0 @1000000",
                "d{} 1.0 @0",
                "e{} 1.0 @1520879607789"
            ]
        );
        assert_eq!(
            err("a 1 NaN\n# EOF\n"),
            (1, 5, K::InvalidTimestamp("NaN".into()))
        );
        assert_eq!(
            err("a 1 +Inf\n# EOF\n"),
            (1, 5, K::InvalidTimestamp("+Inf".into()))
        );
        assert_eq!(
            err("a 1 1_0\n# EOF\n"),
            (1, 5, K::InvalidTimestamp("1_0".into()))
        );
        assert_eq!(
            err("a 1 \n# EOF\n"),
            (1, 5, K::ExpectedTimestamp(F::EndOfLine))
        );
        assert_eq!(
            err("a 1 2 3\n# EOF\n"),
            (
                1,
                6,
                K::ExpectedLineEnd {
                    after: "timestamp",
                    found: F::Space
                }
            )
        );
    }

    #[test]
    fn exemplars_are_checked_and_skipped() {
        let ok_bodies = [
            "a_bucket{le=\"1\"} 2 # {} 1\n# EOF\n",
            "a_bucket{le=\"1\"} 2 # {a=\"b\",} 1 2\n# EOF\n",
            "a_bucket{le=\"1\"} 2 3 # {\"q.x\"=\"b\"} NaN\n# EOF\n",
        ];
        for body in ok_bodies {
            let mut p = Parser::new(body.as_bytes(), Format::OpenMetrics).unwrap();
            assert!(
                matches!(p.next().unwrap(), Some(Entry::Sample(_))),
                "{body}"
            );
            assert_eq!(p.labels().len(), 1, "{body}");
            assert_eq!(p.next().unwrap(), None);
        }
        assert_eq!(
            err("a 2 # {\"n\"} 1\n# EOF\n"),
            (
                1,
                11,
                K::ExpectedEquals {
                    name: "n".into(),
                    found: F::Char('}')
                }
            )
        );
        assert_eq!(
            err("a 2 # {a=\"b\"}\n# EOF\n"),
            (
                1,
                14,
                K::ExpectedValue {
                    after: "exemplar labels",
                    found: F::EndOfLine
                }
            )
        );
        assert_eq!(
            err("a 2 # {a=\"b\"} x\n# EOF\n"),
            (1, 15, K::InvalidValue("x".into()))
        );
        assert_eq!(
            err("a 2 # {a=\"b\"} 1 NaN\n# EOF\n"),
            (1, 17, K::InvalidTimestamp("NaN".into()))
        );
        assert_eq!(
            err("a 2 # {a=\"b\"} 1 2 3\n# EOF\n"),
            (
                1,
                18,
                K::ExpectedLineEnd {
                    after: "exemplar timestamp",
                    found: F::Space
                }
            )
        );
        assert_eq!(
            err("a 2 #{a=\"b\"} 1\n# EOF\n"),
            (1, 5, K::InvalidTimestamp("#{a=\"b\"}".into()))
        );
    }

    #[test]
    fn strict_spacing() {
        assert_eq!(
            err("a  1\n# EOF\n"),
            (
                1,
                3,
                K::ExpectedValue {
                    after: "metric",
                    found: F::Space
                }
            )
        );
        assert_eq!(
            err("a\t1\n# EOF\n"),
            (
                1,
                2,
                K::ExpectedValue {
                    after: "metric",
                    found: F::Tab
                }
            )
        );
        assert_eq!(
            err("a 1\t2\n# EOF\n"),
            (1, 3, K::InvalidValue("1\t2".into()))
        );
        assert_eq!(err(" a 1\n# EOF\n"), (1, 1, K::ExpectedStart(F::Space)));
        assert_eq!(
            err("a 1\n\n# EOF\n"),
            (2, 1, K::ExpectedStart(F::EndOfLine))
        );
        assert_eq!(
            err("a {b=\"c\"} 1\n# EOF\n"),
            (1, 3, K::InvalidValue("{b=\"c\"}".into()))
        );
        assert_eq!(
            err("a{b=\"c\", d=\"e\"} 1\n# EOF\n"),
            (1, 9, K::ExpectedLabelName(F::Space))
        );
        assert_eq!(
            err("a{b = \"c\"} 1\n# EOF\n"),
            (
                1,
                4,
                K::ExpectedEquals {
                    name: "b".into(),
                    found: F::Space
                }
            )
        );
        assert_eq!(
            err("a{b=\"c\" d=\"e\"} 1\n# EOF\n"),
            (
                1,
                8,
                K::ExpectedCommaOrBrace {
                    name: "b".into(),
                    found: F::Space
                }
            )
        );
        assert_eq!(
            err("a-1\n# EOF\n"),
            (
                1,
                2,
                K::ExpectedValue {
                    after: "metric",
                    found: F::Char('-')
                }
            )
        );
        assert_eq!(
            err("a\n# EOF\n"),
            (
                1,
                2,
                K::ExpectedValue {
                    after: "metric",
                    found: F::EndOfLine
                }
            )
        );
        assert_eq!(ok("a{b=\"c\",} 1\n# EOF\n"), ["a{b=\"c\"} 1.0"]);
    }

    #[test]
    fn comments_and_metadata_are_strict() {
        assert_eq!(err("# comment\n# EOF\n"), (1, 1, K::InvalidComment));
        assert_eq!(err("#HELP a x\n# EOF\n"), (1, 1, K::InvalidComment));
        assert_eq!(
            err("# HELP  a x\n# EOF\n"),
            (
                1,
                8,
                K::ExpectedMetadataName {
                    keyword: "HELP",
                    found: F::Space
                }
            )
        );
        assert_eq!(
            err("# TYPE a untyped\n# EOF\n"),
            (1, 10, K::InvalidMetricType("untyped".into()))
        );
        assert_eq!(
            err("# TYPE a\n# EOF\n"),
            (
                1,
                9,
                K::ExpectedMetadataText {
                    keyword: "TYPE",
                    found: F::EndOfLine
                }
            )
        );
        assert_eq!(ok("# HELP a \n# EOF\n"), ["help a \"\""]);
        assert_eq!(
            ok("# UNIT a_b_seconds seconds\n# UNIT x \n# EOF\n"),
            ["unit a_b_seconds seconds", "unit x "]
        );
        assert_eq!(
            err("# UNIT a_seconds bytes\n# EOF\n"),
            (
                1,
                18,
                K::UnitNotSuffix {
                    unit: "bytes".into(),
                    name: "a_seconds".into()
                }
            )
        );
        assert_eq!(
            err("# UNIT aseconds seconds\n# EOF\n"),
            (
                1,
                17,
                K::UnitNotSuffix {
                    unit: "seconds".into(),
                    name: "aseconds".into()
                }
            )
        );
        assert_eq!(
            err("# UNIT seconds seconds\n# EOF\n"),
            (
                1,
                16,
                K::UnitNotSuffix {
                    unit: "seconds".into(),
                    name: "seconds".into()
                }
            )
        );
        assert_eq!(ok("# TYPE \"a.b\" gauge\n# EOF\n"), ["type a.b gauge"]);
    }

    #[test]
    fn label_value_rules() {
        assert_eq!(
            err("a{b=\"x\ny\"} 1\n# EOF\n"),
            (1, 7, K::NewlineInLabelValue { name: "b".into() })
        );
        assert_eq!(
            err("a{b=\"1\",b=\"2\"} 1\n# EOF\n"),
            (1, 9, K::DuplicateLabel("b".into()))
        );
        assert_eq!(err("{b=\"1\"} 1\n# EOF\n"), (1, 1, K::MissingMetricName));
        assert_eq!(
            ok("a{b=\"\\\\\\\"\\n\"} 1\n# EOF\n"),
            ["a{b=\"\\\\\\\"\\n\"} 1.0"]
        );
    }

    #[test]
    fn created_series_are_ordinary() {
        let body = "# TYPE c counter\nc_total 1\nc_created 1.7e9\n# EOF\n";
        assert_eq!(
            ok(body),
            [
                "type c counter",
                "c_total{} 1.0",
                "c_created{} 1700000000.0"
            ]
        );
    }
}
