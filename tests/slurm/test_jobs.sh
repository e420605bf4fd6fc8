#!/usr/bin/env bash
# shellcheck disable=SC2016 # (wait_for takes conditions to evaluate later, in single quotes)
# The SLURM job scripts end to end, on a private single-node SLURM (tests/slurm/slurm_env.sh):
# real slurmctld, slurmd and munge daemons, real sbatch --wait, srun with PMIx. The node claims 4
# CPUs (SLURM_ENV_CPUS) so that a job array's task limit, not the node's size, is what binds.
#
#   test_jobs.sh LINFOLD_BINARY MPIEXEC SOURCE_DIR
#
# Every output model is compared byte for byte with the one `mpiexec -n 2 linfold run` writes
# for the same pipeline in a copy of the work directory, run by the same relative path (a model
# records its source model's path as written).
#
#  1. array: jobs/registry-array.sbatch --array=0-3%2 over a 4-model manifest, 1 task each: never
#     more than 2 tasks run at once although the node has room for 4; every task exits 0 and
#     runs its --shard K/4; then a job with --dependency=afterany on the array runs the plain
#     registry: it skips all 4 models and writes the summary of all 4;
#  2. compress: jobs/compress.sbatch on the digits pipeline at its default of 2 tasks: exit 0;
#  3. missing: a pipeline naming a missing dataset: exit 2, its problem line names the file and
#     the dataset, nothing written; nan: a NaN in the calibration rows: exit 1, one error line;
#  4. usage, badflag, nolinfold, oldform: bad arguments to the script or to linfold, no linfold
#     found, the old MODEL DATA OUT form: exit 2 with a clear line;
#  5. sweep: jobs/calibrate-sweep.sbatch, linfold found on PATH: one CSV row a threshold;
#  6. registry: jobs/registry.sbatch on 3 models, one corrupt: exit 3 (not requeued), the summary
#     names the corrupt one, the two others equal mpiexec's;
#  7. requeue: a pipeline that compresses a generated wide model (64-1024-1024-1024-10, random
#     weights) on LF_TEST_SIGNAL_ROWS generated rows (default 200,000, several seconds on 2 ranks)
#     gets `scancel --signal=USR1` once rank 0 logged progress: the ranks exit 75 at a
#     checkpoint, the script requeues the job, the requeued run resumes, and the job ends
#     COMPLETED with Restarts=1 and the uninterrupted run's model, no checkpoint left;
#  8. cancel: the same pipeline under a plain `scancel`: the job is CANCELLED, the ranks leave a
#     checkpoint and no model; submitting the same command again resumes and gives that model;
#  9. nightly: the command line of jobs/nightly.cron, run as cron would (sh, PATH=/usr/bin:/bin,
#     a tree holding jobs/ and build/linfold), three times while the first job runs: the second
#     job waits (Reason=Dependency, singleton) and starts after the first ended; the third call
#     submits nothing.
# LF_TEST_SIGNALS=0 skips 7 and 8. Cases that need a linfold feature not built yet (registries:
# `run --shard`; checkpoints: exit 75 on SIGUSR1) print "SKIP (missing feature: ...)" instead.
#
# Needs root and the packages slurm-wlm slurmctld slurmd munge (tools/dev.sh installs them);
# exits 77 (skipped) when slurmctld is not installed.
set -euo pipefail
lf=$(realpath "$1") mpiexec=$2 src=$(realpath "$3")
PATH=$PATH:/usr/sbin
unset LINFOLD LINFOLD_ROOT LINFOLD_SHARDS SBATCH_ARRAY_INX # each case says what the job gets
if ! command -v slurmctld > /dev/null; then
  echo "SKIP: slurmctld is not installed (apt-get install slurm-wlm slurmctld slurmd munge)"
  exit 77
fi
here=$src/tests/slurm
data=$src/tests/data/digits
model=$data/model.h5
# shellcheck source=tests/slurm/slurm_env.sh
source "$here/slurm_env.sh"

