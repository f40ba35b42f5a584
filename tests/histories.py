"""LLaMA-Factory-shaped metric histories (keys and cadence as `report_to: mlflow` logs them), with defects."""

from __future__ import annotations

import math

STEPS, LOG_EVERY, EVAL_EVERY, STEPS_PER_EPOCH = 200, 5, 25, 50


def clean() -> dict[str, list[tuple[int, float]]]:
    """A healthy run: loss 5.9 -> ~0.1 over 4 epochs, eval_loss close behind, bounded grad_norm."""
    h: dict[str, list[tuple[int, float]]] = {"loss": [], "grad_norm": [], "learning_rate": [], "epoch": []}
    for step in range(LOG_EVERY, STEPS + 1, LOG_EVERY):
        h["loss"].append((step, 0.1 + 5.8 * math.exp(-step / 30)))
        h["grad_norm"].append((step, 3.0 * math.exp(-step / 80) + 0.5))
        h["learning_rate"].append((step, 1e-3 * (1 - step / STEPS)))
        h["epoch"].append((step, step / STEPS_PER_EPOCH))
    h["eval_loss"] = [(s, 0.105 + 5.8 * math.exp(-s / 30)) for s in range(EVAL_EVERY, STEPS + 1, EVAL_EVERY)]
    h["eval_runtime"] = [(s, 0.4) for s, _ in h["eval_loss"]]
    h["train_loss"] = [(STEPS, 1.1)]
    h["train_runtime"] = [(STEPS, 31.5)]
    h["total_flos"] = [(STEPS, 1234.0)]
    h["system/cpu_utilization_percentage"] = [(i, 95.0) for i in range(3)]
    h["system/system_memory_usage_percentage"] = [(i, 12.0) for i in range(3)]
    return h


def with_point(h: dict, key: str, step: int, value: float) -> dict:
    h = {k: list(v) for k, v in h.items()}
    h[key] = [(s, value if s == step else v) for s, v in h[key]]
    return h


def nan_in_last_step() -> dict:
    return with_point(clean(), "loss", STEPS, float("nan"))


def inf_grad_norm_mid_run() -> dict:
    return with_point(clean(), "grad_norm", STEPS // 2, float("inf"))


def flat_loss() -> dict:
    h = clean()
    h["loss"] = [(s, 5.9 + 0.01 * math.sin(s)) for s, _ in h["loss"]]
    h["eval_loss"] = [(s, 5.9) for s, _ in h["eval_loss"]]
    return h


def eval_loss_rising_four_times() -> dict:
    """Best evaluation at step 100, then four rises in a row (overfitting)."""
    h = clean()
    values = [3.0, 2.0, 1.0, 0.5, 0.6, 0.7, 0.8, 0.9]
    h["eval_loss"] = [(s, v) for (s, _), v in zip(h["eval_loss"], values)]
    return h


def eval_train_ratio(ratio: float) -> dict:
    h = clean()
    final_train = h["loss"][-1][1]
    h["eval_loss"] = h["eval_loss"][:-1] + [(h["eval_loss"][-1][0], final_train * ratio)]
    return h
