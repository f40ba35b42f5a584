"""``ftgate.yaml`` is validated at load: every value that names something (a backend, an engine, a dtype, a PII
kind, a metric) and every relative path's base; and the audit record is one typed view, read once per run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_ftgate import record
from pytest_ftgate.config import FtgateConfig, load_config
from pytest_ftgate.errors import ConfigError
from pytest_ftgate.publish import Publisher
from pytest_ftgate.record import ARTIFACT, AuditRecord, LoadedRecord
from pytest_ftgate.session import FtgateSession, Options, RunRef


def load(tmp_path: Path, text: str) -> FtgateConfig:
    cfg_file = tmp_path / "ftgate.yaml"
    cfg_file.write_text(text)
    return load_config(cfg_file)


@pytest.mark.parametrize("text, says", [
    ("benchmarks: {backend: hff}",
     "ftgate.yaml: benchmarks.backend 'hff' is not one of auto, hf, vllm, local-completions; did you mean 'hf'?"),
    ("benchmarks: {batch_size: 0}", "ftgate.yaml: benchmarks.batch_size must be at least 1"),
    ("data: {pii_kinds: [email, phnoe]}", "ftgate.yaml: data.pii_kinds[1] 'phnoe' is not one of email, phone, iban, "
                                          "card, pesel, dni, ssn; did you mean 'phone'?"),
    ("engine: {dtype: bfloat61}", "ftgate.yaml: engine.dtype 'bfloat61' is not one of auto, float32, float16, "
                                  "bfloat16; did you mean 'bfloat16'?"),
    ("engine: {kind: vlm}", "ftgate.yaml: engine.kind 'vlm' is not one of hf, vllm, openai; did you mean 'vllm'?"),
    ("quality: {baseline_metrics: [rouge1, rogueL]}",
     "ftgate.yaml: quality.baseline_metrics[1] 'rogueL' is not a metric the scorer produces"),
    ("quality: {thresholds: {exact_mtch: 0.5}}",
     "ftgate.yaml: quality.thresholds.exact_mtch 'exact_mtch' is not a metric the scorer produces"),
    ("quality: {thresholds: {f1: high}}", "ftgate.yaml: quality.thresholds.f1 must be a number, got 'high'"),
])
def test_a_bad_value_is_rejected_at_load_naming_the_file_and_the_dotted_key(tmp_path, text, says):
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text + "\n")
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_a_metric_typo_suggests_the_close_metric_and_the_fix(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, "quality: {baseline_metrics: [rogueL]}\n")
    assert "did you mean 'rougeL'?" in str(exc.value) and "quality.extra_metrics" in str(exc.value)


def test_the_engine_kinds_are_the_engine_registry(tmp_path, monkeypatch):
    from pytest_ftgate import serve

    monkeypatch.setitem(serve.ENGINES, "mock", "pytest_ftgate.serve.hf:HFEngine")
    assert load(tmp_path, "engine: {kind: mock}\n").engine.kind == "mock"


def test_metrics_of_an_extra_module_may_be_gated(tmp_path):
    cfg = load(tmp_path, "quality:\n  extra_metrics: [./metrics/mymetric.py]\n"
                         "  baseline_metrics: [rougeL, mymetric/score]\n  thresholds: {mymetric/score: 0.5}\n")
    assert cfg.quality.baseline_metrics == ("rougeL", "mymetric/score")
    with pytest.raises(ConfigError, match="'othermetric/score' is not a metric"):
        load(tmp_path, "quality:\n  extra_metrics: [mymetric]\n  baseline_metrics: [othermetric/score]\n")


def test_the_defaults_and_every_valid_choice_load(tmp_path):
    cfg = load(tmp_path, "benchmarks: {backend: local-completions, batch_size: 1}\n"
                         "engine: {kind: openai, dtype: float16}\ndata: {pii_kinds: [iban, ssn]}\n")
    assert (cfg.benchmarks.backend, cfg.engine.dtype, cfg.data.pii_kinds) == ("local-completions", "float16",
                                                                              ("iban", "ssn"))
    assert load_config(None) == FtgateConfig()


def test_relative_paths_are_resolved_against_the_directory_of_ftgate_yaml_wherever_pytest_runs(tmp_path,
                                                                                            monkeypatch):
    conf = tmp_path / "conf"
    (conf / "models" / "base").mkdir(parents=True)
    (conf / "models" / "base" / "config.json").write_text("{}")
    (conf / "ftgate.yaml").write_text(
        "quality: {test_set: data/test.json, base_model: models/base, cache_dir: cache/q}\n"
        "benchmarks: {include_path: [tasks, /abs/tasks], cache_dir: cache/b}\n")
    monkeypatch.chdir(tmp_path)  # the working directory is not the base
    q, b = (cfg := load_config("conf/ftgate.yaml")).quality, cfg.benchmarks
    base = conf.resolve()
    assert (q.test_set, q.base_model, q.cache_dir) == (str(base / "data/test.json"), str(base / "models/base"),
                                                       str(base / "cache/q"))
    assert (b.include_path, b.cache_dir) == ((str(base / "tasks"), "/abs/tasks"), str(base / "cache/b"))


def test_a_home_relative_path_is_the_home_directory_s(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = load(tmp_path, "quality: {test_set: ~/data/test.json}\n")
    assert cfg.quality.test_set == str(tmp_path / "home" / "data" / "test.json")


def test_a_typo_in_baseline_metrics_is_a_usage_error_of_pytest_in_one_line_not_a_blocked_g4(pytester):
    cfg = pytester.makefile(".yaml", ftgate="quality:\n  baseline_metrics: [rouge1, rogueL, f1]\n")
    result = pytester.runpytest("--ftgate-config", str(cfg))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    said = [line for line in result.errlines if "baseline_metrics" in line]
    assert len(said) == 1 and "quality.baseline_metrics[1] 'rogueL' is not a metric the scorer produces" in said[0]
    assert "did you mean 'rougeL'?" in said[0]
    assert "Traceback" not in "\n".join(result.outlines + result.errlines)
    assert not (pytester.path / "ftgate-results" / "verdicts").exists() or not any(
        (pytester.path / "ftgate-results" / "verdicts").iterdir())


# -- the audit record: one typed view, one read per run per session -------------------------------------------
def test_the_view_answers_every_accessor_of_a_complete_record():
    rec = {"run_id": "r", "provenance": "adopted", "adopted": {"by": "ftgate adopt"},
           "input_artifacts": {
               "base_model": {"path": "/m", "hash": "sha256:" + "0" * 64, "files": [{"name": "config.json"}]},
               "datasets": [{"name": "d", "split": "train", "sha256": "sha256:t"},
                            {"name": "e", "split": "test", "path": "/t.json"}],
               "dataset_info": {"path": "/i.json", "entries": ["d"], "sha256": "sha256:i"},
               "config": {"file": "c.yaml", "sha256": "sha256:c", "content": "a: 1\n", "working_dir": "/w"}},
           "output_artifacts": {"adapter": {"artifact_path": "adapter", "files": [{"name": "a"}], "sha256": "s"}},
           "reproducibility": {"seeds": {"seed": 42}}}
    v = LoadedRecord(rec).view
    assert (v.run_id, v.provenance, v.adopted, v.base_model_path, v.base_model_files) == (
        "r", "adopted", {"by": "ftgate adopt"}, "/m", [{"name": "config.json"}])
    assert (v.test_dataset["name"], v.train_sha256, v.dataset_info_entries, v.dataset_info_sha256) == (
        "e", "sha256:t", ["d"], "sha256:i")
    assert (v.config_file, v.config_content, v.working_dir, v.adapter_files, v.adapter_sha256, v.seeds) == (
        "c.yaml", "a: 1\n", "/w", [{"name": "a"}], "s", {"seed": 42})
    assert record.training_config(v) == {"a": 1}


@pytest.mark.parametrize("rec", [None, {}, {"input_artifacts": []}, {"input_artifacts": {"datasets": "x",
                                 "base_model": "m", "config": {"content": 3}}, "output_artifacts": {"adapter": 1}},
                                 {"input_artifacts": {"datasets": [1, None]}}])
def test_the_view_of_a_malformed_record_answers_empty_values_for_g6_to_report(rec):
    v = AuditRecord.of(rec)
    assert (v.datasets, v.test_dataset, v.base_model_path, v.base_model_files, v.adapter_files) == (
        [], None, "", [], [])
    assert (v.config_content, v.dataset_info_path, v.adapter_artifact_path, v.train_sha256) == (
        None, None, "adapter", "")


class CountingStore:
    """The few RunStore calls the record reading makes, counting downloads of the audit artifact."""

    def __init__(self, tmp: Path, records: dict[str, dict]):
        self.tmp, self.records, self.downloads = tmp, records, []
        self.client = self

    def get_run(self, run_id):
        class Run:  # noqa: D401 - the shape of mlflow's Run that session._params reads
            class data:
                params = {"seed": "42"}
        return Run

    def list_artifacts(self, run_id, path=""):
        return [ARTIFACT] if run_id in self.records else []

    def download(self, run_id, artifact, dst):
        self.downloads.append((run_id, artifact))
        out = Path(dst) / Path(artifact).name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.records[run_id]))
        return out


def test_the_audit_record_is_downloaded_once_per_run_per_session(tmp_path):
    store = CountingStore(tmp_path, {"r1": {"run_id": "r1"}, "r2": {"run_id": "r2"}})
    sess = FtgateSession(Options(root=str(tmp_path), out=str(tmp_path / "out")), FtgateConfig(), echo=lambda _: None)
    sess._store = store
    first = sess.audit_record("r1", {"seed": "42"})
    assert sess.audit_record("r1") is first and first.view.run_id == "r1" and first.params == {"seed": "42"}
    notes: list[str] = []
    assert Publisher(sess, echo=lambda _: None)._audit(RunRef("r1", "r1"), {}, notes) == {"run_id": "r1"}
    assert sess.audit_record("r2").params == {"seed": "42"}  # read from the store when not given
    assert store.downloads == [("r1", ARTIFACT), ("r2", ARTIFACT)] and notes == []


def test_a_run_without_a_record_is_no_note_and_an_unreadable_one_is(tmp_path):
    store = CountingStore(tmp_path, {"bad": "not an object"})
    sess = FtgateSession(Options(root=str(tmp_path), out=str(tmp_path / "out")), FtgateConfig(), echo=lambda _: None)
    sess._store = store
    notes: list[str] = []
    pub = Publisher(sess, echo=lambda _: None)
    assert pub._audit(RunRef("none", "none"), {}, notes) is None and notes == []
    assert sess.audit_record("none").absent
    assert pub._audit(RunRef("bad", "bad"), {}, notes) is None
    assert len(notes) == 1 and "is a JSON str, not an object" in notes[0]
