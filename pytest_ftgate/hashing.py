"""Content digests, one format everywhere: ``"sha256:<64 hex>"``.

  sha256_file     one file's bytes, hashed now (no memo: what a tamper check uses)
  digest_text     a text's UTF-8 bytes
  tree_files      ``[{name, sha256, size}]`` of every file under a directory, sorted, relative POSIX names
  digest_files    one digest over such a list: sha256 of its sorted "name sha256" lines
  tree_digest     ``digest_files(tree_files(dir))``: a directory's one digest. The adapter's
                  ``ftgate.adapter_sha256``, the base model's ``hash`` in the audit record and the weights in
                  prediction and benchmark cache keys are all this, so one directory has one digest
  dataset_sha256  a dataset path as training records it: a file's sha256, or a folder's ``digest_files``
  HashMemo        the one memo: a file's sha256 remembered by (absolute path, size, mtime_ns) in a JSON file, so
                  a multi-GB base model is hashed once; only for keys and records, never for a tamper check

``bare`` strips the prefix where a format wants plain hex (in-toto subjects). No pytest, no MLflow.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1 << 20
PREFIX = "sha256:"


def prefixed(hex_digest: str) -> str:
    """``"sha256:<hex>"`` from a bare hex digest (a prefixed one is returned as it is)."""
    return hex_digest if hex_digest.startswith(PREFIX) else PREFIX + hex_digest


def bare(digest: str) -> str:
    """The hex of a ``"sha256:<hex>"`` digest."""
    return digest.removeprefix(PREFIX)


def sha256_file(path: str | Path) -> str:
    """``"sha256:<hex>"`` of a file's bytes, read now."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return PREFIX + h.hexdigest()


def digest_text(text: str) -> str:
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()


def digest_json(value: object) -> str:
    """The digest of a JSON value in its canonical form (sorted keys, no NaN surprises: ``default=str``)."""
    return digest_text(json.dumps(value, sort_keys=True, default=str, ensure_ascii=False))


def cache_dir() -> Path:
    """pytest-ftgate's user cache: ``$FTGATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/pytest-ftgate``."""
    env = os.environ.get("FTGATE_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pytest-ftgate"


class HashMemo:
    """sha256 of files, remembered by (absolute path, size, mtime_ns) in a JSON file; safe to share."""

    _lock = threading.Lock()

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else cache_dir() / "sha256-memo.json"
        self._memo: dict[str, str] | None = None
        self.hits = 0
        self.misses = 0

    def _load(self) -> dict[str, str]:
        if self._memo is None:
            try:
                self._memo = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._memo = {}
        return self._memo

    def sha256(self, path: str | Path) -> str:
        """``"sha256:<hex>"`` of ``path``; re-hashed only when its size or mtime changed."""
        p = Path(path).resolve()
        st = p.stat()
        key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
        with self._lock:
            memo = self._load()
            if key in memo:
                self.hits += 1
                return prefixed(memo[key])
        digest = sha256_file(p)
        with self._lock:
            self.misses += 1
            memo = self._load()
            for old in [k for k in memo if k.startswith(f"{p}|")]:
                del memo[old]
            memo[key] = digest
            self._save(memo)
        return digest

    def _save(self, memo: dict[str, str]) -> None:
        from .fileio import write_atomic

        try:
            write_atomic(self.path, json.dumps(memo, indent=0, sort_keys=True), fsync=False)
        except OSError:  # a read-only cache only costs re-hashing
            pass


def tree_files(root: str | Path, memo: HashMemo | None = None, skip: Iterable[str] = ()) -> list[dict]:
    """``[{"name", "sha256", "size"}]`` for every file under ``root`` (sorted, relative POSIX names); ``memo=None``
    hashes every byte now."""
    root = Path(root)
    skip = tuple(skip)
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not any(rel == s or rel.startswith(s + "/") for s in skip):
            out.append({"name": rel, "sha256": memo.sha256(p) if memo else sha256_file(p), "size": p.stat().st_size})
    return out


def digest_files(files: Iterable[dict]) -> str:
    """One digest over ``[{"name", "sha256"}]``: sha256 of the sorted "name sha256" lines (prefixed sha256s)."""
    lines = sorted(f"{f['name']} {prefixed(str(f['sha256']))}" for f in files)
    return digest_text("\n".join(lines))


def tree_digest(root: str | Path, memo: HashMemo | None = None) -> str:
    """A directory's one digest (``digest_files(tree_files(root))``), the format of ``ftgate.adapter_sha256``."""
    return digest_files(tree_files(root, memo))


def dataset_sha256(path: str | Path, memo: HashMemo | None = None) -> str:
    """A dataset path as training records it: the file's sha256, or one digest over a folder's files."""
    p = Path(path)
    if p.is_dir():
        return tree_digest(p, memo)
    return memo.sha256(p) if memo else sha256_file(p)
