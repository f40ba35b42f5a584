"""Secrets out of every output: values under secret keys (password, secret, token, key, credential ...) in params,
tags, the environment and nested JSON; ``key=value`` assignments of such keys inside text; passwords in URLs; and
every literal occurrence of a secret value learnt from the environment, params or tags. Pure, no I/O.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
from typing import Any, Mapping

REDACTED = "[REDACTED]"
MIN_SECRET_LEN = 6  # shorter secret values are not replaced as literals (their keys still are)

_SECRET_SUBSTRINGS = ("password", "passwd", "passphrase", "secret", "credential", "apikey", "api_key", "private_key",
                      "access_key")
_SECRET_WORDS = {"token", "key", "auth"}  # not "pwd": $PWD is the working directory
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_.\-]*)(\s*[:=]\s*)([\"']?)([^\s\"',;}\]]+)")
_USERINFO = re.compile(r"(://[^/\s:@]+):([^/\s@]+)@")


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """password/secret/credential anywhere, or a word token/key/auth (``HF_TOKEN``, ``*_KEY``; not ``lora_rank``,
    ``max_new_tokens`` or ``keyword``)."""
    k = key.lower()
    return any(s in k for s in _SECRET_SUBSTRINGS) or bool(_SECRET_WORDS & set(re.split(r"[^a-z0-9]+", k)))


class Redactor:
    """Replaces secret values: values under secret keys, ``key=value`` / ``key: value`` assignments of secret keys
    inside text, passwords in URLs, and every literal occurrence of a known secret value."""

    def __init__(self, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        self.values: set[str] = set()
        self._longest_first: list[str] = []
        self.learn(env)

    def learn(self, mapping: Mapping[str, Any]) -> None:
        """Remember the values of the secret keys of ``mapping`` (env, params, tags) as literals to redact."""
        for k, v in (mapping or {}).items():
            if is_secret_key(str(k)) and isinstance(v, str) and len(v.strip()) >= MIN_SECRET_LEN:
                self.values.add(v.strip())
        self._longest_first = sorted(self.values, key=len, reverse=True)

    def text(self, s: str) -> str:
        for v in self._longest_first:
            if v in s:
                s = s.replace(v, REDACTED)
        if "://" in s:
            s = _USERINFO.sub(lambda m: f"{m.group(1)}:{REDACTED}@", s)
        if ":" not in s and "=" not in s:
            return s
        return _ASSIGNMENT.sub(lambda m: m.group(0) if not is_secret_key(m.group(1)) or m.group(4) == REDACTED
                               else f"{m.group(1)}{m.group(2)}{m.group(3)}{REDACTED}", s)

    def deep(self, obj: Any) -> Any:
        """A copy of ``obj`` with secret keys' values and secret text replaced."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {k: (REDACTED if is_secret_key(str(k)) and v not in (None, "") else self.deep(v))
                    for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.deep(v) for v in obj]
        return obj

    def forms(self) -> list[tuple[str, str]]:
        """(literal, replacement) for each secret as it may be written in HTML, JSON or HTML-escaped JSON."""
        out = []
        for v in sorted(self.values, key=len, reverse=True):
            js = json.dumps(v)[1:-1]
            for form in {v, html.escape(v), js, html.escape(js)}:
                out.append((form, REDACTED))
        return out

    def scrub(self, document: str) -> str:
        """The last line of defence over a whole written file: replace every literal form of every secret."""
        for form, repl in self.forms():
            document = document.replace(form, repl)
        return document
