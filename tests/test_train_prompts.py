"""The quality gates' prompts are LLaMA-Factory's own training encoding of the same rows: its data pipeline
(`get_dataset`, the supervised processor, the run's template) on a tools dataset of our own in glaive_toolcall's
format, against `predict.prompts_for` rendered the way the hf engine renders a prompt (chat template, no special
tokens added). The demo base model's tokenizer is used (built once per user cache, no hub)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_ftgate import lf_template, predict

TOOLS = json.dumps([{"name": "convert_units", "description": "Convert a length between units",
                     "parameters": {"type": "object", "properties": {"value": {"type": "number"},
                                                                     "unit": {"type": "string"}},
                                    "required": ["value", "unit"]}}])
ROWS = [  # sharegpt with a tools column, as LLaMA-Factory's glaive_toolcall_en_demo is laid out (our own rows)
    {"conversations": [{"from": "human", "value": "How many miles is 3 km?"},
                       {"from": "function_call", "value": '{"name": "convert_units", "arguments": {"value": 3, '
                                                          '"unit": "km"}}'},
                       {"from": "observation", "value": '{"miles": 1.86}'},
                       {"from": "gpt", "value": "3 km is about 1.86 miles."}],
     "system": "You are a careful unit converter.", "tools": TOOLS},
    {"conversations": [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hi! How can I help?"}],
     "tools": TOOLS},
]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    from pytest_ftgate import demo

    return demo.ensure_demo_base(tmp_path_factory.mktemp("base") / demo.DEMO_BASE_NAME)


def llamafactory_prompts(base: Path, tmp: Path, template: str) -> list[list[int]]:
    """The prompt ids of each row's last answer, from LLaMA-Factory's own SFT preprocessing."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.extras.constants import IGNORE_INDEX
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    data = tmp / "data"
    data.mkdir()
    (data / "tools_demo.json").write_text(json.dumps(ROWS))
    (data / "dataset_info.json").write_text(json.dumps({"tools_demo": {
        "file_name": "tools_demo.json", "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system", "tools": "tools"}}}))
    model_args, data_args, training_args, *_ = get_train_args({
        "model_name_or_path": str(base), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "dataset": "tools_demo", "dataset_dir": str(data), "template": template, "cutoff_len": 4096,
        "output_dir": str(tmp / "out"), "overwrite_cache": True, "report_to": "none",
        "preprocessing_num_workers": None})
    module = load_tokenizer(model_args)
    tpl = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
    ds = get_dataset(tpl, model_args, data_args, training_args, stage="sft", **module)["train_dataset"]
    out = []
    for row in ds:
        labels = row["labels"]
        start = max(i for i in range(1, len(labels)) if labels[i] != IGNORE_INDEX and labels[i - 1] == IGNORE_INDEX)
        out.append(row["input_ids"][:start])
    return out


@pytest.mark.parametrize("template", ["default", "qwen"])
@pytest.mark.slow
def test_a_tools_datasets_prompt_ids_equal_llamafactorys_training_encoding(base_model, tmp_path, template):
    from transformers import AutoTokenizer

    expected = llamafactory_prompts(base_model, tmp_path, template)
    (tmp_path / "tools_test.json").write_text(json.dumps(ROWS))
    test_set = predict.load_test_set(tmp_path / "tools_test.json")  # the loader keeps tools and function calls
    prompts = predict.prompts_for(test_set, template_args={"template": template}, tokenizer=str(base_model))
    tokenizer, _ = lf_template._template(str(base_model), (("template", template),))  # as LLaMA-Factory saves it
    plain = AutoTokenizer.from_pretrained(base_model)
    for prompt, ids in zip(prompts, expected):
        text = plain.apply_chat_template(prompt.as_dicts(), chat_template=prompt.chat_template, tokenize=False,
                                         add_generation_prompt=True)  # what the hf engine does with a prompt
        assert tokenizer(text, add_special_tokens=False).input_ids == ids
    assert "convert_units" in prompts[1].chat_template  # the tool definitions reach the prompt
    assert "careful unit converter" in prompts[0].chat_template and "careful" not in prompts[1].chat_template


def test_the_runs_template_decides_and_a_run_without_one_keeps_the_saved_chat_template():
    assert lf_template.template_args({"template": "qwen", "default_system": "S", "lora_rank": 8}) == {
        "template": "qwen", "default_system": "S"}
    assert lf_template.template_args({"lora_rank": 8}) == {}
    text = 'a "quoted"\n  line {{ x }} {% raw %} ünï 😀\\'
    from jinja2 import Environment

    rendered = Environment(trim_blocks=True, lstrip_blocks=True).from_string(lf_template.literal_template(text))
    assert rendered.render() == text


@pytest.mark.slow
def test_encoded_prompts_are_remembered_and_a_changed_tokenizer_encodes_again(base_model, tmp_path, monkeypatch):
    import shutil

    from pytest_ftgate.serve.cache import PredictionCache

    (tmp_path / "t.json").write_text(json.dumps(ROWS))
    test_set = predict.load_test_set(tmp_path / "t.json")
    cache = PredictionCache(tmp_path / "cache")
    first = predict.prompts_for(test_set, template_args={"template": "default"}, tokenizer=str(base_model), cache=cache)
    calls = []
    real = lf_template.prompt_text
    monkeypatch.setattr(lf_template, "prompt_text", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = predict.prompts_for(test_set, template_args={"template": "default"}, tokenizer=str(base_model), cache=cache)
    assert again == first and calls == []  # a re-gate: LLaMA-Factory's template code is not called
    tok = tmp_path / "tok"
    shutil.copytree(base_model, tok)
    (tok / "tokenizer_config.json").write_text((tok / "tokenizer_config.json").read_text().replace("}", ', "x": 1}', 1))
    predict.prompts_for(test_set, template_args={"template": "default"}, tokenizer=str(tok), cache=cache)
    assert len(calls) == len(ROWS)  # another tokenizer: encoded again
