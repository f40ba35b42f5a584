"""The benchmark gate ``bench:<task>``, pure: the adapter's lm-evaluation-harness score against its base model's,
within a margin of standard errors. The runs themselves (backends, task catalog, result cache) are ``lmeval.py``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from . import Check, family

if TYPE_CHECKING:
    from ..lmeval import TaskResult

gate = family("benchmarks", "Benchmarks", 30, view="benchmarks")


@gate("bench:", "the adapter's benchmark score (task metric)")
def regression(task: str, candidate: TaskResult, base: TaskResult, metric: str = "", margin: float = 2.0) -> Check:
    """``bench:<task>``: the adapter's metric is not worse than the base model's by more than ``margin`` standard
    errors of the difference, sqrt(se_candidate² + se_base²) from lm-eval's stderrs (N/A counts as 0)."""
    c, b = candidate.metric(metric), base.metric(metric or candidate.metric().name)
    se = math.sqrt((c.stderr or 0.0) ** 2 + (b.stderr or 0.0) ** 2)
    diff = c.value - b.value
    worse_by = -diff if c.higher_is_better else diff
    allowed = margin * se
    bound = b.value - allowed if c.higher_is_better else b.value + allowed
    threshold = f"{'>=' if c.higher_is_better else '<='} {bound:.4g} (base {b.value:.4g} " \
                f"{'-' if c.higher_is_better else '+'} {margin:g} x stderr {se:.4g})"
    name = c.name.removesuffix(",none")
    details = {"task": task, "metric": c.name, "candidate": c.value, "base": b.value, "difference": diff,
               "stderr": se, "candidate_stderr": c.stderr, "base_stderr": b.stderr, "margin": margin,
               "higher_is_better": c.higher_is_better, "num_fewshot": candidate.data.get("n-shot", {}).get(
                   candidate.task), "n": candidate.data.get("n-samples", {}).get(candidate.task),
               "cached": {"candidate": candidate.cached, "base": base.cached},
               "provenance": {s.side: s.data.get("ftgate", {}).get("cache_key") for s in (candidate, base)}}
    if c.stderr is None or b.stderr is None:
        details["note"] = "lm-eval reported no stderr for one side; it counts as 0"
    line = f"{name} {c.value:.4g} (adapter) vs {b.value:.4g} (base): difference {diff:+.4g}, stderr {se:.4g}"
    if worse_by > allowed:
        return Check(False, round(c.value, 6), threshold,
                     f"{task}: regression against the base model: {line}; worse by more than {margin:g} x stderr "
                     f"= {allowed:.4g}", details)
    return Check(True, round(c.value, 6), threshold,
                 f"{task}: {line}: no regression beyond {margin:g} x stderr ({allowed:.4g})", details)


