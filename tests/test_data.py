"""Unit tests of the data checks (pure: files in a temp dir, no pytest plugin, no MLflow): schema per
dataset_info.json, streaming, leakage, duplicates. PII detectors: tests/test_data_pii.py."""

import json
import os
import threading
import tracemalloc

import pytest

from pytest_ftgate import data, jsonstream
from pytest_ftgate.errors import DataError
from pytest_ftgate.gates import data as data_gates


def alpaca(i, **over):
    return {"instruction": f"Reverse the order of the words.\nword{i} stone river", "input": "",
            "output": f"river stone word{i}", **over}


def sharegpt(i):
    return {"conversations": [{"from": "human", "value": f"Reverse: a{i} b c"}, {"from": "gpt", "value": f"c b a{i}"}]}


def write(path, rows, jsonl=False):
    if jsonl:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text(json.dumps(rows, indent=1))
    return path


def files(tmp_path, train, test=(), spec=None, test_spec=None, jsonl=False):
    spec = spec or data.DatasetSpec("train")
    out = [data.DataFile("train", "train", str(write(tmp_path / "train.json", train, jsonl)), spec)]
    if test:
        out.append(data.DataFile("test", "test", str(write(tmp_path / "test.json", test)),
                                 test_spec or data.DatasetSpec("test")))
    return out


# -- schema ---------------------------------------------------------------------------------------------
def test_valid_alpaca_and_sharegpt_rows_pass_the_schema_gate(tmp_path):
    sg = data.DatasetSpec("chat", "sharegpt")
    fs = files(tmp_path, [alpaca(i) for i in range(5)], [sharegpt(i) for i in range(3)], test_spec=sg)
    check = data_gates.schema_check(data.scan(fs))
    assert check.passed, check.message
    assert "all 8 rows valid" in check.message and "(sharegpt, 3 rows)" in check.message


def test_each_bad_alpaca_row_is_named_with_its_file_and_row(tmp_path):
    rows = [alpaca(0), {"instruction": "no answer"}, alpaca(2, output=""), ["not", "an", "object"],
            alpaca(4, instruction="", input=""), alpaca(5, input=7), alpaca(6)]
    check = data_gates.schema_check(data.scan(files(tmp_path, rows)))
    assert not check.passed and check.value == 5
    msg = check.message
    assert "train.json row 2: no reference answer: 'output' is missing" in msg
    assert "train.json row 3: no reference answer: 'output' is empty" in msg
    assert "train.json row 4: is an array, not an object" in msg
    assert "train.json row 5: no prompt: 'instruction' is empty" in msg
    assert "train.json row 6: 'input' is a number, not a string" in msg
    assert "row 1:" not in msg and "row 7:" not in msg


def test_an_instruction_with_an_empty_input_or_an_input_alone_is_a_valid_prompt(tmp_path):
    rows = [alpaca(0, input=""), alpaca(1, instruction="", input="context only"), alpaca(2, input=None)]
    assert data_gates.schema_check(data.scan(files(tmp_path, rows))).passed


