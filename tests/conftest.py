"""Shared fixtures of the plugin's own tests: no hub, and the bundled demo trained once per test session.

``demo_run`` trains ``training/demo.yaml`` with LLaMA-Factory on CPU (a child process, ~30-60 s on 2 cores) into
a temporary sqlite MLflow store, the way ``pytest suites`` does; every end-to-end test re-uses that one run.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parent.parent


def _preload_light() -> None:
    """What an in-process pytester run of the plugin imports, imported once before the first one snapshots
    sys.modules (pytester restores sys.modules after each run, so a library first imported inside one run is
    imported again in the next, next to the objects of the first): matplotlib then fails `Legend needs either Axes
    or FigureBase` (two Axes classes), SQLAlchemy's compiled caches break, and the importlib_metadata backport
    (pulled in by mlflow) removes the stdlib PathFinder.find_distributions, so later runs find no entry points."""
    import importlib_metadata  # noqa: F401
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import mlflow  # noqa: F401
    import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401  (SQLAlchemy's compiled caches)
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  are not re-importable either


def _preload_models() -> None:
    """What the end-to-end tier's in-process runs import: re-importing torch crashes the interpreter, and a second
    import of `datasets` (which llamafactory pulls in) fails with pyarrow's "type extension ... already defined"."""
    import datasets  # noqa: F401  (pyarrow extension types register once per process)
    import lm_eval.tasks  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import llamafactory.data  # noqa: F401  (the quality gates encode prompts with LLaMA-Factory's templates)
    import llamafactory.hparams  # noqa: F401


def pytest_runtest_setup(item: pytest.Item) -> None:
    """The fast tier (``-m "not slow"``) imports no torch: the heavy libraries load only for tests that need them,
    before their fixtures (pytester's snapshot of sys.modules) are set up."""
    if "pytester" in getattr(item, "fixturenames", ()):
        _preload_light()
    if item.get_closest_marker("slow") is not None:
        _preload_light()
        _preload_models()


@dataclass(frozen=True)
class DemoRun:
    """The demo training run of this test session."""

    root: Path  # a copy of training/, fixtures/ and ftgate.yaml; its .ftgate/ holds the base model and the store
    config: Path  # root/training/demo.yaml
    tracking_uri: str  # sqlite:///root/.ftgate/mlflow.db (the embedded store of ``root``)
    artifact_root: str
    run_id: str
    adapter_dir: Path  # the run's adapter/ artifact, downloaded and verified
    base_model_dir: Path
    log_dir: Path

    def store(self, experiment: str | None = None):
        from pytest_ftgate.store import RunStore

        return RunStore(self.tracking_uri, experiment, self.artifact_root)


def copy_demo_tree(root: Path) -> Path:
    """``root`` with the repository's demo config, data, lm-eval tasks and ftgate.yaml (no model, no store)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "training", root / "training", dirs_exist_ok=True)
    shutil.copytree(REPO / "fixtures", root / "fixtures", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    if (REPO / "ftgate.yaml").is_file():
        shutil.copy(REPO / "ftgate.yaml", root / "ftgate.yaml")
    return root


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The bundled demo, trained once per session (CPU, LLaMA-Factory in a child) and downloaded."""
    from pytest_ftgate import artifacts, demo, train
    from pytest_ftgate.store import RunStore, embedded_artifact_root, embedded_tracking_uri

    root = copy_demo_tree(tmp_path_factory.mktemp("demo-root"))
    (root / ".ftgate").mkdir()
    uri, artifact_root = embedded_tracking_uri(root), embedded_artifact_root(root)
    store = RunStore(uri, None, artifact_root)
    log_dir = root / "logs"
    run_id = train.ensure_trained(root / "training" / "demo.yaml", store, retrain=False, log_dir=log_dir,
                                  echo=lambda m: None, cwd=root)  # the demo's paths are relative to its root
    adapter_dir = artifacts.fetch_verified(store, run_id, root / ".ftgate" / "cache" / "adapters")
    return DemoRun(root=root, config=root / "training" / "demo.yaml", tracking_uri=uri, artifact_root=artifact_root,
                   run_id=run_id, adapter_dir=adapter_dir, base_model_dir=demo.default_base_dir(root),
                   log_dir=log_dir)
