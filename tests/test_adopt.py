"""`ftgate adopt`: a run trained by plain `llamafactory-cli train` (report_to: mlflow) gets, after the fact, what
`ftgate train` records and can still be established, and is then gated like any other run.

Unit tests use a hand-made run shaped like LLaMA-Factory's (its params, a loss history, an output_dir with an
adapter); the end-to-end test trains the demo data with plain `llamafactory-cli train` (tiny, CPU), adopts the
run with the `ftgate adopt` command and gates it with every suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_ftgate import adopt, train
from pytest_ftgate.errors import ConfigError, RunUnavailable
from pytest_ftgate.store import RunStore
from pytest_ftgate import record
from pytest_ftgate.gates import audit as audit_gates

from . import audit_records as A
from .conftest import REPO, copy_demo_tree

LF_PARAMS = {"learning_rate": "0.001", "seed": "42", "data_seed": "42", "num_train_epochs": "3.0",
             "output_dir": "saves/x", "per_device_train_batch_size": "8"}  # TrainingArguments, as the callback logs


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> RunStore:
    """One sqlite store for the unit tests (creating one costs seconds of migrations)."""
    root = tmp_path_factory.mktemp("adopt-store")
    return RunStore(f"sqlite:///{root / 'mlflow.db'}", "plain", str(root / "artifacts"), create=True)


def plain_run(store: RunStore, tmp_path: Path, **config) -> tuple[RunStore, str, Path, dict]:
    """A FINISHED run with LLaMA-Factory's params and loss history, and its output_dir beside a config."""
    from mlflow.entities import Metric, Param

    paths = A.write_files(tmp_path)
    out = tmp_path / "saves"
    shutil.copytree(paths["adapter"], out)
    (out / "trainer_state.json").write_text(json.dumps({"max_steps": 30, "global_step": 30, "epoch": 3.0}))
    cfg = yaml.safe_load(paths["config"].read_text())
    cfg.update(output_dir=str(out), learning_rate=1.0e-3, num_train_epochs=3.0, **config)
    paths["config"].write_text(yaml.safe_dump(cfg))
    client = store.client
    exp = store.experiment_id(create=True)
    run = client.create_run(exp, run_name="plain-lf")
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in LF_PARAMS.items()],
                     metrics=[Metric("loss", 2.0 - s / 20, 0, s) for s in range(10, 31, 10)])
    client.set_terminated(run.info.run_id, "FINISHED")
    return store, run.info.run_id, paths["config"], paths


@pytest.mark.slow
def test_adopting_a_plain_run_attaches_adapter_lineage_and_a_record_marked_adopted(store, tmp_path):
    store, run_id, config, _ = plain_run(store, tmp_path)
    summary = adopt.adopt(store, run_id, config, echo=lambda m: None)
    run = store.client.get_run(run_id)
    params, tags = run.data.params, run.data.tags
    for k, v in LF_PARAMS.items():
        assert params[k] == v  # what LLaMA-Factory logged is untouched
    assert params["ftgate.adapter_sha256"] == summary["adapter_sha256"]
    assert {"ftgate.config_sha256", "ftgate.dataset_sha256", "ftgate.base_model_sha256"} <= set(params)
    assert tags["ftgate.provenance"] == "adopted" and "ftgate.trained_by" not in tags
    assert {"adapter/adapter_model.safetensors", "adapter/adapter_config.json", "audit/audit_record.json",
            "audit/train.yaml", "training/trainer_state.json"} <= set(store.list_artifacts(run_id))
    loaded = record.load_record(store, run_id, tmp_path / "dl", dict(params))
    rec = loaded.record
    assert rec["provenance"] == "adopted" and rec["run_id"] == run_id
    assert rec["training_record"]["progress"]["total_steps"] == 30
    assert rec["training_record"]["metrics_summary"]["final_loss"] == 0.5
    assert rec["reproducibility"]["seeds"] == {"seed": 42, "data_seed": 42}
    assert any("pip_freeze" in x for x in rec["adopted"]["not_established"])
    g6 = audit_gates.completeness(loaded, run_id)
    assert not g6.passed and audit_gates.adopted_severity(g6, "warn") == "warn"
    assert "reproducibility.environment.torch_version" in g6.message
    integrity = audit_gates.integrity(rec, Path(store.download(run_id, "adapter", tmp_path / "a")), dict(params))
    assert integrity.passed, integrity.message  # every recorded hash matches the run's new lineage params


@pytest.mark.slow
def test_a_run_cannot_be_adopted_twice_nor_with_another_runs_config(store, tmp_path):
    store, run_id, config, _ = plain_run(store, tmp_path)
    wrong = yaml.safe_load(config.read_text())
    wrong["learning_rate"] = 5.0e-3
    other = config.with_name("other.yaml")
    other.write_text(yaml.safe_dump(wrong))
    with pytest.raises(ConfigError, match=r"other\.yaml: not the config this run was trained with: learning_rate "
                                          r"is 0\.005 in the config but '0\.001' on the run"):
        adopt.adopt(store, run_id, other, echo=lambda m: None)
    assert "ftgate.adapter_sha256" not in store.client.get_run(run_id).data.params  # nothing was attached
    adopt.adopt(store, run_id, config, echo=lambda m: None)
    with pytest.raises(RunUnavailable, match="was adopted already"):
        adopt.adopt(store, run_id, config, echo=lambda m: None)


