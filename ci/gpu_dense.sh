#!/usr/bin/env bash
# Issue 17, target 3 (wgmma_dense at cuDNN's level) on a GPU machine, one mode per device call:
# - sections: after the dense kernels' CTA order changed to L2 sections (kernels/wgmma/
#   l2_sections.hpp): the CPU test of the order, test_dense_gpu (the quick matrix's zero-sparsity
#   cases and wgmma_dense over several sections at 32K and 64K, against the float64 GPU
#   reference), the dense determinism tests, `moba check --suite quick --impl wgmma_dense`,
#   every sanitizer on a small varlen case; then ncu's kernel times, L2 hit rates and
#   DRAM reads of one 128K MHA fwd+bwd, and the timings against SDPA cuDNN in the same process:
#   32K with 16 heads (SDPA flash too) and 128K with 32 heads as MHA and GQA 32:8, fwd and
#   fwd+bwd (about 420 s on the H200 with the build);
# - compare: whether wgmma_dense is behind cuDNN at 32K or only ran at lower clocks (in one
#   process the implementations run one after another, and the later ones meet a hotter, often
#   throttled GPU): ncu's per-kernel times, at the clocks ncu locks for every kernel, of one
#   32K fwd and fwd+bwd of both (16 heads); then target 3's 1M point (32 / 8 heads, fwd) and
#   Figure 2b's 128K sweep (MHA, GQA 32:8, MQA; wgmma_moba, wgmma_dense, SDPA cuDNN; fwd and
#   fwd+bwd, gating included) in one process each (about 480 s with the build; the 1M point needs
#   more than its 200 s: cuDNN's side alone took ~75 s on 4176af5);
# - pipeline: after the dense forward's consumers overlapped tile n's softmax with tile n - 1's
#   P V (causal_kernel.cuh's consume_dense_pipelined, now consume_tiles_pipelined): test_dense_gpu, the quick suite of
#   wgmma_dense and test_tiled_mma_gpu side by side, the dense determinism tests, every sanitizer
#   on the small varlen case; ncu's per-kernel times of the 32K forward (16 heads) of wgmma_dense
#   and cuDNN; the forward against cuDNN in one process at 32K (16 heads) and 128K (32 heads,
#   MHA and GQA 32:8) (about 430 s with the build);
# - fair: the same-process ratios again with `--warmup-seconds 3` (every implementation warms up
#   for 3 s, so its samples see the clocks of sustained load, not a cool GPU's boost, whichever
#   runs first): test_bench_gpu (the bench's records on the GPU); dense 32K (16 heads) fwd and
#   fwd+bwd against SDPA cuDNN; Figure 2b's 128K forward (MHA, GQA 32:8, MQA; wgmma_moba,
#   wgmma_dense, cuDNN; gating included); then target 3's 1M point (32 / 8 heads, fwd; no warm-up
#   beyond the check's run, 3 samples of ~19 s each) (about 470 s with the build).
# - atomic: the first run of wgmma_dense_atomic (FlashAttention-3's 5-product backward, dQ by fp32
#   atomics inside the dK/dV kernel): test_dense_gpu, its quick suite, every sanitizer on a small
#   varlen case at head dim 128, and side by side ncu's kernel times of one 32K fwd+bwd (16 heads)
#   of both dense entries (the fused dQ summed by bulk reduces, and by float2 atomics with
#   MOBA_DENSE_ATOMIC_DQ=red), the fused kernel's sections and source page; then 32K fwd+bwd of
#   both against SDPA cuDNN in one process with `--warmup-seconds 3` (about 480 s with the build).
# - atomic_confirm: after a change to the dK/dV kernel both dense entries use: every sanitizer on
#   small varlen cases of both, test_dense_gpu beside wgmma_dense_atomic's quick suite and then
#   the dense determinism tests; ncu's kernel times of one 32K fwd+bwd of both; 32K fwd+bwd of
#   both against SDPA cuDNN and Figure 2b's 128K GQA 32:8 fwd+bwd (wgmma_moba, gating included,
#   against both and cuDNN) in one process each with `--warmup-seconds 3` (about 400 s).
# - atomic_quick: after a change to the fused kernel alone (wgmma_dense's kernels byte-identical):
#   every sanitizer on the small head-dim-128 case, wgmma_dense_atomic's quick suite, ncu's kernel
#   times of one 32K fwd+bwd of both, and 32K fwd+bwd against SDPA cuDNN in one process with
#   `--warmup-seconds 3` (about 220 s with the build).
# Usage: ci/gpu_dense.sh sections|compare|pipeline|fair|atomic|atomic_confirm|atomic_quick   Reports and logs go to ${OUT:-out}/; a summary prints last.
source "$(dirname "$0")/gpu_prologue.sh"
mode=${1:?usage: ci/gpu_dense.sh sections|compare|pipeline|fair|atomic|atomic_confirm|atomic_quick}
case $mode in sections|compare|pipeline|fair|atomic|atomic_confirm|atomic_quick) ;;
  *) echo "unknown mode '$mode' (sections, compare, pipeline, fair, atomic, atomic_confirm or atomic_quick)"; exit 2 ;; esac  # before any build
