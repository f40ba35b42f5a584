"""Benchmark of the engines: the embedded hf engine's predictions per second batched vs one prompt at a time, vs
lm-eval's hf backend, vs a real vLLM server (``make vllm``; its start-up time too) on the same model, adapter,
prompts and greedy settings (side by side, one run), and the speed-up of a prediction-cache hit.

The hf engine and lm-eval's hf backend run in turn at the same batch size (``--reps`` times, the least CPU and
wall seconds count; CPU seconds are steadier on a shared machine), with the engine's ``merge_lora: never`` beside
them: the ratio and "answers equal: n/n", at each of ``--threads`` (default: one thread, and torch's default,
the thread count a gate runs with), and whether the engine's answers are the same at all of them. Prints figures;
asserts nothing. Models: the tiny demo base (~0.1M parameters) and a mid-size random Llama (~23M), each with a LoRA
adapter (the trained demo adapter when .ftgate/train/demo holds one, else random non-zero LoRA).
On a GPU the hf engine also runs in bfloat16. Usage:
    .venv/bin/python bench/bench_engine.py [--n 64] [--tokens 32] [--engines hf,single,lm-eval,vllm] [--reps 2]
                                           [--threads 1,default]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_ftgate import demo, predict  # noqa: E402
from pytest_ftgate.config import Engine  # noqa: E402
from pytest_ftgate.serve import create_engine  # noqa: E402
from pytest_ftgate.serve.base import GenParams, Prompt  # noqa: E402
from pytest_ftgate.serve.cache import PredictionCache  # noqa: E402

MID = dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
           max_position_embeddings=256, tie_word_embeddings=False)


def random_lora(base: Path, dst: Path, r: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base)
    get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear",
                                     init_lora_weights=False)).save_pretrained(dst)
    return dst


def mid_model(dst: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = demo.build_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, **MID)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(dst)
    tok.save_pretrained(dst)
    return dst


def models(work: Path) -> list[tuple[str, Path, Path]]:
    base = demo.ensure_demo_base(demo.default_base_dir(ROOT))
    trained = ROOT / ".ftgate" / "train" / "demo"
    demo_adapter = trained if (trained / "adapter_config.json").is_file() else random_lora(base, work / "demo-lora", 8)
    mid = mid_model(work / "mid")
    return [("demo base + adapter", base, demo_adapter), ("mid (~23M) + LoRA r16", mid,
                                                            random_lora(mid, work / "mid-lora", 16))]


CPU: dict[str, float] = {}  # label -> CPU seconds of the last timed call (less sensitive to a busy machine)


def timed(fn, label: str = ""):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    CPU[label] = time.process_time() - c
    return out, time.perf_counter() - t


def engine_settings(**settings):
    """config.Engine with settings it may not declare yet (engine.merge_lora, read by the hf engine)."""
    import dataclasses
    import types

    return types.SimpleNamespace(**{**dataclasses.asdict(Engine()), **settings})


def hf_engine(base: Path, adapter: Path, batch: int, dtype: str = "auto", merge: str = "auto"):
    engine = create_engine("hf", base, engine_settings(batch_size=batch, dtype=dtype, merge_lora=merge))
    engine.add_adapter("a", adapter)
    return engine


def ours(base: Path, adapter: Path, prompts: list[Prompt], tokens: int, batch: int, dtype: str = "auto"):
    engine = hf_engine(base, adapter, batch, dtype)
    engine.generate(prompts[:2], "a", GenParams(max_new_tokens=tokens))  # warm-up
    return timed(lambda: engine.generate(prompts, "a", GenParams(max_new_tokens=tokens)), f"ours-{batch}-{dtype}")


def lm_eval_generate(base: Path, adapter: Path, prompts: list[Prompt], tokens: int, batch: int):
    """lm-eval's hf backend (HFLM + peft, float32 on CPU) answering ``prompts`` greedily: a function to time."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(base), peft=str(adapter), batch_size=batch, device="cpu", dtype="float32")
    reqs = [Instance("generate_until", {}, (p.text, {"until": [], "max_gen_toks": tokens, "do_sample": False}), i)
            for i, p in enumerate(prompts)]
    lm.generate_until(reqs[:2], disable_tqdm=True)  # warm-up
    return lambda: lm.generate_until(reqs, disable_tqdm=True)


