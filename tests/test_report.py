"""The report's content, as plain code: escaping, the sections found in gate details, the WARN label, the curves,
secrets, report.json and summary.md (no pytest session, no MLflow)."""

import base64
import html
import json
import re

import pytest

from pytest_ftgate import report
from pytest_ftgate.redact import REDACTED, Redactor, is_secret_key
from pytest_ftgate.store import RunRecord

from . import histories as H

XSS = "<img src=x onerror=\"document.title='PWNED'\">"


def gate(gid="G1", severity="block", outcome="passed", details=None, message="ok", **kw):
    return {"id": gid, "name": kw.get("name", gid.lower()), "severity": severity, "outcome": outcome,
            "value": kw.get("value", 1.0), "threshold": kw.get("threshold", 0.5), "message": message,
            "test": f"suites/test_x.py::test_{gid}[run]", "details": details or {}}


def verdict(gates, verdict_="pass", incomplete=False, name="run-a", error=""):
    return {"run_id": "a" * 32, "run_name": name, "verdict": verdict_, "incomplete": incomplete, "error": error,
            "gates": gates, "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:01:00+00:00",
            "ftgate_version": "0.1.0", "report_sha256": ""}


def record(history=None, params=None, name="run-a"):
    return RunRecord(run_id="a" * 32, run_name=name, experiment_id="1", status="FINISHED", start_time=0,
                     end_time=1000, params=params or {}, tags={}, history=history if history is not None else H.clean())


SAMPLES = [{"prompt": f"p{i}", "reference": f"r{i}", "prediction": f"answer {i}", "scores": {"f1": i / 10}}
           for i in range(30)] + [{"prompt": "q", "reference": "r", "prediction": XSS, "scores": {"f1": 0.0}}]
G4 = {"metrics": {"rougeL": {"candidate": 0.81, "baseline": 0.42, "ratio": 1.93, "ci_low": 0.3, "ci_high": 0.47,
                             "significant": True}}, "samples": SAMPLES}


def test_every_model_output_and_name_is_escaped_in_the_run_section():
    ev = report.RunEvidence(verdict(
        [gate("G4", details=G4, message=XSS), gate(f"bench:{XSS}", details={"task": XSS, "candidate": 0.5})],
        name=XSS), record=record(name=XSS), notes=[XSS])
    page = report.session_html([ev], {"version": "0.1.0", "tracking_uri": XSS})
    assert "<img src=x" not in page and "onerror=\"document" not in page
    assert html.escape(XSS) in page or html.escape(XSS, quote=True) in page
    assert page.count("<img ") == 1  # the loss plot only


def test_the_sections_of_a_run_are_all_present_and_expanded():
    ev = report.RunEvidence(verdict([gate("G1"), gate("G4", details=G4), gate("schema", details={"rows": 3})]),
                            record=record())
    page = report.run_html(ev)
    for title in ("Gates", "Loss and eval_loss", "Metrics against the baseline", "Benchmarks", "Audit record",
                  "Data checks", "Sample of generations"):
        assert re.search(r'<details class="ftgate-section[^"]*" open><summary>' + re.escape(title), page), title
    assert 'class="ftgate-banner ftgate-pass"' in page


@pytest.mark.parametrize("outcome,severity,label", [
    ("passed", "block", "PASS"), ("failed", "block", "FAIL"), ("failed", "warn", "WARN"), ("failed", "info", "INFO"),
    ("error", "warn", "ERROR"), ("skipped", "block", "SKIPPED")])
def test_each_gate_outcome_reads_as_its_label(outcome, severity, label):
    assert report.gate_label(gate(outcome=outcome, severity=severity)) == label


def test_the_metrics_table_shows_candidate_baseline_and_the_confidence_interval():
    rows = report.find_rows(G4, ("candidate", "baseline"))
    assert rows == [{"name": "rougeL", **G4["metrics"]["rougeL"]}]
    table = report.rows_table(rows)
    assert [h for h in re.findall(r"<th>(.*?)</th>", table)][:7] == ["name", "candidate", "baseline", "ratio",
                                                                    "ci_low", "ci_high", "significant"]


def test_benchmark_gates_become_one_table_row_per_task():
    rows = report.benchmark_rows([gate("bench:arc", outcome="failed", severity="warn",
                                       details={"task": "arc_easy", "metric": "acc", "candidate": 0.4, "base": 0.5,
                                                "stderr": 0.02}), gate("G1")])
    assert rows == [{"gate": "bench:arc", "outcome": "WARN", "task": "arc_easy", "metric": "acc", "candidate": 0.4,
                     "base": 0.5, "stderr": 0.02}]


