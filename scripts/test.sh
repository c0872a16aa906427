#!/usr/bin/env bash
# Runs every test of scrapewheel on a fresh machine: installs the peers the integration
# tests run against (Debian's prometheus for promtool, the parity suite and as a
# remote-write receiver, prometheus-node-exporter, victoria-metrics as a receiver and for
# vmagent, dnsmasq for dns_sd, chromium for the /targets page, openssl for test
# certificates, nginx for the load rig), then a `cargo fmt`/`cargo clippy` check, the
# load rig's ~15 s selftest, a smoke run of each bench and `cargo test` (unit, corpus and
# integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
[ -x /usr/bin/prometheus-node-exporter ] || need+=(prometheus-node-exporter)
{ [ -x /usr/bin/victoria-metrics ] && [ -x /usr/bin/vmagent ]; } || need+=(victoria-metrics)
# dnsmasq-base: the DNS server dns_sd tests run on a loopback port (no service).
[ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v openssl >/dev/null 2>&1 || need+=(openssl)  # test certificates for tls_config
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
scripts/bench.py --selftest
# Benches run once each in test mode (a smoke check that they still work); the unit,
# corpus and integration tests run last so their summary closes the output.
cargo test --locked --benches
# The instruction-count harness (scripts/instructions.sh) runs a couple of scrapes.
cargo run --locked --quiet --example scrape_path -- 2
cargo test --locked --lib --bins --tests
