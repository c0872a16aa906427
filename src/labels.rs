//! Owned label sets: the representation used wherever labels are built once and kept
//! (targets, relabeling, the metric-relabel cache, export).
//!
//! The scrape hot path does not build `LabelSet`s: it works on borrowed label refs from
//! the parser and encodes them straight into remote-write bytes (see `wire`). A
//! `LabelSet` is only materialised when relabeling has to run.
//!
//! Invariant: labels are sorted by name and names are unique. Setting a label to the empty
//! string deletes it, as in Prometheus (`labels.Builder.Set`).

use std::fmt;

/// The label that carries the metric name.
pub const METRIC_NAME: &str = "__name__";
/// The label that carries a target's address.
pub const ADDRESS: &str = "__address__";
/// The label that carries a target's scheme.
pub const SCHEME: &str = "__scheme__";
/// The label that carries a target's metrics path.
pub const METRICS_PATH: &str = "__metrics_path__";
/// The label that carries a target's scrape interval.
pub const SCRAPE_INTERVAL: &str = "__scrape_interval__";
/// The label that carries a target's scrape timeout.
pub const SCRAPE_TIMEOUT: &str = "__scrape_timeout__";
/// Prefix of labels that set URL query parameters.
pub const PARAM_PREFIX: &str = "__param_";
/// Prefix of discovery meta labels, removed after target relabeling.
pub const META_PREFIX: &str = "__meta_";
/// Prefix reserved for users' temporary labels during relabeling.
pub const TMP_PREFIX: &str = "__tmp_";
/// Prefix of every internal label: none of them reach a series.
pub const RESERVED_PREFIX: &str = "__";

/// One label.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
}

/// A sorted set of labels with unique names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelSet {
    labels: Vec<Label>,
}

impl LabelSet {
    pub const fn new() -> Self {
        Self { labels: Vec::new() }
    }

    /// Builds a set from pairs in any order; a later duplicate name wins, empty values are
    /// dropped.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut set = Self::new();
        for (n, v) in pairs {
            set.set(n, v);
        }
        set
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.labels.iter()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.labels
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.labels.binary_search_by(|l| l.name.as_str().cmp(name))
    }

    /// The value of `name`, or `None` when absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name)
            .ok()
            .map(|i| self.labels[i].value.as_str())
    }

    /// The value of `name`, or "" when absent (Prometheus treats both alike).
    pub fn get_or_empty(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.position(&name) {
            Ok(i) if value.is_empty() => {
                self.labels.remove(i);
            }
            Ok(i) => self.labels[i].value = value,
            Err(_) if value.is_empty() => {}
            Err(i) => self.labels.insert(i, Label { name, value }),
        }
    }

    /// Sets `name` only when it is absent or empty.
    pub fn set_if_absent(&mut self, name: &str, value: impl Into<String>) {
        if self.get(name).is_none_or(str::is_empty) {
            self.set(name, value);
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.position(name)
            .ok()
            .map(|i| self.labels.remove(i).value)
    }

    /// Keeps only the labels for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Label) -> bool) {
        self.labels.retain(|l| keep(l));
    }

    /// The labels whose names do not start with `__`: the ones a target puts on its
    /// series and shows in the API.
    pub fn public(&self) -> LabelSet {
        LabelSet {
            labels: self
                .labels
                .iter()
                .filter(|l| !l.name.starts_with(RESERVED_PREFIX))
                .cloned()
                .collect(),
        }
    }
}

impl fmt::Display for LabelSet {
    /// Prometheus's `{a="1", b="2"}` form, used in logs, errors and the jitter seed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}=\"", l.name)?;
            write_escaped(f, &l.value)?;
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

/// Writes a label value with `\\`, `\"` and `\n` escaped, as the exposition formats do.
pub fn write_escaped(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    for c in value.chars() {
        match c {
            '\\' => out.write_str("\\\\")?,
            '"' => out.write_str("\\\"")?,
            '\n' => out.write_str("\\n")?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

impl<'a> IntoIterator for &'a LabelSet {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.labels.iter()
    }
}

/// True for a name valid under Prometheus's legacy scheme: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_legacy_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return false,
    }
    b[1..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// True for a metric name valid under the legacy scheme: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_legacy_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b':' => {}
        _ => return false,
    }
    b[1..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// True for a label name valid under the UTF-8 scheme (Prometheus 3.x): any non-empty
/// string. Rust strings are valid UTF-8 by construction.
pub fn is_utf8_label_name(name: &str) -> bool {
    !name.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keeps_order_and_empty_deletes() {
        let mut s = LabelSet::new();
        s.set("b", "2");
        s.set("a", "1");
        s.set("c", "3");
        assert_eq!(
            s.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        s.set("b", "");
        assert_eq!(s.get("b"), None);
        assert_eq!(s.len(), 2);
        s.set("z", "");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn set_if_absent_respects_existing() {
        let mut s = LabelSet::from_pairs([("job", "a")]);
        s.set_if_absent("job", "b");
        s.set_if_absent("instance", "x");
        assert_eq!(s.get("job"), Some("a"));
        assert_eq!(s.get("instance"), Some("x"));
    }

    #[test]
    fn public_drops_reserved() {
        let s = LabelSet::from_pairs([("__address__", "h:1"), ("job", "j"), ("__tmp_x", "y")]);
        assert_eq!(s.public(), LabelSet::from_pairs([("job", "j")]));
    }

    #[test]
    fn display_escapes() {
        let s = LabelSet::from_pairs([("a", "x\"y\\z\n"), ("b", "2")]);
        assert_eq!(s.to_string(), r#"{a="x\"y\\z\n", b="2"}"#);
    }

    #[test]
    fn name_validation() {
        assert!(is_legacy_label_name("_a1"));
        assert!(!is_legacy_label_name("1a"));
        assert!(!is_legacy_label_name("a:b"));
        assert!(is_legacy_metric_name("a:b_c"));
        assert!(!is_legacy_metric_name(""));
    }
}
