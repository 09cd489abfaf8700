#!/usr/bin/env bash
# Installs every Debian package that the build, the tests and the quickstart
# need, then the static SentencePiece that data/ links (built from Debian's
# source package, ~1 minute the first time) and, where the CUDA toolkit is
# found (and SB_CUDA is not OFF), the pinned cudnn-frontend headers from
# PyPI into third_party/ (moe/ops/cuda/fetch_cudnn_frontend.sh). Idempotent:
# does nothing (no apt-get update) when all are present.
# Usage: bash launch/install_deps.sh
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  protobuf-compiler libprotobuf-dev libabsl-dev
  libopenblas-dev libopenblas-openmp-dev libomp-dev
  libopenmpi-dev openmpi-bin
  libgtest-dev libgmock-dev
  nlohmann-json3-dev
  libxxhash-dev    # checkpoint checksums (moe/io/checksum.h)
  python3 iproute2
  python3-matplotlib python3-yaml  # analyze-routing plots; benchmarks/scaling.py (sweeps, plots); benchmarks/experiments.py (curves)
  python3.11-doc   # default corpus: the Python docs' reStructuredText sources
  dpkg-dev         # apt-get source (data/sentencepiece/build_sentencepiece.sh)
  sentencepiece    # spm_train / spm_encode: reference for tests and benchmarks only;
                   # its libsentencepiece.so is never linked (see build_sentencepiece.sh)
)

cuda=0
if [ "${SB_CUDA:-}" != "OFF" ] && { command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; }; then
  cuda=1
  PACKAGES+=(python3-pip)  # fetches the cudnn-frontend wheel
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[install] apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "[install] Debian packages present"
bash "$(dirname "${BASH_SOURCE[0]}")/../data/sentencepiece/build_sentencepiece.sh"
if [ "$cuda" = 1 ]; then
  bash "$(dirname "${BASH_SOURCE[0]}")/../moe/ops/cuda/fetch_cudnn_frontend.sh"
fi
