#!/usr/bin/env bash
# The first points of the project's history, on a GPU machine, in one go: GPU tests, a sweep
# over lengths 8K-128K x MHA/GQA/MQA for the naive and dense implementations, the PyTorch
# anchors on the same grid, and moba paper --figure 2a up to the lengths the implementations
# reach. Reports go to ${OUT:-out}/; each step has its own time limit so one slow step does
# not cost the others. Prints a short summary last.
# Usage: ci/gpu_reports.sh [tests|sweep|paper|reports|all]   reports = sweep + paper; all takes
# more than one 10-minute device call: run "tests", "sweep" and "paper" as separate calls.
source "$(dirname "$0")/gpu_prologue.sh"
step build 240 bash -c 'cmake --preset release && cmake --build --preset release -j "$(nproc)"'
moba=build/release/harness/cli/moba
grid=(--heads 16 --kv-heads 16,4,1 --head-dim 128 --block 512 --topk 8 --dtype bf16)
mode=${1:-all}
if [[ $mode == tests || $mode == all ]]; then
  step ctest_gpu 420 ctest --preset release -L gpu -j 2
fi
if [[ $mode == sweep || $mode == reports || $mode == all ]]; then
step sweep_short 120 $moba bench --seqlen 8K,32K "${grid[@]}" --impl naive,naive_dense,dense_cublas \
  --phase fwd --max-seconds 3 --out "$out/sweep.json"
# At 128K the naive dense path takes ~15 s a call (one warm-up and one sample each); cuBLAS
# refuses the length (its 128K x 128K scores do not fit) and says so in its record.
step sweep_128k 300 $moba bench --seqlen 128K "${grid[@]}" --impl naive,naive_dense,dense_cublas \
  --phase fwd --max-seconds 3 --resume --out "$out/sweep.json"
# PyTorch beside the kernels on the same grid, in one process (the Python package's bench).
python=$(sed -n 's/^Python3_EXECUTABLE:[A-Z]*=//p' build/release/CMakeCache.txt)
PYTHONPATH=$PWD/build/release/harness/python step anchors 200 "${python:-python3}" -m moba bench \
  --seqlen 8K,32K,128K --heads 16 --kv-heads 16,4,1 --head-dim 128 --block 512 --topk 8 --dtype bf16 --phase fwd \
  --max-seconds 3 --impl wgmma_moba,wgmma_dense,harness/python/examples/flex_moba.py:flex_moba \
  --torch sdpa_cudnn,sdpa_flash,flex_causal --out "$out/anchors.json"
step validate_sweep 30 $moba validate "$out/sweep.json" "$out/anchors.json"
fi
if [[ $mode == paper || $mode == reports || $mode == all ]]; then
# naive_dense at 128K with 32 heads is about 30 s a call: allowed, one warm-up and one sample.
step paper_2a 300 $moba paper --figure 2a --lengths 8K,32K,128K --max-run-seconds 45 --max-seconds 3 \
  --out "$out/paper-2a.json" --markdown "$out/paper-2a.md"
step validate_paper 30 $moba validate "$out/paper-2a.json"
fi
for f in ctest_gpu sweep_128k paper_2a anchors; do
  [[ -f $step_logs/$f.log ]] && { echo "--- $f"; tail -14 "$step_logs/$f.log"; }
done
step_gather
cat "$out/summary.txt"
