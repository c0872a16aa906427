//! Relabeling: Prometheus `relabel_configs` / `metric_relabel_configs` /
//! `write_relabel_configs` semantics (model/relabel in Prometheus 3.x).
//!
//! Owns: the raw rule as written in the config file ([`RelabelConfig`]), its validation
//! and compilation into a [`Rule`], and [`process`], which runs a rule list over one
//! [`LabelSet`] in place.
//!
//! Inputs: raw configs (from `config`) at load time; label sets at run time — a target's
//! discovered labels on every discovery sync, and a series' labels whenever the worker
//! misses its metric-relabel cache. Output: the mutated set and whether it survived.
//!
//! Must not: do I/O, log, or keep state between calls other than a per-thread scratch
//! buffer. It never panics on any input; every config problem is a [`RelabelError`] at
//! compile time, naming the offending key.
//!
//! Behaviour follows Prometheus rule for rule (see shared/reference/prometheus-scrape.md
//! §3): regexes are RE2, fully anchored, with `.` matching `\n`; the default action is
//! `replace` with regex `(.*)`, separator `;` and replacement `$1`; missing source labels
//! read as ""; setting a label to "" deletes it; the first drop ends processing.
//!
//! Label-name validation: [`Rule::compile`] uses Prometheus 3.x's default UTF-8 scheme
//! (any non-empty name is valid). [`Rule::compile_with`] takes a [`NameValidation`] so a
//! job that runs under `metric_name_validation_scheme = "legacy"` gets legacy checks both
//! at compile time and for names produced at run time by `replace` and `labelmap`.
//!
//! Deliberate differences from Prometheus, all in corner cases:
//! - `labelmap` skips a produced name that is invalid under the rule's scheme (as
//!   `replace` does) instead of writing it and failing the target or series later.
//! - `labelmap` reads a snapshot of the set in sorted name order; when two source labels
//!   map to the same name the later name wins. Prometheus iterates its builder's own
//!   order, which depends on earlier rules.
//! - Regex syntax the `regex` crate cannot mirror exactly is listed in `re2.rs`.
//!
//! Speed: `process` allocates only for labels it actually changes (a write of the value
//! a label already has is skipped), joins multi-label sources in a per-thread buffer,
//! and skips the regex engine for `(.*)` / `(.+)`, which most rules use. What remains is
//! the regex crate's capture search and `LabelSet` insertion.

mod re2;
mod template;

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use md5::{Digest, Md5};
use regex::{CaptureLocations, Regex, RegexBuilder};

use crate::labels::{is_legacy_label_name, LabelSet};
use template::{Groups, Template};

const DEFAULT_SEPARATOR: &str = ";";
const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_REPLACEMENT: &str = "$1";

