#!/usr/bin/env bash
# The accuracy-budget search with and without least-squares reconstruction on the seven tabular
# models (docs/results.md): calibration and refit on the training split (/train/x), the decision
# on the validation split, figures on the test split. For each task and each decision rule
# (--confidence 0, the measured drop; and the default bound at 0.95): the size the search
# returns without and with --reconstruct, and the test accuracy of each.
#
#   bash bench/reconstruct_tabular.sh [MODEL_DIR] [BUILD_DIR] [BUDGET]
#
# MODEL_DIR (default /work/models/tabular) holds <task>/model.h5 and <task>/data.h5 from
# tools/train_tabular.py; BUDGET defaults to 0. EXTRA adds flags to every search (for example
# EXTRA="--prune-by rate"); CONFIDENCES (default "0 0.95") lists the decision rules.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mdir=${1:-/work/models/tabular}
build=${2:-$here/build}
budget=${3:-0}
lf=$build/linfold
out=$(mktemp -d /tmp/reconstruct_tabular.XXXXXX)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
acc() { "$lf" eval --model "$1" --data "$2:/test/x" --labels "$2:/test/y" --json --quiet |
        sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p' | head -1 | xargs printf "%.4f"; }
params() { "$lf" inspect "$1" --quiet | sed -n 's/^parameters: \([0-9]*\).*/\1/p'; }
echo "| task | confidence | original params | test acc | without: params | test acc | with reconstruction: params | test acc | with / without | search time with |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for t in digits breast_cancer wine iris synth_a synth_b synth_c; do
  M=$mdir/$t/model.h5 D=$mdir/$t/data.h5
  for conf in ${CONFIDENCES:-0 0.95}; do
    row="| $t | $conf | $(params "$M") | $(acc "$M" "$D")"
    for rec in no yes; do
      flag=(); [ "$rec" = yes ] && flag=(--reconstruct)
      t0=$(date +%s.%N)
      "$lf" compress --model "$M" --data "$D:/train/x" --max-accuracy-drop "$budget" \
        --confidence "$conf" --eval-data "$D:/val/x" --eval-labels "$D:/val/y" "${flag[@]}" \
        ${EXTRA:-} \
        --quiet --out "$out/$rec.h5"
      t1=$(date +%s.%N)
      row="$row | $(params "$out/$rec.h5") | $(acc "$out/$rec.h5" "$D")"
    done
    ratio=$(echo "scale=3; $(params "$out/yes.h5") / $(params "$out/no.h5")" | bc)
    echo "$row | $ratio | $(printf "%.1f" "$(echo "$t1 - $t0" | bc)") s |"
  done
done
