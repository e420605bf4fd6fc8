#!/usr/bin/env bash
# Parameter reduction of the bundled digits model at several thresholds, layer rules and with or
# without dead-neuron pruning: calibration on the validation split, evaluation on the test split.
# Prints a Markdown table (docs/results.md quotes it).
#
#   bash bench/digits_thresholds.sh [BUILD_DIR] [RANKS]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build}
ranks=${2:-2}
lf=$build/linfold
data=$here/tests/data/digits
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() { mpiexec -n "$ranks" "$lf" "$@"; }
json() { sed -n "s/.*\"$1\": \([^,}]*\).*/\1/p"; }

run calibrate --quiet --model "$data/model.h5" --data "$data/data.h5:/val/x" --out "$tmp/val-stats.h5"
echo "| threshold | rule | prune dead | parameters | of original | in skip blocks | test accuracy | original test accuracy | top-1 agreement | max abs diff |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for t in 1.0 0.99 0.95 0.9 0.8; do
  for rule in benefit all; do
    for prune in "" --prune-dead; do
      run compress --quiet --model "$data/model.h5" --stats "$tmp/val-stats.h5" --threshold "$t" \
        --layer-rule "$rule" $prune --out "$tmp/c.h5"
      j=$(run eval --model "$tmp/c.h5" --data "$data/data.h5:/test/x" --labels "$data/data.h5:/test/y" \
        --reference "$data/model.h5" --json)
      skip=$("$lf" inspect "$tmp/c.h5" | sed -n 's/^parameters: .* (\([0-9]*\) in skip blocks)/\1/p')
      p=$(echo "$j" | json params) p0=$(echo "$j" | json reference_params)
      printf '| %s | %s | %s | %s | %.1f%% | %s | %.4f | %.4f | %.4f | %.3g |\n' "$t" "$rule" \
        "${prune:+yes}" "$p" "$(echo "100 * $p / $p0" | bc -l)" "$skip" "$(echo "$j" | json accuracy)" \
        "$(echo "$j" | json reference_accuracy)" "$(echo "$j" | json top1_agreement)" \
        "$(echo "$j" | json max_abs_diff)"
    done
  done
done
