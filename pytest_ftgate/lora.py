"""What a LoRA adapter is and whether vLLM can serve it: the one set of rules that the vllm engine
(``serve/vllm.py``) and lm-eval's vllm backend (``lmeval.py``) both apply, so an adapter the engine refuses is not
passed on by the benchmark path. No torch, no vLLM import: ``adapter_config.json`` is read as JSON.

  rank(path)              the largest rank: ``r`` (PEFT's default 8 when absent) and any ``rank_pattern`` value
  vllm_max_lora_rank(rs)  the smallest ``--max-lora-rank`` vLLM accepts that covers every rank (16 for none)
  vllm_unservable(path)   why vLLM's LoRA serving would refuse the adapter: modules_to_save, DoRA, a rank above 512
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .errors import EngineError

PEFT_DEFAULT_RANK = 8  # peft.LoraConfig.r
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts
VLLM_DEFAULT_MAX_LORA_RANK = 16


def adapter_config(path: str | Path) -> dict:
    """``adapter_config.json`` of a local adapter directory; EngineError naming the path when unusable."""
    p = Path(path)
    cfg_file = p / "adapter_config.json"
    if not cfg_file.is_file():
        raise EngineError(f"adapter {str(p)!r}: no adapter_config.json there; pass the directory PEFT / "
                          "LLaMA-Factory saved the LoRA adapter into")
    try:
        cfg = json.loads(cfg_file.read_text())
    except ValueError as exc:
        raise EngineError(f"adapter {str(cfg_file)!r} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise EngineError(f"adapter {str(cfg_file)!r} is a JSON {type(cfg).__name__}, not an object")
    return cfg


def rank(path: str | Path) -> int:
    """The largest rank of an adapter: ``r`` (PEFT's default 8 when absent) and every ``rank_pattern`` value."""
    cfg = adapter_config(path)
    ranks = [int(cfg.get("r") or PEFT_DEFAULT_RANK)] + [int(v) for v in (cfg.get("rank_pattern") or {}).values()]
    return max(ranks)


def vllm_max_lora_rank(ranks: Sequence[int]) -> int:
    """The smallest ``--max-lora-rank`` vLLM allows that is at least every rank (16, vLLM's default, for none);
    EngineError above the largest."""
    need = max(ranks, default=0)
    if need == 0:
        return VLLM_DEFAULT_MAX_LORA_RANK
    for allowed in VLLM_MAX_LORA_RANKS:
        if allowed >= need:
            return allowed
    raise EngineError(f"LoRA rank {need} is above the largest --max-lora-rank vLLM accepts "
                      f"({VLLM_MAX_LORA_RANKS[-1]})")


def vllm_unservable(path: str | Path) -> str:
    """Why vLLM's LoRA serving would refuse this adapter ("" when it can serve it)."""
    cfg = adapter_config(path)
    if cfg.get("modules_to_save"):
        return (f"adapter {str(path)!r} trains whole modules ({', '.join(cfg['modules_to_save'])}; modules_to_save / "
                "LLaMA-Factory additional_target), which vLLM's LoRA serving does not support")
    if cfg.get("use_dora"):
        return f"adapter {str(path)!r} is a DoRA adapter, which vLLM's LoRA serving does not support"
    r = rank(path)
    if r > VLLM_MAX_LORA_RANKS[-1]:
        return (f"adapter {str(path)!r} has LoRA rank {r}, above the largest --max-lora-rank vLLM accepts "
                f"({VLLM_MAX_LORA_RANKS[-1]})")
    return ""
