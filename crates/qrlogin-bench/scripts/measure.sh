#!/usr/bin/env bash
# Reproduces the load figures of BENCHMARKS.md on this machine.
#
#   crates/qrlogin-bench/scripts/measure.sh [OUT_DIR] [SECTION...]
#
# SECTION is any of: throughput repeat wake redis idle jwt scaleout waiters
# soak (default: all but repeat, jwt, scaleout, waiters and soak). Each run
# starts a fresh `qrlogin serve` (rate limits off: one client IP is exactly
# what they stop) and, for Redis runs, uses a private redis-server on a unix
# socket in a temporary directory (never a shared one), emptied and its stats
# reset before every run. Every load run is bounded (a few seconds) and
# targets 127.0.0.1 only. Results: one JSON report per run in OUT_DIR.
#
# jwt: server CPU per login with `--mobile-verifier demo` against `jwt`
# (BENCHMARKS.md): a `qrlogin-bench idp` (a tiny OpenID provider on
# 127.0.0.1, one fresh key per algorithm in JWT_ALGS, default "rs256"; add
# es256 for ES256) is started once and mints TOKEN_POOL (default 40000)
# access tokens, one per login; then, REPEATS times (default 3), for each
# store, a demo run and a jwt run per algorithm alternate (A/B/A/B), every
# one on a fresh server, so the verified-token cache starts empty and no
# token is seen twice. SHARED=1 adds a run where every login presents the
# same token (cache hits only). EXPERIMENT=/path/to/another/qrlogin adds,
# after each jwt run, the same run with that binary (file names -exp-).
# RATE=N offers N logins/s to every run instead of as many as c=64 manage:
# CPU per login falls as throughput rises (more work per wake-up), so at a
# fixed rate both verifiers are compared at the same load.
#
# scaleout: several instances on one Redis (issue 13). A private
# redis-server of its own (unix socket; TRANSPORT=tcp: a free 127.0.0.1
# port instead), then for N in ${INSTANCES:-1 2 4 8}: N `qrlogin serve` on
# it, and one `qrlogin-bench run` across all of them (--url and
# --server-pid per instance: browser on instance k mod N, phone on k+1 mod
# N) at RATE logins/s (default 1000), CONCURRENCY (default 256), DURATION
# seconds, SSE. One report per N: scaleout-$TRANSPORT-n$N.json, with hint
# messages received per instance and per login, server CPU per instance
# and in total, and Redis publishes and bytes out per login.
# TRANSPORT=cluster: a private 3-master Redis Cluster (TCP) instead; per
# node INFO/CLUSTER INFO snapshots before and after each run, summed by
# cluster_stats.py into scaleout-cluster-n$N.cluster.json (publishes,
# Redis CPU, bytes out, cluster-bus publish messages, all per login).
# WAIT_ELSEWHERE=1: the browser waits on another instance than the one
# that created the login (qrlogin-bench --wait-elsewhere; files
# …-nN-elsewhere…), the case that registers the waiter (watch.lua).
#
# waiters: WAITERS (default 19000) idle SSE waiters on one instance, spread
# over SOURCES (default 20) loopback source addresses so the default
# --max-streams-per-ip (1,000) holds, RSS per waiter (idle, 5 s of
# samples), then a run at RATE logins/s (default 1000) for DURATION seconds
# beside them (wake p50/p99), with a /healthz baseline of BASELINE (20000)
# requests first (a login's server CPU in trivial requests); the same run
# alone on a fresh server is the control. For each of STORES (redis
# memory): waiters-$store-{alone,idle,run}.json. Needs a descriptor limit
# of about 20,000 (ulimit -n) for the server and the load generator.
#
# soak: the soak run (issue 13): SOAK_SECONDS (default 600) at half the
# measured capacity on one private redis-server (TCP loopback, a free port,
# `--appendonly yes --appendfsync always`, so a kill -9 keeps every write it
# acknowledged) with two `qrlogin serve` on it, Redis killed (-9) at
# SOAK_SECONDS/2 and started again on the same port and dir RESTART_PAUSE
# seconds (default 2) later. The instances run with short TTLs
# (--session-ttl SOAK_SESSION_TTL, default 60; --mobile-token-ttl
# SOAK_SECONDS + 120) so that every key the run writes can be waited out.
# Steps: soak-capacity.json (`qrlogin-bench run`, both instances, c=256,
# no rate, CAPACITY_SECONDS, default 10); then fresh instances and
# soak.json (`qrlogin-bench soak` at SOAK_RATE, default half the capacity's
# logins/s; CONCURRENCY default 256): per-second timeline, RSS of each
# instance, Redis outages; soak-restart.json (kill and restart times);
# soak-redis.json (at the end: used_memory, DBSIZE, and from one SCAN pass
# with PTTL and MEMORY USAGE: keys without a TTL, the longest PTTL left,
# keys by kind; then, after waiting that PTTL out, DBSIZE and the same
# audit again; a PTTL beyond MAX_EXPIRY_WAIT seconds, default 900, is not
# waited for: those keys are listed and the DBSIZE-0 criterion is not met);
# soak-check.json and the verdict from soak_check.py (measure.sh then
# exits 1 when a criterion fails).
#
# Binaries: $QRLOGIN (default target/release/qrlogin) and $QRLOGIN_BENCH
# (default target/release/qrlogin-bench); build them first with
#   cargo build --release -p qrlogin-server -p qrlogin-bench
set -euo pipefail
# Say where it stopped: under set -e a failing command ends the script.
trap 'echo "measure.sh: \"$BASH_COMMAND\" failed (line $LINENO)" >&2' ERR

