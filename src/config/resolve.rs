//! Raw → resolved: applies defaults and `[global]` inheritance, parses durations and
//! sizes, checks every value Prometheus checks (plus a few it only finds at scrape time),
//! compiles relabel rules and computes job fingerprints.
//!
//! Stops at the first problem and reports it as an [`Invalid`]: the byte span of the
//! offending value (or of the table missing a key), its dotted key path, and a message
//! that says what is wrong and what would be right. `mod.rs` turns the span into a line
//! and column.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::locate::{key_segment, line_column};
use super::raw::{
    DurationText, RawAuthorization, RawBasicAuth, RawCluster, RawConfig, RawDnsSdConfig, RawEngine,
    RawFileSdConfig, RawGlobal, RawHttpSdConfig, RawQueueConfig, RawRelabelConfig, RawRemoteWrite,
    RawScrapeConfig, RawStaticConfig, RawStorage, RawTlsConfig, RawWeb, SizeText, SpannedMap,
};
use super::{
    format_duration, parse_duration, parse_size, Authorization, BasicAuth, ClusterConfig, Config,
    DnsRecordType, DnsSdConfig, EngineConfig, FileSdConfig, GlobalConfig, HttpSdConfig,
    QueueConfig, RemoteWriteConfig, ScrapeConfig, ScrapeProtocol, Secret, StaticConfig,
    StorageConfig, TlsConfig, WebConfig,
};
use crate::labels::{self, LabelSet};
use crate::relabel::{RelabelConfig, Rule};

/// A value that parsed but is not acceptable.
#[derive(Debug)]
pub(super) struct Invalid {
    /// Byte span in the config text.
    pub span: Range<usize>,
    /// Dotted key path, e.g. `scrape_configs[1].scrape_timeout`.
    pub key: String,
    pub message: String,
}

type Result<T> = std::result::Result<T, Invalid>;

fn invalid(span: Range<usize>, key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        span,
        key: key.into(),
        message: message.into(),
    }
}

// Prometheus's defaults (config/config.go, reference §1).
const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_METRICS_PATH: &str = "/metrics";
const DEFAULT_SCHEME: &str = "http";
const DEFAULT_FILE_SD_REFRESH: Duration = Duration::from_secs(5 * 60);
const DEFAULT_HTTP_SD_REFRESH: Duration = Duration::from_secs(60);
const DEFAULT_DNS_SD_REFRESH: Duration = Duration::from_secs(30);
const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

// scrapewheel's own defaults.
const DEFAULT_WHEEL_TICK: Duration = Duration::from_millis(1);
const DEFAULT_STRIPES: u64 = 16;
const DEFAULT_RELOAD_THROTTLE: Duration = Duration::from_secs(5);
const DEFAULT_QUEUE_SIZE: u64 = 1024;
const DEFAULT_STREAM_THRESHOLD: u64 = 1 << 20;
const MIN_STREAM_THRESHOLD: u64 = crate::budget::MIN_PART as u64;
const DEFAULT_STORAGE_PATH: &str = "data";
const DEFAULT_RETENTION_SIZE: u64 = 1 << 30;
const DEFAULT_RETENTION_TIME: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_BLOCK_SAMPLES: u64 = 2000;
const DEFAULT_LISTEN_ADDRESS: &str = "127.0.0.1:9464";
/// Sanity bounds that catch typos (an extra zero) rather than encode a real limit.
const MAX_WORKERS: u64 = 1024;
const MAX_STRIPES: u64 = 1024;
const MAX_WHEEL_TICK: Duration = Duration::from_secs(1);

