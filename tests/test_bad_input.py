"""Bad input and faults (issue 15): each gives one clear line naming the thing at fault and the fix — never a
traceback, never a silently wrong result.

Pure unit tests of the checks first (config, MLflow store, test set, engines, base model); then sessions run as a
user runs them (`python -m pytest suites ...` in a subprocess), asserting the exit code and what the terminal shows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from pytest_ftgate import predict
from pytest_ftgate.config import Engine, load_config
from pytest_ftgate.errors import (
    ConfigError,
    DataError,
    EngineError,
    RunUnavailable,
    StoreError,
)
from pytest_ftgate.record import load_record
from pytest_ftgate.store import RunStore

from . import histories as H
from .mlflow_runs import make_run

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "suites"
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^E   |^>   ", re.M)


def one_line(message: str) -> str:
    assert "\n" not in message, message
    return message


# -- ftgate.yaml: unknown gate ids, bad_rows, base_model ------------------------------------------------------------
def test_an_unknown_gate_id_is_an_error_naming_the_file_the_key_and_a_close_id(tmp_path):
    cfg_file = tmp_path / "ftgate.yaml"
    cfg_file.write_text("gates: {G2: warn, G22: block}\n")
    cfg = load_config(cfg_file)
    with pytest.raises(ConfigError) as exc:
        cfg.check_gate_ids(["G1", "G2", "G3", "bench:demo_mc", "integrity"])
    msg = one_line(str(exc.value))
    assert msg.startswith("ftgate.yaml: gates.G22: unknown gate id; did you mean 'G2'?")
    assert "(gates the suites define: G1, G2, G3, bench:demo_mc, integrity)" in msg


def test_a_gate_id_close_to_none_is_still_an_error_listing_the_known_ids(tmp_path):
    cfg_file = tmp_path / "ftgate.yaml"
    cfg_file.write_text("gates: {G99: block}\n")
    with pytest.raises(ConfigError, match=r"gates\.G99: unknown gate id \(gates the suites define: G1, G2\)"):
        load_config(cfg_file).check_gate_ids(["G2", "G1", "G1"])
    load_config(cfg_file).check_gate_ids(["G99", "G1"])  # a suite of the user's own that defines G99


def test_bad_rows_and_base_model_are_validated_at_load(tmp_path):
    cfg_file = tmp_path / "ftgate.yaml"
    cfg_file.write_text("quality: {bad_rows: skip}\n")
    with pytest.raises(ConfigError, match="quality.bad_rows 'skip' is not one of error, warn"):
        load_config(cfg_file)
    cfg_file.write_text("quality: {base_model: models/base}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(cfg_file)
    assert f"ftgate.yaml: quality.base_model '{tmp_path / 'models' / 'base'}' is not a model directory" in str(
        exc.value)  # as resolved against the config file
    (tmp_path / "models" / "base").mkdir(parents=True)
    (tmp_path / "models" / "base" / "config.json").write_text("{}")
    assert load_config(cfg_file).quality.base_model == str(tmp_path / "models" / "base")  # relative to the file


# -- the MLflow store -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sqlite store with run r1 in experiment exp-a and r2 in exp-b."""
    root = tmp_path_factory.mktemp("bad-input-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    r1 = make_run(uri, "r1", H.clean(), experiment="exp-a")
    r2 = make_run(uri, "r2", H.clean(), experiment="exp-b")
    return uri, root, r1, r2


def test_a_sqlite_store_that_does_not_exist_is_an_error_naming_the_resolved_path_and_creates_nothing(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunUnavailable) as exc:
        RunStore("sqlite:///nonexistent/dir/mlflow.db").resolve("0" * 32)
    msg = one_line(str(exc.value))
    assert f"the MLflow store {tmp_path / 'nonexistent/dir/mlflow.db'} does not exist" in msg
    assert "never creates an empty one" in msg and "--ftgate-train" in msg
    with pytest.raises(RunUnavailable, match="does not exist"):
        RunStore("sqlite:///here.db").resolve("some-run-name")
    assert not (tmp_path / "nonexistent").exists() and not (tmp_path / "here.db").exists()


@pytest.mark.slow
def test_training_creates_a_missing_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    RunStore(uri, create=True).check()  # a store that may be created: nothing to say yet
    assert RunStore(uri, "exp").experiment_id(create=True)  # what train.ensure_trained calls first
    assert RunStore(uri, "exp").experiment_id()  # now it exists and gating reads it


@pytest.mark.parametrize("content, says", [
    (b"this is a text file, not a database" * 4, "is not an SQLite database (it does not start with 'SQLite format 3'"),
    (b"", "is an empty file (0 bytes), not an MLflow store"),
    (b"SQLite format 3\x00" + b"\x00" * 200, "is a damaged SQLite database"),
])
def test_a_corrupt_store_says_what_the_file_is_and_what_to_do(tmp_path, content, says):
    db = tmp_path / "mlflow.db"
    db.write_bytes(content)
    with pytest.raises(StoreError) as exc:
        RunStore(f"sqlite:///{db}").check()
    msg = one_line(str(exc.value))
    assert says in msg and str(db) in msg and "does not answer" not in msg
    assert "restore it from a backup" in msg


def test_a_sqlite_database_that_is_not_an_mlflow_store_is_named_so(tmp_path):
    db = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE notes (x)")
        con.commit()
    with pytest.raises(RunUnavailable, match="is an SQLite database but not an MLflow store"):
        RunStore(f"sqlite:///{db}").resolve("0" * 32)


def test_an_experiment_that_does_not_exist_is_an_error_naming_experiment_run_and_fix(store):
    uri, _, r1, _ = store
    with pytest.raises(RunUnavailable) as exc:
        RunStore(uri, "exp-aa").resolve(r1)
    msg = one_line(str(exc.value))
    assert msg.startswith(f"run {r1!r}: experiment 'exp-aa' (--ftgate-experiment) does not exist")
    assert "did you mean 'exp-a'?" in msg and "fix --ftgate-experiment, or leave it out" in msg
    with pytest.raises(RunUnavailable, match="experiment 'nosuchexp' .* does not exist"):
        RunStore(uri, "nosuchexp").resolve("r1")


def test_a_run_outside_the_named_experiment_is_an_error_naming_where_it_is(store):
    uri, _, r1, r2 = store
    assert RunStore(uri, "exp-a").resolve(r1) == (r1, "r1")
    assert RunStore(uri, "exp-a").resolve("r1") == (r1, "r1")
    with pytest.raises(RunUnavailable) as exc:
        RunStore(uri, "exp-b").resolve(r1)
    msg = one_line(str(exc.value))
    assert "the run is in experiment 'exp-a', not in 'exp-b'" in msg and "pass --ftgate-experiment exp-a" in msg
    with pytest.raises(RunUnavailable, match="no run with this id or name in experiment 'exp-a'"):
        RunStore(uri, "exp-a").resolve("r2")
    assert RunStore(uri).resolve(r2) == (r2, "r2")  # no experiment named: every experiment


@contextlib.contextmanager
def immutable(path: Path):
    """``chattr +i`` (root ignores chmod); a plain user without CAP_LINUX_IMMUTABLE gets chmod a-w instead."""
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    if not done:
        if os.geteuid() == 0:
            pytest.skip("chattr +i is refused here and root ignores chmod: no way to make a read-only store")
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
    try:
        yield
    finally:
        if done:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(mode)


def test_a_writable_store_passes_the_write_probe_and_keeps_no_trace(store):
    uri, root, _, _ = store
    RunStore(uri).check_writable()
    with contextlib.closing(sqlite3.connect(root / "mlflow.db")) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "ftgate_write_probe" not in tables and "experiments" in tables


def copy_of(store, directory: Path) -> str:
    shutil.copy(store[1] / "mlflow.db", directory / "mlflow.db")
    return f"sqlite:///{directory / 'mlflow.db'}"


@pytest.mark.parametrize("what", ["file", "directory"])
def test_a_read_only_store_fails_the_write_probe_in_one_line(store, tmp_path, what):
    uri = copy_of(store, tmp_path)
    with immutable(tmp_path / "mlflow.db" if what == "file" else tmp_path):
        RunStore(uri).resolve("r1")  # reading still works ...
        with pytest.raises(StoreError) as exc:
            RunStore(uri).check_writable()  # ... writing the verdict would not
    msg = one_line(str(exc.value))
    assert f"the MLflow store {tmp_path / 'mlflow.db'} cannot be written" in msg
    assert "the verdict could not be recorded there" in msg and "writable --ftgate-tracking-uri" in msg


def test_a_tracking_server_that_is_down_fails_the_write_probe_saying_it_does_not_answer():
    with pytest.raises(StoreError) as exc:
        RunStore(f"http://127.0.0.1:{closed_port()}").check_writable()
    assert one_line(str(exc.value)).endswith("does not answer (connection refused or timed out): start the server "
                                             "or fix --ftgate-tracking-uri")


def test_a_store_directory_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(StoreError, match=f"the MLflow store directory {tmp_path / 'gone'} does not exist"):
        RunStore((tmp_path / "gone").as_uri()).check()


# -- engines and the base model ---------------------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_openai_engine_on_a_closed_port_says_nothing_listens_and_names_the_key(tmp_path):
    from pytest_ftgate.serve.openai import OpenAIEngine

    url = f"http://127.0.0.1:{closed_port()}/v1"
    engine = OpenAIEngine(str(tmp_path), Engine(kind="openai", base_url=url, base_model_name="base"))
    with pytest.raises(EngineError) as exc:
        engine.start()
    msg = one_line(str(exc.value))
    assert msg == (f"openai engine: {url}/models refused the connection: nothing listens on that port; start the "
                   "server (vllm serve ..., llamafactory-cli api ...) or fix engine.base_url in ftgate.yaml")


def test_a_base_model_that_moved_names_where_the_path_came_from_and_the_fix(tmp_path):
    audit = {"input_artifacts": {"base_model": {"path": str(tmp_path / "moved-away")}}}
    with pytest.raises(DataError) as exc:
        predict.base_model_path(audit, {}, None, required=True)
    msg = one_line(str(exc.value))
    assert (f"the run's base model '{tmp_path / 'moved-away'}' (from the run's audit record, "
            "input_artifacts.base_model.path) does not exist on this machine (moved or not copied here)") in msg
    assert "set quality.base_model: " in msg
    with pytest.raises(DataError, match="from the run's param model_name_or_path"):
        predict.base_model_path(None, {"model_name_or_path": str(tmp_path / "gone")}, None, required=True)
    new = tmp_path / "new-place"
    new.mkdir()
    (new / "config.json").write_text("{}")
    assert predict.base_model_path(audit, {}, None, override=str(new), required=True) == str(new)
    assert predict.base_model_path(audit, {}, None) == str(tmp_path / "moved-away")  # a server may know the name


# -- sessions as a user runs them (in-process pytester: `pytest suites ...` in a fresh directory) --------------------
def session(pytester, *args: str, suites=("test_training.py",), config: str | None = None):
    """`pytest suites ...` in ``pytester.path`` (the rootdir; its ftgate.yaml = ``config``)."""
    d = pytester.path / "suites"
    d.mkdir(exist_ok=True)
    for suite in suites:
        shutil.copy(SUITES / suite, d / suite)
    pytester.makeini("[pytest]\n")
    if config is not None:
        (pytester.path / "ftgate.yaml").write_text(config)
    return pytester.runpytest("suites", "-p", "no:cacheprovider", "-q", "--ftgate-out", "out", *args)


def output(result) -> str:
    return "\n".join(result.outlines + result.errlines)


def test_an_unknown_gate_id_in_ftgate_yaml_is_a_usage_error_in_one_line(pytester, store):
    uri, _, r1, _ = store
    result = session(pytester, "--ftgate-tracking-uri", uri, "--run-id", r1, config="gates: {G99: block}\n")
    out = output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out[-3000:]
    assert out.count("ftgate.yaml: gates.G99: unknown gate id (gates the suites define: G1, G2, G3, resources)") == 1
    assert not TRACEBACK.search(out)


def test_an_empty_safety_prompt_set_is_a_usage_error_naming_the_file_before_any_gate(pytester, store):
    uri, _, r1, _ = store
    (pytester.path / "mine.json").write_text("[]")
    result = session(pytester, "--ftgate-tracking-uri", uri, "--run-id", r1, suites=("test_training.py",
                     "test_safety.py"), config="safety:\n  toxicity_prompts: mine.json\n")
    out = output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out[-3000:]
    assert out.count(f"ftgate.yaml: safety.toxicity_prompts '{pytester.path / 'mine.json'}' is empty; point "
                     "safety.toxicity_prompts in ftgate.yaml at a JSON list of prompts (strings)") == 1
    assert not TRACEBACK.search(out) and "passed" not in out


@pytest.mark.parametrize("experiment, says", [
    ("nosuchexp", "experiment 'nosuchexp' (--ftgate-experiment) does not exist in"),
    ("exp-b", "the run is in experiment 'exp-a', not in 'exp-b' (--ftgate-experiment); pass --ftgate-experiment exp-a"),
])
def test_a_wrong_experiment_is_one_usage_error_naming_experiment_run_and_fix(pytester, store, experiment, says):
    uri, _, r1, _ = store
    result = session(pytester, "--ftgate-tracking-uri", uri, "--run-id", r1, "--ftgate-experiment", experiment)
    out = output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out[-3000:]
    assert out.count(f"run {r1!r}: {says}") == 1 and not TRACEBACK.search(out)
    assert not (pytester.path / "out" / "verdicts" / f"{r1}.json").exists()  # the run was not gated


def test_gating_a_sqlite_store_that_does_not_exist_is_a_usage_error_and_creates_nothing(pytester):
    result = session(pytester, "--ftgate-tracking-uri", "sqlite:///nonexistent/dir/mlflow.db", "--run-id", "r1")
    out = output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out[-3000:]
    assert out.count(f"the MLflow store {pytester.path / 'nonexistent/dir/mlflow.db'} does not exist") == 1
    assert not (pytester.path / "nonexistent").exists() and not TRACEBACK.search(out)


def test_gating_a_corrupt_store_says_it_is_not_an_sqlite_database(pytester):
    (pytester.path / "mlflow.db").write_text("not a database\n" * 20)
    result = session(pytester, "--ftgate-tracking-uri", "sqlite:///mlflow.db", "--run-id", "r1")
    out = output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out[-3000:]
    assert out.count(f"{pytester.path / 'mlflow.db'} is not an SQLite database") == 1
    assert "does not answer" not in out and not TRACEBACK.search(out)


def test_a_read_only_store_is_an_error_before_gating_starts(pytester, store, tmp_path):
    uri = copy_of(store, tmp_path)
    with immutable(tmp_path / "mlflow.db"):
        result = session(pytester, "--ftgate-tracking-uri", uri, "--run-id", store[2])
    out = output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out[-3000:]
    assert out.count(f"the MLflow store {tmp_path / 'mlflow.db'} cannot be written") == 1
    assert "passed" not in out and not TRACEBACK.search(out)  # no gate ran


def test_a_run_that_crashed_at_step_0_fails_g1_saying_so(pytester, store):
    uri, _, _, _ = store
    crashed = make_run(uri, "crashed", {"system/cpu_utilization_percentage": [(0, 90.0)]},
                       params={"logging_steps": "5"})
    result = session(pytester, "--ftgate-tracking-uri", uri, "--run-id", crashed, "-k", "G1")
    out = output(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-3000:]
    assert "training stopped at step 0, before its first logging step" in out and "when the config sets" not in out


# -- the quality gates on the demo run (train once per test session) ------------------------------------------------
def bad_test_set(path: Path, demo_run) -> Path:
    """The demo run's recorded test rows, 10 of them, with rows 3 and 8 broken (no output; no prompt)."""
    record = load_record(demo_run.store(), demo_run.run_id, path.parent / "audit").record
    rows = json.loads(Path(predict.recorded_test_file(record)["path"]).read_text())[:10]
    assert len(rows) == 10 and all("instruction" in r for r in rows), rows[:2]
    rows[2] = {**rows[2], "output": ""}
    rows[7] = {k: v for k, v in rows[7].items() if k not in ("instruction", "input")}
    path.write_text(json.dumps(rows))
    return path


def copied_store(demo_run, work: Path) -> str:
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(demo_run.tracking_uri.removeprefix("sqlite:///")), work / "mlflow.db")
    return f"sqlite:///{work / 'mlflow.db'}"


