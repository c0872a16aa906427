#!/usr/bin/env bash
# Runs every test of scrapewheel on a fresh machine: installs the peers the integration
# tests run against (Debian's prometheus for promtool, prometheus-node-exporter,
# victoria-metrics, nginx for the load rig), then `cargo test` (unit, corpus and
# integration tests), a `cargo clippy`/`cargo fmt` check and the load rig's ~15 s selftest.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ -x /usr/bin/prometheus-node-exporter ] || need+=(prometheus-node-exporter)
[ -x /usr/bin/victoria-metrics ] || need+=(victoria-metrics)
# The load rig's selftest (scripts/bench.py --selftest): an nginx farm whose access log
# stamps arrivals in microseconds with the perl module.
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_http_perl_module.so ] || need+=(libnginx-mod-http-perl)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing test peers: ${need[*]}"
  $sudo apt-get update -qq
  # policy-rc.d keeps the packages' services from starting: tests start their own peers
  # on free loopback ports.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

export SCRAPEWHEEL_REQUIRE_PEERS=1
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --all-targets
scripts/bench.py --selftest
