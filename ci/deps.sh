# Sourced by the other scripts: makes sure the build dependencies are present.
# Debian/Ubuntu packages; installed with apt-get when missing and running as root.
# The CUDA toolkit (nvcc, cudart, cuBLAS) is expected at /usr/local/cuda or on PATH.
moba_packages=(cmake ninja-build g++ git libgtest-dev libgmock-dev libbenchmark-dev
               libfmt-dev libcli11-dev nlohmann-json3-dev)
# The Python package (harness/python/): pybind11 and the headers to build it, torch and numpy
# for its tests (Debian's torch is CPU-only and old: the tests that need more skip, saying why).
# MOBA_PYTHON_DEPS=0 leaves them out (the build then skips the package with a message).
[[ ${MOBA_PYTHON_DEPS:-1} == 1 ]] && moba_packages+=(python3-dev pybind11-dev python3-pybind11 python3-torch python3-numpy)
moba_missing=()
# MOBA_SKIP_DEPS=1: trust the machine (e.g. an offline GPU box with everything installed).
[[ ${MOBA_SKIP_DEPS:-0} == 1 ]] && moba_packages=()
for p in "${moba_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || moba_missing+=("$p")
done
if ((${#moba_missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "installing: ${moba_missing[*]}"
    apt-get update -qq
    moba_apt_updated=1  # ci/test.sh installs chromium after this without a second update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${moba_missing[@]}" >/dev/null
  else
    echo "missing packages: ${moba_missing[*]} (run: sudo apt-get install ${moba_missing[*]})" >&2
    exit 1
  fi
fi
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
command -v nvcc >/dev/null || { echo "the CUDA toolkit (nvcc) is required" >&2; exit 1; }
