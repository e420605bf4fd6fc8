#!/usr/bin/env bash
# The paper's Fashion-MNIST experiment (MLP 784-1024-1024-512-512-256-256-10): activation-rate
# distribution, threshold sweeps (folding alone, with dead-neuron pruning, and the paper's
# "fold every layer" rule), layer selection (benefit / greedy / optimal), target sizes,
# accuracy budgets selected on the validation split, and importance pruning with and without
# folding. Calibration uses the validation split (/val/x); every accuracy reported is on the
# test split, including that of the models the accuracy-budget search selects on /val.
#
#   bash bench/paper_fmnist.sh [MODEL_DIR] [BUILD_DIR] [RANKS] [OUT_DIR]
#
# MODEL_DIR (default /work/models/fmnist) holds model.h5 and data.h5 from tools/train_fmnist.py.
# If model.h5 is missing, the script first trains it (seed 0, 20 epochs, about 15 min on 2 cores):
#   /usr/bin/python3 tools/train_fmnist.py --out-dir MODEL_DIR --seed 0 --epochs 20
# BUILD_DIR (default ./build) holds the linfold binary; RANKS (default 2) MPI ranks; OUT_DIR
# (default BUILD_DIR/paper_fmnist) receives the CSV files, the logs and tables.md. The plots are
# written to docs/img/fmnist_*.png by gnuplot (bench/plots.gp). The Markdown tables go to stdout
# (and OUT_DIR/tables.md); docs/results.md quotes them.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mdir=${1:-/work/models/fmnist}
build=${2:-$here/build}
ranks=${3:-2}
out=${4:-$build/paper_fmnist}
lf=$build/linfold
M=$mdir/model.h5
D=$mdir/data.h5
S=$out/val-stats.h5
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
mkdir -p "$out" "$here/docs/img"
if [ ! -f "$M" ] || [ ! -f "$D" ]; then
  echo "paper_fmnist: $M missing, training it (about 15 min)" >&2
  mkdir -p "$mdir"
  /usr/bin/python3 "$here/tools/train_fmnist.py" --out-dir "$mdir" --seed 0 --epochs 20 >&2
fi
exec > >(tee "$out/tables.md")
t_start=$SECONDS
LF() { mpiexec -n "$ranks" "$lf" "$@"; }
json() { sed -n "s/.*\"$1\": \([^,}]*\).*/\1/p"; }
skip_params() { "$lf" inspect "$1" | sed -n 's/^parameters: .* (\([0-9]*\) in skip blocks)/\1/p'; }
step() { echo "paper_fmnist: $* ($((SECONDS - t_start)) s)" >&2; }
# Every sweep uses this list (the issue's thresholds, extended downwards for the plots).
TL=1.0,0.99,0.98,0.95,0.9,0.85,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1,0.05

step "calibrating on /val/x"
LF calibrate --quiet --model "$M" --data "$D:/val/x" --output-sums --out "$S"
orig_test=$(LF eval --quiet --json --model "$M" --data "$D:/test/x" --labels "$D:/test/y")
orig_val=$(LF eval --quiet --json --model "$M" --data "$D:/val/x" --labels "$D:/val/y")
P0=$(echo "$orig_test" | json params)
A0=$(echo "$orig_test" | json accuracy)
V0=$(echo "$orig_val" | json accuracy)
printf '### Model\n\n%s parameters; accuracy: validation %.4f, test %.4f (%s).\n\n' "$P0" "$V0" "$A0" "$M"

# --- activation rates -------------------------------------------------------------------------
cat <<'EOF'
### Activation rates on the calibration (validation) split

Neurons per rate bin, rate = `positive / samples` from the statistics file:

```sh
LF="mpiexec -n 2 build/linfold"
$LF calibrate --model $M --data $D:/val/x --output-sums --out $S
# then /layers/<i>/positive / attribute "samples" of $S, binned (Python/h5py, in the script)
```

