"""The seed 003 GDPR / AI Act compliance checklist, answered per run: each item by evidence the session produced
(a gate's outcome, the registry) or by a field declared under ``compliance:`` in ftgate.yaml; an item with
neither is open. Promotion to ``production`` refuses while a required item is not answered (promotion.move reads
the checklist the session stored with its evidence, ``ftgate/sessions/<sid>/<run>.checklist.json``).

Pure: no pytest, no I/O except ``stored`` (one artifact download through an MLflow client it is given).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

ANSWERED, FAILED, OPEN = "answered", "failed", "open"  # failed: the evidence says no (a block-level gate failed)
SUFFIX = ".checklist.json"


@dataclass(frozen=True)
class Item:
    """One checklist line of seed 003: ``source`` is gates (``gates`` answer it), declared (``field`` of
    ``compliance:``) or registry (versions and aliases of the registered model)."""

    id: str
    group: str
    seed: str  # the seed's own words (Polish)
    title: str
    source: str
    gates: tuple[str, ...] = ()
    field: str = ""


ITEMS = (
    Item("pii_checked", "data governance", "Dane treningowe zweryfikowane pod kątem PII",
         "training data checked for PII", "gates", ("pii",)),
    Item("data_consent", "data governance", "Zgoda na użycie danych (jeśli wymagana)",
         "consent / lawful basis for the data", "declared", field="data_governance"),
    Item("retention_policy", "data governance", "Data retention policy określona", "data retention policy",
         "declared", field="retention_policy"),
    Item("right_to_erasure", "data governance", "Prawo do bycia zapomnianym - procedura",
         "right-to-be-forgotten procedure", "declared", field="erasure_procedure"),
    Item("training_documented", "model transparency", "Dokumentacja procesu treningu",
         "training process documented (audit record)", "gates", ("G6",)),
    Item("known_limitations", "model transparency", "Znane ograniczenia modelu", "known limitations", "declared",
         field="known_limitations"),
    Item("intended_use", "model transparency", "Intended use cases", "intended use", "declared",
         field="intended_use"),
    Item("known_biases", "model transparency", "Known biases (jeśli zbadane)", "known biases", "declared",
         field="known_biases"),
    Item("audit_trail", "traceability", "Pełny audit trail w MLflow", "full audit trail in MLflow", "gates",
         ("G6", "integrity")),
    Item("reproducibility", "traceability", "Możliwość odtworzenia treningu", "training can be reproduced",
         "gates", ("G6", "reproducibility")),
    Item("versioning", "traceability", "Wersjonowanie modeli", "model versioning", "registry"),
    Item("rollback", "traceability", "Rollback capability", "rollback capability", "registry"),
    Item("risk_category", "risk assessment", "Risk category określona", "AI Act risk category", "declared",
         field="risk_category"),
    Item("human_oversight", "risk assessment", "Human oversight mechanisms", "human oversight", "declared",
         field="human_oversight"),
    Item("accuracy_robustness", "risk assessment", "Accuracy/robustness testing", "accuracy / robustness tested",
         "gates", ("G4", "G5", "bench:")),
    Item("bias_testing", "risk assessment", "Bias testing", "bias tested", "gates", ("bias",)),
)
IDS = tuple(i.id for i in ITEMS)
# Required for production unless compliance.required says otherwise: what this tool can evidence on every run plus
# the AI Act's documentation duties; consent, retention, erasure, known biases and bias testing are opt-in (they
# depend on the data and on a safety suite a project may not run).
DEFAULT_REQUIRED = ("pii_checked", "training_documented", "audit_trail", "reproducibility", "versioning",
                    "rollback", "accuracy_robustness", "intended_use", "known_limitations", "risk_category",
                    "human_oversight")
RISK_CATEGORIES = ("minimal", "limited", "high")  # AI Act; "unacceptable" systems are prohibited, never released


def _matches(gate_id: str, pattern: str) -> bool:
    return gate_id.startswith(pattern) if pattern.endswith(":") else gate_id == pattern


def _from_gates(item: Item, gates: list[Mapping]) -> dict:
    """Answered when the item's gates ran and none failed at block severity or errored; failed when one did;
    open when none ran. ``reproducibility`` needs G6; its re-training gate is opt-in and only adds to it."""
    ran = [g for g in gates if any(_matches(str(g.get("id", "")), p) for p in item.gates)
           and g.get("outcome") in ("passed", "failed", "error")]
    evidence = [f"{g.get('id')}: {g.get('outcome')}" + (f" ({g.get('severity')})" if g.get("outcome") == "failed"
                                                        else "") for g in ran]
    bad = [g for g in ran if g.get("outcome") == "error" or (g.get("outcome") == "failed"
                                                             and g.get("severity", "block") == "block")]
    needed = [p for p in item.gates if p != "reproducibility"] if item.id == "reproducibility" else item.gates
    missing = [p for p in needed if not any(_matches(str(g.get("id", "")), p) for g in ran)]
    if bad:
        first = bad[0]
        return {"status": FAILED, "evidence": evidence,
                "answer": f"gate {first.get('id')} {first.get('outcome')}: {str(first.get('message', ''))[:200]}"}
    if not ran or (item.id in ("reproducibility", "audit_trail", "training_documented") and missing):
        names = ", ".join(p.rstrip(":") + ("<task>" if p.endswith(":") else "") for p in needed)
        return {"status": OPEN, "evidence": evidence,
                "answer": f"no evidence: gate(s) {names} did not run in this session; run their suites"}
    warned = [g.get("id") for g in ran if g.get("outcome") == "failed"]
    answer = "tested by " + ", ".join(str(g.get("id")) for g in ran)
    if warned:
        answer += f" (warned: {', '.join(map(str, warned))})"
    if item.id == "reproducibility" and not any(g.get("id") == "reproducibility" for g in ran):
        answer += "; re-training not checked (set audit.reproducibility_steps to check it)"
    return {"status": ANSWERED, "evidence": evidence, "answer": answer}


def _from_declared(item: Item, compliance: Any) -> dict:
    text = str(getattr(compliance, item.field, "") or "").strip()
    if text:
        return {"status": ANSWERED, "evidence": [f"compliance.{item.field}"], "answer": text}
    return {"status": OPEN, "evidence": [], "answer": f"not declared: set compliance.{item.field} in ftgate.yaml"}


def _from_registry(item: Item, registry: Mapping | None) -> dict:
    """``registry``: {name, version?, aliases?, versions?} (a session that will register the run names only the
    model); None: the run is not a registry version."""
    if not registry or not registry.get("name"):
        return {"status": OPEN, "evidence": [], "answer": "the run is not a registry version: gate it with "
                                                          "--ftgate-promote NAME"}
    name, version = registry["name"], registry.get("version")
    where = f"{name} version {version}" if version else f"{name} (registered by this session)"
    if item.id == "versioning":
        return {"status": ANSWERED, "evidence": [f"registry {name}"],
                "answer": f"registered as {where}; the adapter is addressed by version, never overwritten"}
    aliases = registry.get("aliases") or {}
    target = aliases.get("production")
    how = (f"version {target} (production now) is archived when this one moves and is restored with "
           f"`ftgate promote {name} --to production --version {target}`" if target and target != version else
           "every version stays in the registry; `ftgate promote NAME --to production --version N` restores one")
    return {"status": ANSWERED, "evidence": [f"registry {name}"], "answer": how}


def build(gates: list[Mapping], compliance: Any, registry: Mapping | None = None) -> dict:
    """The checklist of one run: every item with its status, answer and the evidence behind it."""
    items = []
    for item in ITEMS:
        if item.source == "gates":
            got = _from_gates(item, gates)
        elif item.source == "declared":
            got = _from_declared(item, compliance)
        else:
            got = _from_registry(item, registry)
        items.append({"id": item.id, "group": item.group, "seed": item.seed, "title": item.title,
                      "source": item.source, **got})
    required = list(getattr(compliance, "required", DEFAULT_REQUIRED))
    out = {"schema_version": 1, "items": items, "required": required,
           "separate_approver": bool(getattr(compliance, "separate_approver", False))}
    out["open_required"] = [i["id"] for i in unanswered(out)]
    return out


def with_registry(checklist: Mapping, registry: Mapping) -> dict:
    """The checklist with its registry items answered from the registry as it is now (at promotion)."""
    by_id = {i.id: i for i in ITEMS}
    items = [({**i, **_from_registry(by_id[i["id"]], registry)} if by_id.get(i.get("id"), None) is not None
              and by_id[i["id"]].source == "registry" else dict(i)) for i in checklist.get("items", [])]
    out = {**checklist, "items": items}
    out["open_required"] = [i["id"] for i in unanswered(out)]
    return out


def unanswered(checklist: Mapping, required: list[str] | tuple[str, ...] | None = None) -> list[dict]:
    """The required items that are not answered (an item the checklist lacks counts as open)."""
    need = list(checklist.get("required", DEFAULT_REQUIRED) if required is None else required)
    items = {i.get("id"): i for i in checklist.get("items", [])}
    return [items.get(r) or {"id": r, "status": OPEN, "answer": "not in the stored checklist"} for r in need
            if (items.get(r) or {}).get("status") != ANSWERED]


def refusal(checklist: Mapping, required: list[str] | tuple[str, ...] | None = None) -> str | None:
    """Why a version may not move to production (None when every required item is answered)."""
    missing = unanswered(checklist, required)
    if not missing:
        return None
    listed = "; ".join(f"{i['id']} ({i.get('status')}: {i.get('answer')})" for i in missing)
    return (f"{len(missing)} required compliance checklist item(s) not answered: {listed}; answer them (ftgate.yaml "
            "compliance.*, the gates named) and gate the run again, or change compliance.required")


def stored(client: Any, run_id: str, evidence: str) -> dict:
    """The checklist a complete session stored under ``evidence`` (``ftgate/sessions/<sid>``) on the run.

    Raises LookupError naming the place when there is none (a run gated before the checklist existed)."""
    found = [a.path for a in client.list_artifacts(run_id, evidence) if a.path.endswith(SUFFIX)] if evidence else []
    if not found:
        raise LookupError(f"run {run_id} has no compliance checklist under {evidence or 'its evidence'!r} "
                          f"(*{SUFFIX}): gate the run again with this pytest-ftgate to store one")
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, found[0], tmp)
        return json.loads(Path(local).read_text(encoding="utf-8"))
