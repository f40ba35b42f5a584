"""A pass means every gate ran on the adapter that ships (issue 11): selections, Ctrl-C, SIGKILL, --collect-only,
--lf, pytest-xdist, a second session at the same time, a swapped adapter and a deleted run never produce a pass,
an MLflow verdict, a registry version or an attestation that verifies.

Real MLflow runs (sqlite) shaped as ``ftgate train`` leaves them (tests/audit_records.py), gated by `pytest` in a
subprocess, as a user runs it; no model is loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_ftgate import attest
from pytest_ftgate import promotion
from pytest_ftgate.cli import main as ftgate
from pytest_ftgate.verdict import read_verdict
from pytest_ftgate.config import Compliance

from . import histories as H
from .mlflow_runs import make_run
from .test_report_session import SUITES, audited_run, run_session, signing_key

ALL = ("test_training.py", "test_audit.py", "test_data.py")
SLOW_GATE = '''import time, pytest


@pytest.mark.gate("zz_slow", name="slow", severity="warn")
def test_zz_a_slow_gate(ft_run, gate):
    time.sleep(float(__SECONDS__))
'''


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust-runs")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    made = {"good": audited_run(uri, root, "good"),
            "blocked": audited_run(uri, root, "blocked", {"loss": [(205, float("nan"))]})}
    return uri, root, made


def client(uri):
    return promotion.client_for(uri)


def tags(uri, run_id):
    return client(uri).get_run(run_id).data.tags


def sessions_on(uri, run_id) -> set[str]:
    return {a.path for a in client(uri).list_artifacts(run_id, "ftgate/sessions")}


def suites_dir(tmp_path: Path, *names: str, **planted: str) -> Path:
    """``tmp_path/suites`` with copies of the named suites and planted suite files ({file stem: source})."""
    d = tmp_path / "suites"
    d.mkdir()
    for name in names:
        shutil.copy(SUITES / name, d / name)
    for stem, source in planted.items():
        (d / f"{stem}.py").write_text(source)
    return d


def gate_cmd(target: Path, uri: str, out: Path, *args: str, cache: bool = False) -> list[str]:
    """`python -m pytest TARGET` as a user runs it, with the store and the output directory."""
    return [sys.executable, "-m", "pytest", str(target), *([] if cache else ["-p", "no:cacheprovider"]), "-q",
            "--ftgate-tracking-uri", uri, "--ftgate-out", str(out), *args]


def verdict_file(work: Path, run_id: str) -> dict:
    return json.loads((work / "out" / "verdicts" / f"{run_id}.json").read_text())


@pytest.mark.slow
def test_a_k_selection_on_a_blocked_run_is_partial_and_leaves_mlflow_untouched(runs, tmp_path):
    uri, _, made = runs
    run_id = made["blocked"][0]
    full = run_session(tmp_path / "full", uri, [run_id], suites=ALL)
    assert full.returncode == 1 and tags(uri, run_id)["ftgate.verdict"] == "block"
    before, evidence = tags(uri, run_id), sessions_on(uri, run_id)
    sub = run_session(tmp_path / "sub", uri, [run_id], "-k", "resources or G3", suites=ALL)
    assert sub.returncode == 0, sub.stdout[-2000:]  # the selected gates passed; no release decision was made
    assert "PARTIAL" in sub.stdout and "not a release verdict" in sub.stdout
    v = verdict_file(tmp_path / "sub", run_id)
    assert v["verdict"] == "partial" and v["decision"] == "pass" and v["gates_run"] == 2
    assert v["gates_expected"] > 2 and "did not run" in v["partial_reason"]
    assert tags(uri, run_id) == before and sessions_on(uri, run_id) == evidence
    assert not (tmp_path / "sub" / "out" / "verdicts" / f"{run_id}.intoto.json").exists()


@pytest.mark.slow
def test_a_gate_is_selected_by_its_id(runs, tmp_path):
    uri, _, made = runs
    proc = run_session(tmp_path, uri, [made["good"][0]], "-k", "G1", suites=ALL)
    gates = [g["id"] for g in verdict_file(tmp_path, made["good"][0])["gates"]]
    assert gates == ["G1"] and proc.returncode == 0, proc.stdout[-2000:]


@pytest.mark.slow
def test_one_suite_file_with_promotion_is_partial_refused_and_exits_non_zero(runs, tmp_path):
    uri, _, made = runs
    d = suites_dir(tmp_path, *ALL)
    proc = subprocess.run(gate_cmd(d / "test_training.py", uri, tmp_path / "out", "--run-id", made["good"][0],
                                   "--ftgate-promote", "only-training"), cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "promotion REFUSED" in proc.stdout and "suite files of suites/ were not collected" in proc.stdout
    assert promotion.versions_of_run(client(uri), "only-training", made["good"][0]) == []


@pytest.mark.slow
def test_a_swapped_adapter_on_the_run_is_scored_as_it_is_blocked_and_never_promoted_or_verified(runs, tmp_path):
    uri, root, made = runs
    run_id, adapter = audited_run(uri, root, "swapped")
    artifacts = Path(client(uri).get_run(run_id).info.artifact_uri.removeprefix("file://"))
    (artifacts / "adapter" / "adapter_model.safetensors").write_bytes(b"malicious\n")
    proc = run_session(tmp_path, uri, [run_id], "--ftgate-promote", "evil", suites=ALL)
    assert proc.returncode == 1, proc.stdout[-2000:]
    v = verdict_file(tmp_path, run_id)
    assert v["verdict"] == "block" and {g["id"]: g["outcome"] for g in v["gates"]}["integrity"] == "failed"
    assert promotion.versions_of_run(client(uri), "evil", run_id) == []
    att = tmp_path / "out" / "verdicts" / f"{run_id}.intoto.json"
    statement = attest.read(att)[0]
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    import hashlib

    assert subjects["adapter_model.safetensors"] == hashlib.sha256(b"malicious\n").hexdigest()  # what ships
    shipped = tmp_path / "shipped"
    shutil.copytree(artifacts / "adapter", shipped)
    problems, _ = attest.verify(att, shipped)
    assert any("is not the trained" in p for p in problems) and any("'block'" in p for p in problems)
    assert attest.main([str(att), str(shipped)]) == 1


@pytest.mark.slow
def test_verify_refuses_an_attestation_whose_verdict_is_block(runs, tmp_path):
    uri, _, made = runs
    run_id, adapter = made["blocked"]
    proc = run_session(tmp_path, uri, [run_id], suites=ALL)
    assert proc.returncode == 1
    att = tmp_path / "out" / "verdicts" / f"{run_id}.intoto.json"
    assert attest.main([str(att), str(adapter)]) == 1


@pytest.mark.slow
def test_collect_only_writes_nothing_and_trains_nothing(runs, tmp_path):
    uri, _, made = runs
    before = tags(uri, made["good"][0])
    proc = run_session(tmp_path, uri, [made["good"][0]], "--collect-only", suites=ALL)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert not (tmp_path / "out").exists() and tags(uri, made["good"][0]) == before


@pytest.mark.slow
def test_last_failed_after_a_full_session_is_partial(runs, tmp_path):
    uri, _, made = runs
    d = suites_dir(tmp_path, *ALL)
    cmd = gate_cmd(d, uri, tmp_path / "out", "--run-id", made["blocked"][0], cache=True)  # --lf needs the cache
    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert first.returncode == 1 and verdict_file(tmp_path, made["blocked"][0])["verdict"] == "block"
    again = subprocess.run(cmd + ["--lf"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    v = verdict_file(tmp_path, made["blocked"][0])
    assert v["verdict"] == "partial" and v["gates_run"] == 1, again.stdout[-2000:]
    assert "were not collected" in v["partial_reason"] and "PARTIAL" in again.stdout


@pytest.mark.slow
def test_sigkill_mid_session_leaves_a_partial_verdict_never_a_pass(runs, tmp_path, capsys):
    uri, _, made = runs
    d = suites_dir(tmp_path, "test_training.py", test_zz_slow=SLOW_GATE.replace("__SECONDS__", "60"))
    proc = subprocess.Popen(gate_cmd(d, uri, tmp_path / "out", "--run-id", made["good"][0]), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    path = tmp_path / "out" / "verdicts" / f"{made['good'][0]}.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (path.is_file() and len(read_verdict(path)["gates"]) >= 4):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert json.loads(path.read_text())["verdict"] == "partial"  # the file itself, as the kill left it
    v = read_verdict(path)  # with the gate records of its journal
    assert len(v["gates"]) == 4 and v["decision"] == "pass"  # the training gates had passed ...
    assert v["verdict"] == "partial" and v["complete"] is False  # ... but the session never finished
    assert ftgate(["verdict", str(tmp_path / "out")]) == 1  # what a user reads after the kill
    shown = capsys.readouterr().out
    assert shown.startswith("PARTIAL") and "gate tests ran, pass so far; not a release verdict" in shown


@pytest.mark.slow
def test_a_second_session_on_the_same_output_directory_is_refused_and_the_first_loses_nothing(runs, tmp_path):
    uri, _, made = runs
    d = suites_dir(tmp_path, "test_training.py", test_zz_slow=SLOW_GATE.replace("__SECONDS__", "20"))
    base = gate_cmd(d, uri, tmp_path / "out")
    first = subprocess.Popen(base + ["--run-id", made["good"][0]], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    lock = tmp_path / "out" / ".ftgate.lock"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (lock.is_file() and lock.read_text().strip()):
        time.sleep(0.2)
    second = subprocess.run(base + ["--run-id", made["blocked"][0]], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    out, _ = first.communicate(timeout=300)
    assert second.returncode == 4 and "is in use by another gating session" in second.stderr, second.stderr
    assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    assert first.returncode == 0, out[-2000:]
    v = verdict_file(tmp_path, made["good"][0])
    assert v["verdict"] == "pass" and len(v["gates"]) == 5
    assert not (tmp_path / "out" / "verdicts" / f"{made['blocked'][0]}.json").exists()


@pytest.mark.slow
def test_xdist_over_two_runs_gives_the_serial_sessions_verdicts_and_exit_code(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = {"clean": make_run(uri, "clean", H.clean()), "nan": make_run(uri, "nan", H.nan_in_last_step())}
    d = suites_dir(tmp_path, "test_training.py")
    results = {}
    for mode, extra in (("serial", []), ("xdist", ["-n", "2"])):
        proc = subprocess.run(gate_cmd(d, uri, tmp_path / mode, "--run-id", ids["clean"], "--run-id", ids["nan"],
                                       *extra), cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert "INTERNALERROR" not in proc.stdout + proc.stderr, proc.stdout[-3000:]
        verdicts = {name: json.loads((tmp_path / mode / "verdicts" / f"{rid}.json").read_text())
                    for name, rid in ids.items()}
        results[mode] = (proc.returncode, {n: (v["verdict"], v["complete"], sorted(
            (g["id"], g["outcome"]) for g in v["gates"])) for n, v in verdicts.items()})
        assert (tmp_path / mode / "report.html").is_file() and (tmp_path / mode / "summary.md").is_file()
    assert results["xdist"] == results["serial"]
    assert results["serial"][0] == 1 and results["serial"][1]["clean"][0] == "pass"
    assert results["serial"][1]["nan"][:2] == ("block", True)


@pytest.mark.slow
def test_a_deleted_run_is_an_error_never_a_pass(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = make_run(uri, "deleted", H.clean())
    client(uri).delete_run(run_id)
    d = suites_dir(tmp_path, "test_training.py")
    proc = subprocess.run(gate_cmd(d, uri, tmp_path / "out", "--run-id", run_id), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 4, proc.stdout[-2000:]  # bad input: said once, before any gate runs
    assert "is deleted" in proc.stderr and "mlflow runs restore" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and not list((tmp_path / "out" / "verdicts").glob("*.json"))


@pytest.mark.slow
def test_a_session_that_gates_nothing_leaves_no_earlier_pass_where_its_outputs_go(runs, tmp_path, capsys):
    uri, _, made = runs
    d = suites_dir(tmp_path, "test_training.py")
    first = subprocess.run(gate_cmd(d, uri, tmp_path / "out", "--run-id", made["good"][0]), cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0 and verdict_file(tmp_path, made["good"][0])["verdict"] == "pass", first.stdout
    session = verdict_file(tmp_path, made["good"][0])["session_id"]
    bad = subprocess.run(gate_cmd(d, uri, tmp_path / "out", "--run-id", "no-such-run"), cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 4 and "no-such-run" in bad.stderr and "Traceback" not in bad.stderr
    out = tmp_path / "out"
    assert not [p.name for p in out.iterdir() if p.name in ("report.html", "report.json", "summary.md")]
    assert list((out / "verdicts").iterdir()) == []  # no PASS left where this session's verdicts would be
    kept = out / "previous" / session  # the first session's evidence, whole
    assert read_verdict(kept / "verdicts" / f"{made['good'][0]}.json")["verdict"] == "pass"
    assert (kept / "report.html").is_file() and (kept / "summary.md").is_file()
    assert ftgate(["verdict", str(out)]) == 2 and "gated no run" in capsys.readouterr().err
    assert ftgate(["verdict", str(kept)]) == 0


def test_the_store_lists_a_runs_artifacts_as_mlflows_runs_uris_do(tmp_path, monkeypatch):
    """RunStore lists through the run's artifact repository (not a runs:/ URI, which reads the run twice per
    folder): the same files, those of a logged model named like the folder included (MLflow 3's log_model), those
    of another run's model not."""
    from pytest_ftgate.store import RunStore

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # MLflow's models:/ URIs resolve through the global store
    run_id = make_run(uri, "listed", H.clean())
    mlflow = client(uri)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "adapter_config.json").write_text("{}")
    (src / "sub" / "w.bin").write_text("w")
    mlflow.log_artifact(run_id, str(src / "adapter_config.json"), "audit")
    mlflow.log_artifacts(run_id, str(src), "adapter/own")
    exp = mlflow.get_run(run_id).info.experiment_id
    for name, source in (("adapter", run_id), ("audit", "0" * 32)):
        mlflow.log_model_artifacts(mlflow.create_logged_model(exp, name=name, source_run_id=source).model_id, str(src))

    def by_mlflow(path=None):
        items = mlflow.list_artifacts(run_id, path)
        return [f for i in items for f in (by_mlflow(i.path) if i.is_dir else [i.path])]

    store = RunStore(uri)
    for path in (None, "audit", "adapter", "adapter/sub", "adapter/own", "nothing"):
        assert sorted(store.list_artifacts(run_id, path)) == sorted(by_mlflow(path)), path
    assert "adapter/adapter_config.json" in store.list_artifacts(run_id, "adapter")


