#!/usr/bin/env bash
# The search modes of `linfold compress` end to end on the bundled digits model, at 2 ranks:
# the sweep's CSV, the target-size threshold, and the accuracy budget's model, status and bound.
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

# Accuracy budget 0 on the measured drop (--confidence 0) on the validation split: the model
# written keeps the validation accuracy.
run compress --model "$d/model.h5" --data "$d/data.h5:/val/x" --max-accuracy-drop 0 --confidence 0 \
  --eval-data "$d/data.h5:/val/x" --eval-labels "$d/data.h5:/val/y" --out "$tmp/b.h5" \
  > "$tmp/budget.txt" 2>/dev/null
grep -q '^status: budget met' "$tmp/budget.txt" || fail "budget: $(grep status "$tmp/budget.txt")"
acc=$(run eval --json --model "$tmp/b.h5" --data "$d/data.h5:/val/x" --labels "$d/data.h5:/val/y" \
  --reference "$d/model.h5" 2>/dev/null)
read -r a a0 < <(echo "$acc" | sed -n 's/.*"accuracy": \([0-9.]*\),.*"reference_accuracy": \([0-9.]*\),.*/\1 \2/p')
awk -v a="$a" -v a0="$a0" 'BEGIN { exit !(a != "" && a >= a0) }' || fail "budget model accuracy: $acc"
h5dump -a accuracy_budget "$tmp/b.h5" | grep -q '"met"' || fail "no accuracy_budget attribute"
checks=$((checks + 2))

# The default confidence (0.95): the frontier prints each candidate's discordant rows, drop and
# bound; the chosen row's bound is within 0.04 and its drop (worse - better) / 359 as printed,
# and a row whose measured drop is within 0.04 but whose bound is not carries no star.
run compress --model "$d/model.h5" --data "$d/data.h5:/val/x" --max-accuracy-drop 0.04 \
  --search-fractions 0 --eval-data "$d/data.h5:/val/x" --eval-labels "$d/data.h5:/val/y" \
  --out "$tmp/b95.h5" > "$tmp/b95.txt" 2>/dev/null
grep -q 'on its upper bound at confidence 0.95' "$tmp/b95.txt" || fail "no confidence: $(head -3 "$tmp/b95.txt")"
grep -q '^status: budget met: .*; drop [-0-9.]*, upper bound [0-9.]*$' "$tmp/b95.txt" ||
  fail "status: $(grep status "$tmp/b95.txt")"
# Frontier rows: ... accuracy agreement worse better drop bound [*]
awk '/^threshold/ { t = 1; next } /^status/ { t = 0 } t && NF >= 15 {
       star = $NF == "*"; n = NF - star; w = $(n - 3); b = $(n - 2); drop = $(n - 1); bound = $n
       if (sqrt(((w - b) / 359 - drop)^2) > 6e-6 || bound < drop) bad = 1
       if (star && bound > 0.04) bad = 1
       if (!star && bound <= 0.04) bad = 1
       if (!star && drop <= 0.04) rejected++
       rows++ }
     END { exit !(rows >= 2 && !bad && rejected >= 1) }' "$tmp/b95.txt" ||
  fail "frontier bounds: $(cat "$tmp/b95.txt")"
checks=$((checks + 3))
echo "$checks passed, 0 failed"