/// One relabel rule exactly as written in the config file; every key is optional and the
/// defaults are applied by [`Rule::compile`].
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    pub source_labels: Option<Vec<String>>,
    pub separator: Option<String>,
    pub regex: Option<String>,
    pub modulus: Option<u64>,
    pub target_label: Option<String>,
    pub replacement: Option<String>,
    pub action: Option<String>,
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    const ALL: [Action; 11] = [
        Action::Replace,
        Action::Keep,
        Action::Drop,
        Action::KeepEqual,
        Action::DropEqual,
        Action::HashMod,
        Action::LabelMap,
        Action::LabelDrop,
        Action::LabelKeep,
        Action::Lowercase,
        Action::Uppercase,
    ];

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }

    /// Parses an action name case-insensitively, as Prometheus does (`strings.ToLower`,
    /// which is Unicode-aware, so even the Kelvin sign folds to `k`).
    pub fn parse(name: &str) -> Option<Action> {
        let lower = go_to_lower(name);
        Action::ALL.into_iter().find(|a| a.as_str() == lower)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which label names are acceptable (Prometheus `metric_name_validation_scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameValidation {
    /// Prometheus 3.x default: any non-empty UTF-8 string.
    #[default]
    Utf8,
    /// `[a-zA-Z_][a-zA-Z0-9_]*`.
    Legacy,
}

impl NameValidation {
    /// Parses Prometheus's `metric_name_validation_scheme` values; "" means unset, which
    /// is UTF-8.
    pub fn parse(name: &str) -> Option<NameValidation> {
        match name {
            "" | "utf8" => Some(NameValidation::Utf8),
            "legacy" => Some(NameValidation::Legacy),
            _ => None,
        }
    }

    /// True if `name` is a valid label name under this scheme.
    pub fn is_valid_label_name(self, name: &str) -> bool {
        match self {
            NameValidation::Utf8 => crate::labels::is_utf8_label_name(name),
            NameValidation::Legacy => is_legacy_label_name(name),
        }
    }

    /// True if `template` (a `replace` target_label or a `labelmap` replacement holding
    /// `$` references) is acceptable before expansion. Under the legacy scheme it must be
    /// legacy name characters and `$name` / `${name}` references, not starting with a
    /// digit; under UTF-8 any non-empty string.
    fn is_valid_name_template(self, template: &str) -> bool {
        match self {
            NameValidation::Utf8 => !template.is_empty(),
            NameValidation::Legacy => is_legacy_name_template(template),
        }
    }
}

/// Prometheus's `relabelTargetLegacy` pattern, by hand: a non-empty sequence of ASCII
/// word characters and `$word` / `${word}` references whose first item is not a digit.
fn is_legacy_name_template(s: &str) -> bool {
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'$' => {
                let braced = b.get(i + 1) == Some(&b'{');
                let start = if braced { i + 2 } else { i + 1 };
                let end = start
                    + b[start.min(b.len())..]
                        .iter()
                        .take_while(|c| word(c))
                        .count();
                if end == start {
                    return false;
                }
                i = end;
                if braced {
                    if b.get(i) != Some(&b'}') {
                        return false;
                    }
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => i += 1,
            c if c.is_ascii_digit() && i > 0 => i += 1,
            _ => return false,
        }
    }
    !b.is_empty()
}

/// Why a [`RelabelConfig`] does not compile.
#[derive(Debug, thiserror::Error)]
pub enum RelabelError {
    /// `action` is not one of the known actions.
    #[error("unknown relabel action {action:?}")]
    UnknownAction { action: String },
    /// The action writes a label, so `target_label` must be set.
    #[error("the {action} action requires a target_label")]
    MissingTargetLabel { action: Action },
    /// `target_label` is not a valid label name (or name template, for replace).
    #[error("{target:?} is not a valid target_label for the {action} action")]
    InvalidTargetLabel { action: Action, target: String },
    /// hashmod with no modulus or a modulus of 0.
    #[error("the hashmod action requires a modulus greater than 0")]
    ZeroModulus,
    /// lowercase, uppercase, keepequal and dropequal take no replacement.
    #[error("replacement cannot be set for the {action} action")]
    ReplacementNotAllowed { action: Action },
    /// The labelmap replacement cannot produce a valid label name.
    #[error("{replacement:?} is not a valid replacement for the {action} action")]
    InvalidReplacement { action: Action, replacement: String },
    /// keepequal / dropequal with a key other than source_labels and target_label.
    #[error("the {action} action takes only source_labels and target_label, but {key} is set")]
    OnlySourceAndTarget { action: Action, key: &'static str },
    /// labeldrop / labelkeep with a key other than regex.
    #[error("the {action} action takes only regex, but {key} is set")]
    OnlyRegex { action: Action, key: &'static str },
    /// A name in source_labels is not a valid label name.
    #[error("{name:?} in source_labels is not a valid label name")]
    InvalidSourceLabel { name: String },
    /// The regex does not compile.
    #[error("invalid regex {regex:?}: {reason}")]
    InvalidRegex { regex: String, reason: String },
}

impl RelabelError {
    /// The config key at fault, so the config loader can point at it.
    pub fn key(&self) -> &'static str {
        match self {
            RelabelError::UnknownAction { .. } => "action",
            RelabelError::MissingTargetLabel { .. } | RelabelError::InvalidTargetLabel { .. } => {
                "target_label"
            }
            RelabelError::ZeroModulus => "modulus",
            RelabelError::ReplacementNotAllowed { .. }
            | RelabelError::InvalidReplacement { .. } => "replacement",
            RelabelError::OnlySourceAndTarget { key, .. } | RelabelError::OnlyRegex { key, .. } => {
                key
            }
            RelabelError::InvalidSourceLabel { .. } => "source_labels",
            RelabelError::InvalidRegex { .. } => "regex",
        }
    }
}

/// A validated, compiled rule. Cloning is one reference-count increment.
#[derive(Debug, Clone)]
pub struct Rule {
    inner: Arc<Compiled>,
}

#[derive(Debug)]
struct Compiled {
    action: Action,
    source_labels: Box<[Box<str>]>,
    separator: Box<str>,
    /// Anchored: `^(?s:<regex>)$`.
    regex: Regex,
    /// Set when the regex is one whose outcome needs no regex engine.
    shortcut: Option<Shortcut>,
    modulus: u64,
    /// The label written by hashmod, lowercase, uppercase, or compared by keepequal /
    /// dropequal, taken literally.
    target_name: Box<str>,
    /// replace's target_label, which may hold `$` references.
    target: Template,
    replacement: Template,
    scheme: NameValidation,
}

/// Regexes that most rules use (the default `(.*)` above all) and whose outcome is known
/// without running a regex engine: anchored and with `.` matching newlines, `(.*)`
/// matches every value and `(.+)` every non-empty one, and in both the only groups, 0 and
/// 1, span the whole value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shortcut {
    Any,
    NonEmpty,
}

impl Shortcut {
    fn detect(pattern: &str) -> Option<Shortcut> {
        match pattern {
            "(.*)" | ".*" => Some(Shortcut::Any),
            "(.+)" | ".+" => Some(Shortcut::NonEmpty),
            _ => None,
        }
    }
}

/// Compiles `pattern` the way Prometheus does: RE2 syntax, anchored at both ends, `.`
/// matching newlines.
fn compile_regex(pattern: &str) -> Result<Regex, RelabelError> {
    let invalid = |reason: String| RelabelError::InvalidRegex {
        regex: pattern.to_owned(),
        reason,
    };
    let translated = re2::translate(pattern).map_err(invalid)?;
    RegexBuilder::new(&format!("^(?s:{translated})$"))
        .octal(true)
        .build()
        .map_err(|e| invalid(e.to_string()))
}

impl Rule {
    /// Validates and compiles `cfg` under the UTF-8 name scheme (the Prometheus 3.x
    /// default).
    pub fn compile(cfg: &RelabelConfig) -> Result<Rule, RelabelError> {
        Rule::compile_with(cfg, NameValidation::Utf8)
    }

    /// Validates and compiles `cfg`, checking label names under `scheme`.
    pub fn compile_with(cfg: &RelabelConfig, scheme: NameValidation) -> Result<Rule, RelabelError> {
        let action = match &cfg.action {
            None => Action::Replace,
            Some(name) => Action::parse(name).ok_or_else(|| RelabelError::UnknownAction {
                action: name.clone(),
            })?,
        };
        let source_labels = cfg.source_labels.as_deref().unwrap_or_default();
        if let Some(bad) = source_labels
            .iter()
            .find(|n| !scheme.is_valid_label_name(n))
        {
            return Err(RelabelError::InvalidSourceLabel { name: bad.clone() });
        }
        let separator = cfg.separator.as_deref().unwrap_or(DEFAULT_SEPARATOR);
        let pattern = cfg.regex.as_deref().unwrap_or(DEFAULT_REGEX);
        let regex = compile_regex(pattern)?;
        let modulus = cfg.modulus.unwrap_or(0);
        let target = cfg.target_label.as_deref().unwrap_or("");
        let replacement = cfg.replacement.as_deref().unwrap_or(DEFAULT_REPLACEMENT);

        validate(cfg, action, scheme, modulus, target, separator, replacement)?;

        Ok(Rule {
            inner: Arc::new(Compiled {
                action,
                source_labels: source_labels.iter().map(|s| s.as_str().into()).collect(),
                separator: separator.into(),
                target_name: target.into(),
                target: Template::parse(target, &regex),
                replacement: Template::parse(replacement, &regex),
                regex,
                shortcut: Shortcut::detect(pattern),
                modulus,
                scheme,
            }),
        })
    }

    /// What this rule does.
    pub fn action(&self) -> Action {
        self.inner.action
    }
}

/// Prometheus's `Config.Validate`, in its order, so the first error reported matches.
fn validate(
    cfg: &RelabelConfig,
    action: Action,
    scheme: NameValidation,
    modulus: u64,
    target: &str,
    separator: &str,
    replacement: &str,
) -> Result<(), RelabelError> {
    use Action::*;
    let invalid_target = || RelabelError::InvalidTargetLabel {
        action,
        target: target.to_owned(),
    };
    if action == HashMod && modulus == 0 {
        return Err(RelabelError::ZeroModulus);
    }
    let writes_label = matches!(
        action,
        Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
    );
    if writes_label && target.is_empty() {
        return Err(RelabelError::MissingTargetLabel { action });
    }
    if action == Replace {
        let valid = if target.contains('$') {
            scheme.is_valid_name_template(target)
        } else {
            scheme.is_valid_label_name(target)
        };
        if !valid {
            return Err(invalid_target());
        }
    }
    let literal_target = matches!(action, Lowercase | Uppercase | KeepEqual | DropEqual);
    if literal_target && !scheme.is_valid_label_name(target) {
        return Err(invalid_target());
    }
    if literal_target && replacement != DEFAULT_REPLACEMENT {
        return Err(RelabelError::ReplacementNotAllowed { action });
    }
    if action == LabelMap && !scheme.is_valid_name_template(replacement) {
        return Err(RelabelError::InvalidReplacement {
            action,
            replacement: replacement.to_owned(),
        });
    }
    if action == HashMod && !scheme.is_valid_label_name(target) {
        return Err(invalid_target());
    }
    if matches!(action, KeepEqual | DropEqual) {
        // Prometheus rejects any explicit regex here, even "(.*)".
        let extra = [
            ("regex", cfg.regex.is_some()),
            ("modulus", modulus != 0),
            ("separator", separator != DEFAULT_SEPARATOR),
        ];
        if let Some((key, _)) = extra.into_iter().find(|(_, set)| *set) {
            return Err(RelabelError::OnlySourceAndTarget { action, key });
        }
    }
    if matches!(action, LabelDrop | LabelKeep) {
        let extra = [
            ("source_labels", cfg.source_labels.is_some()),
            ("target_label", !target.is_empty()),
            ("modulus", modulus != 0),
            ("separator", separator != DEFAULT_SEPARATOR),
            ("replacement", replacement != DEFAULT_REPLACEMENT),
        ];
        if let Some((key, _)) = extra.into_iter().find(|(_, set)| *set) {
            return Err(RelabelError::OnlyRegex { action, key });
        }
    }
    Ok(())
}

/// Per-thread buffers reused across rules and calls, so the common paths allocate only
/// the label names and values they actually store.
#[derive(Default)]
struct Scratch {
    /// The joined source value when there is more than one source label.
    value: String,
    /// An expanded target name.
    target: String,
    /// A new label value before it is compared with the current one.
    out: String,
    /// labelmap's (new name, value) pairs, collected before the set is changed.
    mapped: Vec<(String, String)>,
}

/// Scratch buffers that grew past this are dropped after a call, so one huge label value
/// does not pin memory in every worker thread.
const SCRATCH_KEEP_BYTES: usize = 64 * 1024;

impl Scratch {
    fn trim(&mut self) {
        for buf in [&mut self.value, &mut self.target, &mut self.out] {
            if buf.capacity() > SCRATCH_KEEP_BYTES {
                *buf = String::new();
            }
        }
        if self.mapped.capacity() > 1024 {
            self.mapped = Vec::new();
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Applies `rules` to `labels` in order. Returns false as soon as a rule drops the set;
/// `labels` is then left as the rules before it made it, and callers discard it.
pub fn process(rules: &[Rule], labels: &mut LabelSet) -> bool {
    if rules.is_empty() {
        return true;
    }
    let run = |labels: &mut LabelSet, scratch: &mut Scratch| {
        let keep = rules.iter().all(|r| r.inner.apply(labels, scratch));
        scratch.trim();
        keep
    };
    // The thread-local is unavailable only during thread teardown or re-entry; fresh
    // buffers are correct there, just slower.
    SCRATCH
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => Some(run(labels, &mut scratch)),
            Err(_) => None,
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| run(labels, &mut Scratch::default()))
}

/// Writes `value` to `name`; "" deletes, as everywhere in relabeling. A write that would
/// not change the set costs nothing: rules that rewrite a label to the value it already
/// has (lowercasing a lowercase method, copying a label onto itself) are common.
fn write_label(labels: &mut LabelSet, name: &str, value: &str) {
    if value.is_empty() {
        labels.remove(name);
    } else if labels.get(name) != Some(value) {
        labels.set(name, value);
    }
}

impl Compiled {
    /// The source labels' values joined by the separator. A single source label is
    /// borrowed from the set, not copied.
    fn source_value<'a>(&self, labels: &'a LabelSet, buf: &'a mut String) -> &'a str {
        match &*self.source_labels {
            [] => "",
            [one] => labels.get_or_empty(one),
            many => {
                buf.clear();
                for (i, name) in many.iter().enumerate() {
                    if i > 0 {
                        buf.push_str(&self.separator);
                    }
                    buf.push_str(labels.get_or_empty(name));
                }
                buf
            }
        }
    }

    fn is_match(&self, s: &str) -> bool {
        match self.shortcut {
            Some(Shortcut::Any) => true,
            Some(Shortcut::NonEmpty) => !s.is_empty(),
            None => self.regex.is_match(s),
        }
    }

    /// Runs this rule; false means the set is dropped.
    fn apply(&self, labels: &mut LabelSet, scratch: &mut Scratch) -> bool {
        match self.action {
            Action::Keep => {
                let value = self.source_value(labels, &mut scratch.value);
                self.is_match(value)
            }
            Action::Drop => {
                let value = self.source_value(labels, &mut scratch.value);
                !self.is_match(value)
            }
            Action::KeepEqual | Action::DropEqual => {
                let value = self.source_value(labels, &mut scratch.value);
                let equal = labels.get_or_empty(&self.target_name) == value;
                equal == (self.action == Action::KeepEqual)
            }
            Action::Replace => {
                self.replace(labels, scratch);
                true
            }
            Action::Lowercase | Action::Uppercase => {
                let value = self.source_value(labels, &mut scratch.value);
                scratch.out.clear();
                if self.action == Action::Lowercase {
                    go_to_lower_into(value, &mut scratch.out);
                } else {
                    go_to_upper_into(value, &mut scratch.out);
                }
                write_label(labels, &self.target_name, &scratch.out);
                true
            }
            Action::HashMod => {
                let value = self.source_value(labels, &mut scratch.value);
                let bucket = hashmod(value, self.modulus);
                scratch.out.clear();
                push_decimal(&mut scratch.out, bucket);
                write_label(labels, &self.target_name, &scratch.out);
                true
            }
            Action::LabelMap => {
                self.labelmap(labels, scratch);
                true
            }
            Action::LabelDrop => {
                labels.retain(|l| !self.is_match(&l.name));
                true
            }
            Action::LabelKeep => {
                labels.retain(|l| self.is_match(&l.name));
                true
            }
        }
    }

    fn replace(&self, labels: &mut LabelSet, scratch: &mut Scratch) {
        let value = self.source_value(labels, &mut scratch.value);
        if let (Some(target), Some(replacement)) =
            (self.target.literal(), self.replacement.literal())
        {
            // Neither template uses a group: a plain match test is enough.
            if self.is_match(value) && self.scheme.is_valid_label_name(target) {
                write_label(labels, target, replacement);
            }
            return;
        }
        let locs;
        let groups = if self.shortcut.is_some() {
            if !self.is_match(value) {
                return;
            }
            Groups::Whole
        } else {
            let mut l = self.regex.capture_locations();
            if self.regex.captures_read(&mut l, value).is_none() {
                return;
            }
            locs = l;
            Groups::Locs(&locs)
        };
        let target = match self.target.literal() {
            Some(t) => t,
            None => {
                scratch.target.clear();
                self.target.expand_into(value, &groups, &mut scratch.target);
                &scratch.target
            }
        };
        if !self.scheme.is_valid_label_name(target) {
            return;
        }
        scratch.out.clear();
        self.replacement
            .expand_into(value, &groups, &mut scratch.out);
        write_label(labels, target, &scratch.out);
    }

    fn labelmap(&self, labels: &mut LabelSet, scratch: &mut Scratch) {
        scratch.mapped.clear();
        let mut locs: Option<CaptureLocations> = None;
        // Collect first: every mapping reads the set as it was before this rule.
        for l in labels.iter() {
            if !self.is_match(&l.name) {
                continue;
            }
            let name = match self.replacement.literal() {
                Some(lit) => lit.to_owned(),
                None if self.shortcut.is_some() => {
                    let mut name = String::new();
                    self.replacement
                        .expand_into(&l.name, &Groups::Whole, &mut name);
                    name
                }
                None => {
                    let locs = locs.get_or_insert_with(|| self.regex.capture_locations());
                    if self.regex.captures_read(locs, &l.name).is_none() {
                        continue;
                    }
                    let mut name = String::new();
                    self.replacement
                        .expand_into(&l.name, &Groups::Locs(locs), &mut name);
                    name
                }
            };
            if self.scheme.is_valid_label_name(&name) && labels.get(&name) != Some(l.value.as_str())
            {
                scratch.mapped.push((name, l.value.clone()));
            }
        }
        for (name, value) in scratch.mapped.drain(..) {
            labels.set(name, value);
        }
    }
}

/// Prometheus's hashmod: MD5 of the value, the digest's last 8 bytes as a big-endian
/// integer, modulo `modulus` (validated > 0).
fn hashmod(value: &str, modulus: u64) -> u64 {
    let digest = Md5::digest(value.as_bytes());
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&digest[8..16]);
    u64::from_be_bytes(tail) % modulus
}

/// Appends `n` in decimal, without going through `fmt`.
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

/// Go's `strings.ToLower`, appended to `out`: each character through its *simple* case
/// mapping, so the length in characters never changes (Rust's `str::to_lowercase` uses
/// full mappings and a context rule for final sigma).
fn go_to_lower_into(s: &str, out: &mut String) {
    if s.is_ascii() {
        out.push_str(s);
        out.make_ascii_lowercase();
        return;
    }
    out.extend(s.chars().map(|c| {
        let mut m = c.to_lowercase();
        match (m.next(), m.next()) {
            (Some(l), None) => l,
            // U+0130 is the only character whose full lowercase mapping is longer than
            // one character; its simple mapping is plain 'i'.
            _ if c == '\u{130}' => 'i',
            _ => c,
        }
    }));
}

/// Go's `strings.ToUpper`, appended to `out`, with simple case mappings (see
/// [`go_to_lower_into`]).
fn go_to_upper_into(s: &str, out: &mut String) {
    if s.is_ascii() {
        out.push_str(s);
        out.make_ascii_uppercase();
        return;
    }
    out.extend(s.chars().map(|c| {
        let mut m = c.to_uppercase();
        match (m.next(), m.next()) {
            (Some(u), None) => u,
            // Characters whose full uppercase is several characters mostly have no
            // simple mapping (ß stays ß); only the Greek letters with ypogegrammeni map
            // to a single titlecase letter.
            _ => match u32::from(c) {
                0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7 => {
                    char::from_u32(u32::from(c) + 8).unwrap_or(c)
                }
                0x1FB3 => '\u{1FBC}',
                0x1FC3 => '\u{1FCC}',
                0x1FF3 => '\u{1FFC}',
                _ => c,
            },
        }
    }));
}

/// Go's `strings.ToLower` as a new string.
fn go_to_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    go_to_lower_into(s, &mut out);
    out
}

#[cfg(test)]
mod tests;
