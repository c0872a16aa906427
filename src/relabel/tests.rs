//! Rule-by-rule checks of relabel semantics against Prometheus 3.x behaviour.

// A failed unwrap here is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

use super::*;

/// Parses `[[r]]` tables from TOML, the way the config loader will hand them over.
fn configs(src: &str) -> Vec<RelabelConfig> {
    #[derive(serde::Deserialize)]
    struct File {
        r: Vec<RelabelConfig>,
    }
    toml::from_str::<File>(src).expect("valid TOML").r
}

fn rules(src: &str) -> Vec<Rule> {
    configs(src)
        .iter()
        .map(|c| Rule::compile(c).expect("rule compiles"))
        .collect()
}

fn legacy_rules(src: &str) -> Vec<Rule> {
    configs(src)
        .iter()
        .map(|c| Rule::compile_with(c, NameValidation::Legacy).expect("rule compiles"))
        .collect()
}

fn set(pairs: &[(&str, &str)]) -> LabelSet {
    LabelSet::from_pairs(pairs.iter().copied())
}

/// Runs `rules` over `input`; None when the set is dropped.
fn run(rules: &[Rule], input: &[(&str, &str)]) -> Option<LabelSet> {
    let mut labels = set(input);
    process(rules, &mut labels).then_some(labels)
}

fn compile_err(src: &str) -> RelabelError {
    compile_err_with(src, NameValidation::Utf8)
}

fn compile_err_with(src: &str, scheme: NameValidation) -> RelabelError {
    let cfgs = configs(src);
    match Rule::compile_with(&cfgs[0], scheme) {
        Ok(rule) => panic!("expected an error, compiled {rule:?}"),
        Err(e) => e,
    }
}

// ---- defaults and parsing ----

#[test]
fn default_rule_is_replace_copying_value() {
    let r = rules("[[r]]\nsource_labels = ['a']\ntarget_label = 'b'");
    assert_eq!(r[0].action(), Action::Replace);
    assert_eq!(
        run(&r, &[("a", "foo")]),
        Some(set(&[("a", "foo"), ("b", "foo")]))
    );
}

#[test]
fn default_separator_is_semicolon() {
    let r = rules("[[r]]\nsource_labels = ['a', 'b']\ntarget_label = 'c'");
    assert_eq!(
        run(&r, &[("a", "1"), ("b", "2")]).unwrap().get("c"),
        Some("1;2")
    );
}

#[test]
fn custom_separator_joins_values() {
    let r = rules("[[r]]\nsource_labels = ['a', 'b', 'c']\nseparator = '--'\ntarget_label = 'd'");
    let out = run(&r, &[("a", "1"), ("b", "2"), ("c", "3")]).unwrap();
    assert_eq!(out.get("d"), Some("1--2--3"));
}

#[test]
fn action_is_case_insensitive() {
    for name in ["KEEP", "Keep", "kEeP", "\u{212A}eep"] {
        let cfg = RelabelConfig {
            action: Some(name.into()),
            ..Default::default()
        };
        assert_eq!(
            Rule::compile(&cfg).unwrap().action(),
            Action::Keep,
            "{name}"
        );
    }
    let cfg = RelabelConfig {
        action: Some("LabelMap".into()),
        ..Default::default()
    };
    assert_eq!(Rule::compile(&cfg).unwrap().action(), Action::LabelMap);
}

#[test]
fn every_action_round_trips_its_name() {
    for a in Action::ALL {
        assert_eq!(Action::parse(a.as_str()), Some(a));
        assert_eq!(a.to_string(), a.as_str());
    }
    assert_eq!(Action::parse("replace_all"), None);
}

#[test]
fn config_rejects_unknown_keys() {
    let err = toml::from_str::<RelabelConfig>("regex = 'a'\nregexp = 'b'").unwrap_err();
    assert!(err.to_string().contains("regexp"), "{err}");
}

#[test]
fn config_reads_every_key() {
    let c: RelabelConfig = toml::from_str(
        "source_labels = ['a']\nseparator = ','\nregex = 'x'\nmodulus = 3\n\
         target_label = 't'\nreplacement = 'r'\naction = 'hashmod'",
    )
    .unwrap();
    assert_eq!(
        c,
        RelabelConfig {
            source_labels: Some(vec!["a".into()]),
            separator: Some(",".into()),
            regex: Some("x".into()),
            modulus: Some(3),
            target_label: Some("t".into()),
            replacement: Some("r".into()),
            action: Some("hashmod".into()),
        }
    );
}

#[test]
fn no_rules_keep_everything() {
    assert_eq!(run(&[], &[("a", "1")]), Some(set(&[("a", "1")])));
}

// ---- regex semantics ----

#[test]
fn regex_is_fully_anchored() {
    let r = rules("[[r]]\nsource_labels = ['a']\nregex = 'a'\naction = 'keep'");
    assert!(run(&r, &[("a", "a")]).is_some());
    assert!(run(&r, &[("a", "ba")]).is_none());
    assert!(run(&r, &[("a", "ab")]).is_none());
}