OUT=${1:-bench-results}
shift || true
SECTIONS=${*:-throughput wake redis idle}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
QRLOGIN=${QRLOGIN:-$ROOT/target/release/qrlogin}
BENCH=${QRLOGIN_BENCH:-$ROOT/target/release/qrlogin-bench}
DURATION=${DURATION:-5}
mkdir -p "$OUT"

command -v redis-server >/dev/null || {
  echo "redis-server not found: apt-get install -y redis-server" >&2
  exit 1
}

TMP=$(mktemp -d /tmp/qrl-measure.XXXXXX)
SOCK=$TMP/redis.sock
redis-server --port 0 --unixsocket "$SOCK" --unixsocketperm 700 --save '' \
  --appendonly no --daemonize no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
SERVER_PID=
INSTANCE_PIDS=
SCALE_REDIS_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  # shellcheck disable=SC2086 # a list of pids
  [ -n "$INSTANCE_PIDS" ] && kill $INSTANCE_PIDS 2>/dev/null || true
  # shellcheck disable=SC2086 # one pid, or three (cluster)
  [ -n "$SCALE_REDIS_PID" ] && kill $SCALE_REDIS_PID 2>/dev/null || true
  # shellcheck disable=SC2086 # a list of pids
  [ -n "${IDP_PIDS:-}" ] && kill $IDP_PIDS 2>/dev/null || true
  kill "$REDIS_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
for _ in $(seq 50); do
  redis-cli -s "$SOCK" ping >/dev/null 2>&1 && break
  sleep 0.1
done
REDIS_URL="redis+unix://$SOCK"

# The load generator is one client address: servers that cap the streams
# per address (--max-streams-per-ip, since issue 11) get the cap off, like
# the rate limits. Older binaries (A/B runs) do not know the flag.
NO_STREAM_CAP=
if "$QRLOGIN" --help | grep -- --max-streams-per-ip >/dev/null; then NO_STREAM_CAP="--max-streams-per-ip 0"; fi
# Since --mobile-verifier exists the demo users are off by default with a
# shared store; the demo runs need them on (older binaries have no flag).
DEMO_FLAGS=
if "$QRLOGIN" serve --help 2>/dev/null | grep -q -- '--demo-users'; then
  DEMO_FLAGS="--demo-users true"
fi
IDP_PIDS=

# start_idp ALG -> sets ISSUER (a `qrlogin-bench idp` minting TOKEN_POOL tokens)
start_idp() {
  local alg=$1
  "$BENCH" idp --listen 127.0.0.1:0 --alg "$alg" --tokens "${TOKEN_POOL:-40000}" \
    >"$TMP/idp-$alg.out" 2>"$TMP/idp-$alg.err" &
  IDP_PIDS="$IDP_PIDS $!"
  ISSUER=
  # Minting RS256 tokens takes a while (about 1.6 ms of CPU each).
  for _ in $(seq 6000); do
    ISSUER=$(sed -n 's/^issuer //p' "$TMP/idp-$alg.out" | head -1)
    [ -n "$ISSUER" ] && break
    sleep 0.1
  done
  [ -n "$ISSUER" ] || { cat "$TMP/idp-$alg.err" >&2; exit 1; }
}