tmp=$(mktemp -d)
chmod 0755 "$tmp" # munged, running as the munge user, must reach its socket under it
bg_pids=()
# shellcheck disable=SC2317 # (called by the trap)
cleanup() {
  local pid
  # Background sbatch --wait runs (and the subshells around them) would outlive the daemons.
  for pid in "${bg_pids[@]}"; do
    pkill -P "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
  done
  slurm_env_stop "$tmp/slurm"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SLURM_ENV_CPUS=4 slurm_env_start "$tmp/slurm" # exports SLURM_CONF
mkdir "$tmp/work"
cd "$tmp/work"
export OPENBLAS_NUM_THREADS=1
t_start=$SECONDS

status=0
fail() { echo "FAIL: $*"; status=1; }
skipped=()
skip() { echo "SKIP (missing feature: $1): $2"; skipped+=("$2"); }
# JobState and ExitCode of a job, as scontrol shows them: "JobState=FAILED ExitCode=1:0".
job_state() { scontrol show job "$1" | grep -o -E '(JobState|ExitCode)=[^ ]+' | paste -sd' '; }
job_field() { scontrol show job "$1" | grep -o -E "(^| )$2=[^ ]*" | head -n 1 | cut -d= -f2-; }
# submit NAME SBATCH_ARGS...: sbatch --wait in the background, log in NAME.log, sbatch's exit
# code in NAME.rc, the job's final state in NAME.state and its restart count in NAME.restarts
# (taken at once: SLURM forgets a finished job after MinJobAge). The jobs queue in SLURM;
# submitting them together overlaps sbatch's polling intervals.
submit() {
  local name=$1
  shift
  (rc=0; sbatch --wait --parsable --output="$name.log" "$@" > "$name.id" || rc=$?
   id=$(cat "$name.id")
   job_state "$id" > "$name.state"
   job_field "$id" Restarts > "$name.restarts"
   echo "$rc" > "$name.rc") &
  bg_pids+=("$!")
}
# check_job NAME EXPECTED_RC EXPECTED_STATE: sbatch's exit code and the job's final state.
check_job() {
  local name=$1 want_rc=$2 want_state=$3 rc id state
  rc=$(cat "$name.rc") id=$(cat "$name.id") state=$(cat "$name.state")
  echo "$name: job $id, sbatch --wait exit $rc, $state, restarts $(cat "$name.restarts")"
  if [ "$rc" -ne "$want_rc" ] || [ "$state" != "$want_state" ]; then
    fail "$name: expected exit $want_rc and $want_state"
    sed 's/^/  log: /' "$name.log"
  fi
}
# wait_for NAME SECONDS CONDITION: poll CONDITION every 0.2 s.
wait_for() {
  local name=$1 seconds=$2 t0=$SECONDS
  shift 2
  until eval "$*"; do
    if ((SECONDS - t0 > seconds)); then
      fail "$name: waited ${seconds} s for: $*"
      return 1
    fi
    sleep 0.2
  done
}
# The log's linfold error lines.
error_lines() { grep -E '^linfold: .*error:' "$1" || true; }
no_outputs() { # no_outputs CASE FILE: neither FILE nor a temporary of it is left
  local left
  left=$(ls -d "$2" "$2".tmp-* 2>/dev/null || true)
  [ -z "$left" ] || fail "$1: files left behind: $left"
}
same_file() { # same_file CASE REFERENCE OUTPUT
  if [ ! -f "$3" ]; then
    fail "$1: no $3"
  elif ! cmp -s "$2" "$3"; then
    fail "$1: $3 differs from mpiexec's $2"
  else
    echo "$1: $3 equals mpiexec's byte for byte"
  fi
}
json_get() { # json_get FILE EXPRESSION: the Python expression on the file's JSON, named d
  /usr/bin/python3 -c 'import json, sys
print(eval(sys.argv[2], {}, {"d": json.load(open(sys.argv[1]))}))' "$@"
}
mpirun2() { "$mpiexec" -n 2 "$lf" "$@"; }

has_registry=0
"$lf" run --help 2>/dev/null | grep -q -- '--shard' && has_registry=1

# ------------------------------------------------------------------ inputs and pipelines
# pipeline DIR NAME CALIBRATION [extra top-level lines [MODEL]]: DIR/NAME.yaml compressing
# MODEL (default: the digits model), inputs by absolute paths, outputs under DIR/out.
pipeline() {
  mkdir -p "$1"
  cat > "$1/$2.yaml" <<EOF
version: 1
model: ${5:-$model}
calibration: $3
${4:-}
stages:
  - calibrate: {batch: 1024}
  - prune: {dead: true}
  - fold: {threshold: 0.9}
output: {model: out/$2.h5}
EOF
}
# registry DIR MODELS_LINE: DIR/reg.yaml over models DIR/models/*.h5 (copies of the digits model).
registry() {
  mkdir -p "$1/models"
  cat > "$1/reg.yaml" <<EOF
version: 1
models: $2
calibration: $data/data.h5:/val/x
stages:
  - calibrate: {batch: 1024}
  - prune: {dead: true}
  - fold: {threshold: 0.9}
output: {model: "out/{stem}.h5", summary: out/summary}
EOF
}
# nan.h5: the validation rows with one NaN. wide.h5: a model whose calibration takes seconds
# (2.2 M parameters, 9 MB), and wide-data.h5 its generated rows (25 MB at the default).
/usr/bin/python3 - "$data/data.h5" "${LF_TEST_SIGNAL_ROWS:-200000}" "$src/tools" <<'EOF'
import sys, h5py, numpy as np
src, rows = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
import linfold_format
with h5py.File(src, "r") as f:
    x = f["val/x"][...]
x[100, 3] = np.nan
with h5py.File("nan.h5", "w") as f:
    f["x"] = x
rng = np.random.default_rng(5)
widths = [64, 1024, 1024, 1024, 10]
linfold_format.save_model("wide.h5", [
    {"weight": rng.normal(0, (2 / a) ** 0.5, (b, a)).astype(np.float32),
     "bias": rng.normal(0, 0.1, b).astype(np.float32),
     "activation": "relu" if i < len(widths) - 2 else "identity"}
    for i, (a, b) in enumerate(zip(widths, widths[1:]))])
with h5py.File("wide-data.h5", "w") as f:
    f["x"] = rng.random((rows, 64), dtype=np.float32) * 16
EOF
pipeline job digits "$data/data.h5:/train/x"
pipeline missing missing "$data/data.h5:/nope"
pipeline nan nan "$PWD/nan.h5:/x"
for d in sig cancel; do
  pipeline "$d" big "$PWD/wide-data.h5:/x" "checkpoint: {every-batches: 10}" "$PWD/wide.h5"
done
registry reg "{glob: models/*.h5}"
cp "$model" reg/models/m0.h5
cp "$model" reg/models/m1.h5
head -c 60000 "$model" > reg/models/m2.h5 # a truncated HDF5 file
registry arr "{manifest: models.txt}"
for m in a0 a1 a2 a3; do
  cp "$model" "arr/models/$m.h5"
  echo "models/$m.h5"
done > arr/models.txt
# The nightly tree: jobs/ and build/linfold, as in a repository (cron's working directory).
mkdir -p nightly/jobs nightly/build nightly/reg/models
cp "$src"/jobs/*.sbatch "$src"/jobs/nightly-submit.sh nightly/jobs/
ln -s "$lf" nightly/build/linfold
registry nightly/reg "{glob: models/*.h5}"
cp wide.h5 nightly/reg/models/n0.h5 # a few seconds: time to see the next job wait
sed -i "s|^calibration: .*|calibration: $PWD/wide-data.h5:/x|" nightly/reg/reg.yaml
# The references' tree: the same relative paths, run from its top as the jobs are from work.
mkdir ../refs
cp -a job sig reg arr ../refs/
ref() { (cd ../refs && mpirun2 run "$@" --quiet > /dev/null 2>&1) || true; }

# ------------------------------------------------------------------ 1. the job array
# Alone on the node, so that only the limit keeps more than 2 of its 1-CPU tasks from running.
if [ "$has_registry" = 1 ]; then
  LINFOLD=$lf submit array --array=0-3%2 --ntasks=1 --output=array-%a.log \
    "$src/jobs/registry-array.sbatch" arr/reg.yaml
  # The references, meanwhile (mpiexec, outside SLURM).
  ref arr/reg.yaml
  wait_for array 10 '[ -s array.id ]'
  arr_id=$(cat array.id)
  throttle=$(job_field "$arr_id" ArrayTaskThrottle)
  most=0
  while [ ! -s array.rc ]; do
    n=$(squeue -h -r -t R -j "$arr_id" 2>/dev/null | wc -l)
    ((n > most)) && most=$n
    sleep 0.2
  done
  # The summary job: the plain registry once every task has ended, whatever their outcome.
  LINFOLD=$lf submit final --dependency=afterany:"$arr_id" "$src/jobs/registry.sbatch" arr/reg.yaml
fi
# The other references.
ref job/digits.yaml
[ "$has_registry" = 1 ] && ref reg/reg.yaml # exits 3 (m2)
[ "${LF_TEST_SIGNALS:-1}" = 1 ] && ref sig/big.yaml
if [ "$has_registry" = 1 ]; then
  wait "${bg_pids[@]}"
  bg_pids=()
  echo "array: job $arr_id, ArrayTaskThrottle=$throttle, at most $most tasks running at once," \
    "sbatch --wait exit $(cat array.rc)"
  [ "$throttle" = 2 ] || fail "array: ArrayTaskThrottle=$throttle, expected 2"
  if [ "$most" -lt 1 ] || [ "$most" -gt 2 ]; then
    fail "array: $most tasks ran at once, expected 1 or 2"
  fi
  [ "$(cat array.rc)" = 0 ] || fail "array: sbatch --wait exited $(cat array.rc)"
  for k in 0 1 2 3; do
    grep -q -- "--shard $k/4" "array-$k.log" || fail "array: task $k did not run --shard $k/4"
    grep -q '^linfold: run finished in' "array-$k.log" || fail "array: task $k did not finish"
  done
  for m in a0 a1 a2 a3; do same_file array "../refs/arr/out/$m.h5" "arr/out/$m.h5"; done
  check_job final 0 "JobState=COMPLETED ExitCode=0:0"
  if [ -f arr/out/summary.json ]; then
    got=$(json_get arr/out/summary.json '(d["models"], d["ok"], d["skipped_this_run"])')
    [ "$got" = "(4, 4, 4)" ] ||
      fail "final: summary (models, ok, skipped this run) = $got, expected (4, 4, 4)"
    echo "final: summary (models, ok, skipped this run) = $got"
  else
    fail "final: no arr/out/summary.json"
  fi
else
  skip "registry (linfold run --shard)" "1. array, 6. registry"
fi

# ------------------------------------------------------------------ 2-9, submitted together
t0=$SECONDS
LINFOLD=$lf submit compress "$src/jobs/compress.sbatch" job/digits.yaml
LINFOLD=$lf submit missing "$src/jobs/compress.sbatch" missing/missing.yaml
LINFOLD=$lf submit nan "$src/jobs/compress.sbatch" nan/nan.yaml
LINFOLD=$lf submit usage "$src/jobs/compress.sbatch"
LINFOLD=$lf submit badflag "$src/jobs/compress.sbatch" job/digits.yaml --no-such-flag
PATH=/usr/bin:/bin submit nolinfold "$src/jobs/compress.sbatch" job/digits.yaml
LINFOLD=$lf submit oldform "$src/jobs/compress.sbatch" "$model" "$data/data.h5:/train/x" old.h5
PATH="$(dirname "$lf"):$PATH" submit sweep "$src/jobs/calibrate-sweep.sbatch" "$model" \
  "$data/data.h5:/train/x" "$data/data.h5:/val/x" "$data/data.h5:/val/y" sweep
if [ "$has_registry" = 1 ]; then
  LINFOLD=$lf submit registry "$src/jobs/registry.sbatch" reg/reg.yaml
fi

# 7 and 8: signal a job once rank 0 has logged calibration progress.
signal_job() { # signal_job NAME SCANCEL_ARGS...
  local name=$1
  shift
  wait_for "$name" 60 \
    "[ -s $name.id ] && grep -q '^linfold: calibrate: [0-9]*/' $name.log 2>/dev/null" || return 0
  scancel "$@" "$(cat "$name.id")"
  echo "$name: job $(cat "$name.id"): scancel${1:+ $*} after the first progress line"
}
if [ "${LF_TEST_SIGNALS:-1}" = 1 ]; then
  LINFOLD=$lf submit requeue "$src/jobs/compress.sbatch" sig/big.yaml
  LINFOLD=$lf submit cancel "$src/jobs/compress.sbatch" cancel/big.yaml
  # Both at once: one after the other, the second job could finish before its signal.
  # (wait on these two only: the SLURM daemons are this shell's background children too)
  signal_job requeue --signal=USR1 &
  signal_requeue=$!
  signal_job cancel &
  wait "$signal_requeue" "$!"