#[test]
fn alternation_is_anchored_as_a_whole() {
    // `^(?s:f|o)$`: "foo" matches neither branch completely.
    let r = rules("[[r]]\nsource_labels = ['a']\nregex = 'f|o'\naction = 'drop'");
    assert!(run(&r, &[("a", "foo")]).is_some());
    assert!(run(&r, &[("a", "o")]).is_none());
}

#[test]
fn dot_matches_newline() {
    let r = rules(
        "[[r]]\nsource_labels = ['a']\nregex = 'line1.*line2'\ntarget_label = 'd'\n\
         replacement = 'match${1}'",
    );
    let out = run(&r, &[("a", "line1\nline2")]).unwrap();
    assert_eq!(out.get("d"), Some("match"));
}

#[test]
fn perl_classes_follow_re2() {
    let r = rules(
        r"[[r]]
source_labels = ['a']
regex = '\d+'
action = 'keep'",
    );
    assert!(run(&r, &[("a", "123")]).is_some());
    assert!(run(&r, &[("a", "١٢٣")]).is_none());
}

#[test]
fn invalid_regex_is_reported() {
    let e = compile_err("[[r]]\nregex = '(abc'");
    assert_eq!(e.key(), "regex");
    assert!(e.to_string().contains("(abc"), "{e}");
    let e = compile_err(
        r"[[r]]
regex = '(a)\1'",
    );
    assert_eq!(e.key(), "regex");
    assert!(e.to_string().contains("backreference"), "{e}");
}

// ---- replace ----

#[test]
fn replace_with_captures() {
    let r = rules(
        "[[r]]\nsource_labels = ['a', 'b']\nregex = 'f(.*);(.*)r'\ntarget_label = 'a'\n\
         replacement = 'b${1}${2}m'\n\
         [[r]]\nsource_labels = ['c', 'a']\nregex = '(b).*b(.*)ba(.*)'\ntarget_label = 'd'\n\
         replacement = '$1$2$2$3'",
    );
    let out = run(&r, &[("a", "foo"), ("b", "bar"), ("c", "baz")]).unwrap();
    assert_eq!(
        out,
        set(&[("a", "boobam"), ("b", "bar"), ("c", "baz"), ("d", "boooom")])
    );
}

#[test]
fn replace_without_match_is_noop() {
    let r =
        rules("[[r]]\nsource_labels = ['a']\nregex = 'f'\ntarget_label = 'b'\nreplacement = 'bar'");
    assert_eq!(run(&r, &[("a", "boo")]), Some(set(&[("a", "boo")])));
}

#[test]
fn replace_sets_static_label_without_sources() {
    let r = rules("[[r]]\ntarget_label = 'env'\nreplacement = 'prod'");
    assert_eq!(
        run(&r, &[("a", "1")]),
        Some(set(&[("a", "1"), ("env", "prod")]))
    );
}

#[test]
fn replace_empty_replacement_deletes_target() {
    let r = rules("[[r]]\ntarget_label = 'env'\nreplacement = ''");
    assert_eq!(
        run(&r, &[("a", "1"), ("env", "x")]),
        Some(set(&[("a", "1")]))
    );
}

#[test]
fn replace_expanding_to_empty_deletes_target() {
    // `$2` does not exist in the regex, so the replacement is "" and `f` is deleted.
    let r = rules(
        "[[r]]\nsource_labels = ['a']\nregex = '(f).*'\ntarget_label = '$1'\nreplacement = '$2'",
    );
    assert_eq!(
        run(&r, &[("a", "foo"), ("f", "baz")]),
        Some(set(&[("a", "foo")]))
    );
}

#[test]
fn replace_target_from_captures() {
    let r = rules(
        "[[r]]\nsource_labels = ['a']\nregex = 'some-([^-]+)-([^,]+)'\n\
         target_label = '${1}'\nreplacement = '${2}'",
    );
    assert_eq!(
        run(&r, &[("a", "some-name-value")]),
        Some(set(&[("a", "some-name-value"), ("name", "value")]))
    );
}

#[test]
fn replace_target_expanding_to_empty_is_noop() {
    // `${3}` is out of range: the target name is "", which no scheme accepts.
    let r = rules(
        "[[r]]\nsource_labels = ['a']\nregex = 'some-([^-]+)-([^,]+)'\n\
         target_label = '${3}'\nreplacement = '${1}'",
    );
    let input = [("a", "some-name-value")];
    assert_eq!(run(&r, &input), Some(set(&input)));
}

#[test]
fn replace_target_invalid_under_legacy_is_noop() {
    let src = "[[r]]\nsource_labels = ['a']\nregex = '(.*)'\ntarget_label = 'x_$1'\n\
               replacement = 'v'";
    let input = [("a", "b.c")];
    // UTF-8: "x_b.c" is a fine name.
    assert_eq!(run(&rules(src), &input).unwrap().get("x_b.c"), Some("v"));
    // Legacy: the expanded name is invalid, so nothing happens.
    assert_eq!(run(&legacy_rules(src), &input), Some(set(&input)));
    // Legacy, valid expansion.
    let out = run(&legacy_rules(src), &[("a", "bc")]).unwrap();
    assert_eq!(out.get("x_bc"), Some("v"));
}

