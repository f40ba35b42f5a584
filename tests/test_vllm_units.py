"""Pure parts of the vLLM work: the serving_parity gate, the adapter/base-model fit read from safetensors headers,
and the report's Engine section. No server here (tests/test_vllm.py runs the real one)."""

import json
import struct

import pytest

from pytest_ftgate import report
from pytest_ftgate.errors import EngineError
from pytest_ftgate.serve.base import check_adapter_base
from pytest_ftgate.gates import serving


def test_identical_answers_pass_serving_parity_at_full_agreement():
    check = serving.serving_parity(["a b", "c"], ["a b", "c"], [3, 7], engine="vllm", min_agreement=1.0)
    assert check.passed and check.value == 1.0 and "2 of 2 sampled answers from vllm" in check.message


def test_one_diverging_answer_blocks_on_cpu_and_names_the_first_diverging_token():
    check = serving.serving_parity(["verre plante nuit", "c"], ["verre pomme nuit", "c"], [3, 7], engine="vllm",
                                  min_agreement=1.0)
    assert not check.passed and check.value == 0.5
    assert "test row 3, token 1: vllm 'plante', hf 'pomme'" in check.message
    assert check.details["diverging"][0]["served"] == "verre plante nuit"


def test_on_a_gpu_the_agreement_rate_is_gated_against_its_own_threshold():
    served, ref = ["x"] * 9 + ["y"], ["x"] * 10
    assert serving.serving_parity(served, ref, list(range(10)), engine="vllm", min_agreement=0.9).passed
    assert not serving.serving_parity(served, ref, list(range(10)), engine="vllm", min_agreement=0.95).passed


def test_a_shorter_answer_diverges_at_its_end():
    assert serving.first_divergence("a b", "a b c", str.split) == (2, "<end>", "c")


@pytest.mark.parametrize("n, k, expected", [(10, 0, list(range(10))), (10, 3, [0, 4, 9]), (3, 16, [0, 1, 2])])
def test_the_parity_sample_is_spread_over_the_test_set(n, k, expected):
    assert serving.sample_positions(n, k) == expected


def lora_files(path, shapes, base_name="/models/other"):
    path.mkdir()
    header = json.dumps({k: {"dtype": "F32", "shape": s, "data_offsets": [0, 0]} for k, s in shapes.items()}).encode()
    (path / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    (path / "adapter_config.json").write_text(json.dumps({"r": 8, "base_model_name_or_path": base_name}))
    return path


def test_an_adapter_whose_lora_widths_do_not_fit_the_base_is_refused_naming_both(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"hidden_size": 128, "intermediate_size": 256,
                                                  "num_attention_heads": 4, "num_key_value_heads": 2}))
    fits = lora_files(tmp_path / "fits", {"m.q_proj.lora_A.weight": [8, 128], "m.k_proj.lora_B.weight": [64, 8]})
    check_adapter_base(fits, base)
    other = lora_files(tmp_path / "other", {"m.q_proj.lora_A.weight": [8, 48]})
    with pytest.raises(EngineError, match=r"trained on base model '/models/other', not on the served base model "
                                          rf"'{base}': its m.q_proj.lora_A.weight is 48 wide"):
        check_adapter_base(other, base)


def test_the_report_shows_the_engine_a_gate_recorded_escaped():
    gates = [{"id": "serving_parity", "details": {"engine": {
        "kind": "vllm", "command": "vllm serve /m --port 4242 <x>", "port": 4242, "log": "/logs/vllm-4242.log",
        "startup_s": 71.2, "adapters": {"run-1": "/a"}}}}]
    html = report.engine_section(gates)
    assert "Engine" in html and "vllm serve /m --port 4242 &lt;x&gt;" in html and "/logs/vllm-4242.log" in html
    assert "run-1" in html and "71.2" in html
    assert report.engine_section([{"id": "G4", "details": {}}]) == ""


@pytest.mark.parametrize("text, match", [
    ("engine: {merge: always}\n", "engine.merge 'always' is not one of never, auto"),
    ("engine: {max_loras: 0}\n", "engine.max_loras >= 1"),
    ("engine: {parity_min_agreement_gpu: 1.5}\n", "engine.parity_min_agreement_gpu in"),
    ("engine: {cpu_kvcache_gib: 0}\n", "engine.cpu_kvcache_gib > 0"),
])
def test_bad_vllm_engine_settings_are_rejected_naming_the_key(tmp_path, text, match):
    from pytest_ftgate.config import load_config
    from pytest_ftgate.errors import ConfigError

    (tmp_path / "ftgate.yaml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(tmp_path / "ftgate.yaml")
