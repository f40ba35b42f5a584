"""Create real MLflow runs with LLaMA-Factory-shaped histories in a store (sqlite in the tests)."""

from __future__ import annotations

import time


def make_run(tracking_uri: str, name: str, history: dict, *, status: str = "FINISHED",
             experiment: str = "ftgate-tests", params: dict | None = None, tags: dict | None = None) -> str:
    """Log ``history`` ({key: [(step, value)]}) as one run, batched; return its run id."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name=name)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(key, float(v), now + i, int(s)) for key, pts in history.items() for i, (s, v) in enumerate(pts)]
    for i in range(0, len(metrics), 900):
        client.log_batch(run_id, metrics=metrics[i:i + 900])
    base = {"learning_rate": "0.001", "num_train_epochs": "4.0", "seed": "42", "report_to": "['mlflow']"}
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in {**base, **(params or {})}.items()],
                     tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])
    if status != "RUNNING":
        client.set_terminated(run_id, status=status)
    return run_id
