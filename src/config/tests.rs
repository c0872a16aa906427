//! Loader tests: whole files in, resolved values or exact error positions out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const SOURCE: &str = "/etc/scrapewheel/test.toml";

fn env(name: &str) -> Option<String> {
    match name {
        "HOSTNAME" => Some("edge-1".into()),
        "DC" => Some("eu".into()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_str_with_env(text, Path::new(SOURCE), &env)
}

fn ok(text: &str) -> Config {
    load(text).unwrap_or_else(|e| panic!("config should load, got: {e}"))
}

fn err(text: &str) -> ConfigError {
    match load(text) {
        Ok(_) => panic!("config should be rejected:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts the error's position, key, a fragment of its message, and the Display form.
#[track_caller]
fn assert_error(text: &str, line: usize, column: usize, key: &str, fragment: &str) -> ConfigError {
    let e = err(text);
    let shown = e.to_string();
    assert_eq!(
        (e.line(), e.column()),
        (Some(line), Some(column)),
        "position of: {shown}"
    );
    assert_eq!(e.key(), Some(key), "key of: {shown}");
    assert!(
        shown.contains(fragment),
        "{shown:?} should contain {fragment:?}"
    );
    let prefix = if key.is_empty() {
        format!("{SOURCE}:{line}:{column}: ")
    } else {
        format!("{SOURCE}:{line}:{column}: {key}: ")
    };
    assert!(
        shown.starts_with(&prefix),
        "{shown:?} should start with {prefix:?}"
    );
    e
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const ONE_JOB: &str = "[[scrape_configs]]\njob_name = \"j\"\n";

// ---------------------------------------------------------------------------------------
// Defaults and inheritance

#[test]
fn empty_file_gets_every_default() {
    let c = ok("");
    assert_eq!(c.source, PathBuf::from(SOURCE));
    assert_eq!(c.global.scrape_interval, secs(60));
    assert_eq!(c.global.scrape_timeout, secs(10));
    assert!(c.global.external_labels.is_empty());
    assert_eq!(c.global.scrape_protocols, ScrapeProtocol::DEFAULT.to_vec());
    assert!(c.scrape_configs.is_empty() && c.remote_write.is_empty());
    let workers = c.engine.workers;
    assert!((2..=64).contains(&workers), "{workers}");
    assert_eq!(c.engine.wheel_tick, Duration::from_millis(1));
    assert_eq!(
        (c.engine.stripes, c.engine.queue_size, c.engine.memory_limit),
        (16, 1024, 0)
    );
    assert_eq!(c.engine.reload_throttle, secs(5));
    assert_eq!(
        c.storage,
        StorageConfig {
            path: PathBuf::from("data"),
            retention_size: 1 << 30,
            retention_time: secs(24 * 3600),
            flush_interval: secs(1),
            segment_size: 16 << 20,
            drain_timeout: secs(10),
            max_block_samples: 2000,
        }
    );
    assert_eq!(
        c.web,
        WebConfig {
            listen_address: "127.0.0.1:9464".into(),
            enable_lifecycle: false
        }
    );
    assert_eq!(
        c.cluster,
        ClusterConfig {
            members_count: 0,
            member_num: 0,
            replication_factor: 1
        }
    );
}

#[test]
fn default_workers_are_four_per_core_clamped() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(ok("").engine.workers, (4 * cores).clamp(2, 64));
    assert_eq!(ok("[engine]\nworkers = 3\n").engine.workers, 3);
}

#[test]
fn job_defaults_follow_prometheus() {
    let c = ok(ONE_JOB);
    let j = &c.scrape_configs[0];
    assert_eq!(j.job_name, "j");
    assert_eq!((j.scrape_interval, j.scrape_timeout), (secs(60), secs(10)));
    assert_eq!(
        (j.metrics_path.as_str(), j.scheme.as_str()),
        ("/metrics", "http")
    );
    assert!(j.params.is_empty());
    assert!(!j.honor_labels && j.honor_timestamps && !j.track_timestamps_staleness);
    assert!(j.enable_compression);
    assert_eq!(j.scrape_protocols, ScrapeProtocol::DEFAULT.to_vec());
    assert_eq!(j.fallback_scrape_protocol, None);
    assert_eq!(
        (
            j.sample_limit,
            j.label_limit,
            j.body_size_limit,
            j.target_limit,
            j.keep_dropped_targets
        ),
        (0, 0, 0, 0, 0)
    );
    assert!(j.basic_auth.is_none() && j.authorization.is_none() && j.tls_config.is_none());
    assert!(j.static_configs.is_empty() && j.relabel_configs.is_empty());
}

#[test]
fn timeout_defaults_to_min_of_global_timeout_and_interval() {
    // A global interval below the default timeout pulls the global timeout down.
    let c = ok("[global]\nscrape_interval = \"5s\"\n");
    assert_eq!(
        (c.global.scrape_interval, c.global.scrape_timeout),
        (secs(5), secs(5))
    );
    // A job interval below the global timeout caps the job's inherited timeout.
    let c = ok(&format!("{ONE_JOB}scrape_interval = \"4s\"\n"));
    assert_eq!(c.scrape_configs[0].scrape_timeout, secs(4));
    // A job with a long interval keeps the global timeout.
    let c = ok(&format!(
        "[global]\nscrape_timeout = \"3s\"\n{ONE_JOB}scrape_interval = \"1h\"\n"
    ));
    assert_eq!(c.scrape_configs[0].scrape_timeout, secs(3));
}

#[test]
fn zero_durations_mean_default() {
    let c = ok(&format!(
        "[global]\nscrape_interval = \"0s\"\nscrape_timeout = 0\n{ONE_JOB}scrape_interval = \"0\"\nscrape_timeout = \"0s\"\n"
    ));
    assert_eq!(
        (c.global.scrape_interval, c.global.scrape_timeout),
        (secs(60), secs(10))
    );
    let j = &c.scrape_configs[0];
    assert_eq!((j.scrape_interval, j.scrape_timeout), (secs(60), secs(10)));
}

#[test]
fn job_limits_of_zero_inherit_the_global_ones() {
    let c = ok(&format!(
        "[global]\nsample_limit = 100\nlabel_limit = 30\nlabel_name_length_limit = 40\n\
         label_value_length_limit = 50\ntarget_limit = 7\nkeep_dropped_targets = 9\n\
         body_size_limit = \"10MiB\"\n\
         {ONE_JOB}sample_limit = 0\nlabel_limit = 31\nbody_size_limit = \"1KiB\"\n"
    ));
    let j = &c.scrape_configs[0];
    assert_eq!(
        j.sample_limit, 100,
        "a job's 0 cannot switch off a global limit"
    );
    assert_eq!(j.label_limit, 31);
    assert_eq!(
        (j.label_name_length_limit, j.label_value_length_limit),
        (40, 50)
    );
    assert_eq!((j.target_limit, j.keep_dropped_targets), (7, 9));
    assert_eq!(j.body_size_limit, 1024);
    assert_eq!(c.global.body_size_limit, 10 << 20);
}

#[test]
fn job_values_are_read() {
    let c = ok(r#"[[scrape_configs]]
job_name = "blackbox"
scrape_interval = "30s"
scrape_timeout = "20s"
metrics_path = "/probe"
scheme = "https"
params = { module = ["http_2xx", "tcp"], a = ["1"] }
honor_labels = true
honor_timestamps = false
track_timestamps_staleness = true
enable_compression = false
scrape_protocols = ["PrometheusText0.0.4", "OpenMetricsText1.0.0"]
fallback_scrape_protocol = "PrometheusText1.0.0"
proxy_url = "http://proxy.internal:3128"
"#);
    let j = &c.scrape_configs[0];
    assert_eq!((j.scrape_interval, j.scrape_timeout), (secs(30), secs(20)));
    assert_eq!(
        (j.metrics_path.as_str(), j.scheme.as_str()),
        ("/probe", "https")
    );
    assert_eq!(
        j.params,
        vec![
            ("a".to_owned(), vec!["1".to_owned()]),
            (
                "module".to_owned(),
                vec!["http_2xx".to_owned(), "tcp".to_owned()]
            )
        ],
        "params are sorted by key, values keep their order"
    );
    assert!(j.honor_labels && !j.honor_timestamps && j.track_timestamps_staleness);
    assert!(!j.enable_compression);
    assert_eq!(
        j.scrape_protocols,
        vec![
            ScrapeProtocol::PrometheusText0_0_4,
            ScrapeProtocol::OpenMetricsText1_0_0
        ]
    );
    assert_eq!(
        j.fallback_scrape_protocol,
        Some(ScrapeProtocol::PrometheusText1_0_0)
    );
    assert_eq!(j.proxy_url.as_deref(), Some("http://proxy.internal:3128"));
}

#[test]
fn global_scrape_protocols_are_inherited() {
    let c = ok(&format!(
        "[global]\nscrape_protocols = [\"PrometheusText0.0.4\"]\n{ONE_JOB}"
    ));
    assert_eq!(
        c.global.scrape_protocols,
        vec![ScrapeProtocol::PrometheusText0_0_4]
    );
    assert_eq!(
        c.scrape_configs[0].scrape_protocols,
        vec![ScrapeProtocol::PrometheusText0_0_4]
    );
}

#[test]
fn media_types_and_names() {
    assert_eq!(
        ScrapeProtocol::OpenMetricsText1_0_0.media_type(),
        "application/openmetrics-text;version=1.0.0"
    );
    assert_eq!(
        ScrapeProtocol::PrometheusText0_0_4.media_type(),
        "text/plain;version=0.0.4"
    );
    assert_eq!(
        ScrapeProtocol::OpenMetricsText0_0_1.to_string(),
        "OpenMetricsText0.0.1"
    );
    for p in ScrapeProtocol::DEFAULT {
        assert_eq!(ScrapeProtocol::from_name(p.name()), Some(p));
    }
}

#[test]
fn static_configs_targets_and_labels() {
    let c = ok(r#"[[scrape_configs]]
job_name = "node"
[[scrape_configs.static_configs]]
targets = ["a:9100", "b:9100"]
labels = { env = "prod", "dotted.name" = "ok" }
[[scrape_configs.static_configs]]
targets = ["c:9100"]
"#);
    let j = &c.scrape_configs[0];
    assert_eq!(j.static_configs.len(), 2);
    assert_eq!(j.static_configs[0].targets, ["a:9100", "b:9100"]);
    assert_eq!(j.static_configs[0].labels.get("env"), Some("prod"));
    assert_eq!(
        j.static_configs[0].labels.get("dotted.name"),
        Some("ok"),
        "UTF-8 names are valid"
    );
    assert!(j.static_configs[1].labels.is_empty());
}

#[test]
fn external_labels_expand_environment_variables() {
    let c = ok(r#"[global.external_labels]
replica = "${HOSTNAME}"
dc = "$DC-1"
price = "$$5"
gone = "$NOT_SET"
"#);
    let l = &c.global.external_labels;
    assert_eq!(l.get("replica"), Some("edge-1"));
    assert_eq!(l.get("dc"), Some("eu-1"));
    assert_eq!(l.get("price"), Some("$5"));
    assert_eq!(
        l.get("gone"),
        None,
        "a value that expands to empty is dropped"
    );
}

#[test]
fn relabel_rules_compile_in_order() {
    let c = ok(r#"[[scrape_configs]]
job_name = "j"
[[scrape_configs.relabel_configs]]
source_labels = ["__address__"]
regex = "([^:]+):\\d+"
target_label = "host"
[[scrape_configs.relabel_configs]]
action = "labeldrop"
regex = "tmp_.*"
[[scrape_configs.metric_relabel_configs]]
source_labels = ["__name__"]
regex = "go_.*"
action = "drop"
"#);
    let j = &c.scrape_configs[0];
    assert_eq!(j.relabel_configs.len(), 2);
    assert_eq!(j.metric_relabel_configs.len(), 1);
    assert_eq!(
        j.metric_relabel_configs[0].action(),
        crate::relabel::Action::Drop
    );
}

#[test]
fn relative_file_paths_join_the_config_directory() {
    let c = ok(r#"[[scrape_configs]]
job_name = "j"
[scrape_configs.basic_auth]
username = "u"
password_file = "secrets/pw"
[scrape_configs.tls_config]
ca_file = "ca.pem"
cert_file = "/abs/cert.pem"
key_file = "key.pem"
[[scrape_configs.file_sd_configs]]
files = ["sd/*.json", "/abs/x.yml"]
[storage]
path = "spool"
"#);
    let j = &c.scrape_configs[0];
    let dir = Path::new("/etc/scrapewheel");
    let auth = j.basic_auth.as_ref().expect("basic_auth");
    assert_eq!(
        auth.password_file.as_deref(),
        Some(dir.join("secrets/pw").as_path())
    );
    let tls = j.tls_config.as_ref().expect("tls_config");
    assert_eq!(tls.ca_file.as_deref(), Some(dir.join("ca.pem").as_path()));
    assert_eq!(tls.cert_file.as_deref(), Some(Path::new("/abs/cert.pem")));
    assert_eq!(tls.key_file.as_deref(), Some(dir.join("key.pem").as_path()));
    assert_eq!(
        j.file_sd_configs[0].files,
        [dir.join("sd/*.json"), PathBuf::from("/abs/x.yml")]
    );
    assert_eq!(j.file_sd_configs[0].refresh_interval, secs(300));
    assert_eq!(
        c.storage.path,
        PathBuf::from("spool"),
        "storage.path stays relative to the CWD"
    );
}

#[test]
fn discovery_configs_parse_with_defaults() {
    let c = ok(r#"[[scrape_configs]]
job_name = "j"
[[scrape_configs.http_sd_configs]]
url = "https://inventory:8080/sd"
[[scrape_configs.dns_sd_configs]]
names = ["_node._tcp.example.com"]
[[scrape_configs.dns_sd_configs]]
names = ["node.example.com"]
type = "aaaa"
port = 9100
refresh_interval = "1m"
"#);
    let j = &c.scrape_configs[0];
    assert_eq!(j.http_sd_configs[0].url, "https://inventory:8080/sd");
    assert_eq!(j.http_sd_configs[0].refresh_interval, secs(60));
    assert_eq!(
        j.dns_sd_configs[0],
        DnsSdConfig {
            names: vec!["_node._tcp.example.com".into()],
            record_type: DnsRecordType::Srv,
            port: 0,
            refresh_interval: secs(30),
            nameservers: vec![],
        }
    );
    assert_eq!(j.dns_sd_configs[1].record_type, DnsRecordType::Aaaa);
    assert_eq!(
        (
            j.dns_sd_configs[1].port,
            j.dns_sd_configs[1].refresh_interval
        ),
        (9100, secs(60))
    );
}

#[test]
fn http_sd_takes_the_http_client_keys() {
    let c = ok(r#"[[scrape_configs]]
job_name = "j"
[[scrape_configs.http_sd_configs]]
url = "https://inventory:8080/sd"
refresh_interval = "15s"
proxy_url = "http://proxy:3128"
authorization = { credentials_file = "token" }
tls_config = { ca_file = "ca.pem", insecure_skip_verify = true }
"#);
    let h = &c.scrape_configs[0].http_sd_configs[0];
    assert_eq!(h.refresh_interval, secs(15));
    assert_eq!(h.proxy_url.as_deref(), Some("http://proxy:3128"));
    let a = h.authorization.as_ref().expect("authorization");
    assert_eq!(
        a.credentials_file.as_deref(),
        Some(Path::new("/etc/scrapewheel/token"))
    );
    let tls = h.tls_config.as_ref().expect("tls");
    assert_eq!(
        tls.ca_file.as_deref(),
        Some(Path::new("/etc/scrapewheel/ca.pem"))
    );
    assert!(tls.insecure_skip_verify);

    let secret = ok(r#"[[scrape_configs]]
job_name = "j"
[[scrape_configs.http_sd_configs]]
url = "http://u:hunter2@inventory/sd"
basic_auth = { username = "u", password = "hunter3" }
"#);
    let shown = format!("{:?}", secret.scrape_configs[0]);
    assert!(
        !shown.contains("hunter2") && !shown.contains("hunter3"),
        "{shown}"
    );

    assert_error(
        "[[scrape_configs]]\njob_name = \"j\"\n[[scrape_configs.http_sd_configs]]\nurl = \"http://x/sd\"\nbasic_auth = { username = \"u\" }\nauthorization = { credentials = \"t\" }\n",
        6,
        17,
        "scrape_configs[0].http_sd_configs[0].authorization",
        "at most one of basic_auth & authorization",
    );
}

#[test]
fn dns_sd_nameservers_are_a_checked_extension() {
    let c = ok(r#"[[scrape_configs]]
job_name = "j"
[[scrape_configs.dns_sd_configs]]
names = ["web.service.consul"]
type = "A"
port = 80
nameservers = ["127.0.0.1:8600", "10.0.0.2", "[::1]:53"]
"#);
    assert_eq!(
        c.scrape_configs[0].dns_sd_configs[0].nameservers,
        [
            "127.0.0.1:8600".parse::<std::net::SocketAddr>().expect("a"),
            "10.0.0.2:53".parse().expect("b"),
            "[::1]:53".parse().expect("c"),
        ]
    );
    assert_error(
        "[[scrape_configs]]\njob_name = \"j\"\n[[scrape_configs.dns_sd_configs]]\nnames = [\"x\"]\nnameservers = [\"ns1.example\"]\n",
        5,
        16,
        "scrape_configs[0].dns_sd_configs[0].nameservers[0]",
        "is not a nameserver address",
    );
}

#[test]
fn file_sd_accepts_toml_target_files() {
    let c = ok("[[scrape_configs]]\njob_name = \"j\"\n[[scrape_configs.file_sd_configs]]\nfiles = [\"sd/*.toml\"]\n");
    assert_eq!(
        c.scrape_configs[0].file_sd_configs[0].files,
        [PathBuf::from("/etc/scrapewheel/sd/*.toml")]
    );
}

#[test]
fn authorization_defaults_to_bearer() {
    let c = ok(&format!(
        "{ONE_JOB}authorization = {{ credentials = \"tok\" }}\n"
    ));
    let a = c.scrape_configs[0]
        .authorization
        .as_ref()
        .expect("authorization");
    assert_eq!(a.kind, "Bearer");
    assert_eq!(a.credentials.as_ref().map(Secret::expose), Some("tok"));
    let c = ok(&format!(
        "{ONE_JOB}authorization = {{ type = \" Token \", credentials_file = \"t\" }}\n"
    ));
    let a = c.scrape_configs[0]
        .authorization
        .as_ref()
        .expect("authorization");
    assert_eq!(a.kind, "Token");
    assert_eq!(
        a.credentials_file.as_deref(),
        Some(Path::new("/etc/scrapewheel/t"))
    );
}

#[test]
fn remote_write_defaults_and_values() {
    let c = ok(r#"[[remote_write]]
url = "https://user:hunter2@metrics.example.com/api/v1/write"
headers = { "X-Scope-OrgID" = "tenant-1" }
[remote_write.queue_config]
max_shards = 10
min_backoff = "100ms"
retry_on_http_429 = true
[[remote_write.write_relabel_configs]]
regex = "secret_.*"
action = "labeldrop"

[[remote_write]]
name = "backup"
url = "http://backup:8428/api/v1/write"
remote_timeout = "5s"
"#);
    let rw = &c.remote_write[0];
    assert_eq!(rw.remote_timeout, secs(30));
    assert_eq!(
        rw.name.len(),
        6,
        "an unnamed receiver gets 6 hex digits: {}",
        rw.name
    );
    assert!(rw.name.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(rw.headers[0].0, "X-Scope-OrgID");
    assert_eq!(rw.headers[0].1.expose(), "tenant-1");
    assert_eq!(rw.write_relabel_configs.len(), 1);
    assert_eq!(
        rw.queue_config,
        QueueConfig {
            capacity: 10_000,
            max_shards: 10,
            min_shards: 1,
            max_samples_per_send: 2000,
            batch_send_deadline: secs(5),
            min_backoff: Duration::from_millis(100),
            max_backoff: secs(5),
            retry_on_http_429: true,
        }
    );
    assert_eq!(
        rw.redacted_url(),
        "https://user:xxxxx@metrics.example.com/api/v1/write"
    );
    assert_eq!(
        (
            c.remote_write[1].name.as_str(),
            c.remote_write[1].remote_timeout
        ),
        ("backup", secs(5))
    );
}

#[test]
fn unnamed_remote_write_name_depends_on_url_only() {
    let a = ok("[[remote_write]]\nurl = \"http://r:1/w\"\n");
    let b = ok("[[remote_write]]\nurl = \"http://r:1/w\"\nremote_timeout = \"9s\"\n");
    let c = ok("[[remote_write]]\nurl = \"http://r:2/w\"\n");
    assert_eq!(a.remote_write[0].name, b.remote_write[0].name);
    assert_ne!(a.remote_write[0].name, c.remote_write[0].name);
    assert_ne!(a.remote_write[0].fingerprint, b.remote_write[0].fingerprint);
    // The top 24 bits of FNV-1a-64("http://r:1/w"): fixed across builds and versions.
    assert_eq!(a.remote_write[0].name, "d25f23");
}

/// Bad input never panics: random TOML-ish text either loads or gives a positioned error.
#[test]
fn arbitrary_text_never_panics() {
    const ALPHABET: &[u8] = b"[]{}=,.\"'#\n \t\\ab_1-$:";
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    let stems = [
        "",
        "[[scrape_configs]]\njob_name = \"j\"\n",
        "[global]\n",
        "a = [{b = ",
    ];
    for _ in 0..3000 {
        let len = next() % 40;
        let mut text = stems[next() % stems.len()].to_owned();
        text.extend((0..len).map(|_| ALPHABET[next() % ALPHABET.len()] as char));
        if let Err(e) = load(&text) {
            assert!(e.line().is_some(), "{e}");
        }
        for offset in 0..=text.len() {
            let _ = locate::key_path_at(&text, offset);
        }
    }
}

#[test]
fn web_and_cluster_values() {
    let c = ok(
        "[web]\nlisten_address = \":9999\"\nenable_lifecycle = true\n\
                [cluster]\nmembers_count = 3\nmember_num = 2\nreplication_factor = 3\n",
    );
    assert_eq!(
        c.web.listen_address, "0.0.0.0:9999",
        "Go's :port means every interface"
    );
    assert!(c.web.enable_lifecycle);
    assert_eq!(
        (
            c.cluster.members_count,
            c.cluster.member_num,
            c.cluster.replication_factor
        ),
        (3, 2, 3)
    );
    assert_eq!(
        ok("[web]\nlisten_address = \"[::1]:9464\"\n")
            .web
            .listen_address,
        "[::1]:9464"
    );
}

#[test]
fn sizes_accept_integers_and_strings() {
    let c = ok(
        "[storage]\nretention_size = 4096\nsegment_size = \"1KiB\"\n[engine]\nmemory_limit = 0\n",
    );
    assert_eq!(
        (c.storage.retention_size, c.storage.segment_size),
        (4096, 1024)
    );
    assert_eq!(c.engine.memory_limit, 0);
    let c = ok("[storage]\nretention_size = \"0\"\nretention_time = \"0s\"\n");
    assert_eq!(
        (c.storage.retention_size, c.storage.retention_time),
        (0, Duration::ZERO)
    );
}

#[test]
fn memory_limit_and_stream_threshold_are_sizes() {
    let c = ok("[engine]\nmemory_limit = \"256MiB\"\nstream_threshold = \"4MiB\"\n");
    assert_eq!(
        (c.engine.memory_limit, c.engine.stream_threshold),
        (256 << 20, 4 << 20)
    );
    assert_eq!(ok("").engine.stream_threshold, 1 << 20);
    let e = Config::from_str(
        "[engine]\nstream_threshold = \"1KiB\"\n",
        Path::new("m.toml"),
    )
    .expect_err("refused");
    let text = e.to_string();
    assert!(
        text.starts_with("m.toml:2:20: engine.stream_threshold:"),
        "{text}"
    );
    assert!(text.contains("at least 64KiB"), "{text}");
}

// ---------------------------------------------------------------------------------------
// Fingerprints

#[test]
fn fingerprint_is_stable_across_unrelated_edits() {
    let job = "[[scrape_configs]]\njob_name = \"a\"\n[[scrape_configs.static_configs]]\ntargets = [\"x:1\"]\n";
    let other = "[[scrape_configs]]\njob_name = \"b\"\n";
    let before = ok(&format!("{job}{other}"));
    // Job "a" moves below "b", which changes; other sections change too.
    let moved = ok(&format!(
        "[web]\nenable_lifecycle = true\n{other}scrape_interval = \"5s\"\n{job}"
    ));
    assert_eq!(
        before.scrape_configs[0].fingerprint,
        moved.scrape_configs[1].fingerprint
    );
    assert_ne!(
        before.scrape_configs[1].fingerprint,
        moved.scrape_configs[0].fingerprint
    );
    let inline =
        ok("scrape_configs = [{ job_name = \"a\", static_configs = [{ targets = [\"x:1\"] }] }]\n");
    assert_eq!(
        before.scrape_configs[0].fingerprint,
        inline.scrape_configs[0].fingerprint
    );
}

#[test]
fn fingerprint_leaves_out_target_sources() {
    let base = ok(&format!(
        "{ONE_JOB}[[scrape_configs.static_configs]]\ntargets = [\"a:1\"]\n"
    ))
    .scrape_configs[0]
        .fingerprint;
    let sources = ok(&format!(
        "{ONE_JOB}[[scrape_configs.static_configs]]\ntargets = [\"a:1\", \"b:1\"]\n\
         [[scrape_configs.file_sd_configs]]\nfiles = [\"x.json\"]\n\
         [[scrape_configs.dns_sd_configs]]\nnames = [\"n\"]\n\
         [[scrape_configs.http_sd_configs]]\nurl = \"http://h/sd\"\n"
    ))
    .scrape_configs[0]
        .fingerprint;
    assert_eq!(base, sources, "adding targets restarts nothing");
    let relabel = ok(&format!(
        "{ONE_JOB}[[scrape_configs.relabel_configs]]\naction = \"labeldrop\"\nregex = \"x\"\n"
    ))
    .scrape_configs[0]
        .fingerprint;
    assert_ne!(base, relabel);
}

#[test]
fn fingerprint_changes_with_the_job_or_what_it_inherits() {
    let base = ok(ONE_JOB).scrape_configs[0].fingerprint;
    let edited = ok(&format!("{ONE_JOB}honor_labels = true\n")).scrape_configs[0].fingerprint;
    let global = ok(&format!("[global]\nscrape_interval = \"30s\"\n{ONE_JOB}")).scrape_configs[0]
        .fingerprint;
    let labels = ok(&format!("[global.external_labels]\na = \"b\"\n{ONE_JOB}")).scrape_configs[0]
        .fingerprint;
    let elsewhere = Config::from_str_with_env(ONE_JOB, Path::new("/other/dir/x.toml"), &env)
        .map(|c| c.scrape_configs[0].fingerprint)
        .ok();
    assert_ne!(base, edited);
    assert_ne!(base, global);
    assert_eq!(base, labels, "external labels are not part of a job");
    assert_ne!(Some(base), elsewhere, "relative paths resolve differently");
}

// ---------------------------------------------------------------------------------------
// Errors from the TOML parser: positions and key paths

#[test]
fn unknown_top_level_key() {
    let text = "[global]\nscrape_interval = \"15s\"\n\n[storge]\npath = \"x\"\n";
    assert_error(text, 4, 2, "storge", "unknown field `storge`");
    assert_error(
        "scrape_config = []\n",
        1,
        1,
        "scrape_config",
        "unknown field `scrape_config`",
    );
}

#[test]
fn unknown_nested_key_in_table() {
    let text = r#"[[scrape_configs]]
job_name = "node"
[[scrape_configs.static_configs]]
targets = ["a:1"]
lables = { env = "prod" }
"#;
    assert_error(
        text,
        5,
        1,
        "scrape_configs[0].static_configs[0].lables",
        "unknown field `lables`",
    );
}

#[test]
fn unknown_nested_key_in_inline_table() {
    let text = r#"[[scrape_configs]]
job_name = "a"

[[scrape_configs]]
job_name = "b"
basic_auth = { username = "u", passwd = "p" }
"#;
    assert_error(
        text,
        6,
        32,
        "scrape_configs[1].basic_auth.passwd",
        "unknown field `passwd`",
    );
}

#[test]
fn unknown_key_in_project_section() {
    assert_error(
        "[engine]\nworkers = 4\nthreads = 2\n",
        3,
        1,
        "engine.threads",
        "unknown field `threads`",
    );
}

#[test]
fn wrong_type_names_the_key() {
    let text = "[[scrape_configs]]\njob_name = \"a\"\nsample_limit = \"lots\"\n";
    assert_error(
        text,
        3,
        16,
        "scrape_configs[0].sample_limit",
        "invalid type: string \"lots\"",
    );
    let text = "[[scrape_configs]]\njob_name = \"a\"\n[[scrape_configs.static_configs]]\ntargets = [\"a:1\", 2]\n";
    assert_error(
        text,
        4,
        19,
        "scrape_configs[0].static_configs[0].targets[1]",
        "invalid type: integer `2`",
    );
    assert_error(
        "[global]\nsample_limit = -1\n",
        2,
        16,
        "global.sample_limit",
        "expected u64",
    );
}

#[test]
fn unitless_duration_gets_a_hint() {
    let e = assert_error(
        "[global]\nscrape_interval = 30\n",
        2,
        19,
        "global.scrape_interval",
        "write \"30s\"",
    );
    assert!(matches!(e, ConfigError::Parse { .. }));
}

#[test]
fn syntax_errors_have_positions() {
    let e = assert_error(
        "[global\nscrape_interval = \"1m\"\n",
        1,
        8,
        "global",
        "invalid table header",
    );
    assert!(!e.to_string().contains('\n'), "one line: {e}");
    assert_error(
        "[global]\nscrape_interval = \"1m\"\nscrape_interval = \"2m\"\n",
        3,
        1,
        "global.scrape_interval",
        "duplicate key",
    );
    assert_error(
        "[web]\nlisten_address = \"unterminated\n",
        2,
        31,
        "web.listen_address",
        "invalid basic string",
    );
}

// ---------------------------------------------------------------------------------------
// Semantic errors: exact positions

#[test]
fn bad_duration() {
    let text = "[global]\nscrape_interval = \"1m30\"\n";
    let e = assert_error(
        text,
        2,
        19,
        "global.scrape_interval",
        "not a valid duration string: \"1m30\"",
    );
    assert!(matches!(e, ConfigError::Invalid { .. }));
    let text = "[[scrape_configs]]\njob_name = \"a\"\nscrape_timeout = \"10ns\"\n";
    assert_error(
        text,
        3,
        18,
        "scrape_configs[0].scrape_timeout",
        "unknown unit \"ns\"",
    );
    assert_error(
        "[storage]\nflush_interval = \"30s1m\"\n",
        2,
        18,
        "storage.flush_interval",
        "out of order",
    );
}

#[test]
fn duplicate_job_names_point_at_the_second() {
    let text = r#"[[scrape_configs]]
job_name = "node"

[[scrape_configs]]
job_name = "other"

[[scrape_configs]]
job_name = "node"
"#;
    assert_error(
        text,
        8,
        12,
        "scrape_configs[2].job_name",
        "duplicate job_name \"node\" (first used on line 2)",
    );
}

#[test]
fn scrape_timeout_above_interval() {
    let text = r#"[[scrape_configs]]
job_name = "a"
scrape_interval = "10s"
scrape_timeout = "15s"
"#;
    assert_error(
        text,
        4,
        18,
        "scrape_configs[0].scrape_timeout",
        "scrape_timeout 15s is greater than scrape_interval 10s",
    );
    let text = "[global]\nscrape_interval = \"1m\"\n[[scrape_configs]]\njob_name = \"a\"\nscrape_timeout = \"1m30s\"\n";
    assert_error(
        text,
        5,
        18,
        "scrape_configs[0].scrape_timeout",
        "(inherited from global.scrape_interval)",
    );
    let text = "[global]\nscrape_interval = \"5s\"\nscrape_timeout = \"6s\"\n";
    assert_error(
        text,
        3,
        18,
        "global.scrape_timeout",
        "scrape_timeout 6s is greater than scrape_interval 5s",
    );
}

#[test]
fn invalid_regex_in_relabel_rule() {
    let text = r#"[[scrape_configs]]
job_name = "a"
[[scrape_configs.relabel_configs]]
source_labels = ["__address__"]
target_label = "host"
[[scrape_configs.relabel_configs]]
source_labels = ["__address__"]
regex = "(unclosed"
target_label = "x"
"#;
    assert_error(
        text,
        8,
        9,
        "scrape_configs[0].relabel_configs[1].regex",
        "invalid regex \"(unclosed\"",
    );
    let text = "[[remote_write]]\nurl = \"http://r/w\"\nwrite_relabel_configs = [{ action = \"drop\", regex = \"a[\" }]\n";
    assert_error(
        text,
        3,
        53,
        "remote_write[0].write_relabel_configs[0].regex",
        "invalid regex",
    );
}

#[test]
fn invalid_relabel_target_label() {
    // Under Prometheus 3's UTF-8 names any non-empty name is valid; empty is not.
    let text = r#"[[scrape_configs]]
job_name = "a"
[[scrape_configs.metric_relabel_configs]]
source_labels = ["__name__"]
action = "lowercase"
target_label = ""
"#;
    assert_error(
        text,
        6,
        16,
        "scrape_configs[0].metric_relabel_configs[0].target_label",
        "requires a target_label",
    );
}

#[test]
fn relabel_errors_on_missing_fields_point_at_the_rule() {
    let text = "[[scrape_configs]]\njob_name = \"a\"\n\n[[scrape_configs.relabel_configs]]\naction = \"hashmod\"\ntarget_label = \"shard\"\n";
    assert_error(
        text,
        4,
        1,
        "scrape_configs[0].relabel_configs[0].modulus",
        "modulus",
    );
    let text =
        "[[scrape_configs]]\njob_name = \"a\"\nrelabel_configs = [{ action = \"explode\" }]\n";
    assert_error(
        text,
        3,
        31,
        "scrape_configs[0].relabel_configs[0].action",
        "unknown relabel action",
    );
}

#[test]
fn invalid_label_name_in_static_labels() {
    let text = r#"[[scrape_configs]]
job_name = "a"
[[scrape_configs.static_configs]]
targets = ["h:1"]
labels = { env = "x", "" = "y" }
"#;
    assert_error(
        text,
        5,
        23,
        "scrape_configs[0].static_configs[0].labels.\"\"",
        "is not a valid label name",
    );
}

#[test]
fn invalid_label_name_in_external_labels() {
    let text =
        "[global]\nscrape_interval = \"15s\"\n[global.external_labels]\nok = \"1\"\n\"\" = \"2\"\n";
    assert_error(
        text,
        5,
        1,
        "global.external_labels.\"\"",
        "is not a valid label name",
    );
}

#[test]
fn missing_job_name_points_at_the_table() {
    let text = r#"[[scrape_configs]]
job_name = "a"

[[scrape_configs]]
scrape_interval = "5s"
"#;
    assert_error(text, 4, 1, "scrape_configs[1].job_name", "missing job_name");
    assert_error(
        "[[scrape_configs]]\njob_name = \"\"\n",
        2,
        12,
        "scrape_configs[0].job_name",
        "job_name is empty",
    );
}

#[test]
fn bad_scheme() {
    let text = "[[scrape_configs]]\njob_name = \"a\"\nscheme = \"HTTPS\"\n";
    assert_error(
        text,
        3,
        10,
        "scrape_configs[0].scheme",
        "scheme must be \"http\" or \"https\", got \"HTTPS\"",
    );
}

#[test]
fn bad_metrics_path() {
    let text = "[[scrape_configs]]\njob_name = \"a\"\nmetrics_path = \"metrics\"\n";
    assert_error(
        text,
        3,
        16,
        "scrape_configs[0].metrics_path",
        "must start with \"/\"",
    );
}

#[test]
fn bad_size() {
    let text = "[[scrape_configs]]\njob_name = \"a\"\nbody_size_limit = \"10kB\"\n";
    assert_error(
        text,
        3,
        19,
        "scrape_configs[0].body_size_limit",
        "unknown unit \"kB\"",
    );
    assert_error(
        "[storage]\nretention_size = \"lots\"\n",
        2,
        18,
        "storage.retention_size",
        "not a valid size",
    );
    assert_error(
        "[storage]\nsegment_size = -5\n",
        2,
        16,
        "storage.segment_size",
        "cannot be negative",
    );
}

#[test]
fn target_with_slash_is_rejected_without_relabel_rules() {
    let text = r#"[[scrape_configs]]
job_name = "a"
[[scrape_configs.static_configs]]
targets = ["ok:1", "http://host:9100/metrics"]
"#;
    assert_error(
        text,
        4,
        20,
        "scrape_configs[0].static_configs[0].targets[1]",
        "\"http://host:9100/metrics\" is not a valid target address",
    );
    // With relabel rules the address may be rewritten, so Prometheus lets it through.
    let with_rules = format!("{text}[[scrape_configs.relabel_configs]]\nsource_labels = [\"__address__\"]\ntarget_label = \"__param_target\"\n");
    assert_eq!(
        ok(&with_rules).scrape_configs[0].static_configs[0].targets[1],
        "http://host:9100/metrics"
    );
}

#[test]
fn member_num_out_of_range() {
    let text = "[cluster]\nmembers_count = 3\nmember_num = 3\n";
    assert_error(
        text,
        3,
        14,
        "cluster.member_num",
        "member_num 3 is out of range: members are numbered 0 to 2 for members_count 3",
    );
    assert_error(
        "[cluster]\nmember_num = 1\n",
        2,
        14,
        "cluster.member_num",
        "without sharding (members_count 0) it must be 0",
    );
}

#[test]
fn replication_factor_out_of_range() {
    let text = "[cluster]\nmembers_count = 2\nreplication_factor = 3\n";
    assert_error(text, 3, 22, "cluster.replication_factor", "between 1 and 2");
    assert_error(
        "[cluster]\nreplication_factor = 0\n",
        2,
        22,
        "cluster.replication_factor",
        "between 1 and 1",
    );
}

#[test]
fn scrape_protocol_errors() {
    let job = "[[scrape_configs]]\njob_name = \"a\"\n";
    assert_error(
        &format!("{job}scrape_protocols = [\"OpenMetricsText1.0.0\", \"PrometheusProto\"]\n"),
        3,
        45,
        "scrape_configs[0].scrape_protocols[1]",
        "cannot parse the protobuf exposition format",
    );
    assert_error(
        &format!("{job}scrape_protocols = []\n"),
        3,
        20,
        "scrape_configs[0].scrape_protocols",
        "cannot be empty",
    );
    assert_error(
        &format!("{job}scrape_protocols = [\"PrometheusText0.0.4\", \"prometheustext0.0.4\"]\n"),
        3,
        44,
        "scrape_configs[0].scrape_protocols[1]",
        "duplicated protocol",
    );
    assert_error(
        "[global]\nscrape_protocols = [\"OpenMetrics\"]\n",
        2,
        21,
        "global.scrape_protocols[0]",
        "unknown scrape protocol \"OpenMetrics\"",
    );
    assert_error(
        &format!("{job}fallback_scrape_protocol = \"PrometheusProto\"\n"),
        3,
        28,
        "scrape_configs[0].fallback_scrape_protocol",
        "PrometheusProto is not supported",
    );
}

#[test]
fn auth_errors() {
    let job = "[[scrape_configs]]\njob_name = \"a\"\n";
    assert_error(
        &format!(
            "{job}basic_auth = {{ username = \"u\", password = \"p\", password_file = \"f\" }}\n"
        ),
        3,
        64,
        "scrape_configs[0].basic_auth.password_file",
        "at most one of basic_auth password & password_file",
    );
    assert_error(
        &format!(
            "{job}basic_auth = {{ username = \"u\" }}\nauthorization = {{ credentials = \"t\" }}\n"
        ),
        4,
        17,
        "scrape_configs[0].authorization",
        "at most one of basic_auth & authorization",
    );
    assert_error(
        &format!("{job}[scrape_configs.authorization]\ntype = \"basic\"\n"),
        4,
        8,
        "scrape_configs[0].authorization.type",
        "use basic_auth instead",
    );
    assert_error(
        &format!("{job}authorization = {{ credentials = \"t\", credentials_file = \"f\" }}\n"),
        3,
        57,
        "scrape_configs[0].authorization.credentials_file",
        "at most one of authorization credentials & credentials_file",
    );
    assert_error(
        &format!("{job}tls_config = {{ cert_file = \"c.pem\" }}\n"),
        3,
        28,
        "scrape_configs[0].tls_config.key_file",
        "a client certificate needs its key",
    );
    assert_error(
        &format!("{job}proxy_url = \"ftp://proxy\"\n"),
        3,
        13,
        "scrape_configs[0].proxy_url",
        "unsupported scheme \"ftp\"",
    );
}

#[test]
fn discovery_errors() {
    let job = "[[scrape_configs]]\njob_name = \"a\"\n";
    assert_error(
        &format!("{job}[[scrape_configs.file_sd_configs]]\nfiles = [\"sd/*/nodes.json\"]\n"),
        4,
        10,
        "scrape_configs[0].file_sd_configs[0].files[0]",
        "not a valid file_sd path",
    );
    assert_error(
        &format!("{job}[[scrape_configs.file_sd_configs]]\nrefresh_interval = \"1m\"\n"),
        3,
        1,
        "scrape_configs[0].file_sd_configs[0].files",
        "missing files",
    );
    assert_error(
        &format!("{job}[[scrape_configs.http_sd_configs]]\nurl = \"inventory:8080/sd\"\n"),
        4,
        7,
        "scrape_configs[0].http_sd_configs[0].url",
        "is not an absolute URL",
    );
    assert_error(
        &format!("{job}[[scrape_configs.dns_sd_configs]]\nnames = [\"n.example\"]\ntype = \"A\"\n"),
        3,
        1,
        "scrape_configs[0].dns_sd_configs[0].port",
        "a port is required",
    );
    assert_error(
        &format!("{job}[[scrape_configs.dns_sd_configs]]\nnames = [\"n\"]\ntype = \"MX\"\n"),
        5,
        8,
        "scrape_configs[0].dns_sd_configs[0].type",
        "not supported by scrapewheel",
    );
    assert_error(
        &format!("{job}[[scrape_configs.dns_sd_configs]]\nnames = []\n"),
        4,
        9,
        "scrape_configs[0].dns_sd_configs[0].names",
        "at least one name",
    );
    assert_error(
        &format!("{job}[[scrape_configs.http_sd_configs]]\nurl = \"http://i/sd\"\nrefresh_interval = \"0s\"\n"),
        5,
        20,
        "scrape_configs[0].http_sd_configs[0].refresh_interval",
        "must be greater than 0",
    );
}

#[test]
fn remote_write_errors() {
    assert_error(
        "[[remote_write]]\nname = \"x\"\n",
        1,
        1,
        "remote_write[0].url",
        "missing url",
    );
    assert_error(
        "[[remote_write]]\nurl = \"ftp://r/w\"\n",
        2,
        7,
        "remote_write[0].url",
        "unsupported scheme \"ftp\"",
    );
    assert_error(
        "[[remote_write]]\nurl = \"http://r/w\"\n[remote_write.headers]\n\"User-Agent\" = \"me\"\n",
        4,
        1,
        "remote_write[0].headers.User-Agent",
        "User-Agent is a reserved header",
    );
    assert_error(
        "[[remote_write]]\nurl = \"http://r/w\"\nheaders = { authorization = \"Bearer x\" }\n",
        3,
        13,
        "remote_write[0].headers.authorization",
        "basic_auth or authorization",
    );
    assert_error(
        "[[remote_write]]\nurl = \"http://r/w\"\nheaders = { \"X-Evil\" = \"a\\r\\nHost: b\" }\n",
        3,
        24,
        "remote_write[0].headers.X-Evil",
        "line breaks",
    );
    assert_error(
        "[[remote_write]]\nurl = \"http://a/w\"\nname = \"r\"\n[[remote_write]]\nurl = \"http://b/w\"\nname = \"r\"\n",
        6,
        8,
        "remote_write[1].name",
        "duplicate remote_write name \"r\"",
    );
    assert_error(
        "[[remote_write]]\nurl = \"http://a/w\"\n[[remote_write]]\nurl = \"http://a/w\"\n",
        3,
        1,
        "remote_write[1]",
        "give each remote_write a distinct `name`",
    );
}

#[test]
fn queue_config_errors() {
    let rw = "[[remote_write]]\nurl = \"http://r/w\"\n[remote_write.queue_config]\n";
    assert_error(
        &format!("{rw}min_shards = 60\n"),
        4,
        14,
        "remote_write[0].queue_config.min_shards",
        "must not exceed max_shards (50)",
    );
    assert_error(
        &format!("{rw}max_shards = 0\n"),
        4,
        14,
        "remote_write[0].queue_config.max_shards",
        "at least 1",
    );
    assert_error(
        &format!("{rw}capacity = 0\n"),
        4,
        12,
        "remote_write[0].queue_config.capacity",
        "at least 1",
    );
    assert_error(
        &format!("{rw}max_samples_per_send = 0\n"),
        4,
        24,
        "remote_write[0].queue_config.max_samples_per_send",
        "at least 1",
    );
    assert_error(
        &format!("{rw}min_backoff = \"10s\"\n"),
        4,
        15,
        "remote_write[0].queue_config.min_backoff",
        "max_backoff (5s) must not be less than min_backoff (10s)",
    );
}

#[test]
fn engine_storage_web_errors() {
    assert_error(
        "[engine]\nworkers = 0\n",
        2,
        11,
        "engine.workers",
        "between 1 and 1024",
    );
    assert_error(
        "[engine]\nwheel_tick = \"0s\"\n",
        2,
        14,
        "engine.wheel_tick",
        "greater than 0",
    );
    assert_error(
        "[engine]\nwheel_tick = \"2s\"\n",
        2,
        14,
        "engine.wheel_tick",
        "too coarse",
    );
    assert_error(
        "[engine]\nqueue_size = 0\n",
        2,
        14,
        "engine.queue_size",
        "at least 1",
    );
    assert_error(
        "[storage]\npath = \"\"\n",
        2,
        8,
        "storage.path",
        "must not be empty",
    );
    assert_error(
        "[storage]\nflush_interval = \"0s\"\n",
        2,
        18,
        "storage.flush_interval",
        "greater than 0",
    );
    assert_error(
        "[storage]\nretention_size = \"1MiB\"\nsegment_size = \"2MiB\"\n",
        3,
        16,
        "storage.segment_size",
        "must not exceed retention_size",
    );
    assert_error(
        "[storage]\nretention_size = \"1MiB\"\n",
        2,
        18,
        "storage.retention_size",
        "(16MiB) must not exceed",
    );
    assert_error(
        "[web]\nlisten_address = \"localhost\"\n",
        2,
        18,
        "web.listen_address",
        "expected host:port",
    );
}

// ---------------------------------------------------------------------------------------
// Secrets, summary, files

#[test]
fn secrets_never_print() {
    let c = ok(r#"[[scrape_configs]]
job_name = "a"
basic_auth = { username = "u", password = "hunter2" }
proxy_url = "http://pu:proxypass@proxy:3128"
[[scrape_configs.http_sd_configs]]
url = "https://sd:sdpass@inventory/sd"
[[scrape_configs]]
job_name = "b"
authorization = { credentials = "tok3n" }
[[remote_write]]
url = "https://rw:rwpass@metrics.example.com/write"
headers = { "X-Api-Key" = "k3y" }
authorization = { credentials = "tok3n" }
"#);
    let debug = format!("{c:?}");
    let summary = c.summary();
    for secret in ["hunter2", "tok3n", "rwpass", "k3y", "proxypass", "sdpass"] {
        assert!(
            !debug.contains(secret),
            "{secret} leaked into Debug:\n{debug}"
        );
        assert!(
            !summary.contains(secret),
            "{secret} leaked into summary:\n{summary}"
        );
    }
    assert!(debug.contains("<secret>"));
    assert_eq!(Secret::new("x").to_string(), "<secret>");
}

#[test]
fn summary_lists_jobs_receivers_and_storage() {
    let c = ok(r#"[[scrape_configs]]
job_name = "node"
scrape_interval = "15s"
[[scrape_configs.static_configs]]
targets = ["a:1", "b:1"]
[[scrape_configs.static_configs]]
targets = ["c:1"]
[[scrape_configs.relabel_configs]]
target_label = "x"
replacement = "y"
[[scrape_configs.metric_relabel_configs]]
source_labels = ["__name__"]
regex = "go_.*"
action = "drop"
[[scrape_configs.metric_relabel_configs]]
regex = "tmp"
action = "labeldrop"
[[remote_write]]
name = "central"
url = "https://u:p4ss@m.example.com/api/v1/write"
[storage]
path = "/var/lib/sw"
"#);
    let s = c.summary();
    assert!(s.contains("scrape jobs: 1"), "{s}");
    assert!(
        s.contains("node: interval 15s, timeout 10s, 3 static targets, 1 relabel rule, 2 metric relabel rules"),
        "{s}"
    );
    assert!(
        s.contains("central: https://u:xxxxx@m.example.com/api/v1/write"),
        "{s}"
    );
    assert!(
        s.contains("storage: /var/lib/sw (retention 1GiB / 1d)"),
        "{s}"
    );
    assert!(ok("").summary().contains("remote_write: none"));
}

#[test]
fn load_reads_a_file_and_reports_missing_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sw.toml");
    std::fs::write(
        &path,
        "[[scrape_configs]]\njob_name = \"f\"\nscheme = \"gopher\"\n",
    )
    .expect("write");
    let e = Config::load(&path).expect_err("bad scheme");
    assert!(
        e.to_string().starts_with(&format!(
            "{}:3:10: scrape_configs[0].scheme: ",
            path.display()
        )),
        "{e}"
    );
    std::fs::write(&path, ONE_JOB).expect("write");
    let c = Config::load(&path).expect("loads");
    assert_eq!(c.source, path);
    let missing = dir.path().join("nope.toml");
    let e = Config::load(&missing).expect_err("missing file");
    assert!(matches!(e, ConfigError::Read { .. }));
    assert_eq!((e.line(), e.key()), (None, None));
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read config file", missing.display())),
        "{e}"
    );
}

#[test]
fn shipped_default_config_loads() {
    let text = include_str!("../../config/scrapewheel.toml");
    let c = Config::from_str(text, Path::new("config/scrapewheel.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.scrape_configs.len(), 1);
    let j = &c.scrape_configs[0];
    assert_eq!(j.job_name, "scrapewheel");
    assert_eq!((j.scrape_interval, j.scrape_timeout), (secs(10), secs(10)));
    assert_eq!(j.static_configs[0].targets, ["127.0.0.1:9464"]);
    assert!(c.remote_write.is_empty());
    assert_eq!(c.storage.path, PathBuf::from("data"));
    assert_eq!(c.web.listen_address, "127.0.0.1:9464");
    assert!(!c.web.enable_lifecycle);
}

#[test]
fn shipped_examples_load() {
    let fleet = Config::from_str_with_env(
        include_str!("../../config/examples/node-fleet.toml"),
        Path::new("config/examples/node-fleet.toml"),
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fleet.scrape_configs.len(), 2);
    assert_eq!(fleet.global.external_labels.get("replica"), Some("edge-1"));
    assert_eq!(fleet.scrape_configs[0].sample_limit, 50_000);
    assert_eq!(fleet.scrape_configs[1].relabel_configs.len(), 3);
    assert_eq!(fleet.remote_write[0].name, "central");
    assert_eq!(
        fleet.remote_write[0]
            .basic_auth
            .as_ref()
            .and_then(|b| b.password_file.clone()),
        Some(PathBuf::from(
            "config/examples/secrets/remote-write-password"
        ))
    );
    let sharded = Config::from_str(
        include_str!("../../config/examples/sharded.toml"),
        Path::new("config/examples/sharded.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (
            sharded.cluster.members_count,
            sharded.cluster.member_num,
            sharded.cluster.replication_factor
        ),
        (3, 1, 2)
    );
    assert_eq!(sharded.engine.workers, 16);
}
