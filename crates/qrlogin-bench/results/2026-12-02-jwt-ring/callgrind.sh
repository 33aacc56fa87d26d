#!/usr/bin/env bash
# cg.sh NAME demo|jwt [ISSUER]: the server under callgrind, 400 logins at 20/s.
set -euo pipefail
name=$1 phone=$2 iss=${3:-}
B=/work/main/target/release/qrlogin-bench
Q=/work/main/target/release/qrlogin
flags=(--listen 127.0.0.1:0 --store memory --rate-limits false)
[ "$phone" = demo ] && flags+=(--demo-users true)
bflags=()
if [ "$phone" = jwt ]; then flags+=(--mobile-verifier jwt --mobile-jwt-issuer "$iss" --mobile-jwt-audience qrlogin-bench); bflags=(--phone-auth jwt --idp "$iss" --token-pool 600); fi
valgrind --tool=callgrind --callgrind-out-file=$name.cg "$Q" serve "${flags[@]}" > $name.srv.out 2>$name.srv.err & sp=$!
for _ in $(seq 400); do url=$(sed -n 's/^listening on //p' $name.srv.out); [ -n "$url" ] && break; sleep 0.1; done
"$B" run --url "$url" --concurrency 4 --rate 20 --max-logins 400 --duration 60 "${bflags[@]}" > $name.run.txt || true
kill -INT $sp; wait $sp || true
grep -E "logins" $name.run.txt | head -3
