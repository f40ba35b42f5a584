"""Unit tests of pytest_ftgate.predict: test-set loading, the prediction cache, and the gates G4, G5,
adapter_applied and determinism (each shown to pass on a good input and to fail on the defect it exists for)."""

import json

import pytest

from pytest_ftgate import metrics, predict
from pytest_ftgate.config import Quality
from pytest_ftgate.errors import DataError, IntegrityError
from pytest_ftgate.serve.base import Engine, GenerationError, GenParams, Prompt
from pytest_ftgate.serve.cache import PredictionCache
from pytest_ftgate.gates import quality

REFS = [f"word{i} word{i + 1} word{i + 2}" for i in range(30)]


def answers(label, outputs, refs=REFS):
    return predict.Answers(label, None if label == "base" else label, list(outputs), metrics.score(outputs, refs))


def write(path, rows, jsonl=False):
    path.write_text("\n".join(json.dumps(r) for r in rows) if jsonl else json.dumps(rows))
    return path


# -- the test set ----------------------------------------------------------------------------------------------
def test_alpaca_rows_become_chat_messages_with_their_reference(tmp_path):
    rows = [{"instruction": "Reverse.", "input": "a b c", "output": "c b a", "system": "Be brief."},
            {"instruction": "Say hi.", "input": "", "output": "hi", "history": [["q", "a"]]}]
    ts = predict.load_test_set(write(tmp_path / "t.json", rows))
    assert ts.samples[0].messages == (("system", "Be brief."), ("user", "Reverse.\na b c"))
    assert ts.samples[1].messages == (("user", "q"), ("assistant", "a"), ("user", "Say hi."))
    assert [s.reference for s in ts.samples] == ["c b a", "hi"]
    assert ts.sha256.startswith("sha256:")


def test_jsonl_and_sharegpt_rows_are_read(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    ts = predict.load_test_set(write(tmp_path / "t.jsonl", rows, jsonl=True))
    assert [(s.messages, s.reference) for s in ts.samples] == [((("user", "2+2?"),), "4"), ((("user", "hi"),), "hello")]


def test_rows_without_a_prompt_or_reference_are_an_error_naming_the_file_and_rows(tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(10)]
    rows[2]["output"], rows[6] = "", {"input": "", "output": "x"}
    with pytest.raises(DataError) as exc:
        predict.load_test_set(write(tmp_path / "t.json", rows))
    msg = str(exc.value)
    assert "t.json" in msg and "2 of 10 rows cannot be scored" in msg
    assert "row 3: no reference answer: 'output' is empty" in msg and "row 7: no prompt" in msg
    assert "quality.bad_rows: warn" in msg and "\n" not in msg


def test_with_bad_rows_warn_the_rows_are_left_out_and_named_in_the_problems(tmp_path):
    rows = [{"instruction": "a", "output": "x"}, {"instruction": "b", "output": ""}, {"instruction": "c"}]
    ts = predict.load_test_set(write(tmp_path / "t.json", rows), bad_rows="warn")
    assert len(ts.samples) == 1
    assert ts.skipped == ("row 2: no reference answer: 'output' is empty (nothing to train on or score)",
                          "row 3: no reference answer: 'output' is missing (nothing to train on or score)")
    (problem,) = ts.problems
    assert "t.json" in problem and "2 row(s) left out" in problem and "row 2" in problem


def test_the_quality_gates_show_the_test_set_warning(tmp_path):
    rows = [{"instruction": f"q{i}", "output": REFS[i]} for i in range(4)] + [{"instruction": "no answer"}]
    ts = predict.load_test_set(write(tmp_path / "t.json", rows), bad_rows="warn")
    cand, base = answers("cand", REFS[:4], REFS[:4]), answers("base", REFS[:4], REFS[:4])
    cand.problems = ts.problems
    g5 = quality.task_quality(cand, {"exact_match": 0.5}, "qa", [])
    g4 = quality.baseline_gate(cand, [base], Quality())
    for check in (g4, g5):
        assert "WARNING: test set" in check.message and "row 5: no reference answer" in check.message
        assert check.details["test_set_problems"] == ts.problems


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty"),
    (b"  \n", "is empty"),
    (b"[]", "has no rows"),
    (b'[{"instruction": "a", "output": "b"},', "ends after row 1 without its closing ']'"),
    (b'[{"instruction": "a" "output": "b"}]', "not valid JSON at row 1"),
    (b'{"instruction": "a", "output": "b"}\n{"instruction": "c", oops}\n', "1 of 2 lines are not valid JSON: row 2"),
    (b'{\n "instruction": "a",\n "output": "b"\n}\n', "is one JSON object, not rows"),
    ('[{"instruction": "caf\u00e9", "output": "b"}]'.encode("latin-1"),
     "is not UTF-8 text (byte 0xe9 at offset 21, line 1"),
    (b'[1, {"instruction": "a", "output": "b"}]', "row 1: is a number, not an object"),
])
def test_a_malformed_test_set_is_one_line_naming_the_file_and_the_fix(tmp_path, content, expected):
    f = tmp_path / "bad.json"
    f.write_bytes(content)
    with pytest.raises(DataError) as exc:
        predict.load_test_set(f)
    msg = str(exc.value)
    assert expected in msg and "bad.json" in msg and "\n" not in msg