fi

# 9. The nightly cron line, three times.
# The command of the crontab line: what follows its five time fields.
cron_line=$(grep -E '^[0-9*]' "$src/jobs/nightly.cron" | sed -E 's/^([^ ]+ +){5}//')
cron() { # as cron runs it: /bin/sh, a bare environment, the crontab's variables
  env -i HOME="$tmp" PATH=/usr/bin:/bin SLURM_CONF="$SLURM_CONF" LINFOLD_ROOT="$PWD/nightly" \
    LINFOLD_REGISTRY=reg/reg.yaml OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    OPENBLAS_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1 /bin/sh -c "$cron_line"
}
nightly_jobs() { squeue -h -n linfold-nightly -o '%i %T %r' | sort -n; }
# watch ID NAME: NAME.state gets the job's last state, start and end, once it has ended.
watch_job() {
  (while :; do
     s=$(scontrol show job "$1" 2>/dev/null |
       grep -o -E '(JobState|ExitCode|StartTime|EndTime)=[^ ]+' | paste -sd' ')
     case $s in
       *JobState=PENDING* | *JobState=RUNNING* | *JobState=COMPLETING* | "") ;;
       *) break ;;
     esac
     sleep 0.5
   done
   echo "$s" > "$2.state") &
  bg_pids+=("$!")
}
if [ "$has_registry" = 1 ]; then
  cron || fail "nightly: the cron line failed"
  wait_for nightly 30 '[ -n "$(nightly_jobs | grep RUNNING)" ]' || true
  n1=$(nightly_jobs | head -n 1 | cut -d' ' -f1)
  cron || fail "nightly: the cron line failed"
  n2=$(nightly_jobs | sed -n 2p | cut -d' ' -f1)
  watch_job "$n1" nightly1
  watch_job "${n2:-0}" nightly2
  wait_for nightly 5 '[ "$(nightly_jobs | sed -n 2p | cut -d" " -f3)" = Dependency ]' || true
  queue=$(nightly_jobs | paste -sd';')
  cron || fail "nightly: the cron line failed"
  echo "nightly: queue after 2 submissions: $queue; now $(nightly_jobs | paste -sd';')"
  [[ $queue == "$n1 RUNNING None;$n2 PENDING Dependency" ]] ||
    fail "nightly: expected $n1 RUNNING and $n2 PENDING (Dependency), got: $queue"
  [ "$(nightly_jobs | wc -l)" -le 2 ] || fail "nightly: a third job was submitted"
  grep -q 'already waiting' nightly/nightly-submit.log || fail "nightly: no 'already waiting' line"