def test_the_sample_shows_the_lowest_scoring_generations_and_says_how_many_there_are():
    shown, total = report.samples([gate("G4", details={"samples": SAMPLES}), gate("G5", details={"samples": SAMPLES})])
    assert total == 31  # the same generation under two gates counts once
    assert len(shown) == report.MAX_SAMPLES
    assert [s["scores"]["f1"] for s in shown[:2]] == [0.0, 0.0] and shown[-1]["scores"]["f1"] == 0.8


def test_the_loss_plot_draws_both_curves_and_marks_the_nan_steps():
    import xml.etree.ElementTree as ET

    svg = report.loss_svg(H.nan_in_last_step())
    root = ET.fromstring(svg)  # well-formed SVG
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 2 and root.findall(f"{ns}circle")  # loss, eval_loss (+ markers)
    assert [ln for ln in root.findall(f"{ns}line") if ln.get("stroke") == "red"]  # the NaN step
    assert {t.text for t in root.findall(f"{ns}text")} >= {"loss", "eval_loss", "step"}
    assert report.loss_svg({"grad_norm": [(1, 1.0)]}) is None
    html_ = report.curves(record(H.nan_in_last_step()))
    assert "non-finite values at steps [200]" in html_
    src = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', html_).group(1)
    assert base64.b64decode(src).decode() == svg


def test_a_long_history_is_thinned_but_keeps_its_spike():
    hist = {"loss": [(s, 1.0) for s in range(1, 20001)]}
    hist["loss"][12345] = (12346, 50.0)
    svg = report.loss_svg(hist)
    points = re.search(r'points="([^"]+)"', svg).group(1).split()
    assert len(points) <= report.MAX_POINTS + 2 and min(float(p.split(",")[1]) for p in points) < 20  # spike drawn


def test_an_incomplete_session_is_marked_in_the_banner_the_page_and_the_summary():
    ev = report.RunEvidence(verdict([gate("G1")], incomplete=True), record=record())
    meta = {"interrupted": True, "version": "0.1.0"}
    assert "INCOMPLETE" in report.banner(ev)
    assert "does not support a release decision" in report.session_html([ev], meta)
    assert "**INCOMPLETE**" in report.summary_md([ev], meta)


def test_the_summary_lists_failed_gates_and_escapes_names_for_markdown():
    ev = report.RunEvidence(verdict([gate("G2", "warn", "failed", message="loss | flat")], "warn", name=XSS))
    md = report.summary_md([ev], {"report": "out/report.html", "report_sha256": "ab" * 32})
    assert "| **WARN** | G2 WARN |" in md
    assert "<img" not in md and "loss \\| flat" in md and "ab" * 32 in md


def test_report_json_holds_the_whole_session():
    ev = report.RunEvidence(verdict([gate("G4", details=G4)]), record=record(params={"lora_rank": "8"}),
                            adapter_files=[{"name": "adapter_model.safetensors", "sha256": "0" * 64, "size": 3}])
    doc = json.loads(json.dumps(report.session_json([ev], {"version": "0.1.0"})))
    run = doc["runs"][0]
    assert doc["counts"] == {"pass": 1} and run["verdict"] == "pass"
    assert len(run["gates"][0]["details"]["samples"]) == 31  # everything, not the sample
    assert run["run"]["history"]["loss"][0] == [5, H.clean()["loss"][0][1]]
    assert run["adapter_files"][0]["name"] == "adapter_model.safetensors"


def test_report_json_text_is_the_session_document_with_each_history_on_one_line():
    hostile = {"a": {"history": "ftgate-history-0", "x": [float("inf"), None]}}  # history-like text stays text
    evs = [report.RunEvidence(verdict([gate("G4", details={**G4, **hostile})], name=n),
                              record=record(params={"note": "ftgate-history-"}, name=n)) for n in ("a", "b")]
    evs.append(report.RunEvidence(verdict([gate("G1")], name="no-record")))
    meta = {"version": "0.1.0", "comparison": {"notes": ["x"]}}
    text = report.session_json_text(evs, meta)
    assert json.loads(text) == json.loads(json.dumps(report.session_json(evs, meta), default=str))
    assert sum(1 for line in text.splitlines() if '"history": {"loss": [[' in line) == 2


