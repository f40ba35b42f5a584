"""Training under the gate: bad input is named, the demo trains with one MLflow run, re-use, retrain, crashes.

Unit tests of the config and data checks run without a child process; the end-to-end tests share the session's
``demo_run`` (one LLaMA-Factory training on CPU) and add a few short trainings of their own.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from pytest_ftgate import train
from pytest_ftgate.errors import ConfigError, DataError
from pytest_ftgate.store import RunStore

from .conftest import REPO, copy_demo_tree


def write_config(root: Path, name: str, **overrides) -> Path:
    """A copy of the demo config under ``root/training`` with keys replaced (None removes a key)."""
    cfg = yaml.safe_load((REPO / "training" / "demo.yaml").read_text())
    for key, value in overrides.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path = root / "training" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def tmp_store(root: Path) -> RunStore:
    (root / ".ftgate").mkdir(parents=True, exist_ok=True)
    return RunStore(f"sqlite:///{root / '.ftgate' / 'mlflow.db'}", None, str(root / ".ftgate" / "artifacts"),
                    create=True)


# -- bad input, no training -------------------------------------------------------------------------------
def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: training config not found"):
        train.load_spec(tmp_path / "nope.yaml")


def test_invalid_yaml_is_named_with_its_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        train.load_spec(bad)


def test_a_config_without_a_dataset_names_the_key(tmp_path):
    path = write_config(tmp_path, "nodata.yaml", dataset=None)
    with pytest.raises(ConfigError, match=r"nodata\.yaml: key 'dataset' is required"):
        train.load_spec(path)


def test_relative_paths_are_resolved_against_the_working_directory_as_llamafactory_does(tmp_path, monkeypatch):
    root = copy_demo_tree(tmp_path / "root")
    monkeypatch.chdir(root)
    spec = train.load_spec(root / "training" / "demo.yaml")
    assert spec.args["dataset_dir"] == str((root / "fixtures" / "data").resolve())
    assert spec.args["model_name_or_path"] == str((root / ".ftgate" / "ftgate-demo-base").resolve())
    assert spec.args["report_to"] == ["mlflow"]
    other = train.load_spec(write_config(root, "other.yaml", output_dir="saves/x", model_name_or_path="org/model",
                                         dataset_dir=None))
    assert other.args["output_dir"] == str((root / "saves" / "x").resolve())
    assert other.args["dataset_dir"] == str((root / "data").resolve())  # LLaMA-Factory's default dataset_dir
    assert other.args["model_name_or_path"] == "org/model"  # a hub id stays one (and is refused before training)
    assert train.load_spec(root / "training" / "demo.yaml", cwd=tmp_path).args["dataset_dir"] == str(
        (tmp_path / "fixtures" / "data").resolve())


def test_a_non_empty_output_dir_is_refused_unless_overwrite_output_dir(tmp_path):
    out = tmp_path / "saves"
    out.mkdir()
    spec = train.TrainingSpec(tmp_path / "t.yaml", "", {"output_dir": str(out)})
    train.check_output_dir(spec)  # empty: fine
    (out / "adapter_model.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"t\.yaml: output_dir .*saves already holds adapter_model\.safetensors.*"
                                          r"set overwrite_output_dir: true"):
        train.check_output_dir(spec)
    train.check_output_dir(train.TrainingSpec(spec.path, "", {"output_dir": str(out), "overwrite_output_dir": True}))


def test_a_config_without_a_test_set_is_refused_before_training_naming_the_three_ways(tmp_path, monkeypatch):
    root = copy_demo_tree(tmp_path / "root")
    monkeypatch.chdir(root)
    info = root / "fixtures" / "data" / "dataset_info.json"
    entries = json.loads(info.read_text())
    del entries["translate_test"]
    info.write_text(json.dumps(entries))
    spec = train.load_spec(root / "training" / "demo.yaml")
    inputs = {"datasets": train.dataset_inputs(spec)[0], "dataset_info": {"path": str(info)}}
    with pytest.raises(ConfigError) as exc:
        train.check_test_set(spec, inputs, "", True, print)
    msg = str(exc.value)
    assert "demo.yaml: no held-out test set" in msg
    assert "--test-dataset NAME" in msg and "--ftgate-test-dataset NAME" in msg
    assert "register `translate_test` in" in msg and "quality.test_set: PATH" in msg
    assert "quality.require_test_set: false" in msg
    warned = []
    train.check_test_set(spec, inputs, "", False, warned.append)
    assert warned and warned[0].startswith("ftgate: warning:")
    train.check_test_set(spec, inputs, str(root / "fixtures/data/translate_test.json"), True, print)  # a file


def test_max_samples_is_recorded_per_trained_dataset_but_not_for_the_test_split(tmp_path, monkeypatch):
    root = copy_demo_tree(tmp_path / "root")
    monkeypatch.chdir(root)
    spec = train.load_spec(write_config(root, "small.yaml", max_samples=100))
    datasets, info = train.dataset_inputs(spec)
    assert [(d["name"], d["samples"], d.get("max_samples"), d.get("rows_in_file")) for d in datasets] == [
        ("translate_train", 100, 100, 1200), ("translate_validation", 64, None, None),
        ("translate_test", 64, None, None)]
    assert info["entries"] == ["translate_test", "translate_train", "translate_validation"]


def test_a_hub_model_id_is_refused_before_training(tmp_path, monkeypatch):
    root = copy_demo_tree(tmp_path / "root")
    monkeypatch.chdir(root)
    spec = train.load_spec(write_config(root, "hub.yaml", model_name_or_path="meta-llama/Meta-Llama-3-8B"))
    with pytest.raises(ConfigError, match=r"hub\.yaml: model_name_or_path 'meta-llama/Meta-Llama-3-8B' is not a "
                                          r"local model directory"):
        train.base_model_dir(spec, print, tmp_path / "logs")


def test_a_dataset_missing_from_dataset_info_is_named(tmp_path, monkeypatch):
    root = copy_demo_tree(tmp_path / "root")
    monkeypatch.chdir(root)
    spec = train.load_spec(write_config(root, "x.yaml", dataset="translate_tran"))
    with pytest.raises(DataError, match=r"dataset_info\.json: dataset 'translate_tran' \(train\) is not registered"):
        train.dataset_inputs(spec)


def test_an_alpaca_row_without_output_is_named_by_file_and_row(tmp_path, monkeypatch):
    root = copy_demo_tree(tmp_path / "root")
    monkeypatch.chdir(root)
    data = root / "fixtures" / "data" / "translate_train.json"
    rows = json.loads(data.read_text())
    del rows[7]["output"]
    data.write_text(json.dumps(rows))
    spec = train.load_spec(root / "training" / "demo.yaml")
    with pytest.raises(DataError, match=r"translate_train\.json: 1 of 1200 alpaca rows cannot be trained on: "
                                         r"row 8: no reference answer: 'output' is missing"):
        train.dataset_inputs(spec)


def test_the_test_split_is_recorded_but_never_trained_on(tmp_path, monkeypatch):
    root = copy_demo_tree(tmp_path / "root")
    monkeypatch.chdir(root)
    spec = train.load_spec(root / "training" / "demo.yaml")
    datasets, _ = train.dataset_inputs(spec)
    assert [(d["name"], d["split"], d["samples"]) for d in datasets] == [
        ("translate_train", "train", 1200), ("translate_validation", "validation", 64), ("translate_test", "test", 64)]
    assert "translate_test" not in str(spec.args["dataset"]) + str(spec.args["eval_dataset"])
    train_rows = {r["input"] for r in json.loads((root / "fixtures/data/translate_train.json").read_text())}
    test_rows = {r["input"] for r in json.loads((root / "fixtures/data/translate_test.json").read_text())}
    assert not train_rows & test_rows



def test_a_benchmark_scoped_to_the_demos_data_is_skipped_with_its_reason_for_other_runs():
    demo = {"input_artifacts": {"datasets": [{"name": "translate_train", "split": "train"},
                                             {"name": "translate_test", "split": "test"}]}}
    assert train.benchmark_out_of_scope("demo_mc", ("translate_train",), demo, {}) == ""
    assert train.benchmark_out_of_scope("mmlu", (), None, {}) == ""  # unscoped: every run
    mine = {"input_artifacts": {"datasets": [{"name": "support_tickets", "split": "train"}]}}
    reason = train.benchmark_out_of_scope("demo_mc", ("translate_train",), mine, {})
    assert reason == ("bench:demo_mc applies to runs trained on translate_train (benchmarks.tasks[].trained_on in "
                      "ftgate.yaml); this run trained on support_tickets")
    assert "this run trained on a,b" not in train.benchmark_out_of_scope(  # no record: LLaMA-Factory's param
        "demo_mc", ("translate_train",), None, {"llamafactory.dataset": "a,b"}) and "trained on a, b" in \
        train.benchmark_out_of_scope("demo_mc", ("translate_train",), None, {"llamafactory.dataset": "a,b"})
    from pytest_ftgate.config import load_config

    repo = load_config(REPO / "ftgate.yaml")
    assert {t.name: t.trained_on for t in repo.benchmarks.tasks} == {"demo_mc": ("translate_train",),
                                                                     "demo_gen": ("translate_train",)}

# -- end to end ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_demo_trains_into_one_finished_mlflow_run_with_llamafactory_metrics_and_args(demo_run):
    store = demo_run.store()
    run = store.load(demo_run.run_id)
    assert run.status == "FINISHED" and run.tags["ftgate.trained_by"] == "pytest-ftgate"
    runs = store.client.search_runs([run.experiment_id])
    during = [r.info.run_id for r in runs if r.info.run_id != run.run_id
              and run.start_time <= r.info.start_time <= run.end_time]
    assert during == []  # LLaMA-Factory's final evaluation did not open a second, auto-named run
    for key in ("loss", "eval_loss", "grad_norm", "learning_rate", "epoch", "train_runtime"):
        assert run.history.get(key), key
    assert any(k.startswith("system/cpu_utilization") for k in run.history)
    assert any(k.startswith("system/system_memory_usage") for k in run.history)
    p = run.params
    cfg = yaml.safe_load(demo_run.config.read_text())
    assert (p["llamafactory.lora_rank"], p["llamafactory.finetuning_type"]) == (str(cfg["lora_rank"]), "lora")
    assert p["llamafactory.dataset"] == "translate_train" and p["llamafactory.lora_target"] == cfg["lora_target"]
    assert p["llamafactory.model_name_or_path"] == str(demo_run.base_model_dir.resolve())
    assert p["learning_rate"] == "0.005"  # the trainer's own arguments, logged by LLaMA-Factory's callback
    loss = run.history["loss"]
    assert loss[-1][1] < 0.25 * loss[0][1]  # the demo learns: 5.2 -> 0.77 on this recipe
    files = store.list_artifacts(demo_run.run_id)
    assert {"adapter/adapter_model.safetensors", "adapter/adapter_config.json", "audit/audit_record.json",
            "audit/pip_freeze.txt"} <= set(files)


@pytest.mark.slow
def test_the_same_config_data_and_base_model_reuse_the_finished_run(demo_run):
    messages = []
    again = train.ensure_trained(demo_run.config, demo_run.store(), retrain=False, log_dir=demo_run.log_dir,
                                 echo=messages.append, cwd=demo_run.root)
    assert again == demo_run.run_id
    assert "re-using run" in messages[0]


@pytest.mark.slow
def test_an_edited_config_is_not_mistaken_for_the_trained_one(tmp_path, demo_run):
    store = demo_run.store()
    edited = write_config(copy_demo_tree(tmp_path / "root"), "demo.yaml", learning_rate=1.0e-3)
    spec = train.load_spec(edited, cwd=tmp_path / "root")
    params = train.lineage_params(train.input_artifacts(spec, demo_run.base_model_dir))
    assert train.find_existing(store, store.experiment_id(create=True), params) is None


@pytest.mark.slow
def test_retraining_with_the_same_seed_gives_a_new_run_with_an_identical_adapter(demo_run):
    store = demo_run.store()
    second = train.ensure_trained(demo_run.config, store, retrain=True, log_dir=demo_run.log_dir,
                                  echo=lambda m: None, cwd=demo_run.root)
    assert second != demo_run.run_id
    first, again = (store.client.get_run(r).data.params for r in (demo_run.run_id, second))
    assert again["ftgate.adapter_sha256"] == first["ftgate.adapter_sha256"]
    losses = [[v for _, v in store.metric_history(r, "loss")] for r in (demo_run.run_id, second)]
    assert losses[0] == losses[1]


@pytest.mark.slow
def test_an_unknown_llamafactory_key_is_named_before_any_training_starts(tmp_path, demo_run):
    """The demo's training left LLaMA-Factory's known keys in the cache: the check needs no child process."""
    assert train.known_keys_path().is_file()
    root = copy_demo_tree(tmp_path / "root")
    shutil.copytree(demo_run.base_model_dir, root / ".ftgate" / "ftgate-demo-base")
    config = write_config(root, "typo.yaml", lora_rnak=8)
    store = tmp_store(root)
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown LLaMA-Factory key 'lora_rnak'; did you mean "
                                          r"'lora_rank'\?"):
        train.ensure_trained(config, store, retrain=False, log_dir=tmp_path / "logs", echo=lambda m: None,
                             cwd=root)
    assert store.client.search_runs([store.experiment_id(create=True)]) == []
    assert not (tmp_path / "logs").exists()


# LLaMA-Factory's examples/train_lora/qwen3_lora_sft.yaml, key for key; changed only: the model (a local path, and
# `template` with it), and the size (rows, length, workers, epochs, bf16 on CPU). Its datasets are our own rows in
# the layout of LLaMA-Factory's data/ (identity.json, alpaca_en_demo.json), next to the working directory.
UPSTREAM_EXAMPLE = """\
### model
model_name_or_path: .ftgate/ftgate-demo-base
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all

