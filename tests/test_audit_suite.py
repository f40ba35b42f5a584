"""pytester: `pytest suites/test_audit.py suites/test_data.py` against real MLflow runs (sqlite) carrying hand-made
audit records, one run per defect: a tampered adapter, a dataset edited after training, planted PII, planted
leakage, a dataset that is gone, a corrupt record, and a plain LLaMA-Factory run without our wrapper."""

import json
from pathlib import Path

import pytest

from . import audit_records as A

pytestmark = pytest.mark.slow  # every test here shares a gated session (module fixture)

SUITES = Path(__file__).parents[1] / "suites"
PII = {"email": "anna.nowak@example.org", "card": "5555 5555 5555 4444", "pesel": "44051401359"}
GATES = {"G6", "integrity", "adapter_format", "schema", "pii", "leakage", "duplicates", "reproducibility"}


def with_pii():
    train = A.rows(0, 40)
    for row, value in zip((5, 11, 23), PII.values()):
        train[row - 1]["input"] += f" (contact {value})"
    return train


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    ids = {}
    for name, train, test in (("good", None, None), ("tampered-adapter", None, None), ("edited-dataset", None, None),
                              ("planted-pii", with_pii(), None), ("leakage", A.rows(0, 40) + A.rows(200, 3), None),
                              ("missing-dataset", None, None), ("corrupt-record", None, None)):
        paths = A.write_files(root / name, train, test)
        text = '{"schema_version": 1, "input_artifacts": {"base_mo' if name == "corrupt-record" else None
        ids[name] = A.log_run(uri, name, paths, record_text=text)
    ids["plain-llamafactory"] = A.log_run(uri, "plain-llamafactory", None)
    A.flip_stored_byte(uri, ids["tampered-adapter"], "adapter/adapter_model.safetensors")
    train = root / "edited-dataset" / "data" / "demo_train.json"
    train.write_text(train.read_text().replace("river stone w7", "stone river w7"))
    (root / "missing-dataset" / "data" / "demo_test.json").unlink()
    return uri, ids


@pytest.fixture(scope="module")
def gated(store, tmp_path_factory):
    """One pytest session gating every run; the verdicts by run name."""
    import subprocess
    import sys

    uri, ids = store
    work = tmp_path_factory.mktemp("session")
    for suite in ("test_audit.py", "test_data.py"):
        (work / suite).write_text((SUITES / suite).read_text())
    args = [a for run_id in ids.values() for a in ("--run-id", run_id)]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
                           "--ftgate-tracking-uri", uri, *args, str(work)], cwd=work, capture_output=True, text=True,
                          timeout=600)
    verdicts = {name: json.loads((work / "ftgate-results" / "verdicts" / f"{run_id}.json").read_text())
                for name, run_id in ids.items()}
    return proc, verdicts


def outcomes(verdict):
    return {g["id"]: g["outcome"] for g in verdict["gates"]}


def gate(verdict, gate_id):
    (g,) = [g for g in verdict["gates"] if g["id"] == gate_id]
    return g


def test_a_good_audited_run_passes_every_audit_and_data_gate(gated):
    proc, v = gated
    assert proc.returncode == 1, proc.stdout[-3000:]  # the defective runs block the session
    assert v["good"]["verdict"] == "pass", outcomes(v["good"])
    assert set(outcomes(v["good"])) == GATES
    assert {k for k, o in outcomes(v["good"]).items() if o != "passed"} == {"reproducibility"}
    assert outcomes(v["good"])["reproducibility"] == "skipped"  # opt-in: audit.reproducibility_steps is 0


def test_a_flipped_byte_in_the_stored_adapter_blocks_on_integrity(gated):
    v = gated[1]["tampered-adapter"]
    assert v["verdict"] == "block" and outcomes(v)["integrity"] == "failed"
    assert "adapter_model.safetensors differs from the one trained" in gate(v, "integrity")["message"]
    assert {k for k, o in outcomes(v).items() if o in ("failed", "error")} == {"integrity"}


def test_a_dataset_row_edited_after_training_blocks_on_integrity(gated):
    v = gated[1]["edited-dataset"]
    assert v["verdict"] == "block" and outcomes(v)["integrity"] == "failed"
    assert "train dataset 'demo_train'" in gate(v, "integrity")["message"]
    assert "has changed since training" in gate(v, "integrity")["message"]


def test_planted_pii_warns_with_row_numbers_and_never_the_values(gated):
    v = gated[1]["planted-pii"]
    assert v["verdict"] == "warn" and outcomes(v)["pii"] == "failed"
    g = gate(v, "pii")
    assert g["severity"] == "warn" and g["value"] == {"email": 1, "card": 1, "pesel": 1}
    assert "email ×1 (row 5)" in g["message"] and "card ×1 (row 11)" in g["message"]
    assert "pesel ×1 (row 23)" in g["message"]
    text = json.dumps(v, ensure_ascii=False)
    for value in PII.values():
        assert value not in text and value.replace(" ", "") not in text


def test_test_prompts_planted_in_the_training_data_block_on_leakage(gated):
    v = gated[1]["leakage"]
    assert v["verdict"] == "block" and outcomes(v)["leakage"] == "failed"
    assert "3 of 8 test prompts (37.5%) appear in the training data (3 exactly" in gate(v, "leakage")["message"]


def test_a_dataset_that_is_gone_is_an_integrity_error_naming_the_path(gated):
    v = gated[1]["missing-dataset"]
    g = gate(v, "integrity")
    assert g["outcome"] == "error" and v["verdict"] == "block"
    assert "cannot verify: test dataset 'demo_test':" in g["message"]
    assert "demo_test.json does not exist, so the data cannot be verified" in g["message"]
    assert outcomes(v)["leakage"] == "failed" and "leakage cannot be ruled out" in gate(v, "leakage")["message"]


def test_a_corrupt_audit_record_fails_g6_naming_the_artifact_and_other_gates_say_why(gated):
    v = gated[1]["corrupt-record"]
    g6 = gate(v, "G6")
    assert g6["outcome"] == "failed" and "audit/audit_record.json of run" in g6["message"]
    assert "is not valid JSON" in g6["message"]
    assert outcomes(v)["integrity"] == "error" and "see gate G6" in gate(v, "integrity")["message"]
    assert outcomes(v)["adapter_format"] == "passed"  # the adapter itself is fine
    assert outcomes(v)["schema"] == "error" and "see gate G6" in gate(v, "schema")["message"]


def test_a_plain_llamafactory_run_fails_g6_and_is_told_what_to_add(gated):
    v = gated[1]["plain-llamafactory"]
    assert v["verdict"] == "block" and v["incomplete"] is False
    msg = gate(v, "G6")["message"]
    assert "the run has no audit record (artifact audit/audit_record.json)" in msg
    assert "input artifacts (base model, datasets, config, each with a sha256)" in msg
    assert "reproducibility (seeds, environment, hardware, determinism)" in msg
    assert "ftgate train <config.yaml>" in msg
    assert outcomes(v)["adapter_format"] == "failed" and "no adapter artifact" in gate(v, "adapter_format")["message"]
    assert {outcomes(v)[k] for k in ("integrity", "schema", "pii", "leakage", "duplicates")} == {"error"}
