#!/usr/bin/env bash
# The long variants of the fault tests: many kill -9 rounds under webhook load on SQLite and
# PostgreSQL, the store outage, DigitalOcean faults, and the OTLP collector down. Then the
# trust runs of issue 12: SQLite on a small tmpfs filled and freed (needs root to mount), and a
# PostgreSQL poison notification; each must print "0 acknowledged alerts lost". Bounded: each
# kill round is about a second of load; the default is 25 rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
export DEPLOYWATCH_FAULT_ROUNDS="${1:-25}"
cargo test --test integration -- --test-threads=1 \
  process::kill_9_under_load_loses_nothing_acknowledged \
  fixer::store_outage_gives_503_and_retries_store_everything_once \
  digitalocean::retry_after_is_honoured_and_faults_keep_last_known_values \
  process::a_collector_that_is_down_or_black_holes_does_not_slow_requests

for run in trust::disk_full_acknowledges_only_what_is_on_disk_and_recovers \
  trust::unstorable_input_is_stored_safely_or_refused_with_a_reason; do
  out=$(timeout 600 cargo test --test integration -- --exact "$run" --nocapture 2>&1) || {
    printf '%s\n' "$out" | tail -40
    echo "FAULT RUN FAILED: $run"
    exit 1
  }
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ acknowledged alerts lost' | sort -u)
  echo "$run: ${line:-no outcome printed}"
  if [ "$line" != "0 acknowledged alerts lost" ]; then
    echo "FAULT RUN FAILED: $run"
    exit 1
  fi
done
