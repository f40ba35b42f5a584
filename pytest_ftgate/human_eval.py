"""Human evaluation round trip: `ftgate human-eval export` writes a blinded rating sheet of the answers a complete
gating session gated, `ftgate human-eval import` validates filled sheets against that export and logs the ratings and
their summary to the run, where the ``human_eval`` gate (``gates/human.py``) reads them. No pytest.

The answers come from the run's latest complete session: its verdict (``ftgate/sessions/<id>/<run>.json``, pointed
at by the run tag ``ftgate.evidence``) holds G4's per-sample table (prompt, reference, the candidate's answer and the
baselines' answers, ``quality.report_samples`` rows). Each item pairs the candidate with ``production`` when the
session compared with it, else with the base model; which of the two is A and which is B is random per item, and so
is the order of the items. The key lives only in ``export.json`` (beside the sheet, and on the run as
``human_eval/export.json`` and ``human_eval/exports/<hex>.json``); its sha256 is the export id every sheet row
carries, so a sheet of another export (or another run) is refused.

The sheet's columns (``COLUMNS``): export_id, item, prompt, reference, answer_a, answer_b, rater, score_a, score_b,
comment; each rated row scores both answers 1-5 (1 = wrong or useless, 5 = as good as a careful expert's). Rows with
no rater and no scores are unrated and ignored.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import re
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import DataError, FtgateError, did_you_mean
from .fileio import write_atomic
from .hashing import bare, sha256_file
from .human_form import COLUMNS, form_html

ARTIFACT_DIR = "human_eval"
EXPORT_ARTIFACT = f"{ARTIFACT_DIR}/export.json"  # the latest export of the run
RATINGS_ARTIFACT = f"{ARTIFACT_DIR}/ratings.csv"  # every imported rating (the sheet's columns), one export
SUMMARY_ARTIFACT = f"{ARTIFACT_DIR}/summary.json"
SCALE = (1, 5)
REQUIRED = ("export_id", "item", "rater", "score_a", "score_b")
CHECKED_TEXT = ("prompt", "answer_a", "answer_b")  # must equal the export's: an edited answer is a tampered sheet
EXPORT_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
SCHEMA = 1


@dataclass(frozen=True)
class Rating:
    """One rater's scores of one item, as rated (blinded: A and B)."""

    rater: str
    item: str
    score_a: int
    score_b: int
    comment: str = ""
    where: str = ""  # "<file> row <n>", for messages


# -- export ----------------------------------------------------------------------------------------------------------
def gated_samples(verdict: dict) -> tuple[list[dict], str]:
    """G4's per-sample rows of a verdict and the baseline they are paired with (``production`` when the session
    compared with it, else ``base``). DataError when the verdict has none."""
    sid = verdict.get("session_id", "?")
    g4 = next((g for g in verdict.get("gates") or [] if g.get("id") == "G4"), None)
    rows = ((g4 or {}).get("details") or {}).get("samples") or []
    if not rows:
        why = "no G4 gate (the quality suite did not run)" if g4 is None else "no per-sample table in G4's details"
        raise DataError(f"session {sid} of run {verdict.get('run_id')} has {why}: gate the run with "
                        "suites/test_quality.py (and quality.report_samples > 0 or 0 = all) to have answers to rate")
    baseline = "production" if all(isinstance(r.get("production"), str) for r in rows) else "base"
    if not all(isinstance(r.get(baseline), str) for r in rows):
        raise DataError(f"session {sid}: G4's per-sample table has no base model answers to pair with: gate the run "
                        "again with this version of pytest-ftgate")
    return rows, baseline


