"""Unit tests of how the reproducibility gate rebuilds the recorded training arguments (no training here; the
re-training itself runs in tests/test_audit_suite_e2e.py on the demo run)."""

import pytest

from pytest_ftgate import replay
from pytest_ftgate.errors import ConfigError

CONTENT = """model_name_or_path: ../models/base
dataset_dir: ../data
dataset: demo_train
output_dir: ../out
report_to: mlflow
seed: 7
"""


def record(tmp_path, content=CONTENT):
    (tmp_path / "data").mkdir(parents=True)
    return {"input_artifacts": {"config": {"file": str(tmp_path / "training" / "train.yaml"), "content": content},
                                "base_model": {"path": "/models/recorded-base"}}}


def test_the_recorded_config_is_rebuilt_with_paths_resolved_against_its_directory(tmp_path):
    args = replay.replay_args(record(tmp_path), 20, tmp_path / "replay")
    assert args["dataset_dir"] == str((tmp_path / "data").resolve())
    assert args["model_name_or_path"] == "/models/recorded-base"  # the record's base model, not the config's
    assert (args["seed"], args["dataset"]) == (7, "demo_train")
    assert (args["output_dir"], args["report_to"]) == (str(tmp_path / "replay"), "none")


def test_a_record_without_config_content_cannot_be_replayed(tmp_path):
    with pytest.raises(ConfigError, match="no config content"):
        replay.replay_args(record(tmp_path, ""), 20, tmp_path)
    with pytest.raises(ConfigError, match="not valid YAML"):
        replay.replay_args(record(tmp_path / "b", "a: [1"), 20, tmp_path)
