"""The report of a real `pytest suites` session opened in headless Chromium: the banner, the plots and the gate
table render, pytest-html's rows are expanded and carry the WARN label, and a prediction, gate message and run
name holding ``<img src=x onerror=...>`` show as text and run nothing.

What the page contains is checked in Chromium's DOM after its scripts ran (``--dump-dom``): banner classes, gate
rows, one plot image per run of the size report.py draws, the escaped payloads. The screenshot checks only what a
DOM cannot show: that the banners are painted in their colours and the plot is drawn. Its tolerances are relative
to the plot PNG itself (anti-aliasing differs between Chromium versions: 295 against a fixed 300 on Chromium 156).

The same checks run on the report of the bundled demo: `pytest suites` (every suite) over the ``demo_run``.
Needs the Debian package ``chromium`` (``apt-get install -y chromium``; ``make browser``): without it these tests
fail, saying so.
"""

import base64
import html
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_ftgate import attest
from pytest_ftgate import promotion

from .conftest import copy_demo_tree
from .test_report_session import SUITES, XSS, audited_run, run_session, signing_key

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
BANNER_RGB = {"pass": (46, 125, 50), "warn": (178, 106, 0), "block": (198, 40, 40)}  # report.CSS
PLOT_RGB = (31, 119, 180)  # report.loss_svg's loss curve colour
PLOT_SIZE = (640, 300)  # report.PLOT_W, report.PLOT_H
PLOT_IMG = re.compile(r'<img class="ftgate-plot"[^>]*src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"')

pytestmark = pytest.mark.slow


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (or make browser)", pytrace=False)
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args,
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=180)


def rgb(image):
    """An image (a PNG file's path, or its bytes) as an integer RGB array."""
    from matplotlib.image import imread

    source = io.BytesIO(image) if isinstance(image, bytes) else str(image)
    return (imread(source, format="png")[..., :3] * 255).round().astype(int)


def pixels_near(image, colour: tuple[int, int, int], tol: int = 6) -> int:
    import numpy as np

    return int((np.abs(rgb(image) - np.array(colour)).max(axis=-1) <= tol).sum())


def plots(dom: str) -> list[str]:
    """The plot SVGs embedded in the page, as Chromium saw them."""
    return [base64.b64decode(m).decode() for m in PLOT_IMG.findall(dom)]


def svg_size(svg: str) -> tuple[int, int]:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(svg)
    return int(root.get("width")), int(root.get("height"))