#[test]
fn replace_named_groups_both_spellings() {
    let r = rules(
        "[[r]]\nsource_labels = ['a']\nregex = '(line1).*(?<second>line2)'\n\
         target_label = 'label1_${1}'\nreplacement = 'val_${second}'\n\
         [[r]]\nsource_labels = ['a']\nregex = '(line1).*(?<second>line2)'\n\
         target_label = 'label2_$1'\nreplacement = 'val_$second'",
    );
    let out = run(&r, &[("a", "line1\nline2")]).unwrap();
    assert_eq!(out.get("label1_line1"), Some("val_line2"));
    assert_eq!(out.get("label2_line1"), Some("val_line2"));
}

#[test]
fn dollar_one_x_names_a_missing_group() {
    // Go reads `$1x` as the group named `1x`, which does not exist: the replacement is
    // "" and the target is deleted. `${1}x` is group 1 followed by `x`.
    let r = rules(
        "[[r]]\nsource_labels = ['a']\nregex = '(.*)'\ntarget_label = 'b'\nreplacement = '$1x'\n\
         [[r]]\nsource_labels = ['a']\nregex = '(.*)'\ntarget_label = 'c'\nreplacement = '${1}x'",
    );
    let out = run(&r, &[("a", "v"), ("b", "old")]).unwrap();
    assert_eq!(out, set(&[("a", "v"), ("c", "vx")]));
}

#[test]
fn double_dollar_is_literal() {
    let r = rules(
        "[[r]]\nsource_labels = ['a']\nregex = '(.*)'\ntarget_label = 'b'\n\
         replacement = 'cost: $$$1'",
    );
    assert_eq!(run(&r, &[("a", "5")]).unwrap().get("b"), Some("cost: $5"));
}

#[test]
fn missing_source_labels_read_as_empty() {
    let r = rules(
        "[[r]]\nsource_labels = ['missing', 'a', 'gone']\nregex = ';(.*);'\n\
         target_label = 'b'",
    );
    assert_eq!(run(&r, &[("a", "x")]).unwrap().get("b"), Some("x"));
    // All sources missing: the value is "" and `(.*)` captures "", deleting the target.
    let r = rules("[[r]]\nsource_labels = ['missing']\ntarget_label = 'b'");
    assert_eq!(run(&r, &[("b", "x")]), Some(LabelSet::new()));
}

#[test]
fn replace_handles_multibyte_values() {
    let r = rules(
        "[[r]]\nsource_labels = ['a']\nregex = '(.)(.*)'\ntarget_label = 'b'\n\
         replacement = '$2$1'",
    );
    assert_eq!(run(&r, &[("a", "été")]).unwrap().get("b"), Some("téé"));
}

#[test]
fn replace_from_service_discovery_tags() {
    let r = rules(
        "[[r]]\nsource_labels = ['__meta_sd_tags']\nregex = '(?:.+,|^)path:(/[^,]+).*'\n\
         target_label = '__metrics_path__'\nreplacement = '${1}'\n\
         [[r]]\nsource_labels = ['__meta_sd_tags']\nregex = '(?:.+,|^)job:([^,]+).*'\n\
         target_label = 'job'\nreplacement = '${1}'\n\
         [[r]]\nsource_labels = ['__meta_sd_tags']\n\
         regex = '(?:.+,|^)label:([^=]+)=([^,]+).*'\ntarget_label = '${1}'\n\
         replacement = '${2}'",
    );
    let tags = "path:/secret,job:some-job,label:foo=bar";
    let out = run(&r, &[("__meta_sd_tags", tags)]).unwrap();
    assert_eq!(
        out,
        set(&[
            ("__meta_sd_tags", tags),
            ("__metrics_path__", "/secret"),
            ("job", "some-job"),
            ("foo", "bar"),
        ])
    );
}

// ---- keep / drop ----

#[test]
fn keep_and_drop() {
    let keep = rules("[[r]]\nsource_labels = ['a']\nregex = 'f.*'\naction = 'keep'");
    assert!(run(&keep, &[("a", "foo")]).is_some());
    assert!(run(&keep, &[("a", "boo")]).is_none());
    let drop = rules("[[r]]\nsource_labels = ['a']\nregex = '.*o.*'\naction = 'drop'");
    assert!(run(&drop, &[("a", "foo")]).is_none());
    assert!(run(&drop, &[("a", "bar")]).is_some());
}

#[test]
fn keep_on_missing_label_matches_empty() {
    let r = rules("[[r]]\nsource_labels = ['x']\nregex = ''\naction = 'keep'");
    assert!(run(&r, &[("a", "1")]).is_some());
    assert!(run(&r, &[("x", "1")]).is_none());
}

#[test]
fn first_drop_stops_processing() {
    let r = rules(
        "[[r]]\nsource_labels = ['a']\nregex = '.*o.*'\naction = 'drop'\n\
         [[r]]\ntarget_label = 'later'\nreplacement = 'ran'",
    );
    let mut labels = set(&[("a", "foo")]);
    assert!(!process(&r, &mut labels));
    assert_eq!(labels.get("later"), None, "rules after a drop must not run");
}

