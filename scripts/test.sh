#!/usr/bin/env bash
# Runs every test of scrapewheel on a fresh machine: installs the peers the integration
# tests run against (Debian's prometheus for promtool, the parity suite and as a
# remote-write receiver, prometheus-node-exporter, victoria-metrics as a receiver and for
# vmagent, dnsmasq for dns_sd, chromium for the /targets page, openssl for test
# certificates), then
# `cargo test` (unit, corpus and integration tests, and a smoke run of each bench) and a
# `cargo clippy`/`cargo fmt` check.
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
# Benches run once each in test mode (a smoke check that they still work); the unit,
# corpus and integration tests run last so their summary closes the output.
cargo test --locked --benches
cargo test --locked --lib --bins --tests
