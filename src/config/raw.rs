//! The configuration file as written: serde structs that mirror the TOML keys one to one.
//!
//! Nothing here applies a default or checks a value; [`super::resolve`] does both. Every
//! struct denies unknown keys, so a typo is an error with a position rather than a setting
//! silently ignored. Values that are validated later are wrapped in [`Spanned`] so a
//! semantic error can point at the value's line and column. `Hash` is derived so a job's
//! raw table can be fingerprinted (`Spanned` hashes its value only, so moving a job within
//! the file does not change its fingerprint).
//!
//! The HTTP client keys (basic_auth, authorization, tls_config, proxy_url) are repeated
//! in each struct that takes them rather than shared through `#[serde(flatten)]`: a
//! flattened struct loses value positions and cannot deny unknown keys.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::Secret;

/// A label or header map whose keys and values keep their positions.
pub(super) type SpannedMap = BTreeMap<Spanned<String>, Spanned<String>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub global: RawGlobal,
    #[serde(default)]
    pub scrape_configs: Vec<Spanned<RawScrapeConfig>>,
    #[serde(default)]
    pub remote_write: Vec<Spanned<RawRemoteWrite>>,
    #[serde(default)]
    pub engine: RawEngine,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub web: RawWeb,
    #[serde(default)]
    pub cluster: RawCluster,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGlobal {
    pub scrape_interval: Option<Spanned<DurationText>>,
    pub scrape_timeout: Option<Spanned<DurationText>>,
    #[serde(default)]
    pub external_labels: SpannedMap,
    pub body_size_limit: Option<Spanned<SizeText>>,
    #[serde(default)]
    pub sample_limit: u64,
    #[serde(default)]
    pub target_limit: u64,
    #[serde(default)]
    pub label_limit: u64,
    #[serde(default)]
    pub label_name_length_limit: u64,
    #[serde(default)]
    pub label_value_length_limit: u64,
    #[serde(default)]
    pub keep_dropped_targets: u64,
    pub scrape_protocols: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScrapeConfig {
    pub job_name: Option<Spanned<String>>,
    pub scrape_interval: Option<Spanned<DurationText>>,
    pub scrape_timeout: Option<Spanned<DurationText>>,
    pub metrics_path: Option<Spanned<String>>,
    pub scheme: Option<Spanned<String>>,
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    pub honor_labels: Option<bool>,
    pub honor_timestamps: Option<bool>,
    pub track_timestamps_staleness: Option<bool>,
    #[serde(default)]
    pub sample_limit: u64,
    #[serde(default)]
    pub label_limit: u64,
    #[serde(default)]
    pub label_name_length_limit: u64,
    #[serde(default)]
    pub label_value_length_limit: u64,
    pub body_size_limit: Option<Spanned<SizeText>>,
    #[serde(default)]
    pub target_limit: u64,
    #[serde(default)]
    pub keep_dropped_targets: u64,
    pub scrape_protocols: Option<Spanned<Vec<Spanned<String>>>>,
    pub fallback_scrape_protocol: Option<Spanned<String>>,
    pub enable_compression: Option<bool>,
    pub basic_auth: Option<Spanned<RawBasicAuth>>,
    pub authorization: Option<Spanned<RawAuthorization>>,
    pub tls_config: Option<Spanned<RawTlsConfig>>,
    pub proxy_url: Option<Spanned<String>>,
    #[serde(default)]
    pub static_configs: Vec<Spanned<RawStaticConfig>>,
    #[serde(default)]
    pub file_sd_configs: Vec<Spanned<RawFileSdConfig>>,
    #[serde(default)]
    pub http_sd_configs: Vec<Spanned<RawHttpSdConfig>>,
    #[serde(default)]
    pub dns_sd_configs: Vec<Spanned<RawDnsSdConfig>>,
    #[serde(default)]
    pub relabel_configs: Vec<Spanned<RawRelabelConfig>>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<Spanned<RawRelabelConfig>>,
}

#[derive(Debug, Default, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBasicAuth {
    #[serde(default)]
    pub username: String,
    pub password: Option<Secret>,
    pub password_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthorization {
    #[serde(rename = "type")]
    pub auth_type: Option<Spanned<String>>,
    pub credentials: Option<Secret>,
    pub credentials_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTlsConfig {
    pub ca_file: Option<String>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Default, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStaticConfig {
    #[serde(default)]
    pub targets: Vec<Spanned<String>>,
    #[serde(default)]
    pub labels: SpannedMap,
}

#[derive(Debug, Default, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFileSdConfig {
    pub files: Option<Spanned<Vec<Spanned<String>>>>,
    pub refresh_interval: Option<Spanned<DurationText>>,
}

#[derive(Debug, Default, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttpSdConfig {
    pub url: Option<Spanned<String>>,
    pub refresh_interval: Option<Spanned<DurationText>>,
    pub basic_auth: Option<Spanned<RawBasicAuth>>,
    pub authorization: Option<Spanned<RawAuthorization>>,
    pub tls_config: Option<Spanned<RawTlsConfig>>,
    pub proxy_url: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDnsSdConfig {
    pub names: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(rename = "type")]
    pub record_type: Option<Spanned<String>>,
    pub port: Option<Spanned<u16>>,
    pub refresh_interval: Option<Spanned<DurationText>>,
    /// scrapewheel extension: servers to ask instead of /etc/resolv.conf's.
    pub nameservers: Option<Spanned<Vec<Spanned<String>>>>,
}

/// Mirrors `relabel::RelabelConfig` field for field, with positions, so that an error
/// from `Rule::compile` (which names the offending field) can point at that field.
#[derive(Debug, Default, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelabelConfig {
    pub source_labels: Option<Spanned<Vec<String>>>,
    pub separator: Option<Spanned<String>>,
    pub regex: Option<Spanned<String>>,
    pub modulus: Option<Spanned<u64>>,
    pub target_label: Option<Spanned<String>>,
    pub replacement: Option<Spanned<String>>,
    pub action: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemoteWrite {
    pub url: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub remote_timeout: Option<Spanned<DurationText>>,
    #[serde(default)]
    pub headers: BTreeMap<Spanned<String>, Spanned<Secret>>,
    pub basic_auth: Option<Spanned<RawBasicAuth>>,
    pub authorization: Option<Spanned<RawAuthorization>>,
    pub tls_config: Option<Spanned<RawTlsConfig>>,
    pub proxy_url: Option<Spanned<String>>,
    #[serde(default)]
    pub write_relabel_configs: Vec<Spanned<RawRelabelConfig>>,
    #[serde(default)]
    pub queue_config: RawQueueConfig,
}

#[derive(Debug, Default, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueueConfig {
    pub capacity: Option<Spanned<u64>>,
    pub max_shards: Option<Spanned<u64>>,
    pub min_shards: Option<Spanned<u64>>,
    pub max_samples_per_send: Option<Spanned<u64>>,
    pub batch_send_deadline: Option<Spanned<DurationText>>,
    pub min_backoff: Option<Spanned<DurationText>>,
    pub max_backoff: Option<Spanned<DurationText>>,
    #[serde(default)]
    pub retry_on_http_429: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEngine {
    pub workers: Option<Spanned<u64>>,
    pub wheel_tick: Option<Spanned<DurationText>>,
    pub stripes: Option<Spanned<u64>>,
    pub reload_throttle: Option<Spanned<DurationText>>,
    pub queue_size: Option<Spanned<u64>>,
    pub memory_limit: Option<Spanned<SizeText>>,
    pub stream_threshold: Option<Spanned<SizeText>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub path: Option<Spanned<String>>,
    pub retention_size: Option<Spanned<SizeText>>,
    pub retention_time: Option<Spanned<DurationText>>,
    pub flush_interval: Option<Spanned<DurationText>>,
    pub segment_size: Option<Spanned<SizeText>>,
    pub drain_timeout: Option<Spanned<DurationText>>,
    pub max_block_samples: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    pub listen_address: Option<Spanned<String>>,
    pub enable_lifecycle: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub members_count: Option<Spanned<u32>>,
    pub member_num: Option<Spanned<u32>>,
    pub replication_factor: Option<Spanned<u32>>,
}

/// A duration as written. A string is kept for `resolve` to parse (so its error carries
/// the key path); an integer is accepted only as 0, Prometheus's one unitless duration,
/// and anything else fails here with a hint to add a unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct DurationText(pub String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"30s\" or \"1m30s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationText, E> {
                if v == 0 {
                    return Ok(DurationText("0".to_owned()));
                }
                Err(E::custom(format_args!(
                    "a duration needs a unit and quotes: write \"{v}s\" (or ms, m, h, d, w, y)"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A size as written: a string such as `"64MiB"`, or a non-negative integer of bytes
/// (kept as its decimal string so `resolve` parses both alike).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct SizeText(pub String);

impl<'de> Deserialize<'de> for SizeText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SizeText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64MiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeText, E> {
                Ok(SizeText(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeText, E> {
                if v < 0 {
                    return Err(E::custom(format_args!(
                        "a size cannot be negative, got {v}"
                    )));
                }
                Ok(SizeText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeText, E> {
                Ok(SizeText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