// ---- keepequal / dropequal ----

#[test]
fn keepequal_and_dropequal() {
    let input = [
        ("__tmp_port", "1234"),
        ("__port1", "1234"),
        ("__port2", "5678"),
    ];
    let rule = |action: &str, target: &str| {
        rules(&format!(
            "[[r]]\nsource_labels = ['__tmp_port']\naction = '{action}'\ntarget_label = '{target}'"
        ))
    };
    assert_eq!(
        run(&rule("keepequal", "__port1"), &input),
        Some(set(&input))
    );
    assert!(run(&rule("dropequal", "__port1"), &input).is_none());
    assert_eq!(
        run(&rule("dropequal", "__port2"), &input),
        Some(set(&input))
    );
    assert!(run(&rule("keepequal", "__port2"), &input).is_none());
}

#[test]
fn keepequal_treats_missing_as_empty() {
    let r = rules("[[r]]\nsource_labels = ['nope']\naction = 'keepequal'\ntarget_label = 'gone'");
    assert!(run(&r, &[("a", "1")]).is_some());
}

// ---- hashmod ----

/// Expected buckets computed independently with Python:
/// `int.from_bytes(hashlib.md5(s.encode()).digest()[8:16], "big") % m`.
#[test]
fn hashmod_exact_buckets() {
    // (input labels, source_labels, modulus, expected bucket)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], u64, &'a str);
    let cases: [Case; 5] = [
        (&[("c", "baz")], &["c"], 1000, "976"),
        (&[("a", "foo\nbar")], &["a"], 1000, "734"),
        (&[("x", "1")], &["missing"], 8, "6"), // md5("")
        (&[("a", "a"), ("b", "b")], &["a", "b"], 1000, "74"), // md5("a;b")
        (&[("a", "x")], &["a"], u64::MAX, "17710500428000290726"),
    ];
    for (input, sources, modulus, want) in cases {
        let cfg = RelabelConfig {
            source_labels: Some(sources.iter().map(|s| s.to_string()).collect()),
            modulus: Some(modulus),
            target_label: Some("shard".into()),
            action: Some("hashmod".into()),
            ..Default::default()
        };
        let r = [Rule::compile(&cfg).unwrap()];
        let out = run(&r, input).unwrap();
        assert_eq!(out.get("shard"), Some(want), "{input:?} mod {modulus}");
    }
}

#[test]
fn decimal_formatting() {
    for n in [0, 7, 10, 976, u64::MAX] {
        let mut s = String::from("x");
        push_decimal(&mut s, n);
        assert_eq!(s, format!("x{n}"));
    }
}

#[test]
fn hashmod_ignores_regex_and_overwrites_target() {
    let r = rules(
        "[[r]]\nsource_labels = ['a']\nregex = 'never'\nmodulus = 4\ntarget_label = 'a'\n\
         action = 'hashmod'",
    );
    // md5("10.0.0.1:9100") tail % 4 == 1 (Python, as above).
    let out = run(&r, &[("a", "10.0.0.1:9100")]).unwrap();
    assert_eq!(out.get("a"), Some("1"));
}

// ---- labelmap / labeldrop / labelkeep ----

#[test]
fn labelmap_copies_matching_names() {
    let r = rules("[[r]]\nregex = '(b.*)'\nreplacement = 'bar_${1}'\naction = 'labelmap'");
    assert_eq!(
        run(&r, &[("a", "foo"), ("b1", "bar"), ("b2", "baz")]),
        Some(set(&[
            ("a", "foo"),
            ("b1", "bar"),
            ("b2", "baz"),
            ("bar_b1", "bar"),
            ("bar_b2", "baz"),
        ]))
    );
}

#[test]
fn labelmap_meta_labels_and_overwrite() {
    let r = rules("[[r]]\nregex = '__meta_(my.*)'\nreplacement = '${1}'\naction = 'labelmap'");
    let out = run(
        &r,
        &[
            ("a", "foo"),
            ("__meta_my_bar", "aaa"),
            ("__meta_my_baz", "bbb"),
            ("my_baz", "old"),
        ],
    )
    .unwrap();
    assert_eq!(out.get("my_bar"), Some("aaa"));
    assert_eq!(out.get("my_baz"), Some("bbb"));
    assert_eq!(out.get("__meta_my_bar"), Some("aaa"), "originals stay");
}

#[test]
fn labelmap_reads_a_snapshot() {
    // a→b and b→c in one rule: c must get b's value from before the rule ran.
    let r = rules("[[r]]\nregex = '([ab])'\nreplacement = 'x${1}'\naction = 'labelmap'");
    let out = run(&r, &[("a", "1"), ("b", "2")]).unwrap();
    assert_eq!(
        out,
        set(&[("a", "1"), ("b", "2"), ("xa", "1"), ("xb", "2")])
    );
    let r = rules(
        "[[r]]\nregex = 'a'\nreplacement = 'b'\naction = 'labelmap'\n\
         [[r]]\nregex = 'b'\nreplacement = 'c'\naction = 'labelmap'",
    );
    let out = run(&r, &[("a", "1"), ("b", "2")]).unwrap();
    assert_eq!(out, set(&[("a", "1"), ("b", "1"), ("c", "1")]));
}

