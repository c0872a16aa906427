//! Targets: label population from a discovered group (exactly as Prometheus's
//! `PopulateLabels`), the scrape URL, the stable target hash, and the shared `Target`
//! handle that the pool, the wheel and the workers hold.
//!
//! A `Target` is immutable once built except for its scrape memory (`state`, touched only
//! by the one worker scraping it) and its health (read by the web thread). A changed
//! target is a new `Target`.

use crate::config::ScrapeConfig;
use crate::labels::{
    LabelSet, ADDRESS, META_PREFIX, METRICS_PATH, PARAM_PREFIX, SCHEME, SCRAPE_INTERVAL,
    SCRAPE_TIMEOUT,
};
use crate::relabel;
use crate::scrape::Auth;
use crate::worker::state::ScrapeState;
use parking_lot::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Why a discovered target could not become a target. Logged and counted per job.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("no address")]
    NoAddress,
    #[error("{address} is not a valid hostname")]
    InvalidAddress { address: String },
    /// `user:password@host:port`: the address would carry a secret into the `instance`
    /// label, the API and every error; credentials belong in basic_auth/authorization.
    #[error("address {host:?} holds credentials (user:password@); set basic_auth or authorization in the job instead")]
    CredentialsInAddress { host: String },
    #[error("error parsing scrape interval {value:?}: {reason}")]
    BadInterval { value: String, reason: String },
    #[error("error parsing scrape timeout {value:?}: {reason}")]
    BadTimeout { value: String, reason: String },
    #[error("scrape interval cannot be 0")]
    ZeroInterval,
    #[error("scrape timeout cannot be 0")]
    ZeroTimeout,
    #[error("scrape timeout cannot be greater than scrape interval ({timeout} > {interval})")]
    TimeoutOverInterval { timeout: String, interval: String },
    #[error("unsupported scheme {scheme:?}")]
    BadScheme { scheme: String },
}

/// The outcome of populating one discovered target.
#[derive(Debug)]
pub enum Populated {
    /// A target to scrape: its internal labels (incl. `__address__` etc.) and the labels
    /// as discovered (for the API).
    Active {
        labels: LabelSet,
        discovered: LabelSet,
    },
    /// Relabeling dropped it.
    Dropped { discovered: LabelSet },
}

/// Builds a target's labels from a group entry, as Prometheus does: group labels fill in
/// what the target lacks, job-level defaults fill in what discovery left empty, then
/// relabel_configs run, then `__meta_*` go and `instance` defaults to `__address__`.
pub fn populate(
    target: &LabelSet,
    group_labels: &LabelSet,
    cfg: &ScrapeConfig,
) -> Result<Populated, TargetError> {
    let mut lb = target.clone();
    for l in group_labels {
        if !lb.contains(&l.name) {
            lb.set(l.name.clone(), l.value.clone());
        }
    }
    lb.set_if_absent("job", cfg.job_name.as_str());
    lb.set_if_absent(
        SCRAPE_INTERVAL,
        crate::config::format_duration(cfg.scrape_interval),
    );
    lb.set_if_absent(
        SCRAPE_TIMEOUT,
        crate::config::format_duration(cfg.scrape_timeout),
    );
    lb.set_if_absent(METRICS_PATH, cfg.metrics_path.as_str());
    lb.set_if_absent(SCHEME, cfg.scheme.as_str());
    for (k, vals) in &cfg.params {
        if let Some(first) = vals.first() {
            lb.set_if_absent(&format!("{PARAM_PREFIX}{k}"), first.as_str());
        }
    }
    let discovered = lb.clone();
    if !relabel::process(&cfg.relabel_configs, &mut lb) {
        return Ok(Populated::Dropped { discovered });
    }
    let address = lb.get_or_empty(ADDRESS);
    if address.is_empty() {
        return Err(TargetError::NoAddress);
    }
    // Before the '/' check, whose error would print the whole address.
    if let Some((_, host)) = address.rsplit_once('@') {
        return Err(TargetError::CredentialsInAddress {
            host: host.to_string(),
        });
    }
    if address.contains('/') {
        return Err(TargetError::InvalidAddress {
            address: address.to_string(),
        });
    }
    let scheme = lb.get_or_empty(SCHEME);
    if scheme != "http" && scheme != "https" {
        return Err(TargetError::BadScheme {
            scheme: scheme.to_string(),
        });
    }
    let interval = parse_label_duration(&lb, SCRAPE_INTERVAL)
        .map_err(|(value, reason)| TargetError::BadInterval { value, reason })?;
    let timeout = parse_label_duration(&lb, SCRAPE_TIMEOUT)
        .map_err(|(value, reason)| TargetError::BadTimeout { value, reason })?;
    if interval.is_zero() {
        return Err(TargetError::ZeroInterval);
    }
    if timeout.is_zero() {
        return Err(TargetError::ZeroTimeout);
    }
    if timeout > interval {
        return Err(TargetError::TimeoutOverInterval {
            timeout: lb.get_or_empty(SCRAPE_TIMEOUT).to_string(),
            interval: lb.get_or_empty(SCRAPE_INTERVAL).to_string(),
        });
    }
    lb.retain(|l| !l.name.starts_with(META_PREFIX));
    if lb.get("instance").is_none() {
        let addr = lb.get_or_empty(ADDRESS).to_string();
        lb.set("instance", addr);
    }
    Ok(Populated::Active {
        labels: lb,
        discovered,
    })
}

