#!/usr/bin/env bash
# Which importance criterion importance pruning should rank neurons by (--prune-by, docs/algorithm.md):
# the activation rate, the output energy E[a^2] x |W_next[:, j]|^2, or its variance part
# (E[a^2] - E[a]^2) x |W_next[:, j]|^2, each without and with least-squares reconstruction.
# The decision is made on the validation split; the test split is reported beside it.
#
#   Fashion-MNIST (FMNIST_DIR/{model,data}.h5): --prune-dead --prune-fraction S
#       --prune-scope global, S in FMNIST_SHARES (0.5 0.6 0.7), on RANKS ranks.
#   Tabular (TABULAR_DIR/<task>/{model,data}.h5, the seven tasks of tools/train_tabular.py):
#       --prune-fraction S per SCOPES (layer), S in TABULAR_SHARES (0.25 0.5 0.75), on 1 rank.
# Calibration and refit use /train/x; every compressed model is evaluated on /val and /test.
# Runs without reconstruction read one statistics file per model (calibrate --output-sums).
#
#   bash bench/prune_criterion.sh [BUILD_DIR] [OUT.csv]
#   PART=fmnist|tabular|all (default all), CRITERIA="rate energy variance", RANKS=2
#
# Output: one CSV row per compressed model (OUT.csv, default prune_criterion.csv in a temporary
# directory whose path is printed), then per model family and reconstruction setting the mean
# validation and test accuracy of each criterion over the shares and the count of
# (model, share) cells each criterion wins on validation.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build}
lf=$build/linfold
work=$(mktemp -d /tmp/prune_criterion.XXXXXX)
csv=${2:-$work/prune_criterion.csv}
part=${PART:-all}
criteria=${CRITERIA:-rate energy variance}
ranks=${RANKS:-2}
fdir=${FMNIST_DIR:-/work/models/fmnist}
tdir=${TABULAR_DIR:-/work/models/tabular}
tasks=${TASKS:-digits breast_cancer wine iris synth_a synth_b synth_c}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
export OMPI_MCA_rmaps_base_oversubscribe=1

# LF NP ARGS...: linfold on NP ranks (one rank: without mpiexec, whose start costs more than a
# tabular model's whole compression).
LF() {
  local np=$1
  shift
  if [ "$np" = 1 ]; then "$lf" "$@"; else mpiexec -n "$np" "$lf" "$@"; fi
}

# eval MODEL DATA SPLIT NP -> "accuracy params"
evaluate() {
  local j
  j=$(LF "$4" eval --model "$1" --data "$2:/$3/x" --labels "$2:/$3/y" --json --quiet)
  echo "$(sed -n 's/.*"accuracy": \([0-9.eE+-]*\).*/\1/p' <<< "$j" | head -1)" \
    "$(sed -n 's/.*"params": \([0-9]*\).*/\1/p' <<< "$j" | head -1)"
}

# run FAMILY MODEL_NAME MODEL DATA NP SCOPE SHARE CRITERION RECONSTRUCT(no|yes) STATS [EXTRA...]
run() {
  local family=$1 name=$2 M=$3 D=$4 np=$5 scope=$6 share=$7 by=$8 rec=$9 stats=${10}
  shift 10
  local out=$work/m.h5 src=(--stats "$stats")
  [ "$rec" = yes ] && src=(--data "$D:/train/x" --reconstruct)
  LF "$np" compress --quiet --model "$M" "${src[@]}" "$@" \
    --prune-fraction "$share" --prune-scope "$scope" --prune-by "$by" --out "$out"
  read -r va params < <(evaluate "$out" "$D" val "$np")
  read -r ta _ < <(evaluate "$out" "$D" test "$np")
  echo "$family,$name,$scope,$share,$by,$rec,$params,$va,$ta" | tee -a "$csv"
}

# model FAMILY NAME MODEL DATA NP SCOPE "SHARES" [EXTRA...]: every criterion and setting.
model() {
  local family=$1 name=$2 M=$3 D=$4 np=$5 scope=$6 shares=$7
  shift 7
  LF "$np" calibrate --quiet --model "$M" --data "$D:/train/x" --output-sums \
    --out "$work/s.h5"
  read -r va params < <(evaluate "$M" "$D" val "$np")
  read -r ta _ < <(evaluate "$M" "$D" test "$np")
  echo "$family,$name,-,0,original,-,$params,$va,$ta" | tee -a "$csv"
  for share in $shares; do
    for rec in no yes; do
      for by in $criteria; do
        run "$family" "$name" "$M" "$D" "$np" "$scope" "$share" "$by" "$rec" "$work/s.h5" "$@"
      done
    done
  done
}

echo "family,model,scope,share,criterion,reconstruct,params,val_accuracy,test_accuracy" | tee "$csv"
if [ "$part" = all ] || [ "$part" = fmnist ]; then
  model fmnist fmnist "$fdir/model.h5" "$fdir/data.h5" "$ranks" global \
    "${FMNIST_SHARES:-0.5 0.6 0.7}" --prune-dead
fi
if [ "$part" = all ] || [ "$part" = tabular ]; then
  for scope in ${SCOPES:-layer}; do
    for t in $tasks; do
      model "tabular-$scope" "$t" "$tdir/$t/model.h5" "$tdir/$t/data.h5" 1 "$scope" \
        "${TABULAR_SHARES:-0.25 0.5 0.75}"
    done
  done
fi

# Summary: mean accuracies per criterion, and validation wins per (model, share) cell (ties
# count for every criterion that reaches the best).
echo
# The size a share leaves differs between criteria (the neurons kept fold differently), so the
# mean share of the original parameters is given too.
echo "| family | reconstruct | criterion | cells | mean val accuracy | mean test accuracy | val wins | test wins | mean size |"
echo "|---|---|---|---|---|---|---|---|---|"
awk -F, 'NR > 1 && $5 == "original" { orig[$1 "|" $2] = $7 }
NR > 1 && $5 != "original" {
  k = $1 "|" $6 "|" $5; n[k]++; v[k] += $8; t[k] += $9; fam[k] = $1; rec[k] = $6; by[k] = $5
  size[k] += $7 / orig[$1 "|" $2]
  c = $1 "|" $6 "|" $2 "|" $4
  if (!(c in bv) || $8 > bv[c]) bv[c] = $8
  if (!(c in bt) || $9 > bt[c]) bt[c] = $9
  row[NR] = c "|" k; rv[NR] = $8; rt[NR] = $9
}
END {
  for (r in row) { split(row[r], p, "|"); c = p[1] "|" p[2] "|" p[3] "|" p[4]
    k = p[5] "|" p[6] "|" p[7]; if (rv[r] == bv[c]) wv[k]++; if (rt[r] == bt[c]) wt[k]++ }
  for (k in n) printf "| %s | %s | %s | %d | %.4f | %.4f | %d | %d | %.1f%% |\n", fam[k], rec[k],
    by[k], n[k], v[k] / n[k], t[k] / n[k], wv[k], wt[k], 100 * size[k] / n[k]
}' "$csv" | sort
echo
echo "rows: $csv"
