#!/usr/bin/env bash
# ci/ncu_kernel_summary.py without a GPU, on ncu logs in both of ncu's layouts: per launch (one
# value per block, units ms and us) and per kernel (`--print-summary per-kernel`: Invocations N,
# minimum, maximum, average). Launches of one kernel are grouped by name without parameters,
# means weigh every launch, kernels under MIN_MS are left out, and a log without durations exits 1.
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
$summary "$scratch/launches.txt" | grep -qE "^ +1 +0\.050 .*void small$" || fail "per-launch: 50 us is 0.050 ms"

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

finish "ncu_summary"
