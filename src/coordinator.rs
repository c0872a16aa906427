//! The coordinator thread ("sw-coordinator"): the one place that owns the running config,
//! the scrape pools, the discovery providers and the wheel's membership.
//!
//! Inputs, all over bounded crossbeam channels: discovery updates (job → groups, one
//! provider at a time, from the provider threads of the [`discovery::Manager`] it owns),
//! and control messages (reload from SIGHUP or /-/reload, shutdown). It keeps the latest
//! groups per job and provider, and syncs the pools whose groups changed: the first sync
//! at once, then at most one per `engine.reload_throttle`, all dirty pools in parallel on
//! rayon. Each sync's diff goes to the wheel: new targets are added at their pinned
//! phase, vanished ones retired (one last due slot writes their staleness markers).
//! Unchanged targets are never touched, so they keep their phase.
//!
//! # Reload
//!
//! A reload loads and validates the whole file first; if that fails nothing changes, the
//! error is logged, `scrapewheel_config_last_reload_successful` drops to 0 and the
//! /-/reload caller gets the error. Otherwise, job by job (by `ScrapeConfig::fingerprint`,
//! which leaves out the target sources):
//! - unchanged job: its pool and targets are not touched, so every target keeps
//!   scraping at its phase, with no gap and no extra scrape; changed static targets or
//!   sd configs only change its groups, and the pool sync adds and removes just the
//!   targets that differ;
//! - changed job: a new pool; its targets are rebuilt and re-added under the same wheel
//!   keys, so a target that survives keeps its phase (and its slot) while targets that
//!   are gone are retired and write staleness markers at their next slot;
//! - removed job: its targets are retired, so their series go stale at their next slot;
//! - new job: a new pool.
//!
//! Discovery providers restart only when their own config changed (see
//! [`discovery`]); a restarted provider's old groups stay until its first update.
//!
//! It stops on `Control::Shutdown` or when the control channel disconnects: it stops the
//! discovery providers, then returns the wheel to the caller; it never stops other
//! components itself.

use crate::config::Config;
use crate::discovery::{self, Manager, SdMetrics, TargetGroup, Update, STATIC_PROVIDER};
use crate::metrics::{Counter, Gauge, Registry};
use crate::pool::{ScrapePool, SyncOutcome};
use crate::target::Target;
use crate::wheel::{self, Scheduler};
use crossbeam_channel::{bounded, select, Receiver, Sender};
use parking_lot::RwLock;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests to the coordinator.
pub enum Control {
    /// Re-read the config file; the reply says whether it was applied.
    Reload {
        reply: Option<Sender<Result<(), String>>>,
    },
    Shutdown,
}

/// A job's view for the API: its targets and the dropped ones.
#[derive(Clone, Default)]
pub struct JobView {
    pub targets: Vec<Arc<Target>>,
    pub dropped: Vec<crate::labels::LabelSet>,
    pub dropped_count: usize,
}

/// What the web thread reads: replaced wholesale after every sync.
pub type TargetsView = Arc<RwLock<BTreeMap<String, JobView>>>;

/// Loads the config file again (with command-line overrides) for a reload.
pub type Loader = Box<dyn Fn() -> Result<Config, crate::config::ConfigError> + Send>;

/// Capacity of the discovery → coordinator channel. Updates are full views and the
/// coordinator drains them quickly; a full channel only delays a provider (it retries).
const UPDATE_QUEUE: usize = 64;

/// How long shutdown waits for discovery threads busy with a request or lookup.
const DISCOVERY_STOP_DEADLINE: Duration = Duration::from_secs(2);

/// Scrape manager self-metrics, named as Prometheus names them.
struct PoolMetrics {
    pools: Arc<Counter>,
    reloads: Arc<Counter>,
}

pub struct Coordinator {
    config: Arc<Config>,
    loader: Loader,
    pools: BTreeMap<String, ScrapePool>,
    groups: HashMap<String, BTreeMap<String, Vec<TargetGroup>>>,
    dirty: BTreeSet<String>,
    wheel: Scheduler<Target>,
    seed: u64,
    registry: Arc<Registry>,
    view: TargetsView,
    last_sync: Option<Instant>,
    reload_ok: Arc<Gauge>,
    reload_ts: Arc<Gauge>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    discovery: Manager,
    updates: Receiver<Update>,
    pool_metrics: PoolMetrics,
}

