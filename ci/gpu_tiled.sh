#!/usr/bin/env bash
# The optimized kernels on a GPU machine in one go: build, one small check (stops here when it
# fails, printing the failing records), compute-sanitizer memcheck and racecheck on gating and
# forward, the quick matrix, and a short bench of dense and MoBA. Reports and logs go to
# ${OUT:-out}/; each step has its own time limit. Prints a short summary last.
# Usage: ci/gpu_tiled.sh [impls]   (default tiled_mma,tiled_mma_dense)
step_logs=${OUT:-out}  # this script reads its steps' logs from $out
source "$(dirname "$0")/gpu_prologue.sh"
impls=${1:-tiled_mma,tiled_mma_dense}
step build 300 bash -c 'cmake --preset release && cmake --build --preset release -j "$(nproc)"' ||
  { tail -40 "$out/build.log"; exit 1; }
moba=build/release/harness/cli/moba
small=(check --seqlens 300,45,1 --heads 4 --kv-heads 2 --head-dim 64 --block 32 --topk 3 --impl "$impls")
if ! step check_small 60 $moba "${small[@]}" --out "$out/check-small.json"; then
  tail -40 "$out/check_small.log"
  exit 1
fi
step memcheck 120 env MOBA_NO_GUARDS=1 compute-sanitizer --tool memcheck --error-exitcode 3 $moba "${small[@]}" --out /tmp/m.json
step racecheck 120 env MOBA_NO_GUARDS=1 compute-sanitizer --tool racecheck --error-exitcode 3 $moba "${small[@]}" --out /tmp/r.json
# Gating's three top-k paths (lists of 16, of 64, and the multi-pass fallback) beyond the
# quick matrix's k in {1, 3, >= n}.
for k in 8 12 20 70; do
  step check_topk$k 60 $moba check --seqlens 3000,700 --heads 4 --kv-heads 2 --head-dim 64 --block 32 \
    --topk $k --dtype bf16 --impl "$impls" --out "$out/check-topk$k.json"
done
step check_quick 300 $moba check --suite quick --impl "$impls" --out "$out/check-quick-tiled.json"
step determinism 120 build/release/suites/test_tiled_mma_gpu --gtest_filter='Moba/MobaDeterminism.*:Dense/DenseDeterminism.*'
step bench 240 $moba bench --seqlen 32K,128K --heads 16 --kv-heads 16,4,1 --head-dim 128 --block 512 --topk 8 \
  --impl "$impls" --phase fwd,fwdbwd --max-seconds 2 --out "$out/bench-tiled.json"
if [[ ${MOBA_LONG:-0} == 1 ]]; then
  step check_long 400 $moba check --suite long --reference gpu --impl "$impls" --out "$out/check-long-tiled.json"
fi
grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$out/memcheck.log" "$out/racecheck.log"
grep -hE "records:" "$out"/check_topk*.log "$out/check_quick.log"
grep -vE "passed" "$out/check_quick.log" | grep -E "incorrect|failed" | head -20
tail -4 "$out/determinism.log"
grep -E "fwd|^\[" "$out/bench.log" | head -40
cat "$out/summary.txt"
