"""The in-toto attestation: its shape, its ed25519 DSSE signature, and `ftgate verify` on an adapter directory."""

import base64
import json

import pytest

from pytest_ftgate import attest, cli
from pytest_ftgate.hashing import prefixed


@pytest.fixture
def adapter(tmp_path):
    d = tmp_path / "adapter"
    (d / "sub").mkdir(parents=True)
    (d / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 64)
    (d / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}')
    (d / "sub" / "tokenizer.json").write_text("{}")
    return d


@pytest.fixture
def keys(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    priv = tmp_path / "signing.pem"
    priv.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pub = tmp_path / "signing.pub.pem"
    pub.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


VERDICT = {"run_id": "a" * 32, "run_name": "demo", "verdict": "pass", "complete": True, "error": "",
           "report_sha256": "b" * 64, "started_at": "t0", "finished_at": "t1",
           "gates": [{"id": "G1", "name": "stability", "severity": "block", "outcome": "passed", "value": "finite",
                      "threshold": "finite", "message": "ok", "details": {"samples": ["big"]}}]}
PARAMS = {"ftgate.dataset_sha256": "sha256:" + "c" * 64, "ftgate.config_sha256": "sha256:" + "d" * 64,
          "lora_rank": "8"}


def trained(adapter):
    """The audit record's output_artifacts as training wrote them for ``adapter``."""
    files = [{"name": f["name"], "sha256": prefixed(f["sha256"])} for f in attest.file_digests(adapter)]
    return {"output_artifacts": {"adapter": {"files": files}}}


def write(adapter, path, key=None, verdict=None, audit=None):
    st = attest.statement(attest.file_digests(adapter), attest.predicate(
        verdict or VERDICT, {"run_id": "a" * 32}, attest.lineage(PARAMS, audit or trained(adapter)),
        {"gating": {"pytest_ftgate": "0.1.0"}}))
    return attest.write(path, st, key)


def test_the_statement_is_in_toto_v1_with_one_subject_per_adapter_file(adapter, tmp_path):
    env = json.loads(write(adapter, tmp_path / "a.intoto.json").read_text())
    assert env["payloadType"] == "application/vnd.in-toto+json" and env["signatures"] == []
    st = json.loads(base64.b64decode(env["payload"]))
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert "pytest-ftgate" in st["predicateType"]
    assert [s["name"] for s in st["subject"]] == ["adapter_config.json", "adapter_model.safetensors",
                                                  "sub/tokenizer.json"]
    assert all(len(s["digest"]["sha256"]) == 64 for s in st["subject"])
    pred = st["predicate"]
    assert pred["verdict"] == "pass" and pred["report_sha256"] == "b" * 64
    assert pred["gates"][0]["id"] == "G1" and "details" not in pred["gates"][0]
    lineage = {k: v for k, v in pred["lineage"].items() if k != "adapter_files_recorded"}
    assert lineage == {"config_sha256": "sha256:" + "d" * 64, "dataset_sha256": "sha256:" + "c" * 64}
    assert len(pred["lineage"]["adapter_files_recorded"]) == 3


def test_verify_passes_on_the_adapter_and_fails_after_one_byte_changes(adapter, tmp_path, keys, capsys):
    priv, pub = keys
    att = write(adapter, tmp_path / "a.intoto.json", attest.load_private_key(priv))
    assert cli.main(["verify", str(att), str(adapter), "--public-key", str(pub)]) == 0
    assert "OK, 3 file(s) match the shipped and the trained adapter; signature verified" in capsys.readouterr().out
    blob = bytearray((adapter / "adapter_model.safetensors").read_bytes())
    blob[1000] ^= 0x01
    (adapter / "adapter_model.safetensors").write_bytes(bytes(blob))
    assert cli.main(["verify", str(att), str(adapter), "--public-key", str(pub)]) == 1
    assert "MISMATCH adapter_model.safetensors: sha256" in capsys.readouterr().err


def test_verify_fails_on_a_missing_or_an_unattested_file(adapter, tmp_path):
    att = write(adapter, tmp_path / "a.intoto.json")
    (adapter / "extra.py").write_text("import os")
    problems, _ = attest.verify(att, adapter)
    assert problems == [f"extra.py: in {adapter} but not attested"]
    (adapter / "extra.py").unlink()
    (adapter / "sub" / "tokenizer.json").unlink()
    assert attest.verify(att, adapter)[0] == [f"sub/tokenizer.json: missing from {adapter}"]


def test_a_changed_payload_or_another_key_breaks_the_signature(adapter, tmp_path, keys):
    priv, pub = keys
    att = write(adapter, tmp_path / "a.intoto.json", attest.load_private_key(priv))
    env = json.loads(att.read_text())
    st = json.loads(base64.b64decode(env["payload"]))
    st["predicate"]["verdict"] = "pass-but-edited"
    env["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    att.write_text(json.dumps(env))
    problems, _ = attest.verify(att, adapter, str(pub))
    assert any(p.startswith("no signature verifies") for p in problems)
    other = tmp_path / "other"
    other.mkdir()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    (other / "pub.pem").write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    att2 = write(adapter, tmp_path / "b.intoto.json", attest.load_private_key(priv))
    assert attest.verify(att2, adapter, str(other / "pub.pem"))[0][0].startswith("no signature verifies")


def test_an_unsigned_attestation_fails_when_a_signature_is_required(adapter, tmp_path, keys):
    att = write(adapter, tmp_path / "a.intoto.json")
    assert attest.verify(att, adapter, str(keys[1]))[0] == ["the attestation is not signed"]
    assert attest.main([str(att), str(adapter)]) == 0
    assert attest.main([str(att), str(adapter), "--require-signature"]) == 1


def test_the_signing_key_comes_from_the_environment_and_a_bad_one_is_named(tmp_path, keys, monkeypatch):
    monkeypatch.delenv(attest.KEY_ENV, raising=False)
    assert attest.configured_key() is None
    monkeypatch.setenv(attest.KEY_ENV, str(keys[0]))
    assert attest.keyid(attest.configured_key().public_key()) == attest.keyid(attest.load_public_key(keys[1]))
    monkeypatch.setenv(attest.KEY_ENV, str(tmp_path / "missing.pem"))
    with pytest.raises(attest.AttestationError, match="missing.pem"):
        attest.configured_key()


def test_verify_reports_an_unreadable_attestation_with_exit_code_two(adapter, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert attest.main([str(bad), str(adapter)]) == 2
    assert "bad.json" in capsys.readouterr().err


def test_verify_exits_non_zero_for_a_block_a_partial_and_a_warn_unless_warn_is_allowed(adapter, tmp_path):
    for status, complete, code in (("block", True, 1), ("partial", False, 1), ("warn", True, 1)):
        path = write(adapter, tmp_path / f"{status}.intoto.json", verdict={**VERDICT, "verdict": status,
                                                                           "complete": complete})
        assert attest.main([str(path), str(adapter)]) == code, status
    assert attest.main([str(tmp_path / "warn.intoto.json"), str(adapter), "--allow-warn"]) == 0


def test_verify_fails_when_the_attested_files_are_not_the_ones_training_recorded(adapter, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "adapter_model.safetensors").write_bytes(b"what training wrote")
    path = write(adapter, tmp_path / "swapped.intoto.json", audit=trained(other))
    problems, _ = attest.verify(path, adapter)
    assert any("is not the trained" in p for p in problems) and attest.main([str(path), str(adapter)]) == 1