/// The host name that goes into the jitter seed, as Prometheus uses the FQDN.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for writes of buf.len() bytes; gethostname NUL-terminates
    // within that length on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl Coordinator {
    pub fn new(
        config: Arc<Config>,
        loader: Loader,
        wheel: Scheduler<Target>,
        registry: Arc<Registry>,
        view: TargetsView,
        ready: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        let seed = wheel::jitter_seed(&hostname(), &config.global.external_labels);
        let reload_ok = registry.gauge(
            "scrapewheel_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            &[],
        );
        let reload_ts = registry.gauge(
            "scrapewheel_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            &[],
        );
        reload_ok.set(1.0);
        reload_ts.set(crate::time::unix_ms() as f64 / 1000.0);
        let pool_metrics = PoolMetrics {
            pools: registry.counter(
                "prometheus_target_scrape_pools_total",
                "Total number of scrape pool creation attempts.",
                &[],
            ),
            reloads: registry.counter(
                "prometheus_target_scrape_pool_reloads_total",
                "Total number of scrape pool reloads.",
                &[],
            ),
        };
        // Creating or reloading a pool cannot fail here (a pool holds no client that could
        // fail to build), so these stay 0; they exist for dashboards that expect them.
        registry.counter(
            "prometheus_target_scrape_pools_failed_total",
            "Total number of scrape pool creations that failed.",
            &[],
        );
        registry.counter(
            "prometheus_target_scrape_pool_reloads_failed_total",
            "Total number of failed scrape pool reloads.",
            &[],
        );
        let (updates_tx, updates) = bounded(UPDATE_QUEUE);
        let discovery = Manager::new(updates_tx, SdMetrics::new(&registry));
        let mut c = Coordinator {
            config: config.clone(),
            loader,
            pools: BTreeMap::new(),
            groups: HashMap::new(),
            dirty: BTreeSet::new(),
            wheel,
            seed,
            registry,
            view,
            last_sync: None,
            reload_ok,
            reload_ts,
            ready,
            discovery,
            updates,
            pool_metrics,
        };
        c.apply_jobs(&config);
        c.apply_discovery(&config);
        c
    }

    /// Runs until shutdown; stops discovery and returns the wheel so the caller can stop
    /// it in order.
    pub fn run(mut self, control: Receiver<Control>) -> Scheduler<Target> {
        let updates = self.updates.clone();
        loop {
            let wait = self.time_to_sync();
            select! {
                recv(updates) -> u => {
                    // The coordinator holds a sender (through the manager) for as long as
                    // it runs, so the channel cannot disconnect here.
                    if let Ok(u) = u {
                        self.on_update(u);
                    }
                }
                recv(control) -> c => match c {
                    Ok(Control::Reload { reply }) => {
                        let r = self.reload();
                        if let Some(reply) = reply {
                            let _ = reply.send(r);
                        }
                    }
                    Ok(Control::Shutdown) | Err(_) => break,
                },
                default(wait) => {}
            }
            if self.time_to_sync() == Duration::ZERO && !self.dirty.is_empty() {
                self.sync_dirty();
            }
        }
        self.discovery.stop(DISCOVERY_STOP_DEADLINE);
        self.wheel
    }

    fn time_to_sync(&self) -> Duration {
        if self.dirty.is_empty() {
            return Duration::from_secs(3600);
        }
        match self.last_sync {
            None => Duration::ZERO,
            Some(t) => self
                .config
                .engine
                .reload_throttle
                .saturating_sub(t.elapsed()),
        }
    }

    fn on_update(&mut self, u: Update) {
        // A replaced provider may still have sent something; only the current one counts.
        if !self.discovery.is_current(&u) || !self.pools.contains_key(&u.job) {
            return;
        }
        self.groups
            .entry(u.job.clone())
            .or_default()
            .insert(u.provider, u.groups);
        self.count_discovered(&u.job);
        self.dirty.insert(u.job);
    }

    /// Sets `prometheus_sd_discovered_targets` for `job` from its groups.
    fn count_discovered(&self, job: &str) {
        let n = self
            .groups
            .get(job)
            .map_or(0, |m| discovery::target_count(m.values().flatten()));
        self.discovery
            .metrics()
            .discovered_targets(job)
            .set(n as f64);
    }

    /// Starts, keeps or stops discovery providers to match `config`, and drops the groups
    /// of providers that no longer exist.
    fn apply_discovery(&mut self, config: &Config) {
        for (job, slot) in self.discovery.apply(config) {
            let removed = self
                .groups
                .get_mut(&job)
                .and_then(|m| m.remove(&slot))
                .is_some();
            if removed && self.pools.contains_key(&job) {
                self.count_discovered(&job);
                self.dirty.insert(job);
            }
        }
    }

    /// Replaces `job`'s static groups with `cfg`'s; marks the job dirty if they changed.
    fn set_static_groups(&mut self, job: &str, cfg: &crate::config::ScrapeConfig) {
        let fresh = discovery::static_groups(&cfg.static_configs);
        let groups = self.groups.entry(job.to_string()).or_default();
        if groups.get(STATIC_PROVIDER) != Some(&fresh) {
            groups.insert(STATIC_PROVIDER.to_string(), fresh);
            self.count_discovered(job);
            self.dirty.insert(job.to_string());
        }
    }

    /// Makes the pools match `config`'s jobs: unchanged jobs keep running untouched (only
    /// their static groups are refreshed), changed jobs get a fresh pool (their targets
    /// restart), removed jobs' targets are retired.
    fn apply_jobs(&mut self, config: &Config) {
        let wanted: BTreeMap<&str, _> = config
            .scrape_configs
            .iter()
            .map(|c| (c.job_name.as_str(), c))
            .collect();
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for name in names {
            let new_cfg = wanted.get(name.as_str());
            let keep =
                new_cfg.is_some_and(|c| self.pools[&name].job.config.fingerprint == c.fingerprint);
            if keep {
                continue;
            }
            if let Some(mut pool) = self.pools.remove(&name) {
                // A target the new pool builds again under the same key is re-added before
                // its last slot comes, which cancels the retirement.
                for t in pool.drain() {
                    self.wheel.retire(t.key);
                }
            }
            self.registry.remove_labelled("scrape_job", &name);
            if new_cfg.is_some() {
                // Changed: the discovered groups stay (their providers restart only if
                // their own config changed); the new pool syncs against them.
                self.pool_metrics.reloads.inc();
            } else {
                self.groups.remove(&name);
                self.discovery.metrics().forget_job(&name);
                self.dirty.remove(&name);
            }
        }
        for (name, cfg) in wanted {
            if !self.pools.contains_key(name) {
                self.pool_metrics.pools.inc();
                self.pools.insert(
                    name.to_string(),
                    ScrapePool::new(cfg.clone(), &self.registry),
                );
                self.dirty.insert(name.to_string());
            }
            self.set_static_groups(name, cfg);
        }
    }

    fn reload(&mut self) -> Result<(), String> {
        let new = match (self.loader)() {
            Ok(c) => Arc::new(c),
            Err(e) => {
                self.reload_ok.set(0.0);
                crate::error!("reload failed; keeping the running configuration", err = e);
                return Err(e.to_string());
            }
        };
        if new.engine != self.config.engine
            || new.storage != self.config.storage
            || new.web != self.config.web
        {
            crate::warn!("engine, storage and web settings take effect only after a restart");
        }
        let seed = wheel::jitter_seed(&hostname(), &new.global.external_labels);
        self.apply_jobs(&new);
        self.apply_discovery(&new);
        if seed != self.seed {
            // External labels changed: every target moves to its new phase.
            self.seed = seed;
            for pool in self.pools.values() {
                for t in pool.targets() {
                    self.schedule(t);
                }
            }
        }
        self.config = new;
        // Apply at once rather than after the throttle, so a restarted job's targets are
        // re-added before their retirement slot comes.
        self.sync_dirty();
        self.reload_ok.set(1.0);
        self.reload_ts.set(crate::time::unix_ms() as f64 / 1000.0);
        crate::info!("configuration reloaded", jobs = self.pools.len());
        Ok(())
    }

    fn schedule(&self, t: &Arc<Target>) {
        let offset = wheel::offset_for(t.hash, self.seed, t.interval);
        self.wheel.add(t.key, t.interval, offset, t.clone());
    }

    fn sync_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        let groups = &self.groups;
        // Each pool times its own sync (prometheus_target_sync_length_seconds).
        let outcomes: Vec<(String, SyncOutcome)> = self
            .pools
            .par_iter_mut()
            .filter(|(name, _)| dirty.contains(*name))
            .map(|(name, pool)| {
                let gs: Vec<TargetGroup> = groups
                    .get(name)
                    .map(|m| m.values().flatten().cloned().collect())
                    .unwrap_or_default();
                (name.clone(), pool.sync(&gs))
            })
            .collect();
        if !outcomes.is_empty() {
            self.discovery.metrics().updates.inc();
        }
        for (job, out) in outcomes {
            for (labels, err) in &out.errors {
                crate::warn!(
                    "creating target failed",
                    job = job,
                    labels = labels,
                    err = err
                );
            }
            for t in &out.removed {
                self.wheel.retire(t.key);
            }
            for t in &out.added {
                self.schedule(t);
            }
        }
        self.last_sync = Some(Instant::now());
        self.publish_view();
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    fn publish_view(&self) {
        let view = self
            .pools
            .iter()
            .map(|(name, p)| {
                let (dropped, dropped_count) = p.dropped();
                (
                    name.clone(),
                    JobView {
                        targets: p.targets().cloned().collect(),
                        dropped: dropped.to_vec(),
                        dropped_count,
                    },
                )
            })
            .collect();
        *self.view.write() = view;
    }
}
