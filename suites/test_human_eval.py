"""Human evaluation: the ratings raters gave the gated answers (`ftgate human-eval export`, then `import`), read from
the run. Without ratings the gate says how to get them, at ``human_eval.pending`` (warn by default)."""

import pytest

from pytest_ftgate.gates import human


@pytest.mark.gate("human_eval", name="human_eval", severity="block")
def test_human_raters_score_the_adapter_above_3_5_of_5(human_ratings, gate, ftgate_config):
    h = ftgate_config.human_eval
    check = human.human_eval(human_ratings.summary, h, human_ratings.hint)
    gate.check(check, severity=h.pending if check.details.get("pending") else None)
