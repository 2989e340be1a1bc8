#!/usr/bin/env bash
# wgmma_moba_atomic (issue 17, target 1: the MoBA backward in 5 products, dQ fused into the dK/dV
# kernel, moba_dkdv_kernel.cuh) and the aligned_smem change under every wgmma kernel (tile.cuh)
# on a GPU machine, one mode per device call:
# - first:  correct first: every sanitizer on a small varlen head-dim-128 case for
#           wgmma_moba_atomic (its default sum, red, one kv head per pass) and wgmma_moba; ncu
#           kernel times of one fwd+bwd at Figure 2b's 128K GQA point (block 2048, top-k 3, 32 / 8
#           heads) for wgmma_moba and both sums of wgmma_moba_atomic; then test_tiled_mma_gpu
#           (every MoBA entry against float64, repeats, head passes) beside the quick and paths
#           suites of wgmma_moba_atomic (about 440 s on the H200; at 44c277b, whose default sum
#           was bulk, so the suites ran bulk and the sanitizers both);
# - second: the GPU label beside the quick suites of wgmma_moba_atomic (red), wgmma_moba and
#           wgmma_dense_atomic, then the 128K GQA point fwd and fwd+bwd, gating included,
#           wgmma_moba, wgmma_moba_atomic and wgmma_dense_atomic with SDPA cuDNN in the same
#           process (Python bridge). At 5a68f08 the label and the suites side by side both ran
#           past 330 s (python_gpu alone took 278 s): the label has its own call in third;
# - third:  the GPU label alone, then the 128K GQA point fwd+bwd at sustained clocks (3 s of warmup:
#           the second's runs were marked THROTTLED), wgmma_moba, wgmma_moba_atomic and
#           wgmma_dense_atomic with SDPA cuDNN in the process, and FlashMoBA's setting (512K, 16
#           heads, block 128, top-k 8) fwd+bwd for both MoBA entries (about 500 s).
# - profile: why the fused kernel runs a 64-row tile in ~3.8 us where the dense atomic one takes
#           ~2.7 us (same shapes, same 5 products): ncu's sections and source page (stalls per SASS
#           instruction) of one fused launch at the 128K GQA point, then test_tiled_mma_gpu alone
#           (the red sum, the default since 5a68f08, had not run it; about 430 s).
# - l2:     the MoBA dK/dV CTAs in (block, kv head)-major order, tiles fastest (the profile's L2 hits
#           at 34%): correct first (sanitizers on the small case for both MoBA entries, then the quick
#           suite of wgmma_moba_atomic), ncu kernel times and the fused kernel's L2 hit rate and DRAM
#           bytes at the 128K GQA point, then the 128K GQA fwd+bwd at sustained clocks with cuDNN and
#           FlashMoBA's setting, as third (about 520 s).
# Usage: ci/gpu_moba_atomic.sh first|second|third|profile|l2   Reports and logs go to ${OUT:-out}/.
source "$(dirname "$0")/gpu_prologue.sh"
mode=${1:?usage: ci/gpu_moba_atomic.sh first|second|third|profile|l2}
case $mode in first|second|third|profile|l2) ;; *) echo "unknown mode '$mode' (first, second, third, profile or l2)"; exit 2 ;; esac  # before any build
moba=build/release/harness/cli/moba
build_release
small=(check --seqlens 300,45,1 --heads 4 --kv-heads 2 --head-dim 128 --block 32 --topk 3)
point=(--seqlen 128K --heads 32 --kv-heads 8 --head-dim 128 --block 2048 --topk 3)
once=(--phase fwdbwd --gating included --warmup 0 --min-samples 1 --max-seconds 1)
# third's and l2's timing: the 128K GQA point fwd+bwd at sustained clocks (3 s of warmup) with
# wgmma_dense_atomic and SDPA cuDNN in the process, then FlashMoBA's setting for both MoBA entries.
sustained_fwdbwd() {
  local python
  python=$(sed -n 's/^Python3_EXECUTABLE:[A-Z]*=//p' build/release/CMakeCache.txt)
  local fair=(--warmup-seconds 3 --max-seconds 3)
  step gqa_128k 150 env PYTHONPATH="$PWD/build/release/harness/python" "${python:-python3}" -m moba bench "${point[@]}" \
    --impl wgmma_moba,wgmma_moba_atomic,wgmma_dense_atomic --torch sdpa_cudnn --phase fwdbwd --gating included \
    "${fair[@]}" --out "$out/gqa-128k-fwdbwd.json"
  step flashmoba_512k 90 $moba bench --seqlen 512K --heads 16 --head-dim 128 --block 128 --topk 8 \
    --impl wgmma_moba,wgmma_moba_atomic --phase fwdbwd --gating included "${fair[@]}" --out "$out/flashmoba-512k.json"
}
case $mode in
  first)
    step sanitize_atomic 90 $moba "${small[@]}" --sanitize all --impl wgmma_moba_atomic,wgmma_moba \
      --out "$out/sanitize-atomic.json"
    step sanitize_atomic_bulk 60 env MOBA_MOBA_ATOMIC_DQ=bulk $moba "${small[@]}" --sanitize all \
      --impl wgmma_moba_atomic --out "$out/sanitize-atomic-bulk.json"
    step sanitize_atomic_passes 60 env MOBA_ACCUMULATOR_BUDGET_MIB=0 $moba "${small[@]}" --sanitize all \
      --impl wgmma_moba_atomic --out "$out/sanitize-atomic-passes.json"
    times=(ncu --metrics gpu__time_duration.sum --launch-count 120)
    step ncu_moba 60 "${times[@]}" $moba bench "${point[@]}" "${once[@]}" --impl wgmma_moba --out /tmp/moba.json
    step ncu_atomic 60 "${times[@]}" $moba bench "${point[@]}" "${once[@]}" --impl wgmma_moba_atomic --out /tmp/atomic.json
    step ncu_atomic_bulk 60 env MOBA_MOBA_ATOMIC_DQ=bulk "${times[@]}" $moba bench "${point[@]}" "${once[@]}" \
      --impl wgmma_moba_atomic --out /tmp/atomic-bulk.json
    for r in moba atomic atomic_bulk; do
      cp "$step_logs/ncu_$r.log" "$out/ncu-times-$r.txt"
      echo "== $r"; python3 ci/ncu_kernel_summary.py "$out/ncu-times-$r.txt" 0.5
    done
    (step test_tiled_mma_gpu 290 build/release/suites/test_tiled_mma_gpu --gtest_brief=1) &
    p1=$!
    (step check_quick_atomic 290 $moba check --suite quick --impl wgmma_moba_atomic --out "$out/check-quick-atomic.json"
     step check_paths_atomic 100 $moba check --suite paths --impl wgmma_moba_atomic --out "$out/check-paths-atomic.json") &
    wait $p1 $!
    grep -hE "records:|tests|PASSED|FAILED" "$step_logs"/test_tiled_mma_gpu.log "$step_logs"/check_*.log \
      "$step_logs"/sanitize*.log | tail -14
    ;;
  second)
    (step ctest_gpu 330 ctest --test-dir build/release -L gpu -j 6 --output-on-failure
     cp build/release/Testing/Temporary/LastTest.log "$out/LastTest.log") &
    p1=$!
    (step check_quick 330 $moba check --suite quick --impl wgmma_moba_atomic,wgmma_moba,wgmma_dense_atomic \
      --out "$out/check-quick.json") &
    wait $p1 $!
    python=$(sed -n 's/^Python3_EXECUTABLE:[A-Z]*=//p' build/release/CMakeCache.txt)
    export PYTHONPATH=$PWD/build/release/harness/python
    step gqa_128k 200 "${python:-python3}" -m moba bench "${point[@]}" \
      --impl wgmma_moba,wgmma_moba_atomic,wgmma_dense_atomic --torch sdpa_cudnn --phase fwd,fwdbwd --gating included \
      --max-seconds 3 --out "$out/gqa-128k.json"
    grep -hE "tests passed|tests failed" "$step_logs"/ctest_gpu.log | tail -3
    grep -hE "records:" "$step_logs"/check_quick.log
    grep -hE "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs"/gqa_128k.log
    ;;
  third)
    step ctest_gpu 330 ctest --test-dir build/release -L gpu -j 6 --output-on-failure
    cp build/release/Testing/Temporary/LastTest.log "$out/LastTest.log"
    sustained_fwdbwd
    grep -hE "tests passed|tests failed|\(Failed\)|Timeout" "$step_logs"/ctest_gpu.log | tail -8
    grep -hE "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs"/gqa_128k.log "$step_logs"/flashmoba_512k.log
    ;;
  l2)
    step sanitize 90 $moba "${small[@]}" --sanitize all --impl wgmma_moba_atomic,wgmma_moba --out "$out/sanitize.json"
    step ncu_atomic 60 ncu --metrics gpu__time_duration.sum --launch-count 120 $moba bench "${point[@]}" "${once[@]}" \
      --impl wgmma_moba_atomic --out /tmp/atomic.json
    cp "$step_logs/ncu_atomic.log" "$out/ncu-times-atomic.txt"
    step ncu_l2 60 ncu --metrics gpu__time_duration.sum,lts__t_sector_hit_rate.pct,dram__bytes_read.sum,dram__bytes_write.sum \
      -k regex:'moba_dkdv_kernel' --launch-count 4 $moba bench "${point[@]}" "${once[@]}" --impl wgmma_moba_atomic,wgmma_moba \
      --out /tmp/l2.json
    cp "$step_logs/ncu_l2.log" "$out/ncu-l2.txt"
    sustained_fwdbwd
    step check_quick_atomic 160 $moba check --suite quick --impl wgmma_moba_atomic --out "$out/check-quick-atomic.json"
    grep -hE "records:" "$step_logs"/sanitize.log "$step_logs"/check_quick_atomic.log
    python3 ci/ncu_kernel_summary.py "$out/ncu-times-atomic.txt" 0.5
    grep -hE "moba_dkdv_kernel|duration|hit_rate|dram__bytes" "$out/ncu-l2.txt" | cut -c1-120
    grep -hE "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs"/gqa_128k.log "$step_logs"/flashmoba_512k.log
    ;;
  profile)
    sections=(ncu --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis
              --section WarpStateStats --section SchedulerStats --section LaunchStats --section SourceCounters)
    step ncu_fused 150 "${sections[@]}" -k regex:'moba_dkdv_kernel' --launch-count 1 -f -o /tmp/fused \
      $moba bench "${point[@]}" "${once[@]}" --impl wgmma_moba_atomic --out /tmp/fused.json
    ncu -i /tmp/fused.ncu-rep --page details > "$out/ncu-sections-fused-128k.txt" 2>&1
    ncu -i /tmp/fused.ncu-rep --page source --csv --print-source sass 2>&1 | gzip > "$out/source-fused-128k.csv.gz"
    python3 ci/ncu_source_top.py "$out/source-fused-128k.csv.gz" 40 > "$out/stalls-fused-128k.txt"
    step test_tiled_mma_gpu 300 build/release/suites/test_tiled_mma_gpu --gtest_brief=1
    grep -hE "tests|PASSED|FAILED" "$step_logs"/test_tiled_mma_gpu.log | tail -6
    grep -hE "Duration|Throughput|Issue Slots Busy|No Eligible|Issued Warp|Warp Cycles Per Issued|L2 Hit|Mem Busy|Max Bandwidth" \
      "$out/ncu-sections-fused-128k.txt" | head -24
    head -30 "$out/stalls-fused-128k.txt"
    ;;
esac
step_gather
exit_steps