else
  skip "registry (linfold run --shard)" "9. nightly"
fi

wait "${bg_pids[@]}"
bg_pids=()
echo "jobs 2-9 done in $((SECONDS - t0)) s"

check_job compress 0 "JobState=COMPLETED ExitCode=0:0"
grep -q 'on 2 ranks\|2 ranks x' compress.log || fail "compress: the log does not show 2 MPI ranks"
same_file compress ../refs/job/out/digits.h5 job/out/digits.h5

check_job missing 2 "JobState=FAILED ExitCode=2:0"
grep -q -E "^missing/missing.yaml:[0-9]+:[0-9]+: $data/data.h5: .*/nope" missing.log ||
  fail "missing: no problem line (FILE:LINE:COLUMN) naming $data/data.h5 and /nope"
no_outputs missing missing/out/missing.h5
check_job nan 1 "JobState=FAILED ExitCode=1:0"
errors=$(error_lines nan.log)
if [ "$(grep -c . <<< "$errors")" -ne 1 ] ||
   ! grep -q 'row 100, column 3 is NaN' <<< "$errors"; then
  fail "nan: expected one error line naming row 100, column 3, got: ${errors:-none}"
fi
no_outputs nan nan/out/nan.h5

check_job usage 2 "JobState=FAILED ExitCode=2:0"
grep -q '^usage: sbatch jobs/compress.sbatch PIPELINE.yaml' usage.log || fail "usage: no usage line"
check_job badflag 2 "JobState=FAILED ExitCode=2:0"
[ "$(error_lines badflag.log | grep -c 'no-such-flag')" -eq 1 ] ||
  fail "badflag: expected one error line naming --no-such-flag"
