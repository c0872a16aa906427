//! Scrape pools: one per job. A pool turns the job's target groups into targets
//! (population + relabeling in `target`), dedupes them by hash, keeps the dropped ones for
//! the API, enforces target_limit, and diffs against its running targets so that a sync
//! adds and removes only what changed. Pools do not schedule: the coordinator applies the
//! returned diff to the wheel. `sync` runs on the rayon pool, one job per task.

use crate::config::ScrapeConfig;
use crate::discovery::TargetGroup;
use crate::labels::LabelSet;
use crate::metrics::{Counter, Gauge, Registry};
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
    sync_seconds: Arc<Gauge>,
    exceeded_target_limit: Arc<Counter>,
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
    JobContext {
        accept: scrape::accept_header(&protocols),
        auth,
        config: cfg,
    }
}

impl ScrapePool {
    pub fn new(cfg: Arc<ScrapeConfig>, reg: &Registry) -> Self {
        let job = cfg.job_name.as_str();
        let l: &[(&str, &str)] = &[("scrape_job", job)];
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
            sync_seconds: reg.gauge(
                "scrapewheel_target_sync_last_seconds",
                "Duration of the last sync of this scrape pool.",
                l,
            ),
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
                    Ok(Populated::Active { labels, discovered }) => {
                        let url = target::scrape_url(&labels, &cfg);
                        let hash = target::target_hash(&labels, &url);
                        if next.contains_key(&hash) {
                            continue;
                        }
                        let t = match self.targets.get(&hash) {
                            Some(existing) => existing.clone(),
                            None => {
                                let t = Arc::new(Target::new(self.job.clone(), labels, discovered));
                                out.added.push(t.clone());
                                t
                            }
                        };
                        next.insert(hash, t);
                    }
                    Ok(Populated::Dropped { discovered }) => {
                        self.dropped_count += 1;
                        if keep_dropped == 0 || self.dropped.len() < keep_dropped {
                            self.dropped.push(discovered);
                        }
                    }
                    Err(e) => {
                        self.metrics.sync_failed.inc();
                        out.errors.push((t.clone(), e));
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
            .sync_seconds
            .set(started.elapsed().as_secs_f64());
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
