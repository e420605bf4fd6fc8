#!/usr/bin/env bash
# `cmake --install` into a fresh prefix gives a working linfold and linfold-export-torch there,
# and the SLURM jobs find linfold on PATH.
#   install.sh BUILD_DIR
set -euo pipefail
build=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" > /dev/null
fail() { echo "FAIL: $*"; exit 1; }
"$prefix/bin/linfold" --version | grep -q '^linfold ' || fail "installed linfold does not run"
usage=$("$prefix/bin/linfold-export-torch" --help)
echo "$usage" | grep -q 'MODULE.pt OUT.h5' || fail "linfold-export-torch does not find its tools"
for f in share/linfold/jobs/compress.sbatch share/linfold/tools/linfold_format.py \
         share/doc/linfold/README.md share/doc/linfold/hpc.md; do
  [ -e "$prefix/$f" ] || fail "missing $f"
done
# A job script run outside SLURM with PATH holding the prefix: it refuses its arguments with its
# own usage (exit 2) after finding the binary, rather than failing to find linfold.
PATH="$prefix/bin:$PATH" bash "$prefix/share/linfold/jobs/compress.sbatch" > /dev/null 2>&1 && \
  fail "the job ran without arguments" || [ $? -eq 2 ] || fail "the job's usage error is not 2"
echo "install: binary, exporter, jobs and docs in place"
