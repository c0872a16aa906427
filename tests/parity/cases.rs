//! Every parity case, in one place. Each case is one job in both agents (the job name is
//! the case name); its targets answer a script, request by request, and the suite
//! compares scrape k of Prometheus with scrape k of scrapewheel.
//!
//! Bodies may use `{T+N}` / `{Ts+N}` for explicit timestamps (ms / OpenMetrics seconds)
//! relative to the suite's base time, which lies two minutes ahead of the start so the
//! samples are neither older than Prometheus's remote-write watcher nor beyond its
//! 10-minute "too far ahead" bound.

use super::model::*;
use std::time::Duration;

const FOREVER: u64 = 1500; // a hang well past the 800ms scrape timeout

const DUPLICATES: &str = "a series exposed twice in one body under two spellings (or made twice by relabeling) is written once; Prometheus (also 3.x) writes both samples with one timestamp, which receivers reject as duplicates";

/// A valid text body of exactly `n` bytes (n >= 13).
fn sized(n: usize) -> String {
    let body = format!("pad{{x=\"{}\"}} 1\n", "a".repeat(n - 12));
    assert_eq!(body.len(), n);
    body
}

pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(exposition());
    v.extend(failures());
    v.extend(target_relabeling());
    v.extend(metric_relabeling());
    v.extend(job_settings());
    v.extend(prometheus3());
    v
}

