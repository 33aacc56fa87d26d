#!/usr/bin/env bash
# Controlled check of the soak's RSS growth: two instances, same load, only
# instance 1's /metrics is scraped (every 5 s) during the run. Writes
# OUT/soak-scrape1.json (qrlogin-bench soak, no restart) and OUT/scrapes.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../../.." && pwd)
OUT=${1:?usage: rss-scrape-check.sh OUT_DIR}
D=$(mktemp -d /tmp/rssexp-redis.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always --daemonize no --dir "$D" >"$D/log" 2>&1 &
RP=$!
PIDS=
trap 'kill $PIDS $RP 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$D"' EXIT
for _ in $(seq 50); do [ "$(redis-cli -p "$PORT" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
URLS=()
for i in 1 2; do
  "$ROOT/target/release/qrlogin" serve --listen 127.0.0.1:0 --store "redis://127.0.0.1:$PORT" --rate-limits false \
    --max-streams-per-ip 0 --demo-users true --session-ttl 60 --mobile-token-ttl 600 >"$D/i$i.out" 2>"$D/i$i.err" &
  PIDS="$PIDS $!"
  for _ in $(seq 200); do u=$(sed -n 's/^listening on //p' "$D/i$i.out"); [ -n "$u" ] && break; sleep 0.05; done
  URLS+=("$u")
done
set -- $PIDS
args=(--url "${URLS[0]}" --url "${URLS[1]}" --server-pid "$1" --server-pid "$2")
( end=$(( $(date +%s) + ${SECONDS_RUN:-180} + 5 )); n=0
  while [ "$(date +%s)" -lt $end ]; do curl -s "${URLS[0]}/metrics" >/dev/null || true; n=$((n+1)); sleep 5; done
  echo "$n scrapes of instance 1" >"$OUT/scrapes.txt" ) &
SCRAPER=$!
"$ROOT/target/release/qrlogin-bench" soak "${args[@]}" --redis-url "redis://127.0.0.1:$PORT" --rate "${RATE:-492}" \
  --duration "${SECONDS_RUN:-180}" --json >"$OUT/soak-scrape1.json"
# Only the scraper: the instances and Redis run until the EXIT trap.
wait "$SCRAPER"
