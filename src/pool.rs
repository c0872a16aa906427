//! Scrape pools: one per job. A pool turns the job's target groups into targets
//! (population + relabeling in `target`), keeps only this agent's shard of them, dedupes
//! them by hash, keeps the dropped ones for the API, enforces target_limit, and diffs
//! against its running targets so that a sync adds and removes only what changed. Pools
//! do not schedule: the coordinator applies the returned diff to the wheel. `sync` runs on
//! the rayon pool, one job per task.
//!
//! # Sharding (`[cluster]`)
//!
//! With `members_count` > 1, each agent keeps only the targets whose shard it is, decided
//! from the target alone so that every member, given the same config and discovery,
//! computes the same split, and a restart changes nothing. The method is vmagent's
//! (`-promscrape.cluster.membersCount/memberNum/replicationFactor`): the key is the
//! target's labels after relabeling (`__meta_*` already removed; `__address__`,
//! `__scheme__`, `__metrics_path__`, `__param_*`, `job`, `instance`, …), written as
//! `name=value,` in label-name order and hashed with XXH64 (seed 0); the target's first
//! member is `hash % members_count`, and with `replication_factor` r it is also scraped by
//! the next r − 1 members, wrapping around. A member that does not own a target drops it
//! before it becomes a target (no scrape state, no wheel entry): it is listed among the
//! job's dropped targets, like a target dropped by a `hashmod` relabel rule in
//! Prometheus. The label set is not byte-for-byte vmagent's (scrapewheel fills `instance`
//! before sharding and writes durations as Prometheus does), so do not mix vmagent and
//! scrapewheel members in one ring.

