#!/usr/bin/env bash
# What least-squares reconstruction costs (docs/benchmarks.md): on the trained Fashion-MNIST MLP,
# pruned over the whole network at share S (default 0.5), linfold's refit per layer and in total
# at P = 1 (2 threads: the rank is not bound to one core) and P = 2 ranks (1 thread each), against
#   - the calibration pass over the same rows (one forward pass of the original model),
#   - the same refit written in NumPy (bench/refit_numpy.py) with 1 and 2 OpenBLAS threads, which
#     also checks linfold's weights, and
#   - cblas_dsyrk + cblas_dgemm on each layer's shapes (bench/gram_rate.c, 1 and 2 threads): the
#     machine's own rate for the sums' products, against the rate linfold logs for its own.
# The refit uses the 50,000 training rows.
#
#   bash bench/refit_cost.sh [MODEL_DIR] [BUILD_DIR] [SHARE]
#
# MODEL_DIR (default /work/models/fmnist) holds model.h5 and data.h5 from tools/train_fmnist.py.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mdir=${1:-/work/models/fmnist}
build=${2:-$here/build}
share=${3:-0.5}
lf=$build/linfold
M=$mdir/model.h5 D=$mdir/data.h5
out=$(mktemp -d /tmp/refit_cost.XXXXXX)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
common=(compress --model "$M" --data "$D:/train/x" --prune-dead --prune-fraction "$share"
        --prune-scope global)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
mpiexec -n 1 "$lf" "${common[@]}" --quiet --out "$out/p.h5"
for ranks in 1 2; do
  pass=$(mpiexec --bind-to none -n "$ranks" "$lf" calibrate --model "$M" --data "$D:/train/x" \
    --out "$out/s.h5" 2>&1 | sed -n 's/.*calibrate: [0-9]* rows in \([0-9.]*\) s.*/\1/p')
  mpiexec --bind-to none -n "$ranks" "$lf" "${common[@]}" --reconstruct --out "$out/r$ranks.h5" \
    > "$out/log$ranks" 2>&1
  echo
  echo "linfold, $ranks rank(s): calibration pass $pass s"
  grep 'reconstruct: layer\|refitted by least squares' "$out/log$ranks" | sed 's/^linfold: //'
done
for t in 1 2; do
  echo
  echo "NumPy, OPENBLAS_NUM_THREADS=$t:"
  OPENBLAS_NUM_THREADS=$t /usr/bin/python3 "$here/bench/refit_numpy.py" "$M" "$out/p.h5" \
    "$D:/train/x" "$out/r1.h5" | grep -v '^{'
done
echo
echo "cblas_dsyrk + cblas_dgemm on one group (4,096 rows) of each refitted layer's shapes:"
sed -n 's/.*layer [0-9]* (\([0-9]*\) inputs + bias, \([0-9]*\) outputs.*/\1 \2/p' "$out/log1" |
  while read -r k o; do
    for t in 1 2; do "$build/bench/lf_bench_gram" "$((k + 1))" "$o" "$t"; done
  done