#[test]
fn labelmap_skips_names_invalid_under_legacy() {
    let src = "[[r]]\nregex = '__meta_(.+)'\naction = 'labelmap'";
    let input = [("__meta_a.b", "1"), ("__meta_ok", "2")];
    let out = run(&legacy_rules(src), &input).unwrap();
    assert_eq!(out.get("a.b"), None);
    assert_eq!(out.get("ok"), Some("2"));
    assert_eq!(run(&rules(src), &input).unwrap().get("a.b"), Some("1"));
}

#[test]
fn labeldrop_and_labelkeep() {
    let input = [("a", "foo"), ("b1", "bar"), ("b2", "baz")];
    let keep = rules("[[r]]\nregex = '(b.*)'\naction = 'labelkeep'");
    assert_eq!(
        run(&keep, &input),
        Some(set(&[("b1", "bar"), ("b2", "baz")]))
    );
    let drop = rules("[[r]]\nregex = '(b.*)'\naction = 'labeldrop'");
    assert_eq!(run(&drop, &input), Some(set(&[("a", "foo")])));
}

#[test]
fn labeldrop_is_anchored() {
    let r = rules("[[r]]\nregex = 'b'\naction = 'labeldrop'");
    assert_eq!(
        run(&r, &[("ab", "1"), ("b", "2"), ("bc", "3")]),
        Some(set(&[("ab", "1"), ("bc", "3")]))
    );
}

#[test]
fn labeldrop_then_replace_recreates() {
    let r = rules(
        "[[r]]\nregex = '__meta_kubernetes_pod_container_port_name'\naction = 'labeldrop'\n\
         [[r]]\nsource_labels = ['__meta_kubernetes_pod_annotation_XXX_metrics_port']\n\
         regex = '(.+)'\nreplacement = 'metrics'\n\
         target_label = '__meta_kubernetes_pod_container_port_name'\n\
         [[r]]\nsource_labels = ['__meta_kubernetes_pod_container_port_name']\n\
         regex = '^metrics$'\naction = 'keep'",
    );
    let out = run(
        &r,
        &[
            ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
            ("__meta_kubernetes_pod_container_port_name", "foo"),
        ],
    )
    .unwrap();
    assert_eq!(
        out.get("__meta_kubernetes_pod_container_port_name"),
        Some("metrics")
    );
}

// ---- lowercase / uppercase ----

#[test]
fn lowercase_and_uppercase() {
    let r = rules(
        "[[r]]\nsource_labels = ['foo']\naction = 'uppercase'\ntarget_label = 'up'\n\
         [[r]]\nsource_labels = ['foo']\naction = 'lowercase'\ntarget_label = 'down'",
    );
    let out = run(&r, &[("foo", "bAr123bAZ")]).unwrap();
    assert_eq!(out.get("up"), Some("BAR123BAZ"));
    assert_eq!(out.get("down"), Some("bar123baz"));
}

fn go_to_upper(s: &str) -> String {
    let mut out = String::new();
    go_to_upper_into(s, &mut out);
    out
}

#[test]
fn case_mapping_is_per_character_like_go() {
    // Go maps rune by rune with simple mappings: no final-sigma rule, ß keeps its case,
    // and İ lowercases to a plain i.
    assert_eq!(go_to_lower("ΟΔΟΣ"), "οδοσ");
    assert_eq!(go_to_upper("straße"), "STRAßE");
    assert_eq!(go_to_lower("İSTANBUL"), "istanbul");
    assert_eq!(go_to_upper("ᾳ"), "ᾼ");
    assert_eq!(go_to_upper("ﬀ"), "ﬀ");
    assert_eq!(go_to_lower("ÀÉÎ"), "àéî");
}

#[test]
fn lowercase_of_empty_value_deletes_target() {
    let r = rules("[[r]]\nsource_labels = ['missing']\naction = 'lowercase'\ntarget_label = 't'");
    assert_eq!(run(&r, &[("t", "X")]), Some(LabelSet::new()));
}

// ---- validation ----

#[test]
fn unknown_action() {
    let e = compile_err("[[r]]\naction = 'replace_all'");
    assert_eq!(e.key(), "action");
    assert!(e.to_string().contains("replace_all"), "{e}");
    assert_eq!(compile_err("[[r]]\naction = ''").key(), "action");
}

#[test]
fn target_label_required() {
    for action in [
        "replace",
        "hashmod",
        "lowercase",
        "uppercase",
        "keepequal",
        "dropequal",
    ] {
        let e = compile_err(&format!("[[r]]\naction = '{action}'\nmodulus = 2"));
        assert!(
            matches!(e, RelabelError::MissingTargetLabel { .. }),
            "{action}: {e:?}"
        );
        assert_eq!(e.key(), "target_label");
        assert!(e.to_string().contains(action), "{e}");
    }
    // An explicit empty string counts as missing.
    let e = compile_err("[[r]]\ntarget_label = ''");
    assert!(matches!(e, RelabelError::MissingTargetLabel { .. }));
}