@pytest.mark.slow
def test_a_test_set_with_bad_rows_errors_the_quality_gates_before_any_model_loads(demo_run, pytester, tmp_path):
    uri = copied_store(demo_run, tmp_path)
    bad = bad_test_set(tmp_path / "bad.json", demo_run)
    result = session(pytester, "--ftgate-tracking-uri", uri, "--run-id", demo_run.run_id, "--ftgate-test-set",
                     str(bad), "--setup-show", suites=("test_training.py", "test_quality.py"), config="")
    out = output(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-4000:]
    line = f"test set {str(bad)!r}: 2 of 10 rows cannot be scored: row 3: no reference answer"
    assert line in out and "row 8: no prompt" in out and "quality.bad_rows: warn" in out
    assert "engine_pool" not in out and "SETUP    S engine " not in out  # no model was loaded
    verdict = json.loads((pytester.path / "out" / "verdicts" / f"{demo_run.run_id}.json").read_text())
    outcomes = {g["id"]: g["outcome"] for g in verdict["gates"]}
    assert {outcomes[g] for g in ("G4", "G5", "adapter_applied", "determinism")} == {"error"}, outcomes
    assert outcomes["G1"] == "passed"  # the other gates still ran
    assert all("2 of 10 rows cannot be scored" in g["message"] for g in verdict["gates"] if g["outcome"] == "error")


