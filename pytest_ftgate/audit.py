"""The audit record of a training run (seed 002): hashing with a memo, environment capture, record assembly.

Owns what is written: sha256 of files (memoized by path, size and mtime, so a multi-GB base model is hashed
once), the environment and hardware of the training process, and the record's shape (``REQUIRED_FIELDS``,
``missing_fields``). It does not train, gate or talk to MLflow; torch is imported only inside
``environment``/``hardware``/``determinism``, which run in the training child.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
CHUNK = 1 << 20

# Every field issue 6's G6 requires, as dotted paths; ``[]`` means "each element of the list".
REQUIRED_FIELDS = (
    "schema_version", "experiment_id", "run_id", "created_at",
    "input_artifacts.base_model.path", "input_artifacts.base_model.hash", "input_artifacts.base_model.files",
    "input_artifacts.datasets", "input_artifacts.datasets[].name", "input_artifacts.datasets[].split",
    "input_artifacts.datasets[].path", "input_artifacts.datasets[].sha256", "input_artifacts.datasets[].samples",
    "input_artifacts.datasets[].format",
    "input_artifacts.dataset_info.path", "input_artifacts.dataset_info.sha256",
    "input_artifacts.config.file", "input_artifacts.config.sha256", "input_artifacts.config.content",
    "training_record.timeline.start_time", "training_record.timeline.end_time",
    "training_record.timeline.duration_seconds",
    "training_record.progress.total_steps", "training_record.progress.completed_steps",
    "training_record.progress.epochs_completed",
    "training_record.metrics_summary.initial_loss", "training_record.metrics_summary.final_loss",
    "output_artifacts.adapter.artifact_path", "output_artifacts.adapter.type", "output_artifacts.adapter.format",
    "output_artifacts.adapter.files", "output_artifacts.adapter.files[].name",
    "output_artifacts.adapter.files[].sha256",
    "reproducibility.seeds.seed",
    "reproducibility.environment.python_version", "reproducibility.environment.torch_version",
    "reproducibility.environment.transformers_version", "reproducibility.environment.peft_version",
    "reproducibility.environment.llamafactory_version",
    "reproducibility.hardware.device",
    "reproducibility.determinism.cudnn_deterministic", "reproducibility.determinism.full_determinism",
)
# Present but allowed to be null: cuda_version on CPU, git_commit outside git, data_seed when unset, eval losses.


def missing_fields(record: Any) -> list[str]:
    """The dotted paths of ``REQUIRED_FIELDS`` that are absent, null or empty in ``record``."""
    return [f for f in REQUIRED_FIELDS if not _present(record, f.split("."))]


def _present(node: Any, parts: list[str]) -> bool:
    if not parts:
        return node is not None and node != "" and node != []
    head, rest = parts[0], parts[1:]
    if head.endswith("[]"):
        items = node.get(head[:-2]) if isinstance(node, dict) else None
        return isinstance(items, list) and bool(items) and all(_present(i, rest) for i in items)
    return isinstance(node, dict) and head in node and _present(node[head], rest)


# -- hashing ------------------------------------------------------------------------------------------------
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
        """The hex sha256 of ``path``; re-hashed only when its size or mtime changed."""
        p = Path(path).resolve()
        st = p.stat()
        key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
        with self._lock:
            memo = self._load()
            if key in memo:
                self.hits += 1
                return memo[key]
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(memo, indent=0, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError:  # a read-only cache only costs re-hashing
            pass


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def prefixed(hex_digest: str) -> str:
    return hex_digest if hex_digest.startswith("sha256:") else f"sha256:{hex_digest}"


def tree_files(root: str | Path, memo: HashMemo | None = None, skip: Iterable[str] = ()) -> list[dict]:
    """``[{"name", "sha256", "size"}]`` for every file under ``root`` (sorted, relative POSIX names)."""
    memo = memo or HashMemo()
    root = Path(root)
    skip = tuple(skip)
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not any(rel == s or rel.startswith(s + "/") for s in skip):
            out.append({"name": rel, "sha256": prefixed(memo.sha256(p)), "size": p.stat().st_size})
    return out


def digest_files(files: Iterable[dict]) -> str:
    """One digest over ``[{"name", "sha256"}]``: sha256 of the sorted "name sha256" lines."""
    lines = sorted(f"{f['name']} {f['sha256']}" for f in files)
    return prefixed(hashlib.sha256("\n".join(lines).encode()).hexdigest())


def digest_text(text: str) -> str:
    return prefixed(hashlib.sha256(text.encode()).hexdigest())


# -- environment (called in the training child: imports torch) -----------------------------------------------
def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    import torch

    from . import __version__

    return {
        "python_version": platform.python_version(), "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda if torch.cuda.is_available() else None,
        "transformers_version": _version("transformers"), "peft_version": _version("peft"),
        "llamafactory_version": _version("llamafactory"), "mlflow_version": _version("mlflow"),
        "pytest_ftgate_version": __version__, "platform": platform.platform(),
    }


def hardware() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "device": "cuda" if cuda else "cpu",
        "gpu_type": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def determinism(args: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "full_determinism": bool(args.get("full_determinism", False)),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "python_hash_seed": os.environ.get("PYTHONHASHSEED"),
        "torch_num_threads": torch.get_num_threads(),
    }


def pip_freeze() -> str:
    """``pip freeze`` of the running interpreter; the installed distributions when pip is absent."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--disable-pip-version-check"],
                             capture_output=True, text=True, timeout=120, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout
    except (OSError, subprocess.TimeoutExpired):
        pass
    from importlib import metadata

    dists = sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]})
    return "\n".join(dists) + "\n"


