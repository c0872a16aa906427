//! Service discovery: turns a job's target sources into target groups for the coordinator.
//!
//! Owns the `TargetGroup` type that flows to the coordinator, the providers that produce
//! groups, and the [`Manager`] that starts and stops them. Static configs become groups
//! here directly ([`static_groups`]); `file_sd_configs` ([`file`](mod@file)), `http_sd_configs`
//! ([`http`]) and `dns_sd_configs` ([`dns`]) each get a provider thread. Discovery never
//! builds targets: label population and relabeling belong to the pool.
//!
//! # Providers and their threads
//!
//! One thread per (job, sd config), named `sw-sd-<kind>-<n>` (thread names are capped at
//! 15 bytes on Linux, so the job is not in it; the log lines carry it). Each thread
//! refreshes on its own schedule and sends its *full* current view of the job's groups as
//! one [`Update`] over the coordinator's bounded channel, and only when that view changed
//! (the first view is always sent, even when empty, so that a restarted provider replaces
//! its predecessor's groups promptly). A send never blocks: if the channel is full the
//! update is kept, replaced by any newer view (coalescing), and retried with a backoff
//! from 100 ms to 5 s, counted in `prometheus_sd_updates_delayed_total`.
//! A provider that fails keeps its last good view: nothing is sent.
//!
//! # Stopping
//!
//! Each thread waits between steps on its own bounded stop channel; dropping the sender
//! (on reload, when its config changed or went away, or on shutdown) wakes it at once. A
//! step in progress finishes first: a file read, an HTTP request (bounded by
//! `refresh_interval`, as in Prometheus) or a DNS exchange (bounded by the resolver's
//! timeout). [`Manager::stop`] waits for every thread up to a deadline and leaves any
//! straggler behind, detached: it holds no state that outlives the process.
//!
//! # Reload
//!
//! [`Manager::apply`] compares each (job, slot) provider's config with the running one
//! (slot: the sd config's key and index, e.g. `file_sd_configs/0`). Equal: the provider
//! keeps running untouched (no re-read, no request, no lookup). Different: the old thread
//! is told to stop and a new one starts with a new generation; the coordinator keeps the
//! old generation's groups until the new one's first update arrives and ignores anything
//! the old generation still sends. Gone: the thread stops and the slot is reported so its
//! groups are dropped.

pub mod dns;
pub mod file;
pub mod http;

use crate::config::{Config, DnsSdConfig, FileSdConfig, HttpSdConfig, StaticConfig};
use crate::labels::{LabelSet, ADDRESS};
use crate::metrics::{Counter, Gauge, RecentSummary, Registry};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A set of targets sharing labels, as a discovery provider reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
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
    /// Which provider of the job sent it (its slot, e.g. `file_sd_configs/0`); a later
    /// update from it replaces the earlier one.
    pub provider: String,
    /// Which start of that provider sent it; see [`Manager::is_current`].
    pub generation: u64,
    pub groups: Vec<TargetGroup>,
}

/// The coordinator's provider name for a job's `static_configs`.
pub const STATIC_PROVIDER: &str = "static";

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

/// Number of targets in `groups` (what `prometheus_sd_discovered_targets` counts).
pub fn target_count<'a>(groups: impl IntoIterator<Item = &'a TargetGroup>) -> usize {
    groups.into_iter().map(|g| g.targets.len()).sum()
}

/// A provider's configuration, compared on reload to decide whether it restarts.
#[derive(Debug, Clone, PartialEq)]
pub enum SdConfig {
    File(FileSdConfig),
    Http(Box<HttpSdConfig>),
    Dns(DnsSdConfig),
}

impl SdConfig {
    /// The config key, also Prometheus's `mechanism` label value.
    fn mechanism(&self) -> &'static str {
        match self {
            SdConfig::File(_) => "file",
            SdConfig::Http(_) => "http",
            SdConfig::Dns(_) => "dns",
        }
    }
}

