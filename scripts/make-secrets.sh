#!/usr/bin/env bash
# Creates the secret files docker-compose expects, with random tokens and placeholders to replace.
set -euo pipefail
cd "$(dirname "$0")/../deploy/secrets"
rand() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
[ -f deploywatch-webhook-token ] || rand > deploywatch-webhook-token
[ -f grafana-admin-password ] || rand > grafana-admin-password
[ -f digitalocean-token ] || printf 'replace-with-your-digitalocean-token' > digitalocean-token
[ -f pagerduty-routing-key ] || printf 'replace-with-your-pagerduty-routing-key' > pagerduty-routing-key
[ -f slack-webhook-url ] || printf 'https://hooks.slack.com/services/replace/me' > slack-webhook-url
chmod 600 ./*-token ./*-password ./*-key ./*-url 2>/dev/null || true
echo "secrets in $(pwd)"