def build_export(verdict: dict, n: int, seed: int | None = None) -> dict:
    """The export document: ``n`` gated rows picked at random, in random order, each with a random A/B side."""
    rows, baseline = gated_samples(verdict)
    seed = secrets.randbits(32) if seed is None else seed
    rng = random.Random(seed)
    picked = rng.sample(range(len(rows)), min(n, len(rows)))
    items = []
    for k, i in enumerate(picked, 1):
        r = rows[i]
        a, b = ("candidate", baseline) if rng.random() < 0.5 else (baseline, "candidate")
        answer = {"candidate": r.get("prediction", ""), baseline: r[baseline]}
        items.append({"item": f"h{k:03d}", "row": r.get("row", i), "prompt": r.get("prompt", ""),
                      "reference": r.get("reference", ""), "a": a, "b": b, "answer_a": answer[a],
                      "answer_b": answer[b]})
    from .verdict import utcnow

    return {"schema": SCHEMA, "run_id": verdict.get("run_id"), "run_name": verdict.get("run_name"),
            "session_id": verdict.get("session_id"), "baseline": baseline, "scale": list(SCALE), "seed": seed,
            "n_requested": n, "n_available": len(rows), "created_at": utcnow(), "items": items}


def sheet_csv(doc: dict, export_id: str) -> str:
    """The blank rating sheet: one row per item, without the key (which side is the candidate)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    for it in doc["items"]:
        w.writerow({"export_id": export_id, **{c: it[c] for c in ("item", "prompt", "reference", "answer_a",
                                                                    "answer_b")}})
    return buf.getvalue()


def write_export(doc: dict, out: Path) -> tuple[str, dict[str, Path]]:
    """``export.json`` (the key), ``sheet.csv`` and ``form.html`` in ``out``; returns the export id and the paths."""
    out.mkdir(parents=True, exist_ok=True)
    key = write_atomic(out / "export.json", json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    eid = sha256_file(key)
    sheet = write_atomic(out / "sheet.csv", sheet_csv(doc, eid))
    form = write_atomic(out / "form.html", form_html(doc, eid))
    return eid, {"export": key, "sheet": sheet, "form": form}


# -- import: reading and validating sheets ---------------------------------------------------------------------------
def read_sheet(path: str | Path) -> list[dict]:
    """The rows of a sheet as dicts (``_line``: the row number as a spreadsheet shows it, header = 1; a quoted cell
    may span lines). DataError when it is not a sheet."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot be read as a UTF-8 CSV ratings sheet ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{p}: missing column(s) {', '.join(missing)}: rate the sheet.csv (or form.html) written by "
                        "`ftgate human-eval export`, whose columns are " + ", ".join(COLUMNS))
    return [{**{k: (v or "").strip() for k, v in row.items() if k is not None}, "_line": line}
            for line, row in enumerate(reader, 2)]


def _same_text(sheet: str, exported: str) -> bool:
    """The exported text, as a spreadsheet may save it back (line endings, surrounding blanks)."""
    return sheet.replace("\r\n", "\n").strip() == exported.replace("\r\n", "\n").strip()


def _score(value: str, column: str, where: str) -> int:
    lo, hi = SCALE
    try:
        score = int(value)
    except ValueError:
        score = None
    if score is None or not lo <= score <= hi or str(score) != value.lstrip("+"):
        raise DataError(f"{where}: {column} {value!r} is out of range: use a whole number from {lo} to {hi}")
    return score


def sheet_export_id(rows: list[dict], name: str) -> str:
    """The one export id a sheet's rows name. DataError for a malformed id or a sheet mixing two exports."""
    first = None
    for r in rows:
        eid = r.get("export_id", "")
        if not (r.get("rater") or r.get("score_a") or r.get("score_b")):
            continue  # unrated
        if not EXPORT_ID.match(eid):
            raise DataError(f"{name} row {r['_line']}: export_id {eid!r} is not an export id (sha256:<64 hex>): "
                            "rate an unedited sheet written by `ftgate human-eval export`")
        if first is None:
            first = (eid, r["_line"])
        elif eid != first[0]:
            raise DataError(f"{name} row {r['_line']}: export id {eid[:19]}… differs from row {first[1]}'s "
                            f"{first[0][:19]}…: a sheet mixing two exports; rate the sheet of one export")
    if first is None:
        raise DataError(f"{name}: no ratings (every row is empty): fill rater, score_a and score_b")
    return first[0]


