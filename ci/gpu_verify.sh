#!/usr/bin/env bash
# Verification of the whole tree on a GPU machine in one call (about 6 minutes on the H200
# without the long suite):
# - build; every GPU test (ctest -L gpu: the quick matrix against float64 for naive, the dense
#   implementations and tiled_mma, determinism, the 64K naive forward, the float64 GPU truth
#   against the CPU reference and at 64K, the tensor-core model of the baseline, the benchmark
#   plumbing);
# - compute-sanitizer memcheck, racecheck, synccheck and initcheck (moba check --sanitize all) on
#   gating, forward and backward of every registered implementation;
# - a short benchmark of every implementation over MHA/GQA/MQA at 8K and 32K (forward and
#   forward+backward, gating included, each checked on sampled rows first).
# Switches: MOBA_VERIFY_QUICK=1 adds `moba check --suite quick --impl all` (beside ctest);
# MOBA_VERIFY_LONG=I/N adds shard I of N of the long suite against the float64 GPU truth;
# MOBA_VERIFY_PAPER_GATING=1 adds the gating check at 1M/block 4096 and 512K/block 128;
# MOBA_VERIFY_BENCH=0, MOBA_VERIFY_CTEST=0, MOBA_VERIFY_SANITIZE=0 drop those steps;
# MOBA_VERIFY_SASS=FILE.tar.gz (CUDA objects of another build) adds ci/sass_diff.py against this
# build's objects. Logs and reports go to ${OUT:-out}/ (few files). Prints a short summary last;
# exits non-zero when any step failed.
source "$(dirname "$0")/gpu_prologue.sh"
step configure 120 cmake --preset release || { cat "$step_logs/configure.log"; exit 1; }
step build 300 cmake --build --preset release -j "$(nproc)" || { tail -40 "$step_logs/build.log"; exit 1; }
moba=build/release/harness/cli/moba
# MOBA_VERIFY_QUICK=1: also the CLI's quick check of every implementation, beside ctest (both
# are mostly float64 CPU work on different cores; pair it with MOBA_VERIFY_BENCH=0).
quick_pid=
if [[ ${MOBA_VERIFY_QUICK:-0} == 1 ]]; then
  (step check_quick_all 400 $moba check --suite quick --impl all --out "$out/check-quick-all.json") &
  quick_pid=$!
fi
[[ ${MOBA_VERIFY_CTEST:-1} == 1 ]] && step ctest_gpu 500 ctest --preset release -L gpu -j 8 --timeout 480
[[ -n $quick_pid ]] && { wait "$quick_pid" || step_status=1; }
if [[ -n ${MOBA_VERIFY_SASS:-} ]]; then
  mkdir -p /tmp/sass_old && tar xzf "$MOBA_VERIFY_SASS" -C /tmp/sass_old
  step sass_diff 200 python3 ci/sass_diff.py /tmp/sass_old build/release
fi
# Races and memory errors as records (`moba check --sanitize`): top-3 of up to 10 blocks for the
# MoBA implementations, every block (top-k 10) for the dense ones, which refuse anything else.
small=(check --seqlens 300,45,1 --heads 4 --kv-heads 2 --head-dim 64 --block 32 --sanitize all)
if [[ ${MOBA_VERIFY_SANITIZE:-1} == 1 ]]; then
  step sanitize_moba 300 $moba "${small[@]}" --topk 3 --impl naive,tiled_mma,wgmma_moba --out "$out/sanitize-moba.json"
  step sanitize_dense 300 $moba "${small[@]}" --topk 10 --impl naive_dense,dense_cublas,tiled_mma_dense,wgmma_dense --out "$out/sanitize-dense.json"
fi
[[ ${MOBA_VERIFY_BENCH:-1} == 1 ]] && step bench 300 $moba bench --seqlen 8K,32K --heads 16 --kv-heads 16,4,1 --head-dim 128 --block 512 --topk 8 \
  --dtype bf16 --phase fwd,fwdbwd --gating included --max-seconds 1 --out "$out/bench-verify.json"
# MOBA_VERIFY_LONG=I/N: shard I of N of the long suite against the float64 GPU truth, every
# implementation. MOBA_VERIFY_PAPER_GATING=1: the gating check at the paper's sizes.
[[ -n ${MOBA_VERIFY_LONG:-} ]] && step check_long 500 $moba check --suite long --reference gpu --impl all \
  --shard "$MOBA_VERIFY_LONG" --out "$out/check-long-${MOBA_VERIFY_LONG/\//of}.json"
if [[ ${MOBA_VERIFY_PAPER_GATING:-0} == 1 ]]; then
  step gating_1m 200 $moba check --seqlens 1M --heads 32 --kv-heads 8 --head-dim 128 --block 4096 --topk 12 \
    --impl wgmma_moba --gating-only --out "$out/gating-1m-b4096.json"
  step gating_512k 200 $moba check --seqlens 512K --heads 16 --kv-heads 16 --head-dim 128 --block 128 --topk 8 \
    --impl wgmma_moba --gating-only --out "$out/gating-512k-b128.json"
fi
[[ ${MOBA_VERIFY_BENCH:-1} == 1 ]] && step validate 30 $moba validate "$out/bench-verify.json"
step_gather
[[ -f $step_logs/ctest_gpu.log ]] && grep -E "tests passed|tests failed|Skipped|Failed|Passed" "$step_logs/ctest_gpu.log" | tail -12
ls "$step_logs"/sanitize_*.log >/dev/null 2>&1 && grep -hE "^(impl|naive|dense|tiled|wgmma)|records:" "$step_logs"/sanitize_*.log
[[ -f $step_logs/check_quick_all.log ]] && grep -E "records:|^FAIL" "$step_logs/check_quick_all.log" | tail -30
[[ -f $step_logs/check_long.log ]] && grep -E "records:|^FAIL" "$step_logs/check_long.log" | tail -30
ls "$step_logs"/gating_*.log >/dev/null 2>&1 && grep -hE "records:|mismatch|near" "$step_logs"/gating_*.log
[[ -f $step_logs/sass_diff.log ]] && cat "$step_logs/sass_diff.log"
[[ -f $step_logs/bench.log ]] && grep -E "TFLOP|fwd" "$step_logs/bench.log" | tail -42
cat "$out/summary.txt"
exit $step_status