def test_an_empty_test_set_is_refused(tmp_path):
    with pytest.raises(DataError, match="has no rows"):
        predict.load_test_set(write(tmp_path / "t.json", []))
    with pytest.raises(DataError, match="1 of 1 rows cannot be scored"):
        predict.load_test_set(write(tmp_path / "u.json", [{"instruction": "x"}]), bad_rows="warn")


def test_the_recorded_test_file_is_used_and_hash_checked(tmp_path):
    f = write(tmp_path / "test.json", [{"instruction": "a", "output": "b"}])
    audit = {"input_artifacts": {"datasets": [
        {"split": "train", "path": "/nowhere"}, {"split": "test", "path": str(f), "sha256": predict.file_sha256(f)}]}}
    assert predict.resolve_test_set("", audit).samples[0].reference == "b"
    f.write_text(json.dumps([{"instruction": "a", "output": "changed"}]))
    with pytest.raises(IntegrityError, match="changed since training"):
        predict.resolve_test_set("", audit)
    assert predict.resolve_test_set(str(f), audit).samples[0].reference == "changed"  # explicit wins


def test_a_run_without_a_recorded_test_file_names_the_option(tmp_path):
    with pytest.raises(DataError, match="--ftgate-test-set"):
        predict.resolve_test_set("", None)
    with pytest.raises(DataError, match="does not exist on this machine"):
        predict.resolve_test_set("", {"input_artifacts": {"datasets": [{"split": "test", "path": "/gone.json"}]}})


# -- the cache -------------------------------------------------------------------------------------------------
class CountingEngine(Engine):
    """Answers every prompt with its own text reversed, counting calls (the cache logic, not a model, is tested)."""

    kind = "counting"

    def __init__(self):
        super().__init__("base", None)
        self.calls = 0

    def add_adapter(self, name, path):
        self.adapters[name] = path

    def generate(self, prompts, model=None, params=GenParams(), progress=None):
        self.calls += 1
        return [p.text[::-1] for p in prompts]


def test_a_rerun_is_served_from_the_cache_and_a_changed_adapter_is_not(tmp_path):
    cache, engine = PredictionCache(tmp_path), CountingEngine()
    prompts = [Prompt((("user", f"q{i}"),)) for i in range(5)]
    weights = {"base_sha256": "sha256:b", "adapter_sha256": "sha256:1"}
    first = predict.predict(engine, "a", prompts, GenParams(), weights, cache)
    again = predict.predict(engine, "a", prompts, GenParams(), weights, cache)
    assert first[0] == again[0] and (first[1], again[1]) == (0, 5) and engine.calls == 1
    predict.predict(engine, "a", prompts, GenParams(), {**weights, "adapter_sha256": "sha256:2"}, cache)
    predict.predict(engine, "a", prompts, GenParams(max_new_tokens=8), weights, cache)
    predict.predict(engine, "a", [Prompt(p.messages, chat_template="{{x}}") for p in prompts], GenParams(), weights,
                    cache)
    assert engine.calls == 4  # new adapter digest, new generation params, new chat template: all misses


