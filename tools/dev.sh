#!/usr/bin/env bash
# linfold developer entry point: install what is missing, build, run the demo or the tests.
#
#   bash tools/dev.sh demo    # install, build, compress the bundled model on 2 MPI ranks
#   bash tools/dev.sh test    # install, build, run the whole test suite through ctest
#   bash tools/dev.sh build   # install and build only
#
# Environment: BUILD_DIR (default build), LF_JOBS (default: number of cores),
# LF_SKIP_SANITIZE=1 (test only the release build, not also the clang sanitizer build, which
# also runs the fuzz_replay test of the file readers; docs/fuzzing.md).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$here/build}
jobs=${LF_JOBS:-$(nproc)}

# Debian 12 packages linfold builds and tests with.
packages=(
  gcc make cmake pkg-config clang-format
  clang libclang-rt-14-dev   # the sanitizer build and the libFuzzer targets (tests/fuzz)
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools
  libscalapack-openmpi-dev libopenblas-dev
  libyaml-dev check libjansson-dev zlib1g-dev libssl-dev
  libgsl-dev                                # the exact binomial bounds of the accuracy budget
  python3-numpy python3-h5py python3-torch   # test-only: the PyTorch round-trip test
  slurm-wlm slurmctld slurmd munge          # test-only: the job scripts on a private SLURM
)

install_missing() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "dev.sh: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

build_all() {
  cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLF_WERROR=ON >/dev/null
  cmake --build "$build" -j "$jobs"
}

# Open MPI refuses to run as root without these, and the 2-core machines we test on need
# oversubscription for 3 and 4 ranks; yielding keeps oversubscribed ranks from spinning.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1

demo() {
  local lf=$build/linfold data=$here/tests/data/digits out
  out=$(mktemp -d)
  echo "== linfold demo: the bundled digits MLP (64-64-128-128-256-256-10), 2 MPI ranks =="
  echo "== calibration: validation split (359 rows); evaluation: test split (360 rows) =="
  mpiexec -n 2 "$lf" compress --model "$data/model.h5" --data "$data/data.h5:/val/x" \
    --threshold 0.8 --prune-dead --out "$out/digits-compressed.h5"
  echo
  echo "== original vs compressed on the test split =="
  mpiexec -n 2 "$lf" eval --model "$out/digits-compressed.h5" --data "$data/data.h5:/test/x" \
    --labels "$data/data.h5:/test/y" --reference "$data/model.h5"
  echo
  echo "compressed model: $out/digits-compressed.h5 (inspect it with: $lf inspect $out/digits-compressed.h5)"
}

run_tests() {
  (cd "$build" && ctest --output-on-failure -j 1 "$@")
  # The same suite again under AddressSanitizer and UBSan (a debug build, so the checks of
  # logically collective arguments run too), built with clang so that it also builds the
  # libFuzzer targets and runs fuzz_replay. MPI's own allocations are not ours to fix, so leak
  # detection is off; any sanitizer report fails the test. linfold checks every allocation and
  # the tests make some fail on purpose (an 8 EiB matrix), so ASan returns NULL as libc would.
  if [ "${LF_SKIP_SANITIZE:-0}" != 1 ]; then
    local asan=${build}-sanitize
    # A build directory configured by an earlier dev.sh with gcc keeps its compiler; start over.
    if [ -f "$asan/CMakeCache.txt" ] &&
      ! grep -q '^CMAKE_C_COMPILER:FILEPATH=.*clang' "$asan/CMakeCache.txt"; then
      rm -rf "$asan/CMakeCache.txt" "$asan/CMakeFiles"
    fi
    CC=clang cmake -S "$here" -B "$asan" -DCMAKE_BUILD_TYPE=Debug -DLF_WERROR=ON \
      -DLF_SANITIZE=address,undefined -DLF_FUZZ=ON >/dev/null
    cmake --build "$asan" -j "$jobs"
    # slurm_jobs is left out here: it tests the job scripts and SLURM's handling of them, which
    # the release run covers; the C paths its jobs take (run, registries, checkpoint and resume)
    # run under the sanitizers in cli_pipeline and cli_registry. Under ASan at -O0 its signalled
    # calibration alone outlasts the test's time limit on 2 cores.
    (cd "$asan" && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 \
      UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -j 1 \
      -E '^slurm_jobs$' "$@")
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo) install_missing; build_all; demo ;;
  test) install_missing; build_all; run_tests "$@" ;;
  build) install_missing; build_all ;;
  *) echo "usage: bash tools/dev.sh demo|test|build" >&2; exit 2 ;;
esac
