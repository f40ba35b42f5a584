"""The seed 003 GDPR / AI Act checklist: each item answered by a gate's outcome, the registry or a declared
``compliance.*`` field, else open; production refuses while a required item is not answered."""

import dataclasses
import json

import pytest

from pytest_ftgate import checklist, promotion
from pytest_ftgate.config import Compliance, load_config
from pytest_ftgate.errors import ConfigError

DECLARED = Compliance(intended_use="internal FAQ answers", known_limitations="English only",
                      risk_category="limited", human_oversight="answers reviewed by support staff")


def g(gate_id, outcome="passed", severity="block", message=""):
    return {"id": gate_id, "outcome": outcome, "severity": severity, "message": message}


GOOD = [g("pii", severity="warn"), g("G6"), g("integrity"), g("G4"), g("G5", "failed", "warn"), g("bench:arc")]


def items(c):
    return {i["id"]: i for i in c["items"]}


def test_every_item_of_the_seed_checklist_is_answered_by_a_gate_a_declaration_or_the_registry():
    c = checklist.build(GOOD, DECLARED, {"name": "faq"})
    got = items(c)
    assert list(got) == list(checklist.IDS) and len(got) == 16
    assert {got[i]["status"] for i in ("pii_checked", "audit_trail", "training_documented", "versioning",
                                       "rollback", "intended_use", "risk_category")} == {"answered"}
    assert got["intended_use"]["answer"] == "internal FAQ answers"
    assert got["intended_use"]["evidence"] == ["compliance.intended_use"]
    assert got["accuracy_robustness"]["answer"] == "tested by G4, G5, bench:arc (warned: G5)"
    assert "re-training not checked" in got["reproducibility"]["answer"]
    assert c["open_required"] == []


def test_items_with_neither_evidence_nor_a_declaration_are_open_and_say_how_to_answer_them():
    got = items(checklist.build([], Compliance()))
    assert all(i["status"] == "open" for i in got.values())
    assert got["known_biases"]["answer"] == "not declared: set compliance.known_biases in ftgate.yaml"
    assert "gate(s) bias did not run" in got["bias_testing"]["answer"]  # no safety suite: open, not an error
    assert "--ftgate-promote NAME" in got["versioning"]["answer"]


def test_a_block_level_failure_is_evidence_against_an_item_and_a_warn_level_one_is_not():
    got = items(checklist.build([g("pii", "failed", "block", "3 e-mail addresses in train.json rows 4, 9, 12"),
                                 g("bias", "failed", "warn")], DECLARED))
    assert got["pii_checked"]["status"] == "failed" and "train.json rows 4" in got["pii_checked"]["answer"]
    assert got["bias_testing"]["status"] == "answered" and "warned: bias" in got["bias_testing"]["answer"]


def test_reproducibility_needs_the_audit_record_and_a_failed_retraining_fails_it():
    assert items(checklist.build([g("reproducibility")], DECLARED))["reproducibility"]["status"] == "open"
    failed = checklist.build([g("G6"), g("reproducibility", "failed")], DECLARED)
    assert items(failed)["reproducibility"]["status"] == "failed"
    assert "reproducibility" in failed["open_required"]


def test_one_open_required_item_refuses_production_and_names_the_item_and_the_fix():
    c = checklist.build(GOOD, dataclasses.replace(DECLARED, human_oversight=""), {"name": "faq"})
    assert c["open_required"] == ["human_oversight"]
    why = checklist.refusal(c)
    assert why.startswith("1 required compliance checklist item(s) not answered: human_oversight (open: not "
                          "declared: set compliance.human_oversight in ftgate.yaml)")
    assert checklist.refusal(c, required=("pii_checked",)) is None  # compliance.required decides


def test_the_registry_items_are_answered_again_from_the_registry_at_promotion():
    c = checklist.build(GOOD, DECLARED)  # gated without --ftgate-promote: versioning and rollback open
    assert set(c["open_required"]) == {"versioning", "rollback"}
    now = checklist.with_registry(c, {"name": "faq", "version": "3", "aliases": {"production": "2"}})
    assert now["open_required"] == []
    assert "--version 2" in items(now)["rollback"]["answer"]


def write(tmp_path, text):
    p = tmp_path / "ftgate.yaml"
    p.write_text(text)
    return p


def test_compliance_config_is_read_and_bad_values_are_refused_at_load_naming_the_key(tmp_path):
    cfg = load_config(write(tmp_path, "compliance:\n  intended_use: FAQ\n  required: [pii_checked, bias_testing]\n"
                                      "  separate_approver: true\n  risk_category: high\n"))
    assert cfg.compliance.required == ("pii_checked", "bias_testing") and cfg.compliance.separate_approver
    with pytest.raises(ConfigError, match=r"compliance.required\[0\] 'pii_check' is not one of .*did you mean "
                                          r"'pii_checked'"):
        load_config(write(tmp_path, "compliance:\n  required: [pii_check]\n"))
    with pytest.raises(ConfigError, match="ftgate.yaml: compliance.risk_category 'hihg' is not one of minimal, "
                                          "limited, high"):
        load_config(write(tmp_path, "compliance:\n  risk_category: hihg\n"))
    with pytest.raises(ConfigError, match="unknown key 'compliance.intended_uses'"):
        load_config(write(tmp_path, "compliance:\n  intended_uses: FAQ\n"))


