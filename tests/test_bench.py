"""Unit tests of the benchmark gate (bench:<task>) and of how lm-eval is configured, without running a model."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_ftgate import lmeval

from pytest_ftgate.gates import benchmarks as bench_gates
from pytest_ftgate.config import Engine, load_config
from pytest_ftgate.errors import BenchmarkError, ConfigError

TASKS = Path(__file__).resolve().parents[1] / "fixtures" / "lm_eval_tasks"


def result(side: str, value: float, stderr, metric: str = "acc", task: str = "t", higher: bool = True,
           cached: bool = False) -> lmeval.TaskResult:
    scores = {"alias": task, f"{metric},none": value, f"{metric}_stderr,none": stderr}
    return lmeval.TaskResult(task, side, {"results": {task: scores}, "higher_is_better": {task: {metric: higher}},
                                         "n-samples": {task: {"original": 40, "effective": 40}},
                                         "n-shot": {task: 0}}, cached=cached)


# -- the gate --------------------------------------------------------------------------------------------
def test_an_adapter_better_than_its_base_model_passes():
    check = bench_gates.regression("t", result("candidate", 0.9, 0.05), result("base", 0.25, 0.07))
    assert check.passed and check.value == 0.9
    assert check.details["difference"] == pytest.approx(0.65)


def test_a_drop_larger_than_the_margin_in_stderr_units_blocks_and_names_both_values():
    se = math.sqrt(0.03 ** 2 + 0.04 ** 2)  # 0.05
    check = bench_gates.regression("mmlu", result("candidate", 0.39, 0.03, task="mmlu"),
                             result("base", 0.5, 0.04, task="mmlu"), margin=2.0)
    assert not check.passed
    assert check.details["stderr"] == pytest.approx(se)
    assert "0.39" in check.message and "0.5" in check.message and "-0.11" in check.message
    assert "more than 2 x stderr = 0.1" in check.message
    assert check.threshold.startswith(">= 0.4 ")


def test_a_drop_within_the_margin_passes_and_a_tighter_margin_blocks_it():
    cand, base = result("candidate", 0.45, 0.03), result("base", 0.5, 0.04)  # 1 stderr below
    assert bench_gates.regression("t", cand, base, margin=2.0).passed
    assert not bench_gates.regression("t", cand, base, margin=0.5).passed


def test_a_lower_is_better_metric_blocks_when_it_rises():
    cand = result("candidate", 30.0, 1.0, metric="word_perplexity", higher=False)
    base = result("base", 20.0, 1.0, metric="word_perplexity", higher=False)
    check = bench_gates.regression("t", cand, base)
    assert not check.passed and check.threshold.startswith("<= ")
    assert bench_gates.regression("t", base, cand).passed


def test_a_missing_stderr_counts_as_zero_and_is_said_so():
    check = bench_gates.regression("t", result("candidate", 0.5, "N/A"), result("base", 0.5, "N/A"))
    assert check.passed and check.details["stderr"] == 0.0 and "counts as 0" in check.details["note"]
    assert not bench_gates.regression("t", result("candidate", 0.49, "N/A"), result("base", 0.5, "N/A")).passed


def test_a_metric_the_task_does_not_report_is_an_error_listing_the_ones_it_does():
    with pytest.raises(BenchmarkError, match="no metric 'f1'.*acc,none"):
        bench_gates.regression("t", result("candidate", 0.5, 0.1), result("base", 0.5, 0.1), metric="f1")


def test_a_metric_is_found_by_its_short_name_or_lm_evals_key():
    r = result("candidate", 0.5, 0.1, metric="exact_match")
    assert r.metric("exact_match").name == r.metric("exact_match,none").name == "exact_match,none"
    assert r.metric().name == "exact_match,none"


def test_metric_keys_on_the_mlflow_run_are_bench_task_metric():
    assert lmeval.metric_key("mmlu", "acc,none") == "bench.mmlu.acc"
    assert lmeval.metric_key("gsm8k", "exact_match,strict-match") == "bench.gsm8k.exact_match.strict-match"
    assert lmeval.metric_key("a::b", "acc,none") == "bench.a__b.acc"


def test_mlflow_being_down_is_reported_not_raised(tmp_path, monkeypatch):
    from pytest_ftgate.store import RunStore

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"doc_id": 0}) + "\n")
    cand = replace(result("candidate", 0.9, 0.05), samples_path=str(samples))
    base = replace(result("base", 0.2, 0.05), samples_path=str(samples))
    problem = lmeval.log_to_run(RunStore("http://127.0.0.1:9"), "0" * 32, "t", cand, base, tmp_path)
    assert problem.startswith("not written to MLflow run 000")


# -- configuration of lm-eval ------------------------------------------------------------------------------
def test_the_full_completions_url_is_built_from_a_server_root_or_v1():
    for url in ("http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/completions"):
        assert lmeval.completions_url(url) == "http://h:8000/v1/completions"


def write_adapter_config(d: Path, **cfg) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA", **cfg}))
    return d


def test_vllm_gets_the_adapters_rank_rounded_up_to_one_it_accepts(tmp_path):
    assert lmeval.vllm_lora_rank(write_adapter_config(tmp_path / "a", r=8)) == 8
    assert lmeval.vllm_lora_rank(write_adapter_config(tmp_path / "b", r=12)) == 16
    assert lmeval.vllm_lora_rank(write_adapter_config(tmp_path / "c", r=32, rank_pattern={"q_proj": 48})) == 64


def test_vllm_refuses_an_adapter_with_modules_to_save_naming_the_fix(tmp_path):
    d = write_adapter_config(tmp_path / "a", modules_to_save=["lm_head"])
    with pytest.raises(BenchmarkError, match=r"modules_to_save.*llamafactory-cli export"):
        lmeval.vllm_lora_rank(d)


def test_each_backend_gets_the_model_args_lm_eval_expects(tmp_path):
    adapter = write_adapter_config(tmp_path / "adapter", r=64)
    cand = lmeval.Side("candidate", "/m/base", "sha256:b", str(adapter), "sha256:a")
    base = lmeval.Side("base", "/m/base", "sha256:b")
    hf = lmeval.Settings(backend="hf")
    assert lmeval.model_args(hf, cand) == ("hf", {"pretrained": "/m/base", "dtype": "float32", "device": "cpu",
                                                 "trust_remote_code": False, "peft": str(adapter)})
    assert "peft" not in lmeval.model_args(hf, base)[1]
    kind, args = lmeval.model_args(lmeval.Settings(backend="vllm", dtype="bfloat16", device="cuda"), cand)
    assert kind == "vllm" and args["lora_local_path"] == str(adapter) and args["max_lora_rank"] == 64
    assert "lora_local_path" not in lmeval.model_args(lmeval.Settings(backend="vllm"), base)[1]
    engine = Engine(kind="openai", base_url="http://h:1/v1", adapter_model_name="run-x", base_model_name="base",
                    base_model_url="http://h:2")
    s = lmeval.Settings(backend="local-completions", engine=engine)
    kind, args = lmeval.model_args(s, cand)
    assert (kind, args["model"], args["base_url"]) == ("local-completions", "run-x", "http://h:1/v1/completions")
    assert args["tokenizer_backend"] == "huggingface" and args["tokenizer"] == "/m/base"  # never the hub
    assert lmeval.model_args(s, base)[1]["base_url"] == "http://h:2/v1/completions"
    with pytest.raises(BenchmarkError, match="engine.base_model_name"):
        lmeval.model_args(replace(s, engine=replace(engine, base_model_name="")), base)


def config(tmp_path: Path, text: str):
    p = tmp_path / "ftgate.yaml"
    p.write_text(text)
    return load_config(p)


def test_the_backend_follows_the_engine_unless_set(tmp_path):
    assert lmeval.settings_from_config(config(tmp_path, "engine: {kind: hf}\n"), cuda=False).backend == "hf"
    s = lmeval.settings_from_config(config(tmp_path, "engine: {kind: vllm}\n"))
    assert (s.backend, s.session_server) == ("local-completions", True)  # the session's own vLLM server
    s = lmeval.settings_from_config(config(tmp_path, "engine: {kind: vllm}\nbenchmarks: {backend: vllm}\n"))
    assert (s.backend, s.session_server) == ("vllm", False)  # lm-eval's own vllm backend, in the vLLM venv
    cfg = config(tmp_path, "engine: {kind: openai, base_url: 'http://h:8000/v1'}\n")
    s = lmeval.settings_from_config(cfg)
    assert s.backend == "local-completions" and s.engine.base_url == "http://h:8000/v1"
    assert lmeval.settings_from_config(config(tmp_path, "benchmarks: {backend: hf}\n"), "vllm", cuda=False
                                      ).backend == "hf"


def test_a_bad_backend_or_batch_size_is_rejected_naming_the_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match=r"ftgate.yaml: benchmarks.backend 'vlm'"):
        lmeval.settings_from_config(config(tmp_path, "benchmarks: {backend: vlm}\n"))
    with pytest.raises(ConfigError, match="benchmarks.batch_size"):
        lmeval.settings_from_config(config(tmp_path, "benchmarks: {batch_size: 0}\n"))
    with pytest.raises(ConfigError, match="engine.base_url"):
        lmeval.settings_from_config(config(tmp_path, "benchmarks: {backend: local-completions}\n"))


def test_each_configured_task_gets_its_own_gate_id_and_severity(tmp_path):
    cfg = config(tmp_path, "benchmarks:\n  tasks:\n    - {name: mmlu, num_fewshot: 5}\n    - {name: mmlu}\n"
                           "    - {name: arc_easy, severity: warn}\n    - {name: demo_mc}\n"
                           "gates: {'bench:demo_mc': info}\n")
    specs = [(label, gate_id, sev) for label, gate_id, sev, _ in lmeval.gate_specs(cfg)]
    assert specs == [("mmlu@5shot", "bench:mmlu@5shot", "block"), ("mmlu@0shot", "bench:mmlu@0shot", "block"),
                     ("arc_easy", "bench:arc_easy", "warn"), ("demo_mc", "bench:demo_mc", "info")]


def test_the_result_cache_ignores_a_corrupt_or_foreign_entry(tmp_path):
    cache = lmeval.ResultCache(tmp_path)
    samples = tmp_path / "x.jsonl"
    samples.write_text("{}\n")
    path = cache.put("k1", {"ftgate": {"cache_key": "k1"}, "results": {}}, str(samples))
    assert cache.get("k1") == ({"ftgate": {"cache_key": "k1"}, "results": {}}, path)
    (tmp_path / "k2.json").write_text("{not json")
    (tmp_path / "k2.samples.jsonl").write_text("")
    assert cache.get("k2") is None and cache.get("missing") is None
    (tmp_path / "k1.json").rename(tmp_path / "k3.json")
    (tmp_path / "k1.samples.jsonl").rename(tmp_path / "k3.samples.jsonl")
    assert cache.get("k3") is None  # written for another key


# -- tasks ---------------------------------------------------------------------------------------------------
def test_relative_data_files_are_read_next_to_the_task_yaml():
    cfg = lmeval.task_config(TASKS / "demo_gen.yaml")
    files = cfg["dataset_kwargs"]["data_files"]
    assert files["test"] == str((TASKS.parent / "data" / "translate_test.json").resolve())


def test_missing_task_data_is_an_error_naming_the_path(tmp_path):
    (tmp_path / "t.yaml").write_text("task: mine\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                                     "    test: data/missing.jsonl\ntest_split: test\noutput_type: generate_until\n"
                                     "doc_to_text: '{{q}}'\ndoc_to_target: '{{a}}'\n")
    with pytest.raises(BenchmarkError, match=r"mine.*data file .*data/missing.jsonl does not exist"):
        lmeval.TaskCatalog([tmp_path]).load("mine")


def test_a_missing_include_path_is_named(tmp_path):
    with pytest.raises(BenchmarkError, match="benchmarks.include_path .*nowhere"):
        lmeval.TaskCatalog([tmp_path / "nowhere"]).load("demo_mc")


def test_the_shipped_tasks_load_offline_without_indexing_lm_evals_tasks():
    catalog = lmeval.TaskCatalog([TASKS])
    _, loaded = catalog.load("demo_mc")
    assert list(catalog._managers) == [False]  # the ~14,700 built-in tasks were not indexed
    docs = list(loaded["tasks"]["demo_mc"].test_docs())
    assert len(docs) == 64 and all(len(d["choices"]) == 4 for d in docs)
    assert all(d["choices"][d["answer"]] != c for d in docs for i, c in enumerate(d["choices"]) if i != d["answer"])
    fp = lmeval.task_fingerprint(loaded)
    assert fp["versions"] == {"demo_mc": "1.0"} and all(v.startswith("sha256:") for v in fp["data"].values())


@pytest.mark.slow
def test_a_tasks_fingerprint_is_the_same_in_another_process():
    """The cache key of a task with a ``!function`` (process_docs) must not depend on where it was loaded."""
    import subprocess
    import sys

    code = ("import json, sys; from pytest_ftgate import lmeval; "
            "print(json.dumps(lmeval.task_fingerprint(lmeval.TaskCatalog([sys.argv[1]]).load('demo_mc')[1])))")
    out = subprocess.run([sys.executable, "-c", code, str(TASKS)], capture_output=True, text=True, check=True,
                         timeout=300).stdout.strip().splitlines()[-1]
    assert json.loads(out) == lmeval.task_fingerprint(lmeval.TaskCatalog([TASKS]).load("demo_mc")[1])


@pytest.mark.slow
def test_an_unknown_task_name_lists_the_closest_names_local_and_built_in():
    catalog = lmeval.TaskCatalog([TASKS])
    with pytest.raises(BenchmarkError, match=r"unknown lm-eval task 'demo_mx'; closest names: demo_mc"):
        catalog.load("demo_mx")
    with pytest.raises(BenchmarkError, match=r"'mmlu_anatomi'; closest names: mmlu_anatomy"):
        catalog.load("mmlu_anatomi")
    with pytest.raises(BenchmarkError, match=r"arc_easy.*allenai/ai2_arc.*datasets cache"):
        catalog.load("arc_easy")  # a standard task whose data is not in the offline cache
    with pytest.raises(BenchmarkError, match=r"'ai2_arc' is a tag.*arc_challenge, arc_easy"):
        catalog.load("ai2_arc")


def test_a_tasks_fingerprint_is_remembered_until_its_yaml_or_data_changes(tmp_path, monkeypatch):
    import shutil

    tasks = tmp_path / "tasks"
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "lm_eval_tasks", tasks)
    data = tmp_path / "data"
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "data", data)
    for y in tasks.glob("*.yaml"):
        y.write_text(y.read_text().replace("../data/", f"{data}/"))
    runner = lmeval.BenchRunner(lmeval.Settings(), lmeval.TaskCatalog([tasks]), lmeval.ResultCache(tmp_path / "c"),
                                tmp_path / "w", echo=lambda m: None)
    first, loaded = runner.fingerprint("demo_mc")
    assert loaded is not None and first["data"]
    loads = []
    monkeypatch.setattr(runner.catalog, "load", lambda name: loads.append(name) or lmeval.TaskCatalog([tasks]).load(
        name))
    assert runner.fingerprint("demo_mc") == (first, None) and loads == []  # remembered: lm-eval not asked
    (path,) = [p for p in first["data"] if Path(p).is_file()][:1]
    Path(path).write_text(Path(path).read_text() + "\n")
    changed, _ = runner.fingerprint("demo_mc")
    assert loads == ["demo_mc"] and changed["data"][path] != first["data"][path]  # the data changed: loaded again
    (tasks / "demo_mc.yaml").write_text((tasks / "demo_mc.yaml").read_text() + "\n# edited\n")
    runner.fingerprint("demo_mc")
    assert loads == ["demo_mc", "demo_mc"]  # the task YAML changed: loaded again
