"""One home for each mechanism (issue 14): where gates live and which report section they land in, old import
paths that still work with a warning, one digest for one directory, one atomic write, one engine table. Pure."""

import os
import warnings
from pathlib import Path

import pytest

from pytest_ftgate import fileio, gates, hashing, report
from pytest_ftgate.errors import did_you_mean

SUITES = Path(__file__).resolve().parents[1] / "suites"


@pytest.mark.parametrize("gate_id, section", [
    ("G1", "training"), ("G2", "training"), ("G3", "training"), ("resources", "training"),
    ("G4", "quality"), ("G5", "quality"), ("adapter_applied", "quality"), ("determinism", "quality"),
    ("serving_parity", "serving"), ("bench:mmlu", "benchmarks"), ("bench:demo_mc@5shot", "benchmarks"),
    ("G6", "audit"), ("integrity", "audit"), ("adapter_format", "audit"), ("reproducibility", "audit"),
    ("schema", "data"), ("pii", "data"), ("leakage", "data"), ("duplicates", "data"), ("my_own_gate", "other")])
def test_every_gate_id_lands_in_its_familys_report_section(gate_id, section):
    assert gates.section_of(gate_id).key == section


def test_every_gate_the_bundled_suites_define_is_registered_by_a_family():
    import re

    ids = {m for f in SUITES.glob("test_*.py") for m in re.findall(r'mark\.gate\("([^"]+)"', f.read_text())}
    assert ids and {i: gates.section_of(i).key for i in ids if gates.section_of(i).key == "other"} == {}


def test_a_marker_can_put_a_gate_into_another_section():
    assert gates.section_of("G1", "quality").key == "quality"
    assert gates.section_of("fair_gap", "fairness").title == "Fairness"


def test_a_new_family_gets_its_report_section_without_a_change_in_report_py():
    gate = gates.family("fairness_test_only", "Fairness (test family)", 35)

    @gate("fair_1", "gap between groups")
    def fair(x):
        return gates.Check(x < 0.1, x, "< 0.1", "gap measured")

    assert fair(0.05).label == "gap between groups"
    g = {"id": "fair_1", "name": "fair", "severity": "warn", "outcome": "passed", "value": 0.05, "message": "gap",
         "threshold": "< 0.1", "details": {"groups": 2}}
    html = report.run_html(report.RunEvidence(verdict={"run_id": "r", "gates": [g], "verdict": "pass"}))
    assert "Fairness (test family)" in html and "gap" in html


@pytest.mark.parametrize("old, name, new", [
    ("pytest_ftgate.compliance", "integrity", "pytest_ftgate.gates.audit"),
    ("pytest_ftgate.compliance", "load_record", "pytest_ftgate.record"),
    ("pytest_ftgate.audit", "sha256_file", "pytest_ftgate.hashing"),
    ("pytest_ftgate.audit", "build_record", "pytest_ftgate.record"),
    ("pytest_ftgate.bench", "regression", "pytest_ftgate.gates.benchmarks"),
    ("pytest_ftgate.bench", "gate_specs", "pytest_ftgate.lmeval"),
    ("pytest_ftgate.runs", "RunStore", "pytest_ftgate.store"),
    ("pytest_ftgate.registry", "refusal", "pytest_ftgate.promotion"),
    ("pytest_ftgate.gates", "stability", "pytest_ftgate.gates.training"),
    ("pytest_ftgate.predict", "baseline_gate", "pytest_ftgate.gates.quality"),
    ("pytest_ftgate.data", "schema_check", "pytest_ftgate.gates.data"),
    ("pytest_ftgate.serve.parity", "serving_parity", "pytest_ftgate.gates.serving")])
def test_an_old_import_path_still_works_and_says_where_the_name_went(old, name, new):
    import importlib

    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(new), name)


