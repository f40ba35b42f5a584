"""Human evaluation, pure: the blinded sheet built from a gated verdict, the form, validation of filled sheets (each
bad input one line naming the file and row), unblinding, the maths (mean with a bootstrap interval over items, win
rate), the human_eval gate, its config, and the export/import round trip on an in-memory store. No model, no MLflow
server."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_ftgate import human_eval as he
from pytest_ftgate import human_form
from pytest_ftgate.config import HumanEval, load_config
from pytest_ftgate.errors import ConfigError, DataError
from pytest_ftgate.gates import human


def verdict(n: int = 12, production: bool = False, session: str = "s1") -> dict:
    rows = [{"row": 100 + i, "prompt": f"translate: stone {i}", "reference": f"pierre {i}",
             "prediction": f"pierre {i}", "scores": {"f1": 1.0}, "base": f"stone {i}",
             **({"production": f"caillou {i}"} if production else {})} for i in range(n)]
    return {"run_id": "r" * 32, "run_name": "demo", "session_id": session, "complete": True,
            "gates": [{"id": "G1", "details": {}}, {"id": "G4", "details": {"samples": rows}}]}


def export(n: int = 8, **kw) -> tuple[dict, str]:
    doc = he.build_export(verdict(**kw), n, seed=7)
    return doc, "sha256:" + "ab" * 32


def filled(doc: dict, eid: str, rater: str = "ann", cand: int = 5, base: int = 2, **override) -> list[dict]:
    """The rows a rater who prefers the candidate fills in (``override``: {column: value} on the first row)."""
    rows = []
    for line, it in enumerate(doc["items"], 2):
        a, b = (cand, base) if it["a"] == "candidate" else (base, cand)
        rows.append({"export_id": eid, "item": it["item"], "prompt": it["prompt"], "reference": it["reference"],
                     "answer_a": it["answer_a"], "answer_b": it["answer_b"], "rater": rater, "score_a": str(a),
                     "score_b": str(b), "comment": "", "_line": line})
    rows[0].update(override)
    return rows


# -- the sheet ---------------------------------------------------------------------------------------------------
def test_an_export_picks_n_gated_answers_in_random_order_with_a_random_side_each():
    doc, eid = export(8)
    items = doc["items"]
    assert len(items) == 8 and len({it["row"] for it in items}) == 8 and doc["baseline"] == "base"
    assert [it["row"] for it in items] != sorted(it["row"] for it in items)  # shuffled
    assert {it["a"] for it in items} == {"candidate", "base"}  # both sides occur
    for it in items:
        cand = it["answer_a"] if it["a"] == "candidate" else it["answer_b"]
        assert cand == f"pierre {it['row'] - 100}"
    assert he.build_export(verdict(), 8, seed=7)["items"] == items  # the seed makes it reproducible


def test_the_sheet_carries_the_export_id_but_not_the_key():
    doc, eid = export(5)
    text = he.sheet_csv(doc, eid)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == he.COLUMNS and len(rows) == 5 and {r["export_id"] for r in rows} == {eid}
    assert "candidate" not in text and all(not r["rater"] and not r["score_a"] for r in rows)


def test_an_export_pairs_the_candidate_with_production_when_the_session_compared_with_it():
    doc = he.build_export(verdict(production=True), 4, seed=1)
    assert doc["baseline"] == "production"
    assert {it["a"] for it in doc["items"]} | {it["b"] for it in doc["items"]} == {"candidate", "production"}
    assert all("caillou" in it["answer_a"] + it["answer_b"] for it in doc["items"])


def test_an_export_of_a_session_without_the_quality_gates_says_how_to_get_answers():
    v = verdict()
    v["gates"] = [g for g in v["gates"] if g["id"] != "G4"]
    with pytest.raises(DataError, match=r"session s1 of run r+ has no G4 gate .*suites/test_quality.py"):
        he.build_export(v, 5)
    v = verdict()
    for r in v["gates"][1]["details"]["samples"]:
        del r["base"]
    with pytest.raises(DataError, match="no base model answers to pair with"):
        he.build_export(v, 5)


def test_an_export_asking_for_more_items_than_were_gated_has_them_all():
    doc = he.build_export(verdict(3), 50, seed=0)
    assert len(doc["items"]) == 3 and doc["n_requested"] == 50 and doc["n_available"] == 3


def test_the_form_is_self_contained_and_an_answer_cannot_inject_markup():
    v = verdict(2)
    v["gates"][1]["details"]["samples"][0]["prediction"] = "</script><img src=x onerror=alert(1)>"
    doc = he.build_export(v, 2, seed=0)
    page = he.form_html(doc, "sha256:" + "0" * 64)
    assert "<img" not in page and "http" not in page and "<link" not in page  # escaped, nothing fetched
    assert "sha256:" + "0" * 64 in page and page.count("<script") == 2


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_csv_the_form_saves_is_read_back_unchanged(tmp_path):
    script = human_form.FORM.split('"use strict";')[1].split("function el(")[0].replace("__COLUMNS__",
                                                                                json.dumps(he.COLUMNS))
    row = {"export_id": "sha256:" + "1" * 64, "item": "h001", "prompt": 'say "hi",\nthen go', "reference": "",
           "answer_a": "a, b", "answer_b": "line1\r\nline2", "rater": "Zoë", "score_a": "4", "score_b": "2",
           "comment": ""}
    js = script.replace("const data = JSON.parse(document.getElementById(\"data\").textContent);", "")
    out = subprocess.run(["node", "-e", js + f"process.stdout.write(toCsv([{json.dumps(row)}]));"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    (tmp_path / "r.csv").write_text(out, encoding="utf-8")
    got = he.read_sheet(tmp_path / "r.csv")
    assert len(got) == 1 and got[0]["prompt"] == row["prompt"] and got[0]["answer_a"] == "a, b"
    assert got[0]["rater"] == "Zoë" and got[0]["_line"] == 2
    page = he.form_html(he.build_export(verdict(3), 3, seed=0), "sha256:" + "0" * 64)
    whole = page.split("<script>")[1].split("</script>")[0]  # the form's whole script is valid JavaScript
    subprocess.run(["node", "-e", f"new Function({json.dumps(whole)})"], timeout=60, check=True)


# -- validation: each bad input one line naming the file and row -----------------------------------------------------
def check(rows, doc, eid, name="ratings.csv"):
    return he.validate([(name, rows)], doc, eid)


def test_a_filled_sheet_validates_and_unblinds_to_the_candidates_scores():
    doc, eid = export(6)
    ratings = check(filled(doc, eid), doc, eid)
    rows = he.unblind(ratings, doc)
    assert len(rows) == 6 and {(r["candidate"], r["baseline"]) for r in rows} == {(5, 2)}


@pytest.mark.parametrize("override, message", [
    ({"item": "h099"}, r"ratings.csv row 2: unknown item 'h099' \(not in export sha256:abab"),
    ({"score_a": "6"}, r"ratings.csv row 2: score_a '6' is out of range: use a whole number from 1 to 5"),
    ({"score_b": "0"}, r"row 2: score_b '0' is out of range"),
    ({"score_a": "3.5"}, r"row 2: score_a '3.5' is out of range"),
    ({"score_b": ""}, r"row 2: score_b '' is out of range"),
    ({"rater": ""}, r"ratings.csv row 2: rater name missing"),
    ({"export_id": "sha256:" + "cd" * 32}, r"row 2: export id sha256:cdcdcdcdcdcd… is not this run's export"),
    ({"answer_a": "something else"}, r"row 2: answer_a of item h001 differs from the exported text: the sheet was "
                                     r"edited"),
])
def test_a_bad_row_is_refused_naming_the_file_and_the_row(override, message):
    doc, eid = export(4)
    with pytest.raises(DataError, match=message):
        check(filled(doc, eid, **override), doc, eid)


def test_a_rater_rating_an_item_twice_is_refused_naming_both_rows_also_across_sheets():
    doc, eid = export(3)
    rows = filled(doc, eid)
    again = dict(rows[1], _line=9, rater="ANN ")
    again["rater"] = "ANN"
    with pytest.raises(DataError, match=r"ratings.csv row 9: rater 'ANN' rated item h002 twice \(first in "
                                        r"ratings.csv row 3\)"):
        check(rows + [again], doc, eid)
    with pytest.raises(DataError, match=r"bob.csv row 2: rater 'ann' rated item h001 twice \(first in a.csv row 2"):
        he.validate([("a.csv", filled(doc, eid)), ("bob.csv", filled(doc, eid))], doc, eid)
    assert len(he.validate([("a.csv", filled(doc, eid)), ("b.csv", filled(doc, eid, "bob"))], doc, eid)) == 6


def test_unrated_rows_are_ignored_and_an_empty_sheet_is_refused():
    doc, eid = export(3)
    rows = filled(doc, eid)
    rows[2].update(rater="", score_a="", score_b="")
    assert len(check(rows, doc, eid)) == 2
    blank = [dict(r, rater="", score_a="", score_b="") for r in rows]
    with pytest.raises(DataError, match="ratings.csv: no ratings"):
        he.sheet_export_id(blank, "ratings.csv")


def test_a_sheet_mixing_two_exports_or_with_a_malformed_id_is_refused(tmp_path):
    doc, eid = export(3)
    rows = filled(doc, eid)
    rows[2]["export_id"] = "sha256:" + "cd" * 32
    with pytest.raises(DataError, match=r"ratings.csv row 4: export id sha256:cdcd.* differs from row 2's .*a sheet "
                                        r"mixing two exports"):
        he.sheet_export_id(rows, "ratings.csv")
    with pytest.raises(DataError, match=r"row 2: export_id 'abc' is not an export id"):
        he.sheet_export_id(filled(doc, eid, export_id="abc"), "ratings.csv")


def test_a_sheet_without_the_score_columns_names_them(tmp_path):
    (tmp_path / "r.csv").write_text("item,rater,score\nh001,ann,4\n")
    with pytest.raises(DataError, match=r"r.csv: missing column\(s\) export_id, score_a, score_b"):
        he.read_sheet(tmp_path / "r.csv")


def test_an_exported_text_saved_back_with_windows_line_endings_is_not_an_edit(tmp_path):
    doc, eid = export(2)
    doc["items"][0]["answer_a"] = "two\nlines"
    (tmp_path / "r.csv").write_text(he.ratings_csv(check(filled(doc, eid), doc, eid), doc, eid).replace(
        "two\nlines", "two\r\nlines"), encoding="utf-8")
    assert len(check(he.read_sheet(tmp_path / "r.csv"), doc, eid)) == 2


# -- the maths and the gate --------------------------------------------------------------------------------------
def rated(pairs, raters=("ann",)):
    """Unblinded rows: one (candidate, baseline) pair per item, by each rater."""
    return [{"item": f"h{i:03d}", "rater": r, "candidate": c, "baseline": b} for i, (c, b) in enumerate(pairs)
            for r in raters]


def test_the_mean_is_over_items_with_a_bootstrap_interval_and_ties_count_half_of_a_win():
    rows = rated([(5, 2), (4, 4), (2, 3), (5, 1)])
    rows.append({"item": "h000", "rater": "bob", "candidate": 3, "baseline": 2})  # h000: (5+3)/2 = 4
    s = he.summarize(rows, "base", 0.95, 500, 0)
    assert s["mean"] == pytest.approx((4 + 4 + 2 + 5) / 4) and s["n_items"] == 4 and s["n_ratings"] == 5
    assert (s["wins"], s["ties"], s["losses"]) == (2, 1, 1) and s["win_rate"] == pytest.approx(2.5 / 4)
    assert 2 <= s["ci_low"] <= s["mean"] <= s["ci_high"] <= 5 and s["raters"] == ["ann", "bob"]
    assert s == he.summarize(rows, "base", 0.95, 500, 0)  # seeded


def summary(mean_pairs, n=20):
    return he.summarize(rated(mean_pairs * n), "base", 0.95, 500, 0)


def test_the_gate_passes_a_mean_above_3_5_and_says_mean_interval_and_win_rate():
    check = human.human_eval(summary([(4, 3), (4, 2)]), HumanEval())
    assert check.passed and check.value == 4.0 and check.label == human.HUMAN_LABEL
    assert "mean 4.00/5 (95% CI [4.00, 4.00]) over 40 items" in check.message
    assert "win rate vs base 1.00" in check.message and "40 wins, 0 ties, 0 losses" in check.message


def test_the_gate_fails_a_mean_of_3_5_exactly_seed_002_says_above():
    check = human.human_eval(summary([(3, 2), (4, 3)]), HumanEval())
    assert not check.passed and check.value == 3.5 and "the mean is not above 3.5/5" in check.message


def test_with_require_interval_an_interval_reaching_below_3_5_fails():
    s = summary([(5, 3), (3, 3)], n=3)
    assert human.human_eval(s, HumanEval()).passed and "the interval includes 3.5" in human.human_eval(
        s, HumanEval()).message
    check = human.human_eval(s, HumanEval(require_interval=True))
    assert not check.passed and "more rated items would decide" in check.message


def test_the_gate_fails_when_the_raters_clearly_prefer_the_baseline():
    check = human.human_eval(summary([(4, 5)]), HumanEval())
    assert not check.passed and "the raters prefer base" in check.message


def test_without_ratings_the_gate_is_pending_and_names_the_commands():
    check = human.human_eval(None, HumanEval(), "`ftgate human-eval export --run-id r`")
    assert not check.passed and check.details["pending"] and "ftgate human-eval export --run-id r" in check.message


# -- config ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("human_eval:\n  pending: blok\n", r"human_eval.pending 'blok' is not one of warn, block, info; did you mean 'block'"),
    ("human_eval:\n  min_mean: 6\n", r"human_eval.min_mean must lie in \[1, 5\)"),
    ("human_eval:\n  min_means: 4\n", r"unknown key 'human_eval.min_means'; did you mean 'min_mean'"),
    ("human_eval:\n  samples: 0\n", r"human_eval.samples must be at least 1"),
])
def test_a_bad_human_eval_setting_is_refused_at_load_naming_the_key(tmp_path, text, message):
    (tmp_path / "ftgate.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "ftgate.yaml")


def test_the_human_eval_settings_load():
    cfg = load_config(None)
    assert cfg.human_eval.pending == "warn" and cfg.human_eval.min_mean == 3.5 and cfg.human_eval.samples == 50


# -- the round trip on an in-memory store ------------------------------------------------------------------------
class MemoryStore:
    """The few ``RunStore`` calls the round trip makes, on a dict of artifacts (path -> bytes)."""

    def __init__(self, tags: dict):
        self.artifacts: dict[str, bytes] = {}
        self.tags = dict(tags)
        self.metrics: dict[str, float] = {}
        self.client = SimpleNamespace(log_batch=lambda run_id, metrics=(): self.metrics.update(
            {m.key: m.value for m in metrics}))

    def load(self, run_id):
        return SimpleNamespace(tags=self.tags)

    def download(self, run_id, path, dst):
        if path not in self.artifacts:
            raise OSError(f"no artifact {path}")
        local = Path(dst) / path
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(self.artifacts[path])
        return local

    def log_artifact(self, run_id, local, artifact_path=None):
        self.artifacts[f"{artifact_path}/{Path(local).name}"] = Path(local).read_bytes()

    def set_tags(self, run_id, tags):
        self.tags.update(tags)


def gated_store(n=6) -> MemoryStore:
    store = MemoryStore({"ftgate.evidence": "ftgate/sessions/s1", "ftgate.session_id": "s1"})
    store.artifacts[f"ftgate/sessions/s1/{'r' * 32}.json"] = json.dumps(verdict(n)).encode()
    return store


def write_rows(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, he.COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def test_export_then_import_logs_ratings_and_summary_and_the_gate_reads_them(tmp_path):
    store, run = gated_store(), "r" * 32
    assert he.for_gate(store, run, tmp_path / "g0").summary is None
    eid, paths, notes = he.export_run(store, run, 4, tmp_path / "out", seed=3)
    assert store.artifacts[he.EXPORT_ARTIFACT] == paths["export"].read_bytes() and not notes
    assert store.tags["ftgate.human_eval.export_id"] == eid and "export" in he.for_gate(store, run, tmp_path / "g1").hint
    doc = json.loads(paths["export"].read_text())
    summary, _ = he.import_ratings(store, run, [write_rows(tmp_path / "ann.csv", filled(doc, eid))])
    assert summary["mean"] == 5.0 and summary["n_items"] == 4 and store.metrics["human_eval.mean"] == 5.0
    summary, _ = he.import_ratings(store, run, [write_rows(tmp_path / "bob.csv", filled(doc, eid, "bob", 3, 3))])
    assert summary["n_ratings"] == 8 and summary["mean"] == 4.0 and summary["raters"] == ["ann", "bob"]
    with pytest.raises(DataError, match=r"bob.csv row 2: rater 'bob' rated item h001 twice \(first in "
                                        r"human_eval/ratings.csv \(imported before\) row 6\)"):
        he.import_ratings(store, run, [tmp_path / "bob.csv"])
    got = he.for_gate(store, run, tmp_path / "g2", HumanEval())
    assert got.summary["mean"] == 4.0 and got.summary["export_id"] == eid
    assert json.loads(store.artifacts[he.SUMMARY_ARTIFACT])["n_ratings"] == 8


def test_a_sheet_of_another_export_is_refused_on_import(tmp_path):
    store, run = gated_store(), "r" * 32
    eid, paths, _ = he.export_run(store, run, 4, tmp_path / "one", seed=3)
    doc = json.loads(paths["export"].read_text())
    other = "sha256:" + "ef" * 32
    sheet = write_rows(tmp_path / "r.csv", [dict(r, export_id=other) for r in filled(doc, eid)])
    with pytest.raises(DataError, match=r"r.csv: export id sha256:efefefefefef… is not an export of run r+ \(its "
                                        r"latest is sha256:"):
        he.import_ratings(store, run, [sheet])


def test_an_export_of_a_run_never_gated_completely_says_to_gate_it_and_fewer_rows_are_noted(tmp_path):
    with pytest.raises(DataError, match=r"run x has no complete gating session .*pytest suites --run-id x"):
        he.export_run(MemoryStore({}), "x", 5, tmp_path)
    _, _, notes = he.export_run(gated_store(3), "r" * 32, 50, tmp_path / "o")
    assert notes and "only 3 gated answers" in notes[0] and "quality.report_samples" in notes[0]


# -- end to end: a run gated in a real session, export and import by the command, the gate reading the ratings -------
GATED = '''"""A G4 gate in the shape of suites/test_quality.py's (predict.sample_table rows), without a model."""
import pytest
from pytest_ftgate.gates import Check


