"""The on-disk prediction cache: one sqlite file (safe across processes, e.g. pytest-xdist workers) mapping
sha256(engine identity, weights' digests, generation parameters, prompt) to the answer. The weights' digests are
``hashing.tree_digest`` (memoised by ``hashing.HashMemo``, the one memo). No generation, no scoring.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Sequence

from ..hashing import HashMemo, sha256_file as file_sha256, tree_digest  # noqa: F401 (file_sha256: old name)
from .base import GenParams, Prompt


def weights_digest(path: str | Path | None, memo: HashMemo | None = None) -> str:
    """The digest of a model or adapter directory in cache keys: ``hashing.tree_digest``, the same value as the run's
    ``ftgate.adapter_sha256`` and the record's base-model ``hash`` ("none" for no adapter)."""
    if not path:
        return "none"
    root = Path(path)
    if not root.exists():
        return f"unavailable:{root}"
    return tree_digest(root, memo or HashMemo())


class PredictionCache:
    """Predictions in one sqlite file (safe across processes, e.g. pytest-xdist workers)."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / "predictions.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS predictions (key TEXT PRIMARY KEY, output TEXT, created REAL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS prompts (key TEXT PRIMARY KEY, text TEXT)")  # encoded prompts
        self._db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, scores TEXT)")  # metrics.Scores
        self._db.commit()

    @staticmethod
    def key(identity: dict, prompt: Prompt, params: GenParams) -> str:
        blob = {"engine": identity, "params": params.key(), "messages": prompt.messages, "raw": prompt.raw,
                "chat_template": hashlib.sha256(prompt.chat_template.encode()).hexdigest()}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        return self._select("predictions", "output", keys)

    def _select(self, table: str, column: str, keys: Sequence[str]) -> dict[str, str]:
        """``{key: column}`` of the rows of ``table`` whose key is one of ``keys`` (500 per query)."""
        out: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                out.update(self._db.execute(f"SELECT key, {column} FROM {table} WHERE key IN ({marks})", chunk))
        return out

    def put_many(self, items: dict[str, str]) -> None:
        with self._lock:
            now = time.time()
            self._db.executemany("INSERT OR REPLACE INTO predictions VALUES (?, ?, ?)",
                                 [(k, v, now) for k, v in items.items()])
            self._db.commit()

    def delete(self, keys: Sequence[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM predictions WHERE key = ?", [(k,) for k in keys])
            self._db.commit()

    def get_prompts(self, keys: Sequence[str]) -> dict[str, str]:
        """Encoded prompts (LLaMA-Factory's template applied) by the digest of what decides them."""
        return self._select("prompts", "text", keys)

    def put_prompts(self, items: dict[str, str]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO prompts VALUES (?, ?)", list(items.items()))
            self._db.commit()

    def get_scores(self, key: str) -> dict | None:
        """Scores (as ``metrics.Scores.to_dict``) by the digest of the answers, references and metric settings."""
        with self._lock:
            row = self._db.execute("SELECT scores FROM scores WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_scores(self, key: str, scores: dict) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO scores VALUES (?, ?)", (key, json.dumps(scores)))
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()
