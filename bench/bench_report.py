"""Report generation time and size for 10 runs with 1,000 generations each. Prints figures, asserts nothing.

1. The builders alone (report.py): the HTML sections (with 10 loss plots), report.json, summary.md.
2. A real `pytest` session over 10 MLflow runs (sqlite, each with an adapter artifact) whose G4 and G5 gates
   carry 1,000 generations each: the time spent in pytest_sessionfinish (verdicts, pytest-html's report with our
   sections, secret scrubbing, sha256, attestations, report.json, summary.md, MLflow uploads), and the sizes.

    .venv/bin/python bench/bench_report.py [--runs 10] [--samples 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLANTED = '''import pytest
from pytest_ftgate.gates import Check

N = __N__


def _samples(ft_run):
    return [{"prompt": f"reverse: w{i} stone river <b>{ft_run.run_name}</b>", "reference": f"river stone w{i}",
             "prediction": f"river stone w{i}" if i % 7 else f"<img src=x onerror=alert({i})>",
             "scores": {"exact_match": float(i % 7 != 0), "f1": (i % 7) / 6}} for i in range(N)]


@pytest.mark.gate("G4", name="baseline", severity="block")
def test_baseline(ft_run, gate):
    metrics = {m: {"candidate": 0.8, "baseline": 0.5, "ratio": 1.6, "ci_low": 0.25, "ci_high": 0.35,
                   "significant": True} for m in ("rouge1", "rougeL", "f1")}
    gate.check(Check(True, 1.6, 0.95, "ok", {"metrics": metrics, "samples": _samples(ft_run)}))


@pytest.mark.gate("G5", name="task_quality", severity="warn")
def test_task(ft_run, gate):
    gate.check(Check(True, 0.86, 0.8, "ok", {"samples": _samples(ft_run)}))
'''


def evidence(runs: int, samples: int):
    from pytest_ftgate.report import RunEvidence
    from pytest_ftgate.store import RunRecord
    from tests import histories as H

    out = []
    for r in range(runs):
        smp = [{"prompt": f"p{i} " * 8, "reference": f"r{i}", "prediction": f"<i>{i}</i> " * 6,
                "scores": {"f1": (i % 10) / 10}} for i in range(samples)]
        gates = [{"id": "G4", "name": "baseline", "severity": "block", "outcome": "passed", "value": 1.6,
                  "threshold": 0.95, "message": "ok", "test": f"t{r}", "details": {"samples": smp, "metrics": {
                      "rougeL": {"candidate": 0.8, "baseline": 0.5, "ratio": 1.6, "ci_low": 0.2, "ci_high": 0.4}}}}]
        verdict = {"run_id": f"{r:032x}", "run_name": f"run-{r}", "verdict": "pass", "incomplete": False,
                   "error": "", "gates": gates}
        rec = RunRecord(f"{r:032x}", f"run-{r}", "1", "FINISHED", 0, 1, {"lora_rank": "8"}, {}, H.clean())
        out.append(RunEvidence(verdict=verdict, record=rec))
    return out


def bench_builders(runs: int, samples: int) -> None:
    from pytest_ftgate import report

    evs = evidence(runs, samples)
    meta = {"version": "bench", "started_at": "", "finished_at": ""}
    t = time.perf_counter()
    page = report.session_html(evs, meta)
    t_cold = time.perf_counter() - t  # includes importing matplotlib
    t = time.perf_counter()
    page = report.session_html(evs, meta)
    t_html = time.perf_counter() - t
    t = time.perf_counter()
    doc = json.dumps(report.session_json(evs, meta), indent=1, default=str)
    t_json = time.perf_counter() - t
    t = time.perf_counter()
    md = report.summary_md(evs, meta)
    t_md = time.perf_counter() - t
    print(f"builders, {runs} runs x {samples} samples:")
    print(f"  HTML sections {t_html:6.2f} s  {len(page.encode()) / 1e6:6.2f} MB ({runs} plots; {report.MAX_SAMPLES} "
          f"generations shown per run; first call with the matplotlib import {t_cold:.2f} s)")
    print(f"  report.json   {t_json:6.2f} s  {len(doc.encode()) / 1e6:6.2f} MB")
    print(f"  summary.md    {t_md:6.3f} s  {len(md.encode()) / 1e3:6.1f} kB")


def bench_session(runs: int, samples: int) -> None:
    import pytest
    from mlflow.tracking import MlflowClient

    from tests import histories as H
    from tests.mlflow_runs import make_run

    work = Path(tempfile.mkdtemp(prefix="ftgate-bench-report-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    adapter = work / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(os.urandom(1 << 20))
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}')
    t = time.perf_counter()
    ids = []
    for r in range(runs):
        ids.append(make_run(uri, f"bench-{r}", H.clean(), params={"hf_token": "hf_benchSECRET123"}))
        MlflowClient(tracking_uri=uri).log_artifacts(ids[-1], str(adapter), "adapter")
    print(f"session: {runs} MLflow runs created in {time.perf_counter() - t:.1f} s")
    suites = work / "suites"
    suites.mkdir()
    (suites / "test_training.py").write_text((ROOT / "suites" / "test_training.py").read_text())
    (suites / "test_quality_bench.py").write_text(PLANTED.replace("__N__", str(samples)))
    class SessionTimer:
        """Times pytest_sessionfinish from the outside (every other implementation runs inside it)."""

        seconds = 0.0

        @pytest.hookimpl(wrapper=True, tryfirst=True)
        def pytest_sessionfinish(self, session):
            start = time.perf_counter()
            try:
                return (yield)
            finally:
                self.seconds = time.perf_counter() - start

    timer = SessionTimer()
    os.chdir(work)
    t = time.perf_counter()
    ret = pytest.main([str(suites), "-q", "-p", "no:cacheprovider", "--ftgate-tracking-uri", uri,
                       *[a for i in ids for a in ("--run-id", i)]], plugins=[timer])
    total = time.perf_counter() - t
    out = work / "ftgate-results"
    sizes = {p.name: p.stat().st_size for p in (out / "report.html", out / "report.json", out / "summary.md")}
    print(f"session: exit {int(ret)}, {total:.1f} s in all, of which pytest_sessionfinish {timer.seconds:.1f} s "
          "(verdicts, pytest-html + sections, scrub, sha256, 10 attestations, report.json, summary.md, uploads)")
    print("  sizes: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()))
    leaked = [p.name for p in out.rglob("*") if p.is_file() and "hf_benchSECRET123" in p.read_text(errors="ignore")]
    print(f"  planted secret found in: {leaked or 'no file'}")
    print(f"  (work dir {work})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--builders-only", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    bench_builders(args.runs, args.samples)
    if not args.builders_only:
        bench_session(args.runs, args.samples)


if __name__ == "__main__":
    main()
