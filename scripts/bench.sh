#!/usr/bin/env bash
# Reproduces docs/BENCHMARKS.md, each figure next to its reference and the ratio:
#   - criterion: /metrics render after a change vs served from the cache vs a rebuild-afresh design;
#   - load bench over HTTP: start to ready, webhook ingest vs the store's durable single-row
#     inserts, claims (16 workers, 10,000 tasks) vs `pgbench -N -c 16`, /metrics p99 vs nginx
#     serving the same bytes (wrk, 1 and 4 connections, 200 and 1,000 apps) and RSS, probes vs
#     blackbox_exporter, the DigitalOcean request budget;
#   - `scripts/bench.sh build`: a release build from an empty target dir, timed, with --timings.
# Sections: `scripts/bench.sh [startup ingest claims metrics probes budget build]` (none = all).
# Every process the benchmarks start (deploywatch, nginx, blackbox_exporter) is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
free -h | head -2
rustc --version

want() { [ -z "$SECTIONS" ] || [[ " $SECTIONS " == *" $1 "* ]]; }
SECTIONS="$*"

need=()
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || need+=(prometheus-blackbox-exporter)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v pgbench >/dev/null 2>&1 || need+=(postgresql-client)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
scripts/services.sh

if want build; then
  # A fresh 2-core machine's first `scripts/run.sh`: everything but the download, from an empty
  # target dir (never the worktree's own target/).
  fresh=$(mktemp -d /tmp/fresh-target.XXXXXX)
  cargo fetch --locked >/dev/null
  start=$(date +%s)
  CARGO_TARGET_DIR="$fresh" cargo build --release --locked --timings >/dev/null 2>&1
  secs=$(( $(date +%s) - start ))
  cp "$fresh"/cargo-timings/cargo-timing.html /tmp/deploywatch-cargo-timing.html 2>/dev/null || true
  rm -rf "$fresh"
  echo
  echo "## Release build from an empty target dir"
  echo "| seconds | target | ratio to target |"
  echo "|---|---|---|"
  awk -v s="$secs" 'BEGIN { printf "| %d | 300 | %.2f× |\n", s, s / 300 }'
  echo "(per-crate timings: /tmp/deploywatch-cargo-timing.html)"
  if [ "$SECTIONS" = build ]; then exit 0; fi
fi

if [ -z "$SECTIONS" ]; then
  cargo bench --bench metrics_render -- --noplot
fi
load_sections=()
for s in $SECTIONS; do [ "$s" = build ] || load_sections+=("$s"); done
if [ -z "$SECTIONS" ] || [ ${#load_sections[@]} -gt 0 ]; then
  cargo bench --bench load -- "${load_sections[@]}"
fi
