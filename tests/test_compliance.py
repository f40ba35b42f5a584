"""Unit tests of the audit verification (pure: real files in a temp dir, hand-made records, no MLflow):
G6 completeness, integrity, adapter format and the reproducibility comparison."""

import copy
import json
import pickle

import pytest

from pytest_ftgate import adopt, train
from pytest_ftgate.record import digest_files
from pytest_ftgate.gates.audit import LoadedRecord
from pytest_ftgate.errors import IntegrityError
from pytest_ftgate.train import lineage_params
from pytest_ftgate import record
from pytest_ftgate.gates import audit as audit_gates

from . import audit_records as A

RUN = "a" * 32


@pytest.fixture
def run(tmp_path):
    paths = A.write_files(tmp_path)
    return paths, A.record(paths, RUN)


def flip_byte(path, offset=-5):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


# -- G6 -------------------------------------------------------------------------------------------------
def test_a_complete_audit_record_passes_g6(run):
    check = audit_gates.completeness(LoadedRecord(run[1]), RUN)
    assert check.passed and check.value == "100%", check.message
    assert "3 dataset(s), 2 adapter file(s)" in check.message


@pytest.mark.parametrize("path, named", [
    (("input_artifacts", "base_model", "hash"), "input_artifacts.base_model.hash"),
    (("input_artifacts", "config"), "input_artifacts.config"),
    (("training_record", "progress", "epochs_completed"), "training_record.progress.epochs_completed"),
    (("training_record", "checkpoints"), "training_record.checkpoints"),
    (("reproducibility", "seeds", "seed"), "reproducibility.seeds.seed"),
    (("reproducibility", "environment", "torch_version"), "reproducibility.environment.torch_version"),
    (("output_artifacts",), "output_artifacts"),
])
def test_each_missing_audit_field_is_named(run, path, named):
    rec = copy.deepcopy(run[1])
    node = rec
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    check = audit_gates.completeness(LoadedRecord(rec), RUN)
    assert not check.passed and named in check.details["missing"], check.details
    assert named in check.message and "ftgate train" in check.message


def test_a_dataset_without_its_hash_and_a_malformed_hash_are_named(run):
    rec = copy.deepcopy(run[1])
    rec["input_artifacts"]["datasets"][1]["sha256"] = ""
    rec["output_artifacts"]["adapter"]["files"][0]["sha256"] = "md5:abc"
    missing = audit_gates.completeness(LoadedRecord(rec), RUN).details["missing"]
    assert "input_artifacts.datasets[1].sha256" in missing
    assert any(m.startswith("output_artifacts.adapter.files[0].sha256 (not 'sha256:") for m in missing)


def test_empty_checkpoints_are_allowed_but_empty_datasets_are_not(run):
    rec = copy.deepcopy(run[1])
    rec["training_record"]["checkpoints"] = []
    assert audit_gates.completeness(LoadedRecord(rec), RUN).passed
    rec["input_artifacts"]["datasets"] = []
    assert audit_gates.completeness(LoadedRecord(rec), RUN).details["missing"] == ["input_artifacts.datasets"]


def test_a_record_of_another_run_fails_g6(run):
    check = audit_gates.completeness(LoadedRecord(run[1]), "b" * 32)
    assert not check.passed and f"the record is of run {RUN}" in check.message


def test_a_corrupt_record_fails_g6_naming_the_artifact():
    loaded = record.parse_record(b'{"schema_version": 1, "input_art', "audit/audit_record.json of run X")
    check = audit_gates.completeness(loaded, "X")
    assert not check.passed and check.value == "no audit record"
    assert "the audit record audit/audit_record.json of run X is not valid JSON" in check.message
    with pytest.raises(IntegrityError, match="no usable audit record .*not valid JSON.*see gate G6"):
        record.require_record(loaded)
    assert "is a JSON list, not an object" in record.parse_record("[1]").problem


def test_a_plain_llamafactory_run_fails_g6_with_what_to_add():
    loaded = LoadedRecord(None, problem="the run has no audit record (artifact audit/audit_record.json)",
                          params={"seed": "42", "learning_rate": "0.001"})
    msg = audit_gates.completeness(loaded, RUN).message
    assert "not trained with pytest-ftgate's wrapper" in msg
    assert "training arguments (seed, learning_rate, ...)" in msg
    for section in audit_gates.SECTIONS.values():
        assert section in msg
    assert "ftgate train <config.yaml>" in msg and "--ftgate-train" in msg
    assert "ftgate adopt <run> --config <config.yaml>" in msg  # the way without retraining


