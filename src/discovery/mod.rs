//! Service discovery: turns a job's `*_sd_configs` into target groups.
//!
//! Owns the `TargetGroup` type that flows to the coordinator. Static configs become
//! groups here directly; providers that poll (file, HTTP, DNS) send their updates over the
//! coordinator's bounded channel from their own threads. Discovery never builds targets:
//! label population and relabeling belong to the pool.

use crate::config::StaticConfig;
use crate::labels::{LabelSet, ADDRESS};

/// A set of targets sharing labels, as a discovery provider reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetGroup {
    /// Identifies the group within its provider (stable across updates).
    pub source: String,
    /// Each target's own labels; at least `__address__`.
    pub targets: Vec<LabelSet>,
    /// Labels shared by every target of the group (a target's own labels win).
    pub labels: LabelSet,
}

/// One provider's complete, current view of a job's targets.
#[derive(Debug, Clone)]
pub struct Update {
    pub job: String,
    /// Which provider of the job sent it; a later update from it replaces the earlier one.
    pub provider: String,
    pub groups: Vec<TargetGroup>,
}

/// The groups of a job's `static_configs`, one per entry, as Prometheus numbers them.
pub fn static_groups(configs: &[StaticConfig]) -> Vec<TargetGroup> {
    configs
        .iter()
        .enumerate()
        .map(|(i, sc)| TargetGroup {
            source: i.to_string(),
            targets: sc
                .targets
                .iter()
                .map(|t| LabelSet::from_pairs([(ADDRESS, t.as_str())]))
                .collect(),
            labels: sc.labels.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_configs_become_numbered_groups() {
        let cfgs = vec![
            StaticConfig {
                targets: vec!["a:1".into(), "b:2".into()],
                labels: LabelSet::from_pairs([("env", "x")]),
            },
            StaticConfig {
                targets: vec!["c:3".into()],
                labels: LabelSet::new(),
            },
        ];
        let groups = static_groups(&cfgs);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].source, "0");
        assert_eq!(groups[0].targets[1].get(ADDRESS), Some("b:2"));
        assert_eq!(groups[0].labels.get("env"), Some("x"));
        assert_eq!(groups[1].source, "1");
    }
}