### dataset
dataset: identity,alpaca_en_demo
template: default
cutoff_len: 64
max_samples: 8
preprocessing_num_workers: null
dataloader_num_workers: 0

### output
output_dir: saves/qwen3-4b/lora/sft
logging_steps: 1
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none  # choices: [none, wandb, tensorboard, swanlab, mlflow]

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 1.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: false
ddp_timeout: 180000000
resume_from_checkpoint: null
"""


def llamafactory_layout(root: Path) -> None:
    """``root/data`` as LLaMA-Factory's repository lays it out: dataset_info.json, identity, alpaca demo rows."""
    data = root / "data"
    data.mkdir(parents=True)
    identity = [{"instruction": q, "input": "", "output": a} for q, a in [
        ("hi", "Hello! I am {{name}}, an AI assistant developed by {{author}}."), ("Who are you?", "I am {{name}}."),
        ("What is your name?", "You may call me {{name}}."), ("Who made you?", "{{author}} developed me.")] * 3]
    alpaca = [{"instruction": f"Give a synonym of word number {i}.", "input": "", "output": f"synonym {i}"}
              for i in range(12)]
    held_out = [{"instruction": f"Give a synonym of word number {i}.", "input": "", "output": f"synonym {i}"}
                for i in range(100, 104)]
    for name, rows in (("identity", identity), ("alpaca_en_demo", alpaca), ("held_out", held_out)):
        (data / f"{name}.json").write_text(json.dumps(rows, indent=2))
    (data / "dataset_info.json").write_text(json.dumps({n: {"file_name": f"{n}.json"} for n in (
        "identity", "alpaca_en_demo", "held_out")}, indent=2))


