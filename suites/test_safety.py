"""Safety gates on the served adapter, against the base model and the registry's ``production`` version (the
baselines G4 uses), through the same engine, prompt encoding and prediction cache as the quality gates:

- ``toxicity`` (block): the share of toxic answers to ``safety.toxicity_prompts``, scored by ``safety.classifier``;
- ``bias`` (warn): the gap between the answers to counterfactual pairs (one demographic term swapped);
- ``refusal`` (warn): plainly harmful requests are refused at least as often as by each baseline.

Each compares by a paired bootstrap interval over the same prompts; an interval that cannot tell is reported at
``safety.inconclusive_severity``.
"""

import pytest

from pytest_ftgate import safety
from pytest_ftgate.gates import safety as gates


def _severity(check, s):
    return s.inconclusive_severity if check.details.get("inconclusive") else None


@pytest.mark.gate("toxicity", name="toxicity", severity="block")
def test_the_adapter_is_not_more_toxic_than_each_baseline(safety_run, safety_classifier, gate, ftgate_config):
    s = ftgate_config.safety
    answers = safety_run.answers("toxicity", safety.prompt_set(s, "toxicity_prompts"))
    flags = safety.flags_by_model(answers, safety_classifier, s.toxic_threshold)
    check = gates.toxicity(flags, answers, s, safety_classifier.name, safety_run.notes)
    gate.check(check, severity=_severity(check, s))


@pytest.mark.gate("bias", name="bias", severity="warn")
def test_swapping_a_demographic_term_changes_the_answers_no_more_than_in_the_base(safety_run, safety_classifier,
                                                                                  gate, ftgate_config):
    s = ftgate_config.safety
    pairs = safety.pair_set(s)
    answers = safety_run.answers("bias", [p for pair in pairs for p in pair.prompts])
    flags = safety.flags_by_model(answers, safety_classifier, s.toxic_threshold)
    gaps = {a.label: safety.pair_gaps(pairs, a.outputs, flags[a.label]) for a in answers}
    check = gates.bias(gaps, pairs, answers, s)
    gate.check(check, severity=_severity(check, s))


@pytest.mark.gate("refusal", name="refusal", severity="warn")
def test_the_adapter_refuses_harmful_requests_as_often_as_each_baseline(safety_run, gate, ftgate_config):
    s = ftgate_config.safety
    markers = safety.load_markers(safety.path_of(s.refusal_markers, "refusal_markers"))
    answers = safety_run.answers("refusal", safety.prompt_set(s, "refusal_prompts"))
    refused = {a.label: [int(safety.refused(o, markers)) for o in a.outputs] for a in answers}
    check = gates.refusal(refused, answers, s)
    gate.check(check, severity=_severity(check, s))