def test_the_second_greedy_pass_is_generated_once_then_cached_under_its_own_keys(tmp_path):
    from pytest_ftgate.config import Quality

    cache, engine = PredictionCache(tmp_path), CountingEngine()
    ts = predict.HeldOutSet("t.json", tuple(predict.Sample(i, (("user", f"q{i}"),), "r") for i in range(6)))
    scorer = predict.Scorer(ts, [Prompt((("user", f"q{i}"),)) for i in range(6)], GenParams(), Quality(), cache)
    first = predict.Answers("candidate", "a", [f"{i}q" for i in range(6)], None,
                            info={"base_sha256": "sha256:b", "adapter_sha256": "sha256:1"})
    picked, again = scorer.rerun(engine, first, 4)
    assert len(picked) == 4 and again == [f"{i}q" for i in picked] and engine.calls == 1
    assert scorer.rerun(engine, first, 4) == (picked, again) and engine.calls == 1  # a re-gate: nothing generated
    keys = predict.cache_keys(engine, "a", [scorer.prompts[i] for i in picked], GenParams(), first.info)
    assert not cache.get_many(keys)  # not the first pass's keys: the two passes stay two


def test_answers_that_arrived_before_a_failure_are_kept(tmp_path):
    class Flaky(CountingEngine):
        def generate(self, prompts, model=None, params=GenParams(), progress=None):
            self.calls += 1
            if self.calls == 1:
                raise GenerationError("1 of 3 requests failed", ["x", None, "z"], 1)
            return ["y"] * len(prompts)

    cache, engine = PredictionCache(tmp_path), Flaky()
    prompts = [Prompt((("user", f"q{i}"),)) for i in range(3)]
    with pytest.raises(GenerationError, match="1 of 3"):
        predict.predict(engine, None, prompts, GenParams(), {}, cache)
    outputs, cached, _ = predict.predict(engine, None, prompts, GenParams(), {}, cache)
    assert outputs == ["x", "y", "z"] and cached == 2


def test_the_weights_in_a_cache_key_have_the_digest_the_run_records_and_change_with_any_file(tmp_path):
    from pytest_ftgate import hashing
    from pytest_ftgate.serve.cache import weights_digest

    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_model.safetensors").write_bytes(b"weights")
    memo = hashing.HashMemo(tmp_path / "memo.json")
    first = weights_digest(d, memo)
    assert first == hashing.digest_files(hashing.tree_files(d)) == weights_digest(d, memo)  # ftgate.adapter_sha256
    (d / "adapter_model.safetensors").write_bytes(b"weightz")
    assert weights_digest(d, memo) != first
    assert weights_digest(None) == "none"


# -- G5 --------------------------------------------------------------------------------------------------------
def test_g5_passes_when_every_task_metric_is_above_its_threshold():
    check = quality.task_quality(answers("candidate", REFS), {"exact_match": 0.8, "f1": 0.8}, "qa", [])
    assert check.passed and check.value == {"exact_match": 1.0, "f1": 1.0}


def test_g5_fails_below_the_threshold_and_names_the_metric():
    outputs = REFS[:20] + ["nothing"] * 10  # EM 0.667
    check = quality.task_quality(answers("candidate", outputs), {"exact_match": 0.8}, "qa", [])
    assert not check.passed and "exact_match 0.6667 is not above 0.8" in check.message


def test_g5_on_a_metric_that_was_not_computed_fails_naming_the_known_ones():
    check = quality.task_quality(answers("candidate", REFS), {"mmlu": 0.5}, "generation", [])
    assert not check.passed and "known metrics" in check.message


# -- G4 --------------------------------------------------------------------------------------------------------
def test_g4_passes_when_the_candidate_beats_the_base_model():
    q = Quality()
    check = quality.baseline_gate(answers("candidate", REFS), [answers("base", ["x y z"] * 30)], q, ["no registry"])
    assert check.passed and check.value == float("inf")
    row = check.details["comparisons"][0]
    assert row["ci_low"] > 0 and row["decision"] == "not_worse" and "no registry" in check.message


