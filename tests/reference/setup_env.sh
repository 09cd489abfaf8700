#!/usr/bin/env bash
# Recreates the Python environment of tests/reference/ (the golden-file
# generator; the C++ tests and CI never need it): Debian 12's CPU-only
# python3-torch 1.13.1 from apt, then transformers 4.40.2 and its pinned
# dependencies (requirements.txt) from PyPI in a venv outside the repository.
#   bash tests/reference/setup_env.sh          # venv at /opt/sb-reference-venv
#   SB_REFERENCE_VENV=/path bash tests/reference/setup_env.sh
# Needs root (or sudo) for apt-get; about 1 GB of Debian packages.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${SB_REFERENCE_VENV:-/opt/sb-reference-venv}"
torch_deb="1.13.1+dfsg-4"

case "$(realpath -m "$venv")/" in
  "$repo"/*) echo "setup_env: put the venv outside the repository ($venv)" >&2; exit 2 ;;
esac
if [ ! -x /usr/bin/python3 ] || ! /usr/bin/python3 -c 'import sys; assert sys.version_info[:2] == (3, 11)'; then
  echo "setup_env: needs Debian 12's /usr/bin/python3 (3.11), which python3-torch is built for" >&2
  exit 2
fi

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
if [ "$(dpkg-query -W -f='${Version}' python3-torch 2>/dev/null || true)" != "$torch_deb" ] ||
   ! dpkg-query -W python3-venv >/dev/null 2>&1; then
  $sudo apt-get update
  # --no-install-recommends keeps out ~60 packages (GUI, codecs) torch never loads.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends \
    "python3-torch=$torch_deb" python3-venv
fi

[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"
"$venv/bin/pip" install --disable-pip-version-check --no-deps -q -r "$here/requirements.txt"

"$venv/bin/python" - <<'PY'
import numpy, safetensors, torch, transformers
from transformers import LlamaForCausalLM, MixtralForCausalLM  # noqa: F401
assert torch.__version__.startswith("1.13"), torch.__version__
print(f"[setup_env] torch {torch.__version__} (Debian), numpy {numpy.__version__}, "
      f"transformers {transformers.__version__}, safetensors {safetensors.__version__}")
PY
echo "[setup_env] ready: $venv/bin/python tests/reference/make_golden.py"
