//! Prometheus text format 0.0.4 and 1.0.0 (`text/plain`).
//!
//! The rules mirror Prometheus's `promlex.l`: spaces and tabs may separate any two tokens
//! (and may start a line), blank lines are skipped, a missing final line break is fine,
//! label pairs need no comma between them and may end with one, label values may hold
//! raw line breaks, timestamps are int64 milliseconds written with digits only, and any
//! `#` line other than `# HELP name …` / `# TYPE name …` is a comment.

use super::float::parse_value;
use super::lex::{excerpt, is_metric_start, metric_name_end, scan_quoted, skip_blanks};
use super::{fail, Entry, MetricType, PResult, ParseErrorKind, Parser, RawLabel, RawStr, Sample};

impl<'a> Parser<'a> {
    pub(super) fn next_text(&mut self) -> PResult<Option<Entry<'a>>> {
        self.labels.clear();
        let b = self.src.as_bytes();
        loop {
            let p = skip_blanks(b, self.pos);
            let Some(&c) = b.get(p) else {
                self.pos = p;
                return Ok(None);
            };
            self.entry_line = self.cur_line;
            match c {
                b'\n' => {
                    self.cur_line += 1;
                    self.pos = p + 1;
                }
                b'#' => return self.text_comment(p).map(Some),
                b'{' => return self.text_sample(p).map(Some),
                c if is_metric_start(c) => return self.text_sample(p).map(Some),
                _ => return fail(p, ParseErrorKind::ExpectedStart(self.found_at(p))),
            }
        }
    }

    /// Consumes the line break (or end of input) at `p`.
    fn text_end_line(&mut self, p: usize) {
        if p < self.src.len() {
            self.cur_line += 1;
            self.pos = p + 1;
        } else {
            self.pos = p;
        }
    }

    fn text_comment(&mut self, hash: usize) -> PResult<Entry<'a>> {
        let b = self.src.as_bytes();
        let after_blanks = skip_blanks(b, hash + 1);
        if after_blanks > hash + 1 {
            let keyword = &b[after_blanks..b.len().min(after_blanks + 4)];
            let is_help = keyword == b"HELP";
            if (is_help || keyword == b"TYPE")
                && matches!(b.get(after_blanks + 4), Some(b' ' | b'\t'))
            {
                let name_start = skip_blanks(b, after_blanks + 4);
                return self.text_metadata(is_help, name_start);
            }
        }
        let eol = memchr::memchr(b'\n', &b[hash..]).map_or(b.len(), |i| hash + i);
        self.text_end_line(eol);
        Ok(Entry::Comment)
    }

    /// `# HELP` / `# TYPE` from the metric name on.
    fn text_metadata(&mut self, is_help: bool, p: usize) -> PResult<Entry<'a>> {
        let keyword = if is_help { "HELP" } else { "TYPE" };
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
        let eol = memchr::memchr(b'\n', &b[name_end..]).map_or(b.len(), |i| name_end + i);
        let rest = &b[name_end..eol];
        // Prometheus drops the one character after the name (normally the separating
        // blank) and keeps the rest of the line verbatim; a rest of blanks only is empty.
        let text = if rest.iter().all(|&c| c == b' ' || c == b'\t') {
            ""
        } else if rest[0].is_ascii() {
            &self.src[name_end + 1..eol]
        } else if is_help {
            return fail(name_end, ParseErrorKind::InvalidHelpText);
        } else {
            return fail(
                name_end,
                ParseErrorKind::InvalidMetricType(excerpt(&self.src[name_end..eol])),
            );
        };
        self.text_end_line(eol);
        if is_help {
            return Ok(Entry::Help {
                name,
                text: RawStr {
                    raw: text,
                    escaped: memchr::memchr(b'\\', text.as_bytes()).is_some(),
                },
            });
        }
        let kind = match text {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Unknown,
            _ => {
                return fail(
                    name_end + usize::from(!text.is_empty()),
                    ParseErrorKind::InvalidMetricType(excerpt(text)),
                )
            }
        };
        Ok(Entry::Type { name, kind })
    }

    fn text_sample(&mut self, start: usize) -> PResult<Entry<'a>> {
        let b = self.src.as_bytes();
        let mut name = None;
        let mut p = start;
        let mut series_end = start;
        if b[p] != b'{' {
            let end = metric_name_end(b, p);
            name = Some(RawStr::plain(&self.src[p..end]));
            series_end = end;
            p = skip_blanks(b, end);
        }
        if b.get(p) == Some(&b'{') {
            p = self.text_labels(p + 1, &mut name)?;
            series_end = p;
        }
        let Some(name) = name else {
            return fail(start, ParseErrorKind::MissingMetricName);
        };

        p = skip_blanks(b, p);
        let value_start = p;
        while p < b.len() && !matches!(b[p], b' ' | b'\t' | b'\n' | b'{') {
            p += 1;
        }
        if p == value_start {
            return fail(
                p,
                ParseErrorKind::ExpectedValue {
                    after: "metric",
                    found: self.found_at(p),
                },
            );
        }
        let token = &self.src[value_start..p];
        let Some(value) = parse_value(token) else {
            return fail(value_start, ParseErrorKind::InvalidValue(excerpt(token)));
        };

        p = skip_blanks(b, p);
        let mut timestamp = None;
        if p < b.len() && b[p].is_ascii_digit() {
            let ts_start = p;
            let mut ts: i64 = 0;
            while p < b.len() && b[p].is_ascii_digit() {
                ts = match ts
                    .checked_mul(10)
                    .and_then(|t| t.checked_add(i64::from(b[p] - b'0')))
                {
                    Some(t) => t,
                    None => {
                        let end = ts_start
                            + b[ts_start..]
                                .iter()
                                .take_while(|c| c.is_ascii_digit())
                                .count();
                        return fail(
                            ts_start,
                            ParseErrorKind::InvalidTimestamp(excerpt(&self.src[ts_start..end])),
                        );
                    }
                };
                p += 1;
            }
            timestamp = Some(ts);
            p = skip_blanks(b, p);
            if p < b.len() && b[p] != b'\n' {
                return fail(
                    p,
                    ParseErrorKind::ExpectedLineEnd {
                        after: "timestamp",
                        found: self.found_at(p),
                    },
                );
            }
        } else if p < b.len() && b[p] != b'\n' {
            return fail(p, ParseErrorKind::ExpectedTimestamp(self.found_at(p)));
        }
        // Checked once the line is known to parse, as Prometheus finds a duplicate only
        // when it appends the sample (after counting it as scraped).
        let same_names = self.check_duplicate_labels()?;
        self.text_end_line(p);
        Ok(Entry::Sample(Sample {
            series: &self.src[start..series_end],
            name,
            value,
            timestamp,
            same_names,
        }))
    }

    /// Label pairs after `{` up to and including `}`; returns the offset after `}`.
    fn text_labels(&mut self, mut p: usize, name: &mut Option<RawStr<'a>>) -> PResult<usize> {
        let b = self.src.as_bytes();
        loop {
            p = skip_blanks(b, p);
            let token_start = p;
            let (token, next) = self.label_token(p)?;
            p = next;
            let Some((label, quoted)) = token else {
                return Ok(p);
            };
            p = skip_blanks(b, p);
            if quoted && matches!(b.get(p), Some(b',' | b'}')) {
                // A quoted string on its own is the metric name (text format 1.0.0).
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
            p = skip_blanks(b, p + 1);
            if b.get(p) != Some(&b'"') {
                return fail(
                    p,
                    ParseErrorKind::ExpectedLabelValue {
                        name: excerpt(&label.to_cow()),
                        found: self.found_at(p),
                    },
                );
            }
            let q = scan_quoted(b, p, true, || ParseErrorKind::UnterminatedString)?;
            self.cur_line += q.newlines;
            self.labels.push(RawLabel {
                name: label,
                value: RawStr {
                    raw: &self.src[p + 1..q.end - 1],
                    escaped: q.escaped,
                },
            });
            p = skip_blanks(b, q.end);
            if b.get(p) == Some(&b',') {
                p += 1;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Entry, Format, MetricType, ParseErrorKind, Parser, RawStr};

    fn ok(body: &str) -> Vec<String> {
        super::super::test_util::ok(body, Format::PromText)
    }

    /// The error's (line, column, kind).
    fn err(body: &str) -> (usize, usize, ParseErrorKind) {
        super::super::test_util::err(body, Format::PromText)
    }

    #[test]
    fn samples_metadata_and_comments() {
        let body = "# HELP http_requests_total The total.\n\
                    # TYPE http_requests_total counter\n\
                    http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                    http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
                    # a comment\n\
                    #another\n\
                    metric_without_labels 12.47\n";
        assert_eq!(
            ok(body),
            [
                "help http_requests_total \"The total.\"",
                "type http_requests_total counter",
                "http_requests_total{method=\"post\",code=\"200\"} 1027.0 @1395066363000",
                "http_requests_total{method=\"post\",code=\"400\"} 3.0 @1395066363000",
                "comment",
                "comment",
                "metric_without_labels{} 12.47",
            ]
        );
    }

    #[test]
    fn blanks_tabs_blank_lines_and_missing_final_newline() {
        let body = "\n  \t\n\tfoo\t{ a = \"1\" ,\tb=\"2\" , }\t 3 \t 7 \t\n\nbar 4";
        assert_eq!(ok(body), ["foo{a=\"1\",b=\"2\"} 3.0 @7", "bar{} 4.0"]);
        assert_eq!(ok(""), Vec::<String>::new());
        assert_eq!(ok("\n\n  \n"), Vec::<String>::new());
    }

    #[test]
    fn label_pairs_need_no_comma_and_may_end_with_one() {
        assert_eq!(ok("a{x=\"1\" y=\"2\",} 1"), ["a{x=\"1\",y=\"2\"} 1.0"]);
        assert_eq!(ok("a{} 1"), ["a{} 1.0"]);
        assert_eq!(ok("a{x=\"1\",}1"), ["a{x=\"1\"} 1.0"]);
    }

    #[test]
    fn value_may_touch_the_name() {
        // promlex: after a name, the value is any run of non-blank, non-'{' bytes.
        assert_eq!(ok("a-1\nb+Inf"), ["a{} -1.0", "b{} inf"]);
    }

    #[test]
    fn quoted_utf8_names() {
        let body = "{\"my.metric\",\"l.1\"=\"v\", x=\"y\"} 1\n{\"a\"} 2\nfoo{\"é\"=\"1\"} 3\n";
        assert_eq!(
            ok(body),
            [
                "my.metric{l.1=\"v\",x=\"y\"} 1.0",
                "a{} 2.0",
                "foo{é=\"1\"} 3.0"
            ]
        );
        assert_eq!(ok("{x=\"1\",\"name.x\"} 1"), ["name.x{x=\"1\"} 1.0"]);
        assert_eq!(
            ok("# HELP \"my.metric\" Some help\n# TYPE \"my.metric\" gauge\n"),
            ["help my.metric \"Some help\"", "type my.metric gauge"]
        );
    }

    #[test]
    fn escapes_in_label_values_and_help() {
        let body = "# HELP m A \\\\ back\\nslash \\\"q\\\" \\t\nm{a=\"x\\\\y\\\"z\\nw\\tv\"} 1\n";
        assert_eq!(
            ok(body),
            [
                "help m \"A \\\\ back\\nslash \\\"q\\\" \\\\t\"",
                "m{a=\"x\\\\y\\\"z\\nw\\\\tv\"} 1.0",
            ]
        );
        // Raw line breaks are allowed inside text-format label values.
        assert_eq!(
            ok("m{a=\"x\ny\"} 1\nn 2"),
            ["m{a=\"x\\ny\"} 1.0", "n{} 2.0"]
        );
    }

    #[test]
    fn series_is_the_raw_text_and_lines_are_tracked() {
        let body = "a 1\n\n  b{x=\"1\"} 2\nc{x=\"multi\nline\"} 3\n{\"q\"} 4\n";
        let mut p = Parser::new(body.as_bytes(), Format::PromText).unwrap();
        let mut got = Vec::new();
        while let Some(Entry::Sample(s)) = p.next().unwrap() {
            got.push((s.series, p.line(), p.labels().len()));
        }
        assert_eq!(
            got,
            [
                ("a", 1, 0),
                ("b{x=\"1\"}", 3, 1),
                ("c{x=\"multi\nline\"}", 4, 1),
                ("{\"q\"}", 6, 0)
            ]
        );
    }

    #[test]
    fn labels_are_raw_until_asked() {
        let body = "m{a=\"x\\\"y\",b=\"plain\"} 1\n";
        let mut p = Parser::new(body.as_bytes(), Format::PromText).unwrap();
        assert!(matches!(p.next().unwrap(), Some(Entry::Sample(_))));
        let l = p.labels();
        assert_eq!(
            l[0].value,
            RawStr {
                raw: "x\\\"y",
                escaped: true
            }
        );
        assert_eq!(l[1].value, RawStr::plain("plain"));
        assert!(matches!(
            l[1].value.to_cow(),
            std::borrow::Cow::Borrowed("plain")
        ));
        assert_eq!(p.next().unwrap(), None);
        assert!(p.labels().is_empty());
    }

    #[test]
    fn special_values_and_timestamps() {
        let body = "a NaN\nb +Inf\nc -Inf\nd inf\ne 1e-3\nf -0.5E+2 0\ng 1 0\n";
        assert_eq!(
            ok(body),
            [
                "a{} NaN",
                "b{} inf",
                "c{} -inf",
                "d{} inf",
                "e{} 0.001",
                "f{} -50.0 @0",
                "g{} 1.0 @0"
            ]
        );
        assert_eq!(
            ok("a 1 9223372036854775807"),
            ["a{} 1.0 @9223372036854775807"]
        );
    }

    #[test]
    fn metadata_quirks_follow_prometheus() {
        // The text keeps everything after the single separator, trailing blanks included.
        assert_eq!(ok("# HELP m  two  \n"), ["help m \" two  \""]);
        assert_eq!(
            ok("# HELP m\n# HELP m   \n"),
            ["help m \"\"", "help m \"\""]
        );
        assert_eq!(ok("#\tTYPE\tm\tuntyped"), ["type m unknown"]);
        // Not metadata: no blank after the keyword, or lower case.
        assert_eq!(
            ok("# HELP\n# HELPER x\n# help m x\n#HELP m x\n"),
            ["comment"; 4]
        );
        assert_eq!(
            ok("# TYPE m summary\n# TYPE n histogram"),
            ["type m summary", "type n histogram"]
        );
    }

    #[test]
    fn errors_with_positions() {
        use super::super::Found as F;
        use ParseErrorKind as K;
        assert_eq!(
            err("a 1\nb{x=\"1\" 2\n"),
            (2, 9, K::ExpectedLabelName(F::Char('2')))
        );
        assert_eq!(
            err("m{a 1}"),
            (
                1,
                5,
                K::ExpectedEquals {
                    name: "a".into(),
                    found: F::Char('1')
                }
            )
        );
        assert_eq!(
            err("m{a=1}"),
            (
                1,
                5,
                K::ExpectedLabelValue {
                    name: "a".into(),
                    found: F::Char('1')
                }
            )
        );
        assert_eq!(
            err("m{a=\"1\"\n"),
            (1, 8, K::ExpectedLabelName(F::EndOfLine))
        );
        assert_eq!(err("m{a=\"1"), (1, 5, K::UnterminatedString));
        assert_eq!(err("m{a=\"1\\\n\"} 1"), (1, 7, K::InvalidEscape));
        assert_eq!(
            err("m{a=\"1\",a=\"2\"} 1"),
            (1, 9, K::DuplicateLabel("a".into()))
        );
        assert_eq!(
            err("m{\"a\"=\"1\",a=\"2\"} 1"),
            (1, 11, K::DuplicateLabel("a".into()))
        );
        assert_eq!(
            err("m{__name__=\"x\"} 1"),
            (1, 3, K::DuplicateLabel("__name__".into()))
        );
        assert_eq!(err("{a=\"1\"} 1"), (1, 1, K::MissingMetricName));
        assert_eq!(err("m{\"n\"} 1"), (1, 3, K::MetricNameSetTwice));
        assert_eq!(err("{\"n\",\"o\"} 1"), (1, 6, K::MetricNameSetTwice));
        assert_eq!(
            err("\n\nm\n"),
            (
                3,
                2,
                K::ExpectedValue {
                    after: "metric",
                    found: F::EndOfLine
                }
            )
        );
        assert_eq!(
            err("m{} "),
            (
                1,
                5,
                K::ExpectedValue {
                    after: "metric",
                    found: F::EndOfInput
                }
            )
        );
        assert_eq!(
            err("m{}{} 1"),
            (
                1,
                4,
                K::ExpectedValue {
                    after: "metric",
                    found: F::Char('{')
                }
            )
        );
        assert_eq!(err("m 1x"), (1, 3, K::InvalidValue("1x".into())));
        assert_eq!(err("m 0x1p3"), (1, 3, K::InvalidValue("0x1p3".into())));
        assert_eq!(err("m 1_000"), (1, 3, K::InvalidValue("1_000".into())));
        assert_eq!(err("m -nan"), (1, 3, K::InvalidValue("-nan".into())));
        assert_eq!(err("m 1e999"), (1, 3, K::InvalidValue("1e999".into())));
        assert_eq!(err("m 1\r\n"), (1, 3, K::InvalidValue("1\r".into())));
        assert_eq!(err("m 1 -5"), (1, 5, K::ExpectedTimestamp(F::Char('-'))));
        assert_eq!(
            err("m 1 1.5"),
            (
                1,
                6,
                K::ExpectedLineEnd {
                    after: "timestamp",
                    found: F::Char('.')
                }
            )
        );
        assert_eq!(
            err("m 1 5 6"),
            (
                1,
                7,
                K::ExpectedLineEnd {
                    after: "timestamp",
                    found: F::Char('6')
                }
            )
        );
        assert_eq!(
            err("m 1 99999999999999999999"),
            (1, 5, K::InvalidTimestamp("99999999999999999999".into()))
        );
        assert_eq!(err("1m 1"), (1, 1, K::ExpectedStart(F::Char('1'))));
        assert_eq!(err("  }"), (1, 3, K::ExpectedStart(F::Char('}'))));
        assert_eq!(
            err("m{a:b=\"1\"} 1"),
            (
                1,
                4,
                K::ExpectedEquals {
                    name: "a".into(),
                    found: F::Char(':')
                }
            )
        );
        assert_eq!(err("m{,} 1"), (1, 3, K::ExpectedLabelName(F::Char(','))));
        assert_eq!(
            err("# TYPE m gauge2\n"),
            (1, 10, K::InvalidMetricType("gauge2".into()))
        );
        assert_eq!(
            err("# TYPE m stateset\n"),
            (1, 10, K::InvalidMetricType("stateset".into()))
        );
        assert_eq!(
            err("# TYPE m counter \n"),
            (1, 10, K::InvalidMetricType("counter ".into()))
        );
        assert_eq!(err("# TYPE m"), (1, 9, K::InvalidMetricType("".into())));
        assert_eq!(
            err("# TYPE 1m counter"),
            (
                1,
                8,
                K::ExpectedMetadataName {
                    keyword: "TYPE",
                    found: F::Char('1')
                }
            )
        );
        assert_eq!(err("# HELP mé x"), (1, 9, K::InvalidHelpText));
        assert_eq!(err("# HELP \"m x"), (1, 8, K::UnterminatedString));
        // Columns count characters, not bytes.
        assert_eq!(
            err("m{a=\"é€\",a=\"\"} 1"),
            (1, 10, K::DuplicateLabel("a".into()))
        );
    }

    #[test]
    fn errors_repeat_and_stop_the_parse() {
        let mut p = Parser::new(b"a 1\nb x\nc 3\n", Format::PromText).unwrap();
        assert!(p.next().unwrap().is_some());
        let e1 = p.next().unwrap_err();
        assert_eq!((e1.line, e1.column), (2, 3));
        assert_eq!(e1.to_string(), "line 2, column 3: invalid value \"x\"");
        assert_eq!(p.next().unwrap_err(), e1);
    }

    #[test]
    fn invalid_utf8_is_reported_where_it_starts() {
        let e = Parser::new(b"ok 1\nm{a=\"\xc3\xa9\xff\"} 1\n", Format::PromText)
            .err()
            .unwrap();
        assert_eq!(
            (e.line, e.column, e.kind),
            (2, 7, ParseErrorKind::InvalidUtf8)
        );
    }

    #[test]
    fn histogram_and_summary_families() {
        let body = "# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n\
                    # TYPE s summary\ns{quantile=\"0.99\"} 0.2\ns_sum 1\ns_count 4\n";
        let got = ok(body);
        assert_eq!(got.len(), 9);
        assert_eq!(got[0], "type h histogram");
        assert_eq!(got[2], "h_bucket{le=\"+Inf\"} 2.0");
        assert_eq!(got[5], "type s summary");
        assert_eq!(got[6], "s{quantile=\"0.99\"} 0.2");
        assert_eq!(MetricType::Summary.as_str(), "summary");
    }
}