def git_commit(path: str | Path) -> dict[str, Any]:
    """The commit of the repository holding ``path`` and whether ``path`` differs from it (None outside git)."""
    p = Path(path).resolve()
    try:
        head = subprocess.run(["git", "-C", str(p.parent), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=20, check=False)
        if head.returncode != 0:
            return {"git_commit": None, "git_dirty": None}
        status = subprocess.run(["git", "-C", str(p.parent), "status", "--porcelain", "--", p.name],
                                capture_output=True, text=True, timeout=20, check=False)
        return {"git_commit": head.stdout.strip(), "git_dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"git_commit": None, "git_dirty": None}


# -- the record -------------------------------------------------------------------------------------------
def build_record(*, experiment_id: str, run_id: str, created_at: str, inputs: dict, training: dict,
                 adapter_files: list[dict], seeds: dict, args: dict) -> dict[str, Any]:
    """The audit record of seed 002 (see the brief); ``inputs`` is what the parent hashed before training."""
    return {
        "schema_version": SCHEMA_VERSION, "experiment_id": experiment_id, "run_id": run_id,
        "created_at": created_at,
        "input_artifacts": inputs,
        "training_record": training,
        "output_artifacts": {"adapter": {"artifact_path": "adapter", "type": str(args.get("finetuning_type", "lora")),
                                         "format": _adapter_format(adapter_files), "files": adapter_files,
                                         "sha256": digest_files(adapter_files)}},
        "reproducibility": {"seeds": seeds, "environment": environment(), "hardware": hardware(),
                            "determinism": determinism(args)},
    }


def _adapter_format(files: list[dict]) -> str:
    names = [f["name"] for f in files]
    if any(n.endswith(".safetensors") for n in names):
        return "safetensors"
    return "pickle" if any(n.endswith((".bin", ".pt", ".pth")) for n in names) else "unknown"


def training_summary(*, start: str, end: str, duration: float, state: dict, losses: list[tuple[int, float]],
                     evals: list[tuple[int, float]], saves: list[tuple[int, str]]) -> dict[str, Any]:
    """``training_record``: timeline, progress, checkpoints with the eval_loss at their step, best checkpoint."""
    checkpoints = []
    for step, path in saves:
        before = [v for s, v in evals if s <= step]
        checkpoints.append({"step": step, "path": path, "eval_loss": before[-1] if before else None,
                            "exists": Path(path).is_dir()})
    scored = [c for c in checkpoints if c["eval_loss"] is not None]
    best = min(scored, key=lambda c: c["eval_loss"]) if scored else None
    return {
        "timeline": {"start_time": start, "end_time": end, "duration_seconds": round(duration, 3)},
        "progress": {"total_steps": state.get("max_steps"), "completed_steps": state.get("global_step"),
                     "epochs_completed": state.get("epoch"), "num_train_epochs": state.get("num_train_epochs")},
        "checkpoints": checkpoints,
        "metrics_summary": {
            "initial_loss": losses[0][1] if losses else None, "final_loss": losses[-1][1] if losses else None,
            "best_eval_loss": min(v for _, v in evals) if evals else None,
            "final_eval_loss": evals[-1][1] if evals else None,
            "best_checkpoint": Path(best["path"]).name if best else None,
        },
    }