@pytest.mark.slow
def test_an_upstream_llamafactory_example_trains_unchanged_from_its_layout_with_output_dir_honoured(tmp_path,
                                                                                                   demo_run):
    root = tmp_path / "llamafactory"
    llamafactory_layout(root)
    shutil.copytree(demo_run.base_model_dir, root / ".ftgate" / "ftgate-demo-base")
    (root / "examples" / "train_lora").mkdir(parents=True)
    config = root / "examples" / "train_lora" / "qwen3_lora_sft.yaml"
    config.write_text(UPSTREAM_EXAMPLE)
    store = tmp_store(tmp_path)
    with pytest.raises(ConfigError, match="no held-out test set"):  # refused before any training
        train.ensure_trained(config, store, retrain=False, log_dir=tmp_path / "logs", echo=lambda m: None, cwd=root)
    run_id = train.ensure_trained(config, store, retrain=False, log_dir=tmp_path / "logs", echo=lambda m: None,
                                  cwd=root, test_dataset="held_out")
    out = root / "saves" / "qwen3-4b" / "lora" / "sft"
    assert (out / "adapter_model.safetensors").is_file() and (out / "training_loss.png").is_file()
    assert not [p for p in out.iterdir() if p.is_dir() and not p.name.startswith("checkpoint-")]  # no run-name dir
    rec = json.loads(store.download(run_id, "audit/audit_record.json", tmp_path / "dl").read_text())
    got = [(d["name"], d["split"], d["samples"], d.get("max_samples")) for d in rec["input_artifacts"]["datasets"]]
    assert got == [("identity", "train", 8, 8), ("alpaca_en_demo", "train", 8, 8), ("held_out", "test", 4, None)]
    assert rec["input_artifacts"]["dataset_info"]["entries"] == ["alpaca_en_demo", "held_out", "identity"]
    params = store.client.get_run(run_id).data.params
    assert params["ftgate.output_dir"] == str(out) and params["llamafactory.dataset"] == "identity,alpaca_en_demo"