@pytest.mark.slow
def test_a_signing_key_that_cannot_be_used_stops_the_session_before_any_gate(runs, tmp_path):
    uri, _, made = runs
    _, public = signing_key(tmp_path)
    for key in (tmp_path / "missing.pem", public):
        work = tmp_path / f"with-{key.name}"
        proc = run_session(work, uri, [made["good"][0]], suites=("test_training.py",), planted=None,
                           env={attest.KEY_ENV: str(key)})
        assert proc.returncode == 4 and "signing key" in proc.stderr, proc.stderr[-2000:]
        assert not list(work.rglob("*.intoto.json"))


@pytest.mark.slow
def test_a_promoted_versions_evidence_outlives_later_sessions(runs, tmp_path):
    uri, root, _ = runs
    run_id, _ = audited_run(uri, root, "promoted")
    first = run_session(tmp_path / "one", uri, [run_id], "--ftgate-promote", "kept", suites=ALL)
    assert first.returncode == 0, first.stdout[-3000:]
    (version,) = promotion.versions_of_run(client(uri), "kept", run_id)
    evidence = client(uri).get_model_version("kept", version.version).tags["compliance.evidence"]
    promotion.move(client(uri), "kept", "production", "reviewer", version=version.version,
                   policy=Compliance(required=()))  # the evidence's lifetime; test_checklist.py: the checklist
    again = run_session(tmp_path / "two", uri, [run_id], "--ftgate-promote", "kept", suites=ALL)
    assert again.returncode == 0, again.stdout[-3000:]
    assert client(uri).get_model_version("kept", version.version).tags["compliance.evidence"] == evidence
    where = evidence.removeprefix(f"runs:/{run_id}/")
    page = client(uri).download_artifacts(run_id, f"{where}/report.html", str(tmp_path / "dl"))
    import hashlib

    reported = client(uri).get_model_version("kept", version.version).tags["compliance.report_sha256"]
    assert hashlib.sha256(Path(page).read_bytes()).hexdigest() == reported
    assert tags(uri, run_id)["ftgate.evidence"] != where  # the run points at the latest complete session


