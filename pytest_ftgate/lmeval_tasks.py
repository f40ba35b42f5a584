"""lm-evaluation-harness tasks by name: the catalog (``benchmarks.include_path`` first, lm-eval's ~14,700 built-in
tasks only when a name is not found there), task YAMLs with their local data files made absolute, and the
fingerprint that identifies a task's numbers (versions, full configs, the sha256 of each local data file). lm_eval
is imported inside the functions. No pytest. The runs themselves are ``lmeval.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from . import hashing
from .errors import BenchmarkError, did_you_mean

_LOCAL_LOADERS = ("json", "csv", "parquet", "text", "arrow")  # dataset_path values that read data_files


class TaskCatalog:
    """Task names -> lm-eval tasks; the built-in index (~10 s) is only built when a name is not in include_path."""

    def __init__(self, include_paths: Sequence[str | Path] = ()):
        self.include_paths = [Path(p) for p in include_paths]
        self._managers: dict[bool, Any] = {}

    def manager(self, defaults: bool) -> Any:
        if defaults not in self._managers:
            from lm_eval.tasks import TaskManager

            for p in self.include_paths:
                if not p.is_dir():
                    raise BenchmarkError(f"benchmarks.include_path {str(p)!r} is not a directory of task YAMLs")
            self._managers[defaults] = TaskManager(include_path=[str(p) for p in self.include_paths] or None,
                                                   include_defaults=defaults)
        return self._managers[defaults]

    def find(self, name: str) -> tuple[Any, Any]:
        """(TaskManager, index entry) for ``name``; BenchmarkError with the closest names when unknown."""
        for defaults in (False, True):
            tm = self.manager(defaults)
            entry = tm.task_index.get(name)
            if entry is not None:
                if entry.kind.name == "TAG":
                    raise BenchmarkError(f"lm-eval name {name!r} is a tag of {len(entry.tags)} tasks without an "
                                         f"aggregate score; gate them one by one: {', '.join(sorted(entry.tags)[:20])}")
                return tm, entry
        hint = did_you_mean(name, tm.all_tasks, n=6)
        where = ", ".join(str(p) for p in self.include_paths) or "no benchmarks.include_path"
        raise BenchmarkError(f"unknown lm-eval task {name!r}{hint} (searched {where} and lm-eval's built-in tasks; "
                             "`lm-eval ls tasks` lists them)")

    def load(self, name: str) -> tuple[Any, dict]:
        """(TaskManager, ``TaskManager.load`` result) with fresh task objects; data problems name the path."""
        tm, entry = self.find(name)
        spec: Any = name
        if entry.kind.name == "TASK" and entry.yaml_path is not None:
            spec = task_config(Path(entry.yaml_path))
        try:
            return tm, tm.load([spec])
        except BenchmarkError:
            raise
        except Exception as exc:
            raise BenchmarkError(_data_error(name, entry, exc)) from exc


def task_config(yaml_path: Path) -> dict:
    """A task YAML with its local ``data_files`` made absolute (relative ones are read next to the YAML)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(yaml_path, resolve_func=True)
    kwargs = dict(cfg.get("dataset_kwargs") or {})
    files = kwargs.get("data_files")
    if files is None or cfg.get("dataset_path") not in _LOCAL_LOADERS:
        return cfg

    def fix(p: str) -> str:
        if Path(p).is_absolute() or any(c in p for c in "*?[") or "://" in p:
            return p
        here = (yaml_path.parent / p).resolve()
        if not here.exists():
            raise BenchmarkError(f"task {cfg.get('task')!r} ({yaml_path}): data file {here} does not exist "
                                 f"(dataset_kwargs.data_files {p!r} is read relative to the task YAML)")
        return str(here)

    if isinstance(files, dict):
        kwargs["data_files"] = {k: [fix(x) for x in v] if isinstance(v, list) else fix(v) for k, v in files.items()}
    else:
        kwargs["data_files"] = [fix(x) for x in files] if isinstance(files, list) else fix(files)
    return {**cfg, "dataset_kwargs": kwargs}


def _data_error(name: str, entry: Any, exc: Exception) -> str:
    source = f" ({entry.yaml_path})" if getattr(entry, "yaml_path", None) else ""
    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    if isinstance(exc, FileNotFoundError) or "offline" in str(exc).lower() or "connect" in str(exc).lower():
        cache = os.environ.get("HF_DATASETS_CACHE") or "~/.cache/huggingface/datasets"
        return (f"task {name!r}{source}: its data could not be loaded ({text}). Offline (HF_DATASETS_OFFLINE=1) a "
                f"hub dataset must already be in the datasets cache ({cache}); or point the task's dataset_path / "
                "dataset_kwargs.data_files at local files")
    return f"task {name!r}{source} could not be built by lm-eval: {text}"


def top_level(loaded: dict) -> list:
    """The task/group objects a load produced, without their children (what simple_evaluate is given)."""
    children = {c for names in loaded.get("group_map", {}).values() for c in names}
    items = {**loaded["groups"], **loaded["tasks"]}
    return [obj for name, obj in items.items() if name not in children]


def task_fingerprint(loaded: dict) -> dict:
    """What identifies a task's numbers: versions, the full configs and the sha256 of each local data file."""
    from .hashing import sha256_file

    configs, data = {}, {}
    for name, task in sorted(loaded["tasks"].items()):
        cfg = task.config.to_dict(keep_callable=True)  # functions: see _stable (lm-eval's repr has an address)
        cfg.get("metadata", {}).pop("config_source", None)
        configs[name] = cfg
        files = (cfg.get("dataset_kwargs") or {}).get("data_files") or {}
        paths = files.values() if isinstance(files, dict) else [files]
        for p in [x for v in paths for x in (v if isinstance(v, list) else [v])]:
            data[str(p)] = sha256_file(p) if Path(str(p)).is_file() else "not a local file"
    versions = {n: str(t.VERSION) for n, t in loaded["tasks"].items()}
    versions.update({n: str(g.version) for n, g in loaded["groups"].items()})
    blob = json.dumps({"configs": configs, "groups": loaded.get("group_map", {})}, sort_keys=True, default=_stable)
    return {"versions": dict(sorted(versions.items())), "config_sha256": hashing.digest_text(blob), "data": data}


def _stable(o: Any) -> str:
    """A function (``!function utils.process_docs``) as its name and the digest of its source file."""
    from .hashing import sha256_file

    code = getattr(o, "__code__", None)
    if code is None:
        return str(o) if not callable(o) else f"{type(o).__module__}.{type(o).__qualname__}"
    src = Path(code.co_filename)
    return f"{o.__module__}.{o.__qualname__} {sha256_file(src) if src.is_file() else code.co_code.hex()}"