def versus_lm_eval(base: Path, adapter: Path, prompts: list[Prompt], tokens: int, batch: int, reps: int = 2,
                   threads: int | None = None) -> dict:
    """The hf engine (merged LoRA, the default), the same with ``merge_lora: never`` and lm-eval's hf backend on the
    same prompts, batch size and torch thread count, run in turn ``reps`` times: the least CPU and wall seconds of
    each, and answers."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    params = GenParams(max_new_tokens=tokens)
    runs = {}
    for merge in ("auto", "never"):
        engine = hf_engine(base, adapter, batch, merge=merge)
        engine.generate(prompts[:2], "a", params)  # warm-up
        runs[merge] = lambda engine=engine: engine.generate(prompts, "a", params)
    runs["lm-eval"] = lm_eval_generate(base, adapter, prompts, tokens, batch)
    best = {name: {"cpu": float("inf"), "wall": float("inf")} for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            out, wall = timed(run, name)
            best[name].update(out=out, cpu=min(best[name]["cpu"], CPU[name]), wall=min(best[name]["wall"], wall))
    return best


def print_versus(best: dict, n: int, batch: int, threads: int) -> None:
    ours_, never, theirs = best["auto"], best["never"], best["lm-eval"]
    print(f"  -- {threads} thread{'s' if threads > 1 else ''}")
    for label, r in ((f"hf engine, merged LoRA, batch {batch}", ours_), ("hf engine, merge_lora: never", never),
                     (f"lm-eval hf backend, batch {batch}", theirs)):
        print(f"  {label:34s} CPU {r['cpu']:6.2f} s  wall {r['wall']:6.2f} s  ({n / r['wall']:.1f} predictions/s)")
    equal = sum(a.strip() == b.strip() for a, b in zip(ours_["out"], theirs["out"]))
    unmerged = sum(a == b for a, b in zip(ours_["out"], never["out"]))
    print(f"  hf engine vs lm-eval hf: x{theirs['cpu'] / ours_['cpu']:.2f} CPU seconds, "
          f"x{theirs['wall'] / ours_['wall']:.2f} wall; answers equal: {equal}/{n} "
          f"(merged vs unmerged engine: {unmerged}/{n}; unmerged x{theirs['cpu'] / never['cpu']:.2f} CPU)")


def vllm_server(base: Path, adapter: Path, prompts: list[Prompt], tokens: int, work: Path):
    """(answers, generation seconds, start-up seconds) of the real vLLM engine, all prompts in flight at once."""
    from pytest_ftgate.serve.vllm import VLLMEngine

    engine = VLLMEngine(str(base), Engine(kind="vllm", concurrency=len(prompts), startup_timeout_s=900),
                        log_dir=work / "vllm-logs")
    engine.add_adapter("a", adapter)
    try:
        _, started = timed(engine.start, "vllm-start")
        engine.generate(prompts[:2], "a", GenParams(max_new_tokens=tokens))  # warm-up
        out, t = timed(lambda: engine.generate(prompts, "a", GenParams(max_new_tokens=tokens)), "vllm")
    finally:
        engine.close()
    return out, t, started


def cache_speedup(base: Path, adapter: Path, prompts: list[Prompt], tokens: int, work: Path) -> tuple[float, float]:
    engine = create_engine("hf", base, Engine(batch_size=16))
    engine.add_adapter("a", adapter)
    cache = PredictionCache(work / "cache")
    weights = {"base_sha256": predict.weights_digest(base), "adapter_sha256": predict.weights_digest(adapter)}
    params = GenParams(max_new_tokens=tokens)
    (_, cached_first, _), cold = timed(lambda: predict.predict(engine, "a", prompts, params, weights, cache))
    (_, cached_second, _), warm = timed(lambda: predict.predict(engine, "a", prompts, params, weights, cache))
    assert cached_first == 0 and cached_second == len(prompts)
    return cold, warm


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="prompts (the demo test set, repeated as needed)")
    ap.add_argument("--tokens", type=int, default=32, help="max new tokens (greedy)")
    ap.add_argument("--engines", default="hf,single,lm-eval,vllm",
                    help="which to run, comma-separated (single: the hf engine one prompt at a time)")
    ap.add_argument("--reps", type=int, default=2, help="hf engine vs lm-eval: runs in turn, the least time counts")
    ap.add_argument("--threads", default="1,default",
                    help="torch thread counts of the hf engine vs lm-eval runs, comma-separated (default: torch's own)")
    args = ap.parse_args(argv)
    engines = set(args.engines.split(","))
    import torch

    default_threads = torch.get_num_threads()
    thread_counts = list(dict.fromkeys(default_threads if t == "default" else int(t) for t in args.threads.split(",")))

    rows = demo.demo_rows()["test"]
    prompts = [Prompt((("user", f"{r['instruction']}\n{r['input']}"),), raw=True)
               for r in (rows * (args.n // len(rows) + 1))[: args.n]]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}; "
          f"{args.n} prompts, greedy, max {args.tokens} new tokens")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for label, base, adapter in models(work):
            print(f"\n== {label}")
            batched, t_b = ours(base, adapter, prompts, args.tokens, 16)
            print(f"  hf engine, batch 16      {args.n / t_b:8.1f} predictions/s  ({t_b:.2f} s, "
                  f"CPU {CPU['ours-16-auto']:.2f} s)")
            if "single" in engines:
                single, t_1 = ours(base, adapter, prompts, args.tokens, 1)
                identical = sum(a == b for a, b in zip(batched, single))
                print(f"  hf engine, one at a time {args.n / t_1:8.1f} predictions/s  ({t_1:.2f} s, "
                      f"CPU {CPU['ours-1-auto']:.2f} s)  "
                      f"batched speed-up x{t_1 / t_b:.1f}; identical answers: {identical}/{args.n}")
            if "lm-eval" in engines:
                answers = []
                for threads in thread_counts:
                    best = versus_lm_eval(base, adapter, prompts, args.tokens, 16, args.reps, threads)
                    print_versus(best, args.n, 16, threads)
                    answers.append(best["auto"]["out"])
                torch.set_num_threads(default_threads)
                if len(answers) > 1:
                    same = sum(len(set(a)) == 1 for a in zip(*answers))
                    print(f"  hf engine answers the same at {', '.join(map(str, thread_counts))} threads: "
                          f"{same}/{args.n}")
            if "vllm" in engines:
                served, t_v, started = vllm_server(base, adapter, prompts, args.tokens, work)
                same = sum(a == b for a, b in zip(batched, served))
                print(f"  vLLM server, {args.n} in flight {args.n / t_v:6.1f} predictions/s  ({t_v:.2f} s; start-up "
                      f"{started:.1f} s)  x{t_b / t_v:.2f} of hf batched; answers identical to hf: {same}/{args.n}")
            if torch.cuda.is_available():
                _, t_g = ours(base, adapter, prompts, args.tokens, 16, dtype="bfloat16")
                print(f"  hf engine, bf16 on GPU   {args.n / t_g:8.1f} predictions/s  ({t_g:.2f} s)")
            cold, warm = cache_speedup(base, adapter, prompts, args.tokens, work / label.split()[0])
            print(f"  cache: cold {cold:.2f} s, all hits {warm * 1000:.1f} ms  -> x{cold / warm:.0f} faster")


if __name__ == "__main__":
    main(sys.argv[1:])
