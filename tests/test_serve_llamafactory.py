"""The openai engine against real ``llamafactory-cli api`` servers on 127.0.0.1 serving the demo run: one with the
adapter, one with the base model (the server serves one model). Its answers equal the embedded hf engine's, and the
quality suite gates the demo through it."""

import os
import sys
import threading
from pathlib import Path

import pytest

from pytest_ftgate import predict
from pytest_ftgate.config import Engine
from pytest_ftgate.serve import create_engine
from pytest_ftgate.serve.base import GenParams, OpenAIClient
from pytest_ftgate.serve.process import ServerProcess, free_port

from .test_quality_e2e import gate, preload  # noqa: F401  (preload: an autouse fixture, shared)

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).with_name("llamafactory-cli"))


def llamafactory_api(tmp: Path, name: str, base: Path, adapter: Path | None) -> tuple[ServerProcess, str]:
    cfg = tmp / f"{name}.yaml"
    lines = [f"model_name_or_path: {base}", "template: default", "infer_backend: huggingface"]
    if adapter is not None:
        lines += [f"adapter_name_or_path: {adapter}", "finetuning_type: lora"]
    cfg.write_text("\n".join(lines) + "\n")
    port = free_port()
    env = {**os.environ, "API_HOST": "127.0.0.1", "API_PORT": str(port), "API_MODEL_NAME": name,
           "OMP_NUM_THREADS": "1"}
    return ServerProcess([CLI, "api", str(cfg)], name=f"llamafactory api ({name})", env=env,
                         log_path=tmp / f"{name}.log"), f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def servers(demo_run, tmp_path_factory):
    """Both servers, started side by side (each takes seconds to minutes on a busy CPU), stopped at the end."""
    tmp = tmp_path_factory.mktemp("llamafactory")
    procs = {"demo-adapter": llamafactory_api(tmp, "demo-adapter", demo_run.base_model_dir, demo_run.adapter_dir),
             "demo-base": llamafactory_api(tmp, "demo-base", demo_run.base_model_dir, None)}
    errors = []

    def start(name, proc, url):
        client = OpenAIClient(url)
        try:
            proc.start(lambda: name in client.models(timeout_s=2), timeout_s=300)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(n, p, u)) for n, (p, u) in procs.items()]
    [t.start() for t in threads]
    [t.join() for t in threads]
    yield {n: u for n, (_, u) in procs.items()}, errors, {n: p for n, (p, _) in procs.items()}
    pids = [p.proc.pid for p, _ in procs.values() if p.proc is not None]
    for proc, _ in procs.values():
        proc.stop()
    from .test_serve import gone

    assert all(gone(pid) for pid in pids)


@pytest.fixture(scope="module")
def openai_cfg(servers):
    urls, errors, _ = servers
    if errors:
        raise errors[0]
    return Engine(kind="openai", base_url=urls["demo-adapter"], adapter_model_name="demo-adapter",
                  base_model_url=urls["demo-base"], base_model_name="demo-base", concurrency=4)


def test_the_servers_listen_on_localhost_only(openai_cfg, servers):
    import psutil

    for proc in servers[2].values():
        family = [psutil.Process(proc.proc.pid), *psutil.Process(proc.proc.pid).children(recursive=True)]
        listening = [c.laddr for p in family for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        assert listening and {a.ip for a in listening} == {"127.0.0.1"}


def test_the_openai_engine_answers_like_the_embedded_engine(openai_cfg, demo_run):
    from pytest_ftgate import record

    audit = record.load_record(demo_run.store(), demo_run.run_id, demo_run.root / "lf-audit").record
    test_set = predict.resolve_test_set("", audit, max_samples=16)
    prompts = predict.prompts_for(test_set, predict.chat_template_of(demo_run.adapter_dir))
    params = GenParams(max_new_tokens=16)
    remote = create_engine("openai", demo_run.base_model_dir, openai_cfg)
    remote.add_adapter("cand", demo_run.adapter_dir)
    local = create_engine("hf", demo_run.base_model_dir, Engine())
    local.add_adapter("cand", demo_run.adapter_dir)
    adapter_answers = remote.generate(prompts, "cand", params)
    assert adapter_answers == local.generate(prompts, "cand", params)
    assert remote.generate(prompts, None, params) == local.generate(prompts, None, params)
    assert sum(a.strip() == s.reference for a, s in zip(adapter_answers, test_set.samples)) >= 12


def test_the_quality_suite_gates_the_demo_through_llamafactory(pytester, openai_cfg, demo_run, tmp_path):
    engine = (f"kind: openai\n  base_url: {openai_cfg.base_url}\n  adapter_model_name: demo-adapter\n"
              f"  base_model_url: {openai_cfg.base_model_url}\n  base_model_name: demo-base\n  concurrency: 4")
    result, verdict, gates = gate(pytester, demo_run.tracking_uri, demo_run.run_id, tmp_path, engine=engine)
    assert {k: g["outcome"] for k, g in gates.items()} == {
        "G4": "passed", "G5": "passed", "adapter_applied": "passed", "determinism": "passed"}, result.stdout.str()
    assert gates["G4"]["details"]["answers"]["candidate"]["engine"] == "openai"
