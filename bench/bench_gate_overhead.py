"""The plugin's own overhead for gating 10 runs with 1,000-step histories, and its import cost on `pytest --help`.

Prints figures; asserts nothing. Usage: python bench/bench_gate_overhead.py [--runs 10] [--steps 1000]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def history(steps: int) -> dict:
    h = {k: [] for k in ("loss", "grad_norm", "learning_rate", "epoch")}
    for s in range(1, steps + 1):
        h["loss"].append((s, 0.1 + 5.8 * math.exp(-s / (steps / 6))))
        h["grad_norm"].append((s, 2.0 * math.exp(-s / steps) + 0.5))
        h["learning_rate"].append((s, 1e-4 * (1 - s / steps)))
        h["epoch"].append((s, 4 * s / steps))
    h["eval_loss"] = [(s, 0.11 + 5.8 * math.exp(-s / (steps / 6))) for s in range(steps // 10, steps + 1, steps // 10)]
    h["system/cpu_utilization_percentage"] = [(i, 90.0) for i in range(10)]
    return h


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from tests.mlflow_runs import make_run

    work = Path(tempfile.mkdtemp(prefix="ftgate-bench-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    t0 = time.perf_counter()
    ids = [make_run(uri, f"run{i}", history(args.steps)) for i in range(args.runs)]
    print(f"store: {args.runs} runs x 6 keys x {args.steps} steps logged in {time.perf_counter() - t0:.1f} s")

    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONWARNINGS": "ignore"}
    reads = ("import time, sys; sys.path.insert(0, %r); t0 = time.perf_counter(); import mlflow;"
             "from pytest_ftgate.runs import RunStore; s = RunStore(%r); t1 = time.perf_counter();"
             "[s.load(i) for i in %r]; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)") % (str(ROOT), uri, ids)
    read_import, read_load = [], []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", reads], env=env, capture_output=True, text=True, check=True)
        a, b = map(float, out.stdout.split())
        read_import.append(a)
        read_load.append(b)
    suite = [sys.executable, "-m", "pytest", str(ROOT / "suites" / "test_training.py"), "-q", "-p", "no:cacheprovider",
             "--rootdir", str(work), "--ftgate-tracking-uri", uri, "--ftgate-out", str(work / "out")]
    suite += [a for i in ids for a in ("--run-id", i)]
    gate = [timed(suite, work, env) for _ in range(args.repeat)]
    med = statistics.median
    print(f"MLflow reads alone: import mlflow {med(read_import):.2f} s + load {args.runs} runs "
          f"{med(read_load):.2f} s (median of {args.repeat})")
    print(f"pytest suites/test_training.py over {args.runs} runs ({4 * args.runs} gates): {med(gate):.2f} s wall")
    rest = med(gate) - med(read_import) - med(read_load)
    print(f"everything else (pytest start-up, plugin, gates, verdict files, MLflow tags/artifacts): {rest:.2f} s")

    helpcmd = [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"]
    with_plugin = [timed(helpcmd, work, env) for _ in range(5)]
    without = [timed(helpcmd + ["-p", "no:ftgate"], work, env) for _ in range(5)]
    print(f"pytest --help: {med(with_plugin) * 1000:.0f} ms with pytest-ftgate, {med(without) * 1000:.0f} ms "
          f"without (-p no:ftgate): the plugin adds {(med(with_plugin) - med(without)) * 1000:.0f} ms")
    imp = subprocess.run([sys.executable, "-X", "importtime", "-c", "import pytest_ftgate.plugin"], env=env,
                         capture_output=True, text=True).stderr.splitlines()
    total = [line for line in imp if line.rstrip().endswith("pytest_ftgate.plugin")]
    if total:
        print(f"import pytest_ftgate.plugin (cumulative, -X importtime): {int(total[-1].split('|')[1]) / 1000:.1f} ms")


if __name__ == "__main__":
    main()
