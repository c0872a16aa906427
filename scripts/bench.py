#!/usr/bin/env python3
"""Side-by-side load rig: scrapewheel, vmagent and Prometheus (agent mode) on one farm.

For each scale (targets × series) it starts an nginx farm of loopback targets
(scripts/nginx_farm.py: realistic exporter bodies, plain or gzip), then runs each agent in
turn against it with equivalent configs generated from one description (same job,
targets, scrape_interval and scrape_timeout; remote write to a null sink), each with a
fresh null remote-write sink (examples/null_sink.rs) and its own temp dir (the farm's
bodies and access log go on /dev/shm, so the host's page reclaim cannot stall nginx on
the disk; the agents' data dirs stay on disk, as in production). After a
warm-up it measures a window, sampling /proc/<pid>/stat once a second, and reports per
agent:

  cpu_s_per_million     agent CPU seconds (user + system) in the window per million
                        scraped samples (= 200 answers nginx served in the window × series)
  steady/peak RSS       median and maximum of the per-second RSS samples in the window
  threads               min and max thread count in the window
  sink_samples_per_s    samples the null sink decoded in the window, per second
  jitter p50/p99/max    per target, how far each gap between two consecutive requests
                        nginx served is from the interval (or from k intervals when k-1
                        scrapes were missed), in ms
  missed                slots without a scrape: per target, gaps of k intervals count k-1,
                        plus whole intervals at the window's edges with no request
  ratios                the agent's figure over vmagent's at the same scale
  host steal %          share of the machine's CPU time in the window that the hypervisor
                        gave to others (/proc/stat); on a shared VM, read every figure
                        of a row with a high one as disturbed

Everything runs on loopback, stops by itself, and every process it starts (nginx, the
sinks, the agents; each in its own process group) is stopped on exit, including on
Ctrl-C and SIGTERM. The report is printed as a Markdown table, and written as JSON with
--json and as Markdown with --markdown.

With --rounds N every agent runs N times per scale, in an order that rotates by one
agent per round, and the report starts with one row per agent of medians over its
rounds; each ratio there is the median of the per-round ratios, so an agent is compared
with the vmagent run minutes from its own, and one noisy minute on a shared host moves
one round, not the result.

Examples:
  scripts/bench.py --scale 1000x200 --scale 2000x500 --window 90 --json bench.json
  scripts/bench.py --scale 2000x500 --rounds 3 --window 60     # medians of 3 interleaved rounds
  scripts/bench.py --scale 1x200 --agents scrapewheel          # idle footprint
  scripts/bench.py --scale 1000x200 --agents scrapewheel --gzip
  scripts/bench.py --selftest    # 5 × 50 at 1 s for ~15 s, scrapewheel only; exit 1 on nonsense
"""
import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

# Helpers beside this script; no __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nginx_farm import PERL_MODULE, NginxFarm, nginx_binary  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENTS = ("scrapewheel", "vmagent", "prometheus")
NOT_MERGED = "n/a (remote write not merged)"

# Every process group this run started, stopped by cleanup() whatever happens.
_children = []