def test_the_package_exports_what_suites_use_without_importing_the_families():
    import subprocess
    import sys

    code = ("import sys; import pytest_ftgate as p; assert 'pytest_ftgate.gates.quality' not in sys.modules; "
            "from pytest_ftgate import Check, GateFailure, gates; "
            "assert gates.training.stability and gates.audit.integrity and gates.data.pii_check; print('ok')")
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_one_directory_has_one_digest_in_the_run_the_record_and_the_caches(tmp_path):
    from pytest_ftgate.serve.cache import weights_digest

    d = tmp_path / "adapter"
    (d / "sub").mkdir(parents=True)
    (d / "adapter_model.safetensors").write_bytes(b"w" * 100)
    (d / "sub" / "x.json").write_text("{}")
    files = hashing.tree_files(d)
    assert all(f["sha256"].startswith("sha256:") and len(f["sha256"]) == 71 for f in files)
    memo = hashing.HashMemo(tmp_path / "memo.json")
    assert hashing.tree_files(d, memo) == files  # the memo gives the same format
    digest = hashing.digest_files(files)
    assert hashing.tree_digest(d) == weights_digest(d, memo) == hashing.dataset_sha256(d) == digest
    bare = [{**f, "sha256": hashing.bare(f["sha256"])} for f in files]
    assert hashing.digest_files(bare) == digest  # a bare hex (an older record) digests the same


def test_an_atomic_write_leaves_the_old_file_or_the_new_one_with_open_s_mode(tmp_path):
    target = fileio.write_atomic(tmp_path / "out" / "v.json", "new")
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    fileio.write_atomic(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes" and [p.name for p in target.parent.iterdir()] == ["v.json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_path_with_a_tilde_is_the_home_directory_wherever_it_is_resolved(tmp_path):
    assert fileio.resolve_path("~/data", tmp_path) == Path.home() / "data"
    assert fileio.resolve_path("data", tmp_path) == tmp_path / "data"
    assert fileio.resolve_path("/abs/data", tmp_path) == Path("/abs/data")


def test_did_you_mean_names_the_closest_known_name_or_lists_them():
    assert did_you_mean("vlm", ["hf", "vllm", "openai"]) == "; did you mean 'vllm'?"
    assert did_you_mean("zzz", ["hf", "vllm"], listed=True) == "; known: hf, vllm"
    assert did_you_mean("zzz", ["hf", "vllm"]) == ""


def test_the_engine_table_is_the_one_list_of_engine_kinds():
    from pytest_ftgate import serve

    assert set(serve.ENGINES) == {"hf", "vllm", "openai"}
    assert [serve.lmeval_backend(k) for k in ("hf", "vllm", "openai")] == ["hf", "local-completions",
                                                                          "local-completions"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert serve.engine_class("hf").__name__ == "HFEngine"


def test_xdist_s_main_process_resolves_runs_only_for_a_directory_that_defines_gates(tmp_path):
    from pytest_ftgate.plugin import _has_gate_tests

    suite = tmp_path / "test_suite.py"
    suite.write_text("import pytest\n\n@pytest.mark.gate('G1')\ndef test_x(ft_run, gate):\n    pass\n")
    plain = tmp_path / "test_plain.py"
    plain.write_text('CODE = """\n@pytest.mark.gate("G1")\ndef test_x(ft_run): ...\n"""\n\ndef test_y():\n    pass\n')
    assert _has_gate_tests(suite) and not _has_gate_tests(plain)  # a gate inside a string is not a gate
    assert _has_gate_tests(SUITES / "test_training.py")


@pytest.mark.slow
def test_the_fast_tier_imports_no_torch_and_loads_no_model():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = ("import sys, pytest; rc = pytest.main(['tests', '-m', 'not slow', '-q', '-p', 'no:cacheprovider', "
            "'-x', '--no-header']); heavy = [m for m in ('torch', 'transformers', 'llamafactory', 'peft', 'vllm') "
            "if m in sys.modules]; print('HEAVY', heavy, 'RC', int(rc))")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=900)
    assert "HEAVY [] RC 0" in out.stdout, out.stdout[-2000:]
