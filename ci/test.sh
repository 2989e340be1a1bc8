#!/usr/bin/env bash
# Builds and runs every test. CPU tests assert; GPU tests run on a GPU and are reported as
# skipped (never passed) where there is none. Usage: ci/test.sh [extra ctest args, e.g. -L gpu]
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/deps.sh
# The dashboard's browser test (ctest dashboard_browser) opens the page in Debian's chromium; it
# is skipped, and says so, where chromium is absent.
if [[ ${MOBA_SKIP_DEPS:-0} != 1 ]] && ! command -v chromium >/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "installing: chromium (the dashboard's browser test)"
    [[ ${moba_apt_updated:-0} == 1 ]] || apt-get update -qq  # once per run
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium python3 >/dev/null
  else
    echo "chromium is not installed: ctest dashboard_browser will be skipped (sudo apt-get install chromium)" >&2
  fi
fi
jobs=$(nproc)
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs" "$@"