EOF
/usr/bin/python3 - "$S" "$M" <<'EOF'
import sys
import h5py
stats, model = sys.argv[1], sys.argv[2]
with h5py.File(stats, "r") as s, h5py.File(model, "r") as m:
    n = int(s.attrs["samples"])
    names = sorted(m["layers"], key=int)[:-1]          # hidden layers (the output is never changed)
    heads = ["0"] + ["(0,.1]"] + [f"(.{k},.{k + 1}]" for k in range(1, 9)] + ["(.9,1)", "1"]
    print("| layer | activation | neurons | " + " | ".join(heads) + " |")
    print("|---" * (3 + len(heads)) + "|")
    for name in names:
        act = m["layers"][name].attrs["activation"]
        act = act.decode() if isinstance(act, bytes) else str(act)
        p = s["layers"][name]["positive"][()].astype("int64")
        bins = [int((p == 0).sum()), int(((p > 0) & (10 * p <= n)).sum())]
        bins += [int(((10 * p > k * n) & (10 * p <= (k + 1) * n)).sum()) for k in range(1, 9)]
        bins += [int(((10 * p > 9 * n) & (p < n)).sum()), int((p == n).sum())]
        assert sum(bins) == p.size
        print(f"| {name} | {act} | {p.size} | " + " | ".join(map(str, bins)) + " |")
    print(f"\n({n} calibration samples.)")
EOF
echo

# --- threshold sweeps -------------------------------------------------------------------------
sweep() { # NAME FLAGS...: a sweep over TL evaluated on the test split
  local name=$1; shift
  step "sweep $name"
  LF compress --quiet --model "$M" --stats "$S" "$@" --sweep "$TL" \
    --eval-data "$D:/test/x" --eval-labels "$D:/test/y" --sweep-out "$out/sweep_$name.csv"
}
sweep opt --select optimal
sweep opt_dead --select optimal --prune-dead
sweep all --layer-rule all
sweep all_dead --layer-rule all --prune-dead

pair_table() { # CSV_A CSV_B: thresholds with params, share, test accuracy and agreement of both
  echo "| threshold | parameters | of original | test accuracy | top-1 agreement | parameters | of original | test accuracy | top-1 agreement |"
  echo "|---|---|---|---|---|---|---|---|---|"
  paste -d, <(tail -n +2 "$1") <(tail -n +2 "$2") | awk -F, '{
    printf "| %g | %d | %.1f%% | %.4f | %.4f | %d | %.1f%% | %.4f | %.4f |\n",
      $1, $7, 100 * $8, $9, $10, $17, 100 * $18, $19, $20 }'
}
cat <<'EOF'
### Threshold sweep, optimal layer selection: folding alone (left) and with dead-neuron pruning (right)

```sh
TL=1.0,0.99,0.98,0.95,0.9,0.85,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1,0.05
$LF compress --model $M --stats $S --select optimal --sweep $TL \
  --eval-data $D:/test/x --eval-labels $D:/test/y --sweep-out sweep_opt.csv
$LF compress --model $M --stats $S --select optimal --prune-dead --sweep $TL \
  --eval-data $D:/test/x --eval-labels $D:/test/y --sweep-out sweep_opt_dead.csv
```

EOF
pair_table "$out/sweep_opt.csv" "$out/sweep_opt_dead.csv"
cat <<'EOF'

### Threshold sweep, `--layer-rule all` (the paper's prototype): without (left) and with dead-neuron pruning (right)

```sh
$LF compress --model $M --stats $S --layer-rule all [--prune-dead] --sweep $TL \
  --eval-data $D:/test/x --eval-labels $D:/test/y --sweep-out sweep_all[_dead].csv
```

EOF
pair_table "$out/sweep_all.csv" "$out/sweep_all_dead.csv"

# --- layer selection --------------------------------------------------------------------------
step "layer selection sweeps"
for sel in "layer-rule benefit" "select greedy" "select optimal"; do
  for dead in "" --prune-dead; do
    LF compress --quiet --model "$M" --stats "$S" --"${sel% *}" "${sel#* }" $dead --sweep "$TL" \
      --sweep-out "$out/select_${sel#* }${dead:+_dead}.csv"
  done
done
cat <<'EOF'

### Layer selection: parameters after folding (benefit rule, greedy, optimal)

