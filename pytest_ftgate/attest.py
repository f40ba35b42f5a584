"""The attestation of a gated adapter: an in-toto Statement v1 whose subjects are the adapter's files (sha256) and
whose predicate holds the verdict, the gate results, the lineage hashes and the versions; its DSSE envelope,
signed with an ed25519 key when one is configured; and `ftgate verify`, which re-checks it offline and succeeds only
for a complete pass (or warn, when allowed) whose subjects are the files shipped and the files training recorded.

No pytest and no MLflow here: callers hand in plain dicts and local paths. Secrets are the caller's to redact
before the predicate is built (``report.Redactor``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
from pathlib import Path

from .hashing import bare, tree_files
from .record import LINEAGE_PARAMS, AuditRecord
from typing import Any

from .verdict import json_safe, write_json_atomic

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://github.com/pytest-ftgate/pytest-ftgate/attestation/release-gate/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
KEY_ENV = "FTGATE_SIGNING_KEY"  # path to a PEM ed25519 private key; unset = unsigned attestations
KEY_PASSWORD_ENV = "FTGATE_SIGNING_KEY_PASSWORD"  # its passphrase, if any


class AttestationError(Exception):
    """An attestation or key file cannot be read (the path and the reason are named)."""


# -- subjects ----------------------------------------------------------------------------------------------------
def file_digests(root: str | Path) -> list[dict]:
    """Every file under ``root`` as {name (posix, relative), sha256 ("sha256:<hex>"), size}, sorted by name,
    hashed now (no memo)."""
    return tree_files(root)


# -- the statement -----------------------------------------------------------------------------------------------
def lineage(params: dict, audit: dict | None) -> dict:
    """The hashes that tie the adapter to its inputs: the run's ``ftgate.*_sha256`` params and the audit record."""
    out: dict[str, Any] = {k.removeprefix("ftgate."): params[k] for k in LINEAGE_PARAMS if params.get(k)}
    view = AuditRecord.of(audit)
    if view.inputs:
        base = view.base_model
        out["base_model"] = {k: base.get(k) for k in ("source", "hash") if base.get(k)}
        out["datasets"] = [{k: d.get(k) for k in ("name", "split", "sha256", "samples")} for d in view.datasets]
        cfg = view.config
        out["config"] = {k: cfg.get(k) for k in ("file", "sha256", "git_commit") if cfg.get(k)}
    recorded = view.adapter_files
    if recorded:
        out["adapter_files_recorded"] = [{"name": f.get("name"), "sha256": f.get("sha256")} for f in recorded]
    return out


def predicate(verdict: dict, run: dict, lineage_: dict, versions: dict) -> dict:
    """The predicate: what was decided about the adapter, on which evidence, by which tool versions."""
    gates = [{k: g.get(k) for k in ("id", "name", "severity", "outcome", "value", "threshold", "message")}
             for g in verdict.get("gates", [])]
    return json_safe({
        "verdict": verdict.get("verdict"), "complete": bool(verdict.get("complete")),
        "incomplete": not verdict.get("complete"), "session_id": verdict.get("session_id", ""),
        "error": verdict.get("error", ""),
        "report_sha256": verdict.get("report_sha256", ""), "started_at": verdict.get("started_at"),
        "finished_at": verdict.get("finished_at"), "gates": gates, "run": run, "lineage": lineage_,
        "versions": versions,
    })


def statement(subjects: list[dict], predicate_: dict) -> dict:
    if not subjects:
        raise AttestationError("an attestation needs at least one subject (the adapter has no files)")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": s["name"], "digest": {"sha256": bare(s["sha256"])}} for s in subjects],  # in-toto: hex
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate_,
    }


