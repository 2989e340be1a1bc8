#!/usr/bin/env bash
# Is a change neutral to the device code? On the CPU image (no cuobjdump, no GPU): compiles the
# kernels' translation units to cubins for sm_90a without line info (line numbers would differ
# after any edit) at two git revisions and compares every kernel's machine code (.text sections)
# byte for byte (ci/cubin_text.py). Exit 0 when every kernel is identical, 1 otherwise; the
# differing kernels are listed. ci/sass_diff.py does the same from cuobjdump's SASS on the GPU
# machine. Used for 6fea355: host code moved, kernels' cubins identical to 1c19c14's.
# Usage: ci/cubin_diff.sh OLD_REV [NEW_REV]   (NEW_REV: the working tree when omitted)
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: ci/cubin_diff.sh OLD_REV [NEW_REV]}
new=${2:-}
units=(kernels/wgmma/dense_forward.cu kernels/wgmma/moba_forward.cu kernels/wgmma/dense_backward.cu
       kernels/wgmma/moba_backward.cu kernels/wgmma/probe.cu kernels/tiled_mma/forward.cu kernels/tiled_mma/backward.cu
       kernels/moba/accumulator.cu kernels/moba/gating.cu kernels/moba/block_lists.cu kernels/moba/row_stats.cu)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
compile() {  # compile SRC_ROOT OUT_DIR
  local root=$1 out=$2 unit
  mkdir -p "$out"
  for unit in "${units[@]}"; do
    [[ -f $root/$unit ]] || continue
    nvcc -DFMT_SHARED -I"$root" -O3 -DNDEBUG -arch=sm_90a -cubin --expt-relaxed-constexpr -std=c++17 \
      -x cu "$root/$unit" -o "$out/$(echo "$unit" | tr / _).cubin" &
  done
  wait
}
git worktree add -q --detach "$work/old" "$old"
compile "$work/old" "$work/old-cubins"
if [[ -n $new ]]; then
  git worktree add -q --detach "$work/new" "$new"
  compile "$work/new" "$work/new-cubins"
else
  compile "$PWD" "$work/new-cubins"
fi
status=0
python3 ci/cubin_text.py "$work/old-cubins" "$work/new-cubins" || status=$?
git worktree remove --force "$work/old"
[[ -n $new ]] && git worktree remove --force "$work/new"
exit $status
