"""The state of one gating session: options, the runs under test, the gates the suites define for each run, their
verdicts and the files written.

No pytest here: ``plugin.py`` calls these methods from its hooks. A run's verdict file is written (atomically) when
the run is resolved, each gate's record is appended to its journal as it arrives, and the file is written whole by
``finish``; it reads ``partial`` until ``finish`` has checked that every gate the suites define for the run reached
an outcome, so a crash, Ctrl-C or SIGKILL leaves a file that never says pass. Nothing is written to MLflow here:
``publish.py`` does that for complete verdicts only.

``--ftgate-out`` holds one session's outputs at a time: the session that claims it first moves an earlier
session's report, summary, verdicts and checklists into ``previous/<that session's id>/`` (kept, never deleted), so
a session that ends before it gates anything (bad input, Ctrl-C while training) never leaves another session's
PASS where its own outputs would be.

Three roles: ``main`` (a plain session), ``controller`` (pytest-xdist's main process: resolves and trains the runs,
hands them to the workers, collects their gate records, writes everything) and ``worker`` (runs gates, writes
nothing; its records travel back as plain dicts on the test reports).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from . import __version__
from .config import FtgateConfig
from .errors import FtgateError, RunUnavailable
from .store import RunRecord, RunStore, resolve_store
from .verdict import GateRecord, Verdict, append_journal, safe_filename, utcnow, write_json_atomic

ROLES = ("main", "controller", "worker")


@dataclass(frozen=True)
class Options:
    """The resolved command-line options and ini keys."""

    run_ids: tuple[str, ...] = ()
    tracking_uri: str = ""  # "" = $MLFLOW_TRACKING_URI, else the embedded sqlite store
    experiment: str = ""
    config_path: str = ""
    out: str = "ftgate-results"
    train: tuple[str, ...] = ()  # LLaMA-Factory configs to train (or re-use) and gate
    retrain: bool = False
    test_set: str = ""
    test_dataset: str = ""  # dataset_info.json entry of the test set of trained configs (--ftgate-test-dataset)
    engine: str = ""  # overrides engine.kind of ftgate.yaml
    allow_pickle: bool = False
    promote: str = ""  # registered model name for promotion of passing runs
    compare: str = ""  # --ftgate-compare: a run gated too, the reference every other run is compared with
    root: str = "."  # pytest's rootdir: the embedded store and the demo config live under it
    collect_only: bool = False  # --collect-only: resolve nothing that writes, train nothing, write nothing


@dataclass
class RunRef:
    """One run under test; ``error`` is set when it cannot be gated."""

    ref: str
    run_id: str = ""
    run_name: str = ""
    error: str = ""
    record: RunRecord | None = None

    @property
    def key(self) -> str:
        return self.run_id or self.ref

    @property
    def test_id(self) -> str:
        return self.run_name or (self.run_id[:8] if self.run_id else self.ref)

    def to_dict(self) -> dict:
        return {"ref": self.ref, "run_id": self.run_id, "run_name": self.run_name, "error": self.error}


def new_session_id() -> str:
    """Sortable and unique: UTC time of the start plus 8 random hex digits."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


class OutDirLock:
    """One gating session per output directory at a time (``<out>/.ftgate.lock``, an flock held for the session
    and released by the kernel when the process dies). A second session meeting the first is told who holds it."""

    def __init__(self, out: Path):
        self.path = out / ".ftgate.lock"
        self.previous: dict = {}  # what the last session to hold the lock wrote into it (its id and start)
        self._fh = None

    def acquire(self, info: dict) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            try:
                holder = json.loads(fh.read() or "{}")
            except ValueError:
                holder = {}
            fh.close()
            raise FtgateError(
                f"--ftgate-out {str(self.path.parent)!r} is in use by another gating session (pid "
                f"{holder.get('pid', '?')}, session {holder.get('session_id', '?')}, started "
                f"{holder.get('started_at', '?')}): wait for it to finish, or pass another --ftgate-out") from None
        fh.seek(0)
        try:
            self.previous = json.loads(fh.read() or "{}")
        except ValueError:
            self.previous = {}
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(info))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