# -- DSSE signing ------------------------------------------------------------------------------------------------
def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def load_private_key(path: str | Path, password: str | None = None):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(Path(path).read_bytes(), password.encode() if password else None)
    except (OSError, ValueError, TypeError) as exc:
        raise AttestationError(f"signing key {str(path)!r} cannot be loaded: {exc}; set ${KEY_ENV} to a PEM "
                               f"ed25519 private key (and ${KEY_PASSWORD_ENV} if it is encrypted)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AttestationError(f"signing key {str(path)!r} is a {type(key).__name__}, not an ed25519 key")
    return key


def load_public_key(path: str | Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise AttestationError(f"public key {str(path)!r} cannot be loaded: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AttestationError(f"public key {str(path)!r} is a {type(key).__name__}, not an ed25519 key")
    return key


def keyid(public_key) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def envelope(statement_: dict, private_key=None) -> dict:
    """The DSSE envelope of the statement; ``signatures`` is empty when no key is given."""
    payload = json.dumps(statement_, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    sigs = []
    if private_key is not None:
        sig = private_key.sign(pae(PAYLOAD_TYPE, payload))
        sigs.append({"keyid": keyid(private_key.public_key()), "sig": base64.b64encode(sig).decode()})
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(), "signatures": sigs}


def configured_key():
    """The private key named by $FTGATE_SIGNING_KEY, or None when it is unset."""
    path = os.environ.get(KEY_ENV, "")
    return load_private_key(path, os.environ.get(KEY_PASSWORD_ENV) or None) if path else None


def write(path: str | Path, statement_: dict, private_key=None) -> Path:
    return write_json_atomic(path, envelope(statement_, private_key))


# -- verification ------------------------------------------------------------------------------------------------
def read(path: str | Path) -> tuple[dict, dict | None]:
    """(statement, envelope or None) from a DSSE envelope or a bare statement file."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AttestationError(f"attestation {str(path)!r} cannot be read: {exc}") from None
    if isinstance(doc, dict) and "payload" in doc:
        if doc.get("payloadType") != PAYLOAD_TYPE:
            raise AttestationError(f"attestation {str(path)!r}: payloadType {doc.get('payloadType')!r} is not "
                                   f"{PAYLOAD_TYPE!r}")
        try:
            return json.loads(base64.b64decode(doc["payload"], validate=True)), doc
        except (ValueError, TypeError) as exc:
            raise AttestationError(f"attestation {str(path)!r}: the payload is not base64 JSON ({exc})") from None
    return doc, None


def check_signature(env: dict | None, public_key) -> list[str]:
    """Problems with the envelope's signature under ``public_key`` ([] = one signature verifies)."""
    from cryptography.exceptions import InvalidSignature

    if env is None or not env.get("signatures"):
        return ["the attestation is not signed"]
    payload = base64.b64decode(env["payload"])
    want = keyid(public_key)
    for s in env["signatures"]:
        try:
            public_key.verify(base64.b64decode(s.get("sig", "")), pae(env["payloadType"], payload))
            return []
        except (InvalidSignature, ValueError):
            continue
    ids = ", ".join(str(s.get("keyid", "?"))[:16] for s in env["signatures"])
    return [f"no signature verifies under the given public key (keyid {want[:16]}; signed by {ids})"]


def check_subjects(statement_: dict, adapter_dir: str | Path) -> list[str]:
    """Problems: a subject missing or with another sha256, or a file in the adapter that is not a subject."""
    problems = []
    if statement_.get("_type") != STATEMENT_TYPE:
        problems.append(f"_type is {statement_.get('_type')!r}, not {STATEMENT_TYPE!r}")
    actual = {f["name"]: bare(f["sha256"]) for f in file_digests(adapter_dir)}  # subjects hold in-toto's hex
    subjects = statement_.get("subject") or []
    if not subjects:
        problems.append("the statement has no subjects")
    for s in subjects:
        name, want = s.get("name"), (s.get("digest") or {}).get("sha256")
        if name not in actual:
            problems.append(f"{name}: missing from {adapter_dir}")
        elif actual[name] != want:
            problems.append(f"{name}: sha256 {actual[name]} != attested {want}")
    for extra in sorted(set(actual) - {s.get("name") for s in subjects}):
        problems.append(f"{extra}: in {adapter_dir} but not attested")
    return problems


def check_lineage(statement_: dict) -> list[str]:
    """Problems: attested files that are not the files training recorded (the predicate's own lineage)."""
    recorded = ((statement_.get("predicate") or {}).get("lineage") or {}).get("adapter_files_recorded")
    if not recorded:
        return ["the attestation records no adapter files from training (lineage.adapter_files_recorded): the "
                "shipped bytes cannot be tied to the trained ones"]
    want = {f.get("name"): bare(str(f.get("sha256") or "")) for f in recorded}
    have = {s.get("name"): (s.get("digest") or {}).get("sha256") for s in statement_.get("subject") or []}
    problems = [f"{n}: attested sha256 {have.get(n, 'missing')} is not the trained {h}" for n, h in sorted(want.items())
                if have.get(n) != h]
    problems += [f"{n}: attested but not recorded at training" for n in sorted(set(have) - set(want))]
    return problems


def check_verdict(statement_: dict, allow_warn: bool = False) -> list[str]:
    """Problems: the attested verdict is not a complete pass (or warn, when allowed)."""
    pred = statement_.get("predicate") or {}
    verdict, complete = pred.get("verdict"), pred.get("complete", not pred.get("incomplete", True))
    ok = ("pass", "warn") if allow_warn else ("pass",)
    problems = []
    if not complete or verdict == "partial":
        problems.append("the attested verdict is partial: not every gate ran in that session")
    elif verdict not in ok:
        hint = " (pass --allow-warn to accept warn)" if verdict == "warn" else ""
        problems.append(f"the attested verdict is {verdict!r}, not a release{hint}")
    return problems


def verify(path: str | Path, adapter_dir: str | Path, public_key_path: str | None = None,
           require_signature: bool = False, allow_warn: bool = False) -> tuple[list[str], dict]:
    """(problems, statement): the verdict, the digests against the shipped files and the trained ones, and the
    signature when a public key is given or one is required."""
    statement_, env = read(path)
    if not Path(adapter_dir).is_dir():
        raise AttestationError(f"adapter directory {str(adapter_dir)!r} does not exist")
    problems = check_verdict(statement_, allow_warn) + check_subjects(statement_, adapter_dir)
    problems += check_lineage(statement_)
    if public_key_path:
        problems += check_signature(env, load_public_key(public_key_path))
    elif require_signature:
        problems.append("--require-signature needs --public-key to check the signature against")
    return problems, statement_


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ftgate verify", description=(
        "Re-check an attestation written by pytest-ftgate against an adapter directory, offline: the attested "
        "verdict is a complete pass, every attested file's sha256 matches the shipped file and the one training "
        "recorded, no unattested files, and (with --public-key) the ed25519 DSSE signature. Exit 0 only then."))
    parser.add_argument("attestation", help="<out>/verdicts/<run_id>.intoto.json")
    parser.add_argument("adapter_dir", help="the adapter directory as shipped")
    parser.add_argument("--public-key", metavar="PEM", help="ed25519 public key the signature must verify under")
    parser.add_argument("--require-signature", action="store_true", help="fail when the signature is not checked")
    parser.add_argument("--allow-warn", action="store_true", help="accept a complete warn verdict (default: pass "
                                                                   "only)")
    args = parser.parse_args(argv)
    try:
        problems, st = verify(args.attestation, args.adapter_dir, args.public_key, args.require_signature,
                              args.allow_warn)
    except AttestationError as exc:
        print(f"ftgate verify: {exc}", file=sys.stderr)
        return 2
    pred = st.get("predicate") or {}
    run = (pred.get("run") or {}).get("run_id", "?")
    for p in problems:
        print(f"MISMATCH {p}", file=sys.stderr)
    if problems:
        print(f"ftgate verify: FAILED, {len(problems)} problem(s); run {run}, verdict {pred.get('verdict')}",
              file=sys.stderr)
        return 1
    signed = "signature verified" if args.public_key else "signature not checked (no --public-key)"
    print(f"ftgate verify: OK, {len(st.get('subject', []))} file(s) match the shipped and the trained adapter; "
          f"{signed}; run {run}, verdict {pred.get('verdict')} (complete, session {pred.get('session_id') or '?'})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
