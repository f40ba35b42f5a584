"""Merging an adapter vLLM's LoRA cannot serve (``modules_to_save``, DoRA) into its base model, the way seed 004
deploys: ``llamafactory-cli export`` into a cache keyed by the adapter's sha256, and the check that the merged
model answers like base + adapter on the hf engine. No serving here (``vllm.py`` serves the merged directory).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from ..errors import EngineError
from .base import GenParams, Prompt
from .process import tail

CHECK_SAMPLES = 8  # prompts compared between the merged model and base + adapter


def adapter_sha256(path: str | Path) -> str:
    """The sha256 over the adapter's files (names and bytes), as the audit record digests a directory."""
    from .. import hashing

    return hashing.tree_digest(path, hashing.HashMemo())


def cache_root() -> Path:
    from .. import hashing

    return Path(os.environ.get("FTGATE_MERGE_CACHE") or hashing.cache_dir() / "merged")


def llamafactory_cli() -> str:
    exe = Path(sys.executable).parent / "llamafactory-cli"
    found = str(exe) if exe.exists() else shutil.which("llamafactory-cli")
    if not found:
        raise EngineError("engine.merge: auto needs llamafactory-cli (pip install -e .[train]) to merge the adapter")
    return found


def merged_model(base_model: str | Path, adapter: str | Path, log_dir: str | Path | None = None) -> Path:
    """The directory of base + adapter merged (``llamafactory-cli export``), built once per adapter sha256."""
    digest = adapter_sha256(adapter).split(":")[-1]
    dst = cache_root() / digest[:32]
    if (dst / "config.json").is_file() and (dst / "ftgate_merge.json").is_file():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    cfg = {"model_name_or_path": str(base_model), "adapter_name_or_path": str(adapter), "finetuning_type": "lora",
           "template": "default", "export_dir": str(tmp / "model"), "export_size": 5, "export_device": "cpu",
           "export_legacy_format": False, "trust_remote_code": False}
    (tmp / "export.yaml").write_text(json.dumps(cfg, indent=1))  # JSON is YAML
    log = Path(log_dir or tmp) / f"merge-{digest[:12]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [llamafactory_cli(), "export", str(tmp / "export.yaml")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1"}
    with open(log, "wb") as fh:
        code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    if code != 0 or not (tmp / "model" / "config.json").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise EngineError(f"merging adapter {str(adapter)!r} into {str(base_model)!r} failed (exit code {code})\n"
                          f"command: {' '.join(cmd)}\nlog: {log}\n--- last lines of the log ---\n{tail(log)}")
    (tmp / "model" / "ftgate_merge.json").write_text(json.dumps(
        {"base_model": str(base_model), "adapter": str(adapter), "adapter_sha256": digest, "command": cmd}) + "\n")
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp / "model", dst)
    shutil.rmtree(tmp, ignore_errors=True)
    return dst


def check_equal(base_model: str, adapter: str, merged: str, prompts: Sequence[Prompt], outputs: Sequence[str],
                params: GenParams, engine_cfg) -> None:
    """EngineError when the served merged model's greedy answers differ from base + adapter's on the hf engine,
    on the first ``CHECK_SAMPLES`` prompts (the merge must not change what was gated)."""
    from .hf import HFEngine

    n = min(CHECK_SAMPLES, len(prompts))
    if n == 0:
        return
    with HFEngine(base_model, engine_cfg) as hf:
        hf.add_adapter("adapter", adapter)
        want = hf.generate(list(prompts[:n]), "adapter", params)
    diff = [i for i in range(n) if want[i] != outputs[i]]
    if diff:
        i = diff[0]
        raise EngineError(f"the merged model {merged!r} answers differently from base + adapter (hf engine) on "
                          f"{len(diff)} of {n} sampled prompts; first: prompt {prompts[i].text!r}: merged "
                          f"{outputs[i]!r}, base + adapter {want[i]!r}")
