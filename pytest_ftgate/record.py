"""The audit record of a training run (seed 002), in one place: its schema (``REQUIRED_FIELDS``, ``REQUIRED``,
``missing_fields``), its writer (environment capture and ``build_record``, called at training) and its reader
(``load_record``/``parse_record`` -> ``LoadedRecord``). Hashes come from ``hashing.py``; the gates that check the
record are ``gates/audit.py``. It does not train, gate or talk to MLflow itself; torch is imported only inside
``environment``/``hardware``/``determinism``, which run in the training child.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import IntegrityError
from .hashing import digest_files

SCHEMA_VERSION = 1
ARTIFACT = "audit/audit_record.json"  # where the record lives on its run
AUDIT_ARTIFACT = ARTIFACT  # the old name, kept for callers outside the package
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")

# Every field issue 6's G6 requires, as dotted paths; ``[]`` means "each element of the list".
REQUIRED_FIELDS = (
    "schema_version", "experiment_id", "run_id", "created_at",
    "input_artifacts.base_model.path", "input_artifacts.base_model.hash", "input_artifacts.base_model.files",
    "input_artifacts.datasets", "input_artifacts.datasets[].name", "input_artifacts.datasets[].split",
    "input_artifacts.datasets[].path", "input_artifacts.datasets[].sha256", "input_artifacts.datasets[].samples",
    "input_artifacts.datasets[].format",
    "input_artifacts.dataset_info.path", "input_artifacts.dataset_info.sha256",
    "input_artifacts.config.file", "input_artifacts.config.sha256", "input_artifacts.config.content",
    "training_record.timeline.start_time", "training_record.timeline.end_time",
    "training_record.timeline.duration_seconds",
    "training_record.progress.total_steps", "training_record.progress.completed_steps",
    "training_record.progress.epochs_completed",
    "training_record.metrics_summary.initial_loss", "training_record.metrics_summary.final_loss",
    "output_artifacts.adapter.artifact_path", "output_artifacts.adapter.type", "output_artifacts.adapter.format",
    "output_artifacts.adapter.files", "output_artifacts.adapter.files[].name",
    "output_artifacts.adapter.files[].sha256",
    "reproducibility.seeds.seed",
    "reproducibility.environment.python_version", "reproducibility.environment.torch_version",
    "reproducibility.environment.transformers_version", "reproducibility.environment.peft_version",
    "reproducibility.environment.llamafactory_version",
    "reproducibility.hardware.device",
    "reproducibility.determinism.cudnn_deterministic", "reproducibility.determinism.full_determinism",
)
# Present but allowed to be null: cuda_version on CPU, git_commit outside git, data_seed when unset, eval losses.


# -- environment (called in the training child: imports torch) -----------------------------------------------
def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    import torch

    from . import __version__

    return {
        "python_version": platform.python_version(), "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda if torch.cuda.is_available() else None,
        "transformers_version": _version("transformers"), "peft_version": _version("peft"),
        "llamafactory_version": _version("llamafactory"), "mlflow_version": _version("mlflow"),
        "pytest_ftgate_version": __version__, "platform": platform.platform(),
    }


def hardware() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "device": "cuda" if cuda else "cpu",
        "gpu_type": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def determinism(args: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "full_determinism": bool(args.get("full_determinism", False)),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "python_hash_seed": os.environ.get("PYTHONHASHSEED"),
        "torch_num_threads": torch.get_num_threads(),
    }


def pip_freeze() -> str:
    """``pip freeze`` of the running interpreter; the installed distributions when pip is absent."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--disable-pip-version-check"],
                             capture_output=True, text=True, timeout=120, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout
    except (OSError, subprocess.TimeoutExpired):
        pass
    from importlib import metadata

    dists = sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]})
    return "\n".join(dists) + "\n"


