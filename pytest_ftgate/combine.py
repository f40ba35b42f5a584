"""`ftgate combine`: one report for runs gated in several sessions (a sweep split over CI jobs).

Reads each job's ``<out>/report.json`` (already redacted), keeps per run the latest complete verdict (a partial one
only when no job has a complete one), and writes ``report.html``, ``report.json`` and ``summary.md`` into one
directory. Exit code as for a gating session: 0 when every run's verdict is a complete pass or warn, 1 otherwise.
It re-gates nothing and writes nothing to MLflow: each job already recorded its complete verdicts there. No pytest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__, report
from .report import RunEvidence
from .verdict import releasable
from .store import RunRecord
from .verdict import utcnow, write_text_atomic

EVIDENCE_KEYS = ("run", "audit_record", "adapter_files", "attestation", "promotion", "notes")


class CombineError(Exception):
    """A job's output directory or its report.json cannot be read (the path and the fix are named)."""


def read_session(out: Path) -> dict:
    path = Path(out) / "report.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CombineError(f"{path} cannot be read ({exc}): pass the --ftgate-out directory of a finished "
                           "gating session") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise CombineError(f"{path} is not a pytest-ftgate report.json (no runs list)")
    return doc


def evidence_of(entry: dict) -> RunEvidence:
    """A run of a report.json back as the evidence the report is built from."""
    run = entry.get("run")
    record = None
    if isinstance(run, dict):
        record = RunRecord(run_id=entry.get("run_id", ""), run_name=run.get("run_name", ""),
                           experiment_id=run.get("experiment_id", ""), status=run.get("status", ""), start_time=None,
                           end_time=None, params=run.get("params") or {}, tags=run.get("tags") or {},
                           history={k: [tuple(p) for p in v] for k, v in (run.get("history") or {}).items()})
    verdict = {k: v for k, v in entry.items() if k not in EVIDENCE_KEYS}
    return RunEvidence(verdict=verdict, record=record, audit=entry.get("audit_record"),
                       adapter_files=entry.get("adapter_files") or [], notes=entry.get("notes") or [],
                       attestation=entry.get("attestation") or {}, promotion=entry.get("promotion") or {})


def pick(entries: list[dict]) -> list[dict]:
    """Per run id: the latest complete verdict, else the latest partial one."""
    best: dict[str, dict] = {}
    for entry in entries:
        key = entry.get("run_id", "")
        rank = (bool(entry.get("complete")), str(entry.get("finished_at") or ""))
        old = best.get(key)
        if old is None or rank > (bool(old.get("complete")), str(old.get("finished_at") or "")):
            best[key] = entry
    return list(best.values())


def combine(outs: list[Path], dst: Path) -> list[RunEvidence]:
    docs = [read_session(o) for o in outs]
    evidence = [evidence_of(e) for e in pick([r for d in docs for r in d["runs"]])]
    meta = {"version": __version__, "started_at": min(str(d["session"].get("started_at", "")) for d in docs),
            "finished_at": utcnow(), "interrupted": any(d["session"].get("interrupted") for d in docs),
            "tracking_uri": ", ".join(sorted({str(d["session"].get("tracking_uri", "")) for d in docs})),
            "combined_from": [str(o) for o in outs], "report": str(dst / "report.html"), "report_sha256": ""}
    page = report.standalone_page("pytest-ftgate release report", report.session_html(evidence, meta))
    write_text_atomic(dst / "report.html", page)
    write_text_atomic(dst / "report.json", json.dumps(report.session_json(evidence, meta), indent=1, default=str,
                                                      ensure_ascii=False))
    write_text_atomic(dst / "summary.md", report.summary_md(evidence, meta))
    return evidence


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ftgate combine", description=(
        "Combine the --ftgate-out directories of several gating sessions (e.g. a sweep split over CI jobs) into "
        "one report.html, report.json and summary.md. Exit 0 when every run's verdict is a complete pass or warn."))
    parser.add_argument("outs", nargs="+", type=Path, metavar="OUT", help="a session's --ftgate-out directory")
    parser.add_argument("--out", type=Path, default=Path("ftgate-combined"), metavar="DIR",
                        help="where the combined report goes (default: ftgate-combined)")
    args = parser.parse_args(argv)
    try:
        evidence = combine(args.outs, args.out)
    except CombineError as exc:
        print(f"ftgate combine: {exc}", file=sys.stderr)
        return 2
    n_ok = 0
    for ev in evidence:
        v = ev.verdict
        ok = releasable(v)
        n_ok += ok
        print(f"{str(v.get('verdict')).upper():<8} {v.get('run_name')} [{ev.run_id}]")
    print(f"ftgate combine: {len(evidence)} run(s), {n_ok} releasable; report: {args.out / 'report.html'}")
    return 0 if n_ok == len(evidence) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
