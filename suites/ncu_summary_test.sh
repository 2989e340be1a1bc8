#!/usr/bin/env bash
# ci/ncu_kernel_summary.py without a GPU, on ncu logs in both of ncu's layouts: per launch (one
# value per block, units ms and us) and per kernel (`--print-summary per-kernel`: Invocations N,
# minimum, maximum, average). Launches of one kernel are grouped by name without parameters,
# means weigh every launch, kernels under MIN_MS are left out, and a log without durations exits 1;
# SpeedOfLight's "Duration" in a log of sections; --compare's matching, verdicts and exit codes.
# Also ci/ncu_source_top.py's --per table on a small source page: instructions per execution of
# the busiest instruction of an opcode, by chunks of SASS lines, and each chunk's sample share.
# Usage: suites/ncu_summary_test.sh SOURCE_DIR SCRATCH_DIR
source "$(dirname "${BASH_SOURCE[0]}")/script_test.sh"
summary="python3 $src/ci/ncu_kernel_summary.py"

cat > "$scratch/launches.txt" <<'LOG'
==PROF== Connected to process 1
  void k<float, 128>(Params, int) (4096, 1, 1)x(384, 1, 1), Context 1, Stream 7, Device 0, CC 9.0
    Section: Command line profiler metrics
    gpu__time_duration.sum              ms         9.00
  void small(int) (1, 1, 1)x(32, 1, 1), Context 1, Stream 7, Device 0, CC 9.0
    gpu__time_duration.sum              us        50.00
  void k<float, 128>(Params, int) (4096, 1, 1)x(384, 1, 1), Context 1, Stream 7, Device 0, CC 9.0
    gpu__time_duration.sum              ms         7.00
LOG
out=$($summary "$scratch/launches.txt" 1.0) || fail "per-launch log: exit $?"
echo "$out" | grep -qE "^ +2 +8\.000 +7\.000 +9\.000  void k<float, 128>$" || fail "per-launch: k's two launches (mean 8): $out"
echo "$out" | grep -q "small" && fail "per-launch: a 0.05 ms kernel shown above MIN_MS 1.0: $out"
# Outputs are captured before grep reads them: grep -q stops at its first match, and a writer still
# printing then fails with a broken pipe (pipefail makes that the pipeline's status).
out=$($summary "$scratch/launches.txt")
echo "$out" | grep -qE "^ +1 +0\.050 .*void small$" || fail "per-launch: 50 us is 0.050 ms: $out"

cat > "$scratch/kernels.txt" <<'LOG'
  cudnn_fprop_kernel0_0 (132, 1, 1)x(384, 1, 1), Device 0, CC 9.0, Invocations 3
    Section: Command line profiler metrics
    ---------------------- ----------- ------- ------- -------
    Metric Name            Metric Unit Minimum Maximum Average
    gpu__time_duration.sum          ms    8.00    8.60    8.20
  void wgmma::causal_kernel<__nv_bfloat16, 128, 0>(CUtensorMap_st, wgmma::KernelParams, int) (4096, 1, 1)x(384, 1, 1), Device 0, CC 9.0, Invocations 2
    gpu__time_duration.sum          ms    7.76    7.78    7.77
LOG
out=$($summary "$scratch/kernels.txt") || fail "per-kernel log: exit $?"
first=$(echo "$out" | sed -n 2p)
[[ $first =~ ^\ +3\ +8\.200\ +8\.000\ +8\.600\ \ cudnn_fprop_kernel0_0$ ]] || fail "per-kernel: the longest mean first, 3 invocations: $out"
echo "$out" | grep -qE "^ +2 +7\.770 +7\.760 +7\.780  void wgmma::causal_kernel<__nv_bfloat16, 128, 0>$" ||
  fail "per-kernel: causal_kernel's summary: $out"

echo "no durations here" > "$scratch/empty.txt"
$summary "$scratch/empty.txt" >/dev/null 2>&1
[[ $? == 1 ]] || fail "a log without durations must exit 1"
printf '  void k() (1, 1, 1)x(1, 1, 1), Context 1, Stream 7, Device 0, CC 9.0\n    gpu__time_duration.sum  furlong  1.0\n' > "$scratch/unit.txt"
$summary "$scratch/unit.txt" >/dev/null 2>&1 && fail "an unknown unit must not pass silently"

# A log of sections: SpeedOfLight's "Duration" is the launch's duration.
cat > "$scratch/sections.txt" <<'LOG'
  void wgmma::k<float, 128>(Params) (4096, 1, 1)x(384, 1, 1), Context 1, Stream 7, Device 0, CC 9.0
    Section: GPU Speed Of Light Throughput
    Memory Throughput                 %         57.22
    Duration                         ms         10.00
    L1/TEX Cache Throughput           %         57.41
  void gone(int) (1, 1, 1)x(32, 1, 1), Context 1, Stream 7, Device 0, CC 9.0
    Duration                         ms          2.00
  void steady(int) (1, 1, 1)x(32, 1, 1), Context 1, Stream 7, Device 0, CC 9.0
    Duration                         ms          5.00
LOG
out=$($summary "$scratch/sections.txt")
echo "$out" | grep -qE "^ +1 +10\.000 .*void wgmma::k<float, 128>$" || fail "sections: Duration read: $out"