fn parse_label_duration(lb: &LabelSet, name: &str) -> Result<Duration, (String, String)> {
    let v = lb.get_or_empty(name);
    crate::config::parse_duration(v).map_err(|e| (v.to_string(), e.to_string()))
}

/// `scheme://address/path?query`, where the query is the job's params with the first value
/// of each key replaced by the target's `__param_<key>` label, sorted by key.
pub fn scrape_url(labels: &LabelSet, cfg: &ScrapeConfig) -> String {
    let mut params: Vec<(String, Vec<String>)> = cfg.params.clone();
    for l in labels {
        if let Some(key) = l.name.strip_prefix(PARAM_PREFIX) {
            match params.iter_mut().find(|(k, _)| k == key) {
                Some((_, vals)) if !vals.is_empty() => vals[0] = l.value.clone(),
                Some((_, vals)) => vals.push(l.value.clone()),
                None => params.push((key.to_string(), vec![l.value.clone()])),
            }
        }
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let address = labels.get_or_empty(ADDRESS);
    let path = labels.get_or_empty(METRICS_PATH);
    let mut url = format!("{}://{address}", labels.get_or_empty(SCHEME));
    // As Go's url.URL.String(): a path that does not start with '/' gets one.
    if !path.is_empty() && !path.starts_with('/') && !address.is_empty() {
        url.push('/');
    }
    path_escape(&mut url, path);
    let mut first = true;
    for (k, vals) in &params {
        for v in vals {
            url.push(if first { '?' } else { '&' });
            first = false;
            query_escape(&mut url, k);
            url.push('=');
            query_escape(&mut url, v);
        }
    }
    url
}

fn percent(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

/// Go's `url.QueryEscape`: unreserved bytes stay, space becomes `+`, the rest `%XX`.
fn query_escape(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => percent(out, b),
        }
    }
}

/// Go's `url.URL.EscapedPath` for a path given unescaped (`__metrics_path__`): unreserved
/// bytes and `$&+,/:;=@` stay, everything else (space, `%`, `?`, non-ASCII) becomes `%XX`.
fn path_escape(out: &mut String, path: &str) {
    if path == "*" {
        out.push('*');
        return;
    }
    for b in path.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'$'
            | b'&'
            | b'+'
            | b','
            | b'/'
            | b':'
            | b';'
            | b'='
            | b'@' => out.push(b as char),
            b => percent(out, b),
        }
    }
}

/// The stable identity of a target within its job: a hash of every internal label and the
/// URL. Stable across restarts and versions, because it also sets the target's phase.
pub fn target_hash(labels: &LabelSet, url: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for l in labels {
        h.update(l.name.as_bytes());
        h.update(&[0xff]);
        h.update(l.value.as_bytes());
        h.update(&[0xff]);
    }
    h.update(url.as_bytes());
    h.digest()
}

/// What every target of a job shares: the job's config and what is derived from it once.
#[derive(Debug)]
pub struct JobContext {
    pub config: Arc<ScrapeConfig>,
    /// The Accept header built from scrape_protocols.
    pub accept: String,
    pub auth: Option<Auth>,
    /// The job's own client when its tls_config or proxy_url need one; `None` uses the
    /// workers' shared client.
    pub client: Option<crate::scrape::HttpClient>,
    /// Why the job's tls_config or proxy_url could not be used: its scrapes fail with it.
    pub transport_error: Option<String>,
}

/// What the API shows about a target's last scrape.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// None until the first scrape finishes.
    pub up: Option<bool>,
    pub last_scrape_ms: i64,
    pub last_duration_s: f64,
    pub last_error: String,
    pub last_samples: u64,
}

