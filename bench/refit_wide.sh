#!/usr/bin/env bash
# What a rank holds while a layer above the distributed threshold is refitted (docs/benchmarks.md):
# a seeded wide MLP (bench/wide_model.py: 512 inputs, 6,144 ReLU neurons, 10 outputs, 16,384
# rows), a quarter of its hidden neurons pruned by activation rate, so that the output layer is
# refitted with K = 4,609 unknowns per output. At P = 1 (the serial solve: G whole) and P = 2 and
# 4 (the sums in column panels, the ScaLAPACK solve) it reports the refit's time from linfold's
# log and every rank's peak resident memory (linfold's own line, getrusage). With OLD_BUILD it
# runs the same with another build's linfold, for a before/after comparison.
#
#   bash bench/refit_wide.sh [BUILD_DIR] [OLD_BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build}
old=${2:-}
out=$(mktemp -d /tmp/refit_wide.XXXXXX)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
export OMPI_MCA_rmaps_base_oversubscribe=1
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
/usr/bin/python3 "$here/bench/wide_model.py" "$out" 512,6144,10 16384 0 > /dev/null
run() { # build ranks
  local lf=$1/linfold ranks=$2
  mpiexec --bind-to none -n "$ranks" "$lf" compress --model "$out/wide.h5" \
    --data "$out/wide-data.h5:/x" --prune-fraction 0.25 --prune-scope layer --prune-by rate \
    --merge serial --reconstruct --verbose --out "$out/r.h5" > "$out/log" 2>&1
  local refit mem
  refit=$(sed -n 's/.*refitted by least squares in \([0-9.]*\) s.*/\1/p' "$out/log")
  mem=$(sed -n 's/.*peak memory per rank: \(.*\)/\1/p' "$out/log")
  printf '%-8s P = %d: refit %6s s; peak memory per rank %s\n' "$3" "$ranks" "$refit" "$mem"
  grep 'reconstruct: layer' "$out/log" | sed 's/^linfold: /           /'
}
for p in 1 2 4; do
  run "$build" "$p" this
  [ -n "$old" ] && run "$old" "$p" old
done