# start_server STORE [extra qrlogin flags] -> sets SERVER_PID and URL
start_server() {
  local store=$1
  shift
  local flags=${SERVER_FLAGS:-}
  case " $flags " in
  *" --mobile-verifier "*) ;;
  *) flags="$flags $DEMO_FLAGS" ;;
  esac
  # shellcheck disable=SC2086 # flags: extra flags, split on spaces
  "$QRLOGIN" serve --listen 127.0.0.1:0 --store "$store" --rate-limits false $NO_STREAM_CAP $flags "$@" \
    >"$TMP/server.out" 2>"$TMP/server.err" &
  SERVER_PID=$!
  URL=
  # Up to 20 s: a busy machine (other people's builds) can be slow.
  for _ in $(seq 400); do
    URL=$(sed -n 's/^listening on //p' "$TMP/server.out" | head -1)
    [ -n "$URL" ] && break
    sleep 0.05
  done
  [ -n "$URL" ] || { cat "$TMP/server.err" >&2; exit 1; }
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# start_instances N STORE_URL -> sets INSTANCE_PIDS and INSTANCE_URLS
# (N `qrlogin serve` on one store, each on a free port, rate limits off,
# plus $INSTANCE_FLAGS)
start_instances() {
  local n=$1 store=$2 i pid url
  INSTANCE_PIDS=
  INSTANCE_URLS=
  for i in $(seq "$n"); do
    # shellcheck disable=SC2086 # flags: split on spaces
    "$QRLOGIN" serve --listen 127.0.0.1:0 --store "$store" --rate-limits false $NO_STREAM_CAP $DEMO_FLAGS ${INSTANCE_FLAGS:-} \
      >"$TMP/instance-$i.out" 2>"$TMP/instance-$i.err" &
    pid=$!
    INSTANCE_PIDS="$INSTANCE_PIDS $pid"
    url=
    for _ in $(seq 400); do
      url=$(sed -n 's/^listening on //p' "$TMP/instance-$i.out" | head -1)
      [ -n "$url" ] && break
      sleep 0.05
    done
    [ -n "$url" ] || { cat "$TMP/instance-$i.err" >&2; exit 1; }
    INSTANCE_URLS="$INSTANCE_URLS $url"
  done
}

stop_instances() {
  local pid
  for pid in $INSTANCE_PIDS; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  INSTANCE_PIDS=
}

# A free 127.0.0.1 TCP port (bound, then released).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# A free port whose cluster-bus port (+10000) is free too and below 65536.
free_cluster_port() {
  python3 -c '
import socket
for p in range(20000, 55000, 7):
    try:
        a = socket.socket(); a.bind(("127.0.0.1", p))
        b = socket.socket(); b.bind(("127.0.0.1", p + 10000))
    except OSError:
        continue
    a.close(); b.close(); print(p); break
' 
}

# Busy fraction of the whole machine over one second (0..1).
busy_fraction() {
  local a b
  a=($(head -1 /proc/stat))
  sleep 1
  b=($(head -1 /proc/stat))
  local busy=$(( (b[1]+b[2]+b[3]+b[6]+b[7]+b[8]) - (a[1]+a[2]+a[3]+a[6]+a[7]+a[8]) ))
  local idle=$(( (b[4]+b[5]) - (a[4]+a[5]) ))
  echo $(( 100 * busy / (busy + idle + 1) ))
}

# Other people's builds and tests share these two cores: wait (up to
# QUIET_WAIT seconds, default 120) until the machine is at most 10% busy,
# so a run measures qrlogin rather than them. Each report also records the
# CPU other processes took during it (cpu.other_s).
wait_quiet() {
  local deadline=$(( $(date +%s) + ${QUIET_WAIT:-120} ))
  while [ "$(date +%s)" -lt $deadline ]; do
    [ "$(busy_fraction)" -le 10 ] && return 0
  done
  echo "   (machine still busy; measuring anyway)" >&2
}

# run NAME STORE(memory|redis) BENCH-ARGS...
run() {
  local name=$1 store=$2
  shift 2
  local extra=()
  if [ "$store" = redis ]; then
    redis-cli -s "$SOCK" flushall >/dev/null
    redis-cli -s "$SOCK" config resetstat >/dev/null
    start_server "$REDIS_URL"
    extra=(--redis-url "$REDIS_URL")
  else
    start_server memory
  fi
  wait_quiet
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    # Seen twice on the shared machine, cause unknown: keep its log, start
    # it again rather than measure nothing.
    echo "   (the server exited while waiting; log in $OUT/$name.server-exited.log)" >&2
    cp "$TMP/server.err" "$OUT/$name.server-exited.log"
    wait "$SERVER_PID" 2>/dev/null || true
    if [ "$store" = redis ]; then
      start_server "$REDIS_URL"
    else
      start_server memory
    fi
  fi
  echo "== $name (load before: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  "$BENCH" run --url "$URL" --server-pid "$SERVER_PID" "${extra[@]}" --json "$@" \
    >"$OUT/$name.json"
  if [ "$store" = redis ]; then
    redis-cli -s "$SOCK" info commandstats >"$OUT/$name.commandstats.txt"
  fi
  stop_server
  sleep 1
}

