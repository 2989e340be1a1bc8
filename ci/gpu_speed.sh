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
# Usage: ci/gpu_speed.sh memory|paper10m|verify10m   Reports and logs go to ${OUT:-out}/; a summary prints last.
source "$(dirname "$0")/gpu_prologue.sh"
mode=${1:?usage: ci/gpu_speed.sh memory|paper10m|verify10m}
step configure 120 cmake --preset release || { cat "$step_logs/configure.log"; exit 1; }
step build 300 cmake --build --preset release -j "$(nproc)" || { tail -40 "$step_logs/build.log"; exit 1; }
python=$(sed -n 's/^Python3_EXECUTABLE:[A-Z]*=//p' build/release/CMakeCache.txt)
export PYTHONPATH=$PWD/build/release/harness/python MOBA_EXAMPLES=$PWD/harness/python/examples
pymoba=("${python:-python3}" -m moba)
case $mode in
  memory)
    step test_bench_gpu 120 build/release/suites/test_bench_gpu
    step python_bench_gpu 180 "${python:-python3}" harness/python/tests/test_gpu.py Bench
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
  *) echo "unknown mode '$mode' (memory, paper10m or verify10m)"; exit 2 ;;
esac
step_gather
cat "$out/summary.txt"
exit $step_status
