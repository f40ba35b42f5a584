"""The embedded engine: transformers + peft in this process, every adapter attached to one base model, batched
greedy generation with left padding. The default where there is no GPU. No scoring, no caching, no server.

The base model answers through ``PeftModel.disable_adapter()`` and an adapter through ``set_adapter(name)``,
so base and adapters share the loaded weights. float32 on CPU (greedy outputs are then identical across batch
sizes), bfloat16 on CUDA when ``engine.dtype`` is ``auto``.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from pathlib import Path
from typing import Sequence

from ..errors import EngineError
from .base import Engine, GenParams, Progress, Prompt, adapter_config, check_adapter_files


class HFEngine(Engine):
    kind = "hf"

    def __init__(self, base_model: str, cfg, **kwargs):
        super().__init__(base_model, cfg, **kwargs)
        self._lock = threading.RLock()
        self.model = None  # the base model, a PeftModel once an adapter is attached
        self.tokenizer = None
        self.device = "cpu"
        self.dtype = None

    # -- loading -------------------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self.model is None:
                self._load_base()

    def _load_base(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not (Path(self.base_model) / "config.json").is_file():
            raise EngineError(f"hf engine: base model {self.base_model!r} is not a local model directory "
                              "(no config.json); the hub is not used at gate time: pass a local path")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = _dtype(self.cfg.dtype, self.device)
        try:
            tok = AutoTokenizer.from_pretrained(self.base_model, padding_side="left",
                                                trust_remote_code=self.trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(self.base_model, dtype=self.dtype,
                                                         trust_remote_code=self.trust_remote_code)
        except Exception as exc:
            raise EngineError(f"hf engine: cannot load base model {self.base_model!r}: "
                              f"{type(exc).__name__}: {str(exc)[:500]}") from None
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self.tokenizer, self.model = tok, model.to(self.device).eval()

    def add_adapter(self, name: str, path: str | Path) -> None:
        from peft import PeftModel

        path = str(Path(path).resolve())
        adapter_config(path)
        check_adapter_files(path, self.allow_pickle)
        with self._lock:
            self.start()
            if self.adapters.get(name) == path:
                return
            try:
                if not isinstance(self.model, PeftModel):
                    self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name, is_trainable=False)
                else:
                    if name in self.model.peft_config:
                        self.model.delete_adapter(name)
                    self.model.load_adapter(path, adapter_name=name, is_trainable=False)
            except Exception as exc:
                raise EngineError(f"hf engine: cannot attach adapter {path!r} to {self.base_model!r}: "
                                  f"{type(exc).__name__}: {str(exc)[:500]}") from None
            self.model.to(self.device).eval()
            self.adapters[name] = path

    def close(self) -> None:
        with self._lock:
            self.model = None
            self.tokenizer = None
            self.adapters.clear()

    def cache_identity(self, model: str | None) -> dict:
        # the device the model is (or, not loaded yet, will be) on: the same key before and after loading
        return {"kind": self.kind, "dtype": str(self.cfg.dtype), "device": self.device if self.model else _device()}

    # -- generation ----------------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Prompt], model: str | None = None, params: GenParams = GenParams(),
                 progress: Progress | None = None) -> list[str]:
        with self._lock:
            self.start()
            if model is not None and model not in self.adapters:
                raise EngineError(f"hf engine: no adapter named {model!r} is attached "
                                  f"(attached: {', '.join(self.adapters) or 'none'})")
            texts = [self.render(p) for p in prompts]
            # a chat template writes its own special tokens (LLaMA-Factory encodes without adding any);
            # plain text gets the tokenizer's (BOS)
            specials = bool(prompts) and all(p.raw for p in prompts)
            with self._selected(model):
                return self._generate_texts(texts, specials, params, progress)

    def render(self, prompt: Prompt) -> str:
        """The prompt text the model sees: the chat template applied, or the plain text."""
        if prompt.raw:
            return prompt.text
        template = prompt.chat_template or getattr(self.tokenizer, "chat_template", None)
        if not template:
            raise EngineError(f"hf engine: {self.base_model!r} has no chat template and the prompt brings none; "
                              "set quality.prompt_format: raw, or keep the tokenizer LLaMA-Factory saved beside "
                              "the adapter")
        return self.tokenizer.apply_chat_template(prompt.as_dicts(), chat_template=template, tokenize=False,
                                                  add_generation_prompt=True)

    @contextlib.contextmanager
    def _selected(self, model: str | None):
        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            yield
        elif model is None:
            with warnings.catch_warnings():  # adapters on different modules look "irregular" to peft: harmless
                warnings.filterwarnings("ignore", message="The model contains some adapter layers")
                with self.model.disable_adapter():
                    yield
        else:
            self.model.set_adapter(model)
            yield

    def _generate_texts(self, texts: list[str], specials: bool, params: GenParams,
                        progress: Progress | None) -> list[str]:
        import torch
        from transformers import GenerationConfig

        tok = self.tokenizer
        eos = self.model.generation_config.eos_token_id
        gen = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=params.max_new_tokens,
                               pad_token_id=tok.pad_token_id, eos_token_id=eos if eos is not None else tok.eos_token_id)
        lengths = [len(tok(t, add_special_tokens=specials).input_ids) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # similar lengths batch together
        out: list[str] = [""] * len(texts)
        torch.manual_seed(params.seed)
        bs = max(1, int(self.cfg.batch_size))
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=specials)
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.inference_mode():
                ids = self.model.generate(**enc, generation_config=gen)
            new = ids[:, enc["input_ids"].shape[1]:]
            for i, text in zip(idx, tok.batch_decode(new, skip_special_tokens=True)):
                out[i] = text
            if progress:
                progress(len(idx))
        return out


def _dtype(name: str, device: str):
    import torch

    if name in ("auto", ""):
        return torch.bfloat16 if device == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[name]
    except KeyError:
        raise EngineError(f"engine.dtype {name!r} is not one of auto, float32, bfloat16, float16") from None


def _device() -> str:
    """Where ``start`` puts the model: CUDA when torch sees a GPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