/// A target being scraped.
#[derive(Debug)]
pub struct Target {
    /// Identity within the job.
    pub hash: u64,
    /// Identity across jobs: the wheel key.
    pub key: u64,
    pub job: Arc<JobContext>,
    pub url: String,
    /// Internal labels after relabeling (`__address__`, `__param_*`, … and the public ones).
    pub labels: LabelSet,
    /// Labels before relabeling, for the API.
    pub discovered: LabelSet,
    pub interval: Duration,
    pub timeout: Duration,
    /// The labels put on every series: the public part of `labels`.
    pub series_labels: LabelSet,
    /// Set while a worker holds the target; the wheel skips a due slot while it is set.
    pub in_flight: AtomicBool,
    /// target_limit breach: scrapes fail with this error and make no request.
    pub forced_error: Mutex<Option<String>>,
    pub state: Mutex<ScrapeState>,
    pub health: Mutex<Health>,
}

impl Target {
    pub fn new(job: Arc<JobContext>, labels: LabelSet, discovered: LabelSet) -> Target {
        let cfg = &job.config;
        let url = scrape_url(&labels, cfg);
        let hash = target_hash(&labels, &url);
        let key = {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(cfg.job_name.as_bytes());
            h.update(&hash.to_le_bytes());
            h.digest()
        };
        // populate() has validated both durations already.
        let interval = crate::config::parse_duration(labels.get_or_empty(SCRAPE_INTERVAL))
            .unwrap_or(cfg.scrape_interval);
        let timeout = crate::config::parse_duration(labels.get_or_empty(SCRAPE_TIMEOUT))
            .unwrap_or(cfg.scrape_timeout);
        let series_labels = labels.public();
        let state = ScrapeState::new(&series_labels);
        Target {
            hash,
            key,
            url,
            interval,
            timeout,
            series_labels,
            labels,
            discovered,
            job,
            in_flight: AtomicBool::new(false),
            forced_error: Mutex::new(None),
            state: Mutex::new(state),
            health: Mutex::new(Health::default()),
        }
    }

    pub fn job_name(&self) -> &str {
        &self.job.config.job_name
    }

    /// The URL with any credentials removed, for logs and the API.
    pub fn display_url(&self) -> std::borrow::Cow<'_, str> {
        crate::log::redact_url(&self.url)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    pub(crate) fn job(extra: &str) -> Arc<ScrapeConfig> {
        let text = format!(
            "[[scrape_configs]]\njob_name = \"j\"\nscrape_interval = \"15s\"\nscrape_timeout = \"5s\"\n{extra}"
        );
        let cfg = Config::from_str(&text, Path::new("test.toml")).expect("valid test config");
        cfg.scrape_configs[0].clone()
    }

    fn addr(a: &str) -> LabelSet {
        LabelSet::from_pairs([(ADDRESS, a)])
    }

    fn active(p: Populated) -> LabelSet {
        match p {
            Populated::Active { labels, .. } => labels,
            Populated::Dropped { .. } => panic!("dropped"),
        }
    }

    #[test]
    fn defaults_are_filled_in() {
        let cfg = job("");
        let l = active(populate(&addr("h:9100"), &LabelSet::new(), &cfg).expect("ok"));
        assert_eq!(l.get("job"), Some("j"));
        assert_eq!(l.get("instance"), Some("h:9100"));
        assert_eq!(l.get(SCRAPE_INTERVAL), Some("15s"));
        assert_eq!(l.get(SCRAPE_TIMEOUT), Some("5s"));
        assert_eq!(l.get(METRICS_PATH), Some("/metrics"));
        assert_eq!(l.get(SCHEME), Some("http"));
        assert_eq!(scrape_url(&l, &cfg), "http://h:9100/metrics");
    }

    #[test]
    fn target_labels_beat_group_labels_and_discovery_beats_defaults() {
        let cfg = job("");
        let t = LabelSet::from_pairs([(ADDRESS, "h:1"), ("env", "t"), ("job", "custom")]);
        let g = LabelSet::from_pairs([("env", "g"), ("dc", "x")]);
        let l = active(populate(&t, &g, &cfg).expect("ok"));
        assert_eq!(l.get("env"), Some("t"));
        assert_eq!(l.get("dc"), Some("x"));
        assert_eq!(l.get("job"), Some("custom"));
    }

    #[test]
    fn meta_labels_are_removed_after_relabeling() {
        let cfg = job(
            "[[scrape_configs.relabel_configs]]\nsource_labels = [\"__meta_x\"]\ntarget_label = \"x\"\n",
        );
        let t = LabelSet::from_pairs([(ADDRESS, "h:1"), ("__meta_x", "v")]);
        let l = active(populate(&t, &LabelSet::new(), &cfg).expect("ok"));
        assert_eq!(l.get("x"), Some("v"));
        assert_eq!(l.get("__meta_x"), None);
    }

