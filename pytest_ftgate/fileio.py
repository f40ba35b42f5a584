"""File-system plumbing every module shares: atomic writes and the resolution of a configured path.

  write_atomic   a temporary file beside the target, fsync'd (by default), renamed over it; mode 0666 less the
                 umask, as ``open`` would create it. Verdicts, reports, attestations, caches and memos use it.
  resolve_path   ``~`` expanded first, then a relative path joined to its documented base (the directory of the
                 file that named it, or the working directory of a training config), so ``~/data`` is the home
                 directory's data wherever it is written.

No pytest, no MLflow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, data: str | bytes, fsync: bool = True) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically: readers see the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def resolve_path(path: str | Path, base: str | Path | None) -> Path:
    """``path`` with ``~`` expanded; a relative one joined to ``base`` (left relative when ``base`` is None)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or base is None else Path(base) / p
