#!/usr/bin/env python3
"""A farm of loopback scrape targets for load tests.

Serves N targets on N consecutive free loopback ports, each exposing M series of a
realistic exporter body (HELP/TYPE lines, counters, gauges and a histogram with label
sets like node_exporter's). Answers gzip when asked (Accept-Encoding: gzip) if --gzip.
Writes the list of target addresses to --targets-file and, on exit, each target's request
arrival times to --arrivals-file (for phase-jitter figures).

Stops by itself after --duration seconds (or on SIGTERM/SIGINT). Loopback only.
"""
import argparse
import asyncio
import gzip
import json
import signal
import socket
import time


def body(target: int, series: int) -> bytes:
    lines = []
    n = 0
    fam = 0
    while n < series:
        kind = fam % 3
        name = f"farm_family_{fam}"
        if kind == 0:
            lines.append(f"# HELP {name}_total Requests handled, by code and method.")
            lines.append(f"# TYPE {name}_total counter")
            for i in range(min(20, series - n)):
                lines.append(
                    f'{name}_total{{code="{200 + i % 5}",method="{("GET", "POST")[i % 2]}",handler="/api/v{i}"}} {target * 1000 + i * 7}'
                )
                n += 1
        elif kind == 1:
            lines.append(f"# HELP {name}_bytes Memory in use, by area.")
            lines.append(f"# TYPE {name}_bytes gauge")
            for i in range(min(10, series - n)):
                lines.append(f'{name}_bytes{{area="area{i}",device="sd{chr(97 + i % 26)}"}} {1.5e9 + i}')
                n += 1
        else:
            lines.append(f"# HELP {name}_seconds Request latency.")
            lines.append(f"# TYPE {name}_seconds histogram")
            cum = 0
            for le in ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"):
                if n >= series:
                    break
                cum += 3
                lines.append(f'{name}_seconds_bucket{{handler="/q",le="{le}"}} {cum}')
                n += 1
            if n < series:
                lines.append(f'{name}_seconds_sum{{handler="/q"}} 12.5')
                n += 1
            if n < series:
                lines.append(f'{name}_seconds_count{{handler="/q"}} {cum}')
                n += 1
        fam += 1
    return ("\n".join(lines) + "\n").encode()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--interval", type=float, default=10.0, help="for arrival offsets")
    ap.add_argument("--targets-file", required=True)
    ap.add_argument("--arrivals-file")
    args = ap.parse_args()

    arrivals = [[] for _ in range(args.targets)]
    requests = 0

    async def serve(reader, writer, idx, plain, zipped):
        nonlocal requests
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                t = time.time()
                requests += 1
                arrivals[idx].append(t)
                want_gzip = args.gzip and b"gzip" in head.lower()
                payload = zipped if want_gzip else plain
                hdr = (
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                    f"Content-Length: {len(payload)}\r\n"
                    + ("Content-Encoding: gzip\r\n" if want_gzip else "")
                    + "\r\n"
                )
                writer.write(hdr.encode() + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    servers = []
    addrs = []
    for i in range(args.targets):
        plain = body(i, args.series)
        zipped = gzip.compress(plain)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        srv = await asyncio.start_server(
            lambda r, w, i=i, p=plain, z=zipped: serve(r, w, i, p, z), sock=sock, backlog=64
        )
        servers.append(srv)
        addrs.append(f"127.0.0.1:{sock.getsockname()[1]}")
    with open(args.targets_file, "w") as f:
        json.dump(addrs, f)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.duration)
    except asyncio.TimeoutError:
        pass
    for s in servers:
        s.close()
    if args.arrivals_file:
        with open(args.arrivals_file, "w") as f:
            json.dump({"interval": args.interval, "requests": requests, "arrivals": arrivals}, f)


if __name__ == "__main__":
    asyncio.run(main())