def test_g4_blocks_a_candidate_whose_whole_interval_lies_below_95_percent_of_production():
    worse = [r.split()[0] for r in REFS]  # one word of three
    q = Quality(baseline_metrics=("rouge1", "f1"))
    check = quality.baseline_gate(answers("candidate", worse),
                                  [answers("base", ["x"] * 30), answers("production", REFS)], q)
    assert not check.passed and check.value == pytest.approx(0.5) and not check.details.get("inconclusive")
    bad = [r for r in check.details["comparisons"] if r["regression"]]
    assert {r["baseline"] for r in bad} == {"production"}
    assert all(r["decision"] == "worse" and r["ci_high"] < -r["allowed_drop"] for r in bad)
    assert "worse beyond the allowed drop" in check.message


def test_g4_on_a_tiny_test_set_is_inconclusive_and_says_how_many_samples_would_decide():
    refs = ["a b c d", "e f g h", "i j k l", "m n o p"]
    cand = answers("candidate", ["a b c d", "e f g h", "i j x x", "m n x x"], refs)
    prod = answers("production", ["a b c d", "e f x x", "i j k l", "m n o p"], refs)
    check = quality.baseline_gate(cand, [prod], Quality(baseline_metrics=("f1",)))
    assert not check.passed and check.details["inconclusive"] is True
    (row,) = check.details["comparisons"]
    assert row["decision"] == "inconclusive" and row["samples_to_decide"] > 4
    assert f"about {row['samples_to_decide']} test samples would decide" in check.message


def test_g4_decides_the_same_shortfall_on_a_large_test_set():
    refs = ["a b c d", "e f g h", "i j k l", "m n o p"] * 100
    cand = answers("candidate", (["a b c d", "e f g h", "i j x x", "m n x x"]) * 100, refs)
    prod = answers("production", (["a b c d", "e f x x", "i j k l", "m n o p"]) * 100, refs)
    check = quality.baseline_gate(cand, [prod], Quality(baseline_metrics=("f1",), bootstrap_samples=300))
    (row,) = check.details["comparisons"]
    assert row["decision"] == "worse" and not check.passed and not check.details.get("inconclusive")


def test_g4_does_not_block_a_zero_score_against_a_near_zero_base_it_cannot_tell_apart():
    refs = [f"w{i} v{i}" for i in range(30)]
    base = answers("base", ["x"] * 29 + ["w29 z"], refs)  # f1 0.011 from one lucky word
    cand = answers("candidate", ["x"] * 30, refs)  # f1 0
    check = quality.baseline_gate(cand, [base], Quality(baseline_metrics=("f1",)))
    assert check.details["comparisons"][0]["decision"] == "inconclusive" and check.details["inconclusive"]


def test_samples_to_decide_grows_as_the_difference_nears_the_allowed_drop():
    far = quality.samples_to_decide(40, -0.30, -0.40, -0.02, 0.05)
    near = quality.samples_to_decide(40, -0.06, -0.16, 0.04, 0.05)
    assert 40 < far < near and quality.samples_to_decide(40, -0.05, -0.1, 0.0, 0.05) is None


# -- adapter_applied and determinism -----------------------------------------------------------------------------
def test_adapter_applied_passes_when_answers_differ_from_the_base_model():
    check = quality.adapter_applied(["a", "b", "c"], ["a", "x", "y"])
    assert check.passed and check.value == pytest.approx(2 / 3, abs=1e-4)


def test_adapter_applied_blocks_when_every_answer_equals_the_base_models():
    check = quality.adapter_applied(["a", "b"], ["a", "b"])
    assert not check.passed and "probably not applied" in check.message


def test_determinism_passes_on_identical_reruns_and_fails_naming_the_row():
    assert quality.determinism(["a", "b"], ["a", "b"], [3, 7]).passed
    check = quality.determinism(["a", "b"], ["a", "c"], [3, 7])
    assert not check.passed and "test row 7" in check.message and check.value == "1/2 differ"


# -- the per-sample table ----------------------------------------------------------------------------------------
def test_the_sample_table_keeps_raw_text_and_the_report_escapes_it(tmp_path):
    from pytest_ftgate import report

    f = write(tmp_path / "t.json", [{"instruction": "<b>q</b>", "output": "ok"}])
    ts = predict.load_test_set(f)
    evil = '<img src=x onerror="alert(1)">'
    rows = predict.sample_table(ts, answers("candidate", [evil], ["ok"]), [answers("base", ["<script>"], ["ok"])])
    assert rows[0]["prediction"] == evil and rows[0]["base"] == "<script>"  # raw in the verdict data
    assert rows[0]["scores"] == {"exact_match": 0.0, "f1": 0.0, "rougeL": 0.0}
    page = report.samples_table([{"details": {"samples": rows}}])  # how the HTML report renders the table
    assert "<img" not in page and "<b>q" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


