#!/usr/bin/env bash
# The search modes of `linfold compress` end to end on the bundled digits model, at 2 ranks:
# the sweep's CSV, the target-size threshold, and the accuracy budget's model and status.
#   search_cli.sh LINFOLD_BINARY MPIEXEC SOURCE_DIR
set -euo pipefail
lf=$1 mpiexec=$2 src=$3
d=$src/tests/data/digits
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { "$mpiexec" -n 2 --oversubscribe "$lf" "$@"; }
fail() { echo "FAIL: $*"; exit 1; }
checks=0

# Sweep: one CSV row per threshold, and each row's size equals a plain compression at it.
run compress --quiet --model "$d/model.h5" --data "$d/data.h5:/val/x" --prune-dead \
  --sweep 1,0.9,0.8 --eval-data "$d/data.h5:/test/x" --eval-labels "$d/data.h5:/test/y" \
  --sweep-out "$tmp/sweep.csv"
[ "$(wc -l < "$tmp/sweep.csv")" -eq 4 ] || fail "sweep CSV has $(wc -l < "$tmp/sweep.csv") lines"
checks=$((checks + 1))
for t in 1 0.9 0.8; do
  want=$(run compress --model "$d/model.h5" --data "$d/data.h5:/val/x" --prune-dead --threshold "$t" \
    --out "$tmp/c.h5" 2>/dev/null | sed -n 's/^parameters: [0-9]* -> \([0-9]*\).*/\1/p')
  got=$(awk -F, -v t="$t" 'NR > 1 && $1 + 0 == t + 0 { print $7 }' "$tmp/sweep.csv")
  [ "$got" = "$want" ] || fail "sweep at $t: $got parameters, compress gives $want"
  checks=$((checks + 1))
done

# Target size: within the ratio, and the threshold it prints reproduces the model.
out=$(run compress --model "$d/model.h5" --data "$d/data.h5:/val/x" --prune-dead --target-ratio 0.25 \
  --out "$tmp/t.h5" 2>/dev/null)
tau=$(echo "$out" | sed -n 's/^target ratio 0.25: threshold \([0-9.e-]*\) gives.*/\1/p')
ratio=$(echo "$out" | sed -n 's/.*(\([0-9.]*\) of the original)$/\1/p' | head -1)
[ -n "$tau" ] && awk -v r="$ratio" 'BEGIN { exit !(r <= 0.25) }' || fail "target: '$tau' '$ratio'"
checks=$((checks + 1))
run compress --quiet --model "$d/model.h5" --data "$d/data.h5:/val/x" --prune-dead --select optimal \
  --threshold "$tau" --out "$tmp/t2.h5"
cmp -s <(h5dump -d /layers/1/weight "$tmp/t.h5" | tail -n +3) \
  <(h5dump -d /layers/1/weight "$tmp/t2.h5" | tail -n +3) || fail "threshold $tau does not reproduce"
checks=$((checks + 1))

# Accuracy budget 0 on the validation split: the model written keeps the validation accuracy.
run compress --model "$d/model.h5" --data "$d/data.h5:/val/x" --max-accuracy-drop 0 \
  --eval-data "$d/data.h5:/val/x" --eval-labels "$d/data.h5:/val/y" --out "$tmp/b.h5" \
  > "$tmp/budget.txt" 2>/dev/null
grep -q '^status: budget met' "$tmp/budget.txt" || fail "budget: $(grep status "$tmp/budget.txt")"
acc=$(run eval --json --model "$tmp/b.h5" --data "$d/data.h5:/val/x" --labels "$d/data.h5:/val/y" \
  --reference "$d/model.h5" 2>/dev/null)
read -r a a0 < <(echo "$acc" | sed -n 's/.*"accuracy": \([0-9.]*\),.*"reference_accuracy": \([0-9.]*\),.*/\1 \2/p')
awk -v a="$a" -v a0="$a0" 'BEGIN { exit !(a != "" && a >= a0) }' || fail "budget model accuracy: $acc"
h5dump -a accuracy_budget "$tmp/b.h5" | grep -q '"met"' || fail "no accuracy_budget attribute"
checks=$((checks + 2))
echo "$checks passed, 0 failed"