def validate(sheets: Sequence[tuple[str, list[dict]]], doc: dict, export_id: str) -> list[Rating]:
    """Every rated row of ``sheets`` ([(file name, rows)]) checked against the export: its id, known items, the
    exported text unchanged, both scores in range, a rater named, no (rater, item) rated twice."""
    items = {it["item"]: it for it in doc["items"]}
    seen: dict[tuple[str, str], str] = {}
    out: list[Rating] = []
    for name, rows in sheets:
        for r in rows:
            where = f"{name} row {r['_line']}"
            if not (r.get("rater") or r.get("score_a") or r.get("score_b")):
                continue  # unrated
            if r.get("export_id") != export_id:
                raise DataError(f"{where}: export id {r.get('export_id', '')[:19]}… is not this run's export "
                                f"{export_id[:19]}…: a sheet of another export or run; rate the sheet exported for "
                                f"run {doc.get('run_id')}")
            item = items.get(r.get("item", ""))
            if item is None:
                raise DataError(f"{where}: unknown item {r.get('item', '')!r} (not in export "
                                f"{export_id[:19]}…){did_you_mean(r.get('item', ''), items)}")
            for column in CHECKED_TEXT:
                if column in r and not _same_text(r[column], item[column]):
                    raise DataError(f"{where}: {column} of item {item['item']} differs from the exported text: the "
                                    "sheet was edited; rate an unedited sheet (only rater, scores and comment change)")
            if not r.get("rater"):
                raise DataError(f"{where}: rater name missing: put the rater's name on every row they rated")
            a, b = _score(r.get("score_a", ""), "score_a", where), _score(r.get("score_b", ""), "score_b", where)
            key = (r["rater"].casefold(), item["item"])
            if key in seen:
                raise DataError(f"{where}: rater {r['rater']!r} rated item {item['item']} twice (first in "
                                f"{seen[key]}): keep one row per rater and item")
            seen[key] = where
            out.append(Rating(r["rater"], item["item"], a, b, r.get("comment", ""), where))
    if not out:
        raise DataError(f"{', '.join(n for n, _ in sheets)}: no ratings (every row is empty): fill rater, score_a "
                        "and score_b")
    return out


def unblind(ratings: Sequence[Rating], doc: dict) -> list[dict]:
    """Each rating with the key applied: {item, row, rater, candidate, baseline, comment}."""
    items = {it["item"]: it for it in doc["items"]}
    out = []
    for r in ratings:
        it = items[r.item]
        cand, base = (r.score_a, r.score_b) if it["a"] == "candidate" else (r.score_b, r.score_a)
        out.append({"item": r.item, "row": it["row"], "rater": r.rater, "candidate": cand, "baseline": base,
                    "comment": r.comment})
    return out


def ratings_csv(ratings: Sequence[Rating], doc: dict, export_id: str) -> str:
    """The validated ratings in the sheet's own columns (what the run keeps; the gate validates it again)."""
    items = {it["item"]: it for it in doc["items"]}
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in ratings:
        it = items[r.item]
        w.writerow({"export_id": export_id, "item": r.item, "prompt": it["prompt"], "reference": it["reference"],
                    "answer_a": it["answer_a"], "answer_b": it["answer_b"], "rater": r.rater, "score_a": r.score_a,
                    "score_b": r.score_b, "comment": r.comment})
    return buf.getvalue()


