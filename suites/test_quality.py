"""Quality gates on the served adapter: G4 baseline, G5 task quality, adapter_applied and determinism.

The adapter answers the held-out test set greedily (cached on disk); the base model answers the same prompts on the
same engine, and so does the registry's ``production`` version when there is one.
"""

import pytest

from pytest_ftgate import predict
from pytest_ftgate.config import task_thresholds
from pytest_ftgate.gates import quality


@pytest.mark.gate("G4", name="baseline", severity="block")
def test_the_adapter_is_not_worse_than_95_percent_of_each_baseline(predictions, baseline, test_set, gate,
                                                                  ftgate_config):
    q = ftgate_config.quality
    table = predict.sample_table(test_set, predictions, baseline.answers, q.report_samples)
    check = quality.baseline_gate(predictions, baseline.answers, q, baseline.notes, table)
    gate.check(check, severity=q.inconclusive_severity if check.details.get("inconclusive") else None)


@pytest.mark.gate("G5", name="task_quality", severity="warn")
def test_the_adapter_meets_the_task_thresholds(predictions, test_set, gate, ftgate_config):
    q = ftgate_config.quality
    thresholds = task_thresholds(q)
    if not thresholds:
        pytest.skip(f"quality.task {q.task!r} has no thresholds; set quality.thresholds in ftgate.yaml")
    table = predict.sample_table(test_set, predictions, (), q.report_samples)
    gate.check(quality.task_quality(predictions, thresholds, q.task, table))


@pytest.mark.gate("adapter_applied", name="adapter_applied", severity="block")
def test_the_adapter_changes_the_base_models_answers(predictions, baseline, scorer, gate):
    check = quality.adapter_applied(predictions.outputs, baseline.base.outputs)
    if not check.passed:
        scorer.forget(predictions)  # once the engine is fixed, these answers must not come back from the cache
    gate.check(check)


@pytest.mark.gate("determinism", name="determinism", severity="warn")
def test_a_second_greedy_pass_gives_the_same_answers(engine, predictions, scorer, test_set, gate, ftgate_config):
    picked, again = scorer.rerun(engine, predictions, ftgate_config.quality.determinism_samples)
    rows = [test_set.samples[i].index for i in picked]
    gate.check(quality.determinism([predictions.outputs[i] for i in picked], again, rows))
