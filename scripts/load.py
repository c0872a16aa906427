#!/usr/bin/env python3
"""Load run: scrapewheel against a farm of loopback targets (scripts/farm.py).

Starts the farm, writes a config that scrapes every farm target, runs the release
binary for --duration seconds, samples the agent's CPU time, RSS and thread count from
/proc once a second, then SIGTERMs it and prints a report:

  samples scraped, CPU seconds, CPU seconds per million samples, steady RSS (median of
  the second half), peak RSS, bytes per active series, threads (min/max), skipped slots,
  scrape-phase jitter measured at the farm from request arrival times.

Example (1,000 targets x 200 series at 10 s, 2 minutes):
  scripts/load.py --targets 1000 --series 200 --interval 10s --duration 120
Everything runs on loopback and stops by itself.
"""
import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu = (int(rest[11]) + int(rest[12])) / tck
    threads = int(rest[17])
    rss = int(rest[21]) * page
    return cpu, rss, threads


def metric(listen, name):
    try:
        text = urllib.request.urlopen(f"http://{listen}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def seconds(d):
    d = d.strip()
    if d.endswith("ms"):
        return float(d[:-2]) / 1000
    if d.endswith("s"):
        return float(d[:-1])
    if d.endswith("m"):
        return float(d[:-1]) * 60
    return float(d)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--interval", default="10s")
    ap.add_argument("--duration", type=float, default=120)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--workers", type=int, default=0, help="engine.workers (0 = default)")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/scrapewheel"))
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * args.targets + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    if not os.path.exists(args.binary):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)

    tmp = tempfile.mkdtemp(prefix="sw-load-")
    targets_file = os.path.join(tmp, "targets.json")
    arrivals_file = os.path.join(tmp, "arrivals.json")
    interval = seconds(args.interval)
    farm = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "scripts/farm.py"), "--targets", str(args.targets),
         "--series", str(args.series), "--duration", str(args.duration + 60),
         "--interval", str(interval), "--targets-file", targets_file, "--arrivals-file", arrivals_file]
        + (["--gzip"] if args.gzip else []),
    )
    try:
        deadline = time.time() + 60
        while not os.path.exists(targets_file) or os.path.getsize(targets_file) == 0:
            if time.time() > deadline or farm.poll() is not None:
                sys.exit("farm did not start")
            time.sleep(0.1)
        time.sleep(0.2)
        with open(targets_file) as f:
            addrs = json.load(f)
        listen = f"127.0.0.1:{free_port()}"
        cfg = os.path.join(tmp, "load.toml")
        with open(cfg, "w") as f:
            f.write(f'[global]\nscrape_interval = "{args.interval}"\nscrape_timeout = "{args.interval}"\n')
            if args.workers:
                f.write(f"[engine]\nworkers = {args.workers}\n")
            f.write('[storage]\nretention_size = "4GiB"\n')
            f.write('[[scrape_configs]]\njob_name = "farm"\n[[scrape_configs.static_configs]]\n')
            f.write("targets = [" + ", ".join(f'"{a}"' for a in addrs) + "]\n")
        agent = subprocess.Popen(
            [args.binary, "run", "--config", cfg, "--listen", listen, "--data", os.path.join(tmp, "data")],
            stderr=open(os.path.join(tmp, "agent.log"), "w"),
        )
        samples = []
        t0 = time.time()
        while time.time() - t0 < args.duration:
            time.sleep(1)
            if agent.poll() is not None:
                sys.exit(f"agent exited early; see {tmp}/agent.log")
            samples.append((time.time() - t0,) + proc_stat(agent.pid))
        scraped = metric(listen, "scrapewheel_samples_scraped_total") or 0
        appended = metric(listen, "scrapewheel_samples_appended_total") or 0
        skipped = metric(listen, "scrapewheel_wheel_skipped_total") or 0
        missed = metric(listen, "scrapewheel_wheel_missed_slots_total") or 0
        failures = metric(listen, "scrapewheel_scrape_failures_total") or 0
        cpu_end = samples[-1][1]
        agent.send_signal(signal.SIGTERM)
        rc = agent.wait(timeout=120)
    finally:
        farm.send_signal(signal.SIGTERM)
        farm.wait(timeout=120)

    rss = [s[2] for s in samples]
    threads = [s[3] for s in samples]
    steady = statistics.median(rss[len(rss) // 2:])
    active_series = args.targets * (args.series + 5)
    report = {
        "targets": args.targets,
        "series_per_target": args.series,
        "interval": args.interval,
        "duration_s": round(samples[-1][0], 1),
        "samples_scraped": int(scraped),
        "samples_appended": int(appended),
        "samples_per_s": round(scraped / samples[-1][0]),
        "cpu_s": round(cpu_end, 2),
        "cpu_s_per_million_samples": round(cpu_end / max(scraped, 1) * 1e6, 3),
        "steady_rss_mib": round(steady / 2**20, 1),
        "peak_rss_mib": round(max(rss) / 2**20, 1),
        "bytes_per_active_series": round(steady / active_series, 1),
        "threads_min_max": [min(threads), max(threads)],
        "skipped_slots": int(skipped),
        "missed_slots": int(missed),
        "failed_scrapes": int(failures),
        "exit_code": rc,
    }
    report.update(phase_jitter(arrivals_file, interval))
    print(json.dumps(report, indent=2))


def phase_jitter(arrivals_file, interval):
    """Scrape-phase jitter seen by the targets: for every target, how far each gap
    between two consecutive requests is from exactly one interval."""
    try:
        with open(arrivals_file) as f:
            data = json.load(f)
    except OSError:
        return {}
    devs = []
    for times in data["arrivals"]:
        for a, b in zip(times, times[1:]):
            devs.append(abs((b - a) - interval) * 1000)
    if not devs:
        return {}
    devs.sort()
    q = lambda p: round(devs[min(len(devs) - 1, int(p * len(devs)))], 3)
    return {"jitter_ms_p50": q(0.5), "jitter_ms_p99": q(0.99), "jitter_ms_max": round(devs[-1], 3)}


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


if __name__ == "__main__":
    main()
