"""Benchmarks through lm-evaluation-harness (seed 000 "standard benchmark", seed 002 "MMLU accuracy > baseline"):
every task under ``benchmarks.tasks`` in ftgate.yaml runs on the adapter and on its base model, and gate
``bench:<task>`` blocks a regression larger than ``max_stderr_margin`` standard errors. A task with
``trained_on: [dataset, ...]`` runs only for runs trained on one of those datasets (skipped with the reason else)."""

import pytest

from pytest_ftgate import lmeval, train
from pytest_ftgate.plugin import ftgate_session


def pytest_generate_tests(metafunc):
    if "bench_task" not in metafunc.fixturenames:
        return
    specs = lmeval.gate_specs(ftgate_session(metafunc.config).cfg)
    params = [pytest.param((label, task), id=label, marks=pytest.mark.gate(gate_id, name="benchmark",
                                                                           severity=severity))
              for label, gate_id, severity, task in specs]
    metafunc.parametrize("bench_task", params or [pytest.param(None, id="none", marks=pytest.mark.skip(
        reason="no benchmarks configured: name lm-eval tasks under benchmarks.tasks in ftgate.yaml"))])


def test_the_adapter_does_not_regress_on_the_benchmark(ft_run, bench_task, gate, audit_record, ftgate_session,
                                                       ftgate_config, request):
    label, task = bench_task
    reason = train.benchmark_out_of_scope(label, task.trained_on, audit_record.record, ft_run.params)
    if reason:  # a project's benchmark (over its own data) says nothing about a run trained on other data
        pytest.skip(reason)
    bench_runner, adapter, base_model = (request.getfixturevalue(n) for n in ("bench_runner", "adapter",
                                                                               "base_model"))
    check = lmeval.run_gate(bench_runner, label, task, base_model, adapter, ftgate_session.store, ft_run.run_id)
    gate.check(check, gate_id=f"bench:{label}", severity=ftgate_config.severity(f"bench:{label}", task.severity))
