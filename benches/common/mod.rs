//! Deterministic, realistic exposition bodies for benchmarks (and the parser's tests).
//!
//! The body looks like a node_exporter scrape (HELP/TYPE for every family, a Go runtime
//! summary, per-CPU, per-filesystem, per-device counters and gauges) followed by a
//! high-cardinality request histogram (`le` buckets over service × handler × method ×
//! code), with new services added until the requested size is reached.
//! Values mix the spellings real targets send: integers, decimals, Go's `1.5e+06`
//! exponent form, and the odd `NaN`/`+Inf`. Tokens are separated by single spaces, so
//! the body with `# EOF\n` appended is valid OpenMetrics too.

use std::fmt::Write as _;

/// A body of about `approx_bytes` bytes (never less), the same for the same size.
pub fn realistic_exposition(approx_bytes: usize) -> String {
    let mut g = Generator {
        out: String::with_capacity(approx_bytes + 4096),
        rng: 0x9E37_79B9_7F4A_7C15,
    };
    g.node_exporter();
    g.family(
        "http_request_duration_seconds",
        "histogram",
        "Duration of HTTP requests by service, handler, method and code.",
    );
    let mut round = 0;
    while g.out.len() < approx_bytes {
        g.request_histograms(round);
        round += 1;
    }
    g.out
}

struct Generator {
    out: String,
    rng: u64,
}

const CPU_MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
const FILESYSTEMS: [(&str, &str, &str); 6] = [
    ("/dev/nvme0n1p2", "ext4", "/"),
    ("/dev/nvme0n1p1", "vfat", "/boot/efi"),
    ("tmpfs", "tmpfs", "/run"),
    ("tmpfs", "tmpfs", "/run/lock"),
    ("/dev/mapper/data-vol", "xfs", "/var/lib/data"),
    (
        "overlay",
        "overlay",
        "/var/lib/docker/overlay2/4f1c2e7a9b/merged",
    ),
];
const NET_DEVICES: [&str; 6] = ["eth0", "eth1", "lo", "docker0", "veth3a9f2c1", "wlan0"];
const DISKS: [&str; 4] = ["nvme0n1", "sda", "sdb", "dm-0"];
const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
const HANDLERS: [&str; 8] = [
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/write",
    "/metrics",
    "/-/healthy",
    "/api/v1/targets",
];
const METHODS: [&str; 2] = ["GET", "POST"];
const CODES: [&str; 3] = ["200", "400", "500"];

impl Generator {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic and dependency-free.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// Appends a value the way Go's `strconv.FormatFloat(v, 'g', -1, 64)` spells it.
    fn value(&mut self, v: f64) {
        if v.is_nan() {
            self.out.push_str("NaN");
            return;
        }
        if v.is_infinite() {
            self.out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
            return;
        }
        let e = format!("{v:e}");
        let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        if (-4..6).contains(&exp) {
            let _ = write!(self.out, "{v}");
        } else {
            let sign = if exp < 0 { '-' } else { '+' };
            let _ = write!(self.out, "{mantissa}e{sign}{:02}", exp.unsigned_abs());
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{val}\"");
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.value(v);
        self.out.push('\n');
    }

