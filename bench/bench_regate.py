"""Time to verdict on the demo: a cold session (build the base model, train, gate) against a warm re-gate of the same
unchanged run, each beside its reference, in one run.

  cold      `pytest suites` in a fresh copy of the demo with an empty user cache (FTGATE_CACHE_DIR)
  warm      the same command again: same adapter, data, config and engine settings (target <= 0.15 x cold, and
            <= 3 x the reference)
  reference a fresh interpreter that imports mlflow and reads the run (params, tags, every metric history)
  collect   the collection phase of the warm session (run resolution and the re-use check of the training config),
            against `import mlflow` + 1 s
  models    whether the warm session imported torch, transformers or started an engine (it must not load a model)

Prints figures; asserts nothing. Usage: python bench/bench_regate.py [--warm 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIMER = '''
import json, os, sys, time
T = {}
def pytest_sessionstart(session): T["start"] = time.perf_counter()
def pytest_collection(session): T["collect0"] = time.perf_counter()
def pytest_collection_finish(session): T["collect1"] = time.perf_counter()
def pytest_unconfigure(config):
    mods = [m for m in ("torch", "transformers", "lm_eval", "llamafactory", "matplotlib", "rouge_score", "sklearn")
            if m in sys.modules]
    with open(os.environ["FTGATE_BENCH_TIMES"], "w") as fh:
        json.dump({"collect_s": T.get("collect1", 0) - T.get("collect0", 0), "imported": mods}, fh)
'''


def session(root: Path, env: dict, times: Path) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:cacheprovider", "-p", "ftgate_bench_timer"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=root, env={**env, "FTGATE_BENCH_TIMES": str(times)}, capture_output=True,
                         text=True)
    wall = time.perf_counter() - t0
    if out.returncode not in (0, 1):
        print(out.stdout[-3000:], out.stderr[-3000:])
        raise SystemExit(f"pytest suites exited {out.returncode}")
    return wall, json.loads(times.read_text())


def reference(uri: str, run_id: str, env: dict) -> tuple[float, float]:
    code = ("import time; t0 = time.perf_counter(); import mlflow; t1 = time.perf_counter(); "
            "from pytest_ftgate.store import RunStore; RunStore(%r).load(%r); print(t1 - t0)") % (uri, run_id)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, float(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--warm", type=int, default=3, help="warm sessions (the median is printed)")
    args = ap.parse_args()
    from tests.conftest import copy_demo_tree

    work = Path(tempfile.mkdtemp(prefix="ftgate-regate-"))
    import shutil

    root = copy_demo_tree(work / "demo")
    shutil.copytree(ROOT / "suites", root / "suites", ignore=shutil.ignore_patterns("__pycache__"))
    (work / "plugin").mkdir()
    (work / "plugin" / "ftgate_bench_timer.py").write_text(TIMER)
    env = {**os.environ, "FTGATE_CACHE_DIR": str(work / "user-cache"), "MLFLOW_DISABLE_TELEMETRY": "true",
           "PYTHONPATH": os.pathsep.join([str(work / "plugin"), str(ROOT)]), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    cold, cold_t = session(root, env, work / "cold.json")
    warm = [session(root, env, work / f"warm{i}.json") for i in range(args.warm)]
    verdicts = list((root / "ftgate-results" / "verdicts").glob("*.json"))
    run = json.loads(next(v for v in verdicts if not v.name.endswith(".intoto.json")).read_text())
    uri = f"sqlite:///{root / '.ftgate' / 'mlflow.db'}"
    refs = [reference(uri, run["run_id"], env) for _ in range(3)]
    med = statistics.median
    w, ref, imp = med(x[0] for x in warm), med(r[0] for r in refs), med(r[1] for r in refs)
    collect = med(x[1]["collect_s"] for x in warm)
    print(f"cold session (build base, train, gate): {cold:.1f} s wall (verdict {run['verdict']})")
    print(f"warm re-gate, same run: {w:.2f} s wall (median of {args.warm}) = {w / cold:.3f} x cold (target <= 0.15)")
    print(f"reference, import mlflow + read the run: {ref:.2f} s wall (import mlflow {imp:.2f} s); warm = "
          f"{w / ref:.2f} x reference (target <= 3)")
    print(f"collection of the warm session: {collect:.2f} s; import mlflow + 1 s = {imp + 1:.2f} s")
    print(f"heavy modules the warm session imported: {', '.join(warm[-1][1]['imported']) or 'none'} "
          f"(cold: {', '.join(cold_t['imported'])})")


if __name__ == "__main__":
    main()