fn exposition() -> Vec<Case> {
    vec![
        case(
            "counter_gauge",
            vec![target(vec![
                text("# HELP c_total A counter.\n# TYPE c_total counter\nc_total{path=\"/a\"} 1\nc_total{path=\"/b\"} 0\n# TYPE g gauge\ng 3.5\n"),
                text("# TYPE c_total counter\nc_total{path=\"/a\"} 2\nc_total{path=\"/b\"} 0\n# TYPE g gauge\ng -1.25\n"),
                text("# TYPE c_total counter\nc_total{path=\"/a\"} 3\nc_total{path=\"/b\"} 7.5\n# TYPE g gauge\ng 1e10\n"),
            ])]),
        case(
            "histogram",
            vec![target(vec![
                text("# HELP h A histogram.\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 0\nh_bucket{le=\"0.5\"} 2\nh_bucket{le=\"1.0\"} 3\nh_bucket{le=\"+Inf\"} 4\nh_sum 2.75\nh_count 4\n"),
                text("# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"0.5\"} 3\nh_bucket{le=\"1.0\"} 5\nh_bucket{le=\"+Inf\"} 9\nh_sum 20.25\nh_count 9\n"),
            ])]),
        case(
            "summary",
            vec![target(vec![
                text("# TYPE s summary\ns{quantile=\"0.5\"} 0.25\ns{quantile=\"0.9\"} 0.75\ns{quantile=\"0.99\"} NaN\ns_sum 12\ns_count 40\n"),
                text("# TYPE s summary\ns{quantile=\"0.5\"} 0.5\ns{quantile=\"0.9\"} 1.5\ns{quantile=\"0.99\"} 2\ns_sum 13.5\ns_count 44\n"),
            ])]),
        case(
            "untyped",
            vec![target(vec![
                text("# TYPE u untyped\nu 1\nno_type{a=\"b\"} 2\n# HELP only_help Help only.\nonly_help 3\n# a plain comment\n"),
                text("# TYPE u untyped\nu 2\nno_type{a=\"b\"} 3\nonly_help 4\n"),
            ])]),
        case(
            "label_escapes",
            vec![target(vec![
                text("m{quote=\"a\\\"b\",backslash=\"c\\\\d\",newline=\"e\\nf\",unicode=\"ü→€\",spaces=\" x y \",empty=\"\"} 1\nm{unknown_escape=\"a\\tb\"} 2\n"),
                text("m{quote=\"a\\\"b\",backslash=\"c\\\\d\",newline=\"e\\nf\",unicode=\"ü→€\",spaces=\" x y \",empty=\"\"} 3\nm{unknown_escape=\"a\\tb\"} 4\n"),
            ])]),
        case(
            "special_values",
            vec![target(vec![
                text("v_nan NaN\nv_pinf +Inf\nv_ninf -Inf\nv_negzero -0\nv_tiny 1e-300\nv_huge 1.7976931348623157e308\nv_exp 1.5E+3\nv_neg -3.25\n"),
                text("v_nan 1\nv_pinf -Inf\nv_ninf NaN\nv_negzero 0\nv_tiny 5e-324\nv_huge 1\nv_exp 2e-3\nv_neg +7\n"),
            ])]),
        case(
            "special_value_spellings",
            vec![target(vec![
                text("w_inf Inf\nw_lower_inf inf\nw_lower_nan nan\nw_infinity +Infinity\nw_dot .5\nw_plus +1\nw_trailing_dot 5.\n"),
            ])]),
        case(
            "explicit_timestamps",
            vec![target(vec![
                text("ts_a 1 {T+0}\nts_b{x=\"1\"} 2 {T+500}\nno_ts 3\n"),
                text("ts_a 2 {T+1000}\nts_b{x=\"1\"} 3 {T+1500}\nno_ts 4\n"),
                text("ts_b{x=\"1\"} 4 {T+2500}\nno_ts 5\n"),
                text("ts_a 5 {T+3000}\nno_ts 6\n"),
            ])]),
        case(
            "explicit_timestamp_far_future",
            vec![target(vec![text("future 1 {T+7200000}\nnow 2\n")])]),
        case(
            "explicit_timestamp_past",
            vec![target(vec![text("past 1 1000\nnow 2\n")])])
        .deliberate("Prometheus's agent never remote-writes a sample stamped before the agent started (its WAL watcher skips them); scrapewheel sends it and lets the receiver decide"),
        case(
            "honor_timestamps_false",
            vec![target(vec![
                text("ts_a 1 {T+0}\nno_ts 3\n"),
                text("ts_a 2 {T+1000}\nno_ts 4\n"),
                text("no_ts 5\n"),
            ])])
        .set("honor_timestamps", false),
        case(
            "appear_vanish",
            vec![target(vec![
                text("a 1\nb{x=\"1\"} 1\n"),
                text("a 2\nb{x=\"1\"} 2\nc 2\n"),
                text("a 3\n"),
                text("a 4\nb{x=\"1\"} 4\n"),
                text(""),
                text("a 6\nc 6\n"),
            ])]),
        case(
            "openmetrics",
            vec![target(vec![
                om("# TYPE om_requests counter\n# HELP om_requests Requests.\nom_requests_total{code=\"200\"} 10\nom_requests_created{code=\"200\"} 1700000000.5\n# TYPE om_temp_celsius gauge\n# UNIT om_temp_celsius celsius\nom_temp_celsius 21.5\n# TYPE om_lat histogram\nom_lat_bucket{le=\"0.5\"} 1 # {trace_id=\"abc\"} 0.3\nom_lat_bucket{le=\"+Inf\"} 2\nom_lat_sum 1.2\nom_lat_count 2\n# TYPE om_info info\nom_info_info{version=\"1.2\"} 1\n# TYPE om_state stateset\nom_state{om_state=\"a\"} 1\nom_state{om_state=\"b\"} 0\n# TYPE om_unknown unknown\nom_unknown 3\nom_ts 5 {Ts+0}\nom_esc{v=\"q\\\"n\\nb\\\\\"} 1\n# EOF\n"),
                om("# TYPE om_requests counter\nom_requests_total{code=\"200\"} 12\nom_requests_created{code=\"200\"} 1700000000.5\n# TYPE om_temp_celsius gauge\nom_temp_celsius 22\n# TYPE om_lat histogram\nom_lat_bucket{le=\"0.5\"} 2\nom_lat_bucket{le=\"+Inf\"} 4\nom_lat_sum 2.5\nom_lat_count 4\nom_ts 6 {Ts+1000.25}\n# EOF"),
            ])]),
        case(
            "openmetrics_errors",
            vec![target(vec![
                om("ok_metric 1\n# EOF\n"),
                om("ok_metric 2\n"),
                om("ok_metric 3\n# EOF\n"),
                om("ok_metric 4\n\nother 1\n# EOF\n"),
                om("ok_metric 5\n# EOF\nafter 1\n"),
                om("ok_metric 6\n# EOF\n"),
            ])]),
        // One quirk of the text format per scrape, good and bad mixed.
        case(
            "text_format_quirks",
            vec![target(vec![
                text("q 1"),
                text("q\t2\n"),
                text("q 3\r\n"),
                text("q{a=\"1\",} 5\n"),
                text("q 6 \n"),
                text("# HELP q some \\n help \\ here\nq 7\n"),
                text("q{ a = \"1\" } 8\n"),
                text("q 9\n\n\n"),
                text("q +10\n"),
                text("q{a=\"multi\nline\"} 11\n"),
                text("q 12 -5\n"),
                text("# TYPE q counter\n# TYPE q gauge\nq 13\n"),
                text("q 14\n"),
            ])]),
        case(
            "openmetrics_quirks",
            vec![target(vec![
                om("q 1\n# EOF"),
                om("# TYPE q counter\nq_total 2\nq_created {Ts+0}\n# EOF\n"),
                om("q_total 3 # {a=\"b\"} 1\n# EOF\n"),
                om("q{a=\"x\",b=\"\"} 4\n# EOF\n"),
                om("# TYPE q untyped\nq 5\n# EOF\n"),
                om("q 6\n#EOF\n"),
                om("q 7\n# EOF\n\n"),
                om("q 8\nq_bucket{le=\"1.0\"} 8\n# EOF\n"),
                om("q 9 {Ts+0.5}\n# EOF\n"),
                om("q\t10\n# EOF\n"),
                om("q 11\n# EOF\n"),
            ])]),
        case(
            "series_respelled",
            vec![target(vec![
                text("r{a=\"1\",b=\"2\"} 1\n"),
                text("r{b=\"2\",a=\"1\"} 2\n"),
                text("r{a=\"1\",b=\"2\",c=\"\"} 3\n"),
                text("r{a=\"1\",b=\"2\"} 4\n"),
            ])],
        )
        .deliberate("a series whose exposition text changes spelling (label order, an added empty label) stays one series: Prometheus keys its scrape cache by the text, so it counts the series as added again, and an empty label even gets it a StaleNaN beside its value; scrapewheel keys by the label set (8 bytes per series)"),
        case(
            "leading_blanks",
            vec![target(vec![text("lb 1\n"), text("  lb 2\n"), text("lb 3\n")])],
        )
        .deliberate("a sample line with leading blanks: Prometheus takes them into the metric name, which 2.42 rejects, failing the scrape; scrapewheel skips them"),
        case(
            "openmetrics_exemplar_on_any_series",
            vec![target(vec![om("ex 1 # {trace_id=\"abc\"} 0.5\n# EOF\n")])],
        )
        .newer("2.43: exemplars are accepted on any series; 2.42 fails the scrape when a series not ending in _total or _bucket carries one"),
        case(
            "gzip",
            vec![target(vec![
                gzip(text("gz{a=\"1\"} 1\ngz{a=\"2\"} 2\n")),
                gzip(text("gz{a=\"1\"} 3\ngz{a=\"2\"} 4\n")),
                gzip(om("gz{a=\"1\"} 5\n# EOF\n")),
            ])]),
        case(
            "duplicate_series",
            vec![target(vec![
                text("dup 1\ndup 2\nsingle 1\n"),
                text("dup 3\ndup 4\nsingle 2\n"),
            ])])
        .newer("2.52: the second sample of a series repeated in one body is dropped as a duplicate; 2.42's agent writes both with one timestamp"),
        case(
            "duplicate_series_respelled",
            vec![target(vec![
                text("d2{a=\"1\",b=\"2\"} 1\nd2{b=\"2\",a=\"1\"} 2\nsingle 1\n"),
                text("d2{a=\"1\",b=\"2\"} 3\nd2{b=\"2\",a=\"1\"} 4\nsingle 2\n"),
            ])])
        .deliberate(DUPLICATES),
        case(
            "duplicate_series_after_relabel",
            vec![target(vec![text("m{a=\"1\",x=\"1\"} 1\nm{a=\"1\",x=\"2\"} 2\nother 3\n")])],
        )
        .metric_relabel(rule().regex("x").action("labeldrop"))
        .deliberate(DUPLICATES),
        case(
            "duplicate_label_names",
            vec![target(vec![
                text("dl{a=\"1\"} 1\n"),
                text("dl{a=\"1\",a=\"2\"} 2\nok 2\n"),
                text("dl{a=\"1\"} 3\n"),
            ])]),
        case(
            "duplicate_series_with_timestamps",
            vec![target(vec![
                text("tdup 1 {T+0}\ntdup 2 {T+0}\ntdup2 1 {T+100}\ntdup2 2 {T+200}\n"),
                text("tdup 3 {T+1000}\ntdup 4 {T+1000}\ntdup2 3 {T+1100}\ntdup2 4 {T+1200}\n"),
            ])]),
        case(
            "invalid_lines",
            vec![target(vec![
                text("ok_line 1\n"),
                text("ok_line 2\nbroken{a=\"1\" 2\n"),
                text("ok_line 3\n"),
                text("ok_line 4\nunderscore 1_000\n"),
                text("ok_line 5\nhexfloat 0x1p3\n"),
                text("# TYPE ok_line bogus\nok_line 6\n"),
                text("ok_line 7\nno_value{a=\"b\"}\n"),
                text("ok_line 8\nbad_ts 1 1.5\n"),
                text("ok_line 9\n"),
            ])]),
    ]
}

