//! Kubernetes-pod-like discovered targets for the relabel and sync benches.

use scrapewheel::labels::LabelSet;

/// Pod `i` of generation `gen` (a new generation is a restarted pod: new name and IP).
pub fn pod(i: usize, gen: usize) -> LabelSet {
    let n = i + gen * 1_000_000;
    let ip = format!(
        "10.{}.{}.{}",
        16 + n / 65536 % 200,
        (n / 256) % 256,
        n % 256
    );
    let ns = ["default", "payments", "mail", "monitoring", "edge"][i % 5];
    let app = ["api", "worker", "web", "cache"][i % 4];
    let mut s = LabelSet::from_pairs([
        ("__address__", format!("{ip}:8080")),
        ("__meta_kubernetes_namespace", ns.to_owned()),
        (
            "__meta_kubernetes_pod_name",
            format!("{app}-5f7c9d8b{:02x}-{n:07}", i % 256),
        ),
        ("__meta_kubernetes_pod_ip", ip.clone()),
        (
            "__meta_kubernetes_pod_node_name",
            format!("node-{:03}", i % 150),
        ),
        ("__meta_kubernetes_pod_phase", "Running".to_owned()),
        ("__meta_kubernetes_pod_ready", "true".to_owned()),
        ("__meta_kubernetes_pod_container_name", app.to_owned()),
        (
            "__meta_kubernetes_pod_container_port_name",
            "metrics".to_owned(),
        ),
        (
            "__meta_kubernetes_pod_container_port_number",
            "8080".to_owned(),
        ),
        ("__meta_kubernetes_pod_label_app", app.to_owned()),
        (
            "__meta_kubernetes_pod_label_version",
            format!("v1.{}", i % 9),
        ),
        (
            "__meta_kubernetes_pod_label_pod_template_hash",
            format!("5f7c9d8b{:02x}", i % 256),
        ),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_port",
            "9102".to_owned(),
        ),
    ]);
    if i % 10 != 0 {
        s.set(
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
            "true",
        );
    }
    if i % 3 == 0 {
        s.set(
            "__meta_kubernetes_pod_annotation_prometheus_io_path",
            "/stats",
        );
    }
    s
}
