#!/usr/bin/env bash
# The inverse block lists counted per CTA, ranks from the count, deterministic lists by one radix
# sort per wave (kernels/moba/block_lists.cu; issue 17, targets 1 and 2: the list builds took
# 3.5 ms of a 128K GQA fwd+bwd and the segmented sort 18 ms of FlashMoBA's at ncu's clock) on a GPU
# machine (e2baa94 ran one mode: test_tiled_mma_gpu did not finish in 200 s beside the quick
# suite; alone it takes ~170 s):
# - measure: correct first: test_block_lists_gpu (the GPU build against the host emulation) and
#            every sanitizer on a small varlen case through both MoBA entries (forward and
#            backward build lists); ncu kernel times of one fwd+bwd at Figure 2b's 128K GQA point
#            (block 2048, top-k 3, 32 / 8 heads) and at FlashMoBA's setting (512K, 16 heads, block
#            128, top-k 8); the 128K GQA fwd+bwd at sustained clocks with wgmma_dense_atomic and
#            SDPA cuDNN in the process, and FlashMoBA's setting fwd+bwd (about 330 s);
#            measure stops after test_block_lists_gpu when that fails;
# - verify:  test_tiled_mma_gpu (every MoBA entry against float64), then the quick suite of
#            wgmma_moba_atomic (about 250 s; the build of measure's call is reused when warm);
# - all:     measure, then verify, in one call (about 520 s).
# Usage: ci/gpu_block_lists.sh measure|verify|all   Reports and logs go to ${OUT:-out}/.
source "$(dirname "$0")/gpu_prologue.sh"
mode=${1:?usage: ci/gpu_block_lists.sh measure|verify|all}
case $mode in measure|verify|all) ;; *) echo "unknown mode '$mode' (measure, verify or all)"; exit 2 ;; esac  # before any build
moba=build/release/harness/cli/moba
build_release
small=(check --seqlens 300,45,1 --heads 4 --kv-heads 2 --head-dim 128 --block 32 --topk 3)
point=(--seqlen 128K --heads 32 --kv-heads 8 --head-dim 128 --block 2048 --topk 3)
flashmoba=(--seqlen 512K --heads 16 --head-dim 128 --block 128 --topk 8)
once=(--phase fwdbwd --gating included --warmup 0 --min-samples 1 --max-seconds 1)
fair=(--warmup-seconds 3 --max-seconds 3)

measure() {
    step test_block_lists_gpu 60 build/release/suites/test_block_lists_gpu --gtest_brief=1 || {
      tail -30 "$step_logs/test_block_lists_gpu.log"; step_gather; exit 1; }
    step sanitize 90 $moba "${small[@]}" --sanitize all --impl wgmma_moba_atomic,wgmma_moba --out "$out/sanitize.json"
    step ncu_atomic 60 ncu --metrics gpu__time_duration.sum --launch-count 120 $moba bench "${point[@]}" "${once[@]}" \
      --impl wgmma_moba_atomic --out /tmp/atomic.json
    cp "$step_logs/ncu_atomic.log" "$out/ncu-times-atomic.txt"
    step ncu_flashmoba 120 ncu --metrics gpu__time_duration.sum --launch-count 200 $moba bench "${flashmoba[@]}" \
      "${once[@]}" --impl wgmma_moba_atomic --out /tmp/flashmoba.json
    cp "$step_logs/ncu_flashmoba.log" "$out/ncu-times-flashmoba.txt"
    python=$(sed -n 's/^Python3_EXECUTABLE:[A-Z]*=//p' build/release/CMakeCache.txt)
    step gqa_128k 150 env PYTHONPATH="$PWD/build/release/harness/python" "${python:-python3}" -m moba bench "${point[@]}" \
      --impl wgmma_moba_atomic,wgmma_dense_atomic --torch sdpa_cudnn --phase fwdbwd --gating included \
      "${fair[@]}" --out "$out/gqa-128k-fwdbwd.json"
    step flashmoba_512k 60 $moba bench "${flashmoba[@]}" --impl wgmma_moba_atomic --phase fwdbwd --gating included \
      "${fair[@]}" --out "$out/flashmoba-512k.json"
    grep -hE "tests|PASSED|FAILED" "$step_logs"/test_block_lists_gpu.log | tail -4
    grep -hE "records:" "$step_logs"/sanitize.log
    python3 ci/ncu_kernel_summary.py "$out/ncu-times-atomic.txt" 0.05
    python3 ci/ncu_kernel_summary.py "$out/ncu-times-flashmoba.txt" 0.1
    grep -hE "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs"/gqa_128k.log "$step_logs"/flashmoba_512k.log
}
verify() {
    step test_tiled_mma_gpu 240 build/release/suites/test_tiled_mma_gpu --gtest_brief=1
    step check_quick_atomic 200 $moba check --suite quick --impl wgmma_moba_atomic --out "$out/check-quick-atomic.json"
    grep -hE "tests|PASSED|FAILED" "$step_logs"/test_tiled_mma_gpu.log | tail -6
    grep -hE "records:" "$step_logs"/check_quick_atomic.log
}
case $mode in
  measure) measure ;;
  verify) verify ;;
  all) measure; verify ;;
esac
step_gather
exit_steps
