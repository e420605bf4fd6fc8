#!/usr/bin/env bash
# The SLURM job scripts end to end, on a private single-node SLURM (tests/slurm/slurm_env.sh):
# real slurmctld, slurmd and munge daemons, real sbatch --wait, srun with PMIx.
#
#   test_jobs.sh LINFOLD_BINARY MPIEXEC SOURCE_DIR
#
# 1. jobs/compress.sbatch at its default of 2 tasks: exit 0, and the output is byte for byte
#    the file that `mpiexec -n 2 linfold compress` writes (and evaluates the same);
# 2. a missing dataset: exit 1, one error line naming the file and the dataset, no output left;
# 3. bad arguments (to the job script and to linfold) and no linfold found: exit 2;
# 4. jobs/calibrate-sweep.sbatch, linfold found on PATH: statistics and one CSV row a threshold;
# 5. a job cancelled mid-way through a long `linfold predict`: every rank stops at the next
#    batch boundary, the temporary output is removed, one line says what was interrupted, and
#    the ranks exit with 143. It predicts on LF_TEST_SIGNAL_ROWS generated rows (default
#    1,000,000 x 64, 256 MB in the scratch directory) and cancels the job once rank 0 has logged
#    progress, first with a plain scancel (JobState=CANCELLED ExitCode=0:15), then with
#    scancel --signal=TERM (the script exits 143: JobState=FAILED ExitCode=143:0).
#    LF_TEST_SIGNALS=0 skips it.
#
# Needs root and the packages slurm-wlm slurmctld slurmd munge (tools/dev.sh installs them);
# exits 77 (skipped) when slurmctld is not installed. Takes about 40 s (case 5: 20 s more).
set -euo pipefail
lf=$(realpath "$1") mpiexec=$2 src=$(realpath "$3")
PATH=$PATH:/usr/sbin
unset LINFOLD # each case says how the job finds linfold
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

slurm_env_start "$tmp/slurm" # exports SLURM_CONF
mkdir "$tmp/work"
cd "$tmp/work"
export OPENBLAS_NUM_THREADS=1

status=0
fail() { echo "FAIL: $*"; status=1; }
# JobState and ExitCode of a job, as scontrol shows them: "JobState=FAILED ExitCode=1:0".
job_state() { scontrol show job "$1" | grep -o -E '(JobState|ExitCode)=[^ ]+' | paste -sd' '; }
# submit NAME SBATCH_ARGS...: sbatch --wait in the background, log in NAME.log, sbatch's exit
# code in NAME.rc and the job's final state in NAME.state (taken at once: SLURM forgets a
# finished job after MinJobAge). The jobs queue in SLURM; submitting them together overlaps
# sbatch's polling intervals.
submit() {
  local name=$1
  shift
  (rc=0; sbatch --wait --parsable --output="$name.log" "$@" > "$name.id" || rc=$?
   echo "$rc" > "$name.rc"; job_state "$(cat "$name.id")" > "$name.state") &
  bg_pids+=("$!")
}
# check_job NAME EXPECTED_RC EXPECTED_STATE: sbatch's exit code and the job's final state.
check_job() {
  local name=$1 want_rc=$2 want_state=$3 rc id state
  rc=$(cat "$name.rc") id=$(cat "$name.id") state=$(cat "$name.state")
  echo "$name: job $id, sbatch --wait exit $rc, $state"
  if [ "$rc" -ne "$want_rc" ] || [ "$state" != "$want_state" ]; then
    fail "$name: expected exit $want_rc and $want_state"
    sed 's/^/  log: /' "$name.log"
  fi
}
# The log's linfold error lines.
error_lines() { grep -E '^linfold: .*error:' "$1" || true; }
no_outputs() { # no_outputs CASE FILE: neither FILE nor a temporary of it is left
  local left
  left=$(ls -d "$2" "$2".tmp-* 2>/dev/null || true)
  [ -z "$left" ] || fail "$1: files left behind: $left"
}
eval_json() {
  "$lf" eval --quiet --json --model "$1" --data "$data/data.h5:/test/x" \
    --labels "$data/data.h5:/test/y" --reference "$model"
}
json_field() { grep -o "\"$2\": [0-9.e+-]*" <<< "$1"; }

# The reference: the same compression run directly on 2 MPI ranks.
"$mpiexec" -n 2 "$lf" compress --quiet --model "$model" --data "$data/data.h5:/train/x" \
  --threshold 0.9 --prune-dead --out ref.h5

t0=$SECONDS
# 1. Compression at the job's default task count (2), binary given by LINFOLD.
LINFOLD=$lf submit compress "$src/jobs/compress.sbatch" "$model" "$data/data.h5:/train/x" \
  out.h5 --threshold 0.9 --prune-dead
# 2. A missing dataset.
LINFOLD=$lf submit missing "$src/jobs/compress.sbatch" "$model" "$data/data.h5:/nope" \
  missing.h5 --threshold 0.9
# 3. Bad arguments: to the job script, to linfold; and no linfold to run.
LINFOLD=$lf submit usage "$src/jobs/compress.sbatch" "$model"
LINFOLD=$lf submit badflag "$src/jobs/compress.sbatch" "$model" "$data/data.h5:/train/x" \
  badflag.h5 --no-such-flag
PATH=/usr/bin:/bin submit nolinfold "$src/jobs/compress.sbatch" "$model" \
  "$data/data.h5:/train/x" nolinfold.h5
# 4. Calibrate once, sweep thresholds; linfold found on PATH this time.
PATH="$(dirname "$lf"):$PATH" submit sweep "$src/jobs/calibrate-sweep.sbatch" "$model" \
  "$data/data.h5:/train/x" "$data/data.h5:/val/x" "$data/data.h5:/val/y" sweep