# -- the maths: mean with a bootstrap interval over items, win rate ---------------------------------------------------
def summarize(rows: Sequence[dict], baseline: str, confidence: float = 0.95, resamples: int = 2000,
              seed: int = 0) -> dict:
    """The candidate's mean score (each item's mean over its raters, then the mean over items) with a percentile
    bootstrap interval over items; the baseline's mean; wins/ties/losses per item (candidate's item mean against the
    baseline's) and the win rate (ties count half) with its interval from the same resamples."""
    import numpy as np

    from .metrics import Scores, bootstrap_interval

    by_item: dict[str, list[dict]] = {}
    for r in rows:
        by_item.setdefault(r["item"], []).append(r)
    items = sorted(by_item)
    cand = np.array([np.mean([r["candidate"] for r in by_item[i]]) for i in items], dtype=float)
    base = np.array([np.mean([r["baseline"] for r in by_item[i]]) for i in items], dtype=float)
    outcome = np.where(cand > base, 1.0, np.where(cand < base, 0.0, 0.5))
    n = len(items)
    scores = Scores({"score": cand, "win": outcome}, {"score": float(cand.mean()), "win": float(outcome.mean())})
    _, lo, hi = bootstrap_interval(scores, "score", resamples, confidence, seed)
    _, wlo, whi = bootstrap_interval(scores, "win", resamples, confidence, seed)  # the same resamples of items
    raters: dict[str, list[int]] = {}
    for r in rows:
        raters.setdefault(r["rater"], []).append(r["candidate"])
    return {"n_items": n, "n_ratings": len(rows), "raters": sorted(raters), "baseline": baseline,
            "mean": round(float(cand.mean()), 4), "ci_low": round(float(lo), 4), "ci_high": round(float(hi), 4),
            "confidence": confidence, "resamples": resamples, "baseline_mean": round(float(base.mean()), 4),
            "wins": int((outcome == 1).sum()), "ties": int((outcome == 0.5).sum()),
            "losses": int((outcome == 0).sum()), "win_rate": round(float(outcome.mean()), 4),
            "win_ci_low": round(float(wlo), 4), "win_ci_high": round(float(whi), 4),
            "per_rater_mean": {k: round(sum(v) / len(v), 4) for k, v in sorted(raters.items())}}


# -- the run: export, import, what the gate reads ---------------------------------------------------------------------
def _download(store: Any, run_id: str, artifact: str, dst: Path) -> Path | None:
    """The local copy of one artifact file of the run, or None when the run has no such artifact."""
    try:
        return Path(store.download(run_id, artifact, dst))
    except Exception:  # MLflow raises several types for a missing artifact, by store kind
        return None


def _download_json(store: Any, run_id: str, artifact: str, dst: Path) -> tuple[dict, str] | None:
    """An artifact JSON of the run and its sha256, or None when the run has no such artifact."""
    local = _download(store, run_id, artifact, dst)
    if local is None:
        return None
    try:
        return json.loads(local.read_text(encoding="utf-8")), sha256_file(local)
    except ValueError:
        raise DataError(f"artifact {artifact} of run {run_id} is not JSON: export again") from None


def session_verdict(store: Any, run_id: str, dst: Path) -> dict:
    """The verdict of the run's latest complete gating session. DataError naming the fix when there is none."""
    from .verdict import safe_filename

    tags = store.load(run_id).tags
    where = tags.get("ftgate.evidence")
    if not where:
        raise DataError(f"run {run_id} has no complete gating session (no ftgate.evidence tag): gate it first "
                        f"(pytest suites --run-id {run_id}) so that there are gated answers to rate")
    got = _download_json(store, run_id, f"{where}/{safe_filename(run_id)}.json", dst)
    if got is None or not got[0].get("complete"):
        raise DataError(f"run {run_id}: the verdict of session {tags.get('ftgate.session_id')} is missing from "
                        f"{where} or not complete: gate the run again (pytest suites --run-id {run_id})")
    return got[0]


