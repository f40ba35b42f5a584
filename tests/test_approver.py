"""Who approves, against a real `mlflow server --app-name basic-auth` on 127.0.0.1: `ftgate promote` records the
user the server authenticated, refuses an --approved-by that is someone else, and refuses self-approval by the user
who trained the run when ``compliance.separate_approver`` is true."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_ftgate import checklist, cli, promotion
from pytest_ftgate.config import Compliance

from . import histories as H
from .servers import stop, wait_healthy
from .mlflow_runs import make_run

ADMIN = ("admin", "admin-password-1234")
USERS = {"alice": "alice-password-1234", "bob": "bob-password-1234"}


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory, free_tcp_port_factory):
    """`mlflow server --app-name basic-auth` (one worker, sqlite stores, served artifacts) with users alice and bob,
    torn down with its process group."""
    port = free_tcp_port_factory()
    root = tmp_path_factory.mktemp("auth-server")
    ini = root / "basic_auth.ini"
    ini.write_text(f"[mlflow]\ndefault_permission = MANAGE\ndatabase_uri = sqlite:///{root / 'auth.db'}\n"
                   f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [mlflow, "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "art")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_AUTH_CONFIG_PATH": str(ini),
             "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-csrf-key"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, root / "server.log")
        from mlflow.server.auth.client import AuthServiceClient

        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN
        for user, password in USERS.items():
            AuthServiceClient(url).create_user(user, password)
        yield url
    finally:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(key, None)
        stop(proc)
        log.close()


def as_user(monkeypatch, user):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", USERS.get(user, ADMIN[1]))


def candidate(url, tmp_path, name, separate_approver):
    """A run trained by alice, registered as the candidate of ``name`` with a complete session's checklist."""
    run_id = make_run(url, "trained-by-alice", H.clean(), tags={"mlflow.user": "alice"})
    client = promotion.client_for(url)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    client.log_artifacts(run_id, str(tmp_path / "adapter"), "adapter")
    gates = [{"id": i, "outcome": "passed", "severity": "block"} for i in ("integrity", "pii", "G6", "G4", "G5")]
    declared = Compliance(intended_use="FAQ", known_limitations="English only", risk_category="limited",
                          human_oversight="support staff review answers", separate_approver=separate_approver)
    path = tmp_path / f"{run_id}{checklist.SUFFIX}"
    path.write_text(json.dumps(checklist.build(gates, declared, {"name": name})))
    client.log_artifact(run_id, str(path), "ftgate/sessions/s1")
    verdict = {"run_id": run_id, "verdict": "pass", "complete": True, "gates": gates}
    tags = promotion.candidate_tags(verdict, "sha256:" + "d" * 64, "e" * 64, evidence_uri=f"runs:/{run_id}/"
                                                                                         "ftgate/sessions/s1")
    assert promotion.promote_candidate(client, name, verdict, tags, True)["alias"] == "candidate"
    return client, run_id


@pytest.mark.slow
def test_the_authenticated_user_is_recorded_and_someone_else_or_the_trainer_is_refused(auth_server, tmp_path,
                                                                                      monkeypatch, capsys):
    as_user(monkeypatch, "alice")
    assert promotion.authenticated_user(auth_server) == "alice"
    client, run_id = candidate(auth_server, tmp_path, "faq", separate_approver=True)
    base = ["promote", "faq", "--tracking-uri", auth_server]

    as_user(monkeypatch, "bob")
    assert cli.main(base + ["--to", "staging", "--approved-by", "carol"]) == 1
    assert "--approved-by 'carol' is not the user the tracking server authenticated ('bob')" in capsys.readouterr().err

    as_user(monkeypatch, "alice")
    assert cli.main(base + ["--to", "staging", "--approved-by", "alice"]) == 1
    err = capsys.readouterr().err
    assert "'alice' trained run" in err and "compliance.separate_approver: true" in err
    assert promotion.aliases(client, "faq") == {"candidate": "1"}

    as_user(monkeypatch, "bob")
    assert cli.main(base + ["--to", "staging"]) == 0  # --approved-by defaults to the authenticated user
    assert "(approved by bob at" in capsys.readouterr().out
    assert cli.main(base + ["--to", "production", "--approved-by", "bob"]) == 0
    tags = client.get_model_version("faq", "1").tags
    assert (tags["compliance.approved_by"], tags["compliance.approver_authenticated"]) == ("bob", "true")
    assert client.get_run(run_id).data.tags["compliance.approved_by"] == "bob"
    assert promotion.aliases(client, "faq") == {"production": "1"}


@pytest.mark.slow
def test_wrong_credentials_are_refused_before_anything_moves(auth_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-his-password")
    with pytest.raises(promotion.PromotionError, match="refused the credentials .HTTP 401.*MLFLOW_TRACKING_USERNAME"):
        promotion.authenticated_user(auth_server)
