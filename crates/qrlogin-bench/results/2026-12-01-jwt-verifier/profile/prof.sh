#!/usr/bin/env bash
# prof.sh NAME QRLOGIN_BIN PHONE(demo|jwt) ISSUER
set -euo pipefail
name=$1 bin=$2 phone=$3 iss=${4:-}
B=/tmp/qrl-bins/qrlogin-bench
flags=(--listen 127.0.0.1:0 --store memory --rate-limits false)
bflags=()
if [ "$phone" = jwt ]; then flags+=(--mobile-verifier jwt --mobile-jwt-issuer "$iss" --mobile-jwt-audience qrlogin-bench); bflags=(--phone-auth jwt --idp "$iss" --token-pool 12000); fi
"$bin" serve "${flags[@]}" > $name.srv.out 2>$name.srv.err & sp=$!
for _ in $(seq 100); do url=$(sed -n 's/^listening on //p' $name.srv.out); [ -n "$url" ] && break; sleep 0.05; done
"$B" run --url "$url" --server-pid $sp --concurrency 64 --rate 1200 --duration 9 "${bflags[@]}" > $name.run.txt &
bp=$!
sleep 3
perf record -F 1999 -p $sp -o $name.data -- sleep 5 2>/dev/null >/dev/null
wait $bp
kill $sp; wait $sp || true
grep -E "logins:|CPU used|other" $name.run.txt
python3 /work/main/crates/qrlogin-bench/scripts/perf-crates.py $name.data > $name.crates.txt
perf report -i $name.data --no-children --sort dso,sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40 > $name.syms.txt