/// Every provider a config asks for: (job, slot) → config.
fn wanted(config: &Config) -> BTreeMap<(String, String), SdConfig> {
    let mut out = BTreeMap::new();
    for job in &config.scrape_configs {
        let name = &job.job_name;
        let mut add = |key: &str, i: usize, c: SdConfig| {
            out.insert((name.clone(), format!("{key}/{i}")), c);
        };
        for (i, c) in job.file_sd_configs.iter().enumerate() {
            add("file_sd_configs", i, SdConfig::File(c.clone()));
        }
        for (i, c) in job.http_sd_configs.iter().enumerate() {
            add("http_sd_configs", i, SdConfig::Http(Box::new(c.clone())));
        }
        for (i, c) in job.dns_sd_configs.iter().enumerate() {
            add("dns_sd_configs", i, SdConfig::Dns(c.clone()));
        }
    }
    out
}

/// Discovery's self-metrics, named as Prometheus names them (`name` is the discovery
/// manager's name, always "scrape" here).
pub struct SdMetrics {
    registry: Arc<Registry>,
    /// Updates the providers produced (changed views), sent or not yet.
    pub received_updates: Arc<Counter>,
    /// Sends that found the coordinator's channel full and were retried.
    pub delayed_updates: Arc<Counter>,
    /// Target-group sets the coordinator applied to its pools.
    pub updates: Arc<Counter>,
    /// Providers that could not be started.
    pub failed_configs: Arc<Gauge>,
    pub file_read_errors: Arc<Counter>,
    pub file_scan_duration: Arc<RecentSummary>,
    pub http_failures: Arc<Counter>,
    pub dns_lookups: Arc<Counter>,
    pub dns_lookup_failures: Arc<Counter>,
}

const MANAGER_NAME: &str = "scrape";

impl SdMetrics {
    pub fn new(registry: &Arc<Registry>) -> Arc<SdMetrics> {
        let n: &[(&str, &str)] = &[("name", MANAGER_NAME)];
        Arc::new(SdMetrics {
            registry: registry.clone(),
            received_updates: registry.counter(
                "prometheus_sd_received_updates_total",
                "Total number of update events received from the SD providers.",
                n,
            ),
            delayed_updates: registry.counter(
                "prometheus_sd_updates_delayed_total",
                "Total number of update events that couldn't be sent immediately.",
                n,
            ),
            updates: registry.counter(
                "prometheus_sd_updates_total",
                "Total number of update events sent to the SD consumers.",
                n,
            ),
            failed_configs: registry.gauge(
                "prometheus_sd_failed_configs",
                "Current number of service discovery configurations that failed to load.",
                n,
            ),
            file_read_errors: registry.counter(
                "prometheus_sd_file_read_errors_total",
                "The number of File-SD read errors.",
                &[],
            ),
            file_scan_duration: registry.summary(
                "prometheus_sd_file_scan_duration_seconds",
                "The duration of the File-SD scan in seconds.",
                &[],
            ),
            http_failures: registry.counter(
                "prometheus_sd_http_failures_total",
                "Number of HTTP service discovery refresh failures.",
                &[],
            ),
            dns_lookups: registry.counter(
                "prometheus_sd_dns_lookups_total",
                "The number of DNS-SD lookups.",
                &[],
            ),
            dns_lookup_failures: registry.counter(
                "prometheus_sd_dns_lookup_failures_total",
                "The number of DNS-SD lookup failures.",
                &[],
            ),
        })
    }

    /// `prometheus_sd_discovered_targets{config=<job>,name="scrape"}`.
    pub fn discovered_targets(&self, job: &str) -> Arc<Gauge> {
        self.registry.gauge(
            "prometheus_sd_discovered_targets",
            "Current number of discovered targets.",
            &[("config", job), ("name", MANAGER_NAME)],
        )
    }

    /// Forgets the per-job series of a job that went away.
    pub fn forget_job(&self, job: &str) {
        self.registry.remove_labelled("config", job);
    }

    fn refresh_failures(&self, mechanism: &str) -> Arc<Counter> {
        self.registry.counter(
            "prometheus_sd_refresh_failures_total",
            "Number of refresh failures for the given SD mechanism.",
            &[("mechanism", mechanism)],
        )
    }

