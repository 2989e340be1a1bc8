#!/usr/bin/env bash
# Issue 17, target 4 (the MoBA forward at 90% of dense's rate) on a GPU machine, one mode per
# device call:
# - overlap: after the own-block pass (causal_kernel<.., true>) and the sparse waves
#   (wave_kernel.cuh) took the dense forward's overlap inside a consumer (tile n's softmax beside
#   tile n - 1's P V: consume_tiles_pipelined): test_tiled_mma_gpu, the quick suite and the paths
#   suite (block 192: a wave's second key tile is partial) of wgmma_moba side by side; every
#   sanitizer on the small varlen case (default budget, and one kv head per pass); ncu's kernel
#   times of one forward at Figure 2b's 128K GQA point (block 2048, top-k 3, 32 / 8 heads); then
#   that point's forward for MHA, GQA 32:8 and MQA, gating included, wgmma_moba and wgmma_dense
#   with SDPA cuDNN in the same process (about 560 s with the build).
# - waves128: what the forward spends at FlashMoBA's block 128 (512K, 16 heads, block 128, top-k
#   8; one key tile per wave item): ncu's kernel times of one forward with gating, then ncu's
#   sections, L2 reduction counters and source page of one sparse-wave launch (the third), and
#   the forward timed with gating apart (about 200 s with the build).
# - ahead: after the sparse waves decode their items and load row entries an item ahead
#   (ItemStream, wave_items.cuh): test_tiled_mma_gpu, the paths suite and both sanitizer runs of
#   wgmma_moba_atomic side by side, then waves128's profile.
# - ahead_final: FlashMoBA's fwd+bwd with wgmma_dense_atomic and SDPA cuDNN in one process (about
#   180 s: a dense fwd+bwd sample takes 7 s there, and each entry is checked first) and Figure 2b's
#   128K GQA forward with gating apart. The GPU label (430-450 s with -j 6) needs a call of its
#   own: beside these it ran out of time at 8e93901, and test_bench_gpu_memory fails beside any
#   other process that moves device memory.
# - cross: after the sparse waves issue the next item's first S under an item's merge
#   (wave_kernel.cuh, eighth session): ahead's steps (correctness first, then waves128's profile).
# - cross_final: one call for a tree whose GPU label runs in a call of its own: the paths suite and
#   both sanitizer runs of wgmma_moba_atomic, waves128's profile, Figure 2b's 128K GQA forward,
#   FlexAttention's causal baseline at FlashMoBA's 512K forward beside wgmma_dense (its block mask
#   is built compiled above 8K tokens now; the eager build asked for 256 GiB there), then
#   ahead_final's fwd+bwd (about 520 s with the build).
# Usage: ci/gpu_forward.sh overlap|waves128|ahead|ahead_final|cross|cross_final   Reports and logs go to ${OUT:-out}/; a summary prints last.
source "$(dirname "$0")/gpu_prologue.sh"
mode=${1:?usage: ci/gpu_forward.sh overlap|waves128|ahead|ahead_final|cross|cross_final}
case $mode in overlap|waves128|ahead|ahead_final|cross|cross_final) ;;
  *) echo "unknown mode '$mode' (overlap, waves128, ahead, ahead_final, cross, cross_final)"; exit 2 ;; esac  # before any build
build_release
moba=build/release/harness/cli/moba
python=$(sed -n 's/^Python3_EXECUTABLE:[A-Z]*=//p' build/release/CMakeCache.txt)
export PYTHONPATH=$PWD/build/release/harness/python MOBA_EXAMPLES=$PWD/harness/python/examples
small=(check --seqlens 300,45,1 --heads 4 --kv-heads 2 --head-dim 64 --block 32 --topk 3)
point=(--seqlen 128K --heads 32 --kv-heads 8 --head-dim 128 --block 2048 --topk 3)
flashmoba=(--seqlen 512K --heads 16 --head-dim 128 --block 128 --topk 8)
# FlashMoBA's forward at ncu's clocks: every kernel of one forward with gating, then the sections,
# L2 reduction counters and source page of the third sparse-wave launch; then the forward timed
# with gating apart.
wave_profile() {
    local one_fwd=(bench "${flashmoba[@]}" --phase fwd --gating included --warmup 0 --min-samples 1 --max-samples 1
                   --max-seconds 1 --impl wgmma_moba_atomic)
    step ncu_fwd 150 ncu --metrics gpu__time_duration.sum --launch-count 80 $moba "${one_fwd[@]}" --out /tmp/ncu.json
    cp "$step_logs/ncu_fwd.log" "$out/ncu-fwd-flashmoba.txt"
    local red=lts__t_sectors_op_red.sum,lts__t_sectors_op_red.sum.per_second,l1tex__t_requests_pipe_lsu_mem_global_op_red.sum
    step ncu_wave 200 ncu --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
      --section MemoryWorkloadAnalysis_Tables --section WarpStateStats --section SchedulerStats --section LaunchStats \
      --section InstructionStats --section SourceCounters --metrics "$red" -k regex:sparse_wave --launch-skip 2 \
      --launch-count 1 -f -o /tmp/wave $moba "${one_fwd[@]}" --out /tmp/wave.json
    ncu -i /tmp/wave.ncu-rep --page details > "$out/ncu-sections-wave-flashmoba.txt" 2>&1
    ncu -i /tmp/wave.ncu-rep --page source --csv --print-source sass 2>&1 | gzip > "$out/source-wave-flashmoba.csv.gz"
    python3 ci/ncu_source_top.py "$out/source-wave-flashmoba.csv.gz" 60 > "$out/stalls-wave-flashmoba.txt"
    step fwd_timed 90 $moba bench "${flashmoba[@]}" --impl wgmma_moba_atomic --phase fwd --gating separate \
      --warmup-seconds 3 --max-seconds 3 --out "$out/flashmoba-fwd-gating.json"
}
wave_summary() {
    python3 ci/ncu_kernel_summary.py "$out/ncu-fwd-flashmoba.txt" 0.2
    grep -hE "Duration|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Registers Per|Executed Instructions  |L2 Hit|DRAM Through|Memory Through|lts__t|l1tex__t_requests" \
      "$out/ncu-sections-wave-flashmoba.txt" | head -24
    head -${1:-60} "$out/stalls-wave-flashmoba.txt"
    grep -hE "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs/fwd_timed.log"
}