def test_pytest_html_rows_get_escaped_ids_gate_columns_and_a_warn_label():
    cells = ['<td class="col-result">Passed</td>', f'<td class="col-testId">t[{XSS}]</td>',
             '<td class="col-duration">1 ms</td>', '<td class="col-links"></td>']
    row = report.html_row(cells, f"t[{XSS}]", gate("G2", "warn", "failed"), XSS, "warn")
    assert len(row) == len(cells) + len(report.HTML_COLUMNS)
    assert "<img" not in "".join(row)
    assert row[0] == '<td class="col-result ftgate-soft ftgate-soft-warn">Passed</td>'
    assert row[3] == '<td class="col-ftgateGate">G2 g2</td>'


@pytest.mark.parametrize("key,secret", [
    ("MLFLOW_TRACKING_PASSWORD", True), ("HF_TOKEN", True), ("AWS_SECRET_ACCESS_KEY", True), ("OPENAI_API_KEY", True),
    ("hf_hub_token", True), ("db_credentials", True), ("lora_rank", False), ("max_new_tokens", False),
    ("keyword", False), ("PWD", False), ("tokenizer", False), ("monkey", False)])
def test_secret_keys_are_recognised_by_name(key, secret):
    assert is_secret_key(key) is secret


def test_secrets_are_redacted_by_key_by_value_in_text_and_in_urls():
    r = Redactor({"MLFLOW_TRACKING_PASSWORD": "pw-123456", "HOME": "/root", "SHORT_TOKEN": "abc"})
    r.learn({"hf_token": "hf_abcdefgh", "lora_rank": "16"})
    data = {"params": {"hf_token": "hf_abcdefgh", "lora_rank": "16"},
            "message": "login with pw-123456 then hf_abcdefgh", "config": "api_key: sk-live-1\nlr: 0.1",
            "uri": "https://user:hunter2@mlflow.example/", "nested": [{"access_token": "x"}]}
    out = r.deep(data)
    assert out["params"] == {"hf_token": REDACTED, "lora_rank": "16"}
    assert out["message"] == f"login with {REDACTED} then {REDACTED}"
    assert out["config"] == f"api_key: {REDACTED}\nlr: 0.1"
    assert out["uri"] == f"https://user:{REDACTED}@mlflow.example/"
    assert out["nested"] == [{"access_token": REDACTED}]
    assert "/root" in r.text("/root") and "abc" in r.text("abc")  # not secret / too short to replace as a literal


def test_scrubbing_a_written_page_removes_secrets_in_html_and_json_escaped_forms():
    r = Redactor({"X_TOKEN": 'tok"<&>1234'})
    page = f'<div data-x="{html.escape(json.dumps({"log": "tok<&>1234"[:0] + "tok" + chr(34) + "<&>1234"}))}">' \
           f"{html.escape('tok' + chr(34) + '<&>1234')}</div>"
    assert "1234" in page
    assert "1234" not in r.scrub(page)


def test_the_quality_suites_comparisons_and_notes_are_shown_with_their_interval():
    g4 = gate("G4", details={"comparisons": [{"metric": "rougeL", "baseline": "base", "candidate_value": 1.0,
                                              "baseline_value": 0.011, "ratio": 88.3, "ci_low": 0.97,
                                              "ci_high": 0.998, "regression": False}],
                             "notes": ["no production version: compared with the base model only"],
                             "samples": SAMPLES, "answers": {"base": ["x"] * 64}})
    page = report.quality_html([g4])
    heads = re.findall(r"<th>(.*?)</th>", page)
    assert heads[:8] == ["metric", "candidate_value", "baseline", "baseline_value", "ratio", "ci_low", "ci_high",
                         "regression"]
    assert "compared with the base model only" in page and "answer 3" not in page


def test_the_audit_section_matches_the_shipped_adapter_files_against_the_record():
    audit = {"output_artifacts": {"adapter": {"files": [{"name": "a.safetensors", "sha256": "sha256:" + "1" * 64},
                                                        {"name": "b.json", "sha256": "sha256:" + "2" * 64}]}}}
    ev = report.RunEvidence(verdict([]), audit=audit, adapter_files=[
        {"name": "a.safetensors", "sha256": "sha256:" + "1" * 64, "size": 3},
        {"name": "b.json", "sha256": "sha256:" + "3" * 64, "size": 1}])
    rows = re.findall(r"<tr><td>(a\.safetensors|b\.json)</td>.*?<td>(yes|no)</td></tr>", report.audit_html(ev, []))
    assert rows == [("a.safetensors", "yes"), ("b.json", "no")]


# -- the reviewer's first screen -----------------------------------------------------------------------------------
LEAK_PAIRS = "; ".join(f"test.json row {i} = train.json row {i + 100}" for i in range(1, 20))


