"""Unit tests of the PII detectors and the ``pii`` gate: each kind is found with its checksum, look-alikes that fail
the checksum are not, and no detected value ever reaches the verdict."""

import json

import pytest

from pytest_ftgate import data, pii
from pytest_ftgate.errors import ConfigError
from pytest_ftgate.gates import data as data_gates

PLANTED = {  # kind -> a value that passes the kind's checks (test numbers, not real people)
    "email": "jan.kowalski@example.com",
    "phone": "+48 601 234 567",
    "iban": "PL61 1090 1014 0000 0712 1981 2874",
    "card": "4111 1111 1111 1111",
    "pesel": "44051401359",
    "dni": "12345678Z",
    "ssn": "123-45-6789",
}


@pytest.mark.parametrize("kind", list(PLANTED))
def test_each_kind_of_pii_is_found_in_running_text(kind):
    assert pii.count(f"Contact: {PLANTED[kind]}, thanks.") == {kind: 1}


@pytest.mark.parametrize("text", [
    "GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "(555) 123-4567", "555.123.4567", "22 123 45 67",
    "01 23 45 67 89", "07700 900123", "378282246310005", "5555-5555-5555-4444", "X1234567L", "+1 (555) 123-4567",
])
def test_other_common_formats_are_found(text):
    assert sum(pii.count(text).values()) == 1, pii.count(text)


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1112",  # Luhn fails
    "44051401358",  # PESEL checksum fails
    "44133101359",  # PESEL month 13 does not exist
    "PL61 1090 1014 0000 0712 1981 2875",  # mod-97 fails
    "12345678A",  # DNI letter wrong
    "000-12-3456",  # SSN area 000 is never issued
    "1111111111111111",  # one repeated digit
    "on 2024-01-15 at 10:30", "version 1.2.3", "price 1234.56 USD", "ip 192.168.100.200",
    "1 2 3 4 5 6 7 8 9 10 11 12", "id 12345678901234567890", "order 100 200 300", "user@localhost",
])
def test_look_alikes_that_fail_their_checks_are_not_pii(text):
    assert pii.count(text) == {}


def test_checksum_helpers_accept_known_valid_numbers():
    assert pii.luhn_ok("4111111111111111") and not pii.luhn_ok("4111111111111112")
    assert pii.iban_ok("GB82WEST12345698765432") and not pii.iban_ok("GB82WEST12345698765433")
    assert pii.pesel_ok("02270803624")  # born 2002-07-08 (month + 20)
    assert not pii.pesel_ok("02330803623")  # checksum right, month 33 does not exist


def test_the_pii_gate_names_kinds_counts_and_rows_but_never_the_values(tmp_path):
    rows = [{"instruction": f"Reverse: w{i} stone river", "input": "", "output": f"river stone w{i}"}
            for i in range(30)]
    for row, (kind, value) in zip((3, 8, 12, 17, 21, 25, 29), PLANTED.items()):
        rows[row - 1]["input"] = f"my {kind} is {value}"
    rows[8]["output"] = "write to " + PLANTED["email"]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows))
    check = data_gates.pii_check(data.scan([data.DataFile("t", "train", str(path), data.DatasetSpec("t"))]))
    assert not check.passed
    assert check.value == {"email": 2, "phone": 1, "iban": 1, "card": 1, "pesel": 1, "dni": 1, "ssn": 1}
    assert "possible PII in 8 of 30 rows" in check.message
    assert "email ×2 (rows 3, 9)" in check.message and "pesel ×1 (row 21)" in check.message
    text = json.dumps([check.message, check.value, check.threshold, check.details], ensure_ascii=False)
    for value in PLANTED.values():
        assert value not in text and value.replace(" ", "") not in text


