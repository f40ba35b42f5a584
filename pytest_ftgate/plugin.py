"""The only pytest hooks module: options, ini keys, parametrization over runs, gate outcomes (WARN), the
terminal summary and the session verdict. No business logic: that lives in ``session.py`` and the core.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
from pathlib import Path

import pytest

from .config import SEVERITIES, load_config
from .errors import FtgateError
from . import gates as families
from .gates import GateFailure
from .session import FtgateSession, Options
from .verdict import GateRecord, json_safe

SESSION_KEY = pytest.StashKey[FtgateSession]()
GATE_KEY = pytest.StashKey[dict]()
TEST_KEY = pytest.StashKey[str]()  # the gate test's node id, as collected

pytest_plugins = ["pytest_ftgate.fixtures"]

# -- option validators: raise ArgumentTypeError quoting the bad value ---------------------------------
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def _run_ref(value: str) -> str:
    if not value.strip() or any(c.isspace() for c in value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a run id or run name (no spaces; e.g. 3f2a9c...)")
    return value


def _tracking_uri(value: str) -> str:
    if _URI.match(value) or value.startswith("databricks"):
        return value
    if Path(value).is_dir():
        return Path(value).resolve().as_uri()
    raise argparse.ArgumentTypeError(
        f"{value!r} is not a tracking URI: use http://host:port, sqlite:///path/mlflow.db or an existing directory")


def _existing_file(value: str) -> str:
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f"{value!r} does not exist or is not a file")
    return value


def _out_dir(value: str) -> str:
    if Path(value).exists() and not Path(value).is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} exists and is not a directory")
    return value


def _engine(value: str) -> str:
    from .errors import did_you_mean
    from .serve import ENGINES

    if value not in ENGINES:
        raise argparse.ArgumentTypeError(f"{value!r} is not an engine{did_you_mean(value, ENGINES)} (engines: "
                                         f"{', '.join(ENGINES)})")
    return value


def _name(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError(f"{value!r} is empty")
    return value


# name, ini key, validator, metavar, help (the default is appended)
_OPTIONS = [
    ("--run-id", "ftgate_run_ids", _run_ref, "ID",
     "MLflow run id or run name to gate; repeat for several runs", "none: train and gate the bundled demo"),
    ("--ftgate-tracking-uri", "ftgate_tracking_uri", _tracking_uri, "URI", "MLflow tracking URI",
     "$MLFLOW_TRACKING_URI, else sqlite:///.ftgate/mlflow.db"),
    ("--ftgate-experiment", "ftgate_experiment", _name, "NAME",
     "MLflow experiment in which run names are looked up (and trained runs created)", "any / 'ftgate'"),
    ("--ftgate-config", "ftgate_config", _existing_file, "PATH", "gate thresholds and suite settings (ftgate.yaml)",
     "<rootdir>/ftgate.yaml if present, else the thresholds of seeds 001/002"),
    ("--ftgate-out", "ftgate_out", _out_dir, "DIR", "where verdicts, audit records and the report are written",
     "ftgate-results"),
    ("--ftgate-train", "ftgate_train", _existing_file, "CONFIG",
     "LLaMA-Factory config to train (or re-use an identical finished run) and gate; repeatable", "none"),
    ("--ftgate-test-set", "ftgate_test_set", _existing_file, "PATH",
     "held-out test set (alpaca JSON/JSONL) for the quality gates", "the run's recorded test file"),
    ("--ftgate-test-dataset", "ftgate_test_dataset", _name, "NAME",
     "dataset_info.json entry of the held-out test set for --ftgate-train (checked before training)",
     "<train dataset name>_test when registered"),
    ("--ftgate-engine", "ftgate_engine", _engine, "KIND", "inference engine: hf, vllm or openai (serve.ENGINES)",
     "engine.kind of ftgate.yaml (hf)"),
    ("--ftgate-promote", "ftgate_promote", _name, "NAME",
     "register runs that pass (or only warn) as versions of this registered model, alias 'candidate'", "off"),
    ("--ftgate-compare", "ftgate_compare", _run_ref, "RUN_B",
     "a run (id or name) gated too and compared with every other run of the session on the same test set",
     "off: the session's runs of one test set and base model are compared with the best of them"),
]
_FLAGS = [
    ("--ftgate-retrain", "ftgate_retrain", "train again even when an identical finished run exists"),
    ("--ftgate-allow-pickle", "ftgate_allow_pickle", "accept pickle (.bin) adapters; safetensors only otherwise"),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ftgate", "release gate for fine-tuned adapters (pytest-ftgate)")
    for flag, ini, validator, metavar, help_, default in _OPTIONS:
        repeat = flag in ("--run-id", "--ftgate-train")
        group.addoption(flag, action="append" if repeat else "store", dest=ini, type=validator, metavar=metavar,
                        default=None, help=f"{help_} (default: {default}; ini: {ini})")
        parser.addini(ini, f"{help_} (same as {flag})", type="args" if repeat else "string")
    for flag, ini, help_ in _FLAGS:
        group.addoption(flag, action="store_true", dest=ini, default=None, help=f"{help_} (default: off; ini: {ini})")
        parser.addini(ini, f"{help_} (same as {flag})", type="bool", default=False)


def _value(config: pytest.Config, ini: str, validator=None):
    """The option if given, else the ini key (validated the same way)."""
    value = config.getoption(ini)
    if value is not None:
        return value
    raw = config.getini(ini)
    if raw in ("", [], None):
        return None
    if validator is None:
        return raw
    try:
        return [validator(v) for v in raw] if isinstance(raw, list) else validator(raw)
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini key {ini}: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gate(id, name='', severity='block'): a release gate; severity is "
                                       "block (fails the run), warn (WARN outcome) or info (reported only)")
    config.addinivalue_line("markers", "slow: a gate that retrains or serves a model (seconds to minutes)")
    vals = {ini: _value(config, ini, validator) for _, ini, validator, *_ in _OPTIONS}
    flags = {ini: bool(_value(config, ini)) for _, ini, _ in _FLAGS}
    options = Options(
        run_ids=tuple(vals["ftgate_run_ids"] or ()), tracking_uri=vals["ftgate_tracking_uri"] or "",
        experiment=vals["ftgate_experiment"] or "", config_path=vals["ftgate_config"] or "",
        out=vals["ftgate_out"] or "ftgate-results", train=tuple(vals["ftgate_train"] or ()),
        retrain=flags["ftgate_retrain"], test_set=vals["ftgate_test_set"] or "", engine=vals["ftgate_engine"] or "",
        test_dataset=vals["ftgate_test_dataset"] or "",
        allow_pickle=flags["ftgate_allow_pickle"], promote=vals["ftgate_promote"] or "", root=str(config.rootpath),
        compare=vals["ftgate_compare"] or "",
        collect_only=bool(config.option.collectonly),
    )
    if not options.config_path and (config.rootpath / "ftgate.yaml").is_file():
        options = dataclasses.replace(options, config_path=str(config.rootpath / "ftgate.yaml"))
    try:
        cfg = load_config(options.config_path or None)
    except FtgateError as exc:
        raise pytest.UsageError(f"--ftgate-config: {exc}") from None
    role = _role(config)
    handed = config.workerinput.get("ftgate_refs") if role == "worker" else None
    config.stash[SESSION_KEY] = FtgateSession(options=options, cfg=cfg, echo=lambda m: _echo(config, m), role=role,
                                              handed_refs=handed)
    if role == "worker":
        return
    if role == "controller":
        if config.option.dist == "load":
            config.option.dist = "loadgroup"  # one run's gates on one worker: its adapter and engine load once
        config.pluginmanager.register(_XdistController(config), "ftgate-xdist")
    config.pluginmanager.register(_Recorder(config), "ftgate-recorder")
    config.pluginmanager.register(_ReportHooks(config), "ftgate-report")  # issue 7: report, attestation, registry


class _Recorder:
    """Where the verdicts are written (a plain session, or xdist's main process), each gate's record, as it arrives
    on its test report, goes into its run's verdict."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "ftgate_record", None)
        if record is not None:
            ftgate_session(self.config).record(record["run"], GateRecord.from_dict(record))


def _role(config: pytest.Config) -> str:
    if hasattr(config, "workerinput"):
        return "worker"
    distributing = getattr(config.option, "dist", "no") != "no" and bool(getattr(config.option, "tx", None))
    return "controller" if distributing and not config.option.collectonly else "main"


def pytest_unconfigure(config: pytest.Config) -> None:
    sess = config.stash.get(SESSION_KEY, None)
    if sess is not None:
        sess.release()


def _echo(config: pytest.Config, message: str) -> None:
    """Progress lines (training, re-use) shown at once, also during collection where print is captured."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        print(message, flush=True)
        return
    with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_line(message)
        reporter.flush()


def ftgate_session(config: pytest.Config) -> FtgateSession:
    return config.stash[SESSION_KEY]


def _refs(sess: FtgateSession):
    try:
        return sess.run_refs()
    except FtgateError as exc:  # bad input: said once, before any gate runs
        raise pytest.UsageError(str(exc)) from None


BAD_INPUT_KEY = pytest.StashKey[str]()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ft_run" not in metafunc.fixturenames:
        return
    config = metafunc.config
    if BAD_INPUT_KEY in config.stash:
        refs = []
    else:
        try:
            refs = ftgate_session(config).run_refs()
        except FtgateError as exc:  # raised once, as a usage error, when collection ends (a collector would bury
            config.stash[BAD_INPUT_KEY] = str(exc)  # it under a traceback, once per suite file)
            refs = []
    metafunc.parametrize("ft_run", refs, ids=[r.test_id for r in refs], indirect=True, scope="session")


@pytest.hookimpl(tryfirst=True)  # before -k/-m/--lf/--deselect remove items: the gates the suites define
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if BAD_INPUT_KEY in config.stash:
        raise pytest.UsageError(config.stash[BAD_INPUT_KEY])
    sess = ftgate_session(config)
    gate_files: set[Path] = set()
    known: set[str] = set()
    for item in items:
        marker = item.get_closest_marker("gate")
        if marker is None:
            continue
        spec = _gate_spec(item, marker, sess)  # validates the marker early, naming the test
        known.add(spec["id"])
        item.extra_keyword_matches.update({spec["id"], spec["id"].replace(":", "_")})  # -k G1, -k bench_demo_mc
        ref = _run_param(item)
        if ref is None:
            continue
        gate_files.add(item.path)
        item.stash[TEST_KEY] = item.nodeid  # before xdist's loadgroup suffixes it
        sess.expect(ref.key, item.nodeid)
        if sess.role == "worker":
            item.add_marker(pytest.mark.xdist_group(f"ftgate-{ref.key}"))
    problems = _selection_problems(config, gate_files, {item.path for item in items})
    sess.selection_problems.extend(p for p in problems if p not in sess.selection_problems)
    if not problems and known and sess.role != "worker":
        try:
            sess.cfg.check_gate_ids(known)
        except FtgateError as exc:
            raise pytest.UsageError(f"--ftgate-config: {exc}") from None


def _selection_problems(config: pytest.Config, gate_files: set[Path], collected: set[Path]) -> list[str]:
    """Why the collected items cannot be every gate of the suites: suite files left out, single tests chosen."""
    problems = []
    patterns = config.getini("python_files") or ["test_*.py"]
    for folder in sorted({f.parent for f in gate_files}):
        suite_files = {p for pat in patterns for p in folder.glob(pat) if p.is_file()}
        missing = sorted(suite_files - collected)
        if missing:
            names = ", ".join(p.name for p in missing[:6]) + (" …" if len(missing) > 6 else "")
            problems.append(f"suite files of {folder.name}/ were not collected: {names}")
    picked = []
    for arg in config.args:
        path, sep, _ = str(arg).partition("::")
        if sep and (config.invocation_params.dir / path).resolve() in gate_files:
            picked.append(str(arg))
    if picked:
        problems.append(f"single tests were selected by node id ({picked[0]}{' …' if len(picked) > 1 else ''})")
    return problems


def _run_param(item: pytest.Item):
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("ft_run") if callspec is not None else None


def _gate_spec(item: pytest.Item, marker: pytest.Mark, sess: FtgateSession) -> dict:
    if not marker.args:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.gate needs a gate id, e.g. gate('G1')")
    gate_id = str(marker.args[0])
    severity = sess.cfg.severity(gate_id, marker.kwargs.get("severity", "block"))
    if severity not in SEVERITIES:
        raise pytest.UsageError(f"{item.nodeid}: gate severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    section = families.section_of(gate_id, str(marker.kwargs.get("section", ""))).key
    return {"id": gate_id, "name": marker.kwargs.get("name", item.originalname), "severity": severity,
            "section": section}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    marker = item.get_closest_marker("gate")
    if marker is None or report.when == "teardown":
        return report
    sess = ftgate_session(item.config)
    spec = {**_gate_spec(item, marker, sess), **item.stash.get(GATE_KEY, {}).get("override", {})}
    check = item.stash.get(GATE_KEY, {}).get("check")
    soft = spec["severity"] in ("warn", "info")
    gate_failed = call.excinfo is not None and call.excinfo.errisinstance(GateFailure)
    if report.when == "call" and report.failed and soft and gate_failed:
        report.outcome = "passed"  # a failed warn/info gate is not a test failure ...
        report.ftgate_soft = spec["severity"]  # ... it gets its own outcome (WARN) in terminal and report
        report.sections.append(("ftgate " + spec["severity"], str(call.excinfo.value)))
        report.longrepr = None
    if gate_failed and report.when == "call" and report.failed:
        report.longrepr = str(call.excinfo.value)  # the gate's message, not a traceback into the recorder
    if report.failed and call.excinfo is not None and call.excinfo.errisinstance(FtgateError):
        report.longrepr = f"{type(call.excinfo.value).__name__}: {call.excinfo.value}"  # one line, no traceback
    if report.when == "setup" and report.passed:
        return report
    outcome = _outcome(report, call, gate_failed or (check is not None and not check.passed))
    record = GateRecord(
        id=spec["id"], name=spec["name"], severity=spec["severity"], outcome=outcome,
        value=getattr(check, "value", None), threshold=getattr(check, "threshold", None),
        message=check.message if check is not None else _exc_message(call), test=item.stash.get(TEST_KEY, ""),
        details=getattr(check, "details", {}) or {}, label=getattr(check, "label", "") or "",
        section=spec["section"],
    )
    ref = _run_param(item)
    if ref is not None and record.test:
        # plain data: crosses pytest-xdist's worker boundary and is recorded where the verdicts are written
        report.ftgate_record = json_safe({**dataclasses.asdict(record), "run": ref.key})
    soft_outcome = {"warn": "warn", "info": "info"}.get(getattr(report, "ftgate_soft", ""), outcome)
    for key, value in (("gate_id", record.id), ("severity", record.severity), ("outcome", soft_outcome),
                       ("value", record.value), ("label", record.label), ("threshold", record.threshold)):
        if value not in (None, ""):
            prop = (f"ftgate.{key}", value if isinstance(value, str) else json.dumps(json_safe(value)))
            report.user_properties.append(prop)
            item.user_properties.append(prop)  # JUnit XML writes a test case's <property>s from its teardown report
    return report


def _outcome(report: pytest.TestReport, call: pytest.CallInfo, gate_failed: bool) -> str:
    if report.skipped:
        return "skipped"
    if report.when == "setup":
        return "error"
    if gate_failed:
        return "failed"
    if report.failed:
        return "failed" if call.excinfo is not None and call.excinfo.errisinstance(AssertionError) else "error"
    return "passed"


def _exc_message(call: pytest.CallInfo) -> str:
    if call.excinfo is None:
        return ""
    exc = call.excinfo.value
    if isinstance(exc, FtgateError):
        return str(exc)
    if isinstance(exc, (pytest.skip.Exception, pytest.fail.Exception)):
        return str(exc.msg)
    return call.excinfo.exconly()[:2000]


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    soft = getattr(report, "ftgate_soft", None)
    if report.when == "call" and soft == "warn":
        return "warn", "W", ("WARN", {"yellow": True})
    if report.when == "call" and soft == "info":
        return "info", "i", ("INFO", {"cyan": True})
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    sess = session.config.stash.get(SESSION_KEY, None)
    if sess is None:
        return
    if sess.role == "worker":
        session.config.workeroutput["ftgate_inventory"] = sess.inventory()
        return
    if not sess.verdicts:
        return
    sess.finish(interrupted=exitstatus == pytest.ExitCode.INTERRUPTED, exitstatus=int(session.exitstatus))
    if sess.any_block() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a run without a decision is not releasable


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    sess = config.stash.get(SESSION_KEY, None)
    if sess is None or not sess.verdicts:
        return
    terminalreporter.section("ftgate release verdicts")
    for line in sess.summary_lines():
        markup = {"red": True} if line.startswith("BLOCK") else {"yellow": True} if line.startswith(
            ("WARN", "PARTIAL")) else ({"green": True} if line.startswith("PASS") else {})
        terminalreporter.write_line(line, **markup)
    terminalreporter.write_line(f"verdicts: {sess.out / 'verdicts'}")


class _XdistController:
    """pytest-xdist's main process: runs are resolved (and trained) here once, before the workers start, and handed
    to them; each worker's collection (the gates the suites define) comes back when it finishes."""

    def __init__(self, config: pytest.Config):
        self.config = config

    @pytest.hookimpl(tryfirst=True)  # xdist starts its workers in a trylast pytest_sessionstart
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.gating = _defines_gates(self.config)
        if self.gating:
            _refs(ftgate_session(self.config))

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        refs = _refs(ftgate_session(self.config)) if self.gating else []
        node.workerinput["ftgate_refs"] = [r.to_dict() for r in refs]

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        ftgate_session(self.config).merge_inventory(getattr(node, "workeroutput", {}).get("ftgate_inventory"))


def _defines_gates(config: pytest.Config) -> bool:
    """Whether the session will collect gate tests, known before collection (xdist's main process collects
    nothing): a run was named, or a test file under the arguments defines a ``@pytest.mark.gate`` test. Plain
    ``pytest tests -n 2`` of a project without suites trains nothing."""
    options = ftgate_session(config).options
    if options.run_ids or options.train:
        return True
    args = [a.split("::")[0] for a in config.args] or [str(config.rootpath)]
    files: list[Path] = []
    for arg in args:
        p = Path(arg) if Path(arg).is_absolute() else config.invocation_params.dir / arg
        files += [p] if p.is_file() else sorted(p.rglob("test_*.py")) + sorted(p.rglob("*_test.py"))
    return any(_has_gate_tests(f) for f in files)


def _has_gate_tests(path: Path) -> bool:
    import ast

    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return False
    return any(isinstance(d, ast.Call) and ast.unparse(d.func).endswith("mark.gate")
               for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
               for d in node.decorator_list)


# --- report hooks (issue 7) ---
class _ReportHooks:
    """The compliance report in pytest-html (default ``<out>/report.html``, self-contained, sections expanded,
    WARN/INFO counted, ids escaped) and what follows it: report.json, summary.md, the report's sha256 in each
    verdict, attestations, promotion. Only for sessions that gate runs; the work is in publish.py/report.py."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.html = None  # pytest-html's report plugin when this session configured it
        self.data = None  # pytest-html's ReportData (from pytest_html_report_title)
        self.columns = False
        self.publisher = None
        self.lines: list[str] = []

    def _gating(self) -> bool:
        """Whether this process writes the session's evidence (not --collect-only, not an xdist worker)."""
        sess = self.config.stash.get(SESSION_KEY, None)
        return sess is not None and bool(sess.verdicts) and sess.writes

    def _pub(self):
        if self.publisher is None:
            from .publish import Publisher

            sess = ftgate_session(self.config)
            self.publisher = Publisher(sess, list(self.config.invocation_params.args), echo=sess.echo)
        return self.publisher

    def _default_html(self, session: pytest.Session) -> bool:
        """``--html=<out>/report.html --self-contained-html`` unless the user chose a path. Configured once
        collection shows that the session gates runs (pytest-html only reads --html in pytest_configure)."""
        config = self.config
        if not config.pluginmanager.hasplugin("html") or getattr(config.option, "htmlpath", None):
            return False
        from pytest_html import plugin as html_plugin
        from pytest_html.basereport import BaseReport

        config.option.htmlpath = str(ftgate_session(config).out / "report.html")
        config.option.self_contained_html = True
        html_plugin.pytest_configure(config)
        self.html = next(p for p in config.pluginmanager.get_plugins() if isinstance(p, BaseReport))
        self.html.pytest_sessionstart(session)
        self.html.pytest_collection_finish(session)
        return True

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self._gating():
            self._start_html(session)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if ftgate_session(self.config).role == "controller" and self._gating():  # xdist: no collection here
            self._start_html(session)

    def _start_html(self, session: pytest.Session) -> None:
        self._default_html(session)
        if self.data is not None and not self.columns:
            from .report import HTML_COLUMNS

            self.data.table_header[2:2] = HTML_COLUMNS
            self.columns = True

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int):
        late = self._gating() and self.html is None and self._default_html(session)  # interrupted in collection
        try:
            return (yield)
        finally:
            if self._gating():
                try:
                    if late:
                        self.html.pytest_sessionfinish(session)
                    path = getattr(self.config.option, "htmlpath", None)
                    html_path = (Path.cwd() / Path(os.path.expandvars(path)).expanduser() if path
                                 else ftgate_session(self.config).out / "report.html")
                    pub = self._pub()
                    self.lines = pub.finish(html_path, session.exitstatus == pytest.ExitCode.INTERRUPTED,
                                            write_html=not path)
                    failed = bool(pub.failures)
                except Exception as exc:  # the verdicts are on disk; say loudly what is missing
                    self.lines = [f"ftgate: the report could not be completed: {type(exc).__name__}: {exc}"]
                    failed = True
                if failed and session.exitstatus == pytest.ExitCode.OK:
                    session.exitstatus = pytest.ExitCode.TESTS_FAILED  # evidence missing: not a release

    def pytest_terminal_summary(self, terminalreporter) -> None:
        for line in self.lines:
            terminalreporter.write_line(line)

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report) -> None:
        self.data = report

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report, cells: list) -> None:
        if not self.columns:
            return
        from .report import html_row

        record = getattr(report, "ftgate_record", None)
        soft = getattr(report, "ftgate_soft", None) if report.when == "call" else None
        runs = ftgate_session(self.config).verdicts.values()
        run = next((v.run_name for v in runs if record is not None and v.run_id == record.get("run")), "")
        test_id = report.nodeid + ("" if report.when == "call" else f"::{report.when}")
        cells[:] = html_row(cells, self._pub().redactor.text(test_id), record, run, soft)
        if soft and self.data is not None:
            self.data.outcomes.setdefault(soft, {"label": soft.capitalize(), "value": 0})["value"] += 1
            self.data.outcomes["passed"]["value"] -= 1  # pytest-html counts the row as passed next

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list, summary: list, postfix: list, session: pytest.Session):
        if not self._gating():
            return
        from .report import adapt_html_report

        prefix.append(self._pub().html(session.exitstatus == pytest.ExitCode.INTERRUPTED))
        if self.data is not None:
            adapt_html_report(self.data, self.config.getini("render_collapsed"), self._pub().redactor)

