#!/usr/bin/env bash
# Verification of the whole tree on a GPU machine in one call (under 10 minutes on an H100):
# build; every GPU test (ctest -L gpu: the quick matrix against the float64 reference for naive,
# the dense implementations and tiled_mma, determinism, the 64K naive forward, the float64 GPU
# truth against the CPU reference and at 64K, the benchmark plumbing); compute-sanitizer memcheck and racecheck (moba check --sanitize) on gating, forward
# and backward of every registered implementation; and a short benchmark of every implementation over MHA/GQA/MQA at 8K
# and 32K. MOBA_VERIFY_QUICK=1 adds `moba check --suite quick --impl all`; MOBA_VERIFY_BENCH=0
# drops the benchmark; MOBA_VERIFY_SASS=FILE.tar.gz (CUDA objects of another build, e.g. the
# parent commit's) adds ci/sass_diff.py against this build's objects; MOBA_VERIFY_CTEST=0 and
# MOBA_VERIFY_SANITIZE=0 drop those steps (to split the run over two calls). Logs and reports go to
# ${OUT:-out}/ (few files). Prints a short summary last; exits non-zero when any step failed.
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
small=(check --seqlens 300,45,1 --heads 4 --kv-heads 2 --head-dim 64 --block 32 --sanitize memcheck,racecheck)
if [[ ${MOBA_VERIFY_SANITIZE:-1} == 1 ]]; then
  step sanitize_moba 300 $moba "${small[@]}" --topk 3 --impl naive,tiled_mma,wgmma_moba --out "$out/sanitize-moba.json"
  step sanitize_dense 300 $moba "${small[@]}" --topk 10 --impl naive_dense,dense_cublas,tiled_mma_dense,wgmma_dense --out "$out/sanitize-dense.json"
fi
[[ ${MOBA_VERIFY_BENCH:-1} == 1 ]] && step bench 200 $moba bench --seqlen 8K,32K --heads 16 --kv-heads 16,4,1 --head-dim 128 --block 512 --topk 8 \
  --dtype bf16 --phase fwd --max-seconds 1 --out "$out/bench-verify.json"
[[ ${MOBA_VERIFY_BENCH:-1} == 1 ]] && step validate 30 $moba validate "$out/bench-verify.json"
step_gather
[[ -f $step_logs/ctest_gpu.log ]] && grep -E "tests passed|tests failed|Skipped|Failed|Passed" "$step_logs/ctest_gpu.log" | tail -12
ls "$step_logs"/sanitize_*.log >/dev/null 2>&1 && grep -hE "^(impl|naive|dense|tiled|wgmma)|records:" "$step_logs"/sanitize_*.log
[[ -f $step_logs/check_quick_all.log ]] && grep -E "records:" "$step_logs/check_quick_all.log"
[[ -f $step_logs/sass_diff.log ]] && cat "$step_logs/sass_diff.log"
[[ -f $step_logs/bench.log ]] && grep -E "TFLOP|fwd" "$step_logs/bench.log" | tail -42
cat "$out/summary.txt"
exit $step_status
