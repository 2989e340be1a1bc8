# Sourced by the shell tests of the ci/ tools (ab_tools_test.sh, ncu_summary_test.sh): strict
# mode, src and scratch from the arguments SOURCE_DIR SCRATCH_DIR (scratch emptied), and fail(),
# which records a failed check; the test ends with `finish NAME`, exit 1 when any check failed.
set -uo pipefail
src=${1:?source dir}
scratch=${2:?scratch dir}
rm -rf "$scratch" && mkdir -p "$scratch"
failures=0
fail() { echo "FAILED: $1"; failures=$((failures + 1)); }
finish() {
  ((failures == 0)) && echo "$1: all checks passed"
  exit $((failures > 0))
}
