"""Comparisons between the runs of one session, pure: the A/B comparison of each candidate with a reference run on
the same test set and prompts (a paired bootstrap interval of each metric's difference, per-sample wins, ties and
losses, and which run the evidence prefers), and the table of the session's runs (hyperparameters, key metrics with
intervals, verdict) that names the best releasable run, with its plot.

The reference is ``--ftgate-compare RUN_B`` when given; without it, the runs that share a test set, prompts and base
model are each compared with the best of them. The ``predictions`` fixture keeps each run's scored answers in the
session (``RunAnswers``, plain data: it crosses pytest-xdist's worker boundary); ``publish.py`` calls
``session_comparison`` when the session ends; ``report.py`` lays the result out. No pytest, no engine, no MLflow,
no HTML.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence


from . import metrics
from .record import AuditRecord, training_config
from .verdict import releasable

# name in the runs table -> MLflow params LLaMA-Factory logs (ours first), then keys of the run's training config
HYPERPARAMETERS = {
    "learning_rate": (("learning_rate", "llamafactory.learning_rate"), ("learning_rate",)),
    "lora_rank": (("llamafactory.lora_rank", "lora_rank"), ("lora_rank",)),
    "lora_alpha": (("llamafactory.lora_alpha", "lora_alpha"), ("lora_alpha",)),
    "epochs": (("num_train_epochs", "llamafactory.num_train_epochs"), ("num_train_epochs",)),
    "max_steps": (("max_steps", "llamafactory.max_steps"), ("max_steps",)),
    "dataset_sha256": (("ftgate.dataset_sha256",), ()),
}
FIX_BASE = ("compare runs fine-tuned from one base model: gate this run without --ftgate-compare, or name a "
            "reference run of its base model")
FIX_TEST = ("score both on one file with --ftgate-test-set PATH, or name a reference run recorded with the same "
            "test set")


# -- what a run's answers leave for the comparisons -----------------------------------------------------------------
@dataclass(frozen=True)
class RunAnswers:
    """One run's scored answers to its test set, with what makes two runs comparable sample by sample."""

    run_key: str
    test_set: str  # the file's path
    test_set_sha256: str
    prompts_sha256: str  # the prompts as sent (template, chat template) and the generation settings
    base_sha256: str  # the base model's weights (``serve.cache.weights_digest``)
    scores: metrics.Scores

    def to_dict(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "scores"},
                "scores": self.scores.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping) -> "RunAnswers":
        return cls(**{**dict(d), "scores": metrics.Scores.from_dict(d["scores"])})


def snapshot(run_key: str, answers: Any, scorer: Any) -> RunAnswers:
    """The comparisons' part of a run's ``predict.Answers`` and the ``predict.Scorer`` that made them."""
    from . import hashing

    prompts = [{"messages": p.messages, "chat_template": p.chat_template, "raw": p.raw} for p in scorer.prompts]
    return RunAnswers(run_key, str(scorer.test_set.path), str(scorer.test_set.sha256),
                      hashing.digest_json({"prompts": prompts, "params": dataclasses.asdict(scorer.params)}),
                      str(answers.info.get("base_sha256") or ""), answers.scores)


# -- before any gate runs: a reference on another base model or test set is bad input -------------------------------
def identity(record: Any, params: Mapping | None) -> dict:
    """What a run must share with the reference, from its audit record (``params`` fill in the base model):
    {"base_model": hash or "", "test_set": sha256 or ""}; "" = not recorded (checked later on the answers)."""
    view = AuditRecord.of(record)
    base = view.base_model_hash or (params or {}).get("ftgate.base_model_sha256") or ""
    return {"base_model": str(base), "test_set": str((view.test_dataset or {}).get("sha256") or "")}


def mismatches(reference: str, ref_identity: Mapping, runs: Sequence[tuple[str, Mapping]],
               explicit_test_set: bool) -> list[str]:
    """One line per run (``(name, identity)``) that cannot be compared with ``reference``: another base model, or
    another recorded test set (not checked when ``--ftgate-test-set`` scores every run on one file)."""
    bad = []
    for name, ident in runs:
        for key, what, fix in (("base_model", "base model", FIX_BASE), ("test_set", "test set", FIX_TEST)):
            if key == "test_set" and explicit_test_set:
                continue
            mine, theirs = ident.get(key), ref_identity.get(key)
            if mine and theirs and mine != theirs:
                bad.append(f"--ftgate-compare {reference!r}: run {name!r} has another {what} ({_short(mine)}) than "
                           f"{reference!r} ({_short(theirs)}); {fix}")
    return bad