```sh
for sel in "--layer-rule benefit" "--select greedy" "--select optimal"; do
  $LF compress --model $M --stats $S $sel [--prune-dead] --sweep $TL --sweep-out select.csv
done
```

| threshold | benefit | greedy | optimal | benefit, dead pruned | greedy, dead pruned | optimal, dead pruned |
|---|---|---|---|---|---|---|
EOF
paste -d, <(tail -n +2 "$out/select_benefit.csv") <(tail -n +2 "$out/select_greedy.csv") \
  <(tail -n +2 "$out/select_optimal.csv") <(tail -n +2 "$out/select_benefit_dead.csv") \
  <(tail -n +2 "$out/select_greedy_dead.csv") <(tail -n +2 "$out/select_optimal_dead.csv") |
  awk -F, '{ printf "| %g | %d | %d | %d | %d | %d | %d |\n", $1, $7, $17, $27, $37, $47, $57 }'

# --- target sizes -----------------------------------------------------------------------------
cat <<'EOF'

### Target size (`--target-ratio`, dead-neuron pruning, optimal selection)

```sh
$LF compress --model $M --stats $S --prune-dead --target-ratio R --out X.h5
$LF eval --json --model X.h5 --data $D:/test/x --labels $D:/test/y --reference $M
```

| target ratio | threshold chosen | parameters | of original | in skip blocks | test accuracy | top-1 agreement | max abs diff |
|---|---|---|---|---|---|---|---|
EOF
echo "target,threshold,params,ratio,accuracy" > "$out/target.csv"
for r in 0.75 0.5 0.25; do
  step "target ratio $r"
  line=$(LF compress --no-progress --model "$M" --stats "$S" --prune-dead --target-ratio "$r" \
    --out "$out/target_$r.h5" | sed -n 1p)
  t=$(echo "$line" | sed -n 's/.*: threshold \([^ ]*\) gives.*/\1/p')
  j=$(LF eval --quiet --json --model "$out/target_$r.h5" --data "$D:/test/x" \
    --labels "$D:/test/y" --reference "$M")
  p=$(echo "$j" | json params)
  printf '| %s | %.4g | %s | %.1f%% | %s | %.4f | %.4f | %.3g |\n' "$r" "$t" "$p" \
    "$(echo "100 * $p / $P0" | bc -l)" "$(skip_params "$out/target_$r.h5")" \
    "$(echo "$j" | json accuracy)" "$(echo "$j" | json top1_agreement)" "$(echo "$j" | json max_abs_diff)"
  echo "$r,$t,$p,$(echo "$p / $P0" | bc -l),$(echo "$j" | json accuracy)" >> "$out/target.csv"
done

# --- accuracy budget --------------------------------------------------------------------------
cat <<'EOF'

### Accuracy budget (`--max-accuracy-drop`): selected on the validation split, reported on the test split

```sh
$LF compress --model $M --stats $S --max-accuracy-drop DROP --confidence 0 --prune-by rate \
  --eval-data $D:/val/x --eval-labels $D:/val/y --out B.h5
$LF eval --json --model B.h5 --data $D:/test/x --labels $D:/test/y --reference $M
```

