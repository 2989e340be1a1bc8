#!/usr/bin/env bash
# The decode issue's GPU evidence, run by gpu_verify.sh (MOBA_VERIFY_DECODE=1) after ctest.
# Sourced, with $moba, $out and step() set:
# - the decode suite for every implementation with a decode step (SEMANTICS.md §9.2);
# - each decode implementation under compute-sanitizer memcheck, racecheck, synccheck and
#   initcheck on a small paged GQA batch (one token, a 9-token chunk, a one-token cache);
# (MOBA_VERIFY_DECODE_CHECKS=0 leaves those two out);
# - PyTorch's SDPA dense decodes through the decode suite (`python -m moba check`), when the
#   Python package is built;
# - the decode study timed (MOBA_VERIFY_DECODE_STUDY: "small", the default, "full", "sdpa" or
#   "none"), reports in $out/decode-study-*.json. With the Python package built it runs as
#   `python -m moba decode-study`, so SDPA's flash and cuDNN decodes are timed beside
#   split_decode_dense in one process and the speedup is over the fastest of them.
decode_tool=($moba)
if ls build/release/harness/python/moba/_moba*.so >/dev/null 2>&1; then
  decode_python=$(sed -n 's/^Python3_EXECUTABLE:[A-Z]*=//p' build/release/CMakeCache.txt)
  decode_tool=(env PYTHONPATH="$PWD/build/release/harness/python" "${decode_python:-python3}" -m moba)
fi
if [[ ${MOBA_VERIFY_DECODE_CHECKS:-1} == 1 ]]; then
  step check_decode 300 $moba check --suite decode --impl all --out "$out/check-decode.json"
  # cuDNN has no kernel for some of the suite's shapes (a batch with a one-token cache; its
  # failures are in reports/h200/decode-db188b2/), so the step that must pass checks these two;
  # python_gpu (ctest) runs all three and allows torch's "no kernel", never a wrong answer.
  [[ ${decode_tool[0]} == env ]] && step check_decode_sdpa 300 "${decode_tool[@]}" check --suite decode \
    --impl sdpa_flash_decode,sdpa_efficient_decode --out "$out/check-decode-sdpa.json"
  decode_small=(check --seqlens 700,130,1 --q-lens 1,9,1 --heads 8 --kv-heads 2 --head-dim 64 --block 32 --topk 3
    --page-size 24 --impl naive,split_decode,split_decode_dense)
  sanitizer=${MOBA_COMPUTE_SANITIZER:-compute-sanitizer}
  for tool in memcheck racecheck synccheck initcheck; do
    step "sanitize_decode_$tool" 200 "$sanitizer" --tool "$tool" --error-exitcode 99 \
      $moba "${decode_small[@]}" --out "/tmp/sanitize-decode-$tool.json"
  done
fi
study() {  # NAME FLAGS...
  local name=$1
  shift
  step "decode_study_$name" 400 "${decode_tool[@]}" decode-study "$@" --out "$out/decode-study-$name.json"
}
if [[ ${MOBA_VERIFY_DECODE_STUDY:-small} == none ]]; then
  :
elif [[ ${MOBA_VERIFY_DECODE_STUDY:-small} == full ]]; then
  # Every layout at 32K and 128K, batch 1 and 8, on random and structured inputs; 1M at batch 1;
  # batch 64 at 32K (host memory bounds the rest: k is drawn on the host for the float64 gating).
  study layouts --layouts 32:32,32:8,32:4,32:1 --cache 32K,128K --batch 1,8 --block 512 --topk 3 --inputs normal
  study families --layouts 32:32,32:8,32:4,32:1 --cache 32K --batch 1 --block 512 --topk 3 --inputs dominant,sink,recency
  study 1m --layouts 32:32,32:8,32:4,32:1 --cache 1M --batch 1 --block 512 --topk 3 --inputs normal
  study batch64 --layouts 32:32,32:8,32:4,32:1 --cache 32K --batch 64 --block 512 --topk 3 --inputs normal
elif [[ ${MOBA_VERIFY_DECODE_STUDY:-small} == sdpa ]]; then
  # Where the dense baseline decides the claim: every layout at 32K and 1M (batch 1) and at 128K
  # (batch 8).
  study sdpa --layouts 32:32,32:8,32:4,32:1 --cache 32K,1M --batch 1 --block 512 --topk 3 --inputs normal
  study sdpa128k --layouts 32:32,32:8,32:4,32:1 --cache 128K --batch 8 --block 512 --topk 3 --inputs normal
else
  study small --layouts 32:32,32:8,32:1 --cache 32K --batch 1,8 --block 512 --topk 3 --inputs normal
fi
