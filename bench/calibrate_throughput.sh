#!/usr/bin/env bash
# Calibration throughput of linfold against the machine's own cblas_sgemm rate and PyTorch, on the
# paper's Fashion-MNIST MLP 784-1024-1024-512-512-256-256-10 (random weights, seed 0) over the
# 60,000 Fashion-MNIST training images. Every number is the best of 3 runs, all in this one run.
#
#   bash bench/calibrate_throughput.sh [BUILD_DIR] [WORK_DIR]
#
# Two BLAS kernel settings are measured: the environment as given (OPENBLAS_CORETYPE as set here,
# or the library's own choice when unset) and linfold's automatic choice (OPENBLAS_CORETYPE unset,
# so lf_blas_select_kernel decides). PyTorch uses the same OpenBLAS; OPENBLAS_NUM_THREADS sets its
# matmul threads.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build}
work=${2:-/tmp/linfold-bench}
lf=$build/linfold
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
/usr/bin/python3 "$here/bench/fmnist_setup.py" "$work"
model=$work/mlp-784.h5 data=$work/fmnist.h5
rows=60000
weights=2836992   # sum of in x out over the 7 layers: 2 x weights FLOP per row

best() { sort -g | tail -1; }
lf_rate() {   # env-prefix ranks -- prints rows/s of the calibration pass (best of 3)
  # P = 1 runs as an MPI singleton: mpiexec -n 1 would bind the rank to one core (Open MPI's
  # default), and linfold honours the binding, so it could not use a second thread.
  local env=$1 ranks=$2 launch=""
  [ "$ranks" -gt 1 ] && launch="mpiexec -n $ranks"
  for _ in 1 2 3; do
    $env $launch "$lf" calibrate --model "$model" --data "$data:/train/x" \
      --out "$work/stats.h5" 2>&1 | sed -n 's/.*calibrate: [0-9]* rows in .* (\([0-9]*\) rows\/s).*/\1/p'
  done | best
}
sgemm_rate() { for _ in 1 2 3; do $1 "$build/bench/lf_bench_sgemm" "$model" "$2" "$3" | sed -n 's/.*rows\/s \([0-9]*\).*/\1/p'; done | best; }
# torch_rate ENV THREADS [BATCH]: PyTorch's rows/s at that thread count and batch (best of 3).
torch_rate() { for _ in 1 2 3; do $1 OPENBLAS_NUM_THREADS=$2 /usr/bin/python3 "$here/bench/torch_calibrate.py" "$model" "$data" /train/x "${3:-1024}" | sed -n 's/.*rows\/s \([0-9]*\).*/\1/p'; done | best; }
# torch_best ENV THREADS: "RATE BATCH", the best over batches of 256, 1024 and 4096 rows (PyTorch
# runs fastest on batches that stay in cache, unlike linfold's fixed 256-row compute blocks).
torch_best() {
  for b in 256 1024 4096; do echo "$(torch_rate "$1" "$2" "$b") $b"; done | sort -g -k1,1 | tail -1
}
max() { if [ "$1" -ge "$2" ]; then echo "$1"; else echo "$2"; fi; }
gf() { echo "scale=1; 2 * $weights * $1 / 1000000000" | bc; }
ratio() { echo "scale=2; $1 / $2" | bc; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "OPENBLAS_CORETYPE in the environment: ${OPENBLAS_CORETYPE:-unset}"
echo
echo "| BLAS setting | kernel | what | rows/s | GFLOP/s | vs sgemm, same cores | vs PyTorch's best, same kernel |"
echo "|---|---|---|---|---|---|---|"
for setting in environment automatic; do
  if [ "$setting" = automatic ]; then env="env -u OPENBLAS_CORETYPE"; else env="env"; fi
  kernel=$($env "$lf" inspect -v "$model" 2>&1 | sed -n 's/.*BLAS kernel \([A-Za-z0-9]*\).*/\1/p' | head -1)
  s1=$(sgemm_rate "$env" 256 1)
  s2=$(sgemm_rate "$env" 1024 2)
  # The peer at every thread count; the ratios are against its best.
  read -r t1 b1 <<< "$(torch_best "$env OPENBLAS_CORETYPE=$kernel" 1)"
  read -r t2 b2 <<< "$(torch_best "$env OPENBLAS_CORETYPE=$kernel" 2)"
  tb=$(max "$t1" "$t2")
  p1=$(lf_rate "$env OPENBLAS_NUM_THREADS=1" 1)
  p1t2=$(lf_rate "$env" 1)
  p2=$(lf_rate "$env" 2)
  echo "| $setting | $kernel | cblas_sgemm, 1 core (256-row blocks) | $s1 | $(gf "$s1") | 1.00 | |"
  echo "| $setting | $kernel | cblas_sgemm, 2 cores (1024-row batches) | $s2 | $(gf "$s2") | 1.00 | |"
  echo "| $setting | $kernel | PyTorch 1.13, 1 thread, hooks counting z > 0, best batch ($b1 rows) | $t1 | $(gf "$t1") | $(ratio "$t1" "$s1") | $(ratio "$t1" "$tb") |"
  echo "| $setting | $kernel | PyTorch 1.13, 2 threads, hooks counting z > 0, best batch ($b2 rows) | $t2 | $(gf "$t2") | $(ratio "$t2" "$s2") | $(ratio "$t2" "$tb") |"
  echo "| $setting | $kernel | linfold, P = 1, 1 thread | $p1 | $(gf "$p1") | $(ratio "$p1" "$s1") | $(ratio "$p1" "$tb") |"
  echo "| $setting | $kernel | linfold, P = 1, 2 threads | $p1t2 | $(gf "$p1t2") | $(ratio "$p1t2" "$s2") | $(ratio "$p1t2" "$tb") |"
  echo "| $setting | $kernel | linfold, P = 2 (1 thread each) | $p2 | $(gf "$p2") | $(ratio "$p2" "$s2") | $(ratio "$p2" "$tb") |"
  echo "| $setting | $kernel | scaling: P = 2 / P = 1 (1 thread); sgemm 2 cores / 1 core | $(ratio "$p2" "$p1") | | $(ratio "$s2" "$s1") | |"
done
if [ "${OPENBLAS_CORETYPE:-}" != "" ]; then
  t=$(torch_rate "env" 2)
  echo
  echo "PyTorch as it runs by default here (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE, 2 threads): $t rows/s ($(gf "$t") GFLOP/s)"
fi
