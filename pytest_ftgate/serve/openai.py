"""The ``openai`` engine: an OpenAI-compatible server that already runs (a vLLM server, ``llamafactory-cli api``),
named by URL and model names in ``ftgate.yaml``. Starts and stops nothing; no generation in this process.

``engine.adapter_model_name`` answers for the adapter, ``engine.base_model_name`` for the base weights. A server
that serves one model only (``llamafactory-cli api``) needs a second one for the base: ``engine.base_model_url``.
The weights behind a URL cannot be hashed from here, so the prediction cache keys on URL and model name too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..errors import EngineError
from .base import Engine, GenParams, OpenAIClient, Progress, Prompt


class OpenAIEngine(Engine):
    kind = "openai"

    def __init__(self, base_model: str, cfg, **kwargs):
        super().__init__(base_model, cfg, **kwargs)
        if not cfg.base_url:
            raise EngineError("engine kind openai needs engine.base_url (e.g. http://127.0.0.1:8000/v1) in "
                              "ftgate.yaml: the URL of a running OpenAI-compatible server")
        key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        common = dict(timeout_s=cfg.timeout_s, retries=cfg.retries, concurrency=cfg.concurrency, api_key=key)
        self.client = OpenAIClient(cfg.base_url, **common)
        self.base_client = OpenAIClient(cfg.base_model_url, **common) if cfg.base_model_url else self.client
        self._checked: set[str] = set()

    def _route(self, model: str | None) -> tuple[OpenAIClient, str]:
        if model is None:
            name = self.cfg.base_model_name
            if not name:
                raise EngineError("engine kind openai: engine.base_model_name is not set, so the base model cannot "
                                  "be asked (G4 and adapter_applied compare the adapter with it)")
            return self.base_client, name
        if model not in self.adapters:
            raise EngineError(f"openai engine: no adapter named {model!r} (added: {', '.join(self.adapters)})")
        return self.client, self.cfg.adapter_model_name or model

    def add_adapter(self, name: str, path: str | Path) -> None:
        """The server already serves the adapter; ``path`` is the local copy it is keyed by in the cache."""
        self.adapters[name] = str(path)

    def start(self) -> None:
        for client in {id(self.client): self.client, id(self.base_client): self.base_client}.values():
            if client.base_url in self._checked:
                continue
            try:
                client.models(timeout_s=10)
            except Exception as exc:
                key = "engine.base_model_url" if client is self.base_client and client is not self.client else (
                    "engine.base_url")
                raise EngineError(f"openai engine: {client.base_url}/models {_why(exc)}; start the server "
                                  f"(vllm serve ..., llamafactory-cli api ...) or fix {key} in ftgate.yaml") from None
            self._checked.add(client.base_url)

    def generate(self, prompts: Sequence[Prompt], model: str | None = None, params: GenParams = GenParams(),
                 progress: Progress | None = None) -> list[str]:
        client, name = self._route(model)
        self.start()
        return client.complete_many(name, prompts, params, progress)

    def cache_identity(self, model: str | None) -> dict:
        client, name = (self.base_client, self.cfg.base_model_name) if model is None else (
            self.client, self.cfg.adapter_model_name or model)
        return {"kind": self.kind, "url": client.base_url, "model": name}

    def describe(self) -> dict:
        return {**super().describe(), "url": self.client.base_url, "base_url": self.base_client.base_url,
                "adapter_model_name": self.cfg.adapter_model_name, "base_model_name": self.cfg.base_model_name}


def _why(exc: Exception) -> str:
    """One clause for why a server's model listing failed: no listener, no answer, an HTTP error, not JSON."""
    import requests

    text = str(exc)
    if isinstance(exc, requests.ConnectionError):
        if "refused" in text.lower():
            return "refused the connection: nothing listens on that port"
        if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            return "names a host that does not resolve"
        return f"cannot be reached ({_cause(text)})"
    if isinstance(exc, requests.Timeout):
        return "did not answer within 10 s"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code in (401, 403):
            return f"refused the request (HTTP {code}): the server needs an API key: set engine.api_key_env"
        return f"answered HTTP {code} (is this the /v1 root of an OpenAI-compatible server?)"
    if isinstance(exc, ValueError):
        return "answered, but not with OpenAI-style JSON (is this the /v1 root of an OpenAI-compatible server?)"
    return f"failed ({type(exc).__name__}: {_cause(text)})"


def _cause(text: str) -> str:
    """The innermost reason of a urllib3/requests message, without the retry wrapping."""
    inner = text.rsplit("] ", 1)[-1] if "] " in text else text
    return inner.strip(" ')\"")[:160]
