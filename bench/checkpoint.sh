#!/usr/bin/env bash
# What checkpoints cost a calibration: the same pipeline (calibrate, then fold at 1.0) on the
# paper's Fashion-MNIST MLP 784-1024-1024-512-512-256-256-10 (random weights, seed 0) over the
# 60,000 training images, without checkpoints, with one every 10 batches and with one every 60 s.
# Best of 3 for each, all in this one run.
#
#   bash bench/checkpoint.sh [BUILD_DIR] [WORK_DIR] [RANKS]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build}
work=${2:-/tmp/linfold-bench}
ranks=${3:-2}
lf=$build/linfold
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
/usr/bin/python3 "$here/bench/fmnist_setup.py" "$work"
mkdir -p "$work/ck"
pipe() { # NAME EXTRA-YAML
  cat > "$work/ck/$1.yaml" <<YAML
version: 1
model: ../mlp-784.h5
calibration: ../fmnist.h5:/train/x
stages: [{calibrate: {batch: 1024}}, {fold: {threshold: 1}}]
output: {model: out-$1.h5}
$2
YAML
}
pipe none ""
pipe every10 "checkpoint: {every-batches: 10}"
pipe every60s "checkpoint: {every-seconds: 60}"
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
run() { rm -f "$work/ck/out-$1.h5"; mpiexec -n "$ranks" "$lf" run "$work/ck/$1.yaml" -q; }
declare -A t
for name in none every10 every60s; do
  t[$name]=$(for _ in 1 2 3; do secs run "$name"; done | sort -g | head -1)
done
cmp "$work/ck/out-none.h5" "$work/ck/out-every10.h5"
printf 'ranks %d, 60,000 rows, batches of 1,024 (59 batches a pass over all ranks)\n' "$ranks"
for name in none every10 every60s; do
  printf '%-10s %7.2f s  %.3f x\n' "$name" "${t[$name]}" "$(echo "${t[$name]} / ${t[none]}" | bc -l)"
done
echo "models: identical with and without checkpoints"
