#!/usr/bin/env bash
# One copy of the weights per node: peak RSS and proportional set size (PSS) per rank of a
# calibration of the synthetic wide model (bench/wide_model.py: 1024-8192-8192-8192-10, 571 MB)
# at 1, 2 and 4 ranks on one node, from the run records. PSS counts a page shared by k ranks as
# 1/k in each, so the sum over a node's ranks is what the node really holds; peak RSS charges
# every shared page in full to every rank that touched it.
#
#   bash bench/shared_weights.sh [BUILD_DIR] [WORK_DIR] [RANKS...]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build}
work=${2:-/tmp/linfold-bench-wide}
shift 2 || true
ranks=("$@")
[ ${#ranks[@]} -gt 0 ] || ranks=(1 2 4)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
export OMPI_MCA_rmaps_base_oversubscribe=1
/usr/bin/python3 "$here/bench/wide_model.py" "$work" 1024,8192,8192,8192,10 256 > /dev/null
cat > "$work/calibrate.yaml" <<YAML
version: 1
model: wide.h5
calibration: wide-data.h5:/x
stages: [calibrate]
output: {statistics: wide-stats.h5, report: wide-record.json}
YAML
echo "model: $(stat -c %s "$work/wide.h5") bytes; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-28s %-28s %s\n' ranks "peak RSS per rank (MiB)" "PSS per rank (MiB)" "PSS, node total"
for p in "${ranks[@]}"; do
  rm -f "$work/wide-stats.h5" "$work/wide-record.json"
  mpiexec -n "$p" "$build/linfold" run "$work/calibrate.yaml" -q
  /usr/bin/python3 - "$work/wide-record.json" "$p" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
peak, pss = r["peak_memory_mib"], r["pss_mib"]
print("%-6s %-28s %-28s %.0f MiB" % (sys.argv[2], " ".join("%.0f" % v for v in peak),
                                     " ".join("%.0f" % v for v in pss), sum(pss)))
PY
done
