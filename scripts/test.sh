#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs it:
# Debian's prometheus and prometheus-alertmanager (promtool, amtool), the local PostgreSQL and
# MariaDB (started if down), then fmt, clippy, the whole test suite and the rule/config checks.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

need_pkgs=()
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v amtool >/dev/null 2>&1 || need_pkgs+=(prometheus-alertmanager)
command -v git >/dev/null 2>&1 || need_pkgs+=(git)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# Debian starts the daemons it installs when it can; the tests start their own on free ports.
pkill -x prometheus 2>/dev/null || true
pkill -f '^/usr/bin/prometheus-alertmanager' 2>/dev/null || true

scripts/services.sh

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

log "promtool / amtool checks of the shipped rules and Alertmanager config"
promtool check rules alerts/*.rules.yml
promtool test rules alerts/tests/*.yml
amtool check-config alerts/alertmanager.yml

log "cargo test (unit and integration, real PostgreSQL, MariaDB, Prometheus, Alertmanager)"
cargo test -- --test-threads="${DEPLOYWATCH_TEST_THREADS:-4}"
