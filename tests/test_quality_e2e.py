"""End to end on the bundled demo run (trained once per session by the ``demo_run`` fixture): ``pytest
suites/test_quality.py`` with the hf engine, gating the trained adapter (G4 and G5 pass), a worse adapter against
the demo registered as ``production`` (G4 blocks), an engine that drops the adapter (adapter_applied blocks), an
engine that does not start (its gates error with the command and log; the training gates still run)."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from pytest_ftgate.serve.base import GenParams
from pytest_ftgate.serve.hf import HFEngine

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "suites"
FAKE_VLLM = Path(__file__).with_name("fake_vllm.py")


class DroppingHFEngine(HFEngine):
    """Test-only: accepts an adapter and serves the base weights under its name (real generation), the way a
    server that silently failed to load an adapter answers."""

    def add_adapter(self, name, path):
        self.start()
        self.adapters[name] = str(path)

    def generate(self, prompts, model=None, params=GenParams(), progress=None):
        return super().generate(prompts, None, params, progress)


@pytest.fixture(scope="module", autouse=True)
def preload():
    """Imported before pytester snapshots sys.modules and sys.meta_path, for two reasons: re-importing torch after
    a snapshot is restored crashes the interpreter; and the importlib_metadata backport (imported by mlflow)
    deletes the stdlib ``PathFinder.find_distributions`` for its own finder on sys.meta_path, so once a restore has
    dropped that finder a second in-process run would find no entry points (no ftgate plugin)."""
    import importlib_metadata  # noqa: F401
    import mlflow  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One prediction cache for this module: the base model's answers are generated once."""
    return tmp_path_factory.mktemp("prediction-cache")


def gate(pytester, uri, run_id, cache_dir, quality="", engine="kind: hf", suites=("test_quality.py",), conftest=""):
    for name in suites:
        shutil.copy(SUITES / name, pytester.path / name)
    pytester.makefile(".yaml", ftgate=f"quality:\n  cache_dir: {cache_dir}\n  bootstrap_samples: 300\n{quality}"
                                      f"engine:\n  {engine}\n")
    if conftest:
        pytester.makeconftest(conftest)
    result = pytester.runpytest("-p", "no:cacheprovider", "--ftgate-tracking-uri", uri, "--run-id", run_id)
    verdict = json.loads((pytester.path / "ftgate-results" / "verdicts" / f"{run_id}.json").read_text())
    return result, verdict, {g["id"]: g for g in verdict["gates"]}


def copy_store(demo_run, dst: Path) -> str:
    """The demo's sqlite store copied (its artifacts stay where they are): registry changes stay in this test."""
    src = Path(demo_run.tracking_uri.removeprefix("sqlite:///"))
    shutil.copy(src, dst / "mlflow.db")
    return f"sqlite:///{dst / 'mlflow.db'}"


def candidate_run(uri: str, demo_run, adapter_dir: Path, name: str) -> str:
    """A finished run with the demo's lineage (audit record, params, metric histories) and another adapter, its
    files and digest recorded the way ``ftgate train`` records them."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    from pytest_ftgate import hashing

    client = MlflowClient(tracking_uri=uri)
    demo = client.get_run(demo_run.run_id)
    run_id = client.create_run(demo.info.experiment_id, run_name=name).info.run_id
    files = hashing.tree_files(adapter_dir)
    params = {**demo.data.params, "ftgate.adapter_sha256": hashing.digest_files(files)}
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    for key in demo.data.metrics:
        client.log_batch(run_id, metrics=client.get_metric_history(demo_run.run_id, key))
    record = json.loads(Path(client.download_artifacts(demo_run.run_id, "audit/audit_record.json",
                                                       str(adapter_dir.parent))).read_text())
    record["run_id"] = run_id
    record["output_artifacts"]["adapter"]["files"] = files
    client.log_dict(run_id, record, "audit/audit_record.json")
    for f in sorted(adapter_dir.iterdir()):
        client.log_artifact(run_id, str(f), "adapter")
    client.set_terminated(run_id)
    return run_id


def weakened(adapter: Path, base: Path, dst: Path, keep: float) -> Path:
    """The adapter moved ``1 - keep`` of the way back to the base model: LoRA B scaled, lm_head interpolated."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter, dst)
    weights = load_file(adapter / "adapter_model.safetensors")
    base_head = load_file(base / "model.safetensors")["lm_head.weight"]
    out = {}
    for key, w in weights.items():
        if "lora_B" in key:
            w = w * keep
        elif "lm_head" in key:
            w = base_head + keep * (w - base_head)
        out[key] = w.contiguous()
    save_file(out, dst / "adapter_model.safetensors", metadata={"format": "pt"})
    return dst


def register_production(uri: str, run_id: str, name: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=f"runs:/{run_id}/adapter", run_id=run_id)
    client.set_registered_model_alias(name, "production", mv.version)