fn failures() -> Vec<Case> {
    vec![
        case(
            "fail_http_500",
            vec![target(vec![
                text("x 1\ny{a=\"b\"} 1\n"),
                text("x 2\ny{a=\"b\"} 2\n"),
                status(500),
                status(503),
                text("x 5\ny{a=\"b\"} 5\n"),
            ])],
        ),
        case(
            "fail_timeout",
            vec![target(vec![
                text("x 1\ny{a=\"b\"} 1\n"),
                hang(FOREVER, "x 2\n"),
                hang(FOREVER, "x 3\n"),
                text("x 4\ny{a=\"b\"} 4\n"),
            ])],
        ),
        case(
            "fail_connection_closed",
            vec![target(vec![
                text("x 1\ny{a=\"b\"} 1\n"),
                Step::Close,
                text("x 3\n"),
            ])],
        ),
        case(
            "fail_connection_refused",
            vec![target(vec![text("r 1\nr2{a=\"b\"} 2\n")]).refuse(Refuse {
                after: 3,
                window: Duration::from_millis(3500),
                recover_requests: 3,
            })],
        )
        .collapsed(),
        case(
            "failing_partial_parse_then_recover",
            vec![target(vec![
                text("p_a 1\np_b 1\np_c 1\n"),
                text("p_a 2\np_b 2\n}broken\n"),
                text("p_a 3\np_b 3\np_c 3\n"),
            ])],
        ),
    ]
}

