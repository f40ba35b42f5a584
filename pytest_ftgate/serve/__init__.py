"""Serving engines registered by name; registering imports no backend (torch, transformers and vLLM load when an
engine of that kind is created). Adding an engine = one module + one line in ``ENGINES``: the option
``--ftgate-engine``, ``engine.kind`` in ftgate.yaml and lm-eval's backend for ``benchmarks.backend: auto`` all read
this table.

  hf      transformers + peft in this process: adapters attached to one base model, batched greedy generation
  vllm    ``vllm serve BASE --enable-lora --lora-modules NAME=PATH ...`` launched on 127.0.0.1, OpenAI API
  openai  any OpenAI-compatible server that already runs (vLLM, ``llamafactory-cli api``)
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ConfigError, did_you_mean

ENGINES = {  # kind -> (class, lm-eval backend that scores the same weights for ``benchmarks.backend: auto``)
    "hf": ("pytest_ftgate.serve.hf:HFEngine", "hf"),
    "vllm": ("pytest_ftgate.serve.vllm:VLLMEngine", "local-completions"),  # lm-eval asks the session's server
    "openai": ("pytest_ftgate.serve.openai:OpenAIEngine", "local-completions"),
}


def lmeval_backend(kind: str) -> str:
    """lm-eval's backend for an engine kind (``benchmarks.backend: auto``)."""
    return ENGINES[kind][1] if kind in ENGINES else "hf"


def engine_class(kind: str):
    """The class registered as ``kind``; ConfigError with the close matches when unknown."""
    if kind not in ENGINES:
        raise ConfigError(f"engine kind {kind!r} is not registered{did_you_mean(kind, ENGINES)} (known: "
                          f"{', '.join(ENGINES)})")
    module, _, name = ENGINES[kind][0].partition(":")
    return getattr(importlib.import_module(module), name)


def create_engine(kind: str, base_model: str | Path, cfg, **kwargs):
    """A new engine of ``kind`` for ``base_model`` with the ``engine`` section of ftgate.yaml (not started)."""
    return engine_class(kind)(str(base_model), cfg, **kwargs)


class EnginePool:
    """One engine per base model for a whole session, shared by every run on that base; closes them all at the end.

    A failed start is remembered, so the runs on that base report the same error without relaunching a server.
    """

    def __init__(self, kind: str, cfg, **engine_kwargs):
        self.kind = kind
        self.cfg = cfg
        self.engine_kwargs = engine_kwargs
        self.engines: dict[str, object] = {}
        self.failures: dict[str, Exception] = {}

    def get(self, base_model: str | Path, adapters: dict[str, str | Path] | None = None):
        """The started engine for ``base_model`` with ``adapters`` (name -> local dir) added.

        An adapter that is refused fails this call only; an engine that does not start fails every later call
        for its base model with the same error.
        """
        key = str(base_model)
        if key in self.failures:
            raise self.failures[key]
        engine = self.engines.get(key)
        if engine is None:
            engine = self._guard(key, lambda: create_engine(self.kind, key, self.cfg, **self.engine_kwargs))
        for name, path in (adapters or {}).items():
            engine.add_adapter(name, path)
        if key in self.engines:
            engine.start()
        else:
            self._guard(key, engine.start, engine)
            self.engines[key] = engine
        return engine

    def lazy(self, base_model: str | Path, adapters: dict[str, str | Path] | None = None) -> "LazyEngine":
        """The engine for ``base_model`` as a stand-in that creates and starts it on its first generation: a
        session whose every answer comes from the prediction cache loads no model and launches no server."""
        return LazyEngine(self, str(base_model), dict(adapters or {}))

    def _guard(self, key: str, step, engine=None):
        try:
            return step()
        except Exception as exc:
            self.failures[key] = exc
            if engine is not None:
                engine.close()
            raise

    def close(self) -> None:
        engines, self.engines = list(self.engines.values()), {}
        for engine in engines:
            engine.close()


class LazyEngine:
    """An engine of an ``EnginePool`` started on first use. Until then it answers what the prediction cache key
    needs (``kind``, ``cache_identity``) from an engine object that is constructed but not started (constructing
    one loads nothing); ``generate`` (or any other use of the engine) starts it through the pool, so a failed start
    is remembered for the base model as before."""

    def __init__(self, pool: EnginePool, base_model: str, adapters: dict):
        self._pool, self.base_model, self._adapters = pool, base_model, adapters
        self._probe = create_engine(pool.kind, base_model, pool.cfg, **pool.engine_kwargs)
        self.kind = self._probe.kind
        self._engine = None

    @property
    def started(self) -> bool:
        return self._engine is not None

    def engine(self):
        """The real engine: created, started, adapters attached (once)."""
        if self._engine is None:
            self._engine = self._pool.get(self.base_model, self._adapters)
        return self._engine

    def add_adapter(self, name: str, path: str | Path) -> None:
        self._adapters[name] = path
        if self._engine is not None:
            self._engine.add_adapter(name, path)

    def generate(self, prompts, model=None, params=None, progress=None):
        from .base import GenParams

        return self.engine().generate(prompts, model, params or GenParams(), progress=progress)

    def cache_identity(self, model: str | None) -> dict:
        if self._engine is None and self.kind == "vllm" and getattr(self._pool.cfg, "merge", "never") == "auto":
            return self.engine().cache_identity(model)  # which adapters get merged is known once they are added
        return (self._engine or self._probe).cache_identity(model)

    def describe(self) -> dict:
        if self._engine is not None:
            return self._engine.describe()
        return {**self._probe.describe(), "adapters": {k: str(v) for k, v in self._adapters.items()},
                "started": False}

    def __getattr__(self, name: str):  # anything else (tokenizer, url, ...) needs the real engine
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.engine(), name)
