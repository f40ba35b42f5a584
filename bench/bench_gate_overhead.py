"""The plugin's own cost for gating N runs' training gates (N = 1, 10, 50; 1,000-step histories) beyond MLflow's
reads and the writes a complete session must make, and its import cost on `pytest --help`.

Each figure is the least of ``--repeat`` interleaved runs (as ``timeit`` reports it: a busy machine only ever
adds time, so the least run is the one nearest the code's own cost), with the median of the per-repeat
differences and their range beside it, so the noise of the day is in plain view.

Prints figures; asserts nothing. Usage: python bench/bench_gate_overhead.py [--runs 1 10 50] [--repeat 5]
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


READS = ("import time, sys; sys.path.insert(0, %r); t0 = time.perf_counter(); import mlflow;"
         "from pytest_ftgate.store import RunStore; s = RunStore(%r); [s.load(i) for i in %r];"
         "print(time.perf_counter() - t0)")
# The writes a complete session must make per run: its tags (one batch) and its verdict artifact.
WRITES = ("import json, sys, tempfile, time, pathlib; sys.path.insert(0, %r); import mlflow;"
          "from pytest_ftgate.store import RunStore; s = RunStore(%r); s.client; d = pathlib.Path(tempfile.mkdtemp());"
          "v = d / 'verdict.json'; v.write_text(json.dumps({'gates': [{'id': 'G%%d' %% i} for i in range(4)]}));"
          "t0 = time.perf_counter();"
          "[(s.set_tags(i, {'ftgate.verdict': 'pass', 'ftgate.session_id': 'x', 'ftgate.evidence': 'y',"
          " 'ftgate.gate.G1': 'passed', 'ftgate.gate.G2': 'passed', 'ftgate.gate.G3': 'passed',"
          " 'ftgate.gate.resources': 'passed'}), s.log_artifact(i, v, 'ftgate/sessions/x')) for i in %r];"
          "print(time.perf_counter() - t0)")


def one_n(n: int, steps: int, repeat: int, env: dict) -> dict[str, list[float]]:
    """Per repeat: session wall, MLflow reads, required writes and bare pytest for a complete training-gates
    session over ``n`` runs."""
    import shutil

    from tests.mlflow_runs import make_run

    work = Path(tempfile.mkdtemp(prefix=f"ftgate-bench-{n}-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    ids = [make_run(uri, f"run{i}", history(steps)) for i in range(n)]
    (work / "suites").mkdir()
    shutil.copy(ROOT / "suites" / "test_training.py", work / "suites")  # the whole suite: a complete session
    py = lambda code: float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                           check=True).stdout.split()[-1])  # noqa: E731
    suite = [sys.executable, "-m", "pytest", str(work / "suites"), "-q", "-p", "no:cacheprovider", "--rootdir",
             str(work), "--ftgate-tracking-uri", uri]
    runs = [a for i in ids for a in ("--run-id", i)]
    bare_cmd = [sys.executable, "-m", "pytest", str(work / "suites"), "--collect-only", "-q", "-p", "no:cacheprovider",
                "-p", "no:ftgate", "--rootdir", str(work)]
    gate, reads, writes, bare = [], [], [], []
    for k in range(repeat):  # interleaved: a busy machine slows the session and its reference alike
        reads.append(py(READS % (str(ROOT), uri, ids)))
        writes.append(py(WRITES % (str(ROOT), uri, ids)))
        gate.append(timed(suite + runs + ["--ftgate-out", str(work / f"out{k}")], work, env))
        bare.append(timed(bare_cmd, work, env))
    return {"session": gate, "reads": reads, "writes": writes, "pytest": bare}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONWARNINGS": "ignore"}
    print(f"complete training-gates sessions (G1-G3, resources) over N runs x 6 keys x {args.steps} steps; least of "
          f"{args.repeat} interleaved repeats; ours = session - MLflow reads (import mlflow + load the runs) - "
          "required writes (tags + the verdict artifact per run); target: ours <= 1 s at N = 10, linear in N")
    print("pytest = pytest's own start-up and collection of the suite without the plugin (-p no:ftgate); "
          "median (range) = ours per repeat, session minus the reads and writes measured beside it")
    print(f"{'N':>4} {'session s':>10} {'reads s':>8} {'writes s':>9} {'ours s':>7} {'pytest s':>9} "
          f"{'ours-pytest s':>14} {'ours/run ms':>12}  {'median (range) s':>20}")
    med = statistics.median
    for n in args.runs:
        t = one_n(n, args.steps, args.repeat, env)
        least = {k: min(v) for k, v in t.items()}
        ours = least["session"] - least["reads"] - least["writes"]
        each = sorted(s - r - w for s, r, w in zip(t["session"], t["reads"], t["writes"]))
        print(f"{n:>4} {least['session']:>10.2f} {least['reads']:>8.2f} {least['writes']:>9.2f} {ours:>7.2f} "
              f"{least['pytest']:>9.2f} {ours - least['pytest']:>14.2f} {ours / n * 1000:>12.0f}  "
              f"{med(each):>6.2f} ({each[0]:.2f} to {each[-1]:.2f})")
    work = Path(tempfile.mkdtemp(prefix="ftgate-bench-help-"))
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