fn target_relabeling() -> Vec<Case> {
    vec![
        case(
            "relabel_replace",
            vec![target(vec![Step::Echo])
                .label("env", "Prod")
                .label("team", "a")
                .label("region", "eu-west-1")],
        )
        // Defaults: regex (.*), replacement $1, separator ;.
        .relabel(rule().source(&["__address__"]).target("addr_copy"))
        .relabel(rule().target("static").replacement("fixed"))
        .relabel(
            rule()
                .source(&["region"])
                .regex("(?P<area>[a-z]+)-(?P<dir>[a-z]+)-(\\d+)")
                .target("area_${area}")
                .replacement("${dir}/$3/$1x/${1}x"),
        )
        // Anchored: "rod" does not match "Prod".
        .relabel(
            rule()
                .source(&["env"])
                .regex("rod")
                .target("anchored")
                .replacement("no"),
        )
        .relabel(
            rule()
                .source(&["env"])
                .regex("P.*|x")
                .target("alternation")
                .replacement("yes"),
        )
        // A missing source label reads as "".
        .relabel(
            rule()
                .source(&["nonexistent"])
                .regex("")
                .target("missing")
                .replacement("yes"),
        )
        .relabel(
            rule()
                .source(&["env", "nonexistent", "team"])
                .separator("|")
                .target("joined"),
        )
        .relabel(
            rule()
                .source(&["env", "region"])
                .regex("(.*);eu-(.*)")
                .target("combo")
                .replacement("$1-$2"),
        )
        // An empty replacement deletes the target label.
        .relabel(rule().source(&["team"]).target("team").replacement(""))
        // A target name that expands to "" is invalid in every version: no-op.
        .relabel(
            rule()
                .source(&["region"])
                .regex("([a-z]+)-(x?)(.*)")
                .target("$2")
                .replacement("v"),
        )
        // A non-matching regex leaves the label alone.
        .relabel(
            rule()
                .source(&["env"])
                .regex("nomatch")
                .target("env")
                .replacement("changed"),
        ),
        case(
            "relabel_keep_drop",
            vec![
                target(vec![text("k 1\n")]).label("role", "web"),
                target(vec![text("k 1\n")]).label("role", "db"),
                target(vec![text("k 1\n")]).label("role", "cache"),
                target(vec![text("k 1\n")]).label("role", "web-canary"),
            ],
        )
        .relabel(rule().source(&["role"]).regex("web.*|db").action("keep"))
        .relabel(rule().source(&["role"]).regex(".*canary").action("drop"))
        .active(2),
        case(
            "relabel_keepequal_dropequal",
            vec![
                target(vec![text("k 1\n")]).label("a", "x").label("b", "x"),
                target(vec![text("k 1\n")]).label("a", "x").label("b", "y"),
                target(vec![text("k 1\n")])
                    .label("a", "y")
                    .label("b", "y")
                    .label("c", "y"),
                target(vec![text("k 1\n")]).label("c", "w"),
                target(vec![text("k 1\n")])
                    .label("a", "z")
                    .label("b", "z")
                    .label("c", "w"),
            ],
        )
        .relabel(rule().source(&["a"]).target("b").action("keepequal"))
        .relabel(rule().source(&["c"]).target("b").action("dropequal"))
        .active(2),
        case(
            "relabel_hashmod",
            vec![
                target(vec![text("k 1\n")]).label("h", "alpha"),
                target(vec![text("k 1\n")]).label("h", "beta"),
                target(vec![text("k 1\n")]).label("h", "ünïcödé"),
            ],
        )
        .relabel(
            rule()
                .source(&["h"])
                .modulus(1000)
                .target("bucket")
                .action("hashmod"),
        )
        .relabel(
            rule()
                .source(&["h", "job"])
                .modulus(7)
                .target("bucket7")
                .action("hashmod"),
        )
        .relabel(
            rule()
                .source(&["nonexistent"])
                .modulus(1_000_000_007)
                .target("bucket_empty")
                .action("hashmod"),
        )
        .relabel(
            rule()
                .source(&["__address__"])
                .modulus(4)
                .target("__tmp_shard")
                .action("hashmod"),
        )
        .relabel(rule().source(&["__tmp_shard"]).target("shard")),
        case(
            "relabel_labelmap",
            vec![target(vec![text("k 1\n")])
                .label("__meta_x_app", "shop")
                .label("__meta_x_zone", "z1")
                .label("__meta_other", "o")
                .label("plain", "p")],
        )
        .relabel(rule().regex("__meta_x_(.+)").action("labelmap"))
        .relabel(
            rule()
                .regex("__meta_(other)")
                .replacement("mapped_${1}")
                .action("labelmap"),
        )
        .relabel(
            rule()
                .regex("(p)lain")
                .replacement("${1}_copy")
                .action("labelmap"),
        ),
        case(
            "relabel_labeldrop_labelkeep",
            vec![target(vec![text("k 1\n")])
                .label("drop_me", "1")
                .label("drop_too", "2")
                .label("keep", "3")
                .label("other", "4")],
        )
        .relabel(rule().regex("drop_.*").action("labeldrop"))
        .relabel(rule().regex("__.*|job|keep").action("labelkeep")),
        case(
            "relabel_case",
            vec![target(vec![text("k 1\n")])
                .label("mixed", "MiXeD ÄÖ ß")
                .label("second", "Two")],
        )
        .relabel(
            rule()
                .source(&["mixed"])
                .target("lower")
                .action("lowercase"),
        )
        .relabel(
            rule()
                .source(&["mixed"])
                .target("upper")
                .action("uppercase"),
        )
        .relabel(
            rule()
                .source(&["mixed", "second"])
                .separator("+")
                .target("both_lower")
                .action("Lowercase"),
        )
        .relabel(
            rule()
                .source(&["nonexistent"])
                .target("second")
                .action("uppercase"),
        ),
        case(
            "relabel_params_path",
            vec![target(vec![Step::Echo]).label("mod", "from_label")],
        )
        .set("metrics_path", "/probe")
        .set(
            "params",
            serde_json::json!({"module": ["m1", "m2"], "other": ["o"]}),
        )
        .relabel(rule().source(&["mod"]).target("__param_module"))
        .relabel(rule().target("__param_new").replacement("n w&x=y"))
        .relabel(
            rule()
                .target("__metrics_path__")
                .replacement("/custom/path"),
        ),
        case(
            "relabel_metrics_path_escaping",
            vec![target(vec![Step::Echo])],
        )
        .relabel(rule().target("__metrics_path__").replacement("/a path/ü")),
        case(
            "relabel_metrics_path_without_slash",
            vec![target(vec![Step::Echo])],
        )
        .relabel(
            rule()
                .target("__metrics_path__")
                .replacement("no/leading/slash"),
        ),
        case(
            "relabel_interval_timeout",
            vec![target(vec![Step::Echo, Step::Echo, Step::Echo])],
        )
        .relabel(rule().target("__scrape_interval__").replacement("2s"))
        .relabel(rule().target("__scrape_timeout__").replacement("300ms")),
        case("relabel_scheme_to_http", vec![target(vec![Step::Echo])])
            .set("scheme", "https")
            .relabel(rule().target("__scheme__").replacement("http")),
        case("relabel_scheme_to_https", vec![target(vec![text("k 1\n")])])
            .relabel(rule().target("__scheme__").replacement("https")),
        // Discovery (here static labels) may set the internal labels itself; job
        // defaults fill in only what it left unset.
        case(
            "group_labels_set_internal_labels",
            vec![target(vec![Step::Echo, Step::Echo])
                .label("__metrics_path__", "/from-group")
                .label("__scrape_timeout__", "250ms")],
        ),
        case(
            "group_param_label_beats_config_params",
            vec![target(vec![Step::Echo]).label("__param_module", "grp")],
        )
        .set("params", serde_json::json!({"module": ["cfg"]}))
        .newer("3.0: a __param_<name> label from discovery is kept over the job's params; 2.42 overwrites it with the params value"),
        case(
            "relabel_instance",
            vec![target(vec![text("k 1\n")]).label("host", "web-1")],
        )
        .relabel(
            rule()
                .source(&["host", "__address__"])
                .regex("(.*);.*:(\\d+)")
                .target("instance")
                .replacement("$1:$2"),
        ),
        case(
            "relabel_invalid_address_and_kept_target",
            vec![
                target(vec![text("k 1\n")]).label("broken", "yes"),
                target(vec![text("k 1\n")]),
            ],
        )
        .relabel(
            rule()
                .source(&["broken"])
                .regex("yes")
                .target("__address__")
                .replacement("bad/address"),
        )
        .active(1),
        case(
            "relabel_internal_labels_hidden",
            vec![target(vec![text("k 1\n")])
                .label("__tmp_x", "hidden")
                .label("shown", "s")],
        )
        .relabel(rule().source(&["__tmp_x"]).target("__tmp_y"))
        .relabel(
            rule()
                .source(&["__tmp_y"])
                .regex("hid(.*)")
                .target("from_tmp")
                .replacement("$1"),
        ),
    ]
}

