"""The on-disk prediction cache and the content digests it is keyed by: one sqlite file (safe across processes,
e.g. pytest-xdist workers) mapping sha256(engine identity, weights' digests, generation parameters, prompt) to the
answer, plus a memo of directory digests keyed on file sizes and mtimes. No generation, no scoring.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Sequence

from .base import GenParams, Prompt


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def dir_digest(path: str | Path, cache: "PredictionCache | None" = None) -> str:
    """One sha256 over every file of a directory (relative names and contents); memoised on size and mtime."""
    root = Path(path)
    if not root.exists():
        return f"unavailable:{root}"
    files = sorted(p for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file())
    signature = json.dumps([(str(p.relative_to(root)) if p != root else p.name, p.stat().st_size,
                             p.stat().st_mtime_ns) for p in files])
    memo = cache.digest_memo(str(root.resolve()), signature) if cache else None
    if memo:
        return memo
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(root) if p != root else p.name}\0{file_sha256(p)}\n".encode())
    digest = "sha256:" + h.hexdigest()
    if cache:
        cache.remember_digest(str(root.resolve()), signature, digest)
    return digest


class PredictionCache:
    """Predictions in one sqlite file (safe across processes, e.g. pytest-xdist workers)."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / "predictions.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS predictions (key TEXT PRIMARY KEY, output TEXT, created REAL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, signature TEXT, digest TEXT)")
        self._db.commit()

    @staticmethod
    def key(identity: dict, prompt: Prompt, params: GenParams) -> str:
        blob = {"engine": identity, "params": params.key(), "messages": prompt.messages, "raw": prompt.raw,
                "chat_template": hashlib.sha256(prompt.chat_template.encode()).hexdigest()}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                out.update(self._db.execute(f"SELECT key, output FROM predictions WHERE key IN ({marks})", chunk))
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

    def digest_memo(self, path: str, signature: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT signature, digest FROM digests WHERE path = ?", (path,)).fetchone()
        return row[1] if row and row[0] == signature else None

    def remember_digest(self, path: str, signature: str, digest: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?)", (path, signature, digest))
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()
