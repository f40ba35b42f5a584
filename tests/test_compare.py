"""The comparison of the session's runs (``compare.py``), pure: A/B pairs on per-sample scores, the runs table, the
best releasable run, the bad input of ``--ftgate-compare``, the report section and report.json. No model."""

import json

import pytest

from pytest_ftgate import compare, metrics, report
from pytest_ftgate.config import FtgateConfig, load_config
from pytest_ftgate.errors import ConfigError, FtgateError

REFS = [f"w{i} x{i}" for i in range(40)]
SETTINGS = compare.Settings(("exact_match", "f1"), "exact_match", resamples=400)


def answers(key: str, right: int, test_set: str = "sha256:t", base: str = "sha256:b", prompts: str = "p",
            n: int = 40) -> compare.RunAnswers:
    """A run that answers the first ``right`` of ``n`` references exactly and the rest with a wrong word."""
    outs = [r if i < right else "nope" for i, r in enumerate(REFS[:n])]
    return compare.RunAnswers(key, f"/data/{test_set[-1]}.json", test_set, prompts, base,
                              metrics.score(outs, REFS[:n]))


def verdict(name: str, outcome: str = "pass", complete: bool = True, gates: list | None = None) -> dict:
    return {"run_name": name, "verdict": outcome if complete else "partial", "complete": complete,
            "gates": gates or []}


def test_a_candidate_that_answers_more_samples_right_is_preferred_with_an_interval_above_zero():
    good, worse = answers("a", 36), answers("b", 12)
    c = compare.pair(good, worse, {"a": "demo", "b": "demo-weakened"}, SETTINGS, "--ftgate-compare")
    em = next(m for m in c["metrics"] if m["metric"] == "exact_match")
    assert em["difference"] == pytest.approx(0.6) and em["ci_low"] > 0
    assert (em["wins"], em["ties"], em["losses"]) == (24, 16, 0) and em["prefers"] == "candidate"
    assert c["prefers"] == "candidate" and c["preferred"] == {"run_id": "a", "run_name": "demo"}
    assert c["against"] == {"run_id": "b", "run_name": "demo-weakened"} and c["n"] == 40
    assert c["message"].startswith("demo vs demo-weakened on 40 test samples: the evidence prefers demo")
    reverse = compare.pair(worse, good, {"a": "demo", "b": "demo-weakened"}, SETTINGS, "session")
    assert reverse["prefers"] == "reference" and reverse["preferred"]["run_name"] == "demo"


def test_two_runs_with_the_same_answers_are_all_ties_and_the_evidence_prefers_neither():
    c = compare.pair(answers("a", 20), answers("b", 20), {}, SETTINGS, "session")
    assert c["prefers"] == "neither" and c["preferred"] is None
    assert all((m["wins"], m["ties"], m["losses"]) == (0, 40, 0) for m in c["metrics"])
    assert "every interval includes 0" in c["message"]


def test_a_small_per_sample_difference_within_the_tie_margin_is_a_tie():
    a, b = answers("a", 40), answers("b", 40)
    b.scores.per_sample["f1"][:5] -= 0.01
    tight = compare.metric_row(a.scores, b.scores, "f1", SETTINGS)
    loose = compare.metric_row(a.scores, b.scores, "f1", compare.Settings(("f1",), "f1", 100, tie_margin=0.05))
    assert (tight["wins"], tight["ties"]) == (5, 35) and (loose["wins"], loose["ties"]) == (0, 40)


@pytest.mark.parametrize("other, says", [
    (dict(test_set="sha256:u"), "another test set (/data/t.json vs /data/u.json); score both on one file with "
                                "--ftgate-test-set PATH"),
    (dict(base="sha256:c"), "another base model (sha256:b vs sha256:c); compare runs fine-tuned from one base"),
    (dict(prompts="q"), "other prompts on the same test set"),
])
def test_runs_on_another_test_set_base_model_or_prompts_are_not_compared_and_say_why(other, says):
    c = compare.pair(answers("a", 30), answers("b", 10, **other), {"b": "ref"}, SETTINGS, "--ftgate-compare")
    assert c["prefers"] == "not comparable" and c["metrics"] == []
    assert c["message"].startswith("not compared with ref: ") and says in c["message"]


def test_a_reference_on_another_base_model_or_test_set_is_one_line_per_run_naming_it_and_the_fix():
    ref = compare.identity({"input_artifacts": {"base_model": {"hash": "sha256:" + "a" * 64}, "datasets": [
        {"split": "test", "sha256": "sha256:" + "1" * 64}]}}, {})
    same = compare.identity(None, {"ftgate.base_model_sha256": "sha256:" + "a" * 64})
    other_base = compare.identity(None, {"ftgate.base_model_sha256": "sha256:" + "b" * 64})
    other_test = {"base_model": "", "test_set": "sha256:" + "2" * 64}
    lines = compare.mismatches("demo", ref, [("same", same), ("big", other_base), ("other-test", other_test)], False)
    assert len(lines) == 2
    assert lines[0].startswith("--ftgate-compare 'demo': run 'big' has another base model (sha256:bbbbbbbbbbbbbbbb…)")
    assert lines[0].endswith("gate this run without --ftgate-compare, or name a reference run of its base model")
    assert "run 'other-test' has another test set" in lines[1] and "--ftgate-test-set PATH" in lines[1]
    assert compare.mismatches("demo", ref, [("other-test", other_test)], explicit_test_set=True) == []


