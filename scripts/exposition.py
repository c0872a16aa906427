"""Realistic exporter bodies for the load rig (scripts/bench.py, scripts/nginx_farm.py).

`body(target, series)` returns the Prometheus text exposition of one target with exactly
`series` samples, shaped like a real service's /metrics: HELP and TYPE lines, counters,
gauges, histograms (buckets, _sum, _count) and a summary, with the label sets services
and node_exporter use (code/handler/method, cpu/mode, device/fstype/mountpoint, gRPC's
four labels). Every target exposes the same series names and labels, as a fleet of one
exporter does, with its own values (seeded by the target number, so bodies are stable
from run to run).
"""
import random

NAMESPACES = ("api", "auth", "billing", "cache", "catalog", "checkout", "gateway", "search",
              "orders", "payments", "profile", "queue", "ranking", "session", "storage", "users")
HANDLERS = ("/", "/api/v1/query", "/api/v1/query_range", "/api/v1/series", "/api/v1/labels",
            "/api/v1/write", "/healthz", "/metrics", "/static/*filepath", "/debug/pprof/")
METHODS = ("GET", "POST")
CODES = ("200", "204", "400", "404", "500")
BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")
CPU_MODES = ("idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user")
MOUNTS = (("/dev/sda1", "ext4", "/"), ("/dev/sda2", "ext4", "/var"), ("/dev/sdb1", "xfs", "/data"),
          ("tmpfs", "tmpfs", "/run"), ("tmpfs", "tmpfs", "/dev/shm"), ("/dev/nvme0n1p1", "vfat", "/boot/efi"))
GRPC = (("OK", "Get", "catalog.v1.Items", "unary"), ("OK", "List", "catalog.v1.Items", "server_stream"),
        ("NotFound", "Get", "catalog.v1.Items", "unary"), ("OK", "Put", "orders.v2.Orders", "unary"),
        ("Unavailable", "Put", "orders.v2.Orders", "unary"), ("OK", "Watch", "session.v1.Sessions", "bidi_stream"))


def _families():
    """Yields (help, type, name, [(suffix, labels)]) forever: per namespace a request
    counter, a latency histogram, a gRPC histogram, gauges and a summary; node-style
    families in between."""
    round_ = 0
    while True:
        for ns in NAMESPACES:
            p = ns if round_ == 0 else f"{ns}{round_}"
            yield (f"Total number of HTTP requests handled by {ns}, by status code, handler and method.",
                   "counter", f"{p}_http_requests_total",
                   [("", f'code="{c}",handler="{h}",method="{m}"')
                    for h in HANDLERS[:4] for m in METHODS for c in CODES[:3]])
            yield (f"Latency of HTTP requests handled by {ns}.", "histogram",
                   f"{p}_http_request_duration_seconds",
                   [(s, l) for h in HANDLERS[:2] for s, l in _histogram(f'handler="{h}",method="GET"')])
            yield ("Number of requests in flight.", "gauge", f"{p}_http_requests_in_flight", [("", "")])
            yield (f"Bytes in use by the {ns} cache, by pool.", "gauge", f"{p}_cache_bytes",
                   [("", f'pool="{pool}",tier="{tier}"') for pool in ("hot", "warm", "cold") for tier in ("mem", "disk")])
            yield ("Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                   "histogram", f"{p}_grpc_server_handling_seconds",
                   [(s, l) for g in GRPC[:2] for s, l in _histogram(
                       f'grpc_code="{g[0]}",grpc_method="{g[1]}",grpc_service="{g[2]}",grpc_type="{g[3]}"')])
            yield ("A summary of the pause duration of garbage collection cycles.", "summary",
                   f"{p}_gc_duration_seconds",
                   [("", f'quantile="{q}"') for q in ("0", "0.25", "0.5", "0.75", "1")] + [("_sum", ""), ("_count", "")])
            yield ("Seconds the CPUs spent in each mode.", "counter", f"{p}_node_cpu_seconds_total",
                   [("", f'cpu="{c}",mode="{m}"') for c in range(4) for m in CPU_MODES])
            yield ("Filesystem space available to non-root users in bytes.", "gauge", f"{p}_node_filesystem_avail_bytes",
                   [("", f'device="{d}",fstype="{f}",mountpoint="{m}"') for d, f, m in MOUNTS])
        round_ += 1


def _histogram(labels):
    for le in BUCKETS:
        yield "_bucket", f'{labels},le="{le}"'
    yield "_sum", labels
    yield "_count", labels


def body(target: int, series: int) -> bytes:
    """The exposition of target number `target` with exactly `series` samples."""
    rng = random.Random(target)
    out = []
    n = 0
    for help_, type_, name, rows in _families():
        if n >= series:
            break
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {type_}")
        cum = 0
        for suffix, labels in rows[: series - n]:
            sel = f"{name}{suffix}{{{labels}}}" if labels else f"{name}{suffix}"
            if type_ == "gauge":
                value = f"{rng.uniform(0, 4e10):.6g}" if "bytes" in name else str(rng.randrange(0, 64))
            elif suffix == "_bucket":
                cum += rng.randrange(0, 500)
                value = str(cum)
            elif suffix == "_sum":
                value = repr(round(rng.uniform(0, 1e5), 6))
            elif suffix == "_count":
                value = str(cum or rng.randrange(1, 10**6))
                cum = 0
            elif type_ == "summary":
                value = f"{rng.uniform(1e-5, 1e-2):.9g}"
            else:
                value = repr(round(rng.uniform(0, 1e7), 2)) if "seconds" in name else str(rng.randrange(0, 10**9))
            out.append(f"{sel} {value}")
            n += 1
    return ("\n".join(out) + "\n").encode()


if __name__ == "__main__":
    import sys

    sys.stdout.write(body(int(sys.argv[1]) if len(sys.argv) > 1 else 0,
                          int(sys.argv[2]) if len(sys.argv) > 2 else 200).decode())
