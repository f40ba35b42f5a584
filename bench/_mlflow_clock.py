"""A pytest plugin for ``bench_gate_overhead.py`` (``-p _mlflow_clock``, with bench/ on PYTHONPATH): the seconds a
session spends in MLflow's reads (``import mlflow``, the client, ``get_run``, ``get_metric_history``) and in the
writes a complete session must make (the tags: ``log_batch``, ``delete_tag``; the verdict artifact), measured in
the session's own process, in wall and CPU seconds, written as JSON to $FTGATE_MLFLOW_CLOCK when pytest ends. Any
other MLflow call (further artifacts, searches) is left in the session's own cost.

``import mlflow`` is timed where the session itself first imports it (an import hook sees the package's module
run), so it runs as it does in a session without this plugin: the clock neither imports it earlier nor changes how
(the session pauses the garbage collector for it)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys
import time
from pathlib import Path

READS = ("get_run", "get_metric_history")
WRITES = ("log_batch", "delete_tag")
spent = {"reads": 0.0, "writes": 0.0, "reads_cpu": 0.0, "writes_cpu": 0.0}
_depth = [0]


def _add(kind: str, t: float, c: float) -> None:
    spent[kind] += time.perf_counter() - t
    spent[kind + "_cpu"] += time.process_time() - c


def _clocked(name, fn):
    def call(*args, **kwargs):
        if _depth[0]:
            return fn(*args, **kwargs)
        kind = "reads" if name in READS or name == "__init__" else "writes" if name in WRITES else None
        if name == "log_artifact":  # the verdict's is required; the checklist's and the report's are the session's
            kind = "writes" if Path(str(args[2] if len(args) > 2 else kwargs.get("local_path"))).parent.name \
                == "verdicts" else None
        _depth[0] += 1
        t, c = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _depth[0] -= 1
            if kind:
                _add(kind, t, c)
    return call


def _patch_client() -> None:
    from mlflow.tracking import MlflowClient

    for name in (*READS, *WRITES, "log_artifact", "__init__"):
        setattr(MlflowClient, name, _clocked(name, getattr(MlflowClient, name)))


class _TimedImport(importlib.abc.MetaPathFinder):
    """Finds the top-level ``mlflow`` package the usual way and times its module's run (which imports nearly all
    of MLflow), then patches the client, once."""

    def find_spec(self, name, path=None, target=None):
        if name != "mlflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            t, c = time.perf_counter(), time.process_time()
            try:
                run(module)
                sys.modules[name] = module  # _patch_client imports mlflow.tracking, under this package
                _patch_client()
            finally:
                _add("reads", t, c)

        spec.loader.exec_module = exec_module
        return spec


if "mlflow" in sys.modules:  # imported already (by another plugin): nothing left to time, only to patch
    _patch_client()
else:
    sys.meta_path.insert(0, _TimedImport())


def pytest_unconfigure(config):
    if os.environ.get("FTGATE_MLFLOW_CLOCK"):
        Path(os.environ["FTGATE_MLFLOW_CLOCK"]).write_text(json.dumps(spent))
