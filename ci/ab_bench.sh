#!/usr/bin/env bash
# Did a change make a configuration faster or slower? On a GPU machine: builds `moba` at BASE_REV
# (a git worktree) and at NEW_REV (the working tree when omitted), then times the same
# `moba bench` arguments with each in alternating processes: round 1 base then new, round 2 new
# then base, and so on. Alternating puts the drift on both sides (clocks, temperature, power
# throttling: one build's medians move by about 2% between processes on the H200, kernels/NOTES.md,
# 2026-12-03, more than some kernel changes do). Then each round's pair goes through `moba compare`
# (ab-compare.md), and ci/ab_summary.py puts every round's change per configuration in one table
# (ab-summary.md).
# Usage: ci/ab_bench.sh BASE_REV [NEW_REV] -- BENCH_ARGS...
#   AB_ROUNDS (3), AB_STEP_LIMIT (seconds per bench run, 300), AB_WORK (worktrees, /tmp/moba-ab).
#   MOBA_GIT_SHA, if set, names the working tree's build (the GPU machine's copy has no new commits);
#   the revisions' builds are named by their own commits.
# Reports go to ${OUT:-out}/: ab-base-R.json and ab-new-R.json per round, ab-compare.md, ab-summary.md.
# Exit: 0 every run passed, 1 a build or run failed, 2 usage (before anything is built).
set -uo pipefail
cd "$(dirname "$0")/.."
usage="usage: ci/ab_bench.sh BASE_REV [NEW_REV] -- BENCH_ARGS...   (AB_ROUNDS, AB_STEP_LIMIT, AB_WORK)"
refuse() { echo "ab_bench: $1" >&2; echo "$usage" >&2; exit 2; }

revs=()
while (($#)) && [[ $1 != -- ]]; do revs+=("$1"); shift; done
(($#)) || refuse "no '--' before the bench arguments"
shift
bench_args=("$@")
((${#revs[@]} >= 1 && ${#revs[@]} <= 2)) || refuse "give BASE_REV and at most one NEW_REV (got ${#revs[@]} revisions)"
((${#bench_args[@]})) || refuse "no bench arguments after '--'"
for arg in "${bench_args[@]}"; do
  [[ $arg == --out || $arg == --out=* ]] && refuse "'$arg': the script names the reports itself (ab-base-R.json, ab-new-R.json)"
done
rounds=${AB_ROUNDS:-3}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || refuse "AB_ROUNDS='$rounds': a positive number of rounds"
limit=${AB_STEP_LIMIT:-300}
[[ $limit =~ ^[1-9][0-9]*$ ]] || refuse "AB_STEP_LIMIT='$limit': seconds, a positive number"
shas=()
for rev in "${revs[@]}"; do
  sha=$(git rev-parse --verify --quiet "$rev^{commit}") || refuse "'$rev' is not a commit of this repository"
  shas+=("$sha")
done

source ci/gpu_prologue.sh
work=${AB_WORK:-/tmp/moba-ab}
mkdir -p "$work"
# A worktree of SHA at TREE, configured and built (moba only); one already at SHA is built
# incrementally (a second A/B in the same call reuses the first's build). A script for `bash -c`,
# since step runs its command under timeout, which cannot run a shell function.
build_tree='tree=$1 sha=$2
if [[ $(git -C "$tree" rev-parse HEAD 2>/dev/null) != "$sha" ]]; then
  git worktree remove --force "$tree" 2>/dev/null
  rm -rf "$tree"
  git worktree prune
  git worktree add -q --detach "$tree" "$sha" || exit 1
fi
cd "$tree" && cmake --preset release >/dev/null && cmake --build --preset release --target moba -j "$(nproc)"'
build_failed() { step_gather; cat "$out/summary.txt"; exit 1; }
# The commit is compiled in (cmake/WriteGitVersion.cmake reads MOBA_GIT_SHA): each side is built
# with its own, whatever the caller exported for the working tree.
step build_base 600 env MOBA_GIT_SHA="${shas[0]}" bash -c "$build_tree" _ "$work/base" "${shas[0]}" || build_failed
declare -A bin sha_of
bin[base]=$work/base/build/release/harness/cli/moba
sha_of[base]=${shas[0]}
if ((${#shas[@]} == 2)); then
  step build_new 600 env MOBA_GIT_SHA="${shas[1]}" bash -c "$build_tree" _ "$work/new" "${shas[1]}" || build_failed
  bin[new]=$work/new/build/release/harness/cli/moba
  sha_of[new]=${shas[1]}
else
  step build_new 600 bash -c 'cmake --preset release >/dev/null && cmake --build --preset release --target moba -j "$(nproc)"' ||
    build_failed
  bin[new]=$PWD/build/release/harness/cli/moba
  sha_of[new]=${MOBA_GIT_SHA:-$(git rev-parse HEAD)}
fi

base_reports=()
new_reports=()
for ((r = 1; r <= rounds; r++)); do
  order=(base new)
  ((r % 2 == 0)) && order=(new base)
  for side in "${order[@]}"; do
    step "ab_${side}_$r" "$limit" "${bin[$side]}" bench "${bench_args[@]}" --out "$out/ab-$side-$r.json"
  done
  base_reports+=("$out/ab-base-$r.json")
  new_reports+=("$out/ab-new-$r.json")
  # moba compare exits 1 for a slower pair: that is its verdict, not a failure of this script.
  { echo "## Round $r (${order[*]})"; "${bin[new]}" compare "$out/ab-base-$r.json" "$out/ab-new-$r.json" --markdown -; } \
    >>"$out/ab-compare.md" 2>&1
done
step_gather
python3 ci/ab_summary.py --base "${base_reports[@]}" --new "${new_reports[@]}" | tee "$out/ab-summary.md"
echo "base ${sha_of[base]}, new ${sha_of[new]}, $rounds rounds: bench ${bench_args[*]}" | tee -a "$out/ab-summary.md"
exit_steps