def _adopted(record: dict) -> dict:
    """``record`` as ``ftgate adopt`` writes it: the training process's own fields empty and listed."""
    rec = copy.deepcopy(record)
    rec["reproducibility"] = adopt.unestablished_reproducibility({"seed": 42})
    rec["provenance"] = "adopted"
    rec["adopted"] = {"at": "2026-01-02T00:00:00Z", "by": "pytest-ftgate 0", "not_established": [
        "reproducibility.environment: the versions", "reproducibility.hardware: the device",
        "reproducibility.determinism: settings", "audit/pip_freeze.txt: packages"]}
    return rec


def test_an_adopted_run_fails_g6_naming_what_was_not_established_and_takes_the_adopted_policy(run):
    check = audit_gates.completeness(LoadedRecord(_adopted(run[1])), RUN)
    assert not check.passed and check.details["adopted"] is True
    assert check.value == "adopted, 8 field(s) not established"
    assert "reproducibility.environment.torch_version" in check.message and "pip_freeze" in check.message
    assert "audit.adopted" in check.message
    assert audit_gates.adopted_severity(check, "warn") == "warn"
    assert audit_gates.adopted_severity(check, "block") == "block"


def test_an_adopted_run_missing_more_than_it_lists_fails_g6_at_the_gates_own_severity(run):
    rec = _adopted(run[1])
    del rec["input_artifacts"]["datasets"][0]["sha256"]
    check = audit_gates.completeness(LoadedRecord(rec), RUN)
    assert not check.passed and "input_artifacts.datasets[0].sha256" in check.details["missing"]
    assert audit_gates.adopted_severity(check, "warn") is None
    ok = audit_gates.completeness(LoadedRecord(run[1]), RUN)
    assert ok.passed and audit_gates.adopted_severity(ok, "warn") is None


# -- integrity ------------------------------------------------------------------------------------------
def test_untouched_files_pass_integrity(run):
    paths, rec = run
    check = audit_gates.integrity(rec, paths["adapter"])
    assert check.passed, check.message
    assert check.value == {"verified": 8, "mismatched": 0, "unverifiable": 0}


def test_one_flipped_byte_in_the_adapter_fails_integrity(run):
    paths, rec = run
    flip_byte(paths["adapter"] / "adapter_model.safetensors")
    check = audit_gates.integrity(rec, paths["adapter"])
    assert not check.passed and check.value["mismatched"] == 1
    assert "adapter file adapter_model.safetensors differs from the one trained" in check.message
    assert audit_gates.require_verifiable(check) is check  # a mismatch is a failure, not an error


def test_a_swapped_or_added_adapter_file_fails_integrity(run):
    paths, rec = run
    (paths["adapter"] / "adapter_model.bin").write_bytes(b"extra")
    (paths["adapter"] / "adapter_config.json").unlink()
    msg = audit_gates.integrity(rec, paths["adapter"]).message
    assert "adapter file adapter_model.bin is not in the audit record" in msg
    assert "adapter_config.json is recorded but missing" in msg
    assert "no adapter artifact" in audit_gates.integrity(rec, None).message


def test_a_dataset_row_edited_after_training_fails_integrity(run):
    paths, rec = run
    train = paths["data"] / "demo_train.json"
    train.write_text(train.read_text().replace("river stone w3", "river stone w4"))
    check = audit_gates.integrity(rec, paths["adapter"])
    assert not check.passed
    assert f"train dataset 'demo_train': {train} has changed since training" in check.message


def test_a_dataset_that_no_longer_exists_is_an_error_naming_the_path(run):
    paths, rec = run
    test = paths["data"] / "demo_test.json"
    test.unlink()
    check = audit_gates.integrity(rec, paths["adapter"])
    assert not check.passed and check.value["unverifiable"] == 1
    with pytest.raises(IntegrityError, match=f"cannot verify: test dataset 'demo_test': {test} does not exist"):
        audit_gates.require_verifiable(check)


