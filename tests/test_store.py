"""The MLflow store's client: opened once, with the cyclic garbage collector paused while MLflow is imported."""

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
        with store_module._gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