for section in $SECTIONS; do
  case $section in
  throughput)
    for store in memory redis; do
      for c in 16 64 256; do
        run "$store-sse-c$c" $store --wait sse --concurrency $c --duration "$DURATION"
        run "$store-longpoll-c$c" $store --wait longpoll --concurrency $c --duration "$DURATION"
      done
      for c in 256 1024; do
        run "$store-poll1s-c$c" $store --wait poll1s --concurrency $c --duration "$DURATION"
      done
    done
    ;;
  repeat)
    # The headline figure again, REPEATS times (default 5), alternating the
    # stores and the server's worker threads (default: one per core; 1: the
    # server leaves the other core to Redis and the load generator): on a
    # shared VM one run is not a figure, the spread is.
    for i in $(seq "${REPEATS:-5}"); do
      for store in redis memory; do
        run "$store-sse-c64-r$i" $store --wait sse --concurrency 64 --duration "$DURATION"
        SERVER_FLAGS="--worker-threads 1" run "$store-sse-c64-w1-r$i" $store --wait sse --concurrency 64 --duration "$DURATION"
      done
    done
    ;;
  wake)
    # Wake latency at a fixed rate (set RATE to half the measured maximum).
    RATE=${RATE:-600}
    for store in memory redis; do
      run "$store-sse-rate$RATE" $store --wait sse --concurrency 256 --rate "$RATE" --duration "$DURATION"
      run "$store-longpoll-rate$RATE" $store --wait longpoll --concurrency 256 --rate "$RATE" --duration "$DURATION"
      run "$store-poll1s-rate$RATE" $store --wait poll1s --concurrency 1024 --rate "$RATE" --duration "$DURATION"
    done
    ;;
  redis)
    # Round trips per login, with MONITOR (client vs Lua commands), and with
    # a browser that waits 3 s before the phone scans.
    run redis-sse-monitor redis --wait sse --concurrency 16 --duration 3 --redis-monitor
    run redis-longpoll-monitor redis --wait longpoll --concurrency 16 --duration 3 --redis-monitor
    run redis-poll1s-monitor redis --wait poll1s --concurrency 64 --duration 3 --redis-monitor
    run redis-sse-think3s redis --wait sse --concurrency 64 --duration 3 --think-ms 3000
    run redis-longpoll-think3s redis --wait longpoll --concurrency 64 --duration 3 --think-ms 3000
    run redis-poll1s-think3s redis --wait poll1s --concurrency 64 --duration 3 --think-ms 3000
    ;;
  idle)
    WAITERS=${WAITERS:-2000}
    for store in memory redis; do
      for wait in sse longpoll; do
        if [ "$store" = redis ]; then
          redis-cli -s "$SOCK" flushall >/dev/null
          start_server "$REDIS_URL"
        else
          start_server memory
        fi
        sleep 1
        echo "== idle-$store-$wait" >&2
        "$BENCH" idle --url "$URL" --server-pid "$SERVER_PID" --waiters "$WAITERS" \
          --wait $wait --hold 5 --json >"$OUT/idle-$store-$wait.json"
        stop_server
      done
    done
    ;;
  jwt)
    # Server CPU per login, demo verifier against a JWT verifier, same
    # store, concurrency and binary, runs alternating.
    declare -A ISSUERS=()
    for alg in ${JWT_ALGS:-rs256}; do
      start_idp "$alg"
      ISSUERS[$alg]=$ISSUER
      echo "== idp $alg: $ISSUER" >&2
    done
    C=${CONCURRENCY:-64}
    TAG=c$C${RATE:+-rate$RATE}
    for i in $(seq "${REPEATS:-3}"); do
      for store in ${STORES:-memory redis}; do
        run "$store-demo-$TAG-r$i" "$store" --wait sse --concurrency "$C" --duration "$DURATION" ${RATE:+--rate "$RATE"}
        for alg in ${JWT_ALGS:-rs256}; do
          SERVER_FLAGS="--mobile-verifier jwt --mobile-jwt-issuer ${ISSUERS[$alg]} --mobile-jwt-audience qrlogin-bench" \
            run "$store-jwt-$alg-$TAG-r$i" "$store" --wait sse --concurrency "$C" --duration "$DURATION" ${RATE:+--rate "$RATE"} \
            --phone-auth jwt --idp "${ISSUERS[$alg]}" --token-pool "${TOKEN_POOL:-40000}"
          if [ -n "${EXPERIMENT:-}" ]; then
            QRLOGIN=$EXPERIMENT SERVER_FLAGS="--mobile-verifier jwt --mobile-jwt-issuer ${ISSUERS[$alg]} --mobile-jwt-audience qrlogin-bench" \
              run "$store-jwt-$alg-exp-$TAG-r$i" "$store" --wait sse --concurrency "$C" --duration "$DURATION" ${RATE:+--rate "$RATE"} \
              --phone-auth jwt --idp "${ISSUERS[$alg]}" --token-pool "${TOKEN_POOL:-40000}"
          fi
          if [ -n "${SHARED:-}" ]; then
            SERVER_FLAGS="--mobile-verifier jwt --mobile-jwt-issuer ${ISSUERS[$alg]} --mobile-jwt-audience qrlogin-bench" \
              run "$store-jwt-$alg-shared-$TAG-r$i" "$store" --wait sse --concurrency "$C" --duration "$DURATION" ${RATE:+--rate "$RATE"} \
              --phone-auth jwt --idp "${ISSUERS[$alg]}" --phone-tokens shared
          fi
        done
      done
    done
    ;;
  waiters)
    # Idle waiters up to the file-descriptor limit on one instance, and a
    # run of logins beside them (issue 13). The stream cap per address
    # stays at its default (1,000): the waiters come from SOURCES (20)
    # addresses, 127.0.0.2 onwards, as browsers behind many addresses do.
    W=${WAITERS:-19000}
    for store in ${STORES:-redis memory}; do
      if [ "$store" = redis ]; then
        redis-cli -s "$SOCK" flushall >/dev/null
        redis-cli -s "$SOCK" config resetstat >/dev/null
        su=$REDIS_URL
        extra=(--redis-url "$REDIS_URL")
      else
        su=memory
        extra=()
      fi
      # The same run alone first, on its own fresh server: the control.
      NO_STREAM_CAP= start_server "$su"
      wait_quiet
      echo "== waiters-$store-alone (load before: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
      "$BENCH" run --url "$URL" --server-pid "$SERVER_PID" "${extra[@]}" --wait sse \
        --concurrency "${CONCURRENCY:-256}" --rate "${RATE:-1000}" --duration "$DURATION" \
        --healthz-baseline "${BASELINE:-20000}" --json >"$OUT/waiters-$store-alone.json"
      stop_server
      [ "$store" = redis ] && redis-cli -s "$SOCK" flushall >/dev/null
      NO_STREAM_CAP= start_server "$su"
      echo "server nofile: $(grep 'Max open files' /proc/$SERVER_PID/limits)" >&2
      wait_quiet
      ready=$TMP/waiters.ready
      rm -f "$ready"
      echo "== waiters-$store: $W idle SSE waiters from ${SOURCES:-20} addresses" >&2
      "$BENCH" idle --url "$URL" --server-pid "$SERVER_PID" --waiters "$W" --wait sse \
        --sources "${SOURCES:-20}" --open-concurrency 256 --hold 5 \
        --ready-file "$ready" --keep "${KEEP:-40}" --json >"$OUT/waiters-$store-idle.json" &
      idle_pid=$!
      for _ in $(seq 1200); do
        [ -f "$ready" ] && break
        kill -0 "$idle_pid" 2>/dev/null || break
        sleep 0.1
      done
      [ -f "$ready" ] || { echo "the waiters never got ready" >&2; exit 1; }
      echo "== waiters-$store-run beside $(cat "$ready") open waiters" >&2
      "$BENCH" run --url "$URL" --server-pid "$SERVER_PID" "${extra[@]}" --wait sse \
        --concurrency "${CONCURRENCY:-256}" --rate "${RATE:-1000}" --duration "$DURATION" \
        --healthz-baseline "${BASELINE:-20000}" --json >"$OUT/waiters-$store-run.json"
      # Connections at the limit show here (accept paused, open connections).
      curl -s "$URL/metrics" | grep -E '^qrlogin_(accept_paused_total|open_connections|connections_timed_out_total)' \
        >"$OUT/waiters-$store-connections.txt" || true
      wait "$idle_pid"
      stop_server
      sleep 1
    done
    ;;
  scaleout)
    # Hint fan-out and CPU per login against the number of instances on
    # one Redis, at a fixed rate (issue 13).
    TRANSPORT=${TRANSPORT:-unix}
    SDIR=$TMP/scale-redis
    mkdir -p "$SDIR"
    case $TRANSPORT in
    unix)
      redis-server --port 0 --unixsocket "$SDIR/redis.sock" --unixsocketperm 700 --save '' \
        --appendonly no --daemonize no --dir "$SDIR" >"$SDIR/redis.log" 2>&1 &
      SCALE_REDIS_PID=$!
      SCALE_URL="redis+unix://$SDIR/redis.sock"
      SCALE_CLI=(redis-cli -s "$SDIR/redis.sock")
      ;;
    tcp)
      SPORT=$(free_port)
      redis-server --port "$SPORT" --bind 127.0.0.1 --save '' \
        --appendonly no --daemonize no --dir "$SDIR" >"$SDIR/redis.log" 2>&1 &
      SCALE_REDIS_PID=$!
      SCALE_URL="redis://127.0.0.1:$SPORT"
      SCALE_CLI=(redis-cli -h 127.0.0.1 -p "$SPORT")
      ;;
    cluster)
      # Three masters, no replicas, on free 127.0.0.1 ports (like the
      # tests' harness); the load generator's own Redis counters speak to
      # one server, so per-node INFO and CLUSTER INFO snapshots are taken
      # here and summed by cluster_stats.py.
      CLUSTER_PORTS=
      for k in 1 2 3; do
        cport=$(free_cluster_port)
        mkdir -p "$SDIR/n$k"
        redis-server --port "$cport" --bind 127.0.0.1 --save '' --appendonly no \
          --cluster-enabled yes --cluster-config-file "$SDIR/n$k/nodes.conf" \
          --daemonize no --dir "$SDIR/n$k" >"$SDIR/n$k/redis.log" 2>&1 &
        SCALE_REDIS_PID="$SCALE_REDIS_PID $!"
        CLUSTER_PORTS="$CLUSTER_PORTS $cport"
        # Up before the next port is picked, so it is not picked twice.
        for _ in $(seq 50); do
          redis-cli -p "$cport" ping >/dev/null 2>&1 && break
          sleep 0.1
        done
      done
      # shellcheck disable=SC2046 # host:port words
      redis-cli --cluster create $(for c in $CLUSTER_PORTS; do echo "127.0.0.1:$c"; done) \
        --cluster-yes >"$SDIR/create.log" 2>&1 || { cat "$SDIR/create.log" >&2; exit 1; }
      for _ in $(seq 100); do
        ok=1
        for cport in $CLUSTER_PORTS; do
          redis-cli -p "$cport" cluster info | grep -q 'cluster_state:ok' || ok=0
        done
        [ "$ok" = 1 ] && break
        sleep 0.2
      done
      SCALE_URL="redis+cluster://$(for c in $CLUSTER_PORTS; do printf '127.0.0.1:%s,' "$c"; done | sed 's/,$//')"
      first=${CLUSTER_PORTS# }
      SCALE_CLI=(redis-cli -p "${first%% *}")
      ;;
    *)
      echo "TRANSPORT must be unix, tcp or cluster (got $TRANSPORT)" >&2
      exit 2
      ;;
    esac
    for _ in $(seq 50); do
      "${SCALE_CLI[@]}" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
    "${SCALE_CLI[@]}" ping >/dev/null || { cat "$SDIR/redis.log" >&2; exit 1; }
    RATE=${RATE:-1000}
    # Per-node snapshots on a cluster: INFO stats, commandstats, cpu and
    # CLUSTER INFO (cluster-bus messages by type).
    node_snapshot() {
      local tag=$1 cport
      for cport in $CLUSTER_PORTS; do
        {
          redis-cli -p "$cport" info stats
          redis-cli -p "$cport" info commandstats
          redis-cli -p "$cport" info cpu
          redis-cli -p "$cport" cluster info
        } | tr -d '\r' >"$OUT/$name.node$cport.$tag.txt"
      done
    }
    for n in ${INSTANCES:-1 2 4 8}; do
      suffix=; [ "${WAIT_ELSEWHERE:-0}" = 1 ] && suffix=-elsewhere
      name=scaleout-$TRANSPORT-n$n$suffix
      if [ "$TRANSPORT" = cluster ]; then
        for cport in $CLUSTER_PORTS; do
          redis-cli -p "$cport" flushall >/dev/null
          redis-cli -p "$cport" config resetstat >/dev/null
        done
      else
        "${SCALE_CLI[@]}" flushall >/dev/null
        "${SCALE_CLI[@]}" config resetstat >/dev/null
      fi
      start_instances "$n" "$SCALE_URL"
      wait_quiet
      args=()
      for u in $INSTANCE_URLS; do args+=(--url "$u"); done
      for p in $INSTANCE_PIDS; do args+=(--server-pid "$p"); done
      [ "${WAIT_ELSEWHERE:-0}" = 1 ] && args+=(--wait-elsewhere)
      echo "== $name (load before: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
      if [ "$TRANSPORT" = cluster ]; then
        node_snapshot before
        "$BENCH" run "${args[@]}" --wait sse \
          --concurrency "${CONCURRENCY:-256}" --rate "$RATE" --duration "$DURATION" --json \
          >"$OUT/$name.json"
        node_snapshot after
        python3 "$ROOT/crates/qrlogin-bench/scripts/cluster_stats.py" "$OUT/$name" >"$OUT/$name.cluster.json"
      else
        "$BENCH" run "${args[@]}" --redis-url "$SCALE_URL" --wait sse \
          --concurrency "${CONCURRENCY:-256}" --rate "$RATE" --duration "$DURATION" --json \
          >"$OUT/$name.json"
        "${SCALE_CLI[@]}" info commandstats >"$OUT/$name.commandstats.txt"
      fi
      stop_instances
      sleep 1
    done
    # shellcheck disable=SC2086 # one or three pids
    kill $SCALE_REDIS_PID 2>/dev/null || true
    # shellcheck disable=SC2086
    wait $SCALE_REDIS_PID 2>/dev/null || true
    SCALE_REDIS_PID=
    ;;
  soak)
    # Half the capacity for SOAK_SECONDS, Redis killed and restarted in
    # the middle; then every key must have a TTL and be gone once the
    # longest one has run out (issue 13).
    SOAK_SECONDS=${SOAK_SECONDS:-600}
    SDIR=$TMP/soak-redis
    mkdir -p "$SDIR"
    SPORT=$(free_port)
    SOAK_URL="redis://127.0.0.1:$SPORT"
    SOAK_CLI=(redis-cli -h 127.0.0.1 -p "$SPORT")
    # start_soak_redis -> sets SCALE_REDIS_PID; returns once it answers PONG
    # (not LOADING: it replays its append-only file first after a restart).
    start_soak_redis() {
      redis-server --port "$SPORT" --bind 127.0.0.1 --save '' \
        --appendonly yes --appendfsync always --daemonize no --dir "$SDIR" >>"$SDIR/redis.log" 2>&1 &
      SCALE_REDIS_PID=$!
      for _ in $(seq 600); do
        [ "$("${SOAK_CLI[@]}" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.05
      done
      cat "$SDIR/redis.log" >&2
      exit 1
    }
    start_soak_redis
    now_ms() { date +%s%3N; }
    INSTANCE_FLAGS="--session-ttl ${SOAK_SESSION_TTL:-60} --mobile-token-ttl $((SOAK_SECONDS + 120))"
    start_instances 2 "$SOAK_URL"
    wait_quiet
    args=()
    for u in $INSTANCE_URLS; do args+=(--url "$u"); done
    for p in $INSTANCE_PIDS; do args+=(--server-pid "$p"); done
    echo "== soak-capacity (load before: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "$BENCH" run "${args[@]}" --redis-url "$SOAK_URL" --wait sse --concurrency 256 \
      --duration "${CAPACITY_SECONDS:-10}" --json >"$OUT/soak-capacity.json"
    stop_instances
    CAPACITY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["logins_per_s"])' "$OUT/soak-capacity.json")
    RATE=${SOAK_RATE:-$(python3 -c 'import sys; print(round(float(sys.argv[1]) / 2))' "$CAPACITY")}
    "${SOAK_CLI[@]}" flushall >/dev/null
    "${SOAK_CLI[@]}" config resetstat >/dev/null
    start_instances 2 "$SOAK_URL"
    args=()
    for u in $INSTANCE_URLS; do args+=(--url "$u"); done
    for p in $INSTANCE_PIDS; do args+=(--server-pid "$p"); done
    sleep 1
    echo "== soak: $RATE logins/s (capacity $CAPACITY) for $SOAK_SECONDS s (load before: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "$BENCH" soak "${args[@]}" --redis-url "$SOAK_URL" --rate "$RATE" \
      --concurrency "${CONCURRENCY:-256}" --duration "$SOAK_SECONDS" --json >"$OUT/soak.json" &
    BENCH_RUN=$!
    sleep $((SOAK_SECONDS / 2))
    OLD_REDIS=$SCALE_REDIS_PID
    KILLED=$(now_ms)
    kill -9 "$OLD_REDIS"
    wait "$OLD_REDIS" 2>/dev/null || true
    sleep "${RESTART_PAUSE:-2}"
    RESTARTED=$(now_ms)
    start_soak_redis
    PONG=$(now_ms)
    echo "   redis killed at $KILLED, started again at $RESTARTED, PONG at $PONG" >&2
    printf '{"killed_unix_ms": %s, "restarted_unix_ms": %s, "pong_unix_ms": %s, "port": %s, "killed_pid": %s, "new_pid": %s, "restart_pause_s": %s}\n' \
      "$KILLED" "$RESTARTED" "$PONG" "$SPORT" "$OLD_REDIS" "$SCALE_REDIS_PID" "${RESTART_PAUSE:-2}" >"$OUT/soak-restart.json"
    wait "$BENCH_RUN"
    # Redis at the end, before any key can expire: memory, DBSIZE, and one
    # SCAN pass with PTTL (and MEMORY USAGE) on every key, in a script
    # (nothing expires or is written meanwhile): keys without a TTL, the
    # longest PTTL left, keys by kind (ids and hashes masked). A key whose
    # PTTL is beyond MAX_EXPIRY_WAIT seconds (default 900) is not waited
    # for: it is listed (with its size) and the DBSIZE-0 criterion then
    # fails as not met, saying why.
    AUDIT='local cap = tonumber(ARGV[1])
