#!/usr/bin/env bash
# Gating at FlashMoBA's block 128 (issue 17, target 2: select_topk took 58.6 ms of FlashMoBA's
# ~160 ms fwd+bwd at ncu's clock, 4x its mma.sync bound by arithmetic) on a GPU machine:
# - profile: ncu's sections and source page (stalls per SASS instruction) of one select_topk launch
#            at FlashMoBA's setting (512K, 16 heads, block 128, top-k 8); the forward with gating
#            timed apart there and at Figure 2b's 128K GQA point; Figure 2a's 1M fwd+bwd (block 4096,
#            top-k 12, 32 / 8 heads: 11 waves, so 11 radix sorts per deterministic list build since
#            6721c29, not timed since) for wgmma_moba_atomic (about 250 s).
# - measure: correct first: the fused gating's GPU tests (many block tiles, equal scores) and the
#            top-k paths suite (`moba check --suite paths`) for wgmma_moba_atomic; then profile's ncu
#            sections and source page and the two gating timings (no Figure 2a run; about 200 s).
# - final:   the top-k paths suite for wgmma_moba_atomic, the two gating timings, FlashMoBA's
#            fwd+bwd with gating included, then the whole GPU label (ctest -L gpu -j 6, 427-453 s
#            on the H200; its limit is what is left of 580 s since the script started). That fits
#            only on a warm machine whose build is current: a fresh one spends ~100 s configuring
#            and building, so there run the label in a call of its own.
# Usage: ci/gpu_gating.sh profile|measure|final   Reports and logs go to ${OUT:-out}/.
source "$(dirname "$0")/gpu_prologue.sh"
mode=${1:?usage: ci/gpu_gating.sh profile|measure|final}
case $mode in profile|measure|final) ;; *) echo "unknown mode '$mode' (profile, measure or final)"; exit 2 ;; esac  # before any build
moba=build/release/harness/cli/moba
build_release
point=(--seqlen 128K --heads 32 --kv-heads 8 --head-dim 128 --block 2048 --topk 3)
flashmoba=(--seqlen 512K --heads 16 --head-dim 128 --block 128 --topk 8)
fig2a=(--seqlen 1M --heads 32 --kv-heads 8 --head-dim 128 --block 4096 --topk 12)
fair=(--warmup-seconds 3 --max-seconds 3)