@pytest.mark.slow
def test_junit_xml_carries_gate_id_severity_outcome_value_and_threshold(pytester):
    uri = f"sqlite:///{pytester.path / 'mlflow.db'}"
    run_id = make_run(uri, "flat", H.flat_loss())
    pytester.makepyfile(test_training=(SUITES / "test_training.py").read_text())
    pytester.runpytest("-p", "no:cacheprovider", "--ftgate-tracking-uri", uri, "--run-id", run_id,
                       "--junitxml", "junit.xml")
    cases = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
             for c in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    g2 = cases["test_loss_converges_without_spikes[flat]"]
    assert (g2["ftgate.gate_id"], g2["ftgate.severity"], g2["ftgate.outcome"]) == ("G2", "warn", "warn")
    assert "ftgate.value" in g2 and "ftgate.threshold" in g2 and g2["ftgate.label"]
    assert cases["test_loss_and_gradients_are_finite_at_every_step[flat]"]["ftgate.outcome"] == "passed"


FREEZE_STORE = '''import subprocess, pytest


@pytest.mark.gate("zz_freeze", name="freeze", severity="info")
def test_zz_the_store_stops_accepting_writes(ft_run, gate):
    subprocess.run(["chattr", "+i", __DB__], check=True)
'''


@pytest.mark.slow
def test_a_store_that_stops_accepting_writes_mid_session_is_said_loudly_and_fails_promotion(tmp_path):
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(tmp_path)]).returncode != 0:
        pytest.skip("chattr +i is not available here (root bypasses file modes, so nothing else freezes a store)")
    subprocess.run(["chattr", "-i", str(tmp_path)], check=True)
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    run_id = make_run(uri, "clean", H.clean())
    d = suites_dir(tmp_path, "test_training.py", test_zz_freeze=FREEZE_STORE.replace("__DB__", repr(str(db))))
    try:
        proc = subprocess.run(gate_cmd(d, uri, tmp_path / "out", "--run-id", run_id, "--ftgate-promote", "frozen"),
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=False)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "MLflow does NOT hold this verdict" in proc.stdout and "promotion REFUSED" in proc.stdout
    assert verdict_file(tmp_path, run_id)["verdict"] == "pass"  # on disk all the same
    assert "ftgate.verdict" not in tags(uri, run_id)