    #[test]
    fn params_become_param_labels_and_query() {
        let cfg = job("params = { module = [\"if_mib\", \"second\"], a = [\"x y\"] }\n");
        let l = active(populate(&addr("h:1"), &LabelSet::new(), &cfg).expect("ok"));
        assert_eq!(l.get("__param_module"), Some("if_mib"));
        assert_eq!(
            scrape_url(&l, &cfg),
            "http://h:1/metrics?a=x+y&module=if_mib&module=second"
        );
    }

    #[test]
    fn metrics_path_is_escaped_as_go_does() {
        let cfg = job("");
        let mut l = active(populate(&addr("h:1"), &LabelSet::new(), &cfg).expect("ok"));
        l.set(METRICS_PATH, "/a path/ü?%x$&+,:;=@~");
        assert_eq!(
            scrape_url(&l, &cfg),
            "http://h:1/a%20path/%C3%BC%3F%25x$&+,:;=@~"
        );
        l.set(METRICS_PATH, "no/slash");
        assert_eq!(scrape_url(&l, &cfg), "http://h:1/no/slash");
        l.set(METRICS_PATH, "");
        assert_eq!(scrape_url(&l, &cfg), "http://h:1");
    }

    #[test]
    fn relabeled_param_replaces_first_value() {
        let cfg = job(
            "params = { module = [\"a\"] }\n[[scrape_configs.relabel_configs]]\ntarget_label = \"__param_module\"\nreplacement = \"b\"\n[[scrape_configs.relabel_configs]]\ntarget_label = \"__param_extra\"\nreplacement = \"1\"\n",
        );
        let l = active(populate(&addr("h:1"), &LabelSet::new(), &cfg).expect("ok"));
        assert_eq!(scrape_url(&l, &cfg), "http://h:1/metrics?extra=1&module=b");
    }

    #[test]
    fn relabel_can_set_scheme_path_interval() {
        let cfg = job(
            "[[scrape_configs.relabel_configs]]\ntarget_label = \"__scheme__\"\nreplacement = \"https\"\n[[scrape_configs.relabel_configs]]\ntarget_label = \"__metrics_path__\"\nreplacement = \"/m\"\n[[scrape_configs.relabel_configs]]\ntarget_label = \"__scrape_interval__\"\nreplacement = \"30s\"\n",
        );
        let p = populate(&addr("h:1"), &LabelSet::new(), &cfg).expect("ok");
        let Populated::Active { labels, discovered } = p else {
            panic!("dropped")
        };
        assert_eq!(discovered.get(SCHEME), Some("http"));
        let t = Target::new(
            Arc::new(JobContext {
                config: cfg,
                accept: String::new(),
                auth: None,
                client: None,
                transport_error: None,
            }),
            labels,
            discovered,
        );
        assert_eq!(t.url, "https://h:1/m");
        assert_eq!(t.interval, Duration::from_secs(30));
        assert_eq!(t.timeout, Duration::from_secs(5));
    }

    #[test]
    fn errors_are_reported() {
        let cfg = job(
            "[[scrape_configs.relabel_configs]]\nsource_labels = [\"t\"]\ntarget_label = \"__scrape_timeout__\"\n",
        );
        let t = LabelSet::from_pairs([(ADDRESS, "h:1"), ("t", "20s")]);
        assert!(matches!(
            populate(&t, &LabelSet::new(), &cfg),
            Err(TargetError::TimeoutOverInterval { .. })
        ));
        let t = LabelSet::from_pairs([(ADDRESS, "h:1"), ("t", "zz")]);
        assert!(matches!(
            populate(&t, &LabelSet::new(), &cfg),
            Err(TargetError::BadTimeout { .. })
        ));
        let cfg = job("");
        assert_eq!(
            populate(&LabelSet::new(), &LabelSet::new(), &cfg).err(),
            Some(TargetError::NoAddress)
        );
    }

    #[test]
    fn drop_keeps_discovered_labels() {
        let cfg = job("[[scrape_configs.relabel_configs]]\naction = \"drop\"\nsource_labels = [\"__address__\"]\nregex = \"h:.*\"\n");
        match populate(&addr("h:1"), &LabelSet::new(), &cfg).expect("ok") {
            Populated::Dropped { discovered } => assert_eq!(discovered.get(ADDRESS), Some("h:1")),
            Populated::Active { .. } => panic!("should drop"),
        }
    }

    #[test]
    fn hash_is_stable_and_label_sensitive() {
        let a = LabelSet::from_pairs([(ADDRESS, "h:1"), ("job", "j")]);
        let b = LabelSet::from_pairs([(ADDRESS, "h:1"), ("job", "k")]);
        assert_eq!(target_hash(&a, "u"), target_hash(&a, "u"));
        assert_ne!(target_hash(&a, "u"), target_hash(&b, "u"));
        assert_ne!(target_hash(&a, "u"), target_hash(&a, "v"));
    }
}