wait "${bg_pids[@]}"
bg_pids=()
echo "6 jobs done in $((SECONDS - t0)) s"

check_job compress 0 "JobState=COMPLETED ExitCode=0:0"
grep -q 'on 2 ranks' compress.log || fail "compress: the log does not show 2 MPI ranks"
if [ ! -f out.h5 ]; then
  fail "compress: no out.h5"
else
  cmp -s ref.h5 out.h5 || fail "compress: out.h5 (sbatch/srun) differs from mpiexec -n 2's output"
  ref_eval=$(eval_json ref.h5) job_eval=$(eval_json out.h5)
  for field in accuracy top1_agreement; do
    [ "$(json_field "$job_eval" $field)" = "$(json_field "$ref_eval" $field)" ] ||
      fail "compress: eval $field: $job_eval vs mpiexec's $ref_eval"
  done
  echo "compress: out.h5 equals mpiexec's byte for byte; eval $job_eval"
fi

check_job missing 1 "JobState=FAILED ExitCode=1:0"
errors=$(error_lines missing.log)
if [ "$(grep -c . <<< "$errors")" -ne 1 ] || ! grep -q "$data/data.h5" <<< "$errors" ||
   ! grep -q '/nope' <<< "$errors"; then
  fail "missing: expected one error line naming $data/data.h5 and /nope, got: ${errors:-none}"
fi
no_outputs missing missing.h5

check_job usage 2 "JobState=FAILED ExitCode=2:0"
grep -q '^usage: sbatch jobs/compress.sbatch' usage.log || fail "usage: no usage line"
check_job badflag 2 "JobState=FAILED ExitCode=2:0"
[ "$(error_lines badflag.log | grep -c 'no-such-flag')" -eq 1 ] ||
  fail "badflag: expected one error line naming --no-such-flag"
no_outputs badflag badflag.h5
check_job nolinfold 2 "JobState=FAILED ExitCode=2:0"
grep -q '^compress.sbatch: linfold not found' nolinfold.log || fail "nolinfold: no clear message"

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

# 5. Cancelled mid-way. (Before linfold handled SIGTERM, the ranks died of it, srun logged
# "tasks 0-1: Terminated", and OUT.h5.tmp-PID was left behind.) What SLURM reports:
#  - plain `scancel JOB` signals the batch shell too, so the job is CANCELLED with
#    ExitCode=0:15 whatever the ranks do; srun's last words show their status;
#  - `scancel --signal=TERM JOB` signals the job steps only: srun and the script exit 143 and
#    the job is FAILED with ExitCode=143:0, which sbatch --wait returns.
if [ "${LF_TEST_SIGNALS:-1}" = 1 ]; then
  rows=${LF_TEST_SIGNAL_ROWS:-1000000}
  /usr/bin/python3 - "$rows" <<'EOF'
import sys, h5py, numpy as np
rows, chunk = int(sys.argv[1]), 250000
rng = np.random.default_rng(7)
with h5py.File("big.h5", "w") as f:
    x = f.create_dataset("x", (rows, 64), dtype="f4")
    for i in range(0, rows, chunk):
        n = min(chunk, rows - i)
        x[i:i + n] = rng.random((n, 64), dtype=np.float32) * 16
EOF
  cat > predict.sbatch <<'EOF'
#!/bin/bash
#SBATCH --ntasks=2
#SBATCH --cpus-per-task=1
set -euo pipefail
export OPENBLAS_NUM_THREADS=1
srun "$LINFOLD" predict --progress --model "$1" --data "$2" --out "$3"
EOF
  # cancel_job NAME SCANCEL_FLAGS EXPECTED_STATE: start the job, cancel it once rank 0 has
  # logged progress, check the state, the log and the files left.
  cancel_job() {
    local name=$1 flags=$2 want_state=$3 rc=0 id state t0=$SECONDS pid lines
    LINFOLD=$lf sbatch --wait --parsable --output="$name.log" predict.sbatch "$model" big.h5:/x \
      "$name.h5" > "$name.id" &
    pid=$!
    bg_pids+=("$pid")
    # Nothing tells when a job has got going but its log: poll it.
    until grep -q '^linfold: predict: [0-9]*/' "$name.log" 2>/dev/null; do
      if ! kill -0 "$pid" 2>/dev/null || ((SECONDS - t0 > 60)); then
        fail "$name: the job ended or showed no progress in 60 s"
        sed 's/^/  log: /' "$name.log" 2>/dev/null
        return
      fi
      sleep 0.2
    done
    id=$(cat "$name.id")
    # shellcheck disable=SC2086
    scancel $flags "$id"
    wait "$pid" || rc=$?
    state=$(job_state "$id")
    echo "$name: job $id cancelled (scancel $flags), sbatch --wait exit $rc, $state"
    sed 's/^/  log: /' "$name.log"
    [ "$state" = "$want_state" ] || fail "$name: expected $want_state"
    lines=$(grep -c -E '^linfold: .*interrupted' "$name.log" || true)
    [ "$lines" -eq 1 ] || fail "$name: expected one 'interrupted' line, got $lines"
    grep -q -E '^srun: error: .*: tasks? [0-9-]+: Exited with exit code 143$' "$name.log" ||
      fail "$name: the ranks did not exit with status 143"
    no_outputs "$name" "$name.h5"
  }
  cancel_job cancel "" "JobState=CANCELLED ExitCode=0:15"
  cancel_job sigterm "--signal=TERM" "JobState=FAILED ExitCode=143:0"
else
  echo "cancel: skipped (LF_TEST_SIGNALS=0)"
fi

[ "$status" -eq 0 ] && echo "slurm jobs: all cases passed"
exit "$status"