check_job nolinfold 2 "JobState=FAILED ExitCode=2:0"
grep -q '^compress.sbatch: linfold not found' nolinfold.log || fail "nolinfold: no clear message"
check_job oldform 2 "JobState=FAILED ExitCode=2:0"
grep -q "^compress.sbatch: '$model' is a model: the job runs a pipeline file" oldform.log ||
  fail "oldform: no line saying the job takes a pipeline"
no_outputs oldform old.h5

check_job sweep 0 "JobState=COMPLETED ExitCode=0:0"
[ -s sweep.stats.h5 ] || fail "sweep: no sweep.stats.h5"
if [ ! -s sweep.sweep.csv ]; then
  fail "sweep: no sweep.sweep.csv"
else
  thresholds=$(tail -n +2 sweep.sweep.csv | cut -d, -f1 | paste -sd,)
  [ "$thresholds" = "1,0.99,0.98,0.95,0.9,0.85,0.8" ] ||
    fail "sweep: CSV rows for thresholds $thresholds, expected 1,0.99,0.98,0.95,0.9,0.85,0.8"
  echo "sweep: $(($(wc -l < sweep.sweep.csv) - 1)) CSV rows, thresholds $thresholds"
fi

if [ "$has_registry" = 1 ]; then
  check_job registry 3 "JobState=FAILED ExitCode=3:0"
  [ "$(cat registry.restarts)" = 0 ] || fail "registry: requeued after exit 3"
  if [ -f reg/out/summary.json ]; then
    got=$(json_get reg/out/summary.json \
      '(d["models"], d["ok"], [r["stem"] for r in d["rows"] if r["status"] == "failed"])')
    echo "registry: summary (models, ok, failed) = $got"
    [ "$got" = "(3, 2, ['m2'])" ] || fail "registry: expected (3, 2, ['m2'])"
  else
    fail "registry: no reg/out/summary.json"
  fi
  grep -q 'm2 FAILED' registry.log || fail "registry: the log does not say m2 failed"
  for m in m0 m1; do same_file registry "../refs/reg/out/$m.h5" "reg/out/$m.h5"; done
  no_outputs registry reg/out/m2.h5

  for k in 1 2; do
    s=$(cat "nightly$k.state")
    echo "nightly: job $([ $k = 1 ] && echo "$n1" || echo "$n2"): $s"
    [[ $s == "JobState=COMPLETED ExitCode=0:0 "* ]] || fail "nightly: job $k did not complete"
  done
  end1=$(grep -o 'EndTime=[^ ]*' nightly1.state | cut -d= -f2)
  start2=$(grep -o 'StartTime=[^ ]*' nightly2.state | cut -d= -f2)
  if [ -z "$end1" ] || [[ $start2 < $end1 ]]; then
    fail "nightly: the second job started at $start2, before the first ended at $end1"
  fi
  for j in "$n1" "$n2"; do
    grep -q '^linfold: run finished in' "nightly/linfold-nightly-$j.log" ||
      fail "nightly: job $j's log (in the cron line's directory) has no finished run"
  done
  grep -q 'n0 compressed' "nightly/linfold-nightly-$n1.log" ||
    fail "nightly: the first run did not compress n0"