@pytest.mark.gate("G4", name="baseline", severity="block")
def test_the_adapter_is_not_worse_than_95_percent_of_each_baseline(ft_run, gate):
    samples = [{"row": i, "prompt": f"reverse w{i} stone river", "reference": f"river stone w{i}",
                "prediction": f"river stone w{i}", "scores": {"f1": 1.0}, "base": f"w{i} stone river"}
               for i in range(10)]
    gate.check(Check(True, 1.5, ">= 95%", "f1 1.0 vs base 0.3", {"samples": samples}))
'''


def ftgate(uri: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`ftgate human-eval ARGS --tracking-uri URI` as a user runs it."""
    import sys

    return subprocess.run([sys.executable, "-m", "pytest_ftgate.cli", "human-eval", *args, "--tracking-uri", uri],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def gate_record(work: Path, run_id: str) -> tuple[dict, dict]:
    v = json.loads((work / "out" / "verdicts" / f"{run_id}.json").read_text())
    return v, next(g for g in v["gates"] if g["id"] == "human_eval")


@pytest.mark.slow
def test_a_gated_run_is_rated_a_tampered_sheet_is_refused_and_the_gate_reads_the_ratings(tmp_path):
    from .test_report_session import audited_run, run_session

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id, _ = audited_run(uri, tmp_path, "rated")
    first = run_session(tmp_path / "s1", uri, [run_id], suites=("test_human_eval.py",), planted=GATED)
    v, g = gate_record(tmp_path / "s1", run_id)
    assert v["complete"] and v["verdict"] == "warn" and g["severity"] == "warn", first.stdout[-3000:]
    assert f"ftgate human-eval export --run-id {run_id}" in g["message"]

    out = tmp_path / "sheet"
    done = ftgate(uri, "export", "--run-id", run_id, "--n", "6", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0 and "form.html" in done.stdout, done.stderr
    doc, rows = json.loads((out / "export.json").read_text()), he.read_sheet(out / "sheet.csv")
    eid = rows[0]["export_id"]
    sides = {it["item"]: it["a"] for it in doc["items"]}
    for r in rows:  # a rater who prefers the candidate: 5 against 2
        cand_a = sides[r["item"]] == "candidate"
        r.update(rater="ann", score_a="5" if cand_a else "2", score_b="2" if cand_a else "5")
    tampered = write_rows(tmp_path / "tampered.csv", [dict(r, answer_b=r["answer_b"] + "!") if i == 3 else r
                                                      for i, r in enumerate(rows)])
    bad = ftgate(uri, "import", str(tampered), "--run-id", run_id, cwd=tmp_path)
    assert bad.returncode == 1 and f"{tampered} row 5: answer_b of item" in bad.stderr, bad.stderr
    seven = write_rows(tmp_path / "seven.csv", [dict(r, score_a="7") if i == 1 else r for i, r in enumerate(rows)])
    assert f"{seven} row 3: score_a '7' is out of range" in ftgate(
        uri, "import", str(seven), "--run-id", run_id, cwd=tmp_path).stderr
    good = ftgate(uri, "import", str(write_rows(tmp_path / "ann.csv", rows)), "--run-id", run_id,
                  cwd=tmp_path)
    assert good.returncode == 0 and "6 ratings of 6 items by 1 rater(s)" in good.stdout, good.stderr

    second = run_session(tmp_path / "s2", uri, [run_id], suites=("test_human_eval.py",), planted=GATED)
    v, g = gate_record(tmp_path / "s2", run_id)
    assert v["verdict"] == "pass" and g["outcome"] == "passed" and g["value"] == 5.0, second.stdout[-3000:]
    assert g["details"]["summary"]["export_id"] == eid and "win rate vs base 1.00" in g["message"]
    from pytest_ftgate.store import RunStore

    run = RunStore(uri).load(run_id)
    assert run.history["human_eval.mean"][-1][1] == 5.0 and run.tags["ftgate.human_eval.raters"] == "ann"
