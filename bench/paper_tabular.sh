#!/usr/bin/env bash
# The paper's tabular experiment: MLP d-64-128-128-256-256-c on seven tasks (digits,
# breast_cancer, wine, iris and three make_classification sets). Per task: activation rates,
# threshold sweeps with and without dead-neuron pruning, target sizes 0.75/0.5/0.25, the accuracy
# budget 0 (selected on the validation split), and importance pruning at 25 %. Calibration uses
# the validation split; every accuracy reported is on the test split.
#
#   bash bench/paper_tabular.sh [MODEL_DIR] [BUILD_DIR] [RANKS] [OUT_DIR]
#
# MODEL_DIR (default /work/models/tabular) holds <task>/model.h5 and <task>/data.h5 from
# tools/train_tabular.py. If any is missing, the script first trains all tasks (seed 0, fixed
# epochs, about 3 min on 2 cores):
#   /usr/bin/python3 tools/train_tabular.py --out-dir MODEL_DIR --seed 0
# BUILD_DIR (default ./build) holds the linfold binary; RANKS (default 2) MPI ranks; OUT_DIR
# (default BUILD_DIR/paper_tabular) receives the CSV files and tables.md. The plot is written to
# docs/img/tabular_acc_params.png (bench/plots.gp). The Markdown tables go to stdout.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mdir=${1:-/work/models/tabular}
build=${2:-$here/build}
ranks=${3:-2}
out=${4:-$build/paper_tabular}
lf=$build/linfold
tasks="digits breast_cancer wine iris synth_a synth_b synth_c"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
mkdir -p "$out" "$here/docs/img"
for t in $tasks; do
  if [ ! -f "$mdir/$t/model.h5" ] || [ ! -f "$mdir/$t/data.h5" ]; then
    echo "paper_tabular: $mdir/$t missing, training all tasks (about 3 min)" >&2
    /usr/bin/python3 "$here/tools/train_tabular.py" --out-dir "$mdir" --seed 0 >&2
    break
  fi
done
exec > >(tee "$out/tables.md")
t_start=$SECONDS
LF() { mpiexec -n "$ranks" "$lf" "$@"; }
json() { sed -n "s/.*\"$1\": \([^,}]*\).*/\1/p"; }
step() { echo "paper_tabular: $* ($((SECONDS - t_start)) s)" >&2; }
TL=1.0,0.99,0.98,0.95,0.9,0.85,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1,0.05
declare -A P0 A0 V0 NV NT

