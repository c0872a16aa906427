#!/usr/bin/env bash
# Runs every test of scrapewheel on a fresh machine: installs the peers the integration
# tests run against (Debian's prometheus for promtool and the parity suite,
# prometheus-node-exporter, victoria-metrics), then `cargo test` (unit, corpus and
# integration tests) and a `cargo clippy`/`cargo fmt` check.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
[ -x /usr/bin/prometheus-node-exporter ] || need+=(prometheus-node-exporter)
[ -x /usr/bin/victoria-metrics ] || need+=(victoria-metrics)
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
