#!/usr/bin/env bash
# A registry of N small models: one `linfold run` over all of them (rank groups) against N
# separate `mpiexec linfold compress` calls (one MPI start-up and one model read each), and the
# incremental rerun with nothing changed. Every number is the best of 3 runs, all in this run.
#
#   bash bench/registry.sh [BUILD_DIR] [N] [RANKS] [WORK_DIR]
#
# The models are copies of the bundled digits MLP (64-64-128-128-256-256-10, 130,378 parameters)
# under different names, each with its own copy of the data: the same work per model, so the
# difference is the per-model start-up. Each model: calibrate on 359 rows, prune dead neurons,
# fold at 0.9 with the optimal layer selection, evaluate on 360 rows, write the model and its
# record.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build}
n=${2:-20}
ranks=${3:-2}
work=${4:-/tmp/linfold-bench-registry}
lf=$build/linfold
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
export OMPI_MCA_rmaps_base_oversubscribe=1
rm -rf "$work" && mkdir -p "$work/models" "$work/data"
for i in $(seq -w 1 "$n"); do
  cp "$here/tests/data/digits/model.h5" "$work/models/m$i.h5"
  cp "$here/tests/data/digits/data.h5" "$work/data/m$i.h5"
done
cat > "$work/registry.yaml" <<YAML
version: 1
models: {glob: "models/*.h5"}
groups: auto
calibration: "data/{stem}.h5:/val/x"
evaluation: {data: "data/{stem}.h5:/test/x", labels: "data/{stem}.h5:/test/y"}
stages:
  - calibrate: {batch: 1024}
  - prune: {dead: true}
  - fold: {threshold: 0.9, select: optimal}
  - evaluate: {}
output: {model: "out/{stem}.h5", report: "out/{stem}.json", summary: out/summary}
YAML

secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
best() { sort -g | head -1; }
one_run() { rm -rf "$work/out"; (cd "$work" && mpiexec -n "$ranks" "$lf" run registry.yaml -q); }
rerun() { (cd "$work" && mpiexec -n "$ranks" "$lf" run registry.yaml -q); }
separate() {
  rm -rf "$work/sep" && mkdir -p "$work/sep"
  for i in $(seq -w 1 "$n"); do
    (cd "$work" && mpiexec -n "$ranks" "$lf" compress --model "models/m$i.h5" \
      --data "data/m$i.h5:/val/x" --prune-dead --threshold 0.9 --select optimal \
      --out "sep/m$i.h5" -q)
    (cd "$work" && mpiexec -n "$ranks" "$lf" eval --model "sep/m$i.h5" \
      --data "data/m$i.h5:/test/x" --labels "data/m$i.h5:/test/y" --reference "models/m$i.h5" \
      --json -q)
  done
}
t_run=$(for _ in 1 2 3; do secs one_run; done | best)
t_rerun=$(for _ in 1 2 3; do secs rerun; done | best)
t_sep=$(for _ in 1 2 3; do secs separate; done | best)
for i in $(seq -w 1 "$n"); do
  cmp -s "$work/out/m$i.h5" "$work/sep/m$i.h5" || { echo "m$i differs" >&2; exit 1; }
done
printf 'models %d, ranks %d (%s)\n' "$n" "$ranks" "$(nproc) cores"
printf 'one linfold run (groups: auto):      %7.2f s  %6.3f s/model\n' "$t_run" "$(echo "$t_run / $n" | bc -l)"
printf 'rerun, nothing changed:              %7.2f s\n' "$t_rerun"
printf '%d x (compress + eval) via mpiexec:  %7.2f s  %6.3f s/model\n' "$n" "$t_sep" "$(echo "$t_sep / $n" | bc -l)"
printf 'speed-up of the registry run:        %7.1fx\n' "$(echo "$t_sep / $t_run" | bc -l)"
echo "outputs: identical, model for model"