def git_commit(path: str | Path) -> dict[str, Any]:
    """The commit of the repository holding ``path`` and whether ``path`` differs from it (None outside git)."""
    p = Path(path).resolve()
    try:
        head = subprocess.run(["git", "-C", str(p.parent), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=20, check=False)
        if head.returncode != 0:
            return {"git_commit": None, "git_dirty": None}
        status = subprocess.run(["git", "-C", str(p.parent), "status", "--porcelain", "--", p.name],
                                capture_output=True, text=True, timeout=20, check=False)
        return {"git_commit": head.stdout.strip(), "git_dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"git_commit": None, "git_dirty": None}


# -- the record -------------------------------------------------------------------------------------------
def build_record(*, experiment_id: str, run_id: str, created_at: str, inputs: dict, training: dict,
                 adapter_files: list[dict], seeds: dict, args: dict) -> dict[str, Any]:
    """The audit record of seed 002 (see the brief); ``inputs`` is what the parent hashed before training."""
    return {
        "schema_version": SCHEMA_VERSION, "experiment_id": experiment_id, "run_id": run_id,
        "created_at": created_at,
        "input_artifacts": inputs,
        "training_record": training,
        "output_artifacts": {"adapter": {"artifact_path": "adapter", "type": str(args.get("finetuning_type", "lora")),
                                         "format": _adapter_format(adapter_files), "files": adapter_files,
                                         "sha256": digest_files(adapter_files)}},
        "reproducibility": {"seeds": seeds, "environment": environment(), "hardware": hardware(),
                            "determinism": determinism(args)},
    }


def _adapter_format(files: list[dict]) -> str:
    names = [f["name"] for f in files]
    if any(n.endswith(".safetensors") for n in names):
        return "safetensors"
    return "pickle" if any(n.endswith((".bin", ".pt", ".pth")) for n in names) else "unknown"


def training_summary(*, start: str, end: str, duration: float, state: dict, losses: list[tuple[int, float]],
                     evals: list[tuple[int, float]], saves: list[tuple[int, str]]) -> dict[str, Any]:
    """``training_record``: timeline, progress, checkpoints with the eval_loss at their step, best checkpoint."""
    checkpoints = []
    for step, path in saves:
        before = [v for s, v in evals if s <= step]
        checkpoints.append({"step": step, "path": path, "eval_loss": before[-1] if before else None,
                            "exists": Path(path).is_dir()})
    scored = [c for c in checkpoints if c["eval_loss"] is not None]
    best = min(scored, key=lambda c: c["eval_loss"]) if scored else None
    return {
        "timeline": {"start_time": start, "end_time": end, "duration_seconds": round(duration, 3)},
        "progress": {"total_steps": state.get("max_steps"), "completed_steps": state.get("global_step"),
                     "epochs_completed": state.get("epoch"), "num_train_epochs": state.get("num_train_epochs")},
        "checkpoints": checkpoints,
        "metrics_summary": {
            "initial_loss": losses[0][1] if losses else None, "final_loss": losses[-1][1] if losses else None,
            "best_eval_loss": min(v for _, v in evals) if evals else None,
            "final_eval_loss": evals[-1][1] if evals else None,
            "best_checkpoint": Path(best["path"]).name if best else None,
        },
    }


# -- reading a run's record ---------------------------------------------------------------------
WRAPPER_HINT = ("adopt the run without retraining: `ftgate adopt <run> --config <config.yaml> [--output-dir DIR]` "
                "attaches what can still be established; new runs: train through pytest-ftgate's wrapper, "
                "`ftgate train <config.yaml>` or `pytest suites --ftgate-train <config.yaml>`")
NO_RECORD = "the run has no audit record"  # LoadedRecord.problem of a run without one
ADOPTED = "adopted"  # the record's "provenance" when ``ftgate adopt`` wrote it after training

# G6 requires audit.REQUIRED_FIELDS (the writer's contract) and a checkpoints list ("?": it may be empty when the
# config saves none); "a[]" = every element of list a. The run's lineage params are required as well.
REQUIRED = (*REQUIRED_FIELDS, "training_record.checkpoints?")
LINEAGE_PARAMS = ("ftgate.config_sha256", "ftgate.dataset_sha256", "ftgate.base_model_sha256",
                  "ftgate.adapter_sha256")

class AuditRecord:
    """A typed, read-only view of one audit record: the accessors every reader needs, so that no module walks
    ``.get(...)`` chains through the dict. Each accessor tolerates a malformed record (a missing section, a list
    where a mapping belongs) and answers None, "" or []: G6 is the gate that says what is missing, the others read
    what is there. The dict itself stays on ``LoadedRecord.record`` for G6 and the report.
    """

    __slots__ = ("_data",)

    def __init__(self, data: dict | None):
        self._data = data if isinstance(data, dict) else {}

    @classmethod
    def of(cls, value: Any) -> "AuditRecord":
        """The view of a record given as a view, a ``LoadedRecord``, a dict or None (an empty view)."""
        if isinstance(value, AuditRecord):
            return value
        return cls(value.record if isinstance(value, LoadedRecord) else value)

    def __bool__(self) -> bool:
        return bool(self._data)

    def _at(self, *keys: str) -> Any:
        node: Any = self._data
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    def _map(self, *keys: str) -> dict:
        node = self._at(*keys)
        return node if isinstance(node, dict) else {}

    def _dicts(self, *keys: str) -> list[dict]:
        node = self._at(*keys)
        return [d for d in node if isinstance(d, dict)] if isinstance(node, list) else []

    # -- identity and provenance
    @property
    def run_id(self) -> str | None:
        return self._at("run_id")

    @property
    def provenance(self) -> str | None:
        return self._at("provenance")

    @property
    def adopted(self) -> dict:
        """``adopted`` of a record written by ``ftgate adopt`` (by, at, not_established); {} otherwise."""
        return self._map("adopted")

    # -- inputs
    @property
    def inputs(self) -> dict:
        return self._map("input_artifacts")

    @property
    def base_model(self) -> dict:
        return self._map("input_artifacts", "base_model")

    @property
    def base_model_path(self) -> str:
        return str(self.base_model.get("path") or "")

    @property
    def base_model_hash(self) -> str | None:
        return self.base_model.get("hash")

    @property
    def base_model_files(self) -> list[dict]:
        return self._dicts("input_artifacts", "base_model", "files")

    @property
    def datasets(self) -> list[dict]:
        """The dataset entries (name, split, path, sha256, samples, format, max_samples); non-mappings dropped."""
        return self._dicts("input_artifacts", "datasets")

    def dataset(self, split: str) -> dict | None:
        """The first dataset entry of ``split`` ("train", "test", ...), or None."""
        return next((d for d in self.datasets if d.get("split") == split), None)

    @property
    def test_dataset(self) -> dict | None:
        return self.dataset("test")

    @property
    def train_sha256(self) -> str:
        return str((self.dataset("train") or {}).get("sha256") or "")

    @property
    def dataset_info(self) -> dict:
        return self._map("input_artifacts", "dataset_info")

    @property
    def dataset_info_path(self) -> str | None:
        return self.dataset_info.get("path")

    @property
    def dataset_info_entries(self) -> list | None:
        """The dataset_info.json entries the run used (None: the whole file was hashed)."""
        entries = self.dataset_info.get("entries")
        return entries if isinstance(entries, list) else None

    @property
    def dataset_info_sha256(self) -> str | None:
        return self.dataset_info.get("sha256")

    @property
    def config(self) -> dict:
        """``input_artifacts.config``: file, sha256, content, working_dir, git_commit."""
        return self._map("input_artifacts", "config")

    @property
    def config_file(self) -> str | None:
        return self.config.get("file")

    @property
    def config_sha256(self) -> str | None:
        return self.config.get("sha256")

    @property
    def config_content(self) -> str | None:
        content = self.config.get("content")
        return content if isinstance(content, str) else None

    @property
    def working_dir(self) -> str | None:
        return self.config.get("working_dir")

    # -- outputs
    @property
    def adapter(self) -> dict:
        return self._map("output_artifacts", "adapter")

    @property
    def adapter_artifact_path(self) -> str:
        return str(self.adapter.get("artifact_path") or "adapter")

    @property
    def adapter_files(self) -> list[dict]:
        """The recorded adapter files ({name, sha256, ...}); [] when none are recorded."""
        return self._dicts("output_artifacts", "adapter", "files")

    @property
    def adapter_sha256(self) -> str | None:
        return self.adapter.get("sha256")

    # -- training and reproducibility
    @property
    def training(self) -> dict:
        return self._map("training_record")

    @property
    def reproducibility(self) -> dict:
        return self._map("reproducibility")

    @property
    def seeds(self) -> dict:
        return self._map("reproducibility", "seeds")

    @property
    def environment(self) -> dict:
        return self._map("reproducibility", "environment")

    @property
    def determinism(self) -> dict:
        return self._map("reproducibility", "determinism")


@dataclass(frozen=True)
class LoadedRecord:
    """The audit record of a run, or why there is none (``problem``): G6 reports it, other gates error on it."""

    record: dict | None
    source: str = ARTIFACT
    problem: str = ""
    params: dict | None = None  # the run's params, to say what a plain LLaMA-Factory run does have

    @property
    def absent(self) -> bool:
        """The run has no record at all (a plain LLaMA-Factory run), as opposed to one that cannot be read."""
        return self.record is None and self.problem.startswith(NO_RECORD)

    @property
    def view(self) -> AuditRecord:
        """The record as an ``AuditRecord`` (an empty view when there is none)."""
        return AuditRecord(self.record)


def parse_record(text: bytes | str, source: str = ARTIFACT) -> LoadedRecord:
    """Parse the record's JSON; invalid JSON or a non-object comes back as ``problem`` naming the artifact."""
    try:
        record = json.loads(text)
    except ValueError as exc:
        return LoadedRecord(None, source, f"the audit record {source} is not valid JSON ({exc}): it is corrupt or "
                                          "truncated; the run cannot be audited")
    if not isinstance(record, dict):
        return LoadedRecord(None, source, f"the audit record {source} is a JSON {type(record).__name__}, not an "
                                          "object: the run cannot be audited")
    return LoadedRecord(record, source)


def load_record(store: Any, run_id: str, dst: Path, params: dict | None = None) -> LoadedRecord:
    """Download and parse ``audit/audit_record.json`` of a run; never raises (the problem is returned)."""
    source = f"{ARTIFACT} of run {run_id}"
    try:
        present = ARTIFACT in store.list_artifacts(run_id, ARTIFACT.split("/")[0])
    except Exception as exc:  # the store being down is a problem of this gate, reported with the reason
        return LoadedRecord(None, source, f"the artifacts of run {run_id} cannot be listed: {type(exc).__name__}: "
                                          f"{str(exc).splitlines()[0] if str(exc) else ''}", params)
    if not present:
        return LoadedRecord(None, source, f"{NO_RECORD} (artifact {ARTIFACT})", params)
    try:
        local = store.download(run_id, ARTIFACT, dst)
        loaded = parse_record(Path(local).read_bytes(), source)
    except Exception as exc:
        return LoadedRecord(None, source, f"{source} cannot be downloaded: {type(exc).__name__}: {exc}", params)
    return LoadedRecord(loaded.record, source, loaded.problem, params)


def require_record(loaded: LoadedRecord) -> dict:
    """The record, or IntegrityError naming why there is none (the gates that need it error; G6 fails)."""
    if loaded.record is None:
        raise IntegrityError(f"no usable audit record ({loaded.problem}); see gate G6")
    return loaded.record


def training_config(record: "dict | AuditRecord | None", base_dir: Path | None = None) -> dict:
    """The LLaMA-Factory config the run was trained with: the content stored in the record, else its file."""
    import yaml

    from .fileio import resolve_path

    view = AuditRecord.of(record)
    text, file = view.config_content, view.config_file
    if text is None and file and resolve_path(file, base_dir).is_file():
        text = resolve_path(file, base_dir).read_text(encoding="utf-8")
    try:
        loaded = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


# -- what G6 requires ---------------------------------------------------------------------------
def missing_fields(record: dict, params: dict | None = None) -> list[str]:
    """Dotted paths of the REQUIRED fields that are absent, null or empty (list elements by index), hashes that
    are not "sha256:<hex>", and, when ``params`` are given, the run's missing lineage params."""
    missing: list[str] = []
    for path in REQUIRED:
        missing += [m for m in _missing(record, path.rstrip("?").split("."), "", path.endswith("?"))
                    if m not in missing]
    for where, value in _hash_fields(record):
        if where not in missing and not (isinstance(value, str) and _HASH.match(value)):
            missing.append(f"{where} (not 'sha256:<64 hex digits>': {str(value)[:20]!r})")
    if params is not None:
        missing += [f"run param {k}" for k in LINEAGE_PARAMS if not params.get(k)]
    return missing


def _missing(node: Any, parts: list[str], prefix: str, may_be_empty: bool) -> list[str]:
    key, rest = parts[0], parts[1:]
    each = key.endswith("[]")
    key = key.removesuffix("[]")
    where = f"{prefix}.{key}" if prefix else key
    value = node.get(key) if isinstance(node, dict) else None
    if value is None or value == "" or (value in ([], {}) and not (may_be_empty and not rest)):
        return [where]
    if not rest:
        return []
    if each:
        if not isinstance(value, list):
            return [where]
        return [m for i, item in enumerate(value) for m in _missing(item, rest, f"{where}[{i}]", may_be_empty)]
    return _missing(value, rest, where, may_be_empty)


def _hash_fields(record: dict) -> list[tuple[str, Any]]:
    inputs, out = record.get("input_artifacts") or {}, []
    if isinstance(inputs, dict):
        for key, sub in (("base_model", "hash"), ("config", "sha256"), ("dataset_info", "sha256")):
            if isinstance(inputs.get(key), dict) and inputs[key].get(sub) is not None:
                out.append((f"input_artifacts.{key}.{sub}", inputs[key][sub]))
        for i, d in enumerate(inputs.get("datasets") or []):
            if isinstance(d, dict) and d.get("sha256") is not None:
                out.append((f"input_artifacts.datasets[{i}].sha256", d["sha256"]))
    adapter = (record.get("output_artifacts") or {}).get("adapter") or {}
    for i, f in enumerate(adapter.get("files") or [] if isinstance(adapter, dict) else []):
        if isinstance(f, dict) and f.get("sha256") is not None:
            out.append((f"output_artifacts.adapter.files[{i}].sha256", f["sha256"]))
    return out


def not_established(record: dict) -> list[str]:
    """The record fields an adopted run lists as not establishable after training (``adopted.not_established``)."""
    view = AuditRecord.of(record)
    if view.provenance != ADOPTED:
        return []
    listed = view.adopted.get("not_established") or []
    return [str(x).split(":")[0].strip() for x in listed if str(x).strip()]


