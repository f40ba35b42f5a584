"""Hand-made audited runs for the tests of the audit and data gates: real files (a safetensors LoRA adapter, alpaca
data registered in dataset_info.json, a LLaMA-Factory config, a base model config) and an audit record of their
sha256 in the shape of seed 002; optionally logged to MLflow as a run with the adapter and record as artifacts."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_ftgate.record import digest_files

from pytest_ftgate.hashing import digest_text
from pytest_ftgate.record import AUDIT_ARTIFACT
from pytest_ftgate.gates.audit import sha256_file

CONFIG = """model_name_or_path: {base}
trust_remote_code: false
stage: sft
finetuning_type: lora
dataset_dir: {data}
dataset: demo_train
eval_dataset: demo_validation
seed: 42
data_seed: 42
report_to: mlflow
"""


def rows(start: int, n: int) -> list[dict]:
    return [{"instruction": "Reverse the order of the words.", "input": f"w{i} stone river",
             "output": f"river stone w{i}"} for i in range(start, start + n)]


def write_files(root: Path, train: list | None = None, test: list | None = None) -> dict[str, Path]:
    """The files of one audited run under ``root``."""
    import numpy as np
    from safetensors.numpy import save_file

    adapter, data, base = root / "adapter", root / "data", root / "base"
    for d in (adapter, data, base):
        d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    save_file({"base_model.model.layers.0.self_attn.q_proj.lora_A.weight": rng.standard_normal((4, 16), np.float32),
               "base_model.model.layers.0.self_attn.q_proj.lora_B.weight": np.zeros((16, 4), np.float32)},
              str(adapter / "adapter_model.safetensors"))
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                                                             "target_modules": ["q_proj"]}))
    (base / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 16}))
    splits = {"train": train if train is not None else rows(0, 40), "validation": rows(100, 8),
              "test": test if test is not None else rows(200, 8)}
    info = {}
    for split, content in splits.items():
        (data / f"demo_{split}.json").write_text(json.dumps(content, indent=1))
        info[f"demo_{split}"] = {"file_name": f"demo_{split}.json"}
    (data / "dataset_info.json").write_text(json.dumps(info, indent=1))
    (root / "train.yaml").write_text(CONFIG.format(base=base, data=data))
    return {"adapter": adapter, "data": data, "base": base, "config": root / "train.yaml"}


def record(paths: dict[str, Path], run_id: str) -> dict:
    """A complete audit record of the files ``write_files`` wrote."""
    data, adapter = paths["data"], paths["adapter"]
    datasets = [{"name": f"demo_{s}", "split": s, "path": str(data / f"demo_{s}.json"), "format": "alpaca",
                 "sha256": sha256_file(data / f"demo_{s}.json"),
                 "samples": len(json.loads((data / f"demo_{s}.json").read_text()))}
                for s in ("train", "validation", "test")]
    files = [{"name": p.name, "sha256": sha256_file(p), "size": p.stat().st_size} for p in sorted(adapter.iterdir())]
    base = [{"name": p.name, "sha256": sha256_file(p), "size": p.stat().st_size}
            for p in sorted(paths["base"].iterdir())]
    config = paths["config"].read_text()
    return {
        "schema_version": 1, "experiment_id": "1", "run_id": run_id, "created_at": "2026-01-01T00:00:00+00:00",
        "input_artifacts": {
            "base_model": {"path": str(paths["base"]), "source": "local", "hash": digest_files(base),
                           "files": base},
            "datasets": datasets,
            "dataset_info": {"path": str(data / "dataset_info.json"),
                             "sha256": sha256_file(data / "dataset_info.json")},
            "config": {"file": str(paths["config"]), "sha256": digest_text(config), "content": config,
                       "git_commit": None},
        },
        "training_record": {
            "timeline": {"start_time": "2026-01-01T00:00:00+00:00", "end_time": "2026-01-01T00:01:00+00:00",
                         "duration_seconds": 60.0},
            "progress": {"total_steps": 200, "completed_steps": 200, "epochs_completed": 4.0},
            "checkpoints": [{"step": 100, "path": "checkpoint-100", "eval_loss": 0.4}],
            "metrics_summary": {"initial_loss": 5.9, "final_loss": 0.1, "best_eval_loss": 0.1,
                                "best_checkpoint": "checkpoint-200"},
        },
        "output_artifacts": {"adapter": {"artifact_path": "adapter", "type": "lora", "format": "safetensors",
                                         "files": files, "sha256": digest_files(files)}},
        "reproducibility": {
            "seeds": {"seed": 42, "data_seed": 42},
            "environment": {"python_version": "3.12.0", "torch_version": "2.13.0+cpu", "cuda_version": None,
                            "transformers_version": "5.6.0", "peft_version": "0.18.1", "llamafactory_version": "0.9.5",
                            "pytest_ftgate_version": "0.1.0"},
            "hardware": {"device": "cpu", "gpu_type": None, "gpu_count": 0, "cpu": "x86_64"},
            "determinism": {"cudnn_deterministic": False, "cudnn_benchmark": False, "full_determinism": False},
        },
    }


def log_run(uri: str, name: str, paths: dict[str, Path] | None, record_text: str | None = None,
            mutate=None) -> str:
    """An MLflow run with a clean LLaMA-Factory history, the adapter under ``adapter/``, the lineage params and the
    audit record (``mutate(record)`` may change it first; ``record_text`` replaces it verbatim, e.g. corrupt JSON).
    ``paths=None``: a plain LLaMA-Factory run (metrics and training arguments only)."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    from pytest_ftgate.train import lineage_params

    from . import histories as H
    from .mlflow_runs import make_run

    run_id = make_run(uri, name, H.clean(), tags={"ftgate.trained_by": "pytest-ftgate"} if paths else None)
    client = MlflowClient(tracking_uri=uri)
    if paths is None:
        return run_id
    client.log_artifacts(run_id, str(paths["adapter"]), "adapter")
    rec = record(paths, run_id)
    params = {**lineage_params(rec["input_artifacts"]), "ftgate.adapter_sha256": digest_files(
        rec["output_artifacts"]["adapter"]["files"])}
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    if mutate is not None:
        mutate(rec)
    out = paths["adapter"].parent / "audit_record.json"
    out.write_text(record_text if record_text is not None else json.dumps(rec, indent=1))
    client.log_artifact(run_id, str(out), str(Path(AUDIT_ARTIFACT).parent))
    return run_id


def artifact_dir(uri: str, run_id: str) -> Path:
    """Where a run's artifacts lie on disk (a local artifact store)."""
    from urllib.parse import unquote, urlparse

    from mlflow.tracking import MlflowClient

    location = MlflowClient(tracking_uri=uri).get_run(run_id).info.artifact_uri
    return Path(unquote(urlparse(location).path)) if "://" in location else Path(location)


def flip_stored_byte(uri: str, run_id: str, artifact: str, offset: int = -3) -> None:
    """Tamper with a stored artifact: one bit of one byte (of the last weight, for a safetensors file)."""
    stored = artifact_dir(uri, run_id) / artifact
    raw = bytearray(stored.read_bytes())
    raw[offset] ^= 0x01
    stored.write_bytes(bytes(raw))
