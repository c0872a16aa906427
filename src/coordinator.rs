//! The coordinator thread ("sw-coordinator"): the one place that owns the running config,
//! the scrape pools and the wheel's membership.
//!
//! Inputs, all over bounded crossbeam channels: discovery updates (job → groups, one
//! provider at a time), and control messages (reload from SIGHUP or /-/reload, shutdown).
//! It keeps the latest groups per job and provider, and syncs the pools whose groups
//! changed: the first sync at once, then at most one per `engine.reload_throttle`, all
//! dirty pools in parallel on rayon. Each sync's diff goes to the wheel: new targets are
//! added at their pinned phase, vanished ones retired (one last due slot writes their
//! staleness markers). Unchanged targets are never touched, so they keep their phase.
//!
//! It stops on `Control::Shutdown` or when the control channel disconnects, returning the
//! pools to the caller; it never stops other components itself.

use crate::config::Config;
use crate::discovery::{self, TargetGroup, Update};
use crate::metrics::{Gauge, Registry};
use crate::pool::{ScrapePool, SyncOutcome};
use crate::target::Target;
use crate::wheel::{self, Scheduler};
use crossbeam_channel::{select, Receiver, Sender};
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

const STATIC_PROVIDER: &str = "static";

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
        };
        c.apply_jobs(&config);
        c
    }

    /// Runs until shutdown; returns the wheel so the caller can stop it in order.
    pub fn run(
        mut self,
        updates: Receiver<Update>,
        control: Receiver<Control>,
    ) -> Scheduler<Target> {
        loop {
            let wait = self.time_to_sync();
            select! {
                recv(updates) -> u => {
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
        if !self.pools.contains_key(&u.job) {
            return;
        }
        self.groups
            .entry(u.job.clone())
            .or_default()
            .insert(u.provider, u.groups);
        self.dirty.insert(u.job);
    }

    /// Makes the pools match `config`'s jobs: unchanged jobs keep running untouched,
    /// changed jobs get a fresh pool (their targets restart), removed jobs' targets are
    /// retired.
    fn apply_jobs(&mut self, config: &Config) {
        let wanted: BTreeMap<&str, _> = config
            .scrape_configs
            .iter()
            .map(|c| (c.job_name.as_str(), c))
            .collect();
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for name in names {
            let keep = wanted
                .get(name.as_str())
                .is_some_and(|c| self.pools[&name].job.config.fingerprint == c.fingerprint);
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
            self.groups.remove(&name);
            self.registry.remove_labelled("scrape_job", &name);
        }
        for (name, cfg) in wanted {
            if self.pools.contains_key(name) {
                continue;
            }
            self.pools.insert(
                name.to_string(),
                ScrapePool::new(cfg.clone(), &self.registry),
            );
            self.groups.entry(name.to_string()).or_default().insert(
                STATIC_PROVIDER.to_string(),
                discovery::static_groups(&cfg.static_configs),
            );
            self.dirty.insert(name.to_string());
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