def assert_plots_drawn(dom: str, shot: Path, n: int) -> None:
    """``n`` plot images of report.py's size, each with a loss curve in it (a polyline of many points), and the
    screenshot shows the curve's colour (a broken or hidden image shows none)."""
    svgs = plots(dom)
    assert len(svgs) == n and all(svg_size(p) == PLOT_SIZE for p in svgs), [svg_size(p) for p in svgs]
    assert all(len(re.search(r'points="([^"]+)"', p).group(1).split()) > 10 for p in svgs)  # a curve, not an axis
    assert pixels_near(shot, PLOT_RGB, tol=40) >= 150 * n, pixels_near(shot, PLOT_RGB, 40)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """(report.html, Chromium's DOM after scripts ran, a screenshot) of a session over a clean run and a warned
    run whose name, G4 message and worst generation are the XSS payload."""
    root = tmp_path_factory.mktemp("browser")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    warned, _ = audited_run(uri, root, XSS, {"eval_loss": [(225, 0.5), (250, 0.6), (275, 0.7), (300, 0.8)]})
    clean, _ = audited_run(uri, root, "clean")
    proc = run_session(root, uri, [warned, clean], suites=("test_training.py", "test_audit.py"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    page = root / "out" / "report.html"
    dom = chromium(page, root / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = root / "report.png"
    chromium(page, root / "profile", f"--screenshot={shot}", "--window-size=1400,9000")
    return page, dom.stdout, shot


def test_the_detector_sees_the_payload_run_when_it_is_inserted_raw(tmp_path):
    page = tmp_path / "raw.html"
    page.write_text(f"<html><head><title>control</title></head><body>{XSS}</body></html>")
    dom = chromium(page, tmp_path / "profile", "--dump-dom").stdout
    assert "<title>PWNED</title>" in dom and re.search(r"<body[^>]*data-pwned", dom)


def test_the_payload_shows_as_text_and_runs_nothing(rendered):
    page, dom, _ = rendered
    assert "<title>PWNED</title>" not in dom and not re.search(r"<body[^>]*data-pwned", dom)
    assert "pytest-ftgate release report</title>" in dom
    text = html.unescape(re.sub(r"<[^>]+>", "", dom))  # what the reader sees
    assert text.count(XSS) >= 6  # run name (banner, overview, tags, rows), G4 message, worst generation


def test_the_banners_gate_tables_and_plots_are_in_the_rendered_page(rendered):
    page, dom, _ = rendered
    for verdict in ("warn", "pass"):
        assert re.search(rf'class="ftgate-banner ftgate-{verdict}[ "]', dom)
    assert dom.count('class="ftgate-table ftgate-gates"') == 2
    assert len(plots(dom)) == 2 and all(svg_size(p) == PLOT_SIZE for p in plots(dom))
    assert re.search(r'<td>G3</td>(<td>[^<]*</td>){4}<td class="ftgate-outcome">WARN</td>', dom)


def test_pytest_html_rows_are_expanded_and_the_warn_row_is_labelled(rendered):
    page, dom, _ = rendered
    rows = re.findall(r'<tbody class="results-table-row [^"]*".*?</tbody>', dom, re.S)
    assert len(rows) >= 10
    assert not any('class="extras-row hidden"' in r for r in rows)  # nothing collapsed
    assert sum("ftgate-soft-warn" in r for r in rows) == 1
    assert 'class="col-ftgateRun">&lt;img src=x onerror=' in dom


def test_the_screenshot_shows_the_banners_and_the_curves(rendered):
    _, dom, shot = rendered
    assert pixels_near(shot, BANNER_RGB["warn"]) > 5000 and pixels_near(shot, BANNER_RGB["pass"]) > 5000
    assert_plots_drawn(dom, shot, 2)


@pytest.fixture(scope="module")
def demo_rendered(demo_run, tmp_path_factory):
    """`pytest suites` (every suite) over the trained demo run, with promotion and a signing key; the store is a
    copy (registry writes stay here), the artifacts are the demo's."""
    work = copy_demo_tree(tmp_path_factory.mktemp("demo-report"))
    shutil.copy(Path(demo_run.tracking_uri.removeprefix("sqlite:///")), work / "mlflow.db")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    priv, pub = signing_key(work)
    suites = tuple(p.name for p in sorted(SUITES.glob("test_*.py")))
    proc = run_session(work, uri, [demo_run.run_id], "--ftgate-promote", "demo", suites=suites, planted=None,
                       env={attest.KEY_ENV: str(priv)})
    page = work / "out" / "report.html"
    assert page.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    dom = chromium(page, work / "profile", "--dump-dom")
    shot = work / "report.png"
    chromium(page, work / "profile", f"--screenshot={shot}", "--window-size=1400,9000")
    return proc, uri, work / "out", dom.stdout, shot, pub


def test_the_demo_session_report_shows_its_verdict_gates_plot_and_generations(demo_rendered):
    proc, uri, out, dom, shot, _ = demo_rendered
    (run,) = json.loads((out / "report.json").read_text())["runs"]
    verdict = run["verdict"]
    assert (proc.returncode == 0) == (verdict in ("pass", "warn")), proc.stdout[-3000:]
    assert re.search(rf'class="ftgate-banner ftgate-{verdict}[ "]', dom), proc.stdout[-3000:]
    assert dom.count('class="ftgate-table ftgate-gates"') == 1
    assert re.search(r"<td>G4</td>", dom) and re.search(r"<td>bench:demo_mc</td>", dom)
    assert "the 10 lowest-scoring of" in dom and "ftgate-samples" in dom
    assert pixels_near(shot, BANNER_RGB[verdict]) > 5000
    assert_plots_drawn(dom, shot, 1)


def test_the_demo_run_is_promoted_and_its_attestation_verifies_against_the_adapter(demo_rendered, demo_run):
    proc, uri, out, dom, shot, pub = demo_rendered
    doc = json.loads((out / "report.json").read_text())
    (run,) = doc["runs"]
    held = promotion.aliases(promotion.client_for(uri), "demo")
    assert held == ({"candidate": run["promotion"]["version"]} if run["verdict"] in ("pass", "warn") else {})
    att = out / "verdicts" / f"{demo_run.run_id}.intoto.json"
    assert attest.main([str(att), str(demo_run.adapter_dir), "--public-key", str(pub)]) == 0