# --- per task: statistics, originals, sweeps ---------------------------------------------------
for t in $tasks; do
  step "$t"
  M=$mdir/$t/model.h5 D=$mdir/$t/data.h5 S=$out/$t/val-stats.h5
  mkdir -p "$out/$t"
  LF calibrate --quiet --model "$M" --data "$D:/val/x" --output-sums --out "$S"
  jt=$(LF eval --quiet --json --model "$M" --data "$D:/test/x" --labels "$D:/test/y")
  jv=$(LF eval --quiet --json --model "$M" --data "$D:/val/x" --labels "$D:/val/y")
  P0[$t]=$(echo "$jt" | json params) A0[$t]=$(echo "$jt" | json accuracy)
  V0[$t]=$(echo "$jv" | json accuracy) NT[$t]=$(echo "$jt" | json samples)
  NV[$t]=$(echo "$jv" | json samples)
  for v in "opt:" "opt_dead:--prune-dead"; do
    LF compress --quiet --model "$M" --stats "$S" --select optimal ${v#*:} --sweep "$TL" \
      --eval-data "$D:/test/x" --eval-labels "$D:/test/y" --sweep-out "$out/$t/sweep_${v%%:*}.csv"
  done
  { echo "ratio,drop"; tail -n +2 "$out/$t/sweep_opt_dead.csv" |
      awk -F, -v a0="${A0[$t]}" '{ printf "%.6f,%.6f\n", $8, $9 - a0 }'; } > "$out/$t/curve.csv"
done

cat <<'EOF'
### Models

```sh
LF="mpiexec -n 2 build/linfold"
M=/work/models/tabular/TASK/model.h5 D=/work/models/tabular/TASK/data.h5
$LF calibrate --model $M --data $D:/val/x --output-sums --out $S
$LF eval --json --model $M --data $D:/test/x --labels $D:/test/y     # and on /val
```

| task | parameters | validation rows | test rows | validation accuracy | test accuracy |
|---|---|---|---|---|---|
EOF
for t in $tasks; do
  printf '| %s | %s | %s | %s | %.4f | %.4f |\n' "$t" "${P0[$t]}" "${NV[$t]}" "${NT[$t]}" "${V0[$t]}" "${A0[$t]}"
done

cat <<'EOF'

### Activation rates on the validation split

Neurons per rate bin (`positive / samples` of the statistics file), hidden layers 0-4
(64, 128, 128, 256, 256 neurons):

EOF
/usr/bin/python3 - "$out" "$mdir" $tasks <<'EOF'
import sys
import h5py
out, mdir, tasks = sys.argv[1], sys.argv[2], sys.argv[3:]
heads = ["0"] + ["(0,.1]"] + [f"(.{k},.{k + 1}]" for k in range(1, 9)] + ["(.9,1)", "1"]
print("| task | layer | " + " | ".join(heads) + " |")
print("|---" * (2 + len(heads)) + "|")
for t in tasks:
    with h5py.File(f"{out}/{t}/val-stats.h5", "r") as s, h5py.File(f"{mdir}/{t}/model.h5", "r") as m:
        n = int(s.attrs["samples"])
        for name in sorted(m["layers"], key=int)[:-1]:
            p = s["layers"][name]["positive"][()].astype("int64")
            bins = [int((p == 0).sum()), int(((p > 0) & (10 * p <= n)).sum())]
            bins += [int(((10 * p > k * n) & (10 * p <= (k + 1) * n)).sum()) for k in range(1, 9)]
            bins += [int(((10 * p > 9 * n) & (p < n)).sum()), int((p == n).sum())]
            assert sum(bins) == p.size
            print(f"| {t} | {name} | " + " | ".join(map(str, bins)) + " |")
EOF

matrix() { # CSV_NAME ratio|drop: one row per threshold, one column per task
  local name=$1 mode=$2 files=() a0s=""
  printf '| threshold |'; for t in $tasks; do printf ' %s |' "$t"; done; echo
  printf '|---|'; for t in $tasks; do printf -- '---|'; done; echo
  for t in $tasks; do files+=("$out/$t/$name"); a0s="$a0s ${A0[$t]}"; done
  paste -d, "${files[@]}" | tail -n +2 | awk -F, -v a0s="$a0s" -v mode="$mode" '
    BEGIN { split(a0s, a0, " ") }
    { printf "| %g |", $1
      for (k = 0; k < NF / 10; k++) {
        c = 10 * k
        if (mode == "ratio") printf " %.1f |", 100 * $(c + 8)
        else printf " %+.4f |", $(c + 9) - a0[k + 1]
      }
      print "" }'
}
cat <<'EOF'

### Threshold sweep: parameters (% of the original), optimal selection

Folding alone:

```sh
TL=1.0,0.99,0.98,0.95,0.9,0.85,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1,0.05
$LF compress --model $M --stats $S --select optimal [--prune-dead] --sweep $TL \
  --eval-data $D:/test/x --eval-labels $D:/test/y --sweep-out sweep.csv
```

EOF
matrix sweep_opt.csv ratio
printf '\nWith dead-neuron pruning (`--prune-dead`):\n\n'
matrix sweep_opt_dead.csv ratio
printf '\nTest accuracy minus the original test accuracy, with dead-neuron pruning:\n\n'
matrix sweep_opt_dead.csv drop

# --- target sizes -----------------------------------------------------------------------------
cat <<'EOF'

### Target size (`--target-ratio`, dead-neuron pruning, optimal selection)

```sh
$LF compress --model $M --stats $S --prune-dead --target-ratio R --out X.h5
$LF eval --json --model X.h5 --data $D:/test/x --labels $D:/test/y --reference $M
```

Each cell: threshold chosen, parameters (% of the original), test accuracy minus the original's,
top-1 agreement with the original on the test split.

| task | original test accuracy | R = 0.75 | R = 0.5 | R = 0.25 |
|---|---|---|---|---|
EOF
declare -A lossless
for r in 0.75 0.5 0.25; do lossless[$r]=0; done
for t in $tasks; do
  M=$mdir/$t/model.h5 D=$mdir/$t/data.h5 S=$out/$t/val-stats.h5
  row="| $t | $(printf %.4f "${A0[$t]}") |"
  for r in 0.75 0.5 0.25; do
    step "$t target $r"
    line=$(LF compress --no-progress --model "$M" --stats "$S" --prune-dead --target-ratio "$r" \
      --out "$out/$t/target_$r.h5" | sed -n 1p)
    th=$(echo "$line" | sed -n 's/.*: threshold \([^ ]*\) gives.*/\1/p')
    j=$(LF eval --quiet --json --model "$out/$t/target_$r.h5" --data "$D:/test/x" \
      --labels "$D:/test/y" --reference "$M")
    p=$(echo "$j" | json params) a=$(echo "$j" | json accuracy)
    d=$(echo "$a - ${A0[$t]}" | bc -l)
    [ "$(echo "$d >= 0" | bc -l)" = 1 ] && lossless[$r]=$((lossless[$r] + 1))
    row="$row $(printf 'τ %.3g: %.1f%%, %+.4f, %.4f' "$th" "$(echo "100 * $p / ${P0[$t]}" | bc -l)" \
      "$d" "$(echo "$j" | json top1_agreement)") |"
  done
  echo "$row"
done
n=$(echo $tasks | wc -w)
printf '\nModels with no loss of test accuracy: %s of %s at R = 0.75, %s of %s at R = 0.5, **%s of %s at R = 0.25**.\n' \
  "${lossless[0.75]}" "$n" "${lossless[0.5]}" "$n" "${lossless[0.25]}" "$n"

# --- accuracy budget and importance pruning ---------------------------------------------------
cat <<'EOF'

### Accuracy budget 0 (selected on the validation split) and importance pruning at 25 %

```sh
$LF compress --model $M --stats $S --max-accuracy-drop 0 --confidence 0 --prune-by rate \
  --eval-data $D:/val/x --eval-labels $D:/val/y --out B.h5
$LF compress --model $M --stats $S --prune-fraction 0.25 --prune-by rate --threshold 1.0 --select optimal --out P.h5
$LF eval --json --model B.h5 --data $D:/test/x --labels $D:/test/y --reference $M    # and P.h5
```

| task | budget 0: threshold, dead, pruned share | parameters | of original | val accuracy (original) | test accuracy (original) | test agreement | prune 25 %: parameters | of original | test accuracy | test agreement |
|---|---|---|---|---|---|---|---|---|---|---|
EOF
for t in $tasks; do
  step "$t budget and pruning"
  M=$mdir/$t/model.h5 D=$mdir/$t/data.h5 S=$out/$t/val-stats.h5
  LF compress --no-progress --model "$M" --stats "$S" --max-accuracy-drop 0 --confidence 0 --prune-by rate \
    --eval-data "$D:/val/x" --eval-labels "$D:/val/y" --out "$out/$t/budget.h5" > "$out/$t/budget.log"
  grep -q '^status: budget met' "$out/$t/budget.log" || { cat "$out/$t/budget.log" >&2; exit 1; }
  read -r bt _ bdead bfrac bscope _ _ bp _ bacc _ < <(grep -m 1 ' \*$' "$out/$t/budget.log")
  jb=$(LF eval --quiet --json --model "$out/$t/budget.h5" --data "$D:/test/x" --labels "$D:/test/y" \
    --reference "$M")
  [ "$(echo "$jb" | json params)" = "$bp" ] || { echo "paper_tabular: $t: budget row $bp differs" >&2; exit 1; }
  LF compress --quiet --model "$M" --stats "$S" --prune-fraction 0.25 --prune-by rate --threshold 1.0 --select optimal \
    --out "$out/$t/prune.h5"
  jp=$(LF eval --quiet --json --model "$out/$t/prune.h5" --data "$D:/test/x" --labels "$D:/test/y" \
    --reference "$M")
  pp=$(echo "$jp" | json params)
  printf '| %s | %s, %s, %s | %s | %.3g%% | %s (%.4f) | %.4f (%.4f) | %.4f | %s | %.1f%% | %.4f | %.4f |\n' \
    "$t" "$bt" "$bdead" "$bfrac ($bscope)" "$bp" "$(echo "100 * $bp / ${P0[$t]}" | bc -l)" "$bacc" "${V0[$t]}" \
    "$(echo "$jb" | json accuracy)" "${A0[$t]}" "$(echo "$jb" | json top1_agreement)" \
    "$pp" "$(echo "100 * $pp / ${P0[$t]}" | bc -l)" "$(echo "$jp" | json accuracy)" \
    "$(echo "$jp" | json top1_agreement)"
done

step "plot"
gnuplot -e "tab='$out'; img='$here/docs/img'; tasks='$tasks'" "$here/bench/plots.gp"
printf '\nRun time: %d s on %s ranks (%s).\n' "$((SECONDS - t_start))" "$ranks" "$("$lf" --version)"
