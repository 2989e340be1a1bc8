#!/usr/bin/env bash
# The first-hour issue's GPU evidence, run by gpu_verify.sh (MOBA_VERIFY_FIRST_HOUR=1) after the
# build: each refusal and the progress output, as a user meets them on the GPU machine. Sourced,
# with $moba, $out and step() set. Every command's output is kept in $step_logs/first_hour_*.log.
#
# A refusal step passes only when the command exits 2 (refused before any work).
expect_refusal() {  # NAME SECONDS COMMAND (one string)
  step "$1" "$2" bash -c "$3; rc=\$?; echo \"exit \$rc\"; [[ \$rc == 2 ]]"
}
# 1. The issue's first failure: 8M tokens x 64 heads, which printed nothing for 60 s; now
#    refused at once (host memory) with exit 2.
expect_refusal first_hour_8m 60 "$moba check --seqlens 8M --heads 64 --reference gpu"
# 2. Device memory: another process holds all but ~12 GiB of the GPU (as a training job would),
#    then a check whose implementations or whose float64 GPU truth cannot fit is refused before
#    drawing the inputs, sizes named, exit 2.
hold_gpu_memory() {  # leaves about $1 GiB free for 90 s; prints "holding" once it does
  python3 - "$1" <<'PY'
import sys, time, torch
keep = int(float(sys.argv[1]) * 2**30)
free, total = torch.cuda.mem_get_info()
held = torch.empty(max(0, free - keep), dtype=torch.uint8, device="cuda")
print(f"holding {held.numel() / 2**30:.1f} GiB of {total / 2**30:.1f}; "
      f"{torch.cuda.mem_get_info()[0] / 2**30:.1f} GiB free", flush=True)
time.sleep(90)
PY
}
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  hold_gpu_memory 12 >"$step_logs/first_hour_holder.log" 2>&1 &
  holder=$!
  for _ in $(seq 60); do grep -q holding "$step_logs/first_hour_holder.log" && break; sleep 1; done
  cat "$step_logs/first_hour_holder.log"
  expect_refusal first_hour_device_truth 60 "$moba check --seqlens 256K --heads 16 --block 1024 --topk 8 \
    --reference gpu --impl wgmma_moba --out $out/refused.json"
  [[ -e $out/refused.json ]] && { echo "first_hour_device_truth: a report was written" | tee -a "$out/summary.txt"; step_status=1; }
  expect_refusal first_hour_device_impl 60 "$moba check --seqlens 1M --heads 32 --kv-heads 8 --block 4096 --topk 12 \
    --impl wgmma_moba --gating-only"
  kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
else
  echo "first_hour_device: skipped, no python3 with CUDA torch to hold device memory" | tee -a "$out/summary.txt"
fi
# 3. Progress inside a configuration of tens of seconds, redirected (plain lines, each phase
#    numbered with an ETA), and on a terminal (script(1) gives it one: the line is redrawn in
#    place). 64K x 16 heads did not finish in 120 s beside the long suite (2026-12-02).
step first_hour_progress_plain 180 $moba check --seqlens 32K --heads 8 --block 1024 --topk 8 --reference gpu \
  --impl wgmma_moba,tiled_mma
if command -v script >/dev/null; then
  step first_hour_progress_tty 180 script -qec "$moba check --seqlens 32K --heads 8 --block 1024 --topk 8 \
    --reference gpu --impl wgmma_moba" /dev/null
fi
# 4. SIGINT in the middle of the quick suite on the GPU: exit 130, the report holds what finished
#    and says "complete": false.
$moba check --suite quick --impl wgmma_moba --out "$out/interrupted.json" >"$step_logs/first_hour_sigint.log" 2>&1 &
pid=$!
sleep 20
kill -INT "$pid"
wait "$pid"
rc=$?
echo "first_hour_sigint: exit $rc; $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); \
print('complete', d['complete'], 'records', len(d['records']))" "$out/interrupted.json" 2>&1)" | tee -a "$out/summary.txt"
((rc == 130)) || step_status=1
printf '%s\n' first_hour_sigint >>"$step_logs/.order"