def _short(digest: str) -> str:
    return digest if len(digest) <= 23 else digest[:23] + "…"


# -- one pair -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """How pairs are compared: the metrics (with per-sample scores), the bootstrap, the tie margin."""

    metrics: tuple[str, ...]
    primary: str
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    tie_margin: float = 0.0
    params: tuple[str, ...] = ()

    @classmethod
    def of(cls, cfg: Any) -> "Settings":
        """From ``ftgate.yaml``: ``compare.*``, defaulting to G4's metrics and bootstrap (``quality.*``)."""
        q, c = cfg.quality, cfg.compare
        names = tuple(m for m in (c.metrics or q.baseline_metrics) if m in metrics.BUILTIN) or ("f1",)
        primary = c.primary_metric or names[0]
        names += () if primary in names else (primary,)
        return cls(names, primary, q.bootstrap_samples, q.confidence, q.seed, c.tie_margin, tuple(c.params))


def comparable(a: RunAnswers, b: RunAnswers) -> str:
    """"" when ``a`` and ``b`` answered the same prompts of the same test set from one base model, else why not."""
    if a.test_set_sha256 != b.test_set_sha256:
        return f"another test set ({a.test_set} vs {b.test_set}); {FIX_TEST}"
    if a.base_sha256 != b.base_sha256:
        return f"another base model ({_short(a.base_sha256)} vs {_short(b.base_sha256)}); {FIX_BASE}"
    if a.prompts_sha256 != b.prompts_sha256 or a.scores.n != b.scores.n:
        return ("other prompts on the same test set (another template, max_samples or generation settings); "
                "gate both with one ftgate.yaml and one LLaMA-Factory template")
    return ""


def metric_row(a: metrics.Scores, b: metrics.Scores, metric: str, s: Settings) -> dict:
    """``a - b`` on one metric: the paired bootstrap interval, wins/ties/losses per sample, which side it favours
    (``a`` or ``b`` when the interval excludes 0, else ``neither``)."""
    ci = metrics.paired_bootstrap(a, b, metric, s.resamples, s.confidence, s.seed)
    d = a.per_sample[metric] - b.per_sample[metric]
    wins, losses = int((d > s.tie_margin).sum()), int((d < -s.tie_margin).sum())
    favours = "a" if ci.low > 0 else "b" if ci.high < 0 else "neither"
    return {"metric": metric, "candidate_value": a.value(metric), "reference_value": b.value(metric),
            "difference": ci.difference, "ci_low": _num(ci.low), "ci_high": _num(ci.high),
            "confidence": ci.confidence, "wins": wins, "ties": len(d) - wins - losses, "losses": losses,
            "prefers": {"a": "candidate", "b": "reference"}.get(favours, "neither")}


def pair(a: RunAnswers, b: RunAnswers, names: Mapping[str, str], s: Settings, mode: str) -> dict:
    """The comparison of candidate ``a`` with reference ``b`` as it goes into ``a``'s verdict."""
    against = {"run_id": b.run_key, "run_name": names.get(b.run_key, b.run_key)}
    out = {"mode": mode, "role": "candidate", "against": against, "n": a.scores.n,
           "test_set_sha256": a.test_set_sha256}
    problem = comparable(a, b)
    if problem:
        return {**out, "prefers": "not comparable", "preferred": None, "metrics": [],
                "message": f"not compared with {against['run_name']}: {problem}"}
    rows = [metric_row(a.scores, b.scores, m, s) for m in s.metrics]
    sides = {r["prefers"] for r in rows} - {"neither"}
    prefers = sides.pop() if len(sides) == 1 else "mixed" if sides else "neither"
    preferred = {"candidate": {"run_id": a.run_key, "run_name": names.get(a.run_key, a.run_key)},
                 "reference": against}.get(prefers)
    return {**out, "prefers": prefers, "preferred": preferred, "metrics": rows,
            "message": pair_message(names.get(a.run_key, a.run_key), against["run_name"], a.scores.n, prefers, rows)}


