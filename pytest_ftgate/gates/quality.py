"""The quality gates on the served adapter's answers to the held-out test set, pure: G4 baseline (non-inferiority
against the base model and the registry's production version, by a paired bootstrap interval), G5 task quality,
``adapter_applied`` and ``determinism``. Answers and scores come from ``predict.py`` (``Answers``); metrics from
``metrics.py``. No pytest, no engine.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from .. import metrics
from ..config import Quality
from . import Check, family

if TYPE_CHECKING:
    from ..predict import Answers

gate = family("quality", "Metrics against the baseline (confidence intervals)", 20, view="comparisons")


def _f(x: float) -> str:
    return "NaN" if isinstance(x, float) and math.isnan(x) else f"{x:.4g}"


G4_LABEL = "worst candidate/baseline ratio (1.0 = equal)"
G5_LABEL = "task metrics (0-1)"
APPLIED_LABEL = "share of answers that differ from the base model's (0-1)"
DETERMINISM_LABEL = "answers changed on a second greedy pass (changed/rerun)"


@gate("G5")
def task_quality(candidate: Answers, thresholds: dict[str, float], task: str, table: list[dict]) -> Check:
    """G5: every task metric above its threshold (seed 002: QA EM/F1 > 0.8, summarization ROUGE-1/L > 0.3,
    translation BLEU > 0.3)."""
    shown = {m: f"> {t:g}" for m, t in thresholds.items()}
    values, problems = {}, []
    for metric, minimum in thresholds.items():
        try:
            values[metric] = round(candidate.scores.value(metric), 4)
        except KeyError as exc:
            return Check(False, None, shown, f"G5 threshold on {exc.args[0]}", {"samples": table},
                         label=G5_LABEL)
        if not values[metric] > minimum:
            problems.append(f"{metric} {_f(values[metric])} is not above {minimum:g}")
    details = {"task": task, "n": candidate.scores.n, "all_metrics": dict(candidate.scores.aggregate),
               "extra_metrics": dict(candidate.scores.extra), "samples": table,
               "test_set_problems": list(candidate.problems)}
    n = candidate.scores.n
    if problems:
        return Check(False, values, shown, f"{task} on {n} test samples: " + "; ".join(problems)
                     + _warnings(candidate), details, label=G5_LABEL)
    return Check(True, values, shown, f"{task} on {n} test samples: " + ", ".join(
        f"{m} {_f(v)} > {thresholds[m]:g}" for m, v in values.items()) + _warnings(candidate), details,
        label=G5_LABEL)


def compare(candidate: Answers, base: Answers, metric: str, q: Quality) -> dict:
    """One G4 comparison as a non-inferiority test: values, ratio, the paired bootstrap CI of the difference, and
    the decision — ``worse`` when the whole interval lies below the allowed drop (``1 - min_baseline_ratio`` of the
    baseline), ``not_worse`` when none of it does, ``inconclusive`` (with the samples that would decide) otherwise."""
    cv, bv = candidate.scores.value(metric), base.scores.value(metric)
    ratio = cv / bv if bv > 0 else (math.inf if cv > 0 else 1.0)
    margin = (1 - q.min_baseline_ratio) * abs(bv)
    row = {"metric": metric, "baseline": base.label, "candidate_value": cv, "baseline_value": bv,
           "ratio": ratio, "meets_ratio": cv >= q.min_baseline_ratio * bv, "allowed_drop": margin}
    ci = None
    if metric in candidate.scores.per_sample:
        ci = metrics.paired_bootstrap(candidate.scores, base.scores, metric, q.bootstrap_samples, q.confidence, q.seed)
        row.update(difference=ci.difference, ci_low=ci.low, ci_high=ci.high, confidence=ci.confidence,
                   p_worse=ci.p_worse)
    else:  # an evaluate module gives no per-sample scores to resample: the point estimate decides
        row.update(difference=cv - bv, ci_low=None, ci_high=None)
    if ci is None or math.isnan(ci.low):
        row["decision"] = "not_worse" if row["meets_ratio"] else "worse"
    elif ci.high < -margin:
        row["decision"] = "worse"
    elif ci.low >= -margin:
        row["decision"] = "not_worse"
    else:
        row["decision"] = "inconclusive"
        row["samples_to_decide"] = samples_to_decide(candidate.scores.n, ci.difference, ci.low, ci.high, margin)
    row["regression"] = row["decision"] == "worse"
    return row


def samples_to_decide(n: int, difference: float, low: float, high: float, margin: float) -> int | None:
    """How many test samples would make the interval exclude the allowed drop, if the difference stays where it is
    (the interval's half-width shrinks as 1/sqrt(n)); None when the difference sits on the margin itself."""
    distance = abs(difference + margin)
    half = (high - low) / 2
    if distance <= 1e-12 or half <= 0:
        return None
    return max(n + 1, math.ceil(n * (half / distance) ** 2))


@gate("G4")
def baseline_gate(candidate: Answers, baselines: Sequence[Answers], q: Quality, notes: Sequence[str] = (),
                  table: list[dict] | None = None) -> Check:
    """G4: on each configured metric the candidate is not worse than ``min_baseline_ratio`` of each baseline (the
    base model on the same prompts, and the registry's ``production`` version when there is one), decided by the
    paired bootstrap interval. Fails with ``details["inconclusive"]`` when the interval cannot tell: the suite then
    reports it at ``quality.inconclusive_severity``."""
    threshold = f">= {q.min_baseline_ratio:.0%} of each baseline on {', '.join(q.baseline_metrics)}"
    if not baselines:
        return Check(False, None, threshold, "no baseline answers to compare with", {"notes": list(notes)},
                     label=G4_LABEL)
    try:
        rows = [compare(candidate, b, m, q) for b in baselines for m in q.baseline_metrics]
    except KeyError as exc:
        return Check(False, None, threshold, f"G4 compares {exc.args[0]}", {"notes": list(notes)}, label=G4_LABEL)
    worst = min(rows, key=lambda r: r["ratio"])
    details = {"comparisons": rows, "notes": list(notes), "n": candidate.scores.n, "samples": table or [],
               "answers": {a.label: a.info for a in (candidate, *baselines)},
               "test_set_problems": list(candidate.problems)}
    value = round(worst["ratio"], 4)
    bad = [r for r in rows if r["decision"] == "worse"]
    if bad:
        return Check(False, value, threshold,
                     "regression: " + "; ".join(_comparison_line(r) for r in bad) + _notes(notes)
                     + _warnings(candidate), details, label=G4_LABEL)
    unsure = [r for r in rows if r["decision"] == "inconclusive"]
    if unsure:
        need = [r["samples_to_decide"] for r in unsure if r.get("samples_to_decide")]
        more = (f"about {max(need)} test samples would decide" if need else
                "the difference sits on the allowed drop: more samples will not decide it")
        return Check(False, value, threshold,
                     f"inconclusive on {candidate.scores.n} test samples: " + "; ".join(
                         _comparison_line(r) for r in unsure) + f" — {more}" + _notes(notes)
                     + _warnings(candidate), {**details, "inconclusive": True}, label=G4_LABEL)
    return Check(True, value, threshold, "; ".join(_comparison_line(r) for r in rows) + _notes(notes)
                 + _warnings(candidate), details, label=G4_LABEL)


def _comparison_line(r: dict) -> str:
    text = (f"{r['metric']} {_f(r['candidate_value'])} vs {r['baseline']} {_f(r['baseline_value'])} "
            f"(ratio {_f(r['ratio'])}")
    if r.get("ci_low") is not None:
        says = {"worse": ", worse beyond the allowed drop", "inconclusive": ", inconclusive",
                "not_worse": ""}[r["decision"]]
        text += (f", diff {r['difference']:+.3f}, {r['confidence']:.0%} CI [{r['ci_low']:+.3f}, "
                 f"{r['ci_high']:+.3f}], allowed drop {r['allowed_drop']:.3f}{says}")
    return text + ")"


def _notes(notes: Sequence[str]) -> str:
    return (" — " + "; ".join(notes)) if notes else ""


def _warnings(candidate: Answers) -> str:
    """The test set's warnings (rows left out under quality.bad_rows: warn), shown in the gate's message."""
    return "".join(f" — WARNING: {p}" for p in candidate.problems)


@gate("adapter_applied")
def adapter_applied(candidate: Sequence[str], base: Sequence[str], min_changed_share: float = 0.0) -> Check:
    """The adapter's answers differ from the base model's on the test set (an adapter silently not loaded
    answers exactly like the base)."""
    n = len(candidate)
    changed = [i for i, (a, b) in enumerate(zip(candidate, base)) if a != b]
    share = len(changed) / n if n else 0.0
    threshold = f"> {min_changed_share:.0%} of answers differ from the base model's"
    details = {"n": n, "changed": len(changed), "identical_examples": [
        {"index": i, "output": candidate[i]} for i in range(n) if i not in set(changed)][:5]}
    if n == 0 or not changed or share <= min_changed_share:
        return Check(False, round(share, 4), threshold,
                     f"{n - len(changed)} of {n} answers are identical to the base model's: the adapter is probably "
                     "not applied (not loaded, wrong name or path, or --enable-lora missing)", details,
                     label=APPLIED_LABEL)
    return Check(True, round(share, 4), threshold, f"{len(changed)} of {n} answers differ from the base model's",
                 details, label=APPLIED_LABEL)


@gate("determinism")
def determinism(first: Sequence[str], second: Sequence[str], indices: Sequence[int]) -> Check:
    """A second greedy pass over a sample of prompts gives identical answers."""
    diffs = [{"index": i, "first": a, "second": b} for i, a, b in zip(indices, first, second) if a != b]
    n = len(indices)
    threshold = "identical answers on a second greedy pass"
    if not n:
        return Check(False, None, threshold, "no prompts were re-run", label=DETERMINISM_LABEL)
    if diffs:
        return Check(False, f"{len(diffs)}/{n} differ", threshold,
                     f"{len(diffs)} of {n} answers changed on a second greedy pass (first at test row "
                     f"{diffs[0]['index']}): outputs are not reproducible (sampling on, or non-deterministic "
                     "kernels / batching on this engine)", {"differences": diffs[:5]}, label=DETERMINISM_LABEL)
    return Check(True, f"0/{n} differ", threshold, f"{n} answers identical on a second greedy pass",
                 label=DETERMINISM_LABEL)