    fn node_exporter(&mut self) {
        self.family(
            "go_gc_duration_seconds",
            "summary",
            "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.",
        );
        for (q, v) in [
            ("0", 2.3611e-05),
            ("0.25", 3.4587e-05),
            ("0.5", 4.1284e-05),
            ("0.75", 5.5766e-05),
            ("1", 0.000513397),
        ] {
            self.sample("go_gc_duration_seconds", &[("quantile", q)], v);
        }
        self.sample("go_gc_duration_seconds_sum", &[], 0.274563116);
        self.sample("go_gc_duration_seconds_count", &[], 5215.0);
        self.family(
            "go_goroutines",
            "gauge",
            "Number of goroutines that currently exist.",
        );
        self.sample("go_goroutines", &[], 9.0);

        self.family(
            "node_cpu_seconds_total",
            "counter",
            "Seconds the CPUs spent in each mode.",
        );
        for cpu in 0..16 {
            let cpu = cpu.to_string();
            for mode in CPU_MODES {
                let v = (self.unit() * 3e6 * 100.0).round() / 100.0;
                self.sample(
                    "node_cpu_seconds_total",
                    &[("cpu", &cpu), ("mode", mode)],
                    v,
                );
            }
        }
        for (metric, help) in [
            (
                "node_filesystem_avail_bytes",
                "Filesystem space available to non-root users in bytes.",
            ),
            ("node_filesystem_size_bytes", "Filesystem size in bytes."),
            (
                "node_filesystem_files_free",
                "Filesystem total free file nodes.",
            ),
            ("node_filesystem_readonly", "Filesystem read-only status."),
        ] {
            self.family(metric, "gauge", help);
            for (device, fstype, mountpoint) in FILESYSTEMS {
                let v = if metric.ends_with("readonly") {
                    0.0
                } else {
                    (self.unit() * 5e11).floor()
                };
                let labels = [
                    ("device", device),
                    ("fstype", fstype),
                    ("mountpoint", mountpoint),
                ];
                self.sample(metric, &labels, v);
            }
        }
        for stat in ["bytes", "packets", "errs", "drop"] {
            for dir in ["receive", "transmit"] {
                let metric = format!("node_network_{dir}_{stat}_total");
                let help = format!("Network device statistic {dir}_{stat}.");
                self.family(&metric, "counter", &help);
                for device in NET_DEVICES {
                    let v = (self.unit() * 1e12).floor();
                    self.sample(&metric, &[("device", device)], v);
                }
            }
        }
        for metric in [
            "node_disk_read_bytes_total",
            "node_disk_written_bytes_total",
            "node_disk_io_time_seconds_total",
        ] {
            self.family(metric, "counter", "Disk statistic from /proc/diskstats.");
            for device in DISKS {
                let v = self.unit() * 1e10;
                self.sample(metric, &[("device", device)], v);
            }
        }
        self.family(
            "node_hwmon_temp_celsius",
            "gauge",
            "Hardware monitor for temperature (input).",
        );
        for sensor in 0..8 {
            let chip = "platform_coretemp_0";
            let sensor = format!("temp{sensor}");
            let v = if sensor == "temp7" {
                f64::NAN
            } else {
                30.0 + (self.unit() * 400.0).round() / 10.0
            };
            self.sample(
                "node_hwmon_temp_celsius",
                &[("chip", chip), ("sensor", &sensor)],
                v,
            );
        }
        self.family("node_load1", "gauge", "1m load average.");
        self.sample("node_load1", &[], 0.21);
        self.family(
            "node_boot_time_seconds",
            "gauge",
            "Node boot time, in unixtime.",
        );
        self.sample("node_boot_time_seconds", &[], 1.700312688e9);
    }

    /// One service's request-duration histograms: handler × method × code series, each
    /// with 12 `le` buckets, `_sum` and `_count`.
    fn request_histograms(&mut self, round: usize) {
        let service = format!("svc-{round}");
        for handler in HANDLERS {
            for method in METHODS {
                for code in CODES {
                    let mut cumulative = 0.0;
                    let series = [
                        ("service", service.as_str()),
                        ("handler", handler),
                        ("method", method),
                        ("code", code),
                    ];
                    for le in BUCKETS {
                        cumulative += (self.unit() * 500.0).floor();
                        let mut labels = [("", ""); 5];
                        labels[..4].copy_from_slice(&series);
                        labels[4] = ("le", le);
                        self.sample("http_request_duration_seconds_bucket", &labels, cumulative);
                    }
                    let total = cumulative * (0.05 + self.unit());
                    self.sample("http_request_duration_seconds_sum", &series, total);
                    self.sample("http_request_duration_seconds_count", &series, cumulative);
                }
            }
        }
    }
}
