"""End to end: `pytest suites` over real MLflow runs (sqlite) with audited adapters writes a self-contained
report.html, report.json, summary.md and signed attestations, records the report's sha256 in every verdict,
promotes what passes, and lets no secret through; an interrupted session still gets its (incomplete) report."""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_ftgate import attest, promotion

from . import audit_records as A

pytestmark = pytest.mark.slow  # every test here shares a gated session (module fixture)

SUITES = Path(__file__).parents[1] / "suites"
XSS = "<img src=x onerror=\"document.title='PWNED';document.body.setAttribute('data-pwned','1')\">"
PARAM_SECRET = "hf_PLANTEDparamSECRET0123"
ENV_SECRET = "env-PLANTED-password-4567"
PLANTED = '''"""Stand-in for the quality suite's output shape: a G4 result with metrics, CIs and generations."""
import pytest
from pytest_ftgate.gates import Check

XSS = __XSS__


@pytest.mark.gate("G4", name="baseline", severity="block")
def test_the_adapter_scores_at_least_95_percent_of_the_baseline(ft_run, gate):
    samples = [{"prompt": f"reverse w{i} stone river", "reference": f"river stone w{i}",
                "prediction": XSS if i == 0 else f"river stone w{i}", "scores": {"f1": i / 12}} for i in range(12)]
    metrics = {"rougeL": {"candidate": 0.81, "baseline": 0.42, "ratio": 1.93, "ci_low": 0.3, "ci_high": 0.47,
                          "significant": True}}
    gate.check(Check(True, 1.93, 0.95, "rougeL 0.81 >= 95% of baseline 0.42; worst answer: " + XSS,
                     {"metrics": metrics, "samples": samples}))
'''


