//! Configuration: the TOML file → a validated, resolved [`Config`].
//!
//! Two phases, like ripgrep's low-level and high-level args. `raw` mirrors the file key
//! for key (serde, `deny_unknown_fields`, positions kept on every value that is checked
//! later); `resolve` turns it into the types below: Prometheus's defaults and
//! inheritance from `[global]` applied (reference §1), durations and sizes parsed,
//! labels and URLs checked, relabel rules compiled, relative file paths joined with the
//! config file's directory. The keys mirror prometheus.yml so a user can translate a
//! Prometheus config by hand; `[engine]`, `[storage]`, `[web]` and `[cluster]` are
//! scrapewheel's own.
//!
//! Input: a path ([`Config::load`]) or text ([`Config::from_str`]). Output: a `Config`,
//! or one [`ConfigError`] naming the file, line, column and dotted key, e.g.
//! `scrapewheel.toml:14:18: scrape_configs[1].scrape_timeout: ...`.
//!
//! Loading has no side effects beyond reading the file and, for `$VAR` in
//! external_labels, the environment: it opens no sockets, creates no directories and does
//! not read `*_file` secrets (those are read on use, as Prometheus does). A reload can
//! therefore build a whole new `Config` and drop it on error, leaving the running one
//! untouched. Secrets are held in [`Secret`], which never prints its value.

mod duration;
mod locate;
mod raw;
mod resolve;
mod size;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use duration::{format_duration, parse_duration, DurationError};
pub use size::{format_size, parse_size, SizeError};

use crate::labels::LabelSet;
use crate::relabel::Rule;

/// A loaded, validated configuration. Built whole or not at all.
#[derive(Debug)]
pub struct Config {
    /// The file it was loaded from (as given; used in messages and for relative paths).
    pub source: PathBuf,
    pub global: GlobalConfig,
    /// In file order; job names are unique.
    pub scrape_configs: Vec<Arc<ScrapeConfig>>,
    /// In file order; names are unique. Empty: samples stay in the local spool.
    pub remote_write: Vec<RemoteWriteConfig>,
    pub engine: EngineConfig,
    pub storage: StorageConfig,
    pub web: WebConfig,
    pub cluster: ClusterConfig,
}

/// `[global]`: defaults that jobs inherit, and the external labels.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalConfig {
    /// Default 1m (a configured 0 also means 1m).
    pub scrape_interval: Duration,
    /// Default min(10s, scrape_interval); never above scrape_interval.
    pub scrape_timeout: Duration,
    /// After `$VAR` / `${VAR}` expansion; a label whose value expands to "" is dropped.
    pub external_labels: LabelSet,
    /// Bytes, 0 = no limit. The limits below are defaults for jobs, 0 = no limit.
    pub body_size_limit: u64,
    pub sample_limit: u64,
    pub target_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    /// 0 = keep all dropped targets for the API.
    pub keep_dropped_targets: u64,
    /// The Accept order jobs inherit (Prometheus's text-only default when unset).
    pub scrape_protocols: Vec<ScrapeProtocol>,
}

/// One `[[scrape_configs]]` job, with everything inherited from `[global]` filled in.
pub struct ScrapeConfig {
    pub job_name: String,
    pub scrape_interval: Duration,
    /// Never above `scrape_interval`.
    pub scrape_timeout: Duration,
    pub metrics_path: String,
    /// "http" or "https".
    pub scheme: String,
    /// URL query parameters, sorted by key; each key's values in file order.
    pub params: Vec<(String, Vec<String>)>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub track_timestamps_staleness: bool,
    /// The limits are 0 for "none". A job's 0 inherits the global value (Prometheus
    /// quirk: a job cannot switch off a limit that is set globally).
    pub sample_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    /// Bytes of decompressed body.
    pub body_size_limit: u64,
    pub target_limit: u64,
    pub keep_dropped_targets: u64,
    /// Accept order, most preferred first; never empty, no duplicates.
    pub scrape_protocols: Vec<ScrapeProtocol>,
    /// Parser for a blank or unknown Content-Type; `None` fails such scrapes.
    pub fallback_scrape_protocol: Option<ScrapeProtocol>,
    pub enable_compression: bool,
    /// At most one of `basic_auth` and `authorization` is set.
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls_config: Option<TlsConfig>,
    pub proxy_url: Option<String>,
    pub static_configs: Vec<StaticConfig>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub http_sd_configs: Vec<HttpSdConfig>,
    pub dns_sd_configs: Vec<DnsSdConfig>,
    pub relabel_configs: Vec<Rule>,
    pub metric_relabel_configs: Vec<Rule>,
    /// The `[cluster]` section: which share of the job's targets this agent keeps.
    pub cluster: ClusterConfig,
    /// Identity of the job's scrape settings, used on reload to keep unchanged jobs
    /// running: equal iff the raw job table without its target sources
    /// (`static_configs` and `*_sd_configs`), the `[global]` values it inherits, the
    /// `[cluster]` layout and the config file's directory (which relative paths depend
    /// on) are equal. Target sources are left out because they only change the job's
    /// target groups, which a pool sync diffs target by target: adding a static target
    /// restarts nothing.
    pub fingerprint: u64,
}

