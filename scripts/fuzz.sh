#!/usr/bin/env bash
# Runs each cargo-fuzz target for a set time (default 60 s each). Installs cargo-fuzz if missing.
# The machine has a stable toolchain only; RUSTC_BOOTSTRAP lets cargo-fuzz use its -Z flags.
# A crash leaves its input under fuzz/artifacts/<target>/: turn it into a test, then fix.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
mkdir -p fuzz/corpus/webhook_payload fuzz/corpus/do_responses fuzz/corpus/probe_target
# Seed corpora from the spec's examples and a real notification.
cp tests/fixtures/do-openapi-examples/*.json fuzz/corpus/do_responses/ 2>/dev/null || true
printf '%s' '{"version":"4","groupKey":"g","status":"firing","receiver":"r","alerts":[{"status":"firing","labels":{"alertname":"DeploymentFailed","app":"api","severity":"critical"},"annotations":{},"startsAt":"2026-11-22T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://p","fingerprint":"f"}]}' > fuzz/corpus/webhook_payload/seed.json
for u in 'http://169.254.169.254/' 'http://2852039166/' 'http://[::ffff:a9fe:a9fe]/' 'https://api.example.com/health/ready'; do
  printf '%s' "$u" > "fuzz/corpus/probe_target/$(printf '%s' "$u" | md5sum | cut -c1-8)"
done
for t in webhook_payload do_responses probe_target; do
  echo "==> fuzzing $t for ${seconds}s"
  cargo fuzz run --sanitizer none "$t" "fuzz/corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048
done
