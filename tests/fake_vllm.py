"""A stand-in for the ``vllm`` executable, for the vllm engine's cases a real server cannot show quickly (a server
that exits at boot, hangs, ignores SIGTERM, drops adapters, fails some requests); tests/test_vllm.py runs the real one.

It parses ``vllm serve MODEL --enable-lora --lora-modules NAME=PATH ... --max-lora-rank R --max-loras N --dtype D
--max-model-len L --host H --port P --seed S --tensor-parallel-size N`` strictly (an unknown flag exits 2, as vLLM's parser does), refuses what vLLM refuses
(a missing model, a rank above --max-lora-rank or not one of vLLM's values, ``modules_to_save``), spawns a worker
child process (as vLLM's engine core does), and serves the OpenAI-compatible routes ``/v1/models``,
``/v1/completions``, ``/v1/chat/completions`` and ``/v1/load_lora_adapter``. With ``FAKE_VLLM_BACKEND=hf`` the
answers are real greedy generations of the base model and adapters (pytest_ftgate's hf engine); without it the
completion routes answer 501.

Behaviour switches (environment): FAKE_VLLM_MODE = exit | hang | drop-adapters | stubborn (ignores SIGTERM);
FAKE_VLLM_BOOT_S seconds before binding (default 0.5); FAKE_VLLM_RECORD a file receiving the argv and the pids
(JSON); FAKE_VLLM_FAIL_FIRST answer the first N completion requests with HTTP 500; FAKE_VLLM_FAIL_MATCH answer
500 to every request whose prompt contains this text.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ALLOWED_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vllm")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("model")
    serve.add_argument("--enable-lora", action="store_true")
    serve.add_argument("--lora-modules", nargs="+", default=[])
    serve.add_argument("--max-lora-rank", type=int, default=16, choices=ALLOWED_RANKS)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--tensor-parallel-size", type=int, default=1)
    serve.add_argument("--dtype", default="auto")
    serve.add_argument("--max-model-len", type=int)
    serve.add_argument("--max-loras", type=int, default=1)
    serve.add_argument("--trust-request-chat-template", action="store_true")
    return parser.parse_args(argv)


def fail(message: str) -> None:
    print(message, flush=True)
    sys.exit(1)


def check_adapter(name: str, path: str, max_rank: int) -> None:
    cfg_file = Path(path) / "adapter_config.json"
    if not cfg_file.is_file():
        fail(f"ValueError: Loading lora {name} failed: No adapter found for {path}")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("modules_to_save"):
        fail("ValueError: vLLM only supports modules_to_save being None.")
    if int(cfg.get("r", 0)) > max_rank:
        fail(f"ValueError: LoRA rank {cfg['r']} is greater than max_lora_rank {max_rank}.")


class State:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.adapters: dict[str, str] = {}
        self.requests = 0
        self.lock = threading.Lock()
        self.engine = None
        if os.environ.get("FAKE_VLLM_BACKEND") == "hf":
            from pytest_ftgate.config import Engine
            from pytest_ftgate.serve.hf import HFEngine

            self.engine = HFEngine(args.model, Engine(batch_size=1))
            self.engine.start()

    def add(self, name: str, path: str) -> None:
        check_adapter(name, path, self.args.max_lora_rank)
        if self.engine is not None:
            self.engine.add_adapter(name, path)
        self.adapters[name] = path

    def served(self) -> list[str]:
        names = [self.args.model]
        if os.environ.get("FAKE_VLLM_MODE") != "drop-adapters":
            names += list(self.adapters)
        return names


def handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):  # the access log goes to stdout, like uvicorn's
            print("INFO: " + fmt % a, flush=True)

        def reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path != "/v1/models":
                return self.reply(404, {"detail": "Not Found"})
            self.reply(200, {"object": "list", "data": [{"id": n, "object": "model"} for n in state.served()]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path == "/v1/load_lora_adapter":
                return self.load_adapter(body)
            if self.path not in ("/v1/completions", "/v1/chat/completions"):
                return self.reply(404, {"detail": "Not Found"})
            self.complete(body, chat=self.path.endswith("chat/completions"))

        def load_adapter(self, body: dict):
            if os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "").lower() not in ("1", "true"):
                return self.reply(404, {"detail": "Not Found"})
            try:
                state.add(body["lora_name"], body["lora_path"])
            except SystemExit:
                return self.reply(400, {"message": f"cannot load {body.get('lora_path')}"})
            self.reply(200, {"message": f"Success: LoRA adapter '{body['lora_name']}' added successfully."})

        def complete(self, body: dict, chat: bool):
            text = json.dumps(body.get("messages") if chat else body.get("prompt"))
            with state.lock:
                state.requests += 1
                early = state.requests <= int(os.environ.get("FAKE_VLLM_FAIL_FIRST", "0"))
            match = os.environ.get("FAKE_VLLM_FAIL_MATCH")
            if early or (match and match in text):
                return self.reply(500, {"object": "error", "message": "fake engine error"})
            model = body.get("model")
            if model not in state.served():
                return self.reply(404, {"object": "error", "message": f"The model `{model}` does not exist."})
            if state.engine is None:
                return self.reply(501, {"message": "the fake has no generation backend (FAKE_VLLM_BACKEND=hf)"})
            answer = generate(state, body, chat, None if model == state.args.model else model)
            key = {"message": {"role": "assistant", "content": answer}} if chat else {"text": answer}
            self.reply(200, {"object": "chat.completion" if chat else "text_completion", "model": model,
                             "choices": [{"index": 0, "finish_reason": "stop", **key}]})

    return Handler


def generate(state: State, body: dict, chat: bool, adapter: str | None) -> str:
    from pytest_ftgate.serve.base import GenParams, Prompt

    if chat:
        msgs = tuple((m["role"], m["content"]) for m in body["messages"])
        prompt = Prompt(msgs, chat_template=body.get("chat_template") or "")
    else:
        prompt = Prompt((("user", body["prompt"]),), raw=True)
    params = GenParams(max_new_tokens=int(body.get("max_tokens") or 16), seed=int(body.get("seed") or 0))
    with state.lock:  # one generation at a time, like a single engine step loop
        return state.engine.generate([prompt], adapter, params)[0]


def main(argv: list[str]) -> None:
    args = parse(argv)
    mode = os.environ.get("FAKE_VLLM_MODE", "")
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])  # like vLLM's EngineCore
    record = os.environ.get("FAKE_VLLM_RECORD")
    if record:
        Path(record).write_text(json.dumps({"argv": argv, "pid": os.getpid(), "worker_pid": worker.pid}))
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"INFO: vLLM API server version 0.0.0-fake; args: {vars(args)}", flush=True)
    time.sleep(float(os.environ.get("FAKE_VLLM_BOOT_S", "0.5")))
    if mode == "exit":
        fail("RuntimeError: Engine core initialization failed. See root cause above. (no CUDA GPUs are available)")
    if mode == "hang":
        while True:
            time.sleep(1)
    if not (Path(args.model) / "config.json").is_file():
        fail(f"OSError: {args.model} does not appear to have a file named config.json.")
    if args.lora_modules and not args.enable_lora:
        fail("ValueError: --lora-modules requires --enable-lora")
    state = State(args)
    for item in args.lora_modules:
        name, _, path = item.partition("=")
        state.add(name, path)
    try:
        server = ThreadingHTTPServer((args.host, args.port), handler(state))
    except OSError as exc:
        fail(f"ERROR: [Errno {exc.errno}] error while attempting to bind on address ({args.host!r}, {args.port}): "
             f"{(exc.strerror or str(exc)).lower()}")
    print(f"INFO: Uvicorn running on http://{args.host}:{args.port} (Press CTRL+C to quit)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
