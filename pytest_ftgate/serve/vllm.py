"""The vLLM engine: launches ``vllm serve BASE --enable-lora --lora-modules NAME=PATH ... --max-lora-rank R
--host 127.0.0.1 --port P --seed S --tensor-parallel-size N`` from a configurable executable and talks to it
through the OpenAI-compatible client. No generation in this process; vLLM is never imported here.

vLLM needs its own environment (vllm 0.33 pins transformers >= 5.16, llamafactory 0.9.5 at most 5.6), so
``engine.vllm_executable`` names that environment's ``vllm`` (or any command, e.g. ``/venv/bin/python -m
vllm.entrypoints.cli.main``). Adapters known at launch go on the command line; one added later is loaded at
run time (``/v1/load_lora_adapter``) when its rank fits, else the server is relaunched with all of them.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import Sequence

from ..errors import EngineError
from .base import Engine, GenParams, OpenAIClient, Progress, Prompt, adapter_config, check_adapter_files
from .process import ServerProcess, free_port

MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts


def lora_rank(path: str | Path) -> int:
    """The largest rank in an adapter: ``r`` and any ``rank_pattern`` override."""
    cfg = adapter_config(path)
    ranks = [int(cfg.get("r") or 0)] + [int(v) for v in (cfg.get("rank_pattern") or {}).values()]
    return max(ranks)


def max_lora_rank(ranks: Sequence[int]) -> int:
    """The smallest value vLLM allows that is at least every rank (16, vLLM's default, for no adapter)."""
    need = max(ranks, default=0)
    if need == 0:
        return 16
    for allowed in MAX_LORA_RANKS:
        if allowed >= need:
            return allowed
    raise EngineError(f"LoRA rank {need} is above the largest --max-lora-rank vLLM accepts ({MAX_LORA_RANKS[-1]}); "
                      "serve this adapter with the hf engine or merge it (llamafactory-cli export)")


def check_servable(path: str | Path) -> None:
    """What vLLM's PEFT loader refuses, refused here before a GPU server is launched for nothing."""
    cfg = adapter_config(path)
    if cfg.get("modules_to_save"):
        raise EngineError(f"adapter {str(path)!r} trains whole modules ({', '.join(cfg['modules_to_save'])}; "
                          "modules_to_save / LLaMA-Factory additional_target), which vLLM's LoRA serving does not "
                          "support; merge it (llamafactory-cli export) and serve the merged model, or use engine hf")
    if cfg.get("use_dora"):
        raise EngineError(f"adapter {str(path)!r} is a DoRA adapter, which vLLM does not serve; use engine hf")


class VLLMEngine(Engine):
    kind = "vllm"

    def __init__(self, base_model: str, cfg, **kwargs):
        super().__init__(base_model, cfg, **kwargs)
        self.server: ServerProcess | None = None
        self.client: OpenAIClient | None = None
        self.port = 0
        self._rank = 0  # the --max-lora-rank the running server was launched with

    # -- the command line -----------------------------------------------------------------------------------------
    def executable(self) -> list[str]:
        argv = shlex.split(self.cfg.vllm_executable or "vllm")
        if not argv:
            raise EngineError("engine.vllm_executable is empty; name vLLM's executable, e.g. /opt/vllm/bin/vllm")
        if os.sep not in argv[0] and shutil.which(argv[0]) is None:
            raise EngineError(
                f"vLLM executable {argv[0]!r} is not on PATH. vLLM needs its own environment (its transformers pin "
                "conflicts with llamafactory's): create one with `pip install vllm` on a GPU machine and set "
                "engine.vllm_executable to its bin/vllm")
        return argv

    def command(self, port: int) -> list[str]:
        cmd = [*self.executable(), "serve", self.base_model]
        ranks = [lora_rank(p) for p in self.adapters.values()]
        self._rank = max_lora_rank(ranks)
        cmd += ["--enable-lora"]
        if self.adapters:
            cmd += ["--lora-modules", *(f"{name}={path}" for name, path in self.adapters.items())]
        cmd += ["--max-lora-rank", str(self._rank), "--host", "127.0.0.1", "--port", str(port),
                "--seed", str(self.cfg.seed), "--tensor-parallel-size", str(self.cfg.tensor_parallel_size)]
        return cmd + [str(a) for a in self.cfg.extra_args]

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.server is not None and self.server.alive():
            return
        if self.server is not None:
            raise self.server.failure("stopped while it was serving")
        attempts = 1 if self.cfg.port else 2  # a free port can be taken between the probe and the bind
        for attempt in range(attempts):
            self.port = int(self.cfg.port) or free_port()
            try:
                self._launch(self.port)
                return
            except EngineError as exc:
                if attempt + 1 < attempts and "address already in use" in str(exc).lower():
                    continue
                raise

    def _launch(self, port: int) -> None:
        log = (self.log_dir / f"vllm-{port}.log") if self.log_dir else None
        env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
        self.server = ServerProcess(self.command(port), name="vLLM server", log_path=log, env=env)
        self.client = OpenAIClient(f"http://127.0.0.1:{port}/v1", timeout_s=self.cfg.timeout_s,
                                   retries=self.cfg.retries, concurrency=self.cfg.concurrency,
                                   send_chat_template=True)
        expected = {self.base_model, *self.adapters}
        server = self.server

        def ready() -> bool:
            served = set(self.client.models(timeout_s=5))
            missing = expected - served
            if missing and served:
                raise EngineError(f"/v1/models lists {sorted(served)} but not {sorted(missing)}: the adapter "
                                  "was not loaded (check --enable-lora and the adapter path)")
            return not missing

        try:
            server.start(ready, timeout_s=self.cfg.startup_timeout_s)
        except EngineError:
            self.server = None
            raise

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server = None

    def add_adapter(self, name: str, path: str | Path) -> None:
        path = str(Path(path).resolve())
        check_servable(path)
        check_adapter_files(path, self.allow_pickle)
        if self.adapters.get(name) == path:
            return
        self.adapters[name] = path
        if self.server is None or not self.server.alive():
            return
        if lora_rank(path) <= self._rank:
            self.client.post("/load_lora_adapter", {"lora_name": name, "lora_path": path})
            if name in self.client.models():
                return
        self.close()  # a higher rank than the server was launched with: relaunch with every adapter
        self.start()

    def generate(self, prompts: Sequence[Prompt], model: str | None = None, params: GenParams = GenParams(),
                 progress: Progress | None = None) -> list[str]:
        if model is not None and model not in self.adapters:
            raise EngineError(f"vllm engine: no adapter named {model!r} (added: {', '.join(self.adapters) or 'none'})")
        self.start()
        return self.client.complete_many(model or self.base_model, prompts, params, progress)

    def cache_identity(self, model: str | None) -> dict:
        return {"kind": self.kind, "tensor_parallel_size": self.cfg.tensor_parallel_size,
                "extra_args": list(self.cfg.extra_args)}

    def describe(self) -> dict:
        return {**super().describe(), "command": self.server.command_line if self.server else "",
                "url": self.client.base_url if self.client else ""}
