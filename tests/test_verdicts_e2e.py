"""End to end: real MLflow runs (sqlite) with LLaMA-Factory-shaped histories, gated by `pytest suites`."""

import json
from pathlib import Path

import pytest

from . import histories as H
from .mlflow_runs import make_run

SUITE = (Path(__file__).parents[1] / "suites" / "test_training.py").read_text()
DEFECTS = {
    "clean": (H.clean, "pass", {}),
    "nan-last-step": (H.nan_in_last_step, "block", {"G1": "failed"}),
    "inf-grad-norm": (H.inf_grad_norm_mid_run, "block", {"G1": "failed"}),
    "flat-loss": (H.flat_loss, "warn", {"G2": "failed"}),
    "eval-rising": (H.eval_loss_rising_four_times, "warn", {"G3": "failed"}),
    "ratio-1.5": (lambda: H.eval_train_ratio(1.5), "warn", {"G3": "failed"}),
    "no-metrics": (lambda: {}, "block", {"G1": "failed"}),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store holding a clean run and one run per defect."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    ids = {name: make_run(uri, name, make()) for name, (make, _, _) in DEFECTS.items()}
    return uri, ids


def gate(pytester, uri, *args, **kwargs):
    pytester.makepyfile(test_training=SUITE)
    return pytester.runpytest("-p", "no:cacheprovider", "--ftgate-tracking-uri", uri, *args, **kwargs)


def verdict(pytester, run_id):
    return json.loads((pytester.path / "ftgate-results" / "verdicts" / f"{run_id}.json").read_text())


@pytest.mark.slow
def test_every_defect_gets_its_verdict_file_and_the_session_exits_one(pytester, store):
    uri, ids = store
    args = [a for name in DEFECTS for a in ("--run-id", name)]
    result = gate(pytester, uri, *args)
    assert result.ret == 1
    for name, (_, expected, failed) in DEFECTS.items():
        v = verdict(pytester, ids[name])
        assert (v["run_name"], v["verdict"], v["complete"]) == (name, expected, True)
        assert (v["gates_expected"], v["gates_run"], v["partial_reason"]) == (4, 4, "")
        outcomes = {g["id"]: g["outcome"] for g in v["gates"]}
        assert {k: outcomes[k] for k in failed} == failed
        assert set(outcomes) == {"G1", "G2", "G3", "resources"}


def test_a_run_id_that_does_not_exist_is_one_usage_error_and_no_gate_runs(pytester, store):
    uri, ids = store
    result = gate(pytester, uri, "--run-id", "f" * 32, "--run-id", "clean")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert err.count("no run with this id or name") == 1 and "Traceback" not in result.stdout.str() + err
    assert not (pytester.path / "ftgate-results" / "verdicts" / f"{ids['clean']}.json").exists()


def test_a_clean_run_passes_and_exits_zero(pytester, store):
    uri, ids = store
    result = gate(pytester, uri, "--run-id", ids["clean"])
    result.assert_outcomes(passed=4)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*ftgate release verdicts*", f"PASS * clean [[]{ids['clean']}[]]"])


def test_a_failing_warn_gate_shows_warn_and_does_not_fail_the_session(pytester, store):
    uri, ids = store
    result = gate(pytester, uri, "--run-id", "flat-loss", "-v")
    assert result.ret == 0
    assert result.parseoutcomes().get("warn") == 2  # G2 and G3 (perplexity above 100)
    result.stdout.fnmatch_lines(["*test_loss_converges_without_spikes[[]flat-loss[]] WARN*",
                                 "WARN * flat-loss *", "*warn  G2 convergence failed: improvement_pct*"])


def test_a_nan_in_the_last_step_blocks_release_and_the_summary_names_value_and_threshold(pytester, store):
    uri, _ = store
    result = gate(pytester, uri, "--run-id", "nan-last-step")
    assert result.ret == 1
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["BLOCK * nan-last-step *",
                                 "*block G1 stability failed: *=NaN threshold=finite at every step*"])


def test_a_gate_severity_can_be_raised_to_block_in_the_config(pytester, store):
    uri, _ = store
    pytester.makefile(".yaml", ftgate="gates:\n  G2: block\n")
    result = gate(pytester, uri, "--run-id", "flat-loss")
    assert result.ret == 1
    assert {g["id"]: g["severity"] for g in verdict(pytester, store[1]["flat-loss"])["gates"]}["G2"] == "block"


def test_the_verdict_lands_on_the_mlflow_run_as_tags_and_an_artifact(pytester, store):
    from mlflow.tracking import MlflowClient

    uri, ids = store
    gate(pytester, uri, "--run-id", "inf-grad-norm")
    client = MlflowClient(uri)
    tags = client.get_run(ids["inf-grad-norm"]).data.tags
    assert tags["ftgate.verdict"] == "block" and tags["ftgate.gate.G1"] == "failed"
    assert tags["ftgate.gate.G2"] == "passed"
    where = tags["ftgate.evidence"]
    assert where == f"ftgate/sessions/{tags['ftgate.session_id']}"
    stored = {a.path for a in client.list_artifacts(ids["inf-grad-norm"], where)}
    assert f"{where}/{ids['inf-grad-norm']}.json" in stored and f"{where}/report.html" in stored


def test_a_run_name_resolves_and_an_ambiguous_name_lists_the_candidates(pytester, store, tmp_path):
    uri, _ = store
    twin_a = make_run(uri, "twin", H.clean())
    twin_b = make_run(uri, "twin", H.clean())
    result = gate(pytester, uri, "--run-id", "twin", "--run-id", "clean")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # said once, before any gate runs
    err = result.stderr.str()
    assert err.count("the name is ambiguous: 2 runs are named so") == 1
    assert twin_a in err and twin_b in err and "Traceback" not in err


def test_a_running_and_a_failed_run_are_errors_for_those_runs_and_the_others_are_still_gated(pytester, store):
    uri, ids = store
    running = make_run(uri, "still-running", H.clean(), status="RUNNING")
    failed = make_run(uri, "crashed", H.clean(), status="FAILED", tags={"ftgate.error": "CUDA out of memory"})
    result = gate(pytester, uri, "--run-id", running, "--run-id", failed, "--run-id", ids["clean"])
    assert result.ret == 1
    result.assert_outcomes(passed=4, errors=8)
    assert "is still RUNNING" in verdict(pytester, running)["error"]
    assert "ended FAILED (CUDA out of memory)" in verdict(pytester, failed)["error"]
    assert verdict(pytester, ids["clean"])["verdict"] == "pass"


def test_a_tracking_server_that_does_not_answer_is_one_clear_usage_error(pytester, free_tcp_port):
    result = gate(pytester, f"http://127.0.0.1:{free_tcp_port}", "--run-id", "a" * 32)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*tracking store http://127.0.0.1:{free_tcp_port} does not answer*"])
    assert "Traceback" not in result.stderr.str()


@pytest.mark.slow
def test_ctrl_c_mid_session_leaves_a_partial_verdict_on_disk(pytester, store):
    uri, ids = store
    pytester.makeconftest("""
        import pytest
        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_call(item):
            if "generalization" in str(item.get_closest_marker("gate").kwargs.get("name")):
                raise KeyboardInterrupt
    """)
    result = gate(pytester, uri, "--run-id", "clean", no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    v = verdict(pytester, ids["clean"])
    assert v["verdict"] == "partial" and v["complete"] is False and [g["id"] for g in v["gates"]] == ["G1", "G2"]
    assert "interrupted" in v["partial_reason"]