def audited_run(uri: str, root: Path, name: str, extra: dict | None = None) -> tuple[str, Path]:
    """A run as pytest-ftgate's training wrapper leaves it (clean history, adapter/, audit record, lineage params),
    plus a planted secret param and ``extra`` metric points ({key: [(step, value)]}) that give it a defect."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    paths = A.write_files(root / hashlib.sha256(name.encode()).hexdigest()[:8])
    run_id = A.log_run(uri, name, paths)
    metrics = [Metric(k, float(v), 0, s) for k, pts in (extra or {}).items() for s, v in pts]
    MlflowClient(tracking_uri=uri).log_batch(run_id, metrics=metrics, params=[
        Param("hf_token", PARAM_SECRET), Param("lora_rank", "8")])
    return run_id, paths["adapter"]


def signing_key(root: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    priv, pub = root / "signing.pem", root / "signing.pub.pem"
    priv.write_bytes(key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def run_session(work: Path, uri: str, run_ids, *extra: str, suites=("test_training.py", "test_audit.py",
                                                                     "test_data.py"), planted=PLANTED, env=None):
    """`python -m pytest <work>/suites --run-id ...` in a subprocess, as a user runs it."""
    d = work / "suites"
    d.mkdir(parents=True, exist_ok=True)
    for suite in suites:
        shutil.copy(SUITES / suite, d / suite)
    if planted:
        (d / "test_planted_quality.py").write_text(planted.replace("__XSS__", repr(XSS)))
    args = [a for run_id in run_ids for a in ("--run-id", run_id)]
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(d), "-p", "no:cacheprovider", "-q", "--ftgate-tracking-uri", uri,
         "--ftgate-out", str(work / "out"), *args, *extra],
        cwd=work, capture_output=True, text=True, timeout=600,
        env={**os.environ, "MLFLOW_TRACKING_PASSWORD": ENV_SECRET, **(env or {})})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-runs")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    runs = {"blocked": audited_run(uri, root, "nan-last-step", {"loss": [(205, float("nan"))]}),
            "warned": audited_run(uri, root, XSS, {"eval_loss": [(225, 0.5), (250, 0.6), (275, 0.7), (300, 0.8)]}),
            "passed": audited_run(uri, root, "clean")}
    return uri, root, runs


@pytest.fixture(scope="module")
def gated(store, tmp_path_factory):
    uri, root, runs = store
    work = tmp_path_factory.mktemp("report-session")
    priv, pub = signing_key(work)
    proc = run_session(work, uri, [r for r, _ in runs.values()], "--ftgate-promote", "demo-adapter",
                       env={attest.KEY_ENV: str(priv)})
    return proc, work / "out", runs, pub


def test_the_session_writes_a_self_contained_report_with_every_section(gated):
    proc, out, runs, _ = gated
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # one run blocks
    page = (out / "report.html").read_text()
    assert not (out / "assets").exists() and not re.search(r'(src|href)="(?!data:|#|"|https://pypi)', page)
    for label in ("block", "warn", "pass"):
        assert f'class="ftgate-banner ftgate-{label}"' in page
    assert page.count('<img class="ftgate-plot"') == 3
    for title in ("Gates", "Metrics against the baseline", "Audit record", "Data checks", "Sample of generations"):
        assert page.count(f"><summary>{title}") == 3, title
    assert "sha256 (artifact)" in page and "transformers_version" in page  # the audit record is shown
    assert "1.93" in page and "ci_high" in page  # metrics with their confidence interval


def test_warn_is_its_own_counted_outcome_and_rows_are_expanded(gated):
    page = (gated[1] / "report.html").read_text()
    assert re.search(r'data-test-result="warn"\s*>\s*<span class="warn">1 Warn,', page)  # G3 of one run
    blob = json.loads(re.search(r'data-jsonblob="([^"]*)"', page).group(1).replace("&#34;", '"')
                      .replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'")
                      .replace("&amp;", "&"))
    assert blob["renderCollapsed"] == []
    soft = [t for tests in blob["tests"].values() for t in tests if "ftgate-soft-warn" in t["resultsTableRow"][0]]
    assert len(soft) == 1 and all(t["result"] == "Passed" for t in soft)


def test_no_model_output_prompt_or_run_name_reaches_the_page_unescaped(gated):
    page = (gated[1] / "report.html").read_text()
    assert "<img src=x" not in page and "onerror=\"document" not in page
    assert "&lt;img src=x onerror=" in page


def test_every_verdict_records_the_sha256_of_the_final_report(gated, store):
    proc, out, runs, _ = gated
    digest = hashlib.sha256((out / "report.html").read_bytes()).hexdigest()
    doc = json.loads((out / "report.json").read_text())
    assert doc["session"]["report_sha256"] == digest and len(doc["runs"]) == 3
    client = promotion.client_for(store[0])
    for run_id, _ in runs.values():
        assert json.loads((out / "verdicts" / f"{run_id}.json").read_text())["report_sha256"] == digest
        tags = client.get_run(run_id).data.tags
        assert tags["ftgate.report_sha256"] == digest
        where = tags["ftgate.evidence"]  # ftgate/sessions/<session id>: this session's evidence, kept as it is
        assert {a.path for a in client.list_artifacts(run_id, where)} >= {
            f"{where}/report.html", f"{where}/{run_id}.json", f"{where}/{run_id}.intoto.json"}


def test_report_json_and_summary_md_describe_the_session(gated):
    proc, out, runs, _ = gated
    doc = json.loads((out / "report.json").read_text())
    by_id = {r["run_id"]: r for r in doc["runs"]}
    assert {by_id[r]["verdict"] for r, _ in runs.values()} == {"pass", "warn", "block"}
    assert doc["counts"] == {"pass": 1, "warn": 1, "block": 1} and doc["session"]["interrupted"] is False
    passed = by_id[runs["passed"][0]]
    assert passed["audit_record"]["reproducibility"]["seeds"] == {"seed": 42, "data_seed": 42}
    assert {"G1", "G2", "G3", "G4", "G6", "integrity", "schema"} <= {g["id"] for g in passed["gates"]}
    assert [g for g in passed["gates"] if g["outcome"] not in ("passed", "skipped")] == []
    assert passed["run"]["history"]["loss"]
    md = (out / "summary.md").read_text()
    assert "| clean |" in md and "**BLOCK** | G1 FAIL |" in md and "<img" not in md


def test_promotion_makes_passing_runs_candidates_and_never_the_blocked_one(gated, store):
    proc, out, runs, _ = gated
    client = promotion.client_for(store[0])
    assert promotion.versions_of_run(client, "demo-adapter", runs["blocked"][0]) == []
    (warned,) = promotion.versions_of_run(client, "demo-adapter", runs["warned"][0])
    (passed,) = promotion.versions_of_run(client, "demo-adapter", runs["passed"][0])
    assert promotion.aliases(client, "demo-adapter") == {"candidate": str(passed.version)}  # the last one gated
    digest = hashlib.sha256((out / "report.html").read_bytes()).hexdigest()
    tags = client.get_model_version("demo-adapter", passed.version).tags
    assert tags["compliance.report_sha256"] == digest and tags["compliance.gate_status"] == "pass"
    assert tags["compliance.approved_by"] == "pending"
    assert client.get_model_version("demo-adapter", warned.version).tags["compliance.gate_status"] == "warn"
    assert "registry: clean -> demo-adapter version" in proc.stdout


def test_ftgate_verify_passes_on_the_shipped_adapter_and_fails_after_one_byte_changes(gated, tmp_path, capsys):
    proc, out, runs, pub = gated
    run_id, adapter = runs["passed"]
    att = out / "verdicts" / f"{run_id}.intoto.json"
    shipped = tmp_path / "adapter"
    shutil.copytree(adapter, shipped)
    assert attest.main([str(att), str(shipped), "--public-key", str(pub)]) == 0
    statement = json.loads(base64.b64decode(json.loads(att.read_text())["payload"]))
    assert statement["predicate"]["verdict"] == "pass" and statement["predicate"]["lineage"]["datasets"]
    assert statement["predicate"]["report_sha256"] == hashlib.sha256((out / "report.html").read_bytes()).hexdigest()
    raw = bytearray((shipped / "adapter_model.safetensors").read_bytes())
    raw[-1] ^= 0x01
    (shipped / "adapter_model.safetensors").write_bytes(bytes(raw))
    assert attest.main([str(att), str(shipped), "--public-key", str(pub)]) == 1


def test_a_secret_planted_in_a_param_or_the_environment_appears_in_no_output(gated):
    proc, out, runs, _ = gated
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 8
    for p in files:
        text = p.read_text(errors="replace")
        if p.name.endswith(".intoto.json"):
            text += base64.b64decode(json.loads(text)["payload"]).decode()
        assert PARAM_SECRET not in text and ENV_SECRET not in text, p
    assert "[REDACTED]" in (out / "report.json").read_text()


INTERRUPTING = '''import pytest


@pytest.mark.gate("Z", name="operator", severity="block")
def test_zz_the_operator_presses_ctrl_c(ft_run, gate):
    raise KeyboardInterrupt
'''


def test_an_interrupted_session_still_writes_its_report_marked_partial_and_promotes_nothing(store, tmp_path):
    uri, root, runs = store
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "test_zz_interrupt.py").write_text(INTERRUPTING)
    proc = run_session(tmp_path, uri, [runs["passed"][0]], "--ftgate-promote", "interrupted-model",
                       suites=("test_training.py",), planted=None)
    assert proc.returncode == 2, proc.stdout[-3000:]
    out = tmp_path / "out"
    page = (out / "report.html").read_text()
    assert "INCOMPLETE" in page and "does not support a release decision" in page
    doc = json.loads((out / "report.json").read_text())
    assert doc["session"]["interrupted"] is True and doc["runs"][0]["incomplete"] is True
    assert doc["runs"][0]["report_sha256"] == hashlib.sha256((out / "report.html").read_bytes()).hexdigest()
    assert doc["runs"][0]["verdict"] == "partial"
    assert doc["runs"][0]["promotion"]["skipped"].startswith("the session's verdict is partial")
    assert "promotion REFUSED" in proc.stdout


def test_without_pytest_html_the_report_is_still_written(store, tmp_path):
    uri, root, runs = store
    proc = run_session(tmp_path, uri, [runs["warned"][0]], "-p", "no:html", suites=("test_training.py",),
                       planted=None)
    assert proc.returncode == 0, proc.stdout[-3000:]
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and 'class="ftgate-banner ftgate-warn"' in page
    assert "<img src=x" not in page


def test_an_output_directory_that_cannot_be_written_fails_before_any_gate(store, tmp_path):
    uri, root, runs = store
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = subprocess.run([sys.executable, "-m", "pytest", str(SUITES / "test_training.py"), "-p", "no:cacheprovider",
                           "--ftgate-tracking-uri", uri, "--run-id", runs["passed"][0],
                           "--ftgate-out", str(blocker / "out")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]  # a usage error: nothing ran
    assert "cannot be written (Not a directory); pass a writable directory" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not list(tmp_path.rglob("report.html"))