# --compare: kernels matched without return type and namespaces (k<float, 128> is 8 ms in the
# per-launch log, 10 ms here), the change and its verdict, kernels of one log only, exit 3 when
# one is slower beyond the threshold.
cat > "$scratch/new.txt" <<'LOG'
  void k<float, 128>(Params, int) (4096, 1, 1)x(384, 1, 1), Context 1, Stream 7, Device 0, CC 9.0
    gpu__time_duration.sum              ms         8.00
  void steady(int) (1, 1, 1)x(32, 1, 1), Context 1, Stream 7, Device 0, CC 9.0
    gpu__time_duration.sum              ms         5.05
  void arrived(int) (1, 1, 1)x(32, 1, 1), Context 1, Stream 7, Device 0, CC 9.0
    gpu__time_duration.sum              ms         3.00
LOG
out=$($summary "$scratch/new.txt" --compare "$scratch/sections.txt")
rc=$?
[[ $rc == 0 ]] || fail "compare: nothing slower must exit 0, got $rc: $out"
echo "$out" | grep -qE "^ +10\.000 +8\.000 +-20\.0%  faster +k<float, 128>$" || fail "compare: k 10 -> 8 ms is 20% faster: $out"
echo "$out" | grep -qE "^ +5\.000 +5\.050 +\+1\.0%  same +steady$" || fail "compare: +1% is within the 2% threshold: $out"
echo "$out" | grep -qE "^ +2\.000 +- .*old only +gone$" || fail "compare: a kernel of the old log only: $out"
echo "$out" | grep -qE "^ +- +3\.000 .*new only +arrived$" || fail "compare: a kernel of the new log only: $out"
out=$($summary "$scratch/sections.txt" --compare "$scratch/new.txt")
[[ $? == 3 ]] || fail "compare: k 8 -> 10 ms (+25%) must exit 3: $out"
echo "$out" | grep -qE "\+25\.0%  slower +k<float, 128>$" || fail "compare: +25% is slower: $out"
out=$($summary "$scratch/new.txt" --compare "$scratch/sections.txt" --threshold 0.5)
[[ $? == 3 ]] || fail "compare: with --threshold 0.5, +1% is slower and exits 3: $out"
echo "$out" | grep -qE "\+1\.0%  slower +steady$" || fail "compare: --threshold 0.5 makes +1% slower: $out"
out=$($summary "$scratch/new.txt" --compare "$scratch/sections.txt" 4)
echo "$out" | grep -q "arrived" && fail "compare: MIN_MS 4 leaves out a 3 ms kernel: $out"
$summary "$scratch/new.txt" --compare "$scratch/sections.txt" --threshold -1 >/dev/null 2>&1
[[ $? == 2 ]] || fail "a negative threshold must be refused (exit 2)"
$summary "$scratch/new.txt" --threshold 5 >/dev/null 2>&1
[[ $? == 2 ]] || fail "--threshold without --compare must be refused (exit 2)"
$summary "$scratch/new.txt" --compare "$scratch/empty.txt" >/dev/null 2>&1
[[ $? == 1 ]] || fail "an old log without durations must exit 1"

# ncu_source_top.py --per: a loop of two HMMAs (100 executions each, so 100 iterations), a
# filter of three instructions run 100 times and a merge of two run 250 times (2.5 a round).
source_top="python3 $src/ci/ncu_source_top.py"
{
  echo '"Kernel Name","void k(int)"'
  echo '"Address","Source","Warp Stall Sampling (All Samples)","Warp Stall Sampling (Not-issued Samples)","Instructions Executed","stall_wait","stall_math"'
  echo '"0x00","  LDC R1, c[0x0][0x28]","10","5","1","5","0"'
  echo '"0x10","  HMMA.16816.F32.BF16 R0, R4, R8, R0","300","200","100","0","200"'
  echo '"0x20","  HMMA.16816.F32.BF16 R2, R4, R9, R2","100","50","100","0","50"'
  echo '"0x30","  FSETP.GT.AND P0, PT, R0, R3, PT","40","20","100","20","0"'
  echo '"0x40","  FSETP.GT.AND P1, PT, R2, R3, PT","40","20","100","20","0"'
  echo '"0x50","  VOTE.ANY P0, P0","20","10","100","10","0"'
  echo '"0x60","  LDS R5, [R6]","300","250","250","250","0"'
  echo '"0x70","  ISETP.GE.AND P2, PT, R5, R7, PT","190","100","250","100","0"'
} > "$scratch/source.csv"
out=$($source_top "$scratch/source.csv" 3 --per HMMA --chunk 3) || fail "source page: exit $?"
echo "$out" | grep -qE "per execution of the busiest HMMA \(100\), chunks of 3 SASS lines" ||
  fail "source page: the iteration is one execution of the busiest HMMA (100): $out"
echo "$out" | grep -qE "^ +0- +2 +2\.0 per iteration \(HMMA +2\.0\) +41\.0% of samples" ||
  fail "source page: lines 0-2 hold both HMMAs, 2 per iteration (the LDC's 1 execution rounds away), 410 of 1000 samples: $out"
echo "$out" | grep -qE "^ +3- +5 +3\.0 per iteration \(HMMA +0\.0\) +10\.0% of samples" ||
  fail "source page: the filter's 3 instructions per iteration: $out"
echo "$out" | grep -qE "^ +6- +7 +5\.0 per iteration .* busiest x2\.50 LDS" ||
  fail "source page: the merge runs 2.5 rounds of 2 instructions, the LDS busiest: $out"
out=$($source_top "$scratch/source.csv" 3 --per WGMMA)
echo "$out" | grep -q "no executed WGMMA instruction" || fail "source page: an absent opcode must be said, not divided by: $out"

finish "ncu_summary"