class FakeRegistry:
    """Just enough of MlflowClient for ``move``: one run with one version, its evidence folder and tags."""

    tracking_uri = "sqlite:///unused.db"

    def __init__(self, tmp_path, stored, trainer="alice"):
        self.dir = tmp_path / "art"
        (self.dir / "ftgate/sessions/s1").mkdir(parents=True, exist_ok=True)
        if stored is not None:
            (self.dir / "ftgate/sessions/s1/run.checklist.json").write_text(json.dumps(stored))
        self.version = type("MV", (), {"run_id": "r1", "version": "1", "tags": {
            "compliance.gate_status": "pass", "compliance.evidence": "runs:/r1/ftgate/sessions/s1"}})()
        self.trainer = trainer
        self.tags, self.alias = {}, {}

    def get_model_version(self, name, version):
        return self.version

    def get_registered_model(self, name):
        return type("RM", (), {"aliases": dict(self.alias)})()

    def search_model_versions(self, query):
        return [self.version]

    def list_artifacts(self, run_id, path):
        return [type("A", (), {"path": f"{path}/{p.name}"})() for p in (self.dir / path).iterdir()]

    def download_artifacts(self, run_id, path, dst):
        return str(self.dir / path)

    def get_run(self, run_id):
        data = type("D", (), {"tags": {"mlflow.user": self.trainer}})()
        return type("R", (), {"data": data, "info": type("I", (), {"user_id": self.trainer})()})()

    def set_registered_model_alias(self, name, alias, version):
        self.alias[alias] = version

    def delete_registered_model_alias(self, name, alias):
        self.alias.pop(alias, None)

    def set_model_version_tag(self, name, version, key, value):
        self.tags[key] = value

    def set_tag(self, run_id, key, value):
        self.tags[f"run:{key}"] = value


def test_promotion_to_production_refuses_a_version_whose_checklist_has_an_open_required_item(tmp_path):
    stored = checklist.build(GOOD, dataclasses.replace(DECLARED, intended_use=""))
    reg = FakeRegistry(tmp_path, stored)
    with pytest.raises(promotion.PromotionError, match="faq version 1 may not move to production: 1 required "
                                                       "compliance checklist item.s. not answered: intended_use"):
        promotion.move(reg, "faq", "production", "bob", version="1")
    assert "production" not in reg.alias
    promotion.move(reg, "faq", "staging", "bob", version="1")  # staging needs a reviewer, not the checklist
    assert reg.alias == {"staging": "1"}
    done = promotion.move(reg, "faq", "production", "bob", version="1", policy=dataclasses.replace(
        DECLARED, required=("pii_checked",)))  # a stricter or looser policy at promote time: --config
    assert done["to"] == "production" and done["authenticated"] is False
    assert reg.tags["compliance.approver_authenticated"] == "false"


def test_a_version_without_a_stored_checklist_cannot_go_to_production(tmp_path):
    with pytest.raises(promotion.PromotionError, match="no stored compliance checklist .*gate the run again"):
        promotion.move(FakeRegistry(tmp_path, None), "faq", "production", "bob", version="1")
    done = promotion.move(FakeRegistry(tmp_path, None), "faq", "production", "bob", version="1",
                          policy=Compliance(required=()))  # --config with compliance.required: []
    assert done["to"] == "production"


def test_self_approval_is_refused_when_separate_approver_is_set(tmp_path):
    stored = {**checklist.build(GOOD, DECLARED, {"name": "faq"}), "separate_approver": True}
    reg = FakeRegistry(tmp_path, stored, trainer="alice")
    with pytest.raises(promotion.PromotionError, match="'alice' trained run r1 and may not approve it"):
        promotion.move(reg, "faq", "staging", "alice", version="1")
    assert promotion.move(reg, "faq", "staging", "bob", version="1")["approved_by"] == "bob"


@pytest.mark.slow
def test_a_session_puts_the_checklist_in_report_json_and_stores_it_with_its_evidence_on_the_run(pytester):
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from . import histories as H
    from .mlflow_runs import make_run

    uri = f"sqlite:///{pytester.path / 'mlflow.db'}"
    run_id = make_run(uri, "clean", H.clean())
    pytester.makepyfile(test_training=(Path(__file__).parents[1] / "suites" / "test_training.py").read_text())
    pytester.makefile(".yaml", ftgate="compliance:\n  intended_use: internal FAQ answers\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--ftgate-tracking-uri", uri, "--run-id", run_id,
                                "--ftgate-config", "ftgate.yaml")
    assert result.ret == 0, result.stdout.str()[-2000:]
    run = json.loads((pytester.path / "ftgate-results" / "report.json").read_text())["runs"][0]
    page = (pytester.path / "ftgate-results" / "report.html").read_text()
    assert "Compliance checklist (GDPR / AI Act)" in page and "Znane ograniczenia modelu" in page
    got = items(run["checklist"])
    assert got["intended_use"]["status"] == "answered" and got["pii_checked"]["status"] == "open"
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert "intended_use" not in tags["ftgate.checklist_open"] and "pii_checked" in tags["ftgate.checklist_open"]
    stored = checklist.stored(MlflowClient(uri), run_id, tags["ftgate.evidence"])
    assert stored["items"] == run["checklist"]["items"]