fn metric_relabeling() -> Vec<Case> {
    let body = "mr_total{code=\"200\",method=\"GET\",src_zone=\"z1\",tmp_a=\"1\"} 1\nmr_total{code=\"500\",method=\"Post\",src_zone=\"z2\",tmp_a=\"2\"} 2\nkeep_me{a=\"x\",b=\"x\"} 3\nkeep_me{a=\"x\",b=\"y\"} 4\nMixedCase_Name{v=\"AbC\"} 5\nalso 6\n";
    vec![
        case("metric_relabel_replace", vec![target(vec![text(body)])])
            .metric_relabel(
                rule()
                    .source(&["__name__"])
                    .regex("(.*)_total")
                    .target("__name__")
                    .replacement("${1}_renamed"),
            )
            .metric_relabel(
                rule()
                    .source(&["method", "code"])
                    .regex("(.*);(5)..")
                    .target("class")
                    .replacement("$2xx-$1"),
            )
            .metric_relabel(
                rule()
                    .source(&["nonexistent"])
                    .regex("")
                    .target("defaulted")
                    .replacement("d"),
            )
            .metric_relabel(rule().source(&["a"]).target("a").replacement(""))
            .metric_relabel(rule().source(&["instance"]).target("inst_copy")),
        case("metric_relabel_keep_drop", vec![target(vec![text(body)])])
            .metric_relabel(
                rule()
                    .source(&["__name__"])
                    .regex("mr_total|keep_.*|also")
                    .action("keep"),
            )
            .metric_relabel(rule().source(&["code"]).regex("5..").action("drop")),
        case(
            "metric_relabel_keepequal_dropequal",
            vec![target(vec![text(body)])],
        )
        .metric_relabel(rule().source(&["a"]).target("b").action("keepequal"))
        .metric_relabel(
            rule()
                .source(&["tmp_a"])
                .target("nonexistent")
                .action("dropequal"),
        ),
        case("metric_relabel_hashmod", vec![target(vec![text(body)])])
            .metric_relabel(
                rule()
                    .source(&["__name__", "code"])
                    .modulus(3)
                    .target("bucket")
                    .action("hashmod"),
            )
            .metric_relabel(
                rule()
                    .source(&["src_zone"])
                    .modulus(2)
                    .target("shard")
                    .action("hashmod"),
            )
            .metric_relabel(rule().source(&["shard"]).regex("1").action("drop")),
        case(
            "metric_relabel_labelmap_labeldrop_labelkeep",
            vec![target(vec![text(body)])],
        )
        .metric_relabel(
            rule()
                .regex("src_(.+)")
                .replacement("dst_$1")
                .action("labelmap"),
        )
        .metric_relabel(rule().regex("tmp_.*").action("labeldrop"))
        .metric_relabel(
            rule()
                .regex("__name__|job|instance|dst_.*|code|v|a|b")
                .action("labelkeep"),
        ),
        case("metric_relabel_case", vec![target(vec![text(body)])])
            .metric_relabel(
                rule()
                    .source(&["__name__"])
                    .target("__name__")
                    .action("lowercase"),
            )
            .metric_relabel(
                rule()
                    .source(&["method"])
                    .target("method")
                    .action("uppercase"),
            )
            .metric_relabel(rule().source(&["v"]).target("v_lower").action("lowercase")),
        case(
            "metric_relabel_removes_name",
            vec![target(vec![
                text("nm{x=\"n\"} 1\nother 1\n"),
                text("nm{x=\"y\"} 2\nother 2\n"),
                text("nm{x=\"n\"} 3\nother 3\n"),
            ])],
        )
        .metric_relabel(
            rule()
                .source(&["x"])
                .regex("y")
                .target("__name__")
                .replacement(""),
        ),
    ]
}