/// `[[scrape_configs.static_configs]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticConfig {
    /// `host:port` addresses, in file order.
    pub targets: Vec<String>,
    pub labels: LabelSet,
}

/// `[[scrape_configs.file_sd_configs]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSdConfig {
    /// Glob patterns (`*` only in the last path segment), joined with the config file's
    /// directory when relative, as Prometheus does. Each ends in `.json`, `.yml`, `.yaml`
    /// or (a scrapewheel extension) `.toml`, which selects the file's format.
    pub files: Vec<PathBuf>,
    /// Default 5m.
    pub refresh_interval: Duration,
}

/// `[[scrape_configs.http_sd_configs]]`, with the HTTP client keys of a scrape config.
#[derive(Clone, PartialEq)]
pub struct HttpSdConfig {
    /// An http or https URL (may hold credentials; Debug redacts them).
    pub url: String,
    /// Default 60s. Also the request timeout, as in Prometheus.
    pub refresh_interval: Duration,
    /// At most one of `basic_auth` and `authorization` is set.
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls_config: Option<TlsConfig>,
    /// An http or https proxy (socks proxies are rejected when the provider starts).
    pub proxy_url: Option<String>,
}

/// `[[scrape_configs.dns_sd_configs]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsSdConfig {
    pub names: Vec<String>,
    pub record_type: DnsRecordType,
    /// Required for A and AAAA; ignored for SRV, whose records carry the port.
    pub port: u16,
    /// Default 30s.
    pub refresh_interval: Duration,
    /// scrapewheel extension (`nameservers = ["127.0.0.1:8600"]`, port 53 when left
    /// out): ask these servers, in order, with names taken as absolute. Empty (the
    /// default): the nameservers, search list and options of /etc/resolv.conf.
    pub nameservers: Vec<std::net::SocketAddr>,
}

/// The DNS record types discovery can query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsRecordType {
    Srv,
    A,
    Aaaa,
}

/// `basic_auth`: at most one of `password` and `password_file` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct BasicAuth {
    pub username: String,
    pub password: Option<Secret>,
    /// Re-read (and trimmed) on every request, as Prometheus does.
    pub password_file: Option<PathBuf>,
}

/// `authorization`: sends `Authorization: <kind> <credentials>`. At most one of
/// `credentials` and `credentials_file` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorization {
    /// The `type` key: default "Bearer"; "Basic" is rejected (use basic_auth).
    pub kind: String,
    pub credentials: Option<Secret>,
    /// Re-read (and trimmed) on every request, as Prometheus does.
    pub credentials_file: Option<PathBuf>,
}

/// `tls_config`. `cert_file` and `key_file` are both set or both unset.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

/// `[[remote_write]]`.
pub struct RemoteWriteConfig {
    /// An http or https URL. May hold credentials: print [`Self::redacted_url`] instead.
    pub url: String,
    /// The configured name, or (like Prometheus) 6 hex digits of a hash; ours is a stable
    /// hash (FNV-1a) of the URL alone, so the name, and anything keyed by it, survives
    /// edits to other settings and upgrades of scrapewheel.
    pub name: String,
    /// Default 30s.
    pub remote_timeout: Duration,
    /// Extra request headers, sorted by name. Values may be API keys, so they are secret.
    pub headers: Vec<(String, Secret)>,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls_config: Option<TlsConfig>,
    pub proxy_url: Option<String>,
    pub write_relabel_configs: Vec<Rule>,
    pub queue_config: QueueConfig,
    /// Equal iff the raw `[[remote_write]]` table and the config directory are equal.
    pub fingerprint: u64,
}

