"""One LLaMA-Factory row model (``pytest_ftgate.rows``) for the three readers of a dataset: training's validation
(``train.dataset_inputs``), the data scan behind the data gates (``data.scan``) and the held-out test set of the
quality gates (``predict.resolve_test_set``). Each test pins a case where they used to disagree; plus one path
resolution (train and replay) and one child-process module. Pure: temp files, no model, no MLflow."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import pytest
import yaml

from pytest_ftgate import data, predict, replay, rows, train
from pytest_ftgate.errors import DataError
from pytest_ftgate.gates import data as data_gates
from pytest_ftgate.serve.process import run_logged, tail


def alpaca(i: int, **over) -> dict:
    return {"instruction": f"Reverse: w{i} stone river", "input": "", "output": f"river stone w{i}", **over}


def registered(tmp_path: Path, content: bytes | list, entry: dict | None = None) -> dict:
    """``rows_train`` and ``rows_test`` registered in a dataset_info.json with the same file content, and what the
    three readers make of it: ``train`` (row count or DataError text), ``scan`` (the schema check) and ``test``
    (the held-out set or DataError text)."""
    d = tmp_path / "data"
    d.mkdir(parents=True, exist_ok=True)
    raw = content if isinstance(content, bytes) else json.dumps(content).encode()
    entry = entry or {}
    for split in ("train", "test"):
        (d / f"rows_{split}.json").write_bytes(raw)
    info = {f"rows_{s}": {"file_name": f"rows_{s}.json", **entry} for s in ("train", "test")}
    (d / "dataset_info.json").write_text(json.dumps(info))
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"model_name_or_path": "base", "dataset": "rows_train", "output_dir": "out",
                                   "dataset_dir": str(d)}))
    out: dict = {}
    try:
        out["train"] = train.dataset_inputs(train.load_spec(cfg, cwd=tmp_path))[0][0]["samples"]
    except DataError as exc:
        out["train"] = str(exc)
    fmt = entry.get("formatting", "alpaca")
    lineage = [{"name": f"rows_{s}", "split": s, "path": str(d / f"rows_{s}.json"), "format": fmt}
               for s in ("train", "test")]
    out["scan"] = data.scan(data.from_lineage(lineage, str(d / "dataset_info.json")))
    audit = {"input_artifacts": {"datasets": lineage, "dataset_info": {"path": str(d / "dataset_info.json")}}}
    try:
        out["test"] = predict.resolve_test_set("", audit)
    except DataError as exc:
        out["test"] = str(exc)
    return out


def test_a_bom_prefixed_json_array_is_read_by_training_the_test_set_and_the_scan(tmp_path):
    seen = registered(tmp_path, b"\xef\xbb\xbf" + json.dumps([alpaca(0), alpaca(1)]).encode())
    assert seen["train"] == 2
    assert data_gates.schema_check(seen["scan"]).passed
    assert [s.reference for s in seen["test"].samples] == ["river stone w0", "river stone w1"]


@pytest.mark.parametrize("text", [json.dumps(alpaca(0)), json.dumps(alpaca(0), indent=2)])
def test_a_single_json_object_is_refused_by_all_three_in_one_line(tmp_path, text):
    seen = registered(tmp_path, text.encode())
    why = "is one JSON object, not rows: put the rows in a JSON list [{...}, ...] or write JSON Lines"
    assert why in seen["train"] and why in seen["test"] and "\n" not in seen["test"]
    assert any(why in f.error for f in seen["scan"].files)
    assert not data_gates.schema_check(seen["scan"]).passed


def test_a_one_row_json_lines_file_is_still_rows(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(alpaca(0)) + "\n")
    assert [v for _, _, v, _ in rows.read_rows(path)] == [alpaca(0)]


def test_an_empty_output_is_refused_for_training_and_by_the_schema_gate(tmp_path):
    seen = registered(tmp_path, [alpaca(0), alpaca(1, output="")])
    assert "1 of 2 alpaca rows cannot be trained on: row 2: no reference answer: 'output' is empty" in (
        seen["train"])
    check = data_gates.schema_check(seen["scan"])
    assert not check.passed and "rows_train.json row 2: no reference answer: 'output' is empty" in check.message
    assert "row 2: no reference answer: 'output' is empty" in seen["test"]


OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "observation_tag": "tool", "system_tag": "system"}
OPENAI_ROW = {"messages": [
    {"role": "system", "content": "You convert units."},
    {"role": "user", "content": "2 km in m?"},
    {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "convert", "arguments": "{}"}}]},
    {"role": "tool", "content": "2000"},
    {"role": "assistant", "content": "2000 m"}]}


def test_openai_formatting_is_read_as_llamafactorys_openai_converter_reads_it(tmp_path):
    entry = {"formatting": "openai", "columns": {"messages": "messages"}, "tags": OPENAI_TAGS}
    seen = registered(tmp_path, [OPENAI_ROW])
    assert "no prompt: 'instruction' is missing" in seen["train"]  # registered as alpaca it is not rows LLaMA-Factory can train on
    seen = registered(tmp_path / "openai", [OPENAI_ROW], entry)
    assert seen["train"] == 1 and data_gates.schema_check(seen["scan"]).passed
    (sample,) = seen["test"].samples
    call = json.dumps([{"name": "convert", "arguments": "{}"}])
    assert sample.messages == (("system", "You convert units.\ndetailed thinking off"), ("user", "2 km in m?"),
                               ("function", call), ("tool", "2000"))
    assert sample.reference == "2000 m"
    assert sample.prompt == rows.prompt_text(OPENAI_ROW, rows.DatasetSpec.from_info("x", entry, "info")[0])


def test_openai_without_tags_uses_llamafactorys_defaults_and_so_refuses_role_content_rows(tmp_path):
    seen = registered(tmp_path, [OPENAI_ROW], {"formatting": "openai", "columns": {"messages": "messages"}})
    assert "message 1 needs string 'from' and 'value' fields" in seen["train"]
    assert "message 1 needs string 'from' and 'value' fields" in data_gates.schema_check(seen["scan"]).message
    assert "message 1 needs string 'from' and 'value' fields" in seen["test"]


def test_custom_columns_give_the_same_prompt_in_training_the_scan_and_the_quality_gates(tmp_path):
    entry = {"columns": {"prompt": "question", "response": "answer"}}
    row = {"question": "What does LoRA train?", "input": "ignored: not a registered column", "answer": "adapters"}
    seen = registered(tmp_path, [row], entry)
    assert seen["train"] == 1
    (sample,) = seen["test"].samples
    assert sample.messages == (("user", "What does LoRA train?"),) and sample.reference == "adapters"
    spec = rows.DatasetSpec.from_info("rows_test", entry, "info")[0]
    assert sample.prompt == rows.prompt_text(row, spec) == "What does LoRA train?"
    leak = data_gates.leakage_check(seen["scan"], 0.0)  # the same row in both splits: found by its prompt
    assert not leak.passed and "1 exactly" in leak.message


def test_a_home_relative_path_is_the_home_directory_in_training_and_in_its_replay(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    text = yaml.safe_dump({"model_name_or_path": "base", "dataset": "d", "output_dir": "out",
                           "dataset_dir": "~/data"})
    cfg = tmp_path / "work" / "t.yaml"
    cfg.parent.mkdir()
    cfg.write_text(text)
    assert train.load_spec(cfg, cwd=cfg.parent).args["dataset_dir"] == str((home / "data").resolve())
    record = {"input_artifacts": {"config": {"content": text, "file": str(cfg), "working_dir": str(cfg.parent)}}}
    assert replay.replay_args(record, 3, tmp_path / "o")["dataset_dir"] == str((home / "data").resolve())


@pytest.mark.slow
def test_a_child_run_to_its_end_logs_its_output_and_ctrl_c_stops_its_process_group(tmp_path):
    log = tmp_path / "logs" / "child.log"
    assert run_logged([sys.executable, "-c", "print('hello\\r\\n\\nworld')"], log) == 0
    assert tail(log, 1) == "world" and tail(tmp_path / "none.log", placeholder=False) == ""
    sleeper = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"]
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        run_logged(sleeper, tmp_path / "sleep.log", grace_s=5)
    pid = int(tail(tmp_path / "sleep.log", 1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
