"""The Engine interface every backend implements, and the OpenAI-compatible HTTP client the server engines share.

An engine serves one base model and any number of named LoRA adapters on it, so a baseline and a candidate
are answered by the same weights and settings. No scoring, no caching here (``predict.py`` does that); no
pytest. The client speaks ``/v1/chat/completions`` and ``/v1/completions`` with bounded concurrency, retries
with exponential backoff and timeouts (``requests``, which MLflow already depends on).
"""

from __future__ import annotations

import abc
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import EngineError

Progress = Callable[[int], None]  # called with the number of prompts just finished


@dataclass(frozen=True)
class Prompt:
    """One request: chat messages ((role, content), ...), rendered by a chat template or sent as plain text."""

    messages: tuple[tuple[str, str], ...]
    chat_template: str = ""  # jinja text rendering the messages ("" = the serving tokenizer's own template)
    raw: bool = False  # True: no chat template; the message contents joined by newlines are the prompt text

    @property
    def text(self) -> str:
        return "\n".join(content for _, content in self.messages)

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass(frozen=True)
class GenParams:
    """Generation settings; greedy decoding (temperature 0) is what the gates rely on."""

    max_new_tokens: int = 32
    temperature: float = 0.0
    seed: int = 0

    def key(self) -> dict:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "seed": self.seed}


class GenerationError(EngineError):
    """Some requests failed after every retry; ``outputs`` holds the answers that did arrive (None elsewhere)."""

    def __init__(self, message: str, outputs: list[str | None], failed: int):
        self.outputs = outputs
        self.failed = failed
        super().__init__(message)


class Engine(abc.ABC):
    """Serves a base model and named adapters; ``generate(..., model=None)`` answers with the base weights."""

    kind: str = ""

    def __init__(self, base_model: str, cfg, *, log_dir: str | Path | None = None, allow_pickle: bool = False,
                 trust_remote_code: bool = False):
        self.base_model = str(base_model)
        self.cfg = cfg  # config.Engine
        self.log_dir = Path(log_dir) if log_dir else None
        self.allow_pickle = allow_pickle
        self.trust_remote_code = trust_remote_code
        self.adapters: dict[str, str] = {}  # name -> local path

    @abc.abstractmethod
    def add_adapter(self, name: str, path: str | Path) -> None:
        """Make ``name`` answer with ``path``'s adapter on the base model (idempotent for the same path)."""

    @abc.abstractmethod
    def generate(self, prompts: Sequence[Prompt], model: str | None = None, params: GenParams = GenParams(),
                 progress: Progress | None = None) -> list[str]:
        """Greedy answers in prompt order; raises GenerationError when some requests failed for good."""

    def start(self) -> None:
        """Start serving (idempotent); the embedded engine loads lazily, servers launch here."""

    def close(self) -> None:
        """Release the model or stop the server and its whole process tree (idempotent)."""

    def cache_identity(self, model: str | None) -> dict:
        """What, besides the weights' digests, decides this engine's outputs (part of the prediction cache key)."""
        return {"kind": self.kind}

    def describe(self) -> dict:
        return {"kind": self.kind, "base_model": self.base_model, "adapters": dict(self.adapters)}

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


from ..lora import adapter_config  # noqa: E402,F401 (the one reader of adapter_config.json)

GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version", "/dev/kfd")  # CUDA, ROCm


def torch_sees_cuda() -> bool:
    """``torch.cuda.is_available()``, without importing torch (seconds) on a machine with no GPU driver: without an
    NVIDIA or ROCm device node it is False for every torch build."""
    import os
    import sys

    if "torch" not in sys.modules and not any(os.path.exists(p) for p in GPU_DEVICE_NODES):
        return False
    import torch

    return torch.cuda.is_available()


def check_adapter_files(path: str | Path, allow_pickle: bool) -> None:
    """Safetensors only, unless pickle is allowed (``--ftgate-allow-pickle``)."""
    p = Path(path)
    if (p / "adapter_model.safetensors").is_file():
        return
    if (p / "adapter_model.bin").is_file():
        if allow_pickle:
            return
        raise EngineError(f"adapter {str(p)!r} has only adapter_model.bin (pickle, can run code on load); "
                          "re-save it as safetensors or pass --ftgate-allow-pickle")
    raise EngineError(f"adapter {str(p)!r} has no adapter_model.safetensors")