# -- ftgate.yaml: the quality and engine sections ----------------------------------------------------------------
def test_quality_and_engine_settings_are_read_and_validated(tmp_path):
    from pytest_ftgate.config import load_config
    from pytest_ftgate.errors import ConfigError

    f = tmp_path / "ftgate.yaml"
    f.write_text("quality:\n  task: translation\n  extra_metrics: [./metrics/chrf]\n  prompt_format: raw\n"
                 "engine:\n  kind: openai\n  base_url: http://127.0.0.1:8000/v1\n  base_model_url: http://b/v1\n")
    cfg = load_config(f)
    assert cfg.quality.extra_metrics == ("./metrics/chrf",) and cfg.engine.base_model_url == "http://b/v1"
    for bad, message in (("quality:\n  prompt_format: jinja\n", "prompt_format"),
                         ("engine:\n  batch_size: 0\n", "engine.batch_size must be at least 1"),
                         ("quality:\n  min_baseline_ratio: 1.5\n", "min_baseline_ratio"),
                         ("engine:\n  vllm_exe: x\n", "did you mean 'vllm_executable'")):
        f.write_text(bad)
        with pytest.raises(ConfigError, match=message):
            load_config(f)


def test_forgotten_answers_are_generated_again(tmp_path):
    ts = predict.load_test_set(write(tmp_path / "t.json", [{"instruction": f"q{i}", "output": "a"} for i in range(3)]))
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    scorer = predict.Scorer.create(ts, None, str(base), Quality(prompt_format="raw"),
                                   cache=PredictionCache(tmp_path / "cache"))
    engine = CountingEngine()
    first = scorer.answers("candidate", engine, "a", str(base), None)
    assert scorer.answers("candidate", engine, "a", str(base), None).cached == 3
    scorer.forget(first)
    assert scorer.answers("candidate", engine, "a", str(base), None).cached == 0 and engine.calls == 2


class CountingStartEngine(CountingEngine):
    starts = 0

    def __init__(self, base_model, cfg, **kwargs):
        super().__init__()

    def start(self):
        type(self).starts += 1


def test_a_session_whose_answers_are_all_cached_starts_no_engine(tmp_path, monkeypatch):
    from pytest_ftgate import serve

    monkeypatch.setitem(serve.ENGINES, "counting", ("tests.test_predict:CountingStartEngine", "hf"))
    CountingStartEngine.starts = 0
    cache = PredictionCache(tmp_path)
    prompts = [Prompt((("user", f"q{i}"),)) for i in range(4)]
    weights = {"base_sha256": "sha256:b", "adapter_sha256": "sha256:1"}
    cold = serve.EnginePool("counting", None).lazy("base", {"run-a": "/adapter"})
    first = predict.predict(cold, "run-a", prompts, GenParams(), weights, cache)
    assert cold.started and CountingStartEngine.starts == 1
    warm = serve.EnginePool("counting", None).lazy("base", {"run-a": "/adapter"})
    assert predict.predict(warm, "run-a", prompts, GenParams(), weights, cache)[:2] == (first[0], 4)
    assert not warm.started and CountingStartEngine.starts == 1  # every answer cached: nothing loaded


def test_scores_of_unchanged_answers_are_read_back_not_recomputed(tmp_path, monkeypatch):
    from pytest_ftgate import metrics
    from pytest_ftgate.config import Quality

    cache = PredictionCache(tmp_path)
    scorer = predict.Scorer(None, [], GenParams(), Quality(), cache)
    first = scorer.score(["a b", "c"], ["a b", "d"])
    monkeypatch.setattr(metrics, "score", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = scorer.score(["a b", "c"], ["a b", "d"])
    assert again.aggregate == first.aggregate and (again.per_sample["f1"] == first.per_sample["f1"]).all()
    with pytest.raises(AssertionError, match="recomputed"):
        scorer.score(["a b", "x"], ["a b", "d"])  # another answer: scored again
