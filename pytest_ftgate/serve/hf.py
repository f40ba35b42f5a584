"""The embedded engine: transformers + peft in this process, every adapter attached to one base model, batched
greedy generation with left padding. The default where there is no GPU. No scoring, no caching, no server.

The base model answers through ``PeftModel.disable_adapter()`` and an adapter through ``set_adapter(name)``,
so base and adapters share the loaded weights. float32 on CPU (greedy outputs are then identical across batch
sizes), bfloat16 on CUDA when ``engine.dtype`` is ``auto``.

Each batch's KV cache is preallocated for prompt + new tokens (no per-step concatenation). On CPU in float32 every
``nn.Linear`` with 256 or more inputs and outputs multiplies as one ``W·xᵀ`` product on its row-major weight
(``_wx_linear``) instead of ``F.linear``'s ``x·Wᵀ``: MKL then splits the weight's rows between threads, not the
batch's 16, which made the ~23M model's answers 1.2x faster on 2 threads and left one thread within noise
(bench/bench_engine.py), and its sums (measured here) round the same whatever the thread count, which
``F.linear``'s do not.

While an adapter answers, its LoRA deltas are merged into the base weights (``engine.merge_lora: auto``, the
default; ``never`` turns it off) and peft's LoRA wrappers are taken out of the module tree, so generation runs
plain Linear layers instead of base + A·B per layer (~1.2x fewer CPU seconds on a ~23M model). Merging is peft's
safe merge (new weight tensors) and unmerging puts the wrappers and the original tensors back, so the base model
and other adapters answer bit for bit as before. Only vanilla LoRA on plain float32 ``nn.Linear`` layers whose
weights no other module shares is merged (not DoRA, bfloat16, quantized or tied weights); anything else answers
unmerged. Merged sums round differently: the prediction cache key of an adapter's answers says ``merge_lora``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import types
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
        # (adapter, [(parameter, its original tensor), ...], [(parent module, attribute, LoRA wrapper), ...])
        self._merged: tuple[str, list, list] | None = None
        self._merge_policy = _merge_policy(cfg)

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
        if _wx_wanted(self.device, self.dtype):
            _wx_linears(self.model)

    def add_adapter(self, name: str, path: str | Path) -> None:
        from peft import PeftModel

        path = str(Path(path).resolve())
        adapter_config(path)
        check_adapter_files(path, self.allow_pickle)
        with self._lock:
            self.start()
            if self.adapters.get(name) == path:
                return
            self._unmerge()
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
            if _wx_wanted(self.device, self.dtype):  # the adapter's own Linear layers (modules_to_save copies)
                _wx_linears(self.model)
            self.adapters[name] = path

    def close(self) -> None:
        with self._lock:
            self._merged = None
            self.model = None
            self.tokenizer = None
            self.adapters.clear()

    def cache_identity(self, model: str | None) -> dict:
        # the device the model is (or, not loaded yet, will be) on: the same key before and after loading
        device = self.device if self.model else _device()
        identity = {"kind": self.kind, "dtype": str(self.cfg.dtype), "device": device}
        if device == "cpu" and str(self.cfg.dtype) in ("auto", "", "float32", "fp32"):
            identity["gemm"] = "w-xt"  # another BLAS path: the sums may round differently
        if model is not None and self._merge_policy != "never":
            identity["merge_lora"] = self._merge_policy  # merged sums may round to another greedy token
        return identity

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

        if self._merged and self._merged[0] != model:
            self._unmerge()
        if not isinstance(self.model, PeftModel):
            yield
        elif model is None:
            with warnings.catch_warnings():  # adapters on different modules look "irregular" to peft: harmless
                warnings.filterwarnings("ignore", message="The model contains some adapter layers")
                with self.model.disable_adapter():
                    yield
        elif self._merged is None:  # peft's set_adapter on merged layers would unmerge them by subtraction
            self.model.set_adapter(model)
            self._merge(model)
            yield
        else:
            yield

    # -- merged LoRA ---------------------------------------------------------------------------------------------
    def _mergeable(self, name: str) -> list | None:
        """The LoRA layers of adapter ``name`` when all of them can be merged and restored exactly, else None."""
        import torch
        from peft.tuners.lora.layer import Linear, LoraLayer

        config = self.model.peft_config.get(name)
        if self._merge_policy == "never" or self.dtype != torch.float32 or config is None \
                or getattr(config, "peft_type", None) != "LORA":
            return None
        shared = _uses(self.model)
        layers = []
        for module in self.model.modules():
            if not isinstance(module, LoraLayer) or name not in module.lora_A:
                continue
            base = module.get_base_layer()
            if type(module) is not Linear or name in module.lora_variant or type(base) is not torch.nn.Linear \
                    or base.weight.dtype != torch.float32 or shared.get(base.weight.data_ptr(), 0) > 1:
                return None
            layers.append(module)
        return layers or None

    def _merge(self, name: str) -> None:
        """Add adapter ``name``'s deltas into new weight tensors, keeping the originals to put back, and put each
        merged layer's base Linear in its wrapper's place (peft's wrapper would only forward to it)."""
        layers = self._mergeable(name)
        if not layers:
            return
        saved = []
        for module in layers:
            base = module.get_base_layer()
            saved += [(p, p.data) for p in (base.weight, base.bias) if p is not None]
        self._merged = (name, saved, [])
        try:
            for module in layers:
                module.merge(safe_merge=True, adapter_names=[name])
        except ValueError:  # non-finite merged weights: answer unmerged, as peft would compute them
            self._unmerge()
            return
        self._merged = (name, saved, _unwrapped(self.model, layers))

    def _unmerge(self) -> None:
        """Put the LoRA wrappers and the original base tensors back (bit for bit; peft's unmerge would subtract
        and round)."""
        from peft.tuners.lora.layer import LoraLayer

        if self._merged is None:
            return
        _, saved, swapped = self._merged
        self._merged = None
        for parent, attr, wrapper in swapped:
            setattr(parent, attr, wrapper)
        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                module.merged_adapters.clear()
        for param, original in saved:
            param.data = original

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
            cache = _kv_cache(self.model.config, enc["input_ids"].shape[1] + params.max_new_tokens)
            with torch.inference_mode():
                ids = self.model.generate(**enc, generation_config=gen, **cache)
            new = ids[:, enc["input_ids"].shape[1]:]
            for i, text in zip(idx, tok.batch_decode(new, skip_special_tokens=True)):
                out[i] = text
            if progress:
                progress(len(idx))
        return out


def _kv_cache(config, length: int) -> dict:
    """``past_key_values``: a DynamicCache whose full-attention layers write into buffers of ``length`` tokens.

    transformers' DynamicLayer concatenates every step (the whole cache copied per token: 13-16% of the CPU
    profile on a ~23M model; measured 2-5% fewer CPU seconds); these append in place and hand attention views
    of the same values, so answers are bit for bit the same. Models whose cache has
    other layer kinds (sliding window, linear attention) keep them; no cache is passed where none is built.
    """
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer

        cache = DynamicCache(config=config)
    except Exception:  # noqa: BLE001 - an unusual model: generate builds its own cache
        return {}
    if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return {}
    cache.layers = [_buffered_layer()(length) for _ in cache.layers]
    return {"past_key_values": cache}


@functools.cache
def _buffered_layer():
    """The buffered cache layer class (defined on first use: transformers is imported lazily)."""
    from transformers.cache_utils import DynamicLayer

    class BufferedLayer(DynamicLayer):
        def __init__(self, capacity: int):
            super().__init__()
            self.capacity = capacity

        def lazy_initialization(self, key_states, value_states) -> None:
            self.dtype, self.device = key_states.dtype, key_states.device
            self._k = key_states.new_empty(*key_states.shape[:2], self.capacity, key_states.shape[-1])
            self._v = value_states.new_empty(*value_states.shape[:2], self.capacity, value_states.shape[-1])
            self.keys, self.values = self._k[:, :, :0], self._v[:, :, :0]
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            start = self.keys.shape[-2]
            end = start + key_states.shape[-2]
            if end > self._k.shape[2]:  # longer than planned: grow (copy once)
                self._k, self._v = _grown(self._k, start, 2 * end), _grown(self._v, start, 2 * end)
            self._k[:, :, start:end] = key_states
            self._v[:, :, start:end] = value_states
            self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.keys.shape[-2] if self.is_initialized else 0

    return BufferedLayer


def _grown(buffer, used: int, capacity: int):
    bigger = buffer.new_empty(*buffer.shape[:2], capacity, buffer.shape[-1])
    bigger[:, :, :used] = buffer[:, :, :used]
    return bigger


def _uses(model) -> dict[int, int]:
    """How many parameters of ``model`` use each storage (by data pointer): > 1 is a shared (tied) weight."""
    uses: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        uses[param.data_ptr()] = uses.get(param.data_ptr(), 0) + 1
    return uses


def _unwrapped(model, layers) -> list:
    """Put each LoRA wrapper's base layer in its place in ``model``: [(parent, attribute, wrapper), ...] to undo."""
    wanted = {id(layer) for layer in layers}
    swapped = [(parent, attr, child) for parent in model.modules() for attr, child in parent.named_children()
               if id(child) in wanted]
    for parent, attr, wrapper in swapped:
        setattr(parent, attr, wrapper.get_base_layer())
    return swapped


def _wx_wanted(device: str, dtype) -> bool:
    import torch

    return device == "cpu" and dtype == torch.float32


_WX_MIN = 256  # narrower Linear layers (LoRA's A and B, tiny models) multiply faster as F.linear does


def _wx_linears(model) -> int:
    """Have every plain float32 ``nn.Linear`` of ``model`` with at least ``_WX_MIN`` inputs and outputs multiply as
    ``W·xᵀ`` (``_wx_linear``); returns how many were set (layers already set, narrower ones, subclasses and other
    dtypes are left as they are)."""
    import torch

    n = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and "forward" not in vars(module) \
                and min(module.in_features, module.out_features) >= _WX_MIN \
                and module.weight.dtype == torch.float32 and module.weight.dim() == 2:
            module.forward = types.MethodType(_wx_linear, module)
            n += 1
    return n


def _wx_linear(self, x):
    """``nn.Linear.forward`` as ``(W·xᵀ)ᵀ``: the same values as ``F.linear``'s ``x·Wᵀ`` up to rounding. MKL then
    splits W's rows (thousands) between threads rather than x's (a batch of 16 while decoding). The products of one
    decoding step of a ~23M model at batch 16 took 11-12 ms against F.linear's 13-14 ms on 2 threads, 20 ms against
    19-20 ms on one; whole answers, 1.16x faster on 2 threads and the same on one (bench/bench_engine.py). No sum
    here was seen to change with the thread count (F.linear's did, at 5-7 and 9-11 rows)."""
    flat = x.reshape(-1, x.shape[-1]).t()  # tensor methods: no import on this hot path
    out = self.weight.mm(flat) if self.bias is None else self.bias[:, None].addmm(self.weight, flat)
    return out.t().contiguous().view(*x.shape[:-1], out.shape[0])


def _merge_policy(cfg) -> str:
    """``engine.merge_lora``: auto (merge an answering adapter's LoRA when that is exact to undo) or never."""
    policy = str(getattr(cfg, "merge_lora", "auto") or "auto")
    if policy not in ("auto", "never"):
        raise EngineError(f"engine.merge_lora {policy!r} is not one of auto, never")
    return policy


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
    from .base import torch_sees_cuda

    return "cuda" if torch_sees_cuda() else "cpu"
