"""End to end on the bundled demo run: ``pytest suites/test_quality.py --run-id WORSE --ftgate-compare DEMO`` gates
both runs and the A/B comparison of the made-worse adapter against the demo prefers the demo, in the verdicts, the
report and report.json; a ``--ftgate-compare`` run on another base model is one usage error before any gate runs."""

import json
import shutil
from pathlib import Path

import pytest

from .mlflow_runs import make_run
from .test_quality_e2e import SUITES, candidate_run, copy_store, preload, weakened  # noqa: F401 (preload: autouse)

pytestmark = pytest.mark.slow


def session(pytester, uri: str, cache: Path, *args: str):
    shutil.copy(SUITES / "test_quality.py", pytester.path / "test_quality.py")
    pytester.makefile(".yaml", ftgate=f"quality:\n  cache_dir: {cache}\n  bootstrap_samples: 300\n"
                                      "  determinism_samples: 2\nengine:\n  kind: hf\n")
    return pytester.runpytest("-p", "no:cacheprovider", "--ftgate-tracking-uri", uri, *args)


def test_ab_of_the_demo_adapter_against_a_made_worse_one_prefers_the_demo(pytester, demo_run, tmp_path):
    uri = copy_store(demo_run, tmp_path)
    worse = weakened(Path(demo_run.adapter_dir), Path(demo_run.base_model_dir), tmp_path / "worse" / "adapter", 0.3)
    run_id = candidate_run(uri, demo_run, worse, "demo-weakened")
    result = session(pytester, uri, tmp_path / "cache", "--run-id", run_id, "--ftgate-compare", demo_run.run_id)
    out = pytester.path / "ftgate-results"
    verdicts = {k: json.loads((out / "verdicts" / f"{k}.json").read_text()) for k in (run_id, demo_run.run_id)}
    assert all(v["complete"] for v in verdicts.values()), result.stdout.str()
    c = verdicts[run_id]["comparison"]
    assert c["mode"] == "--ftgate-compare" and c["against"]["run_id"] == demo_run.run_id and c["n"] == 64
    assert c["prefers"] == "reference" and c["preferred"]["run_id"] == demo_run.run_id, c["message"]
    assert all(m["ci_high"] < 0 and m["losses"] > m["wins"] for m in c["metrics"])
    assert {m["metric"] for m in c["metrics"]} == {"rouge1", "rougeL", "f1"}
    assert verdicts[demo_run.run_id]["comparison"] == {"mode": "--ftgate-compare", "role": "reference",
                                                      "compared_with": ["demo-weakened"]}
    doc = json.loads((out / "report.json").read_text())
    table = doc["comparison"]
    assert table["best"]["run_id"] == demo_run.run_id
    demo_row = next(r for r in table["runs"] if r["run_id"] == demo_run.run_id)
    assert (demo_row["hyperparameters"]["learning_rate"], demo_row["hyperparameters"]["lora_rank"],
            demo_row["hyperparameters"]["lora_alpha"], demo_row["hyperparameters"]["epochs"]) == (0.005, 16, 32, 2.0)
    assert demo_row["hyperparameters"]["dataset_sha256"].startswith("sha256:")
    assert demo_row["scores"]["f1"]["ci_low"] <= demo_row["scores"]["f1"]["value"] <= demo_row["scores"]["f1"]["ci_high"]
    assert demo_row["g4"]["f1"]["ci_low"] > 0  # the demo beats its base model
    html = (out / "report.html").read_text()
    assert "Comparison of the session&#x27;s runs" in html or "Comparison of the session's runs" in html
    assert "data:image/svg+xml;base64," in html and "the evidence prefers" in html
    result.stdout.fnmatch_lines(["*A/B: demo-weakened vs * on 64 test samples: the evidence prefers *"])


def test_a_compare_run_on_another_base_model_is_one_usage_error_before_any_gate_runs(pytester, demo_run, tmp_path):
    uri = copy_store(demo_run, tmp_path)
    other = make_run(uri, "other-base", {"loss": [(1, 1.0)]}, params={"ftgate.base_model_sha256": "sha256:" + "0" * 64})
    result = session(pytester, uri, tmp_path / "cache", "--run-id", other, "--ftgate-compare", demo_run.run_id)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ftgate-compare '*': run 'other-base' has another base model (sha256:0000*); "
                                 "compare runs fine-tuned from one base model*"])
    assert not (pytester.path / "ftgate-results" / "report.json").exists()


def test_under_xdist_the_workers_answers_reach_the_ab_comparison(pytester, demo_run, tmp_path):
    """``-n 2``: each worker keeps the answers of the runs it scored; they come back with its collection and the
    controller compares them as a single process would."""
    uri = copy_store(demo_run, tmp_path)
    worse = weakened(Path(demo_run.adapter_dir), Path(demo_run.base_model_dir), tmp_path / "worse" / "adapter", 0.3)
    run_id = candidate_run(uri, demo_run, worse, "demo-weakened")
    result = session(pytester, uri, tmp_path / "cache", "--run-id", run_id, "--ftgate-compare", demo_run.run_id,
                     "-n", "2")
    c = json.loads((pytester.path / "ftgate-results" / "verdicts" / f"{run_id}.json").read_text())["comparison"]
    assert c["n"] == 64 and c["prefers"] == "reference", result.stdout.str()
    assert all(m["ci_high"] < 0 and m["losses"] > m["wins"] for m in c["metrics"])
