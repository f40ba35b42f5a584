"""The training gates G1–G3 and ``resources``, pure: plain values in, a ``Check`` out. No pytest, no MLflow, no I/O.

They read metric histories exactly as
LLaMA-Factory logs them with ``report_to: mlflow``: ``{key: [(step, value), ...]}`` ordered by step.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from ..config import Resources, TrainingGates
from . import Check, family

History = Mapping[str, Sequence[tuple[int, float]]]
gate = family("training", "Loss and eval_loss", 10, view="training")


def _fmt(x: float) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x).replace("nan", "NaN").replace("inf", "Inf")
    return f"{x:.4g}"


G1_LABEL = "non-finite values in loss, eval_loss, grad_norm"


@gate("G1")
def stability(history: History, cfg: TrainingGates, status: str = "", params: Mapping[str, str] | None = None
              ) -> Check:
    """G1: no NaN or Inf at any step of the stability keys; an empty loss history fails, saying why it is empty
    (a run that failed or crashed before its first logging step, or a run not logged by LLaMA-Factory)."""
    threshold = "finite at every step of " + ", ".join(cfg.stability_keys)
    if not history.get("loss"):
        return Check(False, "no loss history", threshold, _no_loss_reason(history, status, params or {}),
                     label=G1_LABEL)
    bad = []
    for key in cfg.stability_keys:
        points = [(s, v) for s, v in history.get(key, ()) if not math.isfinite(v)]
        if points:
            step, value = points[0]
            more = f" (and {len(points) - 1} more steps)" if len(points) > 1 else ""
            bad.append(f"{key} is {_fmt(value)} at step {step}{more}")
    if bad:
        return Check(False, bad[0].split(" at ")[0].split(" is ")[1], threshold, "; ".join(bad),
                     {"non_finite": bad}, label=G1_LABEL)
    counted = {k: len(history.get(k, ())) for k in cfg.stability_keys}
    return Check(True, "finite", threshold,
                 "all values finite: " + ", ".join(f"{k} ({n} steps)" for k, n in counted.items()), label=G1_LABEL)


def _no_loss_reason(history: History, status: str, params: Mapping[str, str]) -> str:
    """Why a run has no loss history: FAILED/KILLED, crashed before its first logged step, or not logged."""
    logged = [k for k, pts in history.items() if pts and not k.startswith("system/")]
    if status in ("FAILED", "KILLED"):
        return (f"the run is {status} and has no logged training steps (no `loss` at any step): training "
                "crashed or was stopped before its first logging step; read its training log, fix the cause and "
                "train again")
    reported = str(params.get("report_to", ""))
    if "mlflow" in reported or params.get("logging_steps") or logged:
        has = f" (it logged only {', '.join(sorted(logged)[:5])})" if logged else ""
        return (f"the run logged its training arguments{' (report_to: mlflow)' if 'mlflow' in reported else ''} but "
                f"no `loss` at any step{has}: training stopped at step 0, before its first logging step (a crash, "
                "or max_steps/logging_steps too large); read the training log, fix the cause and train again")
    return ("the run has no `loss` metric history: nothing shows the training was stable. LLaMA-Factory logs "
            "`loss` every `logging_steps` when the config sets `report_to: mlflow`.")


G2_LABEL = "improvement_pct (%, initial to final loss)"


@gate("G2")
def convergence(history: History, cfg: TrainingGates) -> Check:
    """G2: final loss below initial; loss falls each epoch; no step-to-step spike; grad_norm bounded."""
    loss = [(s, v) for s, v in history.get("loss", ()) if math.isfinite(v)]
    threshold = (f"final < initial; >= {cfg.min_loss_decrease_per_epoch:g}% per epoch; "
                 f"spike <= {cfg.max_loss_spike_pct:g}%; grad_norm <= {cfg.max_grad_norm:g}")
    if len(loss) < 2:
        return Check(False, None, threshold, f"only {len(loss)} finite loss value(s): convergence cannot be judged",
                     label=G2_LABEL)
    initial, final = loss[0][1], loss[-1][1]
    improvement = (initial - final) / initial * 100 if initial else 0.0
    problems = []
    if final >= initial:
        problems.append(f"final loss {_fmt(final)} is not below the initial {_fmt(initial)}")
    problems += _slow_epochs(loss, history.get("epoch", ()), cfg.min_loss_decrease_per_epoch)
    for (s0, a), (s1, b) in zip(loss, loss[1:]):
        if a > 0 and (b - a) / a * 100 > cfg.max_loss_spike_pct:
            problems.append(f"loss spiked {(b - a) / a * 100:+.0f}% at step {s1} ({_fmt(a)} -> {_fmt(b)})")
            break
    high = [(s, v) for s, v in history.get("grad_norm", ()) if math.isfinite(v) and v > cfg.max_grad_norm]
    if high:
        s, v = max(high, key=lambda p: p[1])
        problems.append(f"grad_norm {_fmt(v)} at step {s} is above {cfg.max_grad_norm:g} "
                        f"({len(high)} step(s) above)")
    details = {"initial_loss": initial, "final_loss": final, "improvement_pct": improvement}
    if problems:
        return Check(False, round(improvement, 2), threshold, "; ".join(problems), details, label=G2_LABEL)
    return Check(True, round(improvement, 2), threshold,
                 f"loss fell {improvement:.1f}% ({_fmt(initial)} -> {_fmt(final)})", details, label=G2_LABEL)


def _slow_epochs(loss: Sequence[tuple[int, float]], epoch: Sequence[tuple[int, float]], min_pct: float) -> list[str]:
    """Epoch-over-epoch: the mean loss of each epoch is at least ``min_pct`` % below the previous epoch's."""
    if not epoch:
        return []
    epoch_at = dict(epoch)
    by_epoch: dict[int, list[float]] = {}
    for step, value in loss:
        e = epoch_at.get(step)
        if e is not None:
            by_epoch.setdefault(math.ceil(e) if e > 0 else 1, []).append(value)
    means = [(e, sum(v) / len(v)) for e, v in sorted(by_epoch.items())]
    out = []
    for (e0, m0), (e1, m1) in zip(means, means[1:]):
        drop = (m0 - m1) / m0 * 100 if m0 else 0.0
        if drop < min_pct:
            out.append(f"epoch {e1}: mean loss fell {drop:.1f}% (< {min_pct:g}%) from epoch {e0}")
    return out


