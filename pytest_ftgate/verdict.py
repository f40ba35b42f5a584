"""The verdict of one run: gate records, the pass/warn/block decision, and its atomic JSON file. No pytest.

Schema of ``<out>/verdicts/<run_id>.json`` (every field always present):
  run_id         MLflow run id (or the reference given, when the run could not be resolved)
  run_name       MLflow run name
  verdict        "pass" | "warn" | "block": block when a block gate failed or errored, or the run is unusable;
                 warn when a warn gate failed; pass otherwise
  incomplete     true when not every collected gate finished (Ctrl-C, crash) or the run could not be read
  error          why the run could not be gated ("" when it could)
  gates          [{id, name, severity, outcome, value, threshold, message, test, details}]
                 outcome: "passed" | "failed" | "error" | "skipped"
  started_at     ISO 8601 UTC, when gating of the session began
  finished_at    ISO 8601 UTC, when this file was last written
  ftgate_version the plugin's version
  report_sha256  sha256 of the HTML report, once written ("" before)
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

OUTCOMES = ("passed", "failed", "error", "skipped")


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

    @property
    def counts_against(self) -> bool:
        """A failed or errored gate of this severity that changes the decision."""
        return self.outcome in ("failed", "error") and self.severity in ("block", "warn")


@dataclass
class Verdict:
    run_id: str
    run_name: str
    started_at: str
    gates: list[GateRecord] = field(default_factory=list)
    incomplete: bool = True
    error: str = ""
    finished_at: str = ""
    ftgate_version: str = ""
    report_sha256: str = ""

    @property
    def verdict(self) -> str:
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

    def to_dict(self) -> dict:
        d = {
            "run_id": self.run_id,
            "run_name": self.run_name,
            "verdict": self.verdict,
            "incomplete": self.incomplete,
            "error": self.error,
            "gates": [asdict(g) for g in self.gates],
            "started_at": self.started_at,
            "finished_at": self.finished_at or utcnow(),
            "ftgate_version": self.ftgate_version,
            "report_sha256": self.report_sha256,
        }
        return json_safe(d)


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(json_safe(data), fh, indent=2, sort_keys=False, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def safe_filename(run_id: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return keep or "run"