#[test]
fn hashmod_requires_positive_modulus() {
    let e = compile_err("[[r]]\naction = 'hashmod'\ntarget_label = 't'");
    assert!(matches!(e, RelabelError::ZeroModulus));
    assert_eq!(e.key(), "modulus");
    let e = compile_err("[[r]]\naction = 'hashmod'\ntarget_label = 't'\nmodulus = 0");
    assert_eq!(e.key(), "modulus");
}

#[test]
fn replace_target_validation() {
    // UTF-8: any non-empty name, with or without references.
    for ok in ["a-b", "0${3}", "-${3}", "utf-8.label${1}", "${1}"] {
        let cfg = RelabelConfig {
            target_label: Some(ok.into()),
            ..Default::default()
        };
        assert!(Rule::compile(&cfg).is_ok(), "{ok}");
    }
    // Legacy: name characters and references only, not starting with a digit.
    for bad in ["a-b", "1abc", "0${3}", "a$", "a${b", "a.$1", "$-"] {
        let e = compile_err_with(
            &format!("[[r]]\ntarget_label = '{bad}'"),
            NameValidation::Legacy,
        );
        assert!(
            matches!(e, RelabelError::InvalidTargetLabel { .. }),
            "{bad}: {e:?}"
        );
        assert_eq!(e.key(), "target_label");
    }
    for ok in ["abc", "${1}", "x_$1", "$1_${name}9", "_0"] {
        let cfg = RelabelConfig {
            target_label: Some(ok.into()),
            ..Default::default()
        };
        assert!(
            Rule::compile_with(&cfg, NameValidation::Legacy).is_ok(),
            "{ok}"
        );
    }
}

#[test]
fn literal_targets_must_be_names() {
    for action in [
        "lowercase",
        "uppercase",
        "keepequal",
        "dropequal",
        "hashmod",
    ] {
        let e = compile_err_with(
            &format!("[[r]]\naction = '{action}'\ntarget_label = '${{3}}'\nmodulus = 2"),
            NameValidation::Legacy,
        );
        assert!(
            matches!(e, RelabelError::InvalidTargetLabel { .. }),
            "{action}: {e:?}"
        );
        assert!(e.to_string().contains("${3}"), "{e}");
    }
    // Under UTF-8 `${3}` is a legal (literal) name for these actions.
    let r = rules("[[r]]\naction = 'lowercase'\nsource_labels = ['a']\ntarget_label = '${3}'");
    assert_eq!(run(&r, &[("a", "X")]).unwrap().get("${3}"), Some("x"));
}

#[test]
fn replacement_not_allowed_for_case_and_equal_actions() {
    for action in ["lowercase", "uppercase", "keepequal", "dropequal"] {
        let e = compile_err(&format!(
            "[[r]]\naction = '{action}'\ntarget_label = 't'\nreplacement = 'x'"
        ));
        assert!(
            matches!(e, RelabelError::ReplacementNotAllowed { .. }),
            "{action}: {e:?}"
        );
        assert_eq!(e.key(), "replacement");
    }
    // The default spelled out is accepted.
    let cfg = RelabelConfig {
        action: Some("lowercase".into()),
        target_label: Some("t".into()),
        replacement: Some("$1".into()),
        ..Default::default()
    };
    assert!(Rule::compile(&cfg).is_ok());
}

#[test]
fn equal_actions_take_only_sources_and_target() {
    for (extra, key) in [
        ("regex = '(.*)'", "regex"),
        ("modulus = 3", "modulus"),
        ("separator = ','", "separator"),
    ] {
        let e = compile_err(&format!(
            "[[r]]\naction = 'keepequal'\ntarget_label = 't'\n{extra}"
        ));
        assert!(
            matches!(e, RelabelError::OnlySourceAndTarget { .. }),
            "{extra}: {e:?}"
        );
        assert_eq!(e.key(), key);
    }
    assert!(Rule::compile(&RelabelConfig {
        action: Some("dropequal".into()),
        target_label: Some("t".into()),
        separator: Some(";".into()),
        modulus: Some(0),
        ..Default::default()
    })
    .is_ok());
}

#[test]
fn labeldrop_and_labelkeep_take_only_regex() {
    for action in ["labeldrop", "labelkeep"] {
        for (extra, key) in [
            ("source_labels = []", "source_labels"),
            ("target_label = 't'", "target_label"),
            ("modulus = 3", "modulus"),
            ("separator = ','", "separator"),
            ("replacement = 'x'", "replacement"),
        ] {
            let e = compile_err(&format!("[[r]]\naction = '{action}'\n{extra}"));
            assert!(
                matches!(e, RelabelError::OnlyRegex { .. }),
                "{extra}: {e:?}"
            );
            assert_eq!(e.key(), key, "{action} {extra}");
            assert!(e.to_string().contains(key), "{e}");
        }
        let ok = format!(
            "[[r]]\naction = '{action}'\nregex = 'x'\nseparator = ';'\nreplacement = '$1'\n\
             target_label = ''\nmodulus = 0"
        );
        assert!(Rule::compile(&configs(&ok)[0]).is_ok());
    }
}

