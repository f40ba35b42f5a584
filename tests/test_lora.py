"""One set of LoRA rules: what the vllm engine refuses, lm-eval's vllm backend refuses too (pure, no server)."""

import json

import pytest

from pytest_ftgate import lmeval, lora
from pytest_ftgate.errors import BenchmarkError, EngineError
from pytest_ftgate.serve import vllm


def adapter(tmp_path, name="a", **cfg):
    d = tmp_path / name
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **cfg}))
    return d


@pytest.mark.parametrize("cfg, expected", [({"r": 8}, 8), ({"r": 12}, 16), ({}, 8),
                                           ({"r": 32, "rank_pattern": {"q_proj": 48}}, 64)])
def test_the_engine_and_the_benchmark_path_pick_the_same_max_lora_rank(tmp_path, cfg, expected):
    a = adapter(tmp_path, **cfg)
    assert vllm.max_lora_rank([vllm.lora_rank(a)]) == lmeval.vllm_lora_rank(a) == expected


def test_a_missing_rank_is_peft_s_default_8_in_both_paths(tmp_path):
    a = adapter(tmp_path)
    assert lora.rank(a) == vllm.lora_rank(a) == 8


@pytest.mark.parametrize("cfg, says", [({"r": 600}, "rank 600"), ({"r": 8, "use_dora": True}, "DoRA"),
                                       ({"r": 8, "modules_to_save": ["lm_head"]}, "modules_to_save")])
def test_an_adapter_the_engine_refuses_is_refused_by_the_benchmark_path(tmp_path, cfg, says):
    a = adapter(tmp_path, **cfg)
    assert says in vllm.unservable(a)
    with pytest.raises(EngineError, match=says):
        vllm.check_servable(a)
    with pytest.raises(BenchmarkError, match=says):
        lmeval.vllm_lora_rank(a)
