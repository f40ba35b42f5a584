"""Test-only: the part of vLLM's OpenAI-compatible API that lm-eval's ``local-completions`` uses, over real
transformers (+ peft) weights, for testing our local-completions contract where vLLM cannot run (no GPU).

``POST /v1/completions`` takes ``model``, ``prompt`` (text, token ids, or a list of either), ``max_tokens``,
``echo``, ``logprobs``, ``stop``; with ``echo`` it returns the prompt's tokens with their log-probabilities and the
top-1 alternative at each position (``choices[].logprobs.token_logprobs`` / ``top_logprobs``, the first None), plus
one greedy token, as vLLM does; without it, the greedy continuation cut at the first stop string.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CompletionsServer:
    """``models``: served name -> (base model dir, adapter dir or None). Binds 127.0.0.1 on a free port."""

    def __init__(self, models: dict[str, tuple[str, str | None]]):
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(0)
        self.lock = threading.Lock()
        self.requests = 0
        self.models = {}
        for name, (base, adapter) in models.items():
            model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
            self.models[name] = (PeftModel.from_pretrained(model, adapter) if adapter else model).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(next(iter(models.values()))[0])
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/completions" or body.get("model") not in server.models:
                    return self.reply(404, {"error": f"no route {self.path} or model {body.get('model')!r}"})
                with server.lock:
                    server.requests += 1
                    choices = server.complete(body)
                self.reply(200, {"object": "text_completion", "model": body["model"], "choices": choices})

            def reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _ids(self, prompt) -> list[int]:
        return list(prompt) if isinstance(prompt, list) else self.tokenizer(prompt)["input_ids"]

    def complete(self, body: dict) -> list[dict]:
        prompts = body["prompt"]
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        model = self.models[body["model"]]
        return [self.echo(model, self._ids(p), i) if body.get("echo") else
                self.generate(model, self._ids(p), i, int(body.get("max_tokens") or 16), body.get("stop") or [])
                for i, p in enumerate(prompts)]

    def echo(self, model, ids: list[int], index: int) -> dict:
        import torch

        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
        nxt = int(logp[-1].argmax())
        seq = ids + [nxt]
        token_logprobs: list = [None] + [float(logp[i - 1, seq[i]]) for i in range(1, len(seq))]
        top: list = [None] + [{self.tokenizer.decode([int(logp[i - 1].argmax())]): float(logp[i - 1].max())}
                              for i in range(1, len(seq))]
        return {"index": index, "text": self.tokenizer.decode(seq), "finish_reason": "length",
                "logprobs": {"tokens": [self.tokenizer.decode([t]) for t in seq], "token_logprobs": token_logprobs,
                             "top_logprobs": top}}

    def generate(self, model, ids: list[int], index: int, max_tokens: int, stop: list[str]) -> dict:
        import torch

        with torch.no_grad():
            ones = torch.ones(1, len(ids), dtype=torch.long)
            out = model.generate(input_ids=torch.tensor([ids]), attention_mask=ones,
                                 max_new_tokens=max_tokens, do_sample=False, pad_token_id=self.tokenizer.pad_token_id)
        text = self.tokenizer.decode(out[0, len(ids):], skip_special_tokens=False)
        cut = min([text.find(s) for s in stop if s and s in text] or [len(text)])
        return {"index": index, "text": text[:cut], "finish_reason": "stop" if cut < len(text) else "length"}