def test_a_base_model_changed_since_training_fails_integrity_and_is_a_changed_input(run):
    paths, rec = run
    (paths["base"] / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32}))
    check = audit_gates.integrity(rec, paths["adapter"])
    assert not check.passed and "base model file config.json: " in check.message
    assert audit_gates.integrity(rec, paths["adapter"], base_model=False).passed
    assert [m.split(":")[0] for m in audit_gates.changed_inputs(rec)] == ["base model file config.json"]


def test_an_edited_config_fails_and_a_deleted_one_is_verified_from_the_recorded_content(run):
    paths, rec = run
    paths["config"].write_text(paths["config"].read_text().replace("seed: 42", "seed: 7"))
    assert "training config: " in audit_gates.integrity(rec, paths["adapter"]).message
    paths["config"].unlink()
    check = audit_gates.integrity(rec, paths["adapter"])
    assert check.passed and any("recorded content" in v["what"] for v in check.details["verified"])
    rec["input_artifacts"]["config"]["content"] += "# edited\n"
    assert "the record was edited" in audit_gates.integrity(rec, paths["adapter"]).message


def test_a_record_rewritten_to_match_a_swapped_adapter_is_caught_by_the_run_params(run):
    paths, rec = run
    params = {"ftgate.adapter_sha256": digest_files(rec["output_artifacts"]["adapter"]["files"]),
              **lineage_params(rec["input_artifacts"])}
    assert audit_gates.integrity(rec, paths["adapter"], params).value["verified"] == 12
    flip_byte(paths["adapter"] / "adapter_model.safetensors")
    swapped = copy.deepcopy(rec)
    for f in swapped["output_artifacts"]["adapter"]["files"]:
        f["sha256"] = audit_gates.sha256_file(paths["adapter"] / f["name"])
    check = audit_gates.integrity(swapped, paths["adapter"], params)
    assert not check.passed and check.value["mismatched"] == 1
    assert "does not match the run's param ftgate.adapter_sha256" in check.message


def test_dataset_hashes_are_recomputed_as_training_records_them(tmp_path, monkeypatch):
    monkeypatch.setenv("FTGATE_CACHE_DIR", str(tmp_path / "cache"))
    d = tmp_path / "data"
    (d / "parts").mkdir(parents=True)
    (d / "parts" / "a.json").write_text(json.dumps(A.rows(0, 3)))
    (d / "parts" / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in A.rows(3, 2)))
    (d / "one.json").write_text(json.dumps(A.rows(5, 2)))
    info = {"parts": {"file_name": "parts"}, "one": {"file_name": "one.json"}}
    (d / "dataset_info.json").write_text(json.dumps(info))
    spec = train.TrainingSpec(tmp_path / "t.yaml", "", {"dataset_dir": str(d), "dataset": "parts,one"})
    recorded, info = train.dataset_inputs(spec)
    assert [audit_gates.dataset_sha256(e["path"]) for e in recorded] == [e["sha256"] for e in recorded]
    assert info["entries"] == ["one", "parts"]  # only the entries the run used, not the whole shared file
    assert train.info_entries_sha256(json.loads((d / "dataset_info.json").read_text()), ["parts", "one"]) == \
        info["sha256"]


def _entries_record(run):
    """The record of ``run`` with dataset_info hashed the way training records it now: the entries it used."""
    paths, rec = run
    rec = copy.deepcopy(rec)
    info_path = paths["data"] / "dataset_info.json"
    used = sorted(d["name"] for d in rec["input_artifacts"]["datasets"])
    rec["input_artifacts"]["dataset_info"] = {"path": str(info_path), "entries": used,
                                              "sha256": train.info_entries_sha256(json.loads(info_path.read_text()),
                                                                                  used)}
    return paths, rec, info_path


def test_a_new_dataset_info_entry_does_not_fail_an_earlier_runs_integrity(run):
    paths, rec, info_path = _entries_record(run)
    info = json.loads(info_path.read_text())
    info["someone_elses_data"] = {"file_name": "other.json", "formatting": "sharegpt"}
    info_path.write_text(json.dumps(info, indent=2))
    check = audit_gates.integrity(rec, paths["adapter"], lineage_params(rec["input_artifacts"]))
    assert check.passed, check.message


