"""The state of one gating session: options, the runs under test, their verdicts and the files written.

No pytest here: ``plugin.py`` calls these methods from its hooks. Verdicts are written to disk after every gate
(atomically), so a crash or Ctrl-C still leaves them; ``finish`` marks them complete and pushes them to MLflow.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import __version__
from .config import FtgateConfig
from .errors import FtgateError, RunUnavailable
from .runs import RunRecord, RunStore, embedded_artifact_root, embedded_tracking_uri
from .verdict import GateRecord, Verdict, safe_filename, utcnow, write_json_atomic


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
    engine: str = ""  # overrides engine.kind of ftgate.yaml
    allow_pickle: bool = False
    promote: str = ""  # registered model name for promotion of passing runs
    root: str = "."  # pytest's rootdir: the embedded store and the demo config live under it


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


@dataclass
class FtgateSession:
    options: Options
    cfg: FtgateConfig
    echo: Callable[[str], None] = print
    started_at: str = field(default_factory=utcnow)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    _refs: list[RunRef] | None = None
    _store: RunStore | None = None

    # -- the store and the runs ----------------------------------------------------------------------
    @property
    def tracking_uri(self) -> str:
        import os

        return self.options.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or embedded_tracking_uri(
            self.options.root)

    @property
    def store(self) -> RunStore:
        if self._store is None:
            uri = self.tracking_uri
            embedded = uri == embedded_tracking_uri(self.options.root)
            if embedded:
                (Path(self.options.root) / ".ftgate").mkdir(parents=True, exist_ok=True)
            self._store = RunStore(uri, self.options.experiment or None,
                                   embedded_artifact_root(self.options.root) if embedded else None)
        return self._store

    @property
    def out(self) -> Path:
        return Path(self.options.out)

    def check_out_dir(self) -> None:
        """Fail before any gate runs when the output directory cannot be written."""
        out = self.out
        try:
            (out / "verdicts").mkdir(parents=True, exist_ok=True)
            probe = out / ".ftgate-write-probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise FtgateError(f"--ftgate-out {str(out)!r} cannot be written ({exc.strerror or exc}); "
                              "pass a writable directory") from None

    def run_refs(self) -> list[RunRef]:
        """The runs under test, resolved once: given ids/names, trained configs, or the bundled demo."""
        if self._refs is not None:
            return self._refs
        self.check_out_dir()
        refs: list[RunRef] = []
        for ref in self.options.run_ids:
            refs.append(self._resolve(ref))
        configs = list(self.options.train)
        if not refs and not configs:
            demo = Path(self.options.root) / "training" / "demo.yaml"
            configs = [str(demo)]
            self.echo(f"ftgate: no --run-id given: training and gating the bundled demo run ({demo})")
        for config in configs:
            refs.append(self._train(config))
        self._refs = _unique_ids(refs)
        for r in self._refs:
            self.verdicts[r.key] = Verdict(run_id=r.key, run_name=r.run_name or r.ref, started_at=self.started_at,
                                           error=r.error, ftgate_version=__version__)
            self._write(r.key)
        return self._refs

    def _resolve(self, ref: str) -> RunRef:
        try:
            run_id, name = self.store.resolve(ref)
            return RunRef(ref=ref, run_id=run_id, run_name=name)
        except RunUnavailable as exc:
            return RunRef(ref=ref, error=str(exc))

    def _train(self, config: str) -> RunRef:
        from . import train

        try:
            run_id = train.ensure_trained(Path(config), self.store, retrain=self.options.retrain,
                                          log_dir=self.out / "logs", echo=self.echo)
        except FtgateError as exc:
            return RunRef(ref=config, error=f"training {config} failed: {exc}")
        return self._resolve(run_id)

    def load(self, ref: RunRef) -> RunRecord:
        """The run's record (read once); raises RunUnavailable when the run cannot be gated."""
        if ref.error:
            raise RunUnavailable(ref.ref, ref.error.removeprefix(f"run {ref.ref!r}: "))
        if ref.record is None:
            try:
                ref.record = self.store.load(ref.run_id)
            except RunUnavailable as exc:
                ref.error = str(exc)
                self.verdicts[ref.key].error = ref.error
                self._write(ref.key)
                raise
        return ref.record

    # -- verdicts ------------------------------------------------------------------------------------
    def record(self, run_key: str, gate: GateRecord) -> None:
        verdict = self.verdicts[run_key]
        verdict.add(gate)
        self._write(run_key)

    def verdict_path(self, run_key: str) -> Path:
        return self.out / "verdicts" / f"{safe_filename(run_key)}.json"

    def _write(self, run_key: str) -> None:
        verdict = self.verdicts[run_key]
        verdict.finished_at = utcnow()
        write_json_atomic(self.verdict_path(run_key), verdict.to_dict())

    def finish(self, interrupted: bool) -> None:
        """Mark each verdict complete or not, write it, and push it to its MLflow run."""
        for key, verdict in self.verdicts.items():
            done = len({g.test for g in verdict.gates})
            verdict.incomplete = bool(interrupted or verdict.error or done < self.expected.get(key, 0)
                                      or not verdict.gates)
            self._write(key)
        for ref in self._refs or []:
            if ref.run_id and not ref.error:
                self._push(ref)

    def _push(self, ref: RunRef) -> None:
        verdict = self.verdicts[ref.key]
        tags = {"ftgate.verdict": verdict.verdict, "ftgate.incomplete": str(verdict.incomplete).lower(),
                "ftgate.version": __version__}
        for g in verdict.gates:
            tags[f"ftgate.gate.{_tag_key(g.id)}"] = g.outcome
        try:
            self.store.set_tags(ref.run_id, tags)
            self.store.log_artifact(ref.run_id, self.verdict_path(ref.key), "ftgate")
        except Exception as exc:  # the verdict is on disk; MLflow being down must not lose it
            self.echo(f"ftgate: could not write the verdict to MLflow run {ref.run_id}: "
                      f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                      f"(it is on disk: {self.verdict_path(ref.key)})")

    def any_block(self) -> bool:
        return any(v.verdict == "block" for v in self.verdicts.values())

    def summary_lines(self) -> list[str]:
        lines = []
        for key, v in self.verdicts.items():
            label = v.verdict.upper() + (" (incomplete)" if v.incomplete else "")
            lines.append(f"{label:<18} {v.run_name} [{key}]")
            if v.error:
                lines.append(f"    {v.error}")
            for g in v.failed():
                if v.error and g.outcome == "error":
                    continue
                val = "" if g.value is None else f" value={_short(g.value)}"
                thr = "" if g.threshold is None else f" threshold={_short(g.threshold)}"
                lines.append(f"    {g.severity:<5} {g.id} {g.name} {g.outcome}:{val}{thr} - {_short(g.message, 200)}")
        return lines


def _tag_key(gate_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_./ " else "_" for c in gate_id)


def _short(x: object, n: int = 60) -> str:
    text = str(x)
    return text if len(text) <= n else text[: n - 1] + "…"


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


def eprint(msg: str) -> None:
    print(msg, file=sys.stderr)
