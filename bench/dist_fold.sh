#!/usr/bin/env bash
# The distributed fold against the serial one on the seeded wide model (bench/wide_model.py):
# wall time, fold time, where the fold's time goes, and peak memory per rank, at several rank
# counts, beside NumPy's dgemm and sgemm on the fold's largest product in the same run.
#
#   bash bench/dist_fold.sh BUILD_DIR WORK_DIR [WIDTHS] [CONFIGS...]
#
# WIDTHS defaults to 1024,8192,8192,8192,10 (142.7 M parameters, 571 MB). A CONFIG is
# PATH:RANKS[:BLOCK] with PATH serial or distributed (BLOCK: --dist-block); the default is serial:1 serial:2 distributed:1
# distributed:2 distributed:4. Every run folds with --threshold 1 --layer-rule all from one
# statistics file (calibrated once, 2,048 rows), so the runs differ only in the fold. Each run is
# a pipeline whose record gives the fold stage's time (max over ranks) and every rank's peak RSS.
# The model is read into one shared window per node (the node's first rank holds it all, in its
# RSS); peak RSS of the other ranks is their private memory.
set -euo pipefail
build=${1:?usage: dist_fold.sh BUILD_DIR WORK_DIR [WIDTHS] [CONFIGS...]}
work=${2:?usage: dist_fold.sh BUILD_DIR WORK_DIR [WIDTHS] [CONFIGS...]}
widths=${3:-1024,8192,8192,8192,10}
shift $(($# < 3 ? $# : 3))
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(serial:1 serial:2 distributed:1 distributed:2 distributed:4)
here=$(cd "$(dirname "$0")/.." && pwd)
lf=$(cd "$build" && pwd)/linfold
py=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
mkdir -p "$work"
cd "$work"
$py "$here/bench/wide_model.py" . "$widths" 2048 > /dev/null
[ -f stats.h5 ] || mpiexec -n 2 "$lf" calibrate --model wide.h5 --data wide-data.h5:/x \
  --out stats.h5 --quiet

echo "linfold $("$lf" --version 2>&1 | head -n 1); $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "model $widths; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}"
# The peer: the fold's largest product (out x |A|) . (|A| x in) of the first folded layer, in
# double and in single precision, NumPy on one thread and on all.
for threads in 1 "$(nproc)"; do
  OPENBLAS_NUM_THREADS=$threads $py - "$widths" "$threads" <<'EOF'
import sys, time
import numpy as np
w = [int(v) for v in sys.argv[1].split(",")]
m, k, n = w[2], int(0.9 * w[1]), w[0]
rng = np.random.default_rng(1)
for dt in (np.float64, np.float32):
    a = rng.standard_normal((m, k)).astype(dt)
    b = rng.standard_normal((k, n)).astype(dt)
    a @ b
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    print("peer: NumPy %s (%d x %d) . (%d x %d) on %s thread(s): %.1f GFLOP/s"
          % (np.dtype(dt).name, m, k, k, n, sys.argv[2], 2.0 * m * k * n / best / 1e9))
EOF
done

printf '\n| path | ranks | block | wall | fold stage | peak RSS per rank (MiB) | fold log |\n|---|---|---|---|---|---|---|\n'
for cfg in "${configs[@]}"; do
  IFS=: read -r path ranks block <<< "$cfg"
  block=${block:-64}
  name=$path-$ranks-$block
  cat > "$name.yaml" <<EOF
version: 1
model: wide.h5
statistics: stats.h5
stages:
  - fold: {threshold: 1, layer-rule: all, merge: $path, dist-block: $block}
output: {model: out/$name.h5, report: out/$name.json}
EOF
  t0=$(date +%s.%N)
  mpiexec -n "$ranks" "$lf" run "$name.yaml" > "$name.log" 2>&1
  t1=$(date +%s.%N)
  $py - "out/$name.json" "$path" "$ranks" "$t0" "$t1" "$name.log" "$block" <<'EOF'
import json, re, sys
rec = json.load(open(sys.argv[1]))
fold = [s for s in rec["stages"] if s["stage"] == "fold"][0]
mem = ", ".join("%.0f" % v for v in rec["peak_memory_mib"])
log = open(sys.argv[6]).read()
m = re.search(r"fold: distributed.*", log)
print("| %s | %s | %s | %.2f s | %.2f s | %s | %s |" % (
    sys.argv[2], sys.argv[3], sys.argv[7], float(sys.argv[5]) - float(sys.argv[4]),
    fold["seconds_max"], mem,
    m.group(0).replace("fold: ", "") if m else ""))
EOF
done
# Serial and distributed models agree: the largest relative difference of any block.
$py - "$here/tools" out/*.h5 <<'EOF'
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import linfold_format as lf
ref = lf.load_model(sys.argv[2])
for path in sys.argv[3:]:
    worst = 0.0
    for A, B in zip(ref, lf.load_model(path)):
        pairs = [(A["weight"], B["weight"]), (A["bias"], B["bias"])]
        pairs += [(A["skips"][k], B["skips"][k]) for k in A["skips"]]
        for a, b in pairs:
            a, b = a.astype(np.float64), b.astype(np.float64)
            worst = max(worst, float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30)))
    print("%s against %s: largest relative block difference %.3g" % (path, sys.argv[2], worst))
EOF