G3_LABEL = "eval_train_ratio (final eval_loss / final loss)"


@gate("G3")
def generalization(history: History, cfg: TrainingGates) -> Check:
    """G3: final eval_loss / final train loss below the ratio; eval_loss not rising N evaluations in a row."""
    evals = [(s, v) for s, v in history.get("eval_loss", ()) if math.isfinite(v)]
    loss = [(s, v) for s, v in history.get("loss", ()) if math.isfinite(v)]
    threshold = f"eval/train < {cfg.max_eval_train_ratio:g}; < {cfg.max_val_loss_increase} rises in a row"
    if not evals and history.get("eval_loss"):
        return Check(False, None, threshold,
                     f"none of the {len(history['eval_loss'])} eval_loss values is finite (NaN/Inf): the evaluation "
                     "diverged, generalization cannot be judged", label=G3_LABEL)
    if not evals:
        return Check(False, None, threshold,
                     "the run has no `eval_loss` history: generalization cannot be judged. Set `val_size` (or an "
                     "eval dataset) and `eval_strategy: steps` with `eval_steps` in the LLaMA-Factory config.",
                     label=G3_LABEL)
    if not loss:
        return Check(False, None, threshold, "the run has no finite `loss` history to compare eval_loss with",
                     label=G3_LABEL)
    final_eval, final_train = evals[-1][1], loss[-1][1]
    ratio = final_eval / final_train if final_train > 0 else math.inf
    best_step, best = min(evals, key=lambda p: p[1])
    perplexity = math.exp(final_eval) if final_eval < 700 else math.inf
    problems = []
    if ratio >= cfg.max_eval_train_ratio:
        problems.append(f"eval/train loss ratio {_fmt(ratio)} ({_fmt(final_eval)} / {_fmt(final_train)}) "
                        f"is not below {cfg.max_eval_train_ratio:g}")
    run, longest, end_step = 0, 0, None
    for (_, a), (s, b) in zip(evals, evals[1:]):
        run = run + 1 if b > a else 0
        if run > longest:
            longest, end_step = run, s
    if longest >= cfg.max_val_loss_increase:
        problems.append(f"eval_loss rose {longest} evaluations in a row (to step {end_step}); "
                        f"best eval_loss {_fmt(best)} at step {best_step}")
    if perplexity > cfg.max_perplexity:
        problems.append(f"perplexity {_fmt(perplexity)} is above {cfg.max_perplexity:g}")
    details = {"final_eval_loss": final_eval, "final_train_loss": final_train, "ratio": ratio,
               "perplexity": perplexity, "best_eval_step": best_step, "best_eval_loss": best,
               "longest_eval_rise": longest}
    if problems:
        return Check(False, round(ratio, 4), threshold, "; ".join(problems), details, label=G3_LABEL)
    return Check(True, round(ratio, 4), threshold,
                 f"eval/train ratio {_fmt(ratio)}; perplexity {_fmt(perplexity)}; "
                 f"best eval_loss {_fmt(best)} at step {best_step}", details, label=G3_LABEL)


RESOURCES_LABEL = "gpu_memory_pct (%, peak) and hours (h, training time)"


@gate("resources")
def resources(history: History, duration_s: float | None, cfg: Resources) -> Check:
    """Resources (seed 001): peak GPU memory below the share, training time below the limit."""
    threshold = f"GPU memory < {cfg.max_gpu_memory_pct:g}%; training < {cfg.max_training_time_hours:g} h"
    system = {k: v for k, v in history.items() if k.startswith("system/")}
    if not system:
        return Check(False, None, threshold,
                     "the run has no system metrics (`system/...`): start training with MLflow system metrics "
                     "enabled (`ftgate train` does; or MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=true)",
                     label=RESOURCES_LABEL)
    gpu_mem = [v for k, pts in system.items() if k.endswith("memory_usage_percentage") and "gpu" in k
               for _, v in pts]
    peaks = {k: max(v for _, v in pts) for k, pts in system.items() if pts}
    problems = []
    if gpu_mem and max(gpu_mem) >= cfg.max_gpu_memory_pct:
        problems.append(f"peak GPU memory {max(gpu_mem):.1f}% is not below {cfg.max_gpu_memory_pct:g}%")
    hours = duration_s / 3600 if duration_s is not None else None
    if hours is not None and hours >= cfg.max_training_time_hours:
        problems.append(f"training took {hours:.1f} h, not under {cfg.max_training_time_hours:g} h")
    where = f"peak GPU memory {max(gpu_mem):.1f}%" if gpu_mem else "no GPU (CPU run)"
    value = {"gpu_memory_pct": max(gpu_mem) if gpu_mem else None, "hours": hours}
    if problems:
        return Check(False, value, threshold, "; ".join(problems), {"peaks": peaks}, label=RESOURCES_LABEL)
    took = f"{hours * 3600:.0f} s" if hours is not None else "unknown duration"
    return Check(True, value, threshold, f"{where}; training took {took}", {"peaks": peaks}, label=RESOURCES_LABEL)