def spawn(cmd, log_path, **kw):
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(log_path, "ab"),
                         stderr=subprocess.STDOUT, start_new_session=True, **kw)
    _children.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=60):
    """Stops `p`'s process group: `sig`, then SIGKILL after `timeout` s. Returns the exit
    code (negative for a signal)."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    if p in _children:
        _children.remove(p)
    return p.returncode


def cleanup():
    for p in list(_children):
        stop(p, timeout=10)


def on_sigterm(*_):
    raise KeyboardInterrupt


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def seconds(d):
    d = str(d).strip()
    for suffix, mult in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if d.endswith(suffix) and d[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(d[: -len(suffix)]) * mult
    return float(d)


def proc_stat(pid):
    """(cpu seconds, rss bytes, threads) of `pid` from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    cpu = (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    return cpu, int(rest[21]) * os.sysconf("SC_PAGE_SIZE"), int(rest[17])


def http_get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()
    except OSError:
        return None


def metric_sum(text, name):
    """Sum of every sample of `name` in an exposition, or None when absent."""
    total, found = 0.0, False
    for line in (text or "").splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def cpu_times():
    """The machine's aggregate CPU times from /proc/stat: (steal, total), in ticks."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice, already in user]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_pct(before, after):
    """Share of the window the hypervisor ran something else on this VM's CPUs, in %:
    when it is not near 0, every agent's jitter and CPU suffer alike."""
    total = after[1] - before[1]
    return round(100.0 * (after[0] - before[0]) / total, 1) if total > 0 else None


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {"cpus": os.cpu_count(), "cpu_model": model, "mem_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def versions(binary):
    def out(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else ""
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {
        "scrapewheel": out(["git", "-C", ROOT, "describe", "--always", "--dirty"]) + f" ({binary})",
        "vmagent": out(["dpkg-query", "-W", "-f", "${Version}", "victoria-metrics"]) or out(["vmagent", "-version"]),
        "prometheus": out(["prometheus", "--version"]),
        "nginx": out([nginx_binary() or "nginx", "-v"]),
    }


# --- configs, all from one description -------------------------------------------------

def describe(addrs, interval, timeout, sink_url):
    return {"job": "farm", "interval": interval, "timeout": timeout, "targets": addrs, "sink": sink_url}


def scrapewheel_toml(d):
    targets = ",\n  ".join(f'"{a}"' for a in d["targets"])
    return (f'[global]\nscrape_interval = "{d["interval"]}"\nscrape_timeout = "{d["timeout"]}"\n\n'
            f'[[scrape_configs]]\njob_name = "{d["job"]}"\n'
            f'[[scrape_configs.static_configs]]\ntargets = [\n  {targets},\n]\n\n'
            f'[[remote_write]]\nurl = "{d["sink"]}"\n')


def prometheus_yaml(d, remote_write=True):
    out = [f'global:\n  scrape_interval: {d["interval"]}\n  scrape_timeout: {d["timeout"]}',
           f'scrape_configs:\n  - job_name: {d["job"]}\n    static_configs:\n      - targets:']
    out += [f'          - "{a}"' for a in d["targets"]]
    if remote_write:
        out.append(f'remote_write:\n  - url: "{d["sink"]}"')
    return "\n".join(out) + "\n"


def agent_command(name, d, workdir, listen, binary):
    """(argv, self-metrics URL) of agent `name`, its config written into `workdir`."""
    if name == "scrapewheel":
        cfg = os.path.join(workdir, "scrapewheel.toml")
        with open(cfg, "w") as f:
            f.write(scrapewheel_toml(d))
        return ([binary, "run", "--config", cfg, "--listen", listen, "--data", os.path.join(workdir, "data")],
                f"http://{listen}/metrics")
    if name == "vmagent":
        # vmagent takes its remote write URL as a flag; its strict parser rejects the
        # remote_write section.
        cfg = os.path.join(workdir, "scrape.yml")
        with open(cfg, "w") as f:
            f.write(prometheus_yaml(d, remote_write=False))
        return (["vmagent", f"-promscrape.config={cfg}", f"-remoteWrite.url={d['sink']}",
                 f"-remoteWrite.tmpDataPath={os.path.join(workdir, 'vmagent-data')}",
                 f"-httpListenAddr={listen}"], f"http://{listen}/metrics")
    if name == "prometheus":
        cfg = os.path.join(workdir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(prometheus_yaml(d))
        return (["prometheus", "--enable-feature=agent", f"--config.file={cfg}",
                 f"--storage.agent.path={os.path.join(workdir, 'agent-data')}",
                 f"--web.listen-address={listen}"], f"http://{listen}/metrics")
    raise ValueError(name)


# --- one agent run -----------------------------------------------------------------------

class Sink:
    def __init__(self, binary, workdir):
        self.port = free_port()
        self.stats_file = os.path.join(workdir, "sink.json")
        self.proc = spawn([binary, "--listen", f"127.0.0.1:{self.port}", "--stats-file", self.stats_file],
                          os.path.join(workdir, "sink.log"))
        deadline = time.time() + 30
        while self.stats() is None:
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"null sink did not start; see {workdir}/sink.log")
            time.sleep(0.05)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    def stats(self):
        text = http_get(f"http://127.0.0.1:{self.port}/stats", timeout=2)
        return json.loads(text) if text else None

    def close(self):
        stop(self.proc, timeout=10)


def memory_dir(parent):
    """A fresh directory for the farm on a memory file system, or None when `parent` is
    empty or not one. The farm is the instrument: its bodies and access log must not sit
    in the page cache, where the host's reclaim (this kind of VM runs DAMON pageout, which
    evicts pages touched only every scrape interval) would make nginx wait for the disk
    and bunch the arrivals it logs, whichever agent is scraping."""
    if not parent or not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        return None
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    real = os.path.realpath(parent)
    best = max((m for m in mounts if len(m) > 2 and (real + "/").startswith(m[1].rstrip("/") + "/")),
               key=lambda m: len(m[1]), default=None)
    if best is None or best[2] not in ("tmpfs", "ramfs"):
        return None
    return tempfile.mkdtemp(prefix="sw-farm-", dir=parent)


def jitter_and_missed(per_target, since, until, interval):
    """Jitter and missed scrapes from each target's arrival times. Arrivals before `since`
    (the end of the warm-up) only anchor the first gap; jitter comes from the gaps inside
    [since, until]. A gap of k intervals is k-1 missed slots (those inside the window);
    at the end, slots due more than half an interval before `until` with no request after
    the last one are missed too."""
    devs, missed, extra = [], 0, 0
    for times in per_target.values():
        times.sort()
        before = [t for t in times if t < since]
        inside = [t for t in times if since <= t <= until]
        if not inside:
            missed += int((until - since) // interval)
            continue
        anchor = before[-1] if before else None
        if anchor is not None:
            gap = inside[0] - anchor
            k = round(gap / interval)
            missed += sum(1 for j in range(1, k) if anchor + j * gap / k >= since)
        else:
            missed += max(0, int((inside[0] - since - interval / 2) // interval))
        missed += max(0, int((until - inside[-1] - interval / 2) // interval))
        for a, b in zip(inside, inside[1:]):
            gap = b - a
            k = round(gap / interval)
            if k == 0:
                extra += 1
                continue
            missed += k - 1
            devs.append(abs(gap - k * interval) * 1000)
    devs.sort()
    q = lambda p: round(devs[min(len(devs) - 1, int(p * len(devs)))], 3) if devs else None
    return {"jitter_ms_p50": q(0.5), "jitter_ms_p99": q(0.99),
            "jitter_ms_max": round(devs[-1], 3) if devs else None,
            "gaps": len(devs), "missed_scrapes": missed, "extra_scrapes": extra}


def check_jitter_and_missed():
    """The arithmetic above on hand-made arrivals; run by --selftest."""
    i = 10.0
    perfect = {1: [95.0, 105.0, 115.0, 125.0], 2: [99.999, 110.001, 119.999, 129.999]}
    r = jitter_and_missed(perfect, 100.0, 130.0, i)
    assert r["missed_scrapes"] == 0 and r["extra_scrapes"] == 0, r
    assert r["gaps"] == 4 and abs(r["jitter_ms_max"] - 2.0) < 1e-6, r
    holes = {1: [95.0, 125.0], 2: [], 3: [101.0, 111.0]}
    r = jitter_and_missed(holes, 100.0, 130.0, i)
    # target 1: slots 105 and 115; target 2: three intervals; target 3: 121 (> 5 s before
    # the end)
    assert r["missed_scrapes"] == 2 + 3 + 1, r
    r = jitter_and_missed({1: [100.5, 100.6, 110.5]}, 100.0, 130.0, i)
    assert r["extra_scrapes"] == 1 and r["missed_scrapes"] == 1, r


def check_steal_and_memory_dir():
    """steal_pct's arithmetic and memory_dir's choice of file system; run by --selftest."""
    assert steal_pct((10, 1000), (30, 1200)) == 10.0
    assert steal_pct((10, 1000), (10, 1000)) is None
    assert memory_dir("") is None
    assert memory_dir(ROOT) is None or os.path.realpath(ROOT).startswith("/dev/shm"), "the checkout is on disk"
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        d = memory_dir("/dev/shm")
        assert d is not None and d.startswith("/dev/shm/sw-farm-"), d
        os.rmdir(d)


def run_agent(name, farm, args, interval_s, binaries, base):
    workdir = tempfile.mkdtemp(prefix=f"{name}-", dir=base)
    sink = Sink(binaries["sink"], workdir)
    listen = f"127.0.0.1:{free_port()}"
    d = describe(farm.addrs, args.interval, args.timeout or args.interval, sink.url)
    argv, metrics_url = agent_command(name, d, workdir, listen, binaries["scrapewheel"])
    log = os.path.join(workdir, "agent.log")
    load_before = loadavg()
    farm_errors_before = len(farm.error_lines())
    proc = spawn(argv, log, cwd=workdir)
    result = {"agent": name, "targets": farm.targets, "series": farm.series, "gzip": farm.gzip,
              "interval": args.interval}
    try:
        deadline = time.time() + args.warmup
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited during warm-up (code {proc.returncode}); see {log}:\n"
                                   + tail(log))
            time.sleep(0.2)
        t0 = time.time()
        cpu0 = proc_stat(proc.pid)[0]
        host0 = cpu_times()
        sink0 = sink.stats()
        self0 = http_get(metrics_url)
        rss, threads = [], []
        nxt = t0
        while True:
            nxt += 1
            time.sleep(max(0.0, nxt - time.time()))
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited during the window (code {proc.returncode}); see {log}:\n"
                                   + tail(log))
            cpu1, r, th = proc_stat(proc.pid)
            t1 = time.time()
            rss.append(r)
            threads.append(th)
            if t1 - t0 >= args.window:
                break
        host1 = cpu_times()
        sink1 = sink.stats()
        self1 = http_get(metrics_url)
        load_after = loadavg()
    finally:
        code = stop(proc, timeout=60)
        sink.close()
    # Arrivals from before the window only anchor each target's first gap.
    log = farm.requests(t0 - 3 * interval_s, t1)
    per = {p: [] for p in farm.ports}
    for t, port, status, *_ in log:
        if status == 200:
            per.setdefault(port, []).append(t)
    window_log = [r for r in log if r[0] >= t0]
    ok = [r for r in window_log if r[2] == 200]
    bad = len(window_log) - len(ok)
    sent = sum(r[3] for r in ok)
    serve = sorted(r[4] for r in ok)
    new_conns = sum(1 for r in ok if r[5] == 1)
    farm_errors = farm.error_lines()[farm_errors_before:]
    requests = len(ok)
    window = t1 - t0
    scraped = requests * farm.series
    cpu = cpu1 - cpu0
    result.update({
        "window_s": round(window, 1),
        "requests": requests,
        "non_200": bad,
        "bytes_per_request": round(sent / requests) if requests else None,
        "samples_scraped": scraped,
        "scraped_samples_per_s": round(scraped / window),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_million": round(cpu / scraped * 1e6, 3) if scraped else None,
        "steady_rss_mib": round(statistics.median(rss) / 2**20, 1),
        "peak_rss_mib": round(max(rss) / 2**20, 1),
        # Active series: the farm's plus the 5 report series (up, scrape_duration_seconds…)
        # every agent adds per target.
        "rss_bytes_per_series": round(statistics.median(rss) / (farm.targets * (farm.series + 5)), 1),
        "threads": [min(threads), max(threads)],
        "exit_code": code,
        # nginx's $request_time: how long answers took to hand over (a slow reader
        # shows here); ms resolution.
        "serve_ms_p99": round(serve[int(0.99 * (len(serve) - 1))] * 1000) if serve else None,
        "serve_ms_max": round(serve[-1] * 1000) if serve else None,
        # Share of scrapes that opened a new connection (1 = no keep-alive).
        "new_connection_share": round(new_conns / requests, 3) if requests else None,
        "farm_errors": len(farm_errors),
        "farm_first_error": farm_errors[0] if farm_errors else None,
        "host_steal_pct": steal_pct(host0, host1),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    })
    delivered = (sink1["samples"] - sink0["samples"]) if sink0 and sink1 else 0
    if delivered == 0 and name == "scrapewheel" and "scrapewheel_remote_write_" not in (self1 or ""):
        result["sink_samples_per_s"] = NOT_MERGED
    else:
        result["sink_samples_per_s"] = round(delivered / window)
        result["sink_rejected"] = (sink1["rejected"] - sink0["rejected"]) if sink0 and sink1 else None
    result.update(jitter_and_missed(per, t0, t1, interval_s))
    if name == "scrapewheel":
        for key, metric in (("skipped_slots", "scrapewheel_wheel_skipped_total"),
                            ("missed_slots", "scrapewheel_wheel_missed_slots_total"),
                            ("scrape_failures", "scrapewheel_scrape_failures_total")):
            a, b = metric_sum(self0, metric), metric_sum(self1, metric)
            result[key] = int(b - a) if a is not None and b is not None else None
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# --- report --------------------------------------------------------------------------------

RATIOS = (("cpu_s_per_million", "cpu_vs_vmagent"), ("steady_rss_mib", "steady_rss_vs_vmagent"),
          ("peak_rss_mib", "peak_rss_vs_vmagent"), ("sink_samples_per_s", "sink_rate_vs_vmagent"))


def add_ratios(runs):
    for r in runs:
        vm = next((v for v in runs if v["agent"] == "vmagent" and v["targets"] == r["targets"]
                   and v["series"] == r["series"] and v["gzip"] == r["gzip"] and "error" not in v
                   and v.get("round") == r.get("round")), None)
        if vm is None or "error" in r:
            continue
        for key, out in RATIOS:
            a, b = r.get(key), vm.get(key)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
                r[out] = round(a / b, 3)


def round_order(agents, rnd):
    """Round `rnd`'s order: the agents rotated by one per round, so that no agent always
    runs first on a fresh farm or last on a host that has warmed up."""
    k = (rnd - 1) % len(agents) if agents else 0
    return agents[k:] + agents[:k]


# Per-run figures whose median over the rounds is reported; the ratios are medians of
# each round's own ratio (an agent against vmagent minutes apart, not against a vmagent
# run under other load).
MEDIAN_KEYS = ("cpu_s_per_million", "steady_rss_mib", "peak_rss_mib", "sink_samples_per_s", "jitter_ms_p50",
               "jitter_ms_p99", "jitter_ms_max", "host_steal_pct") + tuple(out for _, out in RATIOS)


def medians(runs):
    """One row per scale and agent over its rounds: medians of MEDIAN_KEYS, the worst
    round's missed scrapes, the thread count's range and the load average's span."""
    rows, done = [], set()
    for r in runs:
        key = (r["targets"], r["series"], r["gzip"], r["agent"])
        if key in done:
            continue
        done.add(key)
        same = [x for x in runs if (x["targets"], x["series"], x["gzip"], x["agent"]) == key]
        ok = [x for x in same if "error" not in x]
        row = {"targets": r["targets"], "series": r["series"], "gzip": r["gzip"],
               "agent": f"{r['agent']} (median of {len(ok)})", "rounds": len(same)}
        if not ok:
            row["error"] = same[0]["error"]
            rows.append(row)
            continue
        for k in MEDIAN_KEYS:
            vals = [x[k] for x in ok if isinstance(x.get(k), (int, float))]
            m = statistics.median(vals) if vals else None
            row[k] = None if m is None else int(m) if all(isinstance(v, int) for v in vals) else round(m, 3)
        row["missed_scrapes"] = max(x["missed_scrapes"] for x in ok)
        row["threads"] = [min(x["threads"][0] for x in ok), max(x["threads"][1] for x in ok)]
        row["loadavg_before"] = min((x["loadavg_before"] for x in ok), key=lambda v: v[0])
        row["loadavg_after"] = max((x["loadavg_after"] for x in ok), key=lambda v: v[0])
        row["farm_errors"] = sum(x.get("farm_errors") or 0 for x in ok)
        rows.append(row)
    return rows


def check_rounds():
    """round_order's rotation and medians' pairing; run by --selftest."""
    assert round_order(["a", "b", "c"], 1) == ["a", "b", "c"]
    assert round_order(["a", "b", "c"], 2) == ["b", "c", "a"]
    assert round_order(["a", "b", "c"], 4) == ["a", "b", "c"]

    def run(agent, rnd, cpu, missed=0):
        return {"agent": agent, "targets": 2, "series": 3, "gzip": False, "round": rnd, "cpu_s_per_million": cpu,
                "missed_scrapes": missed, "threads": [rnd, rnd + 1], "loadavg_before": [0.1 * rnd] * 3,
                "loadavg_after": [0.2 * rnd] * 3, "steady_rss_mib": 10.0}
    # vmagent doubles in round 2 (a noisy minute), and so does the agent next to it.
    runs = [run("sw", 1, 1.0), run("vmagent", 1, 2.0), run("sw", 2, 2.0, missed=3),
            run("vmagent", 2, 4.0), run("sw", 3, 1.1), run("vmagent", 3, 2.0)]
    add_ratios(runs)
    assert [r.get("cpu_vs_vmagent") for r in runs[::2]] == [0.5, 0.5, 0.55], runs
    rows = medians(runs)
    assert [r["agent"] for r in rows] == ["sw (median of 3)", "vmagent (median of 3)"], rows
    sw = rows[0]
    assert sw["agent"] == "sw (median of 3)" and sw["cpu_s_per_million"] == 1.1, sw
    assert sw["cpu_vs_vmagent"] == 0.5 and sw["missed_scrapes"] == 3 and sw["threads"] == [1, 4], sw
    assert medians([dict(runs[0], error="boom")])[0]["error"] == "boom"


def fmt(v, nd=2):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(runs):
    head = ("| targets × series | agent | CPU s / M samples | steady RSS MiB | peak RSS MiB | threads "
            "| samples/s at sink | jitter p50 / p99 / max ms | missed | CPU ÷ vmagent | RSS ÷ vmagent "
            "| load avg | host steal % |\n|" + " --- |" * 13)
    rows = [head]
    for r in runs:
        scale = f"{r['targets']:,} × {r['series']:,}" + (" gzip" if r["gzip"] else "")
        if "error" in r:
            rows.append(f"| {scale} | {r['agent']} | failed: {r['error'].splitlines()[0]} |" + " |" * 10)
            continue
        agent = r["agent"] + (f" (nginx errors: {r['farm_errors']})" if r.get("farm_errors") else "")
        sink = r["sink_samples_per_s"]
        jit = " / ".join(fmt(r[k], 2) for k in ("jitter_ms_p50", "jitter_ms_p99", "jitter_ms_max"))
        th = r["threads"]
        rows.append(
            f"| {scale} | {agent} | {fmt(r['cpu_s_per_million'], 2)} | {fmt(r['steady_rss_mib'], 1)} "
            f"| {fmt(r['peak_rss_mib'], 1)} | {th[0] if th[0] == th[1] else f'{th[0]}–{th[1]}'} "
            f"| {fmt(sink) if not isinstance(sink, str) else sink} | {jit} | {r['missed_scrapes']} "
            f"| {fmt(r.get('cpu_vs_vmagent'), 2)} | {fmt(r.get('steady_rss_vs_vmagent'), 2)} "
            f"| {r['loadavg_before'][0]:.1f}–{r['loadavg_after'][0]:.1f} | {fmt(r.get('host_steal_pct'), 1)} |")
    return "\n".join(rows) + "\n"


# --- main ----------------------------------------------------------------------------------

def build(profile):
    """Builds scrapewheel and the null sink; returns their paths."""
    cmd = ["cargo", "build", "--bin", "scrapewheel", "--example", "null_sink"]
    if profile == "release":
        cmd.append("--release")
    subprocess.run(cmd, cwd=ROOT, check=True)
    out = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    sub = "release" if profile == "release" else "debug"
    return os.path.join(out, sub, "scrapewheel"), os.path.join(out, sub, "examples", "null_sink")


def parse_scale(s):
    try:
        t, m = s.lower().replace("×", "x").split("x")
        return int(t), int(m)
    except ValueError:
        raise argparse.ArgumentTypeError(f"scale {s!r}: want TARGETSxSERIES, e.g. 1000x200")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=parse_scale, action="append", help="TARGETSxSERIES (repeatable; default 1000x200)")
    ap.add_argument("--agents", default=",".join(AGENTS), help="comma-separated, run in this order")
    ap.add_argument("--interval", default="10s", help="scrape_interval of every agent")
    ap.add_argument("--timeout", help="scrape_timeout (default: the interval)")
    ap.add_argument("--warmup", type=float, help="seconds from agent start before the window (default 3 intervals)")
    ap.add_argument("--window", type=float, default=60, help="measurement window, seconds")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every agent this many times per scale, interleaved, and report medians "
                         "(default 1)")
    ap.add_argument("--gzip", action="store_true", help="serve gzip (gzip_static) to agents that accept it")
    ap.add_argument("--profile", choices=("release", "dev"), default="release", help="cargo profile to build")
    ap.add_argument("--binary", help="scrapewheel binary (default: build it)")
    ap.add_argument("--sink", help="null_sink binary (default: build it)")
    ap.add_argument("--json", help="write the JSON report here")
    ap.add_argument("--markdown", help="write the Markdown table here")
    ap.add_argument("--farm-dir", default="/dev/shm",
                    help="memory file system for the farm's bodies and log (default /dev/shm; '' or a disk: "
                         "beside the agents)")
    ap.add_argument("--keep", action="store_true", help="keep temp dirs (configs, logs, data)")
    ap.add_argument("--selftest", action="store_true", help="tiny run (5 × 50 at 1 s, scrapewheel) with sanity checks")
    args = ap.parse_args(argv)

    if args.selftest:
        return selftest(args)

    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    for a in agents:
        if a not in AGENTS:
            ap.error(f"unknown agent {a!r}; known: {', '.join(AGENTS)}")
    scales = args.scale or [(1000, 200)]
    interval_s = seconds(args.interval)
    if args.warmup is None:
        args.warmup = 3 * interval_s
    if args.window < 2 * interval_s:
        ap.error("--window must cover at least two intervals")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    runs = measure(args, agents, scales, interval_s)
    report = {
        "command": " ".join(["scripts/bench.py"] + (argv if argv is not None else sys.argv[1:])),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "versions": versions(args.binary or args.profile),
        "arrival_resolution": "µs (nginx perl Time::HiRes)" if os.path.exists(PERL_MODULE)
        else "ms (nginx $msec)",
        "warmup_s": args.warmup,
        "runs": runs,
    }
    md = markdown(runs)
    if args.rounds > 1:
        report["medians"] = medians(runs)
        md = (f"Medians over {args.rounds} interleaved rounds (ratios: the median of each round's own ratio; "
              f"missed: the worst round):\n\n"
              + markdown(report["medians"]) + "\nEvery round:\n\n" + md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    print(md)
    return 0 if all("error" not in r for r in runs) else 1


def measure(args, agents, scales, interval_s):
    # Also SIGINT: a shell starts background jobs with SIGINT ignored, and the rig must
    # still be stoppable (and clean up) with kill -INT.
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
    built = (None, None) if args.binary and args.sink else build(args.profile)
    binaries = {"scrapewheel": os.path.abspath(args.binary or built[0]),
                "sink": os.path.abspath(args.sink or built[1])}
    base = tempfile.mkdtemp(prefix="sw-bench-")
    farm_base = memory_dir(args.farm_dir) or base
    runs = []
    try:
        for targets, series in scales:
            with NginxFarm(targets, series, args.gzip, workdir=os.path.join(farm_base, f"farm-{targets}x{series}"),
                           keep=args.keep) as farm:
                for rnd in range(1, args.rounds + 1):
                    for name in round_order(agents, rnd):
                        if name != "scrapewheel" and shutil.which(name) is None:
                            if rnd == 1:
                                runs.append({"agent": name, "targets": targets, "series": series,
                                             "gzip": args.gzip, "round": rnd, "error": f"{name} not installed"})
                            continue
                        print(f"# {targets} × {series}: {name}, round {rnd} of {args.rounds} "
                              f"(warm-up {args.warmup:.0f} s, window {args.window:.0f} s)", file=sys.stderr, flush=True)
                        try:
                            run = run_agent(name, farm, args, interval_s, binaries, base)
                        except RuntimeError as e:
                            run = {"agent": name, "targets": targets, "series": series, "gzip": args.gzip,
                                   "error": str(e)}
                        run["round"] = rnd
                        runs.append(run)
                        print("#   " + json.dumps(run), file=sys.stderr, flush=True)
    finally:
        cleanup()
        for d in {base, farm_base}:
            if not args.keep:
                shutil.rmtree(d, ignore_errors=True)
            else:
                print(f"# kept {d}", file=sys.stderr)
    add_ratios(runs)
    return runs


def selftest(args):
    """A tiny rig run whose report must make sense; for scripts/test.sh."""
    if nginx_binary() is None:
        if os.environ.get("SCRAPEWHEEL_REQUIRE_PEERS") == "1":
            print("bench selftest: nginx is missing and SCRAPEWHEEL_REQUIRE_PEERS=1", file=sys.stderr)
            return 1
        print("bench selftest: skipped, nginx is not installed (Debian package nginx)", file=sys.stderr)
        return 0
    check_jitter_and_missed()
    check_steal_and_memory_dir()
    check_rounds()
    args.interval, args.timeout, args.warmup, args.window = "1s", None, 3.5, 8
    if args.profile == "release" and not args.binary:
        args.profile = "dev"
    runs = measure(args, ["scrapewheel"], [(5, 50)], 1.0)
    print(markdown(runs))
    r = runs[0]
    problems = []
    if "error" in r:
        problems.append(r["error"])
    else:
        checks = [
            ("requests in an 8 s window at 1 s from 5 targets", 30 <= r["requests"] <= 50),
            ("samples scraped = requests × 50", r["samples_scraped"] == 50 * r["requests"]),
            ("no non-200 answers", r["non_200"] == 0),
            ("CPU measured", r["cpu_s"] >= 0 and r["cpu_s_per_million"] is not None),
            ("RSS between 1 and 512 MiB", 1 <= r["steady_rss_mib"] <= r["peak_rss_mib"] <= 512),
            ("threads counted", 1 <= r["threads"][0] <= r["threads"][1] <= 256),
            ("jitter measured and under 500 ms", r["jitter_ms_p99"] is not None and r["jitter_ms_max"] < 500),
            ("at most one missed scrape", r["missed_scrapes"] <= 1),
            ("sink rate known or remote write not merged",
             r["sink_samples_per_s"] == NOT_MERGED or r["sink_samples_per_s"] > 0),
            ("agent exited 0 on SIGTERM", r["exit_code"] == 0),
            ("host steal measured", r["host_steal_pct"] is not None and 0 <= r["host_steal_pct"] <= 100),
        ]
        problems = [f"{what}: {json.dumps(r)}" for what, ok in checks if not ok]
    for p in problems:
        print(f"bench selftest: FAILED: {p}", file=sys.stderr)
    if not problems:
        print("bench selftest: ok", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        cleanup()
        sys.exit(130)
