"""A pytest plugin for ``bench_gate_overhead.py`` (``-p _mlflow_clock``, with bench/ on PYTHONPATH): the seconds a
session spends in MLflow's reads (``import mlflow``, the client, ``get_run``, ``get_metric_history``) and in the
writes a complete session must make (the tags: ``log_batch``, ``delete_tag``; the verdict artifact), measured in
the session's own process, written as JSON to $FTGATE_MLFLOW_CLOCK when pytest ends. Any other MLflow call
(further artifacts, searches) is left in the session's own cost."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

READS = ("get_run", "get_metric_history")
WRITES = ("log_batch", "delete_tag")
spent = {"reads": 0.0, "writes": 0.0}
_t = time.perf_counter()
import mlflow  # noqa: E402,F401 (timed: the session would import it in collection)
from mlflow.tracking import MlflowClient  # noqa: E402

spent["reads"] += time.perf_counter() - _t
_depth = [0]


def _clocked(name, fn):
    def call(*args, **kwargs):
        if _depth[0]:
            return fn(*args, **kwargs)
        kind = "reads" if name in READS or name == "__init__" else "writes" if name in WRITES else None
        if name == "log_artifact":  # the verdict's is required; the checklist's and the report's are the session's
            kind = "writes" if Path(str(args[2] if len(args) > 2 else kwargs.get("local_path"))).parent.name \
                == "verdicts" else None
        _depth[0] += 1
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _depth[0] -= 1
            if kind:
                spent[kind] += time.perf_counter() - t
    return call


for _name in (*READS, *WRITES, "log_artifact", "__init__"):
    setattr(MlflowClient, _name, _clocked(_name, getattr(MlflowClient, _name)))


def pytest_unconfigure(config):
    if os.environ.get("FTGATE_MLFLOW_CLOCK"):
        Path(os.environ["FTGATE_MLFLOW_CLOCK"]).write_text(json.dumps(spent))
