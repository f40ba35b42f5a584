"""The audit gates: verification on top of the audit record (seeds 002/003): G6 completeness, integrity (adapter, data, config and
base model files re-hashed now against their recorded sha256, and the record against the run's immutable lineage
params), adapter format (safetensors vs pickle, trust_remote_code) and the comparison of a re-trained loss history
with the recorded one.

Pure file work: no pytest, no mlflow. The record itself (its schema, writer and reader) is ``record.py``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import IntegrityError
from ..fileio import resolve_path as _resolve
from ..hashing import dataset_sha256, digest_files, digest_text, sha256_file
from ..record import (ADOPTED, REQUIRED, WRAPPER_HINT, AuditRecord, LoadedRecord, _hash_fields, missing_fields,
                      not_established)
from . import Check, family

gate = family("audit", "Audit record", 40, view="audit")

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
SECTIONS = {
    "input_artifacts": "input artifacts (base model, datasets, config, each with a sha256)",
    "training_record": "training record (timeline, steps, epochs, checkpoints, metrics summary)",
    "output_artifacts": "output artifacts (adapter files with their sha256)",
    "reproducibility": "reproducibility (seeds, environment, hardware, determinism)",
    "run": "lineage params of the run (ftgate.*_sha256, logged at training)",
}


# -- G6 -----------------------------------------------------------------------------------------------
@gate("G6", "audit record completeness (share of required fields)")
def completeness(loaded: LoadedRecord, run_id: str) -> Check:
    """G6: the record exists, parses, belongs to this run and documents every REQUIRED field.

    A record written by ``ftgate adopt`` after training lists what could not be established then; when nothing
    else is missing G6 fails with ``details["adopted"]`` set, and ``adopted_severity`` applies audit.adopted."""
    threshold = "100% of the audit fields (seed 002)"
    if loaded.record is None:
        return Check(False, "no audit record", threshold, _no_record_message(loaded), {"problem": loaded.problem})
    view = loaded.view
    missing = missing_fields(loaded.record, loaded.params)
    if view.run_id not in (None, "", run_id):
        missing.append(f"run_id (the record is of run {view.run_id}, not of {run_id})")
    total = len(REQUIRED) + len(_hash_fields(loaded.record))
    share = round(100 * (1 - min(len(missing), total) / total), 1)
    later = not_established(loaded.record)
    unknown = [m for m in missing if any(m == f or m.startswith(f + ".") for f in later)]
    if later and len(unknown) == len(missing):
        info = view.adopted
        return Check(False, f"adopted, {len(unknown)} field(s) not established", threshold,
                     f"adopted after training ({info.get('by', 'ftgate adopt')}, {info.get('at', '?')}): inputs, "
                     f"adapter and training record are recorded with their hashes, but what only the training "
                     f"process could record is not established: {'; '.join(info.get('not_established') or later)}. "
                     f"Fields: {', '.join(unknown) or 'none'}. audit.adopted in ftgate.yaml decides whether this "
                     "warns (default) or blocks; train through `ftgate train` to record them",
                     {"missing": missing, "adopted": True, "not_established": later})
    if missing:
        by_section: dict[str, list[str]] = {}
        for m in missing:
            by_section.setdefault(m.split(".")[0].split(" ")[0], []).append(m)
        named = "; ".join(f"{SECTIONS.get(s, s)}: {', '.join(ms)}" for s, ms in by_section.items())
        return Check(False, f"{share}%", threshold,
                     f"the audit record {loaded.source} lacks {len(missing)} field(s): {named}. Record them: "
                     f"{WRAPPER_HINT}", {"missing": missing, "adopted": bool(later)})
    n_data, n_files = len(view.datasets), len(view.adapter_files)
    return Check(True, "100%", threshold, f"the audit record is complete: {n_data} dataset(s), {n_files} adapter "
                                          "file(s), every hash recorded", {"missing": []})


def _no_record_message(loaded: LoadedRecord) -> str:
    if "no audit record" not in loaded.problem:
        return loaded.problem
    have = [k for k in ("seed", "data_seed", "num_train_epochs", "learning_rate") if k in (loaded.params or {})]
    found = f" The run only has LLaMA-Factory's training arguments ({', '.join(have)}, ...) and metrics." if have \
        else ""
    return (f"{loaded.problem}: it was not trained with pytest-ftgate's wrapper (plain LLaMA-Factory with "
            f"`report_to: mlflow` logs metrics and training arguments only).{found} Missing: "
            + "; ".join(SECTIONS.values()) + f". To add them, {WRAPPER_HINT}")


def adopted_severity(check: Check, policy: str) -> str | None:
    """The severity G6 takes for an adopted run whose only gaps are the fields listed as not established:
    ``audit.adopted`` (warn | block); None (the gate's own) otherwise."""
    adopted_only = not check.passed and check.details.get("adopted") and check.details.get("not_established")
    return policy if adopted_only and str(check.value).startswith(ADOPTED) else None


# -- integrity ----------------------------------------------------------------------------------------
@dataclass
class _Tally:
    verified: list
    mismatched: list
    unverifiable: list

    def compare(self, what: str, path: str, recorded: str | None, actual: str, mismatch: str) -> None:
        """File one comparison under verified, or under mismatched with ``mismatch`` as its message."""
        entry = {"what": what, "path": path, "recorded": recorded, "actual": actual}
        if actual != recorded:
            self.mismatched.append({**entry, "message": mismatch})
        else:
            self.verified.append(entry)


@gate("integrity", "hashes checked against the audit record")
def integrity(record: dict, adapter_dir: Path | None, params: dict | None = None,
              base_dir: Path | None = None, base_model: bool = True) -> Check:
    """``integrity``: the adapter files (as stored on the run), the dataset files and the config, re-hashed
    now, equal the recorded sha256, and the record's hashes equal the run's lineage params (immutable in MLflow,
    so a record rewritten to match a swapped file is caught). A file that is gone is ``unverifiable``.
    ``base_model``: re-hash the base model's recorded files too."""
    t = _Tally([], [], [])
    _adapter_integrity(record, adapter_dir, t)
    _inputs_integrity(record, base_dir, base_model, t)
    _params_integrity(record, params or {}, t)
    details = {"verified": t.verified, "mismatched": t.mismatched, "unverifiable": t.unverifiable}
    value = {"verified": len(t.verified), "mismatched": len(t.mismatched), "unverifiable": len(t.unverifiable)}
    threshold = "every recorded sha256 matches"
    if t.mismatched or t.unverifiable:
        parts = [m["message"] for m in t.mismatched] + [u["message"] for u in t.unverifiable]
        return Check(False, value, threshold, "; ".join(parts), details)
    return Check(True, value, threshold, f"{len(t.verified)} hashes match (adapter, inputs, run params)", details)


def changed_inputs(record: dict, base_dir: Path | None = None) -> list[str]:
    """Why the recorded inputs (base model, data, config) cannot reproduce the run now: changed or gone."""
    t = _Tally([], [], [])
    _inputs_integrity(record, base_dir, True, t)
    return [e["message"] for e in t.mismatched + t.unverifiable]


@gate("reproducible_inputs", "recorded inputs")
def reproducible_inputs(record: dict, base_dir: Path | None = None) -> Check:
    """Whether re-training can reproduce the run: its recorded inputs are all there and unchanged."""
    changed = changed_inputs(record, base_dir)
    if changed:
        return Check(False, "inputs changed", "the recorded inputs", "the recorded inputs changed since training, "
                     "so re-training cannot reproduce the run: " + "; ".join(changed), {"changed": changed})
    return Check(True, "inputs unchanged", "the recorded inputs", "base model, data and config are as recorded")


def _inputs_integrity(record: dict, base_dir: Path | None, base_model: bool, t: _Tally) -> None:
    view = AuditRecord.of(record)
    for d in view.datasets:
        _file_integrity(f"{d.get('split', '?')} dataset {d.get('name', '?')!r}", d.get("path"), d.get("sha256"),
                        dataset_sha256, base_dir, t)
    if view.dataset_info:
        names, path, recorded = view.dataset_info_entries, view.dataset_info_path, view.dataset_info_sha256
        if names is not None:  # one shared file: only the entries the run used are hashed
            _file_integrity(f"dataset_info.json entries {', '.join(map(str, names))}", path, recorded,
                            lambda f: _entries_sha256(f, names), base_dir, t)
        else:
            _file_integrity("dataset_info.json", path, recorded, sha256_file, base_dir, t)
    _config_integrity(view.config, base_dir, t)
    if base_model and view.base_model_path:
        root = _resolve(view.base_model_path, base_dir)
        for f in view.base_model_files:
            _file_integrity(f"base model file {f.get('name')}", str(root / str(f.get("name"))), f.get("sha256"),
                            sha256_file, None, t)


def _entries_sha256(path: str | Path, names: list) -> str:
    from ..train import info_entries_sha256

    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable ({type(exc).__name__})"
    return info_entries_sha256(info if isinstance(info, dict) else {}, [str(n) for n in names])


def _params_integrity(record: dict, params: dict, t: _Tally) -> None:
    """The record's input and adapter hashes against the ``ftgate.*_sha256`` params logged at training."""
    from ..train import lineage_params

    view = AuditRecord.of(record)
    try:
        expected = lineage_params(view.inputs)
    except (KeyError, TypeError, AttributeError):  # an incomplete record: G6 names what is missing
        expected = {}
    if view.adapter_files:
        expected["ftgate.adapter_sha256"] = digest_files(view.adapter_files)
    for key, value in expected.items():
        if not params.get(key):
            continue
        t.compare(f"run param {key}", key, params[key], value,
                  f"the audit record does not match the run's param {key} ({_short(params[key])} "
                  f"logged at training, {_short(value)} in the record): the record was rewritten")


def require_verifiable(check: Check) -> Check:
    """Turn an integrity result whose only problem is data that is gone into an error (not a pass, not a fail:
    nothing was shown to differ, but nothing could be verified either)."""
    if not check.passed and check.details.get("unverifiable") and not check.details.get("mismatched"):
        raise IntegrityError("cannot verify: " + check.message)
    return check


def _file_integrity(what: str, path: str | None, recorded: str | None, hasher, base_dir, t: _Tally) -> None:
    if not path or not recorded:
        t.unverifiable.append({"what": what, "path": path, "message": f"{what}: no path or sha256 recorded"})
        return
    p = _resolve(path, base_dir)
    if not p.exists():
        t.unverifiable.append({"what": what, "path": str(p), "message": f"{what}: {p} does not exist, so the data "
                               "cannot be verified (restore it, or run the gate where it is reachable)"})
        return
    actual = hasher(p)
    t.compare(what, str(p), recorded, actual,
              f"{what}: {p} has changed since training (sha256 {_short(recorded)} recorded, {_short(actual)} now)")


def _config_integrity(config: dict, base_dir, t: _Tally) -> None:
    """The config as training hashed it: the digest of its text (file read now, else the recorded content)."""
    path, recorded, content = config.get("file"), config.get("sha256"), config.get("content")
    p = _resolve(path, base_dir) if path else None
    if p is not None and p.is_file() or not isinstance(content, str):
        _file_integrity("training config", path, recorded, lambda f: digest_text(Path(f).read_text()), base_dir, t)
        return
    actual = digest_text(content)
    t.compare("training config (recorded content; file gone)", path, recorded, actual,
              f"training config: the content stored in the record does not match its sha256 "
              f"({_short(recorded)} recorded, {_short(actual)} computed): the record was edited")


def _adapter_integrity(record: dict, adapter_dir: Path | None, t: _Tally) -> None:
    view = AuditRecord.of(record)
    files = {f.get("name"): f.get("sha256") for f in view.adapter_files}
    artifact = view.adapter_artifact_path
    if adapter_dir is None or not Path(adapter_dir).is_dir():
        t.mismatched.append({"what": "adapter", "path": artifact, "message": f"the run has no adapter artifact "
                             f"{artifact!r}: there is nothing to release (a run trained by plain llamafactory-cli: "
                             "`ftgate adopt <run> --config <config.yaml>` attaches the adapter of its output_dir)"})
        return
    present = {str(p.relative_to(adapter_dir)) for p in Path(adapter_dir).rglob("*") if p.is_file()}
    for name, recorded in files.items():
        p = Path(adapter_dir) / str(name)
        if name not in present:
            t.mismatched.append({"what": "adapter file", "path": f"{artifact}/{name}", "message":
                                 f"adapter file {name} is recorded but missing from the run's {artifact!r} artifact"})
            continue
        actual = sha256_file(p)
        t.compare("adapter file", f"{artifact}/{name}", recorded, actual,
                  f"adapter file {name} differs from the one trained (sha256 {_short(recorded)} "
                  f"recorded, {_short(actual)} now): tampered with or swapped after training")
    for name in sorted(present - set(files)):
        t.mismatched.append({"what": "adapter file", "path": f"{artifact}/{name}", "message":
                             f"adapter file {name} is not in the audit record: added or swapped after training"})


def _short(h: str | None) -> str:
    return (h or "none").removeprefix("sha256:")[:12] + "…"


# -- adapter format -----------------------------------------------------------------------------------
@gate("adapter_format", "adapter weight format")
def adapter_format(adapter_dir: Path | None, allow_pickle: bool, allow_remote_code: bool,
                   training_config: dict | None = None, base_model_dir: Path | None = None) -> Check:
    """``adapter_format``: weights in safetensors (pickle only when allowed), a readable adapter_config.json, and
    no remote code (``trust_remote_code`` / a base model with ``auto_map``) unless configured."""
    threshold = "safetensors" + (" or pickle (allowed)" if allow_pickle else "") + "; no remote code" * (
        not allow_remote_code)
    if adapter_dir is None or not Path(adapter_dir).is_dir():
        return Check(False, None, threshold, "the run has no adapter artifact to check: a run trained by plain "
                     "llamafactory-cli gets one with `ftgate adopt <run> --config <config.yaml> [--output-dir DIR]`")
    files = sorted(p for p in Path(adapter_dir).rglob("*") if p.is_file())
    safet = [p for p in files if p.suffix == ".safetensors"]
    pickles = [p for p in files if p.suffix in PICKLE_SUFFIXES]
    problems = [_safetensors_problem(p) for p in safet]
    problems = [p for p in problems if p]
    if pickles and not allow_pickle:
        problems.append(f"{', '.join(p.name for p in pickles)}: pickle weights, which can run arbitrary code when "
                        "loaded; save the adapter as safetensors (peft save_pretrained(safe_serialization=True)) or "
                        "pass --ftgate-allow-pickle")
    if not safet and not pickles:
        problems.append("no adapter weights (adapter_model.safetensors) in the artifact")
    problems += _adapter_config_problems(Path(adapter_dir) / "adapter_config.json")
    if not allow_remote_code:
        problems += _remote_code_problems(training_config or {}, base_model_dir)
    kind = "safetensors" if safet and not pickles else "pickle" if pickles and not safet else "mixed"
    if problems:
        return Check(False, kind, threshold, "; ".join(problems), {"files": [p.name for p in files]})
    return Check(True, kind, threshold, f"{', '.join(p.name for p in safet + pickles)} load without running code",
                 {"files": [p.name for p in files]})


def _safetensors_problem(path: Path) -> str:
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - safetensors comes with transformers/peft
        return f"{path.name}: cannot be checked: the safetensors package is not installed (pip install safetensors)"
    try:
        with safe_open(str(path), framework="numpy") as f:
            if not list(f.keys()):
                return f"{path.name}: a safetensors file with no tensors"
    except Exception as exc:
        return f"{path.name}: not a valid safetensors file ({type(exc).__name__}: {str(exc)[:120]})"
    return ""


def _adapter_config_problems(path: Path) -> list[str]:
    if not path.is_file():
        return ["adapter_config.json is missing: peft cannot load the adapter"]
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        return [f"adapter_config.json is not valid JSON ({exc})"]
    if not isinstance(cfg, dict) or not cfg.get("peft_type"):
        return ["adapter_config.json has no peft_type"]
    return []


def _remote_code_problems(training_config: dict, base_model_dir: Path | None) -> list[str]:
    out = []
    if training_config.get("trust_remote_code") is True:
        out.append("the training config sets trust_remote_code: true, which runs the model repository's Python "
                   "code; set audit.trust_remote_code: true in ftgate.yaml if that code was reviewed")
    config_json = Path(base_model_dir) / "config.json" if base_model_dir else None
    if config_json is not None and config_json.is_file():
        try:
            auto_map = json.loads(config_json.read_text(encoding="utf-8")).get("auto_map")
        except (ValueError, AttributeError):
            auto_map = None
        if auto_map:
            out.append(f"the base model's config.json has auto_map ({', '.join(auto_map)}): loading it needs "
                       "trust_remote_code; set audit.trust_remote_code: true in ftgate.yaml if its code was reviewed")
    return out


# -- reproducibility ----------------------------------------------------------------------------------
@gate("reproducibility", "largest relative loss difference to the recorded run")
def compare_losses(recorded: Sequence[tuple[int, float]], replayed: Sequence[tuple[int, float]], steps: int,
                   rtol: float) -> Check:
    """``reproducibility``: the re-trained loss at each logged step up to ``steps`` equals the recorded one
    within a relative tolerance."""
    threshold = f"relative difference <= {rtol:g} up to step {steps}"
    rec = {s: v for s, v in recorded if s <= steps}
    new = {s: v for s, v in replayed if s <= steps}
    common = sorted(set(rec) & set(new))
    if not common:
        return Check(False, None, threshold, f"no logged loss step up to {steps} in both histories (recorded: "
                     f"{sorted(rec)[:5]}, re-trained: {sorted(new)[:5]}); raise audit.reproducibility_steps to "
                     "cover at least one logging step")
    diffs = [(s, abs(new[s] - rec[s]) / max(abs(rec[s]), 1e-12) if math.isfinite(new[s]) else math.inf)
             for s in common]
    worst_step, worst = max(diffs, key=lambda d: d[1])
    identical = all(new[s] == rec[s] for s in common)
    details = {"steps": common, "recorded": [rec[s] for s in common], "replayed": [new[s] for s in common]}
    if worst > rtol:
        return Check(False, worst, threshold,
                     f"re-training from the recorded config and seed did not reproduce the loss: at step {worst_step} "
                     f"{new[worst_step]:.6g} vs {rec[worst_step]:.6g} recorded (relative difference {worst:.3g}); "
                     "check the seeds, the data and the environment against the record", details)
    how = "bitwise identical" if identical else f"max relative difference {worst:.3g} at step {worst_step}"
    return Check(True, worst, threshold, f"loss at {len(common)} logged step(s) up to step {steps} reproduced: {how}",
                 details)
