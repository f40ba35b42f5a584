"""The plugin's own cost for gating N runs' training gates (N = 1, 10, 50; 1,000-step histories) beyond MLflow's
reads and the writes a complete session must make, and its import cost on `pytest --help`.

Each figure is the least of ``--repeat`` interleaved runs (as ``timeit`` reports it: a busy machine only ever
adds time, so the least run is the one nearest the code's own cost), with the median of the per-repeat
differences and their range beside it, so the noise of the day is in plain view. Each is printed in wall seconds
and in CPU seconds (user + system; steadier on a shared machine, blind to waits such as fsync).

Prints figures; asserts nothing. Usage: python bench/bench_gate_overhead.py [--runs 1 10 50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import compileall
import json
import math
import os
import resource
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


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the command and its children)."""
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


READS = ("import time, sys; sys.path.insert(0, %r); t0, c0 = time.perf_counter(), time.process_time(); import mlflow;"
         "from pytest_ftgate.store import RunStore; s = RunStore(%r); [s.load(i) for i in %r];"
         "print(time.perf_counter() - t0, time.process_time() - c0)")
# The writes a complete session must make per run: its tags (one batch) and its verdict artifact.
WRITES = ("import json, sys, tempfile, time, pathlib; sys.path.insert(0, %r); import mlflow;"
          "from pytest_ftgate.store import RunStore; s = RunStore(%r); s.client; d = pathlib.Path(tempfile.mkdtemp());"
          "v = d / 'verdict.json'; v.write_text(json.dumps({'gates': [{'id': 'G%%d' %% i} for i in range(4)]}));"
          "t0, c0 = time.perf_counter(), time.process_time();"
          "[(s.set_tags(i, {'ftgate.verdict': 'pass', 'ftgate.session_id': 'x', 'ftgate.evidence': 'y',"
          " 'ftgate.gate.G1': 'passed', 'ftgate.gate.G2': 'passed', 'ftgate.gate.G3': 'passed',"
          " 'ftgate.gate.resources': 'passed'}), s.log_artifact(i, v, 'ftgate/sessions/x')) for i in %r];"
          "print(time.perf_counter() - t0, time.process_time() - c0)")


