#!/usr/bin/env python3
"""A farm of N loopback scrape targets served by nginx, for the load rig (scripts/bench.py).

Each target is one `listen 127.0.0.1:PORT` of a single nginx server whose
`location = /metrics` serves the static file `<port>.prom` (scripts/exposition.py's
realistic body, `series` samples) as `text/plain; version=0.0.4`; with gzip, a
pre-compressed `<port>.prom.gz` is served by `gzip_static` to clients that accept gzip.

nginx runs as its own instance (`nginx -p DIR -c nginx.conf -g 'daemon off;'`, one
worker, pid and logs in DIR), never the system service. Its access log records, for every
request, the time it was served, the port, the status, the bytes sent, `$request_time`
and `$connection_requests`; with Debian's libnginx-mod-http-perl the time has
microsecond resolution (Time::HiRes), without it nginx's own `$msec` (milliseconds).
`requests()` reads it back.

Run alone it serves until Ctrl-C and prints the target addresses:
  scripts/nginx_farm.py --targets 100 --series 1000 [--gzip]
"""
import argparse
import gzip
import os
import pwd
import grp
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# Helpers beside this script; no __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import exposition  # noqa: E402

PERL_MODULE = "/usr/lib/nginx/modules/ngx_http_perl_module.so"


def nginx_binary():
    """nginx's path, or None; Debian puts it in /usr/sbin, which a user's PATH may lack."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def raise_nofile(want):
    """Raises RLIMIT_NOFILE to at least `want` (the hard limit too when allowed); children
    (nginx, the agents) inherit it. Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_ports(count):
    """`count` distinct free loopback ports: all bound at once (port 0), then released, so
    the kernel hands out distinct ones; nginx binds them right after."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class NginxFarm:
    """An nginx instance serving `targets` × `series`. Use as a context manager: the
    instance is stopped and its directory removed on exit (also on exceptions)."""

    def __init__(self, targets, series, gzip_bodies=False, workdir=None, keep=False):
        self.targets = targets
        self.series = series
        self.gzip = gzip_bodies
        self.dir = workdir or tempfile.mkdtemp(prefix="sw-farm-")
        self.keep = keep
        self.proc = None
        self.ports = []
        self.usec = os.path.exists(PERL_MODULE)
        self.body_bytes = 0
        self.gzip_bytes = 0
        self._log_pos = 0

    @property
    def addrs(self):
        return [f"127.0.0.1:{p}" for p in self.ports]

    @property
    def access_log(self):
        return os.path.join(self.dir, "access.log")

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def _write_bodies(self):
        bodies = os.path.join(self.dir, "bodies")
        os.makedirs(bodies, exist_ok=True)
        for i, port in enumerate(self.ports):
            data = exposition.body(i, self.series)
            path = os.path.join(bodies, f"{port}.prom")
            with open(path, "wb") as f:
                f.write(data)
            self.body_bytes += len(data)
            if self.gzip:
                z = gzip.compress(data, compresslevel=6, mtime=0)
                with open(path + ".gz", "wb") as f:
                    f.write(z)
                self.gzip_bytes += len(z)
        return bodies

    def _conf(self, bodies):
        # Listening sockets take worker connections too, and every target holds a
        # keep-alive connection. When fewer than 1/16 of the connections are free, nginx
        # closes idle keep-alive connections ("worker_connections are not enough, reusing
        # connections"), which would make agents reconnect: keep a third spare. (No
        # open_file_cache: its cached descriptors would count against the same limit.)
        conns = 3 * self.targets + 1024
        lines = []
        if self.usec:
            lines.append(f"load_module {PERL_MODULE};")
        if os.geteuid() == 0:
            # A root master would run its worker as nobody, which cannot read our files.
            lines.append(f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};")
        lines += [
            "worker_processes 1;",
            f"worker_rlimit_nofile {conns + 64};",
            "pid nginx.pid;",
            "error_log error.log warn;",
            f"events {{ worker_connections {conns}; }}",
            "http {",
        ]
        if self.usec:
            lines += [
                "  perl_require Time/HiRes.pm;",
                "  perl_set $arrival 'sub { sprintf(\"%.6f\", Time::HiRes::time()) }';",
                "  log_format arrivals '$arrival $server_port $status $bytes_sent $request_time $connection_requests';",
            ]
        else:
            lines.append("  log_format arrivals '$msec $server_port $status $bytes_sent $request_time $connection_requests';")
        lines += [
            "  access_log access.log arrivals buffer=256k flush=1s;",
            "  client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp;",
            "  uwsgi_temp_path tmp; scgi_temp_path tmp;",
            "  types {}",
            '  default_type "text/plain; version=0.0.4";',
            "  sendfile on; tcp_nopush on; tcp_nodelay on;",
            "  keepalive_timeout 300s; keepalive_requests 1000000;",
            "  server {",
        ]
        lines += [f"    listen 127.0.0.1:{p} backlog=64;" for p in self.ports]
        lines += [
            f"    location = /metrics {{ alias {bodies}/$server_port.prom;"
            + (" gzip_static on; gzip_vary off;" if self.gzip else "") + " }",
            "    location / { return 404; }",
            "  }",
            "}",
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout=60):
        nginx = nginx_binary()
        if nginx is None:
            raise FileNotFoundError("nginx not found (Debian package `nginx`)")
        raise_nofile(3 * self.targets + 2048)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        for attempt in range(3):
            self.ports = free_ports(self.targets)
            self.body_bytes = self.gzip_bytes = 0
            bodies = self._write_bodies()
            with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
                f.write(self._conf(bodies))
            self.proc = subprocess.Popen(
                [nginx, "-p", self.dir, "-c", "nginx.conf", "-g", "daemon off;"],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "nginx.stderr"), "w"),
                start_new_session=True,
            )
            if self._wait_ready(timeout):
                self._log_pos = os.path.getsize(self.access_log) if os.path.exists(self.access_log) else 0
                return
            # A port taken between the probe and nginx's bind: pick others and retry.
            self.stop_nginx()
        raise RuntimeError(f"nginx did not start; see {self.dir}/error.log and nginx.stderr")

    def _wait_ready(self, timeout):
        deadline = time.time() + timeout
        last = f"http://{self.addrs[-1]}/metrics"
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(last, timeout=2) as r:
                    if r.status == 200:
                        return True
            except OSError:
                time.sleep(0.1)
        return False

    def stop_nginx(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # QUIT: graceful, flushes the access log buffer.
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def stop(self):
        self.stop_nginx()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def flush_log(self):
        """Asks nginx to reopen its logs, which flushes the buffered access log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)

    def error_lines(self):
        """nginx's error log lines of level warn and worse (e.g. `accept4() failed (24: Too
        many open files)`, `worker_connections are not enough, reusing connections`), so a
        farm that could not serve shows in the report."""
        try:
            with open(os.path.join(self.dir, "error.log"), errors="replace") as f:
                return [l.rstrip() for l in f if any(k in l for k in ("[warn]", "[error]", "[crit]", "[alert]", "[emerg]"))]
        except FileNotFoundError:
            return []

    def requests(self, since=None, until=None):
        """[(arrival time, port, status, bytes sent, serve seconds, nth request on its
        connection), …] of the requests
        that arrived in [since, until] (Unix seconds), in log order. Reads the whole log.

        nginx logs a request when its answer has been handed to the kernel; the arrival is
        that time less `$request_time` (ms resolution), which is 0 when nginx read and
        answered the request in one pass of its event loop, as it nearly always does."""
        self.flush_log()
        out = []
        try:
            f = open(self.access_log)
        except FileNotFoundError:
            return out
        with f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    continue
                took = float(parts[4])
                t = float(parts[0]) - took
                if (since is None or t >= since) and (until is None or t <= until):
                    out.append((t, int(parts[1]), int(parts[2]), int(parts[3]), took, int(parts[5])))
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=10)
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--gzip", action="store_true")
    args = ap.parse_args()
    with NginxFarm(args.targets, args.series, args.gzip) as farm:
        print("\n".join(farm.addrs), flush=True)
        print(f"# nginx in {farm.dir}; Ctrl-C stops it", file=sys.stderr)
        try:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while farm.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