def test_the_session_check_refuses_a_compare_run_on_another_base_model_before_any_gate_runs(monkeypatch):
    from pytest_ftgate.record import LoadedRecord
    from pytest_ftgate.session import FtgateSession, Options, RunRef

    sess = FtgateSession(Options(compare="ref"), FtgateConfig())
    sess.compare_key = "r1"
    hashes = {"r1": "sha256:" + "a" * 64, "r2": "sha256:" + "a" * 64, "r3": "sha256:" + "f" * 64}
    monkeypatch.setattr(sess, "audit_record", lambda run_id, params=None: LoadedRecord(None, "absent"))
    monkeypatch.setattr(sess, "_params", lambda run_id: {"ftgate.base_model_sha256": hashes[run_id]})
    refs = [RunRef("ref", "r1", "demo"), RunRef("x", "r2", "same-base"), RunRef("y", "r3", "other-base")]
    with pytest.raises(FtgateError) as exc:
        sess._check_comparable(refs)
    assert str(exc.value).count("\n") == 0 and "run 'other-base' has another base model" in str(exc.value)
    sess._check_comparable(refs[:2])  # one base model: nothing to say


def test_without_a_reference_each_group_of_comparable_runs_is_compared_with_its_best_releasable_run():
    verdicts = {"a": verdict("lr-high", "block"), "b": verdict("lr-mid"), "c": verdict("lr-low", "warn"),
                "d": verdict("other-base")}
    found = {"a": answers("a", 39), "b": answers("b", 30), "c": answers("c", 10), "d": answers("d", 40, base="x")}
    s = compare.session_comparison(verdicts, {}, found, SETTINGS)
    assert s["best"]["run_name"] == "other-base"  # highest exact match of the releasable runs (another group)
    pairs = s["pairs"]
    assert pairs["b"] == {"mode": "session", "role": "reference", "compared_with": ["lr-high", "lr-low"]}
    assert pairs["a"]["against"]["run_name"] == pairs["c"]["against"]["run_name"] == "lr-mid"  # a blocks: not best
    assert pairs["c"]["prefers"] == "reference" and "d" not in pairs
    assert any("2 groups" in n for n in s["notes"])


def test_with_compare_every_candidate_is_compared_with_the_named_run_and_one_without_answers_says_so():
    verdicts = {"a": verdict("demo"), "b": verdict("weakened"), "c": verdict("no-quality")}
    s = compare.session_comparison(verdicts, {}, {"a": answers("a", 36), "b": answers("b", 8)}, SETTINGS,
                                   reference="b")
    assert s["mode"] == "--ftgate-compare" and s["pairs"]["a"]["prefers"] == "candidate"
    assert s["pairs"]["b"]["role"] == "reference" and s["pairs"]["c"]["prefers"] == "not compared"
    assert "no-quality has no scored answers" in s["pairs"]["c"]["message"]
    none = compare.session_comparison(verdicts, {}, {"a": answers("a", 36)}, SETTINGS, reference="b")
    assert "the reference run has no scored answers" in none["notes"][0]


def test_the_best_releasable_run_is_complete_and_passes_or_warns_else_the_table_says_why_there_is_none():
    rows = [{"run_id": "a", "run_name": "a", "verdict": "block", "releasable": False, "primary": 0.9},
            {"run_id": "b", "run_name": "b", "verdict": "partial", "releasable": False, "primary": 0.8},
            {"run_id": "c", "run_name": "c", "verdict": "warn", "releasable": True, "primary": 0.5}]
    assert compare.best_releasable(rows, "f1")["run_name"] == "c"
    assert "highest f1 (0.5) of 1 releasable" in compare.best_releasable(rows, "f1")["reason"]
    assert compare.best_releasable(rows[:2], "f1")["reason"] == "no run is releasable (complete, pass or warn)"


