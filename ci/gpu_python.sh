#!/usr/bin/env bash
# The Python package on a GPU machine in one call (aimed at under 8 minutes on the H200):
# - build the extension module and the moba tool (python3 on PATH: torch with CUDA, pybind11);
# - the Python tests (ctest -R python_: the op against the harness truth, autograd, torch.compile
#   fullgraph forward and backward against eager, both examples and failing callables checked,
#   bench beside SDPA cuDNN);
# - `python -m moba check` on the quick suite (shard ${MOBA_PY_SHARD:-0/2}; `all` for every case)
#   of both examples (harness/python/examples) and wgmma_moba through the torch op;
# - `python -m moba bench`: the examples, wgmma_moba (kernel and op), wgmma_dense, SDPA cuDNN and
#   flash, FlexAttention, at 8K tokens, 16/4 heads, forward and forward+backward, in one process;
# - `python -m moba paper --figure 2b` at 32K and 128K with SDPA cuDNN/flash beside the kernels,
#   so the dense baseline is the fastest measured in that process.
# MOBA_PY_STEPS (default tests,check,bench,paper) picks steps, so the work can be split over two
# calls if one runs long; MOBA_PY_BUILD=0 skips the configure and build. Reports go to ${OUT:-out}/; logs to $OUT/log.txt. Prints a short table
# last; exits non-zero when a step failed.
source "$(dirname "$0")/gpu_prologue.sh"
# MOBA_PY_BUILD=0: the caller built everything already (gpu_verify.sh runs this beside ctest,
# which must not meet a reconfigure).
if [[ ${MOBA_PY_BUILD:-1} == 1 ]]; then
  step configure 120 cmake --preset release || { cat "$step_logs/configure.log"; exit 1; }
  grep -E "MOBA_PYTHON" "$step_logs/configure.log"
  grep -q "MOBA_PYTHON: building" "$step_logs/configure.log" \
    || { echo "the Python package is not configured (see the MOBA_PYTHON line above)" | tee -a "$out/summary.txt"; exit 1; }
  step build 360 cmake --build --preset release --target moba_python moba -j "$(nproc)" \
    || { tail -40 "$step_logs/build.log"; exit 1; }
fi
ls build/release/harness/python/moba/_moba*.so >/dev/null 2>&1 \
  || { echo "the Python package is not built (build/release/harness/python/moba/_moba*.so)" | tee -a "$out/summary.txt"; exit 1; }
python=$(sed -n 's/^Python3_EXECUTABLE:[A-Z]*=//p' build/release/CMakeCache.txt)
python=${python:-python3}
export PYTHONPATH=$PWD/build/release/harness/python
examples=harness/python/examples
shard=${MOBA_PY_SHARD:-0/2}
shard_flag=(--shard "$shard")
[[ $shard == all ]] && shard_flag=()

steps=,${MOBA_PY_STEPS:-tests,check,bench,paper},
wants() { [[ $steps == *,$1,* ]]; }

wants tests && step python_tests 330 ctest --preset release -R '^python_' --timeout 320
wants check && step check_quick 300 "$python" -m moba check --suite quick "${shard_flag[@]}" \
  --impl "$examples/plain_moba.py:plain_moba,$examples/flex_moba.py:flex_moba,op_wgmma_moba" \
  --out "$out/check-python-quick.json"
wants bench && step bench 240 "$python" -m moba bench --seqlen 8K --heads 16 --kv-heads 4 --head-dim 128 --block 512 --topk 3 \
  --phase fwd,fwdbwd --gating separate --max-seconds 1 \
  --impl "$examples/plain_moba.py:plain_moba,$examples/flex_moba.py:flex_moba,op_wgmma_moba,wgmma_moba,wgmma_dense" \
  --torch sdpa_cudnn,sdpa_flash,flex_causal --out "$out/bench-python.json"
wants paper && step paper_2b 150 "$python" -m moba paper --figure 2b --lengths 32K,128K --max-seconds 1 \
  --impl wgmma_moba,wgmma_dense --torch sdpa_cudnn,sdpa_flash \
  --out "$out/paper-2b-python.json" --markdown "$out/paper-2b-python.md"
reports=()
for f in check-python-quick bench-python paper-2b-python; do [[ -f $out/$f.json ]] && reports+=("$out/$f.json"); done
((${#reports[@]})) && step validate 30 build/release/harness/cli/moba validate "${reports[@]}"
step_gather
[[ -f $step_logs/python_tests.log ]] && grep -E "tests passed|tests failed|Skipped|\*\*\*Failed|Passed" "$step_logs/python_tests.log" | tail -6
((${#reports[@]})) && "$python" ci/python_summary.py "${reports[@]}"
[[ -f $out/paper-2b-python.md ]] && cat "$out/paper-2b-python.md"
cat "$out/summary.txt"
exit_steps