gating_timings() {
    step gating_flashmoba 60 $moba bench "${flashmoba[@]}" --impl wgmma_moba_atomic --phase fwd --gating separate \
      "${fair[@]}" --out "$out/flashmoba-fwd-gating.json"
    step gating_128k 60 $moba bench "${point[@]}" --impl wgmma_moba_atomic --phase fwd --gating separate \
      "${fair[@]}" --out "$out/gqa-128k-fwd-gating.json"
}
select_profile() {
    sections=(ncu --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis
              --section WarpStateStats --section SchedulerStats --section LaunchStats --section InstructionStats
              --section SourceCounters)
    step ncu_select 150 "${sections[@]}" -k regex:'select_topk' --launch-count 1 -f -o /tmp/select \
      $moba bench "${flashmoba[@]}" --phase fwd --gating separate --warmup 0 --min-samples 1 --max-seconds 1 \
      --impl wgmma_moba_atomic --out /tmp/select.json
    ncu -i /tmp/select.ncu-rep --page details > "$out/ncu-sections-select-512k.txt" 2>&1
    ncu -i /tmp/select.ncu-rep --page source --csv --print-source sass 2>&1 | gzip > "$out/source-select-512k.csv.gz"
    python3 ci/ncu_source_top.py "$out/source-select-512k.csv.gz" 60 > "$out/stalls-select-512k.txt"
    gating_timings
}
select_summary() {
    grep -hE "Duration|Issue Slots Busy|No Eligible|Issued Warp|Warp Cycles Per Issued|Executed Ipc A|Registers Per|Executed Instructions  " \
      "$out/ncu-sections-select-512k.txt" | head -12
    head -4 "$out/stalls-select-512k.txt"
    for f in flashmoba-fwd-gating gqa-128k-fwd-gating; do
      python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['records'][0]; print(sys.argv[2], 'gating_ms', round(r['gating_ms'],3), 'fwd_ms', round(r['timing']['median_ms'],3), 'gating check', r['gating_check']['outcome'], 'throttled', r['throttled'])" "$out/$f.json" $f || true
    done
}
profile() {
    select_profile
    step fig2a_1m 200 $moba bench "${fig2a[@]}" --impl wgmma_moba_atomic --phase fwdbwd --gating included \
      --warmup 1 --min-samples 3 --max-seconds 20 --out "$out/fig2a-1m-fwdbwd.json"
    select_summary
    head -75 "$out/stalls-select-512k.txt"
    grep -hE "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs"/fig2a_1m.log
}
# Local-memory traffic of the register-list select_topk (bf16, D 128): ptxas reports spills but
# not where they land; the SASS around each LDL/STL says whether the hot loop carries them.
select_spills() {
    local obj=build/release/kernels/moba/CMakeFiles/moba_kernels_moba.dir/gating.cu.o
    cuobjdump -sass "$obj" | awk '/Function :/ { keep = /select_topkI13__nv_bfloat16Li128ELi12ELi8/ } keep' \
      > /tmp/select-top8.sass
    [[ -s /tmp/select-top8.sass ]] || { echo "select_topk SASS: the bf16 D 128 top8 kernel (12 warps) is not in $obj"; return 1; }
    gzip -c /tmp/select-top8.sass > "$out/sass-gating.txt.gz"
    echo "select_topk SASS: $(grep -c 'LDL' /tmp/select-top8.sass) LDL, $(grep -c 'STL' /tmp/select-top8.sass) STL, $(grep -cE 'HMMA' /tmp/select-top8.sass) HMMA"
}
measure() {
    select_spills
    step gating_tests 240 build/release/suites/test_tiled_mma_gpu --gtest_brief=1 --gtest_filter='*Gating*' || {
      tail -30 "$step_logs/gating_tests.log"; step_gather; exit 1; }
    step check_paths 240 $moba check --suite paths --impl wgmma_moba_atomic --out "$out/check-paths-atomic.json"
    select_profile
    grep -hE "tests|PASSED|FAILED" "$step_logs"/gating_tests.log | tail -4
    grep -hE "records:" "$step_logs"/check_paths.log
    select_summary
}
final() {
    step check_paths 240 $moba check --suite paths --impl wgmma_moba_atomic --out "$out/check-paths-atomic.json"
    gating_timings
    step flashmoba_512k 60 $moba bench "${flashmoba[@]}" --impl wgmma_moba_atomic --phase fwdbwd --gating included \
      "${fair[@]}" --out "$out/flashmoba-512k-fwdbwd.json"
    step gpu_label $((580 - SECONDS)) ctest --test-dir build/release -L gpu -j 6 --output-on-failure
    grep -hE "records:" "$step_logs"/check_paths.log
    grep -hE "tests passed|tests failed|\(Failed\)|\(Timeout\)|Not Run|Skipped|Total Test time" "$step_logs"/gpu_label.log | tail -20
    for f in flashmoba-fwd-gating gqa-128k-fwd-gating; do
      python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['records'][0]; print(sys.argv[2], 'gating_ms', round(r['gating_ms'],3), 'fwd_ms', round(r['timing']['median_ms'],3), 'gating check', r['gating_check']['outcome'], 'throttled', r['throttled'])" "$out/$f.json" $f || true
    done
    grep -hE "^  [a-z_]+ +(fwd|fwdbwd)" "$step_logs"/flashmoba_512k.log
}
case $mode in
  profile) profile ;;
  measure) measure ;;
  final) final ;;
esac
step_gather
exit_steps