def export_run(store: Any, run_id: str, n: int, out: Path, seed: int | None = None) -> tuple[str, dict, list[str]]:
    """Build and write the export of ``run_id`` into ``out`` and log its key to the run; returns (export id, the
    paths, notes for the user)."""
    with tempfile.TemporaryDirectory() as tmp:
        doc = build_export(session_verdict(store, run_id, Path(tmp)), n, seed)
    eid, paths = write_export(doc, out)
    store.log_artifact(run_id, paths["export"], ARTIFACT_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / f"{bare(eid)}.json"
        copy.write_bytes(paths["export"].read_bytes())
        store.log_artifact(run_id, copy, f"{ARTIFACT_DIR}/exports")
    store.set_tags(run_id, {"ftgate.human_eval.export_id": eid})
    notes = []
    if len(doc["items"]) < n:
        notes.append(f"only {len(doc['items'])} gated answers in session {doc['session_id']}'s G4 table (fewer than "
                     f"--n {n}): the sheet has {len(doc['items'])} items; raise quality.report_samples in ftgate.yaml "
                     "(0 = all) and gate the run again for more")
    return eid, paths, notes


def run_export(store: Any, run_id: str, export_id: str, dst: Path, where: str) -> dict:
    """The export ``export_id`` of the run (``human_eval/exports/<hex>.json``, checked against its id)."""
    got = _download_json(store, run_id, f"{ARTIFACT_DIR}/exports/{bare(export_id)}.json", dst)
    if got is None or got[1] != export_id:
        latest = store.load(run_id).tags.get("ftgate.human_eval.export_id", "none")
        raise DataError(f"{where}: export id {export_id[:19]}… is not an export of run {run_id} (its latest is "
                        f"{latest[:19]}…): a sheet of another export or run; rate the sheet exported for this run")
    return got[0]


def import_ratings(store: Any, run_id: str, sheets: Sequence[str | Path], settings: Any = None,
                   replace: bool = False) -> tuple[dict, list[str]]:
    """Validate ``sheets`` against the run's export, add them to the ratings already imported for that export
    (``replace``: instead of them), and log ``ratings.csv``, ``summary.json``, metrics and tags to the run."""
    named = [(str(p), read_sheet(p)) for p in sheets]
    eids = {sheet_export_id(rows, name): name for name, rows in named}
    if len(eids) > 1:
        raise DataError(f"{' and '.join(eids.values())} are sheets of different exports; import one export's sheets")
    eid = next(iter(eids))
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        doc = run_export(store, run_id, eid, Path(tmp), named[0][0])
        had = None if replace else _download(store, run_id, RATINGS_ARTIFACT, Path(tmp) / "had")
        earlier = read_sheet(had) if had is not None else []
        if earlier and earlier[0].get("export_id") == eid:
            named.insert(0, (f"{RATINGS_ARTIFACT} (imported before)", earlier))
        elif earlier:
            notes.append("the ratings imported before were of another export: they are replaced")
        ratings = validate(named, doc, eid)
        summary = {**summarize(unblind(ratings, doc), doc["baseline"], *_maths(settings)), "export_id": eid,
                   "session_id": doc.get("session_id")}
        csv_path = write_atomic(Path(tmp) / "ratings.csv", ratings_csv(ratings, doc, eid))
        sum_path = write_atomic(Path(tmp) / "summary.json", json.dumps(summary, indent=1) + "\n")
        store.log_artifact(run_id, csv_path, ARTIFACT_DIR)
        store.log_artifact(run_id, sum_path, ARTIFACT_DIR)
    _log_summary(store, run_id, summary)
    return summary, notes


def _maths(settings: Any) -> tuple[float, int, int]:
    if settings is None:
        from .config import HumanEval

        settings = HumanEval()
    return settings.confidence, settings.bootstrap_samples, settings.seed


def _log_summary(store: Any, run_id: str, s: dict) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    keys = ("mean", "ci_low", "ci_high", "baseline_mean", "win_rate", "n_items", "n_ratings")
    store.client.log_batch(run_id, metrics=[Metric(f"human_eval.{k}", float(s[k]), now, 0) for k in keys])
    from .verdict import utcnow

    store.set_tags(run_id, {"ftgate.human_eval.imported_export_id": s["export_id"],
                            "ftgate.human_eval.raters": ", ".join(s["raters"]),
                            "ftgate.human_eval.imported_at": utcnow()})


@dataclass(frozen=True)
class GateInput:
    """What the ``human_eval`` gate reads from the run: the summary of its ratings (None: none imported yet) and,
    when pending, how to get them."""

    summary: dict | None
    hint: str = ""


def for_gate(store: Any, run_id: str, dst: Path, settings: Any = None) -> GateInput:
    """The run's imported ratings, validated again against their export and summarized with ``settings``; a pending
    input naming the commands when the run has none. DataError when the ratings there do not validate."""
    local = _download(store, run_id, RATINGS_ARTIFACT, dst)
    if local is None:
        exported = store.load(run_id).tags.get("ftgate.human_eval.export_id")
        step = (f"the sheet of export {exported[:19]}… is exported but not imported: `ftgate human-eval import "
                f"RATINGS.csv --run-id {run_id}`" if exported else
                f"`ftgate human-eval export --run-id {run_id} --n 50`, have raters fill sheet.csv or form.html, then "
                f"`ftgate human-eval import RATINGS.csv --run-id {run_id}`")
        return GateInput(None, step)
    name = f"{RATINGS_ARTIFACT} of run {run_id}"
    rows = read_sheet(local)
    eid = sheet_export_id(rows, name)
    doc = run_export(store, run_id, eid, dst / "export", name)
    ratings = validate([(name, rows)], doc, eid)
    summary = summarize(unblind(ratings, doc), doc["baseline"], *_maths(settings))
    return GateInput({**summary, "export_id": eid, "session_id": doc.get("session_id")})


# -- the command -----------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ftgate human-eval", description=(
        "Human evaluation of a gated run: export a blinded rating sheet of its gated answers (candidate vs base or "
        "production, 1-5), then import the filled sheets; the human_eval gate reads them."))
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write sheet.csv, form.html and export.json (the key) for a run")
    ex.add_argument("--run-id", required=True, metavar="RUN", help="the run (id or name)")
    ex.add_argument("--n", type=_positive, default=None, metavar="N", help="items to rate (default: "
                                                                             "human_eval.samples, 50)")
    ex.add_argument("--out", type=Path, default=None, metavar="DIR", help="where to write (default: "
                                                                          "./human-eval-<run id>)")
    ex.add_argument("--seed", type=int, default=None, metavar="S", help="blinding seed (default: random)")
    im = sub.add_parser("import", help="validate filled sheets against the export and log them to the run")
    im.add_argument("sheets", nargs="+", type=Path, metavar="RATINGS.csv")
    im.add_argument("--run-id", required=True, metavar="RUN", help="the run (id or name)")
    im.add_argument("--replace", action="store_true", help="drop the ratings imported before for this export")
    for s in (ex, im):
        s.add_argument("--config", metavar="FILE", help="ftgate.yaml (default: ./ftgate.yaml if present)")
        s.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                                                              "else sqlite:///.ftgate/mlflow.db)")
    return p


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .config import load_config
    from .store import RunStore, quiet_mlflow_env, resolve_store

    quiet_mlflow_env()
    try:
        config = args.config or ("ftgate.yaml" if Path("ftgate.yaml").is_file() else None)
        h = load_config(config).human_eval
        store = RunStore(resolve_store(args.tracking_uri or "")[0])
        run_id, run_name = store.resolve(args.run_id)
        if args.command == "export":
            out = args.out or Path(f"human-eval-{run_id}")
            eid, paths, notes = export_run(store, run_id, args.n or h.samples, out, args.seed)
            print(f"ftgate human-eval: export {eid} of run {run_name}: {paths['sheet']} and {paths['form']} for the "
                  f"raters (keep {paths['export']}: it is the key); then: ftgate human-eval import RATINGS.csv "
                  f"--run-id {run_id}")
        else:
            s, notes = import_ratings(store, run_id, args.sheets, h, args.replace)
            print(f"ftgate human-eval: {s['n_ratings']} ratings of {s['n_items']} items by {len(s['raters'])} "
                  f"rater(s) logged to run {run_name}: mean {s['mean']:.2f}/5 ({s['confidence']:.0%} CI "
                  f"[{s['ci_low']:.2f}, {s['ci_high']:.2f}]), win rate vs {s['baseline']} {s['win_rate']:.2f}")
    except FtgateError as exc:
        print(f"ftgate human-eval: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    for line in notes:
        print(f"ftgate human-eval: note: {line}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
