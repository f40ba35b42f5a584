"""The compliance report's content, pure: per run a verdict banner, the gate table, loss curves, metrics against
the baseline, benchmarks, the audit record, data checks and a sample of generations, as self-contained HTML with
every value escaped; ``report.json`` and ``summary.md``; and the redaction of secrets from all of them.

No pytest, no MLflow, no file I/O: ``publish.py`` gathers the evidence and writes the files; ``plugin.py``
hands the HTML to pytest-html. Nothing here may put an unescaped string into HTML.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .redact import REDACTED, Redactor, is_secret_key
from .store import RunRecord

MAX_SAMPLES = 10  # generations shown per run (the lowest-scoring first)
MAX_ITEMS = 25  # list items / dict entries shown by the generic renderer
MAX_TEXT = 2000  # characters of one value


# -- what the report is built from ---------------------------------------------------------------------------------
@dataclass
class RunEvidence:
    """One run's evidence, already redacted: its verdict (``Verdict.to_dict()``), its MLflow record, its audit
    record, the digests of its adapter artifact, and what became of it (attestation, promotion)."""

    verdict: dict
    record: RunRecord | None = None
    audit: dict | None = None
    adapter_files: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # evidence that could not be gathered, and why
    attestation: dict = field(default_factory=dict)  # {path, sha256, signed, keyid}
    promotion: dict = field(default_factory=dict)  # {name, version, alias} or {skipped: reason}
    checklist: dict = field(default_factory=dict)  # the seed 003 compliance checklist (checklist.build)

    @property
    def run_id(self) -> str:
        return self.verdict.get("run_id", "")


def e(x: Any) -> str:
    """HTML-escaped text of any value (quotes too: safe in attributes)."""
    return html.escape(_clip(x if isinstance(x, str) else fmt(x)), quote=True)


def fmt(v: Any) -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, (dict, list, tuple)):
        return _clip(json.dumps(_rounded(v), default=str, ensure_ascii=False))
    return str(v)


def _rounded(v: Any) -> Any:
    if isinstance(v, float) and math.isfinite(v):
        return float(f"{v:.4g}")
    if isinstance(v, Mapping):
        return {k: _rounded(x) for k, x in v.items()}
    return [_rounded(x) for x in v] if isinstance(v, (list, tuple)) else v


def _clip(s: str, n: int = MAX_TEXT) -> str:
    return s if len(s) <= n else s[: n - 1] + f"… [{len(s) - n + 1} more characters]"


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="ftgate-table {e(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def section(title: str, body: str, open_: bool = True, cls: str = "") -> str:
    return (f'<details class="ftgate-section {e(cls)}"{" open" if open_ else ""}><summary>{e(title)}</summary>'
            f"{body}</details>")


def note(text: str) -> str:
    return f'<p class="ftgate-note">{e(text)}</p>'


# -- gate outcomes -------------------------------------------------------------------------------------------------
def gate_label(g: Mapping) -> str:
    """PASS, FAIL (block), WARN, INFO, ERROR or SKIPPED: what a reviewer reads for one gate."""
    outcome = g.get("outcome")
    if outcome == "failed":
        return {"warn": "WARN", "info": "INFO"}.get(g.get("severity"), "FAIL")
    return {"passed": "PASS", "error": "ERROR", "skipped": "SKIPPED"}.get(outcome, str(outcome).upper())


def category(g: Mapping) -> str:
    """The report section of a gate record: the one its family registered (``gates.section_of``), or the section
    the record names (``section``, set by the plugin from the registration or the marker's ``section=``)."""
    from . import gates as families

    return str(g.get("section") or families.section_of(str(g.get("id", ""))).key)


def gate_title(g: Mapping) -> str:
    gid, name = str(g.get("id") or ""), str(g.get("name") or "")
    return gid if not name or name == gid else f"{gid} {name}"


RANK = {"FAIL": 0, "ERROR": 1, "WARN": 2, "INFO": 3, "PASS": 4, "SKIPPED": 5}  # failing gates first
VERDICT_RANK = {"block": 0, "partial": 1, "warn": 2, "pass": 3}  # blocked runs first
VERDICT_WORDS = {"block": "BLOCKED", "partial": "PARTIAL", "warn": "WARN", "pass": "PASS"}
SHORT = 240  # characters of a gate message on the first screen; the rest is folded


def ordered(gates: list[dict]) -> list[dict]:
    """Failing gates first (FAIL, ERROR, WARN, INFO), then the passed and skipped ones, each in suite order."""
    return sorted(gates, key=lambda g: RANK.get(gate_label(g), 6))


def words(v: Any) -> str:
    """A gate's value or threshold as a reviewer reads it: ``{"verified": 19, "mismatched": 1}`` -> "19 verified,
    1 mismatched"; ``{"f1": "> 0.8"}`` -> "f1 > 0.8"; None -> "no value"."""
    if v is None or v == "":
        return "no value"
    if isinstance(v, Mapping):
        parts = [f"{fmt(x)} {k}" if isinstance(x, int) and not isinstance(x, bool) else f"{k} {words(x)}"
                 for k, x in v.items()]
        return ", ".join(parts) or "none"
    if isinstance(v, (list, tuple)):
        return ", ".join(words(x) for x in v) or "none"
    return fmt(v)


def short(text: str, n: int = SHORT) -> tuple[str, str]:
    """(what the first screen shows, the rest): cut after the last sentence or clause end before ``n``."""
    text = str(text or "")
    if len(text) <= n:
        return text, ""
    cut = max(text.rfind(". ", 0, n), text.rfind(": ", 0, n), text.rfind("; ", 0, n))
    cut = cut + 1 if cut > n // 3 else n
    return text[:cut].rstrip() + " …", text[cut:].lstrip()


def folded(summary: str, body: str) -> str:
    return f'<details class="ftgate-fold"><summary>{e(summary)}</summary>{body}</details>' if body else ""


def evidence(g: Mapping) -> str:
    """A gate's full message and its details, folded under it (generations are in their own section)."""
    head, rest = short(g.get("message", ""))
    details = {k: v for k, v in (g.get("details") or {}).items() if k not in ("samples", "answers")}
    body = (f'<p class="ftgate-text">{e(g.get("message"))}</p>' if rest else "") + (
        details_html(details) if details else "")
    return f"{e(head)}" + folded("full message and evidence" if rest else "evidence", body)


def gate_table(gates: list[dict]) -> str:
    """One row per gate, failing gates first and shaded; value and threshold in words; evidence folded."""
    if not gates:
        return note("no gate finished for this run")
    head = ["gate", "name", "severity", "value", "threshold", "outcome", "message"]
    rows = "".join(
        f'<tr class="ftgate-{e(gate_label(g).lower())}"><td>{e(g.get("id"))}</td>'
        f'<td>{e(g.get("name")) if g.get("name") != g.get("id") else ""}</td>'
        f'<td>{e(g.get("severity"))}</td><td>{e(words(g.get("value")))}</td><td>{e(words(g.get("threshold")))}</td>'
        f'<td class="ftgate-outcome">{e(gate_label(g))}</td><td class="ftgate-msg">{evidence(g)}</td></tr>'
        for g in ordered(gates))
    return (f'<table class="ftgate-table ftgate-gates"><thead><tr>{"".join(f"<th>{h}</th>" for h in head)}'
            f"</tr></thead><tbody>{rows}</tbody></table>")


def banner(ev: RunEvidence) -> str:
    v = ev.verdict
    verdict = str(v.get("verdict", "block"))
    label = VERDICT_WORDS.get(verdict, verdict.upper())
    counts: dict[str, int] = {}
    for g in v.get("gates", []):
        counts[gate_label(g)] = counts.get(gate_label(g), 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: RANK.get(kv[0], 6))) or \
        "no gates finished"
    if verdict == "partial":
        summary += f"; not every gate ran ({v.get('partial_reason') or 'a selection or an interruption'}): " \
                   "no release decision"
    flag = '<span class="ftgate-incomplete">INCOMPLETE</span>' if v.get("incomplete") else ""
    error = f'<div class="ftgate-error">{e(v["error"])}</div>' if v.get("error") else ""
    return (f'<div class="ftgate-banner ftgate-{e(verdict.lower())}" role="status"><span class="ftgate-verdict">'
            f'{e(label)}</span> {flag} <span class="ftgate-run">{e(v.get("run_name"))}</span> '
            f'<code>{e(v.get("run_id"))}</code><div class="ftgate-counts">{e(summary)}</div>{error}</div>')


