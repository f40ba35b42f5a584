"""The engine registry, the OpenAI-compatible client (against a real local HTTP server that fails on purpose), and the
vllm engine's contract — command line, readiness polling, early-exit detection, teardown of the process tree —
against tests/fake_vllm.py (fast, and able to misbehave on purpose). The real vLLM is tested in tests/test_vllm.py."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_ftgate.config import Engine
from pytest_ftgate.errors import ConfigError, EngineError
from pytest_ftgate.serve import EnginePool, create_engine, engine_class
from pytest_ftgate.serve.base import GenerationError, GenParams, OpenAIClient, Prompt
from pytest_ftgate.serve.process import ServerProcess, free_port
from pytest_ftgate.serve.vllm import max_lora_rank

FAKE = f"{sys.executable} {Path(__file__).with_name('fake_vllm.py')}"


def lora_dir(path: Path, r: int = 8, **extra) -> Path:
    """An adapter directory as PEFT writes it (config and a safetensors file; the fake reads only the config)."""
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": r, "lora_alpha": 2 * r,
                                                          "target_modules": ["q_proj"], **extra}))
    (path / "adapter_model.safetensors").write_bytes(b"\0")
    return path


@pytest.fixture
def base_dir(tmp_path):
    d = tmp_path / "base"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


def vllm(base_dir, tmp_path, **cfg):
    cfg = {"kind": "vllm", "vllm_executable": FAKE, "startup_timeout_s": 60.0, **cfg}
    return create_engine("vllm", base_dir, Engine(**cfg), log_dir=tmp_path / "logs")


def gone(pid: int, within_s: float = 5.0) -> bool:
    import psutil

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


# -- the registry ----------------------------------------------------------------------------------------------
def test_importing_the_engines_and_scoring_loads_no_backend():
    code = ("import sys, pytest_ftgate.serve, pytest_ftgate.serve.vllm, pytest_ftgate.serve.openai, "
            "pytest_ftgate.serve.hf, pytest_ftgate.predict, pytest_ftgate.metrics; "
            "print([m for m in ('torch', 'transformers', 'peft', 'vllm', 'mlflow', 'evaluate') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_unknown_engine_kind_suggests_the_close_match():
    assert engine_class("hf").__name__ == "HFEngine"
    with pytest.raises(ConfigError, match="did you mean 'vllm'"):
        engine_class("vlm")


# -- vllm: the command line --------------------------------------------------------------------------------------
@pytest.mark.parametrize("ranks, expected", [([], 16), ([4], 8), ([8], 8), ([9, 16], 16), ([17], 32), ([300], 320)])
def test_the_max_lora_rank_is_rounded_up_to_a_value_vllm_accepts(ranks, expected):
    assert max_lora_rank(ranks) == expected


def test_a_rank_above_512_is_refused_before_launch():
    with pytest.raises(EngineError, match="above the largest --max-lora-rank"):
        max_lora_rank([1024])


def test_the_vllm_command_line_serves_base_and_adapters_on_localhost(base_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FTGATE_VLLM_DEVICE", "gpu")
    engine = vllm(base_dir, tmp_path, tensor_parallel_size=2, seed=7, extra_args=("--enforce-eager",))
    a, b = lora_dir(tmp_path / "a", r=8), lora_dir(tmp_path / "b", r=12, rank_pattern={"q_proj": 20})
    engine.add_adapter("cand", a)
    engine.add_adapter("prod", b)
    assert engine.command(4242)[2:] == [
        "serve", str(base_dir), "--enable-lora", "--max-loras", "4", "--lora-modules", f"cand={a}", f"prod={b}",
        "--max-lora-rank", "32", "--dtype", "auto", "--trust-request-chat-template", "--host", "127.0.0.1", "--port", "4242", "--seed", "7",
        "--tensor-parallel-size", "2", "--enforce-eager"]


def test_on_cpu_the_server_runs_in_float32_with_a_short_context_and_a_small_kv_cache(base_dir, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setenv("FTGATE_VLLM_DEVICE", "cpu")
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    (base_dir / "config.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    engine = vllm(base_dir, tmp_path, cpu_kvcache_gib=2)
    cmd = engine.command(4242)
    assert cmd[cmd.index("--dtype") + 1] == "float32"
    assert cmd[cmd.index("--max-model-len") + 1] == "2048"
    assert engine.environment()["VLLM_CPU_KVCACHE_SPACE"] == "2"
    short = vllm(base_dir, tmp_path, max_model_len=96).command(1)
    assert short[short.index("--max-model-len") + 1] == "96"


def test_a_missing_vllm_executable_says_how_to_make_the_environment(base_dir, tmp_path):
    engine = vllm(base_dir, tmp_path, vllm_executable="ftgate-no-such-vllm")
    with pytest.raises(EngineError, match="not on PATH; run `make vllm`"):
        engine.start()


def test_without_configuration_the_checkouts_vllm_environment_is_found(base_dir, tmp_path, monkeypatch):
    exe = tmp_path / "venv" / "bin" / "vllm"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("FTGATE_VLLM_VENV", str(tmp_path / "venv"))
    assert vllm(base_dir, tmp_path, vllm_executable="vllm").executable() == [str(exe)]
    assert vllm(base_dir, tmp_path, vllm_executable=FAKE).executable()[0] == sys.executable  # the key overrides


def test_no_vllm_environment_anywhere_is_an_error_that_says_make_vllm(base_dir, tmp_path, monkeypatch):
    import pytest_ftgate.serve.vllm as v

    monkeypatch.setenv("FTGATE_VLLM_VENV", str(tmp_path / "none"))
    monkeypatch.setattr(v, "CHECKOUT", tmp_path / "no-checkout")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(EngineError, match="the vLLM environment is missing .*run `make vllm`"):
        vllm(base_dir, tmp_path, vllm_executable="vllm").start()


def test_an_adapter_vllm_cannot_serve_is_refused_before_a_server_is_launched(base_dir, tmp_path):
    engine = vllm(base_dir, tmp_path)
    with pytest.raises(EngineError, match="modules_to_save"):
        engine.add_adapter("x", lora_dir(tmp_path / "a", modules_to_save=["lm_head"]))
    with pytest.raises(EngineError, match="DoRA"):
        engine.add_adapter("y", lora_dir(tmp_path / "b", use_dora=True))
    assert engine.server is None


# -- vllm: lifecycle against the fake executable ---------------------------------------------------------------------
@pytest.mark.slow
def test_the_server_is_polled_until_ready_and_its_whole_tree_stops_on_close(base_dir, tmp_path, monkeypatch):
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(record))
    monkeypatch.setenv("FAKE_VLLM_BOOT_S", "1.5")  # /v1/models refuses connections for a while: polling waits
    engine = vllm(base_dir, tmp_path)
    engine.add_adapter("cand", lora_dir(tmp_path / "a"))
    engine.start()
    seen = json.loads(record.read_text())
    assert seen["argv"] == engine.command(engine.port)[2:]
    assert set(engine.client.models()) == {str(base_dir), "cand"}
    assert engine.describe()["url"] == f"http://127.0.0.1:{engine.port}/v1"
    engine.close()
    assert gone(seen["pid"]) and gone(seen["worker_pid"])


def test_a_server_that_exits_early_is_reported_with_its_command_and_log(base_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "exit")
    engine = vllm(base_dir, tmp_path)
    with pytest.raises(EngineError) as err:
        engine.start()
    text = str(err.value)
    assert "exited with code 1 before it was ready" in text
    assert f"command: {sys.executable}" in text and "serve " + str(base_dir) in text
    assert "no CUDA GPUs are available" in text  # the tail of its log


def test_a_bad_base_model_path_fails_with_the_servers_own_message(tmp_path):
    engine = vllm(tmp_path / "no-such-model", tmp_path)
    with pytest.raises(EngineError, match="does not appear to have a file named config.json"):
        engine.start()


def test_a_configured_port_already_taken_is_refused_before_launch(base_dir, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        engine = vllm(base_dir, tmp_path, port=taken.getsockname()[1])
        with pytest.raises(EngineError, match="engine.port .* is already in use on 127.0.0.1.*engine.port: 0"):
            engine.start()
        assert engine.server is None  # nothing was launched


@pytest.mark.slow
def test_a_server_that_never_becomes_ready_times_out_and_is_stopped(base_dir, tmp_path, monkeypatch):
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_VLLM_MODE", "hang")
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(record))
    engine = vllm(base_dir, tmp_path, startup_timeout_s=3.0)
    with pytest.raises(EngineError, match="was not ready after 3 s"):
        engine.start()
    seen = json.loads(record.read_text())
    assert gone(seen["pid"]) and gone(seen["worker_pid"])


def test_a_server_that_does_not_list_the_adapter_is_not_used(base_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "drop-adapters")
    engine = vllm(base_dir, tmp_path)
    engine.add_adapter("cand", lora_dir(tmp_path / "a"))
    with pytest.raises(EngineError, match="not \\['cand'\\]: the adapter was not loaded"):
        engine.start()


@pytest.mark.slow
def test_a_server_that_ignores_sigterm_is_killed(base_dir, tmp_path, monkeypatch):
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_VLLM_MODE", "stubborn")
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(record))
    engine = vllm(base_dir, tmp_path)
    engine.start()
    pid = json.loads(record.read_text())["pid"]
    started = time.monotonic()
    engine.server.stop(grace_s=1.0)
    assert gone(pid) and time.monotonic() - started < 10


@pytest.mark.slow
def test_an_adapter_added_later_is_loaded_at_run_time_or_relaunched_for_a_higher_rank(base_dir, tmp_path):
    engine = vllm(base_dir, tmp_path)
    engine.add_adapter("first", lora_dir(tmp_path / "a", r=8))
    engine.start()
    pid = engine.server.proc.pid
    engine.add_adapter("second", lora_dir(tmp_path / "b", r=4))  # fits --max-lora-rank 8: /v1/load_lora_adapter
    assert engine.server.proc.pid == pid and "second" in engine.client.models()
    engine.add_adapter("third", lora_dir(tmp_path / "c", r=64))  # does not fit: relaunched with every adapter
    assert engine.server.proc.pid != pid and "--max-lora-rank 64" in engine.server.command_line
    assert {"first", "second", "third"} <= set(engine.client.models())
    engine.close()


def test_the_pool_remembers_an_engine_that_did_not_start(base_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "exit")
    pool = EnginePool("vllm", Engine(kind="vllm", vllm_executable=FAKE), log_dir=tmp_path)
    with pytest.raises(EngineError) as first:
        pool.get(str(base_dir))
    monkeypatch.delenv("FAKE_VLLM_MODE")
    with pytest.raises(EngineError) as second:
        pool.get(str(base_dir))  # not relaunched: every run on this base reports the same failure
    assert second.value is first.value
    pool.close()


# -- the OpenAI-compatible client against a local server that fails on purpose -------------------------------------
class Flaky:
    """A real HTTP server: answers completions with the prompt upper-cased; fails by plan; counts concurrency."""

    def __init__(self, fail_first=0, fail_match=None, status=500, delay_s=0.0):
        self.fail_first, self.fail_match, self.status, self.delay_s = fail_first, fail_match, status, delay_s
        self.requests, self.inflight, self.peak = 0, 0, 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests += 1
                    n = outer.requests
                    outer.inflight += 1
                    outer.peak = max(outer.peak, outer.inflight)
                try:
                    time.sleep(outer.delay_s)
                    text = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
                    if n <= outer.fail_first or (outer.fail_match and outer.fail_match in text):
                        return self.send(outer.status, {"error": "planned failure"})
                    key = {"message": {"content": text.upper()}} if "messages" in body else {"text": text.upper()}
                    self.send(200, {"choices": [key]})
                finally:
                    with outer.lock:
                        outer.inflight -= 1

            def send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def prompts(n, raw=False):
    return [Prompt((("user", f"question {i}"),), raw=raw) for i in range(n)]


def test_failed_requests_are_retried_with_backoff_and_then_succeed():
    server = Flaky(fail_first=2)
    client = OpenAIClient(server.url, retries=3, backoff_s=0.05, concurrency=1)
    assert client.complete_many("m", prompts(3), GenParams()) == ["QUESTION 0", "QUESTION 1", "QUESTION 2"]
    assert server.requests == 5  # 2 failures retried
    server.close()


def test_requests_that_keep_failing_are_counted_in_the_error():
    server = Flaky(fail_match="question 1")
    client = OpenAIClient(server.url, retries=2, backoff_s=0.01, concurrency=4)
    with pytest.raises(GenerationError, match="1 of 3 requests .* failed after 2 retries") as err:
        client.complete_many("m", prompts(3, raw=True), GenParams())
    assert err.value.failed == 1 and err.value.outputs == ["QUESTION 0", None, "QUESTION 2"]
    assert server.requests == 2 + 3  # two good ones, and the bad one three times
    server.close()


def test_a_client_error_is_not_retried():
    server = Flaky(fail_first=10, status=400)
    with pytest.raises(EngineError, match="refused: HTTP 400"):
        OpenAIClient(server.url, retries=3, backoff_s=0.01).complete("m", prompts(1)[0], GenParams())
    assert server.requests == 1
    server.close()


def test_a_slow_server_times_out_and_is_retried():
    server = Flaky(delay_s=1.0)
    with pytest.raises(EngineError, match="failed 2 times; last: ReadTimeout"):
        OpenAIClient(server.url, retries=1, backoff_s=0.01, timeout_s=0.2).complete("m", prompts(1)[0], GenParams())
    server.close()


def test_no_more_requests_are_in_flight_than_the_concurrency_bound():
    server = Flaky(delay_s=0.05)
    OpenAIClient(server.url, concurrency=3).complete_many("m", prompts(12), GenParams())
    assert server.peak <= 3 and server.requests == 12
    server.close()


def test_the_openai_engine_names_an_unreachable_server():
    cfg = Engine(kind="openai", base_url=f"http://127.0.0.1:{free_port()}/v1", base_model_name="b")
    engine = create_engine("openai", "base", cfg)
    with pytest.raises(EngineError, match="refused the connection.*start the server.*engine.base_url"):
        engine.start()
    with pytest.raises(EngineError, match="needs engine.base_url"):
        create_engine("openai", "base", Engine(kind="openai"))


def test_a_process_that_cannot_be_launched_names_the_command(tmp_path):
    proc = ServerProcess([str(tmp_path / "nope")], name="server", log_path=tmp_path / "log")
    with pytest.raises(EngineError, match="could not be launched"):
        proc.start(lambda: True, timeout_s=1)
    assert not os.path.exists(tmp_path / "nope")