EOF
printf 'Original accuracy: validation %.4f, test %.4f.\n\n' "$V0" "$A0"
echo "| allowed drop (val) | plans evaluated | chosen threshold | dead pruned | pruned share | parameters | of original | val accuracy | test accuracy | test drop | top-1 agreement (test) | search time |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
echo "drop,params,ratio,accuracy" > "$out/budget.csv"
for d in 0 0.005; do
  step "accuracy budget $d"
  t0=$SECONDS
  LF compress --no-progress --model "$M" --stats "$S" --max-accuracy-drop "$d" --confidence 0 --prune-by rate \
    --eval-data "$D:/val/x" --eval-labels "$D:/val/y" --out "$out/budget_$d.h5" > "$out/budget_$d.log"
  dt=$((SECONDS - t0))
  grep -q '^status: budget met' "$out/budget_$d.log" || { cat "$out/budget_$d.log" >&2; exit 1; }
  # The frontier is sorted by size; the chosen plan is its first row within the budget (*).
  read -r bt _ bdead bfrac bscope _ _ bp _ bacc _ < <(grep -m 1 ' \*$' "$out/budget_$d.log")
  nplans=$(sed -n 's/^frontier explored (\([0-9]*\) plans.*/\1/p' "$out/budget_$d.log")
  j=$(LF eval --quiet --json --model "$out/budget_$d.h5" --data "$D:/test/x" \
    --labels "$D:/test/y" --reference "$M")
  p=$(echo "$j" | json params) a=$(echo "$j" | json accuracy)
  [ "$p" = "$bp" ] || { echo "paper_fmnist: budget $d: frontier row $bp != model $p" >&2; exit 1; }
  printf '| %s | %s | %s | %s | %s | %s | %.1f%% | %s | %.4f | %+.4f | %.4f | %d s |\n' "$d" "$nplans" \
    "$bt" "$bdead" "$bfrac ($bscope)" "$p" "$(echo "100 * $p / $P0" | bc -l)" "$bacc" "$a" \
    "$(echo "$a - $A0" | bc -l)" "$(echo "$j" | json top1_agreement)" "$dt"
  echo "$d,$p,$(echo "$p / $P0" | bc -l),$a" >> "$out/budget.csv"
done

# --- importance pruning -----------------------------------------------------------------------
cat <<'EOF'

### Importance pruning alone (threshold 1.0) and followed by folding

`--prune-fraction P` removes the share P of the hidden neurons with the lowest activation rates
(dead ones first) and adds their mean outputs to the next layer's biases: per layer (P of every
layer, the default) or over the whole network at once (`--prune-scope global`).

```sh
$LF compress --model $M --stats $S --prune-fraction P --prune-by rate --prune-scope SCOPE --select optimal \
  --sweep 1.0,0.9,0.8,0.5,0.3 --eval-data $D:/test/x --eval-labels $D:/test/y --sweep-out prune_P.csv
```

| scope | pruned share | threshold | parameters | of original | in skip blocks | test accuracy | top-1 agreement |
|---|---|---|---|---|---|---|---|
EOF
for scope in layer global; do
  for p in 0.25 0.4 0.5; do
    step "prune fraction $p ($scope)"
    LF compress --quiet --model "$M" --stats "$S" --prune-fraction "$p" --prune-by rate --prune-scope "$scope" \
      --select optimal --sweep 1.0,0.9,0.8,0.5,0.3 --eval-data "$D:/test/x" \
      --eval-labels "$D:/test/y" --sweep-out "$out/prune_${scope}_$p.csv"
    tail -n +2 "$out/prune_${scope}_$p.csv" | awk -F, -v s="$scope" '{
      printf "| %s | %g | %g | %d | %.1f%% | %d | %.4f | %.4f |\n", s, $4, $1, $7, 100 * $8, $6, $9, $10 }'
  done
done
for p in 0.25 0.4 0.5; do cp "$out/prune_layer_$p.csv" "$out/prune_$p.csv"; done
# The pruning curve of the plot: threshold 1.0 only, more shares.
for p in 0.1 0.2 0.3 0.35 0.45 0.55 0.6 0.7; do
  step "prune fraction $p (curve)"
  LF compress --quiet --model "$M" --stats "$S" --prune-fraction "$p" --prune-by rate --select optimal \
    --sweep 1.0 --eval-data "$D:/test/x" --eval-labels "$D:/test/y" --sweep-out "$out/prune_$p.csv"
done
{
  head -n 1 "$out/prune_0.25.csv"
  for p in 0.1 0.2 0.25 0.3 0.35 0.4 0.45 0.5 0.55 0.6 0.7; do sed -n 2p "$out/prune_$p.csv"; done
} > "$out/prune_curve.csv"

step "plots"
gnuplot -e "fm='$out'; img='$here/docs/img'; p0=$P0; a0=$A0" "$here/bench/plots.gp"
printf '\nRun time: %d s on %s ranks (%s).\n' "$((SECONDS - t_start))" "$ranks" "$("$lf" --version)"
