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
# Switches: MOBA_VERIFY_QUICK=1 adds `moba check --suite quick --impl all` (beside ctest;
# MOBA_VERIFY_QUICK=alone runs it after ctest and the first-hour steps, alone, timed);
# MOBA_VERIFY_LONG="I/N ..." adds those shards of the long suite against the float64 GPU truth
# (of MOBA_VERIFY_LONG_IMPL, default all), started right after the build in MOBA_VERIFY_LANES
# (default 2) lanes beside the other steps; no
# shard starts after MOBA_VERIFY_DEADLINE seconds (default 400) and each is stopped (its report
# then says "complete": false) at MOBA_VERIFY_END (default 540), so the call ends inside the
# device's 600 s; shards not started are named in the summary. Reports: $out/check-long.tar.gz,
# summarised by ci/check_summary.py;
# MOBA_VERIFY_FIRST_HOUR=1 adds the refusals, progress and interrupt as met on the GPU
# (ci/gpu_first_hour.sh);
# MOBA_VERIFY_PYTHON=SHARD adds ci/gpu_python.sh's check (that shard of the quick suite, on both
# examples and op_wgmma_moba) and paper steps beside ctest (reports: $out/python.tar.gz);
# MOBA_VERIFY_DECODE=1 adds ci/gpu_decode.sh (the decode suite, the decode kernels under the
# sanitizers, PyTorch's SDPA decodes checked, the decode study timed; MOBA_VERIFY_DECODE_STUDY=full
# for the whole grid, =sdpa for the points where the dense baseline decides) after
# the quick-alone step;
# MOBA_VERIFY_PATHS=1 adds `moba check --suite paths --impl all` (k 8, 20, 70 over many-tile rows)
# after the quick-alone step;
# MOBA_VERIFY_PAPER_GATING=1 adds the gating check at 1M/block 4096 and 512K/block 128;
# MOBA_VERIFY_BENCH=0, MOBA_VERIFY_CTEST=0, MOBA_VERIFY_SANITIZE=0 drop those steps;
# MOBA_VERIFY_SASS=FILE.tar.gz (CUDA objects of another build) adds ci/sass_diff.py against this
# build's objects. Logs and reports go to ${OUT:-out}/ (few files). Prints a short summary last;
# exits non-zero when any step failed.
source "$(dirname "$0")/gpu_prologue.sh"
build_release
moba=build/release/harness/cli/moba
# MOBA_VERIFY_LONG: shards of the long suite in lanes, in the background from here on.
long_pids=()
if [[ -n ${MOBA_VERIFY_LONG:-} ]]; then
  long_dir=$(mktemp -d)
  read -ra long_shards <<<"$MOBA_VERIFY_LONG"
  lanes=${MOBA_VERIFY_LANES:-2} deadline=${MOBA_VERIFY_DEADLINE:-400} end=${MOBA_VERIFY_END:-540}
  long_impl=${MOBA_VERIFY_LONG_IMPL:-all}
  # The lanes run niced: ctest and the timed steps keep the CPU cores they would have alone.
  run_long_lane() {
    local shard
    for shard in "$@"; do
      if ((SECONDS >= deadline)); then
        echo "check_long_${shard/\//of}: not started (deadline ${deadline} s)" | tee -a "$out/summary.txt"
        step_status=1
        continue
      fi
      step "check_long_${shard/\//of}" $((end - SECONDS)) nice -n 10 $moba check --suite long --reference gpu --impl "$long_impl" \
        --shard "$shard" --out "$long_dir/check-long-${shard/\//of}.json"
    done
    return $step_status
  }
  for ((lane = 0; lane < lanes; ++lane)); do
    mine=()
    for ((i = lane; i < ${#long_shards[@]}; i += lanes)); do mine+=("${long_shards[i]}"); done
    ((${#mine[@]})) && { run_long_lane "${mine[@]}" & long_pids+=($!); }
  done
fi
# MOBA_VERIFY_QUICK=1: also the CLI's quick check of every implementation, beside ctest (both
# are mostly float64 CPU work on different cores; pair it with MOBA_VERIFY_BENCH=0).
python_pid=
if [[ -n ${MOBA_VERIFY_PYTHON:-} ]]; then
  (step python_check_paper 480 env OUT="$out/python" MOBA_PY_SHARD="$MOBA_VERIFY_PYTHON" MOBA_PY_STEPS=check,paper MOBA_PY_BUILD=0 \
     ci/gpu_python.sh) &
  python_pid=$!
fi
quick_pid=
if [[ ${MOBA_VERIFY_QUICK:-0} == 1 ]]; then
  (step check_quick_all 400 $moba check --suite quick --impl all --out "$out/check-quick-all.json") &
  quick_pid=$!
fi
# ctest ends by MOBA_VERIFY_END too (at most 500 s), so the summary below still prints inside the call.
ctest_limit=$(( ${MOBA_VERIFY_END:-540} - SECONDS )); ((ctest_limit > 500)) && ctest_limit=500
[[ ${MOBA_VERIFY_CTEST:-1} == 1 ]] && step ctest_gpu $ctest_limit ctest --preset release -L gpu -j 8 --timeout 480
[[ -n $quick_pid ]] && { wait "$quick_pid" || step_status=1; }
[[ -n $python_pid ]] && { wait "$python_pid" || step_status=1; }
# After ctest and the Python steps. The first-hour steps hold most of the GPU's memory for a
# while (ci/gpu_first_hour.sh): nothing but long lanes, when asked for, may meet the holder.
[[ ${MOBA_VERIFY_FIRST_HOUR:-0} == 1 ]] && source ci/gpu_first_hour.sh
# MOBA_VERIFY_QUICK=alone: the CLI's quick check of every implementation with nothing else of
# this script running (long lanes aside), timed (the rigor issue's target is about 2 minutes
# for all of them); stopped at MOBA_VERIFY_END like ctest.
quick_limit=$(( ${MOBA_VERIFY_END:-540} - SECONDS )); ((quick_limit < 1)) && quick_limit=1  # timeout 0: none
[[ ${MOBA_VERIFY_QUICK:-0} == alone ]] && step check_quick_all $quick_limit \
  $moba check --suite quick --impl all --out "$out/check-quick-all.json"
[[ ${MOBA_VERIFY_DECODE:-0} == 1 ]] && source ci/gpu_decode.sh
# MOBA_VERIFY_PATHS=1: the top-k paths and many-tile rows the quick matrix never reaches.
[[ ${MOBA_VERIFY_PATHS:-0} == 1 ]] && step check_paths 240 $moba check --suite paths --impl all --out "$out/check-paths.json"
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
# MOBA_VERIFY_PAPER_GATING=1: the gating check at the paper's sizes.
if [[ ${MOBA_VERIFY_PAPER_GATING:-0} == 1 ]]; then
  step gating_1m 200 $moba check --seqlens 1M --heads 32 --kv-heads 8 --head-dim 128 --block 4096 --topk 12 \
    --impl wgmma_moba --gating-only --out "$out/gating-1m-b4096.json"
  step gating_512k 200 $moba check --seqlens 512K --heads 16 --kv-heads 16 --head-dim 128 --block 128 --topk 8 \
    --impl wgmma_moba --gating-only --out "$out/gating-512k-b128.json"
fi
[[ ${MOBA_VERIFY_BENCH:-1} == 1 ]] && step validate 30 $moba validate "$out/bench-verify.json"
for pid in "${long_pids[@]}"; do wait "$pid" || step_status=1; done
if [[ -n ${MOBA_VERIFY_LONG:-} ]]; then
  tar czf "$out/check-long.tar.gz" -C "$long_dir" .
  step check_long_summary 60 python3 ci/check_summary.py "$long_dir"/check-long-*.json
fi
step_gather
if [[ -d $out/python ]]; then
  tail -32 "$step_logs/python_check_paper.log"
  tar czf "$out/python.tar.gz" -C "$out" python && rm -rf "$out/python"
fi
[[ -f $step_logs/ctest_gpu.log ]] && grep -E "tests passed|tests failed|Skipped|Failed|Passed" "$step_logs/ctest_gpu.log" | tail -12
ls "$step_logs"/sanitize_*.log >/dev/null 2>&1 && grep -hE "^(impl|naive|dense|tiled|wgmma)|records:" "$step_logs"/sanitize_*.log
[[ -f $out/check-quick-all.json ]] && python3 ci/check_summary.py "$out/check-quick-all.json"
[[ -f $out/check-paths.json ]] && python3 ci/check_summary.py "$out/check-paths.json"
[[ -f $out/check-decode.json ]] && python3 ci/check_summary.py "$out/check-decode.json"
[[ -f $out/check-decode-sdpa.json ]] && python3 ci/check_summary.py "$out/check-decode-sdpa.json"
ls "$step_logs"/decode_study_*.log >/dev/null 2>&1 && grep -hE "^(layout|32:| +dense )" "$step_logs"/decode_study_*.log
[[ -f $step_logs/check_long_summary.log ]] && cat "$step_logs/check_long_summary.log"
ls "$step_logs"/gating_*.log >/dev/null 2>&1 && grep -hE "records:|mismatch|near" "$step_logs"/gating_*.log
[[ -f $step_logs/sass_diff.log ]] && cat "$step_logs/sass_diff.log"
[[ -f $step_logs/bench.log ]] && grep -E "TFLOP|fwd" "$step_logs/bench.log" | tail -42
cat "$out/summary.txt"
exit_steps
