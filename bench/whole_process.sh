#!/usr/bin/env bash
# Where a whole `linfold calibrate` goes beyond its calibration pass, on the paper's
# Fashion-MNIST MLP (random weights, bench/fmnist_setup.py) over the 60,000 training images:
# the command's wall time against the pass time it logs, and against MPI_Init + MPI_Finalize
# alone (lf_bench_mpi_start) under the same launcher. Best of 5 runs each.
#
#   bash bench/whole_process.sh [BUILD_DIR] [WORK_DIR]
#
# Two MPI transport settings: Open MPI's default (which probes UCX for InfiniBand) and
# OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader, what a single-node job can use.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build}
work=${2:-/tmp/linfold-bench}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
/usr/bin/python3 "$here/bench/fmnist_setup.py" "$work" > /dev/null
model=$work/mlp-784.h5 data=$work/fmnist.h5
now() { date +%s.%N; }
# best WALL PASS over 5 runs of calibrate: "wall pass" of the run with the best wall time.
best_run() {
  local launch=$1 env=$2
  for _ in 1 2 3 4 5; do
    local t0 t1 pass
    t0=$(now)
    pass=$(env $env $launch "$build/linfold" calibrate --model "$model" --data "$data:/train/x" \
      --out "$work/stats.h5" 2>&1 | sed -n 's/.*calibrate: [0-9]* rows in \([0-9.]*\) s.*/\1/p')
    t1=$(now)
    echo "$(echo "$t1 - $t0" | bc) $pass"
  done | sort -g -k1,1 | head -1
}
best_start() {
  local launch=$1 env=$2
  for _ in 1 2 3 4 5; do
    local t0 t1
    t0=$(now); env $env $launch "$build/bench/lf_bench_mpi_start"; t1=$(now)
    echo "$t1 - $t0" | bc
  done | sort -g | head -1
}
r() { printf "%.2f" "$(echo "scale=4; $1 / $2" | bc)"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
echo "| ranks | MPI transport | whole command | calibration pass | MPI start + end alone | whole / pass | (whole - MPI) / pass |"
echo "|---|---|---|---|---|---|---|"
for ranks in 1 2; do
  launch=""; [ "$ranks" -gt 1 ] && launch="mpiexec -n $ranks"
  for transport in default single-node; do
    env="LF_BENCH=1"
    [ "$transport" = single-node ] && env="OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader"
    read -r wall pass <<< "$(best_run "$launch" "$env")"
    start=$(best_start "$launch" "$env")
    printf "| %d | %s | %.2f s | %.2f s | %.2f s | %s | %s |\n" "$ranks" "$transport" "$wall" \
      "$pass" "$start" "$(r "$wall" "$pass")" "$(r "$(echo "$wall - $start" | bc)" "$pass")"
  done
done
