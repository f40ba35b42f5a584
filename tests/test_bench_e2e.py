"""End to end on the bundled demo run (trained once per session by ``demo_run``), lm-eval's hf backend on CPU: the
adapter against its base model on the shipped tasks (passes), an adapter made worse (bench:demo_mc blocks), the
result cache on a second session, and `pytest suites/test_benchmarks.py` logging to MLflow while a broken task
errors alone."""

import json
import shutil
from pathlib import Path

import pytest

from pytest_ftgate import lmeval

from pytest_ftgate.gates import benchmarks as bench_gates
from pytest_ftgate.config import BenchTask, Engine

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "fixtures" / "lm_eval_tasks"
SETTINGS = lmeval.Settings(backend="hf", device="cpu", dtype="float32", batch_size=16)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-cache")


@pytest.fixture(scope="module")
def runner(cache_dir, tmp_path_factory):
    r = lmeval.BenchRunner(SETTINGS, lmeval.TaskCatalog([TASKS]), lmeval.ResultCache(cache_dir),
                          tmp_path_factory.mktemp("bench-work"))
    yield r
    r.close()


def made_worse(adapter_dir: Path, dst: Path) -> Path:
    """The demo adapter with its LoRA updates negated (B -> -B): it pushes the base away from the translation."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter_dir, dst)
    weights = load_file(dst / "adapter_model.safetensors")
    assert any("lora_B" in k for k in weights), sorted(weights)[:5]
    save_file({k: (-v if "lora_B" in k else v).contiguous() for k, v in weights.items()},
              dst / "adapter_model.safetensors", metadata={"format": "pt"})
    return dst


def run_params(demo_run) -> dict:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=demo_run.tracking_uri).get_run(demo_run.run_id).data.params


def test_the_demo_adapter_beats_its_base_model_on_the_shipped_tasks(runner, demo_run):
    candidate, base = runner.sides(str(demo_run.base_model_dir), str(demo_run.adapter_dir))
    for name, metric in (("demo_mc", "acc,none"), ("demo_gen", "exact_match,none")):
        cand, ref = runner.evaluate(BenchTask(name=name), candidate), runner.evaluate(BenchTask(name=name), base)
        check = bench_gates.regression(name, cand, ref)
        assert check.passed, check.message
        assert check.details["metric"] == metric and check.details["candidate"] >= 0.9
        assert check.details["base"] <= 0.5 and check.details["n"]["effective"] == 64
        assert Path(cand.samples_path).read_text().count('"doc_id"') == 64
    params = run_params(demo_run)  # the provenance lm-eval leaves empty is our digests, the run's own
    assert cand.data["config"]["peft_sha"] == candidate.adapter_sha256 == params["ftgate.adapter_sha256"]
    assert cand.data["config"]["model_sha"] == base.base_sha256 == params["ftgate.base_model_sha256"]
    assert "peft_sha" not in ref.data["config"]


def test_an_adapter_made_worse_is_blocked_by_the_benchmark_gate(runner, demo_run, tmp_path):
    worse = made_worse(Path(demo_run.adapter_dir), tmp_path / "worse")
    check = lmeval.run_gate(runner, "demo_mc", BenchTask(name="demo_mc"), str(demo_run.base_model_dir), worse)
    assert not check.passed
    assert check.message.startswith("demo_mc: regression against the base model: acc ")
    assert check.details["candidate"] < check.details["base"] - 2 * check.details["stderr"]
    assert check.details["cached"]["candidate"] is False  # another adapter, another cache key


def test_a_second_session_reads_every_result_from_the_cache(runner, cache_dir, demo_run, tmp_path):
    candidate, base = runner.sides(str(demo_run.base_model_dir), str(demo_run.adapter_dir))
    first = {(t, s.label): runner.evaluate(BenchTask(name=t), s) for t in ("demo_mc", "demo_gen")
             for s in (candidate, base)}
    again = lmeval.BenchRunner(SETTINGS, lmeval.TaskCatalog([TASKS]), lmeval.ResultCache(cache_dir), tmp_path)
    second = {(t, s.label): again.evaluate(BenchTask(name=t), s) for t in ("demo_mc", "demo_gen")
              for s in again.sides(str(demo_run.base_model_dir), str(demo_run.adapter_dir))}
    assert again.evaluations == 0 and all(r.cached for r in second.values())
    assert {k: r.data["results"] for k, r in second.items()} == {k: r.data["results"] for k, r in first.items()}
    again.evaluate(BenchTask(name="demo_mc", limit=8), candidate)  # another setting: evaluated anew
    assert again.evaluations == 1
    again.close()


def per_doc(result: lmeval.TaskResult, metric: str, docs: int) -> list:
    rows = [json.loads(x) for x in Path(result.samples_path).read_text().splitlines()]
    return [r[metric] for r in sorted(rows, key=lambda r: r["doc_id"]) if r["doc_id"] < docs]


def test_local_completions_against_a_server_gives_the_hf_backends_answers(runner, demo_run, tmp_path):
    from .completions_server import CompletionsServer

    base_dir, adapter_dir = str(demo_run.base_model_dir), str(demo_run.adapter_dir)
    server = CompletionsServer({"base": (base_dir, None), "run-demo": (base_dir, adapter_dir)})
    try:
        served = lmeval.Settings(backend="local-completions", batch_size=8, engine=Engine(
            kind="openai", base_url=server.url, adapter_model_name="run-demo", base_model_name="base"))
        remote = lmeval.BenchRunner(served, lmeval.TaskCatalog([TASKS]), None, tmp_path)
        pairs = list(zip(runner.sides(base_dir, adapter_dir), remote.sides(base_dir, adapter_dir)))
        for name, metric in (("demo_mc", "acc"), ("demo_gen", "exact_match")):
            for local_side, remote_side in pairs:
                local = runner.evaluate(BenchTask(name=name), local_side)
                answered = remote.evaluate(BenchTask(name=name, limit=16), remote_side)
                assert per_doc(answered, metric, 16) == per_doc(local, metric, 16), (name, local_side.label)
        assert server.requests > 0 and answered.data["config"]["model_args"]["tokenizer_backend"] == "huggingface"
    finally:
        server.close()


def clone_run(uri: str, demo_run, name: str) -> str:
    """A new run in the store at ``uri`` with the demo's params, audit record and adapter (not the demo run
    itself: the bench artifacts of this test stay off it)."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    demo = client.get_run(demo_run.run_id)
    run = client.create_run(demo.info.experiment_id, run_name=name)
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in demo.data.params.items()])
    for key in demo.data.metrics:
        client.log_batch(run.info.run_id, metrics=client.get_metric_history(demo_run.run_id, key))
    tmp = Path(client.download_artifacts(demo_run.run_id, "audit", str(Path(uri.removeprefix("sqlite:///")).parent)))
    client.log_artifacts(run.info.run_id, str(tmp), "audit")
    client.log_artifacts(run.info.run_id, str(demo_run.adapter_dir), "adapter")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_the_suite_gates_each_task_logs_to_mlflow_and_a_broken_task_errors_alone(pytester, demo_run, cache_dir,
                                                                                  tmp_path):
    from mlflow.tracking import MlflowClient

    shutil.copy(Path(demo_run.tracking_uri.removeprefix("sqlite:///")), tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = clone_run(uri, demo_run, "bench-e2e")
    broken = tmp_path / "broken_tasks"
    broken.mkdir()
    (broken / "broken.yaml").write_text((TASKS / "demo_gen.yaml").read_text().replace("task: demo_gen", "task: broken")
                                        .replace("../data/translate_test.json", "gone/test.json"))
    for suite in ("test_benchmarks.py", "test_training.py"):
        shutil.copy(ROOT / "suites" / suite, pytester.path / suite)
    pytester.makefile(".yaml", ftgate=f"benchmarks:\n  include_path: [{TASKS}, {broken}]\n  cache_dir: {cache_dir}\n"
                                      "  tasks: [{name: demo_mc}, {name: broken}, {name: demo_gen}]\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--ftgate-tracking-uri", uri, "--run-id", run_id)
    verdict = json.loads((pytester.path / "ftgate-results" / "verdicts" / f"{run_id}.json").read_text())
    gates = {g["id"]: g for g in verdict["gates"]}
    assert result.ret == 1 and verdict["verdict"] == "block"
    assert gates["bench:demo_mc"]["outcome"] == gates["bench:demo_gen"]["outcome"] == "passed"
    assert gates["bench:broken"]["outcome"] == "error" and gates["bench:broken"]["severity"] == "block"
    assert "gone/test.json does not exist" in gates["bench:broken"]["message"]
    assert {gates[g]["outcome"] for g in ("G1", "G2", "G3")} <= {"passed", "failed"}  # the others still ran
    details = gates["bench:demo_mc"]["details"]
    assert details["cached"] == {"candidate": True, "base": True} and details["mlflow"] == "logged"
    client = MlflowClient(tracking_uri=uri)
    metrics = client.get_run(run_id).data.metrics
    assert metrics["bench.demo_mc.acc"] == details["candidate"] and metrics["bench.demo_mc.acc.base"] == details["base"]
    assert "bench.demo_gen.exact_match" in metrics and "bench.demo_mc.acc_stderr" in metrics
    assert {f.path for f in client.list_artifacts(run_id, "bench")} >= {"bench/demo_mc.jsonl", "bench/demo_gen.json"}
    lines = Path(client.download_artifacts(run_id, "bench/demo_mc.jsonl", str(tmp_path))).read_text().splitlines()
    assert len(lines) == 128 and {json.loads(x)["model"] for x in lines} == {"candidate", "base"}
