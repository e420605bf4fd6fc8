#!/usr/bin/env bash
# The fuzz_replay test (docs/fuzzing.md): every libFuzzer target replays its seed corpus, then
# runs a fixed number of fresh mutants from a fixed seed, all under ASan and UBSan with the limits
# below. The targets run side by side; the test fails when any of them reports a crash, a hang
# (an input that uses 10 s of CPU time), an allocation over -malloc_limit_mb, an RSS over
# -rss_limit_mb or any sanitizer report. Reproducers are left in WORK/<target>/artifacts/.
#
#   bash replay.sh WORK CORPUS_ROOT FUZZ_BINARY...
#
# WORK is emptied first. The corpus of target fuzz_<kind> is CORPUS_ROOT/<kind>; it is only read:
# new inputs go to WORK/<kind>/new. LF_FUZZ_MUTANTS (default 300) sets the mutants per target.
set -euo pipefail

if (($# < 3)); then
  echo "usage: bash replay.sh WORK CORPUS_ROOT FUZZ_BINARY..." >&2
  exit 2
fi
work=$1
corpus=$2
shift 2
mutants=${LF_FUZZ_MUTANTS:-300}

# Limits. An input is at most 64 KB (-max_len). No single allocation may exceed 256 MB: the
# largest a valid 64 KB file can justify is its data inflated by deflate's best ratio (about
# 1000:1, so about 64 MB), and HDF5's own buffers are a few MB; anything larger was sized from a
# dimension or count the file's bytes cannot back. The RSS limit (the whole process) covers MPI,
# HDF5 and ASan: about 80 MB at start, plus up to 256 MB that ASan's quarantine keeps of freed
# memory; a few hundred inputs peak near 350 MB. An input that uses 10 s of CPU time is a hang
# (LF_FUZZ_CPU_LIMIT, checked by the targets; a seed takes 10 ms). libFuzzer's -timeout counts
# wall time, which a loaded machine stretches a hundredfold, so it is only the backstop for an
# input that blocks without spinning.
limits=(-max_len=65536 -malloc_limit_mb=256 -rss_limit_mb=2048 -timeout=120)
export LF_FUZZ_CPU_LIMIT=10
export LINFOLD_READ_CPU_SECONDS=5
# The reader processes that parse each file (src/sandbox.c) get 5 s of CPU time, not 60: a
# corrupt file that loops HDF5 costs 5 s of the replay, and the parent, which reports it as an
# error, stays within its own 10 s.

# Leak detection stays off: MPI_Init and HDF5's free lists hold memory for the life of the
# process. It is turned off in ASan, not with libFuzzer's -detect_leaks=0, which would also
# remove the malloc hooks that enforce -malloc_limit_mb. A request above ASan's largest allocation (1 TB) returns NULL, as malloc does in
# production, so the caller's error handling runs; any allocation that succeeds above
# -malloc_limit_mb is reported. UBSan reports are fatal, so that libFuzzer saves the input.
# These are appended to the caller's options (the later setting wins), so that what the test
# checks does not depend on the environment it runs in.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0:allocator_may_return_null=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:print_stacktrace=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

# The mutants depend on the seed, the corpus and the coverage they reach, and on the operands of
# the comparisons libFuzzer collects: file names (hence a fixed LF_FUZZ_TMPDIR per target) and
# a few addresses (hence no address-space randomisation, where setarch can turn it off).
norandom=()
if setarch "$(uname -m)" -R true 2>/dev/null; then
  norandom=(setarch "$(uname -m)" -R)
else
  echo "replay.sh: setarch -R is not permitted here; the mutants may vary from run to run" >&2
fi

rm -rf "$work"
mkdir -p "$work"
names=()
pids=()
for bin in "$@"; do
  name=$(basename "$bin")
  kind=${name#fuzz_}
  seeds=$corpus/$kind
  if [ ! -d "$seeds" ]; then
    echo "replay.sh: no corpus $seeds for $name" >&2
    exit 2
  fi
  n_seeds=$(find "$seeds" -type f | wc -l)
  mkdir -p "$work/$kind/new" "$work/$kind/artifacts" "$work/$kind/tmp"
  # -runs counts the seeds too. One process, no -fork/-jobs, so every run tries the same inputs.
  # -keep_seed: every seed stays a base for mutants, also those that reach no new code in
  # linfold (HDF5 is not instrumented, so a deflate or a newest-format seed looks like any other).
  LF_FUZZ_TMPDIR=$work/$kind/tmp "${norandom[@]}" \
    "$bin" -seed=1 -runs=$((n_seeds + mutants)) "${limits[@]}" -keep_seed=1 \
    -print_final_stats=1 -artifact_prefix="$work/$kind/artifacts/" \
    "$work/$kind/new" "$seeds" >"$work/$kind/log" 2>&1 &
  names+=("$name")
  pids+=($!)
done

failed=0
for k in "${!pids[@]}"; do
  name=${names[$k]}
  kind=${name#fuzz_}
  log=$work/$kind/log
  status=0
  wait "${pids[$k]}" || status=$?
  # Belt and braces: a sanitizer report fails the test even if the process exited 0.
  if ((status == 0)) && grep -qE "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:" "$log"; then
    status=99
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if ((status != 0)); then
    failed=1
    echo "FAIL $name (exit status $status); reproducers: $(ls "$work/$kind/artifacts" | tr '\n' ' ')"
    # The report: from its first line (or the last 60 lines when there is none), at most 150.
    first=$(grep -nE "ERROR: |runtime error:|^fuzz: " "$log" | head -n 1 | cut -d: -f1)
    echo "---- $log${first:+ from line $first}"
    if [ -n "$first" ]; then tail -n +"$first" "$log" | head -n 150; else tail -n 60 "$log"; fi
    echo "----"
  else
    echo "ok   $name: ${execs:-?} inputs ($(find "$corpus/$kind" -type f | wc -l) seeds + $mutants mutants)"
  fi
done
exit $failed