    fn refresh_duration(&self, mechanism: &str) -> Arc<RecentSummary> {
        self.registry.summary(
            "prometheus_sd_refresh_duration_seconds",
            "The duration of a refresh for the given SD mechanism.",
            &[("mechanism", mechanism)],
        )
    }

    /// `prometheus_sd_file_mtime_seconds{filename}`: set when a file is read.
    fn file_mtime(&self, filename: &str) -> Arc<Gauge> {
        self.registry.gauge(
            "prometheus_sd_file_mtime_seconds",
            "Timestamp (mtime) of files read by FileSD. Timestamp is set at read time.",
            &[("filename", filename)],
        )
    }

    fn forget_file(&self, filename: &str) {
        self.registry.remove_labelled("filename", filename);
    }
}

/// Where a provider's view goes: the coordinator's channel, without ever blocking.
///
/// Keeps at most one unsent view (a newer one replaces it) and the hash of the last view
/// sent, so an unchanged view is not sent again.
struct Outbox {
    tx: Sender<Update>,
    job: String,
    provider: String,
    generation: u64,
    metrics: Arc<SdMetrics>,
    pending: Option<Vec<TargetGroup>>,
    last_sent: Option<u64>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

/// Backoff bounds for a full coordinator channel (Prometheus's discovery manager retries
/// on a 5 s tick; starting lower keeps a short burst from delaying targets that long).
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

fn groups_hash(groups: &[TargetGroup]) -> u64 {
    let mut h = DefaultHasher::new();
    groups.hash(&mut h);
    h.finish()
}

impl Outbox {
    /// Takes `groups` as the provider's full view and sends it if it changed.
    fn offer(&mut self, groups: Vec<TargetGroup>) {
        if self.pending.is_none() && self.last_sent == Some(groups_hash(&groups)) {
            return;
        }
        self.metrics.received_updates.inc();
        self.pending = Some(groups);
        self.flush();
    }

