"""The ``human_eval`` gate on human ratings of the gated answers, pure: seed 002's "Human eval score > 3.5/5" with a
bootstrap interval over items, and the win rate against the baseline the raters compared with (the base model, or
``production``). The ratings and their summary come from ``human_eval.py`` (`ftgate human-eval export` / `import`);
no ratings yet is a pending check that says how to get them. No pytest, no I/O.
"""

from __future__ import annotations

from ..config import HumanEval
from . import Check, family

gate = family("human", "Human evaluation", 35)

HUMAN_LABEL = "candidate's mean human score (1-5)"


@gate("human_eval", HUMAN_LABEL)
def human_eval(summary: dict | None, h: HumanEval, hint: str = "") -> Check:
    """Pass when the candidate's mean score is above ``min_mean`` (and, with ``require_interval``, so is the lower
    bound of its interval), unless the win rate's whole interval lies below ``min_win_rate``. ``summary`` None: no
    ratings imported yet; the check fails with ``details["pending"]`` (the suite reports it at
    ``human_eval.pending``) and ``hint`` names the commands."""
    threshold = (f"mean > {h.min_mean:g}/5" + (" (whole interval)" if h.require_interval else "")
                 + f"; win rate not below {h.min_win_rate:g}")
    if summary is None:
        return Check(False, None, threshold, f"no human ratings on this run yet: {hint}",
                     {"pending": True, "how": hint})
    s = summary
    level = f"{s['confidence']:.0%}"
    said = (f"mean {s['mean']:.2f}/5 ({level} CI [{s['ci_low']:.2f}, {s['ci_high']:.2f}]) over {s['n_items']} items "
            f"by {len(s['raters'])} rater(s); {s['baseline']} {s['baseline_mean']:.2f}/5; win rate vs "
            f"{s['baseline']} {s['win_rate']:.2f} ({level} CI [{s['win_ci_low']:.2f}, {s['win_ci_high']:.2f}]; "
            f"{s['wins']} wins, {s['ties']} ties, {s['losses']} losses)")
    problems = []
    if not s["mean"] > h.min_mean:
        problems.append(f"the mean is not above {h.min_mean:g}/5")
    elif h.require_interval and not s["ci_low"] > h.min_mean:
        problems.append(f"the interval reaches down to {s['ci_low']:.2f}, not above {h.min_mean:g}/5 "
                        "(human_eval.require_interval): more rated items would decide")
    if s["win_ci_high"] < h.min_win_rate:
        problems.append(f"the raters prefer {s['baseline']}: the whole win-rate interval lies below "
                        f"{h.min_win_rate:g}")
    details = {"summary": s, "pending": False}
    if problems:
        return Check(False, s["mean"], threshold, "; ".join(problems) + f" — {said}", details)
    unsure = (f" — the interval includes {h.min_mean:g}: more rated items would make it sure"
              if s["ci_low"] <= h.min_mean else "")
    return Check(True, s["mean"], threshold, said + unsure, details)