use crate::config::{ClusterConfig, ScrapeConfig};
use crate::discovery::TargetGroup;
use crate::labels::{LabelSet, ADDRESS};
use crate::metrics::{Counter, Gauge, RecentSummary, Registry};
use crate::scrape::{self, Auth, SecretSource};
use crate::target::{self, JobContext, Populated, Target, TargetError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// What a sync changed.
#[derive(Default)]
pub struct SyncOutcome {
    pub added: Vec<Arc<Target>>,
    pub removed: Vec<Arc<Target>>,
    /// Targets that could not be built, with the labels they were discovered with.
    pub errors: Vec<(LabelSet, TargetError)>,
}

struct PoolMetrics {
    targets: Arc<Gauge>,
    sync_failed: Arc<Counter>,
    syncs: Arc<Counter>,
    sync_length: Arc<RecentSummary>,
    exceeded_target_limit: Arc<Counter>,
}

/// Whether `cluster` gives the target with these (relabeled) labels to this member.
pub fn owns(labels: &LabelSet, cluster: &ClusterConfig) -> bool {
    let members = cluster.members_count;
    if members <= 1 {
        return true;
    }
    let first = shard_of(labels, members);
    // Members first, first+1, …, first+r-1 (mod members) scrape it.
    let distance = (cluster.member_num + members - first) % members;
    distance < cluster.replication_factor.max(1)
}

/// The first member (of `members`) that scrapes a target: XXH64 of `name=value,` over the
/// labels, modulo `members`.
pub fn shard_of(labels: &LabelSet, members: u32) -> u32 {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for l in labels {
        h.update(l.name.as_bytes());
        h.update(b"=");
        h.update(l.value.as_bytes());
        h.update(b",");
    }
    (h.digest() % u64::from(members.max(1))) as u32
}

/// Discovered labels safe to keep for the API and logs: any `user:password@` in
/// `__address__` is removed (such a target is refused, but its labels are shown).
fn without_credentials(discovered: LabelSet) -> LabelSet {
    match discovered.get(ADDRESS) {
        Some(a) if a.contains('@') => {
            let host = crate::log::redact_address(a).into_owned();
            let mut l = discovered;
            l.set(ADDRESS, host);
            l
        }
        _ => discovered,
    }
}

/// One job's targets.
pub struct ScrapePool {
    pub job: Arc<JobContext>,
    targets: HashMap<u64, Arc<Target>>,
    dropped: Vec<LabelSet>,
    dropped_count: usize,
    metrics: PoolMetrics,
}

/// Builds what every target of a job shares.
pub fn job_context(cfg: Arc<ScrapeConfig>) -> JobContext {
    let protocols: Vec<scrape::Protocol> = cfg
        .scrape_protocols
        .iter()
        .map(|p| {
            use crate::config::ScrapeProtocol as P;
            match p {
                P::PrometheusText0_0_4 => scrape::Protocol::PrometheusText0_0_4,
                P::PrometheusText1_0_0 => scrape::Protocol::PrometheusText1_0_0,
                P::OpenMetricsText0_0_1 => scrape::Protocol::OpenMetricsText0_0_1,
                P::OpenMetricsText1_0_0 => scrape::Protocol::OpenMetricsText1_0_0,
            }
        })
        .collect();
    let auth = if let Some(b) = &cfg.basic_auth {
        Some(Auth::Basic {
            username: b.username.clone(),
            password: match (&b.password, &b.password_file) {
                (_, Some(f)) => SecretSource::File(f.clone()),
                (Some(p), None) => SecretSource::Inline(p.expose().to_string()),
                (None, None) => SecretSource::Inline(String::new()),
            },
        })
    } else {
        cfg.authorization.as_ref().map(|a| Auth::Bearer {
            kind: a.kind.clone(),
            credentials: match (&a.credentials, &a.credentials_file) {
                (_, Some(f)) => SecretSource::File(f.clone()),
                (Some(c), None) => SecretSource::Inline(c.expose().to_string()),
                (None, None) => SecretSource::Inline(String::new()),
            },
        })
    };
    let (client, transport_error) =
        match scrape::Transport::new(cfg.tls_config.as_ref(), cfg.proxy_url.as_deref()) {
            Ok(t) if t.is_default() => (None, None),
            Ok(t) => (Some(scrape::HttpClient::with_transport(t)), None),
            Err(e) => {
                crate::error!(
                    "scrape client options cannot be used; the job's scrapes fail until fixed",
                    job = cfg.job_name,
                    err = e
                );
                (None, Some(e.to_string()))
            }
        };
    JobContext {
        accept: scrape::accept_header(&protocols),
        auth,
        client,
        transport_error,
        config: cfg,
    }
}

impl ScrapePool {
    pub fn new(cfg: Arc<ScrapeConfig>, reg: &Registry) -> Self {
        let job = cfg.job_name.as_str();
        let l: &[(&str, &str)] = &[("scrape_job", job)];
        // prometheus_target_scrape_pools_total is counted by the coordinator, which
        // creates pools.
        let sync_length = Arc::new(RecentSummary::default());
        let s2 = sync_length.clone();
        reg.summary_fn(
            "prometheus_target_sync_length_seconds",
            "Actual interval to sync the scrape pool (the last 128 syncs).",
            l,
            move || s2.snapshot(),
        );
        let metrics = PoolMetrics {
            targets: reg.gauge(
                "prometheus_target_scrape_pool_targets",
                "Current number of targets in this scrape pool.",
                l,
            ),
            sync_failed: reg.counter(
                "prometheus_target_sync_failed_total",
                "Targets that could not be built from discovered labels.",
                l,
            ),
            syncs: reg.counter(
                "prometheus_target_scrape_pool_sync_total",
                "Syncs of this scrape pool.",
                l,
            ),
            sync_length,
            exceeded_target_limit: reg.counter(
                "prometheus_target_scrape_pool_exceeded_target_limit_total",
                "Syncs that found more targets than target_limit.",
                &[],
            ),
        };
        Self {
            job: Arc::new(job_context(cfg)),
            targets: HashMap::new(),
            dropped: Vec::new(),
            dropped_count: 0,
            metrics,
        }
    }

    pub fn name(&self) -> &str {
        &self.job.config.job_name
    }

    pub fn targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.targets.values()
    }

    /// Dropped targets' discovered labels (at most keep_dropped_targets) and the total.
    pub fn dropped(&self) -> (&[LabelSet], usize) {
        (&self.dropped, self.dropped_count)
    }

    /// Replaces the pool's view with `groups`: returns the targets to start and to stop.
    pub fn sync(&mut self, groups: &[TargetGroup]) -> SyncOutcome {
        let started = Instant::now();
        let cfg = self.job.config.clone();
        let mut out = SyncOutcome::default();
        let mut next: HashMap<u64, Arc<Target>> = HashMap::with_capacity(self.targets.len());
        self.dropped.clear();
        self.dropped_count = 0;
        let keep_dropped = cfg.keep_dropped_targets as usize;
        for group in groups {
            for t in &group.targets {
                match target::populate(t, &group.labels, &cfg) {
                    Ok(Populated::Active { labels, discovered })
                        if !owns(&labels, &cfg.cluster) =>
                    {
                        // Another member's shard: dropped before it costs anything.
                        self.dropped_count += 1;
                        if keep_dropped == 0 || self.dropped.len() < keep_dropped {
                            self.dropped.push(without_credentials(discovered));
                        }
                    }
                    Ok(Populated::Active { labels, discovered }) => {
                        let url = target::scrape_url(&labels, &cfg);
                        let hash = target::target_hash(&labels, &url);
                        if next.contains_key(&hash) {
                            continue;
                        }
                        let t = match self.targets.get(&hash) {
                            Some(existing) => existing.clone(),
                            None => {
                                let t = Arc::new(Target::new(
                                    self.job.clone(),
                                    labels,
                                    without_credentials(discovered),
                                ));
                                out.added.push(t.clone());
                                t
                            }
                        };
                        next.insert(hash, t);
                    }
                    Ok(Populated::Dropped { discovered }) => {
                        self.dropped_count += 1;
                        if keep_dropped == 0 || self.dropped.len() < keep_dropped {
                            self.dropped.push(without_credentials(discovered));
                        }
                    }
                    Err(e) => {
                        self.metrics.sync_failed.inc();
                        out.errors.push((without_credentials(t.clone()), e));
                    }
                }
            }
        }
        for (hash, t) in self.targets.drain() {
            if !next.contains_key(&hash) {
                out.removed.push(t);
            }
        }
        self.targets = next;
        let limit = cfg.target_limit;
        let forced = (limit > 0 && self.targets.len() as u64 > limit).then(|| {
            format!(
                "target_limit exceeded (number of targets: {}, limit: {limit})",
                self.targets.len()
            )
        });
        if forced.is_some() {
            self.metrics.exceeded_target_limit.inc();
        }
        for t in self.targets.values() {
            *t.forced_error.lock() = forced.clone();
        }
        self.metrics.targets.set(self.targets.len() as f64);
        self.metrics.syncs.inc();
        self.metrics
            .sync_length
            .observe(started.elapsed().as_secs_f64());
        out
    }

    /// Removes every target (the job went away); returns them so they can be retired.
    pub fn drain(&mut self) -> Vec<Arc<Target>> {
        self.targets.drain().map(|(_, t)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::ADDRESS;

    fn group(addrs: &[&str]) -> TargetGroup {
        TargetGroup {
            source: "0".into(),
            targets: addrs
                .iter()
                .map(|a| LabelSet::from_pairs([(ADDRESS, *a)]))
                .collect(),
            labels: LabelSet::new(),
        }
    }

    #[test]
    fn sync_diffs_and_keeps_unchanged_targets() {
        let reg = Registry::default();
        let mut p = ScrapePool::new(crate::target::tests::job(""), &reg);
        let out = p.sync(&[group(&["a:1", "b:1", "a:1"])]);
        assert_eq!(out.added.len(), 2, "duplicates are deduped");
        let a_before = p
            .targets()
            .find(|t| t.url.contains("a:1"))
            .cloned()
            .expect("a");
        let out = p.sync(&[group(&["a:1", "c:1"])]);
        assert_eq!(out.added.len(), 1);
        assert_eq!(out.removed.len(), 1);
        assert!(out.removed[0].url.contains("b:1"));
        let a_after = p.targets().find(|t| t.url.contains("a:1")).expect("a");
        assert!(
            Arc::ptr_eq(&a_before, a_after),
            "unchanged target is untouched"
        );
    }

    #[test]
    fn dropped_targets_are_kept_up_to_the_limit() {
        let reg = Registry::default();
        let cfg = crate::target::tests::job(
            "keep_dropped_targets = 1\n[[scrape_configs.relabel_configs]]\naction = \"drop\"\nsource_labels = [\"__address__\"]\nregex = \"x.*\"\n",
        );
        let mut p = ScrapePool::new(cfg, &reg);
        p.sync(&[group(&["x:1", "x:2", "y:1"])]);
        let (kept, total) = p.dropped();
        assert_eq!(kept.len(), 1);
        assert_eq!(total, 2);
        assert_eq!(p.targets().count(), 1);
    }

    #[test]
    fn target_limit_forces_errors() {
        let reg = Registry::default();
        let mut p = ScrapePool::new(crate::target::tests::job("target_limit = 1\n"), &reg);
        p.sync(&[group(&["a:1", "b:1"])]);
        for t in p.targets() {
            let e = t.forced_error.lock().clone().expect("forced");
            assert_eq!(e, "target_limit exceeded (number of targets: 2, limit: 1)");
        }
        p.sync(&[group(&["a:1"])]);
        assert!(p.targets().all(|t| t.forced_error.lock().is_none()));
    }

    fn cluster(members_count: u32, member_num: u32, replication_factor: u32) -> String {
        format!("[cluster]\nmembers_count = {members_count}\nmember_num = {member_num}\nreplication_factor = {replication_factor}\n")
    }

    fn sharded_job(members: u32, member: u32, rf: u32) -> Arc<ScrapeConfig> {
        let text = format!(
            "{}[[scrape_configs]]\njob_name = \"j\"\n",
            cluster(members, member, rf)
        );
        let cfg = crate::config::Config::from_str(&text, std::path::Path::new("t.toml"))
            .expect("valid test config");
        cfg.scrape_configs[0].clone()
    }

    fn addrs(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("10.0.{}.{}:9100", i / 250, i % 250))
            .collect()
    }

    fn owned(members: u32, member: u32, rf: u32, all: &[String]) -> Vec<String> {
        let reg = Registry::default();
        let mut p = ScrapePool::new(sharded_job(members, member, rf), &reg);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        p.sync(&[group(&refs)]);
        let (_, dropped) = p.dropped();
        let mut mine: Vec<String> = p
            .targets()
            .map(|t| t.labels.get_or_empty(ADDRESS).to_string())
            .collect();
        assert_eq!(
            mine.len() + dropped,
            all.len(),
            "every target is kept or dropped"
        );
        mine.sort();
        mine
    }

    #[test]
    fn shards_partition_the_targets_with_no_gap_and_no_overlap() {
        let all = addrs(1000);
        for members in [2u32, 3, 5] {
            let mut seen: Vec<String> = Vec::new();
            for m in 0..members {
                let mine = owned(members, m, 1, &all);
                // A fair hash: each member gets its share within a wide margin.
                let share = all.len() as f64 / f64::from(members);
                assert!(
                    (mine.len() as f64 - share).abs() < share * 0.25,
                    "member {m}/{members} has {} targets",
                    mine.len()
                );
                seen.extend(mine);
            }
            seen.sort();
            let mut want = all.clone();
            want.sort();
            assert_eq!(
                seen, want,
                "{members} members cover every target exactly once"
            );
        }
    }

    #[test]
    fn replication_gives_each_target_to_r_members() {
        let all = addrs(300);
        let per_member: Vec<Vec<String>> = (0..3).map(|m| owned(3, m, 2, &all)).collect();
        for a in &all {
            let n = per_member
                .iter()
                .filter(|mine| mine.binary_search(a).is_ok())
                .count();
            assert_eq!(n, 2, "{a} is scraped by {n} members");
        }
        for m in 0..2 {
            assert_eq!(owned(2, m, 2, &all).len(), all.len());
        }
    }

    #[test]
    fn the_shard_is_a_pure_function_of_the_labels() {
        // Pinned values: a change here reshuffles every running fleet on upgrade.
        let l = LabelSet::from_pairs([(ADDRESS, "10.0.0.1:9100"), ("job", "node")]);
        let again = LabelSet::from_pairs([("job", "node"), (ADDRESS, "10.0.0.1:9100")]);
        assert_eq!(shard_of(&l, 7), shard_of(&again, 7));
        let mut h = xxhash_rust::xxh64::Xxh64::new(0);
        h.update(b"__address__=10.0.0.1:9100,job=node,");
        assert_eq!(u64::from(shard_of(&l, 1000)), h.digest() % 1000);
        let c = |n, m| ClusterConfig {
            members_count: n,
            member_num: m,
            replication_factor: 1,
        };
        assert!(owns(&l, &c(0, 0)) && owns(&l, &c(1, 0)));
    }

    #[test]
    fn credentials_in_an_address_are_refused_and_not_repeated() {
        let reg = Registry::default();
        let mut p = ScrapePool::new(crate::target::tests::job(""), &reg);
        let out = p.sync(&[group(&["admin:hunter2@h:1", "h:2"])]);
        assert_eq!(p.targets().count(), 1);
        assert_eq!(out.errors.len(), 1);
        let (labels, err) = &out.errors[0];
        let shown = format!("{labels} {err}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("h:1"), "{shown}");
    }

    #[test]
    fn bad_targets_are_reported() {
        let reg = Registry::default();
        let cfg = crate::target::tests::job(
            "[[scrape_configs.relabel_configs]]\nsource_labels = [\"__address__\"]\ntarget_label = \"__address__\"\nreplacement = \"x/y\"\n",
        );
        let mut p = ScrapePool::new(cfg, &reg);
        let out = p.sync(&[group(&["a:1"])]);
        assert_eq!(out.errors.len(), 1);
        assert!(matches!(
            out.errors[0].1,
            TargetError::InvalidAddress { .. }
        ));
    }
}