    /// Tries to send the pending view, if any.
    fn flush(&mut self) {
        let Some(groups) = self.pending.take() else {
            return;
        };
        let hash = groups_hash(&groups);
        let update = Update {
            job: self.job.clone(),
            provider: self.provider.clone(),
            generation: self.generation,
            groups,
        };
        match self.tx.try_send(update) {
            Ok(()) => {
                self.last_sent = Some(hash);
                self.retry_at = None;
                self.backoff = RETRY_MIN;
            }
            Err(TrySendError::Full(u)) => {
                self.metrics.delayed_updates.inc();
                self.pending = Some(u.groups);
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(RETRY_MAX);
            }
            // The coordinator is gone: shutdown is under way and the stop channel is
            // about to disconnect too.
            Err(TrySendError::Disconnected(_)) => self.retry_at = None,
        }
    }
}

/// What a provider does at each step: refresh (or poll) and say when to come back.
trait Provider: Send {
    /// Returns the full current view when the provider has one worth sending (`None`:
    /// nothing new, or a failure that keeps the last view), and the time until the next
    /// step. The first step must return a view, empty if it failed.
    fn step(&mut self) -> (Option<Vec<TargetGroup>>, Duration);
}

/// A provider thread's loop: step when due, retry a delayed send when due, and sleep on
/// the stop channel in between.
fn drive(mut provider: Box<dyn Provider>, mut outbox: Outbox, stop: Receiver<()>) {
    let mut next_step = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_step {
            let (view, wait) = provider.step();
            if let Some(groups) = view {
                outbox.offer(groups);
            }
            next_step = Instant::now() + wait;
        }
        if outbox.retry_at.is_some_and(|t| Instant::now() >= t) {
            outbox.flush();
        }
        let wake = outbox.retry_at.map_or(next_step, |t| t.min(next_step));
        match stop.recv_deadline(wake) {
            Err(RecvTimeoutError::Timeout) => {}
            // A message or a dropped sender: stop.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

struct Running {
    config: SdConfig,
    generation: u64,
    /// Dropping it stops the thread.
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

/// Starts, keeps and stops the provider threads of the running config. Owned by the
/// coordinator, used only from its thread.
pub struct Manager {
    tx: Sender<Update>,
    metrics: Arc<SdMetrics>,
    running: BTreeMap<(String, String), Running>,
    /// Threads told to stop and not yet seen to exit.
    stopping: Vec<JoinHandle<()>>,
    next_generation: u64,
    /// Slots whose provider could not be started (retried on the next apply).
    failed: BTreeSet<(String, String)>,
}

impl Manager {
    pub fn new(tx: Sender<Update>, metrics: Arc<SdMetrics>) -> Manager {
        Manager {
            tx,
            metrics,
            running: BTreeMap::new(),
            stopping: Vec::new(),
            next_generation: 1,
            failed: BTreeSet::new(),
        }
    }

    pub fn metrics(&self) -> &Arc<SdMetrics> {
        &self.metrics
    }

    /// Makes the running providers match `config`: unchanged ones keep running, changed
    /// ones restart, missing ones start, and the rest stop. Returns the (job, slot) pairs
    /// that no longer exist, whose groups the caller must drop.
    pub fn apply(&mut self, config: &Config) -> Vec<(String, String)> {
        let wanted = wanted(config);
        let mut gone = Vec::new();
        let slots: Vec<(String, String)> = self.running.keys().cloned().collect();
        for slot in slots {
            match wanted.get(&slot) {
                Some(c) if self.running.get(&slot).is_some_and(|r| &r.config == c) => {}
                still_there => {
                    if let Some(r) = self.running.remove(&slot) {
                        drop(r.stop);
                        self.stopping.push(r.thread);
                    }
                    if still_there.is_none() {
                        gone.push(slot);
                    }
                }
            }
        }
        self.failed.retain(|slot| wanted.contains_key(slot));
        for (slot, config) in wanted {
            if self.running.contains_key(&slot) {
                continue;
            }
            match self.start(&slot.0, &slot.1, config) {
                Ok(r) => {
                    self.failed.remove(&slot);
                    self.running.insert(slot, r);
                }
                Err(e) => {
                    crate::error!(
                        "cannot start service discovery",
                        job = slot.0,
                        provider = slot.1,
                        err = e
                    );
                    self.failed.insert(slot);
                }
            }
        }
        self.metrics.failed_configs.set(self.failed.len() as f64);
        self.reap();
        gone
    }

    /// Whether `update` comes from the provider currently running in its slot; updates
    /// from a stopped (replaced) provider must be ignored.
    pub fn is_current(&self, update: &Update) -> bool {
        self.running
            .get(&(update.job.clone(), update.provider.clone()))
            .is_some_and(|r| r.generation == update.generation)
    }

    fn start(&mut self, job: &str, slot: &str, config: SdConfig) -> std::io::Result<Running> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let mechanism = config.mechanism();
        let ctx = ProviderContext {
            job: job.to_string(),
            metrics: self.metrics.clone(),
            refresh_failures: self.metrics.refresh_failures(mechanism),
            refresh_duration: self.metrics.refresh_duration(mechanism),
        };
        let provider: Box<dyn Provider> = match &config {
            SdConfig::File(c) => Box::new(file::FileProvider::new(c.clone(), ctx)),
            SdConfig::Http(c) => Box::new(http::HttpProvider::new((**c).clone(), ctx)),
            SdConfig::Dns(c) => Box::new(dns::DnsProvider::new(c.clone(), ctx)),
        };
        let outbox = Outbox {
            tx: self.tx.clone(),
            job: job.to_string(),
            provider: slot.to_string(),
            generation,
            metrics: self.metrics.clone(),
            pending: None,
            last_sent: None,
            retry_at: None,
            backoff: RETRY_MIN,
        };
        let (stop_tx, stop_rx) = bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name(format!("sw-sd-{mechanism}-{}", generation % 1000))
            .spawn(move || drive(provider, outbox, stop_rx))?;
        crate::debug!(
            "service discovery started",
            job = job,
            provider = slot,
            generation = generation
        );
        Ok(Running {
            config,
            generation,
            stop: stop_tx,
            thread,
        })
    }

    /// Forgets stopped threads that have exited.
    fn reap(&mut self) {
        self.stopping.retain(|t| !t.is_finished());
    }

    /// Stops every provider and waits for them up to `deadline` from now; threads still
    /// busy then (a request or lookup in progress) are left to finish on their own.
    pub fn stop(mut self, deadline: Duration) {
        let until = Instant::now() + deadline;
        for (_, r) in std::mem::take(&mut self.running) {
            drop(r.stop);
            self.stopping.push(r.thread);
        }
        while !self.stopping.is_empty() && Instant::now() < until {
            self.reap();
            std::thread::sleep(Duration::from_millis(5));
        }
        for t in self.stopping.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// What every provider needs besides its config.
struct ProviderContext {
    job: String,
    metrics: Arc<SdMetrics>,
    refresh_failures: Arc<Counter>,
    refresh_duration: Arc<RecentSummary>,
}

/// The target-group document of file_sd and http_sd: a list of
/// `{"targets": [...], "labels": {...}}`, as Prometheus reads it (unknown keys are errors).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    targets: Vec<ScalarText>,
    #[serde(default)]
    labels: BTreeMap<LabelName, ScalarText>,
}

/// scrapewheel's TOML target file: `[[groups]]` tables with `targets` and `labels` (TOML
/// cannot have a list at the top level).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlGroups {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

/// A label name: any non-empty string (Prometheus 3's UTF-8 names). Checked while
/// deserializing so the error carries the parser's position.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct LabelName(String);

impl<'de> serde::Deserialize<'de> for LabelName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Err(serde::de::Error::custom("empty label name"));
        }
        Ok(LabelName(s))
    }
}

/// A string; in YAML and TOML a number or boolean is taken as its text too, as Go's
/// yaml.v2 does for string fields (so `port: 9100` works).
struct ScalarText(String);

impl<'de> serde::Deserialize<'de> for ScalarText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ScalarText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The formats a target-group document can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    Toml,
}

