"""Quality-gate prompts encoded the way LLaMA-Factory encoded them in training: its own ``Template`` (the run's
``template``, ``default_system``, ``tool_format``, ``enable_thinking``), the row's system prompt and tools.

It owns no prompt format: ``llamafactory.data.get_template_and_fix_tokenizer`` and ``Template.encode_oneturn``
do the encoding (the same calls LLaMA-Factory's supervised preprocessing makes); this module only maps a test
row's messages to LLaMA-Factory's roles and hands the encoded prompt to an engine as a chat template that renders
exactly that text. llamafactory, transformers and torch are imported inside the functions. No pytest.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "tool": "observation",
         "observation": "observation", "function": "function", "function_call": "function"}
TEMPLATE_KEYS = ("template", "default_system", "tool_format", "enable_thinking")


def available() -> bool:
    """Whether LLaMA-Factory is installed here (the ``train`` extra)."""
    import importlib.util

    return importlib.util.find_spec("llamafactory") is not None


def template_args(training_config: dict | None) -> dict:
    """The keys of the run's LLaMA-Factory config that decide how prompts were encoded ({} without ``template``)."""
    cfg = training_config or {}
    return {k: cfg[k] for k in TEMPLATE_KEYS if cfg.get(k) is not None} if cfg.get("template") else {}


def tokenizer_dir(adapter_dir: str | Path | None, base_model: str | Path) -> str:
    """The tokenizer LLaMA-Factory saved beside the adapter (fixed by its template), else the base model's."""
    if adapter_dir and (Path(adapter_dir) / "tokenizer_config.json").is_file():
        return str(adapter_dir)
    return str(base_model)


@functools.lru_cache(maxsize=8)
def _template(tokenizer_path: str, args: tuple[tuple[str, object], ...]):
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(**dict(args)))
    return tokenizer, template


def lf_messages(messages: Sequence[tuple[str, str]]) -> tuple[str, list[dict[str, str]]]:
    """(system prompt, LLaMA-Factory messages) of a test row's turns up to the one to answer."""
    system = "\n".join(c for r, c in messages if r == "system")
    turns = [{"role": ROLES.get(r, "user"), "content": c} for r, c in messages if r != "system"]
    return system, turns


def prompt_ids(tokenizer_path: str, args: dict, messages: Sequence[tuple[str, str]], tools: str = "") -> list[int]:
    """The prompt token ids LLaMA-Factory's template gives these turns (the answer left empty), as in training."""
    tokenizer, template = _template(tokenizer_path, tuple(sorted(args.items())))
    system, turns = lf_messages(messages)
    ids, _ = template.encode_oneturn(tokenizer, [*turns, {"role": "assistant", "content": ""}], system or None,
                                     tools or None)
    return ids


def prompt_text(tokenizer_path: str, args: dict, messages: Sequence[tuple[str, str]], tools: str = "") -> str:
    """The text of ``prompt_ids`` (special tokens spelled out), which the serving tokenizer encodes back to them."""
    tokenizer, _ = _template(tokenizer_path, tuple(sorted(args.items())))
    return tokenizer.decode(prompt_ids(tokenizer_path, args, messages, tools), skip_special_tokens=False,
                            clean_up_tokenization_spaces=False)


def literal_template(text: str) -> str:
    """A chat template that renders exactly ``text`` whatever the messages: how an engine that applies chat
    templates (hf, vLLM's per-request ``chat_template``) gets LLaMA-Factory's prompt unchanged. An expression,
    not a raw block: transformers renders with trim_blocks/lstrip_blocks, which would eat whitespace."""
    escaped = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return '{{ "' + escaped + '" }}'
