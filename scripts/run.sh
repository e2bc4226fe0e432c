#!/usr/bin/env bash
# Builds deploywatch and runs the main job on the embedded default (SQLite): `demo` (serve plus the
# built-in DigitalOcean simulator) when no DIGITALOCEAN_TOKEN is set, `serve` otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
if [ -z "${DIGITALOCEAN_TOKEN:-}" ]; then
  exec target/release/deploywatch demo "$@"
else
  exec target/release/deploywatch serve "$@"
fi