def pair_message(a: str, b: str, n: int, prefers: str, rows: Sequence[Mapping]) -> str:
    says = {"candidate": f"the evidence prefers {a}", "reference": f"the evidence prefers {b}",
            "mixed": "the evidence is mixed (the metrics disagree)",
            "neither": "no difference the evidence can tell (every interval includes 0)"}[prefers]
    parts = [f"{r['metric']} {r['difference']:+.3f} [{_f(r['ci_low'])}, {_f(r['ci_high'])}], "
             f"w/t/l {r['wins']}/{r['ties']}/{r['losses']}" for r in rows]
    return f"{a} vs {b} on {n} test samples: {says} ({'; '.join(parts)})"


def _f(x: Any) -> str:
    return "–" if x is None else f"{x:+.3f}"


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


# -- the session's runs ---------------------------------------------------------------------------------------------
def interval(scores: metrics.Scores, metric: str, s: Settings) -> dict:
    """A run's own score with its percentile bootstrap interval (the test items resampled, as G4 resamples them)."""
    value, low, high = metrics.bootstrap_interval(scores, metric, s.resamples, s.confidence, s.seed)
    if math.isnan(low):
        return {"value": value, "ci_low": None, "ci_high": None}
    return {"value": value, "ci_low": low, "ci_high": high}


def hyperparameters(params: Mapping | None, audit: Any, extra: Sequence[str] = ()) -> dict:
    """learning rate, LoRA rank and alpha, epochs, max steps and the dataset hash: from the MLflow params, else the
    training config of the audit record; ``extra`` names more params. None where neither has it."""
    params = params or {}
    config: dict | None = None
    out: dict = {}
    for name, (keys, config_keys) in HYPERPARAMETERS.items():
        value = next((params[k] for k in keys if params.get(k) not in (None, "", "None")), None)
        if value is None and config_keys:
            config = training_config(audit) if config is None else config
            value = next((config[k] for k in config_keys if config.get(k) is not None), None)
        out[name] = None if name == "max_steps" and str(value) == "-1" else _number(value)
    if out["dataset_sha256"] is None:
        out["dataset_sha256"] = AuditRecord.of(audit).train_sha256 or None
    return {**out, **{k: _number(params.get(k)) for k in extra}}


