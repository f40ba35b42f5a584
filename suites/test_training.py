"""Training gates G1-G3 and resources, on the metric history LLaMA-Factory logs with `report_to: mlflow`."""

import pytest

from pytest_ftgate.gates import training


@pytest.mark.gate("G1", name="stability", severity="block")
def test_loss_and_gradients_are_finite_at_every_step(ft_run, gate, ftgate_config):
    gate.check(training.stability(ft_run.history, ftgate_config.training, status=ft_run.status, params=ft_run.params))


@pytest.mark.gate("G2", name="convergence", severity="warn")
def test_loss_converges_without_spikes(ft_run, gate, ftgate_config):
    gate.check(training.convergence(ft_run.history, ftgate_config.training))


@pytest.mark.gate("G3", name="generalization", severity="warn")
def test_eval_loss_tracks_train_loss(ft_run, gate, ftgate_config):
    gate.check(training.generalization(ft_run.history, ftgate_config.training))


@pytest.mark.gate("resources", name="resources", severity="warn")
def test_training_stayed_within_resource_limits(ft_run, gate, ftgate_config):
    gate.check(training.resources(ft_run.history, ft_run.duration_s, ftgate_config.resources))