@pytest.mark.slow
def test_a_bad_test_set_shows_one_line_per_quality_gate_and_no_traceback(demo_run, pytester, tmp_path):
    uri = copied_store(demo_run, tmp_path)
    bad = tmp_path / "latin1.json"
    bad.write_bytes('[{"instruction": "caf\u00e9", "output": "b"}]'.encode("latin-1"))
    result = session(pytester, "--ftgate-tracking-uri", uri, "--run-id", demo_run.run_id, "--ftgate-test-set",
                     str(bad), suites=("test_quality.py",), config="")
    out = output(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-4000:]
    assert out.count("is not UTF-8 text (byte 0xe9") >= 4 and "UnicodeDecodeError" not in out
    assert not TRACEBACK.search(out)


@pytest.mark.slow
def test_the_openai_engine_on_a_closed_port_errors_the_quality_gates_in_one_line(demo_run, pytester, tmp_path):
    uri = copied_store(demo_run, tmp_path)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    result = session(pytester, "--ftgate-tracking-uri", uri, "--run-id", demo_run.run_id, "--ftgate-engine",
                     "openai", suites=("test_quality.py",),
                     config=f"engine: {{base_url: '{url}', base_model_name: base}}\n")
    out = output(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-4000:]
    assert f"openai engine: {url}/models refused the connection: nothing listens on that port" in out
    assert not TRACEBACK.search(out)
    verdict = json.loads((pytester.path / "out" / "verdicts" / f"{demo_run.run_id}.json").read_text())
    assert {g["outcome"] for g in verdict["gates"]} == {"error"}


