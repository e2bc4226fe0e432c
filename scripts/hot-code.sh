#!/usr/bin/env bash
# Regenerates link/hot-code.txt: the symbols of the code deploywatch runs, which build.rs hands to
# the linker so that code sits together at the front of the binary (an idle server's resident
# memory halves; docs/BENCHMARKS.md, "Memory"). Run it after a change of dependencies, of the
# Rust toolchain or of code that is to be released or benchmarked; a stale file costs memory, never
# correctness.
#
# How: a release build with a link map; then, under valgrind's callgrind (which records every
# instruction address that ran), an idle `serve` with a health target, a git repository and the
# requests a day brings (scrapes in each format, a webhook notification, task calls, status),
# and `deploywatch demo` (DigitalOcean polling, alerts, tasks); each address is looked up in the
# map and its function's symbol written out: start and idle first, then the requests, the CLI
# and the demo, each group in the binary's present order.
#
# Needs x86_64 Linux with valgrind, git, curl and python3 (as root on Debian it installs valgrind
# when missing), and a release build on top of its 3 minutes. Every process it starts is stopped
# by its PID.
#
# `scripts/hot-code.sh --check` only builds (with the map) and says how many of the file's names
# the binary no longer has; more than 2% missing exits 1. Regenerate after any code change that
# is to be released or benchmarked: even a 20-line change renamed 6% of the functions (rustc's
# `.llvm.<hash>` suffixes follow a codegen unit's contents) and gave back 2.5 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
check=false
[ "${1:-}" = --check ] && check=true
if ! command -v valgrind >/dev/null && ! $check; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
  else
    echo "hot-code.sh: valgrind is missing; install it (Debian: apt-get install valgrind)" >&2; exit 2
  fi
fi
work=$(mktemp -d /tmp/hot-code.XXXXXX)
pids=()
cleanup() {
  # Only processes this script started and has not yet waited for.
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# stop PID: TERM, wait, and forget it (a PID waited for may belong to someone else next).
stop() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local kept=()
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
  pids=("${kept[@]}")
}

# A fixed path for the map: build.rs's output stays the same from run to run (no rebuild of the
# crate). The map is removed and the binary relinked, so both come from this link (a stale pair
# would place the wrong functions without any error).
map="$PWD/target/hot-code.map"
rm -f "$map"
touch "$work/stamp"
touch src/main.rs # relinks the binary even when nothing changed, so the map is written again
built=$(DEPLOYWATCH_LINK_MAP="$map" cargo build --release --locked --bin deploywatch \
  --message-format=json-render-diagnostics | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "deploywatch":
        print(m["executable"])')
if [ -z "$built" ] || [ ! -s "$map" ] || [ ! "$map" -nt "$work/stamp" ]; then
  echo "hot-code.sh: the build wrote no fresh link map at $map (see build.rs's warnings above)" >&2; exit 1
fi
if $check; then
  python3 - "$map" link/hot-code.txt <<'PY'
import re, sys
names = set()
for line in open(sys.argv[1], errors="replace"):
    p = line.split(None, 4)
    if len(p) == 5 and re.fullmatch(r"[0-9a-f]+", p[0]) and ":(" not in p[4] and not p[4].startswith("."):
        names.add(p[4].strip())
listed = [l.strip() for l in open(sys.argv[2]) if l.strip() and not l.startswith("#")]
missing = [n for n in listed if n not in names]
share = len(missing) / max(len(listed), 1)
print(f"{sys.argv[2]}: {len(missing)} of {len(listed)} names are not in this build ({share:.1%})")
sys.exit(1 if share > 0.02 else 0)
PY
  exit $?
fi
bin="$work/deploywatch"
cp "$built" "$bin"
# run_cg TIER ARGS...: becomes deploywatch ARGS under callgrind (exec: call it in a subshell, whose
# PID is then valgrind's own), the profile going to $work/TIER.<pid>.
run_cg() {
  local tier=$1; shift
  exec valgrind --tool=callgrind --dump-instr=yes --compress-pos=no --compress-strings=no \
    "--callgrind-out-file=$work/$tier.%p" "$bin" "$@"
}
# cg TIER ARGS...: the same in the foreground.
cg() { ( run_cg "$@" ); }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 600); do curl -sf "$1/health/ready" >/dev/null && return 0; sleep 0.2; done; return 1; }

# 1. serve: a health target (its own liveness), one repository with a few branches.
repo="$work/repo"; mkdir -p "$repo"
g() { git -C "$repo" -c user.name=h -c user.email=h@h "$@" >/dev/null; }
g init -q -b main; echo x > "$repo/f"; g add f; g commit -qm x
for b in b1 b2 b3; do g branch "$b"; done
port=$(free_port); url="http://127.0.0.1:$port"
cat > "$work/serve.toml" <<TOML
[health]
discover = false
[[health.targets]]
name = "self"
url = "$url/health/live"
interval = "2s"
timeout = "1s"
[git]
fetch_interval = "5s"
[[git.repos]]
name = "repo"
url = "$repo"
branches = ["main", "b1", "b2", "b3"]
TOML
# $! is valgrind's own PID (run_cg execs), for callgrind_control and kill.
( export DEPLOYWATCH_DATABASE_URL="sqlite://$work/serve.db"
  run_cg serve serve --listen "127.0.0.1:$port" --config "$work/serve.toml" >"$work/serve.log" 2>&1 ) &