def test_the_trained_adapter_beats_its_base_model_and_a_rerun_is_served_from_the_cache(pytester, demo_run, cache_dir):
    result, verdict, gates = gate(pytester, demo_run.tracking_uri, demo_run.run_id, cache_dir)
    assert {k: g["outcome"] for k, g in gates.items()} == {
        "G4": "passed", "G5": "passed", "adapter_applied": "passed", "determinism": "passed"}, result.stdout.str()
    g4 = gates["G4"]["details"]
    assert all(r["candidate_value"] > r["baseline_value"] and r["ci_low"] > 0 for r in g4["comparisons"])
    assert "compared with the base model only" in gates["G4"]["message"]
    rows = g4["samples"]
    assert rows and {"prompt", "reference", "prediction", "base", "scores"} <= set(rows[0])
    assert result.ret == 0
    again, _, gates2 = gate(pytester, demo_run.tracking_uri, demo_run.run_id, cache_dir)
    answers = gates2["G4"]["details"]["answers"]
    assert answers["candidate"]["cached"] == answers["candidate"]["n"] == answers["base"]["cached"]
    assert gates2["G4"]["details"]["comparisons"] == g4["comparisons"]


def test_an_adapter_worse_than_production_is_blocked(pytester, demo_run, cache_dir, tmp_path):
    uri = copy_store(demo_run, tmp_path)
    register_production(uri, demo_run.run_id, "ftgate-demo")
    worse = weakened(Path(demo_run.adapter_dir), Path(demo_run.base_model_dir), tmp_path / "worse" / "adapter", 0.3)
    run_id = candidate_run(uri, demo_run, worse, "demo-weakened")
    result, verdict, gates = gate(pytester, uri, run_id, cache_dir, quality="  registered_model: ftgate-demo\n")
    assert verdict["verdict"] == "block" and result.ret == 1
    assert gates["G4"]["outcome"] == "failed" and gates["adapter_applied"]["outcome"] == "passed"
    bad = [r for r in gates["G4"]["details"]["comparisons"] if r["regression"]]
    assert bad and {r["baseline"] for r in bad} == {"production"}
    assert all(r["decision"] == "worse" and r["ci_high"] < -r["allowed_drop"] for r in bad)
    assert "production = ftgate-demo v1" in gates["G4"]["message"]


def test_an_engine_that_serves_base_weights_under_the_adapters_name_is_blocked(pytester, demo_run, tmp_path):
    conftest = ("import pytest\nfrom pytest_ftgate import serve\n\n@pytest.fixture(scope='session', autouse=True)\n"
                "def drop_adapters():\n    old = serve.ENGINES['hf']\n"
                "    serve.ENGINES['hf'] = ('tests.test_quality_e2e:DroppingHFEngine', 'hf')\n    yield\n"
                "    serve.ENGINES['hf'] = old\n")
    result, verdict, gates = gate(pytester, demo_run.tracking_uri, demo_run.run_id, tmp_path, conftest=conftest)
    assert gates["adapter_applied"]["outcome"] == "failed" and gates["adapter_applied"]["severity"] == "block"
    assert "64 of 64 answers are identical" in gates["adapter_applied"]["message"]
    assert verdict["verdict"] == "block" and result.ret == 1
    # the engine fixed: the base model's answers come from the cache, the adapter's are generated again
    (pytester.path / "conftest.py").unlink()
    result, verdict, gates = gate(pytester, demo_run.tracking_uri, demo_run.run_id, tmp_path)
    assert gates["adapter_applied"]["outcome"] == "passed" and result.ret == 0
    answers = gates["G4"]["details"]["answers"]
    assert (answers["candidate"]["cached"], answers["base"]["cached"]) == (0, 64)


def test_an_engine_that_does_not_start_errors_its_gates_and_the_others_still_run(pytester, demo_run, tmp_path,
                                                                                cache_dir, monkeypatch):
    from .test_serve_hf import make_adapter

    uri = copy_store(demo_run, tmp_path)
    lora_only = make_adapter(Path(demo_run.base_model_dir), tmp_path / "lora" / "adapter", 3)  # servable by vLLM
    run_id = candidate_run(uri, demo_run, lora_only, "lora-only")
    monkeypatch.setenv("FAKE_VLLM_MODE", "exit")
    result, verdict, gates = gate(pytester, uri, run_id, cache_dir, suites=("test_quality.py", "test_training.py"),
                                  engine=f"kind: vllm\n  vllm_executable: {sys.executable} {FAKE_VLLM}")
    assert {gates[g]["outcome"] for g in ("G4", "G5", "adapter_applied", "determinism")} == {"error"}
    message = gates["G4"]["message"]
    assert "vLLM server exited with code 1" in message and f"{FAKE_VLLM} serve" in message
    assert "no CUDA GPUs are available" in message  # the log tail
    assert gates["G1"]["outcome"] == "passed"  # training gates need no engine
    assert result.ret == 1
