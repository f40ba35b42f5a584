"""End to end on the tiny model: the audit and data suites gate copies of the demo run trained by LLaMA-Factory
(``demo_run``: its metric history, adapter and audit record, its data copied so that it can be edited) in a store of
their own: an exact copy, and copies with the adapter tampered with, a dataset row edited after training, PII and
test prompts planted in the training data, and a loss history that re-training does not reproduce. One pytest
session re-trains once (the copies that share the recorded inputs share the replay)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_ftgate.record import digest_files
from pytest_ftgate.record import AUDIT_ARTIFACT
from pytest_ftgate.train import lineage_params

from . import audit_records as A
from .mlflow_runs import make_run

pytestmark = pytest.mark.slow
SUITES = Path(__file__).parents[1] / "suites"
STEPS = 20  # audit.reproducibility_steps: two logging steps of the demo


def copy_run(demo_run, uri, work, name, *, edit=None, history=None):
    """A copy of the demo run in another store, its data copied to ``work/name`` (the record points there);
    ``edit(train_path, test_path)`` changes the copied data after "training"."""
    store = demo_run.store()
    src = store.load(demo_run.run_id)
    rec = json.loads(Path(store.download(demo_run.run_id, AUDIT_ARTIFACT, work / "dl" / name)).read_text())
    data = work / name / "data"
    data.mkdir(parents=True)
    inputs = rec["input_artifacts"]
    for entry in [*inputs["datasets"], inputs["dataset_info"]]:
        entry["path"] = str(shutil.copy(entry["path"], data / Path(entry["path"]).name))
    split = {d["split"]: Path(d["path"]) for d in inputs["datasets"]}
    if edit:
        edit(split["train"], split["test"])
    params = {**lineage_params(inputs), "ftgate.adapter_sha256": digest_files(rec["output_artifacts"]["adapter"]
                                                                             ["files"])}
    run_id = make_run(uri, name, history or src.history, params=params, tags={"ftgate.trained_by": "pytest-ftgate"})
    rec["run_id"] = run_id
    (work / name / "audit_record.json").write_text(json.dumps(rec))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    client.log_artifacts(run_id, str(demo_run.adapter_dir), "adapter")
    client.log_artifact(run_id, str(work / name / "audit_record.json"), "audit")
    return run_id


def edit_row(train, _test):
    rows = json.loads(train.read_text())
    rows[9]["output"] += " (edited)"
    train.write_text(json.dumps(rows, ensure_ascii=False, indent=1))


def plant(train, test):
    rows, held = json.loads(train.read_text()), json.loads(test.read_text())
    rows[2]["input"] += " mail jan.kowalski@example.com"
    rows[6]["input"] += " PESEL 44051401359"
    train.write_text(json.dumps(rows + held[:4], ensure_ascii=False, indent=1))


@pytest.fixture(scope="module")
def gated(demo_run, tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{work / 'copies.db'}"
    src = demo_run.store().load(demo_run.run_id)
    slower = {k: [(s, v * 1.1) for s, v in pts] if k == "loss" else pts for k, pts in src.history.items()}
    copies = {"demo": copy_run(demo_run, uri, work, "demo"),
              "tampered-adapter": copy_run(demo_run, uri, work, "tampered-adapter"),
              "edited-row": copy_run(demo_run, uri, work, "edited-row", edit=edit_row),
              "planted": copy_run(demo_run, uri, work, "planted", edit=plant),
              "other-history": copy_run(demo_run, uri, work, "other-history", history=slower)}
    A.flip_stored_byte(uri, copies["tampered-adapter"], "adapter/adapter_model.safetensors")
    session = work / "session"
    session.mkdir()
    for suite in ("test_audit.py", "test_data.py"):
        shutil.copy(SUITES / suite, session / suite)
    (session / "ftgate.yaml").write_text(f"audit:\n  reproducibility_steps: {STEPS}\n")
    args = [a for run_id in copies.values() for a in ("--run-id", run_id)]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--ftgate-tracking-uri",
                           uri, *args, str(session)], cwd=session, capture_output=True, text=True, timeout=900)
    out = {}
    for name, run_id in copies.items():
        out[name] = json.loads((session / "ftgate-results" / "verdicts" / f"{run_id}.json").read_text())
        out[name]["_stdout"] = proc.stdout[-4000:]
    return out


def outcomes(v):
    return {g["id"]: g["outcome"] for g in v["gates"]}


def message(v, gate_id):
    return next(g["message"] for g in v["gates"] if g["id"] == gate_id)


def test_the_demo_run_passes_every_audit_and_data_gate_and_reproduces_its_loss_bitwise(gated):
    v = gated["demo"]
    assert set(outcomes(v).values()) == {"passed"}, (outcomes(v), v["_stdout"])
    assert len(outcomes(v)) == 8
    assert f"up to step {STEPS} reproduced: bitwise identical" in message(v, "reproducibility")


def test_a_flipped_byte_in_the_copied_adapter_blocks_on_integrity(gated):
    v = gated["tampered-adapter"]
    assert v["verdict"] == "block" and outcomes(v)["integrity"] == "failed"
    assert "adapter_model.safetensors differs from the one trained" in message(v, "integrity")


def test_a_row_edited_after_training_blocks_integrity_and_cannot_be_reproduced(gated):
    v = gated["edited-row"]
    assert outcomes(v)["integrity"] == "failed" and "has changed since training" in message(v, "integrity")
    assert outcomes(v)["reproducibility"] == "failed"
    assert "the recorded inputs changed since training" in message(v, "reproducibility")


def test_planted_pii_warns_by_row_and_planted_test_prompts_block_on_leakage(gated):
    v = gated["planted"]
    assert outcomes(v)["pii"] == "failed" and "email ×1 (row 3)" in message(v, "pii")
    assert "pesel ×1 (row 7)" in message(v, "pii")
    assert "jan.kowalski" not in json.dumps(v) and "44051401359" not in json.dumps(v)
    assert outcomes(v)["leakage"] == "failed" and "4 of " in message(v, "leakage")
    assert v["verdict"] == "block"


def test_a_loss_history_that_retraining_does_not_reproduce_fails_the_gate(gated):
    v = gated["other-history"]
    assert outcomes(v)["reproducibility"] == "failed"
    assert "did not reproduce the loss" in message(v, "reproducibility")
    assert {k for k, o in outcomes(v).items() if o != "passed"} == {"reproducibility"}