@pytest.mark.slow
def test_an_output_dir_without_an_adapter_names_the_option_to_point_at_it(store, tmp_path):
    store, run_id, config, _ = plain_run(store, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"wrote no adapter_model\.\* into .*empty: pass --output-dir DIR"):
        adopt.adopt(store, run_id, config, output_dir=empty, echo=lambda m: None)


# -- end to end: plain llamafactory-cli train, ftgate adopt, pytest suites ---------------------------------------
def _session(root: Path, uri: str, run_id: str, *extra: str) -> subprocess.CompletedProcess:
    shutil.copytree(REPO / "suites", root / "suites", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return subprocess.run([sys.executable, "-m", "pytest", "suites", "-p", "no:cacheprovider", "-q", "--run-id",
                           run_id, "--ftgate-tracking-uri", uri, *extra], cwd=root, capture_output=True, text=True,
                          timeout=900, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def adopted(demo_run, tmp_path_factory):
    """The demo data trained by plain ``llamafactory-cli train`` (max_samples 200), then ``ftgate adopt``-ed."""
    from mlflow.tracking import MlflowClient

    root = copy_demo_tree(tmp_path_factory.mktemp("plain-lf"))
    shutil.copytree(demo_run.base_model_dir, root / ".ftgate" / "ftgate-demo-base")
    cfg = yaml.safe_load((root / "training" / "demo.yaml").read_text())
    cfg.update(max_samples=200, num_train_epochs=2.0, output_dir="saves/plain", eval_steps=25, save_steps=25)
    (root / "train.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))  # 50 steps
    gate_cfg = yaml.safe_load((root / "ftgate.yaml").read_text())  # sized for a test: 16 prompts per task
    gate_cfg.setdefault("quality", {})["max_samples"] = 16
    for task in gate_cfg.get("benchmarks", {}).get("tasks", []):
        task["limit"] = 16
    (root / "ftgate.yaml").write_text(yaml.safe_dump(gate_cfg, sort_keys=False))
    uri = f"sqlite:///{root / '.ftgate' / 'mlflow.db'}"
    env = {**train.child_env(), "MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "plain"}
    cli = Path(sys.executable).with_name("llamafactory-cli")
    lf = subprocess.run([str(cli), "train", "train.yaml"], cwd=root, env=env, capture_output=True, text=True,
                        timeout=900, check=False)
    assert lf.returncode == 0, (lf.stdout + lf.stderr)[-4000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("plain").experiment_id])
    (run,) = [r for r in runs if "loss" in r.data.metrics]  # the final evaluation opens a second run
    before = dict(run.data.params)
    cmd = [sys.executable, "-m", "pytest_ftgate.cli", "adopt", run.info.run_id, "--config", "train.yaml",
           "--tracking-uri", uri]
    done = subprocess.run(cmd, cwd=root, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, uri, run.info.run_id, before, done


@pytest.mark.slow
def test_a_plain_llamafactory_run_adopted_is_gated_by_every_gate_and_warned_by_the_adopted_policy(adopted):
    root, uri, run_id, before, done = adopted
    assert done.stdout.strip() == run_id and "not established after training" in done.stderr
    from mlflow.tracking import MlflowClient

    params = MlflowClient(uri).get_run(run_id).data.params
    assert {k: params[k] for k in before} == before  # LLaMA-Factory's params are untouched
    proc = _session(root, uri, run_id)
    verdict = json.loads(next((root / "ftgate-results" / "verdicts").glob(f"{run_id}.json")).read_text())
    outcomes = {g["id"]: g["outcome"] for g in verdict["gates"]}
    errors = {g["id"]: g["message"][:300] for g in verdict["gates"] if g["outcome"] == "error"}
    assert not errors, errors  # every gate reached an outcome on the adopted run
    g6 = next(g for g in verdict["gates"] if g["id"] == "G6")
    assert (g6["outcome"], g6["severity"]) == ("failed", "warn") and "adopted after training" in g6["message"]
    for gate in ("integrity", "adapter_format", "schema", "leakage", "G4", "adapter_applied", "G1"):
        assert outcomes[gate] == "passed", (gate, proc.stdout[-3000:])
    assert verdict["verdict"] == "warn" and proc.returncode == 0, proc.stdout[-3000:]
    schema = next(g for g in verdict["gates"] if g["id"] == "schema")
    assert "200 rows trained: max_samples 200" in schema["message"]  # only the rows LLaMA-Factory trained


@pytest.mark.slow
def test_with_audit_adopted_block_the_adopted_run_is_blocked_by_g6(adopted):
    root, uri, run_id, _, _ = adopted
    cfg = yaml.safe_load((root / "ftgate.yaml").read_text())
    cfg["audit"] = {**(cfg.get("audit") or {}), "adopted": "block"}
    (root / "strict.yaml").write_text(yaml.safe_dump(cfg))
    proc = _session(root, uri, run_id, "--ftgate-config", "strict.yaml", "--ftgate-out", "strict", "-k", "audit")
    verdict = json.loads(next((root / "strict" / "verdicts").glob(f"{run_id}.json")).read_text())
    g6 = next(g for g in verdict["gates"] if g["id"] == "G6")
    assert (g6["outcome"], g6["severity"]) == ("failed", "block")
    assert verdict["decision"] == "block" and proc.returncode == 1