/// Why a target-group document could not be decoded: the parser's message and, when it
/// knows one, the position (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{l}:{c}: {}", self.message),
            (Some(l), None) => write!(f, "{l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// 1-based (line, column) of byte `offset` in `text`.
fn line_column(text: &[u8], offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = before.len()
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    (line, col)
}

/// Decodes a target-group document. Each group's `source` is `<source_prefix>:<index>`
/// and `meta` (e.g. `__meta_filepath`) is added to each group's labels.
fn decode_groups(
    text: &[u8],
    format: Format,
    source_prefix: &str,
    meta: (&str, &str),
) -> Result<Vec<TargetGroup>, DecodeError> {
    let raw: Vec<RawGroup> = match format {
        Format::Json => serde_json::from_slice(text).map_err(|e| DecodeError {
            line: Some(e.line()).filter(|l| *l > 0),
            column: Some(e.column()).filter(|_| e.line() > 0),
            message: strip_position(&e.to_string()),
        })?,
        Format::Yaml => {
            let text = std::str::from_utf8(text).map_err(|e| {
                let (l, c) = line_column(text, e.valid_up_to());
                DecodeError {
                    line: Some(l),
                    column: Some(c),
                    message: "invalid UTF-8".to_string(),
                }
            })?;
            // An empty document (or only comments) is an empty list, as in Go's yaml.v2.
            let doc: Option<Vec<RawGroup>> = yaml_serde::from_str(text).map_err(|e| {
                let loc = e.location();
                DecodeError {
                    line: loc.as_ref().map(|l| l.line()),
                    column: loc.as_ref().map(|l| l.column()),
                    message: strip_position(&e.to_string()),
                }
            })?;
            doc.unwrap_or_default()
        }
        Format::Toml => {
            let text = std::str::from_utf8(text).map_err(|e| {
                let (l, c) = line_column(text, e.valid_up_to());
                DecodeError {
                    line: Some(l),
                    column: Some(c),
                    message: "invalid UTF-8".to_string(),
                }
            })?;
            let doc: TomlGroups = toml::from_str(text).map_err(|e| {
                let pos = e.span().map(|s| line_column(text.as_bytes(), s.start));
                DecodeError {
                    line: pos.map(|p| p.0),
                    column: pos.map(|p| p.1),
                    message: e.message().to_string(),
                }
            })?;
            doc.groups
        }
    };
    Ok(raw
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let mut labels = LabelSet::from_pairs(g.labels.into_iter().map(|(k, v)| (k.0, v.0)));
            labels.set(meta.0, meta.1);
            TargetGroup {
                source: format!("{source_prefix}:{i}"),
                targets: g
                    .targets
                    .into_iter()
                    .map(|t| LabelSet::from_pairs([(ADDRESS, t.0)]))
                    .collect(),
                labels,
            }
        })
        .collect())
}

