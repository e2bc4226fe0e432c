#!/usr/bin/env bash
# Reproduces docs/BENCHMARKS.md: criterion for /metrics rendering, then the load benchmark over
# HTTP (start to ready, webhook ingest, claims, /metrics at scale, probes vs blackbox_exporter,
# DigitalOcean request budget). Takes about 15 minutes on 2 cores after the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus-blackbox-exporter >/dev/null
}
pkill -f prometheus-blackbox-exporter 2>/dev/null || true
scripts/services.sh
cargo bench --bench metrics_render -- --noplot
cargo bench --bench load -- "$@"
