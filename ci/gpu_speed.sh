#!/usr/bin/env bash
# Issue 17's measurements that are runs, not kernel changes, on a GPU machine (each mode fits one
# 10-minute device call on the H200):
# - memory: the bench's memory tests (test_bench_gpu; the Python bench beside SDPA), then MoBA and
#   dense forward+backward at 1M tokens, 32 query / 8 kv heads, D 128, bf16, block 4096, top-k 12
#   (Figure 2a's setting), gating included: time and measured peak device memory side by side
#   (one sample of the dense run: about 70 s each; its median is marked under-sampled);
# - paper10m: Figure 2b at 4M and 10M tokens, one head (the MoBA report's times match about one
#   attention head per layer; 32 heads at 10M would not fit one H200), wgmma kernels and SDPA
#   cuDNN in one process, no warm-up beyond the check's run (a dense 10M forward is about a minute).
# - verify10m: after the wgmma kernels moved their tiles from grid y to grid x (10M tokens did not
#   launch): the quick suite of wgmma_dense and wgmma_moba against float64, both under memcheck on
#   a small varlen batch, then Figure 2b at 10M (one head) with SDPA cuDNN in the same process.
# - sweep: dense at 32K (16 heads) against SDPA cuDNN and flash, fwd and fwd+bwd; Figure 2b's 128K
#   point (block 2048, top-k 3) for MHA 32:32, GQA 32:8 and MQA 32:1, fwd and fwd+bwd, gating
#   included; FlashMoBA's setting (512K, 16 heads, block 128, top-k 8), gating included and then
#   timed apart; cuDNN in the same process each time. The fastest entries: wgmma_moba_atomic for
#   MoBA (wgmma_moba's forward and gating, the 5-product backward), wgmma_dense (forward) and
#   wgmma_dense_atomic (its forward, the 5-product backward) for dense.
# - paper1m: `moba paper` for Figures 2a and 2b at 128K, 256K, 512K and 1M (32 query / 8 kv heads)
#   with SDPA cuDNN in the same process: target 4's two figures and target 3's dense 1M forward.
# Usage: ci/gpu_speed.sh memory|paper10m|verify10m|sweep|paper1m   Reports and logs go to ${OUT:-out}/; a summary prints last.
source "$(dirname "$0")/gpu_prologue.sh"
mode=${1:?usage: ci/gpu_speed.sh memory|paper10m|verify10m|sweep|paper1m}
case $mode in memory|paper10m|verify10m|sweep|paper1m) ;; *) echo "unknown mode '$mode' (memory, paper10m, verify10m, sweep or paper1m)"; exit 2 ;; esac  # before any build
build_release
python=$(sed -n 's/^Python3_EXECUTABLE:[A-Z]*=//p' build/release/CMakeCache.txt)
export PYTHONPATH=$PWD/build/release/harness/python MOBA_EXAMPLES=$PWD/harness/python/examples
pymoba=("${python:-python3}" -m moba)
case $mode in
  memory)
    step test_bench_gpu 120 build/release/suites/test_bench_gpu
    step python_bench_gpu 180 env MOBA_GPU_ALONE=1 "${python:-python3}" harness/python/tests/test_gpu.py Bench BenchMemory
    step memory_1m 420 build/release/harness/cli/moba bench --seqlen 1M --heads 32 --kv-heads 8 --head-dim 128 --block 4096 \
      --topk 12 --impl wgmma_moba,wgmma_dense --phase fwdbwd --gating included --warmup 0 --min-samples 3 \
      --time-cap 60 --max-seconds 5 --out "$out/memory-1m.json"
    tail -12 "$step_logs/memory_1m.log"
    ;;
  paper10m)
    step paper_2b_10m 540 "${pymoba[@]}" paper --figure 2b --lengths 4M,10M --heads 1 --kv-heads 1 \
      --impl wgmma_moba,wgmma_dense --torch sdpa_cudnn --warmup 0 --max-run-seconds 150 --max-seconds 5 \
      --time-cap 40 --out "$out/paper-2b-10m.json" --markdown "$out/paper-2b-10m.md"
    cat "$out/paper-2b-10m.md" 2>/dev/null
    ;;
  verify10m)
    moba=build/release/harness/cli/moba
    step check_quick_wgmma 200 $moba check --suite quick --impl wgmma_dense,wgmma_moba --out "$out/check-quick-wgmma.json"
    small=(check --seqlens 300,45,1 --heads 4 --kv-heads 2 --head-dim 64 --block 32 --sanitize memcheck)
    step memcheck_moba 150 $moba "${small[@]}" --topk 3 --impl wgmma_moba --out "$out/memcheck-wgmma-moba.json"
    step memcheck_dense 150 $moba "${small[@]}" --topk 10 --impl wgmma_dense --out "$out/memcheck-wgmma-dense.json"
    grep -hE "records:" "$step_logs"/check_quick_wgmma.log "$step_logs"/memcheck_*.log
    step paper_2b_10m 330 "${pymoba[@]}" paper --figure 2b --lengths 10M --heads 1 --kv-heads 1 \
      --impl wgmma_moba,wgmma_dense --torch sdpa_cudnn --warmup 0 --max-seconds 5 --time-cap 40 \
      --out "$out/paper-2b-10m.json" --markdown "$out/paper-2b-10m.md"
    cat "$out/paper-2b-10m.md" 2>/dev/null
    ;;
  sweep)
    # Every ratio over the fastest dense implementation in the same process (cuDNN included).
    step dense_32k 150 "${pymoba[@]}" bench --seqlen 32K --heads 16 --head-dim 128 --impl wgmma_dense,wgmma_dense_atomic \
      --torch sdpa_cudnn,sdpa_flash --phase fwd,fwdbwd --max-seconds 3 --out "$out/dense-32k.json"
    step sweep_128k 300 "${pymoba[@]}" bench --seqlen 128K --heads 32 --kv-heads 32,8,1 --head-dim 128 --block 2048 \
      --topk 3 --impl wgmma_moba_atomic,wgmma_dense,wgmma_dense_atomic --torch sdpa_cudnn --phase fwd,fwdbwd \
      --gating included --max-seconds 3 --out "$out/sweep-128k.json"
    step flashmoba_512k 240 "${pymoba[@]}" bench --seqlen 512K --heads 16 --head-dim 128 --block 128 --topk 8 \
      --impl wgmma_moba_atomic,wgmma_dense_atomic --torch sdpa_cudnn --phase fwd,fwdbwd --gating included --warmup 0 \
      --min-samples 3 --time-cap 30 --max-seconds 5 --out "$out/flashmoba-512k.json"
    step flashmoba_gating 90 build/release/harness/cli/moba bench --seqlen 512K --heads 16 --head-dim 128 --block 128 --topk 8 \
      --impl wgmma_moba_atomic --phase fwd --gating separate --max-seconds 3 --out "$out/flashmoba-gating.json"
    for f in dense_32k sweep_128k flashmoba_512k flashmoba_gating; do grep -E "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs/$f.log"; done
    ;;
  paper1m)
    for figure in 2a 2b; do
      step paper_$figure 270 "${pymoba[@]}" paper --figure $figure --lengths 128K,256K,512K,1M \
        --impl wgmma_moba_atomic,wgmma_dense --torch sdpa_cudnn --warmup 0 --max-run-seconds 40 --max-seconds 3 \
        --time-cap 40 --out "$out/paper-$figure.json" --markdown "$out/paper-$figure.md"
      cat "$out/paper-$figure.md" 2>/dev/null
    done
    ;;
  *) echo "unknown mode '$mode' (memory, paper10m, verify10m, sweep or paper1m)"; exit 2 ;;
esac
step_gather
cat "$out/summary.txt"
exit_steps
