"""lm-eval wall time on the hf backend, per 100 loglikelihood requests and per 100 generations, with and without
pytest-ftgate's result cache. Prints figures; asserts nothing.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_lmeval.py [--docs 64] [--repeats 2]

Model: the demo base (tiny random-init Llama, ~170k parameters, built locally) with a random LoRA adapter (r 8,
lm_head fully trained, as the demo's), float32 on CPU, batch 16. Tasks: the shipped demo_mc (4 choices per doc
-> 4 loglikelihood requests) and demo_gen (greedy, at most 16 new tokens). On a tiny model the figures are
lm-eval's own overhead; a real model adds its forward passes, which the cache saves as well.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def build_models(work: Path) -> tuple[str, str]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from pytest_ftgate import demo

    base = demo.ensure_demo_base(work / "base")
    model = AutoModelForCausalLM.from_pretrained(base)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", modules_to_save=["lm_head"],
                      init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(work / "adapter")
    return str(base), str(work / "adapter")


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=64, help="documents per task (limit); the demo tasks have 64")
    ap.add_argument("--repeats", type=int, default=2, help="warm repetitions per measurement (median printed)")
    args = ap.parse_args()
    from pytest_ftgate import lmeval
    from pytest_ftgate.config import BenchTask

    with tempfile.TemporaryDirectory(prefix="ftgate-bench-lmeval-") as tmp:
        work = Path(tmp)
        t_build, (base, adapter) = timed(lambda: build_models(work))
        catalog = lmeval.TaskCatalog([ROOT / "fixtures" / "lm_eval_tasks"])
        settings = lmeval.Settings(backend="hf", device="cpu", dtype="float32", batch_size=16)
        plain = lmeval.BenchRunner(settings, catalog, None, work / "plain", echo=lambda m: None)
        cached = lmeval.BenchRunner(settings, catalog, lmeval.ResultCache(work / "cache"), work / "cached")
        candidate, _ = plain.sides(base, adapter)
        print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; models built in "
              f"{t_build:.1f} s")
        print(f"{'task':<10} {'requests':>8} {'first run (load)':>17} {'no cache':>10} {'per 100':>8} "
              f"{'cache miss':>10} {'cache hit':>10} {'per 100':>8}")
        for name, per_doc, kind in (("demo_mc", 4, "loglikelihood"), ("demo_gen", 1, "generations")):
            task = BenchTask(name=name, limit=args.docs)
            first, res = timed(lambda t=task: plain.evaluate(t, candidate))
            warm = statistics.median(timed(lambda t=task: plain.evaluate(t, candidate))[0] for _ in range(args.repeats))
            miss, _ = timed(lambda t=task: cached.evaluate(t, candidate))
            hit = statistics.median(timed(lambda t=task: cached.evaluate(t, candidate))[0] for _ in range(args.repeats))
            n = res.data["n-samples"][name]["effective"] * per_doc
            print(f"{name:<10} {n:>8} {first:>15.2f} s {warm:>8.3f} s {warm / n * 100:>6.2f} s "
                  f"{miss:>8.3f} s {hit:>8.3f} s {hit / n * 100:>6.3f} s   ({kind})")
        plain.close()
        cached.close()


if __name__ == "__main__":
    main()