def one_n(n: int, steps: int, repeat: int, env: dict) -> dict[str, list[float]]:
    """Per repeat, (wall, CPU) seconds of: the session, MLflow reads, required writes and bare pytest for a complete
    training-gates session over ``n`` runs."""
    import shutil

    from tests.mlflow_runs import make_run

    work = Path(tempfile.mkdtemp(prefix=f"ftgate-bench-{n}-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    ids = [make_run(uri, f"run{i}", history(steps)) for i in range(n)]
    (work / "suites").mkdir()
    shutil.copy(ROOT / "suites" / "test_training.py", work / "suites")  # the whole suite: a complete session
    py = lambda code: tuple(map(float, subprocess.run(  # noqa: E731 (wall, CPU) seconds
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()[-2:]))
    suite = [sys.executable, "-m", "pytest", str(work / "suites"), "-q", "-p", "no:cacheprovider", "--rootdir",
             str(work), "--ftgate-tracking-uri", uri]
    runs = [a for i in ids for a in ("--run-id", i)]
    bare_cmd = [sys.executable, "-m", "pytest", str(work / "suites"), "--collect-only", "-q", "-p", "no:cacheprovider",
                "-p", "no:ftgate", "--rootdir", str(work)]
    clock = work / "mlflow-clock.json"  # the session's own MLflow seconds (bench/_mlflow_clock.py)
    clocked = {**env, "FTGATE_MLFLOW_CLOCK": str(clock),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "bench"), env.get("PYTHONPATH")]))}
    gate, reads, writes, bare, inside = [], [], [], [], []
    for k in range(repeat):  # interleaved: a busy machine slows the session and its reference alike
        reads.append(py(READS % (str(ROOT), uri, ids)))
        writes.append(py(WRITES % (str(ROOT), uri, ids)))
        gate.append(timed(suite + runs + ["-p", "_mlflow_clock", "--ftgate-out", str(work / f"out{k}")], work,
                          clocked))
        spent = json.loads(clock.read_text())
        inside.append((gate[-1][0] - spent["reads"] - spent["writes"], spent["reads"], spent["writes"],
                       gate[-1][1] - spent["reads_cpu"] - spent["writes_cpu"]))
        bare.append(timed(bare_cmd, work, env))
    return {"session": gate, "reads": reads, "writes": writes, "pytest": bare, "in-process": inside}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONWARNINGS": "ignore"}
    # An installed package has its bytecode: with PYTHONDONTWRITEBYTECODE set and a module edited since its .pyc,
    # every session would compile it again (20-30 ms each for the larger ones), a cost no user has.
    compileall.compile_dir(str(ROOT / "pytest_ftgate"), quiet=1)
    print(f"complete training-gates sessions (G1-G3, resources) over N runs x 6 keys x {args.steps} steps; least of "
          f"{args.repeat} interleaved repeats; ours = session - MLflow reads (import mlflow + load the runs) - "
          "required writes (tags + the verdict artifact per run); target: ours <= 1 s at N = 10, linear in N")
    print("pytest = pytest's own start-up and collection of the suite without the plugin (-p no:ftgate); "
          "median (range) = ours per repeat, session minus the reads and writes measured beside it; "
          "CPU = user + system seconds (steadier than wall time on a shared machine); in = measured inside the "
          "session's own process (bench/_mlflow_clock.py): its wall time less the seconds it spent in MLflow's reads "
          "and required writes, the median of the repeats (the noise of another process does not enter it); inCPU = the "
          "same in CPU seconds (the session's CPU less the CPU seconds of those MLflow calls)")
    print(f"{'N':>4} {'':>4} {'session s':>10} {'reads s':>8} {'writes s':>9} {'ours s':>7} {'pytest s':>9} "
          f"{'ours-pytest s':>14} {'ours/run ms':>12}  {'median (range) s':>20}")
    med = statistics.median
    for n in args.runs:
        t = one_n(n, args.steps, args.repeat, env)
        for k, what in enumerate(("wall", "CPU")):
            v = {name: [x[k] for x in runs] for name, runs in t.items() if name != "in-process"}
            least = {name: min(x) for name, x in v.items()}
            ours = least["session"] - least["reads"] - least["writes"]
            each = sorted(s - r - w for s, r, w in zip(v["session"], v["reads"], v["writes"]))
            print(f"{n if not k else '':>4} {what:>4} {least['session']:>10.2f} {least['reads']:>8.2f} "
                  f"{least['writes']:>9.2f} {ours:>7.2f} {least['pytest']:>9.2f} {ours - least['pytest']:>14.2f} "
                  f"{ours / n * 1000:>12.0f}  {med(each):>6.2f} ({each[0]:.2f} to {each[-1]:.2f})", flush=True)
        inside = t["in-process"]  # (session wall - its own MLflow reads and writes, reads, writes, CPU) per repeat
        for k, what in ((0, "in"), (3, "inCPU")):
            ours_in = sorted(x[k] for x in inside)
            bare = min(b[k // 3] for b in t["pytest"])
            print(f"{'':>4} {what:>5}{'':>10} {med(x[1] for x in inside):>8.2f} {med(x[2] for x in inside):>9.2f} "
                  f"{med(ours_in):>7.2f} {bare:>9.2f} {med(ours_in) - bare:>14.2f} {med(ours_in) / n * 1000:>12.0f}  "
                  f"{med(ours_in):>6.2f} ({ours_in[0]:.2f} to {ours_in[-1]:.2f})", flush=True)
    work = Path(tempfile.mkdtemp(prefix="ftgate-bench-help-"))
    helpcmd = [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"]
    with_plugin = [timed(helpcmd, work, env)[0] for _ in range(5)]
    without = [timed(helpcmd + ["-p", "no:ftgate"], work, env)[0] for _ in range(5)]
    print(f"pytest --help: {med(with_plugin) * 1000:.0f} ms with pytest-ftgate, {med(without) * 1000:.0f} ms "
          f"without (-p no:ftgate): the plugin adds {(med(with_plugin) - med(without)) * 1000:.0f} ms")
    imp = subprocess.run([sys.executable, "-X", "importtime", "-c", "import pytest_ftgate.plugin"], env=env,
                         capture_output=True, text=True).stderr.splitlines()
    total = [line for line in imp if line.rstrip().endswith("pytest_ftgate.plugin")]
    if total:
        print(f"import pytest_ftgate.plugin (cumulative, -X importtime): {int(total[-1].split('|')[1]) / 1000:.1f} ms")


if __name__ == "__main__":
    main()
