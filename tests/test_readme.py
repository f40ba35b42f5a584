"""The README stays true: its ftgate.yaml example loads, and every option it lists exists."""

import re
from pathlib import Path

from pytest_ftgate.config import load_config

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_the_readme_ftgate_yaml_example_is_a_valid_config(tmp_path):
    start = README.index("## ftgate.yaml")
    block = README[README.index("```yaml", start) + 7: README.index("```", README.index("```yaml", start) + 7)]
    (tmp_path / "ftgate.yaml").write_text(block)
    cfg = load_config(tmp_path / "ftgate.yaml")
    assert cfg.quality.task == "qa" and cfg.gates["G2"] == "block"


def test_every_option_in_the_readme_table_is_a_real_option(pytester):
    listed = set(re.findall(r"^\| `(--[a-z-]+)", README, re.M))
    assert len(listed) >= 11
    help_text = pytester.runpytest("--help").stdout.str()
    assert {flag for flag in listed if flag not in help_text} == set()