local c, n, none, longest, within, nbeyond = "0", 0, 0, -1, -1, 0
local names, kinds, beyond = {}, {}, {}
repeat
  local r = redis.call("SCAN", c, "COUNT", 1000)
  c = r[1]
  for _, k in ipairs(r[2]) do
    n = n + 1
    local t = redis.call("PTTL", k)
    local kind = string.gsub(string.gsub(k, "{[^}]*}", "{id}"), "%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x+$", "<hash>")
    local e = kinds[kind] or {count = 0, max_pttl_ms = -1, bytes = 0}
    e.count = e.count + 1
    if t > e.max_pttl_ms then e.max_pttl_ms = t end
    e.bytes = e.bytes + (redis.call("MEMORY", "USAGE", k) or 0)
    kinds[kind] = e
    if t == -1 then
      none = none + 1
      if #names < 10 then names[#names + 1] = k end
    else
      if t > longest then longest = t end
      if t <= cap and t > within then within = t end
      if t > cap then nbeyond = nbeyond + 1 end
      if t > cap and #beyond < 10 then
        local ty = redis.call("TYPE", k)["ok"]
        local size = nil
        if ty == "zset" then size = redis.call("ZCARD", k) end
        beyond[#beyond + 1] = {key = k, type = ty, pttl_ms = t, members = size, bytes = redis.call("MEMORY", "USAGE", k)}
      end
    end
  end
until c == "0"
return cjson.encode({keys = n, without_ttl = none, without_ttl_names = names, longest_pttl_ms = longest,
  longest_pttl_within_cap_ms = within, kinds = kinds, beyond_cap_count = nbeyond, beyond_cap = beyond})'
    CAP_MS=$(( ${MAX_EXPIRY_WAIT:-900} * 1000 ))
    USED=$("${SOAK_CLI[@]}" info memory | tr -d '\r' | sed -n 's/^used_memory://p')
    DBSIZE_END=$("${SOAK_CLI[@]}" dbsize)
    AUDITED_AT=$(now_ms)
    "${SOAK_CLI[@]}" eval "$AUDIT" 0 "$CAP_MS" >"$TMP/audit-end.json"
    read -r LONGEST_MS WITHIN_MS BEYOND < <(python3 -c '
import json, sys
a = json.load(open(sys.argv[1]))
print(a["longest_pttl_ms"], a["longest_pttl_within_cap_ms"], a["beyond_cap_count"])' "$TMP/audit-end.json")
    # Wait the longest PTTL out (or, beyond the cap, the longest within it)
    # plus a second, then give Redis's active expiry up to EXPIRY_GRACE
    # seconds (default 30) to reclaim the keys.
    if [ "$LONGEST_MS" -le "$CAP_MS" ]; then WAIT_MS=$LONGEST_MS; else WAIT_MS=$WITHIN_MS; fi
    WAIT_S=$(( (WAIT_MS > 0 ? WAIT_MS : 0) / 1000 + 1 ))
    echo "   end: $DBSIZE_END keys, longest PTTL $LONGEST_MS ms; waiting $WAIT_S s (cap ${MAX_EXPIRY_WAIT:-900} s)" >&2
    sleep "$WAIT_S"
    DBSIZE_AT_TTL=$("${SOAK_CLI[@]}" dbsize)
    GRACE=0
    DBSIZE_AFTER=$DBSIZE_AT_TTL
    # Keys beyond the cap (kinds whose longest PTTL is beyond it) may stay.
    while [ "$DBSIZE_AFTER" -gt 0 ] && [ "$GRACE" -lt "${EXPIRY_GRACE:-30}" ]; do
      [ "$LONGEST_MS" -gt "$CAP_MS" ] && [ "$DBSIZE_AFTER" -le "$BEYOND" ] && break
      sleep 1
      GRACE=$((GRACE + 1))
      DBSIZE_AFTER=$("${SOAK_CLI[@]}" dbsize)
    done
    USED_AFTER=$("${SOAK_CLI[@]}" info memory | tr -d '\r' | sed -n 's/^used_memory://p')
    "${SOAK_CLI[@]}" eval "$AUDIT" 0 "$CAP_MS" >"$TMP/audit-after.json"
    python3 -c '
import json, sys
end, after = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
v = [int(x) for x in sys.argv[3:]]
k = ["used_memory_end", "dbsize_end", "audited_unix_ms", "max_expiry_wait_s", "waited_s", "dbsize_at_longest_ttl",
     "expiry_grace_s", "dbsize_after_expiry", "used_memory_after_expiry", "session_ttl_s", "mobile_token_ttl_s"]
out = dict(zip(k, v))
out["end"] = end
out["after_expiry"] = after
print(json.dumps(out, indent=2))' "$TMP/audit-end.json" "$TMP/audit-after.json" \
      "$USED" "$DBSIZE_END" "$AUDITED_AT" "${MAX_EXPIRY_WAIT:-900}" "$WAIT_S" "$DBSIZE_AT_TTL" "$GRACE" "$DBSIZE_AFTER" "$USED_AFTER" \
      "${SOAK_SESSION_TTL:-60}" "$((SOAK_SECONDS + 120))" >"$OUT/soak-redis.json"
    stop_instances
    kill "$SCALE_REDIS_PID" 2>/dev/null || true
    wait "$SCALE_REDIS_PID" 2>/dev/null || true
    SCALE_REDIS_PID=
    python3 "$ROOT/crates/qrlogin-bench/scripts/soak_check.py" "$OUT" || SOAK_FAILED=1
    ;;
  *)
    echo "unknown section $section" >&2
    exit 2
    ;;
  esac
done
echo "results in $OUT" >&2
[ -z "${SOAK_FAILED:-}" ] || { echo "soak: a criterion failed (soak-check.json)" >&2; exit 1; }
