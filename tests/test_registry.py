"""Promotion in a real MLflow registry (sqlite): candidate on pass/warn, never on block; `ftgate promote` moves the
alias after review and records who and when."""

import pytest

from pytest_ftgate import cli
from pytest_ftgate.config import Compliance
from pytest_ftgate import promotion

from . import histories as H
from .mlflow_runs import make_run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(tracking uri, client, {name: run_id}) with three runs that each have an adapter/ artifact."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    ad = root / "adapter"
    ad.mkdir()
    (ad / "adapter_model.safetensors").write_bytes(b"weights")
    client = promotion.client_for(uri)
    ids = {}
    for name in ("good", "warned", "blocked", "second"):
        ids[name] = make_run(uri, name, H.clean())
        client.log_artifacts(ids[name], str(ad), "adapter")
    return uri, client, ids


def verdict(run_id, status, incomplete=False, integrity="passed"):
    """A verdict as a session writes it: complete unless ``incomplete``, with the integrity gate's outcome."""
    return {"run_id": run_id, "verdict": "partial" if incomplete else status, "complete": not incomplete,
            "partial_reason": "1 of 4 gate tests did not run" if incomplete else "",
            "gates": [{"id": "integrity", "outcome": integrity}]}


def promote(client, name, run_id, status, incomplete=False, adapter=True, integrity="passed"):
    v = verdict(run_id, status, incomplete, integrity)
    tags = promotion.candidate_tags(v, "sha256:" + "d" * 64, "e" * 64, "f" * 64)
    return promotion.promote_candidate(client, name, v, tags, adapter)


@pytest.mark.slow
def test_a_passing_run_becomes_the_candidate_with_compliance_tags(store):
    uri, client, ids = store
    done = promote(client, "m-pass", ids["good"], "pass")
    assert done["alias"] == "candidate"
    mv = client.get_model_version_by_alias("m-pass", "candidate")
    assert (mv.run_id, mv.source) == (ids["good"], f"runs:/{ids['good']}/adapter")
    assert {k: mv.tags[k] for k in ("compliance.dataset_hash", "compliance.gate_status", "compliance.report_sha256",
                                    "compliance.approved_by", "compliance.model_stage")} == {
        "compliance.dataset_hash": "sha256:" + "d" * 64, "compliance.gate_status": "pass",
        "compliance.report_sha256": "e" * 64, "compliance.approved_by": "pending",
        "compliance.model_stage": "candidate"}
    again = promote(client, "m-pass", ids["good"], "pass")
    assert again["version"] == done["version"]  # gating the same run again re-uses its version


def test_a_warned_run_is_promoted_and_a_blocked_one_never(store):
    uri, client, ids = store
    assert promote(client, "m-block", ids["blocked"], "block")["skipped"].startswith("verdict block")
    assert promotion.versions_of_run(client, "m-block", ids["blocked"]) == []
    assert promotion.aliases(client, "m-block") == {}
    assert promote(client, "m-block", ids["warned"], "warn")["alias"] == "candidate"
    assert promote(client, "m-block", ids["good"], "pass", incomplete=True)["skipped"].startswith(
        "the session's verdict is partial")
    assert "integrity gate did not pass" in promote(client, "m-block", ids["good"], "pass", integrity="failed")[
        "skipped"]
    assert promote(client, "m-block", ids["good"], "pass", adapter=False)["skipped"] == \
        "the run has no adapter artifact"


def test_a_candidate_that_blocks_when_gated_again_loses_the_alias(store):
    uri, client, ids = store
    version = promote(client, "m-again", ids["good"], "pass")["version"]
    assert promote(client, "m-again", ids["good"], "block")["skipped"].startswith("verdict block")
    promotion.withdraw(client, "m-again", ids["good"], "block")  # what the session does after a complete block
    assert "candidate" not in promotion.aliases(client, "m-again")
    assert client.get_model_version("m-again", version).tags["compliance.gate_status"] == "block"


def test_promote_moves_the_alias_to_production_and_records_who_and_when(store, capsys, tmp_path):
    uri, client, ids = store
    version = promote(client, "m-prod", ids["good"], "pass")["version"]
    (tmp_path / "ftgate.yaml").write_text("compliance: {required: []}\n")  # the alias mechanics, not the checklist
    args = ["promote", "m-prod", "--to", "production", "--approved-by", "alice", "--tracking-uri", uri,
            "--config", str(tmp_path / "ftgate.yaml")]
    assert cli.main(args) == 0
    assert "candidate -> production (approved by alice" in capsys.readouterr().out
    assert promotion.aliases(client, "m-prod") == {"production": version}
    tags = client.get_model_version("m-prod", version).tags
    assert tags["compliance.approved_by"] == "alice" and tags["compliance.model_stage"] == "production"
    assert tags["compliance.approval_date"].startswith("20") and tags["compliance.production_by"] == "alice"
    assert client.get_run(ids["good"]).data.tags["compliance.approved_by"] == "alice"


def test_a_new_production_version_archives_the_old_one(store):
    uri, client, ids = store
    nothing = Compliance(required=())  # the alias mechanics; tests/test_checklist.py covers the checklist
    first = promote(client, "m-roll", ids["good"], "pass")["version"]
    promotion.move(client, "m-roll", "production", "alice", policy=nothing)
    second = promote(client, "m-roll", ids["second"], "warn")["version"]
    promotion.move(client, "m-roll", "staging", "bob")
    done = promotion.move(client, "m-roll", "production", "carol", policy=nothing)
    assert (done["version"], done["from"]) == (second, "staging")
    assert promotion.aliases(client, "m-roll") == {"production": second, "archived": first}
    assert client.get_model_version("m-roll", first).tags["compliance.archived_reason"] == \
        f"superseded by version {second}"


def test_promote_refuses_a_blocked_version_and_archiving_without_a_reason(store, capsys):
    uri, client, ids = store
    promote(client, "m-refuse", ids["good"], "pass")
    mv = client.create_model_version("m-refuse", source=f"runs:/{ids['blocked']}/adapter", run_id=ids["blocked"],
                                     tags={"compliance.gate_status": "block"})
    base = ["promote", "m-refuse", "--approved-by", "alice", "--tracking-uri", uri]
    assert cli.main(base + ["--to", "production", "--version", str(mv.version)]) == 1
    assert "compliance.gate_status='block'" in capsys.readouterr().err
    assert cli.main(base + ["--to", "archived", "--version", "1"]) == 1
    assert "documented reason" in capsys.readouterr().err
    assert cli.main(base + ["--to", "staging", "--run-id", ids["good"]]) == 0
    assert promotion.aliases(client, "m-refuse") == {"staging": "1"}
