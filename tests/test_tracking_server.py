"""The gate against a real `mlflow server` on 127.0.0.1 (users run a tracking server; sqlite is for fast tiers)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from . import histories as H
from .mlflow_runs import make_run
from .servers import stop, wait_healthy

SUITE = (Path(__file__).parents[1] / "suites" / "test_training.py").read_text()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory, free_tcp_port_factory):
    """`mlflow server` with one worker, sqlite backend and served artifacts, torn down with its process group."""
    port = free_tcp_port_factory()
    root = tmp_path_factory.mktemp("server")
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "art")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    url = f"http://127.0.0.1:{port}"
    wait_healthy(proc, url, root / "server.log", 120)
    yield url
    stop(proc)
    log.close()


@pytest.mark.slow
def test_runs_on_a_real_tracking_server_are_gated_and_tagged_through_it(pytester, mlflow_server):
    from mlflow.tracking import MlflowClient

    good = make_run(mlflow_server, "served-clean", H.clean())
    bad = make_run(mlflow_server, "served-nan", H.nan_in_last_step())
    pytester.makepyfile(test_training=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--ftgate-tracking-uri", mlflow_server,
                                "--run-id", "served-clean", "--run-id", bad)
    assert result.ret == 1
    result.assert_outcomes(passed=7, failed=1)
    client = MlflowClient(mlflow_server)
    assert client.get_run(good).data.tags["ftgate.verdict"] == "pass"
    assert client.get_run(bad).data.tags["ftgate.gate.G1"] == "failed"
    where = client.get_run(bad).data.tags["ftgate.evidence"]  # ftgate/sessions/<session id>
    stored = client.download_artifacts(bad, f"{where}/{bad}.json", str(pytester.path / "dl"))
    assert json.loads(Path(stored).read_text())["verdict"] == "block"
