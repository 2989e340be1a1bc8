#!/usr/bin/env bash
# The decode issue's GPU evidence, run by gpu_verify.sh (MOBA_VERIFY_DECODE=1) after ctest.
# Sourced, with $moba, $out and step() set:
# - the decode suite for every implementation with a decode step (SEMANTICS.md §9.2);
# - each decode implementation under compute-sanitizer memcheck, racecheck, synccheck and
#   initcheck on a small paged GQA batch (one token, a 9-token chunk, a one-token cache);
# (MOBA_VERIFY_DECODE_CHECKS=0 leaves those two out);
# - the decode study timed (MOBA_VERIFY_DECODE_STUDY: "small", the default, "full" or "none"), reports
#   in $out/decode-study-*.json.
if [[ ${MOBA_VERIFY_DECODE_CHECKS:-1} == 1 ]]; then
  step check_decode 300 $moba check --suite decode --impl all --out "$out/check-decode.json"
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
  step "decode_study_$name" 400 $moba decode-study "$@" --out "$out/decode-study-$name.json"
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
else
  study small --layouts 32:32,32:8,32:1 --cache 32K --batch 1,8 --block 512 --topk 3 --inputs normal
fi
