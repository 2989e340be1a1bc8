#!/usr/bin/env bash
# The first-hour issue's failures, re-run on a machine without a GPU (the CPU half of its
# evidence; ci/gpu_first_hour.sh is the GPU half). Each command is printed with its output (cut to
# its last lines), its exit status and time, and the status it must have; the script exits 1 when
# any differs. Needs a release build (cmake --preset release && cmake --build --preset release).
# Usage: ci/first_hour_cpu.sh [OUTPUT_FILE]   (default: stdout only)
set -uo pipefail
output=${1:+$(realpath -m "$1")}  # before the cd below
cd "$(dirname "$0")/.."
root=$PWD
moba=$root/build/release/harness/cli/moba
[[ -x $moba ]] || { echo "no $moba: build first (cmake --preset release && cmake --build --preset release)"; exit 2; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
[[ -n $output ]] && exec > >(tee "$output") 2>&1
failed=0

expect() {  # EXPECTED_EXIT LINES COMMAND...
  local expected=$1 lines=$2; shift 2
  local t0=$SECONDS
  echo "\$ ${*/#$moba/moba}"
  "$@" >out.txt 2>&1
  local rc=$?
  tail -n "$lines" out.txt | cut -c1-600 | sed 's/^/    /'
  local verdict=ok
  [[ $rc == "$expected" ]] || { verdict="WRONG (expected $expected)"; failed=1; }
  echo "    -> exit $rc in $((SECONDS - t0)) s: $verdict"
  echo
}

echo "# first-hour failures re-run without a GPU, $(date -u +%Y-%m-%dT%H:%MZ), tree $(git -C "$root" rev-parse --short HEAD)"
echo "# $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
echo
echo "## 1. Refused before any work, sizes and the way out named (exit 2)"
expect 2 2 "$moba" check --seqlens 8M --heads 64 --reference naive
expect 2 2 "$moba" check --seqlens 8M --heads 64
expect 2 2 "$moba" check --seqlens 4M --heads 64
expect 2 2 "$moba" check --seqlens 1M --heads 4
expect 2 2 "$moba" check --seqlens 64K --heads 2 --kv-heads 1

echo "## 2. Progress lines while a configuration runs, redirected to a file (the README's first example)"
timeout --preserve-status -s INT 25 "$moba" check --seqlens 4096,1000,17 --heads 32 --kv-heads 8 --head-dim 128 --block 512 \
  --topk 3 --dtype bf16 --impl naive --seed 7 --out r.json >progress.txt 2>&1
rc=$?
echo "\$ moba check --seqlens 4096,1000,17 --heads 32 --kv-heads 8 --head-dim 128 --block 512 --topk 3 --dtype bf16 --impl naive --seed 7 --out r.json > progress.txt  (SIGINT after 25 s)"
echo "    progress.txt after 25 s: $(wc -l <progress.txt) lines; the first 6 and last 3:"
head -6 progress.txt | cut -c1-200 | sed 's/^/    /'
tail -3 progress.txt | cut -c1-200 | sed 's/^/    /'
complete=$(python3 -c "import json; print(json.load(open('r.json'))['complete'])" 2>&1)
echo "    -> exit $rc (130 = interrupted), r.json complete: $complete"
{ [[ $rc == 130 ]] && [[ $complete == False ]] && (($(wc -l <progress.txt) >= 3)); } || { echo "    WRONG"; failed=1; }
echo

echo "## 3. Flags that do not apply are errors"
expect 2 1 "$moba" check --suite quick --heads 8
expect 2 1 "$moba" check --suite quick --dtype fp32
expect 2 1 "$moba" check --suite quick --heads 8 --kv-heads 3

echo "## 4. Exit codes a CI gate can trust"
small=(check --seqlens 300,45 --head-dim 64 --block 32 --topk 3)
"$moba" "${small[@]}" --heads 4 --kv-heads 2 --out a.json >/dev/null 2>&1
"$moba" "${small[@]}" --heads 4 --kv-heads 2 --seed 8 --out b.json >/dev/null 2>&1
"$moba" "${small[@]}" --heads 2 --kv-heads 1 --out c.json >/dev/null 2>&1
expect 0 1 "$moba" compare a.json b.json
expect 1 1 "$moba" compare a.json c.json
expect 0 1 "$moba" compare a.json c.json --allow-empty
expect 77 1 "$root/build/release/suites/bench_moba"

echo "## 5. Installed, moved, still finds its schema"
cmake --install "$root/build/release" --prefix "$scratch/prefix" >/dev/null 2>&1
mv "$scratch/prefix" "$scratch/moved"
expect 0 2 "$scratch/moved/bin/moba" validate a.json

echo "## verdict: $([[ $failed == 0 ]] && echo 'every command behaved as required' || echo 'SOME COMMAND DID NOT')"
exit $failed
