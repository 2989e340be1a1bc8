#!/usr/bin/env bash
# The optimized kernels' evidence reports on a GPU machine in one call: moba paper for Figure 2a
# and 2b up to 1M tokens, FlashMoBA's setting (512K tokens, 16 heads, block 128, top-k 8,
# forward and forward+backward), a sweep over MHA/GQA/MQA at 128K (block 512, top-k 8, forward
# and forward+backward), and the zero-sparsity long-suite case at 64K against the float64 GPU truth.
# Reports go to ${OUT:-out}/ (few files: the device tool returns a limited number); each step
# has its own time limit. Prints a short summary last.
# Usage: ci/gpu_tiled_reports.sh [moba_impl,dense_impl]   (default wgmma_moba,wgmma_dense)
source "$(dirname "$0")/gpu_prologue.sh"
impls=${1:-wgmma_moba,wgmma_dense}
step build 240 bash -c 'cmake --preset release && cmake --build --preset release -j "$(nproc)"'
moba=build/release/harness/cli/moba
step paper_2a 150 $moba paper --figure 2a --lengths 128K,512K,1M --impl $impls --max-run-seconds 40 \
  --max-seconds 2 --out "$out/paper-2a.json" --markdown "$out/paper-2a.md"
step paper_2b 120 $moba paper --figure 2b --lengths 128K,512K,1M --impl $impls --max-run-seconds 40 \
  --max-seconds 2 --out "$out/paper-2b.json" --markdown "$out/paper-2b.md"
step flashmoba 100 $moba bench --seqlen 512K --heads 16 --head-dim 128 --block 128 --topk 8 --impl $impls \
  --phase fwd,fwdbwd --max-seconds 2 --out "$out/flashmoba.json"
step sweep 90 $moba bench --seqlen 128K --heads 16 --kv-heads 16,4,1 --head-dim 128 --block 512 --topk 8 \
  --impl $impls --phase fwd,fwdbwd --max-seconds 1 --out "$out/sweep-128k.json"
step long_zero 100 $moba check --seqlens 65536 --heads 8 --kv-heads 2 --head-dim 128 --block 1024 --topk 64 \
  --dtype bf16 --reference gpu --impl $impls --out "$out/check-long-zero.json"
step_gather
cat "$out/paper-2a.md" "$out/paper-2b.md" 2>/dev/null
grep -hE " fwd" "$step_logs/flashmoba.log" "$step_logs/sweep.log"
grep -E "records:" "$step_logs/long_zero.log"; grep -E "incorrect|failed" "$step_logs/long_zero.log" | head -5
cat "$out/summary.txt"