fn job_settings() -> Vec<Case> {
    let conflict = "hl{job=\"scraped_job\",instance=\"scraped_inst\",other=\"o\"} 1\nhl2 2\nhl3{exported_job=\"e\"} 3\nhl4{job=\"j\",exported_job=\"e\",exported_exported_job=\"ee\"} 4\nhl5{env=\"scraped_env\"} 5\nhl6{job=\"\"} 6\n";
    vec![
        case(
            "honor_labels_true",
            vec![target(vec![text(conflict)]).label("env", "target_env")],
        )
        .set("honor_labels", true),
        case(
            "honor_labels_false",
            vec![target(vec![text(conflict)]).label("env", "target_env")],
        )
        .set("honor_labels", false),
        // Under, over (with a new series past the limit), still over, then recovered
        // without the series that were only seen while failing: every Prometheus version
        // agrees on this one (see the cases below for where they differ).
        case(
            "sample_limit",
            vec![target(vec![
                text("s1 1\ns2 1\ns3 1\n"),
                text("s1 2\ns2 2\ns3 2\ns4 2\n"),
                text("s1 3\ns2 3\ns3 3\ns4 3\ndropped_x 3\n"),
                text("s1 4\ns2 4\ns4 4\n"),
                text("s1 5\ns2 5\ns4 5\ndropped_x 5\n"),
            ])],
        )
        .set("sample_limit", 3)
        .metric_relabel(rule().source(&["__name__"]).regex("dropped_.*").action("drop")),
        case(
            "sample_limit_new_series_past_the_limit_vanishes",
            vec![target(vec![
                text("a 1\nb 1\n"),
                text("a 2\nb 2\nc 2\n"),
                text("a 3\nb 3\n"),
            ])],
        )
        .set("sample_limit", 2)
        .newer("3.7: a new series past sample_limit is never written, so it is not tracked and gets no staleness marker when it goes; 2.42 writes one"),
        case(
            "cache_after_a_failed_scrape",
            vec![target(vec![
                text("a 1\nb 1\nc 1\n"),
                text("a 2\nb 2\nc 2\n}broken\n"),
                text("a 3\nb 3\n"),
                text("a 4\nb 4\nc 4\n"),
            ])],
        )
        .newer("3.3: the scrape cache forgets at the next successful scrape what only a failed scrape saw, so c counts in scrape_series_added when it returns; 2.42 still had it cached"),
        case(
            "series_first_seen_in_a_failed_scrape",
            vec![target(vec![
                text("a 1\n"),
                text("a 2\nnewcomer 2\n}broken\n"),
                text("a 3\nnewcomer 3\n"),
                text("a 4\nnewcomer 4\n"),
            ])],
        )
        .newer("2.47: fixed an agent bug (prometheus#11589, #12592) by which a series first seen in a failed scrape never reaches remote write; 2.42 never sends it"),
        case(
            "label_limit",
            vec![target(vec![
                text("ll{a=\"1\"} 1\n"),
                text("ll{a=\"1\",b=\"2\"} 2\n"),
                text("ll{a=\"1\",b=\"2\",c=\"3\"} 3\n"),
                text("ll{a=\"1\"} 4\n"),
            ])],
        )
        .set("label_limit", 5),
        case(
            "label_name_length_limit",
            vec![target(vec![
                text("ln{abcdefghij=\"1\"} 1\n"),
                text("ln{abcdefghijk=\"1\"} 2\n"),
                text("ln{abcdefghij=\"1\"} 3\n"),
            ])],
        )
        .set("label_name_length_limit", 10),
        case(
            "label_value_length_limit",
            vec![target(vec![
                text("lv{a=\"aaaaaaaaaaaaaaaaaaaa\"} 1\n"),
                text("lv{a=\"aaaaaaaaaaaaaaaaaaaaa\"} 2\n"),
                text("lv{a=\"üüüüüüüüüü\"} 3\n"),
                text("lv{a=\"€€€€€€€\"} 4\n"),
                text("lv{a=\"a\"} 5\n"),
            ])],
        )
        .set("label_value_length_limit", 20),
        case(
            "body_size_limit",
            vec![target(vec![
                text(&sized(99)),
                text(&sized(100)),
                text(&sized(50)),
                gzip(text(&sized(101))),
                gzip(text(&sized(99))),
            ])],
        )
        .set("body_size_limit", "100B"),
        case(
            "target_limit_exceeded",
            vec![
                target(vec![text("t 1\n")]).label("n", "1"),
                target(vec![text("t 1\n")]).label("n", "2"),
                target(vec![text("t 1\n")]).label("n", "3"),
            ],
        )
        .set("target_limit", 2)
        .scrapes(3),
        case(
            "target_limit_at_limit",
            vec![
                target(vec![text("t 1\n")]).label("n", "1"),
                target(vec![text("t 1\n")]).label("n", "2"),
            ],
        )
        .set("target_limit", 2),
        case(
            "fallback_for_blank_content_type",
            vec![target(vec![
                reply(200, None, "fb 1\n"),
                reply(200, None, "fb 2\n"),
            ])],
        )
        // Prometheus 2.42 has no fallback_scrape_protocol and parses a blank
        // Content-Type as text; scrapewheel (as 3.x) needs the key to do the same.
        .scrapewheel_only("fallback_scrape_protocol", "PrometheusText0.0.4"),
    ]
}