fi

# 7 and 8. Before checkpoints, SIGUSR1 and SIGTERM stopped linfold with 138 or 143 and no
# checkpoint; the job then failed or was cancelled with nothing to resume.
no_checkpoint_left() { # CASE DIR: the checkpoint is removed once the outputs are written
  if compgen -G "$2/*ckpt*" > /dev/null; then fail "$1: checkpoint left: $(ls "$2"/*ckpt*)"; fi
}
no_checkpoint() {
  grep -q -E 'interrupted by SIG(USR1|TERM) during calibrate.*no output was written' "$1.log"
}
if [ "${LF_TEST_SIGNALS:-1}" = 1 ]; then
  sed 's/^/  requeue log: /' requeue.log
  if [ "$(cat requeue.state)" = "JobState=FAILED ExitCode=138:0" ] && no_checkpoint requeue; then
    skip "checkpoint (exit 75 on SIGUSR1)" "7. requeue"
  else
    check_job requeue 0 "JobState=COMPLETED ExitCode=0:0"
    [ "$(cat requeue.restarts)" = 1 ] ||
      fail "requeue: Restarts=$(cat requeue.restarts), expected 1"
    grep -q -E '^srun: error: .*: tasks? [0-9-]+: Exited with exit code 75$' requeue.log ||
      fail "requeue: the ranks did not exit with 75"
    grep -q "^compress.sbatch: stopped at a checkpoint; job $(cat requeue.id) requeued" \
      requeue.log ||
      fail "requeue: the script did not requeue the job"
    second=$(sed -n "/^compress.sbatch: job $(cat requeue.id) run 2 /,\$p" requeue.log)
    [ -n "$second" ] || fail "requeue: the log has no second run"
    grep -q -E 'checkpoint written to .*big\.h5\.ckpt\.h5 .*\(SIGUSR1\)' requeue.log ||
      fail "requeue: no line saying the checkpoint was written on SIGUSR1"
    grep -q -E '^linfold: checkpoint: resuming from .*big\.h5\.ckpt\.h5' <<< "$second" ||
      fail "requeue: the second run does not say it resumed from the checkpoint"
    same_file requeue ../refs/sig/out/big.h5 sig/out/big.h5
    no_checkpoint_left requeue sig/out
  fi
  sed 's/^/  cancel log: /' cancel.log
  if [ "$(cat cancel.state)" = "JobState=CANCELLED ExitCode=0:15" ] && no_checkpoint cancel; then
    skip "checkpoint (exit 75 on SIGTERM)" "8. cancel"
  else
    check_job cancel 1 "JobState=CANCELLED ExitCode=0:15" # sbatch --wait: 1 for a signal
    grep -q -E '^srun: error: .*: tasks? [0-9-]+: Exited with exit code 75$' cancel.log ||
      fail "cancel: the ranks did not exit with 75"
    no_outputs cancel cancel/out/big.h5
    echo "cancel: left in cancel/out: $(ls -A cancel/out 2>/dev/null | paste -sd' ')"
    [ -f cancel/out/big.h5.ckpt.h5 ] || fail "cancel: no checkpoint cancel/out/big.h5.ckpt.h5"
    grep -q -E 'checkpoint written to .*big\.h5\.ckpt\.h5 .*\(SIGTERM\)' cancel.log ||
      fail "cancel: no line saying the checkpoint was written on SIGTERM"
    LINFOLD=$lf submit resubmit "$src/jobs/compress.sbatch" cancel/big.yaml
    wait "${bg_pids[@]}"
    bg_pids=()
    check_job resubmit 0 "JobState=COMPLETED ExitCode=0:0"
    grep -q -E '^linfold: checkpoint: resuming from .*big\.h5\.ckpt\.h5' resubmit.log ||
      fail "resubmit: the run does not say it resumed from the checkpoint"
    same_file resubmit ../refs/sig/out/big.h5 cancel/out/big.h5
    no_checkpoint_left resubmit cancel/out
  fi
else
  echo "requeue, cancel: skipped (LF_TEST_SIGNALS=0)"
fi

echo "slurm jobs: $((SECONDS - t_start)) s"
if [ ${#skipped[@]} -gt 0 ]; then
  echo "SKIPPED for features linfold lacks: ${skipped[*]}"
fi
[ "$status" -eq 0 ] && echo "slurm jobs: all cases run passed"
exit "$status"