/// serde_json and yaml_serde append " at line L column C" to their messages; the
/// position is reported separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
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
        assert_eq!(target_count(&groups), 3);
    }

    fn outbox(tx: Sender<Update>, metrics: Arc<SdMetrics>) -> Outbox {
        Outbox {
            tx,
            job: "j".into(),
            provider: "file_sd_configs/0".into(),
            generation: 1,
            metrics,
            pending: None,
            last_sent: None,
            retry_at: None,
            backoff: RETRY_MIN,
        }
    }

    fn group(addr: &str) -> Vec<TargetGroup> {
        vec![TargetGroup {
            source: "s:0".into(),
            targets: vec![LabelSet::from_pairs([(ADDRESS, addr)])],
            labels: LabelSet::new(),
        }]
    }

    #[test]
    fn outbox_never_blocks_coalesces_and_skips_unchanged_views() {
        let metrics = SdMetrics::new(&Registry::new());
        let (tx, rx) = bounded(1);
        let mut o = outbox(tx, metrics.clone());
        o.offer(group("a:1"));
        assert!(o.pending.is_none() && o.retry_at.is_none());
        o.offer(group("b:1")); // channel full: kept, retried later
        o.offer(group("c:1")); // replaces b
        assert_eq!(metrics.delayed_updates.get(), 2);
        assert!(o.retry_at.is_some());
        assert_eq!(rx.recv().expect("a").groups, group("a:1"));
        o.flush();
        assert_eq!(
            rx.recv().expect("c").groups,
            group("c:1"),
            "b was coalesced away"
        );
        assert!(o.retry_at.is_none());
        o.offer(group("c:1"));
        assert!(
            rx.try_recv().is_err(),
            "an unchanged view is not sent again"
        );
        assert_eq!(metrics.received_updates.get(), 3);
        drop(rx);
        o.offer(group("d:1")); // the coordinator is gone: dropped, no retry
        assert!(o.retry_at.is_none());
    }

    fn file_config(dir: &std::path::Path, jobs: &[(&str, &str)]) -> Config {
        let mut text = String::new();
        for (job, pattern) in jobs {
            text.push_str(&format!(
                "[[scrape_configs]]\njob_name = \"{job}\"\n[[scrape_configs.file_sd_configs]]\nfiles = [\"{pattern}\"]\n"
            ));
        }
        Config::from_str(&text, &dir.join("c.toml")).expect("config")
    }

    #[test]
    fn manager_restarts_only_changed_providers_and_fences_old_generations() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.json"), r#"[{"targets": ["a:1"]}]"#).expect("a");
        let (tx, rx) = bounded(16);
        let mut m = Manager::new(tx, SdMetrics::new(&Registry::new()));
        let recv =
            |rx: &Receiver<Update>| rx.recv_timeout(Duration::from_secs(10)).expect("an update");

        assert!(m
            .apply(&file_config(
                dir.path(),
                &[("x", "*.json"), ("y", "*.json")]
            ))
            .is_empty());
        let (u1, u2) = (recv(&rx), recv(&rx));
        assert!(m.is_current(&u1) && m.is_current(&u2));
        assert_eq!(target_count(&u1.groups), 1);

        // Same config: nothing restarts, nothing is sent.
        assert!(m
            .apply(&file_config(
                dir.path(),
                &[("x", "*.json"), ("y", "*.json")]
            ))
            .is_empty());
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());

        // y's pattern changes: only y restarts, with a new generation; x goes away.
        let gone = m.apply(&file_config(dir.path(), &[("y", "a.json")]));
        assert_eq!(gone, [("x".to_string(), "file_sd_configs/0".to_string())]);
        let u3 = recv(&rx);
        assert_eq!(u3.job, "y");
        assert!(u3.generation > u2.generation);
        assert!(m.is_current(&u3));
        let old_y = if u1.job == "y" { &u1 } else { &u2 };
        assert!(!m.is_current(old_y), "the replaced provider is fenced off");
        m.stop(Duration::from_secs(5));
    }

    const META: (&str, &str) = ("__meta_filepath", "/sd/x");

    #[test]
    fn the_three_formats_decode_alike() {
        let json =
            br#"[{"targets": ["a:1", "b:2"], "labels": {"env": "prod"}}, {"targets": ["c:3"]}]"#;
        let yaml =
            b"# comment\n- targets: [a:1, b:2]\n  labels:\n    env: prod\n- targets:\n  - c:3\n";
        let toml = b"[[groups]]\ntargets = [\"a:1\", \"b:2\"]\nlabels = { env = \"prod\" }\n[[groups]]\ntargets = [\"c:3\"]\n";
        let want = decode_groups(json, Format::Json, "/sd/x", META).expect("json");
        assert_eq!(want.len(), 2);
        assert_eq!(want[0].source, "/sd/x:0");
        assert_eq!(want[1].source, "/sd/x:1");
        assert_eq!(want[0].labels.get("env"), Some("prod"));
        assert_eq!(want[1].labels.get("__meta_filepath"), Some("/sd/x"));
        assert_eq!(want[0].targets[1].get(ADDRESS), Some("b:2"));
        assert_eq!(
            decode_groups(yaml, Format::Yaml, "/sd/x", META).expect("yaml"),
            want
        );
        assert_eq!(
            decode_groups(toml, Format::Toml, "/sd/x", META).expect("toml"),
            want
        );
    }

    #[test]
    fn yaml_scalars_are_label_text_and_empty_documents_are_empty() {
        let g = decode_groups(
            b"- targets: ['h:1']\n  labels: {port: 9100, up: true}\n",
            Format::Yaml,
            "s",
            META,
        )
        .expect("yaml");
        assert_eq!(g[0].labels.get("port"), Some("9100"));
        assert_eq!(g[0].labels.get("up"), Some("true"));
        assert_eq!(
            decode_groups(b"# nothing yet\n", Format::Yaml, "s", META),
            Ok(vec![])
        );
        assert_eq!(decode_groups(b"[]", Format::Json, "s", META), Ok(vec![]));
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = decode_groups(
            b"[\n  {\"targets\": [\"a:1\"],\n   \"lables\": {}}\n]",
            Format::Json,
            "s",
            META,
        )
        .expect_err("unknown key");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("unknown field `lables`"), "{e}");
        assert!(!e.message.contains(" at line "), "{e}");

        let e = decode_groups(
            b"- targets: [a:1]\n- targets: [b:1]\n  labels: {\"\": x}\n",
            Format::Yaml,
            "s",
            META,
        )
        .expect_err("empty label name");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("empty label name"), "{e}");

        let e = decode_groups(b"- targets: [a:1]\n  labels: [x\n", Format::Yaml, "s", META)
            .expect_err("syntax");
        assert!(e.line.is_some(), "{e}");

        let e = decode_groups(
            b"[[groups]]\ntargets = [\"a:1\"]\n\n[[groups]]\ntargets = 3\n",
            Format::Toml,
            "s",
            META,
        )
        .expect_err("type");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.to_string().starts_with("5:"), "{e}");

        let e = decode_groups(b"[null]", Format::Json, "s", META).expect_err("null group");
        assert_eq!(e.line, Some(1), "{e}");
    }
}
