"""The training child: one MLflow run around LLaMA-Factory's ``run_exp``, with lineage, adapter and audit record.

Started by ``train.py`` as ``python -m pytest_ftgate.train_worker JOB.json``; it is the only module that imports
LLaMA-Factory. It writes ``result.json`` (``running`` with the run id as soon as the run exists, then ``ok`` or
``error`` with a kind: config, data, training) and marks the run FAILED with ``ftgate.error`` and the log tail
on any crash. It does not decide re-use or gate anything.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SYSTEM_METRICS_INTERVAL_S = 1.0
ADAPTER_SKIP = ("training_args.bin", "trainer_state.json", "trainer_log.jsonl", "all_results.json",
                "train_results.json", "eval_results.json", "predict_results.json", "README.md")


def _utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _write(path: str, **result: Any) -> None:
    """``result.json`` for the parent, written atomically (the parent may read it while the child dies)."""
    from .fileio import write_atomic

    write_atomic(path, json.dumps(result, indent=1))


def check_keys(config_file: str, args: dict) -> None:
    """Every key must be one LLaMA-Factory's train parser knows; then let it validate the values."""
    import dataclasses

    from llamafactory.hparams import get_train_args
    from llamafactory.hparams.parser import _TRAIN_ARGS
    from llamafactory.hparams.training_args import RayArguments

    from .errors import ConfigError, did_you_mean

    known = sorted({f.name for cls in [*_TRAIN_ARGS, RayArguments] for f in dataclasses.fields(cls)})
    _remember(known)
    for key in args:
        if key not in known:
            raise ConfigError(f"{config_file}: unknown LLaMA-Factory key {key!r}{did_you_mean(key, known)}")
    try:
        get_train_args(dict(args))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{config_file}: LLaMA-Factory rejected the config: {exc}") from None


def _remember(known: list[str]) -> None:
    """Leave the known keys for the parent's fast check (``train.check_known_keys``); best effort."""
    from .fileio import write_atomic
    from .train import known_keys_path

    try:
        write_atomic(known_keys_path(), json.dumps(known), fsync=False)
    except OSError:
        pass


def make_callback(record: dict):
    """A TrainerCallback that notes what the audit record needs: losses, evaluations, checkpoints, state."""
    from transformers import TrainerCallback

    class AuditCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            record.update(start=_utc(), t0=time.time())

        def on_log(self, args, state, control, logs=None, **kw):
            for key, dst in (("loss", "losses"), ("eval_loss", "evals")):
                if logs and key in logs:
                    record.setdefault(dst, []).append((state.global_step, float(logs[key])))

        def on_save(self, args, state, control, **kw):
            path = str(Path(args.output_dir) / f"checkpoint-{state.global_step}")
            record.setdefault("saves", []).append((state.global_step, path))

        def on_train_end(self, args, state, control, **kw):
            record.update(end=_utc(), t1=time.time(), state={
                "max_steps": state.max_steps, "global_step": state.global_step, "epoch": state.epoch,
                "num_train_epochs": args.num_train_epochs, "best_model_checkpoint": state.best_model_checkpoint})

    return AuditCallback()


def _params(job: dict) -> dict[str, str]:
    args, inputs = job["args"], job["inputs"]
    out = {f"llamafactory.{k}": _param(v) for k, v in sorted(args.items())}
    out.update(job["params"])
    out.update({"ftgate.config_file": inputs["config"]["file"], "ftgate.base_model_path": inputs["base_model"]["path"],
                "ftgate.dataset_info_sha256": inputs["dataset_info"]["sha256"],
                "ftgate.seed": str(args.get("seed", 42)), "ftgate.data_seed": str(args.get("data_seed"))})
    return out


def _param(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v)
    return text[:6000]


def _tags(job: dict) -> dict[str, str]:
    cfg = job["inputs"]["config"]
    tags = {"ftgate.trained_by": "pytest-ftgate", "ftgate.config_file": cfg["file"]}
    if cfg.get("git_commit"):
        tags["ftgate.git_commit"] = cfg["git_commit"]
        tags["mlflow.source.git.commit"] = cfg["git_commit"]
    return tags