# wgmma_moba_atomic's paths suite beside both sanitizer runs (default budget, one kv head per
# pass), in the background; the caller waits. $1: the paths suite's time limit.
atomic_checks() {
    (step check_paths "$1" $moba check --suite paths --impl wgmma_moba_atomic --out "$out/check-paths-atomic.json") &
    (step sanitize 120 $moba "${small[@]}" --sanitize all --impl wgmma_moba_atomic --out "$out/sanitize.json"
     step sanitize_passes 120 env MOBA_ACCUMULATOR_BUDGET_MIB=0 $moba "${small[@]}" --sanitize all \
       --impl wgmma_moba_atomic --out "$out/sanitize-passes.json") &
}
# Figure 2b's 128K GQA forward with gating apart.
fwd_128k() {
    step fwd_128k 60 $moba bench "${point[@]}" --impl wgmma_moba_atomic --phase fwd --gating separate \
      --warmup-seconds 3 --max-seconds 3 --out "$out/gqa-128k-fwd-gating.json"
}
# FlashMoBA's fwd+bwd against the dense implementations in one process. $1: the time limit.
flashmoba_fwdbwd() {
    step flashmoba_fwdbwd "$1" "${python:-python3}" -m moba bench "${flashmoba[@]}" \
      --impl wgmma_moba_atomic,wgmma_dense_atomic --torch sdpa_cudnn --phase fwdbwd --gating included \
      --warmup 0 --min-samples 3 --time-cap 30 --max-seconds 5 --out "$out/flashmoba-fwdbwd.json"
}

case $mode in
  overlap)
    (step test_tiled_mma_gpu 330 build/release/suites/test_tiled_mma_gpu --gtest_brief=1) &
    p1=$!
    (step check_quick 330 $moba check --suite quick --impl wgmma_moba --out "$out/check-quick-wgmma-moba.json") &
    p2=$!
    (step check_paths 330 $moba check --suite paths --impl wgmma_moba --out "$out/check-paths-wgmma-moba.json") &
    wait $p1 $p2 $!
    step sanitize 60 $moba "${small[@]}" --sanitize all --impl wgmma_moba --out "$out/sanitize.json"
    step sanitize_passes 60 env MOBA_ACCUMULATOR_BUDGET_MIB=0 $moba "${small[@]}" --sanitize all \
      --impl wgmma_moba --out "$out/sanitize-passes.json"
    # The bench's check forward, then one timed forward: every launch of both at ncu's clocks.
    step ncu_fwd 90 ncu --metrics gpu__time_duration.sum --launch-count 40 $moba bench "${point[@]}" --phase fwd \
      --gating included --warmup 0 --min-samples 1 --max-samples 1 --max-seconds 1 --impl wgmma_moba --out /tmp/ncu.json
    cp "$step_logs/ncu_fwd.log" "$out/ncu-fwd-128k-gqa.txt"
    step sweep_fwd_128k 200 "${python:-python3}" -m moba bench --seqlen 128K --heads 32 --kv-heads 32,8,1 \
      --head-dim 128 --block 2048 --topk 3 --impl wgmma_moba,wgmma_dense --torch sdpa_cudnn --phase fwd \
      --gating included --max-seconds 3 --out "$out/sweep-fwd-128k.json"
    grep -hE "tests passed|PASSED|FAILED" "$step_logs"/test_tiled_mma_gpu.log | head
    grep -hE "records:" "$step_logs"/check_*.log "$step_logs"/sanitize*.log
    python3 ci/ncu_kernel_summary.py "$out/ncu-fwd-128k-gqa.txt" 0.5
    grep -E "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs/sweep_fwd_128k.log"
    ;;
  waves128)
    wave_profile
    wave_summary
    ;;
  ahead|cross)
    (step test_tiled_mma_gpu 300 build/release/suites/test_tiled_mma_gpu --gtest_brief=1) &
    atomic_checks 300
    wait
    wave_profile
    grep -hE "tests passed|PASSED|FAILED" "$step_logs"/test_tiled_mma_gpu.log | head
    grep -hE "records:" "$step_logs"/check_*.log "$step_logs"/sanitize*.log
    wave_summary 40
    ;;
  cross_final)
    atomic_checks 120
    wait
    wave_profile
    fwd_128k
    step flex_512k 120 "${python:-python3}" -m moba bench "${flashmoba[@]}" --impl wgmma_dense \
      --torch flex_causal --phase fwd --warmup 0 --min-samples 2 --max-seconds 5 --out "$out/flex-512k-fwd.json"
    flashmoba_fwdbwd 240
    grep -hE "records:" "$step_logs"/check_*.log "$step_logs"/sanitize*.log
    wave_summary 12
    grep -hE "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs"/fwd_128k.log "$step_logs"/flex_512k.log \
      "$step_logs"/flashmoba_fwdbwd.log
    ;;
  ahead_final)
    flashmoba_fwdbwd 300
    fwd_128k
    grep -hE "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs"/flashmoba_fwdbwd.log "$step_logs"/fwd_128k.log
    ;;
esac
step_gather
cat "$out/summary.txt"
exit_steps