def decision_line(g: Mapping) -> str:
    """One failing gate on the first screen: title, outcome, value against threshold in words, why."""
    head, _ = short(g.get("message", ""), 200)
    return (f'<li class="ftgate-{e(gate_label(g).lower())}"><b>{e(gate_title(g))}</b> '
            f'<span class="ftgate-outcome">{e(gate_label(g))}</span>: {e(words(g.get("value")))} '
            f'(needs {e(words(g.get("threshold")))}) — {e(head)}</li>')


def decisions(evidence_: list[RunEvidence]) -> str:
    """The reviewer's first screen: each run's decision, blocked runs first, and why, one line per failing gate."""
    cards = []
    for ev in evidence_:
        v = ev.verdict
        verdict = str(v.get("verdict", "block"))
        failing = [g for g in ordered(v.get("gates", [])) if g.get("outcome") in ("failed", "error")]
        why = "".join(decision_line(g) for g in failing)
        if v.get("error"):
            why = f'<li class="ftgate-error">{e(short(v["error"], 300)[0])}</li>' + why
        tail = (f"{len(failing)} gate(s) did not pass" if failing else
                "every gate that ran passed" if v.get("gates") else "no gate finished")
        cards.append(f'<div class="ftgate-decision ftgate-{e(verdict)}"><span class="ftgate-verdict">'
                     f'{e(VERDICT_WORDS.get(verdict, verdict.upper()))}</span> <a href="#run-{e(ev.run_id)}">'
                     f'{e(v.get("run_name"))}</a> <code>{e(ev.run_id)}</code> — {e(tail)}'
                     + (f"<ul>{why}</ul>" if why else "") + "</div>")
    return f'<div class="ftgate-decisions">{"".join(cards)}</div>'


# -- curves --------------------------------------------------------------------------------------------------------
PLOT_W, PLOT_H, PAD = 640, 300, (52, 14, 14, 38)  # width, height, (left, right, top, bottom) in px
MAX_POINTS = 400  # per curve: each drawn x pixel keeps its lowest and highest value, so a spike stays visible