/// `[remote_write.queue_config]`, with Prometheus's defaults and checks.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// Samples buffered per shard. Default 10000.
    pub capacity: usize,
    /// Default 50.
    pub max_shards: usize,
    /// Default 1; at most max_shards.
    pub min_shards: usize,
    /// Default 2000.
    pub max_samples_per_send: usize,
    /// Default 5s.
    pub batch_send_deadline: Duration,
    /// Default 30ms.
    pub min_backoff: Duration,
    /// Default 5s; at least min_backoff.
    pub max_backoff: Duration,
    /// Default false: a 429 drops the batch, as any other 4xx does.
    pub retry_on_http_429: bool,
}

/// `[engine]`: threads and scheduling.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Scrape workers. Default 4 × available cores, clamped to 2..=64.
    pub workers: usize,
    /// Timer wheel resolution. Default 1ms.
    pub wheel_tick: Duration,
    /// Append buffer lock stripes. Default 16.
    pub stripes: usize,
    /// Minimum time between two applied reloads. Default 5s.
    pub reload_throttle: Duration,
    /// Capacity of the wheel → workers channel. Default 1024.
    pub queue_size: usize,
    /// Bytes the accounted allocations (bodies in flight, series state, the append
    /// buffer) may use before back-pressure; 0 = none. Default 0.
    pub memory_limit: u64,
    /// Bodies larger than this are parsed and committed in streamed parts. Default 1MiB.
    pub stream_threshold: u64,
}

/// `[storage]`: the on-disk spool.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// Default "data". Relative paths are relative to the working directory, as
    /// Prometheus's `--storage.agent.path` is (it is a directory to create, not a file
    /// that belongs with the config).
    pub path: PathBuf,
    /// Bytes, 0 = no size limit. Default 1GiB.
    pub retention_size: u64,
    /// 0 = no time limit. Default 24h.
    pub retention_time: Duration,
    /// Default 1s.
    pub flush_interval: Duration,
    /// Bytes per segment file. Default 16MiB; at most retention_size when that is set.
    pub segment_size: u64,
    /// How long shutdown waits for in-flight work. Default 10s.
    pub drain_timeout: Duration,
    /// Samples per spool block. Default 2000.
    pub max_block_samples: usize,
}

/// `[web]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebConfig {
    /// `host:port`. Default "127.0.0.1:9464". A Go-style ":port" becomes "0.0.0.0:port".
    pub listen_address: String,
    /// Enables POST /-/reload (and /-/quit). Default false.
    pub enable_lifecycle: bool,
}

/// `[cluster]`: hash-sharding targets across several agents.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// 0 or 1: no sharding.
    pub members_count: u32,
    /// This agent's index, below members_count (0 when not sharding).
    pub member_num: u32,
    /// How many members scrape each target: 1..=max(members_count, 1).
    pub replication_factor: u32,
}

/// A scrape protocol scrapewheel can negotiate and parse. Prometheus's `PrometheusProto`
/// is rejected at load: scrapewheel has no protobuf exposition parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScrapeProtocol {
    PrometheusText0_0_4,
    PrometheusText1_0_0,
    OpenMetricsText0_0_1,
    OpenMetricsText1_0_0,
}

impl ScrapeProtocol {
    /// Prometheus's default Accept order when native histograms are off.
    pub const DEFAULT: [ScrapeProtocol; 4] = [
        ScrapeProtocol::OpenMetricsText1_0_0,
        ScrapeProtocol::OpenMetricsText0_0_1,
        ScrapeProtocol::PrometheusText1_0_0,
        ScrapeProtocol::PrometheusText0_0_4,
    ];

    /// The media type with its version parameter, as in Prometheus's Accept header
    /// (without `escaping` or `q`).
    pub fn media_type(&self) -> &'static str {
        match self {
            ScrapeProtocol::PrometheusText0_0_4 => "text/plain;version=0.0.4",
            ScrapeProtocol::PrometheusText1_0_0 => "text/plain;version=1.0.0",
            ScrapeProtocol::OpenMetricsText0_0_1 => "application/openmetrics-text;version=0.0.1",
            ScrapeProtocol::OpenMetricsText1_0_0 => "application/openmetrics-text;version=1.0.0",
        }
    }

    /// The name used in the config file (case-sensitive, as in Prometheus).
    pub fn name(&self) -> &'static str {
        match self {
            ScrapeProtocol::PrometheusText0_0_4 => "PrometheusText0.0.4",
            ScrapeProtocol::PrometheusText1_0_0 => "PrometheusText1.0.0",
            ScrapeProtocol::OpenMetricsText0_0_1 => "OpenMetricsText0.0.1",
            ScrapeProtocol::OpenMetricsText1_0_0 => "OpenMetricsText1.0.0",
        }
    }

    fn from_name(name: &str) -> Option<ScrapeProtocol> {
        ScrapeProtocol::DEFAULT
            .into_iter()
            .find(|p| p.name() == name)
    }
}

