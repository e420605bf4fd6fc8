#!/usr/bin/env bash
# Bitwise rank-count invariance of the whole CLI: statistics files, compressed models,
# predictions and eval figures at P = 1, 2, 3 and 4 ranks on the digits training split
# (1,078 rows: not divisible by 3 or 4), with a small batch so that shards split blocks.
# Statistics include the exact output sums and sums of squares; the models use importance
# pruning by rate and by energy, whose bias compensation comes from those sums.
#   rank_invariance.sh LINFOLD_BINARY MPIEXEC SOURCE_DIR
set -euo pipefail
lf=$1 mpiexec=$2 src=$3
data=$src/tests/data/digits
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for p in 1 2 3 4; do
  # --output-sums and --prune-fraction exercise the exact output sums and the compensation.
  "$mpiexec" -n "$p" --oversubscribe "$lf" calibrate --quiet --batch 100 --model "$data/model.h5" \
    --data "$data/data.h5:/train/x" --output-sums --out "$tmp/stats$p.h5"
  "$mpiexec" -n "$p" --oversubscribe "$lf" compress --quiet --batch 100 --model "$data/model.h5" \
    --data "$data/data.h5:/train/x" --threshold 0.9 --prune-dead --prune-fraction 0.2 \
    --out "$tmp/model$p.h5"
  # Pruning by energy ranks by the exact sums of squared outputs.
  "$mpiexec" -n "$p" --oversubscribe "$lf" compress --quiet --batch 100 --model "$data/model.h5" \
    --data "$data/data.h5:/train/x" --threshold 0.9 --prune-fraction 0.3 --prune-scope global \
    --prune-by energy --out "$tmp/energy$p.h5"
  "$mpiexec" -n "$p" --oversubscribe "$lf" predict --quiet --batch 100 --model "$tmp/model$p.h5" \
    --data "$data/data.h5:/train/x" --out "$tmp/pred$p.h5"
  "$mpiexec" -n "$p" --oversubscribe "$lf" eval --batch 100 --model "$tmp/model$p.h5" --json \
    --data "$data/data.h5:/train/x" --labels "$data/data.h5:/train/y" --reference "$data/model.h5" \
    > "$tmp/eval$p.json"
done
status=0
for p in 2 3 4; do
  for f in stats model energy pred; do
    if ! cmp -s "$tmp/${f}1.h5" "$tmp/$f$p.h5"; then
      echo "FAIL: $f file at P=$p differs from P=1"; status=1
    fi
  done
  if ! cmp -s "$tmp/eval1.json" "$tmp/eval$p.json"; then
    echo "FAIL: eval at P=$p: $(cat "$tmp/eval$p.json") vs P=1: $(cat "$tmp/eval1.json")"; status=1
  fi
done
# The compressed model must really be compressed, or the comparison proves little.
params=$(sed -n 's/.*"params": \([0-9]*\).*/\1/p' "$tmp/eval1.json")
reference=$(sed -n 's/.*"reference_params": \([0-9]*\).*/\1/p' "$tmp/eval1.json")
if [ -z "$params" ] || [ -z "$reference" ] || [ "$params" -ge "$reference" ]; then
  echo "FAIL: the compressed model has $params parameters, the original $reference"; status=1
fi
cat "$tmp/eval1.json"
[ "$status" -eq 0 ] && echo "rank invariance: 5 files x 3 rank counts bitwise equal to P=1"
exit "$status"
