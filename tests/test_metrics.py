"""Unit tests of the task metrics and the paired bootstrap (pytest_ftgate.metrics): against rouge-score, sacrebleu and
evaluate themselves, on hand-checked examples."""

import math
import textwrap

import numpy as np
import pytest

from pytest_ftgate import metrics

REFS = ["the cat sat on the mat", "a quick brown fox", "paris is the capital of france", "green tea"]
GOOD = ["the cat sat on the mat", "the quick brown fox", "paris is the capital city of france", "green tea"]
BAD = ["a dog", "slow fox", "london", "coffee please"]


def test_exact_match_and_f1_follow_the_squad_normalisation():
    assert metrics.exact_match("The Cat!", "cat") == 1.0  # case, punctuation and articles are ignored
    assert metrics.exact_match("cat sat", "cat") == 0.0
    assert metrics.token_f1("apple river stone", "stone river apple") == 1.0  # a bag of tokens
    assert metrics.token_f1("apple river", "apple river stone") == pytest.approx(0.8)  # P 1, R 2/3
    assert metrics.token_f1("", "") == 1.0 and metrics.token_f1("x", "") == 0.0


@pytest.mark.slow
def test_rouge_is_the_plain_mean_of_rouge_score_f_measures():
    from rouge_score import rouge_scorer

    scores = metrics.score(GOOD, REFS)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    for key in ("rouge1", "rouge2", "rougeL"):
        direct = [scorer.score(r, p)[key].fmeasure for p, r in zip(GOOD, REFS)]
        assert scores.per_sample[key].tolist() == pytest.approx(direct)
        assert scores.aggregate[key] == pytest.approx(np.mean(direct))


def test_bleu_is_sacrebleus_corpus_bleu_on_a_zero_to_one_scale():
    import sacrebleu

    scores = metrics.score(GOOD, REFS)
    assert scores.aggregate["bleu"] == pytest.approx(sacrebleu.corpus_bleu(GOOD, [REFS]).score / 100)
    sentence = [sacrebleu.sentence_bleu(p, [r]).score / 100 for p, r in zip(GOOD, REFS)]
    assert scores.per_sample["bleu"].tolist() == pytest.approx(sentence)
    # the sufficient statistics give back the same corpus score (what the bootstrap resamples)
    assert metrics.corpus_bleu_from_stats(scores.bleu_stats.sum(axis=0))[0] == pytest.approx(scores.aggregate["bleu"])


def test_better_answers_score_higher_on_every_metric():
    good, bad = metrics.score(GOOD, REFS), metrics.score(BAD, REFS)
    for m in metrics.BUILTIN:
        assert good.value(m) > bad.value(m), m


def test_an_unknown_metric_names_the_known_ones():
    with pytest.raises(KeyError, match="known metrics: exact_match, f1"):
        metrics.score(GOOD, REFS).value("mmlu")


def test_the_bootstrap_of_identical_answers_is_a_zero_interval():
    s = metrics.score(GOOD, REFS)
    ci = metrics.paired_bootstrap(s, s, "rougeL", resamples=200)
    assert (ci.difference, ci.low, ci.high) == (0.0, 0.0, 0.0)
    assert not ci.significant_regression and not ci.significant_improvement


def test_a_consistently_worse_candidate_is_a_significant_regression():
    refs = [f"answer number {i} is here" for i in range(40)]
    good = metrics.score(refs, refs)
    bad = metrics.score([f"number {i}" for i in range(40)], refs)
    for metric in ("f1", "rouge1", "bleu"):
        ci = metrics.paired_bootstrap(bad, good, metric, resamples=300, seed=1)
        assert ci.high < 0 and ci.significant_regression, metric
        assert ci.low <= ci.difference <= ci.high
        assert ci.p_worse == 1.0


def test_a_noisy_difference_on_few_samples_is_not_significant():
    refs = ["a b c d", "e f g h", "i j k l", "m n o p"]
    cand = metrics.score(["a b c d", "e f x x", "i j k l", "x x x x"], refs)
    base = metrics.score(["a b x x", "e f g h", "x x x x", "m n o p"], refs)
    ci = metrics.paired_bootstrap(cand, base, "f1", resamples=500)
    assert ci.low < 0 < ci.high and not ci.significant_regression


def test_the_bootstrap_is_reproducible_with_its_seed():
    a, b = metrics.score(GOOD, REFS), metrics.score(BAD, REFS)
    assert metrics.paired_bootstrap(a, b, "bleu", 100, seed=3) == metrics.paired_bootstrap(a, b, "bleu", 100, seed=3)


def test_the_bootstrap_needs_the_same_items_for_both_models():
    with pytest.raises(ValueError, match="same items"):
        metrics.paired_bootstrap(metrics.score(GOOD, REFS), metrics.score(GOOD[:2], REFS[:2]), "f1")


def test_an_empty_test_set_gives_an_empty_interval():
    empty = metrics.score([], [])
    assert empty.n == 0 and math.isnan(metrics.paired_bootstrap(empty, empty, "f1").low)


@pytest.mark.slow
def test_an_evaluate_module_from_a_local_path_is_an_extra_metric(tmp_path):
    module = tmp_path / "length_ratio"
    module.mkdir()
    (module / "length_ratio.py").write_text(textwrap.dedent('''
        import datasets
        import evaluate

        class LengthRatio(evaluate.Metric):
            def _info(self):
                return evaluate.MetricInfo(description="length ratio", citation="", inputs_description="",
                    features=datasets.Features({"predictions": datasets.Value("string"),
                                                "references": datasets.Value("string")}))

            def _compute(self, predictions, references):
                return {"ratio": sum(map(len, predictions)) / sum(map(len, references)), "name": "not a number"}
    '''))
    out = metrics.evaluate_module(str(module), ["abcd", "ab"], ["ab", "ab"])
    assert out == {"length_ratio/ratio": 1.5}


@pytest.mark.slow
def test_an_evaluate_hub_name_fails_offline_with_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(metrics.MetricError, match="local module path"):
        metrics.evaluate_module("ftgate-no-such-metric", ["a"], ["a"])