@dataclass
class FtgateSession:
    options: Options
    cfg: FtgateConfig
    echo: Callable[[str], None] = print
    role: str = "main"
    handed_refs: list[dict] | None = None  # worker: the runs the controller resolved
    session_id: str = field(default_factory=new_session_id)
    started_at: str = field(default_factory=utcnow)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    expected: dict[str, set[str]] = field(default_factory=dict)  # run key -> gate tests the suites define for it
    selection_problems: list[str] = field(default_factory=list)  # why this session cannot be complete for any run
    inventory_known: bool = False  # whether ``expected`` was filled by a collection (here or on a worker)
    adapters: dict = field(default_factory=dict)  # run key -> artifacts.AdapterCopy, one download per session
    audit_records: dict = field(default_factory=dict)  # run id -> record.LoadedRecord, one download per session
    answers: dict = field(default_factory=dict)  # run key -> compare.RunAnswers (the predictions fixture), compared
    compare_key: str = ""  # the run key of --ftgate-compare, once resolved
    _refs: list[RunRef] | None = None
    _store: RunStore | None = None
    _lock: OutDirLock | None = None

    @property
    def writes(self) -> bool:
        """Whether this process writes verdicts and evidence (not a worker, not --collect-only)."""
        return self.role != "worker" and not self.options.collect_only

    # -- the store and the runs ----------------------------------------------------------------------
    @property
    def tracking_uri(self) -> str:
        return resolve_store(self.options.tracking_uri, self.options.root)[0]

    @property
    def store(self) -> RunStore:
        if self._store is None:
            uri, artifacts, embedded = resolve_store(self.options.tracking_uri, self.options.root)
            if embedded and self.writes:
                (Path(self.options.root) / ".ftgate").mkdir(parents=True, exist_ok=True)
            self._store = RunStore(uri, self.options.experiment or None, artifacts)
        return self._store

    @property
    def out(self) -> Path:
        return Path(self.options.out)

    def check_out_dir(self) -> None:
        """Fail before any gate runs when the output directory cannot be written or is in use."""
        out = self.out
        try:
            (out / "verdicts").mkdir(parents=True, exist_ok=True)
            probe = out / ".ftgate-write-probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise FtgateError(f"--ftgate-out {str(out)!r} cannot be written ({exc.strerror or exc}); "
                              "pass a writable directory") from None
        if self._lock is None:
            lock = OutDirLock(out)
            lock.acquire({"pid": os.getpid(), "session_id": self.session_id, "started_at": self.started_at})
            self._lock = lock
            moved = archive_previous(out, lock.previous.get("session_id", ""))
            if moved is not None:
                self.echo(f"ftgate: an earlier session's outputs in {str(out)!r} moved to {moved}")

    def check_signing_key(self) -> None:
        """A signing key that is configured but cannot sign is an error now, not an unsigned attestation later."""
        from . import attest

        try:
            attest.configured_key()
        except attest.AttestationError as exc:
            raise FtgateError(str(exc)) from None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def run_refs(self) -> list[RunRef]:
        """The runs under test, resolved once: given ids/names, trained configs, or the bundled demo.

        Raises FtgateError (one line per bad reference) when a run cannot be found: that is bad input, for the
        whole session. A training that fails is the run's error instead (its verdict blocks)."""
        if self._refs is not None:
            return self._refs
        if self.role == "worker" and self.handed_refs is not None:
            self._refs = [RunRef(**d) for d in self.handed_refs]
            return self._refs
        if self.writes:
            self.check_out_dir()
            self.check_signing_key()
        refs, bad = [], []
        if self.options.run_ids or self.options.compare:
            self.store.check()  # a missing or broken store is said once, not once per run
        for ref in self.options.run_ids:
            try:
                refs.append(self._resolve(ref))
            except RunUnavailable as exc:
                bad.append(str(exc))
        if bad:
            raise FtgateError("\n".join(bad))
        configs = list(self.options.train)
        demo = None
        if not refs and not configs:
            demo = Path(self.options.root) / "training" / "demo.yaml"
            configs = [str(demo)]
            if not self.options.collect_only:
                self.echo(f"ftgate: no --run-id given: training and gating the bundled demo run ({demo})")
        for config in configs:  # the bundled demo's paths are relative to the rootdir, wherever pytest runs
            refs.append(self._train(config, cwd=self.options.root if demo is not None else None))
        if self.options.compare:
            refs.append(self._compare_ref())
        refs = _unique_ids(refs)
        self._check_comparable(refs)
        if self.writes and any(r.run_id for r in refs):
            self.store.check_writable()  # a verdict that cannot be recorded is found out before the gates run
        self._refs = refs
        for r in self._refs if self.writes else ():
            self.verdicts[r.key] = Verdict(run_id=r.key, run_name=r.run_name or r.ref, started_at=self.started_at,
                                           session_id=self.session_id, error=r.error, ftgate_version=__version__)
            self.journal_path(r.key).unlink(missing_ok=True)  # a journal left by an earlier, killed session
            self._write(r.key)
        return self._refs

    def _compare_ref(self) -> RunRef:
        """The run of ``--ftgate-compare``: resolved like ``--run-id`` (bad input when it cannot be found)."""
        try:
            ref = self._resolve(self.options.compare)
        except RunUnavailable as exc:
            raise FtgateError(f"--ftgate-compare: {exc}") from None
        self.compare_key = ref.key
        return ref

    def _check_comparable(self, refs: list[RunRef]) -> None:
        """Before any gate runs: a run recorded on another base model or test set than the ``--ftgate-compare`` run
        is bad input (one line per run, naming it and the fix). Runs without an audit record are checked later,
        on their answers (``compare.comparable``)."""
        if not self.compare_key or self.options.collect_only:
            return
        from . import compare

        def ident(r: RunRef) -> dict:
            return compare.identity(self.audit_record(r.run_id).record, self._params(r.run_id))

        others = [(r.test_id, ident(r)) for r in refs if r.run_id and not r.error and r.key != self.compare_key]
        if not others:
            return
        reference = next(r for r in refs if r.key == self.compare_key)
        bad = compare.mismatches(reference.test_id, ident(reference), others,
                                 bool(self.options.test_set or self.cfg.quality.test_set))
        if bad:
            raise FtgateError("\n".join(bad))

    def _resolve(self, ref: str) -> RunRef:
        run_id, name = self.store.resolve(ref)
        return RunRef(ref=ref, run_id=run_id, run_name=name)

    def _train(self, config: str, cwd: str | None = None) -> RunRef:
        if self.options.collect_only:  # nothing is trained (or written) to list the tests
            return RunRef(ref=config, run_name=Path(config).stem, error="not trained: --collect-only")
        from . import train

        try:
            run_id = train.ensure_trained(Path(config), self.store, retrain=self.options.retrain,
                                          log_dir=self.out / "logs", echo=self.echo,
                                          test_dataset=self.options.test_dataset or None,
                                          test_set=self.options.test_set or self.cfg.quality.test_set,
                                          require_test_set=self.cfg.quality.require_test_set, cwd=cwd)
        except FtgateError as exc:
            return RunRef(ref=config, error=f"training {config} failed: {exc}")
        try:
            return self._resolve(run_id)
        except RunUnavailable as exc:
            return RunRef(ref=config, run_id=run_id, error=str(exc))

    def load(self, ref: RunRef) -> RunRecord:
        """The run's record (read once); raises RunUnavailable when the run cannot be gated."""
        if ref.error:
            raise RunUnavailable(ref.ref, ref.error.removeprefix(f"run {ref.ref!r}: "))
        if ref.record is None:
            try:
                ref.record = self.store.load(ref.run_id)
            except RunUnavailable as exc:
                ref.error = str(exc)
                if ref.key in self.verdicts:
                    self.verdicts[ref.key].error = ref.error
                    self._write(ref.key)
                raise
        return ref.record

    def adapter(self, run_id: str):
        """The run's adapter as downloaded in this session (``artifacts.AdapterCopy``), once per run."""
        if run_id not in self.adapters:
            from .artifacts import download_adapter

            cache = Path(self.options.root) / ".ftgate" / "cache" / "adapters"
            self.adapters[run_id] = download_adapter(self.store, run_id, cache)
        return self.adapters[run_id]

    def audit_record(self, run_id: str, params: dict | None = None):
        """The run's audit record as downloaded and parsed in this session (``record.LoadedRecord``), once per run.

        Never raises: a run without a usable record comes back with ``problem`` set (G6 reports it). ``params``
        (the run's, for G6's lineage check) are read from the store when not given."""
        if run_id not in self.audit_records:
            import tempfile

            from .record import load_record

            if params is None:
                params = self._params(run_id)
            with tempfile.TemporaryDirectory(prefix="ftgate-audit-") as tmp:
                self.audit_records[run_id] = load_record(self.store, run_id, Path(tmp), params)
        return self.audit_records[run_id]

    def _params(self, run_id: str) -> dict | None:
        loaded = next((r.record for r in self._refs or () if r.run_id == run_id and r.record is not None), None)
        if loaded is not None:
            return dict(loaded.params)
        try:
            return dict(self.store.client.get_run(run_id).data.params)
        except Exception:  # the store being down is load_record's problem to report
            return None

    # -- the gates the suites define -----------------------------------------------------------------
    def expect(self, run_key: str, test: str) -> None:
        self.expected.setdefault(run_key, set()).add(test)
        self.inventory_known = True

    def inventory(self) -> dict:
        """What this process collected, as plain data (an xdist worker sends it to the controller)."""
        return {"expected": {k: sorted(v) for k, v in self.expected.items()},
                "problems": list(self.selection_problems), "known": self.inventory_known,
                "answers": {k: a.to_dict() for k, a in self.answers.items()}}

    def merge_inventory(self, inv: dict | None) -> None:
        if not inv or not inv.get("known"):
            return
        for key, tests in (inv.get("expected") or {}).items():
            for t in tests:
                self.expect(key, t)
        for p in inv.get("problems") or []:
            if p not in self.selection_problems:
                self.selection_problems.append(p)
        if inv.get("answers"):
            from .compare import RunAnswers

            self.answers.update({k: RunAnswers.from_dict(a) for k, a in inv["answers"].items()})

    # -- verdicts ------------------------------------------------------------------------------------
    def record(self, run_key: str, gate: GateRecord) -> None:
        verdict = self.verdicts.get(run_key)
        if verdict is None or not self.writes:
            return
        verdict.add(gate)
        append_journal(self.journal_path(run_key), gate)  # constant work per gate: the verdict is written at the end

    def verdict_path(self, run_key: str) -> Path:
        return self.out / "verdicts" / f"{safe_filename(run_key)}.json"

    def journal_path(self, run_key: str) -> Path:
        """Each gate's record as it arrives, one JSON line; what a killed session leaves beside its partial verdict
        (``verdict.read_verdict`` merges it), removed once the session's verdict is written whole."""
        return self.out / "verdicts" / f"{safe_filename(run_key)}.gates.jsonl"

    def _write(self, run_key: str) -> None:
        if not self.writes:
            return
        verdict = self.verdicts[run_key]
        verdict.finished_at = utcnow()
        write_json_atomic(self.verdict_path(run_key), verdict.to_dict())

    def finish(self, interrupted: bool, exitstatus: int) -> None:
        """Decide, for each run, whether this session's verdict is complete, and write it."""
        common = list(self.selection_problems)
        if interrupted:
            common.insert(0, "the session was interrupted")
        elif exitstatus not in (0, 1):
            common.insert(0, f"pytest ended with exit status {int(exitstatus)} (not a completed test run)")
        if not self.inventory_known:
            common.append("the gates the suites define are unknown (no collection was reported)")
        for key, verdict in self.verdicts.items():
            expected = self.expected.get(key, set())
            done = {g.test for g in verdict.gates}
            missing = sorted(expected - done)
            reasons = list(common)
            if missing:
                reasons.append(f"{len(missing)} of {len(expected)} gate tests did not run "
                               f"(first: {missing[0]})")
            if not expected and self.inventory_known:
                reasons.append("no gate of the suites was collected for this run")
            verdict.gates_expected = len(expected)
            verdict.complete = not reasons
            verdict.partial_reason = "; ".join(reasons)
            self._write(key)
            self.journal_path(key).unlink(missing_ok=True)  # every record is in the verdict file now

    def any_block(self) -> bool:
        return any(v.verdict == "block" for v in self.verdicts.values())

    def any_partial(self) -> bool:
        return any(v.verdict == "partial" for v in self.verdicts.values())

    def summary_lines(self) -> list[str]:
        return [line for key, v in self.verdicts.items() for line in v.summary_lines(key)]


