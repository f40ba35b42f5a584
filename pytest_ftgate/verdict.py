"""The verdict of one run: gate records, the pass/warn/block/partial decision, and its atomic JSON file. No pytest.

A verdict is a release decision only when its session ran every gate the suites define for the run: until
``FtgateSession.finish`` says so it is ``partial`` — also on disk, so a file left by a killed session never
reads as a pass. During the session each gate record is appended to ``<run_id>.gates.jsonl`` (constant work per
gate); the verdict file is written at the start (partial, no gates) and whole at the end, when the journal goes.
``read_verdict`` merges the journal a killed session left.

Schema of ``<out>/verdicts/<run_id>.json`` (every field always present):
  run_id          MLflow run id (or the reference given, when the run could not be resolved)
  run_name        MLflow run name
  session_id      the gating session that wrote this file (its evidence lives under ftgate/sessions/<id>/ on the run)
  verdict         "pass" | "warn" | "block" | "partial". partial: not every gate the suites define for the run reached
                  an outcome in this session (a -k/-m/--lf/node-id selection, --collect-only, Ctrl-C, a crash, an
                  internal error) — never a release decision. Otherwise block when a block gate failed or errored or
                  the run is unusable; warn when a warn gate failed; pass otherwise
  complete        true when every gate the suites define for the run reached an outcome (then verdict != partial)
  incomplete      not complete (kept for readers of schema 1)
  partial_reason  why the verdict is partial ("" when complete)
  decision        what the gates that ran say (pass/warn/block), also for a partial verdict
  gates_expected  how many gate tests the suites define for the run (0 when unknown, e.g. after a crash)
  gates_run       how many of them reached an outcome
  error           why the run could not be gated ("" when it could)
  gates           [{id, name, severity, outcome, value, label, section, threshold, message, test, details}]
                  outcome: "passed" | "failed" | "error" | "skipped"; label names the value (what and unit);
                  section: the gate family's report section (training, quality, serving, benchmarks, audit, data, ...)
  started_at      ISO 8601 UTC, when gating of the session began
  finished_at     ISO 8601 UTC, when this file was last written
  ftgate_version  the plugin's version
  report_sha256   sha256 of the HTML report, once written ("" before)
  comparison      the A/B comparison of this run with another run of the session ({} when none), set when the
                  session ends (``compare.py``): {mode: "--ftgate-compare" | "session", role: "candidate" |
                  "reference"}; a candidate also has against {run_id, run_name}, n, test_set_sha256, metrics
                  [{metric, candidate_value, reference_value, difference, ci_low, ci_high, confidence, wins, ties,
                  losses, prefers}] (a paired bootstrap of candidate - reference per metric; wins/ties/losses per
                  sample), prefers ("candidate" | "reference" when an interval excludes 0 and none says the
                  opposite, "mixed", "neither", "not comparable", "not compared"), preferred {run_id, run_name} or
                  null, message; a reference has compared_with [run names]
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .fileio import write_atomic

RELEASABLE = ("pass", "warn")  # the verdicts a complete session may release


def releasable(verdict: dict) -> bool:
    """Whether a verdict (as written) lets its run be released: complete, and pass or warn."""
    return bool(verdict.get("complete")) and verdict.get("verdict") in RELEASABLE


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class GateRecord:
    id: str
    name: str
    severity: str
    outcome: str
    value: Any = None
    threshold: Any = None
    message: str = ""
    test: str = ""
    details: dict = field(default_factory=dict)
    label: str = ""  # what ``value`` is, with its unit (e.g. "improvement_pct (%)")
    section: str = ""  # the report section (a gate family's key, ``gates.section_of``)

    @classmethod
    def from_dict(cls, d: dict) -> "GateRecord":
        """The record as it crossed a process boundary (pytest-xdist) or was read back from a verdict file."""
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Verdict:
    run_id: str
    run_name: str
    started_at: str
    gates: list[GateRecord] = field(default_factory=list)
    session_id: str = ""
    complete: bool = False
    partial_reason: str = "the session has not finished"
    gates_expected: int = 0
    error: str = ""
    finished_at: str = ""
    ftgate_version: str = ""
    report_sha256: str = ""
    comparison: dict = field(default_factory=dict)  # set when the session ends (compare.session_comparison)

    @classmethod
    def from_dict(cls, d: dict) -> "Verdict":
        """A verdict read back from its file (``to_dict``'s derived fields dropped)."""
        names = set(cls.__dataclass_fields__) - {"gates"}
        return cls(**{k: v for k, v in d.items() if k in names},
                   gates=[GateRecord.from_dict(g) for g in d.get("gates") or []])

    @property
    def incomplete(self) -> bool:
        return not self.complete

    @property
    def verdict(self) -> str:
        """The release decision; ``partial`` unless every gate the suites define for the run reached an outcome."""
        return self.decision if self.complete else "partial"

    @property
    def decision(self) -> str:
        """What the gates that ran say, complete or not."""
        if self.error:
            return "block"
        if any(g.severity == "block" and g.outcome in ("failed", "error") for g in self.gates):
            return "block"
        if any(g.severity == "warn" and g.outcome in ("failed", "error") for g in self.gates):
            return "warn"
        return "pass"

    def add(self, record: GateRecord) -> None:
        """Record a gate, replacing an earlier record of the same test (a rerun)."""
        self.gates = [g for g in self.gates if not (g.test and g.test == record.test)] + [record]

    def failed(self) -> list[GateRecord]:
        return [g for g in self.gates if g.outcome in ("failed", "error")]

    def summary_lines(self, key: str) -> list[str]:
        """The run's verdict as the session's terminal summary (and ``ftgate verdict``) shows it: a line with the
        verdict, then why it is partial, the error, the A/B comparison and each gate that failed."""
        label = self.verdict.upper()
        lines = [f"{label:<8} {self.run_name} [{key}]" + (
            "" if self.complete else f" — {len({g.test for g in self.gates})} of {self.gates_expected or '?'} gate "
                                     f"tests ran, {self.decision} so far; not a release verdict")]
        if not self.complete:
            lines.append(f"    partial: {self.partial_reason}")
        if self.error:
            lines.append(f"    {self.error}")
        if self.comparison.get("message"):
            lines.append(f"    A/B: {_short(self.comparison['message'], 240)}")
        for g in self.failed():
            if self.error and g.outcome == "error":
                continue
            what = f" {g.label}" if g.label else " value"
            val = "" if g.value is None else f"{what}={_short(g.value)}"
            thr = "" if g.threshold is None else f" threshold={_short(g.threshold)}"
            title = g.id if g.name in ("", g.id) else f"{g.id} {g.name}"
            lines.append(f"    {g.severity:<5} {title} {g.outcome}:{val}{thr} - {_short(g.message, 200)}")
        return lines

    def to_dict(self) -> dict:
        d = {
            "run_id": self.run_id,
            "run_name": self.run_name,
            "session_id": self.session_id,
            "verdict": self.verdict,
            "complete": self.complete,
            "incomplete": self.incomplete,
            "partial_reason": "" if self.complete else self.partial_reason,
            "decision": self.decision,
            "gates_expected": self.gates_expected,
            "gates_run": len({g.test for g in self.gates}),
            "error": self.error,
            "gates": [asdict(g) for g in self.gates],
            "started_at": self.started_at,
            "finished_at": self.finished_at or utcnow(),
            "ftgate_version": self.ftgate_version,
            "report_sha256": self.report_sha256,
            "comparison": self.comparison,
        }
        return json_safe(d)


def _short(x: object, n: int = 60) -> str:
    text = str(x)
    return text if len(text) <= n else text[: n - 1] + "…"


def json_safe(obj: Any) -> Any:
    """Plain JSON: non-finite floats become "NaN"/"Inf"/"-Inf", tuples lists, unknown objects strings."""
    if isinstance(obj, float):
        if math.isnan(obj):
            return "NaN"
        if math.isinf(obj):
            return "Inf" if obj > 0 else "-Inf"
        return obj
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if hasattr(obj, "item"):  # numpy scalars
        return json_safe(obj.item())
    return str(obj)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    return write_text_atomic(path, json.dumps(json_safe(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def append_journal(path: str | Path, gate: GateRecord) -> None:
    """One gate record appended as a JSON line (flushed: a killed session keeps every record it made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(json_safe(asdict(gate)), allow_nan=False) + "\n")
        fh.flush()


def read_verdict(path: str | Path) -> dict:
    """A verdict file as written; for a session that died before writing it whole, the gate records of its journal
    (``<run>.gates.jsonl``) are merged in. The verdict stays what the file says (``partial``)."""
    path = Path(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    journal = path.with_name(path.name.removesuffix(".json") + ".gates.jsonl")
    if journal.is_file():
        seen = {g.get("test") for g in doc.get("gates") or []}
        for line in journal.read_text(encoding="utf-8").splitlines():
            try:
                gate = json.loads(line)
            except ValueError:  # a line cut by the kill
                continue
            if gate.get("test") not in seen:
                doc.setdefault("gates", []).append(gate)
                seen.add(gate.get("test"))
        doc["gates_run"] = len(doc.get("gates") or [])
        doc["decision"] = Verdict.from_dict(doc).decision  # what the gates that ran say; the verdict stays partial
    return doc


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically and fsync'd (``fileio.write_atomic``): verdicts, reports, attestations."""
    return write_atomic(path, text)


def safe_filename(run_id: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return keep or "run"


class VerdictFileError(Exception):
    """A path given to ``ftgate verdict`` is not a verdict file or a directory of them (the path and fix named)."""


def verdict_files(path: str | Path) -> list[Path]:
    """The verdict files at ``path``: the file itself, or the ``*.json`` of a ``verdicts/`` directory or of a
    ``--ftgate-out`` directory's ``verdicts/``."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        folder = path / "verdicts" if (path / "verdicts").is_dir() else path
        files = sorted(f for f in folder.glob("*.json") if not f.name.endswith(".intoto.json"))  # attestations
        if files:
            return files
        if (path / "previous").is_dir():  # the last session here gated no run; earlier sessions' are kept there
            raise VerdictFileError(f"{path}: no verdict files in {folder}: the last session to use it gated no run; "
                                   f"earlier sessions' verdicts are in {path / 'previous'}/<session id>")
        raise VerdictFileError(f"{path}: no verdict files (<run_id>.json) in {folder}; give a --ftgate-out "
                               "directory, its verdicts/ directory or one verdict file")
    raise VerdictFileError(f"{path}: no such file or directory; give a --ftgate-out directory, its verdicts/ "
                           "directory or one verdict file")


def _read_checked(path: Path) -> dict:
    try:
        doc = read_verdict(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise VerdictFileError(f"{path}: cannot be read ({exc.__class__.__name__}: {exc}); check the path") from None
    except ValueError as exc:
        raise VerdictFileError(f"{path}: not JSON ({exc}); a verdict file is written by a gating session") from None
    if not isinstance(doc, dict) or "run_id" not in doc or "verdict" not in doc:
        raise VerdictFileError(f"{path}: not a pytest-ftgate verdict file (no run_id/verdict); "
                               "give a file from ftgate-results/verdicts/")
    return doc


def main(argv: list[str] | None = None) -> int:
    """``ftgate verdict``: show verdict files, a killed session's gate journal merged in (exit 0 when every run's
    verdict is a complete pass or warn, 1 otherwise, 2 for a path that is not a verdict)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="ftgate verdict", description=(
        "Show the verdicts of a gating session, including one that was killed (its gates.jsonl journal merged in). "
        "Exit 0 when every run's verdict is a complete pass or warn, 1 otherwise."))
    parser.add_argument("paths", nargs="*", type=Path, default=[Path("ftgate-results")], metavar="PATH",
                        help="a --ftgate-out directory, its verdicts/ directory or a verdict file "
                             "(default: ftgate-results)")
    parser.add_argument("--json", action="store_true", help="print the verdicts as JSON (a list), merged")
    args = parser.parse_args(argv)
    try:
        docs = [_read_checked(f) for p in args.paths for f in verdict_files(p)]
    except VerdictFileError as exc:
        print(f"ftgate verdict: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(docs, indent=1))
    else:
        for doc in docs:
            print("\n".join(Verdict.from_dict(doc).summary_lines(str(doc["run_id"]))))
            print(f"    session {doc.get('session_id') or '?'}, written {doc.get('finished_at') or '?'}")  # which one
    return 0 if all(releasable(d) for d in docs) else 1
