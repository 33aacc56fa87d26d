"""Groups a `perf record` profile by crate / library.

    perf record -F 999 -p <pid> -o perf.data -- sleep 3
    crates/qrlogin-bench/scripts/perf-crates.py perf.data
"""
import sys, re, subprocess, collections
data = sys.argv[1]
out = subprocess.run(["perf","report","-i",data,"--no-children","--stdio","--sort","dso,sym","-F","overhead,dso,sym"],capture_output=True,text=True).stdout
agg = collections.Counter()
for line in out.splitlines():
    m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
    if not m: continue
    pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
    if kind == 'k': key = "kernel"
    elif dso.startswith("libc") and re.search(r"malloc|free|_int_|unlink_chunk|consolidate|realloc|calloc", sym): key = "libc malloc/free"
    elif dso.startswith("libc") and re.search(r"mem(move|cpy|set|cmp)", sym): key = "libc memcpy/memset"
    elif dso.startswith("libc"): key = "libc other (syscall wrappers etc.)"
    elif dso == "[vdso]": key = "vdso (clock)"
    elif re.match(r"(ring_core_|__bn_|_?ecp_nistz256|ChaCha20|aes_|sha256_block)", sym): key = "ring"
    else:
        s = sym.lstrip("<")
        s = re.sub(r"^(core::ptr::drop_in_place<)+", "", s)
        s = s.lstrip("<&*")
        m2 = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)::", s)
        key = (m2.group(1) if m2 else s[:30])
        if "__rust" in sym or "__rdl" in sym: key = "rust alloc shim"
    agg[key] += pct
for k, v in agg.most_common(25):
    print(f"{v:6.2f}%  {k}")
