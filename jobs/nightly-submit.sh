#!/bin/bash
# Submit tonight's registry run: jobs/registry.sbatch REGISTRY.yaml as a job of a fixed name with
# --dependency=singleton, so that two nightly runs never overlap. A new run waits (PENDING,
# Reason=Dependency) until the previous one has ended; when one is already waiting, nothing more
# is submitted. Meant for cron (jobs/nightly.cron): Debian 12's SLURM has no scrontab.
#
#   jobs/nightly-submit.sh REGISTRY.yaml [sbatch options] [-- linfold run options]
#   jobs/nightly-submit.sh pipelines/registry.yaml --ntasks=8 --time=06:00:00
#
# A relative REGISTRY.yaml is taken from the current directory, which is also where the job
# starts and logs (linfold-nightly-JOBID.log, unless an --output option says otherwise).
# Environment:
#   LINFOLD_ROOT          the linfold tree holding jobs/registry.sbatch (default: the directory
#                         above this script: the repository, or PREFIX/share/linfold installed)
#   LINFOLD               the binary (default: LINFOLD_ROOT/build/linfold when it exists, else
#                         linfold on PATH); the job gets it as an absolute path
#   LINFOLD_NIGHTLY_NAME  the job name that singleton serialises on (default linfold-nightly)
# Prints the job id submitted (or that one is waiting already). Exit code: 0 submitted or one
# already waiting; 2 bad arguments or no linfold found; sbatch's code when it fails.
set -euo pipefail
me=nightly-submit.sh
if [ $# -lt 1 ] || [[ $1 == -* ]]; then
  echo "usage: $me REGISTRY.yaml [sbatch options] [-- linfold run options]" >&2
  exit 2
fi
registry=$(realpath -e -- "$1" 2> /dev/null) || {
  echo "$me: $1: no such registry pipeline (relative to $PWD)" >&2
  exit 2
}
shift
sbatch_opts=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  sbatch_opts+=("$1")
  shift
done
[ $# -gt 0 ] && shift # the --

root=${LINFOLD_ROOT:-$(dirname "$(realpath "${BASH_SOURCE[0]}")")/..}
root=$(realpath -e -- "$root") || { echo "$me: LINFOLD_ROOT=$root does not exist" >&2; exit 2; }
job=$root/jobs/registry.sbatch
[ -f "$job" ] || { echo "$me: no $job (set LINFOLD_ROOT to the linfold tree)" >&2; exit 2; }
lf=${LINFOLD:-}
if [ -z "$lf" ] && [ -x "$root/build/linfold" ]; then
  lf=$root/build/linfold
fi
lf=$(command -v "${lf:-linfold}") || {
  echo "$me: linfold not found: name it with LINFOLD=/path/to/linfold, build it in" \
    "$root/build, or put it on PATH" >&2
  exit 2
}
export LINFOLD
LINFOLD=$(realpath "$lf")

name=${LINFOLD_NIGHTLY_NAME:-linfold-nightly}
waiting=$(squeue -h -u "$(id -un)" -n "$name" -t PENDING -o %i)
if [ -n "$waiting" ]; then
  echo "$me: job ${waiting//$'\n'/ } ($name) is already waiting for the previous run: nothing" \
    "submitted"
  exit 0
fi
id=$(sbatch --parsable --job-name="$name" --dependency=singleton \
  --output="$name-%j.log" "${sbatch_opts[@]}" "$job" "$registry" "$@")
echo "$me: submitted job ${id%%;*} ($name, $registry); it starts once no other $name job runs"
