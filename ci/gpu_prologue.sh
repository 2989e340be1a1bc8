# Sourced first by the GPU scripts (gpu_verify.sh, gpu_reports.sh, gpu_tiled.sh,
# gpu_tiled_reports.sh): strict mode, the repository root as the working directory, the output
# folder $out (${OUT:-out}), the Debian packages (skipped by default on the lent machine, which
# has them) and step() from steps.sh. Per-step logs go to a temporary folder that step_gather
# appends to $out/log.txt (the device tool returns only a few files), unless the caller set
# step_logs before sourcing this.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-out}
mkdir -p "$out"
export MOBA_SKIP_DEPS=${MOBA_SKIP_DEPS:-1} PYTHONUNBUFFERED=1
source ci/deps.sh
step_logs=${step_logs:-$(mktemp -d)}
source ci/steps.sh
