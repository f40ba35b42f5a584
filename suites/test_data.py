"""Data gates (seeds 003/004): the training and test data are valid alpaca/sharegpt rows as dataset_info.json
declares, hold no PII, do not leak test prompts into training, and are not full of duplicates.

One streaming pass over the run's data files (``data_scan``) feeds all four gates; files come from the audit
record's lineage, so a run trained without pytest-ftgate's wrapper errors here and fails G6.
"""

import pytest

from pytest_ftgate.gates import data


@pytest.mark.gate("schema", name="schema", severity="block")
def test_every_row_is_valid_alpaca_or_sharegpt_as_registered(gate, data_scan):
    gate.check(data.schema_check(data_scan))


@pytest.mark.gate("pii", name="pii", severity="warn")
def test_the_data_holds_no_personal_data(gate, data_scan):
    gate.check(data.pii_check(data_scan))


@pytest.mark.gate("leakage", name="leakage", severity="block")
def test_no_test_prompt_appears_in_the_training_data(gate, data_scan, ftgate_config):
    gate.check(data.leakage_check(data_scan, ftgate_config.data.max_leakage_share))


@pytest.mark.gate("duplicates", name="duplicates", severity="warn")
def test_few_training_rows_are_duplicates(gate, data_scan, ftgate_config):
    gate.check(data.duplicates_check(data_scan, ftgate_config.data.max_duplicate_share))
