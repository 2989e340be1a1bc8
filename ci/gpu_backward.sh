#!/usr/bin/env bash
# Issue 17, target 1 (the MoBA backward on warpgroup MMA: kernels/wgmma/moba_backward.cu) on a GPU
# machine, one mode per device call:
# - check:   test_tiled_mma_gpu (both MoBA entries against float64, determinism, head passes,
#            dominant past blocks) beside `moba check --suite quick --impl wgmma_moba`; memcheck
#            and racecheck on a small varlen case; then Figure 2b's 128K GQA point (block 2048,
#            top-k 3, 32 / 8 heads), fwd+bwd, wgmma_moba against tiled_mma's backward and
#            wgmma_dense (about 330 s on the H200);
# - profile: ncu kernel times of one wgmma_moba fwd+bwd at that point (every launch) and of the
#            dense backward's two kernels, then ncu's speed-of-light and warp-state sections of
#            the first two dK/dV or dQ-wave launches (about 60 s after the build);
# - verify:  the GPU label (ctest -L gpu) beside the quick suite of wgmma_moba and tiled_mma, then
#            every sanitizer on the small case for both MoBA entries (default budget, and one kv
#            head per pass) and for wgmma_dense. The label and the quick suite together take more
#            than one 10-minute call on the H200 (467 s and over 400 s side by side): give the
#            quick suite its own call (MOBA_BWD_QUICK=0 here, `moba check --suite quick` there);
# - paths:   what has not run on it yet: `moba check --suite paths` (block 192, whose second key
#            tile is partial, and k 8 / 20 / 70) for wgmma_moba and tiled_mma, and every sanitizer
#            with one kv head per pass (MOBA_ACCUMULATOR_BUDGET_MIB=0);
# - sweep:   Figure 2b's 128K point for MHA, GQA 32:8 and MQA, fwd and fwd+bwd, gating included,
#            wgmma_moba and wgmma_dense with SDPA cuDNN in the same process (Python bridge).
# - confirm: after a change to the wgmma_moba backward's kernels alone (about 450 s on the H200):
#            test_tiled_mma_gpu beside the quick suite of wgmma_moba, the paths suite, every
#            sanitizer on the small case (default budget and one kv head per pass), ncu kernel
#            times at the 128K point, then ncu's stall samples per SASS instruction (source page) of
#            the own-block dQ, the dQ waves and the first dK/dV launch there;
# - times:   the timings that follow a confirm, in their own call (about 330 s): the sweep mode's
#            128K MHA, GQA and MQA fwd and fwd+bwd with SDPA cuDNN in the process, FlashMoBA's setting (512K, 16 heads,
#            block 128, top-k 8) fwd and fwd+bwd, gating included, with wgmma_dense and SDPA cuDNN in
#            the process (about 450 s in all), then its gating timed apart.
# - final:   one call on a tree whose GPU label already ran (about 450 s on the H200): the quick
#            suite of wgmma_moba beside the naive GPU tests; Figure 2b's 128K GQA point fwd and
#            fwd+bwd with SDPA cuDNN in the process; FlashMoBA's setting fwd and fwd+bwd, gating
#            included, then its gating timed apart; MoBA fwd+bwd at 1M tokens (Figure 2a's
#            setting, 32 / 8 heads) with its measured peak device memory (target 5).
# - memory:  MoBA and dense fwd+bwd at 1M tokens (Figure 2a's setting, 32 / 8 heads) in one process,
#            time and measured peak device memory (target 5), alone in a call: the dense side's
#            check run and one sample take over 200 s (wgmma_dense fwd+bwd ~82 s a run at 863bc34),
#            which the former 260 s limit, shared with MoBA's ~60 s, cut off (about 450 s with the build).
# - stalls:  why the own-block dQ pass runs at about half the dense dQ's rate per tile: ncu's warp
#            states and source counters (stall reasons by instruction) of one own-block launch at
#            the 128K GQA point and of one dense dQ launch at 32K (16 heads), side by side (about
#            150 s with the build).
# - ownblock: whether the own-block dQ pass loses its time per CTA or per key tile: ncu kernel times of
#            the own-block forward and dQ launches at the 128K GQA point with blocks 512, 2048 and
#            4096 (2.5, 8.5 and 16.5 key tiles per CTA on average), then ncu's stall samples per SASS
#            instruction (source page) of one own-block dQ launch and of one dense dQ launch at 32K.
# - dkdv:    what limits the dK/dV kernels: ncu's speed-of-light, compute and memory workload,
#            warp-state and scheduler sections of the dense dQ and dK/dV kernels at 32K (16 heads)
#            and of one wgmma_moba dK/dV launch at the 128K GQA point, and the dense dK/dV's stall
#            samples per SASS instruction (about 200 s with the build on the H200);
# - descriptors: after a change that keeps every kernel's arithmetic (kernels/NOTES.md, one add per
#            wgmma descriptor): sanitizers, ncu kernel times of the dense fwd+bwd at 32K and of one
#            wgmma_moba fwd+bwd at the 128K GQA point, then the quick suites of wgmma_dense and
#            wgmma_moba beside the determinism, head-pass and dominant-block tests (about 450 s).
# Usage: ci/gpu_backward.sh check|profile|verify|paths|sweep|confirm|final|memory|stalls|ownblock|times|dkdv|descriptors   Reports and logs go to ${OUT:-out}/.
source "$(dirname "$0")/gpu_prologue.sh"
mode=${1:?usage: ci/gpu_backward.sh check|profile|verify|paths|sweep|confirm|final|memory|stalls|ownblock|times|dkdv|descriptors}
case $mode in check|profile|verify|paths|sweep|confirm|final|memory|stalls|ownblock|times|dkdv|descriptors) ;; *) echo "unknown mode '$mode' (check, profile, verify, paths, sweep, confirm, final, memory, stalls, ownblock, times, dkdv or descriptors)"; exit 2 ;; esac  # before any build
moba=build/release/harness/cli/moba
build_release
# test_tiled_mma_gpu beside `moba check --suite quick --impl wgmma_moba` (about as long as each
# other): tiled_test_beside_quick LIMIT_S STEP_NAME REPORT
tiled_test_beside_quick() {
  (step test_tiled_mma_gpu "$1" build/release/suites/test_tiled_mma_gpu --gtest_brief=1) &
  local tests=$!
  (step "$2" "$1" $moba check --suite quick --impl wgmma_moba --out "$3") &
  wait $tests $!
}
# The Python package from this build (the interpreter CMake found, which imports torch).
python_env() {
  python=$(sed -n 's/^Python3_EXECUTABLE:[A-Z]*=//p' build/release/CMakeCache.txt)
  export PYTHONPATH=$PWD/build/release/harness/python MOBA_EXAMPLES=$PWD/harness/python/examples
}
# Figure 2b's 128K point for MHA, GQA 32:8 and MQA, fwd and fwd+bwd, gating included, with SDPA
# cuDNN in the process: sweep_128k LIMIT_S (after python_env).
sweep_128k() {
  step sweep_128k "$1" "${python:-python3}" -m moba bench --seqlen 128K --heads 32 --kv-heads 32,8,1 --head-dim 128 \
    --block 2048 --topk 3 --impl wgmma_moba,wgmma_dense --torch sdpa_cudnn --phase fwd,fwdbwd --gating included \
    --max-seconds 3 --out "$out/sweep-128k.json"
}
small=(check --seqlens 300,45,1 --heads 4 --kv-heads 2 --head-dim 64 --block 32 --topk 3)
point=(--seqlen 128K --heads 32 --kv-heads 8 --head-dim 128 --block 2048 --topk 3)
# One fwd+bwd, gating included, for the profilers: the check's run warms up, one sample.
once=(--phase fwdbwd --gating included --warmup 0 --min-samples 1 --max-seconds 1)
case $mode in
  check)
    tiled_test_beside_quick 300 check_quick_wgmma_moba "$out/check-quick-wgmma-moba.json"
    step memcheck_small 120 $moba "${small[@]}" --sanitize memcheck --impl wgmma_moba --out "$out/memcheck.json"
    step racecheck_small 120 $moba "${small[@]}" --sanitize racecheck --impl wgmma_moba --out "$out/racecheck.json"
    step bench_128k 200 $moba bench "${point[@]}" --impl wgmma_moba,tiled_mma,wgmma_dense --phase fwdbwd \
      --gating included --max-seconds 3 --out "$out/bench-128k.json"
    grep -hE "records:" "$step_logs"/check_quick_wgmma_moba.log "$step_logs"/*check*.log
    grep -E "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs/bench_128k.log"
    ;;
  profile)
    point_once=("${point[@]}" "${once[@]}")
    times=(ncu --metrics gpu__time_duration.sum)
    step ncu_moba_times 200 "${times[@]}" --launch-count 120 $moba bench "${point_once[@]}" --impl wgmma_moba --out /tmp/moba.json
    step ncu_dense_times 200 "${times[@]}" -k regex:'dq_kernel|dkdv' --launch-count 4 \
      $moba bench "${point_once[@]}" --impl wgmma_dense --out /tmp/dense.json
    step ncu_moba_sections 200 ncu --section SpeedOfLight --section WarpStateStats --section Occupancy \
      -k regex:'moba_dkdv|dq_wave' --launch-count 2 $moba bench "${point_once[@]}" --impl wgmma_moba --out /tmp/sections.json
    grep -E "^  [a-z_]+ +(fwd|fwdbwd)|Duration|Throughput|Achieved Occupancy" "$step_logs/ncu_moba_sections.log" | head -30
    ;;
  verify)
    (step ctest_gpu 470 ctest --test-dir build/release -L gpu -j 8 --output-on-failure
     cp build/release/Testing/Temporary/LastTest.log "$out/LastTest.log") &
    p1=$!
    p2=
    if [[ ${MOBA_BWD_QUICK:-0} == 1 ]]; then
      (step check_quick 400 $moba check --suite quick --impl wgmma_moba,tiled_mma --out "$out/check-quick.json") &
      p2=$!
    fi
    wait $p1 $p2
    step sanitize_moba 90 $moba "${small[@]}" --sanitize all --impl wgmma_moba,tiled_mma --out "$out/sanitize-moba.json"
    step sanitize_moba_passes 90 env MOBA_ACCUMULATOR_BUDGET_MIB=0 $moba "${small[@]}" --sanitize all \
      --impl wgmma_moba,tiled_mma --out "$out/sanitize-moba-passes.json"
    step sanitize_dense 90 $moba check --seqlens 300,45,1 --heads 4 --kv-heads 2 --head-dim 64 --block 32 --topk 10 \
      --sanitize all --impl wgmma_dense --out "$out/sanitize-dense.json"
    grep -hE "tests passed|tests failed" "$step_logs"/ctest_gpu.log | tail -3
    grep -hE "records:" "$step_logs"/check_quick.log "$step_logs"/sanitize*.log 2>/dev/null
    ;;
  paths)
    step check_paths 420 $moba check --suite paths --impl wgmma_moba,tiled_mma --out "$out/check-paths.json"
    step sanitize_moba_passes 90 env MOBA_ACCUMULATOR_BUDGET_MIB=0 $moba "${small[@]}" --sanitize all \
      --impl wgmma_moba,tiled_mma --out "$out/sanitize-moba-passes.json"
    grep -hE "records:" "$step_logs"/check_paths.log "$step_logs"/sanitize*.log
    ;;
  sweep)
    python_env
    sweep_128k 300
    grep -E "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs/sweep_128k.log"
    ;;
  confirm)
    tiled_test_beside_quick 320 check_quick "$out/check-quick.json"
    step check_paths 90 $moba check --suite paths --impl wgmma_moba --out "$out/check-paths.json"
    step sanitize 60 $moba "${small[@]}" --sanitize all --impl wgmma_moba --out "$out/sanitize.json"
    step sanitize_passes 60 env MOBA_ACCUMULATOR_BUDGET_MIB=0 $moba "${small[@]}" --sanitize all \
      --impl wgmma_moba --out "$out/sanitize-passes.json"
    point_once=("${point[@]}" "${once[@]}" --impl wgmma_moba)
    step ncu_times 90 ncu --metrics gpu__time_duration.sum --launch-count 120 $moba bench "${point_once[@]}" --out /tmp/ncu.json
    # The own-block dQ, the two dQ waves (top-k 3), then dK/dV: the backward's launch order (a bare
    # 'dq_kernel' would also match finalize_dq_kernel, the fourth launch, and leave dK/dV out).
    step ncu_source 150 ncu --section SpeedOfLight --section WarpStateStats --section SourceCounters -f -o /tmp/bwd \
      -k regex:'dq_wave|moba_dkdv|(^|:)dq_kernel' --launch-count 4 $moba bench "${point_once[@]}" --out /tmp/bwd.json
    ncu -i /tmp/bwd.ncu-rep --page source --csv --print-source sass 2>&1 | gzip > "$out/source-backward.csv.gz"
    python3 ci/ncu_source_top.py "$out/source-backward.csv.gz" 30 > "$out/stalls-backward.txt"
    grep -hE "records:|tests|PASSED|FAILED" "$step_logs"/test_tiled_mma_gpu.log "$step_logs"/check_*.log "$step_logs"/sanitize*.log | tail -12
    # kernel name, then its time (the header line ends in "CC 9.0": match the metric line's value)
    grep -A6 -E "^  void (wgmma::)?(detail::)?(moba_dkdv|dq_wave|dq)_kernel" "$step_logs/ncu_times.log" |
      grep -oE "(moba_dkdv|dq_wave|dq)_kernel|gpu__time_duration.sum +[a-z]+ +[0-9.]+" | sed -E 's/gpu__time_duration.sum +//' | paste - - | head -8
    ;;
  dkdv)
    # Sections of the dense dQ and dK/dV kernels at 32K (16 heads) and of the first wgmma_moba
    # dK/dV launch at the 128K GQA point, the dK/dV source page (stalls per SASS instruction).
    sections=(ncu --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis
              --section WarpStateStats --section SchedulerStats)
    step ncu_dense_32k 120 "${sections[@]}" -k regex:'dq_kernel|dkdv_kernel' --launch-count 2 $moba bench \
      --seqlen 32K --heads 16 --head-dim 128 --impl wgmma_dense "${once[@]}" --out /tmp/dense.json
    step ncu_moba_128k 120 "${sections[@]}" -k regex:'moba_dkdv' --launch-count 1 $moba bench "${point[@]}" "${once[@]}" \
      --impl wgmma_moba --out /tmp/moba.json
    step ncu_source_dkdv 150 ncu --section WarpStateStats --section SourceCounters -k regex:'dkdv_kernel' --launch-count 1 \
      -f -o /tmp/dkdv $moba bench --seqlen 32K --heads 16 --head-dim 128 --impl wgmma_dense "${once[@]}" --out /tmp/dense2.json
    ncu -i /tmp/dkdv.ncu-rep --page source --csv --print-source sass 2>&1 | gzip > "$out/source-dkdv-32k.csv.gz"
    python3 ci/ncu_source_top.py "$out/source-dkdv-32k.csv.gz" 30 > "$out/stalls-dkdv-32k.txt"
    cp "$step_logs/ncu_dense_32k.log" "$out/ncu-sections-dense-32k.txt"
    cp "$step_logs/ncu_moba_128k.log" "$out/ncu-sections-moba-dkdv-128k.txt"
    grep -hE "^  void|Duration|Compute \(SM\) Throughput|Memory Throughput|L1/TEX Cache Throughput|Shared|Issue Slots Busy|No Eligible" \
      "$out"/ncu-sections-*.txt | head -60
    ;;
  descriptors)
    # After a change that keeps every kernel's arithmetic (the one-add descriptors): sanitizers,
    # ncu kernel times of the dense fwd+bwd at 32K (16 heads) and of one wgmma_moba fwd+bwd at the
    # 128K GQA point, then both quick suites beside the determinism and head-pass tests.
    step sanitize 60 $moba "${small[@]}" --sanitize all --impl wgmma_moba --out "$out/sanitize.json"
    step sanitize_dense 60 $moba check --seqlens 300,45,1 --heads 4 --kv-heads 2 --head-dim 64 --block 32 --topk 10 \
      --sanitize all --impl wgmma_dense --out "$out/sanitize-dense.json"
    step sanitize_passes 60 env MOBA_ACCUMULATOR_BUDGET_MIB=0 $moba "${small[@]}" --sanitize all \
      --impl wgmma_moba --out "$out/sanitize-passes.json"
    times=(ncu --metrics gpu__time_duration.sum)
    step ncu_dense_32k 60 "${times[@]}" -k regex:'causal_kernel|dq_kernel|dkdv_kernel' --launch-count 3 $moba bench \
      --seqlen 32K --heads 16 --head-dim 128 --impl wgmma_dense "${once[@]}" --out /tmp/dense.json
    step ncu_moba_128k 90 "${times[@]}" --launch-count 120 $moba bench "${point[@]}" "${once[@]}" --impl wgmma_moba \
      --out /tmp/moba.json
    cat "$step_logs/ncu_dense_32k.log" "$step_logs/ncu_moba_128k.log" > "$out/ncu-times.txt"
    python3 ci/ncu_kernel_summary.py "$out/ncu-times.txt" 0.5
    (step tests_determinism ${MOBA_DESC_LIMIT:-330} build/release/suites/test_tiled_mma_gpu --gtest_brief=1 \
      --gtest_filter='*Determinism*:*HeadPasses*:*DominantPastBlock*') &
    p1=$!
    (step check_quick_dense ${MOBA_DESC_LIMIT:-330} $moba check --suite quick --impl wgmma_dense --out "$out/check-quick-dense.json") &
    p2=$!
    (step check_quick ${MOBA_DESC_LIMIT:-330} $moba check --suite quick --impl wgmma_moba --out "$out/check-quick.json") &
    wait $p1 $p2 $!
    grep -hE "records:|tests|PASSED|FAILED" "$step_logs"/tests_*.log "$step_logs"/check_*.log "$step_logs"/sanitize*.log | tail -12
    ;;
  times)
    python_env
    sweep_128k 330
    # FlashMoBA's setting with wgmma_dense and SDPA cuDNN in the process, so target 2's ratio is a
    # same-process one (cuDNN's fwd+bwd there: 7446 ms a run at 9dd9fb3; its median may come from
    # fewer samples than asked, which the record marks).
    flashmoba=(--seqlen 512K --heads 16 --head-dim 128 --block 128 --topk 8 --max-seconds 3)
    step flashmoba_512k 200 "${python:-python3}" -m moba bench "${flashmoba[@]}" --impl wgmma_moba,wgmma_dense \
      --torch sdpa_cudnn --phase fwd,fwdbwd --gating included --time-cap 30 --out "$out/flashmoba-512k.json"
    step flashmoba_gating 60 $moba bench "${flashmoba[@]}" --impl wgmma_moba --phase fwd --gating separate \
      --out "$out/flashmoba-512k-gating.json"
    grep -hE "^  [a-z_]+ +(fwd|fwdbwd|gating)" "$step_logs"/sweep_128k.log "$step_logs"/flashmoba_*.log
    ;;
  final)
    (step test_naive_gpu 120 build/release/suites/test_naive_gpu --gtest_filter='NaiveGpu.*' --gtest_brief=1) &
    naive=$!
    (step check_quick 280 $moba check --suite quick --impl wgmma_moba --out "$out/check-quick.json") &
    wait $naive $!
    python_env
    step gqa_128k 150 "${python:-python3}" -m moba bench "${point[@]}" --impl wgmma_moba,wgmma_dense --torch sdpa_cudnn \
      --phase fwd,fwdbwd --gating included --max-seconds 3 --out "$out/gqa-128k.json"
    flashmoba=(--seqlen 512K --heads 16 --head-dim 128 --block 128 --topk 8 --impl wgmma_moba --max-seconds 3)
    step flashmoba_512k 100 $moba bench "${flashmoba[@]}" --phase fwd,fwdbwd --gating included --out "$out/flashmoba-512k.json"
    step flashmoba_gating 60 $moba bench "${flashmoba[@]}" --phase fwd --gating separate --out "$out/flashmoba-512k-gating.json"
    step memory_1m 150 $moba bench --seqlen 1M --heads 32 --kv-heads 8 --head-dim 128 --block 4096 --topk 12 \
      --impl wgmma_moba --phase fwdbwd --gating included --warmup 0 --min-samples 3 --time-cap 60 --max-seconds 5 \
      --out "$out/memory-1m-moba.json"
    grep -hE "records:|tests|PASSED|FAILED" "$step_logs"/test_naive_gpu.log "$step_logs"/check_quick.log | tail -6
    grep -hE "^  [a-z_]+ +(fwd|fwdbwd|gating)" "$step_logs"/gqa_128k.log "$step_logs"/flashmoba_*.log "$step_logs"/memory_1m.log
    ;;
  memory)
    step memory_1m 480 $moba bench --seqlen 1M --heads 32 --kv-heads 8 --head-dim 128 --block 4096 --topk 12 \
      --impl wgmma_moba,wgmma_dense --phase fwdbwd --gating included --warmup 0 --min-samples 3 --time-cap 60 \
      --max-seconds 5 --out "$out/memory-1m.json"
    grep -hE "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs"/memory_1m.log
    ;;
  stalls)
    sections=(ncu --section WarpStateStats --section SourceCounters --section SchedulerStats --section SpeedOfLight
              -k regex:dq_kernel --launch-count 1)
    step ncu_own_block 150 "${sections[@]}" $moba bench "${point[@]}" "${once[@]}" --impl wgmma_moba --out "$out/own-block-128k.json"
    step ncu_dense_dq 150 "${sections[@]}" $moba bench --seqlen 32K --heads 16 --head-dim 128 "${once[@]}" \
      --impl wgmma_dense --out /tmp/dense.json
    cp "$step_logs/ncu_own_block.log" "$out/ncu-stalls-own-block.txt"
    cp "$step_logs/ncu_dense_dq.log" "$out/ncu-stalls-dense-dq.txt"
    grep -hE "Duration|Issued Warp|No Eligible|Warp Cycles Per Issued|Stall|stall" "$out"/ncu-stalls-*.txt | head -40
    ;;
  ownblock)
    for bs in 512 2048 4096; do
      step ncu_blocks_$bs 120 ncu --metrics gpu__time_duration.sum -k regex:'dq_kernel|causal_kernel' --launch-count 4 \
        $moba bench --seqlen 128K --heads 32 --kv-heads 8 --head-dim 128 --block $bs --topk 3 "${once[@]}" \
        --impl wgmma_moba --out /tmp/blocks-$bs.json
    done
    sampled=(ncu --section WarpStateStats --section SourceCounters -k regex:dq_kernel --launch-count 1 -f)
    step ncu_source_own 150 "${sampled[@]}" -o /tmp/own $moba bench "${point[@]}" "${once[@]}" --impl wgmma_moba --out /tmp/own.json
    step ncu_source_dense 150 "${sampled[@]}" -o /tmp/dense $moba bench --seqlen 32K --heads 16 --head-dim 128 "${once[@]}" \
      --impl wgmma_dense --out /tmp/dense.json
    for r in own dense; do
      ncu -i /tmp/$r.ncu-rep --page source --csv --print-source sass 2>&1 | gzip > "$out/source-$r.csv.gz"
      ncu -i /tmp/$r.ncu-rep --page details --print-details all > "$out/details-$r.txt" 2>&1
      python3 ci/ncu_source_top.py "$out/source-$r.csv.gz" 30 > "$out/stalls-$r.txt"
    done
    for bs in 512 2048 4096; do
      echo "block $bs:"
      grep -A6 -E "^  void (wgmma::detail::)?(dq_kernel|causal_kernel)" "$step_logs/ncu_blocks_$bs.log" |
        grep -oE "(dq|causal)_kernel<[^>]*>|gpu__time_duration.sum +[a-z]+ +[0-9.]+" | paste - -
    done | tee "$out/blocks.txt"
    ;;
  *) echo "unknown mode '$mode' (check, profile, verify, paths, sweep, confirm, final, memory, stalls, ownblock or times)"; exit 2 ;;
esac
step_gather
cat "$out/summary.txt"
exit_steps
