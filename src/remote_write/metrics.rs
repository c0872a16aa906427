//! Self-metrics of one receiver, every series labelled `remote_name` and `url` (the URL
//! with any password removed), as Prometheus labels its `prometheus_remote_storage_*`.

use std::sync::Arc;

use super::client::Class;
use crate::metrics::{Counter, Gauge, Registry};

/// Why samples were not delivered to a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The receiver answered a non-retryable status (4xx, or 429 without
    /// `retry_on_http_429`).
    Rejected,
    /// Retention deleted spooled data before the receiver got it.
    Retention,
    /// Spooled data failed verification (checksum, snappy, protobuf) or segments were
    /// missing from the spool.
    Corrupt,
    /// `write_relabel_configs` dropped the series (intended, but counted).
    WriteRelabel,
}

impl DropReason {
    const ALL: [DropReason; 4] = [
        DropReason::Rejected,
        DropReason::Retention,
        DropReason::Corrupt,
        DropReason::WriteRelabel,
    ];

    fn label(self) -> &'static str {
        match self {
            DropReason::Rejected => "rejected",
            DropReason::Retention => "retention",
            DropReason::Corrupt => "corrupt",
            DropReason::WriteRelabel => "write_relabel",
        }
    }
}

pub struct ReceiverMetrics {
    pub samples_sent: Arc<Counter>,
    pub bytes_sent: Arc<Counter>,
    pub requests_sent: Arc<Counter>,
    failed: Vec<Arc<Counter>>,
    retried: Vec<Arc<Counter>>,
    dropped: Vec<Arc<Counter>>,
    pub lag_bytes: Arc<Gauge>,
    pub lag_seconds: Arc<Gauge>,
    pub highest_sent_seconds: Arc<Gauge>,
    pub shards: Arc<Gauge>,
    pub shards_max: Arc<Gauge>,
}

impl ReceiverMetrics {
    pub fn new(reg: &Registry, name: &str, url: &str) -> ReceiverMetrics {
        let base = [("remote_name", name), ("url", url)];
        let with = |k: &'static str, v: &'static str| {
            let mut l = base.to_vec();
            l.push((k, v));
            l
        };
        ReceiverMetrics {
            samples_sent: reg.counter(
                "scrapewheel_remote_write_samples_sent_total",
                "Samples the receiver acknowledged (2xx).",
                &base,
            ),
            bytes_sent: reg.counter(
                "scrapewheel_remote_write_bytes_sent_total",
                "Request body bytes (snappy-compressed) the receiver acknowledged.",
                &base,
            ),
            requests_sent: reg.counter(
                "scrapewheel_remote_write_requests_sent_total",
                "Requests the receiver acknowledged (2xx).",
                &base,
            ),
            failed: Class::ALL
                .iter()
                .map(|c| {
                    reg.counter(
                        "scrapewheel_remote_write_requests_failed_total",
                        "Requests that got no 2xx answer, by status class (network: no answer).",
                        &with("status_class", c.label()),
                    )
                })
                .collect(),
            retried: Class::ALL
                .iter()
                .map(|c| {
                    reg.counter(
                        "scrapewheel_remote_write_requests_retried_total",
                        "Failed requests that will be retried after a backoff, by status class.",
                        &with("status_class", c.label()),
                    )
                })
                .collect(),
            dropped: DropReason::ALL
                .iter()
                .map(|r| {
                    reg.counter(
                        "scrapewheel_remote_write_samples_dropped_total",
                        "Samples that will never reach the receiver, by reason.",
                        &with("reason", r.label()),
                    )
                })
                .collect(),
            lag_bytes: reg.gauge(
                "scrapewheel_remote_write_lag_bytes",
                "Spooled bytes the receiver has not acknowledged yet.",
                &base,
            ),
            lag_seconds: reg.gauge(
                "scrapewheel_remote_write_lag_seconds",
                "Newest spooled sample timestamp minus the newest acknowledged one (0 when caught up).",
                &base,
            ),
            highest_sent_seconds: reg.gauge(
                "scrapewheel_remote_write_highest_sent_timestamp_seconds",
                "Newest sample timestamp the receiver acknowledged, Unix seconds.",
                &base,
            ),
            shards: reg.gauge(
                "scrapewheel_remote_write_shards",
                "Sender threads currently sending to the receiver.",
                &base,
            ),
            shards_max: reg.gauge(
                "scrapewheel_remote_write_shards_max",
                "Most sender threads the receiver may get (max_shards, at most engine.stripes).",
                &base,
            ),
        }
    }

    pub fn failed(&self, c: Class) -> &Counter {
        &self.failed[class_index(c)]
    }

    pub fn retried(&self, c: Class) -> &Counter {
        &self.retried[class_index(c)]
    }

    /// Retries of every class so far (the shard policy watches it grow).
    pub fn retried_total(&self) -> u64 {
        self.retried.iter().map(|c| c.get()).sum()
    }

    pub fn dropped(&self, r: DropReason) -> &Counter {
        &self.dropped[DropReason::ALL.iter().position(|x| *x == r).unwrap_or(0)]
    }
}

fn class_index(c: Class) -> usize {
    Class::ALL.iter().position(|x| *x == c).unwrap_or(0)
}
