"""The MLflow store's client: opened once, with the cyclic garbage collector paused while MLflow is imported, and
what the import made kept out of the collector's way before it runs again."""

import gc

import pytest

from pytest_ftgate import store as store_module
from pytest_ftgate.store import RunStore


def test_the_client_is_opened_with_the_garbage_collector_paused_then_running_again(tmp_path, monkeypatch):
    import mlflow.tracking

    seen = []

    class Client:
        def __init__(self, tracking_uri):
            seen.append(gc.isenabled())

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", Client)
    store = RunStore(f"sqlite:///{tmp_path / 'mlflow.db'}", create=True)
    assert store.client is store.client
    assert seen == [False] and gc.isenabled()


def test_the_garbage_collector_runs_again_when_opening_the_client_fails(tmp_path, monkeypatch):
    import mlflow.tracking

    def broken(tracking_uri):
        raise RuntimeError("no store")

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", broken)
    with pytest.raises(RuntimeError):
        RunStore(f"sqlite:///{tmp_path / 'mlflow.db'}", create=True).client
    assert gc.isenabled()


def test_a_collector_paused_by_the_caller_stays_paused(monkeypatch):
    gc.disable()
    try:
        with store_module._gc_paused("caller-paused"):
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_a_paused_site_made_is_frozen_before_the_collector_runs_again(monkeypatch):
    monkeypatch.setattr(store_module, "_FROZEN", set())
    seen = []
    monkeypatch.setattr(gc, "freeze", lambda: seen.append(("freeze", gc.isenabled())))
    with store_module._gc_paused("import"):
        pass
    with store_module._gc_paused("import"):  # once per site and process: later objects stay collectable
        pass
    assert seen == [("freeze", False)] and gc.isenabled()


def test_a_runs_history_comes_back_in_step_order_with_its_infinities(tmp_path):
    from tests.mlflow_runs import make_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = make_run(uri, "inf", {"grad_norm": [(3, 1.0), (1, float("inf")), (2, -float("inf")), (2, 0.5)]})
    history = RunStore(uri).load(run_id).history
    assert history["grad_norm"] == [(1, float("inf")), (2, -float("inf")), (2, 0.5), (3, 1.0)]


def test_the_garbage_collector_is_paused_while_a_history_loads_and_runs_again_after(tmp_path, monkeypatch):
    from tests.mlflow_runs import make_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = make_run(uri, "gc", {"loss": [(1, 2.0), (2, 1.0)]})
    store = RunStore(uri)
    real, seen = store.client.get_metric_history, []
    monkeypatch.setattr(store.client, "get_metric_history", lambda *a: seen.append(gc.isenabled()) or real(*a))
    assert store.load(run_id).history["loss"] == [(1, 2.0), (2, 1.0)]
    assert seen == [False] and gc.isenabled()
