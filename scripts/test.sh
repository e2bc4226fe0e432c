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
# The page test drives a real headless browser.
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# The tests start their own Prometheus and Alertmanager on free ports and stop them by PID; a
# daemon the package may have started is left alone (it listens on other ports).

# The OpenAPI test checks docs/openapi.json against the running server with schemathesis (PyPI).
if [ ! -x target/schemathesis-venv/bin/schemathesis ]; then
  log "installing schemathesis into target/schemathesis-venv"
  python3 -m venv target/schemathesis-venv
  target/schemathesis-venv/bin/pip install -q schemathesis==4.32.5
fi

scripts/services.sh

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

log "promtool / amtool checks of the shipped rules and Alertmanager config"
promtool check rules alerts/*.rules.yml
promtool test rules alerts/tests/*.yml
amtool check-config alerts/alertmanager.yml

log "cargo test (unit and integration, real PostgreSQL, MariaDB, Prometheus, Alertmanager)"
# --workspace: the simulator crate (crates/do-simulator) has its own tests.
cargo test --workspace -- --test-threads="${DEPLOYWATCH_TEST_THREADS:-4}"