impl fmt::Display for ScrapeProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A password, token or header value. Debug and Display print `<secret>`, so a secret
/// cannot leak through logs, errors or `scrapewheel check`; [`Secret::expose`] is the
/// one way to the value.
#[derive(Clone, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value, for building a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Why a configuration could not be loaded. Display:
/// `<file>:<line>:<column>: <key>: <message>` (the key is left out when the error is
/// not inside any key, e.g. a broken table header at the top).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config file: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TOML parser rejected the file: bad syntax, a value of the wrong type, an
    /// unknown or duplicate key. The message is the parser's, which names the key.
    #[error("{}:{line}:{column}: {}{message}", .file.display(), key_prefix(.key))]
    Parse {
        file: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    /// The file parsed but a value is not acceptable: a bad duration or size, a
    /// duplicate job name, a timeout above its interval, an invalid regex, ...
    #[error("{}:{line}:{column}: {}{message}", .file.display(), key_prefix(.key))]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

impl ConfigError {
    /// 1-based line of the offending text, when the error has a position.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { line, .. } | ConfigError::Invalid { line, .. } => Some(*line),
        }
    }

    /// 1-based column (in characters) of the offending text.
    pub fn column(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { column, .. } | ConfigError::Invalid { column, .. } => {
                Some(*column)
            }
        }
    }

    /// The dotted key path, e.g. `scrape_configs[1].scrape_timeout`.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
        }
    }
}

impl Config {
    /// Reads and resolves a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_str(&text, path)
    }

    /// Resolves config text; `source` names it in errors, and relative `*_file` paths and
    /// file_sd globs are joined with its directory.
    pub fn from_str(text: &str, source: &Path) -> Result<Config, ConfigError> {
        Config::from_str_with_env(text, source, &|name| std::env::var(name).ok())
    }

    /// [`Config::from_str`] with the environment lookup used for external_labels
    /// injected, so tests need not mutate the process environment.
    fn from_str_with_env(
        text: &str,
        source: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(text.len(), |s| s.start);
            let (line, column) = locate::line_column(text, offset);
            ConfigError::Parse {
                file: source.to_owned(),
                line,
                column,
                key: locate::key_path_at(text, offset),
                // The parser's messages can span lines ("invalid table header\nexpected ...").
                message: e.message().trim_end().replace('\n', "; "),
            }
        })?;
        resolve::resolve(raw, source, text, env).map_err(|e| {
            let (line, column) = locate::line_column(text, e.span.start);
            ConfigError::Invalid {
                file: source.to_owned(),
                line,
                column,
                key: e.key,
                message: e.message,
            }
        })
    }

    /// A human summary for `scrapewheel check`: jobs with their interval, timeout,
    /// static target count and relabel rule counts, the remote_write receivers (URLs with
    /// passwords redacted) and the storage path. Never prints a secret.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "config: {}", self.source.display());
        let _ = writeln!(
            out,
            "global: scrape_interval {}, scrape_timeout {}, external_labels {}",
            format_duration(self.global.scrape_interval),
            format_duration(self.global.scrape_timeout),
            self.global.external_labels
        );
        let _ = writeln!(out, "scrape jobs: {}", self.scrape_configs.len());
        for job in &self.scrape_configs {
            let targets: usize = job.static_configs.iter().map(|s| s.targets.len()).sum();
            let _ = write!(
                out,
                "  {}: interval {}, timeout {}, {} static target{}",
                job.job_name,
                format_duration(job.scrape_interval),
                format_duration(job.scrape_timeout),
                targets,
                plural(targets)
            );
            for (count, what) in [
                (job.file_sd_configs.len(), "file_sd"),
                (job.http_sd_configs.len(), "http_sd"),
                (job.dns_sd_configs.len(), "dns_sd"),
            ] {
                if count > 0 {
                    let _ = write!(out, ", {count} {what} config{}", plural(count));
                }
            }
            let _ = writeln!(
                out,
                ", {} relabel rule{}, {} metric relabel rule{}",
                job.relabel_configs.len(),
                plural(job.relabel_configs.len()),
                job.metric_relabel_configs.len(),
                plural(job.metric_relabel_configs.len())
            );
        }
        if self.remote_write.is_empty() {
            let _ = writeln!(
                out,
                "remote_write: none (samples stay in the spool; read them with `scrapewheel export`)"
            );
        } else {
            let _ = writeln!(out, "remote_write: {}", self.remote_write.len());
            for rw in &self.remote_write {
                let _ = writeln!(out, "  {}: {}", rw.name, rw.redacted_url());
            }
        }
        let _ = writeln!(
            out,
            "storage: {} (retention {} / {})",
            self.storage.path.display(),
            if self.storage.retention_size == 0 {
                "unlimited size".to_owned()
            } else {
                format_size(self.storage.retention_size)
            },
            if self.storage.retention_time.is_zero() {
                "unlimited time".to_owned()
            } else {
                format_duration(self.storage.retention_time)
            }
        );
        let _ = writeln!(out, "web: {}", self.web.listen_address);
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

