"""Task metrics and their confidence intervals, pure: ROUGE-1/2/L (rouge-score), BLEU (sacrebleu), exact match
and token F1 (SQuAD normalisation), per sample and aggregated, plus a paired bootstrap of a difference.

No I/O, no pytest, no model: strings in, numbers out. ROUGE is the plain mean of rouge-score's per-sample
F-measures (``evaluate``'s rouge takes a seeded bootstrap median instead); BLEU is sacrebleu's corpus BLEU scaled
to 0-1 (the seed thresholds read "BLEU > 0.3"), with sentence BLEU per sample. Extra metrics named in
``ftgate.yaml`` go through ``evaluate.load`` (a local module path, or a hub name where the hub is reachable).
"""

from __future__ import annotations

import collections
import math
import re
import string
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

BUILTIN = ("exact_match", "f1", "rouge1", "rouge2", "rougeL", "bleu")
ROUGE = ("rouge1", "rouge2", "rougeL")


@dataclass(frozen=True)
class Scores:
    """The scores of one model's predictions against the references of one test set."""

    per_sample: dict[str, np.ndarray]  # metric -> one score per sample (BLEU: sentence BLEU, 0-1)
    aggregate: dict[str, float]  # metric -> the test-set score (BLEU: corpus BLEU; others: the mean)
    bleu_stats: np.ndarray = field(default_factory=lambda: np.zeros((0, 10)))  # per-sample sufficient statistics
    extra: dict[str, float] = field(default_factory=dict)  # evaluate modules: "<module>/<key>" -> value

    @property
    def n(self) -> int:
        return len(next(iter(self.per_sample.values()))) if self.per_sample else 0

    def value(self, metric: str) -> float:
        if metric in self.aggregate:
            return self.aggregate[metric]
        if metric in self.extra:
            return self.extra[metric]
        known = ", ".join(list(self.aggregate) + list(self.extra))
        raise KeyError(f"metric {metric!r} was not computed; known metrics: {known}")

    def to_dict(self) -> dict:
        """Plain JSON (lists of floats) of the built-in scores; ``from_dict`` gives them back exactly."""
        return {"per_sample": {k: [float(x) for x in v] for k, v in self.per_sample.items()},
                "aggregate": dict(self.aggregate), "bleu_stats": np.asarray(self.bleu_stats).tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Scores":
        return cls(per_sample={k: np.array(v, dtype=float) for k, v in d["per_sample"].items()},
                   aggregate={k: float(v) for k, v in d["aggregate"].items()},
                   bleu_stats=np.array(d["bleu_stats"], dtype=float).reshape(-1, 10))

    def resampled(self, metric: str, idx: np.ndarray) -> np.ndarray:
        """The metric on each bootstrap resample; ``idx`` is (resamples, n) row indices."""
        if metric == "bleu":
            return corpus_bleu_from_stats(self.bleu_stats[idx].sum(axis=1))
        return self.per_sample[metric][idx].mean(axis=1)


# -- exact match and token F1 (SQuAD v1.1 normalisation) ---------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles (a/an/the), single spaces — as the SQuAD evaluation script."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = collections.Counter(pred) & collections.Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


# -- ROUGE and BLEU -----------------------------------------------------------------------------------------
def rouge(predictions: Sequence[str], references: Sequence[str], use_stemmer: bool = False) -> dict[str, np.ndarray]:
    """rouge-score's F-measure per sample for ROUGE-1, ROUGE-2 and ROUGE-L."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE), use_stemmer=use_stemmer)
    out = {k: np.zeros(len(predictions)) for k in ROUGE}
    for i, (pred, ref) in enumerate(zip(predictions, references)):
        for key, score in scorer.score(ref, pred).items():
            out[key][i] = score.fmeasure
    return out


def _bleu():
    from sacrebleu.metrics import BLEU

    return BLEU(), BLEU(effective_order=True)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> tuple[float, np.ndarray, np.ndarray]:
    """(corpus BLEU, sentence BLEU per sample, per-sample sufficient statistics), scores on a 0-1 scale."""
    corpus, sentence = _bleu()
    if not predictions:
        return 0.0, np.zeros(0), np.zeros((0, 2 + 2 * corpus.max_ngram_order))
    stats = np.asarray(corpus._extract_corpus_statistics(list(predictions), [list(references)]), dtype=float)
    per_sample = np.array([sentence.sentence_score(p, [r]).score / 100 for p, r in zip(predictions, references)])
    total = corpus.corpus_score(list(predictions), [list(references)]).score / 100
    return total, per_sample, stats


def corpus_bleu_from_stats(summed: np.ndarray) -> np.ndarray:
    """Corpus BLEU (0-1) of each row of summed sufficient statistics (sacrebleu's own computation)."""
    corpus, _ = _bleu()
    rows = np.atleast_2d(summed)
    return np.array([corpus._compute_score_from_stats(list(row)).score / 100 for row in rows])


def score(predictions: Sequence[str], references: Sequence[str], use_stemmer: bool = False) -> Scores:
    """Every built-in metric, per sample and aggregated."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    per = {
        "exact_match": np.array([exact_match(p, r) for p, r in zip(predictions, references)], dtype=float),
        "f1": np.array([token_f1(p, r) for p, r in zip(predictions, references)], dtype=float),
        **rouge(predictions, references, use_stemmer),
    }
    corpus, per["bleu"], stats = bleu(predictions, references)
    agg = {k: float(v.mean()) if len(v) else 0.0 for k, v in per.items()}
    agg["bleu"] = float(corpus)
    return Scores(per_sample=per, aggregate=agg, bleu_stats=stats)


# -- extra metrics through evaluate ---------------------------------------------------------------------------
class MetricError(ValueError):
    """An extra metric module cannot be loaded or computed."""


def evaluate_module(name: str, predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Numbers returned by ``evaluate.load(name).compute(...)``, keyed ``<name>/<key>``."""
    import evaluate

    try:
        module = evaluate.load(name)
    except Exception as exc:  # hub unreachable, bad path, script error
        raise MetricError(
            f"evaluate module {name!r} could not be loaded ({type(exc).__name__}: {str(exc)[:300]}); evaluate "
            "fetches metric scripts from the Hugging Face hub, so offline name a local module path (a directory "
            "with <name>.py) in quality.extra_metrics, or drop it") from None
    try:
        result = module.compute(predictions=list(predictions), references=list(references))
    except Exception as exc:
        raise MetricError(f"evaluate module {name!r} failed to compute: {type(exc).__name__}: {exc}") from None
    label = name.rstrip("/").split("/")[-1].removesuffix(".py")
    return {f"{label}/{k}": float(v) for k, v in (result or {}).items()
            if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)}


# -- paired bootstrap ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A paired bootstrap estimate of ``candidate - baseline`` on one metric."""

    metric: str
    difference: float  # on the full test set
    low: float
    high: float
    confidence: float
    resamples: int
    p_worse: float  # share of resamples in which the candidate scores below the baseline

    @property
    def significant_regression(self) -> bool:
        return self.high < 0

    @property
    def significant_improvement(self) -> bool:
        return self.low > 0


def bootstrap_interval(scores: Scores, metric: str, resamples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float, float]:
    """(value, low, high): one model's score with the percentile interval of its test items resampled with
    replacement (NaN bounds without items or resamples); the one-sample twin of ``paired_bootstrap``."""
    value = scores.value(metric)
    if not scores.n or resamples <= 0:
        return value, math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, scores.n, size=(resamples, scores.n))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(scores.resampled(metric, idx), [alpha, 1 - alpha])
    return value, float(low), float(high)


def paired_bootstrap(candidate: Scores, baseline: Scores, metric: str, resamples: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> Interval:
    """Resample test items with replacement (the same items for both models) and take percentiles of the
    difference; for BLEU the corpus score is recomputed from the resampled sufficient statistics."""
    n = candidate.n
    if n != baseline.n:
        raise ValueError(f"paired bootstrap needs the same items: {n} candidate vs {baseline.n} baseline scores")
    diff = candidate.value(metric) - baseline.value(metric)
    if n == 0 or resamples <= 0:
        return Interval(metric, diff, math.nan, math.nan, confidence, 0, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    deltas = candidate.resampled(metric, idx) - baseline.resampled(metric, idx)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(deltas, [alpha, 1 - alpha])
    return Interval(metric, float(diff), float(low), float(high), confidence, resamples, float((deltas < 0).mean()))
