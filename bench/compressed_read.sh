#!/usr/bin/env bash
# What reading compressed calibration data costs: linfold calibrate on the 60,000 Fashion-MNIST
# training images stored contiguous and stored gzip + shuffle in chunks of 1,024 rows (h5py's
# compression="gzip", level 4), next to HDF5's own decoding rate (h5py) and zlib's inflate rate on
# the same chunks, all in this one run, best of 3. Batches of 300 rows, which cut the chunks, show
# what linfold's chunk cache (64 MiB per data file) saves. linfold decodes each compressed chunk once
# before HDF5 does (docs/format.md), so the second inflate is part of what is measured.
#
#   bash bench/compressed_read.sh [BUILD_DIR] [WORK_DIR]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build}
work=${2:-/tmp/linfold-bench}
lf=$build/linfold
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
/usr/bin/python3 "$here/bench/fmnist_setup.py" "$work"
model=$work/mlp-784.h5
plain=$work/fmnist.h5 packed=$work/fmnist-gzip.h5
if [ ! -e "$packed" ]; then
  /usr/bin/python3 - "$plain" "$packed" <<'EOF'
import sys, h5py
with h5py.File(sys.argv[1], "r") as src, h5py.File(sys.argv[2] + ".tmp", "w") as dst:
    dst.create_dataset("/train/x", data=src["/train/x"][...], chunks=(1024, 784),
                       compression="gzip", compression_opts=4, shuffle=True)
import os; os.rename(sys.argv[2] + ".tmp", sys.argv[2])
EOF
fi

best() { sort -g | tail -1; }
lf_rate() {   # data ranks [batch] -- rows/s of the calibration pass, best of 3
  local launch=""
  [ "$2" -gt 1 ] && launch="mpiexec -n $2"
  for _ in 1 2 3; do
    $launch "$lf" calibrate --model "$model" --data "$1:/train/x" --out "$work/stats.h5" \
      --batch "${3:-1024}" 2>&1 |
      sed -n 's/.*calibrate: [0-9]* rows in .* (\([0-9]*\) rows\/s).*/\1/p'
  done | best
}
ratio() { echo "scale=2; $1 / $2" | bc; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "file sizes: contiguous $(stat -c %s "$plain") bytes, gzip + shuffle $(stat -c %s "$packed") bytes"
peers=$(/usr/bin/python3 "$here/bench/compressed_read.py" "$packed" /train/x)
h5=$(sed -n 's/^h5py read.* rows\/s \([0-9]*\)/\1/p' <<<"$peers")
zl=$(sed -n 's/^zlib inflate.* rows\/s \([0-9]*\)/\1/p' <<<"$peers")
echo
echo "| what | rows/s | vs linfold on contiguous data |"
echo "|---|---|---|"
for p in 1 2; do
  c=$(lf_rate "$plain" $p)
  z=$(lf_rate "$packed" $p)
  echo "| linfold calibrate, P = $p, contiguous | $c | 1.00 |"
  echo "| linfold calibrate, P = $p, gzip + shuffle | $z | $(ratio "$z" "$c") |"
  # batches of 300 rows cut the 1,024-row chunks: HDF5's chunk cache decides the cost
  z=$(lf_rate "$packed" $p 300)
  echo "| linfold calibrate, P = $p, gzip + shuffle, --batch 300 | $z | $(ratio "$z" "$c") |"
done
echo "| h5py reads the gzip dataset whole (HDF5 decodes it), 1 core | $h5 | |"
echo "| zlib inflates its raw chunks, 1 core | $zl | |"