def test_sharegpt_turns_must_alternate_and_come_in_pairs(tmp_path):
    spec = data.DatasetSpec("chat", "sharegpt")
    system_first = {"conversations": [{"from": "system", "value": "be brief"}, *sharegpt(9)["conversations"]]}
    rows = [sharegpt(0),
            {"conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "x"}]},
            {"conversations": [{"from": "human", "value": "only a question"}]},
            {"conversations": []},
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": " "}]},
            {"conversations": [{"from": "human"}, {"from": "gpt", "value": "a"}]},
            system_first]
    check = data_gates.schema_check(data.scan(files(tmp_path, rows, spec=spec)))
    assert not check.passed and check.value == 5
    assert "row 2: message 1 has role 'gpt' where 'human' or 'observation' is expected" in check.message
    assert "row 3: has 1 turns" in check.message
    assert "row 4: 'conversations' is empty" in check.message
    assert "row 5: the last 'gpt' message is empty" in check.message
    assert "row 6: message 1 needs string 'from' and 'value' fields" in check.message
    assert "row 7" not in check.message


def test_columns_and_tags_come_from_dataset_info(tmp_path):
    info = {"qa": {"file_name": "qa.json", "columns": {"prompt": "question", "query": "context", "response": "answer"}},
            "chat": {"file_name": "chat.json", "formatting": "sharegpt",
                     "columns": {"messages": "messages", "system": "sys"},
                     "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                              "assistant_tag": "assistant"}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    write(tmp_path / "qa.json", [{"question": "why?", "context": "", "answer": "because"},
                                 {"question": "how?", "output": "the default column is not used"}])
    write(tmp_path / "chat.json", [{"sys": "be kind", "messages": [{"role": "user", "content": "hi"},
                                                                   {"role": "assistant", "content": "hello"}]},
                                   {"sys": 3, "messages": [{"role": "user", "content": "hi"},
                                                           {"role": "assistant", "content": "hello"}]}])
    lineage = [{"name": "qa", "split": "train", "path": str(tmp_path / "qa.json"), "format": "alpaca"},
               {"name": "chat", "split": "validation", "path": str(tmp_path / "chat.json"), "format": "sharegpt"}]
    fs = data.from_lineage(lineage, str(tmp_path / "dataset_info.json"))
    check = data_gates.schema_check(data.scan(fs))
    assert check.value == 2, check.message
    assert "qa.json row 2: no reference answer: 'answer' is missing" in check.message
    assert "chat.json row 2: 'sys' is a number, not a string" in check.message


def test_a_bad_registration_in_dataset_info_fails_the_schema_gate(tmp_path):
    info = {"a": {"file_name": "a.json", "formatting": "chatml"},
            "b": {"file_name": "b.json", "columns": {"quest": "q"}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    for name in ("a", "b", "c"):
        write(tmp_path / f"{name}.json", [alpaca(0)])
    lineage = [{"name": n, "split": "train", "path": str(tmp_path / f"{n}.json")} for n in ("a", "b", "c")]
    check = data_gates.schema_check(data.scan(data.from_lineage(lineage, str(tmp_path / "dataset_info.json"))))
    assert not check.passed
    assert "a.formatting is 'chatml'; LLaMA-Factory reads alpaca, sharegpt, openai" in check.message
    assert "b.columns has unknown keys ['quest']" in check.message
    assert "dataset 'c' is not registered" in check.message


def test_a_missing_dataset_info_and_a_missing_data_file_are_named(tmp_path):
    lineage = [{"name": "gone", "split": "train", "path": str(tmp_path / "gone.json")}]
    scan = data.scan(data.from_lineage(lineage, str(tmp_path / "dataset_info.json")))
    check = data_gates.schema_check(scan)
    assert not check.passed
    assert "dataset_info.json not found" in check.message
    assert f"{tmp_path / 'gone.json'} does not exist" in check.message
    assert not data_gates.duplicates_check(scan, 0.05).passed


def test_a_run_test_set_option_replaces_the_recorded_test_split(tmp_path):
    lineage = [{"name": "t", "split": "train", "path": str(write(tmp_path / "t.json", [alpaca(0)]))},
               {"name": "old", "split": "test", "path": str(tmp_path / "old.json")}]
    fs = data.from_lineage(lineage, None, test_set=str(write(tmp_path / "held.json", [alpaca(1)])))
    assert [(f.name, f.split) for f in fs] == [("t", "train"), ("held", "test")]


# -- streaming ------------------------------------------------------------------------------------------
def test_a_json_array_parsed_in_tiny_chunks_equals_json_load(tmp_path, monkeypatch):
    rows = [alpaca(i, output=f"zażółć \"gęślą\" \\ jaźń {i} \u2028 🙂", score=12345.678 * i, tags=[1, [2, {}]])
            for i in range(40)]
    path = write(tmp_path / "rows.json", rows)
    path.write_text("\ufeff \n" + path.read_text(), encoding="utf-8")
    for chunk in (1, 3, 7, 64):
        monkeypatch.setattr(jsonstream, "CHUNK", chunk)
        assert [v for _, v, _ in jsonstream.iter_rows(path)] == rows
    assert [r for r, _, _ in jsonstream.iter_rows(path)] == list(range(1, 41))
    (tmp_path / "empty.json").write_text(" [ ] ")
    assert list(jsonstream.iter_rows(tmp_path / "empty.json")) == []


def test_a_truncated_json_array_names_the_file_and_the_row_where_it_breaks(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonstream, "CHUNK", 100)
    path = tmp_path / "cut.json"
    text = json.dumps([alpaca(i) for i in range(10)])
    path.write_text(text[: text.index("word7")])
    with pytest.raises(DataError, match=r"cut.json: not valid JSON at row 8 .*rows after 7 cannot be read"):
        list(jsonstream.iter_rows(path))
    path.write_text(text[:-1])
    with pytest.raises(DataError, match=r"ends after row 10 without its closing"):
        list(jsonstream.iter_rows(path))
    path.write_text(text.replace("}, {", "} {", 1))
    with pytest.raises(DataError, match=r"after row 1 .*expected ',' or ']'"):
        list(jsonstream.iter_rows(path))


def test_a_broken_json_lines_row_is_reported_and_the_next_rows_are_still_read(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(alpaca(0)) + "\n\n{broken\n" + json.dumps(alpaca(3)) + "\n")
    assert [(r, p != "") for r, _, p in jsonstream.iter_rows(path)] == [(1, False), (3, True), (4, False)]
    fs = [data.DataFile("t", "train", str(path), data.DatasetSpec("t"))]
    check = data_gates.schema_check(data.scan(fs))
    assert check.value == 1 and "rows.jsonl row 3: is not valid JSON" in check.message


def test_a_row_larger_than_the_limit_is_refused_instead_of_buffered(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonstream, "CHUNK", 64)
    monkeypatch.setattr(jsonstream, "MAX_ROW_CHARS", 1000)
    path = write(tmp_path / "big.json", [alpaca(0), alpaca(1, output="x" * 5000)])
    with pytest.raises(DataError, match="row 2 .*over 1000 characters"):
        list(jsonstream.iter_rows(path))


@pytest.mark.slow
def test_streaming_a_json_array_holds_a_few_chunks_not_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonstream, "CHUNK", 1 << 16)
    path = tmp_path / "large.json"
    with open(path, "w") as f:
        f.write("[")
        for i in range(60_000):
            f.write(("," if i else "") + json.dumps(alpaca(i, input="context " * 20)))
        f.write("]")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        n = sum(1 for _ in jsonstream.iter_rows(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 60_000 and size > 15e6
    assert peak < 1e6, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file read in 64 KiB chunks"


# -- leakage and duplicates -----------------------------------------------------------------------------
def test_test_prompts_in_the_training_data_are_found_exactly_and_after_normalisation(tmp_path):
    train = [alpaca(i) for i in range(50)]
    test = [alpaca(7), alpaca(8, instruction="  REVERSE the order of the words!!\nWORD8   stone, river."),
            alpaca(100), alpaca(101)]
    scan = data.scan(files(tmp_path, train, test))
    check = data_gates.leakage_check(scan, 0.0)
    assert not check.passed and check.value == 0.5
    assert "2 of 4 test prompts (50.0%) appear in the training data (1 exactly, 1 after normalising" in check.message
    assert "test.json row 1 = train.json row 8" in check.message
    assert "test.json row 2 = train.json row 9" in check.message
    assert data_gates.leakage_check(scan, 0.5).passed


def test_clean_splits_pass_the_leakage_gate_and_a_missing_test_split_fails_it(tmp_path):
    scan = data.scan(files(tmp_path, [alpaca(i) for i in range(20)], [alpaca(i) for i in range(20, 30)]))
    assert data_gates.leakage_check(scan, 0.0).passed
    no_test = data_gates.leakage_check(data.scan(files(tmp_path, [alpaca(0)])), 0.0)
    assert not no_test.passed and "no test split" in no_test.message


def test_the_share_of_duplicated_training_rows_is_measured_and_named(tmp_path):
    train = [alpaca(i) for i in range(90)] + [alpaca(i) for i in range(5)] + [alpaca(1, output="RIVER stone, word1!")]
    check = data_gates.duplicates_check(data.scan(files(tmp_path, train)), 0.05)
    assert not check.passed and check.value == pytest.approx(6 / 96)
    assert "6 of 96 training rows (6.2%) repeat an earlier row" in check.message
    assert "train.json row 91 = row 1" in check.message
    assert data_gates.duplicates_check(data.scan(files(tmp_path, train)), 0.1).passed


def test_rows_with_the_same_prompt_but_different_answers_are_not_duplicates(tmp_path):
    train = [alpaca(0), alpaca(0, output="another answer")]
    assert data.scan(files(tmp_path, train)).duplicate_rows == 0


def test_json_lines_and_a_folder_of_files_are_scanned_alike(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    write(folder / "a.jsonl", [alpaca(i) for i in range(3)], jsonl=True)
    write(folder / "b.json", [alpaca(i) for i in range(3, 6)] + [alpaca(0)])
    scan = data.scan([data.DataFile("parts", "train", str(folder), data.DatasetSpec("parts"))])
    assert [(f.path.endswith(("a.jsonl", "b.json")), f.rows) for f in scan.files] == [(True, 3), (True, 4)]
    assert scan.duplicate_examples == [((str(folder / "b.json"), 4), (str(folder / "a.jsonl"), 1))]
    assert "b.json row 4 = row 1 of a.jsonl" in data_gates.duplicates_check(scan, 0.0).message


def test_the_duplicates_listed_are_the_first_in_scan_order_each_with_its_first_copy(tmp_path):
    train = [alpaca(i) for i in range(10)] + [alpaca(5), alpaca(2), alpaca(7), alpaca(2)]
    scan = data.scan(files(tmp_path, train), max_listed=3)
    path = str(tmp_path / "train.json")
    assert scan.duplicate_rows == 4 and scan.train_rows == 14
    assert scan.duplicate_examples == [((path, 11), (path, 6)), ((path, 12), (path, 3)), ((path, 13), (path, 8))]


def filled_index():
    """A duplicate index of 3,000 rows, 700 distinct, added 50 at a time (as a scan's parts come)."""
    from array import array

    index = data._Duplicates()
    index.tag(0, "train.json")
    for start in range(0, 3000, 50):
        rows = range(start + 1, start + 51)
        index.add(0, array("q", [hash(r % 700) for r in rows]), array("Q", rows))
        assert len(index.hashes) < data.SPILL_ROWS or index.unwritable
    return index


def test_the_duplicate_index_holds_a_bounded_number_of_rows_in_memory(monkeypatch):
    expected = filled_index().result(20)
    monkeypatch.setattr(data, "SPILL_ROWS", 128)
    spilled = filled_index()
    try:
        assert spilled.runs and spilled.result(20) == expected
        assert expected[:2] == (3000, 2300) and expected[2][0] == (("train.json", 701), ("train.json", 1))
    finally:
        spilled.close()
    assert spilled.dir is None


def test_a_duplicate_index_that_cannot_spill_keeps_its_rows_in_memory(monkeypatch):
    expected = filled_index().result(20)
    monkeypatch.setattr(data, "SPILL_ROWS", 128)
    write = data._Duplicates._write

    def full_after_one(self, path):
        if self.runs:
            raise OSError(28, "No space left on device")
        write(self, path)
    monkeypatch.setattr(data._Duplicates, "_write", full_after_one)
    index = filled_index()
    try:
        assert index.unwritable and len(index.runs) == 1 and len(index.hashes) > 2000
        assert index.result(20) == expected
    finally:
        index.close()


def test_a_scan_that_spills_its_duplicate_index_finds_what_one_in_memory_finds(tmp_path, monkeypatch):
    folder = tmp_path / "parts"
    folder.mkdir()
    write(folder / "a.jsonl", mixed_rows(1500), jsonl=True)
    write(folder / "b.json", mixed_rows(900) + [alpaca(i, input="only once") for i in range(300)])
    dfs = [data.DataFile("parts", "train", str(folder), data.DatasetSpec("parts"))]
    in_memory = scan_dict(data.scan(dfs))
    made = []
    mkdtemp = data.tempfile.mkdtemp
    monkeypatch.setattr(data.tempfile, "mkdtemp", lambda **kw: made.append(mkdtemp(**kw)) or made[-1])
    monkeypatch.setattr(data, "SPILL_ROWS", 100)
    assert scan_dict(data.scan(dfs)) == in_memory
    assert len(made) == 1 and not os.path.exists(made[0])  # spilled, then removed
    assert in_memory["duplicate_rows"] > 2000 and len(in_memory["duplicate_examples"]) == 20


def test_a_scan_stopped_by_ctrl_c_removes_its_spilled_duplicate_index(tmp_path, monkeypatch):
    path = write(tmp_path / "train.jsonl", mixed_rows(3000), jsonl=True)
    made, mkdtemp, check = [], data.tempfile.mkdtemp, data._check
    monkeypatch.setattr(data.tempfile, "mkdtemp", lambda **kw: made.append(mkdtemp(**kw)) or made[-1])
    monkeypatch.setattr(data, "SPILL_ROWS", 100)
    monkeypatch.setattr(data, "BATCH", 100)

    def interrupted(task, batch):
        if batch and batch[0][0] > 2000:
            raise KeyboardInterrupt
        return check(task, batch)
    monkeypatch.setattr(data, "_check", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.scan([data.DataFile("train", "train", str(path), data.DatasetSpec("train"))])
    assert len(made) == 1 and not os.path.exists(made[0])


# -- what was trained: max_samples ------------------------------------------------------------------------
def lineage_files(tmp_path, train_rows, test_rows, max_samples=None):
    """Data files as the audit record lists them (``from_lineage``), with LLaMA-Factory's max_samples recorded."""
    d = tmp_path / "lineage"
    d.mkdir(parents=True)
    write(d / "train.json", train_rows)
    write(d / "test.json", test_rows)
    (d / "dataset_info.json").write_text(json.dumps({"tr": {"file_name": "train.json"},
                                                     "te": {"file_name": "test.json"}}))
    train = {"name": "tr", "split": "train", "path": str(d / "train.json"), "format": "alpaca",
             "samples": max_samples or len(train_rows)}
    if max_samples:
        train.update(max_samples=max_samples, rows_in_file=len(train_rows))
    test = {"name": "te", "split": "test", "path": str(d / "test.json"), "format": "alpaca",
            "samples": len(test_rows)}
    return data.from_lineage([train, test], str(d / "dataset_info.json"))


def test_leakage_counts_only_the_rows_llamafactory_trained_under_max_samples(tmp_path):
    train = [alpaca(i) for i in range(100)]
    test = [alpaca(i) for i in range(90, 100)]  # all ten lie after the first 50 rows: never trained
    limited = data.scan(lineage_files(tmp_path, train, test, max_samples=50))
    check = data_gates.leakage_check(limited, 0.0)
    assert check.passed, check.message
    assert limited.train_rows == 50
    assert "max_samples 50" in data_gates.schema_check(limited).message
    whole = data.scan(lineage_files(tmp_path / "b", train, test))
    assert not data_gates.leakage_check(whole, 0.0).passed  # without max_samples all ten leak


def test_pii_is_reported_only_in_the_rows_that_were_trained(tmp_path):
    train = [alpaca(i) for i in range(100)]
    train[10] = alpaca(10, input="write to jan.kowalski@example.com")
    train[80] = alpaca(80, input="call +48 601 234 567")
    check = data_gates.pii_check(data.scan(lineage_files(tmp_path, train, [alpaca(500)], max_samples=50)))
    assert not check.passed
    assert "email ×1 (row 11)" in check.message and "phone" not in check.message
    assert "possible PII in 1 of 51 rows" in check.message


# -- the scan's mechanisms: batched keys, two processes ---------------------------------------------------
def test_the_keys_of_a_batch_are_each_text_normalised():
    texts = ["What is  LoRA?", "", " ", "?!", "a\x00b", "\x00", "Zażółć  GĘŚLĄ!", "ﬁne ½ ²", "x\ty\n",
             "__a__", "ÉCOLE naïve", "ǅemo Straße", "a   b", "  lead and trail  "]
    assert data.keys(texts) == [data.normalise(t).encode() for t in texts]
    assert data.keys([]) == [] and data.keys(["a.b"]) == [b"a b"]


def mixed_rows(n):
    rows = []
    for i in range(n):
        row = alpaca(i % 40, input=["", "jan.kowalski@example.com", "PESEL 44051401359", "Zażółć gęślą"][i % 4])
        rows.append({"instruction": 5} if i % 97 == 3 else row)
    return rows


def scan_dict(scan):
    out = {k: v for k, v in vars(scan).items() if k != "seconds"}
    out["files"] = [vars(f) for f in scan.files]
    return out


class PidHash:
    def __hash__(self):
        return os.getpid()  # another hash in a forked helper


ARRAYS = ["JSON array", "JSON array on one line", "JSON array cut inside a row", "JSON array broken late"]


@pytest.mark.parametrize("layout", ["JSON Lines", "first 2500 lines", *ARRAYS])
@pytest.mark.parametrize("helper", ["works", "dies after one part", "hangs after one part", "hashes differently"])
def test_a_file_shared_with_a_helper_process_scans_as_one_process_does(tmp_path, monkeypatch, helper, layout):
    if layout in ARRAYS:
        path = tmp_path / "train.json"
        rows = mixed_rows(3000) + [alpaca(7)]
        path.write_text(json.dumps(rows, separators=(",", ":")) if layout.endswith("one line") else
                        json.dumps(rows, indent=1))
        if layout.endswith("broken late"):
            text = path.read_text()
            at = text.index('"instruction"', len(text) * 3 // 4)
            path.write_text(text[:at] + "{" + text[at:])
    else:
        path = write(tmp_path / "train.jsonl", mixed_rows(3000), jsonl=True)
        with open(path, "a") as f:
            f.write("\n{broken\n" + json.dumps(alpaca(7)) + "\n")
    test = write(tmp_path / "test.json", [alpaca(4), alpaca(8, instruction="REVERSE the order of the words. word8 "
                                                                         "stone river")])
    dfs = [data.DataFile("train", "train", str(path), data.DatasetSpec("train"),
                         max_rows=2500 if layout == "first 2500 lines" else 0),
           data.DataFile("test", "test", str(test), data.DatasetSpec("test"))]
    serial = scan_dict(data.scan(dfs))
    monkeypatch.setattr(data, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(data, "BATCH", 100)
    monkeypatch.setattr(data, "SPILL_ROWS", 256)  # the duplicate index spills, the helper's hashes among them
    if layout == "JSON array cut inside a row":  # a wrong guess: the first half's parse must find it out
        text = path.read_bytes()
        inside = text.index(b'\n  "input"', len(text) // 2) + 1
        monkeypatch.setattr(data, "halves", lambda p: (inside, None) if str(p) == str(path) else jsonstream.halves(p))
    if helper in ("dies after one part", "hangs after one part"):
        parent, check, calls = os.getpid(), data._check, []
        monkeypatch.setattr(data, "HELPER_SILENCE_S", 0.5)

        def check_then_fail(task, batch):
            if os.getpid() != parent and calls:
                if helper.startswith("hangs"):
                    threading.Event().wait()
                raise RuntimeError("the helper dies")
            calls.append(1)
            return check(task, batch)
        monkeypatch.setattr(data, "_check", check_then_fail)
    if helper == "hashes differently":
        monkeypatch.setattr(data, "_PROBE", PidHash())
    forked, fork = [], data._Helper.fork
    monkeypatch.setattr(data._Helper, "fork", lambda self: forked.append(fork(self)) or forked[-1])
    idle = threading.Event()
    other = threading.Thread(target=idle.wait, daemon=True)  # as MLflow's artifact pools are, in a session
    other.start()
    try:
        assert scan_dict(data.scan(dfs)) == serial
    finally:
        idle.set()
    assert set(forked) == {helper != "hashes differently"}  # the test file and the training file
    train = serial["files"][1]
    assert train["pii"] and serial["duplicate_rows"]
    assert sorted(how for _, _, how in serial["leaks"].values()) == ["exact", "normalised"]
    if layout.endswith("broken late"):
        assert "not valid JSON at row" in train["error"] and 2000 < train["rows"] < 3000
    else:
        assert not train["error"]
        assert train["bad_rows"] == {"JSON Lines": 32, "first 2500 lines": 26}.get(layout, 31)


def test_rows_a_helper_read_from_a_wrong_cut_are_not_counted(tmp_path, monkeypatch):
    rows = [alpaca(i % 300, examples=[{"instruction": f"nested {i}", "output": "x"}, alpaca(i)]) for i in range(1200)]
    path = write(tmp_path / "train.json", rows)
    dfs = [data.DataFile("train", "train", str(path), data.DatasetSpec("train"))]
    serial = scan_dict(data.scan(dfs))
    text = path.read_bytes()
    inside = text.index(b'\n   {', len(text) // 2) + 1  # a nested row: the helper reads two valid rows, then "]"
    monkeypatch.setattr(data, "halves", lambda p: (inside, None))
    monkeypatch.setattr(data, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(data, "BATCH", 50)
    received, collect = [], data._Halves.collect
    monkeypatch.setattr(data._Halves, "collect", lambda self: (received or self.conn.poll(30)) and collect(self) or
                        received.append(len(self.parts_in)))  # the first time, wait for the helper's first part
    assert scan_dict(data.scan(dfs)) == serial
    assert serial["train_rows"] == 1200 and serial["duplicate_rows"] == 900 and max(received) >= 1


def test_a_first_half_that_cannot_be_read_to_its_end_counts_none_of_the_helpers_rows(tmp_path, monkeypatch):
    path = write(tmp_path / "train.jsonl", [alpaca(i % 300) for i in range(2000)], jsonl=True)
    parent, lines = os.getpid(), data.iter_lines

    def failing_first_half(p, raw, start=0, *args):
        for item in lines(p, raw, start, *args):
            if os.getpid() == parent and start == 0 and item[0] > 400:
                raise OSError(5, "Input/output error")
            yield item
    monkeypatch.setattr(data, "iter_lines", failing_first_half)
    monkeypatch.setattr(data, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(data, "BATCH", 50)
    received, collect = [], data._Halves.collect
    monkeypatch.setattr(data._Halves, "collect", lambda self: (received or self.conn.poll(30)) and collect(self) or
                        received.append(len(self.parts_in)))  # the first time, wait for the helper's first part
    scan = data.scan([data.DataFile("train", "train", str(path), data.DatasetSpec("train"))])
    assert "cannot be read at row 401" in scan.files[0].error
    assert scan.files[0].rows == scan.train_rows == 400 and scan.duplicate_rows == 100 and max(received) >= 1


def test_a_json_lines_file_is_cut_at_a_line_start_after_its_middle(tmp_path):
    path = write(tmp_path / "a.jsonl", [alpaca(i) for i in range(50)], jsonl=True)
    start, lines = jsonstream.halves(path)
    text = path.read_bytes()
    assert text[start - 1:start] == b"\n" and start >= len(text) // 2 and lines == text[:start].count(b"\n")
    first = list(jsonstream.iter_lines(path, True, 0, lines))
    second = list(jsonstream.iter_lines(path, True, start, None, lines + 1))
    assert first + second == list(jsonstream.iter_rows(path, raw=True))


def test_an_indented_json_array_is_cut_where_a_row_starts_and_a_one_line_array_is_not(tmp_path):
    rows = [sharegpt(i) for i in range(50)]
    path = write(tmp_path / "a.json", rows)
    start, lines = jsonstream.halves(path)
    text = path.read_bytes()
    assert lines is None and text[start:].lstrip().startswith(b"{") and start >= len(text) // 2
    state = {}
    first = list(jsonstream.array_window(path, start, state))
    assert state["cut"] and [value for _, value, _, _ in first] == rows[:len(first)]
    assert [value for _, value, _, _ in jsonstream.array_rest(path, start)] == rows[len(first):]
    inside = text.index(b'"value"', start)  # a guess inside a row: the first half's parse says so
    assert list(jsonstream.array_window(path, inside, state)) and not state["cut"]
    path.write_text(json.dumps(rows))
    assert jsonstream.halves(path) is None
