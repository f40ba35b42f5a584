"""Serving parity: the engine a release is served with answers like the engine that scored it.

With ``--ftgate-engine vllm`` the quality gates were answered by a real vLLM server; ``serving_parity`` asks that
server and the embedded hf engine (transformers + peft) the same sample of the test set, greedily, and blocks
when the answers differ (float32 on CPU must agree token for token; on a GPU the agreement rate is gated).
"""

import pytest

from pytest_ftgate import predict
from pytest_ftgate.serve import create_engine
from pytest_ftgate.serve.vllm import on_cpu
from pytest_ftgate.gates import serving


@pytest.mark.gate("serving_parity", name="serving_parity", severity="block")
def test_the_serving_engine_answers_like_the_hf_engine(engine, scorer, test_set, base_model, adapter, ft_run, gate,
                                                       ftgate_config):
    e = ftgate_config.engine
    if engine.kind == "hf":
        pytest.skip("the engine is hf, the one the gates are scored with: nothing to compare "
                    "(run with --ftgate-engine vllm to check the server you deploy)")
    picked = serving.sample_positions(len(scorer.prompts), e.parity_samples)
    prompts = [scorer.prompts[i] for i in picked]
    name = predict.adapter_name(ft_run.run_id)
    served = engine.generate(prompts, name, scorer.params)
    with create_engine("hf", base_model, e, trust_remote_code=ftgate_config.audit.trust_remote_code,
                       allow_pickle=True) as hf:  # adapter_format gates the file format
        hf.add_adapter(name, adapter)
        reference = hf.generate(prompts, name, scorer.params)
        tokenize = lambda text: [hf.tokenizer.decode([t]) for t in hf.tokenizer.encode(text, add_special_tokens=False)]
        min_agreement = 1.0 if on_cpu() else e.parity_min_agreement_gpu
        check = serving.serving_parity(served, reference, [test_set.samples[i].index for i in picked],
                                      engine=engine.kind, min_agreement=min_agreement, tokenize=tokenize)
    check.details["engine"] = engine.describe()  # command, URL and port, log file: the report's engine section
    gate.check(check)
