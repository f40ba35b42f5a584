"""MLflow access behind a small interface: resolve run references, read params, tags, metric histories and
artifacts, write tags and artifacts. mlflow is imported lazily (``pytest --help`` must not import it).
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RunUnavailable

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
EMBEDDED_DIR = ".ftgate"
DEFAULT_EXPERIMENT = "ftgate"


def embedded_tracking_uri(root: str | Path) -> str:
    """The embedded store: sqlite under ``<root>/.ftgate`` (MLflow 3's file store is in maintenance mode)."""
    return f"sqlite:///{(Path(root) / EMBEDDED_DIR / 'mlflow.db').resolve()}"


def embedded_artifact_root(root: str | Path) -> str:
    return str((Path(root) / EMBEDDED_DIR / "artifacts").resolve())


def quiet_mlflow_env() -> None:
    """Fail fast on an unreachable server and keep telemetry off, unless the user chose otherwise."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars in the gate's output
    os.environ.setdefault("DO_NOT_TRACK", "true")


@dataclass
class RunRecord:
    """Everything the gates read from one MLflow run."""

    run_id: str
    run_name: str
    experiment_id: str
    status: str
    start_time: int | None  # ms since the epoch
    end_time: int | None
    params: dict[str, str]
    tags: dict[str, str]
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    artifact_uri: str = ""

    @property
    def duration_s(self) -> float | None:
        """Training time: LLaMA-Factory's ``train_runtime`` when logged, else the run's wall time."""
        runtime = self.history.get("train_runtime")
        if runtime:
            return float(runtime[-1][1])
        if self.start_time and self.end_time:
            return (self.end_time - self.start_time) / 1000
        return None


class RunStore:
    """One MLflow tracking store (a server URL, sqlite, or a directory)."""

    def __init__(self, tracking_uri: str, experiment: str | None = None, artifact_root: str | None = None):
        quiet_mlflow_env()
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifact_root = artifact_root  # used when this store creates the experiment
        self._client = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # -- resolving -------------------------------------------------------------------------------
    def experiment_id(self, create: bool = False) -> str | None:
        """The id of the configured experiment (``ftgate`` when none is configured and ``create``)."""
        name = self.experiment or (DEFAULT_EXPERIMENT if create else None)
        if name is None:
            return None
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        if not create:
            raise RunUnavailable(name, f"experiment {name!r} does not exist in {self.tracking_uri}")
        kwargs = {"artifact_location": self.artifact_root} if self.artifact_root else {}
        return self.client.create_experiment(name, **kwargs)

    def resolve(self, ref: str) -> tuple[str, str]:
        """A run id or a run name -> (run_id, run_name). Raises RunUnavailable with the reason and the fix."""
        from mlflow.exceptions import MlflowException

        try:
            if RUN_ID.match(ref):
                try:
                    run = self.client.get_run(ref)
                    return run.info.run_id, run.info.run_name or ref[:8]
                except MlflowException as exc:
                    if "RESOURCE_DOES_NOT_EXIST" not in str(exc.error_code) and "not found" not in str(exc).lower():
                        raise
            return self._resolve_name(ref)
        except RunUnavailable:
            raise
        except MlflowException as exc:
            if _unreachable(exc):
                raise RunUnavailable(ref, f"the tracking store {self.tracking_uri} does not answer (connection "
                                          "refused or timed out): start the server or fix --ftgate-tracking-uri"
                                     ) from None
            raise RunUnavailable(ref, f"the tracking store {self.tracking_uri} failed: {_first_line(exc)}") from None
        except Exception as exc:  # connection refused, DNS, sqlite path, ...
            raise RunUnavailable(ref, f"the tracking store {self.tracking_uri} does not answer: "
                                      f"{type(exc).__name__}: {_first_line(exc)}") from None

    def _resolve_name(self, name: str) -> tuple[str, str]:
        exp_ids = [self.experiment_id()] if self.experiment else [
            e.experiment_id for e in self.client.search_experiments()]
        quoted = name.replace("'", "\\'")
        runs = self.client.search_runs(exp_ids, filter_string=f"attributes.run_name = '{quoted}'", max_results=50)
        where = f"experiment {self.experiment!r}" if self.experiment else "any experiment"
        if not runs:
            raise RunUnavailable(name, f"no run with this id or name in {where} of {self.tracking_uri}; "
                                       "check --run-id, --ftgate-experiment and --ftgate-tracking-uri")
        if len(runs) > 1:
            listed = ", ".join(f"{r.info.run_id} (started {_iso(r.info.start_time)})" for r in runs[:10])
            raise RunUnavailable(name, f"the name is ambiguous: {len(runs)} runs are named so in {where}: "
                                       f"{listed}; pass one of these run ids instead")
        return runs[0].info.run_id, name

    # -- reading ---------------------------------------------------------------------------------
    def load(self, run_id: str) -> RunRecord:
        """Read a finished run with the full history of every metric key."""
        try:
            run = self.client.get_run(run_id)
        except Exception as exc:
            raise RunUnavailable(run_id, f"cannot be read from {self.tracking_uri}: {_first_line(exc)}") from None
        info = run.info
        if info.status == "RUNNING" or info.status == "SCHEDULED":
            raise RunUnavailable(run_id, f"is still {info.status}: gate it once training has finished")
        if info.status in ("FAILED", "KILLED"):
            why = run.data.tags.get("ftgate.error") or run.data.tags.get("mlflow.note.content") or "no reason recorded"
            raise RunUnavailable(run_id, f"ended {info.status} ({_first_line(why)}): a failed training is not a "
                                         "release candidate")
        history = {key: self.metric_history(run_id, key) for key in run.data.metrics}
        return RunRecord(
            run_id=info.run_id, run_name=info.run_name or info.run_id[:8], experiment_id=info.experiment_id,
            status=info.status, start_time=info.start_time, end_time=info.end_time,
            params=dict(run.data.params), tags=dict(run.data.tags), history=history,
            artifact_uri=info.artifact_uri,
        )

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        points = self.client.get_metric_history(run_id, key)
        return [(int(m.step), _restore_inf(float(m.value))) for m in sorted(points, key=lambda m: (m.step, m.timestamp))]

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        """Every artifact file path under ``path`` (recursively)."""
        out = []
        for item in self.client.list_artifacts(run_id, path):
            out += self.list_artifacts(run_id, item.path) if item.is_dir else [item.path]
        return out

    def download(self, run_id: str, artifact_path: str, dst: str | Path) -> Path:
        """Download an artifact file or folder into ``dst``; returns the local path."""
        Path(dst).mkdir(parents=True, exist_ok=True)
        local = self.client.download_artifacts(run_id, artifact_path, str(dst))
        return Path(local)

    # -- writing ---------------------------------------------------------------------------------
    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value)[:5000])

    def log_artifact(self, run_id: str, local_path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(local_path), artifact_path)


def _unreachable(exc: Exception) -> bool:
    text = str(exc)
    return any(m in text for m in ("Max retries exceeded", "Connection refused", "NewConnectionError",
                                   "Read timed out", "ConnectTimeout"))


def _restore_inf(value: float) -> float:
    """MLflow's SQL stores keep +/-Inf as the largest finite float (sanitize_metric_value): undo that."""
    if abs(value) == sys.float_info.max:
        return math.copysign(math.inf, value)
    return value


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _iso(ms: int | None) -> str:
    if not ms:
        return "?"
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")
