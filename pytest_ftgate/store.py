"""MLflow access behind a small interface: resolve run references, read params, tags, metric histories and
artifacts, write tags and artifacts. mlflow is imported lazily (``pytest --help`` must not import it).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RunUnavailable, StoreError, did_you_mean

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
SQLITE_MAGIC = b"SQLite format 3\x00"
EMBEDDED_DIR = ".ftgate"
DEFAULT_EXPERIMENT = "ftgate"


def embedded_tracking_uri(root: str | Path) -> str:
    """The embedded store: sqlite under ``<root>/.ftgate`` (MLflow 3's file store is in maintenance mode)."""
    return f"sqlite:///{(Path(root) / EMBEDDED_DIR / 'mlflow.db').resolve()}"


def embedded_artifact_root(root: str | Path) -> str:
    return str((Path(root) / EMBEDDED_DIR / "artifacts").resolve())


def resolve_store(tracking_uri: str = "", root: str | Path = ".") -> tuple[str, str | None, bool]:
    """(tracking URI, artifact root for new experiments, embedded) of every entry point: ``tracking_uri`` when
    given, else ``$MLFLOW_TRACKING_URI``, else the embedded store of ``root`` (``<root>/.ftgate/mlflow.db``, its
    artifacts in ``<root>/.ftgate/artifacts``). An ``sqlite:///`` store keeps its artifacts beside the database
    (not in MLflow's ``./mlruns`` of whatever the working directory is); a server's artifact root is the server's."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        return embedded_tracking_uri(root), embedded_artifact_root(root), True
    if uri == embedded_tracking_uri(root):
        return uri, embedded_artifact_root(root), True
    path = store_path(uri) if uri.startswith("sqlite:") else None
    return uri, str(path.parent / "artifacts") if path is not None else None, False


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
    """One MLflow tracking store (a server URL, sqlite, or a directory).

    Gating only reads an existing store: a sqlite file or store directory that does not exist is a StoreError
    naming the path as resolved, never a new empty store. Training creates it: ``create=True``, or the first call
    of ``experiment_id(create=True)`` (what ``train.ensure_trained`` does before anything else).
    """

    def __init__(self, tracking_uri: str, experiment: str | None = None, artifact_root: str | None = None,
                 create: bool = False):
        quiet_mlflow_env()
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifact_root = artifact_root  # used when this store creates the experiment
        self.create = create  # whether a missing store may be created (training), else StoreError
        self._client = None
        self._resolved: dict[str, Any] = {}  # run id -> the run ``resolve`` read, for ``load`` to use once
        self._infos: dict[str, Any] = {}  # run id -> its RunInfo as last read (where its artifacts are)
        self._artifact_repos: dict[str, Any] = {}  # run id -> its artifact repository
        self._logged_models: dict[tuple[str, str], dict[str, str]] = {}  # (experiment, name) -> {run id: model id}

    @property
    def client(self) -> Any:
        if self._client is None:
            self.check()
            with _gc_paused("client"):
                from mlflow.tracking import MlflowClient

                self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # -- the store itself --------------------------------------------------------------------------
    def local_path(self) -> Path | None:
        """The sqlite file or store directory this URI names, resolved against the working directory (None for a
        server or an in-memory database)."""
        return store_path(self.tracking_uri)

    def check(self) -> None:
        """StoreError when the store's file is missing (unless this store may create it), or is not an MLflow
        sqlite database; nothing to check for a server (it answers or not on the first request)."""
        path = self.local_path()
        if path is None:
            return
        given = f"from --ftgate-tracking-uri / MLFLOW_TRACKING_URI {self.tracking_uri}"
        if not self.tracking_uri.startswith("sqlite:"):
            if not path.exists() and not self.create:
                raise StoreError(f"the MLflow store directory {path} does not exist ({given}); gating reads an "
                                 "existing store: fix the path, or train into it first (--ftgate-train)")
            if path.exists() and not path.is_dir():
                raise StoreError(f"the MLflow store {path} is not a directory ({given}); pass the store's directory "
                                 "or a sqlite:/// URI")
            return
        if not path.exists():
            if self.create:
                return
            raise StoreError(f"the MLflow store {path} does not exist ({given}); gating reads an existing store and "
                             "never creates an empty one: fix the path (sqlite:///relative/path or "
                             "sqlite:////absolute/path), or train into it first (--ftgate-train / ftgate train)")
        _check_sqlite_store(path, given, may_be_empty=self.create)

    def check_writable(self) -> None:
        """StoreError (one line) when verdict tags and artifacts cannot be written to this store: a read-only or
        immutable sqlite file or directory, a read-only store directory, a server that refuses writes. Called
        before gating starts, so a verdict is never silently left out of MLflow."""
        self.check()
        path = self.local_path()
        fix = ("make it writable (chattr -i, chmod u+w on the file and its directory), or pass a writable "
               "--ftgate-tracking-uri")
        if path is not None and self.tracking_uri.startswith("sqlite:"):
            reason = _sqlite_write_probe(path)
            if reason:
                raise StoreError(f"the MLflow store {path} cannot be written ({reason}): the verdict could not be "
                                 f"recorded there; {fix}")
            return
        if path is not None:
            probe = path / ".ftgate-write-probe"
            try:
                probe.write_text("ok")
                probe.unlink()
            except OSError as exc:
                raise StoreError(f"the MLflow store directory {path} cannot be written ({exc.strerror or exc}); "
                                 f"{fix}") from None
            return
        try:
            exp_id = self.experiment_id() or next(
                (e.experiment_id for e in self.client.search_experiments(max_results=1)), None)
            if exp_id is None:
                return  # an empty server: nothing to gate, resolution says so
            self.client.set_experiment_tag(exp_id, "ftgate.write_probe", "1")
            self.client.delete_experiment_tag(exp_id, "ftgate.write_probe")
        except RunUnavailable as exc:
            raise StoreError(exc.reason) from None
        except Exception as exc:
            if _unreachable(exc):
                raise StoreError(f"the tracking store {self.tracking_uri} does not answer (connection refused or "
                                 "timed out): start the server or fix --ftgate-tracking-uri") from None
            raise StoreError(f"the MLflow tracking server {self.tracking_uri} does not accept writes "
                             f"({type(exc).__name__}: {_first_line(exc)}): the verdict could not be recorded there; "
                             "check the server's permissions and credentials, or pass another "
                             "--ftgate-tracking-uri") from None

    # -- resolving -------------------------------------------------------------------------------
    def experiment_id(self, create: bool = False) -> str | None:
        """The id of the configured experiment (``ftgate`` when none is configured and ``create``). ``create``
        (training) also lets this store create a missing sqlite file; else a missing or deleted experiment is
        RunUnavailable listing the experiments there."""
        if create:
            self.create = True
        name = self.experiment or (DEFAULT_EXPERIMENT if create else None)
        if name is None:
            return None
        exp = self.client.get_experiment_by_name(name)
        if exp is not None and exp.lifecycle_stage != "deleted":
            return exp.experiment_id
        if not create:
            if exp is not None:
                raise RunUnavailable(name, f"experiment {name!r} is deleted in {self.tracking_uri}: restore it "
                                           f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or fix "
                                           "--ftgate-experiment")
            names = [e.name for e in self.client.search_experiments(max_results=200)]
            hint = did_you_mean(name, names).removeprefix("; ") + " " if did_you_mean(name, names) else ""
            raise RunUnavailable(name, f"experiment {name!r} (--ftgate-experiment) does not exist in "
                                       f"{self.tracking_uri}; {hint}experiments there: {', '.join(names) or 'none'}; "
                                       "fix --ftgate-experiment, or leave it out to look in every experiment")
        if exp is not None:
            raise RunUnavailable(name, f"experiment {name!r} is deleted in {self.tracking_uri}: restore it or train "
                                       "into another --ftgate-experiment")
        kwargs = {"artifact_location": self.artifact_root} if self.artifact_root else {}
        return self.client.create_experiment(name, **kwargs)

    def resolve(self, ref: str) -> tuple[str, str]:
        """A run id or a run name -> (run_id, run_name). Raises RunUnavailable with the reason and the fix; with
        an experiment configured, the experiment must exist and hold the run."""
        with _gc_paused("import"):  # the session's first import of MLflow
            from mlflow.exceptions import MlflowException

        try:
            try:
                exp_id = self.experiment_id() if self.experiment else None
            except RunUnavailable as exc:  # name the run too, not only the experiment
                raise RunUnavailable(ref, exc.reason) from None
            if RUN_ID.match(ref):
                try:
                    run = self.client.get_run(ref)
                except MlflowException as exc:
                    if "RESOURCE_DOES_NOT_EXIST" not in str(exc.error_code) and "not found" not in str(exc).lower():
                        raise
                else:
                    self._check_membership(ref, run, exp_id)
                    self._resolved[run.info.run_id] = run
                    self._infos[run.info.run_id] = run.info
                    return run.info.run_id, run.info.run_name or ref[:8]
            return self._resolve_name(ref)
        except RunUnavailable:
            raise
        except StoreError as exc:
            raise RunUnavailable(ref, str(exc)) from None
        except MlflowException as exc:
            if _unreachable(exc):
                raise RunUnavailable(ref, f"the tracking store {self.tracking_uri} does not answer (connection "
                                          "refused or timed out): start the server or fix --ftgate-tracking-uri"
                                     ) from None
            raise RunUnavailable(ref, f"the tracking store {self.tracking_uri} failed: {_first_line(exc)}") from None
        except Exception as exc:  # connection refused, DNS, ...
            verb = "does not answer" if self.local_path() is None else "failed"
            raise RunUnavailable(ref, f"the tracking store {self.tracking_uri} {verb}: "
                                      f"{type(exc).__name__}: {_first_line(exc)}") from None

    def _check_membership(self, ref: str, run: Any, exp_id: str | None) -> None:
        if run.info.lifecycle_stage == "deleted":
            raise RunUnavailable(ref, f"the run is deleted in {self.tracking_uri}: restore it (mlflow runs restore "
                                      f"--run-id {ref}) or gate another run")
        if exp_id is not None and run.info.experiment_id != exp_id:
            actual = self.client.get_experiment(run.info.experiment_id).name
            raise RunUnavailable(ref, f"the run is in experiment {actual!r}, not in {self.experiment!r} "
                                      f"(--ftgate-experiment); pass --ftgate-experiment {actual}, or leave it out")

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
        """Read a finished run with the full history of every metric key (the run as ``resolve`` read it moments
        ago, when it did: read once per session, not once to find it and again to gate it)."""
        try:
            run = self._resolved.pop(run_id, None) or self.client.get_run(run_id)
        except Exception as exc:
            raise RunUnavailable(run_id, f"cannot be read from {self.tracking_uri}: {_first_line(exc)}") from None
        info = self._infos[run_id] = run.info
        if getattr(info, "lifecycle_stage", "active") == "deleted":
            raise RunUnavailable(run_id, f"is deleted in {self.tracking_uri}: a deleted run is never gated; restore "
                                         f"it first (`mlflow runs restore --run-id {run_id}`) or gate another run")
        if info.status == "RUNNING" or info.status == "SCHEDULED":
            raise RunUnavailable(run_id, f"is still {info.status}: gate it once training has finished (a "
                                         "training process that died leaves its run RUNNING: mark it FAILED with "
                                         f"MlflowClient().set_terminated({run_id!r}, 'FAILED') and train again)")
        if info.status in ("FAILED", "KILLED"):
            why = run.data.tags.get("ftgate.error") or run.data.tags.get("mlflow.note.content") or "no reason recorded"
            raise RunUnavailable(run_id, f"ended {info.status} ({_first_line(why)}): a failed training is not a "
                                         "release candidate")
        with _gc_paused():  # thousands of short-lived ORM rows per key; see _gc_paused
            history = {key: self.metric_history(run_id, key) for key in run.data.metrics}
        return RunRecord(
            run_id=info.run_id, run_name=info.run_name or info.run_id[:8], experiment_id=info.experiment_id,
            status=info.status, start_time=info.start_time, end_time=info.end_time,
            params=dict(run.data.params), tags=dict(run.data.tags), history=history,
            artifact_uri=info.artifact_uri,
        )

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) in step order, then logging order. MLflow's SQL stores keep +/-Inf as the largest finite
        float (sanitize_metric_value): undone here. Sorted as plain tuples (the position breaks ties as a stable
        sort would), not through a key function reading two properties of each point: once per logged point."""
        points = self.client.get_metric_history(run_id, key)
        rows = sorted([(m.step, m.timestamp, i, m.value) for i, m in enumerate(points)])
        return [(int(step), v if (v := float(x)) != _FLOAT_MAX and v != -_FLOAT_MAX else math.copysign(math.inf, v))
                for step, _, _, x in rows]

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        """Every artifact file path under ``path`` (recursively), as MLflow's ``runs:/<run id>/<path>`` lists them:
        the run's own artifacts and, under a top-level name, those of the logged model of that name the run
        produced (MLflow 3's ``log_model``). Through the run's artifact repository, found once per run (MLflow's
        client caches it too), not through a ``runs:/`` URI, which reads the run twice per directory listed."""
        repo = self._artifact_repo(run_id)
        head, _, rest = (path or "").strip("/").partition("/")
        if not head:  # the root: each top-level folder as runs:/<run id>/<folder> lists it
            out = []
            for item in repo.list_artifacts(None):
                out += self.list_artifacts(run_id, item.path) if item.is_dir else [item.path]
            return out
        out = _walk(repo, path)
        model_id = self._logged_model(run_id, self._info(run_id).experiment_id, head)
        if model_id is not None:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            model_repo = get_artifact_repository(f"models:/{model_id}", tracking_uri=self.tracking_uri)
            out += [f"{head}/{p}" for p in _walk(model_repo, rest or None)]
        return out

    def _info(self, run_id: str) -> Any:
        """The run's RunInfo as this store last read it (read now when it has not)."""
        if run_id not in self._infos:
            self._infos[run_id] = self.client.get_run(run_id).info
        return self._infos[run_id]

    def _artifact_repo(self, run_id: str) -> Any:
        """The repository of the run's own artifacts (where its ``artifact_uri`` points), one per run."""
        if run_id not in self._artifact_repos:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
            from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri

            uri = add_databricks_profile_info_to_artifact_uri(self._info(run_id).artifact_uri, self.tracking_uri)
            self._artifact_repos[run_id] = get_artifact_repository(uri, tracking_uri=self.tracking_uri)
        return self._artifact_repos[run_id]

    def _logged_model(self, run_id: str, experiment_id: str, name: str) -> str | None:
        """The id of the first logged model named ``name`` that ``run_id`` produced (the one MLflow's ``runs:/``
        URIs resolve ``<name>/...`` to), or None. The experiment's models of that name are searched once per
        store, not once per run: a session's runs share one or two experiments."""
        key = (experiment_id, name)
        if key not in self._logged_models:
            first: dict[str, str] = {}
            token = None
            while True:
                page = self.client.search_logged_models(experiment_ids=[experiment_id],
                                                        filter_string=f"name = '{name}'", page_token=token)
                for model in page:
                    first.setdefault(model.source_run_id, model.model_id)
                token = page.token
                if not token:
                    break
            self._logged_models[key] = first
        return self._logged_models[key].get(run_id)

    def download(self, run_id: str, artifact_path: str, dst: str | Path) -> Path:
        """Download an artifact file or folder into ``dst``; returns the local path."""
        Path(dst).mkdir(parents=True, exist_ok=True)
        local = self.client.download_artifacts(run_id, artifact_path, str(dst))
        return Path(local)

    # -- writing ---------------------------------------------------------------------------------
    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """All tags in one request per 100 (MLflow's batch limit), not one request per tag."""
        from mlflow.entities import RunTag

        self._resolved.pop(run_id, None)  # a later load reads the run with these tags
        items = [RunTag(key, str(value)[:5000]) for key, value in tags.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, tags=items[start:start + 100])

    def delete_tags(self, run_id: str, keys: list[str]) -> None:
        self._resolved.pop(run_id, None)
        for key in keys:
            self.client.delete_tag(run_id, key)

    def log_artifact(self, run_id: str, local_path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(local_path), artifact_path)


def store_path(tracking_uri: str) -> Path | None:
    """The local file (sqlite) or directory (file store) of a tracking URI, absolute; None for a server or
    ``sqlite://`` (in memory). ``sqlite:///a/b.db`` is relative to the working directory, ``sqlite:////a/b.db``
    absolute (SQLAlchemy's rule)."""
    from urllib.parse import unquote, urlparse

    uri = tracking_uri.strip()
    if uri.startswith("sqlite:"):
        rest = uri.removeprefix("sqlite:").split("?", 1)[0]
        if not rest.startswith("///"):
            return None
        db = rest[3:]
        if db in ("", ":memory:"):
            return None
        return Path(unquote(db)).expanduser().resolve()
    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path)).resolve()
    if "://" not in uri and not uri.startswith("databricks"):
        return Path(uri).expanduser().resolve()
    return None