def blocked_and_passing():
    blocked = verdict([
        gate("G1"), gate("integrity", name="integrity", outcome="failed",
                         value={"verified": 19, "mismatched": 1, "unverifiable": 0},
                         threshold="every recorded sha256 matches",
                         message="adapter file adapter_model.safetensors differs from the one trained",
                         details={"mismatched": [{"what": "adapter file", "path": "adapter/adapter_model.safetensors"}]}),
        gate("leakage", name="leakage", outcome="failed", value=0.2969, threshold="<= 0.0% of test prompts",
             message=f"19 of 64 test prompts (29.7%) appear in the training data (19 exactly): {LEAK_PAIRS}. Remove "
                     "them from the training data (or the test set) and retrain", details={"leaked": 19}),
        gate("G2", severity="warn", outcome="failed", value=3.1, threshold="final < initial", message="slow")],
        "block", name="run-blocked")
    blocked["run_id"] = "b" * 32
    passing = verdict([gate("G1"), gate("G4", details=G4)], "pass", name="run-passing")
    return [report.RunEvidence(passing, record=record(name="run-passing")),
            report.RunEvidence(blocked, record=record(name="run-blocked"))]


def test_the_first_screen_says_which_runs_are_blocked_and_why_before_anything_else():
    page = report.session_html(blocked_and_passing(), {"version": "0.1.0"})
    first = page[: page.index('<article class="ftgate-run-report"')]
    assert first.index("run-blocked") < first.index("run-passing")  # blocked runs first
    assert "BLOCKED" in first and "3 gate(s) did not pass" in first and "every gate that ran passed" in first
    lines = re.findall(r"<li class=\"ftgate-(?:fail|warn)\">(.*?)</li>", first)
    assert len(lines) == 3 and "integrity" in lines[0] and "leakage" in lines[1] and "G2" in lines[2]
    assert "19 verified, 1 mismatched, 0 unverifiable (needs every recorded sha256 matches)" in lines[0]
    assert "0.2969 (needs &lt;= 0.0% of test prompts)" in lines[1]
    assert "row 19 = train.json" not in first  # the leakage pairs are not on the first screen
    assert '{"verified"' not in page and "integrity integrity" not in page and "integrity / integrity" not in page
    articles = re.findall(r'<article class="ftgate-run-report" id="run-([ab]+)"', page)
    assert articles == ["b" * 32, "a" * 32]


def test_failing_gates_come_first_shaded_with_their_long_evidence_folded():
    html_ = report.gate_table(blocked_and_passing()[1].verdict["gates"])
    rows = re.findall(r'<tr class="ftgate-(\w+)"><td>([^<]+)</td><td>([^<]*)</td>', html_)
    assert [(c, gid) for c, gid, _ in rows] == [("fail", "integrity"), ("fail", "leakage"), ("warn", "G2"),
                                                ("pass", "G1")]
    assert all(name == "" for _, gid, name in rows if gid in ("integrity", "leakage"))  # no "integrity integrity"
    leak = html_[html_.index("<td>leakage</td>"):html_.index("<td>G2</td>")]
    shown, hidden = leak.split('<details class="ftgate-fold">', 1)
    assert "19 of 64 test prompts" in shown and "row 19 = train.json row 119" not in shown
    assert "row 19 = train.json row 119" in hidden
    assert "tr.ftgate-fail,.ftgate-gates tr.ftgate-error{background:#fdecea}" in report.CSS


def test_values_and_thresholds_read_as_words():
    assert report.words({"verified": 19, "mismatched": 1}) == "19 verified, 1 mismatched"
    assert report.words({"exact_match": "> 0.8", "f1": "> 0.8"}) == "exact_match > 0.8, f1 > 0.8"
    assert report.words({"gpu_memory_pct": None, "hours": 0.00694}) == "gpu_memory_pct no value, hours 0.00694"
    assert report.words(None) == "no value" and report.words(0.123456) == "0.1235"


def test_a_partial_verdict_is_shown_as_neither_pass_nor_block():
    ev = report.RunEvidence(verdict([gate("G1")], "partial"), record=record())
    ev.verdict["partial_reason"] = "-k selected 1 of 18 gates"
    page = report.session_html([ev], {"version": "0.1.0"})
    assert 'class="ftgate-banner ftgate-partial"' in page and 'class="ftgate-decision ftgate-partial"' in page
    assert "PARTIAL" in page and "no release decision" in page and "-k selected 1 of 18 gates" in page
    assert "ftgate-banner.ftgate-partial{background:#546e7a}" in report.CSS


def test_pytest_htmls_environment_box_is_moved_below_the_verdicts():
    assert "#environment-header,#environment{order:99}" in report.CSS and "body{display:flex" in report.CSS
