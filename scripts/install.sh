#!/usr/bin/env bash
# Install pytest-ftgate with its CPU extras into a virtual environment (default .venv). Idempotent.
#
# Why it looks like this (measured on 2-core CPU machines, see README "Installing"):
# - torch is installed first and pinned (constraints.txt): an unpinned torch pulls gigabytes of CUDA wheels.
# - uv resolves llamafactory + mlflow + lm-eval in seconds; pip backtracks through gradio releases for minutes.
# - llamafactory 0.9.5 requires torchvision and torchaudio, whose only wheels are CUDA builds for other torch
#   versions: torchvision breaks `import transformers` (operator torchvision::nms does not exist) and is never
#   imported by llamafactory, so it is left out (overrides.txt). llamafactory imports torchaudio at top level
#   (data/mm_plugin.py, used only for audio datasets), so torchaudio is installed without its compiled
#   extension, whose .so files cannot load beside the CPU torch; its pure-Python API still imports and works.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FTGATE_VENV:-.venv}
PY=${PYTHON:-python3}
EXTRAS=${FTGATE_EXTRAS:-train,eval,report,dev}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -qq --disable-pip-version-check uv
"$VENV/bin/python" -m pip install -qq --disable-pip-version-check -c constraints.txt torch==2.13.0
links=()
for d in ${PIP_FIND_LINKS:-} /opt/wheels; do [ -d "$d" ] && links+=(--find-links "$d"); done
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" "${links[@]}" \
    -c constraints.txt --override overrides.txt -e ".[$EXTRAS]"
if [[ ",$EXTRAS," == *",train,"* ]]; then
    "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps "torchaudio==2.11.0"
    rm -f "$VENV"/lib/python3*/site-packages/torchaudio/lib/*.so
fi
# Bytecode for everything installed: uv does not compile it, and where PYTHONDONTWRITEBYTECODE is set (CI images,
# sandboxes) every process would otherwise compile mlflow, torch and transformers from source on each start
# (measured here: a re-gate of the demo 20.5 s without, 9.4 s with). compileall skips what is up to date.
"$VENV/bin/python" -m compileall -q -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
# pytest compiles its assertion-rewritten copy of every pytest_ftgate module itself, and caches it only where
# bytecode may be written: warm that cache once (~0.4 s off every later session where PYTHONDONTWRITEBYTECODE is set).
env -u PYTHONDONTWRITEBYTECODE HF_HUB_OFFLINE=1 "$VENV/bin/python" scripts/warm_pytest_cache.py >/dev/null || \
    echo "warning: pytest's cache of pytest_ftgate's modules was not written (sessions start ~0.4 s slower)"
"$VENV/bin/python" - <<'PY'
import torch, transformers, mlflow
print(f"pytest-ftgate environment ready: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"mlflow {mlflow.__version__}")
PY
