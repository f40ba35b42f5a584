"""Demo training wall time under `ftgate train`, side by side with plain `llamafactory-cli train` on the same config.

    .venv/bin/python bench/bench_train.py [--repeats 2] [--config training/demo.yaml]

Both run the same YAML (paths resolved from its directory: the plain CLI runs with cwd = the config's directory),
the same seed, one BLAS thread, and MLflow reporting into a fresh sqlite store. The runs alternate (wrapper, plain,
wrapper, plain, ...) so background load hits both. Printed per run: wall time, LLaMA-Factory's own train_runtime,
and what surrounds it; then the wrapper's overhead (median wall difference) and where it goes. Prints, no asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_ftgate import demo, train


def plain(config: Path, work: Path, i: int) -> dict:
    """`llamafactory-cli train CONFIG` as a user runs it, reporting to MLflow."""
    env = train.child_env()
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / f'plain-{i}.db'}"
    cli = Path(sys.executable).with_name("llamafactory-cli")
    log = work / f"plain-{i}.log"
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        code = subprocess.run([str(cli), "train", config.name], cwd=config.parent, env=env, stdout=out,
                              stderr=subprocess.STDOUT, check=False).returncode
    wall = time.perf_counter() - t0
    out_dir = (config.parent / train.load_spec(config).args["output_dir"]).resolve()
    results = json.loads((out_dir / "all_results.json").read_text()) if code == 0 else {}
    return {"kind": "llamafactory-cli", "wall": wall, "train_runtime": results.get("train_runtime"), "code": code}


def wrapped(config: Path, work: Path, i: int) -> dict:
    """`ftgate train CONFIG --retrain`: the child process with lineage, adapter and audit logged to MLflow."""
    env = dict(os.environ)
    uri = f"sqlite:///{work / f'ftgate-{i}.db'}"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest_ftgate.train", str(config), "--retrain", "--tracking-uri",
                           uri, "--log-dir", str(work / f"logs-{i}")], env=env, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"kind": "ftgate train", "wall": wall, "train_runtime": None, "code": proc.returncode,
                "error": proc.stderr[-2000:]}
    run_id = proc.stdout.strip().splitlines()[-1]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    runtime = run.data.metrics.get("train_runtime")
    log = next((work / f"logs-{i}").glob("train-*/train.log"))
    return {"kind": "ftgate train", "wall": wall, "train_runtime": runtime, "code": 0,
            "run_wall": (run.info.end_time - run.info.start_time) / 1000, "log": str(log)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--config", default=str(ROOT / "training" / "demo.yaml"))
    ns = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    root = work / "root"
    src = Path(ns.config).resolve()
    shutil.copytree(src.parent, root / "training")
    shutil.copytree(ROOT / "fixtures" / "data", root / "fixtures" / "data")
    config = root / "training" / src.name
    t0 = time.perf_counter()
    base = demo.ensure_demo_base(root / ".ftgate" / demo.DEMO_BASE_NAME)
    print(f"demo base model ready in {time.perf_counter() - t0:.1f} s ({base})")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '1 (set by the wrapper)')}")
    rows = []
    for i in range(ns.repeats):
        for fn in (wrapped, plain):
            r = fn(config, work, i)
            rows.append(r)
            rt = r["train_runtime"]
            print(f"  {r['kind']:<17} run {i}: wall {r['wall']:6.1f} s, train_runtime "
                  f"{rt if rt is None else f'{rt:.1f}'} s, around training {r['wall'] - (rt or 0):5.1f} s"
                  + ("" if r["code"] == 0 else f"  FAILED (exit {r['code']}) {r.get('error', '')[-300:]}"))
    report(rows)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def report(rows: list[dict]) -> None:
    ok = [r for r in rows if r["code"] == 0]
    med = {k: statistics.median([r["wall"] for r in ok if r["kind"] == k]) for k in {r["kind"] for r in ok}}
    rt = {k: statistics.median([r["train_runtime"] for r in ok if r["kind"] == k]) for k in med}
    print("\nmedian               wall      train_runtime   around training")
    for k in sorted(med):
        print(f"  {k:<17} {med[k]:7.1f} s  {rt[k]:9.1f} s     {med[k] - rt[k]:7.1f} s")
    if len(med) == 2:
        diff = med["ftgate train"] - med["llamafactory-cli"]
        print(f"\nwrapper overhead (median wall, ftgate train - llamafactory-cli): {diff:+.1f} s "
              f"({diff / med['llamafactory-cli'] * 100:+.0f}%)")
        print("  = parent (import mlflow, sqlite store, hashing inputs, run lookup) + key check before training "
              "(get_train_args) + after training (adapter/audit artifacts, pip freeze)")


if __name__ == "__main__":
    sys.exit(main())
