#!/usr/bin/env bash
# End to end on the bundled digits MLP, where the algebra guarantees the answer: folding every
# neuron that is active on all calibration rows (--threshold 1 --layer-rule all) and pruning
# neurons that are never active (--prune-dead) leave the model's outputs on the calibration rows
# unchanged up to float32 round-off, at 1 and 3 ranks. The fold must really happen: the summary
# must show folded neurons in several layers and the model must gain skip blocks.
#   digits_fold.sh LINFOLD_BINARY MPIEXEC SOURCE_DIR
set -euo pipefail
lf=$1 mpiexec=$2 src=$3
d=$src/tests/data/digits
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# Folding reassociates float32 sums of at most 256 products; the digits logits on these rows stay
# below 75 in magnitude (measured with predict), so round-off is below 256 * 2^-24 * 75 = 1.1e-3
# per output. 2e-3 bounds it; a wrong fold (a missing bias term, a wrong column) moves outputs
# by whole units.
tol=0.002
for p in 1 3; do
  for flags in "--threshold 1 --layer-rule all" "--threshold 1 --prune-dead --layer-rule all"; do
    # shellcheck disable=SC2086
    "$mpiexec" -n "$p" --oversubscribe "$lf" compress --model "$d/model.h5" \
      --data "$d/data.h5:/val/x" $flags --out "$tmp/m.h5" > "$tmp/summary.txt" 2>/dev/null
    layers_folded=$(awk '$1 ~ /^[0-9]+$/ && $6 > 0 { n++ } END { print n + 0 }' "$tmp/summary.txt")
    [ "$layers_folded" -ge 2 ] || fail "$flags at P=$p folded neurons in $layers_folded layers"
    "$lf" inspect "$tmp/m.h5" 2>/dev/null | grep -q "skip from" || fail "$flags: no skip blocks"
    json=$("$mpiexec" -n "$p" --oversubscribe "$lf" eval --json --model "$tmp/m.h5" \
      --reference "$d/model.h5" --data "$d/data.h5:/val/x" 2>/dev/null)
    diff=$(echo "$json" | sed -n 's/.*"max_abs_diff": \([0-9.e+-]*\).*/\1/p')
    agree=$(echo "$json" | sed -n 's/.*"agree": \([0-9]*\).*/\1/p')
    awk -v x="$diff" -v t="$tol" 'BEGIN { exit !(x != "" && x <= t) }' ||
      fail "$flags at P=$p: max |difference| $diff > $tol ($json)"
    [ "$agree" = 359 ] || fail "$flags at P=$p: top-1 agreement $agree of 359"
    echo "ok: $flags at P=$p: $layers_folded layers folded, max |difference| $diff"
  done
done