def output_files(out: Path) -> tuple[list[Path], list[Path], list[dict]]:
    """What LLaMA-Factory left in ``output_dir``: (adapter files, trainer outputs, adapter files with sha256).

    The adapter is every top-level file but the trainer's own outputs and plots (checkpoints are folders).
    Raises RuntimeError when there is no ``adapter_model.*``.
    """
    from . import hashing

    adapter_files = [p for p in sorted(out.iterdir()) if p.is_file() and p.name not in ADAPTER_SKIP
                     and not p.name.endswith(".png")]
    if not any(p.name.startswith("adapter_model") for p in adapter_files):
        raise RuntimeError(f"LLaMA-Factory wrote no adapter_model.* into {out}")
    trainer = [p for p in sorted(out.iterdir()) if p.is_file() and (p.name in ADAPTER_SKIP[1:]
                                                                     or p.name.endswith(".png"))]
    memo = hashing.HashMemo()
    files = [{"name": p.name, "sha256": memo.sha256(p), "size": p.stat().st_size}
             for p in adapter_files]
    return adapter_files, trainer, files


def log_outputs(mlflow: Any, job: dict, record: dict, run: Any) -> None:
    """The adapter as ``adapter/``, trainer outputs as ``training/``, the audit record and pip freeze."""
    from . import record as audit_record

    out = Path(job["args"]["output_dir"])
    adapter_files, trainer, files = output_files(out)
    for p in adapter_files:
        mlflow.log_artifact(str(p), "adapter")
    for p in trainer:
        mlflow.log_artifact(str(p), "training")
    training = audit_record.training_summary(
        start=record.get("start", _utc()), end=record.get("end", _utc()),
        duration=record.get("t1", time.time()) - record.get("t0", time.time()), state=record.get("state", {}),
        losses=[p for p in record.get("losses", []) if math.isfinite(p[1])] or record.get("losses", []),
        evals=record.get("evals", []), saves=record.get("saves", []))
    args = job["args"]
    rec = audit_record.build_record(
        experiment_id=run.info.experiment_id, run_id=run.info.run_id, created_at=_utc(), inputs=job["inputs"],
        training=training, adapter_files=files, args=args,
        seeds={"seed": args.get("seed", 42), "data_seed": args.get("data_seed")})
    adapter_sha = audit_record.AuditRecord(rec).adapter_sha256
    mlflow.log_params({"ftgate.adapter_sha256": adapter_sha, "ftgate.output_dir": str(out)})
    mlflow.log_dict(rec, audit_record.ARTIFACT)
    mlflow.log_text(audit_record.pip_freeze(), "audit/pip_freeze.txt")
    mlflow.log_text(job["inputs"]["config"]["content"], f"audit/{Path(job['config_file']).name}")


def _fail(mlflow: Any, job: dict, run_id: str, exc: BaseException) -> None:
    from .serve.process import tail

    message = f"{type(exc).__name__}: {exc}".strip()[:2000]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        mlflow.set_tag("ftgate.error", message[:5000])
        mlflow.log_text(tail(job["log_path"], 200, placeholder=False), "logs/train_log_tail.txt")
    finally:
        mlflow.end_run(status="FAILED")
    _write(job["result_path"], status="error", kind="training", message=message, run_id=run_id)


def run(job: dict) -> int:
    from .errors import ConfigError, DataError

    try:
        check_keys(job["config_file"], job["args"])
    except (ConfigError, DataError) as exc:
        _write(job["result_path"], status="error", kind="config" if isinstance(exc, ConfigError) else "data",
               message=str(exc))
        return 3
    import mlflow
    from llamafactory.train.tuner import run_exp

    os.environ["MLFLOW_TRACKING_URI"] = job["tracking_uri"]
    mlflow.set_tracking_uri(job["tracking_uri"])
    mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
    mlflow.set_system_metrics_samples_before_logging(1)
    record: dict = {}
    run_ = mlflow.start_run(experiment_id=job["experiment_id"], run_name=job["run_name"], log_system_metrics=True,
                            tags=_tags(job))
    run_id = run_.info.run_id
    _write(job["result_path"], status="running", run_id=run_id)
    try:
        mlflow.log_params(_params(job))
        run_exp(dict(job["args"]), callbacks=[make_callback(record)])
        log_outputs(mlflow, job, record, run_)
    except BaseException as exc:  # noqa: BLE001 - every crash (incl. OOM, Ctrl-C) marks the run FAILED
        traceback.print_exc()
        _fail(mlflow, job, run_id, exc)
        return 1
    mlflow.end_run(status="FINISHED")
    _write(job["result_path"], status="ok", run_id=run_id)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    return run(job)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
