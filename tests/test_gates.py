"""Unit tests of gate evaluation (pure code: no pytest plugin, no MLflow)."""

import math

from pytest_ftgate.gates import audit as audit_gates

from pytest_ftgate.gates import benchmarks as bench_gates

from pytest_ftgate.gates import data as data_gates

from pytest_ftgate.gates import training
from pytest_ftgate.config import Resources, TrainingGates

from . import histories as H

T = TrainingGates()


def test_a_clean_history_passes_every_training_gate():
    h = H.clean()
    assert training.stability(h, T).passed
    assert training.convergence(h, T).passed, training.convergence(h, T).message
    assert training.generalization(h, T).passed, training.generalization(h, T).message


def test_a_nan_in_the_last_step_blocks_stability_and_names_the_step():
    check = training.stability(H.nan_in_last_step(), T)
    assert not check.passed
    assert "loss is NaN at step 200" in check.message


def test_an_inf_grad_norm_mid_run_fails_stability():
    check = training.stability(H.inf_grad_norm_mid_run(), T)
    assert not check.passed and "grad_norm is Inf at step 100" in check.message


def test_an_empty_loss_history_is_a_failure_not_a_pass():
    check = training.stability({}, T)
    assert not check.passed and "no `loss` metric history" in check.message


def test_a_flat_loss_fails_convergence_with_the_improvement_in_percent():
    check = training.convergence(H.flat_loss(), T)
    assert not check.passed
    assert "not below the initial" in check.message or "mean loss fell" in check.message
    assert isinstance(check.value, float)


def test_a_clean_run_reports_its_loss_improvement():
    check = training.convergence(H.clean(), T)
    assert check.value > 90 and "loss fell" in check.message


def test_a_loss_spike_above_fifty_percent_fails_convergence():
    h = H.with_point(H.clean(), "loss", 150, 3.0)
    check = training.convergence(h, T)
    assert not check.passed and "spiked" in check.message and "step 150" in check.message


def test_a_grad_norm_above_ten_fails_convergence():
    h = H.with_point(H.clean(), "grad_norm", 60, 12.5)
    check = training.convergence(h, T)
    assert not check.passed and "grad_norm 12.5 at step 60" in check.message


def test_an_epoch_whose_loss_barely_falls_fails_convergence():
    h = H.clean()
    h["loss"] = [(s, 6.0 - 0.001 * s) for s, _ in h["loss"]]
    check = training.convergence(h, T)
    assert not check.passed and "epoch 2: mean loss fell" in check.message


def test_eval_loss_rising_four_times_in_a_row_fails_generalization_naming_the_best_step():
    check = training.generalization(H.eval_loss_rising_four_times(), T)
    assert not check.passed
    assert "rose 4 evaluations in a row" in check.message
    assert "best eval_loss 0.5 at step 100" in check.message


def test_an_eval_train_ratio_of_one_and_a_half_fails_generalization():
    check = training.generalization(H.eval_train_ratio(1.5), T)
    assert not check.passed and check.value == 1.5
    assert check.details["perplexity"] == math.exp(check.details["final_eval_loss"])


def test_a_run_without_eval_loss_fails_generalization_and_says_how_to_log_it():
    h = H.clean()
    del h["eval_loss"]
    check = training.generalization(h, T)
    assert not check.passed and "val_size" in check.message


def test_thresholds_come_from_the_config():
    h = H.eval_train_ratio(1.5)
    assert training.generalization(h, TrainingGates(max_eval_train_ratio=2.0)).passed


def test_resources_pass_on_a_cpu_run_and_fail_above_the_gpu_memory_share():
    assert training.resources(H.clean(), 31.5, Resources()).passed
    h = {**H.clean(), "system/gpu_0_memory_usage_percentage": [(0, 50.0), (1, 97.0)]}
    check = training.resources(h, 31.5, Resources())
    assert not check.passed and "97.0%" in check.message


def test_resources_fail_when_training_took_longer_than_the_limit():
    check = training.resources(H.clean(), 25 * 3600, Resources())
    assert not check.passed and "25.0 h" in check.message


def test_resources_fail_when_no_system_metrics_were_logged():
    h = {k: v for k, v in H.clean().items() if not k.startswith("system/")}
    assert not training.resources(h, 1.0, Resources()).passed


def test_an_eval_loss_history_of_only_nan_says_the_evaluation_diverged():
    h = H.clean()
    h["eval_loss"] = [(s, float("nan")) for s, _ in h["eval_loss"]]
    check = training.generalization(h, T)
    assert not check.passed and "none of the 8 eval_loss values is finite" in check.message


def test_a_run_that_crashed_at_step_0_is_named_failed_not_missing_report_to():
    failed = training.stability({"system/cpu_utilization_percentage": [(0, 50.0)]}, T, status="FAILED",
                             params={"report_to": "['mlflow']"})
    assert not failed.passed and "the run is FAILED and has no logged training steps" in failed.message
    assert "report_to" not in failed.message
    stopped = training.stability({}, T, status="FINISHED", params={"report_to": "['mlflow']", "logging_steps": "5"})
    assert not stopped.passed and "stopped at step 0" in stopped.message and "report_to: mlflow)" in stopped.message
    assert "when the config sets `report_to: mlflow`" in training.stability({}, T, status="FINISHED").message


def test_every_training_gate_value_carries_its_name_and_unit():
    h = H.clean()
    checks = {"G1": training.stability(h, T), "G2": training.convergence(h, T), "G3": training.generalization(h, T),
              "resources": training.resources(h, 3600.0, Resources()), "G1 empty": training.stability({}, T),
              "G2 short": training.convergence({}, T), "G3 empty": training.generalization({}, T)}
    assert all(c.label for c in checks.values()), {k: c.label for k, c in checks.items()}
    assert checks["G2"].label.startswith("improvement_pct (%")
    assert checks["G3"].label.startswith("eval_train_ratio")


def test_every_gate_family_names_what_its_value_is():

    for fn in (audit_gates.completeness, audit_gates.integrity, audit_gates.reproducible_inputs,
               audit_gates.adapter_format, audit_gates.compare_losses, data_gates.schema_check, data_gates.pii_check,
               data_gates.leakage_check, data_gates.duplicates_check, bench_gates.regression):
        assert hasattr(fn, "__wrapped__"), fn.__name__  # @labelled: its Check carries a label
    check = audit_gates.compare_losses([(1, 2.0), (2, 1.0)], [(1, 2.0), (2, 1.0)], 2, 1e-6)
    assert check.passed and check.label == "largest relative loss difference to the recorded run"