/// Behaviour Prometheus 3.x changed; scrapewheel follows 3.x.
fn prometheus3() -> Vec<Case> {
    vec![
        case("no_default_port", vec![TargetSpec {
            addr: Addr::Fixed("127.0.0.1"),
            labels: Vec::new(),
            script: vec![text("")],
            refuse: None,
        }])
        .scrapes(2)
        .newer("3.0: no default port is added to __address__ (2.42 turns 127.0.0.1 into 127.0.0.1:80 for http)"),
        case(
            "relabel_regex_dot_matches_newline",
            vec![target(vec![text("nl{v=\"a\\nb\"} 1\nplain{v=\"ab\"} 2\n")]).label("multi", "line1\nline2")],
        )
        .relabel(rule().source(&["multi"]).regex("line1.(.*)").target("tail"))
        .metric_relabel(rule().source(&["v"]).regex("a.b").action("drop"))
        .newer("3.0: relabel regexes are compiled with (?s), so . matches a newline; 2.42's do not"),
        case(
            "blank_content_type",
            vec![target(vec![reply(200, None, "bct 1\n")])],
        )
        .newer("3.0: a blank Content-Type fails the scrape unless fallback_scrape_protocol is set; 2.42 parses the body as text"),
        case(
            "unknown_content_type",
            vec![target(vec![reply(200, Some("application/json"), "uct 1\n")])],
        )
        .newer("3.0: an unknown Content-Type fails the scrape unless fallback_scrape_protocol is set; 2.42 parses the body as text"),
        case(
            "utf8_metric_and_label_names",
            vec![target(vec![reply(
                200,
                Some("text/plain; version=1.0.0; charset=utf-8"),
                "{\"my.metric\",\"label.with.dots\"=\"v\"} 1\nplain 2\n",
            )])],
        )
        .newer("3.0: quoted UTF-8 metric and label names are accepted; 2.42 fails the scrape"),
        case(
            "relabel_utf8_target_label",
            vec![target(vec![text("k 1\n")]).label("region", "eu-west-1")],
        )
        .relabel(rule().source(&["region"]).target("${1}").replacement("v"))
        .newer("3.0: any UTF-8 label name is a valid relabel target (here eu-west-1); 2.42 skips the rule"),
        case(
            "le_quantile_normalisation",
            vec![target(vec![text(
                "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"10\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 4\nh_count 3\n# TYPE s summary\ns{quantile=\"0\"} 0.1\ns{quantile=\"1\"} 5\ns_sum 6\ns_count 2\n",
            )])],
        )
        .newer("3.0: le and quantile values are normalised to float form (1 -> 1.0); 2.42 keeps them as written"),
    ]
}