def _number(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return int(v) if v.lstrip("-").isdigit() else float(v)
        except ValueError:
            return v
    return v


def gate_metrics(gates: Sequence[Mapping]) -> dict:
    """The key metrics a run's verdict holds: G4's difference to its base model (with interval) per metric, G5's
    values, and each benchmark's score with a normal interval from lm-eval's stderr."""
    out: dict = {"g4": {}, "g5": {}, "benchmarks": {}}
    for g in gates:
        gid, details = str(g.get("id") or ""), g.get("details") or {}
        if gid == "G4":
            out["g4"] = {r["metric"]: {k: r.get(k) for k in ("candidate_value", "baseline_value", "difference",
                                                              "ci_low", "ci_high")}
                         for r in details.get("comparisons") or [] if r.get("baseline") == "base"}
        elif gid == "G5" and isinstance(g.get("value"), Mapping):
            out["g5"] = dict(g["value"])
        elif gid.startswith("bench:") and "candidate" in details:
            se = details.get("candidate_stderr")
            value = details["candidate"]
            out["benchmarks"][gid.removeprefix("bench:")] = {
                "metric": details.get("metric"), "value": value, "stderr": se,
                "ci_low": None if se is None else value - 1.96 * se, "ci_high": None if se is None else value + 1.96 * se}
    return out


def run_row(key: str, verdict: Mapping, params: Mapping | None, audit: Any, answers: RunAnswers | None,
            s: Settings) -> dict:
    """One run of the session's table: verdict, hyperparameters, its scores with intervals, its gates' metrics."""
    found = gate_metrics(verdict.get("gates") or [])
    scores = {m: interval(answers.scores, m, s) for m in s.metrics} if answers is not None else {}
    primary = (scores.get(s.primary) or {}).get("value")
    if primary is None:
        primary = (found["g4"].get(s.primary) or {}).get("candidate_value")
    return {"run_id": key, "run_name": verdict.get("run_name"), "verdict": verdict.get("verdict"),
            "complete": bool(verdict.get("complete")),
            "releasable": releasable(verdict),
            "hyperparameters": hyperparameters(params, audit, s.params), "scores": scores, "primary": primary,
            **found}


def best_releasable(rows: Sequence[Mapping], primary: str) -> dict:
    """The complete pass/warn run with the highest primary metric, or why there is none."""
    releasable = [r for r in rows if r["releasable"]]
    scored = [r for r in releasable if isinstance(r.get("primary"), (int, float))]
    if scored:
        best = max(scored, key=lambda r: r["primary"])
        return {"run_id": best["run_id"], "run_name": best["run_name"], "metric": primary, "value": best["primary"],
                "reason": f"complete, {best['verdict']}, highest {primary} ({best['primary']:.4g}) of "
                          f"{len(scored)} releasable run(s)"}
    why = ("no run is releasable (complete, pass or warn)" if not releasable else
           f"no releasable run has a {primary} score (its quality gates did not run)")
    return {"run_id": None, "run_name": None, "metric": primary, "value": None, "reason": why}


# -- the whole session ----------------------------------------------------------------------------------------------
def session_comparison(verdicts: Mapping[str, Mapping], inputs: Mapping[str, tuple], answers: Mapping[str, RunAnswers],
                       s: Settings, reference: str = "") -> dict:
    """Everything the report and ``report.json`` show: ``runs`` (one row per run), ``best`` (the best releasable
    run), ``pairs`` (run key -> the ``comparison`` of its verdict) and ``notes``. ``verdicts``: run key ->
    ``Verdict.to_dict()``; ``inputs``: run key -> (MLflow params, audit record); ``reference``: the run key of
    ``--ftgate-compare`` ("" = each group of comparable runs against its best)."""
    names = {k: str(v.get("run_name") or k) for k, v in verdicts.items()}
    rows = [run_row(k, v, *inputs.get(k, (None, None)), answers.get(k), s) for k, v in verdicts.items()]
    found = {k: a for k, a in answers.items() if k in verdicts}
    if reference:
        pairs, notes = reference_pairs(found, names, reference, s)
    else:
        rank = {r["run_id"]: (r["releasable"], r["primary"] if isinstance(r["primary"], (int, float)) else -math.inf)
                for r in rows}
        pairs, notes = group_pairs(found, names, lambda k: rank[k], s)
    missing = [names[k] for k in verdicts if k not in found]
    if missing and len(verdicts) > 1:
        notes.append(f"no scored answers for {', '.join(missing)} (their quality gates did not run or errored): "
                     "left out of the comparisons")
    return {"mode": "--ftgate-compare" if reference else "session", "reference": reference or None,
            "metrics": list(s.metrics), "primary_metric": s.primary, "confidence": s.confidence, "runs": rows,
            "best": best_releasable(rows, s.primary), "pairs": pairs, "notes": notes}


def reference_pairs(answers: Mapping[str, RunAnswers], names: Mapping[str, str], reference: str,
                    s: Settings) -> tuple[dict, list[str]]:
    """Every candidate of the session against the ``--ftgate-compare`` run."""
    mode = "--ftgate-compare"
    against = {"run_id": reference, "run_name": names.get(reference, reference)}
    others = [k for k in names if k != reference]
    ref = answers.get(reference)
    if ref is None:
        note = (f"--ftgate-compare {against['run_name']}: the reference run has no scored answers (its quality gates "
                "did not run or errored): nothing was compared")
        return {k: _not_compared(mode, against, note) for k in others}, [note]
    pairs = {k: pair(answers[k], ref, names, s, mode) if k in answers else _not_compared(
        mode, against, f"{names[k]} has no scored answers (its quality gates did not run or errored)")
        for k in others}
    pairs[reference] = {"mode": mode, "role": "reference", "compared_with": [names[k] for k in others]}
    return pairs, [] if others else [f"--ftgate-compare {against['run_name']}: no other run in the session"]


def group_pairs(answers: Mapping[str, RunAnswers], names: Mapping[str, str], rank: Callable[[str], tuple],
                s: Settings) -> tuple[dict, list[str]]:
    """Runs on one test set, prompts and base model, each compared with the best of them (``rank``: highest
    first); a run alone in its group is compared with nothing."""
    groups: dict[tuple, list[str]] = {}
    for key, a in answers.items():
        groups.setdefault((a.test_set_sha256, a.prompts_sha256, a.base_sha256), []).append(key)
    pairs, notes = {}, []
    for keys in groups.values():
        if len(keys) < 2:
            continue
        best = max(keys, key=rank)
        others = [k for k in keys if k != best]
        for k in others:
            pairs[k] = pair(answers[k], answers[best], names, s, "session")
        pairs[best] = {"mode": "session", "role": "reference", "compared_with": [names[k] for k in others]}
    if len(answers) > 1 and len(groups) > 1:
        notes.append(f"the runs fall into {len(groups)} groups of one test set, prompts and base model: runs of "
                     "different groups are not compared")
    return pairs, notes


def _not_compared(mode: str, against: Mapping, why: str) -> dict:
    return {"mode": mode, "role": "candidate", "against": dict(against), "prefers": "not compared",
            "preferred": None, "metrics": [], "message": why}


# -- the plot -------------------------------------------------------------------------------------------------------
VERDICT_COLOURS = {"pass": "#2e7d32", "warn": "#b26a00", "block": "#c62828", "partial": "#546e7a"}


METRIC_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def plot_svg(summary: Mapping) -> str | None:
    """Each run's scores with their intervals, one marker per metric, run names coloured by verdict and the best
    releasable run starred; None when no run has scores. A small SVG drawn here (no plotting library imported)."""
    from html import escape

    rows = [r for r in summary.get("runs") or [] if r.get("scores")]
    names = list(summary.get("metrics") or [])
    if not rows or not names:
        return None
    cells = [(i, j, r["scores"][m]) for i, r in enumerate(rows) for j, m in enumerate(names) if r["scores"].get(m)]
    ys = [v for _, _, c in cells for v in (c["value"], c.get("ci_low"), c.get("ci_high")) if v is not None]
    lo, hi = min(ys), max(ys)
    lo, hi = (lo - 0.05, hi + 0.05) if hi - lo < 1e-9 else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    left, top, slot, h = 56, 12, 120, 190
    width = left + slot * len(rows) + 110
    y = lambda v: top + (1 - (v - lo) / (hi - lo)) * h  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {h + 60}" width="{width}" '
           f'height="{h + 60}" font-family="sans-serif" font-size="11">',
           f'<rect x="{left}" y="{top}" width="{slot * len(rows)}" height="{h}" fill="white" stroke="#999"/>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        out.append(f'<line x1="{left}" x2="{left + slot * len(rows)}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'stroke="#eee"/><text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    for i, j, c in cells:
        x, colour = left + slot * i + slot * (j + 1) / (len(names) + 1), METRIC_COLOURS[j % len(METRIC_COLOURS)]
        if c.get("ci_low") is not None and c.get("ci_high") is not None:
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y(c["ci_low"]):.1f}" y2="{y(c["ci_high"]):.1f}" '
                       f'stroke="{colour}"/>')
        out.append(f'<circle cx="{x:.1f}" cy="{y(c["value"]):.1f}" r="3.5" fill="{colour}"/>')
    best = (summary.get("best") or {}).get("run_id")
    for i, r in enumerate(rows):
        colour = VERDICT_COLOURS.get(str(r["verdict"]), "#222")
        label = ("★ " if r["run_id"] == best else "") + str(r["run_name"])
        out.append(f'<text x="{left + slot * (i + 0.5):.1f}" y="{top + h + 16}" text-anchor="middle" '
                   f'fill="{colour}">{escape(label[:22])}</text><text x="{left + slot * (i + 0.5):.1f}" '
                   f'y="{top + h + 30}" text-anchor="middle" fill="{colour}">{escape(str(r["verdict"]).upper())}</text>')
    for j, m in enumerate(names):
        colour = METRIC_COLOURS[j % len(METRIC_COLOURS)]
        out.append(f'<circle cx="{width - 96}" cy="{top + 10 + 14 * j}" r="3.5" fill="{colour}"/>'
                   f'<text x="{width - 88}" y="{top + 14 + 14 * j}">{escape(m)}</text>')
    out.append(f'<text x="12" y="{top + h / 2}" transform="rotate(-90 12 {top + h / 2})" text-anchor="middle">'
               f'score, {summary.get("confidence", 0.95):.0%} interval</text>')
    return "".join(out) + "</svg>"