_FROZEN: set[str] = set()  # the loading sites whose objects this process has already frozen


@contextlib.contextmanager
def _gc_paused(site: str | None = None):
    """The cyclic garbage collector paused while MLflow is imported (``site`` "import"), its store opened
    ("client") or a run's metric histories read (no site). Some 450,000 objects are made by the import, nearly
    none of them garbage, and the collections they would trigger (each walking every object made so far) cost a
    fifth of it (3.3-3.8 s against 2.6-2.9 s measured). A history makes thousands of short-lived ORM rows per key,
    freed by reference counting; the collections they triggered took 0.15 s of ten 1,000-step runs.

    The first time per process for a named site, every object alive at the end (MLflow's modules and store, which
    live until the process exits) is moved out of the collector's way (``gc.freeze``) *before* it runs again.
    Re-enabled without that, its first collection walks every one of them, as they are all still in the youngest
    generation (0.2 s measured at the session's first run), and each full collection after (those that loading
    metric histories triggers, the two pytest makes at exit) walks them again: 0.1 s each. Objects freed by
    reference counting are still freed; only a reference cycle among these would outlive its use."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if site is not None and site not in _FROZEN:
            _FROZEN.add(site)
            gc.freeze()
        if enabled:
            gc.enable()


def _walk(repo: Any, path: str | None) -> list[str]:
    """Every file path under ``path`` of an MLflow artifact repository, recursively."""
    out = []
    for item in repo.list_artifacts(path):
        out += _walk(repo, item.path) if item.is_dir else [item.path]
    return out


def _check_sqlite_store(path: Path, given: str, may_be_empty: bool) -> None:
    """StoreError unless ``path`` is an SQLite database holding MLflow's tables (an empty file only when the
    store may be created)."""
    import sqlite3

    fix = "restore it from a backup, or point --ftgate-tracking-uri at the MLflow store's mlflow.db"
    if path.is_dir():
        raise StoreError(f"the MLflow store {path} is a directory, not an SQLite file ({given}); name the "
                         "mlflow.db file in the sqlite:/// URI")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"the MLflow store {path} cannot be read ({exc.strerror or exc}); fix its permissions "
                         f"or pass another --ftgate-tracking-uri") from None
    if not head:
        if may_be_empty:
            return
        raise StoreError(f"the MLflow store {path} is an empty file (0 bytes), not an MLflow store ({given}); "
                         f"{fix}, or delete it and train into it (--ftgate-train)")
    if head != SQLITE_MAGIC:
        raise StoreError(f"{path} is not an SQLite database (it does not start with 'SQLite format 3'; damaged, "
                         f"or another kind of file) ({given}); {fix}")
    try:
        con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is a damaged SQLite database ({exc}) ({given}); {fix}") from None
    if tables and "experiments" not in tables:
        raise StoreError(f"{path} is an SQLite database but not an MLflow store (no experiments table) ({given}); "
                         "point --ftgate-tracking-uri at the MLflow store's mlflow.db")


def _sqlite_write_probe(path: Path) -> str:
    """Why the sqlite file cannot be written ("" when it can): a real write in a transaction, rolled back."""
    import sqlite3

    try:
        con = sqlite3.connect(str(path), timeout=5, isolation_level=None)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("CREATE TABLE ftgate_write_probe (x INTEGER)")
        con.execute("ROLLBACK")
    except sqlite3.Error as exc:
        text = str(exc)
        if "locked" in text:
            return f"{text}: another process holds a write lock; wait for it or stop it"
        return text + ("" if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK) else
                       "; the file or its directory is not writable")
    finally:
        con.close()
    return ""


def _unreachable(exc: Exception) -> bool:
    text = str(exc)
    return any(m in text for m in ("Max retries exceeded", "Connection refused", "NewConnectionError",
                                   "Read timed out", "ConnectTimeout"))


_FLOAT_MAX = sys.float_info.max


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _iso(ms: int | None) -> str:
    if not ms:
        return "?"
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")
