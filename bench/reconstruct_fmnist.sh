#!/usr/bin/env bash
# Least-squares reconstruction on the trained Fashion-MNIST MLP (docs/results.md): importance
# pruning over the whole network (--prune-scope global) at several shares, without and with
# --reconstruct. Calibration and refit use the training split (/train/x, 50,000 rows, no labels
# needed); every accuracy reported is on the test split. With BUDGETS=1 it also runs the
# accuracy-budget search with and without reconstruction, deciding on the validation split:
# with reconstruction every candidate is refitted on all 50,000 rows, which takes tens of
# minutes on 2 cores.
#
#   bash bench/reconstruct_fmnist.sh [MODEL_DIR] [BUILD_DIR] [RANKS]
#
# MODEL_DIR (default /work/models/fmnist) holds model.h5 and data.h5 from tools/train_fmnist.py.
# The shares' figures also go to CSV (default: a temporary file), and with gnuplot installed to
# docs/img/fmnist_reconstruct.png (bench/plots.gp).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mdir=${1:-/work/models/fmnist}
build=${2:-$here/build}
ranks=${3:-2}
lf=$build/linfold
M=$mdir/model.h5 D=$mdir/data.h5
out=$(mktemp -d /tmp/reconstruct_fmnist.XXXXXX)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
LF() { mpiexec -n "$ranks" "$lf" "$@"; }
acc() { LF eval --model "$1" --data "$D:/test/x" --labels "$D:/test/y" --json --quiet |
        sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p' | head -1 | xargs printf "%.4f"; }
params() { "$lf" inspect "$1" --quiet | sed -n 's/^parameters: \([0-9]*\).*/\1/p'; }
base_params=$(params "$M")
base_acc=$(acc "$M")
echo "model $M: $base_params parameters, test accuracy $base_acc; $ranks ranks"
echo
csv=${CSV:-$out/reconstruct.csv}
echo "share,params,ratio,acc_mean_compensation,acc_reconstructed" > "$csv"
echo "| pruned share (global) | parameters | of original | test accuracy, mean compensation | test accuracy, reconstructed | reconstruction time |"
echo "|---|---|---|---|---|---|"
for share in 0.5 0.6 0.7 0.75 0.8 0.85 0.9; do
  common=(compress --model "$M" --data "$D:/train/x" --prune-dead --prune-fraction "$share"
          --prune-scope global --quiet)
  LF "${common[@]}" --out "$out/p.h5"
  t0=$(date +%s.%N)
  LF "${common[@]}" --reconstruct --out "$out/r.h5"
  t1=$(date +%s.%N)
  p=$(params "$out/r.h5") a0=$(acc "$out/p.h5") a1=$(acc "$out/r.h5")
  printf "| %s | %d | %.1f%% | %s | %s | %.1f s |\n" "$share" "$p" \
    "$(echo "100 * $p / $base_params" | bc -l)" "$a0" "$a1" "$(echo "$t1 - $t0" | bc)"
  echo "$share,$p,$(echo "$p / $base_params" | bc -l),$a0,$a1" >> "$csv"
done
# The plot of docs/results.md (gnuplot, when installed).
if command -v gnuplot > /dev/null; then
  gnuplot -e "rec='$csv'; img='$here/docs/img'; a0=$base_acc" "$here/bench/plots.gp"
fi
[ "${BUDGETS:-0}" = 1 ] || { rm -rf "$out"; exit 0; }
echo
echo "| accuracy budget (validation) | reconstruction | parameters | of original | test accuracy | test drop | search time |"
echo "|---|---|---|---|---|---|---|"
for budget in 0 0.005 0.01; do
  for rec in no yes; do
    flag=(); [ "$rec" = yes ] && flag=(--reconstruct)
    t0=$(date +%s.%N)
    LF compress --model "$M" --data "$D:/train/x" --max-accuracy-drop "$budget" --confidence 0 \
      --eval-data "$D:/val/x" --eval-labels "$D:/val/y" "${flag[@]}" --quiet --out "$out/b.h5"
    t1=$(date +%s.%N)
    p=$(params "$out/b.h5"); a=$(acc "$out/b.h5")
    printf "| %s | %s | %d | %.1f%% | %s | %+.2f points | %.0f s |\n" "$budget" "$rec" "$p" \
      "$(echo "100 * $p / $base_params" | bc -l)" "$a" "$(echo "100 * ($a - $base_acc)" | bc -l)" \
      "$(echo "$t1 - $t0" | bc)"
  done
done
rm -rf "$out"
