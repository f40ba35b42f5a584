"""The audit record: hashing with a memo, the required fields, and every lineage field of the demo run re-checked
against the files themselves (the test hashes them on its own, with hashlib)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from pytest_ftgate import artifacts, train
from pytest_ftgate.errors import IntegrityError, RunUnavailable
from pytest_ftgate import hashing
from pytest_ftgate import record as rec_mod


def sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- unit ----------------------------------------------------------------------------------------------------
def test_the_memo_rehashes_a_file_only_when_its_size_or_mtime_changes(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"a" * 1000)
    memo = hashing.HashMemo(tmp_path / "memo.json")
    assert memo.sha256(f) == "sha256:" + hashlib.sha256(b"a" * 1000).hexdigest()
    assert hashing.HashMemo(tmp_path / "memo.json").sha256(f) and memo.misses == 1
    again = hashing.HashMemo(tmp_path / "memo.json")
    again.sha256(f)
    assert (again.hits, again.misses) == (1, 0)  # read from the memo file: not re-hashed
    f.write_bytes(b"b" * 1000)
    os.utime(f, ns=(1, 1))
    assert again.sha256(f) == "sha256:" + hashlib.sha256(b"b" * 1000).hexdigest() and again.misses == 1


def test_a_file_changed_behind_the_memo_with_the_same_size_and_mtime_is_the_documented_blind_spot(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 10)
    st = f.stat()
    memo = hashing.HashMemo(tmp_path / "memo.json")
    first = memo.sha256(f)
    f.write_bytes(b"y" * 10)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert memo.sha256(f) == first  # the memo trusts (path, size, mtime); gates re-hash with a fresh memo
    assert hashing.sha256_file(f) != first


def test_the_digest_of_a_file_list_does_not_depend_on_its_order():
    files = [{"name": "a", "sha256": "sha256:1"}, {"name": "b", "sha256": "sha256:2"}]
    assert hashing.digest_files(files) == hashing.digest_files(files[::-1])
    assert hashing.digest_files(files) != hashing.digest_files([files[0]])


def complete_record() -> dict:
    path = Path(__file__).parent / "data" / "audit_record_demo.json"
    return json.loads(path.read_text())


def test_a_complete_record_misses_no_field():
    assert rec_mod.missing_fields(complete_record()) == []


def test_missing_null_and_empty_fields_are_listed_by_dotted_path():
    record = complete_record()
    del record["input_artifacts"]["base_model"]["hash"]
    record["reproducibility"]["seeds"]["seed"] = None
    record["input_artifacts"]["datasets"][1]["sha256"] = ""
    record["output_artifacts"]["adapter"]["files"] = []
    assert rec_mod.missing_fields(record) == [  # list elements by index
        "input_artifacts.base_model.hash", "input_artifacts.datasets[1].sha256", "output_artifacts.adapter.files",
        "reproducibility.seeds.seed"]


# -- the demo run's record, re-checked --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def record(demo_run, tmp_path_factory) -> dict:
    local = demo_run.store().download(demo_run.run_id, "audit/audit_record.json", tmp_path_factory.mktemp("a"))
    return json.loads(Path(local).read_text())


@pytest.mark.slow
def test_the_demo_record_has_every_required_field(record, demo_run):
    assert rec_mod.missing_fields(record) == []
    assert record["run_id"] == demo_run.run_id and record["schema_version"] == 1


@pytest.mark.slow
def test_the_recorded_inputs_match_the_files(record, demo_run):
    inputs = record["input_artifacts"]
    config = demo_run.config
    assert inputs["config"]["file"] == str(config.resolve()) and inputs["config"]["sha256"] == sha(config)
    assert inputs["config"]["content"] == config.read_text()
    base = inputs["base_model"]
    assert base["path"] == str(demo_run.base_model_dir.resolve())
    on_disk = sorted(p for p in demo_run.base_model_dir.rglob("*") if p.is_file())
    assert [(f["name"], f["sha256"], f["size"]) for f in base["files"]] == [
        (p.relative_to(demo_run.base_model_dir).as_posix(), sha(p), p.stat().st_size) for p in on_disk]
    lines = sorted(f"{f['name']} {f['sha256']}" for f in base["files"])
    assert base["hash"] == "sha256:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()
    data_dir = demo_run.root / "fixtures" / "data"
    info = json.loads((data_dir / "dataset_info.json").read_text())
    used = ["translate_test", "translate_train", "translate_validation"]
    assert inputs["dataset_info"] == {"path": str(data_dir / "dataset_info.json"), "entries": used,
                                      "sha256": train.info_entries_sha256(info, used)}  # only the entries it used
    for d in inputs["datasets"]:
        rows = json.loads(Path(d["path"]).read_text())
        assert (d["sha256"], d["samples"], d["format"]) == (sha(Path(d["path"])), len(rows), "alpaca")
    assert {d["split"]: d["name"] for d in inputs["datasets"]} == {
        "train": "translate_train", "validation": "translate_validation", "test": "translate_test"}


@pytest.mark.slow
def test_the_recorded_adapter_matches_the_artifact_and_the_run_params(record, demo_run):
    adapter = record["output_artifacts"]["adapter"]
    assert (adapter["artifact_path"], adapter["type"], adapter["format"]) == ("adapter", "lora", "safetensors")
    assert {f["name"]: f["sha256"] for f in adapter["files"]} == {
        p.name: sha(p) for p in Path(demo_run.adapter_dir).iterdir()}
    params = demo_run.store().client.get_run(demo_run.run_id).data.params
    assert params["ftgate.adapter_sha256"] == adapter["sha256"] == hashing.digest_files(adapter["files"])
    assert params["ftgate.config_sha256"] == record["input_artifacts"]["config"]["sha256"]
    assert params["ftgate.base_model_sha256"] == record["input_artifacts"]["base_model"]["hash"]


@pytest.mark.slow
def test_the_recorded_training_environment_and_seeds_are_this_machines(record, demo_run):
    cfg = yaml.safe_load(demo_run.config.read_text())
    repro = record["reproducibility"]
    assert repro["seeds"] == {"seed": cfg["seed"], "data_seed": cfg["data_seed"]}
    env = repro["environment"]
    assert env["python_version"] == platform.python_version()
    for key, dist in (("torch_version", "torch"), ("transformers_version", "transformers"),
                      ("peft_version", "peft"), ("llamafactory_version", "llamafactory")):
        assert env[key].split("+")[0] == metadata.version(dist).split("+")[0], key
    assert repro["hardware"]["device"] == "cpu" and repro["hardware"]["gpu_count"] == 0
    assert repro["determinism"]["full_determinism"] is False
    store = demo_run.store()
    freeze = store.download(demo_run.run_id, "audit/pip_freeze.txt", demo_run.root / "freeze").read_text()
    assert f"llamafactory=={metadata.version('llamafactory')}" in freeze


@pytest.mark.slow
def test_the_recorded_training_timeline_steps_and_checkpoints_agree_with_mlflow(record, demo_run):
    tr = record["training_record"]
    run = demo_run.store().load(demo_run.run_id)
    assert tr["timeline"]["duration_seconds"] > 0 and tr["timeline"]["start_time"] < tr["timeline"]["end_time"]
    assert tr["progress"]["completed_steps"] == tr["progress"]["total_steps"] == run.history["loss"][-1][0]
    assert tr["progress"]["epochs_completed"] == pytest.approx(run.history["epoch"][-1][1])
    evals = dict(run.history["eval_loss"])
    assert tr["checkpoints"] and all(c["eval_loss"] == pytest.approx(evals[c["step"]]) for c in tr["checkpoints"])
    summary = tr["metrics_summary"]
    assert summary["initial_loss"] == pytest.approx(run.history["loss"][0][1])
    assert summary["final_loss"] == pytest.approx(run.history["loss"][-1][1])
    assert summary["best_eval_loss"] == pytest.approx(min(evals.values()))
    best = min(tr["checkpoints"], key=lambda c: c["eval_loss"])
    assert summary["best_checkpoint"] == f"checkpoint-{best['step']}"


# -- the adapter fixture's download ------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_adapter_is_cached_by_the_sha256_of_its_bytes_and_reused(demo_run, tmp_path):
    store = demo_run.store()
    first = artifacts.fetch_verified(store, demo_run.run_id, tmp_path)
    digest = store.client.get_run(demo_run.run_id).data.params["ftgate.adapter_sha256"]
    assert first.name == digest.removeprefix("sha256:")
    mtime = (first / "adapter_model.safetensors").stat().st_mtime_ns
    assert artifacts.fetch_verified(store, demo_run.run_id, tmp_path) == first
    assert (first / "adapter_model.safetensors").stat().st_mtime_ns == mtime  # the cache entry is kept


@pytest.mark.slow
def test_a_cached_adapter_that_was_altered_is_downloaded_again(demo_run, tmp_path):
    store = demo_run.store()
    first = artifacts.fetch_verified(store, demo_run.run_id, tmp_path)
    (first / "adapter_config.json").write_text("{}")
    again = artifacts.fetch_verified(store, demo_run.run_id, tmp_path)
    assert sha(again / "adapter_config.json") == sha(Path(demo_run.adapter_dir) / "adapter_config.json")


def tampered_copy(demo_run, tmp_path) -> str:
    """A run with the demo's params and audit record but an adapter artifact whose config was edited."""
    from mlflow.entities import Param

    store = demo_run.store()
    client = store.client
    src = client.get_run(demo_run.run_id)
    run = client.create_run(src.info.experiment_id, run_name="tampered")
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in src.data.params.items()])
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for p in Path(demo_run.adapter_dir).iterdir():
        adapter.joinpath(p.name).write_bytes(p.read_bytes())
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["r"] = 64
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    client.log_artifacts(run.info.run_id, str(adapter), "adapter")
    audit_dir = Path(store.download(demo_run.run_id, "audit/audit_record.json", tmp_path / "audit"))
    client.log_artifact(run.info.run_id, str(audit_dir), "audit")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@pytest.mark.slow
def test_an_adapter_artifact_that_differs_from_its_audit_record_is_refused(demo_run, tmp_path):
    run_id = tampered_copy(demo_run, tmp_path)
    with pytest.raises(IntegrityError, match=r"adapter_config\.json: recorded sha256:[0-9a-f]+, downloaded sha256:"):
        artifacts.fetch_verified(demo_run.store(), run_id, tmp_path / "cache")
    copy = artifacts.download_adapter(demo_run.store(), run_id, tmp_path / "cache")
    assert copy.path.name == copy.digest.removeprefix("sha256:")  # cached as what it is, not as what was recorded
    assert copy.digest != demo_run.store().client.get_run(run_id).data.params["ftgate.adapter_sha256"]


@pytest.mark.slow
def test_a_run_without_an_adapter_digest_is_not_downloaded(tmp_path):
    from pytest_ftgate.store import RunStore

    from .mlflow_runs import make_run

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    run_id = make_run(uri, "plain-llamafactory", {"loss": [(1, 2.0), (2, 1.0)]})
    with pytest.raises(RunUnavailable, match="no `ftgate.adapter_sha256` param"):
        artifacts.fetch_verified(RunStore(uri), run_id, tmp_path / "cache")