impl RemoteWriteConfig {
    /// The URL with any password in it replaced by `xxxxx`, for logs and summaries.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// Replaces the password in a URL's userinfo with `xxxxx` (Go's `URL.Redacted` form).
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:xxxxx{}", &url[..scheme_end + 3], &rest[at..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

impl fmt::Debug for ScrapeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrapeConfig")
            .field("job_name", &self.job_name)
            .field("scrape_interval", &self.scrape_interval)
            .field("scrape_timeout", &self.scrape_timeout)
            .field("metrics_path", &self.metrics_path)
            .field("scheme", &self.scheme)
            .field("params", &self.params)
            .field("honor_labels", &self.honor_labels)
            .field("honor_timestamps", &self.honor_timestamps)
            .field(
                "track_timestamps_staleness",
                &self.track_timestamps_staleness,
            )
            .field("sample_limit", &self.sample_limit)
            .field("label_limit", &self.label_limit)
            .field("label_name_length_limit", &self.label_name_length_limit)
            .field("label_value_length_limit", &self.label_value_length_limit)
            .field("body_size_limit", &self.body_size_limit)
            .field("target_limit", &self.target_limit)
            .field("keep_dropped_targets", &self.keep_dropped_targets)
            .field("scrape_protocols", &self.scrape_protocols)
            .field("fallback_scrape_protocol", &self.fallback_scrape_protocol)
            .field("enable_compression", &self.enable_compression)
            .field("basic_auth", &self.basic_auth)
            .field("authorization", &self.authorization)
            .field("tls_config", &self.tls_config)
            .field("proxy_url", &self.proxy_url.as_deref().map(redact_url))
            .field("static_configs", &self.static_configs)
            .field("file_sd_configs", &self.file_sd_configs)
            .field("http_sd_configs", &self.http_sd_configs)
            .field("dns_sd_configs", &self.dns_sd_configs)
            .field("relabel_configs", &RuleCount(self.relabel_configs.len()))
            .field(
                "metric_relabel_configs",
                &RuleCount(self.metric_relabel_configs.len()),
            )
            .field("cluster", &self.cluster)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl fmt::Debug for RemoteWriteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteWriteConfig")
            .field("url", &self.redacted_url())
            .field("name", &self.name)
            .field("remote_timeout", &self.remote_timeout)
            .field("headers", &self.headers)
            .field("basic_auth", &self.basic_auth)
            .field("authorization", &self.authorization)
            .field("tls_config", &self.tls_config)
            .field("proxy_url", &self.proxy_url.as_deref().map(redact_url))
            .field(
                "write_relabel_configs",
                &RuleCount(self.write_relabel_configs.len()),
            )
            .field("queue_config", &self.queue_config)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl fmt::Debug for HttpSdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSdConfig")
            .field("url", &redact_url(&self.url))
            .field("refresh_interval", &self.refresh_interval)
            .field("basic_auth", &self.basic_auth)
            .field("authorization", &self.authorization)
            .field("tls_config", &self.tls_config)
            .field("proxy_url", &self.proxy_url.as_deref().map(redact_url))
            .finish()
    }
}

/// Compiled rules print as their count: the rule type need not implement Debug.
struct RuleCount(usize);

impl fmt::Debug for RuleCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} rule{}]", self.0, plural(self.0))
    }
}
