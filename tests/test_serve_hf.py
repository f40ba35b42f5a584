"""The embedded hf engine on the tiny demo base model (built locally) with real PEFT LoRA adapters: batching does not
change greedy answers, the base answers through disable_adapter, adapters are isolated, pickle is refused."""

import shutil
import sys
from pathlib import Path

import pytest

from pytest_ftgate import demo
from pytest_ftgate.config import Engine
from pytest_ftgate.errors import EngineError
from pytest_ftgate.serve import create_engine
from pytest_ftgate.serve.base import GenParams, Prompt

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PARAMS = GenParams(max_new_tokens=6)
PROMPTS = [Prompt((("user", f"{demo.INSTRUCTION}\n{' '.join(demo.WORDS[i:i + k])}"),), raw=True)
           for i, k in ((0, 3), (3, 5), (8, 1), (9, 3), (12, 7))]


def make_adapter(base: Path, dst: Path, seed: int, **lora) -> Path:
    """A LoRA adapter with non-zero random weights, saved by PEFT from the base re-loaded from disk."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False,
                     **lora)
    get_peft_model(model, cfg).save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def base():
    return demo.ensure_demo_base(demo.default_base_dir(ROOT))


@pytest.fixture(scope="module")
def adapters(base, tmp_path_factory):
    d = tmp_path_factory.mktemp("adapters")
    return {"a": make_adapter(base, d / "a", 1), "b": make_adapter(base, d / "b", 2, modules_to_save=["lm_head"])}


@pytest.fixture(scope="module")
def engine(base, adapters):
    engine = create_engine("hf", base, Engine(batch_size=16))
    for name, path in adapters.items():
        engine.add_adapter(name, path)
    yield engine
    engine.close()


def test_batched_answers_equal_one_prompt_at_a_time(base, adapters, engine):
    single = create_engine("hf", base, Engine(batch_size=1))
    single.add_adapter("a", adapters["a"])
    assert engine.generate(PROMPTS, None, PARAMS) == single.generate(PROMPTS, None, PARAMS)
    assert engine.generate(PROMPTS, "a", PARAMS) == single.generate(PROMPTS, "a", PARAMS)


def test_the_base_answers_through_disable_adapter_like_a_bare_base_model(base, engine):
    bare = create_engine("hf", base, Engine())
    assert engine.generate(PROMPTS, None, PARAMS) == bare.generate(PROMPTS, None, PARAMS)


def test_each_adapter_answers_as_when_it_is_alone(base, adapters, engine):
    for name in ("a", "b"):
        alone = create_engine("hf", base, Engine())
        alone.add_adapter(name, adapters[name])
        assert engine.generate(PROMPTS, name, PARAMS) == alone.generate(PROMPTS, name, PARAMS)
    base_answers = engine.generate(PROMPTS, None, PARAMS)
    assert engine.generate(PROMPTS, "a", PARAMS) != base_answers
    assert engine.generate(PROMPTS, "b", PARAMS) != base_answers


def test_progress_is_reported_per_batch(engine):
    done = []
    engine.generate(PROMPTS, "a", PARAMS, progress=done.append)
    assert sum(done) == len(PROMPTS)


def test_an_unknown_adapter_name_is_an_error(engine):
    with pytest.raises(EngineError, match="no adapter named 'c'"):
        engine.generate(PROMPTS, "c", PARAMS)


def test_a_pickle_only_adapter_is_refused_unless_allowed(base, adapters, tmp_path):
    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(adapters["a"], pickled)
    torch.save(load_file(pickled / "adapter_model.safetensors"), pickled / "adapter_model.bin")
    (pickled / "adapter_model.safetensors").unlink()
    with pytest.raises(EngineError, match="--ftgate-allow-pickle"):
        create_engine("hf", base, Engine()).add_adapter("p", pickled)
    allowed = create_engine("hf", base, Engine(), allow_pickle=True)
    allowed.add_adapter("p", pickled)
    ours = create_engine("hf", base, Engine())
    ours.add_adapter("a", adapters["a"])
    assert allowed.generate(PROMPTS[:2], "p", PARAMS) == ours.generate(PROMPTS[:2], "a", PARAMS)


def test_a_chat_prompt_without_any_chat_template_names_the_fix(engine):
    chat = [Prompt(p.messages) for p in PROMPTS[:1]]
    with pytest.raises(EngineError, match="prompt_format: raw"):
        engine.generate(chat, None, PARAMS)
    template = "{% for m in messages %}Human: {{ m['content'] }}\nAssistant:{% endfor %}"
    rendered = engine.render(Prompt(PROMPTS[0].messages, chat_template=template))
    assert rendered == f"Human: {PROMPTS[0].text}\nAssistant:"


def test_a_missing_base_model_is_an_engine_error(tmp_path):
    with pytest.raises(EngineError, match="not a local model directory"):
        create_engine("hf", tmp_path / "nothing", Engine()).start()


def test_the_vllm_engine_serves_base_and_adapter_through_the_fake_server(base, adapters, tmp_path, monkeypatch):
    """The vllm engine's requests (model routing, chat template, retries) against tests/fake_vllm.py answering with
    real greedy generations; vLLM itself is not run."""
    from pytest_ftgate.serve.base import GenerationError

    fake = f"{sys.executable} {Path(__file__).with_name('fake_vllm.py')}"
    monkeypatch.setenv("FAKE_VLLM_BACKEND", "hf")
    monkeypatch.setenv("FAKE_VLLM_FAIL_FIRST", "2")  # two transient errors: retried
    monkeypatch.setenv("FAKE_VLLM_FAIL_MATCH", demo.WORDS[8])  # one prompt that always fails
    vllm = create_engine("vllm", base, Engine(kind="vllm", vllm_executable=fake, startup_timeout_s=300, retries=2,
                                              concurrency=2), log_dir=tmp_path)
    vllm.add_adapter("a", adapters["a"])
    local = create_engine("hf", base, Engine())
    local.add_adapter("a", adapters["a"])
    template = "{% for m in messages %}Human: {{ m['content'] }}\nAssistant:{% endfor %}"
    chat = [Prompt(p.messages, chat_template=template) for p in PROMPTS]
    try:
        with pytest.raises(GenerationError, match="1 of 5 requests") as err:
            vllm.generate(chat, "a", PARAMS)
        expected = local.generate(chat, "a", PARAMS)
        assert err.value.outputs == [None if i == 2 else e for i, e in enumerate(expected)]
        ok = [p for i, p in enumerate(PROMPTS) if i != 2]
        assert vllm.generate(ok, None, PARAMS) == local.generate(ok, None, PARAMS)
    finally:
        vllm.close()


def engine_cfg(**settings):
    """An engine config with settings config.Engine may not declare yet (engine.merge_lora)."""
    import dataclasses
    import types

    return types.SimpleNamespace(**{**dataclasses.asdict(Engine()), **settings})


def test_merged_lora_answers_like_unmerged_and_unmerging_restores_the_base_weights_bit_for_bit(base, adapters):
    import torch

    merged = create_engine("hf", base, engine_cfg(merge_lora="auto"))
    plain = create_engine("hf", base, engine_cfg(merge_lora="never"))
    for engine in (merged, plain):
        for name, path in adapters.items():
            engine.add_adapter(name, path)
    before = {k: v.clone() for k, v in merged.model.state_dict().items()}
    base_answers = plain.generate(PROMPTS, None, PARAMS)
    for name in ("a", "b", "a"):  # b: LoRA merged, its lm_head copy (modules_to_save) served by peft as before
        assert merged.generate(PROMPTS, name, PARAMS) == plain.generate(PROMPTS, name, PARAMS)
        assert merged._merged is not None and merged._merged[0] == name and plain._merged is None
        assert merged.generate(PROMPTS, None, PARAMS) == base_answers
        assert merged._merged is None
        after = merged.model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
    assert merged.cache_identity("a")["merge_lora"] == "auto" and "merge_lora" not in plain.cache_identity("a")
    assert "merge_lora" not in merged.cache_identity(None)


def test_an_unknown_merge_lora_setting_names_the_choices(base):
    with pytest.raises(EngineError, match="engine.merge_lora 'always' is not one of auto, never"):
        create_engine("hf", base, engine_cfg(merge_lora="always"))


def test_the_preallocated_kv_cache_answers_like_transformers_own_cache(base, adapters, engine, monkeypatch):
    from pytest_ftgate.serve import hf

    ours = engine.generate(PROMPTS, "a", PARAMS)  # prompts of 2 to 9 words: left-padded batches
    longer = engine.generate(PROMPTS, None, GenParams(max_new_tokens=20))
    monkeypatch.setattr(hf, "_kv_cache", lambda config, length: {})
    assert engine.generate(PROMPTS, "a", PARAMS) == ours
    assert engine.generate(PROMPTS, None, GenParams(max_new_tokens=20)) == longer


def test_a_kv_cache_longer_than_planned_grows_and_keeps_its_values():
    import torch

    from pytest_ftgate.serve.hf import _buffered_layer

    layer = _buffered_layer()(2)
    steps = [torch.randn(2, 3, n, 4) for n in (2, 1, 3)]
    for k in steps:
        keys, values = layer.update(k, -k)
    assert torch.equal(keys, torch.cat(steps, dim=2)) and torch.equal(values, -keys)
    assert layer.get_seq_length() == 6


def test_w_times_x_linears_answer_like_stock_linears_and_survive_a_merge(base, adapters, monkeypatch):
    from pytest_ftgate.serve import hf

    monkeypatch.setattr(hf, "_WX_MIN", 1)  # the demo model's layers are narrower than the default's
    fast = create_engine("hf", base, engine_cfg(merge_lora="auto"))
    fast.start()
    monkeypatch.setattr(hf, "_wx_wanted", lambda device, dtype: False)
    plain = create_engine("hf", base, engine_cfg(merge_lora="auto"))
    for engine in (fast, plain):
        engine.add_adapter("a", adapters["a"])
    assert fast.generate(PROMPTS, None, PARAMS) == plain.generate(PROMPTS, None, PARAMS)
    assert fast.generate(PROMPTS, "a", PARAMS) == plain.generate(PROMPTS, "a", PARAMS)
    q = fast.model.base_model.model.model.layers[0].self_attn.q_proj  # merged: the wrapper is out of the tree
    assert fast._merged is not None and type(q).__name__ == "Linear" and "forward" in vars(q)
    assert "forward" not in vars(plain.model.base_model.model.model.layers[0].self_attn.q_proj)
    assert fast.cache_identity(None)["gemm"] == "w-xt"


def test_a_w_times_x_linear_gives_f_linears_values_with_and_without_bias():
    import torch

    from pytest_ftgate.serve import hf

    torch.manual_seed(0)
    assert hf._wx_linears(torch.nn.Sequential(torch.nn.Linear(512, 16), torch.nn.Linear(16, 512))) == 0  # LoRA A, B
    for bias in (False, True):
        layer = torch.nn.Linear(256, 300, bias=bias)
        x = torch.randn(3, 5, 256)
        want = layer(x)
        assert hf._wx_linears(torch.nn.Sequential(layer)) == 1
        got = layer(x)
        assert got.shape == want.shape and got.is_contiguous() and torch.allclose(got, want, atol=1e-6)
        assert hf._wx_linears(torch.nn.Sequential(layer)) == 0  # set once


def test_a_w_times_x_linears_sums_are_the_same_on_one_thread_and_on_two():
    import torch

    from pytest_ftgate.serve import hf

    torch.manual_seed(0)
    layer = torch.nn.Linear(512, 1376, bias=False)
    hf._wx_linears(torch.nn.Sequential(layer))
    threads = torch.get_num_threads()
    try:
        for rows in (1, 5, 16, 192):
            x = torch.randn(rows, 512)
            torch.set_num_threads(1)
            one = layer(x)
            torch.set_num_threads(2)
            assert torch.equal(layer(x), one), rows
    finally:
        torch.set_num_threads(threads)


def test_unmerging_puts_the_lora_wrappers_back_in_the_module_tree(base, adapters):
    from peft.tuners.lora.layer import LoraLayer

    engine = create_engine("hf", base, engine_cfg(merge_lora="auto"))
    engine.add_adapter("a", adapters["a"])
    wrappers = sum(isinstance(m, LoraLayer) for m in engine.model.modules())
    engine.generate(PROMPTS[:1], "a", PARAMS)
    assert engine._merged is not None and not any(isinstance(m, LoraLayer) for m in engine.model.modules())
    engine.generate(PROMPTS[:1], None, PARAMS)
    assert engine._merged is None and sum(isinstance(m, LoraLayer) for m in engine.model.modules()) == wrappers