#[test]
fn labelmap_replacement_validation() {
    let e = compile_err("[[r]]\naction = 'labelmap'\nreplacement = ''");
    assert!(matches!(e, RelabelError::InvalidReplacement { .. }));
    assert_eq!(e.key(), "replacement");
    let e = compile_err_with(
        "[[r]]\naction = 'labelmap'\nreplacement = 'a-$1'",
        NameValidation::Legacy,
    );
    assert!(matches!(e, RelabelError::InvalidReplacement { .. }));
    // Prometheus's own examples stay valid under both schemes.
    for scheme in [NameValidation::Utf8, NameValidation::Legacy] {
        let cfg = &configs(
            "[[r]]\naction = 'labelmap'\nregex = '__meta_kubernetes_pod_label_(strimzi_io_.+)'\n\
             replacement = '$1'",
        )[0];
        assert!(Rule::compile_with(cfg, scheme).is_ok());
    }
}

#[test]
fn source_label_names_are_validated() {
    let e = compile_err("[[r]]\nsource_labels = ['a', '']\ntarget_label = 't'");
    assert!(matches!(e, RelabelError::InvalidSourceLabel { .. }));
    assert_eq!(e.key(), "source_labels");
    let e = compile_err_with(
        "[[r]]\nsource_labels = ['utf-8.label']\ntarget_label = 't'",
        NameValidation::Legacy,
    );
    assert!(e.to_string().contains("utf-8.label"), "{e}");
    // UTF-8 accepts it, and reads it.
    let r = rules("[[r]]\nsource_labels = ['utf-8.label']\ntarget_label = 'd'");
    assert_eq!(
        run(&r, &[("utf-8.label", "v")]).unwrap().get("d"),
        Some("v")
    );
}

#[test]
fn legacy_name_template_matches_prometheus_pattern() {
    for ok in [
        "a", "_", "a1", "$1", "${1}", "$a$b", "a${b}c", "${x}9", "$1_2",
    ] {
        assert!(is_legacy_name_template(ok), "{ok}");
    }
    for bad in ["", "1", "9a", "$", "${}", "${a", "a-b", "$$", "a$-", "é"] {
        assert!(!is_legacy_name_template(bad), "{bad}");
    }
}

// ---- processing machinery ----

#[test]
fn arbitrary_patterns_and_templates_never_panic() {
    // A fixed xorshift stream over the characters that drive the RE2 translation and
    // template parsing, including multi-byte ones next to escapes.
    const ALPHABET: &[char] = &[
        '\\', '[', ']', '{', '}', '(', ')', '-', '^', '$', '.', '*', '+', '?', '|', ':', '&', '~',
        '<', '>', 'p', 'P', 'x', 'Q', 'E', 'd', 'w', 'b', '0', '1', '7', '9', ',', 'a', 'é', '世',
        '_',
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3_000 {
        let len = (next() % 12) as usize;
        let text: String = (0..len)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect();
        let cfg = RelabelConfig {
            source_labels: Some(vec!["a".into()]),
            regex: Some(text.clone()),
            target_label: Some(format!("t{text}")),
            replacement: Some(text.clone()),
            ..Default::default()
        };
        if let Ok(rule) = Rule::compile(&cfg) {
            let mut labels = set(&[("a", &text), ("b", "é")]);
            process(&[rule], &mut labels);
        }
        let map = RelabelConfig {
            regex: Some("(.)(.*)".into()),
            replacement: Some(text.clone()),
            action: Some("labelmap".into()),
            ..Default::default()
        };
        if let Ok(rule) = Rule::compile(&map) {
            let mut labels = set(&[("é1", "x"), ("b", "y")]);
            process(&[rule], &mut labels);
        }
    }
}

#[test]
fn validation_scheme_names() {
    assert_eq!(NameValidation::parse(""), Some(NameValidation::Utf8));
    assert_eq!(NameValidation::parse("utf8"), Some(NameValidation::Utf8));
    assert_eq!(
        NameValidation::parse("legacy"),
        Some(NameValidation::Legacy)
    );
    assert_eq!(NameValidation::parse("UTF8"), None);
    assert_eq!(NameValidation::default(), NameValidation::Utf8);
}

#[test]
fn match_all_shortcuts_agree_with_the_regex_engine() {
    // `((?:.*))` is the same language and group 1 as `(.*)` but is not recognised as a
    // shortcut, so it runs through the regex engine.
    for (short, long) in [
        ("(.*)", "((?:.*))"),
        ("(.+)", "((?:.+))"),
        (".*", "(?:.*)"),
        (".+", "(?:.+)"),
    ] {
        for value in ["", "a", "a\nb", "é;x"] {
            for action in [
                "replace",
                "keep",
                "drop",
                "labelmap",
                "labeldrop",
                "labelkeep",
            ] {
                let rule_for = |regex: &str| {
                    let mut c = RelabelConfig {
                        regex: Some(regex.into()),
                        action: Some(action.into()),
                        ..Default::default()
                    };
                    if !matches!(action, "labeldrop" | "labelkeep" | "labelmap") {
                        c.source_labels = Some(vec!["src".into()]);
                    }
                    if action == "replace" {
                        c.target_label = Some("t_$1".into());
                        c.replacement = Some("<$0|$1>".into());
                    }
                    if action == "labelmap" {
                        c.replacement = Some("m_$1".into());
                    }
                    Rule::compile(&c).unwrap()
                };
                let (a, b) = (rule_for(short), rule_for(long));
                assert!(a.inner.shortcut.is_some() && b.inner.shortcut.is_none());
                let input = [("src", value), ("other", "1")];
                assert_eq!(
                    run(&[a], &input),
                    run(&[b], &input),
                    "{action} {short} on {value:?}"
                );
            }
        }
    }
}

#[test]
fn unchanged_writes_leave_the_set_alone() {
    let r = rules(
        "[[r]]\nsource_labels = ['method']\naction = 'lowercase'\ntarget_label = 'method'\n\
         [[r]]\nsource_labels = ['job']\ntarget_label = 'job'\n\
         [[r]]\nsource_labels = ['a']\nmodulus = 2\ntarget_label = 'h'\naction = 'hashmod'",
    );
    // md5("x") tail is even (17710500428000290726, see hashmod_exact_buckets), so h = 0.
    let input = [("method", "get"), ("job", "j"), ("a", "x"), ("h", "0")];
    assert_eq!(run(&r, &input), Some(set(&input)));
    let out = run(&r, &[("method", "GET"), ("job", "j"), ("a", "x")]).unwrap();
    assert_eq!(out, set(&input));
}

#[test]
fn rules_can_be_shared_between_workers() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Rule>();
    shareable::<RelabelError>();
}

