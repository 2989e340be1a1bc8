# Sourced first by the GPU scripts (gpu_verify.sh, gpu_reports.sh, gpu_tiled.sh,
# gpu_tiled_reports.sh): strict mode, the repository root as the working directory, the output
# folder $out (${OUT:-out}), the Debian packages (skipped by default on the lent machine, which
# has them), step() from steps.sh and build_release (configure + build, exit on failure).
# Per-step logs go to a temporary folder that step_gather appends to $out/log.txt (the device tool
# returns only a few files), unless the caller set step_logs before sourcing this.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-out}
mkdir -p "$out"
export MOBA_SKIP_DEPS=${MOBA_SKIP_DEPS:-1} PYTHONUNBUFFERED=1
source ci/deps.sh
step_logs=${step_logs:-$(mktemp -d)}
source ci/steps.sh

# The release build every GPU script starts from: configure, then build everything; on failure
# prints the step's log (all of configure's, the last 40 lines of the build's) and exits 1.
build_release() {
  step configure 120 cmake --preset release || { cat "$step_logs/configure.log"; exit 1; }
  step build 300 cmake --build --preset release -j "$(nproc)" || { tail -40 "$step_logs/build.log"; exit 1; }
}
