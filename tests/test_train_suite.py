"""`pytest suites` trains under the gate: no --run-id gates the bundled demo (re-using an identical run), a
broken config trains and is blocked, and a training that crashes is reported by the gating run. Nothing is
pre-built in these roots: the demo base model is made on demand (copied from the user cache once built)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_ftgate.store import RunStore

from .conftest import REPO, copy_demo_tree

SUITE = (REPO / "suites" / "test_training.py").read_text()


@pytest.fixture
def root(pytester, monkeypatch) -> Path:
    """pytester's directory with the demo config, data and ftgate.yaml, and the training gates as its suite."""
    import mlflow.tracking  # noqa: F401 - before the inline run: pytester drops the modules a run imported

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    copy_demo_tree(pytester.path)
    pytester.makepyfile(test_training=SUITE)
    return pytester.path


def verdict(root: Path) -> dict:
    (path,) = [p for p in (root / "ftgate-results" / "verdicts").glob("*.json") if ".intoto." not in p.name]
    return json.loads(path.read_text())


@pytest.mark.slow
def test_no_run_id_gates_the_bundled_demo_and_reuses_its_identical_finished_run(pytester, root, demo_run):
    shutil.copytree(demo_run.root / ".ftgate", root / ".ftgate", ignore=shutil.ignore_patterns("cache", "train"))
    store = demo_run.store()
    before = {r.info.run_id for r in store.client.search_runs([store.experiment_id(create=True)])}  # + a retrain
    result = pytester.runpytest("-p", "no:cacheprovider", "test_training.py")
    result.assert_outcomes(passed=4)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["ftgate: no --run-id given: training and gating the bundled demo run*",
                                 "ftgate: re-using run *: same config, data and base model hashes*"])
    v = verdict(root)
    assert v["run_id"] in before and v["verdict"] == "pass"
    copied = RunStore(f"sqlite:///{root / '.ftgate' / 'mlflow.db'}")
    assert {r.info.run_id for r in copied.client.search_runs([copied.experiment_id(create=True)])} == before
    assert {g["id"]: g["outcome"] for g in v["gates"]} == {"G1": "passed", "G2": "passed", "G3": "passed",
                                                           "resources": "passed"}


@pytest.mark.slow
def test_an_enormous_learning_rate_trains_and_is_blocked_by_g1(pytester, root):
    shutil.copy(REPO / "training" / "broken_lr.yaml", root / "training")
    result = pytester.runpytest("-p", "no:cacheprovider", "test_training.py", "--ftgate-train",
                                "training/broken_lr.yaml")
    assert result.ret == 1
    v = verdict(root)
    outcomes = {g["id"]: g["outcome"] for g in v["gates"]}
    assert v["verdict"] == "block" and outcomes["G1"] == "failed"
    (g1,) = [g for g in v["gates"] if g["id"] == "G1"]
    assert "grad_norm is NaN" in g1["message"] or "eval_loss is NaN" in g1["message"]


@pytest.mark.slow
def test_a_training_that_crashes_is_reported_by_the_gating_run_and_marked_failed_in_mlflow(pytester, root):
    from mlflow.tracking import MlflowClient

    crash = (root / "training" / "demo.yaml").read_text().replace("lora_target: all", "lora_target: no_such_module")
    (root / "training" / "crash.yaml").write_text(crash)
    result = pytester.runpytest("-p", "no:cacheprovider", "test_training.py", "--ftgate-train", "training/crash.yaml")
    assert result.ret == 1
    result.assert_outcomes(errors=4)
    v = verdict(root)
    assert v["verdict"] == "block"  # every gate errored: the run could not be gated
    assert "crash.yaml" in v["error"] and "no_such_module" in v["error"]
    assert "is marked FAILED" in v["error"] and "last lines of the training log" in v["error"]
    client = MlflowClient(f"sqlite:///{root / '.ftgate' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ftgate").experiment_id])
    assert run.info.status == "FAILED" and "no_such_module" in run.data.tags["ftgate.error"]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "logs")] == ["logs/train_log_tail.txt"]