build_release
moba=build/release/harness/cli/moba
# The steps the atomic modes share: sanitizers on a small head-dim-128 varlen case, the quick
# suite, ncu's kernel times of one 32K fwd+bwd of both dense entries, and both against SDPA cuDNN
# at 32K in one process at sustained clocks.
small=(check --seqlens 300,45,1 --heads 4 --kv-heads 2 --block 32 --topk 10 --sanitize all)
once=(--seqlen 32K --heads 16 --head-dim 128 --phase fwdbwd --warmup 0 --min-samples 1 --max-samples 1 --max-seconds 1)
fair=(--warmup-seconds 3 --max-seconds 3)
atomic_sanitize() {
  step sanitize_atomic 150 $moba "${small[@]}" --head-dim 128 --impl wgmma_dense_atomic --out "$out/sanitize-atomic.json"
}
atomic_quick_suite() {
  step check_quick_atomic 240 $moba check --suite quick --impl wgmma_dense_atomic --out "$out/check-quick-atomic.json"
}
atomic_ncu_32k() {
  step ncu_32k 120 ncu --metrics gpu__time_duration.sum -k regex:'dq_kernel|dkdv_kernel|finish_|row_stats' \
    $moba bench "${once[@]}" --impl wgmma_dense,wgmma_dense_atomic --out /tmp/ncu.json
  cp "$step_logs/ncu_32k.log" "$out/ncu-dense-32k-atomic.txt"
}
atomic_dense_32k() {
  step dense_32k 150 "${pymoba[@]}" bench --seqlen 32K --heads 16 --head-dim 128 \
    --impl wgmma_dense,wgmma_dense_atomic --torch sdpa_cudnn --phase fwdbwd "${fair[@]}" --out "$out/dense-32k-atomic.json"
}
python=$(sed -n 's/^Python3_EXECUTABLE:[A-Z]*=//p' build/release/CMakeCache.txt)
export PYTHONPATH=$PWD/build/release/harness/python MOBA_EXAMPLES=$PWD/harness/python/examples
pymoba=("${python:-python3}" -m moba)
case $mode in
  sections)
    step test_l2_sections 30 build/release/suites/test_l2_sections --gtest_brief=1
    (step test_dense_gpu 240 build/release/suites/test_dense_gpu --gtest_brief=1) &
    p1=$!
    (step check_quick_dense 240 $moba check --suite quick --impl wgmma_dense --out "$out/check-quick-wgmma-dense.json") &
    wait $p1 $!
    step dense_determinism 120 build/release/suites/test_tiled_mma_gpu --gtest_brief=1 --gtest_filter='*DenseDeterminism*'
    small=(check --seqlens 300,45,1 --heads 4 --kv-heads 2 --head-dim 64 --block 32 --topk 10)
    step sanitize_dense 120 $moba "${small[@]}" --sanitize all --impl wgmma_dense \
      --out "$out/sanitize-dense.json"
    step ncu_128k_mha 120 ncu --metrics gpu__time_duration.sum,lts__t_sector_hit_rate.pct,dram__bytes_read.sum \
      -k regex:'causal_kernel|dq_kernel|dkdv_kernel' --launch-count 3 $moba bench --seqlen 128K --heads 32 \
      --head-dim 128 --impl wgmma_dense --phase fwdbwd --warmup 0 --min-samples 1 --max-seconds 1 --out /tmp/ncu.json
    cp "$step_logs/ncu_128k_mha.log" "$out/ncu-dense-128k-mha.txt"
    step dense_32k 150 "${pymoba[@]}" bench --seqlen 32K --heads 16 --head-dim 128 --impl wgmma_dense \
      --torch sdpa_cudnn,sdpa_flash --phase fwd,fwdbwd --max-seconds 3 --out "$out/dense-32k.json"
    step dense_128k 200 "${pymoba[@]}" bench --seqlen 128K --heads 32 --kv-heads 32,8 --head-dim 128 \
      --impl wgmma_dense --torch sdpa_cudnn --phase fwd,fwdbwd --max-seconds 3 --out "$out/dense-128k.json"
    grep -hE "tests passed|PASSED|FAILED" "$step_logs"/test_*.log "$step_logs"/dense_determinism.log | head
    grep -hE "records:" "$step_logs"/check_quick_dense.log "$step_logs"/sanitize_dense.log
    grep -hE "causal_kernel|dq_kernel|dkdv_kernel|gpu__time|hit_rate|dram__bytes" "$out/ncu-dense-128k-mha.txt" | head -24
    for f in dense_32k dense_128k; do grep -E "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs/$f.log"; done
    ;;
  compare)
    step ncu_32k 200 ncu --metrics gpu__time_duration.sum --print-summary per-kernel "${pymoba[@]}" bench --seqlen 32K \
      --heads 16 --head-dim 128 --impl wgmma_dense --torch sdpa_cudnn --phase fwd,fwdbwd --warmup 0 --min-samples 1 \
      --max-samples 1 --max-seconds 1 --out /tmp/ncu-32k.json
    cp "$step_logs/ncu_32k.log" "$out/ncu-32k-kernels.txt"
    step dense_1m 200 "${pymoba[@]}" bench --seqlen 1M --heads 32 --kv-heads 8 --head-dim 128 --impl wgmma_dense \
      --torch sdpa_cudnn --phase fwd --warmup 0 --min-samples 3 --time-cap 40 --max-seconds 5 --out "$out/dense-1m.json"
    step sweep_128k 240 "${pymoba[@]}" bench --seqlen 128K --heads 32 --kv-heads 32,8,1 --head-dim 128 --block 2048 \
      --topk 3 --impl wgmma_moba,wgmma_dense --torch sdpa_cudnn --phase fwd,fwdbwd --gating included \
      --max-seconds 3 --out "$out/sweep-128k.json"
    # The kernels above 1 ms at ncu's clocks, by total time (ncu's per-kernel summary).
    python3 ci/ncu_kernel_summary.py "$out/ncu-32k-kernels.txt" 1.0
    for f in dense_1m sweep_128k; do grep -E "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs/$f.log"; done
    ;;
  pipeline)
    (step test_dense_gpu 280 build/release/suites/test_dense_gpu --gtest_brief=1) &
    p1=$!
    (step check_quick_dense 280 $moba check --suite quick --impl wgmma_dense --out "$out/check-quick-wgmma-dense.json") &
    p2=$!
    (step test_tiled_mma_gpu 280 build/release/suites/test_tiled_mma_gpu --gtest_brief=1) &
    wait $p1 $p2 $!
    step sanitize_dense 120 $moba check --seqlens 300,45,1 --heads 4 --kv-heads 2 --head-dim 64 --block 32 --topk 10 \
      --sanitize all --impl wgmma_dense --out "$out/sanitize-dense.json"
    step ncu_32k_fwd 120 ncu --metrics gpu__time_duration.sum --print-summary per-kernel "${pymoba[@]}" bench \
      --seqlen 32K --heads 16 --head-dim 128 --impl wgmma_dense --torch sdpa_cudnn --phase fwd --warmup 0 \
      --min-samples 1 --max-samples 1 --max-seconds 1 --out /tmp/ncu-32k.json
    cp "$step_logs/ncu_32k_fwd.log" "$out/ncu-32k-fwd-kernels.txt"
    step dense_fwd_32k 60 "${pymoba[@]}" bench --seqlen 32K --heads 16 --head-dim 128 --impl wgmma_dense \
      --torch sdpa_cudnn --phase fwd --max-seconds 3 --out "$out/dense-fwd-32k.json"
    step dense_fwd_128k 120 "${pymoba[@]}" bench --seqlen 128K --heads 32 --kv-heads 32,8 --head-dim 128 \
      --impl wgmma_dense --torch sdpa_cudnn --phase fwd --max-seconds 3 --out "$out/dense-fwd-128k.json"
    grep -hE "tests passed|PASSED|FAILED" "$step_logs"/test_*.log | head
    grep -hE "records:" "$step_logs"/check_quick_dense.log "$step_logs"/sanitize_dense.log
    python3 ci/ncu_kernel_summary.py "$out/ncu-32k-fwd-kernels.txt" 1.0
    for f in dense_fwd_32k dense_fwd_128k; do grep -E "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs/$f.log"; done
    ;;
  fair)
    step test_bench_gpu 150 build/release/suites/test_bench_gpu --gtest_brief=1
    step dense_32k 120 "${pymoba[@]}" bench --seqlen 32K --heads 16 --head-dim 128 --impl wgmma_dense \
      --torch sdpa_cudnn --phase fwd,fwdbwd "${fair[@]}" --out "$out/dense-32k-fair.json"
    step sweep_fwd_128k 150 "${pymoba[@]}" bench --seqlen 128K --heads 32 --kv-heads 32,8,1 --head-dim 128 \
      --block 2048 --topk 3 --impl wgmma_moba,wgmma_dense --torch sdpa_cudnn --phase fwd --gating included \
      "${fair[@]}" --out "$out/sweep-fwd-128k-fair.json"
    step dense_1m 240 "${pymoba[@]}" bench --seqlen 1M --heads 32 --kv-heads 8 --head-dim 128 --impl wgmma_dense \
      --torch sdpa_cudnn --phase fwd --warmup 0 --min-samples 3 --max-samples 3 --time-cap 80 --max-seconds 5 \
      --out "$out/dense-1m.json"
    grep -hE "tests passed|PASSED|FAILED" "$step_logs"/test_bench_gpu.log | head -3
    for f in dense_32k sweep_fwd_128k dense_1m; do grep -E "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs/$f.log"; done
    ;;
  atomic)
    atomic_sanitize
    (step test_dense_gpu 300 build/release/suites/test_dense_gpu --gtest_brief=1) &
    p1=$!
    (atomic_quick_suite) &
    wait $p1 $!
    atomic_ncu_32k
    step ncu_32k_red 120 env MOBA_DENSE_ATOMIC_DQ=red ncu --metrics gpu__time_duration.sum -k regex:'dkdv_kernel|finish_' \
      $moba bench "${once[@]}" --impl wgmma_dense_atomic --out /tmp/ncu-red.json
    cat "$step_logs/ncu_32k_red.log" >> "$out/ncu-dense-32k-atomic.txt"
    step ncu_source_atomic 150 ncu --section SpeedOfLight --section WarpStateStats --section SourceCounters \
      -k regex:'dkdv_kernel' --launch-count 1 -f -o /tmp/atomic $moba bench "${once[@]}" --impl wgmma_dense_atomic \
      --out /tmp/atomic.json
    ncu -i /tmp/atomic.ncu-rep --page details > "$out/ncu-sections-atomic-32k.txt" 2>&1
    ncu -i /tmp/atomic.ncu-rep --page source --csv --print-source sass 2>&1 | gzip > "$out/source-atomic-32k.csv.gz"
    python3 ci/ncu_source_top.py "$out/source-atomic-32k.csv.gz" 30 > "$out/stalls-atomic-32k.txt"
    atomic_dense_32k
    grep -hE "tests passed|PASSED|FAILED" "$step_logs"/test_dense_gpu.log | head -3
    grep -hE "records:" "$step_logs"/check_quick_atomic.log "$step_logs"/sanitize_atomic.log
    python3 ci/ncu_kernel_summary.py "$step_logs/ncu_32k.log" 2>&1 | tail -6
    python3 ci/ncu_kernel_summary.py "$step_logs/ncu_32k_red.log" 2>&1 | tail -3
    grep -hE "Duration|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible" "$out/ncu-sections-atomic-32k.txt" | head -8
    head -14 "$out/stalls-atomic-32k.txt"
    grep -E "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs/dense_32k.log"
    ;;
  atomic_confirm)
    atomic_sanitize
    step sanitize_dense 150 $moba "${small[@]}" --head-dim 64 --impl wgmma_dense --out "$out/sanitize-dense.json"
    (step test_dense_gpu 300 build/release/suites/test_dense_gpu --gtest_brief=1) &
    p1=$!
    (atomic_quick_suite &&
     step dense_determinism 120 build/release/suites/test_tiled_mma_gpu --gtest_brief=1 --gtest_filter='*DenseDeterminism*') &
    wait $p1 $!
    atomic_ncu_32k
    atomic_dense_32k
    step moba_128k 200 "${pymoba[@]}" bench --seqlen 128K --heads 32 --kv-heads 8 --head-dim 128 --block 2048 --topk 3 \
      --impl wgmma_moba,wgmma_dense,wgmma_dense_atomic --torch sdpa_cudnn --phase fwdbwd --gating included "${fair[@]}" \
      --out "$out/moba-128k-gqa-fwdbwd.json"
    grep -hE "tests passed|PASSED|FAILED" "$step_logs"/test_dense_gpu.log "$step_logs"/dense_determinism.log | head -4
    grep -hE "records:" "$step_logs"/check_quick_atomic.log "$step_logs"/sanitize_*.log
    python3 ci/ncu_kernel_summary.py "$out/ncu-dense-32k-atomic.txt" 2>&1 | tail -6
    for f in dense_32k moba_128k; do grep -E "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs/$f.log"; done
    ;;
  atomic_quick)
    atomic_sanitize
    atomic_quick_suite
    atomic_ncu_32k
    atomic_dense_32k
    grep -hE "records:" "$step_logs"/check_quick_atomic.log "$step_logs"/sanitize_atomic.log
    python3 ci/ncu_kernel_summary.py "$out/ncu-dense-32k-atomic.txt" 2>&1 | tail -6
    grep -E "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs/dense_32k.log"
    ;;
esac
step_gather
cat "$out/summary.txt"
exit_steps