def test_clean_data_passes_the_pii_gate_and_kinds_can_be_switched_off(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"instruction": "call +48 601 234 567", "output": "ok"}) + "\n")
    spec = data.DatasetSpec("t")
    on = data.scan([data.DataFile("t", "train", str(path), spec)])
    off = data.scan([data.DataFile("t", "train", str(path), spec)], pii_kinds=("email",))
    assert not data_gates.pii_check(on).passed
    assert data_gates.pii_check(off).passed and "no PII found in 1 rows" in data_gates.pii_check(off).message
    with pytest.raises(ConfigError, match=r"data.pii_kinds: unknown kind\(s\) \['passport'\]"):
        data.scan([data.DataFile("t", "train", str(path), spec)], pii_kinds=("email", "passport"))


# -- the raw-text prefilter of the scan: never skips a row that count() would flag ------------------------------
OTHER_FORMATS = ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "(555) 123-4567", "555.123.4567",
                 "22 123 45 67", "01 23 45 67 89", "07700 900123", "378282246310005", "5555-5555-5555-4444",
                 "X1234567L", "+1 (555) 123-4567"]


@pytest.mark.parametrize("value", [*PLANTED.values(), *OTHER_FORMATS])
def test_the_prefilter_passes_every_row_with_pii_however_it_is_encoded(value):
    import json

    for row in ({"instruction": f"Contact: {value}, thanks."}, {"conversations": [{"value": value}]}):
        for raw in (json.dumps(row), json.dumps(row, ensure_ascii=False), json.dumps(row).replace("/", "\\/")):
            assert pii.count(" ".join(_texts(json.loads(raw))))  # what the scan's strings hold ...
            assert pii.maybe(raw) and pii.maybe(raw.encode())  # ... is never skipped by the prefilter


def _texts(value) -> list[str]:
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return [value] if isinstance(value, str) else []


def test_the_prefilter_lets_escapes_and_non_ascii_digits_through_to_the_detectors():
    assert pii.maybe('{"a": "mail jan\\u0040example.com"}')  # an escaped @
    assert pii.maybe('{"a": "١٢٣٤٥٦٧٨٩٠١"}')  # Arabic-Indic digits: \\d matches them
    assert pii.maybe(None)
    assert not pii.maybe('{"instruction": "Translate: cat", "output": "chat", "n": 12}')  # nothing to look at


def test_the_prefilter_agrees_with_count_on_the_demo_data():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "fixtures" / "data"
    for f in root.glob("*.json"):
        for row in json.loads(f.read_text()):
            raw = json.dumps(row, ensure_ascii=False)
            assert pii.maybe(raw) or not any(pii.count(t) for t in _texts(row)), (f.name, row)


@pytest.mark.parametrize("text", ["What is  LoRA?", "Ünïcödé  Text!", "a_b-c", "\tTabs\nand\u00a0nbsp", "x" * 3])
def test_the_scan_s_hash_key_is_the_normalised_text(text):
    from pytest_ftgate import data

    assert data.keys([text]) == [data.normalise(text).encode("utf-8")]


def test_the_prefilter_of_a_batch_of_raw_rows_is_the_prefilter_of_each_and_misses_no_pii():
    texts = [f"Contact: {v}, thanks." for v in PLANTED.values()] + [
        "In 1923 there were 456 apples.", "no digits at all", "12345", " 123456", "a (12) 34-5", "x\\u0040y",
        "a\\/b 12345", "naïve 1", "", "@", "tab\\t123 45"]
    for raws in ([json.dumps({"input": t}) for t in texts], [json.dumps({"input": t}).encode() for t in texts],
                 [json.dumps({"input": t}, ensure_ascii=False) for t in texts]):
        assert pii.maybe_rows(raws) == [i for i, raw in enumerate(raws) if pii.maybe(raw)]
        for i, t in enumerate(texts):
            assert not pii.count(json.loads(raws[i])["input"]) or i in pii.maybe_rows(raws), t
    assert pii.maybe_rows([b'{"a": "In 1923 there were 456"}', b'{"a": "no"}']) == []
    assert pii.maybe_rows([]) == [] and pii.maybe(None)
