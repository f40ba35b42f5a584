"""The ``serving_parity`` gate, pure: do the serving engine's greedy answers equal the hf engine's on a sample?

The quality gates score what an engine answered; a release is then served by vLLM. On CPU in float32 the two must
agree token for token; in half precision on a GPU near-ties can flip, so there the agreement rate is gated
against ``engine.parity_min_agreement_gpu``. No pytest, no engine here: the suite hands in both answer lists.
"""

from __future__ import annotations

from typing import Callable, Sequence

from . import Check, family

gate = family("serving", "Serving parity (the deployed engine against hf)", 25)

LABEL = "share of sampled answers identical to the hf engine's"


def sample_positions(n: int, k: int) -> list[int]:
    """``k`` positions spread evenly over ``n`` items (all of them when k >= n or k == 0)."""
    if k <= 0 or k >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]


def first_divergence(served: str, reference: str, tokenize: Callable[[str], list[str]]) -> tuple[int, str, str]:
    """(token index, served token, reference token) of the first token where the two answers differ."""
    a, b = tokenize(served), tokenize(reference)
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i, x, y
    i = min(len(a), len(b))
    return i, (a[i] if i < len(a) else "<end>"), (b[i] if i < len(b) else "<end>")


@gate("serving_parity")
def serving_parity(served: Sequence[str], reference: Sequence[str], rows: Sequence[int], *, engine: str,
                   min_agreement: float, tokenize: Callable[[str], list[str]] = str.split) -> Check:
    """Passed when the share of identical answers is at least ``min_agreement`` (1.0 on CPU)."""
    n = len(served)
    same = [i for i in range(n) if served[i] == reference[i]]
    rate = len(same) / n if n else 1.0
    diverging = []
    for i in (i for i in range(n) if served[i] != reference[i]):
        tok, a, b = first_divergence(served[i], reference[i], tokenize)
        diverging.append({"row": rows[i], "token": tok, "served_token": a, "hf_token": b,
                          "served": served[i], "hf": reference[i]})
    passed = rate >= min_agreement
    msg = f"{len(same)} of {n} sampled answers from {engine} equal the hf engine's ({rate:.1%}; need {min_agreement:.0%})"
    if diverging:
        d = diverging[0]
        msg += (f"; first divergence: test row {d['row']}, token {d['token']}: {engine} {d['served_token']!r}, "
                f"hf {d['hf_token']!r}")
    return Check(passed, round(rate, 4), min_agreement, msg, {"diverging": diverging[:20], "sampled": n},
                 label=LABEL)