def loss_svg(history: Mapping[str, list], keys: tuple[str, ...] = ("loss", "eval_loss")) -> str | None:
    """loss and eval_loss against the step as a small SVG line chart (axes, ticks, legend); red dotted lines mark
    steps with non-finite values. Drawn here in milliseconds (no plotting library to import for each report)."""
    series = {k: [(s, v) for s, v in history.get(k, []) if isinstance(v, (int, float)) and math.isfinite(v)]
              for k in keys}
    bad = sorted({s for k in keys for s, v in history.get(k, []) if not (isinstance(v, (int, float))
                                                                          and math.isfinite(v))})
    pts = [p for k in keys for p in series[k]]
    if not pts and not bad:
        return None
    steps = [p[0] for p in pts] + bad
    x0, x1 = min(steps), max(steps)
    y0, y1 = (min(p[1] for p in pts), max(p[1] for p in pts)) if pts else (0.0, 1.0)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    left, right, top, bottom = PAD
    w, h = PLOT_W - left - right, PLOT_H - top - bottom
    sx = lambda x: left + (x - x0) / (x1 - x0) * w  # noqa: E731
    sy = lambda y: top + (1 - (y - y0) / (y1 - y0)) * h  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {PLOT_W} {PLOT_H}" width="{PLOT_W}" '
           f'height="{PLOT_H}" font-family="sans-serif" font-size="11">',
           f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="white" stroke="#999"/>']
    for i in range(5):
        yv, xv = y0 + (y1 - y0) * i / 4, x0 + (x1 - x0) * i / 4
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>'
                   f'<text x="{sx(xv):.1f}" y="{top + h + 14}" text-anchor="middle">{xv:.0f}</text>')
    out.append(f'<text x="{left + w / 2}" y="{PLOT_H - 6}" text-anchor="middle">step</text>'
               f'<text x="12" y="{top + h / 2}" transform="rotate(-90 12 {top + h / 2})" '
               'text-anchor="middle">loss</text>')
    out += [f'<line x1="{sx(b):.1f}" x2="{sx(b):.1f}" y1="{top}" y2="{top + h}" stroke="red" '
            'stroke-dasharray="2,3"/>' for b in bad[:200]]
    for (key, line), colour in zip(series.items(), ("#1f77b4", "#ff7f0e")):
        drawn = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in _thinned(line, w))
        if drawn:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{drawn}"/>')
        if key == "eval_loss":
            out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in line[:200]]
    for i, (key, colour) in enumerate(zip(keys, ("#1f77b4", "#ff7f0e"))):
        if series[key]:
            ly = top + 14 + 14 * i
            out.append(f'<line x1="{left + w - 86}" x2="{left + w - 66}" y1="{ly - 4}" y2="{ly - 4}" '
                       f'stroke="{colour}" stroke-width="2"/><text x="{left + w - 60}" y="{ly}">{key}</text>')
    return "".join(out) + "</svg>"