@contextlib.contextmanager
def moved(directory: Path):
    """``directory`` moved away for the duration (the demo's base model: put back for the other tests)."""
    away = directory.with_name(directory.name + "-moved")
    directory.rename(away)
    try:
        yield away
    finally:
        away.rename(directory)


@pytest.mark.slow
def test_a_base_model_that_moved_errors_the_quality_gates_naming_the_record_and_the_key(demo_run, pytester, tmp_path):
    uri = copied_store(demo_run, tmp_path)
    with moved(demo_run.base_model_dir):
        result = session(pytester, "--ftgate-tracking-uri", uri, "--run-id", demo_run.run_id,
                         suites=("test_quality.py",), config="")
    out = output(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-4000:]
    assert (f"the run's base model '{demo_run.base_model_dir}' (from the run's audit record, "
            "input_artifacts.base_model.path) does not exist on this machine") in out
    assert "set quality.base_model: " in out and not TRACEBACK.search(out)


@pytest.mark.slow
def test_quality_base_model_finds_a_moved_base_and_bad_rows_warn_shows_in_the_verdict(demo_run, pytester, tmp_path):
    uri = copied_store(demo_run, tmp_path)
    bad = bad_test_set(tmp_path / "bad.json", demo_run)
    with moved(demo_run.base_model_dir) as away:
        result = session(pytester, "--ftgate-tracking-uri", uri, "--run-id", demo_run.run_id, "--ftgate-test-set",
                         str(bad), "-k", "G4 or G5", suites=("test_quality.py",),
                         config=f"quality: {{bad_rows: warn, base_model: '{away}'}}\n")
    out = output(result)
    verdict = json.loads((pytester.path / "out" / "verdicts" / f"{demo_run.run_id}.json").read_text())
    gates = {g["id"]: g for g in verdict["gates"]}
    assert {gates[g]["outcome"] for g in ("G4", "G5")} <= {"passed", "failed"}, out[-4000:]  # gated, not errored
    for g in ("G4", "G5"):
        assert f"WARNING: test set {bad}: 2 row(s) left out, not scored (quality.bad_rows: warn)" in gates[g]["message"]
        assert "row 3: no reference answer" in gates[g]["message"] and gates[g]["label"]