/// Headers a remote_write config may not set, lower-cased (config/config.go
/// `reservedHeaders`); `authorization` has its own message.
const RESERVED_HEADERS: [&str; 16] = [
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

const PROXY_SCHEMES: [&str; 5] = ["http", "https", "socks4", "socks4a", "socks5"];
const HTTP_SCHEMES: [&str; 2] = ["http", "https"];

/// Resolves a parsed file. `source` is the config path (its directory anchors relative
/// file paths), `text` the file's text (for "first defined at line N" hints) and `env`
/// the environment lookup for external_labels.
pub(super) fn resolve(
    raw: RawConfig,
    source: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config> {
    let resolver = Resolver {
        base_dir: source.parent().unwrap_or(Path::new("")),
        text,
    };
    let global = resolver.global(&raw.global, env)?;

    // Resolved before the jobs because each job carries its shard of the cluster.
    let cluster = cluster(&raw.cluster)?;
    let mut job_names: HashMap<&str, usize> = HashMap::new();
    let mut scrape_configs = Vec::with_capacity(raw.scrape_configs.len());
    for (index, job) in raw.scrape_configs.iter().enumerate() {
        // Checked before the rest of the job, so a duplicate is reported at its name
        // rather than at some later key of the table. Empty names are left to
        // `scrape_config`, which says so.
        let name = job.get_ref().job_name.as_ref();
        if let Some(name) = name.filter(|n| !n.get_ref().is_empty()) {
            if let Some(&first) = job_names.get(name.get_ref().as_str()) {
                return Err(invalid(
                    name.span(),
                    format!("scrape_configs[{index}].job_name"),
                    format!(
                        "duplicate job_name {:?} (first used on line {}); job names must be unique",
                        name.get_ref(),
                        resolver.line(first)
                    ),
                ));
            }
            job_names.insert(name.get_ref(), name.span().start);
        }
        scrape_configs.push(Arc::new(
            resolver.scrape_config(index, job, &global, &cluster)?,
        ));
    }

    let mut rw_names: HashMap<String, usize> = HashMap::new();
    let mut remote_write = Vec::with_capacity(raw.remote_write.len());
    for (index, rw) in raw.remote_write.iter().enumerate() {
        let resolved = resolver.remote_write(index, rw)?;
        if let Some(first) = rw_names.insert(resolved.name.clone(), rw.span().start) {
            let (span, key) = match &rw.get_ref().name {
                Some(n) => (n.span(), format!("remote_write[{index}].name")),
                None => (rw.span(), format!("remote_write[{index}]")),
            };
            return Err(invalid(
                span,
                key,
                format!(
                    "duplicate remote_write name {:?} (first used by the remote_write on line {}); \
                     give each remote_write a distinct `name`",
                    resolved.name,
                    resolver.line(first)
                ),
            ));
        }
        remote_write.push(resolved);
    }

    Ok(Config {
        source: source.to_owned(),
        global,
        scrape_configs,
        remote_write,
        engine: engine(&raw.engine)?,
        storage: storage(&raw.storage)?,
        web: web(&raw.web)?,
        cluster,
    })
}

struct Resolver<'a> {
    base_dir: &'a Path,
    text: &'a str,
}

impl Resolver<'_> {
    fn line(&self, offset: usize) -> usize {
        line_column(self.text, offset).0
    }

    /// Joins a relative path with the config file's directory (Prometheus `JoinDir`).
    fn join(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    fn global(
        &self,
        raw: &RawGlobal,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<GlobalConfig> {
        let interval = match duration(&raw.scrape_interval, "global.scrape_interval")? {
            Some((d, _)) if !d.is_zero() => d,
            _ => DEFAULT_SCRAPE_INTERVAL,
        };
        let timeout = match duration(&raw.scrape_timeout, "global.scrape_timeout")? {
            Some((d, span)) if !d.is_zero() => {
                if d > interval {
                    return Err(invalid(
                        span,
                        "global.scrape_timeout",
                        format!(
                            "scrape_timeout {} is greater than scrape_interval {}",
                            format_duration(d),
                            format_duration(interval)
                        ),
                    ));
                }
                d
            }
            _ => DEFAULT_SCRAPE_TIMEOUT.min(interval),
        };
        let mut external_labels = LabelSet::new();
        for (name, value) in &raw.external_labels {
            check_label_name(name, "global.external_labels")?;
            external_labels.set(name.get_ref().as_str(), expand_env(value.get_ref(), env));
        }
        Ok(GlobalConfig {
            scrape_interval: interval,
            scrape_timeout: timeout,
            external_labels,
            body_size_limit: size(&raw.body_size_limit, "global.body_size_limit")?.unwrap_or(0),
            sample_limit: raw.sample_limit,
            target_limit: raw.target_limit,
            label_limit: raw.label_limit,
            label_name_length_limit: raw.label_name_length_limit,
            label_value_length_limit: raw.label_value_length_limit,
            keep_dropped_targets: raw.keep_dropped_targets,
            scrape_protocols: match &raw.scrape_protocols {
                Some(list) => protocols(list, "global.scrape_protocols")?,
                None => ScrapeProtocol::DEFAULT.to_vec(),
            },
        })
    }

    fn scrape_config(
        &self,
        index: usize,
        job: &Spanned<RawScrapeConfig>,
        global: &GlobalConfig,
        cluster: &ClusterConfig,
    ) -> Result<ScrapeConfig> {
        let raw = job.get_ref();
        let path = format!("scrape_configs[{index}]");
        let key = |name: &str| format!("{path}.{name}");

        let job_name = match &raw.job_name {
            None => {
                return Err(invalid(
                    job.span(),
                    key("job_name"),
                    "missing job_name: every scrape config needs a unique job_name",
                ))
            }
            Some(name) if name.get_ref().is_empty() => {
                return Err(invalid(name.span(), key("job_name"), "job_name is empty"))
            }
            Some(name) => name.get_ref().clone(),
        };

        let (scrape_interval, interval_inherited) =
            match duration(&raw.scrape_interval, &key("scrape_interval"))? {
                Some((d, _)) if !d.is_zero() => (d, false),
                _ => (global.scrape_interval, true),
            };
        let scrape_timeout = match duration(&raw.scrape_timeout, &key("scrape_timeout"))? {
            Some((d, span)) if !d.is_zero() => {
                if d > scrape_interval {
                    return Err(invalid(
                        span,
                        key("scrape_timeout"),
                        format!(
                            "scrape_timeout {} is greater than scrape_interval {}{}",
                            format_duration(d),
                            format_duration(scrape_interval),
                            if interval_inherited {
                                " (inherited from global.scrape_interval)"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
                d
            }
            _ => global.scrape_timeout.min(scrape_interval),
        };

        // Prometheus accepts any path and Go's URL builder quietly adds the missing
        // slash; requiring it keeps `__metrics_path__` and the scrape URL in agreement.
        let metrics_path = match &raw.metrics_path {
            Some(p) if !p.get_ref().starts_with('/') => {
                return Err(invalid(
                    p.span(),
                    key("metrics_path"),
                    format!("metrics_path {:?} must start with \"/\"", p.get_ref()),
                ))
            }
            Some(p) => p.get_ref().clone(),
            None => DEFAULT_METRICS_PATH.to_owned(),
        };
        let scheme = match &raw.scheme {
            Some(s) if !HTTP_SCHEMES.contains(&s.get_ref().as_str()) => {
                return Err(invalid(
                    s.span(),
                    key("scheme"),
                    format!(
                        "scheme must be \"http\" or \"https\", got {:?}",
                        s.get_ref()
                    ),
                ))
            }
            Some(s) => s.get_ref().clone(),
            None => DEFAULT_SCHEME.to_owned(),
        };

        let scrape_protocols = match &raw.scrape_protocols {
            Some(list) => protocols(list, &key("scrape_protocols"))?,
            None => global.scrape_protocols.clone(),
        };
        let fallback_scrape_protocol = match &raw.fallback_scrape_protocol {
            Some(p) if !p.get_ref().is_empty() => {
                Some(protocol(p, &key("fallback_scrape_protocol"))?)
            }
            _ => None,
        };

        let http = self.http_client(
            &path,
            &raw.basic_auth,
            &raw.authorization,
            &raw.tls_config,
            &raw.proxy_url,
        )?;

        let static_configs = raw
            .static_configs
            .iter()
            .enumerate()
            .map(|(i, sc)| {
                static_config(
                    sc,
                    &format!("{path}.static_configs[{i}]"),
                    raw.relabel_configs.is_empty(),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let file_sd_configs = raw
            .file_sd_configs
            .iter()
            .enumerate()
            .map(|(i, sd)| self.file_sd_config(sd, &format!("{path}.file_sd_configs[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        let http_sd_configs = raw
            .http_sd_configs
            .iter()
            .enumerate()
            .map(|(i, sd)| self.http_sd_config(sd, &format!("{path}.http_sd_configs[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        let dns_sd_configs = raw
            .dns_sd_configs
            .iter()
            .enumerate()
            .map(|(i, sd)| dns_sd_config(sd, &format!("{path}.dns_sd_configs[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        let relabel_configs = relabel_rules(&raw.relabel_configs, &key("relabel_configs"))?;
        let metric_relabel_configs =
            relabel_rules(&raw.metric_relabel_configs, &key("metric_relabel_configs"))?;

        let inherit = |job: u64, global: u64| if job == 0 { global } else { job };
        let body_size_limit = inherit(
            size(&raw.body_size_limit, &key("body_size_limit"))?.unwrap_or(0),
            global.body_size_limit,
        );

        // DefaultHasher is deterministic within one build, which is all a reload
        // comparison needs; fingerprints are never stored.
        let mut hasher = DefaultHasher::new();
        hash_scrape_settings(raw, &mut hasher);
        // What the job inherits is part of its identity: a changed global interval must
        // restart the job even though its own table is unchanged.
        (
            global.scrape_interval,
            global.scrape_timeout,
            global.body_size_limit,
            global.sample_limit,
            global.target_limit,
            global.label_limit,
            global.label_name_length_limit,
            global.label_value_length_limit,
            global.keep_dropped_targets,
            &global.scrape_protocols,
            self.base_dir,
            // A new shard layout must re-sync every job: its targets move between members.
            (
                cluster.members_count,
                cluster.member_num,
                cluster.replication_factor,
            ),
        )
            .hash(&mut hasher);

        Ok(ScrapeConfig {
            job_name,
            scrape_interval,
            scrape_timeout,
            metrics_path,
            scheme,
            params: raw
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            honor_labels: raw.honor_labels.unwrap_or(false),
            honor_timestamps: raw.honor_timestamps.unwrap_or(true),
            track_timestamps_staleness: raw.track_timestamps_staleness.unwrap_or(false),
            sample_limit: inherit(raw.sample_limit, global.sample_limit),
            label_limit: inherit(raw.label_limit, global.label_limit),
            label_name_length_limit: inherit(
                raw.label_name_length_limit,
                global.label_name_length_limit,
            ),
            label_value_length_limit: inherit(
                raw.label_value_length_limit,
                global.label_value_length_limit,
            ),
            body_size_limit,
            target_limit: inherit(raw.target_limit, global.target_limit),
            keep_dropped_targets: inherit(raw.keep_dropped_targets, global.keep_dropped_targets),
            scrape_protocols,
            fallback_scrape_protocol,
            enable_compression: raw.enable_compression.unwrap_or(true),
            basic_auth: http.basic_auth,
            authorization: http.authorization,
            tls_config: http.tls_config,
            proxy_url: http.proxy_url,
            static_configs,
            file_sd_configs,
            http_sd_configs,
            dns_sd_configs,
            relabel_configs,
            metric_relabel_configs,
            cluster: cluster.clone(),
            fingerprint: hasher.finish(),
        })
    }

    /// The HTTP client keys shared by scrape configs and remote_write (common's
    /// `HTTPClientConfig.Validate`, limited to the keys scrapewheel supports).
    fn http_client(
        &self,
        path: &str,
        basic_auth: &Option<Spanned<RawBasicAuth>>,
        authorization: &Option<Spanned<RawAuthorization>>,
        tls_config: &Option<Spanned<RawTlsConfig>>,
        proxy_url: &Option<Spanned<String>>,
    ) -> Result<HttpClient> {
        if let (Some(_), Some(auth)) = (basic_auth, authorization) {
            return Err(invalid(
                auth.span(),
                format!("{path}.authorization"),
                "at most one of basic_auth & authorization may be configured",
            ));
        }
        let basic_auth = basic_auth
            .as_ref()
            .map(|b| self.basic_auth(b.get_ref(), &format!("{path}.basic_auth")))
            .transpose()?;
        let authorization = authorization
            .as_ref()
            .map(|a| self.authorization(a.get_ref(), &format!("{path}.authorization")))
            .transpose()?;
        let tls_config = tls_config
            .as_ref()
            .map(|t| self.tls_config(t, &format!("{path}.tls_config")))
            .transpose()?;
        let proxy_url = match proxy_url {
            Some(u) if !u.get_ref().is_empty() => {
                check_url(u.get_ref(), &PROXY_SCHEMES)
                    .map_err(|m| invalid(u.span(), format!("{path}.proxy_url"), m))?;
                Some(u.get_ref().clone())
            }
            _ => None,
        };
        Ok(HttpClient {
            basic_auth,
            authorization,
            tls_config,
            proxy_url,
        })
    }

    fn basic_auth(&self, raw: &RawBasicAuth, path: &str) -> Result<BasicAuth> {
        // As in Prometheus, an empty value counts as unset.
        let password = raw.password.clone().filter(|p| !p.expose().is_empty());
        let password_file = non_empty(&raw.password_file);
        if let (Some(_), Some(file)) = (&password, password_file) {
            return Err(invalid(
                file.span(),
                format!("{path}.password_file"),
                "at most one of basic_auth password & password_file may be configured",
            ));
        }
        Ok(BasicAuth {
            username: raw.username.clone(),
            password,
            password_file: password_file.map(|f| self.join(f.get_ref())),
        })
    }

    fn authorization(&self, raw: &RawAuthorization, path: &str) -> Result<Authorization> {
        let kind = match &raw.auth_type {
            Some(t) if t.get_ref().trim().eq_ignore_ascii_case("basic") => {
                return Err(invalid(
                    t.span(),
                    format!("{path}.type"),
                    "authorization type cannot be \"Basic\": use basic_auth instead",
                ))
            }
            Some(t) if !t.get_ref().trim().is_empty() => t.get_ref().trim().to_owned(),
            _ => "Bearer".to_owned(),
        };
        let credentials = raw.credentials.clone().filter(|c| !c.expose().is_empty());
        let credentials_file = non_empty(&raw.credentials_file);
        if let (Some(_), Some(file)) = (&credentials, credentials_file) {
            return Err(invalid(
                file.span(),
                format!("{path}.credentials_file"),
                "at most one of authorization credentials & credentials_file may be configured",
            ));
        }
        Ok(Authorization {
            kind,
            credentials,
            credentials_file: credentials_file.map(|f| self.join(f.get_ref())),
        })
    }

    fn tls_config(&self, tls: &Spanned<RawTlsConfig>, path: &str) -> Result<TlsConfig> {
        let raw = tls.get_ref();
        let cert = non_empty(&raw.cert_file);
        let key = non_empty(&raw.key_file);
        match (cert, key) {
            (Some(cert), None) => {
                return Err(invalid(
                    cert.span(),
                    format!("{path}.key_file"),
                    "cert_file is set but key_file is not: a client certificate needs its key",
                ))
            }
            (None, Some(key)) => {
                return Err(invalid(
                    key.span(),
                    format!("{path}.cert_file"),
                    "key_file is set but cert_file is not: a client key needs its certificate",
                ))
            }
            _ => {}
        }
        Ok(TlsConfig {
            ca_file: raw
                .ca_file
                .as_deref()
                .filter(|f| !f.is_empty())
                .map(|f| self.join(f)),
            cert_file: cert.map(|f| self.join(f.get_ref())),
            key_file: key.map(|f| self.join(f.get_ref())),
            server_name: raw.server_name.clone().filter(|s| !s.is_empty()),
            insecure_skip_verify: raw.insecure_skip_verify,
        })
    }

    fn file_sd_config(&self, sd: &Spanned<RawFileSdConfig>, path: &str) -> Result<FileSdConfig> {
        let raw = sd.get_ref();
        let files = required_list(
            &raw.files,
            sd.span(),
            format!("{path}.files"),
            "file_sd config must list at least one file pattern",
        )?;
        let mut patterns = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            if !is_file_sd_pattern(f.get_ref()) {
                return Err(invalid(
                    f.span(),
                    format!("{path}.files[{i}]"),
                    format!(
                        "{:?} is not a valid file_sd path: it must end in .json, .yml, .yaml \
                         or .toml and may contain one `*`, in its last path segment only",
                        f.get_ref()
                    ),
                ));
            }
            patterns.push(self.join(f.get_ref()));
        }
        Ok(FileSdConfig {
            files: patterns,
            refresh_interval: positive_duration(
                &raw.refresh_interval,
                &format!("{path}.refresh_interval"),
                DEFAULT_FILE_SD_REFRESH,
            )?,
        })
    }

    fn http_sd_config(&self, sd: &Spanned<RawHttpSdConfig>, path: &str) -> Result<HttpSdConfig> {
        let raw = sd.get_ref();
        let url = match &raw.url {
            Some(u) => {
                check_url(u.get_ref(), &HTTP_SCHEMES)
                    .map_err(|m| invalid(u.span(), format!("{path}.url"), m))?;
                u.get_ref().clone()
            }
            None => {
                return Err(invalid(
                    sd.span(),
                    format!("{path}.url"),
                    "missing url: http_sd config needs the URL to poll",
                ))
            }
        };
        let http = self.http_client(
            path,
            &raw.basic_auth,
            &raw.authorization,
            &raw.tls_config,
            &raw.proxy_url,
        )?;
        Ok(HttpSdConfig {
            url,
            refresh_interval: positive_duration(
                &raw.refresh_interval,
                &format!("{path}.refresh_interval"),
                DEFAULT_HTTP_SD_REFRESH,
            )?,
            basic_auth: http.basic_auth,
            authorization: http.authorization,
            tls_config: http.tls_config,
            proxy_url: http.proxy_url,
        })
    }

    fn remote_write(
        &self,
        index: usize,
        rw: &Spanned<RawRemoteWrite>,
    ) -> Result<RemoteWriteConfig> {
        let raw = rw.get_ref();
        let path = format!("remote_write[{index}]");
        let key = |name: &str| format!("{path}.{name}");

        let url = match &raw.url {
            Some(u) => {
                check_url(u.get_ref(), &HTTP_SCHEMES)
                    .map_err(|m| invalid(u.span(), key("url"), m))?;
                u.get_ref().clone()
            }
            None => {
                return Err(invalid(
                    rw.span(),
                    key("url"),
                    "missing url: every remote_write needs the receiver's URL",
                ))
            }
        };
        let name = match &raw.name {
            Some(n) if !n.get_ref().is_empty() => n.get_ref().clone(),
            // A stable hash (not DefaultHasher, whose algorithm may change between
            // builds): the name may key state that outlives the process.
            _ => format!("{:06x}", crate::hash::fnv1a64(url.as_bytes()) >> 40),
        };
        let remote_timeout = positive_duration(
            &raw.remote_timeout,
            &key("remote_timeout"),
            DEFAULT_REMOTE_TIMEOUT,
        )?;
        let mut headers = Vec::with_capacity(raw.headers.len());
        for (name, value) in &raw.headers {
            let header_key = format!("{path}.headers.{}", key_segment(name.get_ref()));
            check_header(name, value, &header_key)?;
            headers.push((name.get_ref().clone(), value.get_ref().clone()));
        }
        let http = self.http_client(
            &path,
            &raw.basic_auth,
            &raw.authorization,
            &raw.tls_config,
            &raw.proxy_url,
        )?;
        let write_relabel_configs =
            relabel_rules(&raw.write_relabel_configs, &key("write_relabel_configs"))?;
        let queue_config = queue_config(&raw.queue_config, &key("queue_config"))?;

        let mut hasher = DefaultHasher::new();
        (raw, self.base_dir).hash(&mut hasher);
        Ok(RemoteWriteConfig {
            url,
            name,
            remote_timeout,
            headers,
            basic_auth: http.basic_auth,
            authorization: http.authorization,
            tls_config: http.tls_config,
            proxy_url: http.proxy_url,
            write_relabel_configs,
            queue_config,
            fingerprint: hasher.finish(),
        })
    }
}

struct HttpClient {
    basic_auth: Option<BasicAuth>,
    authorization: Option<Authorization>,
    tls_config: Option<TlsConfig>,
    proxy_url: Option<String>,
}

fn non_empty(v: &Option<Spanned<String>>) -> Option<&Spanned<String>> {
    v.as_ref().filter(|s| !s.get_ref().is_empty())
}

/// Parses an optional duration, returning it with its span.
fn duration(
    v: &Option<Spanned<DurationText>>,
    key: &str,
) -> Result<Option<(Duration, Range<usize>)>> {
    let Some(v) = v else { return Ok(None) };
    parse_duration(&v.get_ref().0)
        .map(|d| Some((d, v.span())))
        .map_err(|e| invalid(v.span(), key, e.to_string()))
}

/// An optional duration with a default; zero is allowed.
fn duration_or(
    v: &Option<Spanned<DurationText>>,
    key: &str,
    default: Duration,
) -> Result<Duration> {
    Ok(duration(v, key)?.map_or(default, |(d, _)| d))
}

/// An optional duration with a default that must not be zero.
fn positive_duration(
    v: &Option<Spanned<DurationText>>,
    key: &str,
    default: Duration,
) -> Result<Duration> {
    match duration(v, key)? {
        Some((d, span)) if d.is_zero() => Err(invalid(
            span,
            key,
            format!(
                "must be greater than 0 (default {})",
                format_duration(default)
            ),
        )),
        Some((d, _)) => Ok(d),
        None => Ok(default),
    }
}

fn size(v: &Option<Spanned<SizeText>>, key: &str) -> Result<Option<u64>> {
    let Some(v) = v else { return Ok(None) };
    parse_size(&v.get_ref().0)
        .map(Some)
        .map_err(|e| invalid(v.span(), key, e.to_string()))
}

/// An optional integer with a default and an inclusive range.
fn count(
    v: &Option<Spanned<u64>>,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<usize> {
    let value = v.as_ref().map_or(default, |n| *n.get_ref());
    if let Some(n) = v {
        if !range.contains(&value) {
            let bounds = if *range.end() == u64::MAX {
                format!("at least {}", range.start())
            } else {
                format!("between {} and {}", range.start(), range.end())
            };
            return Err(invalid(
                n.span(),
                key,
                format!("must be {bounds}, got {value}"),
            ));
        }
    }
    usize::try_from(value).map_err(|_| {
        invalid(
            v.as_ref().map_or(0..0, |n| n.span()),
            key,
            format!("{value} is too large for this platform"),
        )
    })
}

/// Label names follow Prometheus 3's default UTF-8 scheme: any non-empty string.
fn check_label_name(name: &Spanned<String>, table: &str) -> Result<()> {
    if labels::is_utf8_label_name(name.get_ref()) {
        return Ok(());
    }
    Err(invalid(
        name.span(),
        format!("{table}.{}", key_segment(name.get_ref())),
        format!(
            "{:?} is not a valid label name: label names must not be empty",
            name.get_ref()
        ),
    ))
}

fn label_set(map: &SpannedMap, table: &str) -> Result<LabelSet> {
    let mut set = LabelSet::new();
    for (name, value) in map {
        check_label_name(name, table)?;
        set.set(name.get_ref().as_str(), value.get_ref().as_str());
    }
    Ok(set)
}

fn protocols(list: &Spanned<Vec<Spanned<String>>>, key: &str) -> Result<Vec<ScrapeProtocol>> {
    if list.get_ref().is_empty() {
        return Err(invalid(
            list.span(),
            key,
            "scrape_protocols cannot be empty; leave the key out for the default order",
        ));
    }
    let mut seen: Vec<String> = Vec::with_capacity(list.get_ref().len());
    let mut out = Vec::with_capacity(list.get_ref().len());
    for (i, p) in list.get_ref().iter().enumerate() {
        let lower = p.get_ref().to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(invalid(
                p.span(),
                format!("{key}[{i}]"),
                format!("duplicated protocol {:?} in scrape_protocols", p.get_ref()),
            ));
        }
        seen.push(lower);
        out.push(protocol(p, &format!("{key}[{i}]"))?);
    }
    Ok(out)
}

fn protocol(p: &Spanned<String>, key: &str) -> Result<ScrapeProtocol> {
    const SUPPORTED: &str =
        "PrometheusText0.0.4, PrometheusText1.0.0, OpenMetricsText0.0.1, OpenMetricsText1.0.0";
    if p.get_ref() == "PrometheusProto" {
        return Err(invalid(
            p.span(),
            key,
            format!(
                "PrometheusProto is not supported: scrapewheel cannot parse the protobuf \
                 exposition format; use the text formats ({SUPPORTED})"
            ),
        ));
    }
    ScrapeProtocol::from_name(p.get_ref()).ok_or_else(|| {
        invalid(
            p.span(),
            key,
            format!(
                "unknown scrape protocol {:?}; supported (case-sensitive): {SUPPORTED}",
                p.get_ref()
            ),
        )
    })
}

fn static_config(
    sc: &Spanned<RawStaticConfig>,
    path: &str,
    no_relabeling: bool,
) -> Result<StaticConfig> {
    let raw = sc.get_ref();
    let mut targets = Vec::with_capacity(raw.targets.len());
    for (i, t) in raw.targets.iter().enumerate() {
        // Prometheus's CheckTargetAddress: without relabel rules to rewrite it, an address
        // with a `/` is certainly a URL pasted where host:port belongs.
        if no_relabeling && t.get_ref().contains('/') {
            return Err(invalid(
                t.span(),
                format!("{path}.targets[{i}]"),
                format!(
                    "{:?} is not a valid target address: write host:port and set `scheme` and \
                     `metrics_path` on the job",
                    t.get_ref()
                ),
            ));
        }
        targets.push(t.get_ref().clone());
    }
    Ok(StaticConfig {
        targets,
        labels: label_set(&raw.labels, &format!("{path}.labels"))?,
    })
}

/// Prometheus's file_sd pattern check, `^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$`,
/// plus scrapewheel's TOML target files (`.toml`, `.TOML`).
fn is_file_sd_pattern(p: &str) -> bool {
    let ext_ok = [
        ".json", ".yml", ".yaml", ".toml", ".JSON", ".YML", ".YAML", ".TOML",
    ]
    .iter()
    .any(|ext| p.ends_with(ext));
    let star_ok = match p.find('*') {
        None => true,
        Some(i) => !p[i + 1..].contains(['*', '/']),
    };
    ext_ok && star_ok
}

/// A list key that must be present and non-empty: an absent key points at its table
/// (`parent`), an empty list at itself.
fn required_list<'r, T>(
    list: &'r Option<Spanned<Vec<T>>>,
    parent: Range<usize>,
    key: String,
    what: &str,
) -> Result<&'r Vec<T>> {
    match list {
        Some(l) if !l.get_ref().is_empty() => Ok(l.get_ref()),
        Some(l) => Err(invalid(l.span(), key, what)),
        None => {
            let field = key.rsplit('.').next().unwrap_or_default().to_string();
            Err(invalid(parent, key, format!("missing {field}: {what}")))
        }
    }
}

fn dns_sd_config(sd: &Spanned<RawDnsSdConfig>, path: &str) -> Result<DnsSdConfig> {
    let raw = sd.get_ref();
    let names = required_list(
        &raw.names,
        sd.span(),
        format!("{path}.names"),
        "dns_sd config must list at least one name",
    )?;
    for (i, n) in names.iter().enumerate() {
        if n.get_ref().is_empty() {
            return Err(invalid(
                n.span(),
                format!("{path}.names[{i}]"),
                "empty DNS name",
            ));
        }
    }
    let record_type = match &raw.record_type {
        None => DnsRecordType::Srv,
        Some(t) => dns_record_type(t, &format!("{path}.type"))?,
    };
    let port = raw.port.as_ref().map_or(0, |p| *p.get_ref());
    if record_type != DnsRecordType::Srv && port == 0 {
        return Err(invalid(
            raw.port.as_ref().map_or(sd.span(), |p| p.span()),
            format!("{path}.port"),
            "a port is required for A and AAAA records (only SRV records carry one)",
        ));
    }
    let mut nameservers = Vec::new();
    if let Some(list) = &raw.nameservers {
        for (i, ns) in list.get_ref().iter().enumerate() {
            nameservers.push(nameserver(ns.get_ref()).ok_or_else(|| {
                invalid(
                    ns.span(),
                    format!("{path}.nameservers[{i}]"),
                    format!(
                        "{:?} is not a nameserver address; write an IP address, optionally \
                         with a port: \"10.0.0.2\", \"127.0.0.1:8600\", \"[::1]:53\"",
                        ns.get_ref()
                    ),
                )
            })?);
        }
    }
    Ok(DnsSdConfig {
        names: names.iter().map(|n| n.get_ref().clone()).collect(),
        record_type,
        port,
        nameservers,
        refresh_interval: positive_duration(
            &raw.refresh_interval,
            &format!("{path}.refresh_interval"),
            DEFAULT_DNS_SD_REFRESH,
        )?,
    })
}

/// An IP address with an optional port (53 when left out).
fn nameserver(s: &str) -> Option<std::net::SocketAddr> {
    const DNS_PORT: u16 = 53;
    if let Ok(addr) = s.parse::<std::net::SocketAddr>() {
        return Some(addr);
    }
    s.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| std::net::SocketAddr::new(ip, DNS_PORT))
}

/// Hashes what identifies a job's scrape settings: every key but the target sources
/// (see [`ScrapeConfig::fingerprint`]). Destructured so that a new key must be sorted
/// into one group or the other before this compiles.
fn hash_scrape_settings(raw: &RawScrapeConfig, h: &mut DefaultHasher) {
    let RawScrapeConfig {
        job_name,
        scrape_interval,
        scrape_timeout,
        metrics_path,
        scheme,
        params,
        honor_labels,
        honor_timestamps,
        track_timestamps_staleness,
        sample_limit,
        label_limit,
        label_name_length_limit,
        label_value_length_limit,
        body_size_limit,
        target_limit,
        keep_dropped_targets,
        scrape_protocols,
        fallback_scrape_protocol,
        enable_compression,
        basic_auth,
        authorization,
        tls_config,
        proxy_url,
        static_configs: _,
        file_sd_configs: _,
        http_sd_configs: _,
        dns_sd_configs: _,
        relabel_configs,
        metric_relabel_configs,
    } = raw;
    (
        job_name,
        scrape_interval,
        scrape_timeout,
        metrics_path,
        scheme,
        params,
        (honor_labels, honor_timestamps, track_timestamps_staleness),
        (
            sample_limit,
            label_limit,
            label_name_length_limit,
            label_value_length_limit,
        ),
        (body_size_limit, target_limit, keep_dropped_targets),
        (
            scrape_protocols,
            fallback_scrape_protocol,
            enable_compression,
        ),
        (basic_auth, authorization, tls_config, proxy_url),
        (relabel_configs, metric_relabel_configs),
    )
        .hash(h);
}

fn dns_record_type(t: &Spanned<String>, key: &str) -> Result<DnsRecordType> {
    // Prometheus upper-cases the type before checking it.
    match t.get_ref().to_ascii_uppercase().as_str() {
        "SRV" => Ok(DnsRecordType::Srv),
        "A" => Ok(DnsRecordType::A),
        "AAAA" => Ok(DnsRecordType::Aaaa),
        "MX" | "NS" => Err(invalid(
            t.span(),
            key,
            format!(
                "DNS record type {:?} is not supported by scrapewheel; use SRV, A or AAAA",
                t.get_ref()
            ),
        )),
        _ => Err(invalid(
            t.span(),
            key,
            format!(
                "invalid DNS record type {:?}; expected SRV, A or AAAA",
                t.get_ref()
            ),
        )),
    }
}

/// Compiles relabel rules; an error points at the field `Rule::compile` names.
fn relabel_rules(list: &[Spanned<RawRelabelConfig>], path: &str) -> Result<Vec<Rule>> {
    let mut rules = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let raw = entry.get_ref();
        let cfg = RelabelConfig {
            source_labels: raw.source_labels.as_ref().map(|v| v.get_ref().clone()),
            separator: raw.separator.as_ref().map(|v| v.get_ref().clone()),
            regex: raw.regex.as_ref().map(|v| v.get_ref().clone()),
            modulus: raw.modulus.as_ref().map(|v| *v.get_ref()),
            target_label: raw.target_label.as_ref().map(|v| v.get_ref().clone()),
            replacement: raw.replacement.as_ref().map(|v| v.get_ref().clone()),
            action: raw.action.as_ref().map(|v| v.get_ref().clone()),
        };
        let rule = Rule::compile(&cfg).map_err(|e| {
            let field = e.key();
            let span = match field {
                "source_labels" => raw.source_labels.as_ref().map(Spanned::span),
                "separator" => raw.separator.as_ref().map(Spanned::span),
                "regex" => raw.regex.as_ref().map(Spanned::span),
                "modulus" => raw.modulus.as_ref().map(Spanned::span),
                "target_label" => raw.target_label.as_ref().map(Spanned::span),
                "replacement" => raw.replacement.as_ref().map(Spanned::span),
                "action" => raw.action.as_ref().map(Spanned::span),
                _ => None,
            };
            let key = if field.is_empty() {
                format!("{path}[{i}]")
            } else {
                format!("{path}[{i}].{field}")
            };
            // A missing field is reported at the start of its rule.
            invalid(span.unwrap_or_else(|| entry.span()), key, e.to_string())
        })?;
        rules.push(rule);
    }
    Ok(rules)
}

fn check_header(name: &Spanned<String>, value: &Spanned<Secret>, key: &str) -> Result<()> {
    let n = name.get_ref();
    let lower = n.to_ascii_lowercase();
    if lower == "authorization" {
        return Err(invalid(
            name.span(),
            key,
            "the Authorization header must be set with basic_auth or authorization, not headers",
        ));
    }
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(invalid(
            name.span(),
            key,
            format!("{n} is a reserved header; it must not be changed"),
        ));
    }
    // RFC 9110 token characters; anything else would corrupt the request.
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if n.is_empty() || !n.bytes().all(token) {
        return Err(invalid(
            name.span(),
            key,
            format!("{n:?} is not a valid HTTP header name"),
        ));
    }
    if value
        .get_ref()
        .expose()
        .bytes()
        .any(|b| matches!(b, b'\r' | b'\n' | 0))
    {
        return Err(invalid(
            value.span(),
            key,
            "header values must not contain line breaks or NUL",
        ));
    }
    Ok(())
}

/// Checks an absolute URL: an allowed scheme, a host, a numeric port if any, no spaces.
/// Messages show the URL with any password redacted.
fn check_url(url: &str, schemes: &[&str]) -> std::result::Result<(), String> {
    let shown = super::redact_url(url);
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "URL {shown:?} contains whitespace or control characters"
        ));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "{shown:?} is not an absolute URL; expected e.g. \"{}://host:port/path\"",
            schemes[0]
        ));
    };
    if !schemes.contains(&scheme) {
        return Err(format!(
            "unsupported scheme {scheme:?} in URL {shown:?}; expected {}",
            schemes.join(" or ")
        ));
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => match p.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(format!("malformed host in URL {shown:?}")),
            },
            None => return Err(format!("malformed IPv6 host in URL {shown:?}")),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(format!("URL {shown:?} has no host"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return Err(format!("invalid port {p:?} in URL {shown:?}"));
        }
    }
    Ok(())
}

fn queue_config(raw: &RawQueueConfig, path: &str) -> Result<QueueConfig> {
    let key = |name: &str| format!("{path}.{name}");
    let capacity = count(&raw.capacity, &key("capacity"), 10_000, 1..=u64::MAX)?;
    let max_shards = count(&raw.max_shards, &key("max_shards"), 50, 1..=u64::MAX)?;
    let min_shards = count(&raw.min_shards, &key("min_shards"), 1, 1..=u64::MAX)?;
    if min_shards > max_shards {
        let (span, k) = match (&raw.min_shards, &raw.max_shards) {
            (Some(min), _) => (min.span(), key("min_shards")),
            (None, Some(max)) => (max.span(), key("max_shards")),
            (None, None) => (0..0, key("min_shards")),
        };
        return Err(invalid(
            span,
            k,
            format!("min_shards ({min_shards}) must not exceed max_shards ({max_shards})"),
        ));
    }
    let max_samples_per_send = count(
        &raw.max_samples_per_send,
        &key("max_samples_per_send"),
        2000,
        1..=u64::MAX,
    )?;
    let batch_send_deadline = positive_duration(
        &raw.batch_send_deadline,
        &key("batch_send_deadline"),
        Duration::from_secs(5),
    )?;
    let min_backoff = duration_or(
        &raw.min_backoff,
        &key("min_backoff"),
        Duration::from_millis(30),
    )?;
    let max_backoff = duration_or(
        &raw.max_backoff,
        &key("max_backoff"),
        Duration::from_secs(5),
    )?;
    if max_backoff < min_backoff {
        let (span, k) = match (&raw.max_backoff, &raw.min_backoff) {
            (Some(max), _) => (max.span(), key("max_backoff")),
            (None, Some(min)) => (min.span(), key("min_backoff")),
            (None, None) => (0..0, key("max_backoff")),
        };
        return Err(invalid(
            span,
            k,
            format!(
                "max_backoff ({}) must not be less than min_backoff ({})",
                format_duration(max_backoff),
                format_duration(min_backoff)
            ),
        ));
    }
    Ok(QueueConfig {
        capacity,
        max_shards,
        min_shards,
        max_samples_per_send,
        batch_send_deadline,
        min_backoff,
        max_backoff,
        retry_on_http_429: raw.retry_on_http_429,
    })
}

/// 4 workers per core keeps cores busy while most workers wait on the network; the
/// clamp keeps tiny and huge machines sane.
fn default_workers() -> u64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    (4 * cores).clamp(2, 64)
}

fn engine(raw: &RawEngine) -> Result<EngineConfig> {
    let wheel_tick = positive_duration(&raw.wheel_tick, "engine.wheel_tick", DEFAULT_WHEEL_TICK)?;
    if wheel_tick > MAX_WHEEL_TICK {
        if let Some(t) = &raw.wheel_tick {
            return Err(invalid(
                t.span(),
                "engine.wheel_tick",
                format!(
                    "wheel_tick {} is too coarse: it is the scheduling resolution; use at most 1s",
                    format_duration(wheel_tick)
                ),
            ));
        }
    }
    Ok(EngineConfig {
        workers: count(
            &raw.workers,
            "engine.workers",
            default_workers(),
            1..=MAX_WORKERS,
        )?,
        wheel_tick,
        stripes: count(
            &raw.stripes,
            "engine.stripes",
            DEFAULT_STRIPES,
            1..=MAX_STRIPES,
        )?,
        reload_throttle: duration_or(
            &raw.reload_throttle,
            "engine.reload_throttle",
            DEFAULT_RELOAD_THROTTLE,
        )?,
        queue_size: count(
            &raw.queue_size,
            "engine.queue_size",
            DEFAULT_QUEUE_SIZE,
            1..=u64::MAX,
        )?,
        memory_limit: size(&raw.memory_limit, "engine.memory_limit")?.unwrap_or(0),
        stream_threshold: match size(&raw.stream_threshold, "engine.stream_threshold")? {
            None => DEFAULT_STREAM_THRESHOLD,
            Some(n) if n >= MIN_STREAM_THRESHOLD => n,
            Some(_) => {
                let span = raw.stream_threshold.as_ref().map_or(0..0, |s| s.span());
                return Err(invalid(
                    span,
                    "engine.stream_threshold",
                    "stream_threshold must be at least 64KiB: smaller parts cost more than they save",
                ));
            }
        },
    })
}

fn storage(raw: &RawStorage) -> Result<StorageConfig> {
    let path = match &raw.path {
        Some(p) if p.get_ref().is_empty() => {
            return Err(invalid(
                p.span(),
                "storage.path",
                "storage.path must not be empty",
            ))
        }
        Some(p) => PathBuf::from(p.get_ref()),
        None => PathBuf::from(DEFAULT_STORAGE_PATH),
    };
    let retention_size =
        size(&raw.retention_size, "storage.retention_size")?.unwrap_or(DEFAULT_RETENTION_SIZE);
    let segment_size =
        size(&raw.segment_size, "storage.segment_size")?.unwrap_or(DEFAULT_SEGMENT_SIZE);
    if segment_size == 0 {
        if let Some(s) = &raw.segment_size {
            return Err(invalid(
                s.span(),
                "storage.segment_size",
                "must be greater than 0",
            ));
        }
    }
    // Retention deletes whole segments, so a segment larger than the budget could never
    // be kept within it.
    if retention_size > 0 && segment_size > retention_size {
        let (span, key) = match (&raw.segment_size, &raw.retention_size) {
            (Some(s), _) => (s.span(), "storage.segment_size"),
            (None, Some(r)) => (r.span(), "storage.retention_size"),
            (None, None) => (0..0, "storage.segment_size"),
        };
        return Err(invalid(
            span,
            key,
            format!(
                "segment_size ({}) must not exceed retention_size ({}); retention deletes whole segments",
                super::format_size(segment_size),
                super::format_size(retention_size)
            ),
        ));
    }
    Ok(StorageConfig {
        path,
        retention_size,
        retention_time: duration_or(
            &raw.retention_time,
            "storage.retention_time",
            DEFAULT_RETENTION_TIME,
        )?,
        flush_interval: positive_duration(
            &raw.flush_interval,
            "storage.flush_interval",
            DEFAULT_FLUSH_INTERVAL,
        )?,
        segment_size,
        drain_timeout: duration_or(
            &raw.drain_timeout,
            "storage.drain_timeout",
            DEFAULT_DRAIN_TIMEOUT,
        )?,
        max_block_samples: count(
            &raw.max_block_samples,
            "storage.max_block_samples",
            DEFAULT_MAX_BLOCK_SAMPLES,
            1..=u64::MAX,
        )?,
    })
}

fn web(raw: &RawWeb) -> Result<WebConfig> {
    let listen_address = match &raw.listen_address {
        None => DEFAULT_LISTEN_ADDRESS.to_owned(),
        Some(a) => {
            let addr = a.get_ref();
            let bad = || {
                invalid(
                    a.span(),
                    "web.listen_address",
                    format!("{addr:?} is not a valid listen address; expected host:port, e.g. \"127.0.0.1:9464\""),
                )
            };
            let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
            port.parse::<u16>().map_err(|_| bad())?;
            if host.is_empty() {
                // Go's ":9464" means every interface.
                format!("0.0.0.0:{port}")
            } else {
                addr.clone()
            }
        }
    };
    Ok(WebConfig {
        listen_address,
        enable_lifecycle: raw.enable_lifecycle.unwrap_or(false),
    })
}

fn cluster(raw: &RawCluster) -> Result<ClusterConfig> {
    let members_count = raw.members_count.as_ref().map_or(0, |v| *v.get_ref());
    let member_num = raw.member_num.as_ref().map_or(0, |v| *v.get_ref());
    let replication_factor = raw.replication_factor.as_ref().map_or(1, |v| *v.get_ref());
    // 0 and 1 both mean a single member that scrapes everything.
    let members = members_count.max(1);
    if member_num >= members {
        let span = raw.member_num.as_ref().map_or(0..0, |v| v.span());
        let rule = if members_count > 1 {
            format!(
                "members are numbered 0 to {} for members_count {members_count}",
                members - 1
            )
        } else {
            format!("without sharding (members_count {members_count}) it must be 0")
        };
        return Err(invalid(
            span,
            "cluster.member_num",
            format!("member_num {member_num} is out of range: {rule}"),
        ));
    }
    if replication_factor == 0 || replication_factor > members {
        let span = raw.replication_factor.as_ref().map_or(0..0, |v| v.span());
        return Err(invalid(
            span,
            "cluster.replication_factor",
            format!(
                "replication_factor {replication_factor} is out of range: it must be between 1 and {members} (members_count {members_count})"
            ),
        ));
    }
    Ok(ClusterConfig {
        members_count,
        member_num,
        replication_factor,
    })
}

/// Expands `$VAR` and `${VAR}` as Go's `os.Expand` does, with Prometheus's mapping for
/// external labels: `$$` is a literal `$`, an unset variable expands to "".
pub(super) fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    if !s.contains('$') {
        return s.to_owned();
    }
    let lookup = |name: &str| -> String {
        if name == "$" {
            "$".to_owned()
        } else {
            env(name).unwrap_or_default()
        }
    };
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut j = 0;
    while j < b.len() {
        if b[j] == b'$' && j + 1 < b.len() {
            out.push_str(&s[copied..j]);
            let (name, width) = shell_name(&s[j + 1..]);
            match name {
                // Bad syntax such as "${}" or an unclosed "${": Go drops those characters.
                None if width > 0 => {}
                // "$" not followed by a name stays as it is.
                None => out.push('$'),
                Some(name) => out.push_str(&lookup(name)),
            }
            j += 1 + width;
            copied = j;
        } else {
            j += 1;
        }
    }
    out.push_str(&s[copied.min(s.len())..]);
    out
}

/// Go's `getShellName`: the variable name after a `$` and how many bytes it spans.
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let b = s.as_bytes();
    let special = |c: u8| b"*#$@!?-0123456789".contains(&c);
    if b[0] == b'{' {
        if b.len() > 2 && special(b[1]) && b[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        return match b[1..].iter().position(|&c| c == b'}') {
            Some(0) => (None, 2),
            Some(i) => (Some(&s[1..=i]), i + 2),
            None => (None, 1),
        };
    }
    if special(b[0]) {
        return (Some(&s[..1]), 1);
    }
    let n = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    if n == 0 {
        (None, 0)
    } else {
        (Some(&s[..n]), n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("h1".into()),
            "DC" => Some("eu".into()),
            "1" => Some("one".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_like_go_os_expand() {
        assert_eq!(expand_env("plain", &env), "plain");
        assert_eq!(expand_env("$HOST", &env), "h1");
        assert_eq!(expand_env("${HOST}-${DC}", &env), "h1-eu");
        assert_eq!(expand_env("a$DC.b", &env), "aeu.b");
        assert_eq!(expand_env("cost $$5", &env), "cost $5");
        assert_eq!(expand_env("$UNSET|", &env), "|");
        assert_eq!(expand_env("trailing $", &env), "trailing $");
        assert_eq!(expand_env("$ space", &env), "$ space");
        assert_eq!(expand_env("x${}y", &env), "xy");
        assert_eq!(expand_env("x${HOST", &env), "xHOST");
        assert_eq!(expand_env("$1st", &env), "onest");
        assert_eq!(expand_env("é$HOSTé", &env), "éh1é");
    }

    #[test]
    fn file_sd_patterns_follow_prometheus() {
        for ok in [
            "targets.json",
            "sd/*.yml",
            "/etc/sd/node-*.yaml",
            "A.JSON",
            "*.json",
        ] {
            assert!(is_file_sd_pattern(ok), "{ok}");
        }
        for bad in ["targets.txt", "sd/*/x.json", "*a*.json", "x.Json", "json"] {
            assert!(!is_file_sd_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn urls_need_scheme_host_and_numeric_port() {
        assert!(check_url("http://localhost:9090/api/v1/write", &HTTP_SCHEMES).is_ok());
        assert!(check_url("https://u:p@[::1]:443/x?y#z", &HTTP_SCHEMES).is_ok());
        assert!(check_url("https://example.com", &HTTP_SCHEMES).is_ok());
        assert!(check_url("socks5://proxy:1080", &PROXY_SCHEMES).is_ok());
        for bad in [
            "localhost:9090",
            "ftp://h/",
            "http://",
            "http://:80/",
            "http://h:x/",
            "http://h h/",
            "http://[::1/",
        ] {
            assert!(check_url(bad, &HTTP_SCHEMES).is_err(), "{bad}");
        }
        let msg = check_url("ftp://user:hunter2@h/", &HTTP_SCHEMES)
            .err()
            .unwrap_or_default();
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}