pids+=($!); serve=$!
wait_ready "$url" || { echo "serve did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }
sleep 20
# What ran until now (start, then idle: probes, git fetches, timers) goes first in the file.
callgrind_control --dump=idle "$serve" >/dev/null
for _ in $(seq 100); do ls "$work"/serve.*.1 >/dev/null 2>&1 && break; sleep 0.2; done
ls "$work"/serve.*.1 >/dev/null 2>&1 || { echo "hot-code.sh: callgrind wrote no idle dump" >&2; exit 1; }
alert='{"version":"4","groupKey":"g","status":"firing","receiver":"deploywatch","alerts":[{"status":"firing","labels":{"alertname":"DeploymentFailed","app":"api","severity":"critical"},"annotations":{"summary":"s"},"startsAt":"2026-11-22T10:00:00Z"}]}'
for i in 1 2 3; do
  curl -sf "$url/metrics" >/dev/null
  curl -sf -H 'Accept-Encoding: gzip' "$url/metrics" >/dev/null
  curl -sf -H 'Accept: application/openmetrics-text;version=1.0.0' "$url/metrics" >/dev/null
  curl -sf "$url/health/live" "$url/health/ready" "$url/health/startup" "$url/" >/dev/null || true
  curl -s -XPOST -H 'Content-Type: application/json' -d "${alert/\"g\"/\"g$i\"}" "$url/webhook/alertmanager" >/dev/null
  cg cli status --server "$url" >/dev/null 2>&1 || true
  cg cli tasks list --server "$url" >/dev/null 2>&1 || true
  id=$(cg cli tasks claim --server "$url" --queue execution --worker hot 2>/dev/null | grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' | head -1 || true)
  if [ -n "$id" ]; then cg cli tasks complete --server "$url" --worker hot "$id" >/dev/null 2>&1 || true; fi
  sleep 5
done
stop "$serve"

# 2. demo: DigitalOcean polling against the built-in simulator, alerts, tasks, announcements.
port=$(free_port)
( cd "$work" && run_cg demo demo --listen "127.0.0.1:$port" >"$work/demo.log" 2>&1 ) &
pids+=($!); demo=$!
wait_ready "http://127.0.0.1:$port" || { echo "demo did not start:" >&2; cat "$work/demo.log" >&2; exit 1; }
sleep 60
curl -sf -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/metrics" >/dev/null || true
stop "$demo"

# In this order: start and idle, the serve's requests, the CLI, the demo.
python3 - "$map" link/hot-code.txt "$work"/serve.*.1 :: "$work"/serve.[0-9]* :: "$work"/cli.* :: "$work"/demo.[0-9]* \
  "$(rustc --version)" <<'PY'
import bisect, re, sys
mapf, out, made_with = sys.argv[1], sys.argv[2], sys.argv[-1]
tiers = [[]]
for a in sys.argv[3:-1]:
    if a == "::":
        tiers.append([])
    elif not a.endswith(".1") or len(tiers) == 1:
        tiers[-1].append(a)
# The link map: every input section of executable code with its address range and first symbol.
secs, cur = [], None
for line in open(mapf, errors="replace"):
    p = line.split(None, 4)
    if len(p) < 5 or not re.fullmatch(r"[0-9a-f]+", p[0]):
        continue
    vma, size, rest = int(p[0], 16), int(p[2], 16), p[4].strip()
    if ":(" in rest:
        cur = [vma, vma + size, None] if rest.rsplit(":(", 1)[1].startswith(".text") and size else None
        if cur:
            secs.append(cur)
    elif rest.startswith("."):
        cur = None
    elif cur is not None and cur[2] is None:
        cur[2] = rest
secs.sort()
starts = [s[0] for s in secs]
# callgrind's instruction addresses (link addresses) of the deploywatch object, tier by tier;
# each tier's new functions in link order after the tiers before it.
order, ran = [], set()
for tier in tiers:
    new = set()
    for f in tier:
        ours = False
        for line in open(f, errors="replace"):
            if line.startswith("ob="):
                ours = line.rstrip().endswith("/deploywatch")
            elif ours and line.startswith("0x"):
                a = int(line.split()[0], 16)
                i = bisect.bisect_right(starts, a) - 1
                if i >= 0 and secs[i][0] <= a < secs[i][1] and secs[i][2] and i not in ran:
                    new.add(i)
    order += sorted(new)
    ran |= new
# A name can stand for several sections (copies of one local function in several codegen units);
# the linker places every section of a name it is given, so each name is written once.
names = list(dict.fromkeys(secs[i][2] for i in order))
size = sum(secs[i][1] - secs[i][0] for i in ran)
with open(out, "w") as f:
    f.write("# Generated by scripts/hot-code.sh: the functions deploywatch ran while profiled, for\n")
    f.write("# lld's --symbol-ordering-file (build.rs). Regenerate, do not edit.\n")
    f.write(f"# rustc: {made_with}\n")
    f.write("\n".join(names) + "\n")
print(f"{out}: {len(names)} functions, {size / 1e6:.1f} MB of the {sum(s[1] - s[0] for s in secs) / 1e6:.1f} MB of code", file=sys.stderr)
PY
