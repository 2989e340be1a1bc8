#!/usr/bin/env bash
# Verification on a GPU machine in one go: build, the GPU tests, the quick check, and
# compute-sanitizer memcheck/racecheck on the naive gating, forward and backward.
# Logs and reports go to ${OUT:-out}/. Prints a short summary last.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out"
export MOBA_SKIP_DEPS=${MOBA_SKIP_DEPS:-1}
source ci/deps.sh
status=0
step() {  # step NAME COMMAND...: runs, logs to $out/NAME.log, records the exit status
  local name=$1; shift
  local t0=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc ($((SECONDS - t0)) s)" | tee -a "$out/summary.txt"
  ((rc == 0)) || status=1
  return $rc
}
step configure cmake --preset release || { tail -30 "$out/configure.log"; exit 1; }
step build cmake --build --preset release -j "$(nproc)" || { tail -30 "$out/build.log"; exit 1; }
moba=build/release/harness/cli/moba
step ctest_gpu ctest --preset release -L gpu -j 8 --timeout 600
step check_quick $moba check --suite quick --impl naive --out "$out/check-quick.json"
small=(check --seqlens 300,45,1 --heads 4 --kv-heads 2 --head-dim 64 --block 32 --topk 3 --impl naive --out /tmp/s.json)
step memcheck compute-sanitizer --tool memcheck --error-exitcode 3 $moba "${small[@]}"
step racecheck compute-sanitizer --tool racecheck --error-exitcode 3 $moba "${small[@]}"
tail -3 "$out/ctest_gpu.log"
grep -E "records:|^FAIL" "$out/check_quick.log" | head -5
grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$out/memcheck.log" "$out/racecheck.log"
cat "$out/summary.txt"
exit $status
