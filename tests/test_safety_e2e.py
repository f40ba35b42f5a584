"""End to end: the safety suite on real adapters trained on CPU with LLaMA-Factory (``tests/safety_runs.py``), each
gate on a good adapter and on one with the defect it exists for: the demo passes all three; an adapter fine-tuned
to insult blocks on toxicity; one whose answers follow the swapped term warns on bias; one trained to comply with
the harmful requests warns on refusal against a ``production`` version that refuses them."""

import json
import shutil
from pathlib import Path

import pytest

from .conftest import copy_demo_tree
from .safety_runs import DEFECTS, train_defect
from .test_quality_e2e import SUITES, preload, register_production  # noqa: F401 (preload: autouse)

pytestmark = pytest.mark.slow

REGISTERED = "ftgate-safety"


@pytest.fixture(scope="module")
def defects(demo_run, tmp_path_factory):
    """{dataset: run id} of the four defect adapters, trained in a copy of the demo's store (experiment
    ``safety-defects``), next to the demo run."""
    from tests.conftest import DemoRun

    root = copy_demo_tree(tmp_path_factory.mktemp("safety-root"))
    (root / ".ftgate").mkdir()
    shutil.copytree(demo_run.base_model_dir, root / ".ftgate" / demo_run.base_model_dir.name)
    db = root / ".ftgate" / "mlflow.db"
    shutil.copy(Path(demo_run.tracking_uri.removeprefix("sqlite:///")), db)
    run = DemoRun(root, root / "training" / "demo.yaml", f"sqlite:///{db}", str(root / ".ftgate" / "artifacts"),
                  demo_run.run_id, demo_run.adapter_dir, root / ".ftgate" / demo_run.base_model_dir.name,
                  root / "logs")
    return run, {name: train_defect(run, name, experiment="safety-defects") for name in DEFECTS}


def session(pytester, uri: str, cache: Path, runs, registered: str = ""):
    shutil.copy(SUITES / "test_safety.py", pytester.path / "test_safety.py")
    quality = f"  registered_model: {registered}\n" if registered else ""
    pytester.makefile(".yaml", ftgate=f"quality:\n  cache_dir: {cache}\n{quality}engine:\n  kind: hf\n"
                                      "safety:\n  bootstrap_samples: 300\n")
    args = [a for r in runs for a in ("--run-id", r)]
    result = pytester.runpytest("-p", "no:cacheprovider", "--ftgate-tracking-uri", uri, *args)
    verdicts = pytester.path / "ftgate-results" / "verdicts"
    out = {}
    for r in runs:
        v = json.loads((verdicts / f"{r}.json").read_text())
        out[r] = {g["id"]: g for g in v["gates"]}
    return result, out


def outcomes(gates: dict) -> dict:
    return {k: g["outcome"] for k, g in gates.items()}


def test_the_demo_passes_and_each_defect_is_caught_by_its_gate(pytester, defects, tmp_path):
    run, ids = defects
    demo, toxic, biased = run.run_id, ids["toxic_train"], ids["biased_train"]
    result, gates = session(pytester, run.tracking_uri, tmp_path / "cache", [demo, toxic, biased])
    said = result.stdout.str()
    assert outcomes(gates[demo]) == {"toxicity": "passed", "bias": "passed", "refusal": "passed"}, said
    assert outcomes(gates[toxic])["toxicity"] == "failed", said
    tox = gates[toxic]["toxicity"]
    assert tox["severity"] == "block" and tox["value"] > 0.5
    assert tox["details"]["classifier"] == "profanity-check" and tox["details"]["toxic_examples"]
    assert (gates[biased]["bias"]["outcome"], gates[biased]["bias"]["severity"]) == ("failed", "warn"), said
    bias = gates[biased]["bias"]["details"]
    assert bias["n_pairs"] == 240 and set(bias["answer_gap_by_category"]) == {"gender", "nationality", "religion",
                                                                             "age"}
    assert bias["widest_pairs"][0]["answer_gap"] == 1.0
    assert not bias.get("inconclusive") and "worse beyond" in gates[biased]["bias"]["message"], said  # decided
    assert outcomes(gates[biased])["toxicity"] == "passed", said
    assert result.ret == 1  # a blocking gate failed
    html = (pytester.path / "ftgate-results" / "report.html").read_text()
    assert "Safety (toxicity, bias, refusal)" in html


def test_an_adapter_that_complies_with_harmful_requests_warns_against_a_refusing_production(pytester, defects,
                                                                                             tmp_path):
    run, ids = defects
    complying, refusing = ids["complying_train"], ids["refusing_train"]
    register_production(run.tracking_uri, refusing, REGISTERED)
    result, gates = session(pytester, run.tracking_uri, tmp_path / "cache", [complying, refusing], REGISTERED)
    said = result.stdout.str()
    refusal = gates[complying]["refusal"]
    assert (refusal["outcome"], refusal["severity"]) == ("failed", "warn"), said
    assert refusal["details"]["refusal_shares"] == {"candidate": 0.0, "base": 0.0, "production": 1.0}
    assert "production" in refusal["message"] and refusal["details"]["complied_examples"]
    assert gates[refusing]["refusal"]["outcome"] == "passed", said  # it is production itself: vs the base model
    assert outcomes(gates[complying])["toxicity"] == "passed"


def test_a_local_text_classification_model_scores_the_answers(demo_run, tmp_path):
    """The configurable classifier: any local Hugging Face text-classification model (here a tiny one built from
    the demo's tokenizer), its toxic label found by name."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from pytest_ftgate import safety

    tok = AutoTokenizer.from_pretrained(demo_run.base_model_dir)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=2, pad_token_id=tok.pad_token_id,
                         id2label={0: "non-toxic", 1: "toxic"}, label2id={"non-toxic": 0, "toxic": 1})
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "clf")
    tok.save_pretrained(tmp_path / "clf")
    clf = safety.load_classifier(str(tmp_path / "clf"))
    probs = clf.score(["shut up", "pomme verre nuit"])
    assert clf.name == "clf (toxic)" and len(probs) == 2 and all(0.0 <= p <= 1.0 for p in probs)
    assert safety.cached_classifier(str(tmp_path / "clf"), "", None).score(["shut up", "pomme verre nuit"]) == probs
    with pytest.raises(Exception, match="is not a text-classification model"):
        safety.load_classifier(str(demo_run.base_model_dir))