# -- the OpenAI-compatible client -------------------------------------------------------------------------------
class OpenAIClient:
    """A small client for an OpenAI-compatible server: model listing and greedy completions."""

    def __init__(self, base_url: str, *, timeout_s: float = 120.0, retries: int = 3, concurrency: int = 8,
                 backoff_s: float = 0.5, api_key: str = "", send_chat_template: bool = False):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.concurrency = max(1, concurrency)
        self.backoff_s = backoff_s
        self.api_key = api_key
        self.send_chat_template = send_chat_template  # vLLM accepts a per-request `chat_template`
        self.alive: Callable[[], bool] | None = None  # a server we launched: no retries once it has exited
        self._local = threading.local()

    def _session(self):
        import requests

        if getattr(self._local, "session", None) is None:
            self._local.session = requests.Session()
            if self.api_key:
                self._local.session.headers["Authorization"] = f"Bearer {self.api_key}"
        return self._local.session

    def models(self, timeout_s: float | None = None) -> list[str]:
        resp = self._session().get(f"{self.base_url}/models", timeout=timeout_s or self.timeout_s)
        resp.raise_for_status()
        return [m.get("id", "") for m in resp.json().get("data", [])]

    def post(self, path: str, body: dict, timeout_s: float | None = None) -> dict:
        """One POST with retries: connection errors, timeouts, 429 and 5xx are retried with backoff."""
        import requests

        last = ""
        for attempt in range(self.retries + 1):
            if attempt and self.alive is not None and not self.alive():
                raise EngineError(f"POST {self.base_url}{path} failed: the server has exited; last: {last}")
            if attempt:
                time.sleep(min(self.backoff_s * 2 ** (attempt - 1), 30.0))
            try:
                resp = self._session().post(f"{self.base_url}{path}", json=body, timeout=timeout_s or self.timeout_s)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {str(exc)[:200]}"
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                continue
            if resp.status_code >= 400:
                raise EngineError(f"POST {self.base_url}{path} was refused: HTTP {resp.status_code}: {resp.text[:300]}")
            try:
                return resp.json()
            except ValueError:  # vLLM's /v1/load_lora_adapter answers plain text
                return {"text": resp.text}
        raise EngineError(f"POST {self.base_url}{path} failed {self.retries + 1} times; last: {last}")

    def complete(self, model: str, prompt: Prompt, params: GenParams) -> str:
        common = {"model": model, "max_tokens": params.max_new_tokens, "temperature": params.temperature,
                  "top_p": 1.0, "seed": params.seed, "n": 1, "stream": False}
        if prompt.raw:
            data = self.post("/completions", {**common, "prompt": prompt.text})
            return data["choices"][0]["text"]
        body = {**common, "messages": prompt.as_dicts()}
        if self.send_chat_template and prompt.chat_template:
            body["chat_template"] = prompt.chat_template
        data = self.post("/chat/completions", body)
        return data["choices"][0]["message"].get("content") or ""

    def complete_many(self, model: str, prompts: Sequence[Prompt], params: GenParams,
                      progress: Progress | None = None) -> list[str]:
        """Every prompt, ``concurrency`` at a time, in order; GenerationError lists how many failed."""
        outputs: list[str | None] = [None] * len(prompts)
        errors: list[str] = []

        def one(i: int) -> None:
            try:
                outputs[i] = self.complete(model, prompts[i], params)
            except (EngineError, KeyError, IndexError, ValueError) as exc:
                errors.append(str(exc))
            if progress:
                progress(1)

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            list(pool.map(one, range(len(prompts))))
        if errors:
            raise GenerationError(
                f"{len(errors)} of {len(prompts)} requests to {self.base_url} (model {model!r}) failed after "
                f"{self.retries} retries; first error: {errors[0]}", outputs, len(errors))
        return [o or "" for o in outputs]


def check_adapter_base(path: str | Path, base_model: str | Path) -> None:
    """EngineError naming both base models when the adapter's LoRA weights do not fit ``base_model``'s layers.

    The shapes come from the safetensors header (no weights are read): every ``lora_A`` input and ``lora_B``
    output width must be one of the base model's layer widths. A base without a readable ``config.json`` or an
    adapter without a safetensors file is not judged here (the engine's own loader reports those).
    """
    import struct

    p, base = Path(path), Path(base_model)
    try:
        base_cfg = json.loads((base / "config.json").read_text())
        with open(p / "adapter_model.safetensors", "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
    except (OSError, ValueError, struct.error):
        return
    hidden = int(base_cfg.get("hidden_size") or 0)
    heads = int(base_cfg.get("num_attention_heads") or 1)
    head_dim = int(base_cfg.get("head_dim") or (hidden // heads if hidden else 0))
    widths = {hidden, int(base_cfg.get("intermediate_size") or 0), heads * head_dim,
              int(base_cfg.get("num_key_value_heads") or heads) * head_dim, int(base_cfg.get("vocab_size") or 0)}
    bad = []
    for key, meta in header.items():
        shape = meta.get("shape") if isinstance(meta, dict) else None
        if not shape or len(shape) != 2:
            continue
        width = shape[1] if ".lora_A." in key else shape[0] if ".lora_B." in key else None
        if width is not None and width not in widths:
            bad.append((key, width))
    if bad:
        recorded = adapter_config(p).get("base_model_name_or_path") or "(not recorded)"
        key, width = bad[0]
        raise EngineError(f"adapter {str(p)!r} was trained on base model {recorded!r}, not on the served base model "
                          f"{str(base)!r}: its {key} is {width} wide, the served base's layers are "
                          f"{sorted(w for w in widths if w)}; gate the adapter against its own base model")