def _thinned(points: list[tuple[float, float]], width: float) -> list[tuple[float, float]]:
    """At most MAX_POINTS points: per x bucket its lowest and highest value, in step order."""
    if len(points) <= MAX_POINTS:
        return points
    buckets: dict[int, list[tuple[float, float]]] = {}
    x0, x1 = points[0][0], points[-1][0] or 1
    for x, y in points:
        buckets.setdefault(int((x - x0) / ((x1 - x0) or 1) * (MAX_POINTS // 2)), []).append((x, y))
    out = []
    for b in sorted(buckets):
        lo, hi = min(buckets[b], key=lambda p: p[1]), max(buckets[b], key=lambda p: p[1])
        out += sorted({lo, hi})
    return out


def curves(record: RunRecord | None) -> str:
    if record is None:
        return note("the run could not be read: no curves")
    svg = loss_svg(record.history)
    if svg is None:
        return note("the run logged no loss or eval_loss")
    nonfinite = sorted({s for k in ("loss", "eval_loss") for s, v in record.history.get(k, [])
                        if not math.isfinite(v)})
    extra = note(f"non-finite values at steps {nonfinite[:20]}") if nonfinite else ""
    return (f'<img class="ftgate-plot" alt="loss and eval_loss of {e(record.run_name)}" '
            f'src="data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()}"/>{extra}')


# -- tables found inside gate details ------------------------------------------------------------------------------
_COLUMNS = ("name", "metric", "task", "candidate", "candidate_value", "baseline", "baseline_value", "base",
            "difference", "ratio", "ci_low", "ci_high", "confidence", "stderr", "significant", "threshold", "passed")


def find_rows(obj: Any, required: tuple[str, ...] | Any, name: str = "", depth: int = 0) -> list[dict]:
    """Dicts holding every ``required`` key (or for which ``required(d)`` is true), wherever they sit in ``obj``
    (a dict of them is keyed by ``name``)."""
    if depth > 4:
        return []
    if isinstance(obj, Mapping):
        if required(obj) if callable(required) else all(k in obj for k in required):
            return [{"name": name, **obj} if name and "metric" not in obj and "task" not in obj else dict(obj)]
        return [r for k, v in obj.items() if k != "samples" for r in find_rows(v, required, str(k), depth + 1)]
    if isinstance(obj, list):
        return [r for v in obj[:200] for r in find_rows(v, required, name, depth + 1)]
    return []


def is_comparison(d: Mapping) -> bool:
    """A candidate-vs-baseline row: a confidence interval, or both values under any of the usual names."""
    return ("ci_low" in d and "ci_high" in d) or (any(k in d for k in ("candidate", "candidate_value")) and any(
        k in d for k in ("baseline", "baseline_value", "base")))


def rows_table(rows: list[dict]) -> str:
    keys = [k for k in _COLUMNS if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k, v in r.items() if k not in keys and not isinstance(v, (dict, list))})
    return table(keys, ([r.get(k) for k in keys] for r in rows), "ftgate-metrics")


def quality_html(gates: list[dict]) -> str:
    """Per quality gate: its comparison rows (metrics, baseline, CI) as one table, then its other details."""
    parts = []
    for g in gates:
        details = {k: v for k, v in (g.get("details") or {}).items() if k not in ("samples", "answers")}
        rows = find_rows(details, is_comparison)  # the per-model answer info is not a comparison row
        rest = {k: v for k, v in details.items() if not find_rows(v, is_comparison)}
        if rows or rest:
            parts.append(f"<h4>{e(gate_title(g))}: {e(gate_label(g))}</h4>" + (rows_table(rows) if rows else "")
                         + (details_html(rest) if rest else ""))
    return "".join(parts)


def benchmark_rows(gates: list[dict]) -> list[dict]:
    rows = []
    for g in gates:
        if category(g) != "benchmarks":
            continue
        found = find_rows(g.get("details") or {}, ("task",)) or [{"task": g.get("id"), **(g.get("details") or {})}]
        rows += [{"gate": g.get("id"), "outcome": gate_label(g), **{k: v for k, v in r.items()
                                                                    if not isinstance(v, (dict, list))}}
                 for r in found]
    return rows


# -- generic details -----------------------------------------------------------------------------------------------
def _flat(v: Any) -> bool:
    return not isinstance(v, (dict, list, tuple))


def details_html(obj: Any, depth: int = 0) -> str:
    """Any JSON-like value, escaped: flat dicts and lists of flat dicts as tables, the rest as nested definition
    lists (long lists and deep nesting are cut; report.json has everything)."""
    if isinstance(obj, Mapping):
        items = list(obj.items())
        if not items or depth >= 3:
            return f"<code>{e(obj)}</code>" if items else "–"
        if all(_flat(v) for _, v in items):
            return table(["key", "value"], items[:MAX_ITEMS], "ftgate-kv") + _more(len(items), "entries")
        body = "".join(f"<dt>{e(k)}</dt><dd>{details_html(v, depth + 1)}</dd>" for k, v in items[:MAX_ITEMS])
        return f'<dl class="ftgate-dl">{body}</dl>{_more(len(items), "entries")}'
    if isinstance(obj, (list, tuple)):
        if not obj or all(_flat(v) for v in obj) or depth >= 3:
            return f"<code>{e(obj)}</code>"
        if all(isinstance(v, Mapping) and all(_flat(x) for x in v.values()) for v in obj):
            keys = list(dict.fromkeys(k for v in obj[:MAX_ITEMS] for k in v))
            return table(keys, ([v.get(k) for k in keys] for v in obj[:MAX_ITEMS])) + _more(len(obj), "items")
        body = "".join(f"<li>{details_html(v, depth + 1)}</li>" for v in obj[:MAX_ITEMS])
        return f"<ol>{body}</ol>{_more(len(obj), 'items')}"
    return e(obj)


def _more(n: int, what: str) -> str:
    return note(f"… {n - MAX_ITEMS} more {what} in report.json") if n > MAX_ITEMS else ""


# -- generations ---------------------------------------------------------------------------------------------------
def samples(gates: list[dict], limit: int = MAX_SAMPLES) -> tuple[list[dict], int]:
    """(the ``limit`` lowest-scoring generations, how many there are), over every gate's ``details["samples"]``."""
    seen: dict[tuple, dict] = {}
    for g in gates:
        for s in (g.get("details") or {}).get("samples") or []:
            if isinstance(s, Mapping):
                seen.setdefault((str(s.get("prompt")), str(s.get("prediction"))), dict(s))

    def score(s: dict) -> float:
        vals = [v for v in (s.get("scores") or {}).values() if isinstance(v, (int, float)) and math.isfinite(v)]
        return sum(vals) / len(vals) if vals else math.inf

    ranked = sorted(seen.values(), key=score)
    return ranked[:limit], len(ranked)


def samples_table(gates: list[dict]) -> str:
    shown, total = samples(gates)
    if not total:
        return note("no generations were recorded for this run")
    rows = "".join(
        f'<tr><td class="ftgate-text">{e(s.get("prompt"))}</td><td class="ftgate-text">{e(s.get("reference"))}</td>'
        f'<td class="ftgate-text ftgate-prediction">{e(s.get("prediction"))}</td><td>{e(s.get("scores"))}</td></tr>'
        for s in shown)
    return (note(f"the {len(shown)} lowest-scoring of {total} generations (all of them are in report.json)")
            + '<table class="ftgate-table ftgate-samples"><thead><tr><th>prompt</th><th>reference</th>'
            f"<th>prediction</th><th>scores</th></tr></thead><tbody>{rows}</tbody></table>")


# -- the audit record ----------------------------------------------------------------------------------------------
def audit_html(ev: RunEvidence, gates: list[dict]) -> str:
    from .record import ARTIFACT, AuditRecord

    a = AuditRecord.of(ev.audit)
    parts = []
    if not a:
        parts.append(note(f"no audit record (artifact {ARTIFACT}) on this run"))
    if a.inputs:
        parts.append(table(["input", "path / name", "sha256", "detail"], _input_rows(a), "ftgate-hashes"))
    recorded = {f.get("name"): f.get("sha256") for f in a.adapter_files}
    if ev.adapter_files or recorded:
        names = sorted({f["name"] for f in ev.adapter_files} | set(recorded))
        actual = {f["name"]: f for f in ev.adapter_files}
        parts.append(table(["adapter file", "sha256 (artifact)", "size", "matches audit record"], [
            [n, (actual.get(n) or {}).get("sha256"), (actual.get(n) or {}).get("size"),
             "–" if not recorded else (recorded.get(n) == (actual.get(n) or {}).get("sha256"))] for n in names]))
    repro = a.reproducibility
    parts.append('<div class="ftgate-row">' + "".join(
        f"<div><h4>{e(title)}</h4>{table(['key', 'value'], sorted(repro[title].items()))}</div>"
        for title in ("environment", "seeds", "hardware", "determinism") if isinstance(repro.get(title), dict)
        and repro.get(title)) + "</div>")
    if a.provenance:
        adopted = a.adopted
        parts.append(note(f"provenance: {a.provenance} ({adopted.get('by', '')} {adopted.get('at', '')}); "
                          f"not established: {'; '.join(adopted.get('not_established') or []) or 'nothing'}"))
    if a.training:
        parts.append(folded("training record", details_html(a.training)))
    return "".join(parts)


def _input_rows(a) -> list[list]:
    base, cfg = a.base_model, a.config
    return [["base model", base.get("source") or a.base_model_path, a.base_model_hash,
             f"{len(a.base_model_files)} files"],
            *[[f"dataset ({d.get('split')})", d.get("name"), d.get("sha256"),
               f"{d.get('samples')} samples, {d.get('format')}"] for d in a.datasets],
            ["dataset_info", a.dataset_info_path, a.dataset_info_sha256, ""],
            ["config", a.config_file, a.config_sha256, f"git {cfg.get('git_commit') or '–'}"]]


def engine_section(gates: list[dict]) -> str:
    """The serving engine a gate recorded (``details.engine``: kind, command, URL and port, log file, start-up
    seconds, adapters), as the report's "Engine" section; "" when no gate recorded one (the hf engine)."""
    for g in gates:
        eng = (g.get("details") or {}).get("engine")
        if isinstance(eng, dict) and eng.get("kind"):
            keys = ("kind", "base_model", "command", "url", "port", "log", "startup_s", "attached_to")
            rows = [[k, eng[k]] for k in keys if eng.get(k) not in (None, "", 0)]
            rows += [[f"adapter {name}", path] for name, path in (eng.get("adapters") or {}).items()]
            return section("Engine", table(["", ""], rows))
    return ""


def comparison_html(summary: Mapping | None) -> str:
    """The session's runs side by side (``compare.session_comparison``): the best releasable run, a table of each
    run's hyperparameters, scores with intervals, G4/G5/benchmark values and verdict, a plot, and the A/B pairs
    (difference with its interval, wins/ties/losses, which run the evidence prefers); "" without runs."""
    if not summary or not (summary.get("runs") or summary.get("notes")):
        return ""
    from . import compare

    def ci(d: Mapping | None) -> str:
        d = d or {}
        if d.get("ci_low") is None:
            return fmt(d.get("value", d.get("difference")))
        return f"{fmt(d.get('value', d.get('difference')))} [{fmt(d['ci_low'])}, {fmt(d['ci_high'])}]"

    runs, names = summary.get("runs") or [], list(summary.get("metrics") or [])
    best = summary.get("best") or {}
    parts = [note(f"best releasable run: {best['run_name']} ({best.get('reason')})" if best.get("run_id") else
                  f"no best releasable run: {best.get('reason', 'no run was compared')}")]
    hyper = list(dict.fromkeys(k for r in runs for k in (r.get("hyperparameters") or {})))
    head = ["run", "verdict", *hyper, *names, "G4 vs base (difference)", "G5", "benchmarks"]
    rows = [[("★ " if r.get("run_id") == best.get("run_id") else "") + str(r.get("run_name")),
             str(r.get("verdict")).upper() + ("" if r.get("complete") else " (incomplete)"),
             *[(r.get("hyperparameters") or {}).get(k) for k in hyper],
             *[ci((r.get("scores") or {}).get(m)) for m in names],
             "; ".join(f"{m} {ci(d)}" for m, d in (r.get("g4") or {}).items()) or None, words(r.get("g5") or None),
             "; ".join(f"{t} {ci(d)}" for t, d in (r.get("benchmarks") or {}).items()) or None] for r in runs]
    if runs:
        parts.append(table(head, rows, "ftgate-runs"))
        svg = compare.plot_svg(summary)
        if svg:
            parts.append(f'<img class="ftgate-plot ftgate-runs-plot" alt="scores of the session\'s runs with intervals" '
                         f'src="data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()}"/>')
    pairs = [(k, c) for k, c in (summary.get("pairs") or {}).items() if c.get("role") == "candidate"]
    ab = [[next((r.get("run_name") for r in runs if r.get("run_id") == k), k), c["against"].get("run_name"),
           m["metric"], m["candidate_value"], m["reference_value"], ci(m), f"{m['wins']}/{m['ties']}/{m['losses']}",
           m["prefers"]] for k, c in pairs for m in c.get("metrics") or []]
    if pairs:
        level = f"{float(summary.get('confidence') or 0.95):.0%}"
        parts.append(f"<h4>A/B ({e(summary.get('mode'))}, {e(level)} paired bootstrap intervals of candidate − "
                     "reference)</h4>")
        parts.append(table(["candidate", "reference", "metric", "candidate", "reference", "difference [interval]",
                            "wins/ties/losses", "favours"], ab, "ftgate-ab") if ab else "")
        parts += [note(c.get("message", "")) for _, c in pairs]
    parts += [note(n) for n in summary.get("notes") or []]
    return section("Comparison of the session's runs", "".join(parts))


# -- one run, the whole session ------------------------------------------------------------------------------------
def findings_html(gates: list[dict]) -> str:
    """Any family's gates: each one's message, with its details folded (the view of a section without its own)."""
    return "".join(f'<h4>{e(gate_title(g))}: {e(gate_label(g))}</h4>{note(short(g.get("message", ""))[0])}'
                   + folded("evidence", details_html(g.get("details") or {})) for g in gates)


def _section_body(view: str, ev: RunEvidence, gates: list[dict]) -> str:
    if view == "training":
        return curves(ev.record) + "".join(folded(f"{gate_title(g)}: {gate_label(g)}", details_html(g["details"]))
                                           for g in gates if g.get("details"))
    if view == "comparisons":
        return quality_html(gates) or note("no quality gate recorded metrics")
    if view == "benchmarks":
        rows = benchmark_rows(gates)
        return rows_table(rows) if rows else note("no benchmark was run")
    if view == "audit":
        return audit_html(ev, gates)
    return findings_html(gates)


ALWAYS = ("training", "quality", "benchmarks", "audit", "data")  # shown (with a note) even when no gate ran


def sections_html(ev: RunEvidence, gates: list[dict]) -> str:
    """One section per gate family, in the order the families declare (``gates.sections``); a family added under
    ``gates/`` gets its section without a change here."""
    from . import gates as families

    parts = []
    for sec in families.sections():
        mine = [g for g in gates if category(g) == sec.key]
        if mine or sec.key in ALWAYS:
            parts.append(section(sec.title, _section_body(sec.view, ev, mine) or note(f"no {sec.key} gate ran")))
    return "".join(parts)


def run_html(ev: RunEvidence) -> str:
    gates = ev.verdict.get("gates", [])
    record = ev.record
    params = sorted((record.params if record else {}).items())
    tags = sorted((k, v) for k, v in (record.tags if record else {}).items() if not k.startswith("mlflow.log-model"))
    return "".join([
        f'<article class="ftgate-run-report" id="run-{e(ev.run_id)}">', banner(ev),
        "".join(note(n) for n in ev.notes),
        section("Gates", gate_table(gates)), engine_section(gates),
        sections_html(ev, gates), checklist_html(ev.checklist),
        section("Sample of generations", samples_table(gates)),
        section(f"Run parameters ({len(params)}) and tags ({len(tags)})",
                table(["param", "value"], params) + table(["tag", "value"], tags), open_=False),
        outcome_html(ev), "</article>",
    ])


def checklist_html(checklist: Mapping) -> str:
    """The seed 003 GDPR / AI Act checklist: each item, whether it is answered, by what (a gate, the registry or
    a field of ftgate.yaml), and whether production needs it; "" when the session built none."""
    if not checklist.get("items"):
        return ""
    required = set(checklist.get("required") or ())
    rows = [[i.get("group"), f"{i.get('title')} ({i.get('seed')})", "yes" if i.get("id") in required else "no",
             str(i.get("status", "")).upper(), i.get("answer"), ", ".join(i.get("evidence") or ()) or "–"]
            for i in checklist["items"]]
    missing = checklist.get("open_required") or []
    head = note(f"required for production and not answered: {', '.join(missing)}" if missing else
                "every item required for production is answered")
    return section(f"Compliance checklist (GDPR / AI Act): {len(missing)} required open", head + table(
        ["group", "item", "required", "status", "answer", "evidence"], rows, "ftgate-checklist"), open_=bool(missing))


def outcome_html(ev: RunEvidence) -> str:
    items = []
    if ev.attestation:
        a = ev.attestation
        how = f"signed, keyid {str(a.get('keyid'))[:16]}" if a.get("signed") else "unsigned"
        items.append(f"attestation {a.get('path')} ({how}), sha256 {a.get('sha256')}")
    if ev.promotion:
        p = ev.promotion
        items.append(f"registry: {p['name']} version {p['version']}, alias {p['alias']}" if p.get("version")
                     else f"registry: not promoted ({p.get('skipped')})")
    return "".join(note(i) for i in items)


def session_html(evidence: list[RunEvidence], meta: Mapping[str, Any]) -> str:
    """The compliance part of the report: the session line, an overview of the runs, then each run."""
    incomplete = meta.get("interrupted") or any(ev.verdict.get("incomplete") for ev in evidence)
    head = (f'<div class="ftgate-session{" ftgate-session-incomplete" if incomplete else ""}">'
            f'<h2>Release verdicts</h2><p>{e(len(evidence))} run(s) gated by pytest-ftgate {e(meta.get("version"))}'
            f' from {e(meta.get("started_at"))} to {e(meta.get("finished_at"))}; tracking store '
            f'<code>{e(meta.get("tracking_uri"))}</code>.</p>')
    if incomplete:
        head += ('<p class="ftgate-incomplete">INCOMPLETE: the session was interrupted or not every gate finished; '
                 "this report does not support a release decision.</p>")
    evidence = sorted(evidence, key=lambda ev: VERDICT_RANK.get(str(ev.verdict.get("verdict")), 0))
    overview = table(["run", "run id", "verdict", "failed gates"], [
        [ev.verdict.get("run_name"), ev.run_id, str(ev.verdict.get("verdict")).upper()
         + (" (incomplete)" if ev.verdict.get("incomplete") else ""),
         ", ".join(f"{g.get('id')} ({gate_label(g)})" for g in ordered(ev.verdict.get("gates", []))
                   if g.get("outcome") in ("failed", "error")) or "–"] for ev in evidence], "ftgate-overview")
    return (f'<style>{CSS}</style><section class="ftgate-report">{head}{decisions(evidence)}'
            f'{folded("all runs in one table", overview)}{comparison_html(meta.get("comparison"))}</div>'
            + "".join(run_html(ev) for ev in evidence)
            + "</section>")


def standalone_page(title: str, body: str) -> str:
    """A whole HTML document around ``body``, for sessions without pytest-html."""
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"/><title>{e(title)}</title></head>'
            f'<body><h1 id="title">{e(title)}</h1>{body}</body></html>')


CSS = """
.ftgate-report{color:#222;font-size:13px;margin:1em 0 2em}
.ftgate-banner{padding:10px 14px;margin:18px 0 8px;border-radius:4px;color:#fff;font-size:15px}
.ftgate-banner.ftgate-pass{background:#2e7d32}.ftgate-banner.ftgate-warn{background:#b26a00}
.ftgate-banner.ftgate-block{background:#c62828}.ftgate-verdict{font-weight:bold;font-size:20px;margin-right:8px}
.ftgate-banner code{color:#fff;opacity:.85}.ftgate-counts,.ftgate-error{font-size:12px;margin-top:4px}
.ftgate-incomplete{font-weight:bold;background:#000;color:#ff0;padding:2px 6px;border-radius:3px}
.ftgate-table{border-collapse:collapse;margin:6px 0;max-width:100%}
.ftgate-table td,.ftgate-table th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
.ftgate-table th{background:#f3f3f3}
.ftgate-table td{overflow-wrap:break-word}.ftgate-text{white-space:pre-wrap;max-width:420px;overflow-wrap:anywhere}
.ftgate-gates td:first-child,.ftgate-gates td:nth-child(2),.ftgate-gates td:nth-child(3),.ftgate-outcome,
.ftgate-report code,.ftgate-overview td{white-space:nowrap}.ftgate-hashes td{overflow-wrap:anywhere}
.ftgate-gates tr.ftgate-fail,.ftgate-gates tr.ftgate-error{background:#fdecea}
.ftgate-gates tr.ftgate-warn{background:#fff4e0}
.ftgate-banner.ftgate-partial{background:#546e7a}
.ftgate-decisions{margin:8px 0 14px}.ftgate-decision{border-left:6px solid #999;padding:6px 10px;margin:6px 0;
background:#fafafa;font-size:14px}.ftgate-decision ul{margin:4px 0 0 0;padding-left:20px;font-size:13px}
.ftgate-decision .ftgate-verdict{font-size:15px}.ftgate-decision.ftgate-block{border-color:#c62828;background:#fdecea}
.ftgate-decision.ftgate-block>.ftgate-verdict,.ftgate-decision li.ftgate-fail .ftgate-outcome,
.ftgate-decision li.ftgate-error .ftgate-outcome{color:#c62828}
.ftgate-decision.ftgate-warn{border-color:#b26a00;background:#fff4e0}.ftgate-decision.ftgate-warn>.ftgate-verdict,
.ftgate-decision li.ftgate-warn .ftgate-outcome{color:#b26a00}
.ftgate-decision.ftgate-pass{border-color:#2e7d32;background:#edf7ee}.ftgate-decision.ftgate-pass>.ftgate-verdict{color:#2e7d32}
.ftgate-decision.ftgate-partial{border-color:#546e7a;background:#eceff1}
.ftgate-decision.ftgate-partial>.ftgate-verdict{color:#37474f}
.ftgate-fold>summary{cursor:pointer;color:#1565c0;font-size:12px}
body{display:flex;flex-direction:column}body>*{flex:none}
#environment-header,#environment{order:99}#environment{align-self:flex-start}
.ftgate-gates .ftgate-fail .ftgate-outcome,.ftgate-gates .ftgate-error .ftgate-outcome{color:#c62828;font-weight:bold}
.ftgate-gates .ftgate-warn .ftgate-outcome{color:#b26a00;font-weight:bold}
.ftgate-gates .ftgate-pass .ftgate-outcome{color:#2e7d32}.ftgate-msg{max-width:560px;overflow-wrap:anywhere}
.ftgate-section{margin:4px 0 4px 8px}.ftgate-section>summary{font-weight:bold;cursor:pointer;font-size:14px}
.ftgate-note{color:#555;margin:3px 0}.ftgate-dl dt{font-weight:bold}.ftgate-dl dd{margin:0 0 4px 16px}
.ftgate-plot{max-width:640px;border:1px solid #eee}.ftgate-row{display:flex;gap:18px;flex-wrap:wrap}
.col-result.ftgate-soft{font-size:0}.col-result.ftgate-soft::before{font-size:12px;font-weight:bold}
.col-result.ftgate-soft-warn::before{content:"Warn";color:#b26a00}
.col-result.ftgate-soft-info::before{content:"Info";color:#0277bd}
span.warn{color:#b26a00}span.info{color:#0277bd}
"""


# -- pytest-html's own table ----------------------------------------------------------------------------------------
HTML_COLUMNS = ['<th class="sortable" data-column-type="ftgateRun">Run</th>',
                '<th class="sortable" data-column-type="ftgateGate">Gate</th>', "<th>Severity</th>",
                "<th>Value</th>", "<th>Threshold</th>"]


def html_row(cells: list[str], test_id: str, record: Any, run_name: str, soft: str | None) -> list[str]:
    """pytest-html's row with the test id escaped (pytest-html inserts it raw), the gate's columns added, and a
    failed warn/info gate labelled WARN/INFO (kept "Passed" underneath: pytest-html's filters know no other)."""
    g = record.__dict__ if record is not None and hasattr(record, "__dict__") else dict(record or {})
    result = cells[0] if not soft else f'<td class="col-result ftgate-soft ftgate-soft-{e(soft)}">Passed</td>'
    gate = gate_title(g)
    return [result, f'<td class="col-testId">{e(test_id)}</td>', f'<td class="col-ftgateRun">{e(run_name)}</td>',
            f'<td class="col-ftgateGate">{e(gate)}</td>', f"<td>{e(g.get('severity'))}</td>",
            f"<td>{e(g.get('value'))}</td>", f"<td>{e(g.get('threshold'))}</td>", *cells[2:]]


def adapt_html_report(data: Any, render_collapsed: str, redactor: Redactor) -> None:
    """pytest-html's ReportData for a gating session: title, WARN/INFO outcomes next to Passed, rows expanded
    unless ``render_collapsed`` was changed from its default, environment values escaped and redacted."""
    data.title = "pytest-ftgate release report"
    labels = {"warn": "Warn", "info": "Info"}
    outcomes = data.outcomes
    outcomes.setdefault("warn", {"label": "Warn", "value": 0})
    order = [k for k in outcomes if k not in labels]
    order[order.index("passed") + 1:order.index("passed") + 1] = [k for k in labels if k in outcomes]
    reordered = {k: outcomes[k] for k in order}
    for k in labels:
        if k in reordered:
            reordered[k]["label"] = labels[k]
    outcomes.clear()
    outcomes.update(reordered)
    if render_collapsed == "passed":  # pytest-html's default collapses passed rows
        data.set_data("renderCollapsed", [])
    env = data.data.get("environment") or {}

    def clean(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {e(redactor.text(str(k))): clean(x) for k, x in v.items()}
        return e(redactor.text(str(v)))

    data.set_data("environment", {k: (REDACTED if is_secret_key(str(k)) else clean(v)) for k, v in env.items()})


# -- report.json and summary.md ------------------------------------------------------------------------------------
def record_dict(record: RunRecord | None) -> dict | None:
    if record is None:
        return None
    return {"run_name": record.run_name, "experiment_id": record.experiment_id, "status": record.status,
            "duration_s": record.duration_s, "params": record.params, "tags": record.tags,
            "history": {k: list(pts) for k, pts in record.history.items()}}  # (step, value) pairs: JSON arrays


def session_json(evidence: list[RunEvidence], meta: Mapping[str, Any]) -> dict:
    """The whole session, machine-readable (redacted like the HTML)."""
    counts: dict[str, int] = {}
    for ev in evidence:
        counts[ev.verdict.get("verdict", "block")] = counts.get(ev.verdict.get("verdict", "block"), 0) + 1
    return {"schema_version": 1, "tool": {"name": "pytest-ftgate", "version": meta.get("version")},
            "session": {k: v for k, v in meta.items() if k != "comparison"}, "counts": counts,
            "comparison": meta.get("comparison") or {}, "runs": [{
                **ev.verdict, "run": record_dict(ev.record), "audit_record": ev.audit,
                "adapter_files": ev.adapter_files, "attestation": ev.attestation, "promotion": ev.promotion,
                "checklist": ev.checklist, "notes": ev.notes} for ev in evidence]}


def session_json_text(evidence: list[RunEvidence], meta: Mapping[str, Any]) -> str:
    """``report.json``'s text: the session indented, each run's metric histories on one line. json's indenting
    encoder is pure Python (seconds for fifty 1,000-step histories); the histories, nearly all of the bytes, go
    through its C encoder and are put in place of a random token that nothing else in the document can hold."""
    doc = session_json(evidence, meta)
    nonce, compact = secrets.token_hex(16), []
    for run in doc["runs"]:
        if run.get("run") and run["run"].get("history"):
            compact.append(json.dumps(run["run"]["history"], default=str, ensure_ascii=False))
            run["run"]["history"] = f"ftgate-history-{nonce}-{len(compact) - 1}"
    text = json.dumps(doc, indent=1, default=str, ensure_ascii=False)
    return re.sub(  # one pass over the text puts every history in place (linear in the runs)
        f'"ftgate-history-{nonce}-([0-9]+)"', lambda m: compact[int(m[1])], text)


def _md(x: Any) -> str:
    return html.escape(fmt(x), quote=False).replace("|", "\\|").replace("`", "'").replace("\n", " ")


def summary_md(evidence: list[RunEvidence], meta: Mapping[str, Any]) -> str:
    """A short Markdown summary for a CI job summary: one line per run and its failed gates."""
    lines = ["## pytest-ftgate release verdicts", ""]
    if meta.get("interrupted") or any(ev.verdict.get("incomplete") for ev in evidence):
        lines += ["**INCOMPLETE**: the session was interrupted or not every gate finished.", ""]
    lines += ["| run | run id | verdict | failed gates |", "|---|---|---|---|"]
    for ev in evidence:
        v = ev.verdict
        failed = ", ".join(f"{_md(g.get('id'))} {gate_label(g)}" for g in v.get("gates", [])
                           if g.get("outcome") in ("failed", "error")) or "–"
        label = str(v.get("verdict")).upper() + (" (incomplete)" if v.get("incomplete") else "")
        lines.append(f"| {_md(v.get('run_name'))} | `{_md(ev.run_id)}` | **{label}** | {failed} |")
    lines.append("")
    for ev in evidence:
        for g in ev.verdict.get("gates", []):
            if g.get("outcome") in ("failed", "error"):
                lines.append(f"- {_md(ev.verdict.get('run_name'))} {_md(g.get('id'))} ({gate_label(g)}): "
                             f"{_md(g.get('message'))}")
        if ev.promotion.get("version"):
            p = ev.promotion
            lines.append(f"- {_md(ev.verdict.get('run_name'))}: registered as {_md(p['name'])} version "
                         f"{_md(p['version'])}, alias `{_md(p['alias'])}`")
    lines += ["", f"Report: `{_md(meta.get('report'))}` (sha256 `{_md(meta.get('report_sha256'))}`)", ""]
    return "\n".join(lines)
