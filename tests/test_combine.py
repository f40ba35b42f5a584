"""`ftgate combine`: a sweep split over two CI jobs, each with its own --ftgate-out, becomes one report."""

import json
from pathlib import Path

import pytest

from pytest_ftgate import cli

from . import histories as H
from .mlflow_runs import make_run

SUITE = (Path(__file__).parents[1] / "suites" / "test_training.py").read_text()


@pytest.mark.slow
def test_two_jobs_outputs_combine_into_one_report_and_one_exit_code(pytester, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = {"clean": make_run(uri, "clean", H.clean()), "nan": make_run(uri, "nan", H.nan_in_last_step())}
    pytester.makepyfile(test_training=SUITE)
    for job, name in (("job-1", "clean"), ("job-2", "nan")):
        pytester.runpytest("-p", "no:cacheprovider", "--ftgate-tracking-uri", uri, "--run-id", ids[name],
                           "--ftgate-out", job)
    dst = pytester.path / "combined"
    assert cli.main(["combine", str(pytester.path / "job-1"), str(pytester.path / "job-2"), "--out", str(dst)]) == 1
    doc = json.loads((dst / "report.json").read_text())
    assert {r["run_id"]: r["verdict"] for r in doc["runs"]} == {ids["clean"]: "pass", ids["nan"]: "block"}
    page = (dst / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and 'class="ftgate-banner ftgate-block"' in page
    assert "| clean |" in (dst / "summary.md").read_text()
    assert cli.main(["combine", str(pytester.path / "job-1"), "--out", str(tmp_path / "one")]) == 0


@pytest.mark.slow
def test_a_complete_verdict_wins_over_a_later_partial_one_and_a_missing_report_is_one_line(pytester, tmp_path,
                                                                                          capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = make_run(uri, "clean", H.clean())
    pytester.makepyfile(test_training=SUITE)
    pytester.runpytest("-p", "no:cacheprovider", "--ftgate-tracking-uri", uri, "--run-id", run_id, "--ftgate-out", "a")
    pytester.runpytest("-p", "no:cacheprovider", "--ftgate-tracking-uri", uri, "--run-id", run_id, "--ftgate-out", "b",
                       "-k", "G1")
    dst = tmp_path / "c"
    assert cli.main(["combine", str(pytester.path / "a"), str(pytester.path / "b"), "--out", str(dst)]) == 0
    (run,) = json.loads((dst / "report.json").read_text())["runs"]
    assert run["verdict"] == "pass" and run["complete"] is True
    assert cli.main(["combine", str(tmp_path / "nowhere")]) == 2
    assert "report.json cannot be read" in capsys.readouterr().err
