#!/usr/bin/env bash
# Recreates the venv with the newest PyTorch + transformers from PyPI that
# tests/reference/make_hf_golden.py and check_hf_export.py use (issue 11;
# the older torch 1.13 / transformers 4.40 environment of make_golden.py is
# setup_env.sh). The C++ tests and CI never need it.
#   bash tests/reference/setup_latest_env.sh          # venv at /opt/sb-latest-venv
#   SB_LATEST_VENV=/path bash tests/reference/setup_latest_env.sh
# Pinned in requirements-latest.txt (installed with --no-deps, so exactly
# those versions). PyPI's torch wheel brings its CUDA libraries: ~4 GB.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${SB_LATEST_VENV:-/opt/sb-latest-venv}"

case "$(realpath -m "$venv")/" in
  "$repo"/*) echo "setup_latest_env: put the venv outside the repository ($venv)" >&2; exit 2 ;;
esac
python=""
for p in python3.11 /usr/bin/python3; do
  if command -v "$p" >/dev/null && "$p" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    python="$p"; break
  fi
done
[ -n "$python" ] || { echo "setup_latest_env: needs Python 3.11 (the pins are for it)" >&2; exit 2; }
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y python3-venv
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --disable-pip-version-check --no-deps -q -r "$here/requirements-latest.txt"
"$venv/bin/python" - <<'PY'
import safetensors, sentencepiece, torch, transformers
from transformers import LlamaForCausalLM, MixtralForCausalLM  # noqa: F401
print(f"[setup_latest_env] torch {torch.__version__}, transformers {transformers.__version__}, "
      f"safetensors {safetensors.__version__}, sentencepiece {sentencepiece.__version__}")
PY
echo "[setup_latest_env] ready: $venv/bin/python tests/reference/make_hf_golden.py"
