#!/usr/bin/env bash
# The optimized kernels' evidence reports on a GPU machine in one call: the zero-sparsity
# long-suite cases at 64K against the naive truth, moba paper for Figure 2a and 2b up to 1M
# tokens with the tiled implementations, and FlashMoBA's setting (512K, 16 heads, block 128,
# top-k 8, forward+backward). Reports go to ${OUT:-out}/ (few files: the device tool returns a
# limited number); each step has its own time limit. Prints a short summary last.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out"
export MOBA_SKIP_DEPS=${MOBA_SKIP_DEPS:-1}
source ci/deps.sh
step_logs=$(mktemp -d)  # per-step logs, gathered into $out/log.txt at the end
source ci/steps.sh
step build 240 bash -c 'cmake --preset release && cmake --build --preset release -j "$(nproc)"'
moba=build/release/harness/cli/moba
impls=tiled_mma,tiled_mma_dense
step naive_tests 120 build/release/suites/test_naive_gpu --gtest_filter='NaiveGpu.*'
step long_zero 150 $moba check --seqlens 65536 --heads 8 --kv-heads 2 --head-dim 128 --block 1024 --topk 64 \
  --dtype bf16 --reference naive --impl $impls --out "$out/check-long-zero.json"
step paper_2a 170 $moba paper --figure 2a --lengths 128K,512K,1M --impl $impls --max-run-seconds 40 \
  --max-seconds 2 --out "$out/paper-2a.json" --markdown "$out/paper-2a.md"
step flashmoba 100 $moba bench --seqlen 512K --heads 16 --head-dim 128 --block 128 --topk 8 --impl $impls \
  --phase fwd,fwdbwd --max-seconds 2 --out "$out/flashmoba.json"
step paper_2b 120 $moba paper --figure 2b --lengths 128K,512K,1M --impl $impls --max-run-seconds 40 \
  --max-seconds 2 --out "$out/paper-2b.json" --markdown "$out/paper-2b.md"
grep -E "records:" "$step_logs/long_zero.log"; grep -E "incorrect|failed" "$step_logs/long_zero.log" | head -5
tail -3 "$step_logs/naive_tests.log"
cat "$out/paper-2a.md" "$out/paper-2b.md" 2>/dev/null
grep -E "fwd" "$step_logs/flashmoba.log"
step_gather
cat "$out/summary.txt"