#[test]
fn rule_clones_share_the_compiled_form() {
    let r = rules("[[r]]\naction = 'drop'\nsource_labels = ['a']")
        .pop()
        .unwrap();
    let c = r.clone();
    assert!(Arc::ptr_eq(&r.inner, &c.inner));
    assert_eq!(c.action(), Action::Drop);
}

#[test]
fn huge_joined_values_work_and_release_scratch() {
    let big = "x".repeat(200_000);
    let r = rules("[[r]]\nsource_labels = ['a', 'b']\nregex = 'x+;(y)'\ntarget_label = 'c'");
    let out = run(&r, &[("a", &big), ("b", "y")]).unwrap();
    assert_eq!(out.get("c"), Some("y"));
    SCRATCH.with(|s| assert!(s.borrow().value.capacity() <= SCRATCH_KEEP_BYTES));
    // And the next call still works on the fresh buffer.
    let out = run(&r, &[("a", "xx"), ("b", "y")]).unwrap();
    assert_eq!(out.get("c"), Some("y"));
}

#[test]
fn works_from_many_threads() {
    let r = rules(
        "[[r]]\nsource_labels = ['a', 'b']\nregex = '(.*);(.*)'\ntarget_label = 'c'\n\
         replacement = '$2-$1'",
    );
    std::thread::scope(|s| {
        for t in 0..4 {
            let r = &r;
            s.spawn(move || {
                for i in 0..200 {
                    let (a, b) = (format!("a{t}"), format!("b{i}"));
                    let out = run(r, &[("a", &a), ("b", &b)]).unwrap();
                    assert_eq!(out.get("c"), Some(format!("{b}-{a}").as_str()));
                }
            });
        }
    });
}

#[test]
fn realistic_target_pipeline() {
    let r = rules(
        r#"
[[r]]
source_labels = ['__meta_kubernetes_pod_annotation_prometheus_io_scrape']
regex = 'true'
action = 'keep'
[[r]]
source_labels = ['__address__', '__meta_kubernetes_pod_annotation_prometheus_io_port']
regex = '([^:]+)(?::\d+)?;(\d+)'
replacement = '$1:$2'
target_label = '__address__'
[[r]]
regex = '__meta_kubernetes_pod_label_(.+)'
action = 'labelmap'
[[r]]
source_labels = ['__meta_kubernetes_namespace']
target_label = 'namespace'
[[r]]
source_labels = ['__address__']
modulus = 4
target_label = '__tmp_shard'
action = 'hashmod'
"#,
    );
    let input = [
        ("__address__", "10.0.0.1:8080"),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
            "true",
        ),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_port",
            "9100",
        ),
        ("__meta_kubernetes_pod_label_app", "web"),
        ("__meta_kubernetes_namespace", "prod"),
        ("job", "pods"),
    ];
    let out = run(&r, &input).unwrap();
    assert_eq!(out.get("__address__"), Some("10.0.0.1:9100"));
    assert_eq!(out.get("app"), Some("web"));
    assert_eq!(out.get("namespace"), Some("prod"));
    // md5("10.0.0.1:9100") tail % 4 == 1 (Python, see hashmod_exact_buckets).
    assert_eq!(out.get("__tmp_shard"), Some("1"));
    let mut dropped = input;
    dropped[1].1 = "false";
    assert!(run(&r, &dropped).is_none());
}
