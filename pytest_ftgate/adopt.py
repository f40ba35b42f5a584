"""Adopt a run trained by plain ``llamafactory-cli train`` (``report_to: mlflow``): attach to it, after the fact,
what ``ftgate train`` records and can still be established now, so that every gate runs on it.

What it attaches (only new params, tags and artifacts; it never changes what LLaMA-Factory logged): the adapter
from ``output_dir`` as ``adapter/`` with ``ftgate.adapter_sha256``, the trainer's outputs as ``training/``, the
datasets with their sha256 and the rows trained (``max_samples``), the config, its hash and content, the base
model's hash, the ``ftgate.*`` lineage params, and ``audit/audit_record.json`` marked ``"provenance": "adopted"``
with ``adopted.not_established`` listing what cannot be known now (the training environment, hardware and
determinism settings, pip freeze). The training record comes from LLaMA-Factory's own outputs: the MLflow metric
history, ``trainer_state.json`` and the run's start and end times. It reuses ``train.py``'s config, dataset and
lineage code and ``hashing.py`` and ``record.py``; it trains nothing and gates nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import record, train, train_worker
from .errors import ConfigError, FtgateError, RunUnavailable

PROVENANCE = "adopted"
COMPARED = ("learning_rate", "num_train_epochs", "max_steps", "seed", "data_seed", "per_device_train_batch_size",
            "gradient_accumulation_steps", "lr_scheduler_type", "weight_decay", "max_grad_norm", "logging_steps")
NOT_ESTABLISHED = {  # record field -> why it cannot be known after training
    "reproducibility.environment": "the training process's Python, torch, CUDA, transformers, peft and "
                                   "llamafactory versions",
    "reproducibility.hardware": "the device, GPU type and count of the training machine",
    "reproducibility.determinism": "cuDNN and thread settings of the training process",
    "audit/pip_freeze.txt": "the packages installed in the training environment",
}


def _utc(ms: int | None = None) -> str:
    t = datetime.fromtimestamp(ms / 1000, timezone.utc) if ms else datetime.now(timezone.utc)
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def _run(store: Any, ref: str) -> Any:
    run_id, _ = store.resolve(ref)
    run = store.client.get_run(run_id)
    if run.info.status != "FINISHED":
        raise RunUnavailable(ref, f"is {run.info.status}: only a FINISHED training run can be adopted")
    params = run.data.params
    if params.get("ftgate.adapter_sha256"):
        how = "adopted already" if run.data.tags.get("ftgate.provenance") == PROVENANCE else \
            "trained under the gate (`ftgate train`)"
        raise RunUnavailable(ref, f"was {how}: it has ftgate.adapter_sha256 {params['ftgate.adapter_sha256']}; "
                                  "there is nothing to adopt, gate it with `pytest suites --run-id`")
    return run


def check_config_matches(spec: train.TrainingSpec, params: dict) -> None:
    """The config must be the one the run was trained with: every scalar key LLaMA-Factory logged as a training
    argument (learning_rate, seed, num_train_epochs, ...) must have the same value on the run."""
    differ = []
    for key, value in spec.args.items():
        if key not in COMPARED or key not in params or not isinstance(value, (str, int, float, bool)):
            continue
        logged = params[key]
        same = str(value) == logged
        if not same and isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                same = float(logged) == float(value)
            except ValueError:
                same = False
        if not same:
            differ.append(f"{key} is {value!r} in the config but {logged!r} on the run")
    if differ:
        raise ConfigError(f"{spec.path}: not the config this run was trained with: " + "; ".join(differ[:5])
                          + " (pass the training config the run used)")


def training_record(store: Any, run: Any, out: Path) -> dict:
    """``training_record`` from what LLaMA-Factory left: metric history, trainer_state.json, checkpoints, times."""
    run_id = run.info.run_id
    losses = store.metric_history(run_id, "loss")
    evals = store.metric_history(run_id, "eval_loss")
    state_file = out / "trainer_state.json"
    try:
        ts = json.loads(state_file.read_text())
    except (OSError, ValueError):
        ts = {}
    epochs = store.metric_history(run_id, "epoch")
    state = {"max_steps": ts.get("max_steps"), "global_step": ts.get("global_step") or (
        losses[-1][0] if losses else None), "epoch": ts.get("epoch") or (epochs[-1][1] if epochs else None),
        "num_train_epochs": ts.get("num_train_epochs") or _number(run.data.params.get("num_train_epochs")),
        "best_model_checkpoint": ts.get("best_model_checkpoint")}
    saves = sorted((int(p.name.split("-")[1]), str(p)) for p in out.glob("checkpoint-*")
                   if p.is_dir() and p.name.split("-")[1].isdigit())
    start, end = run.info.start_time, run.info.end_time
    return record.training_summary(start=_utc(start), end=_utc(end), duration=((end or start) - start) / 1000,
                                  state=state, losses=losses, evals=evals, saves=saves)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def adopted_record(store: Any, run: Any, inputs: dict, files: list[dict], args: dict, out: Path,
                   config: Path) -> dict:
    """The audit record of an adopted run: ``record.build_record``'s shape, with the reproducibility fields that
    only the training process could have recorded left empty and listed under ``adopted.not_established``."""
    params = run.data.params
    seeds = {"seed": _int(params.get("seed", args.get("seed"))), "data_seed": _int(params.get("data_seed"))}
    rec = record.build_record(experiment_id=run.info.experiment_id, run_id=run.info.run_id, created_at=_utc(),
                             inputs=inputs, training=training_record(store, run, out), adapter_files=files,
                             seeds=seeds, args=args)
    rec["reproducibility"] = unestablished_reproducibility(seeds)
    rec["provenance"] = PROVENANCE
    from . import __version__

    rec["adopted"] = {
        "at": rec["created_at"], "by": f"pytest-ftgate {__version__}", "config": str(config),
        "output_dir": str(out), "not_established": [f"{k}: {v}" for k, v in NOT_ESTABLISHED.items()],
        "sources": {"training_record": "the run's MLflow metric history, start/end times and "
                                       f"{out / 'trainer_state.json'}",
                    "output_artifacts": f"the files LLaMA-Factory left in {out}",
                    "input_artifacts": "the config, dataset files and base model as they are now"},
    }
    return rec


def unestablished_reproducibility(seeds: dict) -> dict:
    """``reproducibility`` of an adopted record: the seeds (logged by the trainer), and every field that only the
    training process could record present as null, so that G6 names each one."""
    out: dict = {"seeds": seeds, "environment": {}, "hardware": {}, "determinism": {}}
    for field in record.REQUIRED_FIELDS:
        parts = field.split(".")
        if parts[0] == "reproducibility" and parts[1] in ("environment", "hardware", "determinism"):
            out[parts[1]][parts[2]] = None
    return out


def _int(text: Any) -> int | None:
    try:
        return int(str(text)) if text not in (None, "None", "") else None
    except ValueError:
        return None


def _new_params(existing: dict, wanted: dict[str, str]) -> dict[str, str]:
    """The params to add; a key the run already has with another value is refused (never overwritten)."""
    clash = [f"{k} ({existing[k]!r} on the run, {v!r} now)" for k, v in wanted.items()
             if k in existing and existing[k] != v]
    if clash:
        raise ConfigError(f"the run already has params that adoption would change: {'; '.join(clash[:5])}; MLflow "
                          "params are immutable and pytest-ftgate never rewrites what LLaMA-Factory logged")
    return {k: v for k, v in wanted.items() if k not in existing}


def adopt(store: Any, ref: str, config: str | Path, *, output_dir: str | Path | None = None,
          test_dataset: str | None = None, test_set: str = "", require_test_set: bool = True,
          cwd: str | Path | None = None, log_dir: Path = Path("ftgate-results/logs"),
          echo: Callable[[str], None] = print) -> dict:
    """Attach lineage, adapter and audit record to the FINISHED run ``ref``; returns a summary."""
    run = _run(store, ref)
    run_id, params = run.info.run_id, dict(run.data.params)
    spec = train.load_spec(config, cwd)
    check_config_matches(spec, params)
    out = Path(output_dir).expanduser().resolve() if output_dir else Path(spec.args["output_dir"])
    if not out.is_dir():
        raise ConfigError(f"{spec.path}: output_dir {out} does not exist: pass --output-dir DIR, the directory "
                          "where LLaMA-Factory saved this run's adapter")
    base = train.base_model_dir(spec, echo, Path(log_dir))
    inputs = train.input_artifacts(spec, base, test_dataset)
    train.check_test_set(spec, inputs, test_set, require_test_set, echo)
    try:
        adapter_files, trainer_files, files = train_worker.output_files(out)
    except RuntimeError as exc:
        raise ConfigError(f"{exc}: pass --output-dir DIR, the directory of this run's adapter") from None
    existing = set(store.list_artifacts(run_id))
    clash = sorted(a for a in existing if a.split("/")[0] in ("adapter", "audit", "training"))
    if clash:
        raise ConfigError(f"run {run_id} already has artifacts {', '.join(clash[:3])}: adoption never overwrites")
    args = dict(spec.args, output_dir=str(out))
    job = {"args": args, "inputs": inputs, "params": train.lineage_params(inputs)}
    rec = adopted_record(store, run, inputs, files, args, out, spec.path)
    view = record.AuditRecord(rec)
    wanted = {**train_worker._params(job), "ftgate.adapter_sha256": view.adapter_sha256,
              "ftgate.output_dir": str(out)}
    new = _new_params(params, wanted)
    client = store.client
    for p in adapter_files:
        client.log_artifact(run_id, str(p), "adapter")
    for p in trainer_files:
        client.log_artifact(run_id, str(p), "training")
    client.log_text(run_id, inputs["config"]["content"], f"audit/{spec.path.name}")
    client.log_dict(run_id, rec, record.ARTIFACT)
    from mlflow.entities import Param

    items = [Param(k, train_worker._param(v)) for k, v in sorted(new.items())]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i:i + 100])
    tags = {"ftgate.provenance": PROVENANCE, "ftgate.adopted_by": view.adopted["by"],
            "ftgate.adopted_at": view.adopted["at"], "ftgate.config_file": str(spec.path)}
    if inputs["config"].get("git_commit"):
        tags["ftgate.git_commit"] = inputs["config"]["git_commit"]
    store.set_tags(run_id, {k: v for k, v in tags.items() if k not in run.data.tags})
    return {"run_id": run_id, "adapter_sha256": wanted["ftgate.adapter_sha256"], "adapter_files": len(files),
            "datasets": [(d["name"], d["split"], d["samples"]) for d in inputs["datasets"]],
            "params_added": len(new), "not_established": list(NOT_ESTABLISHED)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ftgate adopt", description="Attach to a run trained by plain "
                                 "`llamafactory-cli train` (report_to: mlflow) the adapter, datasets, config and "
                                 "base model hashes and an audit record marked as adopted, so that every gate runs "
                                 "on it. Never changes what LLaMA-Factory logged.")
    ap.add_argument("run", metavar="RUN", help="MLflow run id or run name")
    ap.add_argument("--config", required=True, metavar="CONFIG",
                    help="the LLaMA-Factory YAML the run was trained with (relative paths: from the working "
                         "directory, as llamafactory-cli train resolves them)")
    ap.add_argument("--output-dir", default=None, metavar="DIR",
                    help="where LLaMA-Factory saved the adapter (default: the config's output_dir)")
    train.add_store_args(ap, "experiment in which RUN names are looked up")
    train.add_test_set_args(ap, "adopt", "refused")
    ns = ap.parse_args(argv)
    store = train.cli_store(ns.tracking_uri, ns.experiment)
    try:
        summary = adopt(store, ns.run, Path(ns.config), output_dir=ns.output_dir, test_dataset=ns.test_dataset,
                        require_test_set=not ns.allow_no_test_set, echo=lambda m: print(m, file=sys.stderr))
    except FtgateError as exc:
        print(f"ftgate adopt: {exc}", file=sys.stderr)
        return 1
    data = ", ".join(f"{n} ({s}, {k} rows)" for n, s, k in summary["datasets"])
    print(f"ftgate adopt: run {summary['run_id']}: adapter/ ({summary['adapter_files']} files, "
          f"{summary['adapter_sha256']}), datasets {data}, {summary['params_added']} params added; not established "
          f"after training: {', '.join(summary['not_established'])} (G6 applies audit.adopted)", file=sys.stderr)
    print(summary["run_id"])
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