SESSION_OUTPUTS = ("report.html", "report.json", "summary.md", "verdicts", "checklists")


def archive_previous(out: Path, session_id: str) -> Path | None:
    """Move an earlier session's outputs (``SESSION_OUTPUTS``) from ``out`` into ``out/previous/<its id>/``; the
    folder, or None when there was nothing to move. The id is the one its verdict files name, else ``session_id``
    (the lock's last holder), else the files' time."""
    found = [out / name for name in SESSION_OUTPUTS
             if (out / name).is_file() or ((out / name).is_dir() and any((out / name).iterdir()))]
    if not found:
        return None
    session_id = _verdicts_session(out / "verdicts") or session_id or "earlier-" + datetime.fromtimestamp(
        max(p.stat().st_mtime for p in found), timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = safe_filename(session_id).strip(".") or "earlier"
    dst, n = out / "previous" / name, 1
    while dst.exists():
        n += 1
        dst = out / "previous" / f"{name}-{n}"
    dst.mkdir(parents=True)
    for path in found:
        os.replace(path, dst / path.name)
    (out / "verdicts").mkdir(exist_ok=True)
    return dst


def _verdicts_session(folder: Path) -> str:
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            sid = json.loads(path.read_text(encoding="utf-8")).get("session_id", "")
        except (OSError, ValueError, AttributeError):
            continue
        if sid:
            return str(sid)
    return ""


def _unique_ids(refs: list[RunRef]) -> list[RunRef]:
    """Two runs with one name get their short ids appended, so test ids stay unique; duplicates dropped."""
    seen: dict[str, RunRef] = {}
    for r in refs:
        seen.setdefault(r.key, r)
    refs = list(seen.values())
    names = [r.test_id for r in refs]
    for r in refs:
        if names.count(r.test_id) > 1 and r.run_id:
            r.run_name = f"{r.run_name}-{r.run_id[:8]}"
    return refs