def test_a_changed_dataset_info_entry_the_run_used_fails_integrity(run):
    paths, rec, info_path = _entries_record(run)
    info = json.loads(info_path.read_text())
    info["demo_train"]["columns"] = {"prompt": "question"}
    info_path.write_text(json.dumps(info))
    check = audit_gates.integrity(rec, paths["adapter"])
    assert not check.passed
    assert "dataset_info.json entries demo_test, demo_train, demo_validation" in check.message
    assert "has changed since training" in check.message


def test_missing_lineage_params_are_named_by_g6(run):
    check = audit_gates.completeness(LoadedRecord(run[1], params={"ftgate.config_sha256": "x"}), RUN)
    assert not check.passed and "run param ftgate.adapter_sha256" in check.details["missing"]
    assert "lineage params of the run" in check.message


# -- adapter format -------------------------------------------------------------------------------------
def test_a_safetensors_adapter_passes_the_format_gate(run):
    paths, rec = run
    check = audit_gates.adapter_format(paths["adapter"], False, False, record.training_config(rec), paths["base"])
    assert check.passed and check.value == "safetensors", check.message


def test_a_pickle_adapter_is_refused_unless_allowed(run):
    paths, _ = run
    (paths["adapter"] / "adapter_model.safetensors").unlink()
    (paths["adapter"] / "adapter_model.bin").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    refused = audit_gates.adapter_format(paths["adapter"], allow_pickle=False, allow_remote_code=False)
    assert not refused.passed and "adapter_model.bin: pickle weights" in refused.message
    assert "--ftgate-allow-pickle" in refused.message
    assert audit_gates.adapter_format(paths["adapter"], allow_pickle=True, allow_remote_code=False).passed


def test_a_pickle_renamed_to_safetensors_is_caught(run):
    paths, _ = run
    (paths["adapter"] / "adapter_model.safetensors").write_bytes(pickle.dumps({"w": 1}))
    check = audit_gates.adapter_format(paths["adapter"], False, False)
    assert not check.passed and "adapter_model.safetensors: not a valid safetensors file" in check.message


def test_trust_remote_code_and_a_base_model_with_auto_map_are_refused_unless_configured(run):
    paths, rec = run
    cfg = record.training_config(rec)
    assert cfg["trust_remote_code"] is False and cfg["seed"] == 42
    check = audit_gates.adapter_format(paths["adapter"], False, False, {**cfg, "trust_remote_code": True})
    assert not check.passed and "trust_remote_code: true" in check.message
    (paths["base"] / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "modeling_x.XModel"}}))
    check = audit_gates.adapter_format(paths["adapter"], False, False, cfg, paths["base"])
    assert not check.passed and "auto_map (AutoModel)" in check.message
    assert audit_gates.adapter_format(paths["adapter"], False, True, {**cfg, "trust_remote_code": True},
                                     paths["base"]).passed


def test_an_adapter_without_its_config_fails_the_format_gate(run):
    paths, _ = run
    (paths["adapter"] / "adapter_config.json").write_text("{not json")
    assert "adapter_config.json is not valid JSON" in audit_gates.adapter_format(paths["adapter"], False, False).message


# -- reproducibility ------------------------------------------------------------------------------------
def test_an_identical_loss_history_is_reported_as_bitwise_identical():
    h = [(10, 2.5), (20, 1.25), (30, 0.75)]
    check = audit_gates.compare_losses(h, list(h), 20, 1e-3)
    assert check.passed and "2 logged step(s) up to step 20 reproduced: bitwise identical" in check.message


def test_a_loss_history_within_tolerance_passes_and_outside_fails_naming_the_step():
    rec = [(10, 2.0), (20, 1.0)]
    assert audit_gates.compare_losses(rec, [(10, 2.0001), (20, 1.0)], 20, 1e-3).passed
    check = audit_gates.compare_losses(rec, [(10, 2.0), (20, 1.1)], 20, 1e-3)
    assert not check.passed and "at step 20 1.1 vs 1 recorded" in check.message
    assert not audit_gates.compare_losses(rec, [(10, float("nan"))], 20, 1e-3).passed


def test_too_few_steps_to_compare_fail_with_the_fix():
    check = audit_gates.compare_losses([(10, 2.0)], [(5, 2.0)], 8, 1e-3)
    assert not check.passed and "raise audit.reproducibility_steps" in check.message
