"""Promotion in the MLflow Model Registry, as aliases (MLflow deprecated stages): a gated run whose verdict is pass
or warn becomes a version of the registered model with the alias ``candidate`` and compliance tags — only from a
complete session in which the integrity gate passed (the bytes on the run are the bytes that were trained); a
blocked or partial one never does. `ftgate promote NAME --to STAGE --approved-by WHO` moves an alias after human review
and records who and when. The stages of seed 002, None → Candidate → Staging → Production → Archived, are the
aliases candidate, staging, production and archived; a version holds one of them at a time.

Production needs every required item of the version's seed 003 compliance checklist answered (``checklist.py``;
the session stored it with its evidence). The approver is the user the tracking server authenticated when it has
authentication (MLflow's basic-auth app): another ``--approved-by`` is refused, and so is the user who trained the
run when ``compliance.separate_approver`` is true; without authentication the name is recorded as given, marked
``compliance.approver_authenticated=false``.

No pytest; mlflow is imported lazily. ``mlflow.register_model`` fails for a plain artifact folder, so versions
are created with ``MlflowClient.create_model_version(name, source="runs:/<id>/adapter", run_id=<id>)``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import __version__
from .verdict import RELEASABLE, utcnow

STAGES = ("candidate", "staging", "production", "archived")
EARLIER = {"staging": ("candidate",), "production": ("staging", "candidate"),
           "archived": ("production", "staging", "candidate")}


class PromotionError(Exception):
    """A promotion that must not happen (a blocked version, no such version, a missing reason)."""


def client_for(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "\\'")


def ensure_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="Adapters gated by pytest-ftgate", tags={
            "ftgate.managed": "true"})
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise


def aliases(client: Any, name: str) -> dict[str, str]:
    """alias -> version of the registered model ({} when it does not exist)."""
    from mlflow.exceptions import MlflowException

    try:
        return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    except MlflowException:
        return {}


def versions_of_run(client: Any, name: str, run_id: str) -> list[Any]:
    found = client.search_model_versions(f"name='{_quote(name)}' and run_id='{_quote(run_id)}'")
    return sorted(found, key=lambda v: int(v.version))


# -- after a gating session ----------------------------------------------------------------------------------------
def candidate_tags(verdict: dict, dataset_hash: str, report_sha256: str, attestation_sha256: str = "",
                   evidence_uri: str = "") -> dict:
    return {
        "compliance.dataset_hash": dataset_hash or "unknown",
        "compliance.gate_status": verdict.get("verdict", "block"),
        "compliance.report_sha256": report_sha256 or "none",
        "compliance.attestation_sha256": attestation_sha256 or "none",
        "compliance.evidence": evidence_uri or "none",  # runs:/<id>/ftgate/sessions/<session id>: kept as it was
        "compliance.session_id": verdict.get("session_id", ""),
        "compliance.approved_by": "pending",
        "compliance.run_id": verdict.get("run_id", ""),
        "ftgate.version": __version__,
    }


def refusal(verdict: dict, has_adapter: bool) -> str | None:
    """Why this verdict may not become a candidate (None when it may)."""
    status = verdict.get("verdict", "block")
    if not verdict.get("complete"):
        return (f"the session's verdict is partial ({verdict.get('partial_reason') or 'not every gate ran'}): only a "
                "session that ran every gate can promote")
    if status not in RELEASABLE:
        return f"verdict {status}: a blocked run is never promoted"
    integrity = [g for g in verdict.get("gates", []) if g.get("id") == "integrity"]
    if not integrity or any(g.get("outcome") != "passed" for g in integrity):
        why = integrity[0].get("outcome") if integrity else "not among this session's gates"
        return f"the integrity gate did not pass ({why}): promotion needs the bytes on the run to be the trained ones"
    if not has_adapter:
        return "the run has no adapter artifact"
    return None


def promote_candidate(client: Any, name: str, verdict: dict, tags: dict, has_adapter: bool) -> dict:
    """Register the run as a version of ``name`` with alias ``candidate`` when its verdict allows it.

    Returns {name, version, alias, tags} or {skipped: why}; a refused run does not touch the registry."""
    run_id = verdict.get("run_id", "")
    status = verdict.get("verdict", "block")
    why = refusal(verdict, has_adapter)
    if why is not None:
        return {"name": name, "skipped": why}
    ensure_model(client, name)
    existing = [v for v in versions_of_run(client, name, run_id) if v.source == f"runs:/{run_id}/adapter"]
    mv = existing[-1] if existing else client.create_model_version(
        name, source=f"runs:/{run_id}/adapter", run_id=run_id, description=f"gated by pytest-ftgate: {status}")
    version = str(mv.version)
    held = {a for a, v in aliases(client, name).items() if v == version and a in ("staging", "production")}
    if held:  # already past review: the evidence it was approved with stays; the stage is not moved back
        return {"name": name, "version": version, "alias": sorted(held)[0], "tags": {}}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))
    client.set_model_version_tag(name, version, "compliance.model_stage", "candidate")
    client.set_registered_model_alias(name, "candidate", version)
    return {"name": name, "version": version, "alias": "candidate", "tags": tags}


def withdraw(client: Any, name: str, run_id: str, status: str) -> None:
    """A run whose complete verdict no longer passes must not stay the candidate."""
    current = aliases(client, name).get("candidate")
    if not current or not run_id:
        return
    mv = client.get_model_version(name, current)
    if mv.run_id == run_id:
        client.delete_registered_model_alias(name, "candidate")
        client.set_model_version_tag(name, current, "compliance.gate_status", status)
        client.set_model_version_tag(name, current, "compliance.model_stage", "none")


# -- after human review --------------------------------------------------------------------------------------------
def resolve_version(client: Any, name: str, to: str, version: str | None, run_id: str | None) -> str:
    if version:
        client.get_model_version(name, version)  # raises when it does not exist
        return str(version)
    if run_id:
        found = versions_of_run(client, name, run_id)
        if not found:
            raise PromotionError(f"run {run_id} has no version in registered model {name!r}")
        return str(found[-1].version)
    held = aliases(client, name)
    for alias in EARLIER[to]:
        if alias in held:
            return held[alias]
    raise PromotionError(f"no version of {name!r} holds an alias that may move to {to!r} "
                         f"({', '.join(EARLIER[to])}); pass --version N or --run-id ID")


def move(client: Any, name: str, to: str, approved_by: str, version: str | None = None, run_id: str | None = None,
         reason: str = "", policy: Any = None) -> dict:
    """Move ``to`` onto a version after review; record who (the identity the tracking server authenticated, when it
    has authentication), when (and why, for archived). ``production`` needs every required item of the version's
    compliance checklist answered; ``policy`` (a config ``Compliance``) overrides the stored required items and
    ``separate_approver``."""
    if to not in EARLIER:
        raise PromotionError(f"--to {to!r}: use one of {', '.join(EARLIER)}")
    if to == "archived" and not reason.strip():
        raise PromotionError("archiving needs a documented reason: pass --reason TEXT")
    version = resolve_version(client, name, to, version, run_id)
    mv = client.get_model_version(name, version)
    status = (mv.tags or {}).get("compliance.gate_status")
    if to != "archived" and status not in RELEASABLE:
        raise PromotionError(f"{name} version {version} has compliance.gate_status={status!r}: only versions that "
                             "passed (or only warned) the gates can move forward; gate the run again")
    held = aliases(client, name)
    stored = _stored_checklist(client, mv)
    approved_by, authenticated = approver(client, approved_by)
    if to != "archived":
        _check_separation(client, mv, approved_by, policy, stored)
    if to == "production":
        _check_checklist(client, name, version, mv, held, stored, policy)
    now = utcnow()
    if to == "production" and held.get("production") not in (None, version):
        old = held["production"]
        client.set_registered_model_alias(name, "archived", old)
        _stage_tags(client, name, old, "archived", approved_by, now, f"superseded by version {version}")
    for alias in STAGES:  # one stage per version
        if alias != to and held.get(alias) == version:
            client.delete_registered_model_alias(name, alias)
    client.set_registered_model_alias(name, to, version)
    _stage_tags(client, name, version, to, approved_by, now, reason)
    client.set_model_version_tag(name, version, "compliance.approver_authenticated", str(authenticated).lower())
    if mv.run_id:
        for key, value in {"compliance.model_stage": to, "compliance.approved_by": approved_by,
                           "compliance.approver_authenticated": str(authenticated).lower(),
                           "compliance.approval_date": now}.items():
            client.set_tag(mv.run_id, key, value)
    previous = next((a for a in STAGES if a != to and held.get(a) == version), "none")
    return {"name": name, "version": version, "from": previous, "to": to, "approved_by": approved_by, "at": now,
            "authenticated": authenticated}


# -- who approves (issue 13 item 6) and the compliance checklist (item 5) ----------------------------------------
CURRENT_USER = "/api/2.0/mlflow/users/current"  # MLflow's basic-auth app: the user the request authenticated as


def authenticated_user(tracking_uri: str) -> str | None:
    """The user an MLflow tracking server with authentication (``mlflow server --app-name basic-auth``) knows the
    caller as, from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD; None when the store is not a server or
    the server has no authentication (the endpoint is not there)."""
    if not str(tracking_uri).startswith(("http://", "https://")):
        return None
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    resp = http_request(get_default_host_creds(tracking_uri), CURRENT_USER, "GET", max_retries=0, timeout=30,
                        raise_on_status=False)
    if resp.status_code == 404:
        return None
    if resp.status_code in (401, 403):
        raise PromotionError(f"the tracking server {tracking_uri} refused the credentials (HTTP {resp.status_code}): "
                             "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your own account")
    if resp.status_code != 200:
        raise PromotionError(f"{tracking_uri}{CURRENT_USER} answered HTTP {resp.status_code}: cannot tell who "
                             "approves; check the server")
    return str(resp.json()["user"]["username"])


def approver(client: Any, approved_by: str) -> tuple[str, bool]:
    """(who approves, whether the tracking server authenticated them). With authentication ``--approved-by`` may
    be omitted and must equal the authenticated user; without it the string is recorded as given."""
    who = authenticated_user(client.tracking_uri)
    given = (approved_by or "").strip()
    if who is None:
        if not given:
            raise PromotionError("--approved-by is empty: name the person who reviewed the report")
        return given, False
    if given and given != who:
        raise PromotionError(f"--approved-by {given!r} is not the user the tracking server authenticated ({who!r}): "
                             "approve as yourself, with your own MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD")
    return who, True


def _stored_checklist(client: Any, mv: Any) -> dict | None:
    """The checklist the version was gated with (its ``compliance.evidence``, else the run's latest evidence)."""
    from . import checklist

    if not mv.run_id:
        return None
    where = (mv.tags or {}).get("compliance.evidence", "")
    where = where.removeprefix(f"runs:/{mv.run_id}/") if where and where != "none" else \
        client.get_run(mv.run_id).data.tags.get("ftgate.evidence", "")
    try:
        return checklist.stored(client, mv.run_id, where)
    except LookupError:
        return None


def _check_separation(client: Any, mv: Any, approved_by: str, policy: Any, stored: dict | None) -> None:
    """``compliance.separate_approver``: the user who trained the run (its ``mlflow.user`` tag, else the run's
    user_id) may not approve it."""
    separate = getattr(policy, "separate_approver", None) if policy is not None else None
    if not (separate if separate is not None else (stored or {}).get("separate_approver", False)):
        return
    run = client.get_run(mv.run_id) if mv.run_id else None
    trainer = (run.data.tags.get("mlflow.user") or run.info.user_id or "") if run else ""
    if not trainer:
        raise PromotionError(f"compliance.separate_approver is true but run {mv.run_id} records no training user "
                             "(mlflow.user): separation of duties cannot be checked")
    if trainer == approved_by:
        raise PromotionError(f"{approved_by!r} trained run {mv.run_id} and may not approve it "
                             "(compliance.separate_approver: true): another reviewer must approve")


def _check_checklist(client: Any, name: str, version: str, mv: Any, held: dict, stored: dict | None,
                     policy: Any) -> None:
    """Production needs the version's stored checklist, registry items re-answered from the registry now, with
    every required item answered."""
    from . import checklist

    required = tuple(policy.required) if policy is not None else None
    if required == ():  # compliance.required: [] in the --config given: nothing to check
        return
    if stored is None:
        raise PromotionError(f"{name} version {version}: run {mv.run_id} has no stored compliance checklist (gated "
                             "before it existed, or not by a complete session): gate the run again, then promote")
    now = checklist.with_registry(stored, {"name": name, "version": version, "aliases": held})
    why = checklist.refusal(now, required)
    if why:
        raise PromotionError(f"{name} version {version} may not move to production: {why}")


def _stage_tags(client: Any, name: str, version: str, to: str, who: str, when: str, reason: str) -> None:
    tags = {"compliance.model_stage": to, f"compliance.{to}_by": who, f"compliance.{to}_at": when}
    if to != "archived":
        tags.update({"compliance.approved_by": who, "compliance.approval_date": when})
    if reason:
        tags[f"compliance.{to}_reason"] = reason
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ftgate promote", description=(
        "Move a registry alias after human review of the pytest-ftgate report: candidate -> staging -> production "
        "-> archived. Records who approved and when as version tags."))
    parser.add_argument("name", help="registered model name (as given to --ftgate-promote)")
    parser.add_argument("--to", required=True, choices=list(EARLIER), help="the stage (alias) to move to")
    parser.add_argument("--approved-by", default="", metavar="WHO", help=(
        "the reviewer (required unless the tracking server has authentication: then it defaults to, and must "
        "equal, the authenticated user)"))
    parser.add_argument("--config", metavar="FILE", help="ftgate.yaml whose compliance.required and "
                                                         "compliance.separate_approver apply (default: the ones "
                                                         "the version was gated with)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--version", metavar="N", help="the model version (default: the holder of the previous "
                                                      "stage's alias)")
    which.add_argument("--run-id", metavar="ID", help="the training run whose version moves")
    parser.add_argument("--reason", default="", help="why (required for --to archived)")
    parser.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking/registry URI (default: "
                                                              "$MLFLOW_TRACKING_URI, else sqlite:///.ftgate/mlflow.db)")
    args = parser.parse_args(argv)
    from mlflow.exceptions import MlflowException

    from .config import load_config
    from .errors import ConfigError
    from .store import quiet_mlflow_env, resolve_store

    quiet_mlflow_env()
    uri = resolve_store(args.tracking_uri or "")[0]
    try:
        policy = load_config(args.config).compliance if args.config else None
        done = move(client_for(uri), args.name, args.to, args.approved_by, args.version, args.run_id, args.reason,
                    policy)
    except (PromotionError, MlflowException, ConfigError) as exc:
        print(f"ftgate promote: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"ftgate promote: {done['name']} version {done['version']}: {done['from']} -> {done['to']} "
          f"(approved by {done['approved_by']}{'' if done['authenticated'] else ', unauthenticated'} at {done['at']})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
