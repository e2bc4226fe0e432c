#!/usr/bin/env bash
# The long variants of the fault tests: many kill -9 rounds under webhook load on SQLite and
# PostgreSQL, the store outage, DigitalOcean faults, and the OTLP collector down. Bounded: each
# round is about a second of load; the default is 25 rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
export DEPLOYWATCH_FAULT_ROUNDS="${1:-25}"
cargo test --test integration -- --test-threads=1 \
  process::kill_9_under_load_loses_nothing_acknowledged \
  fixer::store_outage_gives_503_and_retries_store_everything_once \
  digitalocean::retry_after_is_honoured_and_faults_keep_last_known_values \
  process::a_collector_that_is_down_or_black_holes_does_not_slow_requests
