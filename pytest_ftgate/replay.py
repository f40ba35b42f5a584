"""Re-training a recorded run for its first N steps, for the reproducibility gate: the recorded LLaMA-Factory config
(content and seed), the recorded base model and data, the recorded thread settings; returns the loss history.

The parent side (``replay_losses``) never imports torch or LLaMA-Factory: training runs in a child process
(``python -m pytest_ftgate.replay JOB.json``) that stops the trainer after N steps with a callback, so the learning
rate schedule is the recorded run's (``max_steps`` would compress it). Nothing is logged to MLflow; the comparison
itself is ``compliance.compare_losses``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .record import AuditRecord

_MEMO: dict[tuple, list[tuple[int, float]]] = {}  # one replay per (config, data, base model, steps) per process


def replay_args(record: dict, steps: int, output_dir: Path) -> dict:
    """The recorded run's LLaMA-Factory arguments, paths resolved against the recorded working directory as
    training resolved them (``train.resolve_paths``; the config's directory for records that have none), writing
    into ``output_dir`` and reporting nowhere."""
    import yaml

    from .errors import ConfigError
    from .train import resolve_paths

    view = AuditRecord.of(record)
    config = view.config
    try:
        args = yaml.safe_load(config.get("content") or "")
    except yaml.YAMLError as exc:
        raise ConfigError(f"the recorded config of {config.get('file')} is not valid YAML: {exc}") from None
    if not isinstance(args, dict):
        raise ConfigError("the audit record holds no config content to re-train from (input_artifacts.config)")
    here = Path(config.get("working_dir") or Path(config.get("file") or ".").parent)  # as training resolved them
    resolve_paths(args, here.resolve())  # train.load_spec's own resolution: `~/data` is the home directory's
    base = view.base_model_path
    if base:
        args["model_name_or_path"] = base
    args.update(output_dir=str(output_dir), overwrite_output_dir=True, report_to="none", plot_loss=False)
    return args


def replay_losses(record: dict, steps: int, work: Path) -> list[tuple[int, float]]:
    """Train the recorded config for ``steps`` steps in a child process; the loss at each logged step."""
    view = AuditRecord.of(record)
    key = (view.config_sha256, view.base_model_hash, tuple(d.get("sha256") for d in view.datasets), steps)
    if key in _MEMO:
        return _MEMO[key]
    work.mkdir(parents=True, exist_ok=True)
    determinism = view.determinism
    job = {"args": replay_args(record, steps, work / "output"), "steps": steps,
           "torch_num_threads": determinism.get("torch_num_threads"), "result_path": str(work / "result.json")}
    (work / "job.json").write_text(json.dumps(job, indent=1))
    _run([sys.executable, "-m", "pytest_ftgate.replay", str(work / "job.json")], work / "replay.log",
         determinism, steps)
    losses = [(int(s), float(v)) for s, v in json.loads((work / "result.json").read_text())["losses"]]
    _MEMO[key] = losses
    return losses


def _run(cmd: list[str], log_path: Path, determinism: dict, steps: int) -> None:
    """The child, in the training child's environment with the recorded thread count and hash seed."""
    from .errors import TrainingError
    from .serve.process import run_logged, tail
    from .train import TAIL_LINES, child_env

    env = child_env()
    for var, key in (("OMP_NUM_THREADS", "omp_num_threads"), ("PYTHONHASHSEED", "python_hash_seed")):
        if determinism.get(key) not in (None, ""):
            env[var] = str(determinism[key])
    code = run_logged(cmd, log_path, env)
    if code != 0:
        raise TrainingError(f"re-training the recorded config for {steps} steps failed (exit code {code})",
                            tail(log_path, TAIL_LINES, placeholder=False), str(log_path))


def run(job: dict) -> int:
    """The child: run_exp with a callback that records losses and stops after ``steps``."""
    import torch
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    if job.get("torch_num_threads"):
        torch.set_num_threads(int(job["torch_num_threads"]))
    losses: list[tuple[int, float]] = []

    class StopAfter(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step >= job["steps"]:
                control.should_training_stop = True

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append((state.global_step, float(logs["loss"])))

    run_exp(dict(job["args"]), callbacks=[StopAfter()])
    Path(job["result_path"]).write_text(json.dumps({"losses": losses}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(json.loads(Path(sys.argv[1]).read_text())))