def test_the_runs_table_reads_llamafactory_params_then_the_recorded_training_config():
    params = {"learning_rate": "0.005", "llamafactory.lora_rank": "16", "llamafactory.lora_alpha": "32",
              "num_train_epochs": "2.0", "max_steps": "-1", "ftgate.dataset_sha256": "sha256:d", "seed": "42"}
    assert compare.hyperparameters(params, None, ("seed",)) == {
        "learning_rate": 0.005, "lora_rank": 16, "lora_alpha": 32, "epochs": 2.0, "max_steps": None,
        "dataset_sha256": "sha256:d", "seed": 42}
    audit = {"input_artifacts": {"config": {"content": "lora_rank: 8\nlora_alpha: 16\nmax_steps: 12\n"},
                                 "datasets": [{"split": "train", "sha256": "sha256:e"}]}}
    got = compare.hyperparameters({"learning_rate": "1e30"}, audit)
    assert (got["learning_rate"], got["lora_rank"], got["lora_alpha"], got["max_steps"], got["dataset_sha256"]) == (
        1e30, 8, 16, 12, "sha256:e")


def test_a_runs_row_holds_its_scores_with_intervals_and_its_g4_g5_and_benchmark_values():
    gates = [{"id": "G4", "details": {"comparisons": [
        {"metric": "f1", "baseline": "base", "candidate_value": 0.9, "baseline_value": 0.1, "difference": 0.8,
         "ci_low": 0.7, "ci_high": 0.9}, {"metric": "f1", "baseline": "production", "candidate_value": 0.9}]}},
        {"id": "G5", "value": {"exact_match": 0.85}},
        {"id": "bench:demo_mc", "details": {"metric": "acc,none", "candidate": 0.6, "candidate_stderr": 0.05}}]
    row = compare.run_row("a", verdict("demo", gates=gates), {}, None, answers("a", 30), SETTINGS)
    em = row["scores"]["exact_match"]
    assert em["value"] == 0.75 and em["ci_low"] < 0.75 < em["ci_high"] and row["primary"] == 0.75
    assert row["g4"] == {"f1": {"candidate_value": 0.9, "baseline_value": 0.1, "difference": 0.8, "ci_low": 0.7,
                                "ci_high": 0.9}}
    assert row["g5"] == {"exact_match": 0.85} and row["releasable"] is True
    assert row["benchmarks"]["demo_mc"]["ci_low"] == pytest.approx(0.6 - 1.96 * 0.05)


def test_a_runs_answers_cross_the_xdist_boundary_as_plain_json():
    a = answers("a", 30)
    back = compare.RunAnswers.from_dict(json.loads(json.dumps(a.to_dict())))
    assert back.run_key == "a" and back.test_set_sha256 == a.test_set_sha256
    assert back.scores.per_sample["f1"].tolist() == a.scores.per_sample["f1"].tolist()


def test_the_report_section_escapes_run_names_shows_the_plot_and_report_json_holds_the_table():
    verdicts = {"a": verdict("<img src=x onerror=alert(1)>"), "b": verdict("weakened", "warn")}
    summary = compare.session_comparison(verdicts, {"a": ({"learning_rate": "0.005"}, None)},
                                         {"a": answers("a", 36), "b": answers("b", 8)}, SETTINGS)
    html = report.comparison_html(summary)
    assert "<img src=x" not in html and "&lt;img src=x" in html
    assert 'src="data:image/svg+xml;base64,' in html and "best releasable run: &lt;img" in html
    assert "wins/ties/losses" in html and "the evidence prefers" in html
    doc = report.session_json([], {"version": "x", "comparison": summary})
    assert doc["comparison"]["best"]["run_id"] == "a" and "comparison" not in doc["session"]
    assert report.comparison_html({}) == ""


def test_compare_settings_default_to_g4s_metrics_and_a_bad_metric_is_rejected_at_load(tmp_path):
    s = compare.Settings.of(FtgateConfig())
    assert s.metrics == ("rouge1", "rougeL", "f1") and s.primary == "rouge1" and s.resamples == 1000
    cfg = tmp_path / "ftgate.yaml"
    cfg.write_text("compare:\n  metrics: [f1]\n  primary_metric: exact_match\n")
    assert compare.Settings.of(load_config(cfg)).metrics == ("f1", "exact_match")
    cfg.write_text("compare:\n  metrics: [f1, rouge_l]\n")
    with pytest.raises(ConfigError, match=r"ftgate.yaml: compare.metrics\[1\] 'rouge_l' is not a metric with "
                                          r"per-sample scores .*did you mean 'rougeL'"):
        load_config(cfg)
    cfg.write_text("compare:\n  tie_margin: -1\n")
    with pytest.raises(ConfigError, match="compare.tie_margin must be >= 0"):
        load_config(cfg)


def test_the_compare_option_and_its_ini_key_reach_the_session(pytester):
    from pytest_ftgate.plugin import SESSION_KEY

    assert pytester.parseconfigure("--ftgate-compare", "baseline-run").stash[SESSION_KEY].options.compare == \
        "baseline-run"
    pytester.makeini("[pytest]\nftgate_compare = from-ini\n")
    assert pytester.parseconfigure().stash[SESSION_KEY].options.compare == "from-ini"
    result = pytester.runpytest("--ftgate-compare", "has space")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'has space' is not a run id*"])
